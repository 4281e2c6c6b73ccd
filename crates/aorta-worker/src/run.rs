//! The worker loops: the ECG job over a server's log ([`run_worker`]), the
//! whole `aorta worker stream` step ([`stream`]), the host channel of
//! `aorta worker run --serve-stdio` ([`serve_host`]), and their typed reports.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aorta_enclave::upload::UploadFrames;
use aorta_stream::job::{FrameOpen, ResultSealer, StateSealer};
use serde::Serialize;

use crate::WorkerError;
use crate::attest::{AttestOptions, Attested, attest, released_devices};
use crate::client::{Ready, ServeSummary};
use crate::config::{StreamConfig, read_config};
use crate::frames::SecureFrames;
use crate::seal::sealers;
use crate::server::{RemoteCheckpoints, RemoteJob, RemoteLog, RemoteResults, Server};

/// Options of [`run_worker`].
#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    /// Records per batch.
    pub batch: usize,
    /// Checkpoint at least this often while input flows.
    pub checkpoint_every: Duration,
    /// Longest pause between retries after a failure.
    pub max_backoff: Duration,
    /// Stop after this many consecutive failures (0 = never).
    pub max_failures: u32,
    /// Stop (after a final checkpoint) at this time, unix seconds: when
    /// the worker's certificate is about to expire, so that it is
    /// restarted and re-attests instead of having its results refused.
    pub until_s: Option<u64>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            batch: 1024,
            checkpoint_every: Duration::from_secs(5),
            max_backoff: Duration::from_secs(5),
            max_failures: 0,
            until_s: None,
        }
    }
}

/// Progress of [`run_worker`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WorkerProgress {
    /// Log records processed.
    pub records: u64,
    /// Frames opened.
    pub opened: u64,
    /// Frames refused.
    pub refused: u64,
    /// Log offset processed.
    pub offset: u64,
    /// Checkpoints taken.
    pub checkpoints: u64,
    /// Failures retried.
    pub retries: u64,
    /// Patient erasures carried out.
    pub erased: u64,
}

/// A result sealer that can hand out a device's erase token
/// (`aorta_crypto::results::EraseToken`, `docs/erasure.md`).
pub trait EraseTokens {
    /// Device `serial`'s token, or `None` if this sealer's ids are not
    /// opaque (then the host cannot be told which results to erase).
    fn erase_token(&self, serial: &str) -> Option<aorta_crypto::results::EraseToken>;
}

impl EraseTokens for crate::seal::SubscriberSealer {
    fn erase_token(&self, serial: &str) -> Option<aorta_crypto::results::EraseToken> {
        crate::seal::SubscriberSealer::erase_token(self, serial)
    }
}

/// Carries out the patient erasures the server announced
/// (`docs/erasure.md`): drops each device's operator state, checkpoints
/// (results first, then the state without them), then hands the host each
/// device's erase token so it erases their results. Returns how many.
/// Safe to repeat after a failure at any step: a request stays pending on
/// the server until its token is accepted.
fn erase_patients<F, RS, SS>(
    job: &mut RemoteJob<F, RS, SS>,
    log: &RemoteLog,
) -> Result<u64, WorkerError>
where
    F: FrameOpen,
    RS: ResultSealer + EraseTokens,
    SS: StateSealer,
{
    let list = log.server().erasures()?;
    for e in &list.erasures {
        job.erase_device(&e.serial);
    }
    if list.erasures.is_empty() {
        return Ok(0);
    }
    job.checkpoint()?;
    for e in &list.erasures {
        let token = job
            .pipeline()
            .results()
            .sealer()
            .erase_token(&e.serial)
            .ok_or_else(|| {
                WorkerError::Internal("this worker's result ids are not opaque".into())
            })?;
        let a = log.server().erasure_done(&aorta_api::ErasureDone {
            id: e.id.clone(),
            token: token.to_hex().to_string(),
        })?;
        tracing::info!(target: "aorta::worker", request = %e.id, results_erased = a.results_erased, "patient erasure done");
    }
    Ok(list.erasures.len() as u64)
}

