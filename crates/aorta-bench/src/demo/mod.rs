//! `aorta demo`: the whole system on one machine, with no setup.
//!
//! 1. **Factory**: a device key registry and N provisioned devices (file
//!    key stores), a clinician identity, a sim attestation platform key.
//! 2. **Data owner**: a broker policy admitting exactly the given build of
//!    the worker (its measurement) and sealing results to the clinician.
//! 3. **Cloud**: `aorta server` (HTTPS ingest, log, results API, the broker)
//!    and `aorta worker stream` (attests, receives keys, analyses), as real
//!    child processes of the executable in [`DemoConfig::exe`].
//! 4. **Devices**: N device agents (threads here, the same code as
//!    `aorta device run`) replay MIT-BIH records as live, sealed streams,
//!    with `aorta_device::source::record::RecordReplay`.
//! 5. **Clinician**: fetches the results sealed to it and opens them, live
//!    (drawn on stderr); with [`DemoConfig::dashboard`], also
//!    `aorta clinician serve` (the web dashboard) as a child process with
//!    the demo's clinician identity, serving until the user stops it
//!    ([`Dashboard::serve_until_stopped`]).
//!
//! Then it returns a [`DemoReport`] (`devices`, `samples`, `frames`,
//! `events`, `samples_per_s`, `latency_ms` {`p50`, `p99`}, …).

mod fleet;
pub(crate) mod procs;
pub(crate) mod setup;
mod view;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aorta_api::Stats;
use aorta_device::agent::Speed;
use aorta_worker::clinician::ResultReader;
use aorta_worker::server::Server;
use serde::Serialize;

use procs::Proc;

/// The subscriber (clinician) results are sealed to.
pub const SUBSCRIBER: &str = "demo-clinician";
/// The broker assignment of the demo's worker.
pub const ASSIGNMENT: &str = "demo";

/// A record shipped with the executable, replayed when the database is
/// absent.
#[derive(Debug, Clone, Copy)]
pub struct SampleRecord {
    /// Record name.
    pub name: &'static str,
    /// The `.hea` file.
    pub header: &'static [u8],
    /// The `.dat` file.
    pub signal: &'static [u8],
}

/// What a demo device replays.
#[derive(Debug, Clone, Copy)]
struct ReplaySpec {
    /// Seconds of signal per frame.
    frame_seconds: f64,
    /// Seconds of signal from the record's start.
    duration_seconds: f64,
    /// Event time of the first sample (µs since the Unix epoch).
    start_us: i64,
}

/// What `aorta demo` runs (its flags, and what the CLI provides).
pub struct DemoConfig {
    /// The `aorta` executable the server and worker are launched from (and
    /// whose measurement the policy admits).
    pub exe: PathBuf,
    /// Simulated devices (1..=500).
    pub devices: usize,
    /// Replay speed.
    pub speed: Speed,
    /// Seconds of signal per device.
    pub duration: f64,
    /// Seconds of signal per frame.
    pub frame_seconds: f64,
    /// The WFDB database to replay (`RECORDS` or `.hea` files; an error if
    /// it holds none); `None`: the shipped [`DemoConfig::sample`].
    pub db: Option<PathBuf>,
    /// Working directory (kept); `None`: a temporary one, removed.
    pub dir: Option<PathBuf>,
    /// Only provision and write the configuration.
    pub setup_only: bool,
    /// Records replayed when `db` is `None`.
    pub sample: Vec<SampleRecord>,
    /// Called as the devices start with the flag that stops them early
    /// (the CLI raises it on SIGINT and SIGTERM).
    pub watch_stop: fn(&Arc<AtomicBool>) -> anyhow::Result<()>,
    /// Also run the clinician's web dashboard, listening here.
    pub dashboard: Option<std::net::SocketAddr>,
}

/// The clinician's web dashboard (`aorta clinician serve`) started beside
/// the demo; dropping it stops it (and removes the demo's temporary
/// directory, kept while it serves).
pub struct Dashboard {
    proc: Proc,
    url: String,
    stop: Arc<AtomicBool>,
    tmp: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL holds the access token: not printed by Debug.
        f.write_str("Dashboard { .. }")
    }
}

impl Dashboard {
    /// The URL to open (it holds the run's access token).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Keeps serving until SIGINT/SIGTERM (the demo's stop flag) or until
    /// the dashboard exits; then stops it. True when it was still running.
    pub fn serve_until_stopped(mut self) -> bool {
        while !self.stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(Some(_)) = self.proc.child.try_wait() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.proc.stop();
        drop(self.tmp.take());
        true
    }
}

