//! `aorta wfdb …`: inspect and export WFDB records.
//!
//! Every command that reads a record names it by one rule
//! ([`aorta_signal::wfdb::RecordPath::resolve`]: `DIR/NAME`, `DIR/NAME.hea`,
//! `DIR/NAME.dat`, …) and takes `--no-verify` ([`read_options`]).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use aorta_signal::wfdb::{
    ReadOptions, Record, RecordPath, Separator, describe, read_annotations, read_header,
    record_info, write_annotations, write_samples,
};

/// `aorta wfdb` subcommands.
#[derive(clap::Subcommand)]
pub enum WfdbCmd {
    /// Read a record (verifying its checksums) and describe it as WFDB's
    /// `wfdbdesc` does: notes, starting time, length, sampling frequency and
    /// each signal's file, description, gain, units, format, ADC resolution
    /// and zero, baseline, samples and checksum.
    Info {
        /// The record: DIR/NAME (e.g. ../shared/data/mitdb/100), DIR/NAME.hea or DIR/NAME.dat.
        record: PathBuf,
        /// Skip checksum and initial-value verification.
        #[arg(long)]
        no_verify: bool,
        /// Also read this annotator's file (e.g. `atr`) and count beats.
        #[arg(long)]
        annotator: Option<String>,
        /// Print JSON (the header with `format` as the WFDB number, e.g. 212).
        #[arg(long)]
        json: bool,
    },
    /// Write a record's samples in physical units (as `rdsamp -p -v`, or
    /// `rdsamp -c -p -v` with --csv), or with --annotations its annotations
    /// as text (as `rdann`).
    Export {
        /// The record: DIR/NAME, DIR/NAME.hea or DIR/NAME.dat.
        #[arg(long)]
        record: PathBuf,
        /// Comma-separated values instead of tab-separated.
        #[arg(long)]
        csv: bool,
        /// Write this annotator's annotations (e.g. `atr`: the file
        /// DIR/NAME.atr) instead of the samples.
        #[arg(long, value_name = "ANNOTATOR")]
        annotations: Option<String>,
        /// Skip checksum and initial-value verification.
        #[arg(long)]
        no_verify: bool,
    },
}

/// The read options of a reader's `--no-verify` flag.
pub fn read_options(no_verify: bool) -> ReadOptions {
    if no_verify {
        ReadOptions::unverified()
    } else {
        ReadOptions::default()
    }
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
            let info = record_info(&record, read_options(no_verify), annotator.as_deref())?;
            crate::show(&info, json, |i| out!("{}", describe(i)))?;
            Ok(ExitCode::SUCCESS)
        }
        WfdbCmd::Export {
            record,
            csv,
            annotations,
            no_verify,
        } => {
            let at = RecordPath::resolve(&record)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            match annotations {
                Some(annotator) => {
                    let fs = read_header(&at.header)?.sampling_frequency;
                    let anns = read_annotations(at.annotations(&annotator))?;
                    write_annotations(&anns, fs, &mut out)?;
                }
                None => {
                    let rec = Record::read_with(&at.header, read_options(no_verify))?;
                    let sep = if csv {
                        Separator::Comma
                    } else {
                        Separator::Tab
                    };
                    write_samples(&rec, sep, &mut out)?;
                }
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
