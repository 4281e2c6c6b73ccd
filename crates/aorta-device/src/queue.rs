//! The offline buffer: a crash-safe, bounded, on-disk queue of sealed frames.
//!
//! One file per frame, `<sequence, 20 digits>.aof`, written with temp file →
//! fsync → rename → fsync directory, so after a crash a frame is either
//! wholly present or absent. Frames stay sealed (AES-256-GCM) at rest.
//! Upload is oldest first (lowest sequence). A frame leaves the queue only
//! when the server acknowledges `(serial, sequence)`.
//!
//! **When full** (more than `max_bytes` or `max_frames`), the *oldest*
//! frames are dropped to make room, and each drop is counted and returned:
//! for remote monitoring the newest data matters most, and the server sees
//! the dropped range as a sequence gap. A single frame larger than the bound
//! is refused.

use std::path::{Path, PathBuf};

use crate::DeviceError;
use crate::fsutil::{io_err, sync_dir, write_atomic};

/// Bounds of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Total bytes of queued frames.
    pub max_bytes: u64,
    /// Number of queued frames.
    pub max_frames: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        // About 3 weeks of 2-channel 360 Hz ECG at aorta's compression.
        QueueLimits {
            max_bytes: 1 << 30,
            max_frames: 1 << 20,
        }
    }
}

/// The on-disk queue.
#[derive(Debug)]
pub struct OfflineQueue {
    dir: PathBuf,
    limits: QueueLimits,
    entries: std::collections::BTreeMap<u64, u64>, // sequence → size
    bytes: u64,
    dropped: u64,
}

const EXT: &str = "aof";

fn seq_of(path: &Path) -> Option<u64> {
    if path.extension()? != EXT {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    if stem.len() != 20 {
        return None;
    }
    stem.parse().ok()
}

impl OfflineQueue {
    /// Opens (or creates) the queue in `dir`, removing temp files a crash left behind.
    pub fn open(dir: impl AsRef<Path>, limits: QueueLimits) -> Result<Self, DeviceError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut entries = std::collections::BTreeMap::new();
        let mut bytes = 0;
        for e in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let e = e.map_err(io_err(&dir))?;
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                std::fs::remove_file(&p).map_err(io_err(&p))?;
                continue;
            }
            if let Some(seq) = seq_of(&p) {
                let len = e.metadata().map_err(io_err(&p))?.len();
                entries.insert(seq, len);
                bytes += len;
            }
        }
        Ok(OfflineQueue {
            dir,
            limits,
            entries,
            bytes,
            dropped: 0,
        })
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.{EXT}"))
    }

    /// Adds a sealed frame durably; returns the sequences dropped to make room.
    pub fn push(&mut self, sequence: u64, frame: &[u8]) -> Result<Vec<u64>, DeviceError> {
        let len = frame.len() as u64;
        if len > self.limits.max_bytes || self.limits.max_frames == 0 {
            return Err(DeviceError::FrameTooLargeForQueue { len });
        }
        if self.entries.contains_key(&sequence) {
            return Err(DeviceError::DuplicateSequence { sequence });
        }
        let mut dropped = Vec::new();
        while self.bytes + len > self.limits.max_bytes
            || self.entries.len() >= self.limits.max_frames
        {
            let Some((&old, _)) = self.entries.iter().next() else {
                break;
            };
            self.remove(old)?;
            self.dropped += 1;
            dropped.push(old);
        }
        write_atomic(&self.path(sequence), frame)?;
        self.entries.insert(sequence, len);
        self.bytes += len;
        Ok(dropped)
    }

    /// The oldest queued frame.
    pub fn oldest(&self) -> Result<Option<(u64, Vec<u8>)>, DeviceError> {
        let Some((&seq, _)) = self.entries.iter().next() else {
            return Ok(None);
        };
        let p = self.path(seq);
        let b = std::fs::read(&p).map_err(io_err(&p))?;
        Ok(Some((seq, b)))
    }

    fn remove(&mut self, seq: u64) -> Result<(), DeviceError> {
        let p = self.path(seq);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&p)(e)),
        }
        sync_dir(&self.dir)?;
        if let Some(len) = self.entries.remove(&seq) {
            self.bytes -= len;
        }
        Ok(())
    }

    /// The server acknowledged `sequence`: forget it durably.
    pub fn ack(&mut self, sequence: u64) -> Result<(), DeviceError> {
        self.remove(sequence)
    }

    /// Queued sequence numbers, oldest first.
    pub fn sequences(&self) -> Vec<u64> {
        self.entries.keys().copied().collect()
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the queue is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes queued.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Frames dropped by the full-queue policy since opening.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The queue directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// What the server answered to one upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadReply {
    /// Stored (or already stored): the device may forget this sequence.
    Ack {
        /// Acknowledged sequence.
        sequence: u64,
    },
    /// Refused for good (the frame will never be accepted): reported, and
    /// removed from the queue so it does not block newer frames.
    Refused {
        /// Refused sequence.
        sequence: u64,
        /// The server's reason.
        reason: String,
    },
}

