//! `aorta`: the command-line front end. Thin by design: it parses arguments,
//! calls the library crates and maps their errors to exit codes.
//!
//! Exit codes: 0 success, 1 the command ran but its check failed (e.g. a
//! refused frame), 2 usage or input error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench_cmd;
mod bench_se;
mod ehr_cmd;
mod wfdb_cmd;

#[derive(Parser)]
#[command(name = "aorta", version, about = "Secure streaming of medical sensor data", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect WFDB records.
    #[command(subcommand)]
    Wfdb(wfdb_cmd::WfdbCmd),
    /// Health-record vault: selective encryption, dispersion, sharing.
    #[command(subcommand)]
    Ehr(ehr_cmd::EhrCmd),
    /// Throughput benchmarks (build with --release).
    #[command(subcommand)]
    Bench(bench_cmd::BenchCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<ExitCode> = match cli.command {
        Command::Wfdb(c) => wfdb_cmd::run(c),
        Command::Ehr(c) => ehr_cmd::run(c),
        Command::Bench(c) => bench_cmd::run(c),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
