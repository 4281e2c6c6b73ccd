//! `aorta bench se`: flags → [`aorta_bench::se::run`] → the report as text
//! or JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use aorta_bench::se::{SeConfig, SeReport};

/// Arguments of `aorta bench se`.
#[derive(clap::Args)]
pub struct SeArgs {
    /// Size of the random input in bytes.
    #[arg(long, default_value_t = 64 << 20, value_parser = crate::args::int(1usize, 1 << 34))]
    size: usize,
    /// Real files to measure as well (e.g. a DICOM image, an MIT-BIH .dat file).
    #[arg(long = "input")]
    inputs: Vec<PathBuf>,
    /// Minimum measuring time per case, in seconds.
    #[arg(long, default_value_t = 1.0, value_parser = crate::args::secs(0.0, crate::args::DAY))]
    min_time: f64,
    /// Print JSON: `results` is a list of {scheme, threads, mb_per_s, input}.
    #[arg(long)]
    json: bool,
}

/// Runs the benchmark.
pub fn run(a: SeArgs) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this is a debug build; figures are meaningless. Use cargo run --release."
        );
    }
    let r = aorta_bench::se::run(&SeConfig {
        size: a.size,
        inputs: a.inputs,
        min_time: a.min_time,
    })?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_text(&r);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(r: &SeReport) {
    outln!(
        "cores {}, SHA-NI {}, AES-NI {}; MB = 10^6 bytes",
        r.cores,
        r.sha_ni,
        r.aes_ni
    );
    outln!("{:<14} {:>7} {:>10}  input", "scheme", "threads", "MB/s");
    for row in &r.results {
        outln!(
            "{:<14} {:>7} {:>10.1}  {}",
            row.scheme,
            row.threads,
            row.mb_per_s,
            row.input
        );
    }
    for name in &r.inputs {
        for &t in &r.thread_counts {
            if let (Some(strong), Some(units)) = (
                r.speedup_over_cbc("se-strong", t, name),
                r.speedup_over_cbc("se-units", t, name),
            ) {
                outln!(
                    "{name}, {t} thread(s): se-strong / aes-128-cbc = {strong:.2}x, se-units / aes-128-cbc = {units:.2}x"
                );
            }
        }
    }
}
