//! k-of-n Reed-Solomon dispersal of a public-fragment container over n
//! stores (beyond the paper): any k shards rebuild it, so any n − k stores may
//! be lost. Shards are systematic (shards 0..k hold the container itself,
//! k..n recovery data; `reed-solomon-simd`, GF(2^16)).
//!
//! Shard format `AOSD` v2 (see `docs/vault-format.md`): a 40-byte header
//! (magic, version, k, n, index, record id, container length, shard length),
//! the shard bytes, and an HMAC-SHA256 tag over header and body under the
//! record's [`IntegrityKey`] (which only the private fragment yields). A
//! shard whose tag fails, that names another record or that sits under
//! another store's index is refused and its store named; any k verified
//! shards rebuild the container, and if the rebuilt container does not match
//! the checksum sealed in the private fragment, other combinations are tried
//! (at most [`MAX_COMBINATIONS`]).
//!
//! `AOSD` v1 shards (an unkeyed SHA-256 checksum instead of the tag) are
//! still read; only the private fragment's checksum binding vouches for them.

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
use aorta_crypto::selective::RecordId;
use sha2::{Digest, Sha256};

use crate::VaultError;
use crate::integrity::{IntegrityKey, StoreFault, TAG_LEN};

/// Shard magic.
pub const SHARD_MAGIC: &[u8; 4] = b"AOSD";
/// Shard format version written.
pub const SHARD_VERSION: u8 = 2;
/// The unkeyed first version, still read.
pub const SHARD_VERSION_V1: u8 = 1;
/// Shard header length.
pub const SHARD_HEADER_LEN: usize = 40;
/// How many k-subsets of the readable shards recovery tries before giving
/// up (each try is one Reed-Solomon decode and one checksum).
pub const MAX_COMBINATIONS: usize = 64;
const WHAT: &str = "dispersal shard";

/// Dispersal parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Dispersal {
    /// Shards needed to rebuild.
    pub k: u8,
    /// Shards written (one per public store).
    pub n: u8,
}

impl Dispersal {
    /// Checks 1 ≤ k < n.
    pub fn check(&self) -> Result<(), VaultError> {
        if self.k >= 1 && self.n > self.k {
            Ok(())
        } else {
            Err(VaultError::Config {
                reason: format!(
                    "dispersal needs 1 <= k < n, got k = {}, n = {}",
                    self.k, self.n
                ),
            })
        }
    }
}

/// Splits `data` (a public container) into n `AOSD` v2 shards tagged under
/// `key`.
pub fn encode(
    data: &[u8],
    record: RecordId,
    d: Dispersal,
    key: &IntegrityKey,
) -> Result<Vec<Vec<u8>>, VaultError> {
    bodies(data, d)?
        .iter()
        .zip(0..d.n)
        .map(|(body, index)| {
            let mut s = Shard {
                version: SHARD_VERSION,
                dispersal: d,
                index,
                record,
                data_len: data.len() as u64,
                body,
                tag: [0; TAG_LEN],
            };
            s.tag = key.tag(&[&s.header(), body])?;
            Ok(s.to_bytes())
        })
        .collect()
}

/// The n shard bodies of `data`.
fn bodies(data: &[u8], d: Dispersal) -> Result<Vec<Vec<u8>>, VaultError> {
    d.check()?;
    let k = usize::from(d.k);
    let n = usize::from(d.n);
    let shard_len = shard_len(data.len() as u64, d.k)
        .and_then(|l| usize::try_from(l).ok())
        .ok_or(VaultError::Internal {
            what: "a container in memory is too large to disperse",
        })?;
    let mut padded = data.to_vec();
    padded.resize(shard_len * k, 0);
    let originals: Vec<&[u8]> = padded.chunks_exact(shard_len).collect();
    let recovery =
        reed_solomon_simd::encode(k, n - k, &originals).map_err(|_| VaultError::Internal {
            what: "reed-solomon encode rejected valid parameters",
        })?;
    Ok(originals
        .iter()
        .map(|b| b.to_vec())
        .chain(recovery)
        .collect())
}

/// The shard length for `data_len` bytes over `k` shards: even and at least
/// 2 (`reed-solomon-simd` works on pairs of bytes); `None` if it overflows.
fn shard_len(data_len: u64, k: u8) -> Option<u64> {
    let per = data_len.div_ceil(u64::from(k.max(1))).max(2);
    per.checked_add(per % 2)
}

