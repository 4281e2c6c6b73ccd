//! Checkpoints in a JetStream key-value bucket, one per partition, written
//! with compare-and-set (`docs/scale.md`, "Checkpoints in JetStream KV").
//!
//! The head key `p.<n>` of bucket `AORTA_CHECKPOINTS` holds one of:
//!
//! - `E` — claimed, no checkpoint yet;
//! - `I` ‖ checkpoint JSON — the checkpoint inline;
//! - `C` ‖ `<owner>;<slot>;<chunks>;<bytes>` — the checkpoint in `chunks`
//!   pieces at `c.<n>.<owner>.<slot>.<i>` (slot `a` or `b`, alternating per
//!   owner), for a checkpoint larger than one chunk (256 KiB by default,
//!   well inside NATS's 1 MiB `max_payload`).
//!
//! The bytes are whatever the engine hands the store: in the worker, the
//! checkpoint already sealed under the state key (AEAD: a damaged or
//! spliced checkpoint is refused on load). A new owner
//! [claims](KvCheckpoints::claim) the head first (rewrites it with
//! compare-and-set on the revision it read), so a fenced owner's late save —
//! compare-and-set on an older revision — is refused
//! ([`ClusterError::Fenced`]). Chunks are written before the head that
//! points at them, into the writer's own slot that the head does not point
//! at, so neither a crash nor a fenced writer leaves a head pointing at
//! foreign or partial chunks.

use std::sync::Mutex;

use aorta_stream::StreamError;
use aorta_stream::checkpoint::{Checkpoint, CheckpointStore};
use async_nats::jetstream::kv;
use bytes::Bytes;

use crate::lease::{ensure_bucket, valid_id};
use crate::{ClusterError, Nats};

/// Checkpoint bucket settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointConfig {
    /// The bucket (default `AORTA_CHECKPOINTS`).
    pub bucket: String,
    /// Replicas of the bucket (the frame stream's R).
    pub replicas: usize,
    /// Largest value written; larger checkpoints are chunked (default
    /// 256 KiB; 1 KiB – 512 KiB).
    pub chunk_bytes: usize,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            bucket: "AORTA_CHECKPOINTS".into(),
            replicas: 1,
            chunk_bytes: 256 * 1024,
        }
    }
}

/// Most chunks of one checkpoint (at 256 KiB: 1 GiB).
pub const MAX_CHUNKS: usize = 4096;

/// What the head key says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// Claimed, no checkpoint yet.
    Empty,
    /// The checkpoint's bytes.
    Inline(Vec<u8>),
    /// The checkpoint is in chunks.
    Chunked {
        /// The writer's worker id.
        owner: String,
        /// `a` or `b`.
        slot: char,
        /// Number of chunks.
        chunks: usize,
        /// Total bytes.
        bytes: usize,
    },
}

impl Head {
    /// The stored bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Head::Empty => b"E".to_vec(),
            Head::Inline(b) => {
                let mut v = Vec::with_capacity(b.len() + 1);
                v.push(b'I');
                v.extend_from_slice(b);
                v
            }
            Head::Chunked {
                owner,
                slot,
                chunks,
                bytes,
            } => format!("C{owner};{slot};{chunks};{bytes}").into_bytes(),
        }
    }

    /// Parses stored bytes.
    pub fn decode(b: &[u8]) -> Result<Head, ClusterError> {
        let bad = |w: &str| ClusterError::Refused(format!("checkpoint head: {w}"));
        match b.split_first() {
            Some((b'E', [])) => Ok(Head::Empty),
            Some((b'I', rest)) => Ok(Head::Inline(rest.to_vec())),
            Some((b'C', rest)) => {
                let s = std::str::from_utf8(rest).map_err(|_| bad("not UTF-8"))?;
                let f: Vec<&str> = s.split(';').collect();
                let [owner, slot, chunks, bytes] = f.as_slice() else {
                    return Err(bad("malformed manifest"));
                };
                let num = |x: &str| {
                    if x.is_empty() || x.len() > 12 || !x.bytes().all(|c| c.is_ascii_digit()) {
                        Err(bad("malformed number"))
                    } else {
                        x.parse::<usize>().map_err(|_| bad("malformed number"))
                    }
                };
                let slot = match *slot {
                    "a" => 'a',
                    "b" => 'b',
                    _ => return Err(bad("unknown slot")),
                };
                let (chunks, bytes) = (num(chunks)?, num(bytes)?);
                if !valid_id(owner) || chunks == 0 || chunks > MAX_CHUNKS || bytes < chunks {
                    return Err(bad("malformed manifest"));
                }
                Ok(Head::Chunked {
                    owner: (*owner).to_owned(),
                    slot,
                    chunks,
                    bytes,
                })
            }
            _ => Err(bad("unknown kind")),
        }
    }
}

