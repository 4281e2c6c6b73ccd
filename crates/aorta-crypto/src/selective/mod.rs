//! Selective encryption with fragmentation — Algorithm 1 of the aorta paper
//! 004 (Qiu et al., "Privacy-preserving health data sharing for medical
//! cyber-physical systems"), with the holes it leaves closed.
//!
//! * [`split`]: D_input = D_head + C (DICOM-aware, or an explicit byte count).
//! * [`units`]: the per-unit transform — 256-bit units, eight 32-bit pieces,
//!   keyed PRNG choice of the private piece, a 224-bit mask M_i keyed by the
//!   piece and the counter, public part = the other pieces XOR M_i. The mask
//!   is H_i = SHA-256(piece ‖ key ‖ i) (faithful mode, and strong mode in
//!   format v1) or AES-256 of two blocks (piece ‖ i ‖ block ‖ domain) under a
//!   per-record key (strong mode, format v2). Parallel (rayon), SHA-NI/AES-NI.
//! * [`keys`]: K = Argon2id(passphrase, salt); strong mode's per-record secret
//!   S; the unit keys handed to recipients.
//! * [`container`]: the two versioned containers (public fragment, private
//!   fragment sealed with AES-256-GCM under HKDF(K)), binding everything so
//!   that any change is detected and recovery never returns wrong bytes.
//!   New records are written in format [`FormatVersion::V2`]; v1 records
//!   still open.
//! * [`entropy`]: Shannon entropy in bits per byte (the paper's Table 2).
//!
//! Modes ([`Mode`]): `Faithful` is Algorithm 1 as published; with K known an
//! attacker holding the public fragment can brute-force each unit's 2^32
//! private-piece candidates (see `docs/selective-encryption.md`). `Strong`
//! (the default) keys every unit's mask and the PRNG with a random 256-bit
//! per-record secret kept only inside the private fragment, so K plus every
//! public fragment reveals nothing.
//!
//! ```
//! use aorta_crypto::selective::{protect, recover_with_passphrase, KdfParams, Mode, ProtectOptions};
//! let opts = ProtectOptions { mode: Mode::Strong, kdf: KdfParams::INSECURE_TEST, ..Default::default() };
//! let rec = protect(b"some health record bytes", b"correct horse", &opts).unwrap();
//! let back = recover_with_passphrase(&rec.public, &rec.private, b"correct horse").unwrap();
//! assert_eq!(back, b"some health record bytes");
//! ```

pub mod container;
pub mod entropy;
pub mod keys;
pub mod split;
pub mod units;

pub use container::{
    PrivateHeader, ProtectOptions, Protected, PublicHeader, Randomness, RecordId, RecoveryMaterial,
    open_private, open_private_with_key, protect, protect_deterministic, protect_deterministic_as,
    protect_with_key, protect_with_key_as, recover, recover_with_passphrase,
};
pub use keys::{KdfParams, MasterKey, RecordSecret, UnitKeys};
pub use split::{HeaderRule, Split, SplitKind};

/// The format version of a record's three objects (public fragment, private
/// fragment, recovery material): all three of one record carry the same one.
///
/// * `V1`: the public checksum is two-level SHA-256; strong mode masks each
///   unit with SHA-256 like faithful mode.
/// * `V2` (written for new records): the public checksum is two-level
///   BLAKE3; strong mode masks each unit with AES-256 under a per-record key
///   ([`UnitMask::Aes256`]). Faithful mode's unit transform is unchanged
///   (Algorithm 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FormatVersion {
    /// Format version 1 (read, and written only on request).
    V1,
    /// Format version 2 (the default for new records).
    V2,
}

impl FormatVersion {
    /// The version new records are written in.
    pub const LATEST: Self = FormatVersion::V2;

    /// The version byte stored in the headers.
    pub fn to_byte(self) -> u8 {
        match self {
            FormatVersion::V1 => 1,
            FormatVersion::V2 => 2,
        }
    }

    /// Parses a version byte; `None` for a version this build does not read.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(FormatVersion::V1),
            2 => Some(FormatVersion::V2),
            _ => None,
        }
    }
}

impl Default for FormatVersion {
    fn default() -> Self {
        Self::LATEST
    }
}

/// How each unit's 224-bit mask is computed (see [`units`]); follows from a
/// record's [`Mode`] and [`FormatVersion`] ([`UnitMask::for_record`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnitMask {
    /// Algorithm 1: H_i = SHA-256(piece ‖ hash_key ‖ u64be(i)), first 28 bytes.
    Sha256,
    /// AES-256 under hash_key of the two blocks
    /// `piece ‖ u64be(i) ‖ b ‖ 0x4d ‖ 0x00 0x00`, b = 0, 1; first 28 bytes.
    Aes256,
}

impl UnitMask {
    /// The mask a record of `mode` in format `version` uses: AES-256 for
    /// strong mode from v2 on, SHA-256 otherwise.
    pub fn for_record(version: FormatVersion, mode: Mode) -> Self {
        match (version, mode) {
            (FormatVersion::V2, Mode::Strong) => UnitMask::Aes256,
            (FormatVersion::V1, _) | (_, Mode::Faithful) => UnitMask::Sha256,
        }
    }
}