/// A parsed shard. Version 1's checksum is checked by decoding; version 2's
/// tag needs the record's key: [`Shard::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard<'a> {
    /// Format version (1: unkeyed checksum, 2: HMAC tag).
    pub version: u8,
    /// Parameters.
    pub dispersal: Dispersal,
    /// Index in 0..n.
    pub index: u8,
    /// Record id.
    pub record: RecordId,
    /// Length of the dispersed container.
    pub data_len: u64,
    /// Shard bytes.
    pub body: &'a [u8],
    /// v1: SHA-256 of header and body; v2: HMAC-SHA256 of them.
    pub tag: [u8; TAG_LEN],
}

impl Shard<'_> {
    fn header(&self) -> [u8; SHARD_HEADER_LEN] {
        let mut h = [0u8; SHARD_HEADER_LEN];
        h[..4].copy_from_slice(SHARD_MAGIC);
        h[4] = self.version;
        h[5] = self.dispersal.k;
        h[6] = self.dispersal.n;
        h[7] = self.index;
        h[8..24].copy_from_slice(&self.record.0);
        h[24..32].copy_from_slice(&self.data_len.to_be_bytes());
        h[32..40].copy_from_slice(&(self.body.len() as u64).to_be_bytes());
        h
    }

    /// True when a v2 shard's tag verifies under `key` (false for v1, which
    /// has no tag).
    pub fn verify(&self, key: &IntegrityKey) -> bool {
        self.version == SHARD_VERSION && key.verify(&[&self.header(), self.body], &self.tag)
    }
}

impl Encode for Shard<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.header());
        out.extend_from_slice(self.body);
        out.extend_from_slice(&self.tag);
    }
}

impl<'a> Decode<'a> for Shard<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let start = r.position();
        let all = r.peek(r.remaining());
        if &r.array::<4>("magic")? != SHARD_MAGIC {
            return Err(r.invalid("magic", 4, "bad magic"));
        }
        let version = r.u8("version")?;
        if version != SHARD_VERSION && version != SHARD_VERSION_V1 {
            return Err(r.invalid("version", 1, "unknown format version"));
        }
        let dispersal = Dispersal {
            k: r.u8("k")?,
            n: r.u8("n")?,
        };
        if dispersal.check().is_err() {
            return Err(r.invalid("k", 2, "dispersal needs 1 <= k < n"));
        }
        let index = r.u8("index")?;
        if index >= dispersal.n {
            return Err(r.invalid("index", 1, "index not below n"));
        }
        let record = RecordId(r.array("record id")?);
        let data_len = r.u64("data length")?;
        let len = r.u64("shard length")?;
        if shard_len(data_len, dispersal.k) != Some(len) {
            return Err(r.invalid(
                "shard length",
                8,
                "shard length inconsistent with data length",
            ));
        }
        let len =
            usize::try_from(len).map_err(|_| r.invalid("shard length", 8, "shard too large"))?;
        let body = r.take(len, "shard body")?;
        let covered = all.get(..r.position().saturating_sub(start)).unwrap_or(&[]);
        let tag = r.array::<TAG_LEN>(if version == SHARD_VERSION_V1 {
            "checksum"
        } else {
            "tag"
        })?;
        if version == SHARD_VERSION_V1 {
            let actual: [u8; TAG_LEN] = Sha256::digest(covered).into();
            if tag != actual {
                return Err(r.invalid("checksum", TAG_LEN, "checksum mismatch"));
            }
        }
        Ok(Shard {
            version,
            dispersal,
            index,
            record,
            data_len,
            body,
            tag,
        })
    }
}

/// Parses one shard (the whole of `d`: short and trailing bytes are
/// errors). A v1 shard's checksum is checked; a v2 shard's tag is not (see
/// [`Shard::verify`]).
pub fn parse(d: &[u8]) -> Result<Shard<'_>, VaultError> {
    if let (Some(m), Some(&v)) = (d.get(..4), d.get(4))
        && m == SHARD_MAGIC
        && v != SHARD_VERSION
        && v != SHARD_VERSION_V1
    {
        return Err(VaultError::UnknownVersion {
            what: WHAT,
            version: v,
            supported: SHARD_VERSION,
        });
    }
    Shard::from_bytes(d).map_err(VaultError::decode(WHAT))
}

