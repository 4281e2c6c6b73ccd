//! `aorta bench …`: performance measurements (each subcommand in its own file).

use std::process::ExitCode;

/// `aorta bench` subcommands.
#[derive(clap::Subcommand)]
pub enum BenchCmd {
    /// RR-interval stream job: per patient, tumbling 5-min windows of count,
    /// mean RR, SDNN, RMSSD, LF, HF, LF/HF; prints events/s.
    RrStream(crate::bench_rr_stream::Args),
}

pub fn run(cmd: BenchCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCmd::RrStream(a) => crate::bench_rr_stream::run(a),
    }
}
