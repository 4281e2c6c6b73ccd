//! Device ingest: authenticate a sealed frame's sender, check its cleartext
//! header, append it to the durable log, acknowledge once it is on stable
//! storage.
//!
//! The ingest runs on the untrusted host and holds **no key**. It
//! authenticates the device with the public device directory
//! ([`DirectoryFile`]): the frame must carry the device's Ed25519 signature
//! (made in its secure element, `aorta_crypto::auth::frame_message`), and
//! the device must be listed, verified and not revoked ([`check_frame`]),
//! before anything moves — a stranger's frame touches no sequence state,
//! queue, lag budget or log. It then checks what the header shows (a key
//! index inside the slice and inside the device's key-index window, a
//! sequence not already taken by other bytes). Opening the frame (its AEAD
//! tag) is left to the attested worker, which refuses and counts frames
//! that do not open (`aorta_worker_frames_refused_total`).
//!
//! One writer thread owns the log: it takes queued frames in batches of up
//! to [`GroupCommit::MAX_BATCH`] and hands each batch to [`GroupCommit`],
//! which deduplicates them by `(serial, sequence, SHA-256)`, appends, syncs
//! once per batch (group commit); only then is each request answered.
//! `aorta bench pipeline` drives the same [`GroupCommit`], so it measures
//! this ingest path. The queue is
//! bounded in frames and bytes; when it is full, or when the worker lags
//! further behind than `max_worker_lag_bytes`, ingest answers `503` with
//! `Retry-After` instead of buffering.
//!
//! When an append or a sync fails, the log rolls back to its last durable
//! end (truncate, fsync: `aorta_stream::log`) before anything else happens;
//! every frame of the batch that is not durable gets
//! [`IngestError::StorageFull`] (`507`, a full disk or quota) or
//! [`IngestError::LogUnavailable`] (`503`), both with `Retry-After`, and is
//! forgotten by the deduplication index, so the device's retry is appended
//! anew once space returns. Nothing is acknowledged at an offset that was
//! rolled back, and the writer keeps serving.
//!
//! The writer's log is a [`CommitLog`]: the embedded [`FileLog`], or, in
//! the server's `[cluster]` mode ([`Ingest::start_cluster`],
//! `docs/scale.md`), NATS JetStream through
//! [`aorta_cluster::FramePublisher`]. There a batch is durable once
//! JetStream acknowledged every publish of it. A failure or a timeout
//! refuses the whole batch (`503`), and JetStream's duplicate window
//! (`Nats-Msg-Id = serial/sequence`) stores the retry of a frame that was
//! in fact stored only once.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use aorta_crypto::directory::{Directory, Entry, Status};
use aorta_crypto::frame::{self, FrameError};
use aorta_stream::log::{FileLog, FrameLog, LogOptions, LogReader};
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
    /// The device was revoked by the data owner (403).
    #[error("device {serial} is revoked")]
    Revoked {
        /// Serial.
        serial: String,
    },
    /// The request carries no `Aorta-Signature` header (401).
    #[error("frame of device {serial} is not signed (Aorta-Signature header missing)")]
    SignatureMissing {
        /// Serial (as claimed).
        serial: String,
    },
    /// The signature is not the signature of these bytes by the key the
    /// directory lists for the serial — or the serial is not listed, or
    /// listed without a key: one answer, so a stranger learns nothing about
    /// which devices exist (401).
    #[error(
        "frame of device {serial}: no valid signature by a key the directory lists for this serial"
    )]
    SignatureInvalid {
        /// Serial (as claimed).
        serial: String,
    },
    /// The key index leaves the device's key-index window (403).
    #[error(
        "device {serial}: key index {index} at sequence {sequence} is outside its key-index window"
    )]
    KeyIndexWindow {
        /// Serial.
        serial: String,
        /// Sequence.
        sequence: u64,
        /// Key index.
        index: u16,
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
    /// The log's file system or quota is full: nothing of this frame was
    /// stored (507, retry later).
    #[error("the frame log's storage is full; the frame was not stored; retry later")]
    StorageFull,
    /// Writing or syncing the log failed (an I/O error) and was rolled
    /// back: nothing of this frame was stored (503, retry later).
    #[error("the frame log could not be written; the frame was not stored; retry later")]
    LogUnavailable,
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
            IngestError::SignatureMissing { .. } | IngestError::SignatureInvalid { .. } => 401,
            IngestError::NotVerified { .. }
            | IngestError::Revoked { .. }
            | IngestError::KeyIndexWindow { .. }
            | IngestError::KeyIndex { .. } => 403,
            IngestError::Replayed { .. } | IngestError::Stale { .. } => 409,
            IngestError::Overloaded(_) | IngestError::LogUnavailable => 503,
            IngestError::StorageFull => 507,
            IngestError::Internal(_) => 500,
        }
    }

    /// Seconds a client should wait before retrying (the `Retry-After`
    /// header), for refusals that a retry can cure.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            IngestError::Overloaded(_) | IngestError::LogUnavailable => Some(1),
            IngestError::StorageFull => Some(30),
            _ => None,
        }
    }

    /// The refusal for a failed log append or sync (already rolled back).
    pub fn from_log(e: &aorta_stream::StreamError) -> IngestError {
        match e {
            aorta_stream::StreamError::StorageFull { .. } => IngestError::StorageFull,
            _ => IngestError::LogUnavailable,
        }
    }

    /// Stable snake_case name (the JSON `error` field and metric label).
    pub fn name(&self) -> &'static str {
        match self {
            IngestError::Malformed(FrameError::Oversize { .. }) => "oversize",
            IngestError::Malformed(FrameError::UnsupportedVersion { .. }) => "unsupported_version",
            IngestError::Malformed(_) => "malformed_frame",
            IngestError::NotVerified { .. } => "device_not_verified",
            IngestError::Revoked { .. } => "device_revoked",
            IngestError::SignatureMissing { .. } => "device_signature_missing",
            IngestError::SignatureInvalid { .. } => "device_signature_invalid",
            IngestError::KeyIndexWindow { .. } => "key_index_out_of_window",
            IngestError::KeyIndex { .. } => "key_index_out_of_range",
            IngestError::Replayed { .. } => "sequence_replayed",
            IngestError::Stale { .. } => "sequence_stale",
            IngestError::Overloaded(_) => "overloaded",
            IngestError::StorageFull => "storage_full",
            IngestError::LogUnavailable => "log_unavailable",
            IngestError::Internal(_) => "internal",
        }
    }
}

