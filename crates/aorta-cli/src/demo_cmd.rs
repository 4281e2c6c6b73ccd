//! `aorta demo`: flags → [`aorta_bench::demo::run`] (the server and worker
//! launched from this executable, the devices replaying records with
//! `aorta_device::source::record::RecordReplay`) → the summary on stderr, `--json` on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use aorta_bench::demo::{DemoConfig, DemoOutcome, DemoReport, SampleRecord};
use aorta_device::agent::Speed;

/// The sample shipped in the binary, used when the MIT-BIH folder is absent
/// (`tools/make_demo_sample.py`: the first 6 minutes of records 100 and 203).
const SAMPLE: [(&str, &[u8], &[u8]); 2] = [
    (
        "100",
        include_bytes!("../assets/sample/100.hea"),
        include_bytes!("../assets/sample/100.dat"),
    ),
    (
        "203",
        include_bytes!("../assets/sample/203.hea"),
        include_bytes!("../assets/sample/203.dat"),
    ),
];

/// `aorta demo` arguments.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Simulated devices (patients), each streaming one record (≤ 500: one
    /// worker's key bundle).
    #[arg(long, default_value_t = 8, value_parser = crate::args::int(1usize, 500))]
    devices: usize,
    /// Replay speed: × real time, or `max`.
    #[arg(long, default_value = "30")]
    speed: Speed,
    /// Seconds of signal per device (HRV needs 300 for one Task Force window).
    #[arg(long, default_value_t = 330.0, value_parser = crate::args::secs(1.0, crate::args::LONG))]
    duration: f64,
    /// Seconds of signal per frame.
    #[arg(long, default_value_t = 1.0, value_parser = crate::args::secs(0.0, crate::args::MAX_FRAME_SECONDS))]
    frame_seconds: f64,
    /// MIT-BIH folder (a 6-minute sample shipped in the binary is used when
    /// it is absent).
    #[arg(long, default_value = "../shared/data/mitdb")]
    db: PathBuf,
    /// Working directory (kept); default: a temporary one, removed.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Only provision and write the configuration into `--dir`, print the
    /// commands that run each part, and exit (to run the pieces yourself).
    #[arg(long, requires = "dir")]
    setup_only: bool,
}

pub fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let speed = a.speed;
    let cfg = DemoConfig {
        exe: std::env::current_exe().context("cannot find the aorta executable")?,
        devices: a.devices,
        speed,
        duration: a.duration,
        frame_seconds: a.frame_seconds,
        db: a.db,
        dir: a.dir,
        setup_only: a.setup_only,
        sample: SAMPLE
            .iter()
            .map(|&(name, header, signal)| SampleRecord {
                name,
                header,
                signal,
            })
            .collect(),
        watch_stop: crate::stop_on_signals,
    };
    match aorta_bench::demo::run(&cfg, &|s| eprintln!("{s}"))? {
        DemoOutcome::SetupOnly { dir, commands, .. } => {
            print_setup(&dir, &commands);
            Ok(ExitCode::SUCCESS)
        }
        DemoOutcome::Ran(r) => finish(&r, a.json),
    }
}

fn print_setup(dir: &std::path::Path, commands: &[String]) {
    let w = dir.display();
    outln!("set up in {w}. Run each part in its own terminal, from {w}:");
    outln!();
    for c in commands {
        outln!("  {c}");
    }
    outln!();
    outln!("ADDR and BROKER_ADDR: what `aorta server` prints. server.toml listens on ephemeral");
    outln!("ports (127.0.0.1:0); set `listen` and `broker_listen` to fixed ones to keep them.");
}

fn finish(r: &DemoReport, json: bool) -> anyhow::Result<ExitCode> {
    eprintln!(
        "\n{} devices · {} samples · {} frames · {} results ({} rhythm events) · {:.0} samples/s · latency p50 {:.1} ms, p99 {:.1} ms (frame arrival → sealed results stored)",
        r.devices,
        r.samples,
        r.frames,
        r.results,
        r.events,
        r.samples_per_s,
        r.latency_ms.p50,
        r.latency_ms.p99,
    );
    if let Some(d) = &r.kept_dir {
        eprintln!("work directory kept: {}", d.display());
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(r)?);
    }
    if let Some(f) = &r.failed {
        eprintln!("demo failed: {f}");
        return Ok(ExitCode::from(1));
    }
    if !r.device_errors.is_empty() {
        eprintln!("device problems: {}", r.device_errors.join("; "));
        return Ok(ExitCode::from(1));
    }
    if !r.ok() {
        eprintln!("the worker did not stop cleanly or some results could not be opened");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
