//! Append-only audit log of protections, grants, uses, refusals and
//! revocations, MACed under a patient key and anchored.
//!
//! One JSON object per line (`audit.log`). Version 2 entries (written now):
//! `v` = 2, `seq`, `time`, `event`, `record`, `grant`, `detail`, `prev`,
//! `mac`, where
//! `mac = HMAC-SHA256(audit_key, "aorta-audit-v2 entry\n" ‖ prev ‖ "\n" ‖
//! JSON of {seq, time, event, record, grant, detail})` and `prev` is the
//! previous entry's chain value (its `mac`, or a version 1 entry's `hash`;
//! 64 zeros for the first). The audit key is 32 random bytes created with
//! the log's first entry and kept only in the private (device) store
//! (`audit/key`), never in a cloud store; in memory it is zeroized on drop.
//!
//! The head — entry count, last chain value, and a MAC over both — is an
//! [`AuditAnchor`]: written to the head file (`audit.log.head`) and to the
//! private store (`audit/anchor`) after every entry, and carried out of the
//! vault in every grant ([`AuditLog::anchor`]). Verification
//! ([`AuditLog::verify_with_anchors`]) detects, for anyone without the key:
//! a rewritten entry (MAC), an inserted, removed or reordered one (`seq`,
//! `prev`), entries cut off the end (the head and the private anchor say
//! more), the log and head deleted (the private anchor says N > 0), and —
//! with an anchor from a grant — a log rebuilt from scratch with a fresh
//! key (the anchor's MAC and chain value cannot be met).
//!
//! Limits: whoever holds the device and its private store holds the key and
//! can delete or rewrite everything there, the anchor included; only
//! anchors that left the device (in grants) show that afterwards. Version 1
//! entries (unkeyed SHA-256 chain, `hash` instead of `mac`) are still read
//! as a prefix of the log; once a version 2 entry follows them, its MAC
//! covers their chain value too.

use std::io::Write;
use std::path::{Path, PathBuf};

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::VaultError;
use crate::integrity::{mac, verify};
use crate::store::DeviceStore;

const DOMAIN_V1: &[u8] = b"aorta-audit-v1\n";
const DOMAIN_ENTRY: &[u8] = b"aorta-audit-v2 entry\n";
const DOMAIN_ANCHOR: &[u8] = b"aorta-audit-v2 anchor\n";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Device-store object holding the audit key.
pub const KEY_OBJECT: &str = "audit/key";
/// Device-store object holding the latest anchor.
pub const ANCHOR_OBJECT: &str = "audit/anchor";
/// Anchor magic.
pub const ANCHOR_MAGIC: &[u8; 4] = b"AOSA";
/// Anchor format version.
pub const ANCHOR_VERSION: u8 = 1;
/// Encoded anchor length.
pub const ANCHOR_LEN: usize = 80;
/// Prefix of an anchor's text form.
pub const ANCHOR_TEXT_PREFIX: &str = "aorta-audit-anchor-1:";
const ANCHOR_WHAT: &str = "audit anchor";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Event {
    /// A record was protected and dispersed.
    Protect,
    /// A grant was issued.
    Grant,
    /// A standing emergency grant was issued.
    Emergency,
    /// A grant was used to recover a record.
    Use,
    /// The patient recovered a record with the passphrase.
    Recover,
    /// A grant was refused (expired, revoked, tampered).
    Refuse,
    /// A grant was revoked.
    Revoke,
    /// Break-glass: the gate released a record for an institution-signed
    /// emergency request (`emergency-access`).
    #[serde(rename = "emergency-access")]
    EmergencyAccess,
    /// A record was re-protected under fresh keys (`revoke --rekey`).
    Rekey,
    /// The patient's trust settings changed: an institution pinned or
    /// unpinned, emergency access allowed or denied, the responsible doctor
    /// named or cleared.
    Pin,
}

