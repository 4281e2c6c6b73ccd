//! `aorta log …`: check and salvage a damaged log file (`frames.log`,
//! `results.log`). The server refuses to start on a log damaged before its
//! end (`aorta_stream::log`) and names these commands.

use std::path::PathBuf;
use std::process::ExitCode;

use aorta_stream::log::{self, Scan, Verdict};

/// `aorta log` subcommands.
#[derive(clap::Subcommand)]
pub enum LogCmd {
    /// Scan a log file (read-only): records, bytes and every damaged range
    /// with its offsets. Exits 0 when the server would open it as it is
    /// (intact, or only a torn tail it cuts), 1 when it is damaged.
    Check {
        /// The log file (`frames.log` or `results.log`).
        file: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy every intact record, before and after the damage, to a new file
    /// at its same offset (damaged ranges become fillers readers skip; a
    /// bad tail is left out). Never overwrites: NEW must not exist. Stop the
    /// server, salvage, keep the damaged file aside, move NEW in its place.
    Salvage {
        /// The damaged log file.
        file: PathBuf,
        /// The new file to write.
        #[arg(long)]
        out: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What `aorta log check` / `salvage` print with `--json`.
#[derive(serde::Serialize)]
struct Report<'a> {
    file: &'a std::path::Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    out: Option<&'a std::path::Path>,
    #[serde(flatten)]
    scan: &'a Scan,
    /// Bytes in bad ranges.
    bad_bytes: u64,
}

fn text(r: &Report<'_>) {
    let s = r.scan;
    outln!(
        "{}: {} bytes, {} intact records ({} bytes), {} fillers ({} bytes)",
        r.file.display(),
        s.file_len,
        s.records,
        s.record_bytes,
        s.fillers,
        s.filler_bytes
    );
    for b in &s.bad {
        let tail = b.end == s.file_len;
        outln!(
            "  bad bytes {}..{} ({} bytes){}",
            b.start,
            b.end,
            b.end - b.start,
            if tail { ", to the end of the file" } else { "" }
        );
    }
    let verdict = match s.verdict {
        Verdict::Intact => "intact".to_owned(),
        Verdict::TornTail => {
            "torn tail only: the server cuts it at its next start (never acknowledged)".to_owned()
        }
        Verdict::Damaged => format!(
            "DAMAGED: {} bad bytes; the server refuses to start on it",
            r.bad_bytes
        ),
    };
    match r.out {
        Some(out) => outln!(
            "{verdict}\nsalvaged {} intact records to {} at their same offsets; skipped {} bad bytes in {} ranges",
            s.records,
            out.display(),
            r.bad_bytes,
            s.bad.len()
        ),
        None if s.verdict == Verdict::Damaged => outln!(
            "{verdict}\nrun `aorta log salvage {} --out NEW` to copy every intact record to NEW",
            r.file.display()
        ),
        None => outln!("{verdict}"),
    }
}

pub fn run(cmd: LogCmd) -> anyhow::Result<ExitCode> {
    let (file, out, json) = match &cmd {
        LogCmd::Check { file, json } => (file, None, *json),
        LogCmd::Salvage { file, out, json } => (file, Some(out.as_path()), *json),
    };
    let scan = match out {
        None => log::scan(file, |_| Ok(()))?,
        Some(out) if out.exists() => anyhow::bail!(
            "{} exists: salvage never overwrites a file; choose another --out",
            out.display()
        ),
        Some(out) => log::salvage(file, out)?,
    };
    let report = Report {
        file,
        out,
        bad_bytes: scan.bad.iter().map(|b| b.end - b.start).sum(),
        scan: &scan,
    };
    crate::show(&report, json, text)?;
    Ok(match (out, scan.verdict) {
        (None, Verdict::Damaged) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}
