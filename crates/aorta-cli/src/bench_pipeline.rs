//! `aorta bench pipeline`: flags → [`aorta_bench::pipeline::run`] → the
//! report as text or JSON (exit 1 when results differ, none were
//! compared, or frames were refused).

use std::path::PathBuf;
use std::process::ExitCode;

use aorta_bench::pipeline::PipelineConfig;

/// Arguments of `aorta bench pipeline`.
#[derive(clap::Args)]
pub struct Args {
    /// Concurrent devices (each 360 Hz, two channels with MIT-BIH).
    #[arg(long, default_value_t = 10_000, value_parser = crate::args::int(1usize, 1_000_000))]
    devices: usize,
    /// Seconds of signal per device for the full-speed throughput run.
    #[arg(long, default_value_t = 30.0, value_parser = crate::args::secs(0.0, crate::args::LONG))]
    seconds: f64,
    /// Seconds of signal per device for the real-time paced latency run.
    #[arg(long, default_value_t = 20.0, value_parser = crate::args::secs(0.0, crate::args::LONG))]
    paced_seconds: f64,
    /// Seconds of signal per frame.
    #[arg(long, default_value_t = 1.0, value_parser = crate::args::secs(0.0, crate::args::MAX_FRAME_SECONDS))]
    frame_seconds: f64,
    /// WFDB database the devices replay (device d plays record d mod R from
    /// an offset in [0, 300) s). When absent, a synthetic ECG is used and the
    /// output says so.
    #[arg(long, default_value = "../shared/data/mitdb")]
    db: PathBuf,
    /// Worker records per batch (as `aorta worker stream --batch`).
    #[arg(long, default_value_t = 1024, value_parser = crate::args::int(1usize, 1 << 20))]
    batch: usize,
    /// Full-speed rounds per pipeline, alternating plain and secure; the
    /// median round of each is reported (the machine may be shared).
    #[arg(long, default_value_t = 3, value_parser = crate::args::int(1usize, 1000))]
    rounds: usize,
    /// Worker checkpoint interval, seconds of signal (every devices ×
    /// this / frame-seconds records, in both pipelines and both runs; the
    /// real worker checkpoints every 5 s of wall time, the same while it
    /// keeps up in real time).
    #[arg(long, default_value_t = 5.0, value_parser = crate::args::secs(0.0, crate::args::DAY))]
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
    crate::show(&r, a.json, |r| out!("{}", r.table()))?;
    Ok(if r.ok() {
        ExitCode::SUCCESS
    } else {
        if r.results_opened == 0 {
            eprintln!(
                "check failed: nothing compared: the run produced no result (give more --seconds)"
            );
        } else {
            eprintln!(
                "check failed: results differ or frames were refused ({})",
                r.refused
            );
        }
        ExitCode::from(1)
    })
}
