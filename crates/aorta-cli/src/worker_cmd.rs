//! `aorta worker …`: the attested analysis worker.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use aorta_enclave::attest::{Attester, SimAttester, SystemRoots, detect, hardware_attester};
use aorta_enclave::evidence::{Backend, Measurement, hex};
use aorta_enclave::upload::UploadFrames;
use aorta_enclave::worker::{ClientError, KeyRequest, Ready, Unattested, attest_to_broker};

/// `aorta worker` subcommands.
#[derive(clap::Subcommand)]
pub enum WorkerCmd {
    /// Attest to a key broker, receive the assignment's keys, and optionally
    /// serve the host protocol on stdin/stdout.
    Run {
        /// Evidence backend: sim (NOT hardware-protected), tdx, sev-snp,
        /// sgx-gramine, or auto (a hardware backend whose device files exist).
        #[arg(long, default_value = "auto")]
        backend: String,
        /// Key broker address (host:port).
        #[arg(long)]
        broker: String,
        /// Assignment name in the broker's policy.
        #[arg(long)]
        assignment: String,
        /// Device serials to request (default: all of the assignment's).
        #[arg(long = "device")]
        devices: Vec<String>,
        /// Subscribers to request (default: all of the assignment's).
        #[arg(long = "subscriber")]
        subscribers: Vec<String>,
        /// Worker configuration file (measured together with the binary).
        #[arg(long)]
        config: Option<PathBuf>,
        /// sim backend: the platform key file (created if missing).
        #[arg(long, default_value = "aorta-sim-platform.key")]
        sim_platform_key: PathBuf,
        /// tdx/sgx-gramine: Intel collateral JSON for the quote (from a PCCS).
        #[arg(long)]
        collateral: Option<PathBuf>,
        /// After receiving keys, serve the host protocol on stdin/stdout.
        #[arg(long)]
        serve_stdio: bool,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Attest to a key broker, then run the ECG job over an aorta server's
    /// frame log: open frames inside the worker, analyse them, seal results
    /// to the assignment's subscribers and checkpoints under the state key.
    /// Stops cleanly (final checkpoint) on SIGINT/SIGTERM. `--config FILE`
    /// (measured with the binary) may set `hr_window_s` (10), `hr_slide_s`
    /// (5), `hrv_window_s` (300) and `out_of_orderness_s` (0).
    Stream {
        #[command(flatten)]
        attest: AttestArgs,
        /// Server base URL.
        #[arg(long, default_value = "https://127.0.0.1:7443")]
        server: String,
        /// The server's certificate to trust (its `data_dir/cert.pem`).
        #[arg(long)]
        ca: PathBuf,
        /// File holding the server's worker token (`data_dir/worker.token`).
        #[arg(long)]
        token_file: PathBuf,
        /// Records per batch.
        #[arg(long, default_value_t = 1024)]
        batch: usize,
        /// Checkpoint interval, seconds.
        #[arg(long, default_value_t = 5.0)]
        checkpoint_secs: f64,
        /// Print a summary as JSON when stopping.
        #[arg(long)]
        json: bool,
    },
    /// Print the measurement of this binary with a configuration (what a
    /// policy lists in `allowed_measurements` for sim workers).
    Measure {
        /// Worker configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create (if missing) a sim platform key and print its public key (what
    /// a policy lists in `sim_platform_keys`). NOT hardware-protected.
    SimPlatform {
        /// Key file.
        #[arg(long, default_value = "aorta-sim-platform.key")]
        key: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// How the worker attests and what it asks for.
#[derive(clap::Args, Clone)]
pub struct AttestArgs {
    /// Evidence backend: sim (NOT hardware-protected), tdx, sev-snp,
    /// sgx-gramine, or auto (a hardware backend whose device files exist).
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Key broker address (host:port).
    #[arg(long)]
    pub broker: String,
    /// Assignment name in the broker's policy.
    #[arg(long)]
    pub assignment: String,
    /// Worker configuration file (measured together with the binary).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// sim backend: the platform key file (created if missing).
    #[arg(long, default_value = "aorta-sim-platform.key")]
    pub sim_platform_key: PathBuf,
    /// tdx/sgx-gramine: Intel collateral JSON for the quote (from a PCCS).
    #[arg(long)]
    pub collateral: Option<PathBuf>,
}

/// The analysis parameters of `aorta worker stream`, from the worker
/// configuration file (TOML). The file is part of the worker's measurement,
/// so the broker's policy pins the parameters along with the binary.
#[derive(serde::Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Heart-rate sliding window length, seconds.
    pub hr_window_s: f64,
    /// Heart-rate window slide, seconds.
    pub hr_slide_s: f64,
    /// HRV tumbling window, seconds (Task Force: 300).
    pub hrv_window_s: f64,
    /// Allowed out-of-orderness of a device's frames, seconds (later ones
    /// are dropped and counted).
    pub out_of_orderness_s: f64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            hr_window_s: 10.0,
            hr_slide_s: 5.0,
            hrv_window_s: 300.0,
            out_of_orderness_s: 0.0,
        }
    }
}

impl StreamConfig {
    /// Parses and checks the configuration (empty bytes: the defaults).
    pub fn parse(bytes: &[u8]) -> anyhow::Result<StreamConfig> {
        let text = std::str::from_utf8(bytes).context("worker config is not UTF-8")?;
        let c: StreamConfig = toml::from_str(text).context("worker config")?;
        let ok = |v: f64, lo: f64, hi: f64| v.is_finite() && v >= lo && v <= hi;
        if !ok(c.hr_window_s, 1.0, 3600.0) {
            anyhow::bail!("hr_window_s must be in [1, 3600]");
        }
        if !ok(c.hr_slide_s, 0.1, c.hr_window_s) {
            anyhow::bail!("hr_slide_s must be in [0.1, hr_window_s]");
        }
        if !ok(c.hrv_window_s, 30.0, 86_400.0) {
            anyhow::bail!("hrv_window_s must be in [30, 86400]");
        }
        if !ok(c.out_of_orderness_s, 0.0, 3600.0) {
            anyhow::bail!("out_of_orderness_s must be in [0, 3600]");
        }
        Ok(c)
    }

