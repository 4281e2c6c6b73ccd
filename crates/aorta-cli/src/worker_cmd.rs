//! `aorta worker …`: the attested analysis worker.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use aorta_enclave::attest::{Attester, SimAttester, SystemRoots, detect, hardware_attester};
use aorta_enclave::evidence::{Backend, Measurement, hex};
use aorta_enclave::upload::UploadFrames;
use aorta_enclave::worker::{ClientError, KeyRequest, Unattested, attest_to_broker};

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
            if let Err(e) = aorta_enclave::worker::harden_process() {
                tracing::warn!(target: "aorta::worker", error = %e, "could not mark the worker non-dumpable");
            }
            let roots = SystemRoots::default();
            let backend = if backend == "auto" {
                detect(&roots)?
            } else {
                backend.parse::<Backend>()?
            };
            let attester: Box<dyn Attester + Send + Sync> = if backend == Backend::Sim {
                eprintln!("WARNING: {}", aorta_enclave::SIM_WARNING);
                Box::new(SimAttester::load_or_create(&sim_platform_key)?)
            } else {
                let coll = match &collateral {
                    Some(p) => std::fs::read(p)
                        .with_context(|| format!("cannot read collateral {}", p.display()))?,
                    None => Vec::new(),
                };
                hardware_attester(backend, &roots, coll)
                    .with_context(|| format!("no producer for backend {backend}"))?
            };
            let measurement = Measurement::of_current_exe(&read_config(&config)?)
                .context("cannot read this executable to measure it")?;
            let worker = Unattested::new(measurement)
                .map_err(|e| anyhow::anyhow!("random generator failed: {e}"))?;
            let mut stream = TcpStream::connect(&broker)
                .with_context(|| format!("cannot connect to the key broker at {broker}"))?;
            stream.set_read_timeout(Some(Duration::from_secs(60)))?;
            let req = KeyRequest {
                assignment: assignment.clone(),
                devices,
                subscribers,
            };
            let ready = match attest_to_broker(&mut stream, worker, attester.as_ref(), &req) {
                Ok(r) => r,
                Err(ClientError::Refused { code, reason }) => {
                    eprintln!("refused by the key broker (code {code}): {reason}");
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({ "refused": { "code": code, "reason": reason } })
                        );
                    }
                    return Ok(ExitCode::from(1));
                }
                Err(e) => return Err(e.into()),
            };
            drop(stream);
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
    }
}
