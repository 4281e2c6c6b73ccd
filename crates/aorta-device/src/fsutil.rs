//! File errors as [`DeviceError`]s. The writes themselves are
//! `aorta_base::fs`'s owner-only atomic writes (temp file 0600 → fsync →
//! rename → fsync directory).

use std::path::Path;

use aorta_base::fs::WriteError;

use crate::DeviceError;

pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> DeviceError + '_ {
    move |error| DeviceError::Io {
        path: path.to_path_buf(),
        error,
    }
}

impl From<WriteError> for DeviceError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Exists(path) => DeviceError::AlreadyExists { path },
            other => DeviceError::Write(other),
        }
    }
}

/// Writes `bytes` to `path` atomically and durably, mode 0600.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DeviceError> {
    Ok(aorta_base::fs::write_private_atomic(path, bytes)?)
}

/// Writes a new file `path` atomically and durably, mode 0600; refuses
/// ([`DeviceError::AlreadyExists`]) if it exists.
pub(crate) fn write_new(path: &Path, bytes: &[u8]) -> Result<(), DeviceError> {
    Ok(aorta_base::fs::write_private_new(path, bytes)?)
}

/// fsyncs a directory so a rename or unlink in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), DeviceError> {
    Ok(aorta_base::fs::sync_dir(dir)?)
}
