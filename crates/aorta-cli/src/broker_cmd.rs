//! `aorta broker …`: the key broker run by the data owner.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use aorta_base::hex;
use aorta_server::broker::policy::Policy;
use aorta_server::broker::{Broker, serve, standalone_key_source};
use aorta_server::broker_report::{PolicySummary, QuoteRefused, QuoteReport, inspect_quote};

/// `aorta broker` subcommands.
#[derive(clap::Subcommand)]
pub enum BrokerCmd {
    /// Serve the key broker: verify worker attestation against the policy and
    /// release the assignment's keys, HPKE-wrapped to the attested worker.
    Serve {
        /// Policy file (TOML; see docs/trust-model.md).
        #[arg(long)]
        policy: PathBuf,
        /// Device key registry directory (`aorta factory init`): device keys
        /// are released from it as per-device group keys. The registry must
        /// not be used by another process while the broker runs.
        #[arg(long, required_unless_present = "keys")]
        registry: Option<PathBuf>,
        /// Key file (TOML `[results]` subscriber = hex; DEVELOPMENT only:
        /// `[transport]` serial = hex). Keys sit in clear in it. With
        /// `--registry` only its `[results]` table is used.
        #[arg(long)]
        keys: Option<PathBuf>,
        /// Address to listen on (`127.0.0.1:0` picks a free port). The first
        /// line on stdout is `listening on ADDR`.
        #[arg(long, default_value = "127.0.0.1:7450", value_parser = crate::args::listen_addr)]
        listen: String,
        /// The broker's certifying key (an Ed25519 seed, hex, mode 0600;
        /// created when missing): each worker gets a result-signing key
        /// certified with it, and the server and clinicians pin its public
        /// key (`aorta broker public-key`). Without it no worker can have
        /// its results stored.
        #[arg(long)]
        signing_key: Option<PathBuf>,
        /// The secret workers' checkpoint (state) keys are derived from, per
        /// assignment (32 bytes hex, mode 0600; created when missing).
        /// Without it `aorta worker stream` refuses to start (it could not
        /// seal checkpoints or make result ids opaque).
        #[arg(long)]
        state_key: Option<PathBuf>,
        #[command(flatten)]
        log: crate::logging::LogArgs,
    },
    /// Print the public key of a broker certifying key (created when
    /// missing): what `aorta server`'s `broker_key` and `aorta results
    /// fetch --broker-key` pin.
    PublicKey {
        /// The certifying key file.
        #[arg(long)]
        signing_key: PathBuf,
    },
    /// Verify an Intel DCAP quote (SGX or TDX) offline with its collateral
    /// and print what it attests: TCB status, debug flag, report data and
    /// the measurement to list in a policy. Exit 1 if it does not verify.
    InspectQuote {
        /// `sgx-gramine` or `tdx`.
        #[arg(long)]
        backend: String,
        /// The raw quote file.
        #[arg(long)]
        quote: PathBuf,
        /// Intel collateral JSON (dcap-qvl `QuoteCollateralV3`).
        #[arg(long)]
        collateral: PathBuf,
        /// Verification time, unix seconds (default: now).
        #[arg(long)]
        at: Option<u64>,
        /// TDX: the worker's app measurement (hex, from `aorta worker measure`)
        /// to compute the policy measurement.
        #[arg(long)]
        app_measurement: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
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
            registry,
            keys,
            listen,
            signing_key,
            state_key,
            log,
        } => {
            crate::signals::shut_down_on_signals()?;
            crate::logging::init(&log)?;
            let policy = Policy::from_file(&policy)?;
            let signer = signing_key
                .as_deref()
                .map(aorta_server::broker::load_or_create_signing_key)
                .transpose()?;
            let state = state_key
                .as_deref()
                .map(aorta_server::http::load_or_create_secret)
                .transpose()?
                .map(|s| aorta_enclave::keywrap::Secret32::from_bytes(*s));
            let (keys, note) = standalone_key_source(registry.as_deref(), keys.as_deref(), state)?;
            if let Some(note) = note {
                eprintln!("{note}");
            }
            if policy.verifier.allow_simulation {
                eprintln!("WARNING: {}", aorta_enclave::SIM_WARNING);
            }
            let listener = std::net::TcpListener::bind(&listen)
                .with_context(|| format!("cannot listen on {listen}"))?;
            let addr = listener.local_addr()?;
            tracing::info!(target: "aorta::broker", %addr, "key broker listening");
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening on {addr}")?;
            out.flush()?;
            drop(out);
            let mut broker = Broker::new(policy, keys);
            match signer {
                Some(k) => {
                    eprintln!(
                        "certifying workers' result keys with broker key {}",
                        hex::encode(&k.public())
                    );
                    broker = broker.with_signer(k);
                }
                None => eprintln!(
                    "note: no --signing-key: workers get no certified result key, and servers store none of their results"
                ),
            }
            serve(listener, Arc::new(broker))?;
            Ok(ExitCode::SUCCESS)
        }
        BrokerCmd::PublicKey { signing_key } => {
            let k = aorta_server::broker::load_or_create_signing_key(&signing_key)?;
            outln!("{}", hex::encode(&k.public()));
            Ok(ExitCode::SUCCESS)
        }
        BrokerCmd::InspectQuote {
            backend,
            quote,
            collateral,
            at,
            app_measurement,
            json,
        } => {
            let backend: aorta_enclave::Backend = backend.parse()?;
            if !matches!(
                backend,
                aorta_enclave::Backend::Tdx | aorta_enclave::Backend::SgxGramine
            ) {
                anyhow::bail!("inspect-quote handles DCAP quotes: --backend tdx or sgx-gramine");
            }
            let q = std::fs::read(&quote)
                .with_context(|| format!("cannot read quote {}", quote.display()))?;
            let c = std::fs::read(&collateral)
                .with_context(|| format!("cannot read collateral {}", collateral.display()))?;
            let app = match &app_measurement {
                Some(m) => Some(aorta_enclave::Measurement(
                    *hex::decode_array::<32>(m.trim(), hex::Case::Any)
                        .ok()
                        .context("--app-measurement must be 64 hex digits")?,
                )),
                None => None,
            };
            let now = at.unwrap_or_else(aorta_base::time::now_s);
            let rep = match inspect_quote(backend, &q, &c, now, app.as_ref()) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("quote does not verify: {e}");
                    if json {
                        outln!("{}", serde_json::to_string(&QuoteRefused::from(&e))?);
                    }
                    return Ok(ExitCode::from(1));
                }
            };
            crate::show(&rep, json, print_quote)?;
            Ok(ExitCode::SUCCESS)
        }
        BrokerCmd::Check { policy, json } => {
            let p = Policy::from_file(&policy)?;
            let summary = PolicySummary::of(&p);
            crate::show(&summary, json, |s| print_policy(&policy, s))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_quote(rep: &QuoteReport) {
    outln!("quote verifies ({}), TCB {}", rep.kind, rep.tcb_status);
    if rep.debug {
        outln!("  DEBUG TEE: the broker will refuse it");
    }
    match &rep.policy_measurement {
        Some(m) => outln!("  policy measurement: {m}"),
        None => outln!("  policy measurement: pass --app-measurement to compute it (TDX)"),
    }
}

fn print_policy(path: &Path, summary: &PolicySummary<'_>) {
    outln!("policy {} is valid", path.display());
    outln!("  backends: {}", summary.allowed_backends.join(", "));
    if summary.allow_simulation {
        outln!("  WARNING: {}", aorta_enclave::SIM_WARNING);
    }
    outln!("  measurements: {}", summary.allowed_measurements.len());
    outln!(
        "  min TCB: {}, freshness: {} s",
        summary.min_tcb,
        summary.freshness_secs
    );
    outln!("  assignments: {}", summary.assignments.len());
}