/// Runs `job` against the server's log until `stop` is set: read a batch,
/// open and analyse it, send the sealed results (durably) with the batch's
/// latencies, checkpoint periodically. Failures (server restarting, network)
/// are retried with backoff; the pipeline's write order keeps retries
/// exactly-once (unsent results stay buffered and precede any checkpoint).
/// A final checkpoint is taken on a clean stop.
pub fn run_worker<F, RS, SS>(
    job: &mut RemoteJob<F, RS, SS>,
    log: &RemoteLog,
    opts: WorkerOptions,
    stop: &AtomicBool,
    mut progress: impl FnMut(&WorkerProgress),
) -> Result<WorkerProgress, WorkerError>
where
    F: FrameOpen,
    RS: ResultSealer + EraseTokens,
    SS: StateSealer,
{
    let mut p = WorkerProgress {
        offset: job.offset(),
        ..WorkerProgress::default()
    };
    let mut last_cp = Instant::now();
    let mut cp_offset = job.offset();
    let mut failures = 0u32;
    let mut reported_opened = job.decoder().opened();
    let mut reported_refused = job.decoder().refused().clone();
    let mut expired = false;
    while !stop.load(Ordering::Relaxed) {
        if opts.until_s.is_some_and(|t| aorta_base::time::now_s() >= t) {
            expired = true;
            break;
        }
        let r = job.run_batch(log, opts.batch).and_then(|b| {
            let d = job.decoder();
            let refused_delta: BTreeMap<u16, u64> = d
                .refused()
                .iter()
                .map(|(c, n)| (*c, n - reported_refused.get(c).copied().unwrap_or(0)))
                .filter(|(_, n)| *n > 0)
                .collect();
            let opened = d.opened() - reported_opened;
            reported_opened = d.opened();
            reported_refused = d.refused().clone();
            job.pipeline()
                .results()
                .inner()
                .report(opened, &refused_delta, &b.latencies_us);
            if b.records == 0 {
                // Idle: deliver the progress report now.
                job.pipeline_mut().sync_results()?;
            }
            if job.offset() != cp_offset && last_cp.elapsed() >= opts.checkpoint_every {
                job.checkpoint()?;
                cp_offset = job.offset();
                last_cp = Instant::now();
                p.checkpoints += 1;
            }
            Ok(b.records)
        });
        let r = r.map_err(WorkerError::from).and_then(|n| {
            if log.erasures_pending() > 0 {
                p.erased += erase_patients(job, log)?;
                cp_offset = job.offset();
                last_cp = Instant::now();
                p.checkpoints += 1;
            }
            Ok(n)
        });
        match r {
            Ok(n) => {
                failures = 0;
                p.records += n as u64;
                p.offset = job.offset();
                p.opened = job.decoder().opened();
                p.refused = job.decoder().refused().values().sum();
                progress(&p);
            }
            Err(e) => {
                failures += 1;
                p.retries += 1;
                if opts.max_failures > 0 && failures >= opts.max_failures {
                    return Err(e);
                }
                let pause = Duration::from_millis(100u64 << failures.min(6)).min(opts.max_backoff);
                tracing::warn!(target: "aorta::worker", error = %e, retry_in_ms = pause.as_millis() as u64, "batch failed; retrying");
                std::thread::sleep(pause);
            }
        }
    }
    if job.offset() != cp_offset {
        job.checkpoint()?;
        p.checkpoints += 1;
    }
    if expired {
        return Err(WorkerError::Attestation(
            "the worker's certificate is about to expire: checkpointed and stopped; restart the worker to re-attest"
                .into(),
        ));
    }
    Ok(p)
}

/// What `aorta worker run` reports once attested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunStatus {
    /// Evidence backend.
    pub backend: String,
    /// False for `sim`.
    pub hardware_protected: bool,
    /// The `sim` warning, or `null`.
    pub warning: Option<String>,
    /// This binary's measurement, hex.
    pub measurement: String,
    /// Assignment name.
    pub assignment: String,
    /// Devices whose keys were released.
    pub devices: Vec<String>,
    /// Subscribers whose result keys were released.
    pub subscribers: Vec<String>,
    /// Transport keys released.
    pub transport_keys: usize,
    /// Result keys released.
    pub result_keys: usize,
}