/// Looks devices up in the public device directory
/// (`aorta_crypto::directory`): no key material, only what authenticates a
/// device and bounds its frames.
pub trait DeviceDirectory: Send + Sync {
    /// The directory entry of `serial`, if it is listed.
    fn lookup(&self, serial: &str) -> Result<Option<Entry>, String>;
}

impl DeviceDirectory for Directory {
    fn lookup(&self, serial: &str) -> Result<Option<Entry>, String> {
        Ok(self.devices.get(serial).cloned())
    }
}

/// The device directory file the data owner publishes
/// (`<registry>/directory.txt`, or a copy on the host), re-read when it
/// changes (checked at most every [`DirectoryFile::RECHECK`]): a device
/// revoked by the data owner is refused from the next check on, without a
/// restart. A file that stops parsing keeps the last good directory and is
/// logged.
pub struct DirectoryFile {
    path: std::path::PathBuf,
    state: std::sync::Mutex<DirState>,
}

struct DirState {
    force: bool,
    stamp: Option<(std::time::SystemTime, u64, u64)>,
    checked: std::time::Instant,
    dir: Arc<Directory>,
}

fn stamp(path: &Path) -> std::io::Result<(std::time::SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path)?;
    Ok((m.modified()?, m.len(), m.ino()))
}

fn read_directory(path: &Path) -> Result<Directory, String> {
    use std::io::Read as _;
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = String::new();
    f.take(aorta_crypto::directory::MAX_LEN as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Directory::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

impl DirectoryFile {
    /// How often the file is checked for changes.
    pub const RECHECK: std::time::Duration = std::time::Duration::from_millis(500);

    /// Opens the directory at `path` (it must exist and parse).
    pub fn open(path: &Path) -> Result<DirectoryFile, String> {
        let st = stamp(path).map_err(|e| {
            format!(
                "{}: {e} (the public device directory: `aorta factory` writes it into the registry directory; copy it to the host)",
                path.display()
            )
        })?;
        let dir = read_directory(path)?;
        Ok(DirectoryFile {
            path: path.to_owned(),
            state: std::sync::Mutex::new(DirState {
                force: false,
                stamp: Some(st),
                checked: std::time::Instant::now(),
                dir: Arc::new(dir),
            }),
        })
    }

    fn current(&self) -> Result<Arc<Directory>, String> {
        let mut st = self.state.lock().map_err(|_| "lock poisoned".to_string())?;
        if st.force || st.checked.elapsed() >= Self::RECHECK {
            st.force = false;
            st.checked = std::time::Instant::now();
            let now = stamp(&self.path).ok();
            if now != st.stamp {
                match read_directory(&self.path) {
                    Ok(d) => {
                        tracing::info!(target: "aorta::ingest", devices = d.devices.len(), "device directory reloaded");
                        st.dir = Arc::new(d);
                        st.stamp = now;
                    }
                    Err(e) => {
                        tracing::warn!(target: "aorta::ingest", error = %e, "device directory unreadable; keeping the last good one");
                    }
                }
            }
        }
        Ok(st.dir.clone())
    }
}

impl DirectoryFile {
    /// Re-check the file on the next lookup, without waiting for
    /// [`DirectoryFile::RECHECK`] (the in-process registry just rewrote it).
    pub fn invalidate(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.force = true;
        }
    }
}

impl DeviceDirectory for DirectoryFile {
    fn lookup(&self, serial: &str) -> Result<Option<Entry>, String> {
        Ok(self.current()?.devices.get(serial).cloned())
    }
}

/// A frame whose device and signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Serial.
    pub serial: String,
    /// Sequence.
    pub sequence: u64,
    /// The key-index window of the frame.
    pub window: Window,
}

/// What the log writer needs to enforce a device's key-index window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The frame's key index.
    pub key_index: u16,
    /// The device's slice length.
    pub slice_len: u16,
    /// The device's smallest `max_key_uses`.
    pub min_key_uses: u64,
}

/// Checks a sealed frame before anything else sees it: its cleartext
/// header is well-formed, `signature` (the `Aorta-Signature` header: 128
/// lower-case hex digits) is the Ed25519 signature of the frame by the key
/// the directory lists for its serial, and only then that the device is
/// verified, not revoked, and the key index inside its slice. A serial the
/// directory does not list, or lists without a key, gets the same answer as
/// a bad signature: a stranger learns nothing about which devices exist or
/// are revoked. Nothing is changed for a frame refused here.
pub fn check_frame(
    devices: &dyn DeviceDirectory,
    frame_bytes: &[u8],
    signature: Option<&str>,
) -> Result<Checked, IngestError> {
    let u = check_unsigned(devices, frame_bytes, signature)?;
    let ok = aorta_crypto::auth::verify_frame(&u.key, frame_bytes, &u.signature).is_ok();
    u.authenticated(ok)
}

