//! One pipeline run: an ingest thread appending through the server's
//! [`GroupCommit`] and a worker thread running [`EcgJob`] over the durable
//! part of the log.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use aorta_server::http::ingest::{GroupCommit, IngestCounters, Submission, check_unsigned};
use aorta_stream::StreamError;
use aorta_stream::checkpoint::{CheckpointStore, FileCheckpointStore};
use aorta_stream::job::{EcgJob, FrameOpen, ResultSealer, StateSealer};
use aorta_stream::log::{FrameLog, LogReader};
use aorta_stream::results::{FileResultStore, ResultSink};

use super::devices::{DeviceFrames, SLICE_KEYS};

/// A read-only view of the ingest log up to the end ingest published after
/// its last sync: what the worker reads.
struct PublishedLog {
    reader: LogReader,
    end: Arc<AtomicU64>,
}

impl FrameLog for PublishedLog {
    fn append(&mut self, _payload: &[u8]) -> Result<u64, StreamError> {
        Err(StreamError::Internal(
            "the worker's view of the log is read-only".into(),
        ))
    }
    fn sync(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }
    fn read_from(&self, offset: u64, max: usize) -> Result<(Vec<Vec<u8>>, u64), StreamError> {
        self.reader.read_from(offset, max, self.end())
    }
}

/// How ingest offers the frames.
#[derive(Clone, Copy)]
pub(crate) enum Pace {
    /// Everything at once.
    Max,
    /// Frame `k` of every device at `t0 + (k+1)·F` seconds.
    RealTime(f64),
}

/// What one pipeline run measured.
#[derive(Debug, Default)]
pub(crate) struct RunStats {
    pub(crate) frames: u64,
    pub(crate) samples: u64,
    pub(crate) seconds: f64,
    pub(crate) results: u64,
    pub(crate) refused: u64,
    pub(crate) undecodable: u64,
    pub(crate) checkpoints: u64,
    /// Longest checkpoint (worker blocked), ms.
    pub(crate) checkpoint_max_ms: f64,
    /// CPU time of the worker thread, s.
    pub(crate) worker_cpu_s: f64,
    /// CPU time of the ingest thread, s.
    pub(crate) ingest_cpu_s: f64,
    pub(crate) latencies_us: Vec<i64>,
    pub(crate) max_backlog_frames: u64,
    /// From the last frame's release to its results being durable.
    pub(crate) final_lag_ms: f64,
}

/// CPU time of the calling thread in seconds (`/proc/thread-self/schedstat`,
/// Linux); NaN where unavailable.
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(f64::NAN, |ns| ns as f64 / 1e9)
}

/// A device signature to verify: the directory's key, the signed message
/// and the signature.
type PendingSignature = ([u8; 32], Vec<u8>, [u8; 64]);

/// The ingest's header check.
enum HeaderCheck {
    /// The secure host's: the AOFR header and the device's signature
    /// against the public device directory, as `aorta server` checks them.
    Sealed(aorta_crypto::directory::Directory),
    /// The plain baseline's: its serial field; the sequence is the frame's
    /// index.
    Plain,
}

impl HeaderCheck {
    /// The submission of frame `k` (signed by `signature`) with the
    /// signature still to verify (the publisher verifies a batch, as the
    /// server's verifier thread does), or why ingest refuses it.
    fn check(
        &self,
        f: &[u8],
        signature: Option<&str>,
        k: usize,
        arrival: i64,
    ) -> anyhow::Result<(Submission, Option<PendingSignature>)> {
        match self {
            HeaderCheck::Sealed(devices) => {
                let u = check_unsigned(devices, f, signature)?;
                let pending = (u.key, aorta_crypto::auth::frame_message(f), u.signature);
                // The status checks follow the signature's; the publisher
                // verifies the batch's signatures before committing it.
                let checked = u.authenticated(true)?;
                let sub = Submission::checked(checked, arrival, f, &pending.1);
                Ok((sub, Some(pending)))
            }
            HeaderCheck::Plain => f
                .split_first()
                .and_then(|(&n, rest)| rest.get(..usize::from(n)))
                .and_then(|s| std::str::from_utf8(s).ok())
                .map(|s| (Submission::new(s.to_owned(), k as u64, arrival, f), None))
                .context("a plain frame without a serial"),
        }
    }
}

