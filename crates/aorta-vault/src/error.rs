//! The vault's error type, split by blame ([`VaultError::blame`]): malformed
//! input (`Malformed`, `Decode`, `UnknownVersion`, `GrantForOtherRecord`),
//! refusals (`GrantNotForUs`, `Revoked`, `Expired`, a wrong passphrase or a
//! fragment that fails its check), tampered stored evidence
//! (`AuditTampered`, `PublicUnavailable` naming the stores), the environment (`Store`, `NotFound`, `TooFewShards`,
//! `Io`, `Write`, `Random`), configuration (`Config`) and our bug (`Hpke`,
//! `Internal`).

use aorta_base::codec::DecodeError;
use aorta_crypto::selective::SelectiveError;

/// Who is to blame for a [`VaultError`]: what a front-end tells its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Blame {
    /// The caller's input is malformed or does not fit (fix the input).
    Input,
    /// A check ran and said no: wrong identity or passphrase, an expired or
    /// revoked grant, a fragment that fails its authentication.
    Refused,
    /// Stored evidence fails its integrity check: the audit log, or every
    /// stored copy of a public fragment (the error names the stores).
    Tampered,
    /// A store, the file system or the random source failed.
    Environment,
    /// The vault's configuration is wrong.
    Configuration,
    /// A bug in aorta.
    Bug,
}