/// A frame whose header parsed and whose serial has a listed key, with the
/// signature still to verify (in a batch:
/// [`aorta_crypto::auth::verify_frames`]) and the device's status still to
/// check ([`Unverified::authenticated`]).
#[derive(Debug, Clone)]
pub struct Unverified {
    /// What the header shows (and the device's window).
    pub checked: Checked,
    /// The device's public key from the directory.
    pub key: [u8; 32],
    /// The signature the request carried.
    pub signature: [u8; 64],
    status: Status,
}

impl Unverified {
    /// The frame once its signature has been verified (`signature_ok`):
    /// now the device's status and key index may be told.
    pub fn authenticated(self, signature_ok: bool) -> Result<Checked, IngestError> {
        let serial = self.checked.serial;
        if !signature_ok {
            return Err(IngestError::SignatureInvalid { serial });
        }
        match self.status {
            Status::Revoked => return Err(IngestError::Revoked { serial }),
            Status::Unverified => return Err(IngestError::NotVerified { serial }),
            Status::Verified => {}
        }
        let w = self.checked.window;
        if w.key_index >= w.slice_len {
            return Err(IngestError::KeyIndex {
                serial,
                index: w.key_index,
                slice: w.slice_len,
            });
        }
        Ok(Checked {
            serial,
            ..self.checked
        })
    }
}

/// [`check_frame`] up to the signature verification: the header, the
/// signature's presence and form, the directory's key for the serial (an
/// unknown serial or one without a key is [`IngestError::SignatureInvalid`]).
pub fn check_unsigned(
    devices: &dyn DeviceDirectory,
    frame_bytes: &[u8],
    signature: Option<&str>,
) -> Result<Unverified, IngestError> {
    let p = frame::parse(frame_bytes)?;
    let h = p.header;
    let Some(sig) = signature else {
        return Err(IngestError::SignatureMissing { serial: h.serial });
    };
    let entry = devices.lookup(&h.serial).map_err(IngestError::Internal)?;
    let (Some(e), Ok(sig)) = (
        entry,
        aorta_base::hex::decode_array::<64>(sig.trim(), aorta_base::hex::Case::Lower),
    ) else {
        return Err(IngestError::SignatureInvalid { serial: h.serial });
    };
    let Some(key) = e.public_key else {
        return Err(IngestError::SignatureInvalid { serial: h.serial });
    };
    Ok(Unverified {
        checked: Checked {
            serial: h.serial,
            sequence: h.sequence,
            window: Window {
                key_index: h.key_index,
                slice_len: e.slice_len,
                min_key_uses: e.min_key_uses,
            },
        },
        key,
        signature: *sig,
        status: e.status,
    })
}

/// Most signatures verified in one batch.
pub const VERIFY_BATCH: usize = 64;
/// Signatures waiting for the verifier before ingest answers 503.
pub const VERIFY_QUEUE: usize = 8192;

struct VerifyJob {
    key: [u8; 32],
    message: Vec<u8>,
    signature: [u8; 64],
    reply: oneshot::Sender<bool>,
}

/// The verifier thread: the signatures waiting, up to [`VERIFY_BATCH`] at
/// a time, through [`aorta_crypto::auth::verify_frames`].
fn verifier(mut rx: mpsc::Receiver<VerifyJob>) {
    let mut batch: Vec<VerifyJob> = Vec::with_capacity(VERIFY_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < VERIFY_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let items: Vec<aorta_crypto::auth::FrameSignature<'_>> = batch
            .iter()
            .map(|j| aorta_crypto::auth::FrameSignature {
                key: &j.key,
                message: &j.message,
                signature: &j.signature,
            })
            .collect();
        let ok = aorta_crypto::auth::verify_frames(&items);
        drop(items);
        for (j, ok) in batch.drain(..).zip(ok) {
            let _ = j.reply.send(ok);
        }
    }
}

struct Job {
    frame: Submission,
    reply: oneshot::Sender<Result<Ack, IngestError>>,
}

/// One checked frame for the log writer: its header's serial and sequence,
/// its digest (deduplication) and its log record (arrival time + bytes).
#[derive(Debug, Clone)]
pub struct Submission {
    serial: String,
    sequence: u64,
    digest: [u8; 16],
    record: Vec<u8>,
    window: Option<Window>,
}

impl Submission {
    /// The submission of `frame_bytes` from `serial` with `sequence`, which
    /// arrived at `arrival_us` (µs since the Unix epoch).
    pub fn new(serial: String, sequence: u64, arrival_us: i64, frame_bytes: &[u8]) -> Submission {
        Submission {
            serial,
            sequence,
            digest: digest(frame_bytes),
            record: aorta_stream::job::encode_record(arrival_us, frame_bytes),
            window: None,
        }
    }

    /// The submission of a checked frame: the log writer also enforces its
    /// key-index window.
    /// `message` is the frame's [`aorta_crypto::auth::frame_message`]
    /// (already computed for its signature): its hash of the frame is the
    /// deduplication digest too, so the frame is hashed once.
    pub fn checked(c: Checked, arrival_us: i64, frame_bytes: &[u8], message: &[u8]) -> Submission {
        let hash = message
            .get(aorta_crypto::auth::FRAME_LABEL.len()..)
            .and_then(|h| h.get(..16))
            .and_then(|h| <[u8; 16]>::try_from(h).ok());
        Submission {
            serial: c.serial,
            sequence: c.sequence,
            digest: hash.unwrap_or_else(|| digest(frame_bytes)),
            record: aorta_stream::job::encode_record(arrival_us, frame_bytes),
            window: Some(c.window),
        }
    }

