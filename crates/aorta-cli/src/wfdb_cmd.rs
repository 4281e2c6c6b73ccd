//! `aorta wfdb …`: inspect WFDB records.

use std::path::PathBuf;
use std::process::ExitCode;

use aorta_signal::wfdb::{ReadOptions, Record, read_annotations};

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
            let rec = Record::read_with(&record, opts)?;
            let anns = match &annotator {
                Some(a) => {
                    let base = record.with_extension("");
                    let mut p = base.into_os_string();
                    p.push(format!(".{a}"));
                    Some(read_annotations(PathBuf::from(p))?)
                }
                None => None,
            };
            let beats = anns
                .as_ref()
                .map(|a| a.iter().filter(|x| x.is_beat()).count());
            if json {
                let v = serde_json::json!({
                    "header": rec.header,
                    "samples_per_signal": rec.samples.iter().map(Vec::len).collect::<Vec<_>>(),
                    "annotations": anns.as_ref().map(Vec::len),
                    "beats": beats,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let h = &rec.header;
                println!(
                    "record {}: {} signals at {} Hz",
                    h.record_name,
                    h.signals.len(),
                    h.sampling_frequency
                );
                for (s, data) in h.signals.iter().zip(&rec.samples) {
                    println!(
                        "  {:<8} format {:>3}  gain {} adu/{}  baseline {}  {} samples  checksum {}",
                        s.description,
                        s.format.code(),
                        s.gain,
                        s.units,
                        s.baseline,
                        data.len(),
                        if no_verify { "not verified" } else { "ok" }
                    );
                }
                if let (Some(a), Some(b)) = (&anns, beats) {
                    println!("  {} annotations, {} beats", a.len(), b);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
