//! The worker in cluster mode (`aorta worker stream --nats URL`,
//! `docs/scale.md`): partitions of the JetStream frame stream shared
//! between workers by leases, one ECG job per owned partition, its
//! checkpoint in JetStream KV, its results sent to the server's results
//! API as in the embedded mode.
//!
//! On gaining a partition's lease the worker claims its checkpoint (so any
//! earlier owner's late checkpoint is refused), restores it and reads the
//! partition from the checkpoint's stream sequence. On losing one (a
//! renewal refused, or its local deadline passed) the job is dropped at
//! once, without a checkpoint: the new owner replays from the last
//! checkpoint, and the replayed results carry the same ids, so the server
//! stores each once. On a clean stop, and when a joining worker lowers
//! this one's fair share, the job is checkpointed first and the lease
//! handed back.
//!
//! Not yet: the broker still releases every device's keys to every worker
//! (partition-scoped release is issue 11 item 4), and patient erasures are
//! not carried out in cluster mode (the embedded path learns of them from
//! the server's log, which cluster mode does not read).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aorta_cluster::{
    CheckpointConfig, KvCheckpoints, LeaseConfig, Leases, Nats, PartitionReader, StreamSpec,
    is_fenced,
};
use aorta_stream::job::{EcgJob, FrameOpen, Opened, Refused};

use crate::WorkerError;
use crate::attest::{Attested, released_devices};
use crate::config::StreamConfig;
use crate::frames::SecureFrames;
use crate::run::{
    Attestation, StreamOptions, StreamSummary, WorkerProgress, attest_for_stream, secure_frames,
};
use crate::seal::{StateKeySealer, SubscriberSealer, sealers};
use crate::server::{RemoteResults, Server};

/// Credentials and TLS trust for NATS (re-exported for the CLI).
pub use aorta_cluster::NatsAuth;

/// Cluster settings of `aorta worker stream --nats …`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterOptions {
    /// NATS URLs, comma-separated.
    pub nats: String,
    /// The frame stream (its name, subject prefix, partitions and replicas
    /// must be the servers' `[cluster]` table's).
    pub spec: StreamSpec,
    /// This worker's id (unique among live workers).
    pub worker_id: String,
    /// Lease timings and bucket.
    pub lease: LeaseConfig,
    /// Checkpoint bucket.
    pub checkpoints: CheckpointConfig,
    /// Longest a read of one idle partition waits for new records.
    pub read_wait: Duration,
    /// Credentials and TLS trust for NATS (`docs/scale.md`, "Securing
    /// NATS"); default: anonymous, plain.
    pub auth: aorta_cluster::NatsAuth,
}

impl ClusterOptions {
    /// Defaults for the NATS servers at `nats` and worker `worker_id`.
    pub fn new(nats: &str, worker_id: &str) -> ClusterOptions {
        ClusterOptions {
            nats: nats.to_owned(),
            spec: StreamSpec::default(),
            worker_id: worker_id.to_owned(),
            lease: LeaseConfig::default(),
            checkpoints: CheckpointConfig::default(),
            read_wait: Duration::from_millis(50),
            auth: aorta_cluster::NatsAuth::default(),
        }
    }
}

/// A default worker id: `w-<pid>-<random>` (unique per process).
pub fn default_worker_id() -> String {
    let mut r = [0u8; 4];
    if getrandom_fill(&mut r).is_err() {
        r = aorta_base::time::now_us().to_le_bytes()[..4]
            .try_into()
            .unwrap_or([0; 4]);
    }
    format!("w-{}-{}", std::process::id(), aorta_base::hex::encode(&r))
}