impl Event {
    /// The event's name as written in the log (`protect`, `grant`, …).
    pub fn name(self) -> &'static str {
        match self {
            Event::Protect => "protect",
            Event::Grant => "grant",
            Event::Emergency => "emergency",
            Event::Use => "use",
            Event::Recover => "recover",
            Event::Refuse => "refuse",
            Event::Revoke => "revoke",
            Event::EmergencyAccess => "emergency-access",
            Event::Rekey => "rekey",
            Event::Pin => "pin",
        }
    }
}

#[derive(serde::Serialize)]
struct Body<'a> {
    seq: u64,
    time: u64,
    event: Event,
    record: &'a str,
    grant: Option<&'a str>,
    detail: &'a str,
}

/// `aorta ehr audit --json`: the log's entries once its chain verified.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditReport<'a> {
    /// Always true: a log that fails verification gives no report.
    pub verified: bool,
    /// The entries, oldest first.
    pub entries: &'a [Entry],
    /// Break-glass accesses (`emergency-access` entries), shown to the
    /// patient first.
    pub emergency_accesses: Vec<&'a Entry>,
    /// Refused emergency requests (`refuse` entries for a break-glass
    /// request).
    pub emergency_refusals: Vec<&'a Entry>,
}

impl<'a> AuditReport<'a> {
    /// The report over verified entries.
    pub fn new(entries: &'a [Entry]) -> Self {
        Self {
            verified: true,
            entries,
            emergency_accesses: entries
                .iter()
                .filter(|e| e.event == Event::EmergencyAccess)
                .collect(),
            emergency_refusals: entries
                .iter()
                .filter(|e| e.event == Event::Refuse && e.detail.starts_with("emergency request"))
                .collect(),
        }
    }
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// Entry format: 1 (unkeyed hash chain) or 2 (MAC chain).
    pub version: u8,
    /// Position in the log, from 0.
    pub seq: u64,
    /// Unix seconds.
    pub time: u64,
    /// What happened.
    pub event: Event,
    /// Record id (hex).
    pub record: String,
    /// Grant id (hex), if any.
    pub grant: Option<String>,
    /// Free text (recipient key, reason of a refusal…).
    pub detail: String,
    /// Previous entry's chain value.
    pub prev: String,
    /// This entry's chain value: its MAC (v2) or hash (v1), hex.
    pub hash: String,
}

/// A version 1 line.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LineV1 {
    seq: u64,
    time: u64,
    event: Event,
    record: String,
    grant: Option<String>,
    detail: String,
    prev: String,
    hash: String,
}

/// A version 2 line (also how it is written, fields in this order).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LineV2 {
    v: u8,
    seq: u64,
    time: u64,
    event: Event,
    record: String,
    grant: Option<String>,
    detail: String,
    prev: String,
    mac: String,
}

impl Entry {
    fn body(&self) -> Body<'_> {
        Body {
            seq: self.seq,
            time: self.time,
            event: self.event,
            record: &self.record,
            grant: self.grant.as_deref(),
            detail: &self.detail,
        }
    }

    fn parse(line: &str) -> Result<Self, String> {
        if let Ok(l) = serde_json::from_str::<LineV2>(line) {
            if l.v != 2 {
                return Err(format!("unknown entry version {}", l.v));
            }
            return Ok(Entry {
                version: 2,
                seq: l.seq,
                time: l.time,
                event: l.event,
                record: l.record,
                grant: l.grant,
                detail: l.detail,
                prev: l.prev,
                hash: l.mac,
            });
        }
        let l: LineV1 = serde_json::from_str(line).map_err(|e| e.to_string())?;
        Ok(Entry {
            version: 1,
            seq: l.seq,
            time: l.time,
            event: l.event,
            record: l.record,
            grant: l.grant,
            detail: l.detail,
            prev: l.prev,
            hash: l.hash,
        })
    }

    fn line(&self) -> Result<String, VaultError> {
        serde_json::to_string(&LineV2 {
            v: 2,
            seq: self.seq,
            time: self.time,
            event: self.event,
            record: self.record.clone(),
            grant: self.grant.clone(),
            detail: self.detail.clone(),
            prev: self.prev.clone(),
            mac: self.hash.clone(),
        })
        .map_err(|_| VaultError::Internal {
            what: "audit entry does not serialize",
        })
    }
}

