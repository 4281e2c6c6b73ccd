//! `aorta bench …`: throughput measurements. Each variant delegates to its
//! own `bench_<name>.rs` file. Build with `--release` before measuring.

use std::process::ExitCode;

use crate::bench_se;

/// `aorta bench` subcommands.
#[derive(clap::Subcommand)]
pub enum BenchCmd {
    /// Selective encryption (faithful, strong) against AES-128-CBC and
    /// AES-256-GCM, single core and all cores.
    Se(bench_se::SeArgs),
}

/// Runs one `aorta bench` command.
pub fn run(cmd: BenchCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCmd::Se(a) => bench_se::run(a),
    }
}
