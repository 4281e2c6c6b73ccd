//! `aorta bench se`: flags → [`aorta_bench::se::run`] → the report as text
//! or JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use aorta_bench::se::{SeConfig, SeReport};

/// Arguments of `aorta bench se`.
#[derive(clap::Args)]
pub struct SeArgs {
    /// Size of the random input in bytes (default 16 MiB: under glibc's
    /// 32 MiB mmap ceiling, so successive protections reuse memory as a
    /// device protecting record after record does; larger sizes also
    /// measure the page faults of every fresh output buffer).
    #[arg(long, default_value_t = 16 << 20, value_parser = crate::args::int(1usize, 1 << 34))]
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
        "cores {}, SHA-NI {}, AES-NI {}; MB = 10^6 bytes; wall = MB per elapsed second, \
         cpu = MB per second of this process's CPU time (per busy core)",
        r.cores,
        r.sha_ni,
        r.aes_ni
    );
    for name in &r.inputs {
        outln!("input: {name}");
        let mut head = format!("  {:<18}", "scheme");
        for &t in &r.thread_counts {
            head.push_str(&format!(
                " {:>10} {:>10}",
                format!("wall {t}t"),
                format!("cpu {t}t")
            ));
        }
        outln!("{head}");
        for scheme in aorta_bench::se::SCHEMES {
            let mut line = format!("  {scheme:<18}");
            for &t in &r.thread_counts {
                match r.row(scheme, t, name) {
                    Some(row) => line.push_str(&format!(
                        " {:>10.1} {:>10.1}",
                        row.mb_per_s, row.cpu_mb_per_s
                    )),
                    None => line.push_str(&format!(" {:>10} {:>10}", "-", "-")),
                }
            }
            outln!("{line}");
        }
        for &t in &r.thread_counts {
            let ratio = |s: &str| match (
                r.speedup_over_cbc(s, t, name),
                r.cpu_speedup_over_cbc(s, t, name),
            ) {
                (Some(w), Some(c)) => format!("{w:.2}x (cpu {c:.2}x)"),
                _ => "n/a".to_owned(),
            };
            outln!(
                "  {t} thread(s), over aes-128-cbc: se-strong {}, se-faithful {}",
                ratio("se-strong"),
                ratio("se-faithful")
            );
        }
    }
}
