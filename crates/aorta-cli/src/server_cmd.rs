//! `aorta server`: ingest, key broker, results API and metrics over HTTPS.

use std::path::PathBuf;
use std::process::ExitCode;

use aorta_server::http::{ServerConfig, api};

/// `aorta server` arguments.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// Configuration file (TOML; see `--print-default-config` and
    /// docs/server.md). Without it every default applies, relative to the
    /// current directory.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the default configuration and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Debug logging.
    #[arg(long, short)]
    verbose: bool,
}

pub fn run(a: ServerArgs) -> anyhow::Result<ExitCode> {
    if a.print_default_config {
        out!("{}", ServerConfig::default_toml());
        return Ok(ExitCode::SUCCESS);
    }
    crate::init_logging(a.verbose);
    let cfg = match &a.config {
        Some(p) => ServerConfig::from_file(p)?,
        None => ServerConfig::default(),
    };
    api::run(&cfg, |r| {
        // One machine-readable line for scripts (and `aorta demo`).
        eprintln!(
            "aorta server listening on https://{} (broker {}), certificate {}",
            r.addr,
            r.broker.map_or("off".to_string(), |b| b.to_string()),
            r.cert.display()
        );
    })?;
    Ok(ExitCode::SUCCESS)
}