    /// Length of the frame (without the log record's arrival prefix).
    pub fn frame_len(&self) -> usize {
        self.record
            .len()
            .saturating_sub(aorta_stream::job::RECORD_PREFIX)
    }
}

/// What [`Seen`] remembers of a sequence: digest, offset, key index.
type SeenEntry = ([u8; 16], u64, Option<u16>);

/// How to forget a frame appended in a batch that was rolled back.
struct Undo {
    /// Position in the batch.
    index: usize,
    serial: String,
    sequence: u64,
    offset: u64,
    popped: Vec<(u64, SeenEntry)>,
    len: u64,
}

#[derive(Default)]
struct Seen {
    /// sequence → (digest, offset, key index), the last [`DEDUP_WINDOW`]
    /// sequences (the key index of sealed frames: the key-index window).
    recent: BTreeMap<u64, SeenEntry>,
}

impl Seen {
    /// Remembers a frame; returns the entries it pushed out of the window.
    fn remember(
        &mut self,
        sequence: u64,
        digest: [u8; 16],
        offset: u64,
        key_index: Option<u16>,
    ) -> Vec<(u64, SeenEntry)> {
        self.recent.insert(sequence, (digest, offset, key_index));
        let mut popped = Vec::new();
        while self.recent.len() as u64 > DEDUP_WINDOW {
            popped.extend(self.recent.pop_first());
        }
        popped
    }

    /// Whether a frame at `(sequence, key_index)` fits the key-index window
    /// between its remembered neighbours (the nearest frames before and
    /// after it); a device's first frame is checked from `(0, 0)`.
    fn window_ok(&self, sequence: u64, w: &Window) -> bool {
        let ok = |from: (u64, u16), to: (u64, u16)| {
            aorta_crypto::keys::index_window_ok(w.slice_len, w.min_key_uses, from, to)
        };
        let indexed = |(s, r): (&u64, &SeenEntry)| r.2.map(|i| (*s, i));
        let me = (sequence, w.key_index);
        let before = self.recent.range(..sequence).rev().find_map(indexed);
        let after = self
            .recent
            .range(sequence.saturating_add(1)..)
            .find_map(indexed);
        match (before, after) {
            (None, None) => ok((0, 0), (sequence.saturating_add(1), w.key_index)),
            (b, a) => b.is_none_or(|b| ok(b, me)) && a.is_none_or(|a| ok(me, a)),
        }
    }
}

/// What one group commit answered: one result per submission, in order.
#[derive(Debug)]
pub struct Committed {
    /// Each submission's acknowledgement or refusal (after a failed append
    /// or sync, every submission not durable is refused with
    /// [`IngestError::StorageFull`] or [`IngestError::LogUnavailable`]).
    pub acks: Vec<Result<Ack, IngestError>>,
    /// Why an append or the batch's sync failed, if one did. The log was
    /// rolled back to its durable end and can take the next batch.
    pub sync_error: Option<String>,
}

/// Where the log writer puts accepted frames: the embedded [`FileLog`]
/// (the default), or NATS JetStream ([`aorta_cluster::FramePublisher`],
/// the server's `[cluster]` mode, `docs/scale.md`). [`GroupCommit`] runs
/// the same checks in front of either.
///
/// `append` gives a record a position; `sync` makes every appended record
/// durable or fails, and then the log has rolled back to
/// [`CommitLog::durable_end`] (nothing past it may be acknowledged).
pub trait CommitLog: Send + 'static {
    /// Appends `record` (the log record of `serial`'s frame `sequence`);
    /// its position. Not durable until [`CommitLog::sync`].
    fn append(
        &mut self,
        serial: &str,
        sequence: u64,
        record: &[u8],
    ) -> Result<u64, aorta_stream::StreamError>;
    /// Makes every appended record durable (or rolls back and fails).
    fn sync(&mut self) -> Result<(), aorta_stream::StreamError>;
    /// Where the next append goes.
    fn end(&self) -> u64;
    /// Everything before it is durable.
    fn durable_end(&self) -> u64;
    /// After a successful sync, the offset the device is acknowledged with
    /// for the record appended at `position` in that batch, and whether the
    /// log found it a duplicate; `None`: the position itself, not a
    /// duplicate (the file log).
    fn settled(&self, _position: u64) -> Option<(u64, bool)> {
        None
    }
}

impl CommitLog for FileLog {
    fn append(
        &mut self,
        _serial: &str,
        _sequence: u64,
        record: &[u8],
    ) -> Result<u64, aorta_stream::StreamError> {
        FrameLog::append(self, record)
    }
    fn sync(&mut self) -> Result<(), aorta_stream::StreamError> {
        FrameLog::sync(self)
    }
    fn end(&self) -> u64 {
        FrameLog::end(self)
    }
    fn durable_end(&self) -> u64 {
        FileLog::durable_end(self)
    }
}

