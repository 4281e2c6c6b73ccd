//! The gate's state: the patient vault's identity, the table of issued
//! grants (one JSON object per grant under `gate/grants/` in the private
//! store, read at every request so a revocation by another process counts
//! at once) and the bounded cache of request nonces seen.

use std::collections::HashMap;
use std::sync::Mutex;

use aorta_base::hex::{self, Case};
use aorta_crypto::selective::RecordId;
use zeroize::Zeroizing;

use super::MAX_SKEW_S;
use crate::VaultError;
use crate::grant::{Identity, RecipientKey};

/// One issued grant as the gate knows it.
#[derive(Clone, PartialEq, Eq)]
pub struct GateEntry {
    /// The record it releases.
    pub record: RecordId,
    /// Who may ask.
    pub recipient: RecipientKey,
    /// The per-grant secret the request must prove.
    pub secret: Zeroizing<[u8; 32]>,
    /// Not valid before (unix seconds).
    pub issued_at: u64,
    /// Not valid from (unix seconds).
    pub expires_at: u64,
    /// A standing emergency grant.
    pub emergency: bool,
    /// Release the DICOM header as is (default: de-identified at release).
    pub keep_identifying_header: bool,
    /// Revoked by the patient.
    pub revoked: bool,
    /// The doctor certificate the grant was issued to (`None`: an
    /// uncertified key, shared with `--uncertified`).
    pub certified: Option<CertifiedTo>,
}

/// The certificate a grant was issued to, as the gate table records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertifiedTo {
    /// The certificate id (hex).
    pub certificate: String,
    /// The certifying institution's key text.
    pub institution: String,
}

impl std::fmt::Debug for GateEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateEntry")
            .field("record", &self.record.to_hex())
            .field("recipient", &self.recipient.to_text())
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryJson {
    version: u8,
    record: String,
    recipient: String,
    secret: String,
    issued_at: u64,
    expires_at: u64,
    emergency: bool,
    keep_identifying_header: bool,
    revoked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    certified: Option<CertifiedTo>,
}

const BAD: VaultError = VaultError::Malformed {
    what: "gate grant table entry",
    offset: 0,
    reason: "not a version-1 gate entry",
};

impl GateEntry {
    /// The stored JSON (holds the grant secret: kept in the private store).
    pub fn to_json(&self) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let j = EntryJson {
            version: 1,
            record: self.record.to_hex(),
            recipient: self.recipient.to_text(),
            secret: hex::encode(self.secret.as_slice()),
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            emergency: self.emergency,
            keep_identifying_header: self.keep_identifying_header,
            revoked: self.revoked,
            certified: self.certified.clone(),
        };
        serde_json::to_vec_pretty(&j)
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Internal {
                what: "gate entry does not serialize",
            })
    }

    /// Parses [`GateEntry::to_json`].
    pub fn from_json(d: &[u8]) -> Result<Self, VaultError> {
        let j: EntryJson = serde_json::from_slice(d).map_err(|_| BAD)?;
        if j.version != 1 {
            return Err(VaultError::UnknownVersion {
                what: "gate grant table entry",
                version: j.version,
                supported: 1,
            });
        }
        let secret =
            Zeroizing::new(*hex::decode_array::<32>(&j.secret, Case::Lower).map_err(|_| BAD)?);
        Ok(Self {
            record: RecordId::from_hex(&j.record).ok_or(BAD)?,
            recipient: RecipientKey::from_text(&j.recipient)?,
            secret,
            issued_at: j.issued_at,
            expires_at: j.expires_at,
            emergency: j.emergency,
            keep_identifying_header: j.keep_identifying_header,
            revoked: j.revoked,
            certified: j.certified,
        })
    }
}

/// Nonces of answered requests, kept while their send time is within the
/// gate's skew window; at most [`ReplayCache::CAPACITY`] (the oldest is
/// dropped first).
#[derive(Debug, Default)]
pub struct ReplayCache {
    seen: Mutex<HashMap<[u8; 16], u64>>,
}

