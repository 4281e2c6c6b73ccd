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
            patient,
            json,
        } => {
            let id = crate::clinician_cmd::read_identity(&identity)?;
            let srv = Server::new(&server, &ca, None)?;
            let mut reader = ResultReader::new(srv, id, &subscriber, patient.as_deref());
            let results = reader.poll()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                for r in &results {
                    let result = serde_json::to_string(&r.result)?;
                    println!("{} [{} .. {}] {result}", r.patient, r.start, r.end);
                }
                eprintln!("{} result(s)", results.len());
            }
            if reader.refused() > 0 {
                eprintln!(
                    "{} result(s) could not be opened with this identity (another clinician's, or altered by the host)",
                    reader.refused()
                );
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