fn getrandom_fill(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

/// The attested worker's frame opener, shared by the partition jobs (they
/// run one at a time on one thread).
#[derive(Clone)]
pub struct SharedFrames(Rc<RefCell<SecureFrames>>);

impl FrameOpen for SharedFrames {
    fn open(&mut self, frame: &[u8]) -> Result<Opened, Refused> {
        self.0.borrow_mut().open(frame)
    }
    fn prepare(&mut self, frames: &[&[u8]]) -> Result<(), aorta_stream::StreamError> {
        self.0.borrow_mut().prepare(frames)
    }
}

type PartJob = EcgJob<SharedFrames, KvCheckpoints, RemoteResults, SubscriberSealer, StateKeySealer>;

struct Part {
    job: PartJob,
    reader: PartitionReader,
    cp_offset: u64,
    last_cp: Instant,
    reported_opened: u64,
    reported_refused: BTreeMap<u16, u64>,
}

/// Totals of the jobs this worker ran (dropped ones included).
#[derive(Default)]
struct Totals {
    progress: WorkerProgress,
    stored: u64,
    duplicate: u64,
}

impl Totals {
    fn retire(&mut self, part: &Part) {
        let (s, d) = part.job.pipeline().results().inner().counts();
        self.stored += s;
        self.duplicate += d;
    }
}

struct Ctx<'a> {
    nats: Nats,
    spec: &'a StreamSpec,
    c: &'a ClusterOptions,
    cfg: &'a StreamConfig,
    frames: SharedFrames,
    srv: Server,
    assignment: &'a str,
}

impl Ctx<'_> {
    fn open(&self, p: u32) -> Result<Part, WorkerError> {
        let store = KvCheckpoints::claim(&self.nats, &self.c.checkpoints, p, &self.c.worker_id)
            .map_err(|e| WorkerError::Storage(e.into()))?;
        let (results_sealer, state_sealer, certificate) =
            sealers(self.frames.0.borrow().ready(), self.assignment)?;
        let job = EcgJob::open(
            self.cfg.ecg(),
            self.cfg.engine(),
            self.frames.clone(),
            store,
            state_sealer,
            RemoteResults::new(self.srv.clone()).with_certificate(&certificate),
            results_sealer,
            u64::MAX,
        )?;
        let reader = self
            .nats
            .reader(self.spec, &[p], self.c.read_wait)
            .map_err(|e| WorkerError::Storage(e.into()))?;
        let d = job.decoder();
        Ok(Part {
            cp_offset: job.offset(),
            last_cp: Instant::now(),
            reported_opened: d.opened(),
            reported_refused: d.refused().clone(),
            job,
            reader,
        })
    }
}