/// Everything that can go wrong in the vault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// Selective encryption refused or failed.
    #[error(transparent)]
    Selective(#[from] SelectiveError),
    /// A container or file of ours is malformed.
    #[error("{what} is malformed at offset {offset}: {reason}")]
    Malformed {
        /// Which kind of object.
        what: &'static str,
        /// Offset of the problem.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A byte format of ours fails to decode (short, trailing or invalid).
    #[error("{what} is malformed: {source}")]
    Decode {
        /// Which kind of object.
        what: &'static str,
        /// What the decoder found.
        #[source]
        source: DecodeError,
    },
    /// Unknown format version.
    #[error(
        "{what} has format version {version}, this aorta reads version {supported}; upgrade aorta to read it"
    )]
    UnknownVersion {
        /// Which kind of object.
        what: &'static str,
        /// Version found.
        version: u8,
        /// Version supported.
        supported: u8,
    },
    /// The grant did not open with this identity (not addressed to it, or tampered).
    #[error(
        "grant refused: it does not open with this identity (addressed to someone else, or modified)"
    )]
    GrantNotForUs,
    /// The grant was not issued by the patient whose key the recipient
    /// pinned (a stranger's grant, base mode, or modified).
    #[error("grant refused: not from the patient: {reason}")]
    GrantNotFromPatient {
        /// Why.
        reason: &'static str,
    },
    /// The patient's gate refused the release.
    #[error("the patient's gate refused: {status} (gate time {})", iso(*gate_time))]
    GateRefused {
        /// The gate's reason.
        status: &'static str,
        /// The gate's clock.
        gate_time: u64,
    },
    /// The gate's answer is not a release for this request from the patient.
    #[error("the gate's answer is refused: {reason}")]
    GateAnswer {
        /// Why.
        reason: &'static str,
    },
    /// The gate could not be reached or answered out of protocol.
    #[error("gate {url}: {reason}")]
    GateUnreachable {
        /// The gate URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The grant is for another record than the one asked for.
    #[error("the grant is for record {grant_record}, not record {record}")]
    GrantForOtherRecord {
        /// The record the grant names (hex).
        grant_record: String,
        /// The record asked for (hex).
        record: String,
    },
    /// The grant has expired.
    #[error("grant refused: expired at {} (now {})", iso(*expires_at), iso(*now))]
    Expired {
        /// Expiry time.
        expires_at: u64,
        /// Current time.
        now: u64,
    },
    /// The grant was revoked by the patient.
    #[error("grant refused: grant {grant_id} was revoked")]
    Revoked {
        /// The grant id in hex.
        grant_id: String,
    },
    /// The grant names a record this vault does not hold.
    #[error("record {record_id} not found in {store}")]
    NotFound {
        /// Record id hex.
        record_id: String,
        /// Which store.
        store: String,
    },
    /// Not enough Reed-Solomon shards survive.
    #[error(
        "public fragment of record {record_id}: only {available} of the {needed} shards needed could be read"
    )]
    TooFewShards {
        /// Record id hex.
        record_id: String,
        /// Shards read and verified.
        available: usize,
        /// Shards needed.
        needed: usize,
    },
    /// No public store gave a copy of the public fragment that verifies:
    /// each store and what was wrong with its copy.
    #[error(
        "public fragment of record {record_id}: no store holds a copy that verifies ({})",
        list(failures)
    )]
    PublicUnavailable {
        /// Record id hex.
        record_id: String,
        /// Every store whose copy was not used, and why.
        failures: Vec<crate::integrity::StoreFailure>,
    },
    /// An object store failed.
    #[error("store {store}: {source}")]
    Store {
        /// Which store.
        store: String,
        /// The underlying error.
        #[source]
        source: object_store::Error,
    },
    /// Local file I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An owner-only file write failed.
    #[error(transparent)]
    Write(#[from] aorta_base::fs::WriteError),
    /// The operating system's random source failed.
    #[error(transparent)]
    Random(#[from] aorta_base::random::RandomError),
    /// A front-end's argument or input file is unusable (an empty
    /// passphrase, a validity that is not a duration, a key file that is
    /// not text).
    #[error("{what}: {reason}")]
    BadInput {
        /// The argument or file.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// Bad configuration.
    #[error("vault configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The audit log fails verification.
    #[error("audit log tampered or corrupted at entry {index}: {reason}")]
    AuditTampered {
        /// Entry index (0-based line number).
        index: u64,
        /// What failed.
        reason: String,
    },
    /// An institution, doctor certificate or emergency request was refused
    /// (`crate::institution`).
    #[error(transparent)]
    Institution(#[from] crate::institution::InstitutionError),
    /// HPKE failed while sealing.
    #[error("HPKE failed: {reason}")]
    Hpke {
        /// The library's message.
        reason: String,
    },
    /// A bug in aorta.
    #[error("internal error (a bug in aorta, please report): {what}")]
    Internal {
        /// What went wrong.
        what: &'static str,
    },
}

impl VaultError {
    /// Who is to blame: the input, a refusing check, tampered evidence, the
    /// environment, the configuration, or aorta.
    pub fn blame(&self) -> Blame {
        match self {
            Self::Selective(
                SelectiveError::PrivateAuthFailed
                | SelectiveError::PublicMismatch { .. }
                | SelectiveError::PublicChecksum,
            )
            | Self::GrantNotForUs
            | Self::GrantNotFromPatient { .. }
            | Self::GateRefused { .. }
            | Self::GateAnswer { .. }
            | Self::Expired { .. }
            | Self::Revoked { .. } => Blame::Refused,
            Self::Selective(_)
            | Self::Malformed { .. }
            | Self::Decode { .. }
            | Self::UnknownVersion { .. }
            | Self::GrantForOtherRecord { .. }
            | Self::BadInput { .. } => Blame::Input,
            Self::AuditTampered { .. } => Blame::Tampered,
            Self::PublicUnavailable { failures, .. } => {
                if failures.iter().any(|f| f.fault.is_integrity()) {
                    Blame::Tampered
                } else {
                    Blame::Environment
                }
            }
            Self::NotFound { .. }
            | Self::TooFewShards { .. }
            | Self::Store { .. }
            | Self::GateUnreachable { .. }
            | Self::Io { .. }
            | Self::Write(_)
            | Self::Random(_) => Blame::Environment,
            Self::Config { .. } => Blame::Configuration,
            Self::Institution(e) => e.blame(),
            Self::Hpke { .. } | Self::Internal { .. } => Blame::Bug,
        }
    }

    /// Maps a [`DecodeError`] of format `what`.
    pub(crate) fn decode(what: &'static str) -> impl FnOnce(DecodeError) -> Self {
        move |source| Self::Decode { what, source }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

fn list(failures: &[crate::integrity::StoreFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Unix seconds as RFC 3339 UTC (`2026-12-07T14:41:01Z`) for messages
/// people read; out of RFC 3339's range, the number.
fn iso(secs: u64) -> String {
    if secs > 253_402_300_799 {
        return format!("unix time {secs}");
    }
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}
