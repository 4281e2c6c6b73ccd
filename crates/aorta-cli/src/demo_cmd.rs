//! `aorta demo`: the whole system on one machine, with no setup.
//!
//! 1. **Factory**: a device key registry and N provisioned devices (file
//!    key stores), a clinician identity, a sim attestation platform key.
//! 2. **Data owner**: a broker policy admitting exactly this build of the
//!    worker (its measurement) and sealing results to the clinician.
//! 3. **Cloud**: `aorta server` (HTTPS ingest, log, results API, the broker)
//!    and `aorta worker stream` (attests, receives keys, analyses), as real
//!    child processes of this one.
//! 4. **Devices**: N device agents (threads here, the same code as
//!    `aorta device run`) replay MIT-BIH records as live, sealed streams.
//! 5. **Clinician**: fetches the results sealed to it and opens them, live.
//!
//! Then it prints a summary (`--json`: `devices`, `samples`, `frames`,
//! `events`, `samples_per_s`, `latency_ms` {`p50`, `p99`}).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aorta_crypto::keys;
use aorta_crypto::results::ClinicianIdentity;
use aorta_device::agent::{self, AgentConfig, AgentEvent, Speed};
use aorta_device::http::{HttpOptions, HttpsTransport};
use aorta_device::queue::{OfflineQueue, QueueLimits};
use aorta_device::rotation::Sealer;
use aorta_device::se::FileSecureElement;
use aorta_enclave::attest::SimAttester;
use aorta_enclave::evidence::{Measurement, hex};
use aorta_registry::{PoolConfig, Registry};
use aorta_signal::wfdb::Record;
use aorta_stream::ecg::EcgResult;
use aorta_worker::clinician::{OpenedResult, ResultReader};
use aorta_worker::server::Server;

use crate::replay::{RecordReplay, ReplayOptions};

/// The sample shipped in the binary, used when the MIT-BIH folder is absent
/// (`tools/make_demo_sample.py`: the first 6 minutes of records 100 and 203).
const SAMPLE: [(&str, &[u8], &[u8]); 2] = [
    (
        "100",
        include_bytes!("../assets/sample/100.hea"),
        include_bytes!("../assets/sample/100.dat"),
    ),
    (
        "203",
        include_bytes!("../assets/sample/203.hea"),
        include_bytes!("../assets/sample/203.dat"),
    ),
];

const SUBSCRIBER: &str = "demo-clinician";
const ASSIGNMENT: &str = "demo";

/// `aorta demo` arguments.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Simulated devices (patients), each streaming one record (≤ 500: one
    /// worker's key bundle).
    #[arg(long, default_value_t = 8)]
    devices: usize,
    /// Replay speed: × real time, or `max`.
    #[arg(long, default_value = "30")]
    speed: String,
    /// Seconds of signal per device (HRV needs 300 for one Task Force window).
    #[arg(long, default_value_t = 330.0)]
    duration: f64,
    /// Seconds of signal per frame.
    #[arg(long, default_value_t = 1.0)]
    frame_seconds: f64,
    /// MIT-BIH folder (a 6-minute sample shipped in the binary is used when
    /// it is absent).
    #[arg(long, default_value = "../shared/data/mitdb")]
    db: PathBuf,
    /// Working directory (kept); default: a temporary one, removed.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Only provision and write the configuration into `--dir`, print the
    /// commands that run each part, and exit (to run the pieces yourself).
    #[arg(long, requires = "dir")]
    setup_only: bool,
}

/// A child process killed on drop.
struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    /// SIGTERM and wait (up to 20 s, then SIGKILL).
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop in 20 s; killing it", self.name);
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Spawns `aorta ARGS`, its stderr copied to `log`; returns the process and
/// a channel of its stderr lines.
fn spawn(
    name: &'static str,
    args: &[&str],
    log: &Path,
) -> anyhow::Result<(Proc, std::sync::mpsc::Receiver<String>)> {
    let exe = std::env::current_exe().context("cannot find the aorta executable")?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().context("no stderr")?;
    let mut file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
            let _ = tx.send(line);
        }
    });
    Ok((Proc { name, child }, rx))
}