/// Which variant of the algorithm a record uses; recorded in both containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Algorithm 1 as published: H_i = SHA-256(C_i^j ‖ K ‖ i), PRNG keyed by K.
    Faithful,
    /// Default: a random per-record secret S (only in the private fragment)
    /// keys the unit mask and the PRNG seed (AES-256 mask in format v2,
    /// SHA-256 in v1).
    #[default]
    Strong,
}

impl Mode {
    /// The byte stored in container headers.
    pub fn to_byte(self) -> u8 {
        match self {
            Mode::Faithful => 1,
            Mode::Strong => 2,
        }
    }
    /// Parses a header byte.
    pub fn from_byte(b: u8) -> Result<Self, SelectiveError> {
        match b {
            1 => Ok(Mode::Faithful),
            2 => Ok(Mode::Strong),
            other => Err(SelectiveError::UnknownMode { byte: other }),
        }
    }
    /// `"faithful"` or `"strong"`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Faithful => "faithful",
            Mode::Strong => "strong",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = SelectiveError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "faithful" => Ok(Mode::Faithful),
            "strong" => Ok(Mode::Strong),
            _ => Err(SelectiveError::UnknownModeName {
                name: s.chars().take(32).collect(),
            }),
        }
    }
}

/// Errors of selective encryption, split by blame: malformed input
/// (`Truncated`, `BadMagic`, `UnknownVersion`, `MalformedDicom`, …), failed
/// authentication (`PrivateAuthFailed`, `PublicMismatch`, …, which mean
/// tampering, corruption or a wrong key), configuration (`KdfParamsOutOfRange`,
/// `HeaderBytesTooLarge`) and our bug (`Internal`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SelectiveError {
    /// The input ended before a field.
    #[error(
        "{container} is truncated: {field} needs {needed} bytes at offset {offset}, {available} available"
    )]
    Truncated {
        /// Which container.
        container: &'static str,
        /// Which field.
        field: &'static str,
        /// Offset of the field.
        offset: u64,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// Wrong magic bytes.
    #[error("not an aorta {container}: magic {found:02x?}, expected {expected:?}")]
    BadMagic {
        /// Which container.
        container: &'static str,
        /// The bytes found.
        found: [u8; 4],
        /// The expected magic.
        expected: &'static str,
    },
    /// A version this build does not read.
    #[error(
        "{container} has format version {version}, this aorta reads versions 1 to {supported}; upgrade aorta to read it"
    )]
    UnknownVersion {
        /// Which container.
        container: &'static str,
        /// The version found.
        version: u8,
        /// The newest version supported.
        supported: u8,
    },
    /// Unknown mode byte.
    #[error("unknown selective-encryption mode byte {byte}")]
    UnknownMode {
        /// The byte found.
        byte: u8,
    },
    /// Unknown mode name.
    #[error("unknown mode {name:?}: expected \"strong\" or \"faithful\"")]
    UnknownModeName {
        /// The name given.
        name: String,
    },
    /// A field has a value the format forbids.
    #[error("{container}: invalid {field} at offset {offset}: {reason}")]
    InvalidField {
        /// Which container.
        container: &'static str,
        /// Which field.
        field: &'static str,
        /// Offset of the field.
        offset: u64,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// The private fragment did not authenticate.
    #[error(
        "private fragment failed authentication: wrong passphrase, or the private fragment or its header was modified"
    )]
    PrivateAuthFailed,
    /// The public fragment is not the one the private fragment was made with.
    #[error(
        "public fragment does not match the private fragment ({reason}): it was modified, corrupted or belongs to another record"
    )]
    PublicMismatch {
        /// What differed.
        reason: &'static str,
    },
    /// The public container's own checksum does not match its contents.
    #[error("public fragment checksum mismatch: the fragment is corrupted or was modified")]
    PublicChecksum,
    /// Malformed DICOM.
    #[error(
        "malformed DICOM at offset {offset}: {reason} (use --header-bytes N to split it manually)"
    )]
    MalformedDicom {
        /// Offset of the problem.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// `--header-bytes` larger than the input.
    #[error("--header-bytes {requested} exceeds the input length {input_len}")]
    HeaderBytesTooLarge {
        /// Requested header length.
        requested: u64,
        /// Input length.
        input_len: u64,
    },
    /// Argon2 parameters outside the accepted range.
    #[error("Argon2id parameters out of range: m={m_cost_kib} KiB, t={t_cost}, p={p_cost}")]
    KdfParamsOutOfRange {
        /// Memory cost.
        m_cost_kib: u32,
        /// Passes.
        t_cost: u32,
        /// Lanes.
        p_cost: u32,
    },
    /// The KDF failed.
    #[error("Argon2id failed: {reason}")]
    Kdf {
        /// The library's message.
        reason: String,
    },
    /// The OS random number generator failed.
    #[error("operating-system random number generator failed: {reason}")]
    Rng {
        /// The library's message.
        reason: String,
    },
    /// Input too large for this platform.
    #[error("content of {len} bytes is too large for this platform")]
    TooLarge {
        /// The length.
        len: u64,
    },
    /// A bug in aorta.
    #[error("internal error (a bug in aorta, please report): {what}")]
    Internal {
        /// What went wrong.
        what: &'static str,
    },
}
