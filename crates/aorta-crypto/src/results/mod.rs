//! Analysis results sealed to clinicians, and worker checkpoint state sealed
//! under a broker-released state key (issue 6, item 2). Spec:
//! `docs/results-format.md`; vectors: `docs/vectors/results/`.
//!
//! The design follows `age`: a clinician ("subscriber") holds an X25519
//! [`ClinicianIdentity`] and publishes its [`ClinicianPublic`] key. An
//! attested worker opens one [`ResultSession`] per subscriber and run: a
//! random 32-byte session key, HPKE-sealed (RFC 9180 base mode,
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305 — the suite of
//! `aorta_enclave::keywrap`) to the clinician's public key, travels as a
//! **session envelope** (`AORS`). Each result (JSON bytes) is then sealed
//! with AES-256-GCM under a key derived from the session key, as a **sealed
//! result** (`AORR`) whose associated data binds the session id, the
//! subscriber id and the result id: the untrusted host that stores results
//! cannot move one to another result id or another subscriber.
//!
//! ```text
//! worker:    ResultSession::open_new(sub, pk) ─▶ (session, envelope) ; session.seal(rid, json) ─▶ sealed
//! clinician: open_envelope(identity, envelope) ─▶ OpenedSession ; opened.open(rid, sealed) ─▶ json
//! ```
//!
//! Checkpoint state: [`seal_state`] / [`open_state`] (`AOST`) seal a worker's
//! operator state under the 32-byte state key the broker releases to attested
//! workers, bound to a context (e.g. the assignment name).
//!
//! All parsers take untrusted bytes and return [`ResultsError`]; none panics.
//! Secret material (identity, session keys, opened plaintext) lives in
//! zeroizing memory and has no byte-printing `Debug`. `ring`'s expanded
//! AES key schedule is not zeroized by `ring`, so it is built per call and
//! lives only for that call. This module does no I/O except drawing
//! randomness from the OS (`aorta_base::random`).
//!
//! ```
//! use aorta_crypto::results::{ClinicianIdentity, ResultSession, open_envelope};
//! let alice = ClinicianIdentity::generate()?;
//! let (session, envelope) = ResultSession::open_new("dr-alice", &alice.public())?;
//! let sealed = session.seal("ECG-0001/hr/000042", br#"{"hr_bpm":72.5}"#)?;
//! let opened = open_envelope(&alice, &envelope)?;
//! let json = opened.open("ECG-0001/hr/000042", &sealed)?;
//! assert_eq!(&json[..], br#"{"hr_bpm":72.5}"#);
//! assert!(opened.open("ECG-0001/hr/000043", &sealed).is_err()); // moved: refused
//! # Ok::<(), aorta_crypto::results::ResultsError>(())
//! ```

//!
//! Layout by concern: `keys` (clinician keys and their text forms),
//! `envelope` (the `AORS` session envelope), `session` (result sessions and
//! the `AORR` sealed result), `checkpoint` (a session's checkpoint bytes),
//! `state` (`AOST` sealed state), `primitives` (the shared AEAD/HKDF/HPKE
//! plumbing). Every public item is re-exported here.

use std::fmt;

use aorta_base::codec::DecodeError;

mod checkpoint;
mod envelope;
mod ids;
mod keys;
mod primitives;
mod session;
mod state;

pub use envelope::{EnvelopeInfo, envelope_info, open_envelope, open_envelope_as};
pub use keys::{ClinicianIdentity, ClinicianPublic};
pub use session::{OpenedSession, ResultSession, sealed_result_session_id};
pub use state::{open_state, seal_state, seal_state_with_nonce};

pub use ids::{ERASE_TOKEN_INFO, EraseToken, RESULT_ID_INFO, opaque_id};

pub(crate) use checkpoint::SessionCheckpoint;
pub(crate) use envelope::SessionEnvelope;
pub(crate) use primitives::{SealedResult, SealedState};

