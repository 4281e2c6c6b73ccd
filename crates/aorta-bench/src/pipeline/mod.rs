//! `aorta bench pipeline`: the same ECG workload through the secure pipeline
//! and through a plain one, in one run, in process.
//!
//! Both pipelines are two threads, as in `aorta server` + `aorta worker
//! stream`: an **ingest** thread that checks each frame's header and hands
//! it to the server's own log writer, [`GroupCommit`] (deduplication and
//! replay checks, the arrival-time prefix, append, one fsync per batch of up
//! to [`GroupCommit::MAX_BATCH`] frames), publishing the durable end after
//! each sync; and a **worker** thread that runs [`EcgJob`] over a read-only
//! view of that log up to the published end, makes each batch's results
//! durable, and checkpoints every 5 s of signal.
//!
//! - **secure**: AOFR frames sealed as devices seal them (AES-256-GCM under
//!   per-frame transport keys derived from each device's key slice; sealing
//!   is the devices' work and happens before timing), checked by ingest as
//!   the server checks them ([`check_header`]); the worker is a [`Ready`]
//!   obtained by a real in-process sim attestation and key release by a
//!   [`Broker`]; frames cross the host↔worker message boundary
//!   ([`SecureFrames`]); results are sealed to one clinician
//!   ([`SubscriberSealer`]) and checkpoints under the released state key
//!   ([`StateKeySealer`]).
//! - **plain**: the same samples as [`encode_plain_frame`] frames (same
//!   codec), [`PlainFrames`], [`PlainResults`], [`PlainState`].
//!
//! Two measurements per pipeline: throughput at full speed (all frames
//! offered at once; samples of all channels / wall time from the first
//! append to the last result durable), and latency paced in real time
//! (frame `k` of every device released at `t0 + (k+1)·F`; latency = results
//! durable − release time, per frame).
//!
//! [`GroupCommit`]: aorta_server::http::ingest::GroupCommit
//! [`check_header`]: aorta_server::http::ingest::check_header
//! [`EcgJob`]: aorta_stream::job::EcgJob
//! [`Ready`]: aorta_worker::client::Ready
//! [`Broker`]: aorta_server::broker::Broker
//! [`SecureFrames`]: aorta_worker::frames::SecureFrames
//! [`SubscriberSealer`]: aorta_worker::seal::SubscriberSealer
//! [`StateKeySealer`]: aorta_worker::seal::StateKeySealer
//! [`encode_plain_frame`]: aorta_stream::job::encode_plain_frame
//! [`PlainFrames`]: aorta_stream::job::PlainFrames
//! [`PlainResults`]: aorta_stream::job::PlainResults
//! [`PlainState`]: aorta_stream::job::PlainState

mod devices;
mod report;
mod run;
pub(crate) mod signal;

use std::path::{Path, PathBuf};

use anyhow::Context;
use aorta_crypto::results::ClinicianIdentity;
use aorta_enclave::attest::SimAttester;
use aorta_enclave::evidence::Measurement;
use aorta_enclave::keywrap::Secret32;
use aorta_server::broker::Broker;
use aorta_stream::job::{PlainFrames, PlainResults, PlainState};
use aorta_worker::frames::SecureFrames;
use aorta_worker::seal::sealers;

pub use report::{PacedFigures, PipelineFigures, PipelineReport, RoundFigures, RunCounts, Targets};

use devices::{BenchKeys, DeviceFrames, RELEASED_INDICES};
use run::{JobParts, Pace, RunStats, WorkerPlan, Workload};

/// The subscriber the worker seals results to.
const SUBSCRIBER: &str = "bench-clinician";
/// The assignment name.
const ASSIGNMENT: &str = "bench-pipeline";

/// What `aorta bench pipeline` runs (its flags).
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Concurrent devices (each 360 Hz, two channels with MIT-BIH).
    pub devices: usize,
    /// Seconds of signal per device for the full-speed throughput run.
    pub seconds: f64,
    /// Seconds of signal per device for the real-time paced latency run.
    pub paced_seconds: f64,
    /// Seconds of signal per frame.
    pub frame_seconds: f64,
    /// WFDB database the devices replay (a synthetic ECG when absent).
    pub db: PathBuf,
    /// Worker records per batch.
    pub batch: usize,
    /// Full-speed rounds per pipeline (the median is reported).
    pub rounds: usize,
    /// Worker checkpoint interval, seconds of signal.
    pub checkpoint_secs: f64,
    /// Keep the stores (and DIR/clinician.key) in this directory.
    pub keep: Option<PathBuf>,
}

