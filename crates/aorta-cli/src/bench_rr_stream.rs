//! `aorta bench rr-stream`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use aorta_stream::rr;

/// Arguments of `aorta bench rr-stream`.
#[derive(clap::Args)]
pub struct Args {
    /// Directory of RR files (CSV: `patient_id,event_time,rr_ms`, event_time in µs UTC).
    #[arg(long)]
    input: PathBuf,
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

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    if let Some(n) = a.patients {
        let files = rr::generate(&a.db, n, a.seed, &a.input, 2_000_000)
            .with_context(|| format!("generating {n} patients from {}", a.db.display()))?;
        eprintln!(
            "generated {} file(s) for {n} patients in {}",
            files.len(),
            a.input.display()
        );
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&a.input)
        .with_context(|| format!("reading {}", a.input.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    anyhow::ensure!(
        !files.is_empty(),
        "no .csv RR files in {} (use --patients N to generate some)",
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
        });
        if let (Some(d), Some(obj)) = (diff, v.as_object_mut()) {
            obj.insert("max_rel_diff".into(), serde_json::json!(d));
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} events, {} windows in {:.3} s on {threads} thread(s): {:.2} M events/s",
            run.events,
            run.windows,
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
