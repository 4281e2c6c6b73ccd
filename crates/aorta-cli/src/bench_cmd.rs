//! `aorta bench …`: measured performance figures. Each variant's own
//! `bench_<name>.rs` file parses its flags, calls `aorta-bench` and prints
//! the typed report. Build with `--release` before measuring.

use std::process::ExitCode;

use crate::{
    bench_cluster, bench_compress, bench_ingest, bench_pipeline, bench_rr_stream, bench_se,
};

/// `aorta bench` subcommands.
#[derive(clap::Subcommand)]
pub enum BenchCmd {
    /// The distributed mode on a local 3-node NATS cluster (R=3) with W workers,
    /// a worker and/or NATS node killed mid-run, against the embedded mode.
    Cluster(bench_cluster::Args),
    /// Compressed size and speed of aorta's ECG codec against gzip -6, zstd -3
    /// and the paper's dedup+gzip, on every record of a WFDB database.
    Compress(bench_compress::Args),
    /// Device ingest against a real `aorta server` on loopback (TLS): frames/s,
    /// p50/p99 acknowledgement latency and the server's peak memory, for
    /// devices alone and with hostile clients mixed in.
    Ingest(bench_ingest::Args),
    /// The same ECG workload through the secure pipeline (sealed frames,
    /// attested worker, sealed results and checkpoints) and a plain one, in
    /// one run: throughputs (samples/s), overhead, p50/p99 latency in real time.
    Pipeline(bench_pipeline::Args),
    /// RR-interval stream job: per patient, tumbling 5-min windows of count,
    /// mean RR, SDNN, RMSSD, LF, HF, LF/HF; prints events/s.
    RrStream(bench_rr_stream::Args),
    /// Selective encryption (faithful, strong) against AES-128-CBC and
    /// AES-256-GCM, single core and all cores.
    Se(bench_se::SeArgs),
}

/// Runs one `aorta bench` command.
pub fn run(cmd: BenchCmd) -> anyhow::Result<ExitCode> {
    crate::signals::abort_on_signals()?;
    match cmd {
        BenchCmd::Cluster(a) => bench_cluster::run(a),
        BenchCmd::Compress(a) => bench_compress::run(a),
        BenchCmd::Ingest(a) => bench_ingest::run(a),
        BenchCmd::Pipeline(a) => bench_pipeline::run(a),
        BenchCmd::RrStream(a) => bench_rr_stream::run(a),
        BenchCmd::Se(a) => bench_se::run(a),
    }
}