/// JetStream: a record is durable once its publish acknowledgement came
/// back; the device is acknowledged with its stream sequence.
impl CommitLog for aorta_cluster::FramePublisher {
    fn append(
        &mut self,
        serial: &str,
        sequence: u64,
        record: &[u8],
    ) -> Result<u64, aorta_stream::StreamError> {
        Ok(aorta_cluster::FramePublisher::append(
            self, serial, sequence, record,
        )?)
    }
    fn sync(&mut self) -> Result<(), aorta_stream::StreamError> {
        Ok(aorta_cluster::FramePublisher::sync(self)?)
    }
    fn end(&self) -> u64 {
        aorta_cluster::FramePublisher::end(self)
    }
    fn durable_end(&self) -> u64 {
        aorta_cluster::FramePublisher::durable_end(self)
    }
    fn settled(&self, position: u64) -> Option<(u64, bool)> {
        aorta_cluster::FramePublisher::settled(self, position)
    }
}

/// Most submissions the server's writer thread commits at once.
const MAX_BATCH: usize = 1024;

/// The log's only writer: deduplication and replay checks, appends, one
/// sync per batch (group commit). The server's writer thread and
/// `aorta bench pipeline` both drive it, over the file log or JetStream
/// ([`CommitLog`]).
pub struct GroupCommit<L: CommitLog = FileLog> {
    log: L,
    seen: HashMap<String, Seen>,
    counters: Arc<IngestCounters>,
}

impl GroupCommit {
    /// Most submissions the server's writer thread commits at once.
    pub const MAX_BATCH: usize = MAX_BATCH;

    /// Opens (or creates) the log at `path` and rebuilds the deduplication
    /// index from it; `counters` receive accepted frames, bytes and syncs.
    pub fn open(
        path: &Path,
        counters: Arc<IngestCounters>,
    ) -> Result<GroupCommit, aorta_stream::StreamError> {
        GroupCommit::open_with(path, counters, LogOptions::default())
    }

    /// [`GroupCommit::open`] with segments ([`LogOptions`]).
    pub fn open_with(
        path: &Path,
        counters: Arc<IngestCounters>,
        opts: LogOptions,
    ) -> Result<GroupCommit, aorta_stream::StreamError> {
        let log = FileLog::open_with(path, opts)?;
        if let Some(t) = log.torn_tail() {
            tracing::warn!(target: "aorta::ingest", file = %path.display(), offset = t.offset, bytes = t.len, "cut the log's torn tail (a write a crash left incomplete, never acknowledged)");
        }
        let mut seen: HashMap<String, Seen> = HashMap::new();
        let mut offset = log.first_offset()?;
        let (mut frames, mut bytes) = (0u64, 0u64);
        loop {
            let (recs, next) = log.read_entries(offset, 4096)?;
            if recs.is_empty() {
                break;
            }
            for (at, r) in &recs {
                frames += 1;
                bytes += r.len() as u64;
                if let Ok((_, f)) = aorta_stream::job::decode_record(r)
                    && let Ok(p) = frame::parse(f)
                {
                    seen.entry(p.header.serial.clone()).or_default().remember(
                        p.header.sequence,
                        digest(f),
                        *at,
                        Some(p.header.key_index),
                    );
                }
            }
            offset = next;
        }
        counters.frames_at_start.store(frames, Ordering::Relaxed);
        counters.bytes_at_start.store(bytes, Ordering::Relaxed);
        Ok(GroupCommit {
            log,
            seen,
            counters,
        })
    }

    /// A reader of the log (for workers).
    pub fn reader(&self) -> LogReader {
        self.log.reader()
    }
}

impl<L: CommitLog> GroupCommit<L> {
    /// A writer over `log` that starts with no memory of earlier frames:
    /// a stateless ingest node in front of JetStream, whose duplicate
    /// window (`Nats-Msg-Id`) drops a retry this node never saw.
    pub fn with_log(log: L, counters: Arc<IngestCounters>) -> GroupCommit<L> {
        GroupCommit {
            log,
            seen: HashMap::new(),
            counters,
        }
    }

    /// The log's end offset (durable after a successful [`GroupCommit::commit`]).
    pub fn end(&self) -> u64 {
        self.log.end()
    }

    /// The log's durable end: everything before it is on stable storage.
    pub fn durable_end(&self) -> u64 {
        self.log.durable_end()
    }

