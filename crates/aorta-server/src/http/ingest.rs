//! Device ingest: check a sealed frame's cleartext header, append it to the
//! durable log, acknowledge once it is on stable storage.
//!
//! The ingest runs on the untrusted host and holds **no key**: it checks
//! what the header shows (well-formed, a registered and verified device, a
//! key index inside its slice, a sequence not already taken by other bytes)
//! and leaves authentication to the attested worker, which refuses and
//! counts forged frames (`aorta_worker_frames_refused_total`).
//!
//! One writer thread owns the log: it takes queued frames in batches,
//! deduplicates them by `(serial, sequence, SHA-256)`, appends, syncs once
//! per batch (group commit) and only then answers each request. The queue is
//! bounded in frames and bytes; when it is full, or when the worker lags
//! further behind than `max_worker_lag_bytes`, ingest answers `503` with
//! `Retry-After` instead of buffering.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use aorta_crypto::frame::{self, FrameError};
use aorta_stream::log::{FileLog, FrameLog, LogReader};
use tokio::sync::{mpsc, oneshot, watch};

/// Sequences remembered per device for deduplication.
pub const DEDUP_WINDOW: u64 = 4096;

/// What ingest answered (the `POST /v1/frames` body).
pub use aorta_api::FrameAck as Ack;

/// Why ingest refused a frame. Each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// The frame does not parse (400) or is too large (413).
    #[error("malformed frame: {0}")]
    Malformed(#[from] FrameError),
    /// No device with this serial is registered (403).
    #[error("unknown device {serial}")]
    UnknownDevice {
        /// Serial.
        serial: String,
    },
    /// The device never passed key verification (403).
    #[error("device {serial} has not passed key verification")]
    NotVerified {
        /// Serial.
        serial: String,
    },
    /// The key index is outside the device's slice (403).
    #[error("device {serial}: key index {index} outside its slice of {slice}")]
    KeyIndex {
        /// Serial.
        serial: String,
        /// Index in the header.
        index: u16,
        /// Slice length.
        slice: u16,
    },
    /// The sequence is already in the log with other bytes (409).
    #[error("device {serial}: sequence {sequence} already accepted with different bytes")]
    Replayed {
        /// Serial.
        serial: String,
        /// Sequence.
        sequence: u64,
    },
    /// The sequence is older than the deduplication window (409).
    #[error("device {serial}: sequence {sequence} is older than the last {DEDUP_WINDOW} accepted")]
    Stale {
        /// Serial.
        serial: String,
        /// Sequence.
        sequence: u64,
    },
    /// Too much is queued or the worker lags (503, retry later).
    #[error("overloaded: {0}; retry later")]
    Overloaded(&'static str),
    /// The log could not be written (500; not the sender's fault).
    #[error("internal error: {0}")]
    Internal(String),
}

impl IngestError {
    /// HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            IngestError::Malformed(FrameError::Oversize { .. }) => 413,
            IngestError::Malformed(_) => 400,
            IngestError::UnknownDevice { .. }
            | IngestError::NotVerified { .. }
            | IngestError::KeyIndex { .. } => 403,
            IngestError::Replayed { .. } | IngestError::Stale { .. } => 409,
            IngestError::Overloaded(_) => 503,
            IngestError::Internal(_) => 500,
        }
    }

    /// Stable snake_case name (the JSON `error` field and metric label).
    pub fn name(&self) -> &'static str {
        match self {
            IngestError::Malformed(FrameError::Oversize { .. }) => "oversize",
            IngestError::Malformed(FrameError::UnsupportedVersion { .. }) => "unsupported_version",
            IngestError::Malformed(_) => "malformed_frame",
            IngestError::UnknownDevice { .. } => "unknown_device",
            IngestError::NotVerified { .. } => "device_not_verified",
            IngestError::KeyIndex { .. } => "key_index_out_of_range",
            IngestError::Replayed { .. } => "sequence_replayed",
            IngestError::Stale { .. } => "sequence_stale",
            IngestError::Overloaded(_) => "overloaded",
            IngestError::Internal(_) => "internal",
        }
    }
}

/// Looks devices up (the registry; a map in tests).
pub trait DeviceDirectory: Send + Sync {
    /// `(verified, slice_len)` of a registered device.
    fn lookup(&self, serial: &str) -> Result<Option<(bool, u16)>, String>;
}