fn head_key(p: u32) -> String {
    format!("p.{p}")
}

fn chunk_key(p: u32, owner: &str, slot: char, i: usize) -> String {
    format!("c.{p}.{owner}.{slot}.{i}")
}

/// One partition's checkpoint in the bucket, held by one owner
/// ([`CheckpointStore`]; see the module).
pub struct KvCheckpoints {
    nats: Nats,
    kv: kv::Store,
    partition: u32,
    owner: String,
    chunk_bytes: usize,
    /// The head revision this owner wrote or claimed last.
    revision: Mutex<u64>,
}

impl std::fmt::Debug for KvCheckpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KvCheckpoints {{ partition: {}, owner: {:?} }}",
            self.partition, self.owner
        )
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Unavailable(format!("{what}: {e}"))
}

impl KvCheckpoints {
    /// Takes partition `partition`'s checkpoint over for `owner` (call when
    /// the partition's lease was gained): reads the head and rewrites it
    /// with compare-and-set, so that any earlier owner's next save is
    /// refused. Fails with [`ClusterError::Fenced`] if another worker wrote
    /// it in between.
    pub fn claim(
        nats: &Nats,
        cfg: &CheckpointConfig,
        partition: u32,
        owner: &str,
    ) -> Result<KvCheckpoints, ClusterError> {
        if !valid_id(owner) {
            return Err(ClusterError::Config(format!("worker id {owner:?}")));
        }
        if !(1024..=512 * 1024).contains(&cfg.chunk_bytes) {
            return Err(ClusterError::Config(
                "checkpoint chunk size: 1 KiB – 512 KiB".into(),
            ));
        }
        let kv = ensure_bucket(nats, &cfg.bucket, cfg.replicas, 1024)?;
        let key = head_key(partition);
        let k = kv.clone();
        let revision = nats.rt.block(async move {
            let cur = k
                .entry(key.clone())
                .await
                .map_err(|e| unavailable(&key, e))?;
            match cur {
                Some(e) if e.operation == kv::Operation::Put => {
                    k.update(&key, e.value, e.revision).await.map_err(|e| {
                        if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
                            ClusterError::Fenced(format!("{key} was written during the claim"))
                        } else {
                            unavailable(&key, e)
                        }
                    })
                }
                _ => k
                    .create(&key, Bytes::from(Head::Empty.encode()))
                    .await
                    .map_err(|e| {
                        if e.kind() == kv::CreateErrorKind::AlreadyExists {
                            ClusterError::Fenced(format!("{key} was written during the claim"))
                        } else {
                            unavailable(&key, e)
                        }
                    }),
            }
        })?;
        Ok(KvCheckpoints {
            nats: nats.clone(),
            kv,
            partition,
            owner: owner.to_owned(),
            chunk_bytes: cfg.chunk_bytes,
            revision: Mutex::new(revision),
        })
    }

    fn rev(&self) -> Result<u64, ClusterError> {
        self.revision
            .lock()
            .map(|r| *r)
            .map_err(|_| ClusterError::Internal("checkpoint lock poisoned".into()))
    }

    /// Writes `bytes` as the partition's checkpoint (see the module).
    pub fn save_bytes(&mut self, bytes: &[u8]) -> Result<(), ClusterError> {
        let expected = self.rev()?;
        let key = head_key(self.partition);
        let kv = self.kv.clone();
        let (p, owner, chunk) = (self.partition, self.owner.clone(), self.chunk_bytes);
        let data = Bytes::copy_from_slice(bytes);
        let revision = self.nats.rt.block(async move {
            let cur = kv
                .entry(key.clone())
                .await
                .map_err(|e| unavailable(&key, e))?;
            let cur_head = match &cur {
                Some(e) if e.operation == kv::Operation::Put => Some(Head::decode(&e.value)?),
                _ => None,
            };
            if cur.as_ref().map(|e| e.revision) != Some(expected) {
                return Err(ClusterError::Fenced(format!(
                    "{key}: another worker took this partition's checkpoint over"
                )));
            }
            let head = if data.len() < chunk {
                Head::Inline(data.to_vec())
            } else {
                // Our slot that the head does not point at.
                let slot = match &cur_head {
                    Some(Head::Chunked {
                        owner: o,
                        slot: 'a',
                        ..
                    }) if *o == owner => 'b',
                    _ => 'a',
                };
                let chunks = data.len().div_ceil(chunk);
                if chunks > MAX_CHUNKS {
                    return Err(ClusterError::Refused(format!(
                        "checkpoint of {} bytes exceeds {MAX_CHUNKS} chunks",
                        data.len()
                    )));
                }
                for i in 0..chunks {
                    let piece = data.slice(i * chunk..((i + 1) * chunk).min(data.len()));
                    let ck = chunk_key(p, &owner, slot, i);
                    kv.put(&ck, piece).await.map_err(|e| unavailable(&ck, e))?;
                }
                Head::Chunked {
                    owner: owner.clone(),
                    slot,
                    chunks,
                    bytes: data.len(),
                }
            };
            kv.update(&key, Bytes::from(head.encode()), expected)
                .await
                .map_err(|e| {
                    if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
                        ClusterError::Fenced(format!(
                            "{key}: another worker took this partition's checkpoint over"
                        ))
                    } else {
                        unavailable(&key, e)
                    }
                })
        })?;
        *self
            .revision
            .lock()
            .map_err(|_| ClusterError::Internal("checkpoint lock poisoned".into()))? = revision;
        Ok(())
    }

    /// The partition's checkpoint bytes (`None`: none yet). Refuses with
    /// [`ClusterError::Fenced`] if the head moved since this owner's claim
    /// or last save.
    pub fn load_bytes(&self) -> Result<Option<Vec<u8>>, ClusterError> {
        let expected = self.rev()?;
        let key = head_key(self.partition);
        let kv = self.kv.clone();
        let p = self.partition;
        self.nats.rt.block(async move {
            let cur = kv
                .entry(key.clone())
                .await
                .map_err(|e| unavailable(&key, e))?;
            let Some(e) = cur.filter(|e| e.operation == kv::Operation::Put) else {
                return Err(ClusterError::Fenced(format!("{key} was deleted")));
            };
            if e.revision != expected {
                return Err(ClusterError::Fenced(format!(
                    "{key}: another worker took this partition's checkpoint over"
                )));
            }
            assemble(&kv, p, &e.value).await
        })
    }
}

