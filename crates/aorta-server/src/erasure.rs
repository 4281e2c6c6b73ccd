//! Patient erasure on the host (GDPR art. 17): `docs/erasure.md`.
//!
//! The host holds three kinds of a patient's data, and can erase only the
//! first alone:
//!
//! 1. **Frames** in `frames.log`: the serial is in each frame's clear
//!    header, so [`request`] (run by `aorta admin erase`, with the server
//!    stopped — it takes the data directory's lock) overwrites them in
//!    place ([`aorta_stream::job::erase_device_frames`]) and records a
//!    pending request in `erasure/pending.json`.
//! 2. **Operator state** inside the worker's sealed checkpoint: only the
//!    attested worker can open it. The running server announces pending
//!    requests on log answers; the worker drops the device's state,
//!    checkpoints, and hands back the device's erase token (`docs/server-api.md`,
//!    `/v1/erasures`). The server accepts the token only after a checkpoint
//!    saved since it handed the request out.
//! 3. **Results** in `results.log`: their ids are opaque; with the token
//!    the server recognises exactly that device's ids
//!    (`aorta_crypto::results::EraseToken`) and overwrites those records
//!    in place ([`aorta_stream::results::FileResultStore::erase_where`]).
//!
//! Each step is appended to `audit.log` (JSON lines, fsynced) under an
//! HMAC of the serial with the host's `audit.key`, so the log proves an
//! erasure without naming the patient's device to whoever reads it. The
//! serial itself stays in `erasure/pending.json` only until the request is
//! complete.
//!
//! It owns the data directory's lock ([`lock_data_dir`]): one process at a
//! time writes a data directory.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Why an erasure step failed.
#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    /// Another process (a running server) holds the data directory.
    #[error(
        "{dir} is in use by another process (a running `aorta server`?): stop it first — erasure rewrites the frame log in place"
    )]
    InUse {
        /// The data directory.
        dir: PathBuf,
    },
    /// Not a device serial.
    #[error("{0:?} is not a device serial (1-64 of A-Z a-z 0-9 . _ -)")]
    BadSerial(String),
    /// No pending request has this id.
    #[error("no pending erasure {0}")]
    Unknown(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file does not parse.
    #[error("{path}: {what}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The frame log or results store refused.
    #[error(transparent)]
    Stream(#[from] aorta_stream::StreamError),
    /// The OS random source failed.
    #[error("random source: {0}")]
    Random(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ErasureError + '_ {
    move |source| ErasureError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The exclusive lock of a data directory (`data_dir/.lock`, `flock`),
/// held while the value lives.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Takes the data directory's lock, or [`ErasureError::InUse`] at once if
/// another process holds it.
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, ErasureError> {
    let path = dir.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(ErasureError::InUse {
            dir: dir.to_path_buf(),
        }),
        Err(e) => Err(ErasureError::Io {
            path,
            source: e.into(),
        }),
    }
}

/// A pending erasure request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    /// Request id, 32 hex digits.
    pub id: String,
    /// The device serial.
    pub serial: String,
    /// When it was requested (RFC 3339, UTC).
    pub requested: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PendingFile {
    version: u32,
    pending: Vec<Pending>,
}

/// The pending requests and the audit log of a data directory.
pub struct ErasureBook {
    dir: PathBuf,
    pending: Vec<Pending>,
}

impl std::fmt::Debug for ErasureBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErasureBook")
            .field("dir", &self.dir)
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// Now, RFC 3339 UTC to the second.
fn now_text() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl ErasureBook {
    /// Reads `data_dir/erasure/pending.json` (none: nothing pending).
    pub fn open(data_dir: &Path) -> Result<ErasureBook, ErasureError> {
        let path = data_dir.join("erasure").join("pending.json");
        let pending = match std::fs::read(&path) {
            Ok(b) => {
                let f: PendingFile =
                    serde_json::from_slice(&b).map_err(|e| ErasureError::Corrupt {
                        path: path.clone(),
                        what: e.to_string(),
                    })?;
                if f.version != 1 {
                    return Err(ErasureError::Corrupt {
                        path,
                        what: format!("unknown version {} (upgrade aorta)", f.version),
                    });
                }
                f.pending
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(&path)(e)),
        };
        Ok(ErasureBook {
            dir: data_dir.to_path_buf(),
            pending,
        })
    }

    /// Pending requests, oldest first.
    pub fn pending(&self) -> &[Pending] {
        &self.pending
    }

    fn save(&self) -> Result<(), ErasureError> {
        let dir = self.dir.join("erasure");
        aorta_base::fs::create_private_dir(&dir).map_err(|e| ErasureError::Corrupt {
            path: dir.clone(),
            what: e.to_string(),
        })?;
        let path = dir.join("pending.json");
        let body = serde_json::to_vec_pretty(&PendingFile {
            version: 1,
            pending: self.pending.clone(),
        })
        .map_err(|e| ErasureError::Corrupt {
            path: path.clone(),
            what: e.to_string(),
        })?;
        aorta_base::fs::write_private_atomic(&path, &body).map_err(|e| ErasureError::Corrupt {
            path,
            what: e.to_string(),
        })
    }

    /// Adds a request for `serial` (the pending one if there is already
    /// one) and saves the book.
    pub fn add(&mut self, serial: &str) -> Result<Pending, ErasureError> {
        if let Some(p) = self.pending.iter().find(|p| p.serial == serial) {
            return Ok(p.clone());
        }
        let id =
            aorta_base::random::array::<16>().map_err(|e| ErasureError::Random(e.to_string()))?;
        let p = Pending {
            id: aorta_base::hex::encode(&id),
            serial: serial.to_owned(),
            requested: now_text(),
        };
        self.pending.push(p.clone());
        self.save()?;
        Ok(p)
    }

    /// Removes request `id` (done) and saves the book.
    pub fn complete(&mut self, id: &str) -> Result<Pending, ErasureError> {
        let i = self
            .pending
            .iter()
            .position(|p| p.id == id)
            .ok_or_else(|| ErasureError::Unknown(id.to_owned()))?;
        let p = self.pending.remove(i);
        self.save()?;
        Ok(p)
    }

    /// `HMAC-SHA256(audit.key, serial)`, hex: how the audit log names a
    /// device. `audit.key` (32 random bytes, 0600) is made on first use.
    pub fn serial_mac(&self, serial: &str) -> Result<String, ErasureError> {
        let path = self.dir.join("audit.key");
        if !path.exists() {
            let k = aorta_base::random::secret::<32>()
                .map_err(|e| ErasureError::Random(e.to_string()))?;
            match aorta_base::fs::write_private_new(
                &path,
                aorta_base::hex::encode_secret(k.as_ref()).as_bytes(),
            ) {
                Ok(()) | Err(aorta_base::fs::WriteError::Exists(_)) => {}
                Err(e) => {
                    return Err(ErasureError::Corrupt {
                        path,
                        what: e.to_string(),
                    });
                }
            }
        }
        let text = Zeroizing::new(std::fs::read_to_string(&path).map_err(io(&path))?);
        let key = aorta_base::hex::decode_array::<32>(text.trim(), aorta_base::hex::Case::Lower)
            .map_err(|e| ErasureError::Corrupt {
                path: path.clone(),
                what: e.to_string(),
            })?;
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_ref()),
            serial.as_bytes(),
        );
        Ok(aorta_base::hex::encode(tag.as_ref()))
    }

    /// Appends one line to `audit.log` and fsyncs it: `{"time", "event",
    /// "request", "device_mac", …fields}`.
    pub fn audit(
        &self,
        event: &str,
        request: &Pending,
        fields: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), ErasureError> {
        let mut line = serde_json::Map::new();
        line.insert("time".into(), now_text().into());
        line.insert("event".into(), event.into());
        line.insert("request".into(), request.id.clone().into());
        line.insert(
            "device_mac".into(),
            self.serial_mac(&request.serial)?.into(),
        );
        line.extend(fields);
        let mut text = serde_json::Value::Object(line).to_string();
        text.push('\n');
        let path = self.dir.join("audit.log");
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        f.write_all(text.as_bytes()).map_err(io(&path))?;
        f.sync_data().map_err(io(&path))
    }
}

