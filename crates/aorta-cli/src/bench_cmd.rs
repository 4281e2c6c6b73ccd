//! `aorta bench …`: measured performance figures. Each variant delegates to
//! its own `bench_<name>.rs` file.

use std::process::ExitCode;

use crate::bench_compress;

/// `aorta bench` subcommands.
#[derive(clap::Subcommand)]
pub enum BenchCmd {
    /// Compressed size and speed of aorta's ECG codec against gzip -6, zstd -3
    /// and the paper's dedup+gzip, on every record of a WFDB database.
    Compress(bench_compress::Args),
}

pub fn run(cmd: BenchCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCmd::Compress(a) => bench_compress::run(a),
    }
}
