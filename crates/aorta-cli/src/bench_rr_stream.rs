//! `aorta bench rr-stream`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
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
    #[arg(long)]
    patients: Option<u32>,
    /// Database used by --patients.
    #[arg(long, default_value = "../shared/data/mitdb")]
    db: PathBuf,
    /// Seed for the generator's offsets.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
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
    if let Some(n) = a.patients {
        let format = a.format.map_or(rr::RrFormat::Parquet, Into::into);
        let files = rr::generate(&a.db, n, a.seed, &a.input, 2_000_000, format)
            .with_context(|| format!("generating {n} patients from {}", a.db.display()))?;
        eprintln!(
            "generated {} file(s) for {n} patients in {}",
            files.len(),
            a.input.display()
        );
    }
    let all: Vec<(PathBuf, rr::RrFormat)> = std::fs::read_dir(&a.input)
        .with_context(|| format!("reading {}", a.input.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| rr::RrFormat::of_path(&p).map(|f| (p, f)))
        .collect();
    let format = match a.format {
        Some(f) => f.into(),
        None => {
            let has = |f| all.iter().any(|(_, g)| *g == f);
            match (has(rr::RrFormat::Parquet), has(rr::RrFormat::Csv)) {
                (true, true) => {
                    eprintln!(
                        "{} holds both .parquet and .csv RR files: choose one with --format",
                        a.input.display()
                    );
                    return Ok(ExitCode::from(2));
                }
                (false, true) => rr::RrFormat::Csv,
                _ => rr::RrFormat::Parquet,
            }
        }
    };
    let mut files: Vec<PathBuf> = all
        .into_iter()
        .filter(|(_, f)| *f == format)
        .map(|(p, _)| p)
        .collect();
    files.sort();
    anyhow::ensure!(
        !files.is_empty(),
        "no .{} RR files in {} (use --patients N to generate some)",
        format.extension(),
        a.input.display()
    );
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let (out, run) = rr::run(&files, threads, rr::FIVE_MINUTES)?;
    let diff = if a.verify {
        let reference = rr::reference(&files, rr::FIVE_MINUTES)?;
        Some(
            rr::max_relative_difference(&out, &reference)
                .context("engine and reference disagree on the set of windows")?,
        )
    } else {
        None
    };
    if a.json {
        let mut v = serde_json::json!({
            "events": run.events, "windows": run.windows, "events_per_s": run.events_per_s,
            "seconds": run.seconds, "threads": threads, "late_dropped": run.stats.late_dropped,
            "format": format.extension(), "files": files.len(),
        });
        if let (Some(d), Some(obj)) = (diff, v.as_object_mut()) {
            obj.insert("max_rel_diff".into(), serde_json::json!(d));
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} events, {} windows from {} {} file(s) in {:.3} s on {threads} thread(s): {:.2} M events/s",
            run.events,
            run.windows,
            files.len(),
            format.extension(),
            run.seconds,
            run.events_per_s / 1e6
        );
        if let Some(d) = diff {
            println!("largest relative difference from the reference computation: {d:.3e}");
        }
    }
    Ok(match diff {
        Some(d) if d > 1e-9 => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}
