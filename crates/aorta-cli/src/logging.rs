//! Logging of the long-running commands (`aorta server`, `aorta worker …`,
//! `aorta broker serve`): events on stderr (stdout may carry protocol or
//! JSON), filtered by `RUST_LOG` when it is set (the `tracing` /
//! `env_logger` directive syntax: `info`, `aorta::server=debug,warn`, `off`),
//! else INFO (DEBUG with `-v`); as text or, with `--log-format json`, one
//! JSON object per line (docs/cli.md, "Logging").

use anyhow::{Context, bail};
use tracing_subscriber::EnvFilter;

/// How log events are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `TIME LEVEL TARGET: message key=value …`, one line per event.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message`
    /// and the event's fields.
    Json,
}

/// The logging options of a long-running command.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct LogArgs {
    /// Debug logging (when `RUST_LOG` is not set; `RUST_LOG` wins).
    #[arg(long, short)]
    pub verbose: bool,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The filter: `RUST_LOG` when set and not blank (an invalid one is an
/// error, never silently ignored), else INFO, or DEBUG with `verbose`.
fn filter(verbose: bool) -> anyhow::Result<EnvFilter> {
    match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => EnvFilter::builder().parse(s.trim()).with_context(|| {
            format!(
                "RUST_LOG={s:?} is not a log filter (e.g. RUST_LOG=info, RUST_LOG=aorta::server=debug,warn, RUST_LOG=off)"
            )
        }),
        Err(std::env::VarError::NotUnicode(_)) => bail!("RUST_LOG is not valid UTF-8"),
        _ => Ok(EnvFilter::new(if verbose { "debug" } else { "info" })),
    }
}

/// Installs the process's log subscriber (once; a second call is a no-op).
pub fn init(a: &LogArgs) -> anyhow::Result<()> {
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter(a.verbose)?)
        .with_writer(std::io::stderr);
    // Already installed: the first one stays.
    let _ = match a.log_format {
        LogFormat::Text => b
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        LogFormat::Json => b
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    Ok(())
}
