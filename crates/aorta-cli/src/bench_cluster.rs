//! `aorta bench cluster`: flags → [`aorta_bench::cluster::run`] → the report
//! as text or JSON (exit 1 when a frame was lost, a result stored twice, a
//! killed worker's partitions not taken over, or nothing analysed).

use std::process::ExitCode;

use anyhow::Context;
use aorta_bench::cluster::ClusterConfig;

/// Arguments of `aorta bench cluster`.
#[derive(clap::Args)]
pub struct Args {
    /// Simulated devices, each sending one sealed 1-s frame (360 Hz × 2
    /// channels) per second, in real time.
    #[arg(long, default_value_t = 200)]
    devices: usize,
    /// Cluster-mode workers (`aorta worker stream --nats …`).
    #[arg(long, default_value_t = 3)]
    workers: usize,
    /// Partitions of the frame stream.
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    /// Seconds the devices stream after a warm-up second.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// SIGKILL one worker this many seconds into the run.
    #[arg(long)]
    kill_worker_at: Option<f64>,
    /// SIGKILL the NATS node leading the frame stream this many seconds
    /// into the run.
    #[arg(long)]
    kill_nats_at: Option<f64>,
    /// Print JSON (`devices`, `workers`, `samples_per_s`, `p50_ms`,
    /// `p99_ms`, `lost_frames`, `duplicate_results`, `failover_s`,
    /// `embedded_samples_per_s`, …).
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let cfg = ClusterConfig {
        exe: std::env::current_exe().context("cannot find the aorta executable")?,
        nats_server: aorta_bench::cluster::nats_server()?,
        devices: a.devices,
        workers: a.workers,
        partitions: a.partitions,
        seconds: a.seconds,
        kill_worker_at: a.kill_worker_at,
        kill_nats_at: a.kill_nats_at,
    };
    let r = aorta_bench::cluster::run(&cfg, &|s| eprintln!("{s}"))?;
    crate::show(&r, a.json, |r| out!("{}", r.table()))?;
    Ok(if r.ok() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "check failed: {} lost frames, {} duplicate results, failover {:?}, problems {:?}",
            r.lost_frames, r.duplicate_results, r.failover_s, r.problems
        );
        ExitCode::from(1)
    })
}
