//! `aorta results …`: the clinician's side of the results API.

use std::path::PathBuf;
use std::process::ExitCode;

use aorta_worker::clinician::ResultReader;
use aorta_worker::server::Server;

/// `aorta results` subcommands.
#[derive(clap::Subcommand)]
pub enum ResultsCmd {
    /// Fetch the results sealed to SUBSCRIBER and open them with the
    /// clinician's identity (`aorta clinician keygen`).
    Fetch {
        /// Server base URL.
        #[arg(long, default_value = "https://127.0.0.1:7443")]
        server: String,
        /// The server's certificate to trust.
        #[arg(long)]
        ca: PathBuf,
        /// The clinician's identity file.
        #[arg(long)]
        identity: PathBuf,
        /// Subscriber id the results are sealed to (as in the broker policy).
        #[arg(long)]
        subscriber: String,
        /// The key broker's certifying public key (64 hex digits, from
        /// `aorta broker public-key` or the server's `broker-signing.key`
        /// owner): only results signed by workers it certified are shown.
        #[arg(long)]
        broker_key: String,
        /// Accept results of `sim` workers (development only: they are NOT
        /// hardware-protected, and whoever controls their host can sign as
        /// them).
        #[arg(long)]
        allow_sim: bool,
        /// Only this patient's device serial.
        #[arg(long)]
        patient: Option<String>,
        /// Print JSON (one array of results).
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: ResultsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ResultsCmd::Fetch {
            server,
            ca,
            identity,
            subscriber,
            broker_key,
            allow_sim,
            patient,
            json,
        } => {
            let pinned = aorta_base::hex::decode_array::<32>(
                broker_key.trim(),
                aorta_base::hex::Case::Lower,
            )
            .map_err(|e| anyhow::anyhow!("--broker-key: {e}"))?;
            let id = crate::clinician_cmd::read_identity(&identity)?;
            let srv = Server::new(&server, &ca, None)?;
            let mut reader = ResultReader::new(srv, id, &subscriber, patient.as_deref(), *pinned)?
                .allow_simulation(allow_sim);
            let results = reader.poll()?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                for r in &results {
                    let result = serde_json::to_string(&r.result)?;
                    outln!(
                        "{} [{} .. {}] {result}",
                        r.patient,
                        crate::when::iso_us(r.start),
                        crate::when::iso_us(r.end)
                    );
                }
                eprintln!("{} result(s)", results.len());
            }
            if reader.withheld() > 0 {
                eprintln!(
                    "{} result(s) could not be opened: the host did not serve their session envelope (withheld or lost)",
                    reader.withheld()
                );
            }
            for why in reader.certificate_refusals() {
                eprintln!("{why}");
            }
            if reader.refused() > 0 {
                eprintln!(
                    "refused {} record(s) (not signed by a worker the pinned broker certified, altered by the host, or sealed to another identity); last: {}",
                    reader.refused(),
                    reader.last_refusal().unwrap_or("-")
                );
                return Ok(ExitCode::from(1));
            }
            if reader.withheld() > 0 {
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
