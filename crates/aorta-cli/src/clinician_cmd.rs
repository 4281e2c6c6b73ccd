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
