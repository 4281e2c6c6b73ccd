//! What `aorta eval beats` and `aorta eval rhythm` print.

use std::process::ExitCode;

use aorta_signal::beats::BeatClass;
use aorta_signal::beats::eval::{BeatReport, ClassScore};
use aorta_signal::eval::RecordFailure;

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |v| format!("{:.2}", 100.0 * v))
}

fn errors_json(failures: &[RecordFailure]) -> serde_json::Value {
    failures
        .iter()
        .map(|f| serde_json::json!({ "record": f.record, "error": f.error.to_string() }))
        .collect()
}

fn status(failures: &[RecordFailure], scored: bool) -> ExitCode {
    for f in failures {
        eprintln!("error: record {}: {}", f.record, f.error);
    }
    if !failures.is_empty() {
        ExitCode::from(2)
    } else if !scored {
        eprintln!("nothing scored: no reference beat in the scored range");
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints a beat-class report; its exit status.
pub(crate) fn beats(r: &BeatReport, json: bool) -> anyhow::Result<ExitCode> {
    let scored = r.gross.reference > 0;
    if json {
        let mut v = serde_json::to_value(r)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("errors".into(), errors_json(&r.failures));
        }
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(status(&r.failures, scored));
    }
    let cell = |c: ClassScore| format!("{:>7} {:>7}", pct(c.se), pct(c.ppv));
    outln!(
        "{:<8} {:>15} {:>15} {:>15} {:>15}",
        "record",
        "N Se/+P %",
        "S Se/+P %",
        "V Se/+P %",
        "F Se/+P %"
    );
    for row in &r.records {
        let c = row.classes;
        outln!(
            "{:<8} {} {} {} {}",
            row.record,
            cell(c.N),
            cell(c.S),
            cell(c.V),
            cell(c.F)
        );
    }
    let c = r.classes;
    outln!(
        "{:<8} {} {} {} {}",
        "gross",
        cell(c.N),
        cell(c.S),
        cell(c.V),
        cell(c.F)
    );
    for k in BeatClass::ALL {
        let s = r.matrix.class_score(k);
        outln!(
            "{}: {} reference beats, {} classified {}, {} right",
            k.letter(),
            s.reference,
            s.detected,
            k.letter(),
            s.tp
        );
    }
    outln!(
        "detection Se {} %  +P {} %  class accuracy {} %",
        pct(Some(r.gross.detection_se)),
        pct(Some(r.gross.detection_ppv)),
        pct(Some(r.gross.accuracy))
    );
    outln!(
        "({}: each record classified by the model trained without it; window {:.0} ms; scoring from {:.0} s; lead {}; n/a: nothing to count)",
        r.protocol,
        r.window_s * 1000.0,
        r.start_s,
        r.lead
    );
    Ok(status(&r.failures, scored))
}

/// Prints a rhythm-episode report; its exit status.
pub(crate) fn rhythm(
    r: &aorta_signal::rhythm_eval::RhythmReport,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let scored = !r.records.is_empty();
    if json {
        let mut v = serde_json::to_value(r)?;
        if let Some(o) = v.as_object_mut() {
            o.insert("errors".into(), errors_json(&r.failures));
        }
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(status(&r.failures, scored));
    }
    outln!(
        "{:<10} {:>5} {:>5} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "rhythm",
        "ref",
        "det",
        "Se %",
        "+P %",
        "dur Se %",
        "dur +P %",
        "ref s",
        "det s"
    );
    for (k, s) in &r.rhythms {
        let c = s.counts;
        outln!(
            "{:<10} {:>5} {:>5} {:>8} {:>8} {:>9} {:>9} {:>9.0} {:>9}",
            k,
            c.reference,
            if s.detected_here {
                c.detected.to_string()
            } else {
                "-".into()
            },
            pct(s.se),
            pct(s.ppv),
            pct(s.duration_se),
            pct(s.duration_ppv),
            c.reference_s,
            if s.detected_here {
                format!("{:.0}", c.detected_s)
            } else {
                "-".into()
            }
        );
    }
    outln!(
        "({} beat classes; EC57 episode and duration statistics over whole records; VFL: reference only, detected from the signal, not from beats)",
        r.protocol
    );
    Ok(status(&r.failures, scored))
}
