//! HRV windows of the ECG operator on a real record (MIT-BIH 100) started
//! 5 s before a window edge: the first 5-minute window holds a few beats and
//! must come out flagged partial with its metrics withheld, not as a full
//! 5-minute HRV result (issue 15, item 4); the whole windows after it keep
//! every metric and say they are whole.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap and indexing are its assertions"
)]

use std::path::PathBuf;

use aorta_signal::wfdb::Record;
use aorta_stream::ecg::{EcgChunk, EcgConfig, EcgOperator, EcgResult};
use aorta_stream::{Engine, EngineConfig, Output};
use serde_json::Value;

/// A 5-minute boundary.
const T0: i64 = 1_767_225_600_000_000;
const W: i64 = 300_000_000;

#[test]
fn a_window_the_beats_do_not_cover_is_partial() {
    let db = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mitdb");
    if !db.join("100.hea").is_file() {
        eprintln!(
            "SKIPPED: {} not found (the shared MIT-BIH data is absent)",
            db.display()
        );
        return;
    }
    let rec = Record::read(db.join("100")).unwrap();
    let fs = rec.fs();
    // 15 minutes of signal, the first sample 5 s before T0 + 300 s.
    let x: Vec<f64> = rec.physical(0).unwrap()[..(900.0 * fs) as usize].to_vec();
    let start = T0 + W - 5_000_000;
    let mut e = Engine::<String, EcgOperator>::new(
        EcgOperator::new(EcgConfig::default()),
        EngineConfig::default(),
    );
    let mut out: Vec<Output<String, EcgResult>> = Vec::new();
    let chunk = fs as usize;
    for (i, c) in x.chunks(chunk).enumerate() {
        let t = start + ((i * chunk) as f64 * 1e6 / fs).round() as i64;
        let ev = EcgChunk {
            fs,
            samples: c.to_vec(),
            leads_uv: Vec::new(),
        };
        e.push("dev-100".to_string(), t, ev.into(), &mut out);
    }
    e.finish(&mut out);
    let hrv: Vec<(i64, Value)> = out
        .iter()
        .filter(|o| matches!(o.value, EcgResult::Hrv(_)))
        .map(|o| (o.start, serde_json::to_value(&o.value).unwrap()))
        .collect();
    let starts: Vec<i64> = hrv.iter().map(|(s, _)| *s).collect();
    assert_eq!(starts, vec![T0, T0 + W, T0 + 2 * W], "{hrv:?}");
    // [T0, T0 + 300 s) holds the record's first 5 s.
    let (_, first) = &hrv[0];
    assert_eq!(first["partial"], Value::Bool(true), "{first}");
    assert!(first["coverage"].as_f64().unwrap() < 0.02, "{first}");
    for k in [
        "mean_nn", "sdnn", "rmssd", "pnn50", "lf", "hf", "lf_hf", "sd1", "sd2",
    ] {
        assert!(first[k].is_null(), "{k} from 5 s of beats: {first}");
    }
    // The next window is whole: every value, coverage near 1.
    let (_, whole) = &hrv[1];
    assert_eq!(whole["partial"], Value::Bool(false), "{whole}");
    assert!(whole["coverage"].as_f64().unwrap() > 0.98, "{whole}");
    for k in [
        "mean_nn", "sdnn", "rmssd", "pnn50", "lf", "hf", "lf_hf", "sd1", "sd2",
    ] {
        assert!(whole[k].as_f64().unwrap() > 0.0, "{k}: {whole}");
    }
}
