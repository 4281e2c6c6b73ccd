//! # aorta-device — the device side of paper 003's key scheme
//!
//! This crate owns what runs on the ECG device: the key store behind the
//! [`se::SecureElement`] trait (file-backed for development, PKCS#11 for
//! hardware), the key-rotation state and the [`rotation::Sealer`] that turns
//! samples into sealed upload frames, the crash-safe offline buffer
//! ([`queue::OfflineQueue`]), the upload loop ([`queue::flush`]), the live
//! device agent ([`agent::run`]: paced production, offline buffering, retry
//! with capped exponential backoff and jitter, clean shutdown) and its
//! uplinks: HTTPS ([`http::HttpsTransport`]) and MQTT 5
//! ([`mqtt::MqttTransport`], `docs/mqtt.md`). It also owns the device's frame sources
//! ([`source`]: a replayed WFDB record, a record still being written, RR
//! intervals, named by [`source::Input`]; the one WFDB-header-to-calibration
//! mapping [`source::calibration_of`]), the operator's status line
//! ([`progress::ProgressLine`]), the device directory layout ([`DeviceDir`]:
//! key store, rotation state, queue) and provisioning's device step
//! ([`DeviceDir::install_keys`]).
//!
//! It must never write key bytes anywhere but the secure element, never log
//! them, never reuse a (key, nonce) pair, and never drop a buffered frame
//! except by the documented full-queue policy.
//!
//! ```no_run
//! use aorta_device::{rotation::Sealer, se::FileSecureElement, queue::{OfflineQueue, QueueLimits}};
//! use aorta_crypto::frame::ChannelCalibration;
//! let dir = aorta_device::DeviceDir::new("device");
//! let mut sealer = Sealer::new(FileSecureElement::open(dir.se())?, dir.state())?;
//! let mut queue = OfflineQueue::open(dir.queue(), QueueLimits::default())?;
//! let cal = [ChannelCalibration::new(200.0, 1024, 1024, 11, "mV", "MLII")];
//! let frame = sealer.seal(0, 360_000, &cal, &[&[1024, 1030, 1041][..]])?;
//! queue.push(frame.sequence, &frame.bytes)?;
//! # Ok::<(), aorta_device::DeviceError>(())
//! ```
#![deny(missing_docs)]

pub mod agent;
pub mod dir;
mod fsutil;
pub mod http;
pub mod mqtt;
pub mod pkcs11;
pub mod progress;
pub mod queue;
pub mod rotation;
pub mod se;
pub mod source;

pub use dir::{DeviceDir, Installed};

/// Fuzzing entry points over the device's own disk formats: each decodes
/// arbitrary bytes and, when they decode, checks that encoding gives them
/// back exactly. None panics on any input except on a broken round trip
/// (the bug a fuzzer looks for). Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    aorta_base::fuzz_entry_points! {
        /// A file key store (`se.key`), checksum checked.
        key_store: crate::se::KeyStoreFile<'_>;

    }

    /// A key-rotation state file (`rotation.state`). Version 2 round-trips
    /// exactly; a version-1 file (still read) is written back as version 2,
    /// so for it the oracle checks that the upgrade keeps the value and that
    /// the version-2 bytes then round-trip exactly.
    #[allow(
        clippy::panic,
        reason = "a fuzz oracle reports a broken round trip by panicking"
    )]
    pub fn rotation_state(data: &[u8]) -> bool {
        use crate::rotation::RotationState;
        use aorta_base::codec::{Decode, Encode};
        if data.get(4) != Some(&1) {
            return aorta_base::codec::fuzz_exact::<RotationState>(data);
        }
        let Ok(v) = RotationState::from_bytes(data) else {
            return false;
        };
        let upgraded = v.to_bytes();
        if RotationState::from_bytes(&upgraded).ok() != Some(v)
            || !aorta_base::codec::fuzz_exact::<RotationState>(&upgraded)
        {
            panic!("a version-1 rotation state does not survive its upgrade");
        }
        true
    }
}

use std::path::PathBuf;