/// The uplink. `Err` means the network is down: the frame stays queued.
pub trait Transport {
    /// Sends one frame with the device's signature of it ([`sign_upload`])
    /// and returns the server's reply.
    fn upload(&mut self, frame: &[u8], signature: &[u8; 64]) -> Result<UploadReply, DeviceError>;

    /// The `max_key_uses` renegotiation Offer (wire bytes) the server
    /// attached to the last acknowledgement, taken once. None by default.
    fn take_reneg_offer(&mut self) -> Option<Vec<u8>> {
        None
    }

    /// Sends one renegotiation message of device `serial` and returns the
    /// server's answer (`None`: nothing to answer). Unsupported by default.
    fn reneg(&mut self, serial: &str, msg: &[u8]) -> Result<Option<Vec<u8>>, DeviceError> {
        let _ = (serial, msg);
        Err(DeviceError::Config(
            "this transport cannot renegotiate max_key_uses".into(),
        ))
    }
}

/// The device's signature of `frame` for upload: Ed25519 by its secure
/// element over `aorta_crypto::auth::frame_message(frame)`. Ingest refuses
/// a frame without it (`docs/authentication.md`).
pub fn sign_upload(
    se: &dyn crate::se::SecureElement,
    frame: &[u8],
) -> Result<[u8; 64], DeviceError> {
    se.sign(&aorta_crypto::auth::frame_message(frame))
}

/// What one [`flush`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Acknowledged sequences, in upload order.
    pub acked: Vec<u64>,
    /// Refused sequences with the server's reason.
    pub refused: Vec<(u64, String)>,
}

/// What became of one uploaded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged and removed from the queue.
    Acked {
        /// The queued sequence.
        sequence: u64,
    },
    /// Refused for good, removed from the queue, reported.
    Refused {
        /// The queued sequence.
        sequence: u64,
        /// The server's reason.
        reason: String,
    },
}

/// Applies the server's reply to the queued frame `sequence`: an
/// acknowledgement of that sequence or a refusal removes it durably; an
/// acknowledgement of another sequence is a [`DeviceError::Protocol`] error
/// and leaves the queue untouched.
pub fn apply_reply(
    queue: &mut OfflineQueue,
    sequence: u64,
    reply: UploadReply,
) -> Result<Outcome, DeviceError> {
    match reply {
        UploadReply::Ack { sequence: acked } if acked == sequence => {
            queue.ack(sequence)?;
            Ok(Outcome::Acked { sequence })
        }
        UploadReply::Ack { sequence: acked } => Err(DeviceError::Protocol(format!(
            "server acknowledged {acked} for frame {sequence}"
        ))),
        UploadReply::Refused { reason, .. } => {
            queue.ack(sequence)?;
            Ok(Outcome::Refused { sequence, reason })
        }
    }
}

/// Uploads queued frames oldest first until the queue is empty or the
/// network fails (then the error is returned and unsent frames stay queued).
pub fn flush(
    queue: &mut OfflineQueue,
    transport: &mut dyn Transport,
    se: &dyn crate::se::SecureElement,
) -> Result<FlushReport, DeviceError> {
    let mut r = FlushReport::default();
    while let Some((seq, bytes)) = queue.oldest()? {
        let reply = transport.upload(&bytes, &sign_upload(se, &bytes)?)?;
        match apply_reply(queue, seq, reply)? {
            Outcome::Acked { sequence } => r.acked.push(sequence),
            Outcome::Refused { sequence, reason } => r.refused.push((sequence, reason)),
        }
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_drop_oldest_and_crash_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let lim = QueueLimits {
            max_bytes: 100,
            max_frames: 3,
        };
        let mut q = OfflineQueue::open(dir.path(), lim).unwrap();
        assert!(q.push(1, &[1; 40]).unwrap().is_empty());
        assert!(q.push(2, &[2; 40]).unwrap().is_empty());
        assert_eq!(q.push(3, &[3; 40]).unwrap(), vec![1]); // bytes bound
        assert!(matches!(
            q.push(3, &[3; 1]),
            Err(DeviceError::DuplicateSequence { .. })
        ));
        assert!(q.push(4, &[4; 10]).unwrap().is_empty());
        assert_eq!(q.push(5, &[5; 10]).unwrap(), vec![2]); // frame-count bound
        assert!(matches!(
            q.push(6, &[0; 101]),
            Err(DeviceError::FrameTooLargeForQueue { .. })
        ));
        assert_eq!(q.sequences(), vec![3, 4, 5]);
        assert_eq!(q.dropped(), 2);
        // A crash mid-write leaves a temp file: ignored and cleaned on open.
        std::fs::write(dir.path().join(".00000000000000000009.aof.tmp"), b"partial").unwrap();
        let q = OfflineQueue::open(dir.path(), lim).unwrap();
        assert_eq!(q.sequences(), vec![3, 4, 5]);
        assert_eq!(q.oldest().unwrap().unwrap(), (3, vec![3; 40]));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
    }
}