/// The records to replay: the MIT-BIH folder's, or the shipped sample.
fn records(db: &Path, work: &Path) -> anyhow::Result<(Vec<PathBuf>, bool)> {
    let list = std::fs::read_to_string(db.join("RECORDS")).ok();
    if let Some(list) = list {
        // A varied ward first (sinus rhythm, AF, ectopy, noise), then the rest.
        const FIRST: [&str; 8] = ["100", "203", "201", "208", "119", "105", "210", "106"];
        let names: Vec<&str> = list
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let recs: Vec<PathBuf> = FIRST
            .iter()
            .filter(|f| names.contains(f))
            .chain(names.iter().filter(|n| !FIRST.contains(n)))
            .map(|l| db.join(l))
            .collect();
        if !recs.is_empty() {
            return Ok((recs, false));
        }
    }
    let dir = work.join("sample");
    std::fs::create_dir_all(&dir)?;
    let mut out = Vec::new();
    for (name, hea, dat) in SAMPLE {
        std::fs::write(dir.join(format!("{name}.hea")), hea)?;
        std::fs::write(dir.join(format!("{name}.dat")), dat)?;
        out.push(dir.join(name));
    }
    Ok((out, true))
}

/// Everything the factory and the data owner set up.
struct Setup {
    serials: Vec<String>,
    identity: ClinicianIdentity,
}

fn setup(work: &Path, devices: usize) -> anyhow::Result<Setup> {
    // Factory: registry and devices.
    let slice = keys::DEFAULT_SLICE_LEN;
    let reg = Registry::init(
        work.join("registry"),
        PoolConfig {
            pool_keys: u64::from(slice) * devices as u64,
            slice_len: slice,
        },
    )?;
    let mut serials = Vec::with_capacity(devices);
    for i in 0..devices {
        let serial = format!("DEMO-{:04}", i + 1);
        let dir = work.join("devices").join(&serial);
        std::fs::create_dir_all(&dir)?;
        let se_path = dir.join(crate::factory_cmd::SE_FILE);
        FileSecureElement::create(&se_path, reg.provision(&serial)?)?;
        let se = FileSecureElement::open(&se_path)?;
        reg.verify(&serial, &keys::commitment(&se)?)?;
        serials.push(serial);
    }
    drop(reg);
    // The clinician.
    let identity = ClinicianIdentity::generate()?;
    aorta_server::http::write_private(
        &work.join("clinician.key"),
        identity.to_file_text().as_bytes(),
    )?;
    // The data owner's policy: this exact worker build, sim allowed for the
    // demo only, results sealed to the clinician.
    let platform = SimAttester::load_or_create(&work.join("sim-platform.key"))?;
    let m = Measurement::of_current_exe(b"").context("cannot measure this executable")?;
    let devices_toml = serials
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        work.join("policy.toml"),
        format!(
            "# aorta demo: sim attestation is NOT hardware-protected; never allow it in production.\n\
             allowed_backends = [\"sim\"]\nallow_simulation = true\n\
             allowed_measurements = [\"{}\"]\nsim_platform_keys = [\"{}\"]\n\n\
             [[assignments]]\nname = \"{ASSIGNMENT}\"\ndevices = [{devices_toml}]\nsubscribers = [\"{SUBSCRIBER}\"]\n",
            m.to_hex(),
            hex(&platform.platform_public_key())
        ),
    )?;
    std::fs::write(
        work.join("subscribers.toml"),
        format!(
            "# Subscribers' public keys (clinicians); results are sealed to them.\n[results]\n{SUBSCRIBER} = \"{}\"\n",
            hex(identity.public().as_bytes())
        ),
    )?;
    std::fs::write(
        work.join("server.toml"),
        "listen = \"127.0.0.1:0\"\nbroker_listen = \"127.0.0.1:0\"\ndata_dir = \"server\"\n\
         registry = \"registry\"\npolicy = \"policy.toml\"\nsubscribers = \"subscribers.toml\"\n",
    )?;
    Ok(Setup { serials, identity })
}

/// Per-patient live view.
#[derive(Default, Clone)]
struct Patient {
    record: String,
    bpm: Option<f64>,
    sdnn: Option<f64>,
    rmssd: Option<f64>,
    lf_hf: Option<f64>,
    events: Vec<String>,
    results: u64,
}