/// The frames one run offers.
pub(crate) struct Workload<'a> {
    pub(crate) devices: &'a [DeviceFrames],
    pub(crate) secure: bool,
    /// Frames per device offered.
    pub(crate) frames: usize,
}

impl Workload<'_> {
    /// Frame `k` of device `d`, its signature (secure frames) and samples.
    fn frame(&self, d: usize, k: usize) -> Option<(&[u8], Option<&str>, u64)> {
        let dev = self.devices.get(d)?;
        let (f, sig) = if self.secure {
            (
                dev.secure.get(k)?,
                dev.signatures.get(k).map(String::as_str),
            )
        } else {
            (dev.plain.get(k)?, None)
        };
        Some((f.as_slice(), sig, dev.samples.get(k).copied().unwrap_or(0)))
    }

    fn header_check(&self) -> HeaderCheck {
        if self.secure {
            let slice = u16::try_from(SLICE_KEYS).unwrap_or(u16::MAX);
            use aorta_crypto::directory::{Directory, Entry, Status};
            HeaderCheck::Sealed(Directory {
                devices: self
                    .devices
                    .iter()
                    .map(|d| {
                        let e = Entry {
                            status: Status::Verified,
                            slice_len: slice,
                            min_key_uses: aorta_crypto::keys::DEFAULT_MAX_KEY_USES,
                            public_key: Some(d.public_key),
                        };
                        (d.serial.clone(), e)
                    })
                    .collect(),
            })
        } else {
            HeaderCheck::Plain
        }
    }
}

/// The worker's job: how it opens frames, seals results and state.
pub(crate) struct JobParts<F, RS, SS> {
    pub(crate) frames: F,
    pub(crate) sealer: RS,
    pub(crate) state: SS,
}

/// How the worker batches and checkpoints.
#[derive(Clone, Copy)]
pub(crate) struct WorkerPlan {
    /// Records per batch.
    pub(crate) batch: usize,
    /// Records between checkpoints.
    pub(crate) checkpoint_every: u64,
}

/// What ingest and the worker share.
struct Shared {
    /// Durable end of the log.
    end: Arc<AtomicU64>,
    /// Frames made durable.
    published: Arc<AtomicU64>,
    /// Ingest has offered everything.
    done: Arc<AtomicBool>,
}

/// Runs ingest and worker threads over `w` in `dir`.
pub(crate) fn run_pipeline<F, RS, SS>(
    w: &Workload<'_>,
    pace: Pace,
    dir: &Path,
    plan: WorkerPlan,
    parts: JobParts<F, RS, SS>,
) -> anyhow::Result<RunStats>
where
    F: FrameOpen + Send,
    RS: ResultSealer + Send,
    SS: StateSealer + Send,
{
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let log = GroupCommit::open(&dir.join("frames.log"), Arc::new(IngestCounters::default()))?;
    anyhow::ensure!(log.end() == 0, "{} is not empty", dir.display());
    let shared = Shared {
        end: Arc::new(AtomicU64::new(0)),
        published: Arc::new(AtomicU64::new(0)),
        done: Arc::new(AtomicBool::new(false)),
    };
    let view = PublishedLog {
        reader: log.reader(),
        end: shared.end.clone(),
    };
    let results = FileResultStore::open(dir.join("results.log"))?;
    let checkpoints = FileCheckpointStore::new(dir.join("checkpoint"))?;
    let name = if w.secure {
        "worker-secure"
    } else {
        "worker-plain"
    };

    std::thread::scope(|scope| -> anyhow::Result<RunStats> {
        let worker = std::thread::Builder::new()
            .name(name.into())
            .spawn_scoped(scope, {
                let published = shared.published.clone();
                let done = shared.done.clone();
                move || -> anyhow::Result<(RunStats, Instant)> {
                    worker_loop(view, published, done, plan, parts, checkpoints, results)
                }
            })?;
        let mut ingest = Ingest {
            log,
            shared: &shared,
            worker: worker.thread().clone(),
            batch: Vec::with_capacity(GroupCommit::MAX_BATCH),
            signatures: Vec::with_capacity(GroupCommit::MAX_BATCH),
        };
        let cpu0 = thread_cpu_s();
        let t0 = Instant::now();
        let offered = ingest.offer_all(w, pace, t0);
        let ingest_cpu_s = thread_cpu_s() - cpu0;
        shared.done.store(true, Ordering::Release);
        worker.thread().unpark();
        let joined = worker
            .join()
            .map_err(|_| anyhow::anyhow!("the worker thread panicked"))?;
        let (mut stats, last_release) = offered?;
        let (ws, finished) = joined?;
        stats.ingest_cpu_s = ingest_cpu_s;
        merge(stats, ws, t0, finished, pace, last_release)
    })
}