impl DeviceDirectory for aorta_registry::Registry {
    fn lookup(&self, serial: &str) -> Result<Option<(bool, u16)>, String> {
        match self.device(serial) {
            Ok(d) => Ok(Some((d.verified, d.slice_len))),
            Err(aorta_registry::RegistryError::UnknownSerial { .. }) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl DeviceDirectory for HashMap<String, (bool, u16)> {
    fn lookup(&self, serial: &str) -> Result<Option<(bool, u16)>, String> {
        Ok(self.get(serial).copied())
    }
}

struct Job {
    serial: String,
    sequence: u64,
    digest: [u8; 16],
    record: Vec<u8>,
    reply: oneshot::Sender<Result<Ack, IngestError>>,
}

#[derive(Default)]
struct Seen {
    /// sequence → (digest, offset), the last [`DEDUP_WINDOW`] sequences.
    recent: BTreeMap<u64, ([u8; 16], u64)>,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct IngestCounters {
    /// Frames appended.
    pub accepted: AtomicU64,
    /// Exact re-sends acknowledged again.
    pub duplicates: AtomicU64,
    /// Bytes appended.
    pub bytes: AtomicU64,
    /// Group commits (syncs).
    pub syncs: AtomicU64,
    /// Refusals by name.
    pub refused: std::sync::Mutex<BTreeMap<&'static str, u64>>,
}

impl IngestCounters {
    /// Counts a refusal.
    pub fn refuse(&self, e: &IngestError) {
        if let Ok(mut m) = self.refused.lock() {
            *m.entry(e.name()).or_default() += 1;
        }
    }
}

/// The ingest front: validation, the bounded queue, the writer thread.
pub struct Ingest {
    tx: mpsc::Sender<Job>,
    queued_bytes: Arc<AtomicUsize>,
    max_queued_bytes: usize,
    max_lag: u64,
    devices: Arc<dyn DeviceDirectory>,
    /// Durable end of the log (published after each sync).
    pub end: watch::Receiver<u64>,
    /// Offset covered by the worker's last checkpoint.
    pub worker_offset: Arc<AtomicU64>,
    /// Counters.
    pub counters: Arc<IngestCounters>,
    /// Reader of the log for workers.
    pub reader: LogReader,
}

fn digest(frame: &[u8]) -> [u8; 16] {
    let d = ring::digest::digest(&ring::digest::SHA256, frame);
    let mut out = [0u8; 16];
    out.copy_from_slice(d.as_ref().get(..16).unwrap_or(&[0u8; 16]));
    out
}

impl Ingest {
    /// Opens the log in `dir` (rebuilding the deduplication index from it)
    /// and starts the writer thread.
    pub fn start(
        dir: &Path,
        devices: Arc<dyn DeviceDirectory>,
        queue_frames: usize,
        queue_bytes: usize,
        max_lag: u64,
    ) -> Result<Ingest, aorta_stream::StreamError> {
        let log = FileLog::open(dir.join("frames.log"))?;
        let reader = log.reader();
        let mut seen: HashMap<String, Seen> = HashMap::new();
        let mut offset = 0;
        loop {
            let (recs, next) = log.read_from(offset, 4096)?;
            if recs.is_empty() {
                break;
            }
            let mut at = offset;
            for r in &recs {
                if let Ok((_, f)) = aorta_stream::job::decode_record(r) {
                    if let Ok(p) = frame::parse(f) {
                        let s = seen.entry(p.header.serial.clone()).or_default();
                        s.recent.insert(p.header.sequence, (digest(f), at));
                        while s.recent.len() as u64 > DEDUP_WINDOW {
                            s.recent.pop_first();
                        }
                    }
                }
                at += 8 + r.len() as u64;
            }
            offset = next;
        }
        let (end_tx, end_rx) = watch::channel(log.end());
        let (tx, rx) = mpsc::channel(queue_frames);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let counters = Arc::new(IngestCounters::default());
        {
            let queued = queued_bytes.clone();
            let counters = counters.clone();
            std::thread::Builder::new()
                .name("aorta-log-writer".into())
                .spawn(move || writer(log, rx, seen, end_tx, queued, counters))
                .map_err(|e| aorta_stream::StreamError::Config(format!("writer thread: {e}")))?;
        }
        Ok(Ingest {
            tx,
            queued_bytes,
            max_queued_bytes: queue_bytes,
            max_lag,
            devices,
            end: end_rx,
            worker_offset: Arc::new(AtomicU64::new(0)),
            counters,
            reader,
        })
    }

    /// Checks the header of `frame`; the parsed serial and sequence.
    pub fn check(&self, frame_bytes: &[u8]) -> Result<(String, u64), IngestError> {
        let p = frame::parse(frame_bytes)?;
        let h = p.header;
        match self
            .devices
            .lookup(&h.serial)
            .map_err(IngestError::Internal)?
        {
            None => Err(IngestError::UnknownDevice { serial: h.serial }),
            Some((false, _)) => Err(IngestError::NotVerified { serial: h.serial }),
            Some((true, slice)) if h.key_index >= slice => Err(IngestError::KeyIndex {
                serial: h.serial,
                index: h.key_index,
                slice,
            }),
            Some(_) => Ok((h.serial, h.sequence)),
        }
    }

    /// Validates, queues and waits until the frame is durable.
    pub async fn submit(&self, arrival_us: i64, frame_bytes: &[u8]) -> Result<Ack, IngestError> {
        let r = self.submit_inner(arrival_us, frame_bytes).await;
        if let Err(e) = &r {
            self.counters.refuse(e);
        }
        r
    }

    async fn submit_inner(&self, arrival_us: i64, frame_bytes: &[u8]) -> Result<Ack, IngestError> {
        let (serial, sequence) = self.check(frame_bytes)?;
        if self.max_lag > 0 {
            let lag =
                (*self.end.borrow()).saturating_sub(self.worker_offset.load(Ordering::Relaxed));
            if lag > self.max_lag {
                return Err(IngestError::Overloaded("the worker is behind"));
            }
        }
        let len = frame_bytes.len();
        let before = self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if before + len > self.max_queued_bytes {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return Err(IngestError::Overloaded("ingest queue bytes full"));
        }
        let (reply, rx) = oneshot::channel();
        let job = Job {
            serial,
            sequence,
            digest: digest(frame_bytes),
            record: aorta_stream::job::encode_record(arrival_us, frame_bytes),
            reply,
        };
        if let Err(e) = self.tx.try_send(job) {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => IngestError::Overloaded("ingest queue full"),
                mpsc::error::TrySendError::Closed(_) => {
                    IngestError::Internal("the log writer stopped (see the server log)".into())
                }
            });
        }
        rx.await
            .map_err(|_| IngestError::Internal("log writer stopped".into()))?
    }
}

fn writer(
    mut log: FileLog,
    mut rx: mpsc::Receiver<Job>,
    mut seen: HashMap<String, Seen>,
    end: watch::Sender<u64>,
    queued: Arc<AtomicUsize>,
    counters: Arc<IngestCounters>,
) {
    let mut batch = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(batch.len());
        let mut appended = false;
        for j in batch.drain(..) {
            queued.fetch_sub(
                j.record.len() - aorta_stream::job::RECORD_PREFIX,
                Ordering::AcqRel,
            );
            let s = seen.entry(j.serial.clone()).or_default();
            let r = match s.recent.get(&j.sequence) {
                Some((d, off)) if *d == j.digest => Ok(Ack {
                    serial: j.serial,
                    sequence: j.sequence,
                    offset: *off,
                    duplicate: true,
                }),
                Some(_) => Err(IngestError::Replayed {
                    serial: j.serial,
                    sequence: j.sequence,
                }),
                None if s.recent.len() as u64 >= DEDUP_WINDOW
                    && s.recent
                        .first_key_value()
                        .is_some_and(|(k, _)| j.sequence < *k) =>
                {
                    Err(IngestError::Stale {
                        serial: j.serial,
                        sequence: j.sequence,
                    })
                }
                None => match log.append(&j.record) {
                    Ok(off) => {
                        appended = true;
                        s.recent.insert(j.sequence, (j.digest, off));
                        while s.recent.len() as u64 > DEDUP_WINDOW {
                            s.recent.pop_first();
                        }
                        counters
                            .bytes
                            .fetch_add(j.record.len() as u64, Ordering::Relaxed);
                        Ok(Ack {
                            serial: j.serial,
                            sequence: j.sequence,
                            offset: off,
                            duplicate: false,
                        })
                    }
                    Err(e) => Err(IngestError::Internal(e.to_string())),
                },
            };
            replies.push((j.reply, r));
        }
        let synced = if appended {
            counters.syncs.fetch_add(1, Ordering::Relaxed);
            log.sync().map_err(|e| e.to_string())
        } else {
            Ok(())
        };
        if synced.is_ok() {
            end.send_replace(log.end());
        }
        for (reply, r) in replies {
            let r = match (&synced, r) {
                (Err(e), Ok(_)) => Err(IngestError::Internal(format!("log sync failed: {e}"))),
                (_, r) => r,
            };
            match &r {
                Ok(a) if a.duplicate => {
                    counters.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {
                    counters.accepted.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {}
            }
            let _ = reply.send(r);
        }
        if let Err(e) = synced {
            // A log that cannot sync cannot acknowledge anything: stop, so
            // every later request gets a 500 instead of a false ack.
            tracing::error!(target: "aorta::ingest", error = %e, "log sync failed; ingest stops");
            return;
        }
    }
}
