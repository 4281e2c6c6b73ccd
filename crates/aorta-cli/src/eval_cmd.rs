//! `aorta eval …`: accuracy against annotated databases.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use aorta_signal::eval::{
    Confusion, Counts, EvalOptions, classify_af_recording, evaluate_af_record, evaluate_record,
};
use aorta_signal::rhythm::RhythmConfig;

/// `aorta eval` subcommands.
#[derive(clap::Subcommand)]
pub enum EvalCmd {
    /// Score the R-peak detector against reference beat annotations (ANSI/AAMI EC57).
    Rpeaks(RpeakArgs),
    /// Score the AF detector: 30-s segments of MIT-BIH-style records against
    /// their (AFIB rhythm annotations, or PhysioNet/CinC 2017 strips against REFERENCE.csv.
    Af(AfArgs),
}

/// Arguments of `aorta eval af`.
#[derive(clap::Args)]
pub struct AfArgs {
    /// Database directory: one with .atr rhythm annotations (e.g. ../shared/data/mitdb) or
    /// one with REFERENCE.csv (e.g. ../shared/data/challenge-2017).
    #[arg(long)]
    db: PathBuf,
    /// Records to score (default: all).
    #[arg(long = "record")]
    records: Vec<String>,
    /// Segment length in seconds for annotated records.
    #[arg(long, default_value_t = 30.0)]
    segment: f64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
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
        EvalCmd::Af(a) => af(a),
    }
}

/// Runs `f` on every record; a record that fails is reported on stderr and
/// the batch goes on. Returns the results and the number of failures.
fn each_record<T, E: std::fmt::Display>(
    names: &[String],
    f: impl Fn(&str) -> Result<T, E>,
) -> (Vec<T>, usize) {
    let mut rows = Vec::with_capacity(names.len());
    let mut failed = 0;
    for name in names {
        match f(name) {
            Ok(r) => rows.push(r),
            Err(e) => {
                eprintln!("error: record {name}: {e}");
                failed += 1;
            }
        }
    }
    (rows, failed)
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
    let (rows, failed) = each_record(&names, |name| evaluate_record(&a.db, name, &opts));
    let mut gross = Counts::default();
    for r in &rows {
        gross += r.counts;
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

fn af(a: AfArgs) -> anyhow::Result<ExitCode> {
    let cfg = RhythmConfig::default();
    let reference = a.db.join("REFERENCE.csv");
    let mut total = Confusion::default();
    let mut failed = 0;
    if reference.is_file() {
        let mut rows = Vec::new();
        let text = std::fs::read_to_string(&reference)
            .with_context(|| format!("reading {}", reference.display()))?;
        for (lno, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let Some((name, label)) = line.trim().split_once(',') else {
                anyhow::bail!(
                    "{}: line {}: expected `record,label`",
                    reference.display(),
                    lno + 1
                );
            };
            if !a.records.is_empty() && !a.records.iter().any(|r| r == name) {
                continue;
            }
            match classify_af_recording(&a.db, name, &cfg) {
                Ok(pred) => {
                    let truth = label == "A";
                    total.add(truth, pred);
                    rows.push(serde_json::json!({"record": name, "label": label, "af": pred}));
                }
                Err(e) => {
                    eprintln!("error: record {name}: {e}");
                    failed += 1;
                }
            }
        }
        if a.json {
            let out = serde_json::json!({
                "se": total.se(), "sp": total.sp(), "f1_af": total.f1(),
                "tp": total.tp, "fp": total.fp, "tn": total.tn, "fn": total.fn_,
                "unit": "recording", "records": rows,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            println!(
                "{} recordings: TP {} FP {} TN {} FN {}",
                rows.len(),
                total.tp,
                total.fp,
                total.tn,
                total.fn_
            );
            println!(
                "AF Se {:.2} %  Sp {:.2} %  F1(A) {:.3}",
                100.0 * total.se(),
                100.0 * total.sp(),
                total.f1()
            );
        }
    } else {
        let names = record_list(&a.db, &a.records)?;
        let (rows, failed_here) = each_record(&names, |name| {
            evaluate_af_record(&a.db, name, a.segment, &cfg)
        });
        failed += failed_here;
        for r in &rows {
            total += r.segments;
        }
        if a.json {
            let records: Vec<_> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({"record": r.record, "tp": r.segments.tp, "fp": r.segments.fp,
                    "tn": r.segments.tn, "fn": r.segments.fn_, "episodes": r.episodes})
                })
                .collect();
            let out = serde_json::json!({
                "se": total.se(), "sp": total.sp(), "f1_af": total.f1(),
                "tp": total.tp, "fp": total.fp, "tn": total.tn, "fn": total.fn_,
                "unit": "segment", "segment_s": a.segment, "records": records,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            println!(
                "{:<8} {:>4} {:>4} {:>4} {:>4}  AF episodes",
                "record", "TP", "FP", "TN", "FN"
            );
            for r in &rows {
                let c = r.segments;
                println!(
                    "{:<8} {:>4} {:>4} {:>4} {:>4}  {}",
                    r.record,
                    c.tp,
                    c.fp,
                    c.tn,
                    c.fn_,
                    r.episodes.len()
                );
            }
            println!(
                "{:.0}-s segments: AF Se {:.2} %  Sp {:.2} %  (TP {} FP {} TN {} FN {})",
                a.segment,
                100.0 * total.se(),
                100.0 * total.sp(),
                total.tp,
                total.fp,
                total.tn,
                total.fn_
            );
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
