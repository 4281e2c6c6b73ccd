//! `aorta bench ingest`: flags → [`aorta_bench::ingest::run`] → the report
//! as text or JSON (exit 1 when a genuine frame was refused, none was
//! acknowledged, or the server died).

use std::process::ExitCode;

use anyhow::Context;
use aorta_bench::ingest::IngestConfig;

/// Arguments of `aorta bench ingest`.
#[derive(clap::Args)]
pub struct Args {
    /// Legitimate devices, each sending one sealed, signed frame per second.
    #[arg(long, default_value_t = 200)]
    devices: usize,
    /// Hostile clients mixed in for the second phase (slow loris, slow
    /// bodies, oversize and garbage bodies, unauthenticated 300 MiB
    /// checkpoint and results uploads, unfinished HTTP/2 streams, idle TLS
    /// and HTTP/2), assigned in turn.
    #[arg(long, default_value_t = 50)]
    hostile: usize,
    /// Seconds each phase streams (devices alone, then with the hostile
    /// clients).
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Stop the hostile clients once the server's resident memory passes
    /// this many MiB (so the bench cannot take the machine down).
    #[arg(long, default_value_t = 8192)]
    rss_cap_mib: u64,
    /// OS priority (nice) of the hostile clients' threads: 19 stands for
    /// attackers on machines of their own, 0 shares the CPU with the
    /// devices and the server as equals.
    #[arg(long, default_value_t = 19, value_parser = crate::args::int(0i32, 19))]
    hostile_nice: i32,
    /// Print JSON (`clean` and `hostile` with `frames_per_s`, `p50_ms`,
    /// `p99_ms` (from the frame's due time), `ack_p50_ms`, `ack_p99_ms`
    /// (from its upload), `peak_rss_bytes`; `p99_ratio`, `ack_p99_ratio`,
    /// `hostile_clients`, `hostile_outcomes`, …).
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let cfg = IngestConfig {
        exe: std::env::current_exe().context("cannot find the aorta executable")?,
        devices: a.devices,
        hostile: a.hostile,
        seconds: a.seconds,
        rss_cap_bytes: a
            .rss_cap_mib
            .checked_mul(1 << 20)
            .context("--rss-cap-mib is too large")?,
        hostile_nice: a.hostile_nice,
    };
    let r = aorta_bench::ingest::run(&cfg, &|s| eprintln!("{s}"))?;
    crate::show(&r, a.json, |r| out!("{}", r.table()))?;
    Ok(if r.ok() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "check failed: genuine frames refused ({} clean, {} hostile), none acknowledged, or the server died",
            r.clean.refused, r.hostile.refused
        );
        ExitCode::from(1)
    })
}
