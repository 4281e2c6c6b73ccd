//! `aorta eval …`: accuracy against annotated databases.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use aorta_signal::eval::{Counts, EvalOptions, evaluate_record};

/// `aorta eval` subcommands.
#[derive(clap::Subcommand)]
pub enum EvalCmd {
    /// Score the R-peak detector against reference beat annotations (ANSI/AAMI EC57).
    Rpeaks(RpeakArgs),
}

/// Arguments of `aorta eval rpeaks`.
#[derive(clap::Args)]
pub struct RpeakArgs {
    /// Database directory (holding RECORDS, *.hea, *.dat, *.atr), e.g. ../shared/data/mitdb.
    #[arg(long)]
    db: PathBuf,
    /// Records to score (default: every record listed in DB/RECORDS).
    #[arg(long = "record")]
    records: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Seconds at the start of each record not scored (EC57 learning period).
    #[arg(long, default_value_t = 300.0)]
    start: f64,
    /// Matching window in seconds.
    #[arg(long, default_value_t = 0.150)]
    window: f64,
    /// Signal (lead) index to analyse.
    #[arg(long, default_value_t = 0)]
    lead: usize,
}

pub fn run(cmd: EvalCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        EvalCmd::Rpeaks(a) => rpeaks(a),
    }
}

/// Record names from `RECORDS`, or the explicit list.
pub fn record_list(db: &Path, explicit: &[String]) -> anyhow::Result<Vec<String>> {
    if !explicit.is_empty() {
        return Ok(explicit.to_vec());
    }
    let path = db.join("RECORDS");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (pass --record NAME or a database directory)",
            path.display()
        )
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

fn rpeaks(a: RpeakArgs) -> anyhow::Result<ExitCode> {
    let names = record_list(&a.db, &a.records)?;
    let opts = EvalOptions {
        window: a.window,
        start: a.start,
        lead: a.lead,
    };
    let mut rows = Vec::new();
    let mut gross = Counts::default();
    let mut failed = 0;
    for name in &names {
        match evaluate_record(&a.db, name, &opts) {
            Ok(r) => {
                gross += r.counts;
                rows.push(r);
            }
            Err(e) => {
                eprintln!("error: record {name}: {e}");
                failed += 1;
            }
        }
    }
    if a.json {
        let records: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "record": r.record, "tp": r.counts.tp, "fp": r.counts.fp, "fn": r.counts.fn_,
                    "se": r.counts.se(), "ppv": r.counts.ppv(), "max_latency_ms": r.max_latency_ms,
                })
            })
            .collect();
        let out = serde_json::json!({
            "records": records,
            "gross": {"tp": gross.tp, "fp": gross.fp, "fn": gross.fn_, "se": gross.se(), "ppv": gross.ppv()},
            "window_s": a.window, "start_s": a.start, "lead": a.lead,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{:<8} {:>6} {:>5} {:>5} {:>8} {:>8} {:>9}",
            "record", "TP", "FP", "FN", "Se %", "+P %", "lat ms"
        );
        for r in &rows {
            let c = r.counts;
            println!(
                "{:<8} {:>6} {:>5} {:>5} {:>8.2} {:>8.2} {:>9.0}",
                r.record,
                c.tp,
                c.fp,
                c.fn_,
                100.0 * c.se(),
                100.0 * c.ppv(),
                r.max_latency_ms
            );
        }
        println!(
            "{:<8} {:>6} {:>5} {:>5} {:>8.2} {:>8.2}",
            "gross",
            gross.tp,
            gross.fp,
            gross.fn_,
            100.0 * gross.se(),
            100.0 * gross.ppv()
        );
        println!(
            "(ANSI/AAMI EC57 matching window {:.0} ms; scoring from {:.0} s; lead {})",
            a.window * 1000.0,
            a.start,
            a.lead
        );
    }
    Ok(if failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
