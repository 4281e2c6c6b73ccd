//! Partition ownership: leases in a JetStream key-value bucket
//! (`docs/scale.md`, "Partition ownership").
//!
//! One key per partition (`p.<n>`) and one membership key per live worker
//! (`w.<id>`) in the bucket `AORTA_LEASES` (replicas = the frame stream's
//! R). A value is `1;<owner>;<expires unix ms>` ([`LeaseValue`]); an
//! empty owner is a partition handed back. Every write is a
//! compare-and-set on the key's revision, so of two workers racing for a
//! partition exactly one wins, and an owner whose lease was taken finds
//! out at its next renewal (the revision moved).
//!
//! **Expiry is judged on each worker's own monotonic clock, never by
//! comparing wall clocks**: a claimer takes a partition over once it has
//! seen the same revision of its key unchanged for the TTL; an owner
//! counts its lease as held only until `TTL − margin` after it *sent* its
//! last successful renewal. The write a claimer saw was made after the
//! owner sent it, so the owner has stopped before anyone may claim (clock
//! rates must agree within `margin / TTL`; the wall-clock expiry in the
//! value is for operators and is not trusted). A takeover after an owner
//! dies therefore takes between TTL and TTL + one renewal period.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt;

use crate::{ClusterError, Nats};

/// Lease settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// The bucket (default `AORTA_LEASES`).
    pub bucket: String,
    /// Replicas of the bucket (the frame stream's R).
    pub replicas: usize,
    /// How long a lease lasts without renewal (default 3 s).
    pub ttl: Duration,
    /// How often an owner renews (default 1 s; at most a third of `ttl`).
    pub renew: Duration,
    /// An owner stops this long before its lease could expire anywhere
    /// (default: half the renewal period).
    pub margin: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            bucket: "AORTA_LEASES".into(),
            replicas: 1,
            ttl: Duration::from_secs(3),
            renew: Duration::from_secs(1),
            margin: Duration::from_millis(500),
        }
    }
}

impl LeaseConfig {
    /// Checks the timings hang together.
    pub fn validate(&self) -> Result<(), ClusterError> {
        if !valid_id(&self.bucket) {
            return Err(ClusterError::Config(
                "lease bucket: letters, digits, '_' and '-' only".into(),
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(ClusterError::Config(
                "lease replicas: must be in [1, 5]".into(),
            ));
        }
        if self.ttl < Duration::from_millis(300) || self.ttl > Duration::from_secs(600) {
            return Err(ClusterError::Config(
                "lease TTL: must be in [300 ms, 600 s]".into(),
            ));
        }
        if self.renew.is_zero() || self.renew.saturating_mul(3) > self.ttl {
            return Err(ClusterError::Config(
                "lease renewal period: positive and at most a third of the TTL".into(),
            ));
        }
        if self.margin.is_zero() || self.margin.saturating_add(self.renew) >= self.ttl {
            return Err(ClusterError::Config(
                "lease margin: positive, and margin + renewal period below the TTL".into(),
            ));
        }
        Ok(())
    }
}

/// A worker id: 1–64 of `A–Z a–z 0–9 _ -`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A lease or membership value: `1;<owner>;<expires unix ms>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseValue {
    /// The owner's worker id; empty: handed back (free).
    pub owner: String,
    /// When the owner's lease expires by its own wall clock, unix ms
    /// (informational: expiry is judged on monotonic clocks, see the
    /// module).
    pub expires_ms: u64,
}

impl LeaseValue {
    /// The bytes stored.
    pub fn encode(&self) -> Vec<u8> {
        format!("1;{};{}", self.owner, self.expires_ms).into_bytes()
    }

    /// Parses stored bytes (typed error on anything else).
    pub fn decode(b: &[u8]) -> Result<LeaseValue, ClusterError> {
        let bad = || ClusterError::Refused("malformed lease value".into());
        let s = std::str::from_utf8(b).map_err(|_| bad())?;
        let mut it = s.split(';');
        let (Some("1"), Some(owner), Some(exp), None) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(bad());
        };
        if !(owner.is_empty() || valid_id(owner))
            || exp.is_empty()
            || exp.len() > 20
            || !exp.bytes().all(|c| c.is_ascii_digit())
        {
            return Err(bad());
        }
        Ok(LeaseValue {
            owner: owner.to_owned(),
            expires_ms: exp.parse().map_err(|_| bad())?,
        })
    }
}

/// The key of partition `p`.
pub fn partition_key(p: u32) -> String {
    format!("p.{p}")
}

