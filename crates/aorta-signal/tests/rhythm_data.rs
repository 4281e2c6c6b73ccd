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

use aorta_signal::eval::{
    AfEvidence, Confusion, classify_af_recording, evaluate_af_record, evaluate_af_record_from,
    rhythm_events,
};
use aorta_signal::rhythm::{RhythmConfig, RhythmEvent, RhythmEventKind};
use aorta_signal::wfdb::ReadOptions;

#[test]
fn mitdb_af_segments() {
    let Some(db) = common::data_dir("mitdb") else {
        return;
    };
    let cfg = RhythmConfig::default();
    let mut total = Confusion::default();
    for name in common::records(&db) {
        total += evaluate_af_record_from(
            &db,
            &name,
            30.0,
            &cfg,
            ReadOptions::default(),
            AfEvidence::EveryInterval,
        )
        .unwrap()
        .segments;
    }
    assert!(total.tp + total.fn_ > 100, "{total:?}");
    // Every RR interval as AF evidence, as the live worker uses them:
    // measured Se 95.4 %, Sp 94.4 %.
    assert!(total.se() >= 0.93 && total.sp() >= 0.93, "{total:?}");
}

/// `aorta eval af`'s evidence: the intervals next to ectopic beats left
/// out (beat classes, leave-one-record-out). It trades sensitivity for
/// specificity: measured Se 88.5 %, Sp 97.1 % (every interval: 95.4 %,
/// 94.4 %, above).
#[test]
fn mitdb_af_segments_without_ectopy() {
    let Some(db) = common::data_dir("mitdb") else {
        return;
    };
    let cfg = RhythmConfig::default();
    let mut total = Confusion::default();
    for name in common::records(&db) {
        total += evaluate_af_record(&db, &name, 30.0, &cfg).unwrap().segments;
    }
    assert!(total.tp + total.fn_ > 100, "{total:?}");
    assert!(total.se() >= 0.86 && total.sp() >= 0.96, "{total:?}");
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

/// Brady-/tachycardia changes, as (time, is_tachy, is_onset).
fn rate_changes(events: &[RhythmEvent]) -> Vec<(f64, bool, bool)> {
    events
        .iter()
        .filter_map(|e| match e.kind {
            RhythmEventKind::TachyOnset => Some((e.time_s, true, true)),
            RhythmEventKind::TachyOffset => Some((e.time_s, true, false)),
            RhythmEventKind::BradyOnset => Some((e.time_s, false, true)),
            RhythmEventKind::BradyOffset => Some((e.time_s, false, false)),
            _ => None,
        })
        .collect()
}

/// No rate alarm flickers on MIT-BIH: every brady-/tachycardia state (on or
/// off) lasts at least the hold time before it changes again, except the
/// offsets `finish` closes at the end of a record. With the hysteresis and
/// hold off (the monitor as it was), record 203 alone changed state dozens
/// of times in under 10 s.
#[test]
fn mitdb_rate_events_do_not_flicker() {
    let Some(db) = common::data_dir("mitdb") else {
        return;
    };
    let cfg = RhythmConfig::default();
    let old = RhythmConfig {
        rate_hysteresis_bpm: 0.0,
        rate_hold_s: 0.0,
        ..cfg
    };
    let (mut now, mut before) = (0, 0);
    for name in common::records(&db) {
        let (events, duration) = rhythm_events(&db, &name, &cfg).unwrap();
        let changes = rate_changes(&events);
        now += changes.len();
        for kind in [true, false] {
            let same: Vec<_> = changes.iter().filter(|c| c.1 == kind).collect();
            for w in same.windows(2) {
                let closed_by_finish = !w[1].2 && w[1].0 >= duration;
                assert!(
                    closed_by_finish || w[1].0 - w[0].0 >= cfg.rate_hold_s,
                    "record {name}: {:?} then {:?} ({} events)",
                    w[0],
                    w[1],
                    same.len()
                );
            }
        }
        before += rate_changes(&rhythm_events(&db, &name, &old).unwrap().0).len();
    }
    eprintln!("MIT-BIH rate events: {now} with hysteresis and hold, {before} without");
    assert!(now < before, "{now} vs {before}");
}
