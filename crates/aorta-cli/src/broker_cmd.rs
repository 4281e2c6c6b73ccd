//! `aorta broker …`: the key broker run by the data owner.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use aorta_enclave::evidence::hex;
use aorta_server::broker::policy::Policy;
use aorta_server::broker::{Broker, MemoryKeySource, serve};

/// `aorta broker` subcommands.
#[derive(clap::Subcommand)]
pub enum BrokerCmd {
    /// Serve the key broker: verify worker attestation against the policy and
    /// release the assignment's keys, HPKE-wrapped to the attested worker.
    Serve {
        /// Policy file (TOML; see docs/trust-model.md).
        #[arg(long)]
        policy: PathBuf,
        /// Key source: a DEVELOPMENT key file (TOML `[transport]` serial = hex,
        /// `[results]` subscriber = hex). Keys sit in clear in it; production
        /// wires the device key registry instead.
        #[arg(long)]
        keys: PathBuf,
        /// Address to listen on (`127.0.0.1:0` picks a free port). The first
        /// line on stdout is `listening on ADDR`.
        #[arg(long, default_value = "127.0.0.1:7450")]
        listen: String,
        /// Log at debug level.
        #[arg(long)]
        verbose: bool,
    },
    /// Check a policy file and print what it allows.
    Check {
        /// Policy file.
        #[arg(long)]
        policy: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: BrokerCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        BrokerCmd::Serve {
            policy,
            keys,
            listen,
            verbose,
        } => {
            crate::init_logging(verbose);
            let policy = Policy::from_file(&policy)?;
            let keys = MemoryKeySource::from_toml_file(&keys)?;
            if policy.verifier.allow_simulation {
                eprintln!("WARNING: {}", aorta_enclave::SIM_WARNING);
            }
            let listener = std::net::TcpListener::bind(&listen)
                .with_context(|| format!("cannot listen on {listen}"))?;
            let addr = listener.local_addr()?;
            tracing::info!(target: "aorta::broker", %addr, ?keys, "key broker listening");
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on {addr}")?;
            out.flush()?;
            drop(out);
            serve(listener, Arc::new(Broker::new(policy, Arc::new(keys))))?;
            Ok(ExitCode::SUCCESS)
        }
        BrokerCmd::Check { policy, json } => {
            let p = Policy::from_file(&policy)?;
            let v = &p.verifier;
            let doc = serde_json::json!({
                "allowed_backends": v.allowed_backends.iter().map(|b| b.name()).collect::<Vec<_>>(),
                "allow_simulation": v.allow_simulation,
                "allowed_measurements": v.allowed_measurements.iter().map(|m| hex(m)).collect::<Vec<_>>(),
                "sim_platform_keys": v.sim_platform_keys.iter().map(|k| hex(k)).collect::<Vec<_>>(),
                "min_tcb": v.min_tcb.name(),
                "freshness_secs": v.freshness_secs,
                "assignments": p.assignments.iter().map(|a| serde_json::json!({
                    "name": a.name, "devices": a.devices, "subscribers": a.subscribers,
                })).collect::<Vec<_>>(),
            });
            if json {
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                println!("policy {} is valid", policy.display());
                println!(
                    "  backends: {}",
                    v.allowed_backends
                        .iter()
                        .map(|b| b.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                if v.allow_simulation {
                    println!("  WARNING: {}", aorta_enclave::SIM_WARNING);
                }
                println!("  measurements: {}", v.allowed_measurements.len());
                println!(
                    "  min TCB: {}, freshness: {} s",
                    v.min_tcb.name(),
                    v.freshness_secs
                );
                println!("  assignments: {}", p.assignments.len());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