/// What [`request`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EraseReport {
    /// The request's id (the worker completes it).
    pub request: String,
    /// `HMAC-SHA256(audit.key, serial)`, as the audit log names the device.
    pub device_mac: String,
    /// Frames overwritten in `frames.log`.
    pub frames_erased: u64,
    /// Their bytes.
    pub frame_bytes_erased: u64,
    /// Requests now waiting for the worker (this one included).
    pub pending: usize,
}

/// `aorta admin erase`: with the server stopped (the data directory's lock
/// is taken), erases device `serial`'s frames from `data_dir/frames.log`
/// in place and leaves a pending request for the worker (operator state,
/// results). Running it again for the same serial finishes an interrupted
/// erase and keeps the one request.
pub fn request(data_dir: &Path, serial: &str) -> Result<EraseReport, ErasureError> {
    aorta_crypto::keys::check_serial(serial)
        .map_err(|_| ErasureError::BadSerial(serial.chars().take(80).collect()))?;
    if !data_dir.is_dir() {
        return Err(ErasureError::Io {
            path: data_dir.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such data directory (the server's `data_dir`)",
            ),
        });
    }
    let _lock = lock_data_dir(data_dir)?;
    let mut book = ErasureBook::open(data_dir)?;
    let log = data_dir.join("frames.log");
    let frames = if log.exists() {
        aorta_stream::job::erase_device_frames(&log, serial)?
    } else {
        aorta_stream::log::Erased::default()
    };
    let p = book.add(serial)?;
    let mut fields = serde_json::Map::new();
    fields.insert("frames".into(), frames.records.into());
    fields.insert("frame_bytes".into(), frames.bytes.into());
    book.audit("erase_requested", &p, fields)?;
    Ok(EraseReport {
        request: p.id,
        device_mac: book.serial_mac(serial)?,
        frames_erased: frames.records,
        frame_bytes_erased: frames.bytes,
        pending: book.pending().len(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn a_repeated_request_keeps_one_request_and_bad_serials_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let a = request(d.path(), "SN-1").unwrap();
        let b = request(d.path(), "SN-1").unwrap();
        assert_eq!((a.request.clone(), b.pending), (b.request.clone(), 1));
        assert_eq!(a.device_mac, b.device_mac);
        assert_eq!(request(d.path(), "SN-2").unwrap().pending, 2);
        assert!(matches!(
            request(d.path(), "../etc"),
            Err(ErasureError::BadSerial(_))
        ));
        // The audit log names no serial.
        let audit = std::fs::read_to_string(d.path().join("audit.log")).unwrap();
        assert_eq!(audit.lines().count(), 3);
        assert!(!audit.contains("SN-1") && !audit.contains("SN-2"));
        // Completing removes it from the book; completing again is unknown.
        let mut book = ErasureBook::open(d.path()).unwrap();
        book.complete(&a.request).unwrap();
        assert!(matches!(
            book.complete(&a.request),
            Err(ErasureError::Unknown(_))
        ));
        assert_eq!(ErasureBook::open(d.path()).unwrap().pending().len(), 1);
    }
}