fn apply(view: &mut BTreeMap<String, Patient>, r: &OpenedResult, events: &mut u64) {
    let p = view.entry(r.patient.clone()).or_default();
    p.results += 1;
    let finite = |v: f64| Some(v).filter(|x| x.is_finite());
    match &r.result {
        EcgResult::HeartRate { bpm, .. } => p.bpm = finite(*bpm),
        EcgResult::Hrv(h) => {
            p.sdnn = finite(h.sdnn);
            p.rmssd = finite(h.rmssd);
            p.lf_hf = finite(h.lf_hf);
        }
        EcgResult::Rhythm(ev) => {
            *events += 1;
            // The kind's name as it is written in results (`af_onset`, …).
            let kind = serde_json::to_value(ev.kind)
                .ok()
                .and_then(|v| v.get("kind")?.as_str().map(str::to_owned))
                .unwrap_or_default();
            p.events.push(kind);
        }
    }
}

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or("–".into(), |x| format!("{x:.prec$}"))
}

fn render(
    view: &BTreeMap<String, Patient>,
    sent: u64,
    total: u64,
    acked: u64,
    frames: u64,
    elapsed: f64,
) -> Vec<String> {
    let frac = if total == 0 {
        1.0
    } else {
        sent as f64 / total as f64
    };
    let width = 30;
    let filled = ((frac * width as f64).round() as usize).min(width);
    let mut lines = vec![format!(
        "[{}{}] {:5.1}%  {:>10} samples sent  {:>6}/{:<6} frames acked  {:5.1} s",
        "#".repeat(filled),
        ".".repeat(width - filled),
        frac * 100.0,
        sent,
        acked,
        frames,
        elapsed
    )];
    lines.push(format!(
        "{:<10} {:<7} {:>7} {:>9} {:>9} {:>7}  {}",
        "patient", "record", "HR bpm", "SDNN ms", "RMSSD ms", "LF/HF", "rhythm events"
    ));
    for (serial, p) in view.iter().take(16) {
        let ev = if p.events.is_empty() {
            "–".to_string()
        } else {
            let last: Vec<&str> = p.events.iter().rev().take(3).map(String::as_str).collect();
            format!("{} (last: {})", p.events.len(), last.join(", "))
        };
        lines.push(format!(
            "{:<10} {:<7} {:>7} {:>9} {:>9} {:>7}  {}",
            serial,
            p.record,
            fmt_opt(p.bpm, 0),
            fmt_opt(p.sdnn, 1),
            fmt_opt(p.rmssd, 1),
            fmt_opt(p.lf_hf, 2),
            ev
        ));
    }
    if view.len() > 16 {
        lines.push(format!("… and {} more patients", view.len() - 16));
    }
    lines
}