/// Starts `aorta clinician serve` for the demo's clinician; its URL.
fn start_dashboard(
    cfg: &DemoConfig,
    listen: std::net::SocketAddr,
    work: &Path,
    cloud: &Cloud,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Dashboard> {
    use std::io::BufRead;
    // Tied to this process by its stdin: if the demo is killed outright,
    // the dashboard reads end-of-file and exits rather than lingering.
    let (mut proc, _lines) = procs::spawn_tied(
        &cfg.exe,
        "dashboard",
        &[
            "clinician",
            "serve",
            "--identity",
            work.join("clinician.key").to_str().context("path")?,
            "--server",
            &cloud.url,
            "--ca",
            cloud.cert.to_str().context("path")?,
            "--broker-key",
            &aorta_base::hex::encode(&cloud.broker_key),
            "--subscriber",
            SUBSCRIBER,
            "--allow-sim",
            "--listen",
            &listen.to_string(),
            "--stop-on-stdin-eof",
        ],
        &work.join("dashboard.log"),
    )?;
    // Its one stdout line is the URL (with the token: never logged).
    let stdout = proc.child.stdout.take().context("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .ok()
        .map(|l| l.trim().to_owned())
        .filter(|l| l.starts_with("http://"))
        .context("the dashboard did not start (see dashboard.log)")?;
    Ok(Dashboard {
        proc,
        url,
        stop: stop.clone(),
        tmp: None,
    })
}

/// How `aorta demo` ended.
#[derive(Debug)]
pub enum DemoOutcome {
    /// `setup_only`: everything is written into `dir`.
    SetupOnly {
        /// The working directory.
        dir: PathBuf,
        /// The first record a device would replay.
        record: String,
        /// The commands that run each part, from `dir`, each on its own
        /// terminal (`ADDR`, `BROKER_ADDR`: what `aorta server` prints).
        commands: Vec<String>,
    },
    /// The demo ran (and its dashboard, when asked for, still serves).
    Ran(Box<DemoReport>, Option<Dashboard>),
}

/// The demo's summary (its `--json` output) and what went wrong.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct DemoReport {
    /// Devices.
    pub devices: usize,
    /// Samples sent (all channels).
    pub samples: u64,
    /// Frames ingest accepted.
    pub frames: u64,
    /// Rhythm events received.
    pub events: u64,
    /// Rhythm events received, by kind as results name it (`af_onset`,
    /// `vt_onset`, `bigeminy_onset`, …).
    pub events_by_kind: std::collections::BTreeMap<String, u64>,
    /// Results opened.
    pub results: u64,
    /// Samples per second of streaming.
    pub samples_per_s: f64,
    /// Seconds of streaming.
    pub seconds: f64,
    /// Frame arrival → sealed results stored.
    pub latency_ms: Latency,
    /// The worker's refusals by reason, as the server reports them.
    pub frames_refused_by_worker: std::collections::BTreeMap<u16, u64>,
    /// Results the clinician could not open.
    pub results_unopenable: u64,
    /// The shipped sample was replayed.
    pub sample_data: bool,
    /// Always false: the worker attests with `sim`.
    pub hardware_protected: bool,
    /// Why the demo failed (the worker exited, the last results unread).
    #[serde(skip)]
    pub failed: Option<String>,
    /// Problems of the devices.
    #[serde(skip)]
    pub device_errors: Vec<String>,
    /// The worker stopped cleanly.
    #[serde(skip)]
    pub worker_clean: bool,
    /// The working directory, when kept (`--dir`, or a temporary one kept
    /// because something failed).
    #[serde(skip)]
    pub kept_dir: Option<PathBuf>,
    /// Stopped early by SIGINT/SIGTERM: the figures cover what ran.
    pub interrupted: bool,
}

impl DemoReport {
    /// True when everything worked (the CLI exits 1 otherwise).
    pub fn ok(&self) -> bool {
        !self.interrupted
            && self.failed.is_none()
            && self.device_errors.is_empty()
            && self.worker_clean
            && self.results_unopenable == 0
    }
}

/// Latency percentiles (ms).
#[derive(Debug, Clone, Copy, Serialize)]
#[non_exhaustive]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// Runs the demo; `say` receives what to tell the user (stderr in the CLI).
pub fn run(cfg: &DemoConfig, say: &dyn Fn(&str)) -> anyhow::Result<DemoOutcome> {
    // One key bundle holds at most 65,535 keys and the broker releases a
    // device's 120 group keys: one worker serves at most 546 devices.
    if cfg.devices == 0 || cfg.devices > 500 {
        bail!(
            "--devices must be in 1..=500 (one worker's key bundle holds the group keys of at most 546 devices)"
        );
    }
    if !(cfg.duration.is_finite() && cfg.duration > 0.0 && cfg.duration <= 86_400.0) {
        bail!("--duration must be in (0, 86400] seconds");
    }
    let mut tmp = None;
    let work = match &cfg.dir {
        Some(d) => {
            if d.exists() && std::fs::read_dir(d)?.next().is_some() {
                bail!("{} is not empty; give a new or empty --dir", d.display());
            }
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            let t = tempfile::Builder::new().prefix("aorta-demo-").tempdir()?;
            let p = t.path().to_path_buf();
            tmp = Some(t);
            p
        }
    };
    let result = run_in(cfg, &work, say);
    // A temporary directory is removed only after a clean run; otherwise
    // its logs are what explains the failure.
    let clean = matches!(&result, Ok(DemoOutcome::Ran(r, _)) if r.ok() || r.interrupted && r.failed.is_none());
    let mut result = result;
    // A dashboard still serving keeps the temporary directory (its
    // identity's audit file) until it stops.
    let tmp = match (&mut result, tmp) {
        (Ok(DemoOutcome::Ran(_, Some(d))), Some(t)) if clean => {
            d.tmp = Some(t);
            None
        }
        (_, t) => t,
    };
    let kept = match tmp {
        Some(t) if !clean => Some(t.keep()),
        Some(_) => None,
        None if cfg.dir.is_none() => None,
        None => Some(work.clone()),
    };
    match result {
        Ok(DemoOutcome::Ran(mut r, d)) => {
            r.kept_dir = kept;
            Ok(DemoOutcome::Ran(r, d))
        }
        Ok(o) => Ok(o),
        Err(e) => Err(match kept {
            Some(k) => e.context(format!(
                "the demo failed; its work directory (server.log, worker.log) is kept: {}",
                k.display()
            )),
            None => e,
        }),
    }
}

/// [`run`] in the working directory `work`.
fn run_in(cfg: &DemoConfig, work: &Path, say: &dyn Fn(&str)) -> anyhow::Result<DemoOutcome> {
    let work = work.to_path_buf();
    let (recs, sample) = setup::records(cfg, &work)?;
    say("aorta demo — devices → server → attested worker → clinician, on this machine");
    if sample {
        say("  replaying the 6-minute MIT-BIH sample shipped in aorta (records 100, 203)");
    }
    let st = setup::setup(cfg, &work)?;
    if cfg.setup_only {
        let record = recs
            .first()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let commands = setup::commands(&record);
        return Ok(DemoOutcome::SetupOnly {
            dir: work,
            record,
            commands,
        });
    }
    say(&format!(
        "  provisioned {} device(s) with {} factory keys each; clinician identity and broker policy written to {}",
        cfg.devices,
        aorta_crypto::keys::DEFAULT_SLICE_LEN,
        work.display()
    ));
    say(
        "  WARNING: the worker attests with the `sim` backend — NOT hardware-protected (no TEE on this machine)",
    );
    let (mut report, dashboard) = stream(cfg, &work, &recs, st, say)?;
    report.sample_data = sample;
    Ok(DemoOutcome::Ran(Box::new(report), dashboard))
}

/// The cloud's processes.
struct Cloud {
    server: Proc,
    worker: Proc,
    /// The worker's stderr lines (kept open for its log copy).
    _worker_lines: std::sync::mpsc::Receiver<String>,
    url: String,
    cert: PathBuf,
    /// The in-process broker's certifying key, which the clinician pins.
    broker_key: [u8; 32],
}

impl Cloud {
    /// Starts the server (with its broker), then the worker.
    fn start(exe: &Path, work: &Path, say: &dyn Fn(&str)) -> anyhow::Result<Cloud> {
        let (server, addr, broker) =
            procs::start_server(exe, &work.join("server.toml"), &work.join("server.log"))?;
        let url = format!("https://{addr}");
        let data = work.join("server");
        let cert = data.join(aorta_server::http::tls::DEV_CERT);
        say(&format!(
            "  server: {url} (TLS, HTTP/2), key broker on {broker}"
        ));
        let (worker, lines) = procs::spawn(
            exe,
            "worker",
            &[
                "worker",
                "stream",
                "--backend",
                "sim",
                "--broker",
                &broker,
                "--assignment",
                ASSIGNMENT,
                "--sim-platform-key",
                work.join("sim-platform.key").to_str().context("path")?,
                "--server",
                &url,
                "--ca",
                cert.to_str().context("path")?,
                "--token-file",
                data.join("worker.token").to_str().context("path")?,
                "--json",
            ],
            &work.join("worker.log"),
        )?;
        say("  worker: attesting to the broker and streaming (log: worker.log)");
        let broker_key =
            aorta_server::broker::load_or_create_signing_key(&data.join("broker-signing.key"))?
                .public();
        Ok(Cloud {
            broker_key,
            server,
            worker,
            _worker_lines: lines,
            url,
            cert,
        })
    }
}

/// Streams every device through the cloud to the clinician; the summary.
fn stream(
    cfg: &DemoConfig,
    work: &Path,
    recs: &[PathBuf],
    st: setup::Setup,
    say: &dyn Fn(&str),
) -> anyhow::Result<(DemoReport, Option<Dashboard>)> {
    let mut cloud = Cloud::start(&cfg.exe, work, say)?;
    let start_us = {
        let now = aorta_base::time::now_us();
        now - now.rem_euclid(300_000_000)
    };
    let stop = Arc::new(AtomicBool::new(false));
    (cfg.watch_stop)(&stop)?;
    let dashboard = match cfg.dashboard {
        Some(listen) => {
            let d = start_dashboard(cfg, listen, work, &cloud, &stop)?;
            say(&format!(
                "  clinician dashboard: {} (audit: clinician.key.dashboard-audit.jsonl)",
                d.url()
            ));
            Some(d)
        }
        None => None,
    };
    let t0 = Instant::now();
    let mut fleet = fleet::Fleet::start(cfg, work, recs, &st.serials, &cloud, start_us, &stop)?;
    // The clinician, live.
    let srv = Server::new(&cloud.url, &cloud.cert, None)?;
    let mut reader =
        ResultReader::new(srv.clone(), st.identity, SUBSCRIBER, None, cloud.broker_key)?
            // The demo's worker attests with `sim` (it says so): not
            // hardware-protected.
            .allow_simulation(true);
    let mut screen = view::Screen::new(t0);
    let mut failed = fleet.watch(&mut cloud.worker, &mut reader, &mut screen, &stop);
    // Stopped by a signal (the worker exiting raises `stop` too, as a failure).
    let interrupted = || failed.is_none() && stop.load(std::sync::atomic::Ordering::Relaxed);
    let device_errors = fleet.join();
    // Wait for the worker to open everything ingest accepted (not after a
    // signal: the user asked to stop; the children may be stopping too).
    let mut stats = Stats::default();
    if failed.is_none() && !interrupted() {
        stats = settle(&srv, &stop)?;
    }
    let interrupted = interrupted();
    let streaming = t0.elapsed().as_secs_f64();
    // Stop the worker (final checkpoint), read the last results, stop the server.
    let wstatus = cloud.worker.stop();
    if let Err(e) = fleet.poll(&mut reader)
        && !interrupted
    {
        failed.get_or_insert(format!("reading the last results: {e}"));
    }
    fleet.draw(&mut screen, true);
    let stats = srv.stats().unwrap_or(stats);
    cloud.server.stop();
    let mut report = fleet.report(&stats, streaming, reader.refused());
    report.failed = failed;
    report.interrupted = interrupted;
    // Stopped devices leave their unsent frames queued, as they should.
    report.device_errors = if interrupted {
        Vec::new()
    } else {
        device_errors
    };
    // A worker stopped by the terminal's SIGINT with the demo exits 0 too.
    report.worker_clean = interrupted || wstatus.is_none_or(|s| s.success());
    // After a signal the dashboard stops with the rest (dropped).
    let dashboard = dashboard.filter(|_| !interrupted);
    Ok((report, dashboard))
}

/// Polls the server's counters until the worker has opened (or refused)
/// every frame ingest accepted, or 120 s pass, or `stop` is raised; the
/// last counters.
fn settle(srv: &Server, stop: &AtomicBool) -> anyhow::Result<Stats> {
    let settle = Instant::now();
    let mut stats = Stats::default();
    while settle.elapsed() < Duration::from_secs(120) {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        stats = srv.stats()?;
        let refused: u64 = stats.frames_refused_by_worker.values().sum();
        if stats.frames_opened + refused >= stats.frames_accepted {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(stats)
}
