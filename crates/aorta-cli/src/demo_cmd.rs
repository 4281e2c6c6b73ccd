//! `aorta demo`: flags → [`aorta_bench::demo::run`] (the server and worker
//! launched from this executable, the devices replaying records with
//! `aorta_device::source::record::RecordReplay`) → the summary on stdout
//! (text, or JSON with `--json`); the live view and progress on stderr.
//!
//! The database: `--db` (an error if it is not one), or `--sample`, or the
//! first of `../shared/data/mitdb` from the working directory and from the
//! repository the executable was built in (`target/*/aorta`), or else the
//! shipped sample. Exit status: 0, 1 (something failed: the work directory
//! is kept and named), 2 (bad options, refused before anything starts),
//! 130 (SIGINT/SIGTERM: the children stopped, a partial summary printed).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
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
    /// WFDB database to replay (an error if it is not one). Default: MIT-BIH
    /// at ../shared/data/mitdb from the working directory or from the
    /// executable's repository, else the 6-minute sample shipped in aorta.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Replay the 6-minute MIT-BIH sample shipped in aorta (records 100,
    /// 203), whatever data is around.
    #[arg(long, conflicts_with = "db")]
    sample: bool,
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
    /// Also start the clinician's web dashboard (`aorta clinician serve`
    /// with the demo's clinician identity) and print its URL; it keeps
    /// serving after the summary until Ctrl-C (docs/dashboard.md).
    #[arg(long, conflicts_with = "setup_only")]
    dashboard: bool,
    /// Where the dashboard listens (loopback; port 0: a free one).
    #[arg(long, default_value = "127.0.0.1:8080", requires = "dashboard")]
    dashboard_listen: std::net::SocketAddr,
}

/// Where `aorta demo` looks for MIT-BIH without `--db`, from a directory.
const DEFAULT_DB: &str = "../shared/data/mitdb";

/// The database to replay: `--db` (checked), none with `--sample`, else the
/// default found from the working directory or the executable's repository.
fn database(a: &DemoArgs, exe: &Path) -> anyhow::Result<Option<PathBuf>> {
    if let Some(db) = &a.db {
        match aorta_signal::wfdb::database_records(db) {
            Ok(names) if !names.is_empty() => return Ok(Some(db.clone())),
            Ok(_) => bail!(
                "--db {}: not a WFDB database (no RECORDS entry, no .hea file)",
                db.display()
            ),
            Err(e) => bail!("--db {}: not a WFDB database ({e})", db.display()),
        }
    }
    if a.sample {
        return Ok(None);
    }
    // The working directory, then each ancestor of the executable that is a
    // Cargo workspace (`…/repo/target/debug/aorta` → `…/repo`).
    let mut looked = vec![PathBuf::from(DEFAULT_DB)];
    looked.extend(
        exe.ancestors()
            .skip(1)
            .filter(|d| d.join("Cargo.toml").is_file())
            .map(|d| d.join(DEFAULT_DB)),
    );
    for db in &looked {
        if aorta_signal::wfdb::database_records(db).is_ok_and(|n| !n.is_empty()) {
            return Ok(Some(db.clone()));
        }
    }
    let places: Vec<String> = looked.iter().map(|p| p.display().to_string()).collect();
    eprintln!("no MIT-BIH database at {} (give --db)", places.join(" or "));
    Ok(None)
}

pub fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let speed = a.speed;
    let exe = std::env::current_exe().context("cannot find the aorta executable")?;
    let db = database(&a, &exe)?;
    let cfg = DemoConfig {
        exe,
        devices: a.devices,
        speed,
        duration: a.duration,
        frame_seconds: a.frame_seconds,
        db,
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
        dashboard: a.dashboard.then_some(a.dashboard_listen),
    };
    match aorta_bench::demo::run(&cfg, &|s| eprintln!("{s}"))? {
        DemoOutcome::SetupOnly { dir, commands, .. } => {
            print_setup(&dir, &commands);
            Ok(ExitCode::SUCCESS)
        }
        DemoOutcome::Ran(r, dashboard) => {
            let code = finish(&r, a.json)?;
            if let Some(d) = dashboard {
                eprintln!(
                    "the clinician dashboard keeps serving what it received at {} (the demo's server has stopped); Ctrl-C to end",
                    d.url()
                );
                d.serve_until_stopped();
            }
            Ok(code)
        }
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

/// Milliseconds with one decimal, or `n/a` (no latency measured).
fn ms(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.1} ms")
    } else {
        "n/a".to_owned()
    }
}

/// The rhythm events by kind, most frequent first (`: vt_onset 3, …`;
/// empty without events).
fn events_by_kind(r: &DemoReport) -> String {
    let mut kinds: Vec<(&String, &u64)> = r.events_by_kind.iter().collect();
    if kinds.is_empty() {
        return String::new();
    }
    kinds.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!(": {}", list.join(", "))
}

fn finish(r: &DemoReport, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        outln!("{}", serde_json::to_string_pretty(r)?);
    } else {
        outln!(
            "{}{} devices · {} samples · {} frames · {} results ({} rhythm events{}) · {:.0} samples/s · latency p50 {}, p99 {} (frame arrival → sealed results stored)",
            if r.interrupted {
                "interrupted (partial): "
            } else {
                ""
            },
            r.devices,
            r.samples,
            r.frames,
            r.results,
            r.events,
            events_by_kind(r),
            r.samples_per_s,
            ms(r.latency_ms.p50),
            ms(r.latency_ms.p99),
        );
    }
    if let Some(d) = &r.kept_dir {
        eprintln!("work directory kept: {}", d.display());
    }
    if r.interrupted && r.failed.is_none() {
        eprintln!("interrupted: the devices, the worker and the server were stopped");
        return Ok(ExitCode::from(130));
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