impl PipelineConfig {
    /// Frames per device at full speed and paced.
    fn frames(&self) -> (usize, usize) {
        let f = |s: f64| (s / self.frame_seconds).round().max(1.0) as usize;
        (f(self.seconds), f(self.paced_seconds))
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.devices > 0, "--devices must be at least 1");
        anyhow::ensure!(
            self.devices <= 16_000,
            "--devices at most 16000 (one key bundle holds at most 65,535 keys, {RELEASED_INDICES} per device)"
        );
        for (name, v) in [
            ("--seconds", self.seconds),
            ("--paced-seconds", self.paced_seconds),
            ("--frame-seconds", self.frame_seconds),
            ("--checkpoint-secs", self.checkpoint_secs),
        ] {
            anyhow::ensure!(v.is_finite() && v > 0.0, "{name} must be positive");
        }
        Ok(())
    }
}

/// The sealed workload, the broker and the clinician of one bench.
struct Bench {
    devices: Vec<DeviceFrames>,
    identity: ClinicianIdentity,
    broker: Broker,
    platform: SimAttester,
    measurement: Measurement,
    plan: WorkerPlan,
}

/// Runs `aorta bench pipeline`; `progress` receives what to tell the user
/// while it runs (stderr in the CLI).
pub fn run(cfg: &PipelineConfig, progress: &dyn Fn(&str)) -> anyhow::Result<PipelineReport> {
    cfg.validate()?;
    let (frames_max, frames_paced) = cfg.frames();
    let (bench, data) = prepare(cfg, frames_max.max(frames_paced), progress)?;
    let (work, temp) = work_dir(cfg)?;
    if cfg.keep.is_some() {
        aorta_base::fs::write_private_atomic(
            &work.join("clinician.key"),
            bench.identity.to_file_text().as_bytes(),
        )?;
    }
    let outcome = measure(&bench, cfg, &work, progress);
    if temp {
        let _ = std::fs::remove_dir_all(&work);
    }
    let m = outcome?;
    report::build(cfg, data, &m, frames_max, frames_paced)
}

/// Signal, sealed frames, broker and clinician; the data's name.
fn prepare(
    cfg: &PipelineConfig,
    frames_all: usize,
    progress: &dyn Fn(&str),
) -> anyhow::Result<(Bench, String)> {
    let keep_s = 300.0 + frames_all as f64 * cfg.frame_seconds + 1.0;
    let (sources, data) = if cfg.db.is_dir() {
        (
            signal::load_db(&cfg.db, cfg.devices.min(64), keep_s)?,
            format!("{}", cfg.db.display()),
        )
    } else {
        progress(&format!(
            "NOTE: {} not found: the devices replay a SYNTHETIC ECG (not real data)",
            cfg.db.display()
        ));
        (
            signal::synthetic(cfg.devices.clamp(1, 8), keep_s),
            "synthetic".to_owned(),
        )
    };
    progress(&format!(
        "sealing {} frames of {} devices ({} source records; devices' work, not timed)…",
        frames_all * cfg.devices,
        cfg.devices,
        sources.len()
    ));
    let devices = devices::make_devices(&sources, cfg.devices, frames_all, cfg.frame_seconds)?;
    drop(sources);
    let identity = ClinicianIdentity::generate()?;
    let keys = BenchKeys {
        groups: devices
            .iter()
            .map(|d| (d.serial.clone(), d.groups.clone()))
            .collect(),
        clinician: Secret32::from_bytes(*identity.public().as_bytes()),
        state_secret: Secret32::from_bytes(aorta_base::random::array::<32>()?),
    };
    let serials: Vec<String> = devices.iter().map(|d| d.serial.clone()).collect();
    let (broker, platform, measurement) = devices::broker(keys, &serials)?;
    progress(&format!("WARNING: {}", aorta_enclave::SIM_WARNING));
    // Checkpoints every `checkpoint_secs` of signal: what the real worker's
    // timer gives while it keeps up in real time. Both pipelines then
    // checkpoint at the same points of the same workload (a wall-clock timer
    // would make the slower one checkpoint more often per frame).
    let plan = WorkerPlan {
        batch: cfg.batch.clamp(1, 4096),
        checkpoint_every: ((cfg.devices as f64 * cfg.checkpoint_secs / cfg.frame_seconds).round()
            as u64)
            .max(1),
    };
    let bench = Bench {
        devices,
        identity,
        broker,
        platform,
        measurement,
        plan,
    };
    Ok((bench, data))
}

