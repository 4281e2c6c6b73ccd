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
    #[command(flatten)]
    log: crate::logging::LogArgs,
}

pub fn run(a: ServerArgs) -> anyhow::Result<ExitCode> {
    if a.print_default_config {
        out!("{}", ServerConfig::default_toml());
        return Ok(ExitCode::SUCCESS);
    }
    crate::logging::init(&a.log)?;
    let cfg = match &a.config {
        Some(p) => ServerConfig::from_file(p)?,
        None => ServerConfig::default(),
    };
    api::run(&cfg, |r| {
        // Machine-readable lines for scripts (and `aorta demo`), plain
        // text whatever the log format; the operations port's first.
        if let Some(m) = r.metrics {
            eprintln!("aorta server operations port on http://{m}");
        }
        eprintln!(
            "aorta server listening on https://{} (broker {}), certificate {}",
            r.addr,
            r.broker.map_or("off".to_string(), |b| b.to_string()),
            r.cert.display()
        );
    })?;
    Ok(ExitCode::SUCCESS)
}