/// The checkpoint bytes a head value points at.
async fn assemble(kv: &kv::Store, p: u32, head: &[u8]) -> Result<Option<Vec<u8>>, ClusterError> {
    match Head::decode(head)? {
        Head::Empty => Ok(None),
        Head::Inline(b) => Ok(Some(b)),
        Head::Chunked {
            owner,
            slot,
            chunks,
            bytes,
        } => {
            let mut out = Vec::with_capacity(bytes.min(64 << 20));
            for i in 0..chunks {
                let ck = chunk_key(p, &owner, slot, i);
                let v = kv
                    .get(ck.clone())
                    .await
                    .map_err(|e| unavailable(&ck, e))?
                    .ok_or_else(|| {
                        ClusterError::Refused(format!("checkpoint chunk {ck} is missing"))
                    })?;
                out.extend_from_slice(&v);
                if out.len() > bytes {
                    return Err(ClusterError::Refused(format!(
                        "checkpoint chunks exceed the manifest's {bytes} bytes"
                    )));
                }
            }
            if out.len() != bytes {
                return Err(ClusterError::Refused(format!(
                    "checkpoint chunks hold {} bytes, the manifest says {bytes}",
                    out.len()
                )));
            }
            Ok(Some(out))
        }
    }
}

/// The clear `log_offset` of each of `partitions` partitions' checkpoints
/// in `bucket` (`None`: no checkpoint yet): how far each partition's
/// owner has checkpointed, for operators' lag metrics and for tests. (The
/// authoritative offset is the sealed one inside the state.)
pub fn checkpoint_offsets(
    nats: &Nats,
    bucket: &str,
    partitions: u32,
) -> Result<Vec<Option<u64>>, ClusterError> {
    let js = nats.js.clone();
    let bucket = bucket.to_owned();
    nats.rt.block(async move {
        let kv = js
            .get_key_value(&bucket)
            .await
            .map_err(|e| unavailable(&bucket, e))?;
        let mut out = Vec::new();
        for p in 0..partitions {
            let key = head_key(p);
            let e = kv
                .entry(key.clone())
                .await
                .map_err(|e| unavailable(&key, e))?;
            let bytes = match e.filter(|e| e.operation == kv::Operation::Put) {
                Some(e) => assemble(&kv, p, &e.value).await?,
                None => None,
            };
            out.push(match bytes {
                Some(b) => Some(
                    serde_json::from_slice::<Checkpoint>(&b)
                        .map_err(|e| ClusterError::Refused(format!("checkpoint {key}: {e}")))?
                        .log_offset,
                ),
                None => None,
            });
        }
        Ok(out)
    })
}