/// The ingest side's and the worker's figures of one run, in one.
fn merge(
    mut stats: RunStats,
    ws: RunStats,
    t0: Instant,
    finished: Instant,
    pace: Pace,
    last_release: Instant,
) -> anyhow::Result<RunStats> {
    stats.seconds = finished.duration_since(t0).as_secs_f64();
    stats.final_lag_ms = match pace {
        Pace::Max => 0.0,
        Pace::RealTime(_) => {
            finished
                .saturating_duration_since(last_release)
                .as_secs_f64()
                * 1e3
        }
    };
    stats.results = ws.results;
    stats.refused = ws.refused;
    stats.undecodable = ws.undecodable;
    stats.checkpoints = ws.checkpoints;
    stats.checkpoint_max_ms = ws.checkpoint_max_ms;
    stats.worker_cpu_s = ws.worker_cpu_s;
    stats.latencies_us = ws.latencies_us;
    stats.max_backlog_frames = ws.max_backlog_frames;
    anyhow::ensure!(
        ws.frames == stats.frames,
        "the worker processed {} records of {}",
        ws.frames,
        stats.frames
    );
    Ok(stats)
}

/// The ingest thread: header checks, then the server's group commit.
struct Ingest<'s> {
    log: GroupCommit,
    shared: &'s Shared,
    worker: std::thread::Thread,
    batch: Vec<Submission>,
    /// The batch's signatures, verified together before it is committed.
    signatures: Vec<PendingSignature>,
}

