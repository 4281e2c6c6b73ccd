//! AF detection on real data: regression floors under the figures measured
//! when the detector was written (see docs/signal.md for the full table).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)] // test code: a panic is a failed test

mod common;

use aorta_signal::eval::{Confusion, classify_af_recording, evaluate_af_record};
use aorta_signal::rhythm::RhythmConfig;

#[test]
fn mitdb_af_segments() {
    let Some(db) = common::data_dir("mitdb") else {
        return;
    };
    let cfg = RhythmConfig::default();
    let mut total = Confusion::default();
    for name in common::records(&db) {
        total += evaluate_af_record(&db, &name, 30.0, &cfg).unwrap().segments;
    }
    assert!(total.tp + total.fn_ > 100, "{total:?}");
    assert!(total.se() >= 0.93 && total.sp() >= 0.93, "{total:?}");
}

#[test]
fn challenge_2017_af_recordings() {
    let Some(db) = common::data_dir("challenge-2017") else {
        return;
    };
    let cfg = RhythmConfig::default();
    let text = std::fs::read_to_string(db.join("REFERENCE.csv")).unwrap();
    let mut c = Confusion::default();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (name, label) = line.split_once(',').unwrap();
        c.add(
            label == "A",
            classify_af_recording(&db, name, &cfg).unwrap(),
        );
    }
    assert_eq!(c.tp + c.fp + c.tn + c.fn_, 151);
    assert!(c.se() >= 0.75 && c.sp() >= 0.8 && c.f1() >= 0.55, "{c:?}");
}
