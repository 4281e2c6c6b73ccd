//! `aorta clinician …`: a clinician's (subscriber's) X25519 identity, to
//! which attested workers seal analysis results (`docs/results-format.md`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use aorta_crypto::results::ClinicianIdentity;
use zeroize::Zeroizing;

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
    },
}

pub fn run(cmd: ClinicianCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ClinicianCmd::Keygen { out } => {
            let id = ClinicianIdentity::generate()?;
            let text = id.to_file_text();
            match create_secret_file(&out, text.as_bytes()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    eprintln!(
                        "refused: {} already exists; refusing to overwrite a clinician identity",
                        out.display()
                    );
                    return Ok(ExitCode::from(1));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("writing {}", out.display()));
                }
            }
            eprintln!(
                "wrote the secret identity to {} (mode 0600): keep it private, back it up; \
                 results sealed to it cannot be opened without it",
                out.display()
            );
            println!("{}", id.public());
            Ok(ExitCode::SUCCESS)
        }
        ClinicianCmd::Public { identity } => {
            let id = read_identity(&identity)?;
            println!("{}", id.public());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads and parses an identity file, warning (stderr) if other users may
/// read it. For `aorta results …` too.
pub fn read_identity(path: &Path) -> anyhow::Result<ClinicianIdentity> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = f
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            eprintln!(
                "warning: {} is readable by other users (mode {:o}); run chmod 600 on it",
                path.display(),
                mode & 0o777
            );
        }
    }
    let mut text = Zeroizing::new(String::new());
    Read::by_ref(&mut f)
        .take(64 * 1024 + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    ClinicianIdentity::from_file_text(&text)
        .with_context(|| format!("{} is not a clinician identity file", path.display()))
}

/// Creates `path` exclusively (fails with `AlreadyExists` if it exists),
/// mode 0600 on Unix, writes `bytes` and syncs. A partial file is removed.
fn create_secret_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if let Err(e) = written {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}