/// Checks the shard read from public store `slot`: it parses, its tag
/// verifies under `key` (v1: its checksum), it names `record`, carries the
/// vault's parameters and sits under its own index.
pub fn check<'a>(
    bytes: &'a [u8],
    slot: usize,
    record: &RecordId,
    d: Dispersal,
    key: &IntegrityKey,
) -> Result<Shard<'a>, StoreFault> {
    let s = parse(bytes).map_err(|e| StoreFault::Malformed {
        reason: e.to_string(),
    })?;
    if s.version == SHARD_VERSION && !s.verify(key) {
        return Err(StoreFault::BadTag);
    }
    if s.record != *record {
        return Err(StoreFault::Misplaced {
            reason: "the shard belongs to another record",
        });
    }
    if s.dispersal != d {
        return Err(StoreFault::Misplaced {
            reason: "the shard was written with other dispersal parameters",
        });
    }
    if usize::from(s.index) != slot {
        return Err(StoreFault::Misplaced {
            reason: "the shard belongs under another store's index",
        });
    }
    Ok(s)
}

/// Rebuilds the container from exactly k shards of distinct indexes that
/// agree on the container length.
fn rebuild(set: &[&Shard<'_>], d: Dispersal) -> Result<Vec<u8>, VaultError> {
    let k = usize::from(d.k);
    let n = usize::from(d.n);
    let len = set.first().map_or(0, |s| s.data_len);
    let originals: Vec<(usize, &[u8])> = set
        .iter()
        .filter(|s| usize::from(s.index) < k)
        .map(|s| (usize::from(s.index), s.body))
        .collect();
    let recovery: Vec<(usize, &[u8])> = set
        .iter()
        .filter(|s| usize::from(s.index) >= k)
        .map(|s| (usize::from(s.index) - k, s.body))
        .collect();
    let mut parts: Vec<Option<Vec<u8>>> = vec![None; k];
    for (i, b) in &originals {
        if let Some(p) = parts.get_mut(*i) {
            *p = Some(b.to_vec());
        }
    }
    if originals.len() < k {
        let restored = reed_solomon_simd::decode(
            k,
            n - k,
            originals.iter().copied(),
            recovery.iter().copied(),
        )
        .map_err(|_| VaultError::Malformed {
            what: WHAT,
            offset: 40,
            reason: "shards do not decode together",
        })?;
        for (i, b) in restored {
            if let Some(p) = parts.get_mut(i) {
                *p = Some(b);
            }
        }
    }
    let mut out = Vec::new();
    for p in parts {
        out.extend(p.ok_or(VaultError::Internal {
            what: "reed-solomon decode left a shard missing",
        })?);
    }
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= out.len())
        .ok_or(VaultError::Malformed {
            what: WHAT,
            offset: 24,
            reason: "length exceeds shard data",
        })?;
    out.truncate(len);
    Ok(out)
}

/// The outcome of [`decode_verified`].
#[derive(Debug)]
pub enum Rebuilt {
    /// A container rebuilt from k shards that `accept` took, with the
    /// shards that were readable but proved wrong (slot, fault).
    Ok(Vec<u8>, Vec<(usize, StoreFault)>),
    /// No combination was accepted: the faults found, and how many shards
    /// were readable.
    Failed(Vec<(usize, StoreFault)>, usize),
}

