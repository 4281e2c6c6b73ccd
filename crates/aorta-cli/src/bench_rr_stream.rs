//! `aorta bench rr-stream`: flags → [`aorta_bench::rr_stream::run`] → the
//! report as text or JSON (exit 1 when the reference differs, 2 when the
//! input's format is ambiguous).

use std::path::PathBuf;
use std::process::ExitCode;

use aorta_bench::rr_stream::{RrStreamConfig, RrStreamError};
use aorta_stream::rr;

/// Arguments of `aorta bench rr-stream`.
#[derive(clap::Args)]
pub struct Args {
    /// Directory of RR files: Parquet (`*.parquet`: patient_id int32, event_time
    /// timestamp[us, UTC], rr_ms double) or CSV (`*.csv`: `patient_id,event_time,rr_ms`,
    /// event_time in µs UTC), in event-time order by file name.
    #[arg(long)]
    input: PathBuf,
    /// File format: written by --patients (default parquet) and read from --input
    /// (default: the one format found there).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// First generate files for N patients into --input from the database's annotations
    /// (patient p replays record p mod R from a random offset in [0, 300) s).
    #[arg(long, value_parser = crate::args::int(1u32, u32::MAX))]
    patients: Option<u32>,
    /// Database used by --patients.
    #[arg(long, default_value = "../shared/data/mitdb")]
    db: PathBuf,
    /// Seed for the generator's offsets.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long, value_parser = crate::args::int(1usize, 4096))]
    threads: Option<usize>,
    /// Also run the straightforward reference computation and report the
    /// largest relative difference (fails if above 1e-9).
    #[arg(long)]
    verify: bool,
    /// Print JSON (`events`, `windows`, `events_per_s`, `seconds`).
    #[arg(long)]
    json: bool,
}

/// `--format`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Parquet,
    Csv,
}

impl From<Format> for rr::RrFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Parquet => rr::RrFormat::Parquet,
            Format::Csv => rr::RrFormat::Csv,
        }
    }
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let cfg = RrStreamConfig {
        input: a.input,
        format: a.format.map(Into::into),
        patients: a.patients,
        db: a.db,
        seed: a.seed,
        threads: a.threads,
        verify: a.verify,
    };
    let r = match aorta_bench::rr_stream::run(&cfg, &|s| eprintln!("{s}")) {
        Ok(r) => r,
        Err(e @ RrStreamError::BothFormats { .. }) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        outln!(
            "{} events, {} windows from {} {} file(s) in {:.3} s on {} thread(s): {:.2} M events/s",
            r.events,
            r.windows,
            r.files,
            r.format,
            r.seconds,
            r.threads,
            r.events_per_s / 1e6
        );
        if let Some(d) = r.max_rel_diff {
            outln!("largest relative difference from the reference computation: {d:.3e}");
        }
    }
    Ok(if r.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
