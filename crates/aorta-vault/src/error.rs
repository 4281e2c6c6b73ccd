//! The vault's error type, split by blame: malformed input (`Malformed`,
//! `UnknownVersion`), refusals (`Grant*`, `Revoked`, `Expired`), storage
//! (`Store`, `NotFound`, `TooFewShards`), configuration (`Config`), audit
//! (`AuditTampered`) and our bug (`Internal`).

use aorta_crypto::selective::SelectiveError;

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
    /// The grant has expired.
    #[error("grant refused: expired at {expires_at} (now {now}, unix seconds)")]
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
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