    /// Commits `batch`: an exact re-send of a remembered frame is
    /// acknowledged again at its offset, a remembered sequence with other
    /// bytes is [`IngestError::Replayed`], one older than the window is
    /// [`IngestError::Stale`], anything else is appended; then one sync.
    /// When an append or the sync fails, the log has rolled back to its
    /// durable end: the rest of the batch is not tried, every frame past
    /// that end is forgotten and refused ([`IngestError::from_log`]).
    pub fn commit(&mut self, batch: Vec<Submission>) -> Committed {
        let mut acks = Vec::with_capacity(batch.len());
        let mut undo = Vec::new();
        let mut failure: Option<aorta_stream::StreamError> = None;
        for j in batch {
            if let Some(e) = &failure {
                acks.push(Err(IngestError::from_log(e)));
                continue;
            }
            let r = self.admit(j, acks.len(), &mut undo, &mut failure);
            acks.push(r);
        }
        if failure.is_none() && !undo.is_empty() {
            self.counters.syncs.fetch_add(1, Ordering::Relaxed);
            failure = self.log.sync().err();
        }
        if failure.is_none() {
            // Where the log put each new frame (JetStream: its stream
            // sequence, and whether its duplicate window dropped it).
            for u in &undo {
                if let Some((offset, duplicate)) = self.log.settled(u.offset) {
                    if let Some(Ok(a)) = acks.get_mut(u.index) {
                        a.offset = offset;
                        a.duplicate = duplicate;
                    }
                    if let Some(r) = self
                        .seen
                        .get_mut(&u.serial)
                        .and_then(|s| s.recent.get_mut(&u.sequence))
                    {
                        r.1 = offset;
                    }
                }
            }
        }
        if let Some(e) = &failure {
            // Forget what was rolled back, newest first.
            let durable = self.log.durable_end();
            for u in undo.iter().rev().filter(|u| u.offset >= durable) {
                if let Some(s) = self.seen.get_mut(&u.serial) {
                    if s.recent.get(&u.sequence).is_some_and(|r| r.1 == u.offset) {
                        s.recent.remove(&u.sequence);
                    }
                    s.recent.extend(u.popped.iter().cloned());
                }
            }
            // From the first frame rolled back (or the failed append) on,
            // every verdict may rest on rolled-back state: all refused.
            let first = undo
                .iter()
                .find(|u| u.offset >= durable)
                .map_or(acks.len(), |u| u.index);
            let first = acks
                .iter()
                .position(|a| {
                    matches!(
                        a,
                        Err(IngestError::StorageFull | IngestError::LogUnavailable)
                    )
                })
                .map_or(first, |i| i.min(first));
            for a in acks.iter_mut().skip(first) {
                *a = Err(IngestError::from_log(e));
            }
        }
        for a in &acks {
            match a {
                Ok(a) if a.duplicate => {
                    self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {
                    self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {}
            }
        }
        let durable = self.log.durable_end();
        let bytes: u64 = undo
            .iter()
            .filter(|u| u.offset < durable)
            .map(|u| u.len)
            .sum();
        self.counters.bytes.fetch_add(bytes, Ordering::Relaxed);
        Committed {
            acks,
            sync_error: failure.map(|e| e.to_string()),
        }
    }

    /// Checks submission `index` of a batch against the remembered
    /// sequences and appends it (noting in `undo` how to forget it); a
    /// failed append is put in `failure`.
    fn admit(
        &mut self,
        j: Submission,
        index: usize,
        undo: &mut Vec<Undo>,
        failure: &mut Option<aorta_stream::StreamError>,
    ) -> Result<Ack, IngestError> {
        let s = self.seen.entry(j.serial.clone()).or_default();
        match s.recent.get(&j.sequence) {
            Some((d, off, _)) if *d == j.digest => Ok(Ack {
                serial: j.serial,
                sequence: j.sequence,
                offset: *off,
                duplicate: true,
                reneg_offer: None,
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
            None if j.window.is_some_and(|w| !s.window_ok(j.sequence, &w)) => {
                Err(IngestError::KeyIndexWindow {
                    index: j.window.map_or(0, |w| w.key_index),
                    serial: j.serial,
                    sequence: j.sequence,
                })
            }
            None => {
                let off = match self.log.append(&j.serial, j.sequence, &j.record) {
                    Ok(off) => off,
                    Err(e) => {
                        let refusal = IngestError::from_log(&e);
                        *failure = Some(e);
                        return Err(refusal);
                    }
                };
                let popped = s.remember(j.sequence, j.digest, off, j.window.map(|w| w.key_index));
                undo.push(Undo {
                    index,
                    serial: j.serial.clone(),
                    sequence: j.sequence,
                    offset: off,
                    popped,
                    len: j.record.len() as u64,
                });
                Ok(Ack {
                    serial: j.serial,
                    sequence: j.sequence,
                    offset: off,
                    duplicate: false,
                    reneg_offer: None,
                })
            }
        }
    }
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
    /// Frame body chunks whose source was over its rate, so read later.
    pub throttled: AtomicU64,
    /// Refusals by name.
    pub refused: std::sync::Mutex<BTreeMap<&'static str, u64>>,
    /// Frames the log held when it was opened (`accepted` counts the ones
    /// appended since).
    pub frames_at_start: AtomicU64,
    /// Their bytes (`bytes` counts the ones appended since).
    pub bytes_at_start: AtomicU64,
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
    verify: mpsc::Sender<VerifyJob>,
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
    /// Reader of the log for workers (`GET /v1/log`); `None` in cluster
    /// mode, where workers read JetStream.
    pub reader: Option<LogReader>,
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
        Ingest::start_with(
            dir,
            devices,
            queue_frames,
            queue_bytes,
            max_lag,
            Retention::default(),
        )
    }

    /// [`Ingest::start`] with a segmented log and retention
    /// ([`Retention`]): a thread deletes, every [`Retention::check_every`],
    /// the segments the worker's checkpoint has passed and whose last write
    /// is older than [`Retention::keep`].
    pub fn start_with(
        dir: &Path,
        devices: Arc<dyn DeviceDirectory>,
        queue_frames: usize,
        queue_bytes: usize,
        max_lag: u64,
        retention: Retention,
    ) -> Result<Ingest, aorta_stream::StreamError> {
        let counters = Arc::new(IngestCounters::default());
        let path = dir.join("frames.log");
        let log = GroupCommit::open_with(
            &path,
            counters.clone(),
            LogOptions {
                segment_bytes: retention.segment_bytes,
            },
        )?;
        let worker_offset = Arc::new(AtomicU64::new(0));
        if let Some(keep) = retention.keep {
            let covered = Arc::downgrade(&worker_offset);
            let every = retention.check_every;
            std::thread::Builder::new()
                .name("aorta-log-retention".into())
                .spawn(move || retire(&path, &covered, keep, every))
                .map_err(|e| aorta_stream::StreamError::Store(Box::new(e)))?;
        }
        let reader = log.reader();
        Ingest::launch(
            log,
            Some(reader),
            worker_offset,
            devices,
            queue_frames,
            queue_bytes,
            max_lag,
        )
    }

    /// Ingest in front of NATS JetStream (the server's `[cluster]` mode):
    /// the same checks, queue and writer thread, whose group commit
    /// publishes each batch and acknowledges a frame only after
    /// JetStream's publish acknowledgement ([`CommitLog`]). No local log,
    /// no worker-lag budget (workers read JetStream, `docs/scale.md`).
    pub fn start_cluster(
        publisher: aorta_cluster::FramePublisher,
        devices: Arc<dyn DeviceDirectory>,
        queue_frames: usize,
        queue_bytes: usize,
    ) -> Result<Ingest, aorta_stream::StreamError> {
        let counters = Arc::new(IngestCounters::default());
        let log = GroupCommit::with_log(publisher, counters);
        Ingest::launch(
            log,
            None,
            Arc::new(AtomicU64::new(0)),
            devices,
            queue_frames,
            queue_bytes,
            0,
        )
    }

    /// Starts the verifier and writer threads over `log`.
    fn launch<L: CommitLog>(
        log: GroupCommit<L>,
        reader: Option<LogReader>,
        worker_offset: Arc<AtomicU64>,
        devices: Arc<dyn DeviceDirectory>,
        queue_frames: usize,
        queue_bytes: usize,
        max_lag: u64,
    ) -> Result<Ingest, aorta_stream::StreamError> {
        let counters = log.counters.clone();
        let (end_tx, end_rx) = watch::channel(log.durable_end());
        let (tx, rx) = mpsc::channel(queue_frames);
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let (verify, verify_rx) = mpsc::channel(VERIFY_QUEUE);
        std::thread::Builder::new()
            .name("aorta-verifier".into())
            .spawn(move || verifier(verify_rx))
            .map_err(|e| aorta_stream::StreamError::Store(Box::new(e)))?;
        {
            let queued = queued_bytes.clone();
            std::thread::Builder::new()
                .name("aorta-log-writer".into())
                .spawn(move || writer(log, rx, end_tx, queued))
                .map_err(|e| aorta_stream::StreamError::Store(Box::new(e)))?;
        }
        Ok(Ingest {
            tx,
            verify,
            queued_bytes,
            max_queued_bytes: queue_bytes,
            max_lag,
            devices,
            end: end_rx,
            worker_offset,
            counters,
            reader,
        })
    }

    /// Whether the log writer thread runs (it holds the open log; it ends
    /// only if it fails).
    pub fn writer_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Checks `frame` and its device signature ([`check_frame`]).
    pub fn check(
        &self,
        frame_bytes: &[u8],
        signature: Option<&str>,
    ) -> Result<Checked, IngestError> {
        check_frame(self.devices.as_ref(), frame_bytes, signature)
    }

    /// What the first bytes of a frame body show before the rest is read:
    /// `Ok(None)` until its header is complete, then the frame's whole
    /// length; the error [`check_frame`] would give once the header shows
    /// the body cannot be a frame of a listed device (not a frame header,
    /// oversize, or a serial without a listed key: `signature_invalid`, as
    /// after the whole body). Lets the server refuse such a body at its
    /// first bytes instead of reading (and decrypting the TLS of) up to
    /// `max_frame_bytes` of it.
    pub fn precheck(&self, prefix: &[u8]) -> Result<Option<usize>, IngestError> {
        let Some(p) = frame::parse_prefix(prefix)? else {
            return Ok(None);
        };
        let serial = p.header.serial;
        match self
            .devices
            .lookup(&serial)
            .map_err(IngestError::Internal)?
        {
            Some(e) if e.public_key.is_some() => Ok(Some(p.len)),
            _ => Err(IngestError::SignatureInvalid { serial }),
        }
    }

    /// Authenticates, queues and waits until the frame is durable. A frame
    /// refused by [`check_frame`] touches nothing: no sequence state, no
    /// queue, no lag budget, no log.
    pub async fn submit(
        &self,
        arrival_us: i64,
        frame_bytes: &[u8],
        signature: Option<&str>,
    ) -> Result<Ack, IngestError> {
        let r = self.submit_inner(arrival_us, frame_bytes, signature).await;
        if let Err(e) = &r {
            self.counters.refuse(e);
        }
        r
    }

    async fn submit_inner(
        &self,
        arrival_us: i64,
        frame_bytes: &[u8],
        signature: Option<&str>,
    ) -> Result<Ack, IngestError> {
        // The header and the directory first (cheap); then the signature,
        // batched with other requests' by the verifier thread. Nothing of
        // the device's moves before both passed.
        let u = check_unsigned(self.devices.as_ref(), frame_bytes, signature)?;
        let message = aorta_crypto::auth::frame_message(frame_bytes);
        let (reply, verdict) = oneshot::channel();
        let job = VerifyJob {
            key: u.key,
            message: message.clone(),
            signature: u.signature,
            reply,
        };
        if let Err(e) = self.verify.try_send(job) {
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => {
                    IngestError::Overloaded("signature verification queue full")
                }
                mpsc::error::TrySendError::Closed(_) => {
                    IngestError::Internal("the signature verifier stopped".into())
                }
            });
        }
        let ok = verdict
            .await
            .map_err(|_| IngestError::Internal("the signature verifier stopped".into()))?;
        let checked = u.authenticated(ok)?;
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
            frame: Submission::checked(checked, arrival_us, frame_bytes, &message),
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

/// How the frame log is cut into segments and how long they are kept
/// (server config: `log_segment_bytes`, `log_retention_hours`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Size of a log segment ([`LogOptions::segment_bytes`]; `u64::MAX`:
    /// one file).
    pub segment_bytes: u64,
    /// Keep a segment at least this long after its last write, and until
    /// the worker's checkpoint has passed it; `None`: keep everything.
    pub keep: Option<std::time::Duration>,
    /// How often the retention thread looks.
    pub check_every: std::time::Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            segment_bytes: u64::MAX,
            keep: None,
            check_every: std::time::Duration::from_secs(60),
        }
    }
}

