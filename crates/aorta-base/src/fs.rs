//! Owner-only file writes.
//!
//! Everything aorta writes that holds a secret (a key, a token, a sealed
//! identity) or that must never be half-written (a state file, a config)
//! goes through here:
//!
//! - [`write_private_atomic`] replaces the file as one step: the bytes go to
//!   a temporary file in the same directory created with mode 0600, are
//!   flushed to disk, renamed over the target, and the directory is flushed.
//!   A crash leaves either the old file or the new one, never a mix.
//! - [`write_private_new`] does the same but refuses when the target exists
//!   (no silent overwrite of a key).
//!
//! Parent directories are created (mode 0700 for new ones on Unix).

use std::io::Write;
use std::path::{Path, PathBuf};

/// A failed owner-only write, naming the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The target exists and overwriting was not asked for.
    #[error("{0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
    /// An I/O step failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> WriteError + 'a {
    move |source| WriteError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` (mode 0600), replacing it atomically if present.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write(path, bytes, true)
}

/// Writes `bytes` to a new file `path` (mode 0600) atomically; refuses with
/// [`WriteError::Exists`] if `path` already exists.
pub fn write_private_new(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    write(path, bytes, false)
}

fn write(path: &Path, bytes: &[u8], replace: bool) -> Result<(), WriteError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    create_private_dir(&dir)?;
    if !replace && path.exists() {
        return Err(WriteError::Exists(path.to_path_buf()));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let suffix = crate::random::array::<8>()
        .map(|r| crate::hex::encode(&r))
        .unwrap_or_else(|_| std::process::id().to_string());
    let tmp = dir.join(format!(".{name}.{suffix}.tmp"));
    let result = (|| {
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let mut f = o.open(&tmp).map_err(io("creating", &tmp))?;
        f.write_all(bytes).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("syncing", &tmp))?;
        drop(f);
        if replace {
            std::fs::rename(&tmp, path).map_err(io("renaming onto", path))?;
        } else {
            // A hard link fails if the target appeared meanwhile: no race
            // between the existence check and the rename.
            std::fs::hard_link(&tmp, path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    WriteError::Exists(path.to_path_buf())
                } else {
                    io("linking", path)(e)
                }
            })?;
            let _ = std::fs::remove_file(&tmp);
        }
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Creates `dir` and its missing parents; new directories are 0700 on Unix.
pub fn create_private_dir(dir: &Path) -> Result<(), WriteError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(io("creating directory", dir))
}

/// Flushes a directory's entries (a rename or a new file in it) to disk.
pub fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing directory", dir))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn atomic_replace_is_owner_only() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/key");
        write_private_atomic(&p, b"one").unwrap();
        write_private_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let dmode = std::fs::metadata(p.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(dmode & 0o777, 0o700);
        }
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn new_refuses_to_overwrite() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("key");
        write_private_new(&p, b"one").unwrap();
        let e = write_private_new(&p, b"two").unwrap_err();
        assert!(matches!(e, WriteError::Exists(_)), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
