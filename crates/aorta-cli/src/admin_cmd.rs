//! `aorta admin …`: operator actions on a server's data directory, with
//! the server stopped.

use std::path::PathBuf;
use std::process::ExitCode;

use aorta_server::http::ServerConfig;

/// `aorta admin` subcommands.
#[derive(clap::Subcommand)]
pub enum AdminCmd {
    /// Erase one patient (GDPR art. 17; docs/erasure.md). With the server
    /// stopped: overwrites the device's frames in frames.log now; the
    /// worker erases its operator state and the patient's results when the
    /// server next runs. Every step is written to audit.log.
    Erase {
        /// The serial of the patient's device.
        #[arg(long, value_name = "SERIAL")]
        patient: String,
        /// The server's configuration file (its `data_dir` is used).
        #[arg(long, conflicts_with = "data_dir")]
        config: Option<PathBuf>,
        /// The server's data directory (default: the default config's).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: AdminCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AdminCmd::Erase {
            patient,
            config,
            data_dir,
            json,
        } => {
            let dir = match (data_dir, config) {
                (Some(d), _) => d,
                (None, Some(c)) => ServerConfig::from_file(&c)?.data_dir,
                (None, None) => ServerConfig::default().data_dir,
            };
            let r = aorta_server::erasure::request(&dir, &patient)?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                outln!(
                    "erased {} frames ({} bytes) of device {patient} from {}",
                    r.frames_erased,
                    r.frame_bytes_erased,
                    dir.join("frames.log").display()
                );
                outln!(
                    "request {}: the worker erases the patient's operator state and results when the server next runs ({} pending)",
                    r.request,
                    r.pending
                );
                outln!(
                    "audit: {} names the device as {}",
                    dir.join("audit.log").display(),
                    r.device_mac
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