/// The retention thread: while the ingest lives (`covered` upgrades),
/// deletes the segments its worker checkpoint offset covers and `keep`
/// has expired ([`aorta_stream::log::retire_segments`]).
fn retire(
    path: &Path,
    covered: &std::sync::Weak<AtomicU64>,
    keep: std::time::Duration,
    every: std::time::Duration,
) {
    loop {
        std::thread::sleep(every);
        let Some(c) = covered.upgrade() else {
            return;
        };
        let covered = c.load(Ordering::Relaxed);
        drop(c);
        let cutoff = std::time::SystemTime::now()
            .checked_sub(keep)
            .unwrap_or(std::time::UNIX_EPOCH);
        match aorta_stream::log::retire_segments(path, covered, cutoff) {
            Ok(gone) if !gone.is_empty() => {
                tracing::info!(target: "aorta::ingest", segments = gone.len(), checkpoint_offset = covered, "retention deleted log segments");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(target: "aorta::ingest", error = %e, "log retention failed");
            }
        }
    }
}

/// The server's writer thread: batches of queued frames through
/// [`GroupCommit`], the durable end published after each, then the replies.
fn writer<L: CommitLog>(
    mut log: GroupCommit<L>,
    mut rx: mpsc::Receiver<Job>,
    end: watch::Sender<u64>,
    queued: Arc<AtomicUsize>,
) {
    let mut batch = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(batch.len());
        let mut frames = Vec::with_capacity(batch.len());
        for j in batch.drain(..) {
            queued.fetch_sub(j.frame.frame_len(), Ordering::AcqRel);
            replies.push(j.reply);
            frames.push(j.frame);
        }
        let committed = log.commit(frames);
        // The durable end only: after a failure the log rolled back to it.
        end.send_if_modified(|e| {
            let d = log.durable_end();
            let changed = *e != d;
            *e = d;
            changed
        });
        if let Some(e) = &committed.sync_error {
            // Rolled back to the durable end: the batch's frames past it
            // are refused (507/503 with Retry-After), the next batch is
            // tried afresh, so ingest resumes by itself once space returns.
            tracing::error!(target: "aorta::ingest", error = %e, durable_end = log.durable_end(), "log append or sync failed; rolled back, batch refused");
        }
        for (reply, r) in replies.into_iter().zip(committed.acks) {
            let _ = reply.send(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(serial: &str, sequence: u64, bytes: &[u8]) -> Submission {
        Submission::new(serial.to_owned(), sequence, 1, bytes)
    }

    #[test]
    fn group_commit_dedups_refuses_replays_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let counters = Arc::new(IngestCounters::default());
        let mut gc = GroupCommit::open(&dir.path().join("frames.log"), counters.clone()).unwrap();
        let c = gc.commit(vec![sub("A", 0, b"zero"), sub("A", 1, b"one")]);
        assert!(c.sync_error.is_none());
        let acks: Vec<Ack> = c.acks.into_iter().map(Result::unwrap).collect();
        assert!(acks.iter().all(|a| !a.duplicate));
        assert!(acks[1].offset > acks[0].offset);
        assert_eq!(gc.end(), acks[1].offset + 8 + 8 + 3);
        let c = gc.commit(vec![sub("A", 0, b"zero"), sub("A", 1, b"uno")]);
        let mut acks = c.acks.into_iter();
        let again = acks.next().unwrap().unwrap();
        assert!(again.duplicate);
        assert_eq!(again.offset, 0);
        assert!(matches!(
            acks.next().unwrap(),
            Err(IngestError::Replayed { sequence: 1, .. })
        ));
        assert_eq!(counters.accepted.load(Ordering::Relaxed), 2);
        assert_eq!(counters.duplicates.load(Ordering::Relaxed), 1);
        assert_eq!(counters.syncs.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_checked_submission_dedups_like_one_rebuilt_from_the_log() {
        // The digest taken from the signed message must be the one the log
        // rebuild computes, or an exact re-send after a restart would be
        // refused as a replay.
        let frame = b"some frame bytes";
        let c = Checked {
            serial: "A".into(),
            sequence: 3,
            window: Window {
                key_index: 0,
                slice_len: 8,
                min_key_uses: 1,
            },
        };
        let checked = Submission::checked(c, 1, frame, &aorta_crypto::auth::frame_message(frame));
        assert_eq!(checked.digest, sub("A", 3, frame).digest);
    }

    #[test]
    fn group_commit_refuses_sequences_older_than_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let mut gc = GroupCommit::open(
            &dir.path().join("frames.log"),
            Arc::new(IngestCounters::default()),
        )
        .unwrap();
        let batch = (1..=DEDUP_WINDOW)
            .map(|s| sub("B", s, &s.to_le_bytes()))
            .collect();
        assert!(gc.commit(batch).acks.iter().all(Result::is_ok));
        let c = gc.commit(vec![sub("B", 0, b"late")]);
        assert!(matches!(
            c.acks.as_slice(),
            [Err(IngestError::Stale { sequence: 0, .. })]
        ));
    }
}