impl RunStatus {
    /// The status of an attested worker for `assignment`.
    pub fn of(a: &Attested, assignment: &str) -> Self {
        let keys = a.ready.keys();
        let hardware = a.backend.is_hardware();
        RunStatus {
            backend: a.backend.name().to_owned(),
            hardware_protected: hardware,
            warning: (!hardware).then(|| aorta_enclave::SIM_WARNING.to_owned()),
            measurement: a.measurement.to_hex(),
            assignment: assignment.to_owned(),
            devices: released_devices(keys.transport_keys.iter().map(|(s, _)| s.clone())),
            subscribers: keys.result_keys.iter().map(|(s, _)| s.clone()).collect(),
            transport_keys: keys.transport_keys.len(),
            result_keys: keys.result_keys.len(),
        }
    }
}

/// Serves the host protocol of an attested worker on `input`/`output`
/// (`SealedFrame` → `FrameDone`/`FrameRefused`) until the host closes it.
pub fn serve_host(
    ready: &Ready,
    input: &mut impl std::io::Read,
    output: &mut impl std::io::Write,
) -> Result<ServeSummary, WorkerError> {
    ready
        .serve(&UploadFrames, input, output, &mut |_f| {})
        .map_err(|e| WorkerError::Peer(format!("host channel: {e}")))
}

/// Options of [`stream`].
#[derive(Debug, Clone, PartialEq)]
pub struct StreamOptions {
    /// How to attest.
    pub attest: AttestOptions,
    /// Server base URL.
    pub server: String,
    /// The server's certificate to trust.
    pub ca: PathBuf,
    /// File holding the server's worker token.
    pub token_file: PathBuf,
    /// Records per batch (clamped to 1..=4096).
    pub batch: usize,
    /// Checkpoint interval, seconds (positive).
    pub checkpoint_secs: f64,
}

/// What `aorta worker stream` did, reported when it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StreamSummary {
    /// The worker loop's progress.
    #[serde(flatten)]
    pub progress: WorkerProgress,
    /// Results newly stored by the server.
    pub results_stored: u64,
    /// Results the server already held (replays).
    pub results_duplicate: u64,
}

/// What [`stream`] and the cluster mode share before running: the
/// configuration (read once: the bytes measured into the attestation are
/// the bytes run), the worker token, and the attested worker (retrying
/// what the network breaks, never a refusal).
pub(crate) fn attest_for_stream(
    o: &StreamOptions,
    stop: &AtomicBool,
) -> Result<Attestation, WorkerError> {
    if !(o.checkpoint_secs.is_finite() && o.checkpoint_secs > 0.0) {
        return Err(WorkerError::Config(
            "--checkpoint-secs must be positive".into(),
        ));
    }
    // Read once: the bytes measured into the attestation are the bytes run.
    let config = read_config(o.attest.config.as_deref())?;
    let cfg = StreamConfig::parse(&config)?;
    let token = zeroize::Zeroizing::new(
        std::fs::read_to_string(&o.token_file)
            .map_err(|e| {
                WorkerError::Config(format!(
                    "cannot read the worker token {}: {e}",
                    o.token_file.display()
                ))
            })?
            .trim()
            .to_owned(),
    );
    // The broker may be restarting: retry what the network breaks, never a
    // refusal.
    let mut failures = 0u32;
    let attested = loop {
        let attempt = match o.attest.key_window {
            Some(w) => crate::attest::attest_windowed(&o.attest, &config, w),
            None => attest(&o.attest, &config, Vec::new(), Vec::new()),
        };
        match attempt {
            Ok(r) => break r,
            Err(e) if e.is_transient() && failures < 30 && !stop.load(Ordering::Relaxed) => {
                failures += 1;
                let pause = Duration::from_millis(100u64 << failures.min(5));
                tracing::warn!(target: "aorta::worker", error = %e, retry_in_ms = pause.as_millis() as u64, "attestation failed; retrying");
                std::thread::sleep(pause);
            }
            Err(e) => return Err(e),
        }
    };
    Ok(Attestation {
        cfg,
        config,
        token,
        attested,
    })
}

