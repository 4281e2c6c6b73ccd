//! `aorta bench pipeline`: flags → [`aorta_bench::pipeline::run`] → the
//! report as text or JSON (exit 1 when results differ or frames were
//! refused).

use std::path::PathBuf;
use std::process::ExitCode;

use aorta_bench::pipeline::{PipelineConfig, PipelineFigures, PipelineReport};

/// Arguments of `aorta bench pipeline`.
#[derive(clap::Args)]
pub struct Args {
    /// Concurrent devices (each 360 Hz, two channels with MIT-BIH).
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Seconds of signal per device for the full-speed throughput run.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Seconds of signal per device for the real-time paced latency run.
    #[arg(long, default_value_t = 20.0)]
    paced_seconds: f64,
    /// Seconds of signal per frame.
    #[arg(long, default_value_t = 1.0)]
    frame_seconds: f64,
    /// WFDB database the devices replay (device d plays record d mod R from
    /// an offset in [0, 300) s). When absent, a synthetic ECG is used and the
    /// output says so.
    #[arg(long, default_value = "../shared/data/mitdb")]
    db: PathBuf,
    /// Worker records per batch (as `aorta worker stream --batch`).
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    /// Full-speed rounds per pipeline, alternating plain and secure; the
    /// median round of each is reported (the machine may be shared).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Worker checkpoint interval, seconds of signal (every devices ×
    /// this / frame-seconds records, in both pipelines and both runs; the
    /// real worker checkpoints every 5 s of wall time, the same while it
    /// keeps up in real time).
    #[arg(long, default_value_t = 5.0)]
    checkpoint_secs: f64,
    /// Keep the logs, result stores and checkpoints in DIR (with the
    /// clinician identity in DIR/clinician.key) instead of a temporary
    /// directory that is removed afterwards.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Print JSON (`secure`, `plain` with `samples_per_s`, `p50_ms`, `p99_ms`;
    /// `overhead`, `devices`, `realtime_samples_per_s`, …).
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let cfg = PipelineConfig {
        devices: a.devices,
        seconds: a.seconds,
        paced_seconds: a.paced_seconds,
        frame_seconds: a.frame_seconds,
        db: a.db,
        batch: a.batch,
        rounds: a.rounds,
        checkpoint_secs: a.checkpoint_secs,
        keep: a.keep,
    };
    let r = aorta_bench::pipeline::run(&cfg, &|s| eprintln!("{s}"))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_text(&r);
    }
    Ok(if r.ok() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "check failed: results differ or frames were refused ({})",
            r.refused
        );
        ExitCode::from(1)
    })
}

fn print_text(r: &PipelineReport) {
    println!(
        "{} devices, {} s of signal per device at full speed, {} s paced in real time (data: {}; sim attestation, NOT hardware-protected)",
        r.devices, r.seconds, r.paced_seconds, r.data
    );
    println!(
        "{:<8} {:>14} {:>10} {:>10} {:>10} {:>12} {:>14} {:>8}",
        "pipeline",
        "samples/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "final lag ms",
        "max backlog",
        "results"
    );
    for (name, p) in [("secure", &r.secure), ("plain", &r.plain)] {
        print_row(name, p);
    }
    println!(
        "overhead (plain / secure throughput, median of {} rounds): {:.3}× (target ≤ 1.15×); by CPU time: {:.3}×; real time needs {:.0} samples/s",
        r.rounds, r.overhead, r.overhead_cpu, r.realtime_samples_per_s
    );
    println!(
        "secure results opened with the clinician's identity and equal to the plain ones: {} ({} results)",
        r.results_identical, r.results_opened
    );
}

fn print_row(name: &str, p: &PipelineFigures) {
    println!(
        "{:<8} {:>14.0} {:>10.1} {:>10.1} {:>10.1} {:>12.1} {:>14.0} {:>8.0}",
        name,
        p.samples_per_s,
        p.p50_ms,
        p.p99_ms,
        p.paced.max_ms,
        p.paced.final_lag_ms,
        p.paced.max_backlog_frames as f64,
        p.run.results as f64,
    );
}