/// Magic of a session envelope.
pub const SESSION_MAGIC: [u8; 4] = *b"AORS";
/// Magic of a sealed result.
pub const RESULT_MAGIC: [u8; 4] = *b"AORR";
/// Magic of sealed checkpoint state.
pub const STATE_MAGIC: [u8; 4] = *b"AOST";
/// The only session envelope version this build writes and reads.
pub const SESSION_VERSION: u8 = 1;
/// The only sealed result version this build writes and reads.
pub const RESULT_VERSION: u8 = 1;
/// The only sealed state version this build writes and reads.
pub const STATE_VERSION: u8 = 1;
/// The only session checkpoint version this build writes and reads.
pub const SESSION_CHECKPOINT_VERSION: u8 = 1;

/// Longest subscriber id or result id, in bytes (ids are non-empty UTF-8).
pub const MAX_ID_LEN: usize = 255;
/// Largest result plaintext (16 MiB).
pub const MAX_RESULT_LEN: usize = 16 << 20;
/// Largest checkpoint state plaintext (256 MiB).
pub const MAX_STATE_LEN: usize = 256 << 20;
/// Longest state context, in bytes.
pub const MAX_CONTEXT_LEN: usize = 65_535;

/// Session id length.
pub const SESSION_ID_LEN: usize = 16;
/// AEAD nonce length (AES-256-GCM).
pub const NONCE_LEN: usize = 12;
/// AEAD tag length (AES-256-GCM and ChaCha20-Poly1305).
pub const TAG_LEN: usize = 16;
/// HPKE encapsulated key length (X25519).
pub const ENC_LEN: usize = 32;
/// Session key length.
pub const SESSION_KEY_LEN: usize = 32;
/// Length of the HPKE ciphertext in an envelope (session key + tag).
pub const ENVELOPE_CT_LEN: usize = SESSION_KEY_LEN + TAG_LEN;
/// Sealed result header length: magic, version, session id, nonce.
pub const RESULT_HEADER_LEN: usize = 4 + 1 + SESSION_ID_LEN + NONCE_LEN;
/// Sealed state header length: magic, version, nonce.
pub const STATE_HEADER_LEN: usize = 4 + 1 + NONCE_LEN;

/// Prefix of a clinician secret key's text form (then 64 upper-case hex digits).
pub const SECRET_TEXT_PREFIX: &str = "AORTA-CLINICIAN-SECRET-1";
/// Prefix of a clinician public key's text form (then 64 lower-case hex digits).
pub const PUBLIC_TEXT_PREFIX: &str = "aorta-clinician-1";

/// Start of the HPKE `info` of a session envelope (then `len(sub) ‖ sub ‖ session_id`).
pub const SESSION_INFO_LABEL: &[u8] = b"aorta result session v1";
/// HKDF `info` deriving a session's AEAD key.
const RESULT_KEY_LABEL: &[u8] = b"aorta result key v1";
/// HKDF `info` deriving the AEAD key of sealed state.
const STATE_KEY_LABEL: &[u8] = b"aorta state key v1";
/// Longest identity file text [`ClinicianIdentity::from_file_text`] reads.
pub const MAX_IDENTITY_FILE_LEN: usize = 64 * 1024;

/// Which container (or text form) an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Container {
    /// A session envelope (`AORS`).
    SessionEnvelope,
    /// A sealed result (`AORR`).
    SealedResult,
    /// Sealed checkpoint state (`AOST`).
    SealedState,
    /// A clinician secret key in text form.
    SecretKeyText,
    /// A clinician public key in text form.
    PublicKeyText,
    /// A result session checkpoint ([`ResultSession::to_checkpoint`]).
    SessionCheckpoint,
    /// An argument given by the caller (ids, plaintext sizes).
    Argument,
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SessionEnvelope => "session envelope",
            Self::SealedResult => "sealed result",
            Self::SealedState => "sealed state",
            Self::SecretKeyText => "clinician secret key",
            Self::PublicKeyText => "clinician public key",
            Self::SessionCheckpoint => "result session checkpoint",
            Self::Argument => "argument",
        })
    }
}