/// The membership key of worker `id`.
pub fn member_key(id: &str) -> String {
    format!("w.{id}")
}

/// What a [`Leases::tick`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseChanges {
    /// Partitions this worker now owns (load their checkpoints, resume).
    pub gained: Vec<u32>,
    /// Partitions this worker no longer owns: stop their jobs at once,
    /// write nothing more for them (no checkpoint).
    pub lost: Vec<u32>,
    /// Partitions above this worker's fair share: checkpoint each, then
    /// [`Leases::release`] it.
    pub surplus: Vec<u32>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    revision: u64,
    /// When the renewal that wrote `revision` was sent.
    sent: Instant,
}

/// What this worker last saw of a key.
#[derive(Debug, Clone)]
struct Seen {
    revision: u64,
    since: Instant,
}

/// One worker's leases: membership, renewal, claims, hand-backs.
pub struct Leases {
    nats: Nats,
    kv: kv::Store,
    me: String,
    cfg: LeaseConfig,
    partitions: u32,
    held: BTreeMap<u32, Held>,
    member: Option<Held>,
    seen: HashMap<String, Seen>,
    live: Vec<String>,
    last_tick: Option<Instant>,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Leases {{ me: {:?}, held: {:?} }}",
            self.me,
            self.held.keys().collect::<Vec<_>>()
        )
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The outcome of one compare-and-set.
enum Cas {
    Won(u64),
    Lost,
}

impl Leases {
    /// Joins as worker `id` over `partitions` partitions: creates the bucket
    /// if needed and writes this worker's membership key. Owns nothing yet:
    /// call [`Leases::tick`].
    pub fn join(
        nats: &Nats,
        id: &str,
        partitions: u32,
        cfg: LeaseConfig,
    ) -> Result<Leases, ClusterError> {
        cfg.validate()?;
        if !valid_id(id) {
            return Err(ClusterError::Config(format!(
                "worker id {id:?}: 1-64 letters, digits, '_' or '-'"
            )));
        }
        if !(1..=4096).contains(&partitions) {
            return Err(ClusterError::Config(
                "partitions: must be in [1, 4096]".into(),
            ));
        }
        let kv = ensure_bucket(nats, &cfg.bucket, cfg.replicas, 1024)?;
        let mut l = Leases {
            nats: nats.clone(),
            kv,
            me: id.to_owned(),
            cfg,
            partitions,
            held: BTreeMap::new(),
            member: None,
            seen: HashMap::new(),
            live: vec![id.to_owned()],
            last_tick: None,
        };
        l.renew_member()?;
        Ok(l)
    }

    /// This worker's id.
    pub fn id(&self) -> &str {
        &self.me
    }

    /// The settings.
    pub fn config(&self) -> &LeaseConfig {
        &self.cfg
    }

    /// Whether a tick is due (a renewal period passed since the last).
    pub fn due(&self) -> bool {
        self.last_tick.is_none_or(|t| t.elapsed() >= self.cfg.renew)
    }

    /// Whether this worker may still act for partition `p` now: it holds
    /// the lease and its last renewal was sent less than `TTL − margin`
    /// ago. Check before every batch and every checkpoint.
    pub fn holds(&self, p: u32) -> bool {
        self.held.get(&p).is_some_and(|h| self.fresh(h))
    }

    fn fresh(&self, h: &Held) -> bool {
        h.sent.elapsed() + self.cfg.margin < self.cfg.ttl
    }

    /// Partitions held now (see [`Leases::holds`]).
    pub fn owned(&self) -> Vec<u32> {
        self.held
            .iter()
            .filter(|(_, h)| self.fresh(h))
            .map(|(p, _)| *p)
            .collect()
    }

    /// Live workers at the last tick, sorted (this one included).
    pub fn live(&self) -> &[String] {
        &self.live
    }

    /// This worker's fair share of the partitions among `live` workers:
    /// `P / N`, one more for the first `P mod N` workers by id.
    pub fn fair_share(&self) -> usize {
        fair_share(self.partitions, &self.live, &self.me)
    }

    fn value(&self) -> Bytes {
        let expires_ms =
            now_ms().saturating_add(u64::try_from(self.cfg.ttl.as_millis()).unwrap_or(u64::MAX));
        Bytes::from(
            LeaseValue {
                owner: self.me.clone(),
                expires_ms,
            }
            .encode(),
        )
    }

