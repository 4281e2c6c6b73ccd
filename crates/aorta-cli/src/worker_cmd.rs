//! `aorta worker …`: the attested analysis worker.

use std::path::PathBuf;
use std::process::ExitCode;

use aorta_enclave::attest::SimAttester;
use aorta_enclave::evidence::Backend;
use aorta_worker::WorkerError;
use aorta_worker::attest::{
    AttestOptions, BrokerRefusal, MeasureReport, PlatformReport, RefusedReport, attest,
    resolve_backend,
};
use aorta_worker::run::{RunStatus, StreamOptions, serve_host, stream};

/// `aorta worker` subcommands.
#[derive(clap::Subcommand)]
pub enum WorkerCmd {
    /// Attest to a key broker, receive the assignment's keys, and optionally
    /// serve the host protocol on stdin/stdout.
    Run {
        #[command(flatten)]
        attest: AttestArgs,
        /// Device serials to request (default: all of the assignment's).
        #[arg(long = "device")]
        devices: Vec<String>,
        /// Subscribers to request (default: all of the assignment's).
        #[arg(long = "subscriber")]
        subscribers: Vec<String>,
        /// After receiving keys, serve the host protocol on stdin/stdout.
        #[arg(long)]
        serve_stdio: bool,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        log: crate::logging::LogArgs,
    },
    /// Attest to a key broker, then run the ECG job over an aorta server's
    /// frame log: open frames inside the worker, analyse them, seal results
    /// to the assignment's subscribers and checkpoints under the state key.
    /// Stops cleanly (final checkpoint) on SIGINT/SIGTERM. `--config FILE`
    /// (measured with the binary) may set `hr_window_s` (10), `hr_slide_s`
    /// (5), `hrv_window_s` (300), `beats_window_s` (30) and
    /// `out_of_orderness_s` (0).
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
        #[arg(long, default_value_t = 1024, value_parser = crate::args::int(1usize, 1 << 20))]
        batch: usize,
        /// Checkpoint interval, seconds.
        #[arg(long, default_value_t = 5.0, value_parser = crate::args::secs(0.0, crate::args::DAY))]
        checkpoint_secs: f64,
        /// Print a summary as JSON when stopping.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        cluster: Box<ClusterArgs>,
        #[command(flatten)]
        log: crate::logging::LogArgs,
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

/// Cluster mode of `aorta worker stream` (`docs/scale.md`): read the
/// JetStream frame stream instead of the server's log. The stream flags
/// must match the servers' `[cluster]` table.
#[derive(clap::Args, Clone)]
pub struct ClusterArgs {
    /// NATS URLs, comma-separated (`nats://host:4222,…`): run in cluster
    /// mode, sharing the stream's partitions with the other workers.
    #[arg(long)]
    pub nats: Option<String>,
    /// Partitions of the frame stream (`[cluster] partitions`).
    #[arg(long, default_value_t = 16, value_parser = crate::args::int(1u32, 4096))]
    pub partitions: u32,
    /// Replicas of the stream, and of the lease and checkpoint buckets
    /// (`[cluster] replicas`).
    #[arg(long, default_value_t = 1, value_parser = crate::args::int(1usize, 5))]
    pub replicas: usize,
    /// The JetStream stream (`[cluster] stream`).
    #[arg(long, default_value = "AORTA_FRAMES")]
    pub stream: String,
    /// Subject prefix of the partitions (`[cluster] subject_prefix`).
    #[arg(long, default_value = "aorta.frames")]
    pub subject_prefix: String,
    /// This worker's id, unique among live workers (default: random).
    #[arg(long)]
    pub worker_id: Option<String>,
    /// The JetStream KV bucket of partition leases and worker membership
    /// (one per group of workers sharing the stream: one per assignment).
    #[arg(long, default_value = "AORTA_LEASES")]
    pub lease_bucket: String,
    /// The JetStream KV bucket of the partitions' checkpoints (one per
    /// assignment: a checkpoint is sealed under its state key).
    #[arg(long, default_value = "AORTA_CHECKPOINTS")]
    pub checkpoint_bucket: String,
    /// How long a partition lease lasts without renewal, ms.
    #[arg(long, default_value_t = 3000, value_parser = crate::args::int(300u64, 600_000))]
    pub lease_ttl_ms: u64,
    /// How often leases are renewed, ms (at most a third of the TTL).
    #[arg(long, default_value_t = 1000, value_parser = crate::args::int(1u64, 200_000))]
    pub lease_renew_ms: u64,
    /// File holding the NATS token (docs/scale.md, "Securing NATS").
    #[arg(long, value_name = "FILE")]
    pub nats_token_file: Option<PathBuf>,
    /// NATS user (with --nats-password-file).
    #[arg(long, requires = "nats_password_file")]
    pub nats_user: Option<String>,
    /// File holding the NATS user's password.
    #[arg(long, value_name = "FILE", requires = "nats_user")]
    pub nats_password_file: Option<PathBuf>,
    /// PEM CA of the NATS servers' certificates: TLS to NATS is required.
    #[arg(long, value_name = "FILE")]
    pub nats_ca: Option<PathBuf>,
    /// PEM client certificate for NATS servers that verify clients.
    #[arg(long, value_name = "FILE", requires = "nats_key")]
    pub nats_cert: Option<PathBuf>,
    /// PEM key of --nats-cert.
    #[arg(long, value_name = "FILE", requires = "nats_cert")]
    pub nats_key: Option<PathBuf>,
}

impl ClusterArgs {
    fn options(&self) -> anyhow::Result<Option<aorta_worker::cluster::ClusterOptions>> {
        use aorta_worker::cluster::NatsAuth;
        let Some(nats) = self.nats.as_ref() else {
            return Ok(None);
        };
        let id = self
            .worker_id
            .clone()
            .unwrap_or_else(aorta_worker::cluster::default_worker_id);
        let mut c = aorta_worker::cluster::ClusterOptions::new(nats, &id);
        c.spec.partitions = self.partitions;
        c.spec.replicas = self.replicas;
        c.spec.stream.clone_from(&self.stream);
        c.spec.subject_prefix.clone_from(&self.subject_prefix);
        c.lease.replicas = self.replicas;
        c.lease.bucket.clone_from(&self.lease_bucket);
        c.checkpoints.bucket.clone_from(&self.checkpoint_bucket);
        c.lease.ttl = std::time::Duration::from_millis(self.lease_ttl_ms);
        c.lease.renew = std::time::Duration::from_millis(self.lease_renew_ms);
        c.lease.margin = c.lease.renew / 2;
        c.checkpoints.replicas = self.replicas;
        c.auth = NatsAuth {
            token: match &self.nats_token_file {
                Some(f) => Some(NatsAuth::read_secret(f, "token")?),
                None => None,
            },
            user: match (&self.nats_user, &self.nats_password_file) {
                (Some(u), Some(f)) => Some((u.clone(), NatsAuth::read_secret(f, "password")?)),
                _ => None,
            },
            tls_ca: self.nats_ca.clone(),
            tls_client: self.nats_cert.clone().zip(self.nats_key.clone()),
        };
        Ok(Some(c))
    }
}

/// How the worker attests and what it asks for.
#[derive(clap::Args, Clone)]
pub struct AttestArgs {
    /// Evidence backend: sim (NOT hardware-protected), tdx, sev-snp,
    /// sgx-gramine, or auto (a hardware backend whose device files exist).
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// Key broker address (host:port).
    #[arg(long, value_parser = crate::args::connect_addr)]
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
    /// Hold only this many key indices per device (a key window, fetched
    /// again as devices rotate) instead of every device's whole key slice:
    /// lifts the 546-device limit of one key bundle. Default: whole slices.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub key_window: Option<u16>,
}

impl AttestArgs {
    /// The attestation options, with the backend resolved (the `sim`
    /// warning is printed here, once).
    fn options(&self) -> anyhow::Result<AttestOptions> {
        let backend = resolve_backend(&self.backend)?;
        if backend == Backend::Sim {
            eprintln!("WARNING: {}", aorta_enclave::SIM_WARNING);
        }
        Ok(AttestOptions {
            backend,
            broker: self.broker.clone(),
            assignment: self.assignment.clone(),
            config: self.config.clone(),
            sim_platform_key: self.sim_platform_key.clone(),
            collateral: self.collateral.clone(),
            key_window: self.key_window,
        })
    }
}

pub fn run(cmd: WorkerCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        WorkerCmd::Measure { config, json } => {
            let r = MeasureReport {
                measurement: aorta_worker::config::measure(config.as_deref())?.to_hex(),
            };
            crate::show(&r, json, |r| outln!("{}", r.measurement))?;
            Ok(ExitCode::SUCCESS)
        }
        WorkerCmd::SimPlatform { key, json } => {
            let p = SimAttester::load_or_create(&key)?;
            eprintln!("WARNING: {}", aorta_enclave::SIM_WARNING);
            let r = PlatformReport {
                platform_key: aorta_base::hex::encode(&p.platform_public_key()),
            };
            crate::show(&r, json, |r| outln!("{}", r.platform_key))?;
            Ok(ExitCode::SUCCESS)
        }
        WorkerCmd::Run {
            attest: a,
            devices,
            subscribers,
            serve_stdio,
            json,
            log,
        } => {
            if a.key_window.is_some() {
                anyhow::bail!(
                    "--key-window applies to `aorta worker stream`, which fetches windows again as devices rotate; `worker run` holds whole key slices"
                );
            }
            crate::signals::shut_down_on_signals()?;
            crate::logging::init(&log)?;
            let assignment = a.assignment.clone();
            let a = a.options()?;
            let config = aorta_worker::config::read_config(a.config.as_deref())?;
            let attested = match attest(&a, &config, devices, subscribers) {
                Ok(r) => r,
                Err(WorkerError::Refused { code, reason }) => {
                    eprintln!("refused by the key broker (code {code}): {reason}");
                    if json {
                        let r = RefusedReport {
                            refused: BrokerRefusal { code, reason },
                        };
                        outln!("{}", serde_json::to_string(&r)?);
                    }
                    return Ok(ExitCode::from(1));
                }
                Err(e) => return Err(e.into()),
            };
            let status = RunStatus::of(&attested, &assignment);
            tracing::info!(
                target: "aorta::worker",
                backend = %status.backend,
                hardware_protected = status.hardware_protected,
                transport_keys = status.transport_keys,
                result_keys = status.result_keys,
                "keys received"
            );
            if serve_stdio {
                // stdout is the protocol channel: status goes to stderr.
                eprintln!("{}", serde_json::to_string(&status)?);
                let sum = serve_host(
                    &attested.ready,
                    &mut std::io::stdin().lock(),
                    &mut std::io::stdout().lock(),
                )?;
                tracing::info!(target: "aorta::worker", frames = sum.frames, refused = sum.refused, "host channel closed");
            } else if json {
                outln!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                outln!(
                    "attested ({}{}) and received {} transport key(s), {} result key(s) for assignment {assignment}",
                    status.backend,
                    if status.hardware_protected {
                        ""
                    } else {
                        ", NOT hardware-protected"
                    },
                    status.transport_keys,
                    status.result_keys
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
            cluster,
            log,
        } => {
            crate::logging::init(&log)?;
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            crate::stop_on_signals(&stop)?;
            let o = StreamOptions {
                attest: a.options()?,
                server,
                ca,
                token_file,
                batch,
                checkpoint_secs,
            };
            let r = match cluster.options()? {
                Some(c) => aorta_worker::cluster::stream_cluster(&o, &c, &stop),
                None => stream(&o, &stop),
            };
            let summary = match r {
                Ok(s) => serde_json::to_string(&s)?,
                Err(WorkerError::Refused { code, reason }) => {
                    eprintln!("refused by the key broker (code {code}): {reason}");
                    return Ok(ExitCode::from(1));
                }
                Err(e) => return Err(e.into()),
            };
            if json {
                outln!("{summary}");
            } else {
                eprintln!("worker stopped: {summary}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
