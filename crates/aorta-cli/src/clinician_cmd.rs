//! `aorta clinician …`: a clinician's (subscriber's) X25519 identity, to
//! which attested workers seal analysis results (`docs/results-format.md`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aorta_base::fs::WriteError;
use aorta_crypto::results::ClinicianIdentity;
use aorta_worker::clinician::write_identity;

/// `aorta clinician` subcommands.
#[derive(clap::Subcommand)]
pub enum ClinicianCmd {
    /// Generate a clinician identity: writes the secret key to FILE (mode
    /// 0600, never overwriting) and prints the public key
    /// (`aorta-clinician-1…`) to give to the key broker.
    Keygen {
        /// Where to write the secret identity file (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key of an identity file.
    Public {
        /// The identity file written by `aorta clinician keygen`.
        #[arg(long)]
        identity: PathBuf,
        /// Print instead the public key of the identity's authentication
        /// key (64 hex digits): what the server's `clinicians` file lists,
        /// so that only this clinician can list and fetch their results.
        #[arg(long)]
        auth: bool,
    },
    /// Serve the live web dashboard on this machine: fetch, verify and open
    /// the results sealed to SUBSCRIBER with the identity (the key never
    /// leaves this machine), follow new ones, and show the ward, each
    /// patient's trends, events and ECG strips, and alarms to acknowledge
    /// (audited). Prints the URL to open (it carries a per-run access
    /// token). docs/dashboard.md.
    Serve(ServeArgs),
}

/// `aorta clinician serve` arguments.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The clinician's identity file.
    #[arg(long)]
    identity: PathBuf,
    /// Server base URL.
    #[arg(long, default_value = "https://127.0.0.1:7443")]
    server: String,
    /// The server's certificate to trust.
    #[arg(long)]
    ca: PathBuf,
    /// The key broker's certifying public key (64 hex digits): only results
    /// signed by workers it certified are shown.
    #[arg(long)]
    broker_key: String,
    /// Subscriber id the results are sealed to (as in the broker policy).
    #[arg(long)]
    subscriber: String,
    /// Accept results of `sim` workers (development only: NOT
    /// hardware-protected).
    #[arg(long)]
    allow_sim: bool,
    /// Address the dashboard listens on (loopback unless --allow-remote;
    /// port 0: a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Allow a non-loopback --listen: anyone who reaches it and holds the
    /// URL's token sees the patients, over plain HTTP.
    #[arg(long)]
    allow_remote: bool,
    /// The append-only audit file of acknowledgements (default: next to the
    /// identity, `IDENTITY.dashboard-audit.jsonl`).
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Exit when stdin reaches end-of-file (for a parent process such as
    /// `aorta demo --dashboard`: the dashboard ends with it, even when it
    /// is killed outright).
    #[arg(long, hide = true)]
    stop_on_stdin_eof: bool,
}

pub fn run(cmd: ClinicianCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ClinicianCmd::Keygen { out } => {
            let id = ClinicianIdentity::generate()?;
            match write_identity(&out, &id) {
                Ok(()) => {}
                Err(WriteError::Exists(_)) => {
                    eprintln!(
                        "refused: {} already exists; refusing to overwrite a clinician identity",
                        out.display()
                    );
                    return Ok(ExitCode::from(1));
                }
                Err(e) => return Err(e.into()),
            }
            eprintln!(
                "wrote the secret identity to {} (mode 0600): keep it private, back it up; \
                 results sealed to it cannot be opened without it",
                out.display()
            );
            outln!("{}", id.public());
            Ok(ExitCode::SUCCESS)
        }
        ClinicianCmd::Public { identity, auth } => {
            let id = read_identity(&identity)?;
            if auth {
                outln!("{}", aorta_base::hex::encode(&id.auth_key()?.public()));
            } else {
                outln!("{}", id.public());
            }
            Ok(ExitCode::SUCCESS)
        }
        ClinicianCmd::Serve(a) => serve(a),
    }
}