fn body_json(body: &Body<'_>) -> Result<Vec<u8>, VaultError> {
    serde_json::to_vec(body).map_err(|_| VaultError::Internal {
        what: "audit entry does not serialize",
    })
}

fn hash_v1(prev: &str, body: &Body<'_>) -> Result<String, VaultError> {
    let mut h = Sha256::new();
    h.update(DOMAIN_V1);
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(body_json(body)?);
    Ok(aorta_base::hex::encode(&h.finalize()))
}

fn mac_v2(key: &AuditKey, prev: &str, body: &Body<'_>) -> Result<String, VaultError> {
    let json = body_json(body)?;
    let t = mac(
        key.0.as_slice(),
        &[DOMAIN_ENTRY, prev.as_bytes(), b"\n", &json],
    )?;
    Ok(aorta_base::hex::encode(&t))
}

/// The patient's audit key: 32 random bytes kept in the private store.
/// Zeroized on drop; `Debug` never prints it.
pub struct AuditKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

impl AuditKey {
    /// Wraps key bytes (the private store's object; test vectors).
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(Zeroizing::new(b))
    }
    fn random() -> Result<Self, VaultError> {
        let mut k = Zeroizing::new([0u8; 32]);
        aorta_base::random::fill(k.as_mut_slice())?;
        Ok(Self(k))
    }
}

/// The head of an audit log — entry count and last chain value — MACed
/// under the audit key: 80 bytes, format `AOSA` v1 (`docs/vault-format.md`).
/// Kept in the head file and the private store, and carried in grants so a
/// log cut short or rebuilt later cannot meet it. Only the key holder (the
/// patient's vault) can check its MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditAnchor {
    /// Entries in the log when the anchor was taken.
    pub count: u64,
    /// Chain value of entry `count − 1` (zeros for an empty log).
    pub chain: [u8; 32],
    /// HMAC-SHA256 under the audit key over bytes 0..48 of the encoding.
    pub mac: [u8; 32],
}

impl AuditAnchor {
    fn signed_part(count: u64, chain: &[u8; 32]) -> [u8; 48] {
        let mut h = [0u8; 48];
        h[..4].copy_from_slice(ANCHOR_MAGIC);
        h[4] = ANCHOR_VERSION;
        h[8..16].copy_from_slice(&count.to_be_bytes());
        h[16..48].copy_from_slice(chain);
        h
    }

    fn make(key: &AuditKey, count: u64, chain: [u8; 32]) -> Result<Self, VaultError> {
        let mac = mac(
            key.0.as_slice(),
            &[DOMAIN_ANCHOR, &Self::signed_part(count, &chain)],
        )?;
        Ok(Self { count, chain, mac })
    }

    fn verifies(&self, key: &AuditKey) -> bool {
        verify(
            key.0.as_slice(),
            &[DOMAIN_ANCHOR, &Self::signed_part(self.count, &self.chain)],
            &self.mac,
        )
    }

    /// Parses the 80-byte encoding (the whole of `d`).
    pub fn parse(d: &[u8]) -> Result<Self, VaultError> {
        crate::format::check_version(d, ANCHOR_MAGIC, ANCHOR_VERSION, ANCHOR_WHAT)?;
        Self::from_bytes(d).map_err(VaultError::decode(ANCHOR_WHAT))
    }

    /// Text form: `aorta-audit-anchor-1:` and 160 lower-case hex digits.
    pub fn to_text(&self) -> String {
        format!(
            "{ANCHOR_TEXT_PREFIX}{}",
            aorta_base::hex::encode(&self.to_bytes())
        )
    }

    /// Every anchor in a text (a file saved with `aorta ehr audit
    /// --print-anchor`, one `aorta-audit-anchor-1:` line each; blank and
    /// `#` lines ignored). At least one is required.
    pub fn all_from_text(s: &str) -> Result<Vec<Self>, VaultError> {
        let v = s
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(Self::from_text)
            .collect::<Result<Vec<_>, _>>()?;
        if v.is_empty() {
            return Err(VaultError::Malformed {
                what: ANCHOR_WHAT,
                offset: 0,
                reason: "no anchor in the text",
            });
        }
        Ok(v)
    }