    /// Compare-and-set of `key` to `value`: `expected` `None` creates
    /// (fails if the key holds a value).
    fn cas(&self, key: &str, value: Bytes, expected: Option<u64>) -> Result<Cas, ClusterError> {
        let kv = self.kv.clone();
        let key = key.to_owned();
        self.nats.rt.block(async move {
            let r = match expected {
                Some(rev) => kv.update(&key, value, rev).await.map_err(|e| {
                    if e.kind() == kv::UpdateErrorKind::WrongLastRevision {
                        None
                    } else {
                        Some(ClusterError::Unavailable(format!("lease {key}: {e}")))
                    }
                }),
                None => kv.create(&key, value).await.map_err(|e| {
                    if e.kind() == kv::CreateErrorKind::AlreadyExists {
                        None
                    } else {
                        Some(ClusterError::Unavailable(format!("lease {key}: {e}")))
                    }
                }),
            };
            match r {
                Ok(rev) => Ok(Cas::Won(rev)),
                Err(None) => Ok(Cas::Lost),
                Err(Some(e)) => Err(e),
            }
        })
    }

    fn renew_member(&mut self) -> Result<(), ClusterError> {
        let key = member_key(&self.me);
        let sent = Instant::now();
        let expected = match self.member {
            Some(h) => Some(h.revision),
            None => self.read(&key)?.map(|(rev, _)| rev),
        };
        match self.cas(&key, self.value(), expected)? {
            Cas::Won(revision) => {
                self.member = Some(Held { revision, sent });
                Ok(())
            }
            Cas::Lost => {
                // Someone else wrote our membership key (a second process
                // with our id?): start again from what is there.
                self.member = None;
                Err(ClusterError::Refused(format!(
                    "membership key {key} was written by another process: is worker id {} used twice?",
                    self.me
                )))
            }
        }
    }

    /// The current revision and value of `key` (`None`: absent or deleted).
    fn read(&self, key: &str) -> Result<Option<(u64, Option<LeaseValue>)>, ClusterError> {
        let kv = self.kv.clone();
        let k = key.to_owned();
        let e = self.nats.rt.block(async move {
            kv.entry(k.clone())
                .await
                .map_err(|e| ClusterError::Unavailable(format!("lease {k}: {e}")))
        })?;
        Ok(e.map(|e| {
            let v = if e.operation == kv::Operation::Put {
                LeaseValue::decode(&e.value).ok()
            } else {
                None
            };
            (e.revision, v)
        }))
    }

    /// Records an observation; returns how long this revision has been
    /// seen unchanged.
    fn observe(&mut self, key: &str, revision: u64) -> Duration {
        let now = Instant::now();
        let s = self.seen.entry(key.to_owned()).or_insert(Seen {
            revision,
            since: now,
        });
        if s.revision != revision {
            *s = Seen {
                revision,
                since: now,
            };
        }
        now.duration_since(s.since)
    }

    fn member_keys(&self) -> Result<Vec<String>, ClusterError> {
        let kv = self.kv.clone();
        self.nats.rt.block(async move {
            let mut keys = kv
                .keys()
                .await
                .map_err(|e| ClusterError::Unavailable(format!("lease keys: {e}")))?;
            let mut out = Vec::new();
            while let Some(k) = keys.next().await {
                let k = k.map_err(|e| ClusterError::Unavailable(format!("lease keys: {e}")))?;
                if k.starts_with("w.") {
                    out.push(k);
                }
                if out.len() > 65_536 {
                    return Err(ClusterError::Refused("too many membership keys".into()));
                }
            }
            Ok(out)
        })
    }