pub fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    // One key bundle holds at most 65,535 keys and the broker releases a
    // device's 120 group keys: one worker serves at most 546 devices.
    if a.devices == 0 || a.devices > 500 {
        bail!(
            "--devices must be in 1..=500 (one worker's key bundle holds the group keys of at most 546 devices)"
        );
    }
    if !(a.duration.is_finite() && a.duration > 0.0 && a.duration <= 86_400.0) {
        bail!("--duration must be in (0, 86400] seconds");
    }
    let speed: Speed = a.speed.parse()?;
    let tmp;
    let work = match &a.dir {
        Some(d) => {
            if d.exists() && std::fs::read_dir(d)?.next().is_some() {
                bail!("{} is not empty; give a new or empty --dir", d.display());
            }
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::Builder::new().prefix("aorta-demo-").tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let (recs, sample) = records(&a.db, &work)?;
    let say = |s: &str| eprintln!("{s}");
    say("aorta demo — devices → server → attested worker → clinician, on this machine");
    if sample {
        say(&format!(
            "  {} not found: replaying the 6-minute MIT-BIH sample shipped in aorta (records 100, 203)",
            a.db.display()
        ));
    }
    let st = setup(&work, a.devices)?;
    if a.setup_only {
        let w = work.display();
        let record = recs
            .first()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        println!("set up in {w}. Run each part in its own terminal, from {w}:");
        println!();
        println!("  aorta server --config server.toml");
        println!(
            "  aorta worker stream --backend sim --broker BROKER_ADDR --assignment {ASSIGNMENT} \\"
        );
        println!("      --sim-platform-key sim-platform.key --server https://ADDR \\");
        println!("      --ca server/cert.pem --token-file server/worker.token");
        println!("  aorta device run --device devices/DEMO-0001 --record {record} \\");
        println!("      --server https://ADDR --ca server/cert.pem --speed 10");
        println!("  aorta results fetch --server https://ADDR --ca server/cert.pem \\");
        println!("      --identity clinician.key --subscriber {SUBSCRIBER}");
        println!();
        println!(
            "ADDR and BROKER_ADDR: what `aorta server` prints. server.toml listens on ephemeral"
        );
        println!(
            "ports (127.0.0.1:0); set `listen` and `broker_listen` to fixed ones to keep them."
        );
        return Ok(ExitCode::SUCCESS);
    }
    say(&format!(
        "  provisioned {} device(s) with {} factory keys each; clinician identity and broker policy written to {}",
        a.devices,
        keys::DEFAULT_SLICE_LEN,
        work.display()
    ));
    say(
        "  WARNING: the worker attests with the `sim` backend — NOT hardware-protected (no TEE on this machine)",
    );

    // The cloud: server (with broker) and worker, as processes.
    let cfg = work.join("server.toml");
    let (mut server, lines) = spawn(
        "server",
        &["server", "--config", cfg.to_str().context("path")?],
        &work.join("server.log"),
    )?;
    let (addr, broker) = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .context("the server did not start (see server.log)")?;
        if let Some(rest) = line.strip_prefix("aorta server listening on https://") {
            let addr = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            let broker = rest
                .split("(broker ")
                .nth(1)
                .and_then(|b| b.split(')').next())
                .unwrap_or_default()
                .to_owned();
            break (addr, broker);
        }
    };
    let url = format!("https://{addr}");
    let data = work.join("server");
    let cert = data.join(aorta_server::http::tls::DEV_CERT);
    say(&format!(
        "  server: {url} (TLS, HTTP/2), key broker on {broker}"
    ));
    let (mut worker, _wl) = spawn(
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

    // The devices.
    let start_us = {
        let now = aorta_stream::job::now_us();
        now - now.rem_euclid(300_000_000)
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let sent = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let frames = Arc::new(AtomicU64::new(0));
    let mut loaded: BTreeMap<PathBuf, Arc<Record>> = BTreeMap::new();
    let mut view: BTreeMap<String, Patient> = BTreeMap::new();
    let mut total = 0u64;
    let mut threads = Vec::new();
    let uplink = HttpsTransport::new(&url, &cert, HttpOptions::default())?;
    let t0 = Instant::now();
    for (i, serial) in st.serials.iter().enumerate() {
        let path = recs
            .get(i % recs.len())
            .context("no records to replay")?
            .clone();
        let rec = match loaded.get(&path) {
            Some(r) => r.clone(),
            None => {
                let r = Arc::new(
                    Record::read(&path).with_context(|| format!("reading {}", path.display()))?,
                );
                loaded.insert(path.clone(), r.clone());
                r
            }
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        view.entry(serial.clone()).or_default().record = name;
        let mut replay = RecordReplay::new(
            rec,
            &ReplayOptions {
                frame_seconds: a.frame_seconds,
                offset_seconds: 0.0,
                duration_seconds: Some(a.duration),
                start_us,
            },
        )?;
        total += replay.total_samples() * replay.channels() as u64;
        let dir = work.join("devices").join(serial);
        let se = FileSecureElement::open(dir.join(crate::factory_cmd::SE_FILE))?;
        let mut sealer = Sealer::new(se, dir.join(crate::device_cmd::STATE_FILE))?;
        let mut queue = OfflineQueue::open(dir.join("queue"), QueueLimits::default())?;
        // One client for all devices (HTTP/2: one connection, many streams).
        let mut transport = uplink.clone();
        let channels = replay.channels() as u64;
        let (stop, sent, acked, frames) =
            (stop.clone(), sent.clone(), acked.clone(), frames.clone());
        let cfg = AgentConfig {
            speed,
            ..AgentConfig::default()
        };
        threads.push(std::thread::spawn(move || {
            let mut on = |e: &AgentEvent<'_>, _r: &agent::AgentReport| match e {
                AgentEvent::Sealed { samples, .. } => {
                    frames.fetch_add(1, Ordering::Relaxed);
                    sent.fetch_add(*samples as u64 * channels, Ordering::Relaxed);
                }
                AgentEvent::Acked { .. } => {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            };
            agent::run(
                &mut replay,
                &mut sealer,
                &mut queue,
                &mut transport,
                &cfg,
                &stop,
                Some(&mut on),
            )
        }));
    }

    // The clinician, live.
    let srv = Server::new(&url, &cert, None)?;
    let mut reader = ResultReader::new(srv.clone(), st.identity, SUBSCRIBER, None);
    let tty = std::io::stderr().is_terminal();
    let mut drawn = 0usize;
    let mut events = 0u64;
    let mut last_plain = Instant::now();
    let mut draw = |view: &BTreeMap<String, Patient>, final_: bool| {
        let lines = render(
            view,
            sent.load(Ordering::Relaxed),
            total,
            acked.load(Ordering::Relaxed),
            frames.load(Ordering::Relaxed),
            t0.elapsed().as_secs_f64(),
        );
        let mut err = std::io::stderr().lock();
        if tty {
            if drawn > 0 {
                let _ = write!(err, "\x1b[{drawn}A");
            }
            for l in &lines {
                let _ = writeln!(err, "\x1b[2K{l}");
            }
            drawn = lines.len();
        } else if final_ || last_plain.elapsed() >= Duration::from_secs(5) {
            let _ = writeln!(err, "{}", lines.first().cloned().unwrap_or_default());
            last_plain = Instant::now();
        }
    };
    let mut failed = None;
    while threads.iter().any(|t| !t.is_finished()) {
        std::thread::sleep(Duration::from_millis(500));
        match reader.poll() {
            Ok(rs) => rs.iter().for_each(|r| apply(&mut view, r, &mut events)),
            Err(e) => tracing::debug!(error = %e, "results poll failed"),
        }
        draw(&view, false);
        if let Ok(Some(s)) = worker.child.try_wait() {
            failed = Some(format!("the worker exited ({s}); see worker.log"));
            stop.store(true, Ordering::Relaxed);
        }
    }
    let mut device_errors = Vec::new();
    for t in threads {
        match t.join() {
            Ok(Ok(r)) if r.refused.is_empty() && r.queued_left == 0 => {}
            Ok(Ok(r)) => device_errors.push(format!(
                "{} refused, {} left queued",
                r.refused.len(),
                r.queued_left
            )),
            Ok(Err(e)) => device_errors.push(e.to_string()),
            Err(_) => device_errors.push("device thread panicked".into()),
        }
    }
    // Wait for the worker to open everything ingest accepted.
    let settle = Instant::now();
    let mut stats = aorta_api::Stats::default();
    while failed.is_none() && settle.elapsed() < Duration::from_secs(120) {
        stats = srv.stats()?;
        let refused: u64 = stats.frames_refused_by_worker.values().sum();
        if stats.frames_opened + refused >= stats.frames_accepted {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let streaming = t0.elapsed().as_secs_f64();
    // Stop the worker (final checkpoint), read the last results, stop the server.
    let wstatus = worker.stop();
    match reader.poll() {
        Ok(rs) => rs.iter().for_each(|r| apply(&mut view, r, &mut events)),
        Err(e) => {
            failed.get_or_insert(format!("reading the last results: {e}"));
        }
    }
    draw(&view, true);
    let stats = srv.stats().unwrap_or(stats);
    server.stop();
    let lat = |v: Option<f64>| v.unwrap_or(f64::NAN);
    let samples = sent.load(Ordering::Relaxed);
    let results: u64 = view.values().map(|p| p.results).sum();
    let summary = serde_json::json!({
        "devices": a.devices,
        "samples": samples,
        "frames": stats.frames_accepted,
        "events": events,
        "results": results,
        "samples_per_s": samples as f64 / streaming.max(1e-9),
        "seconds": streaming,
        "latency_ms": { "p50": lat(stats.latency_p50_ms), "p99": lat(stats.latency_p99_ms) },
        "frames_refused_by_worker": stats.frames_refused_by_worker,
        "results_unopenable": reader.refused(),
        "sample_data": sample,
        "hardware_protected": false,
    });
    eprintln!(
        "\n{} devices · {} samples · {} frames · {} results ({} rhythm events) · {:.0} samples/s · latency p50 {:.1} ms, p99 {:.1} ms (frame arrival → sealed results stored)",
        a.devices,
        samples,
        stats.frames_accepted,
        results,
        events,
        samples as f64 / streaming.max(1e-9),
        lat(stats.latency_p50_ms),
        lat(stats.latency_p99_ms),
    );
    if a.dir.is_some() {
        eprintln!("work directory kept: {}", work.display());
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    if let Some(f) = failed {
        eprintln!("demo failed: {f}");
        return Ok(ExitCode::from(1));
    }
    if !device_errors.is_empty() {
        eprintln!("device problems: {}", device_errors.join("; "));
        return Ok(ExitCode::from(1));
    }
    if wstatus.is_some_and(|s| !s.success()) || reader.refused() > 0 {
        eprintln!("the worker did not stop cleanly or some results could not be opened");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
