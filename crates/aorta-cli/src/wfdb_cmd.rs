//! `aorta wfdb …`: inspect WFDB records.

use std::path::PathBuf;
use std::process::ExitCode;

use aorta_signal::wfdb::{ReadOptions, RecordInfo, record_info};

/// `aorta wfdb` subcommands.
#[derive(clap::Subcommand)]
pub enum WfdbCmd {
    /// Read a record (verifying its checksums) and print its header and sample counts.
    Info {
        /// Record path without extension (e.g. ../shared/data/mitdb/100) or its .hea file.
        record: PathBuf,
        /// Skip checksum and initial-value verification.
        #[arg(long)]
        no_verify: bool,
        /// Also read this annotator's file (e.g. `atr`) and count beats.
        #[arg(long)]
        annotator: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: WfdbCmd) -> anyhow::Result<ExitCode> {
    crate::signals::abort_on_signals()?;
    match cmd {
        WfdbCmd::Info {
            record,
            no_verify,
            annotator,
            json,
        } => {
            let opts = if no_verify {
                ReadOptions::unverified()
            } else {
                ReadOptions::default()
            };
            let info = record_info(&record, opts, annotator.as_deref())?;
            crate::show(&info, json, |i| print_info(i, no_verify))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_info(info: &RecordInfo, no_verify: bool) {
    let h = &info.header;
    println!(
        "record {}: {} signals at {} Hz",
        h.record_name,
        h.signals.len(),
        h.sampling_frequency
    );
    for (s, n) in h.signals.iter().zip(&info.samples_per_signal) {
        println!(
            "  {:<8} format {:>3}  gain {} adu/{}  baseline {}  {} samples  checksum {}",
            s.description,
            s.format.code(),
            s.gain,
            s.units,
            s.baseline,
            n,
            if no_verify { "not verified" } else { "ok" }
        );
    }
    if let (Some(a), Some(b)) = (info.annotations, info.beats) {
        println!("  {a} annotations, {b} beats");
    }
}