/// One batch of partition `p`'s job: read, open, analyse, send results,
/// report progress, checkpoint when due.
fn step(
    part: &mut Part,
    batch: usize,
    every: Duration,
    t: &mut WorkerProgress,
) -> Result<(usize, bool), WorkerError> {
    let b = part.job.run_batch(&part.reader, batch)?;
    let d = part.job.decoder();
    let refused_delta: BTreeMap<u16, u64> = d
        .refused()
        .iter()
        .map(|(c, n)| (*c, n - part.reported_refused.get(c).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let opened = d.opened() - part.reported_opened;
    part.reported_opened = d.opened();
    part.reported_refused = d.refused().clone();
    t.opened += opened;
    t.refused += refused_delta.values().sum::<u64>();
    part.job
        .pipeline()
        .results()
        .inner()
        .report(opened, &refused_delta, &b.latencies_us);
    if b.records > 0 || opened > 0 || !refused_delta.is_empty() {
        part.job.pipeline_mut().sync_results()?;
    }
    let mut checkpointed = false;
    if part.job.offset() != part.cp_offset && part.last_cp.elapsed() >= every {
        part.job.checkpoint()?;
        part.cp_offset = part.job.offset();
        part.last_cp = Instant::now();
        checkpointed = true;
    }
    Ok((b.records, checkpointed))
}

fn connect(c: &ClusterOptions, stop: &AtomicBool) -> Result<(Nats, Leases), WorkerError> {
    let mut failures = 0u32;
    loop {
        let r = Nats::connect_with(&c.nats, &c.auth, Duration::from_secs(5)).and_then(|n| {
            let l = Leases::join(&n, &c.worker_id, c.spec.partitions, c.lease.clone())?;
            Ok((n, l))
        });
        match r {
            Ok(x) => return Ok(x),
            Err(aorta_cluster::ClusterError::Config(m)) => return Err(WorkerError::Config(m)),
            Err(e) if failures < 30 && !stop.load(Ordering::Relaxed) => {
                failures += 1;
                tracing::warn!(target: "aorta::worker", error = %e, "NATS not ready; retrying");
                std::thread::sleep(Duration::from_millis(200u64 << failures.min(4)));
            }
            Err(e) => return Err(WorkerError::Storage(e.into())),
        }
    }
}

/// Attests, joins the cluster's workers and runs one ECG job per owned
/// partition until `stop` is set (see the module). On a clean stop every
/// job still owned is checkpointed and its lease handed back.
pub fn stream_cluster(
    o: &StreamOptions,
    c: &ClusterOptions,
    stop: &AtomicBool,
) -> Result<StreamSummary, WorkerError> {
    c.spec
        .validate()
        .map_err(|e| WorkerError::Config(e.to_string()))?;
    c.lease
        .validate()
        .map_err(|e| WorkerError::Config(e.to_string()))?;
    let Attestation {
        cfg,
        config,
        token,
        attested: Attested { ready, backend, .. },
    } = attest_for_stream(o, stop)?;
    let devices = released_devices(ready.keys().transport_keys.iter().map(|(s, _)| s.clone()));
    tracing::info!(target: "aorta::worker", backend = backend.name(), hardware_protected = backend.is_hardware(), devices = devices.len(), worker = %c.worker_id, "keys received; joining the cluster");
    // Stop an hour before the certificate expires, as the embedded path
    // does (its results would be refused after it).
    let until_s = {
        let (_, _, certificate) = sealers(&ready, &o.attest.assignment)?;
        aorta_crypto::auth::WorkerCert::parse(&certificate)
            .ok()
            .map(|c| c.not_after.saturating_sub(3600))
    };
    let srv = Server::new(&o.server, &o.ca, Some(token.to_string()))?;
    let (nats, mut leases) = connect(c, stop)?;
    let ctx = Ctx {
        nats,
        spec: &c.spec,
        c,
        cfg: &cfg,
        frames: SharedFrames(Rc::new(RefCell::new(secure_frames(o, &config, ready)))),
        srv,
        assignment: &o.attest.assignment,
    };
    let batch = o.batch.clamp(1, 4096);
    let every = Duration::from_secs_f64(o.checkpoint_secs);
    let mut parts: BTreeMap<u32, Part> = BTreeMap::new();
    let mut t = Totals::default();
    let mut failures = 0u32;
    let mut expired = false;
    while !stop.load(Ordering::Relaxed) {
        if until_s.is_some_and(|t| aorta_base::time::now_s() >= t) {
            expired = true;
            break;
        }
        if leases.due() {
            match leases.tick() {
                Ok(ch) => {
                    for p in &ch.lost {
                        if let Some(part) = parts.remove(p) {
                            t.retire(&part);
                            tracing::warn!(target: "aorta::worker", partition = p, "lease lost: job dropped without a checkpoint");
                        }
                    }
                    for p in ch.surplus {
                        if let Some(mut part) = parts.remove(&p) {
                            // Checkpoint, then hand back (never the other
                            // way round: the next owner resumes from it).
                            let r = if leases.holds(p) && part.job.offset() != part.cp_offset {
                                part.job.checkpoint().map(|()| {
                                    t.progress.checkpoints += 1;
                                })
                            } else {
                                Ok(())
                            };
                            t.retire(&part);
                            match r {
                                Ok(()) => {
                                    if let Err(e) = leases.release(p) {
                                        tracing::warn!(target: "aorta::worker", partition = p, error = %e, "hand-back failed; the lease runs out instead");
                                    }
                                    tracing::info!(target: "aorta::worker", partition = p, "partition handed back");
                                }
                                Err(e) => {
                                    tracing::warn!(target: "aorta::worker", partition = p, error = %e, "checkpoint before hand-back failed; keeping the partition");
                                    // Reopen it from its last checkpoint.
                                    if let Ok(part) = ctx.open(p) {
                                        parts.insert(p, part);
                                    }
                                }
                            }
                        } else if let Err(e) = leases.release(p) {
                            tracing::warn!(target: "aorta::worker", partition = p, error = %e, "hand-back failed");
                        }
                    }
                    let mut gained = ch.gained;
                    // Held but without a job (its opening failed before).
                    gained.extend(
                        leases
                            .owned()
                            .into_iter()
                            .filter(|p| !parts.contains_key(p)),
                    );
                    let gained: BTreeSet<u32> = gained.into_iter().collect();
                    for p in gained {
                        if parts.contains_key(&p) || !leases.holds(p) {
                            continue;
                        }
                        match ctx.open(p) {
                            Ok(part) => {
                                tracing::info!(target: "aorta::worker", partition = p, offset = part.job.offset(), "partition taken over; resuming from its checkpoint");
                                parts.insert(p, part);
                            }
                            Err(e) => {
                                tracing::warn!(target: "aorta::worker", partition = p, error = %e, "cannot open the partition's job; handing it back");
                                let _ = leases.release(p);
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(target: "aorta::worker", error = %e, "lease round failed");
                }
            }
        }
        if parts.is_empty() {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let ps: Vec<u32> = parts.keys().copied().collect();
        for p in ps {
            if stop.load(Ordering::Relaxed) || leases.due() {
                break;
            }
            if !leases.holds(p) {
                // Fenced: stop at once, write nothing more.
                if let Some(part) = parts.remove(&p) {
                    t.retire(&part);
                    tracing::warn!(target: "aorta::worker", partition = p, "lease ran out: job dropped without a checkpoint");
                }
                continue;
            }
            let Some(part) = parts.get_mut(&p) else {
                continue;
            };
            match step(part, batch, every, &mut t.progress) {
                Ok((n, cp)) => {
                    failures = 0;
                    t.progress.records += n as u64;
                    t.progress.checkpoints += u64::from(cp);
                }
                Err(e) => {
                    let fenced = matches!(&e, WorkerError::Storage(s) if is_fenced(s));
                    if let Some(part) = parts.remove(&p) {
                        t.retire(&part);
                    }
                    if fenced {
                        tracing::warn!(target: "aorta::worker", partition = p, "checkpoint refused: another worker owns the partition; job dropped");
                        let _ = leases.abandon_one(p);
                    } else {
                        failures += 1;
                        t.progress.retries += 1;
                        tracing::warn!(target: "aorta::worker", partition = p, error = %e, "batch failed; reopening the partition from its checkpoint");
                        std::thread::sleep(
                            Duration::from_millis(50u64 << failures.min(3)).min(c.lease.renew / 2),
                        );
                    }
                }
            }
        }
    }
    // Clean stop: checkpoint what is still owned, hand everything back.
    for (p, mut part) in std::mem::take(&mut parts) {
        if leases.holds(p) && part.job.offset() != part.cp_offset && part.job.checkpoint().is_ok() {
            t.progress.checkpoints += 1;
        }
        t.retire(&part);
    }
    if let Err(e) = leases.leave() {
        tracing::warn!(target: "aorta::worker", error = %e, "leaving the cluster failed; the leases run out");
    }
    if expired {
        return Err(WorkerError::Attestation(
            "the worker's certificate is about to expire: checkpointed, handed its partitions back and stopped; restart the worker to re-attest"
                .into(),
        ));
    }
    Ok(StreamSummary {
        progress: t.progress,
        results_stored: t.stored,
        results_duplicate: t.duplicate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_worker_ids_are_valid_and_distinct() {
        let a = default_worker_id();
        let b = default_worker_id();
        assert!(aorta_cluster::lease::valid_id(&a), "{a}");
        assert_ne!(a, b);
    }
}