impl ReplayCache {
    /// Most nonces kept.
    pub const CAPACITY: usize = 65_536;

    /// True the first time `nonce` is seen within the window.
    pub fn first_use(&self, nonce: &[u8; 16], sent_at: u64, now: u64) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return false;
        };
        if seen.contains_key(nonce) {
            return false;
        }
        if seen.len() >= Self::CAPACITY {
            seen.retain(|_, t| now.abs_diff(*t) <= MAX_SKEW_S);
            if seen.len() >= Self::CAPACITY
                && let Some(oldest) = seen.iter().min_by_key(|(_, t)| **t).map(|(n, _)| *n)
            {
                seen.remove(&oldest);
            }
        }
        seen.insert(*nonce, sent_at);
        true
    }
}

/// What the responsible-doctor and break-glass request kinds read: the
/// patient's pins (loaded from the device store for this request) and how
/// to admit an emergency request once — load the persisted
/// [`crate::institution::ReplaySet`], admit, and save it **before** the
/// gate releases anything.
pub struct RoleState<'a> {
    /// The patient's pinned institutions, emergency permissions and named
    /// responsible doctor.
    pub pins: &'a crate::institution::PinnedInstitutions,
    /// Admits one use (refusing a replay) and persists it.
    pub admit: &'a dyn Fn(&crate::institution::VerifiedEmergency, u64) -> Result<(), VaultError>,
}

/// What the release decision reads: the patient vault's identity, the grant
/// table, the replay cache, and (for request kinds 2 and 3) the pins.
pub struct GateState<'a> {
    identity: &'a Identity,
    entries: &'a dyn Fn(&str) -> Result<Option<GateEntry>, VaultError>,
    replays: &'a ReplayCache,
    roles: Option<&'a RoleState<'a>>,
}

impl<'a> GateState<'a> {
    /// A state over a table lookup (grant id hex → entry).
    pub fn new(
        identity: &'a Identity,
        entries: &'a dyn Fn(&str) -> Result<Option<GateEntry>, VaultError>,
        replays: &'a ReplayCache,
    ) -> Self {
        Self {
            identity,
            entries,
            replays,
            roles: None,
        }
    }
    /// Also answers responsible-doctor and emergency requests, with these
    /// pins (without: they are answered `unavailable`).
    pub fn with_roles(mut self, roles: &'a RoleState<'a>) -> Self {
        self.roles = Some(roles);
        self
    }
    /// The pins and replay admission, when given.
    pub fn roles(&self) -> Option<&RoleState<'a>> {
        self.roles
    }
    /// The patient vault's identity.
    pub fn identity(&self) -> &Identity {
        self.identity
    }
    /// The entry of grant `gid` (hex).
    pub fn entry(&self, gid: &str) -> Result<Option<GateEntry>, VaultError> {
        (self.entries)(gid)
    }
    /// The replay cache.
    pub fn replays(&self) -> &ReplayCache {
        self.replays
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn the_replay_cache_refuses_a_seen_nonce_and_stays_within_its_capacity() {
        let c = ReplayCache::default();
        let now = 1_000_000;
        assert!(c.first_use(&[1; 16], now, now));
        assert!(!c.first_use(&[1; 16], now, now));
        // A flood of fresh nonces (only a grant holder's proven requests
        // reach the cache) never grows it past CAPACITY.
        for i in 0..ReplayCache::CAPACITY as u32 + 100 {
            let mut n = [0u8; 16];
            n[..4].copy_from_slice(&i.to_be_bytes());
            n[15] = 2;
            assert!(c.first_use(&n, now, now));
        }
        assert!(c.seen.lock().unwrap().len() <= ReplayCache::CAPACITY);
        // Entries outside the skew window are what a full cache drops first.
        let later = now + MAX_SKEW_S + 1;
        assert!(c.first_use(&[3; 16], later, later));
        assert!(c.seen.lock().unwrap().len() <= 2);
    }
}
