//! Keyed integrity of the public fragment in the cloud stores: every stored
//! replica (`AOSI`) and every dispersal shard (`AOSD` v2) carries an
//! HMAC-SHA256 tag under an integrity key that only the private fragment
//! yields, so a cloud that alters its copy cannot make it verify, and
//! recovery can tell an intact store from a tampered one and fail over.
//!
//! ```text
//! integrity_key = HKDF-SHA256(salt = none, ikm = hash_key ‖ prng_seed,
//!                             info = "aorta-vault v2 public integrity key")
//! ```
//!
//! `hash_key` and `prng_seed` are the record's unit keys
//! ([`aorta_crypto::selective::UnitKeys`]), which the opened private
//! fragment (or a grant's recovery material) holds and the public fragment
//! does not reveal. The tag is the second line of defence: whatever passes
//! it must still match the checksum sealed in the private fragment before a
//! byte is decoded (`docs/vault-format.md`, "Keyed integrity").

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
use aorta_crypto::selective::{RecordId, RecoveryMaterial, UnitKeys};
use hmac::{KeyInit, Mac};
use zeroize::Zeroizing;

use crate::VaultError;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// HKDF info string of the integrity key.
pub const INTEGRITY_INFO: &[u8] = b"aorta-vault v2 public integrity key";
/// Length of every tag.
pub const TAG_LEN: usize = 32;
/// Replica magic.
pub const REPLICA_MAGIC: &[u8; 4] = b"AOSI";
/// Replica format version.
pub const REPLICA_VERSION: u8 = 1;
/// Replica header length.
pub const REPLICA_HEADER_LEN: usize = 32;
const WHAT: &str = "public replica";

/// The per-record key under which public replicas and shards are MACed.
/// Zeroized on drop; `Debug` never prints it.
pub struct IntegrityKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for IntegrityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IntegrityKey(<redacted>)")
    }
}

impl IntegrityKey {
    /// Derives the key from a record's unit keys.
    pub fn derive(uk: &UnitKeys) -> Result<Self, VaultError> {
        let mut ikm = Zeroizing::new(Vec::with_capacity(64));
        ikm.extend_from_slice(uk.hash_key());
        ikm.extend_from_slice(uk.prng_seed());
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, ikm.as_slice());
        let mut out = Zeroizing::new([0u8; 32]);
        hk.expand(INTEGRITY_INFO, out.as_mut_slice())
            .map_err(|_| VaultError::Internal {
                what: "HKDF-SHA256 refused a 32-byte output",
            })?;
        Ok(Self(out))
    }

    /// The key of the record `m` recovers.
    pub fn for_material(m: &RecoveryMaterial) -> Result<Self, VaultError> {
        Self::derive(&m.unit_keys)
    }

    /// The raw key bytes, for the format vectors.
    #[doc(hidden)]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// HMAC-SHA256 over the concatenation of `parts`.
    pub fn tag(&self, parts: &[&[u8]]) -> Result<[u8; TAG_LEN], VaultError> {
        mac(self.0.as_slice(), parts)
    }

    /// Checks `tag` over `parts` in constant time (false also if HMAC
    /// could not be set up, which does not happen with a 32-byte key).
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8; TAG_LEN]) -> bool {
        verify(self.0.as_slice(), parts, tag)
    }
}

fn hmac(key: &[u8]) -> Result<HmacSha256, VaultError> {
    <HmacSha256 as KeyInit>::new_from_slice(key).map_err(|_| VaultError::Internal {
        what: "HMAC-SHA256 rejected a 32-byte key",
    })
}

/// HMAC-SHA256 under `key` over the concatenation of `parts`.
pub(crate) fn mac(key: &[u8], parts: &[&[u8]]) -> Result<[u8; TAG_LEN], VaultError> {
    let mut m = hmac(key)?;
    for p in parts {
        m.update(p);
    }
    Ok(m.finalize().into_bytes().into())
}

/// Constant-time check of an HMAC-SHA256 tag.
pub(crate) fn verify(key: &[u8], parts: &[&[u8]], tag: &[u8; TAG_LEN]) -> bool {
    let Ok(mut m) = hmac(key) else {
        return false;
    };
    for p in parts {
        m.update(p);
    }
    m.verify_slice(tag).is_ok()
}

/// A stored public replica, format `AOSI` v1: the `AOSP` container with its
/// record id and length in a 32-byte header, and an HMAC-SHA256 tag over
/// both under the record's [`IntegrityKey`]. Decoding does not check the
/// tag (it needs the key): see [`open_replica`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica<'a> {
    /// Record id.
    pub record: RecordId,
    /// The `AOSP` container.
    pub container: &'a [u8],
    /// HMAC-SHA256 over header and container.
    pub tag: [u8; TAG_LEN],
}

impl Replica<'_> {
    fn header(&self) -> [u8; REPLICA_HEADER_LEN] {
        let mut h = [0u8; REPLICA_HEADER_LEN];
        h[..4].copy_from_slice(REPLICA_MAGIC);
        h[4] = REPLICA_VERSION;
        h[8..24].copy_from_slice(&self.record.0);
        h[24..32].copy_from_slice(&(self.container.len() as u64).to_be_bytes());
        h
    }
}