    /// Parses [`AuditAnchor::to_text`] (surrounding space ignored).
    pub fn from_text(s: &str) -> Result<Self, VaultError> {
        let bad = |reason| VaultError::Malformed {
            what: ANCHOR_WHAT,
            offset: 0,
            reason,
        };
        let hex = s
            .trim()
            .strip_prefix(ANCHOR_TEXT_PREFIX)
            .ok_or(bad("expected aorta-audit-anchor-1: and 160 hex digits"))?;
        let b = aorta_base::hex::decode_array::<ANCHOR_LEN>(hex, aorta_base::hex::Case::Lower)
            .map_err(|_| bad("expected 160 lower-case hex digits"))?;
        Self::parse(b.as_slice())
    }
}

impl Encode for AuditAnchor {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&Self::signed_part(self.count, &self.chain));
        out.extend_from_slice(&self.mac);
    }
}

impl<'a> Decode<'a> for AuditAnchor {
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        if &r.array::<4>("magic")? != ANCHOR_MAGIC {
            return Err(r.invalid("magic", 4, "bad magic"));
        }
        if r.u8("version")? != ANCHOR_VERSION {
            return Err(r.invalid("version", 1, "unknown format version"));
        }
        if r.array::<3>("reserved")? != [0; 3] {
            return Err(r.invalid("reserved", 3, "must be zero"));
        }
        Ok(Self {
            count: r.u64("count")?,
            chain: r.array("chain value")?,
            mac: r.array("mac")?,
        })
    }
}

fn tampered(index: u64, reason: impl Into<String>) -> VaultError {
    VaultError::AuditTampered {
        index,
        reason: reason.into(),
    }
}

/// An audit log file, its head file, and the key and anchor in the private
/// store.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    device: DeviceStore,
}

/// What a verification found: the entries and the key (absent only for a
/// log that has never had a version 2 entry).
struct Verified {
    entries: Vec<Entry>,
    key: Option<AuditKey>,
}

impl AuditLog {
    /// The log at `path`, its key and anchor in `device` (created with the
    /// first entry).
    pub fn new(path: &Path, device: DeviceStore) -> Self {
        Self {
            path: path.to_path_buf(),
            device,
        }
    }

