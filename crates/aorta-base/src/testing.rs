//! Test support shared by the crates' test suites (not a stable API).

use std::path::{Path, PathBuf};

/// A tmpfs of a few KiB mounted on a fresh directory under the system's
/// temporary directory: a real full disk for tests. Unmounted and removed
/// on drop.
#[derive(Debug)]
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `kib` KiB when running as root; `None`, with a
    /// note on stderr (a visible skip), otherwise.
    ///
    /// # Panics
    /// When running as root and the mount fails (the test must not pass
    /// silently).
    #[cfg(unix)]
    #[allow(
        clippy::panic,
        reason = "test support: a mount that fails as root is a failed test"
    )]
    pub fn mount(kib: u64) -> Option<Tmpfs> {
        use std::os::unix::fs::MetadataExt as _;
        if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
            eprintln!("not root: the tmpfs full-disk test cannot mount and is skipped");
            return None;
        }
        let name = crate::random::array::<8>()
            .map(|b| crate::hex::encode(&b))
            .unwrap_or_else(|_| std::process::id().to_string());
        let dir = std::env::temp_dir().join(format!("aorta-tmpfs-{name}"));
        if let Err(e) = std::fs::create_dir(&dir) {
            panic!("creating {}: {e}", dir.display());
        }
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::fs::remove_dir(&dir);
            panic!("running as root but cannot mount a tmpfs");
        }
        Some(Tmpfs { dir })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}