/// Rebuilds a container from the checked shards `good` (slot, shard): tries
/// k-subsets — v2 (tagged) shards first, then by index — until `accept`
/// (the private fragment's binding) takes the result, at most
/// [`MAX_COMBINATIONS`] subsets. On success, readable shards the result
/// disagrees with are reported as [`StoreFault::Mismatch`].
pub fn decode_verified(
    mut good: Vec<(usize, Shard<'_>)>,
    d: Dispersal,
    accept: impl Fn(&[u8]) -> Result<(), StoreFault>,
) -> Result<Rebuilt, VaultError> {
    d.check()?;
    let k = usize::from(d.k);
    good.sort_by_key(|(slot, s)| (s.version != SHARD_VERSION, *slot));
    let readable = good.len();
    let mut faults = Vec::new();
    let mut tried = 0usize;
    let mut pick: Vec<usize> = (0..k).collect();
    if readable >= k {
        loop {
            let set: Vec<&Shard<'_>> = pick
                .iter()
                .filter_map(|&i| good.get(i).map(|(_, s)| s))
                .collect();
            let len = set.first().map_or(0, |s| s.data_len);
            if set.iter().all(|s| s.data_len == len) {
                tried += 1;
                if let Ok(c) = rebuild(&set, d)
                    && accept(&c).is_ok()
                {
                    // Name the readable shards that disagree with it.
                    if tried > 1 || readable > k {
                        let expected = bodies(&c, d)?;
                        for (slot, s) in &good {
                            if expected.get(usize::from(s.index)).map(Vec::as_slice) != Some(s.body)
                            {
                                faults.push((
                                    *slot,
                                    StoreFault::Mismatch {
                                        reason: "the shard disagrees with the verified container"
                                            .into(),
                                    },
                                ));
                            }
                        }
                    }
                    return Ok(Rebuilt::Ok(c, faults));
                }
            }
            if tried >= MAX_COMBINATIONS || !next_subset(&mut pick, readable) {
                break;
            }
        }
    }
    if readable >= k {
        for (slot, _) in &good {
            faults.push((
                *slot,
                StoreFault::Mismatch {
                    reason: format!(
                        "no {k} of the {readable} readable shards rebuild the container sealed in the private fragment"
                    ),
                },
            ));
        }
    }
    Ok(Rebuilt::Failed(faults, readable))
}

/// Advances `pick` (strictly increasing indexes into 0..m) to the next
/// k-subset in lexicographic order; false after the last.
fn next_subset(pick: &mut [usize], m: usize) -> bool {
    let k = pick.len();
    let mut i = k;
    while i > 0 {
        i -= 1;
        let limit = m.saturating_sub(k - i);
        if pick.get(i).is_some_and(|&p| p < limit) {
            let base = pick.get(i).copied().unwrap_or(0) + 1;
            for (off, slot) in pick.iter_mut().skip(i).enumerate() {
                *slot = base + off;
            }
            return true;
        }
    }
    false
}

/// Rebuilds the container from whatever shards were read (`None` = lost),
/// using the first k that pass [`check`] (no private binding: for tools and
/// tests; recovery uses [`decode_verified`]).
pub fn decode(
    shards: &[Option<Vec<u8>>],
    record: RecordId,
    d: Dispersal,
    key: &IntegrityKey,
) -> Result<Vec<u8>, VaultError> {
    let good: Vec<(usize, Shard<'_>)> = shards
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.as_deref().map(|b| (i, b)))
        .filter_map(|(i, b)| check(b, i, &record, d, key).ok().map(|s| (i, s)))
        .collect();
    match decode_verified(good, d, |_| Ok(()))? {
        Rebuilt::Ok(c, _) => Ok(c),
        Rebuilt::Failed(_, available) => Err(VaultError::TooFewShards {
            record_id: record.to_hex(),
            available,
            needed: usize::from(d.k),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aorta_crypto::selective::UnitKeys;

    fn key() -> IntegrityKey {
        IntegrityKey::derive(&UnitKeys::from_parts([1; 32], [2; 32])).unwrap()
    }

    #[test]
    fn any_k_of_n_rebuild() {
        let data: Vec<u8> = (0..1001u32).map(|i| (i * 13) as u8).collect();
        let rid = RecordId([3; 16]);
        let d = Dispersal { k: 3, n: 5 };
        let shards = encode(&data, rid, d, &key()).unwrap();
        for lost_a in 0..5 {
            for lost_b in lost_a + 1..5 {
                let s: Vec<Option<Vec<u8>>> = shards
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (i != lost_a && i != lost_b).then(|| s.clone()))
                    .collect();
                assert_eq!(
                    decode(&s, rid, d, &key()).unwrap(),
                    data,
                    "lost {lost_a},{lost_b}"
                );
            }
        }
        let s: Vec<Option<Vec<u8>>> = shards
            .iter()
            .enumerate()
            .map(|(i, s)| (i >= 3).then(|| s.clone()))
            .collect();
        assert!(matches!(
            decode(&s, rid, d, &key()),
            Err(VaultError::TooFewShards {
                available: 2,
                needed: 3,
                ..
            })
        ));
    }

    #[test]
    fn corrupted_shard_counts_as_lost() {
        let data = vec![7u8; 500];
        let rid = RecordId([1; 16]);
        let d = Dispersal { k: 2, n: 3 };
        let mut shards: Vec<Option<Vec<u8>>> = encode(&data, rid, d, &key())
            .unwrap()
            .into_iter()
            .map(Some)
            .collect();
        if let Some(Some(s)) = shards.get_mut(0) {
            s[50] ^= 1;
        }
        assert_eq!(decode(&shards, rid, d, &key()).unwrap(), data);
        if let Some(Some(s)) = shards.get_mut(1) {
            s[60] ^= 1;
        }
        assert!(decode(&shards, rid, d, &key()).is_err());
    }

    #[test]
    fn subsets_are_enumerated_once_each() {
        let mut pick = vec![0, 1, 2];
        let mut seen = vec![pick.clone()];
        while next_subset(&mut pick, 5) {
            seen.push(pick.clone());
        }
        assert_eq!(seen.len(), 10);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 10);
        assert!(
            seen.iter()
                .all(|p| p.windows(2).all(|w| w[0] < w[1]) && p[2] < 5)
        );
    }

    #[test]
    fn an_old_genuine_shard_is_outvoted_by_trying_other_subsets_and_named() {
        // Two versions of the same record under the same key (an old copy
        // a store kept): each shard's tag verifies, only the private
        // binding tells them apart.
        let rid = RecordId([5; 16]);
        let d = Dispersal { k: 2, n: 3 };
        let new = vec![1u8; 300];
        let old = vec![2u8; 300];
        let sn = encode(&new, rid, d, &key()).unwrap();
        let so = encode(&old, rid, d, &key()).unwrap();
        let good: Vec<(usize, Shard<'_>)> = [(0, &so[0]), (1, &sn[1]), (2, &sn[2])]
            .into_iter()
            .map(|(i, b)| (i, check(b, i, &rid, d, &key()).unwrap()))
            .collect();
        let accept = |c: &[u8]| {
            if c == new.as_slice() {
                Ok(())
            } else {
                Err(StoreFault::Mismatch {
                    reason: "not the sealed container".into(),
                })
            }
        };
        match decode_verified(good.clone(), d, accept).unwrap() {
            Rebuilt::Ok(c, faults) => {
                assert_eq!(c, new);
                assert_eq!(faults.len(), 1);
                assert_eq!(faults[0].0, 0);
            }
            Rebuilt::Failed(f, _) => panic!("{f:?}"),
        }
        // Without shard 2 no subset verifies: every readable shard is named.
        let two = good.into_iter().take(2).collect();
        assert!(matches!(
            decode_verified(two, d, accept).unwrap(),
            Rebuilt::Failed(f, 2) if f.len() == 2
        ));
    }

    #[test]
    fn recovery_tries_at_most_max_combinations_subsets() {
        // 2-of-14: 91 subsets, none accepted (every shard verifies, the
        // private binding refuses each rebuilt container): the work stops
        // after MAX_COMBINATIONS decodes.
        let rid = RecordId([6; 16]);
        let d = Dispersal { k: 2, n: 14 };
        let shards = encode(&[3u8; 300], rid, d, &key()).unwrap();
        let good: Vec<(usize, Shard<'_>)> = shards
            .iter()
            .enumerate()
            .map(|(i, b)| (i, check(b, i, &rid, d, &key()).unwrap()))
            .collect();
        let calls = std::cell::Cell::new(0usize);
        let refuse = |_: &[u8]| {
            calls.set(calls.get() + 1);
            Err(StoreFault::Mismatch {
                reason: "not the sealed container".into(),
            })
        };
        assert!(matches!(
            decode_verified(good, d, refuse).unwrap(),
            Rebuilt::Failed(_, 14)
        ));
        assert_eq!(calls.get(), MAX_COMBINATIONS);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(d in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse(&d);
        }
        #[test]
        fn mutated_shards_never_panic(idx in 0usize..200, v in proptest::num::u8::ANY, cut in 0usize..200) {
            let d = Dispersal { k: 2, n: 4 };
            let mut s = encode(b"some public container bytes", RecordId([9; 16]), d, &key()).unwrap();
            let first = &mut s[0];
            let i = idx % first.len();
            first[i] = v;
            first.truncate(cut.max(1));
            let _ = parse(first);
            let opt: Vec<Option<Vec<u8>>> = s.into_iter().map(Some).collect();
            let _ = decode(&opt, RecordId([9; 16]), d, &key());
        }
    }
}