/// How long one read waits at the server for a new result (long-poll,
/// `docs/server-api.md`): results reach the dashboard as soon as they are
/// stored, and an idle ward costs one request per wait.
const RESULTS_WAIT: std::time::Duration = std::time::Duration::from_secs(20);
/// How long the loop pauses after a failed read before it tries again.
const RETRY_AFTER_ERROR: std::time::Duration = std::time::Duration::from_secs(1);

/// The next results, long-polling the server for up to [`RESULTS_WAIT`].
fn next_results(
    reader: &mut aorta_worker::clinician::ResultReader,
) -> Result<Vec<aorta_worker::clinician::OpenedResult>, aorta_worker::WorkerError> {
    reader.poll_wait(RESULTS_WAIT)
}

fn serve(a: ServeArgs) -> anyhow::Result<ExitCode> {
    use aorta_clinician::dashboard::{self, model::Source};
    use std::sync::{Arc, Mutex};
    // Refused before anything is read or fetched.
    if !a.listen.ip().is_loopback() && !a.allow_remote {
        return Err(dashboard::DashboardError::NotLoopback(a.listen).into());
    }
    let pinned =
        aorta_base::hex::decode_array::<32>(a.broker_key.trim(), aorta_base::hex::Case::Lower)
            .map_err(|e| anyhow::anyhow!("--broker-key: {e}"))?;
    let id = read_identity(&a.identity)?;
    let clinician = id.public().to_string();
    let srv = aorta_worker::server::Server::new(&a.server, &a.ca, None)?;
    let mut reader =
        aorta_worker::clinician::ResultReader::new(srv, id, &a.subscriber, None, *pinned)?
            .allow_simulation(a.allow_sim);
    let ward = Arc::new(Mutex::new(dashboard::model::Ward::new()));
    let audit = a
        .audit
        .clone()
        .unwrap_or_else(|| dashboard::default_audit_path(&a.identity));
    let running = dashboard::start(
        dashboard::Config {
            listen: a.listen,
            allow_remote: a.allow_remote,
            audit: audit.clone(),
            clinician,
            limits: dashboard::Limits::default(),
        },
        ward.clone(),
    )?;
    // Nothing to flush: every acknowledgement is fsynced as it happens.
    crate::signals::shut_down_on_signals()?;
    if a.stop_on_stdin_eof {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            std::process::exit(0);
        });
    }
    eprintln!(
        "aorta clinician dashboard for `{}` on http://{} (acknowledgements audited to {}); open the URL below (it holds this run's access token); Ctrl-C stops",
        a.subscriber,
        running.addr(),
        audit.display()
    );
    outln!("{}", running.url());
    let mut last_ok = None;
    loop {
        let got = next_results(&mut reader);
        let now = aorta_base::time::now_us();
        let mut w = ward
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut source = Source {
            refused: reader.refused(),
            withheld: reader.withheld(),
            certificate_refusals: reader.certificate_refusals().to_vec(),
            last_poll_us: last_ok,
            error: None,
        };
        let failed = match got {
            Ok(results) => {
                w.feed(&results, now);
                last_ok = Some(now);
                source.last_poll_us = last_ok;
                false
            }
            Err(e) => {
                source.error = Some(e.to_string());
                true
            }
        };
        w.set_source(source);
        drop(w);
        if failed {
            std::thread::sleep(RETRY_AFTER_ERROR);
        }
    }
}

/// Reads an identity file, warning (stderr) if other users may read it. For
/// `aorta results …` too.
pub fn read_identity(path: &Path) -> anyhow::Result<ClinicianIdentity> {
    let f = aorta_worker::clinician::read_identity(path)?;
    if let Some(mode) = f.readable_by_others {
        eprintln!(
            "warning: {} is readable by other users (mode {mode:o}); run chmod 600 on it",
            path.display()
        );
    }
    Ok(f.identity)
}
