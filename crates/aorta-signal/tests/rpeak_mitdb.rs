//! The R-peak detector on real MIT-BIH recordings: accuracy targets, latency
//! bound, chunking independence and sampling-rate independence.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)] // test code: a panic is a failed test

mod common;

use aorta_signal::eval::{Counts, EvalOptions, evaluate_record, match_beats};
use aorta_signal::rpeak::{Beat, Detector, detect};
use aorta_signal::wfdb::{Record, read_annotations};
use proptest::prelude::*;

#[test]
fn mitdb_meets_ec57_targets() {
    let Some(db) = common::data_dir("mitdb") else {
        return;
    };
    let mut gross = Counts::default();
    for name in common::records(&db) {
        let r = evaluate_record(&db, &name, &EvalOptions::default()).unwrap();
        assert!(
            r.counts.se() >= 0.95 && r.counts.ppv() >= 0.95,
            "record {name}: {:?}",
            r.counts
        );
        assert!(
            r.max_latency_ms <= 250.0,
            "record {name}: latency {} ms",
            r.max_latency_ms
        );
        gross += r.counts;
    }
    assert!(gross.se() >= 0.995, "gross Se {}", gross.se());
    assert!(gross.ppv() >= 0.995, "gross +P {}", gross.ppv());
}

fn lead0(db: &std::path::Path, name: &str, seconds: f64) -> (Vec<f64>, f64) {
    let rec = Record::read(db.join(name)).unwrap();
    let fs = rec.fs();
    let mut x = rec.physical(0).unwrap();
    x.truncate((seconds * fs) as usize);
    (x, fs)
}

#[test]
fn every_beat_reported_within_250_ms() {
    let Some(db) = common::data_dir("mitdb") else {
        return;
    };
    for name in ["105", "203", "208"] {
        let (x, fs) = lead0(&db, name, 1805.0);
        for b in detect(&x, fs).unwrap() {
            assert!(
                b.reported_at >= b.sample,
                "{name}: reported before the peak: {b:?}"
            );
            let lat = (b.reported_at - b.sample) as f64 / fs;
            assert!(lat <= 0.250, "{name}: {b:?} latency {lat}");
        }
    }
}

#[test]
fn result_does_not_depend_on_sampling_rate() {
    let Some(db) = common::data_dir("mitdb") else {
        return;
    };
    for fs_out in [250.0, 500.0, 1000.0] {
        let mut gross = Counts::default();
        for name in ["100", "105", "119", "203", "208"] {
            let (x, fs) = lead0(&db, name, 600.0);
            let y = common::resample(&x, fs, fs_out);
            let det: Vec<u64> = detect(&y, fs_out)
                .unwrap()
                .iter()
                .map(|b| b.sample)
                .collect();
            let refs: Vec<u64> = read_annotations(db.join(format!("{name}.atr")))
                .unwrap()
                .iter()
                .filter(|a| a.is_beat())
                .map(|a| (a.sample as f64 * fs_out / fs).round() as u64)
                .collect();
            let c = match_beats(
                &refs,
                &det,
                (0.15 * fs_out) as u64,
                (60.0 * fs_out) as u64,
                y.len() as u64,
            );
            assert!(
                c.se() >= 0.95 && c.ppv() >= 0.95,
                "{name} at {fs_out} Hz: {c:?}"
            );
            gross += c;
        }
        assert!(
            gross.se() >= 0.99 && gross.ppv() >= 0.99,
            "at {fs_out} Hz: {gross:?}"
        );
    }
}

fn run_chunked(x: &[f64], fs: f64, cuts: &[usize]) -> Vec<Beat> {
    let mut det = Detector::new(fs).unwrap();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut k = 0;
    while pos < x.len() {
        let len = cuts[k % cuts.len()].max(1).min(x.len() - pos);
        det.push(&x[pos..pos + len], &mut out);
        pos += len;
        k += 1;
    }
    det.finish(&mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn chunking_does_not_change_the_result(cuts in proptest::collection::vec(1usize..5000, 1..20)) {
        let Some(db) = common::data_dir("mitdb") else { return Ok(()) };
        let (x, fs) = lead0(&db, "203", 120.0);
        let whole = detect(&x, fs).unwrap();
        prop_assert!(whole.len() > 100);
        prop_assert_eq!(run_chunked(&x, fs, &cuts), whole);
    }
}

#[test]
fn one_sample_at_a_time_equals_whole() {
    let Some(db) = common::data_dir("mitdb") else {
        return;
    };
    let (x, fs) = lead0(&db, "208", 120.0);
    assert_eq!(run_chunked(&x, fs, &[1]), detect(&x, fs).unwrap());
}
