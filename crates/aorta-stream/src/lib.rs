//! # aorta-stream — the streaming engine
//!
//! This crate owns how aorta processes many patients' streams at once, in
//! event time, and how it survives crashes:
//!
//! - [`KeyedOperator`] — the one generic operator trait: per-key state, an
//!   event handler and a watermark handler. Every analysis runs as one (see
//!   [`window::WindowAggregate`], which turns any [`window::Aggregator`] into
//!   an operator over tumbling or sliding event-time windows).
//! - [`Engine`] — routes events to per-key state, keeps a per-key watermark
//!   (largest event time seen minus the allowed out-of-orderness), fires
//!   operators as watermarks advance, drops and counts late events, evicts
//!   idle keys, and checkpoints/restores all operator state.
//! - [`log::FrameLog`], [`checkpoint::CheckpointStore`], [`results::ResultSink`]
//!   — the durable log of accepted input, the store of checkpoints and the
//!   idempotent results store, as traits with embedded file-backed
//!   implementations. A distributed deployment (NATS JetStream, MQTT ingest)
//!   replaces these implementations without touching operators.
//! - [`pipeline::Pipeline`] — log → engine → results with checkpoints, the
//!   piece that makes `kill -9` at any instant harmless.
//! - [`ecg`] — the ECG operator: raw samples in; heart rate (sliding
//!   windows), HRV (tumbling 5-minute windows) and rhythm events out.
//! - [`rr`] — the RR-interval job: per patient, tumbling 5-minute windows of
//!   count, mean RR, SDNN, RMSSD, LF, HF and LF/HF, over Parquet or CSV files.
//! - [`rr_parquet`] — RR events in Parquet (`parquet` crate, column API, no
//!   Arrow); hostile files are typed errors.
//!
//! - [`job`] — the ECG job over a log of frames: the frame-opening,
//!   result-sealing and state-sealing traits with their plain (unprotected)
//!   implementations; the attested implementations, the transport to a
//!   server and the worker loop live in `aorta-worker`.
//!
//! It does no networking and holds no key. Exactly-once results come from three rules:
//! input is acknowledged only once it is durable in the log; a checkpoint
//! records operator state together with the log offset it covers; every
//! result has a deterministic id (key, window, kind) and the results store
//! ignores an id it already holds. After a crash the engine restores the last
//! checkpoint and replays the log from its offset: results recomputed during
//! replay are identical and deduplicated, so none is lost or emitted twice.
//!
//! ```
//! use aorta_stream::{Engine, EngineConfig};
//! use aorta_stream::window::{Aggregator, WindowAggregate, WindowSpec};
//!
//! /// Counts events per one-second tumbling window.
//! struct Count;
//! impl Aggregator for Count {
//!     type In = ();
//!     type Acc = u64;
//!     type Out = u64;
//!     fn add(&self, acc: &mut u64, _t: i64, _ev: &()) { *acc += 1; }
//!     fn finish(&self, acc: u64, _start: i64, _end: i64) -> Option<u64> { Some(acc) }
//! }
//!
//! let op = WindowAggregate::new(Count, WindowSpec::tumbling(1_000_000)?);
//! let mut engine = Engine::new(op, EngineConfig::default());
//! let mut out = Vec::new();
//! for t in (0..3_000_000).step_by(100_000) {
//!     engine.push(7u32, t, (), &mut out);
//! }
//! engine.finish(&mut out);
//! assert_eq!(out.iter().map(|r| r.value).collect::<Vec<_>>(), vec![10, 10, 10]);
//! # Ok::<(), aorta_stream::StreamError>(())
//! ```
#![deny(missing_docs)]

pub mod checkpoint;
pub mod ecg;
mod ecg_strip;
mod engine;
pub mod job;
pub mod log;
mod parquet_pages;
pub mod pipeline;
pub mod results;
pub mod rr;
pub mod rr_parquet;
pub mod window;

/// Fuzzing entry points over the engine's own byte formats: each decodes
/// arbitrary bytes and, when they decode, checks that encoding gives them
/// back exactly. None panics on any input except on a broken round trip
/// (the bug a fuzzer looks for). Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    aorta_base::fuzz_entry_points! {
        /// A log file's record header (length and CRC-32).
        record_header: crate::log::RecordHeader;

        /// A log record (arrival time and frame).
        log_record: crate::job::LogRecord<'_>;
    }
}

pub use engine::{Engine, EngineConfig, EngineStats, KeyedOperator, Output};

/// Event time in microseconds since the Unix epoch (UTC).
pub type Micros = i64;

/// Errors of the streaming engine and its stores. (Network, peer-protocol
/// and attestation failures are `aorta-worker`'s; a store implemented there
/// reports them through [`StreamError::Store`].)
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// Stored bytes are corrupt (checksum mismatch, bad framing, bad JSON).
    #[error("{}: corrupt at byte {offset}: {what}", path.display())]
    Corrupt {
        /// The file.
        path: std::path::PathBuf,
        /// Byte offset.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A log record or a frame is malformed, or cannot be encoded.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A frame could not be opened: a stable code and fixed text (never
    /// plaintext or key bytes).
    #[error("frame refused (code {code}): {reason}")]
    Refused {
        /// Stable code.
        code: u16,
        /// Fixed description.
        reason: String,
    },
    /// A log, results store, checkpoint store or sealer implemented outside
    /// this crate failed; its own typed error is the source.
    #[error(transparent)]
    Store(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A bug of ours: an invariant broke (serialising our own state failed,
    /// a lock was poisoned, a thread panicked).
    #[error("internal error: {0}")]
    Internal(String),
    /// A log or results file is damaged before its end: intact records
    /// follow the damage (or more bytes than one unsynced batch can leave),
    /// so cutting it would lose acknowledged records. Nothing was changed;
    /// the message names the file, the offset and the commands to run.
    #[error(
        "{}: damaged at byte {offset}: {what}. Nothing was cut. Run `aorta log check {}` to list the damaged ranges, then `aorta log salvage {} --out NEW` to copy every intact record (offsets kept) to NEW, and replace the file with NEW",
        path.display(), path.display(), path.display()
    )]
    Damaged {
        /// The file.
        path: std::path::PathBuf,
        /// Start of the first damaged range.
        offset: u64,
        /// What is wrong there.
        what: String,
    },
    /// The file system or the quota is full (`ENOSPC`, `EDQUOT`). The log
    /// was rolled back to its last durable end: nothing appended since the
    /// last successful sync is kept. Appends work again once space returns.
    #[error("{}: storage full: {error}", path.display())]
    StorageFull {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The offset lies in a log segment that retention deleted.
    #[error("{}: offset {offset} was deleted by retention; the log now starts at {first}", path.display())]
    Deleted {
        /// The log.
        path: std::path::PathBuf,
        /// The offset asked for.
        offset: u64,
        /// The first offset still held.
        first: u64,
    },
    /// A record is larger than the store accepts.
    #[error("record of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Record length.
        len: usize,
        /// Limit.
        max: usize,
    },
}
