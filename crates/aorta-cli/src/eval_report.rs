//! What `aorta eval` prints: the scorers' reports ([`RpeakReport`],
//! [`AfReport`]) with every figure whose denominator is zero shown as
//! `n/a` (JSON `null`) instead of the scorers' 100 %, the records that could
//! not be scored in an `errors` array (JSON) or on stderr (text), and the
//! exit status: 2 when a record failed, 1 when nothing at all was scored
//! (`docs/cli.md`, "Scoring").
//!
//! The checks that refuse options before anything is scored (a lead a
//! record lacks, `--start` past a record's end, an empty record list) are
//! here too.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use aorta_signal::eval::{AfReport, AfUnits, RecordFailure, RpeakReport};
use serde_json::Value;

/// `num / den`, or `None` when nothing was counted.
fn frac(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// A percentage with two decimals, or `n/a`.
fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |v| format!("{:.2}", 100.0 * v))
}

/// A percentage with its unit (`12.34 %`), or `n/a`.
fn pct_unit(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |v| format!("{:.2} %", 100.0 * v))
}

fn json_opt(x: Option<f64>) -> Value {
    x.map_or(Value::Null, Value::from)
}

/// Sets `key` of the JSON object `v` (the reports serialize as objects).
fn set(v: &mut Value, key: &str, x: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.to_owned(), x);
    }
}

/// The failures as JSON (`[{"record", "error"}]`).
fn errors_json(failures: &[RecordFailure]) -> Value {
    failures
        .iter()
        .map(|f| serde_json::json!({ "record": f.record, "error": f.error.to_string() }))
        .collect()
}

/// Refuses, before scoring, a record list that is empty and options that
/// no record of it can satisfy: `lead` beyond a record's signals, `start`
/// (seconds) at or past a record's end. Records whose header cannot be read
/// are left to the scorer (they become errors).
pub(crate) fn check_records(
    db: &Path,
    names: &[String],
    lead: usize,
    start: Option<f64>,
) -> anyhow::Result<()> {
    if names.is_empty() {
        bail!(
            "no records to score: {} lists none (give --record NAME)",
            db.join("RECORDS").display()
        );
    }
    for name in names {
        let Ok(h) = aorta_signal::wfdb::read_header(db.join(name)) else {
            continue;
        };
        let n = h.signals.len();
        if lead >= n {
            bail!(
                "--lead {lead}: record {name} has {n} signal(s) (leads 0 to {})",
                n.saturating_sub(1)
            );
        }
        if let (Some(start), Some(samples)) = (start, h.samples_per_signal) {
            let end = samples as f64 / h.sampling_frequency;
            if samples > 0 && start >= end {
                bail!(
                    "--start {start}: record {name} ends at {end:.1} s; nothing after it to score"
                );
            }
        }
    }
    Ok(())
}