/// The working directory (`--keep`, which must be empty, or a temporary
/// one) and whether it is temporary.
fn work_dir(cfg: &PipelineConfig) -> anyhow::Result<(PathBuf, bool)> {
    let (work, temp) = match &cfg.keep {
        Some(d) => {
            anyhow::ensure!(
                !d.exists() || std::fs::read_dir(d)?.next().is_none(),
                "--keep {}: the directory is not empty",
                d.display()
            );
            (d.clone(), false)
        }
        None => (
            std::env::temp_dir().join(format!("aorta-bench-pipeline-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    Ok((work, temp))
}

impl Bench {
    /// One run of the secure pipeline: a freshly attested worker.
    fn secure(&self, pace: Pace, frames: usize, dir: &Path) -> anyhow::Result<RunStats> {
        let ready = devices::attest(&self.broker, &self.platform, self.measurement)?;
        let (sealer, state, _certificate) = sealers(&ready, ASSIGNMENT)?;
        let w = Workload {
            devices: &self.devices,
            secure: true,
            frames,
        };
        let parts = JobParts {
            frames: SecureFrames::new(ready),
            sealer,
            state,
        };
        run::run_pipeline(&w, pace, dir, self.plan, parts)
    }

    /// One run of the plain pipeline.
    fn plain(&self, pace: Pace, frames: usize, dir: &Path) -> anyhow::Result<RunStats> {
        let w = Workload {
            devices: &self.devices,
            secure: false,
            frames,
        };
        let parts = JobParts {
            frames: PlainFrames,
            sealer: PlainResults,
            state: PlainState,
        };
        run::run_pipeline(&w, pace, dir, self.plan, parts)
    }
}

/// Everything measured, before it becomes a report.
struct Measured {
    plain_max: Vec<RunStats>,
    secure_max: Vec<RunStats>,
    plain_paced: RunStats,
    secure_paced: RunStats,
    same: bool,
    opened: usize,
}

/// The full-speed rounds, the paced runs and the comparison of results.
fn measure(
    b: &Bench,
    cfg: &PipelineConfig,
    work: &Path,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Measured> {
    let (frames_max, frames_paced) = cfg.frames();
    // Full speed: alternating rounds (plain, secure, plain, …) so that
    // load from elsewhere on the machine hits both alike; the median
    // round of each is reported. Round 1's stores are kept.
    let mut plain_max = Vec::new();
    let mut secure_max = Vec::new();
    for r in 1..=cfg.rounds.max(1) {
        let suffix = if r == 1 {
            String::new()
        } else {
            format!("-{r}")
        };
        progress(&format!("round {r}: plain, full speed…"));
        let dir = work.join(format!("plain-max{suffix}"));
        plain_max.push(b.plain(Pace::Max, frames_max, &dir)?);
        progress(&format!("round {r}: secure, full speed…"));
        let sdir = work.join(format!("secure-max{suffix}"));
        secure_max.push(b.secure(Pace::Max, frames_max, &sdir)?);
        if r > 1 {
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_dir_all(&sdir);
        }
    }
    progress(&format!(
        "plain, paced in real time ({} s)…",
        frames_paced as f64 * cfg.frame_seconds
    ));
    let pace = Pace::RealTime(cfg.frame_seconds);
    let plain_paced = b.plain(pace, frames_paced, &work.join("plain-paced"))?;
    progress("secure, paced in real time…");
    let secure_paced = b.secure(pace, frames_paced, &work.join("secure-paced"))?;
    let (same, opened) = report::results_identical(
        &work.join("secure-max/results.log"),
        &work.join("plain-max/results.log"),
        &b.identity,
        SUBSCRIBER,
    )?;
    Ok(Measured {
        plain_max,
        secure_max,
        plain_paced,
        secure_paced,
        same,
        opened,
    })
}