    /// One round: renews this worker's membership and leases (a renewal
    /// refused means the lease was taken: `lost`), forgets leases past
    /// their local deadline (`lost`), refreshes the live workers, claims
    /// free or expired partitions up to the fair share (`gained`), and
    /// lists the partitions above it (`surplus`). Call every renewal
    /// period ([`Leases::due`]). A NATS error is returned after what could
    /// be done was done; leases not renewed run out on their own.
    pub fn tick(&mut self) -> Result<LeaseChanges, ClusterError> {
        self.last_tick = Some(Instant::now());
        let mut ch = LeaseChanges::default();
        let mut first_err = None;
        if let Err(e) = self.renew_member() {
            first_err.get_or_insert(e);
        }
        // Renew what is held; drop what ran out or was taken.
        let held: Vec<(u32, Held)> = self.held.iter().map(|(p, h)| (*p, *h)).collect();
        for (p, h) in held {
            if !self.fresh(&h) {
                self.held.remove(&p);
                ch.lost.push(p);
                continue;
            }
            let sent = Instant::now();
            match self.cas(&partition_key(p), self.value(), Some(h.revision)) {
                Ok(Cas::Won(revision)) => {
                    self.held.insert(p, Held { revision, sent });
                }
                Ok(Cas::Lost) => {
                    self.held.remove(&p);
                    ch.lost.push(p);
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        // Live workers: this one, and every membership key whose revision
        // this worker has not seen unchanged for a TTL.
        match self.member_keys() {
            Ok(keys) => {
                let mut live = BTreeSet::from([self.me.clone()]);
                for k in keys {
                    let Some(id) = k.strip_prefix("w.") else {
                        continue;
                    };
                    if id == self.me {
                        continue;
                    }
                    match self.read(&k) {
                        Ok(Some((rev, Some(v)))) if v.owner == id => {
                            if self.observe(&k, rev) < self.cfg.ttl {
                                live.insert(id.to_owned());
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            first_err.get_or_insert(e);
                        }
                    }
                }
                self.live = live.into_iter().collect();
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
        // Every partition not held is read each round, so that the age of
        // its revision is known before this worker's share grows (a dead
        // worker's partitions are then claimable one TTL after its last
        // renewal, not two); claims go up to the fair share.
        let share = self.fair_share();
        for p in 0..self.partitions {
            if self.held.contains_key(&p) {
                continue;
            }
            let key = partition_key(p);
            let cur = match self.read(&key) {
                Ok(c) => c,
                Err(e) => {
                    first_err.get_or_insert(e);
                    continue;
                }
            };
            let expected = match cur {
                None => None,
                Some((rev, v)) => {
                    let free = v.as_ref().is_none_or(|v| v.owner.is_empty());
                    let age = self.observe(&key, rev);
                    if !(free || age >= self.cfg.ttl) {
                        continue;
                    }
                    Some(rev)
                }
            };
            if self.held.len() >= share {
                continue;
            }
            let sent = Instant::now();
            match self.cas(&key, self.value(), expected) {
                Ok(Cas::Won(revision)) => {
                    self.held.insert(p, Held { revision, sent });
                    ch.gained.push(p);
                }
                Ok(Cas::Lost) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        // Above the share (a worker joined): hand back the highest.
        let n = self.held.len();
        if n > share {
            ch.surplus = self.held.keys().rev().take(n - share).copied().collect();
        }
        match first_err {
            Some(e) if ch.gained.is_empty() && ch.lost.is_empty() => Err(e),
            Some(e) => {
                tracing::warn!(target: "aorta::cluster", error = %e, "lease round partly failed");
                Ok(ch)
            }
            None => Ok(ch),
        }
    }

    /// Hands partition `p` back (free for any worker to claim at once).
    /// The caller checkpoints its job first. A lease already lost is not
    /// an error: it is simply no longer held.
    pub fn release(&mut self, p: u32) -> Result<(), ClusterError> {
        let Some(h) = self.held.remove(&p) else {
            return Ok(());
        };
        let free = Bytes::from(
            LeaseValue {
                owner: String::new(),
                expires_ms: 0,
            }
            .encode(),
        );
        self.cas(&partition_key(p), free, Some(h.revision))
            .map(|_| ())
    }

    /// Stops being a member: hands every partition back and deletes the
    /// membership key (a clean shutdown; the caller checkpoints first).
    pub fn leave(&mut self) -> Result<(), ClusterError> {
        let held: Vec<u32> = self.held.keys().copied().collect();
        let mut first_err = None;
        for p in held {
            if let Err(e) = self.release(p) {
                first_err.get_or_insert(e);
            }
        }
        if let Some(h) = self.member.take() {
            let kv = self.kv.clone();
            let key = member_key(&self.me);
            if let Err(e) = self.nats.rt.block(async move {
                kv.delete_expect_revision(&key, Some(h.revision))
                    .await
                    .map_err(|e| ClusterError::Unavailable(format!("membership: {e}")))
            }) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Forgets partition `p`'s lease without writing anything (its
    /// checkpoint was refused: another worker owns it). True if it was held.
    pub fn abandon_one(&mut self, p: u32) -> bool {
        self.held.remove(&p).is_some()
    }

    /// Forgets every lease at once without writing anything (what a fenced
    /// worker does; tests use it to play a worker that stopped renewing).
    pub fn abandon(&mut self) -> Vec<u32> {
        let ps = self.held.keys().copied().collect();
        self.held.clear();
        ps
    }
}

/// The lease value of each of `partitions` partitions in `bucket` (`None`:
/// never claimed, or unreadable): what operators and tests look at.
pub fn lease_owners(
    nats: &Nats,
    bucket: &str,
    partitions: u32,
) -> Result<Vec<Option<LeaseValue>>, ClusterError> {
    let js = nats.js.clone();
    let bucket = bucket.to_owned();
    nats.rt.block(async move {
        let kv = js
            .get_key_value(&bucket)
            .await
            .map_err(|e| ClusterError::Unavailable(format!("bucket {bucket}: {e}")))?;
        let mut out = Vec::new();
        for p in 0..partitions {
            let e = kv
                .entry(partition_key(p))
                .await
                .map_err(|e| ClusterError::Unavailable(format!("lease: {e}")))?;
            out.push(
                e.filter(|e| e.operation == kv::Operation::Put)
                    .and_then(|e| LeaseValue::decode(&e.value).ok()),
            );
        }
        Ok(out)
    })
}

/// `P / N`, one more for the first `P mod N` of `live` (sorted) — the
/// share of worker `me` (0 if it is not in `live`).
pub fn fair_share(partitions: u32, live: &[String], me: &str) -> usize {
    let n = live.len().max(1);
    let p = partitions as usize;
    let Some(rank) = live.iter().position(|w| w == me) else {
        return 0;
    };
    p / n + usize::from(rank < p % n)
}

/// Opens the key-value bucket `bucket`, creating it (history 1, file
/// storage, `replicas`) if it does not exist. `max_value_kib` bounds a value.
pub(crate) fn ensure_bucket(
    nats: &Nats,
    bucket: &str,
    replicas: usize,
    max_value_kib: i32,
) -> Result<kv::Store, ClusterError> {
    let js = nats.js.clone();
    let bucket = bucket.to_owned();
    nats.rt.block(async move {
        if let Ok(s) = js.get_key_value(&bucket).await {
            return Ok(s);
        }
        js.create_key_value(kv::Config {
            bucket: bucket.clone(),
            history: 1,
            num_replicas: replicas,
            max_value_size: max_value_kib.saturating_mul(1024),
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| ClusterError::Unavailable(format!("bucket {bucket}: {e}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_value_vectors() {
        let v = LeaseValue {
            owner: "worker-a".into(),
            expires_ms: 1_796_745_600_000,
        };
        assert_eq!(v.encode(), b"1;worker-a;1796745600000");
        assert_eq!(
            LeaseValue::decode(b"1;worker-a;1796745600000").ok(),
            Some(v)
        );
        let free = LeaseValue::decode(b"1;;0").ok();
        assert_eq!(
            free,
            Some(LeaseValue {
                owner: String::new(),
                expires_ms: 0
            })
        );
        for bad in [
            &b""[..],
            b"1;a",
            b"2;a;1",
            b"1;a;1;x",
            b"1;a b;1",
            b"1;a;-1",
            b"1;a;",
            b"1;a;99999999999999999999999",
            b"\xff;a;1",
        ] {
            assert!(LeaseValue::decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fair_shares_cover_every_partition() {
        let ids = |n: usize| (0..n).map(|i| format!("w{i}")).collect::<Vec<_>>();
        for p in [1u32, 2, 5, 16, 17, 4096] {
            for n in 1..6 {
                let live = ids(n);
                let total: usize = live.iter().map(|w| fair_share(p, &live, w)).sum();
                assert_eq!(total, p as usize, "P={p} N={n}");
            }
        }
        assert_eq!(fair_share(16, &ids(3), "w0"), 6);
        assert_eq!(fair_share(16, &ids(3), "w2"), 5);
        assert_eq!(fair_share(16, &ids(3), "other"), 0);
    }

    #[test]
    fn timings_are_checked() {
        assert!(LeaseConfig::default().validate().is_ok());
        for bad in [
            LeaseConfig {
                renew: Duration::from_secs(2),
                ..LeaseConfig::default()
            },
            LeaseConfig {
                margin: Duration::from_secs(2),
                ..LeaseConfig::default()
            },
            LeaseConfig {
                ttl: Duration::from_millis(10),
                ..LeaseConfig::default()
            },
            LeaseConfig {
                bucket: "a.b".into(),
                ..LeaseConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert!(valid_id("w-1_A"));
        assert!(!valid_id("w.1") && !valid_id("") && !valid_id(&"a".repeat(65)));
    }
}