    fn micros(s: f64) -> i64 {
        (s * 1e6).round() as i64
    }

    /// The ECG operator's parameters.
    pub fn ecg(&self) -> aorta_stream::ecg::EcgConfig {
        aorta_stream::ecg::EcgConfig {
            hr_window: Self::micros(self.hr_window_s),
            hr_slide: Self::micros(self.hr_slide_s),
            hrv_window: Self::micros(self.hrv_window_s),
            ..aorta_stream::ecg::EcgConfig::default()
        }
    }

    /// The engine's parameters.
    pub fn engine(&self) -> aorta_stream::EngineConfig {
        aorta_stream::EngineConfig {
            out_of_orderness: Self::micros(self.out_of_orderness_s),
            ..aorta_stream::EngineConfig::default()
        }
    }
}

/// An attested worker with its keys, backend and measurement.
type Attested = (Ready, Backend, Measurement);

/// Attests with `a` and receives the assignment's keys; `Err(code, reason)`
/// inside `Ok` when the broker refused.
fn attest(
    a: &AttestArgs,
    devices: Vec<String>,
    subscribers: Vec<String>,
) -> anyhow::Result<Result<Attested, (u16, String)>> {
    if let Err(e) = aorta_enclave::worker::harden_process() {
        tracing::warn!(target: "aorta::worker", error = %e, "could not mark the worker non-dumpable");
    }
    let roots = SystemRoots::default();
    let backend = if a.backend == "auto" {
        detect(&roots)?
    } else {
        a.backend.parse::<Backend>()?
    };
    let attester: Box<dyn Attester + Send + Sync> = if backend == Backend::Sim {
        eprintln!("WARNING: {}", aorta_enclave::SIM_WARNING);
        Box::new(SimAttester::load_or_create(&a.sim_platform_key)?)
    } else {
        let coll = match &a.collateral {
            Some(p) => std::fs::read(p)
                .with_context(|| format!("cannot read collateral {}", p.display()))?,
            None => Vec::new(),
        };
        hardware_attester(backend, &roots, coll)
            .with_context(|| format!("no producer for backend {backend}"))?
    };
    let measurement = Measurement::of_current_exe(&read_config(&a.config)?)
        .context("cannot read this executable to measure it")?;
    let worker = Unattested::new(measurement)
        .map_err(|e| anyhow::anyhow!("random generator failed: {e}"))?;
    let mut stream = TcpStream::connect(&a.broker)
        .with_context(|| format!("cannot connect to the key broker at {}", a.broker))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let req = KeyRequest {
        assignment: a.assignment.clone(),
        devices,
        subscribers,
    };
    match attest_to_broker(&mut stream, worker, attester.as_ref(), &req) {
        Ok(r) => Ok(Ok((r, backend, measurement))),
        Err(ClientError::Refused { code, reason }) => Ok(Err((code, reason))),
        Err(e) => Err(e.into()),
    }
}

fn read_config(config: &Option<PathBuf>) -> anyhow::Result<Vec<u8>> {
    match config {
        Some(p) => {
            std::fs::read(p).with_context(|| format!("cannot read worker config {}", p.display()))
        }
        None => Ok(Vec::new()),
    }
}

/// The devices whose keys a bundle holds: entry names are `SERIAL` (a
/// development key file) or `SERIAL/INDEX` (group keys from the registry).
fn released_devices(names: impl Iterator<Item = String>) -> Vec<String> {
    let set: std::collections::BTreeSet<String> = names
        .map(|n| match n.split_once('/') {
            Some((serial, _)) => serial.to_owned(),
            None => n,
        })
        .collect();
    set.into_iter().collect()
}

pub fn run(cmd: WorkerCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        WorkerCmd::Measure { config, json } => {
            let m = Measurement::of_current_exe(&read_config(&config)?)
                .context("cannot read this executable to measure it")?;
            if json {
                println!("{}", serde_json::json!({ "measurement": m.to_hex() }));
            } else {
                println!("{}", m.to_hex());
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkerCmd::SimPlatform { key, json } => {
            let p = SimAttester::load_or_create(&key)?;
            let pk = hex(&p.platform_public_key());
            eprintln!("WARNING: {}", aorta_enclave::SIM_WARNING);
            if json {
                println!("{}", serde_json::json!({ "platform_key": pk }));
            } else {
                println!("{pk}");
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkerCmd::Run {
            backend,
            broker,
            assignment,
            devices,
            subscribers,
            config,
            sim_platform_key,
            collateral,
            serve_stdio,
            json,
        } => {
            crate::init_logging(false);
            let a = AttestArgs {
                backend,
                broker,
                assignment: assignment.clone(),
                config,
                sim_platform_key,
                collateral,
            };
            let (ready, backend, measurement) = match attest(&a, devices, subscribers)? {
                Ok(r) => r,
                Err((code, reason)) => {
                    eprintln!("refused by the key broker (code {code}): {reason}");
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({ "refused": { "code": code, "reason": reason } })
                        );
                    }
                    return Ok(ExitCode::from(1));
                }
            };
            let hardware = backend.is_hardware();
            let status = serde_json::json!({
                "backend": backend.name(),
                "hardware_protected": hardware,
                "warning": if hardware { serde_json::Value::Null } else { aorta_enclave::SIM_WARNING.into() },
                "measurement": measurement.to_hex(),
                "assignment": assignment,
                "devices": released_devices(ready.keys().transport_keys.iter().map(|(s, _)| s.clone())),
                "subscribers": ready.keys().result_keys.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>(),
                "transport_keys": ready.keys().transport_keys.len(),
                "result_keys": ready.keys().result_keys.len(),
            });
            tracing::info!(
                target: "aorta::worker",
                backend = backend.name(),
                hardware_protected = hardware,
                transport_keys = ready.keys().transport_keys.len(),
                result_keys = ready.keys().result_keys.len(),
                "keys received"
            );
            if serve_stdio {
                // stdout is the protocol channel: status goes to stderr.
                eprintln!("{status}");
                let stdin = std::io::stdin();
                let stdout = std::io::stdout();
                let sum = ready.serve(
                    &UploadFrames,
                    &mut stdin.lock(),
                    &mut stdout.lock(),
                    &mut |_f| {},
                )?;
                tracing::info!(target: "aorta::worker", frames = sum.frames, refused = sum.refused, "host channel closed");
            } else if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!(
                    "attested ({}{}) and received {} transport key(s), {} result key(s) for assignment {assignment}",
                    backend.name(),
                    if hardware {
                        ""
                    } else {
                        ", NOT hardware-protected"
                    },
                    ready.keys().transport_keys.len(),
                    ready.keys().result_keys.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkerCmd::Stream {
            attest: a,
            server,
            ca,
            token_file,
            batch,
            checkpoint_secs,
            json,
        } => {
            crate::init_logging(false);
            stream(&a, &server, &ca, &token_file, batch, checkpoint_secs, json)
        }
    }
}

fn stream(
    a: &AttestArgs,
    server: &str,
    ca: &std::path::Path,
    token_file: &std::path::Path,
    batch: usize,
    checkpoint_secs: f64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use aorta_stream::job::{EcgJob, SecureFrames, StateKeySealer, SubscriberSealer};
    use aorta_stream::remote::{
        RemoteCheckpoints, RemoteLog, RemoteResults, Server, WorkerOptions,
    };
    if !(checkpoint_secs.is_finite() && checkpoint_secs > 0.0) {
        anyhow::bail!("--checkpoint-secs must be positive");
    }
    let cfg = StreamConfig::parse(&read_config(&a.config)?)?;
    let token = zeroize::Zeroizing::new(
        std::fs::read_to_string(token_file)
            .with_context(|| format!("cannot read the worker token {}", token_file.display()))?
            .trim()
            .to_owned(),
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    // The broker may be restarting: retry what the network breaks, never a
    // refusal.
    let mut failures = 0u32;
    let (ready, backend, _m) = loop {
        match attest(a, Vec::new(), Vec::new()) {
            Ok(Ok(r)) => break r,
            Ok(Err((code, reason))) => {
                eprintln!("refused by the key broker (code {code}): {reason}");
                return Ok(ExitCode::from(1));
            }
            Err(e) if failures < 30 && !stop.load(std::sync::atomic::Ordering::Relaxed) => {
                failures += 1;
                let pause = Duration::from_millis(100u64 << failures.min(5));
                tracing::warn!(target: "aorta::worker", error = %format!("{e:#}"), retry_in_ms = pause.as_millis() as u64, "attestation failed; retrying");
                std::thread::sleep(pause);
            }
            Err(e) => return Err(e),
        }
    };
    let state_key = ready
        .keys()
        .transport_keys
        .iter()
        .find(|(n, _)| n == aorta_server::broker::STATE_KEY_NAME)
        .map(|(_, k)| *k.expose())
        .context("the broker released no worker state key (is the broker an `aorta server` with a registry?)")?;
    let subscribers: Vec<(String, aorta_crypto::results::ClinicianPublic)> = ready
        .keys()
        .result_keys
        .iter()
        .map(|(id, k)| {
            (
                id.clone(),
                aorta_crypto::results::ClinicianPublic::from_bytes(*k.expose()),
            )
        })
        .collect();
    if subscribers.is_empty() {
        tracing::warn!(target: "aorta::worker", "the assignment has no subscribers: results are computed but nobody can read them");
    }
    let devices = released_devices(
        ready
            .keys()
            .transport_keys
            .iter()
            .filter(|(n, _)| !n.starts_with('@'))
            .map(|(s, _)| s.clone()),
    );
    tracing::info!(target: "aorta::worker", backend = backend.name(), hardware_protected = backend.is_hardware(), devices = devices.len(), subscribers = subscribers.len(), "keys received; streaming");
    let srv = Server::new(server, ca, Some(token.to_string()))?;
    let log = RemoteLog::new(srv.clone(), 500);
    let mut job = EcgJob::open(
        cfg.ecg(),
        cfg.engine(),
        SecureFrames::new(ready),
        RemoteCheckpoints::new(srv.clone()),
        StateKeySealer::new(&state_key, &a.assignment),
        RemoteResults::new(srv.clone()),
        SubscriberSealer::new(&subscribers)?,
        u64::MAX,
    )?;
    let opts = WorkerOptions {
        batch: batch.clamp(1, 4096),
        checkpoint_every: Duration::from_secs_f64(checkpoint_secs),
        ..WorkerOptions::default()
    };
    let p = aorta_stream::remote::run_worker(&mut job, &log, opts, &stop, |_p| {})?;
    let (stored, duplicates) = job.pipeline().results().inner().counts();
    let summary = serde_json::json!({
        "records": p.records, "opened": p.opened, "refused": p.refused,
        "offset": p.offset, "checkpoints": p.checkpoints, "retries": p.retries,
        "results_stored": stored, "results_duplicate": duplicates,
    });
    if json {
        println!("{summary}");
    } else {
        eprintln!("worker stopped: {summary}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::StreamConfig;

    #[test]
    fn stream_config_defaults_and_hostile_values() {
        assert_eq!(StreamConfig::parse(b"").unwrap(), StreamConfig::default());
        let c =
            StreamConfig::parse(b"hr_window_s = 20\nhr_slide_s = 2\nhrv_window_s = 120\n").unwrap();
        assert_eq!(c.ecg().hr_slide, 2_000_000);
        assert_eq!(c.ecg().hrv_window, 120_000_000);
        for bad in [
            &b"hr_slide_s = 0"[..],
            b"hr_slide_s = 11",
            b"hr_window_s = nan",
            b"hrv_window_s = 1",
            b"out_of_orderness_s = -1",
            b"what = 1",
            b"\xff\xfe",
            b"hr_window_s = \"ten\"",
        ] {
            assert!(
                StreamConfig::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