    fn head_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".head");
        PathBuf::from(p)
    }

    fn read_opt(path: &Path) -> Result<Option<String>, VaultError> {
        match std::fs::read_to_string(path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(VaultError::io(path, e)),
        }
    }

    fn key(&self) -> Result<Option<AuditKey>, VaultError> {
        match self.device.get(KEY_OBJECT)? {
            None => Ok(None),
            Some(b) => {
                let k: [u8; 32] = b.as_slice().try_into().map_err(|_| {
                    tampered(0, "the audit key in the private store is not 32 bytes")
                })?;
                let k = AuditKey::from_bytes(k);
                // Best effort: the copy read from the store.
                drop(Zeroizing::new(b));
                Ok(Some(k))
            }
        }
    }

    /// Verifies the whole chain, the head, the private store's anchor;
    /// returns the entries.
    pub fn verify(&self) -> Result<Vec<Entry>, VaultError> {
        self.verify_with_anchors(&[])
    }

    /// [`AuditLog::verify`], and every anchor in `anchors` (from grants)
    /// must verify under this vault's audit key and be met by the log: at
    /// least `count` entries, entry `count − 1` with that chain value.
    pub fn verify_with_anchors(&self, anchors: &[AuditAnchor]) -> Result<Vec<Entry>, VaultError> {
        self.check(anchors).map(|v| v.entries)
    }

    fn check(&self, anchors: &[AuditAnchor]) -> Result<Verified, VaultError> {
        let text = Self::read_opt(&self.path)?.unwrap_or_default();
        let key = self.key()?;
        let mut prev = GENESIS.to_string();
        let mut out: Vec<Entry> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let idx = i as u64;
            let e = Entry::parse(line)
                .map_err(|err| tampered(idx, format!("not a valid entry: {err}")))?;
            if e.seq != idx {
                return Err(tampered(
                    idx,
                    format!("sequence number {} where {idx} was expected", e.seq),
                ));
            }
            if e.prev != prev {
                return Err(tampered(
                    idx,
                    "previous-hash link broken (entry inserted, removed or reordered)",
                ));
            }
            match (e.version, &key) {
                (1, _) => {
                    if out.last().is_some_and(|p| p.version == 2) {
                        return Err(tampered(idx, "a version 1 entry after version 2 entries"));
                    }
                    if hash_v1(&prev, &e.body())? != e.hash {
                        return Err(tampered(idx, "entry hash mismatch (entry modified)"));
                    }
                }
                (_, Some(k)) => {
                    let want = mac_v2(k, &prev, &e.body())?;
                    let ok =
                        aorta_base::hex::decode_array::<32>(&e.hash, aorta_base::hex::Case::Lower)
                            .ok()
                            .zip(
                                aorta_base::hex::decode_array::<32>(
                                    &want,
                                    aorta_base::hex::Case::Lower,
                                )
                                .ok(),
                            )
                            .is_some_and(|(a, b)| {
                                use subtle::ConstantTimeEq;
                                bool::from(a.as_slice().ct_eq(b.as_slice()))
                            });
                    if !ok {
                        return Err(tampered(idx, "entry MAC does not verify (entry modified)"));
                    }
                }
                (_, None) => {
                    return Err(tampered(
                        idx,
                        "the audit key is missing from the private store (deleted or replaced)",
                    ));
                }
            }
            prev = e.hash.clone();
            out.push(e);
        }
        let n = out.len() as u64;
        let head = Self::read_opt(&self.head_path())?;
        let device_anchor = self.device.get(ANCHOR_OBJECT)?;
        let Some(key) = key else {
            // A log that never had a key: version 1 rules.
            if device_anchor.is_some() {
                return Err(tampered(
                    n,
                    "the audit key is missing from the private store but its anchor is there (key deleted)",
                ));
            }
            let expected = out.last().map(|e| format!("{} {}", e.seq, e.hash));
            if head.as_deref().map(str::trim) != expected.as_deref() {
                return Err(tampered(
                    n,
                    "head file does not match the last entry (entries cut off or head altered)",
                ));
            }
            if let Some(a) = anchors.first() {
                return Err(tampered(
                    a.count.min(n),
                    format!(
                        "an anchor says the log had {} entries, but this vault has no audit key (log and key deleted or replaced)",
                        a.count
                    ),
                ));
            }
            return Ok(Verified {
                entries: out,
                key: None,
            });
        };
        let chain_at = |count: u64| -> Option<[u8; 32]> {
            if count == 0 {
                return Some([0; 32]);
            }
            let e = out.get(usize::try_from(count - 1).ok()?)?;
            aorta_base::hex::decode_array::<32>(&e.hash, aorta_base::hex::Case::Lower)
                .ok()
                .map(|b| *b)
        };
        let meets = |a: &AuditAnchor, what: &str| -> Result<(), VaultError> {
            if !a.verifies(&key) {
                return Err(tampered(
                    a.count.min(n),
                    format!(
                        "{what} does not verify under this vault's audit key (the log was rebuilt with another key, or the anchor is not this vault's)"
                    ),
                ));
            }
            if a.count > n {
                return Err(tampered(
                    n,
                    format!(
                        "{what} says the log had {} entries, it has {n} (entries deleted)",
                        a.count
                    ),
                ));
            }
            if chain_at(a.count) != Some(a.chain) {
                return Err(tampered(
                    a.count.saturating_sub(1),
                    format!(
                        "entry {} differs from what {what} recorded (log rewritten)",
                        a.count.saturating_sub(1)
                    ),
                ));
            }
            Ok(())
        };
        let head = head.ok_or_else(|| tampered(n, "head file missing"))?;
        let head =
            AuditAnchor::from_text(&head).map_err(|e| tampered(n, format!("head file: {e}")))?;
        meets(&head, "the head file")?;
        if head.count != n {
            return Err(tampered(
                n,
                "head file does not match the last entry (entries cut off or head altered)",
            ));
        }
        let stored = device_anchor
            .ok_or_else(|| tampered(n, "the anchor in the private store is missing (deleted)"))?;
        let stored = AuditAnchor::parse(&stored)
            .map_err(|e| tampered(n, format!("private store anchor: {e}")))?;
        meets(&stored, "the private store's anchor")?;
        for (i, a) in anchors.iter().enumerate() {
            meets(a, &format!("anchor {}", i + 1))?;
        }
        Ok(Verified {
            entries: out,
            key: Some(key),
        })
    }

    /// Writes the anchor of the log's current head to the private store
    /// and the head file.
    fn write_anchor(&self, a: &AuditAnchor) -> Result<(), VaultError> {
        self.device.put(ANCHOR_OBJECT, &a.to_bytes())?;
        aorta_base::fs::write_private_atomic(
            &self.head_path(),
            format!("{}\n", a.to_text()).as_bytes(),
        )?;
        Ok(())
    }

    /// Verifies the log and returns its key, creating it (and the first
    /// anchor) when the log never had one.
    fn verified_with_key(&self) -> Result<(Vec<Entry>, AuditKey), VaultError> {
        let v = self.check(&[])?;
        if let Some(k) = v.key {
            return Ok((v.entries, k));
        }
        let k = AuditKey::random()?;
        self.install_key(&k, &v.entries)?;
        Ok((v.entries, k))
    }

    /// Stores `key` and the anchor of `entries` under it.
    fn install_key(&self, key: &AuditKey, entries: &[Entry]) -> Result<(), VaultError> {
        self.device.put_secret(KEY_OBJECT, key.0.as_slice())?;
        let chain = entries
            .last()
            .and_then(|e| {
                aorta_base::hex::decode_array::<32>(&e.hash, aorta_base::hex::Case::Lower).ok()
            })
            .map_or([0; 32], |b| *b);
        self.write_anchor(&AuditAnchor::make(key, entries.len() as u64, chain)?)
    }

    /// Gives a log that has no key yet the key `key` instead of a random
    /// one (test vectors only: a known key lets anyone forge entries).
    #[doc(hidden)]
    pub fn install_known_key(&self, key: AuditKey) -> Result<(), VaultError> {
        let v = self.check(&[])?;
        if v.key.is_some() {
            return Err(VaultError::Internal {
                what: "the audit log already has a key",
            });
        }
        self.install_key(&key, &v.entries)
    }

    /// The anchor of the log as it is now (after verifying it), for a
    /// grant to carry. Creates the key on a log that has none.
    pub fn anchor(&self) -> Result<AuditAnchor, VaultError> {
        let (entries, key) = self.verified_with_key()?;
        let chain = entries
            .last()
            .and_then(|e| {
                aorta_base::hex::decode_array::<32>(&e.hash, aorta_base::hex::Case::Lower).ok()
            })
            .map_or([0; 32], |b| *b);
        AuditAnchor::make(&key, entries.len() as u64, chain)
    }

    /// Appends an entry after verifying the existing log; then writes the
    /// new anchor to the private store and the head file.
    pub fn append(
        &self,
        time: u64,
        event: Event,
        record: &str,
        grant: Option<&str>,
        detail: &str,
    ) -> Result<Entry, VaultError> {
        let (existing, key) = self.verified_with_key()?;
        let seq = existing.len() as u64;
        let prev = existing
            .last()
            .map_or_else(|| GENESIS.to_string(), |e| e.hash.clone());
        let body = Body {
            seq,
            time,
            event,
            record,
            grant,
            detail,
        };
        let hash = mac_v2(&key, &prev, &body)?;
        let e = Entry {
            version: 2,
            seq,
            time,
            event,
            record: record.to_string(),
            grant: grant.map(str::to_string),
            detail: detail.to_string(),
            prev,
            hash,
        };
        let mut line = e.line()?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|err| VaultError::io(&self.path, err))?;
        f.write_all(line.as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(|err| VaultError::io(&self.path, err))?;
        let chain = aorta_base::hex::decode_array::<32>(&e.hash, aorta_base::hex::Case::Lower)
            .map_err(|_| VaultError::Internal {
                what: "audit MAC is not 64 hex digits",
            })?;
        self.write_anchor(&AuditAnchor::make(&key, seq + 1, *chain)?)?;
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(n: u64) -> (tempfile::TempDir, AuditLog) {
        let d = tempfile::tempdir().unwrap();
        let dev = DeviceStore::local(&d.path().join("device")).unwrap();
        let log = AuditLog::new(&d.path().join("audit.log"), dev);
        for i in 0..n {
            log.append(100 + i, Event::Grant, "ab", Some("cd"), "to x")
                .unwrap();
        }
        (d, log)
    }

    #[test]
    fn chain_verifies_and_detects_edits_deletions_truncation() {
        let (_d, log) = log_with(4);
        assert_eq!(log.verify().unwrap().len(), 4);
        let text = std::fs::read_to_string(&log.path).unwrap();
        let lines: Vec<&str> = text.lines().collect();

        // edit a field
        let edited = text.replacen("\"time\":101", "\"time\":999", 1);
        std::fs::write(&log.path, &edited).unwrap();
        assert!(matches!(
            log.verify(),
            Err(VaultError::AuditTampered { index: 1, .. })
        ));

        // delete a middle entry
        let deleted = format!("{}\n{}\n{}\n", lines[0], lines[2], lines[3]);
        std::fs::write(&log.path, deleted).unwrap();
        assert!(matches!(
            log.verify(),
            Err(VaultError::AuditTampered { .. })
        ));

        // swap two entries
        let swapped = format!("{}\n{}\n{}\n{}\n", lines[0], lines[2], lines[1], lines[3]);
        std::fs::write(&log.path, swapped).unwrap();
        assert!(matches!(
            log.verify(),
            Err(VaultError::AuditTampered { index: 1, .. })
        ));

        // cut off the last entry
        let cut = format!("{}\n{}\n{}\n", lines[0], lines[1], lines[2]);
        std::fs::write(&log.path, cut).unwrap();
        assert!(matches!(
            log.verify(),
            Err(VaultError::AuditTampered { index: 3, .. })
        ));

        // restore: verifies again, and append refuses on a tampered log
        std::fs::write(&log.path, &text).unwrap();
        assert!(log.verify().is_ok());
        std::fs::write(&log.path, &edited).unwrap();
        assert!(log.append(1, Event::Use, "ab", None, "").is_err());
    }

    #[test]
    fn anchors_round_trip_in_bytes_and_text() {
        let (_d, log) = log_with(3);
        let a = log.anchor().unwrap();
        assert_eq!(a.count, 3);
        assert_eq!(a.to_bytes().len(), ANCHOR_LEN);
        assert_eq!(AuditAnchor::parse(&a.to_bytes()).unwrap(), a);
        assert_eq!(AuditAnchor::from_text(&a.to_text()).unwrap(), a);
        assert!(AuditAnchor::from_text("aorta-audit-anchor-1:00").is_err());
        let mut b = a.to_bytes();
        b[4] = 9;
        assert!(matches!(
            AuditAnchor::parse(&b),
            Err(VaultError::UnknownVersion { version: 9, .. })
        ));
        log.verify_with_anchors(&[a]).unwrap();
        let mut forged = a;
        forged.count = 2;
        assert!(log.verify_with_anchors(&[forged]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn verify_never_panics_on_hostile_logs(text in "(\\PC|\n){0,300}", head in "\\PC{0,80}") {
            let d = tempfile::tempdir().unwrap();
            let dev = DeviceStore::local(&d.path().join("device")).unwrap();
            let log = AuditLog::new(&d.path().join("audit.log"), dev);
            std::fs::write(&log.path, &text).unwrap();
            std::fs::write(log.head_path(), &head).unwrap();
            let r = log.verify();
            if !text.trim().is_empty() {
                proptest::prop_assert!(r.is_err());
            }
        }
    }
}
