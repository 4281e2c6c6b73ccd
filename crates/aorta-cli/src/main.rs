//! `aorta`: the command-line front end. Thin by design: it parses arguments,
//! calls the library crates, prints their typed reports (JSON with `--json`,
//! [`show`]) and maps their errors to exit codes. It owns no format, protocol
//! or analysis.
//!
//! Exit codes: 0 success, 1 the command ran but its check failed (e.g. a
//! refused frame), 2 usage or input error. Output to a closed pipe ends
//! quietly with 0 ([`out`]).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[macro_use]
mod out;

mod admin_cmd;
mod args;
mod bench_cluster;
mod bench_cmd;
mod bench_compress;
mod bench_ingest;
mod bench_pipeline;
mod bench_rr_stream;
mod bench_se;
mod broker_cmd;
mod clinician_cmd;
mod demo_cmd;
mod device_cmd;
mod ehr_cmd;
mod ehr_institution_cmd;
mod eval_class_report;
mod eval_cmd;
mod eval_report;
mod factory_cmd;
mod frames_cmd;
mod hrv_cmd;
mod log_cmd;
mod logging;
mod results_cmd;
mod server_cmd;
mod signals;
mod wfdb_cmd;
mod when;
mod worker_cmd;

#[derive(Parser)]
#[command(name = "aorta", version, about = "Secure streaming of medical sensor data", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Declares the subcommands once: the `Command` enum clap parses and the
/// dispatch from each variant to its module's `run`.
macro_rules! commands {
    ($($(#[$attr:meta])* $variant:ident($module:ident :: $args:ident),)*) => {
        #[derive(Subcommand)]
        enum Command {
            $($(#[$attr])* $variant($module::$args),)*
        }

        impl Command {
            fn run(self) -> anyhow::Result<ExitCode> {
                match self {
                    $(Command::$variant(a) => $module::run(a),)*
                }
            }
        }
    };
}

commands! {
    /// Run the whole system on this machine: provision devices, start the
    /// server, broker and attested worker, stream real ECG records, show
    /// live results for a clinician, then a summary.
    Demo(demo_cmd::DemoArgs),
    /// Performance measurements.
    #[command(subcommand)]
    Bench(bench_cmd::BenchCmd),
    /// Score analyses against annotated databases.
    #[command(subcommand)]
    Eval(eval_cmd::EvalCmd),
    /// Inspect WFDB records.
    #[command(subcommand)]
    Wfdb(wfdb_cmd::WfdbCmd),
    /// Heart-rate variability (Task Force 1996 metrics) from RR intervals.
    Hrv(hrv_cmd::HrvArgs),
    /// The key broker: releases stream keys only to attested workers.
    #[command(subcommand)]
    Broker(broker_cmd::BrokerCmd),
    /// The attested analysis worker.
    #[command(subcommand)]
    Worker(worker_cmd::WorkerCmd),
    /// Factory: key pool, key registry, device provisioning.
    #[command(subcommand)]
    Factory(factory_cmd::FactoryCmd),
    /// Device: seal samples into upload frames; stream a record to a server.
    #[command(subcommand)]
    Device(device_cmd::DeviceCmd),
    /// Server: open upload frames.
    #[command(subcommand)]
    Frames(frames_cmd::FramesCmd),
    /// Health-record vault: selective encryption, dispersion, sharing.
    #[command(subcommand)]
    Ehr(ehr_cmd::EhrCmd),
    /// The aorta server: device ingest, key broker, results API, metrics.
    Server(server_cmd::ServerArgs),
    /// Clinicians: fetch and open the results sealed to you.
    #[command(subcommand)]
    Results(results_cmd::ResultsCmd),
    /// Clinician identities: the keys analysis results are sealed to.
    #[command(subcommand)]
    Clinician(clinician_cmd::ClinicianCmd),
    /// Log files (`frames.log`, `results.log`): check and salvage damage.
    #[command(subcommand)]
    Log(log_cmd::LogCmd),
    /// Operator actions on a stopped server's data: erase a patient.
    #[command(subcommand)]
    Admin(admin_cmd::AdminCmd),
}

fn main() -> ExitCode {
    let result = Cli::parse().command.run();
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

/// Prints a typed report on stdout: pretty JSON (its `Serialize` keys) with
/// `--json`, else the command's text form.
pub(crate) fn show<R: serde::Serialize>(
    report: &R,
    json: bool,
    text: impl FnOnce(&R),
) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(report)?);
    } else {
        text(report);
    }
    Ok(())
}

/// Raises `stop` on the first SIGINT or SIGTERM (the command then ends
/// cleanly: devices leave unsent frames queued, the worker writes its last
/// checkpoint); a second one exits at once with status 130.
pub(crate) fn stop_on_signals(
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use signal_hook::consts::{SIGINT, SIGTERM};
    for sig in [SIGINT, SIGTERM] {
        // Order matters: the conditional exit sees the flag the first
        // signal set, so only a second signal exits immediately.
        signal_hook::flag::register_conditional_shutdown(sig, 130, stop.clone())
            .context("installing the signal handler")?;
        signal_hook::flag::register(sig, stop.clone()).context("installing the signal handler")?;
    }
    Ok(())
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