impl Encode for Replica<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.header());
        out.extend_from_slice(self.container);
        out.extend_from_slice(&self.tag);
    }
}

impl<'a> Decode<'a> for Replica<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        if &r.array::<4>("magic")? != REPLICA_MAGIC {
            return Err(r.invalid("magic", 4, "bad magic"));
        }
        if r.u8("version")? != REPLICA_VERSION {
            return Err(r.invalid("version", 1, "unknown format version"));
        }
        if r.array::<3>("reserved")? != [0; 3] {
            return Err(r.invalid("reserved", 3, "must be zero"));
        }
        let record = RecordId(r.array("record id")?);
        let len = r.u64("container length")?;
        let len = usize::try_from(len)
            .map_err(|_| r.invalid("container length", 8, "container too large"))?;
        let container = r.take(len, "container")?;
        let tag = r.array("tag")?;
        Ok(Replica {
            record,
            container,
            tag,
        })
    }
}

/// Wraps a public container for storage under `key`.
pub fn seal_replica(
    container: &[u8],
    record: RecordId,
    key: &IntegrityKey,
) -> Result<Vec<u8>, VaultError> {
    let mut r = Replica {
        record,
        container,
        tag: [0; TAG_LEN],
    };
    r.tag = key.tag(&[&r.header(), container])?;
    Ok(r.to_bytes())
}

/// Parses a replica (the whole of `d`) without checking its tag.
pub fn parse_replica(d: &[u8]) -> Result<Replica<'_>, VaultError> {
    crate::format::check_version(d, REPLICA_MAGIC, REPLICA_VERSION, WHAT)?;
    Replica::from_bytes(d).map_err(VaultError::decode(WHAT))
}

/// Parses a replica, checks that it names `record` and that its tag
/// verifies under `key`; returns the container.
pub fn open_replica<'a>(
    d: &'a [u8],
    record: &RecordId,
    key: &IntegrityKey,
) -> Result<&'a [u8], StoreFault> {
    let r = parse_replica(d).map_err(|e| StoreFault::Malformed {
        reason: e.to_string(),
    })?;
    if !key.verify(&[&r.header(), r.container], &r.tag) {
        return Err(StoreFault::BadTag);
    }
    if r.record != *record {
        return Err(StoreFault::Misplaced {
            reason: "it belongs to another record",
        });
    }
    Ok(r.container)
}

/// Why one store's copy of a public fragment was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreFault {
    /// The store does not hold the object.
    Missing,
    /// The store failed to answer.
    Unreadable {
        /// The store's error.
        reason: String,
    },
    /// The object does not parse.
    Malformed {
        /// What the parser said.
        reason: String,
    },
    /// The object's HMAC tag does not verify under the record's integrity
    /// key: altered (or forged) in the store.
    BadTag,
    /// A genuine object in the wrong place: another record's, or a shard
    /// under another index.
    Misplaced {
        /// Where it belongs.
        reason: &'static str,
    },
    /// The object (or the container rebuilt with it) does not match the
    /// checksum sealed in the private fragment: altered, or an old copy.
    Mismatch {
        /// What differs.
        reason: String,
    },
}

impl StoreFault {
    /// True for faults that mean the stored bytes were altered or misplaced
    /// (not merely absent or unreachable).
    pub fn is_integrity(&self) -> bool {
        !matches!(self, Self::Missing | Self::Unreadable { .. })
    }
}

impl std::fmt::Display for StoreFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("object missing"),
            Self::Unreadable { reason } => write!(f, "unreadable: {reason}"),
            Self::Malformed { reason } => write!(f, "malformed: {reason}"),
            Self::BadTag => f.write_str("integrity tag does not verify (altered in the store)"),
            Self::Misplaced { reason } => write!(f, "misplaced: {reason}"),
            Self::Mismatch { reason } => {
                write!(f, "does not match the private fragment: {reason}")
            }
        }
    }
}

/// One public store whose copy could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFailure {
    /// The store's label (`local:cloud-a`, `s3:bucket`).
    pub store: String,
    /// Its position among the public stores (the shard index it holds).
    pub index: usize,
    /// What was wrong.
    pub fault: StoreFault,
}

impl std::fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "store {} ({}): {}", self.index, self.store, self.fault)
    }
}

/// Checks that a public container is the one the recovery material was
/// made with: it parses with a valid checksum, and its checksum, record id,
/// mode and length equal the material's (the checks
/// [`aorta_crypto::selective::recover`] repeats before decoding).
pub fn binds(container: &[u8], m: &RecoveryMaterial) -> Result<(), StoreFault> {
    use subtle::ConstantTimeEq;
    let (h, _, sum) = aorta_crypto::selective::container::parse_public(container).map_err(|e| {
        StoreFault::Mismatch {
            reason: e.to_string(),
        }
    })?;
    let reason = if !bool::from(sum.ct_eq(&m.public_checksum)) {
        "checksum differs"
    } else if h.record_id != m.record_id {
        "record id differs"
    } else if h.mode != m.mode || h.content_len != m.content_len {
        "mode or length differs"
    } else {
        return Ok(());
    };
    Err(StoreFault::Mismatch {
        reason: reason.into(),
    })
}
