//! k-of-n Reed-Solomon dispersal of a public-fragment container over n
//! stores (beyond the paper): any k shards rebuild it, so any n − k stores may
//! be lost. Shards are systematic (shards 0..k hold the container itself,
//! k..n recovery data; `reed-solomon-simd`, GF(2^16)).
//!
//! Shard format `AOSD` v1 (see `docs/vault-format.md`): a 40-byte header
//! (magic, version, k, n, index, record id, container length, shard length),
//! the shard bytes, and a SHA-256 checksum of everything before it. A shard
//! whose checksum fails is treated as lost (an erasure). The checksum is not
//! keyed: a forged shard set is caught afterwards, because the rebuilt public
//! container must match the checksum sealed in the private fragment.

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
use aorta_crypto::selective::RecordId;
use sha2::{Digest, Sha256};

use crate::VaultError;

/// Shard magic.
pub const SHARD_MAGIC: &[u8; 4] = b"AOSD";
/// Shard format version.
pub const SHARD_VERSION: u8 = 1;
const SUM_LEN: usize = 32;
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

/// Splits `data` (a public container) into n shards.
pub fn encode(data: &[u8], record: RecordId, d: Dispersal) -> Result<Vec<Vec<u8>>, VaultError> {
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
    let out = originals
        .iter()
        .copied()
        .chain(recovery.iter().map(Vec::as_slice))
        .zip(0..d.n)
        .map(|(body, index)| {
            Shard {
                dispersal: d,
                index,
                record,
                data_len: data.len() as u64,
                body,
            }
            .to_bytes()
        })
        .collect();
    Ok(out)
}

/// The shard length for `data_len` bytes over `k` shards: even and at least
/// 2 (`reed-solomon-simd` works on pairs of bytes); `None` if it overflows.
fn shard_len(data_len: u64, k: u8) -> Option<u64> {
    let per = data_len.div_ceil(u64::from(k.max(1))).max(2);
    per.checked_add(per % 2)
}

/// A parsed, checksum-verified shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard<'a> {
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
}

impl Encode for Shard<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(SHARD_MAGIC);
        out.push(SHARD_VERSION);
        out.push(self.dispersal.k);
        out.push(self.dispersal.n);
        out.push(self.index);
        out.extend_from_slice(&self.record.0);
        out.extend_from_slice(&self.data_len.to_be_bytes());
        out.extend_from_slice(&(self.body.len() as u64).to_be_bytes());
        out.extend_from_slice(self.body);
        let sum: [u8; SUM_LEN] = Sha256::digest(out.get(start..).unwrap_or(&[])).into();
        out.extend_from_slice(&sum);
    }
}

impl<'a> Decode<'a> for Shard<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let start = r.position();
        let all = r.peek(r.remaining());
        if &r.array::<4>("magic")? != SHARD_MAGIC {
            return Err(r.invalid("magic", 4, "bad magic"));
        }
        if r.u8("version")? != SHARD_VERSION {
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
        let actual: [u8; SUM_LEN] = Sha256::digest(covered).into();
        if r.array::<SUM_LEN>("checksum")? != actual {
            return Err(r.invalid("checksum", SUM_LEN, "checksum mismatch"));
        }
        Ok(Shard {
            dispersal,
            index,
            record,
            data_len,
            body,
        })
    }
}

/// Parses and verifies one shard (the whole of `d`: short and trailing bytes
/// are errors).
pub fn parse(d: &[u8]) -> Result<Shard<'_>, VaultError> {
    crate::format::check_version(d, SHARD_MAGIC, SHARD_VERSION, WHAT)?;
    Shard::from_bytes(d).map_err(VaultError::decode(WHAT))
}

/// Rebuilds the container from whatever shards were read (`None` = lost).
/// Shards that fail to parse, belong to another record or disagree on the
/// parameters are treated as lost.
pub fn decode(
    shards: &[Option<Vec<u8>>],
    record: RecordId,
    d: Dispersal,
) -> Result<Vec<u8>, VaultError> {
    d.check()?;
    let k = usize::from(d.k);
    let n = usize::from(d.n);
    let mut good: Vec<Shard<'_>> = shards
        .iter()
        .flatten()
        .filter_map(|s| parse(s).ok())
        .filter(|s| s.record == record && s.dispersal == d)
        .collect();
    // All shards must agree on the container length; keep the majority value.
    let len = {
        let mut lens: Vec<u64> = good.iter().map(|s| s.data_len).collect();
        lens.sort_unstable();
        let mut best = (0u64, 0usize);
        for chunk in lens.chunk_by(|a, b| a == b) {
            if chunk.len() > best.1 {
                best = (chunk.first().copied().unwrap_or(0), chunk.len());
            }
        }
        best.0
    };
    good.retain(|s| s.data_len == len);
    good.sort_by_key(|s| s.index);
    good.dedup_by_key(|s| s.index);
    if good.len() < k {
        return Err(VaultError::TooFewShards {
            record_id: record.to_hex(),
            available: good.len(),
            needed: k,
        });
    }
    let originals: Vec<(usize, &[u8])> = good
        .iter()
        .filter(|s| usize::from(s.index) < k)
        .map(|s| (usize::from(s.index), s.body))
        .collect();
    let recovery: Vec<(usize, &[u8])> = good
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
        .map_err(|_| VaultError::TooFewShards {
            record_id: record.to_hex(),
            available: good.len(),
            needed: k,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_k_of_n_rebuild() {
        let data: Vec<u8> = (0..1001u32).map(|i| (i * 13) as u8).collect();
        let rid = RecordId([3; 16]);
        let d = Dispersal { k: 3, n: 5 };
        let shards = encode(&data, rid, d).unwrap();
        for lost_a in 0..5 {
            for lost_b in lost_a + 1..5 {
                let s: Vec<Option<Vec<u8>>> = shards
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (i != lost_a && i != lost_b).then(|| s.clone()))
                    .collect();
                assert_eq!(decode(&s, rid, d).unwrap(), data, "lost {lost_a},{lost_b}");
            }
        }
        let s: Vec<Option<Vec<u8>>> = shards
            .iter()
            .enumerate()
            .map(|(i, s)| (i >= 3).then(|| s.clone()))
            .collect();
        assert!(matches!(
            decode(&s, rid, d),
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
        let mut shards: Vec<Option<Vec<u8>>> = encode(&data, rid, d)
            .unwrap()
            .into_iter()
            .map(Some)
            .collect();
        if let Some(Some(s)) = shards.get_mut(0) {
            s[50] ^= 1;
        }
        assert_eq!(decode(&shards, rid, d).unwrap(), data);
        if let Some(Some(s)) = shards.get_mut(1) {
            s[60] ^= 1;
        }
        assert!(decode(&shards, rid, d).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(d in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse(&d);
        }
        #[test]
        fn mutated_shards_never_panic(idx in 0usize..200, v in proptest::num::u8::ANY, cut in 0usize..200) {
            let d = Dispersal { k: 2, n: 4 };
            let mut s = encode(b"some public container bytes", RecordId([9; 16]), d).unwrap();
            let first = &mut s[0];
            let i = idx % first.len();
            first[i] = v;
            first.truncate(cut.max(1));
            let _ = parse(first);
            let opt: Vec<Option<Vec<u8>>> = s.into_iter().map(Some).collect();
            let _ = decode(&opt, RecordId([9; 16]), d);
        }
    }
}
