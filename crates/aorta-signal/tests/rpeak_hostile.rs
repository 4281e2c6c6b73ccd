//! The detector on hostile and degenerate input: no panic, bounded output,
//! bounded memory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)] // test code: a panic is a failed test

use aorta_signal::rpeak::{Detector, DetectorConfig, detect};
use proptest::prelude::*;

#[test]
fn rejects_bad_configuration() {
    for fs in [0.0, -360.0, f64::NAN, f64::INFINITY, 50.0, 1e6] {
        assert!(Detector::new(fs).is_err(), "fs {fs}");
    }
    let mut c = DetectorConfig::new(360.0);
    c.band = (20.0, 10.0);
    assert!(Detector::with_config(c).is_err());
    let mut c = DetectorConfig::new(360.0);
    c.max_latency = f64::NAN;
    assert!(Detector::with_config(c).is_err());
}

#[test]
fn degenerate_signals() {
    let fs = 360.0;
    let n = (60.0 * fs) as usize;
    // Flat line, huge values, NaN and infinities: no beats invented from nothing, no panic.
    assert!(detect(&vec![0.0; n], fs).unwrap().is_empty());
    assert!(detect(&vec![1e300; n], fs).unwrap().len() <= 2);
    let mut weird = vec![f64::NAN; n];
    for (i, v) in weird.iter_mut().enumerate() {
        if i % 7 == 0 {
            *v = f64::INFINITY;
        }
    }
    let beats = detect(&weird, fs).unwrap();
    assert!(beats.len() <= 2, "{}", beats.len());
}

#[test]
fn memory_is_bounded() {
    let fs = 1000.0;
    let mut det = Detector::new(fs).unwrap();
    let before = det.buffer_bytes();
    let mut out = Vec::new();
    let x: Vec<f64> = (0..200_000)
        .map(|i| ((i as f64) * 0.37).sin() * if i % 1000 < 20 { 5.0 } else { 0.1 })
        .collect();
    for _ in 0..10 {
        det.push(&x, &mut out);
        out.clear();
    }
    assert_eq!(det.buffer_bytes(), before);
    assert!(before < 64 * 1024, "{before}");
}

proptest! {
    #[test]
    fn never_panics_and_beats_are_ordered(x in proptest::collection::vec(proptest::num::f64::ANY, 0..4000), fsi in 0usize..4) {
        let fs = [250.0, 360.0, 500.0, 1000.0][fsi];
        let beats = detect(&x, fs).unwrap();
        // At most one beat per refractory period.
        prop_assert!(beats.len() <= x.len() / (0.2 * fs) as usize + 1);
        for w in beats.windows(2) {
            prop_assert!(w[0].sample < w[1].sample);
        }
        for b in &beats {
            prop_assert!(b.reported_at >= b.sample);
        }
    }
}