impl CheckpointStore for KvCheckpoints {
    fn save(&mut self, cp: &Checkpoint) -> Result<(), StreamError> {
        let bytes = serde_json::to_vec(cp).map_err(|e| StreamError::Internal(e.to_string()))?;
        Ok(self.save_bytes(&bytes)?)
    }

    fn load(&self) -> Result<Option<Checkpoint>, StreamError> {
        let Some(bytes) = self.load_bytes()? else {
            return Ok(None);
        };
        let corrupt = |what: String| StreamError::Corrupt {
            path: format!("nats kv checkpoint p.{}", self.partition).into(),
            offset: 0,
            what,
        };
        let cp: Checkpoint = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if cp.version != 1 {
            return Err(corrupt(format!(
                "unknown checkpoint version {}",
                cp.version
            )));
        }
        if crc_matches(&cp) {
            Ok(Some(cp))
        } else {
            Err(corrupt("checksum mismatch".into()))
        }
    }
}

/// The checkpoint's CRC-32 over its state, checked with the engine's own
/// constructor (which computes it), so this crate needs no CRC of its own.
fn crc_matches(cp: &Checkpoint) -> bool {
    Checkpoint::new(cp.log_offset, cp.state.clone().into_bytes()).is_ok_and(|c| c.crc == cp.crc)
}

/// Whether `e` is (or wraps) [`ClusterError::Fenced`].
pub fn is_fenced(e: &StreamError) -> bool {
    match e {
        StreamError::Store(b) => b
            .downcast_ref::<ClusterError>()
            .is_some_and(|c| matches!(c, ClusterError::Fenced(_))),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_vectors() {
        assert_eq!(Head::Empty.encode(), b"E");
        assert_eq!(Head::Inline(b"{}".to_vec()).encode(), b"I{}");
        let c = Head::Chunked {
            owner: "worker-a".into(),
            slot: 'b',
            chunks: 3,
            bytes: 600_000,
        };
        assert_eq!(c.encode(), b"Cworker-a;b;3;600000");
        for h in [Head::Empty, Head::Inline(b"x".to_vec()), c] {
            assert_eq!(Head::decode(&h.encode()).ok(), Some(h));
        }
        for bad in [
            &b""[..],
            b"X",
            b"Ea",
            b"Cw;a;1",
            b"Cw;c;1;1",
            b"Cw;a;0;0",
            b"Cw;a;2;1",
            b"Cw.x;a;1;1",
            b"Cw;a;5000;99999",
            b"Cw;a;-1;1",
            b"Cw;a;1;9999999999999",
        ] {
            assert!(Head::decode(bad).is_err(), "{bad:?}");
        }
    }
}