/// Reports failures on stderr; the status: 2 if a record failed, 1 if
/// nothing was scored (`scored` false), else 0.
fn status(failures: &[RecordFailure], scored: bool, nothing: &str) -> ExitCode {
    for f in failures {
        eprintln!("error: record {}: {}", f.record, f.error);
    }
    if !failures.is_empty() {
        ExitCode::from(2)
    } else if !scored {
        eprintln!("nothing scored: {nothing}");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints an R-peak report; its exit status.
pub(crate) fn rpeaks(r: &RpeakReport, json: bool) -> anyhow::Result<ExitCode> {
    let se = |tp: u64, fn_: u64| frac(tp, tp + fn_);
    let ppv = |tp: u64, fp: u64| frac(tp, tp + fp);
    let g = r.gross;
    let scored = g.tp + g.fp + g.fn_ > 0;
    if json {
        let mut v = serde_json::to_value(r)?;
        if let Some(rows) = v.get_mut("records").and_then(Value::as_array_mut) {
            for (row, rec) in rows.iter_mut().zip(&r.records) {
                let c = rec.score;
                set(row, "se", json_opt(se(c.tp, c.fn_)));
                set(row, "ppv", json_opt(ppv(c.tp, c.fp)));
            }
        }
        if let Some(gross) = v.get_mut("gross") {
            set(gross, "se", json_opt(se(g.tp, g.fn_)));
            set(gross, "ppv", json_opt(ppv(g.tp, g.fp)));
        }
        set(&mut v, "errors", errors_json(&r.failures));
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        outln!(
            "{:<8} {:>6} {:>5} {:>5} {:>8} {:>8} {:>9}",
            "record",
            "TP",
            "FP",
            "FN",
            "Se %",
            "+P %",
            "lat ms"
        );
        for row in &r.records {
            let c = row.score;
            outln!(
                "{:<8} {:>6} {:>5} {:>5} {:>8} {:>8} {:>9.0}",
                row.record,
                c.tp,
                c.fp,
                c.fn_,
                pct(se(c.tp, c.fn_)),
                pct(ppv(c.tp, c.fp)),
                row.max_latency_ms
            );
        }
        outln!(
            "{:<8} {:>6} {:>5} {:>5} {:>8} {:>8}",
            "gross",
            g.tp,
            g.fp,
            g.fn_,
            pct(se(g.tp, g.fn_)),
            pct(ppv(g.tp, g.fp))
        );
        outln!(
            "(ANSI/AAMI EC57 matching window {:.0} ms; scoring from {:.0} s; lead {}; n/a: nothing to count)",
            r.window_s * 1000.0,
            r.start_s,
            r.lead
        );
    }
    Ok(status(
        &r.failures,
        scored,
        "no reference beat and no detection in the scored range",
    ))
}

/// Prints an AF report; its exit status.
pub(crate) fn af(r: &AfReport, json: bool) -> anyhow::Result<ExitCode> {
    let t = r.score;
    let se = frac(t.tp, t.tp + t.fn_);
    let sp = frac(t.tn, t.tn + t.fp);
    let f1 = frac(2 * t.tp, 2 * t.tp + t.fp + t.fn_);
    let scored = t.tp + t.fp + t.tn + t.fn_ > 0;
    if json {
        let mut v = serde_json::to_value(r)?;
        set(&mut v, "se", json_opt(se));
        set(&mut v, "sp", json_opt(sp));
        set(&mut v, "f1_af", json_opt(f1));
        set(&mut v, "errors", errors_json(&r.failures));
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let f1_text = f1.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.3}"));
        match &r.units {
            AfUnits::Recording { records } => {
                outln!(
                    "{} recordings: TP {} FP {} TN {} FN {}",
                    records.len(),
                    t.tp,
                    t.fp,
                    t.tn,
                    t.fn_
                );
                outln!(
                    "AF Se {}  Sp {}  F1(A) {f1_text}",
                    pct_unit(se),
                    pct_unit(sp)
                );
            }
            AfUnits::Segment { segment_s, records } => {
                outln!(
                    "{:<8} {:>4} {:>4} {:>4} {:>4}  AF episodes",
                    "record",
                    "TP",
                    "FP",
                    "TN",
                    "FN"
                );
                for row in records {
                    let c = row.segments;
                    outln!(
                        "{:<8} {:>4} {:>4} {:>4} {:>4}  {}",
                        row.record,
                        c.tp,
                        c.fp,
                        c.tn,
                        c.fn_,
                        row.episodes.len()
                    );
                }
                outln!(
                    "{segment_s:.0}-s segments: AF Se {}  Sp {}  (TP {} FP {} TN {} FN {})",
                    pct_unit(se),
                    pct_unit(sp),
                    t.tp,
                    t.fp,
                    t.tn,
                    t.fn_
                );
            }
        }
        if scored && se.is_none() {
            outln!("(Se n/a: no AF in the reference)");
        }
    }
    Ok(status(
        &r.failures,
        scored,
        "no segment or recording to classify",
    ))
}