/// Why sealing or opening results or state failed.
///
/// Blame: `Truncated`, `BadMagic`, `UnsupportedVersion`, `BadField` and
/// `Oversize` are malformed input (or, for [`Container::Argument`], a caller
/// bug); `WrongSubscriber`, `WrongSession` and `AuthenticationFailed` are a
/// wrong key / misfiled or tampered bytes (a misbehaving host); `BadRecipient`
/// is configuration (an unusable public key); `Random` is the environment;
/// `Internal` is our bug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResultsError {
    /// Fewer bytes than the container needs.
    #[error("{what} is {len} bytes, shorter than the {min} it needs")]
    Truncated {
        /// The container.
        what: Container,
        /// Its length.
        len: usize,
        /// The least length it needs.
        min: usize,
    },
    /// The magic (or text prefix) is not the container's.
    #[error("{what}: bad magic or prefix (expected {expected:?})")]
    BadMagic {
        /// The container.
        what: Container,
        /// The expected magic or prefix.
        expected: &'static str,
    },
    /// A version this build does not read.
    #[error(
        "{what} version {version} is not supported (this build reads version {supported}); \
         upgrade aorta to a release that reads version {version}"
    )]
    UnsupportedVersion {
        /// The container.
        what: Container,
        /// The version found.
        version: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// A field is malformed.
    #[error("{what}: bad {field} at offset {offset}: {reason}")]
    BadField {
        /// The container.
        what: Container,
        /// The field.
        field: &'static str,
        /// Byte offset of the field.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The envelope is addressed to another subscriber.
    #[error("session envelope is for subscriber {found:?}, not {expected:?}")]
    WrongSubscriber {
        /// The subscriber the caller expected.
        expected: String,
        /// The subscriber the envelope names.
        found: String,
    },
    /// The sealed result belongs to another session.
    #[error(
        "sealed result belongs to session {found}, this session is {expected}; open its own envelope"
    )]
    WrongSession {
        /// This session's id (hex).
        expected: String,
        /// The result's session id (hex).
        found: String,
    },
    /// The AEAD (or HPKE) refused: wrong key, wrong binding (result id,
    /// subscriber, context), or altered bytes.
    #[error(
        "{what} does not authenticate: wrong key, wrong result id/subscriber/context, or altered bytes"
    )]
    AuthenticationFailed {
        /// The container.
        what: Container,
    },
    /// A size limit is exceeded.
    #[error("{what}: {field} is {len} bytes, over the limit of {max}")]
    Oversize {
        /// The container.
        what: Container,
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The recipient public key cannot be used (an X25519 low-order point).
    #[error("clinician public key is unusable (X25519 low-order point); ask for a correct key")]
    BadRecipient,
    /// The OS random number generator failed.
    #[error("the OS random number generator failed: {reason}")]
    Random {
        /// The OS error.
        reason: String,
    },
    /// A primitive refused where it cannot (our bug).
    #[error("internal error: {what}")]
    Internal {
        /// What failed.
        what: &'static str,
    },
}

type Result<T> = std::result::Result<T, ResultsError>;

// ---------------------------------------------------------------- helpers

/// Maps a [`DecodeError`] from reading `what` (of `len` bytes in all) onto
/// the existing typed errors: running short is [`ResultsError::Truncated`]
/// (needing at least `min` bytes, or what the reader proved it needs),
/// trailing bytes and invalid fields are [`ResultsError::BadField`].
pub(crate) fn decode_error(
    what: Container,
    len: usize,
    min: usize,
    e: DecodeError,
) -> ResultsError {
    match e {
        DecodeError::Short { offset, needed, .. } => ResultsError::Truncated {
            what,
            len,
            min: min.max(offset.saturating_add(needed)),
        },
        DecodeError::Trailing { offset, .. } => ResultsError::BadField {
            what,
            field: "length",
            offset,
            reason: "trailing bytes",
        },
        DecodeError::Invalid {
            field,
            offset,
            reason,
        } => ResultsError::BadField {
            what,
            field,
            offset,
            reason,
        },
        _ => ResultsError::Internal {
            what: "unknown decode error",
        },
    }
}

#[cfg(test)]
mod tests;
