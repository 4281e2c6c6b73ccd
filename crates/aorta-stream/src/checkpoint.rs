//! Checkpoints: operator state together with the log offset it covers.
//!
//! [`FileCheckpointStore`] writes `checkpoint.json` atomically (write to a
//! temporary file, fsync, rename, fsync the directory), so a crash leaves
//! either the old or the new checkpoint, never a mix. The file carries a
//! CRC-32 of its state so a damaged checkpoint is refused, not trusted.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::StreamError;

/// What a checkpoint holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version (1).
    pub version: u32,
    /// Log offset up to which input is reflected in `state`.
    pub log_offset: u64,
    /// The engine snapshot (see `Engine::snapshot`).
    pub state: String,
    /// CRC-32 of `state`.
    pub crc: u32,
}

impl Checkpoint {
    /// A checkpoint of `state` at `log_offset`.
    pub fn new(log_offset: u64, state: Vec<u8>) -> Result<Checkpoint, StreamError> {
        let state = String::from_utf8(state)
            .map_err(|_| StreamError::Internal("engine state is not UTF-8 JSON".into()))?;
        let crc = crc32fast::hash(state.as_bytes());
        Ok(Checkpoint {
            version: 1,
            log_offset,
            state,
            crc,
        })
    }
}

/// Where checkpoints live.
pub trait CheckpointStore {
    /// Durably replaces the current checkpoint.
    fn save(&mut self, cp: &Checkpoint) -> Result<(), StreamError>;
    /// The current checkpoint, if any.
    fn load(&self) -> Result<Option<Checkpoint>, StreamError>;
}

/// A checkpoint file in a directory.
#[derive(Debug, Clone)]
pub struct FileCheckpointStore {
    dir: PathBuf,
}

impl FileCheckpointStore {
    /// Stores checkpoints in `dir` (created if needed).
    pub fn new(dir: impl AsRef<Path>) -> Result<Self, StreamError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|error| StreamError::Io {
            path: dir.clone(),
            error,
        })?;
        Ok(FileCheckpointStore { dir })
    }

    fn path(&self) -> PathBuf {
        self.dir.join("checkpoint.json")
    }
}

impl CheckpointStore for FileCheckpointStore {
    fn save(&mut self, cp: &Checkpoint) -> Result<(), StreamError> {
        let bytes = serde_json::to_vec(cp).map_err(|e| StreamError::Internal(e.to_string()))?;
        // Temporary file, fsync, rename, fsync of the directory.
        aorta_base::fs::write_private_atomic(&self.path(), &bytes).map_err(|e| match e {
            aorta_base::fs::WriteError::Io { path, source, .. } => StreamError::Io {
                path,
                error: source,
            },
            other => StreamError::Store(Box::new(other)),
        })
    }

    fn load(&self) -> Result<Option<Checkpoint>, StreamError> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(StreamError::Io { path, error }),
        };
        let corrupt = |what: String| StreamError::Corrupt {
            path: path.clone(),
            offset: 0,
            what,
        };
        let cp: Checkpoint = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if cp.version != 1 {
            return Err(corrupt(format!(
                "unknown checkpoint version {} (upgrade aorta)",
                cp.version
            )));
        }
        if crc32fast::hash(cp.state.as_bytes()) != cp.crc {
            return Err(corrupt("checksum mismatch".into()));
        }
        Ok(Some(cp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_and_corruption() {
        let dir = std::env::temp_dir().join(format!("aorta-cp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = FileCheckpointStore::new(&dir).unwrap();
        assert_eq!(s.load().unwrap(), None);
        let cp = Checkpoint::new(42, b"{\"a\":1}".to_vec()).unwrap();
        s.save(&cp).unwrap();
        assert_eq!(s.load().unwrap(), Some(cp.clone()));
        let mut tampered = cp.clone();
        tampered.state = "{\"a\":2}".into();
        std::fs::write(
            dir.join("checkpoint.json"),
            serde_json::to_vec(&tampered).unwrap(),
        )
        .unwrap();
        assert!(matches!(s.load(), Err(StreamError::Corrupt { .. })));
        std::fs::write(dir.join("checkpoint.json"), b"{not json").unwrap();
        assert!(matches!(s.load(), Err(StreamError::Corrupt { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