/// What [`attest_for_stream`] gives.
pub(crate) struct Attestation {
    /// The parsed configuration.
    pub(crate) cfg: StreamConfig,
    /// Its bytes, as measured into the attestation (a key-window refresh
    /// attests with them again).
    pub(crate) config: Vec<u8>,
    /// The worker token.
    pub(crate) token: zeroize::Zeroizing<String>,
    /// The attested worker.
    pub(crate) attested: Attested,
}

/// The frame opener of `ready`, fetching moved key windows as `o` asks
/// (`--key-window`) with the configuration bytes `config`.
pub(crate) fn secure_frames(o: &StreamOptions, config: &[u8], ready: Ready) -> SecureFrames {
    let frames = SecureFrames::new(ready);
    match o.attest.key_window {
        Some(width) => {
            let (attest_opts, config) = (o.attest.clone(), config.to_vec());
            frames.with_key_windows(
                width,
                Box::new(move |wants| {
                    crate::attest::fetch_windows(&attest_opts, &config, width, wants)
                }),
            )
        }
        None => frames,
    }
}

/// Attests (retrying what the network breaks, never a refusal), then runs
/// the ECG job over the server's log until `stop` is set: frames opened
/// inside the worker, results sealed to the assignment's subscribers,
/// checkpoints under the state key. A final checkpoint is taken on a clean
/// stop.
pub fn stream(o: &StreamOptions, stop: &AtomicBool) -> Result<StreamSummary, WorkerError> {
    let Attestation {
        cfg,
        config,
        token,
        attested: Attested { ready, backend, .. },
    } = attest_for_stream(o, stop)?;
    let (results_sealer, state_sealer, certificate) = sealers(&ready, &o.attest.assignment)?;
    if results_sealer.is_empty() {
        tracing::warn!(target: "aorta::worker", "the assignment has no subscribers: results are computed but nobody can read them");
    }
    let devices = released_devices(ready.keys().transport_keys.iter().map(|(s, _)| s.clone()));
    tracing::info!(target: "aorta::worker", backend = backend.name(), hardware_protected = backend.is_hardware(), devices = devices.len(), transport_keys = ready.keys().transport_keys.len(), key_window = o.attest.key_window, subscribers = results_sealer.len(), "keys received; streaming");
    let srv = Server::new(&o.server, &o.ca, Some(token.to_string()))?;
    let log = RemoteLog::new(srv.clone(), 500);
    let frames = secure_frames(o, &config, ready);
    let mut job = aorta_stream::job::EcgJob::open(
        cfg.ecg(),
        cfg.engine(),
        frames,
        RemoteCheckpoints::new(srv.clone()),
        state_sealer,
        RemoteResults::new(srv.clone()).with_certificate(&certificate),
        results_sealer,
        u64::MAX,
    )?;
    // Stop an hour before the certificate expires (its results would be
    // refused after it): the supervisor restarts the worker, which attests
    // again and gets a fresh certificate.
    let until_s = aorta_crypto::auth::WorkerCert::parse(&certificate)
        .ok()
        .map(|c| c.not_after.saturating_sub(3600));
    let opts = WorkerOptions {
        batch: o.batch.clamp(1, 4096),
        checkpoint_every: Duration::from_secs_f64(o.checkpoint_secs),
        until_s,
        ..WorkerOptions::default()
    };
    let p = run_worker(&mut job, &log, opts, stop, |_p| {})?;
    let (results_stored, results_duplicate) = job.pipeline().results().inner().counts();
    Ok(StreamSummary {
        progress: p,
        results_stored,
        results_duplicate,
    })
}