/// A device-side error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// File I/O failed.
    #[error("{}: {error}", path.display())]
    Io {
        /// File.
        path: PathBuf,
        /// Error.
        error: std::io::Error,
    },
    /// An owner-only atomic file write failed.
    #[error(transparent)]
    Write(aorta_base::fs::WriteError),
    /// Refusing to overwrite a key store.
    #[error("{}: already exists; refusing to overwrite a key store", path.display())]
    AlreadyExists {
        /// File.
        path: PathBuf,
    },
    /// The key store file is damaged or not ours.
    #[error("{}: bad key store: {why}", path.display())]
    BadKeyStore {
        /// File.
        path: PathBuf,
        /// What is wrong.
        why: &'static str,
    },
    /// The rotation state file is damaged or not ours.
    #[error("{}: bad rotation state: {why}", path.display())]
    BadState {
        /// File.
        path: PathBuf,
        /// What is wrong.
        why: &'static str,
    },
    /// The key store is in an older format that holds no signing key.
    #[error(
        "{}: key store version {version} has no signing key; re-provision the device \
         (`aorta factory provision`) to get a version 2 key store",
        path.display()
    )]
    OldKeyStore {
        /// File.
        path: PathBuf,
        /// The version found.
        version: u8,
    },
    /// A key object on the PKCS#11 token is not as provisioning made it
    /// (weaker attributes, wrong class or type, a duplicate or a planted
    /// object): the secure element refuses to use it.
    #[error(
        "PKCS#11 key {label}: {attribute} {problem}; refusing to use this token \
         (re-provision the device on a fresh token)"
    )]
    TokenKeyRefused {
        /// The key's label, `aorta:<serial>:<j>` or `aorta:<serial>:sign`.
        label: String,
        /// The PKCS#11 attribute at fault (`CKA_SENSITIVE`, `CKA_CLASS`, ...).
        attribute: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// Key derivation failed.
    #[error(transparent)]
    Key(#[from] aorta_crypto::keys::KeyError),
    /// Sealing failed.
    #[error(transparent)]
    Seal(#[from] aorta_crypto::frame::SealError),
    /// A renegotiation message was refused.
    #[error("renegotiation refused: {0}")]
    Reneg(#[from] aorta_crypto::reneg::RenegError),
    /// The PKCS#11 token failed.
    #[error("PKCS#11: {0}")]
    Pkcs11(String),
    /// The CSPRNG failed.
    #[error("system random number generator failed")]
    Rng,
    /// 2^64 sequence numbers used.
    #[error("sequence numbers exhausted")]
    SequenceExhausted,
    /// A frame larger than the whole queue.
    #[error("frame of {len} bytes is larger than the offline queue")]
    FrameTooLargeForQueue {
        /// Frame length.
        len: u64,
    },
    /// The sequence is already queued.
    #[error("sequence {sequence} is already queued")]
    DuplicateSequence {
        /// Sequence.
        sequence: u64,
    },
    /// The network is down (transport failure); frames stay queued.
    #[error("network unavailable: {0}")]
    Network(String),
    /// The server is reachable but cannot take the frame now (HTTP 429, 5xx
    /// or an unexpected status): transient, the frame stays queued and is
    /// retried after a backoff (at least `retry_after` when the server said so).
    #[error("server busy (HTTP {status}): {detail}")]
    ServerBusy {
        /// HTTP status.
        status: u16,
        /// The server's explanation, if any.
        detail: String,
        /// The server's `Retry-After`, already capped by the transport.
        retry_after: Option<std::time::Duration>,
    },
    /// The frame source (a record, a growing file, a sensor) failed.
    #[error("frame source: {0}")]
    Source(String),
    /// A WFDB record (header, signal file or annotations) could not be read.
    #[error(transparent)]
    Wfdb(#[from] aorta_signal::wfdb::WfdbError),
    /// RR text is not in aorta's one RR text format.
    #[error("RR text{}: {error}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    RrText {
        /// The file, if the text came from one.
        path: Option<PathBuf>,
        /// The line and what is wrong with it.
        #[source]
        error: aorta_signal::hrv::RrParseError,
    },
    /// The peer broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// Bad configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// A renegotiation Value that authenticated but breaks the device's own
    /// rules (raises `max_key_uses`, or exceeds its rate limit): not applied.
    #[error("renegotiation refused by the device: {reason}")]
    RenegRefused {
        /// Why.
        reason: String,
    },
}