impl Ingest<'_> {
    /// Offers every frame of `w` at `pace`; the ingest figures and the
    /// release time of the last frame.
    fn offer_all(
        &mut self,
        w: &Workload<'_>,
        pace: Pace,
        t0: Instant,
    ) -> anyhow::Result<(RunStats, Instant)> {
        let check = w.header_check();
        let mut stats = RunStats::default();
        let wall0 = aorta_base::time::now_us();
        let mut last_release = t0;
        for k in 0..w.frames {
            let arrival = match pace {
                Pace::Max => None,
                Pace::RealTime(f) => {
                    let at = Duration::from_secs_f64(f * (k + 1) as f64);
                    let deadline = t0 + at;
                    let now = Instant::now();
                    if deadline > now {
                        std::thread::sleep(deadline - now);
                    }
                    last_release = deadline;
                    Some(wall0 + at.as_micros() as i64)
                }
            };
            for d in 0..w.devices.len() {
                let Some((f, sig, n)) = w.frame(d, k) else {
                    continue;
                };
                let at = arrival.unwrap_or_else(aorta_base::time::now_us);
                let (sub, pending) = check
                    .check(f, sig, k, at)
                    .with_context(|| format!("ingest refused device {d} frame {k}"))?;
                self.batch.push(sub);
                self.signatures.extend(pending);
                stats.frames += 1;
                stats.samples += n;
                if self.batch.len() >= GroupCommit::MAX_BATCH {
                    self.publish()?;
                }
            }
            if !self.batch.is_empty() {
                self.publish()?;
            }
        }
        Ok((stats, last_release))
    }

    /// Commits the batch (one sync), then publishes the durable end.
    fn publish(&mut self) -> anyhow::Result<()> {
        // The signatures in batches of the server's verifier size.
        for chunk in self
            .signatures
            .chunks(aorta_server::http::ingest::VERIFY_BATCH)
        {
            let items: Vec<aorta_crypto::auth::FrameSignature<'_>> = chunk
                .iter()
                .map(
                    |(key, message, signature)| aorta_crypto::auth::FrameSignature {
                        key,
                        message,
                        signature,
                    },
                )
                .collect();
            anyhow::ensure!(
                aorta_crypto::auth::verify_frames(&items)
                    .iter()
                    .all(|ok| *ok),
                "ingest refused a device signature"
            );
        }
        self.signatures.clear();
        let batch = std::mem::take(&mut self.batch);
        let n = batch.len() as u64;
        let committed = self.log.commit(batch);
        if let Some(e) = committed.sync_error {
            anyhow::bail!("log sync failed: {e}");
        }
        for ack in committed.acks {
            let ack = ack?;
            anyhow::ensure!(
                !ack.duplicate,
                "ingest took {} frame {} for a duplicate",
                ack.serial,
                ack.sequence
            );
        }
        self.shared.end.store(self.log.end(), Ordering::Release);
        self.shared.published.fetch_add(n, Ordering::AcqRel);
        self.worker.unpark();
        Ok(())
    }
}

/// The worker thread: batches from the published log until ingest is done
/// and everything published is processed.
fn worker_loop<F, RS, SS>(
    view: PublishedLog,
    published: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    plan: WorkerPlan,
    parts: JobParts<F, RS, SS>,
    checkpoints: impl CheckpointStore,
    results: impl ResultSink,
) -> anyhow::Result<(RunStats, Instant)>
where
    F: FrameOpen,
    RS: ResultSealer,
    SS: StateSealer,
{
    let mut job = EcgJob::open(
        aorta_stream::ecg::EcgConfig::default(),
        aorta_stream::EngineConfig::default(),
        parts.frames,
        checkpoints,
        parts.state,
        results,
        parts.sealer,
        u64::MAX,
    )?;
    let cpu0 = thread_cpu_s();
    let mut s = RunStats::default();
    let mut cp_records = 0u64;
    let mut last_durable = Instant::now();
    loop {
        let b = job.run_batch(&view, plan.batch)?;
        if b.records > 0 {
            last_durable = Instant::now();
        }
        s.latencies_us.extend_from_slice(&b.latencies_us);
        let processed = job.stats().records;
        s.max_backlog_frames = s
            .max_backlog_frames
            .max(published.load(Ordering::Acquire).saturating_sub(processed));
        if processed - cp_records >= plan.checkpoint_every {
            let t = Instant::now();
            job.checkpoint()?;
            s.checkpoint_max_ms = s.checkpoint_max_ms.max(t.elapsed().as_secs_f64() * 1e3);
            cp_records = processed;
        }
        if b.records == 0 {
            if done.load(Ordering::Acquire) && job.offset() == view.end() {
                break;
            }
            std::thread::park_timeout(Duration::from_millis(5));
        }
    }
    // The last result durable (a checkpoint after it delays no result).
    let finished = last_durable;
    s.worker_cpu_s = thread_cpu_s() - cpu0;
    let st = job.stats();
    s.frames = st.records;
    s.results = st.stored;
    s.undecodable = st.undecodable;
    s.checkpoints = st.checkpoints;
    s.refused = job.decoder().refused().values().sum();
    Ok((s, finished))
}
