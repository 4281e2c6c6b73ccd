//! Property and hostile-input tests for `aorta_signal::hrv`: nothing panics,
//! bad input is a typed error, and the metrics keep their invariants.
// Test helpers may unwrap and index like the tests themselves (see clippy.toml).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)]

use aorta_signal::hrv::{
    ArtefactRule, HrvEngine, HrvError, HrvOptions, NnSeries, SpectralMethod, parse_rr_text,
};
use proptest::prelude::*;

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(60_000.0),
        Just(60_000.000_001),
        -1e6..1e6f64,
        200.0..2500.0f64,
        any::<f64>(),
    ]
}

fn both_methods() -> [HrvOptions; 2] {
    [
        HrvOptions {
            spectral: SpectralMethod::Welch,
        },
        HrvOptions {
            spectral: SpectralMethod::LombScargle,
        },
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary numbers through the whole pipeline: typed error or a report, never a panic.
    #[test]
    fn hostile_rr_never_panics(rr in prop::collection::vec(any_f64(), 0..300), filter in any::<bool>()) {
        let rule = if filter { ArtefactRule::default() } else { ArtefactRule::none() };
        match NnSeries::from_rr(&rr, &rule) {
            Ok(nn) => {
                for opts in both_methods() {
                    match HrvEngine::new().report(&nn, &opts) {
                        Ok(r) => {
                            prop_assert_eq!(r.n_nn, nn.len());
                            prop_assert!(r.n_nn >= 3);
                        }
                        Err(HrvError::TooFewIntervals { .. }) => prop_assert!(nn.len() < 3),
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
            }
            Err(e) => prop_assert!(matches!(
                e,
                HrvError::NonFinite { .. } | HrvError::OutOfRange { .. } | HrvError::SpanTooLong { .. }
            ), "{e}"),
        }
    }

    /// Arbitrary (intervals, times) pairs: never a panic.
    #[test]
    fn hostile_series_never_panics(
        nn in prop::collection::vec(any_f64(), 0..100),
        t in prop::collection::vec(any_f64(), 0..100),
    ) {
        if let Ok(s) = NnSeries::new(nn, t) {
            for opts in both_methods() {
                let _ = HrvEngine::new().report(&s, &opts);
            }
        }
    }

    /// Arbitrary beat positions, labels and sampling rates: never a panic.
    #[test]
    fn hostile_beats_never_panic(
        samples in prop::collection::vec(any::<u64>(), 0..80),
        labels in prop::collection::vec(any::<bool>(), 0..80),
        fs in any_f64(),
    ) {
        let _ = NnSeries::from_beats(&samples, fs, Some(&labels), &ArtefactRule::default());
        if let Ok(s) = NnSeries::from_beats(&samples, fs, None, &ArtefactRule::none()) {
            let _ = HrvEngine::new().report(&s, &HrvOptions::default());
        }
    }

    /// Windowing arbitrary beats: never a panic, windows in order, no beat lost.
    #[test]
    fn hostile_windows_never_panic(
        mut samples in prop::collection::vec(0u64..100_000_000, 0..200),
        sorted in any::<bool>(),
        fs in any_f64(),
        window in any_f64(),
    ) {
        if sorted {
            samples.sort_unstable();
            samples.dedup();
        }
        if let Ok(ws) = aorta_signal::hrv::windows_from_beats(&samples, fs, None, window, &ArtefactRule::none()) {
            for pair in ws.windows(2) {
                prop_assert!(pair[0].start_s < pair[1].start_s);
            }
            let intervals: usize = ws.iter().map(|w| w.nn.n_rr()).sum();
            prop_assert!(intervals + ws.len() == samples.len());
        }
    }

    /// Arbitrary bytes as an RR file: values or a line-numbered error.
    #[test]
    fn rr_text_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_rr_text(&bytes);
    }

    /// Written RR values parse back exactly, whatever comments and blank lines surround them.
    #[test]
    fn rr_text_round_trips(rr in prop::collection::vec(1.0..60_000.0f64, 0..50), noise in any::<bool>()) {
        let mut text = String::new();
        for v in &rr {
            if noise { text.push_str("# comment\n\n"); }
            text.push_str(&format!("{v}{}\n", if noise { "  # trailing" } else { "" }));
        }
        prop_assert_eq!(parse_rr_text(text.as_bytes()).unwrap(), rr);
    }

    /// Invariants on plausible RR series.
    #[test]
    fn invariants_hold(rr in prop::collection::vec(350.0..1500.0f64, 20..400)) {
        let nn = NnSeries::from_rr(&rr, &ArtefactRule::none()).unwrap();
        let r = HrvEngine::new().report(&nn, &HrvOptions::default()).unwrap();
        prop_assert!(r.time.sdnn >= 0.0 && r.time.rmssd >= 0.0 && r.time.sdsd >= 0.0);
        prop_assert!(0.0 <= r.time.pnn50 && r.time.pnn50 <= r.time.pnn20 && r.time.pnn20 <= 100.0);
        prop_assert!(r.time.min_hr <= r.time.mean_hr + 1e-9 && r.time.mean_hr <= r.time.max_hr + 1e-9);
        // SD1 is SDSD/√2 by definition.
        prop_assert!((r.nonlinear.sd1 - r.time.sdsd / 2f64.sqrt()).abs() <= 1e-9 * r.time.sdsd.max(1.0));
        prop_assert!(r.time.hti >= 1.0 && r.time.hti <= r.n_nn as f64);
        prop_assert!(r.time.tinn >= 0.0);
        if r.freq.lf.is_finite() && r.freq.hf.is_finite() {
            prop_assert!(r.freq.lf > 0.0 && r.freq.hf > 0.0);
            prop_assert!((r.freq.lfnu + r.freq.hfnu - 100.0).abs() < 1e-9);
        }
    }
}

#[test]
fn empty_one_and_two_intervals_are_too_few() {
    for rr in [&[][..], &[800.0][..], &[800.0, 810.0][..]] {
        let nn = NnSeries::from_rr(rr, &ArtefactRule::none()).unwrap();
        assert_eq!(
            HrvEngine::new().report(&nn, &HrvOptions::default()),
            Err(HrvError::TooFewIntervals {
                needed: 3,
                got: rr.len()
            })
        );
    }
}

#[test]
fn constant_series_gives_defined_or_nan_not_panic() {
    let nn = NnSeries::from_rr(&[800.0; 300], &ArtefactRule::none()).unwrap();
    let r = HrvEngine::new()
        .report(&nn, &HrvOptions::default())
        .unwrap();
    assert_eq!(r.time.sdnn, 0.0);
    assert_eq!(r.time.rmssd, 0.0);
    assert_eq!(r.time.mean_hr, 75.0);
    // No variability: no spectral power (rounding noise at most), no DFA fluctuation.
    let quiet = |v: f64| v.is_nan() || v <= 1e-12;
    assert!(
        quiet(r.freq.lf) && quiet(r.freq.hf),
        "{} {}",
        r.freq.lf,
        r.freq.hf
    );
    assert!(r.nonlinear.dfa_alpha1.is_nan());
    // JSON turns undefined values into null.
    let v = serde_json::to_value(r).unwrap();
    assert!(v["dfa_alpha1"].is_null());
}

#[test]
fn long_extreme_series_is_handled() {
    // 3000 intervals at the 60 s limit: 50 hours, within the 7-day span.
    let nn = NnSeries::from_rr(&[60_000.0; 3000], &ArtefactRule::none()).unwrap();
    let r = HrvEngine::new()
        .report(&nn, &HrvOptions::default())
        .unwrap();
    assert_eq!(r.time.mean_nn, 60_000.0);
    // Over 7 days is refused.
    let too_long = vec![60_000.0; 11_000];
    assert!(matches!(
        NnSeries::from_rr(&too_long, &ArtefactRule::none()),
        Err(HrvError::SpanTooLong { .. })
    ));
}

#[test]
fn gaps_exclude_cross_gap_differences() {
    // Ectopic pair in the middle: with the filter, the 500/1100 pair is gone and
    // the 800→800 difference across the gap is not counted.
    let mut rr = [800.0, 850.0].repeat(20);
    rr.splice(20..20, [500.0, 1100.0]);
    let filtered = NnSeries::from_rr(&rr, &ArtefactRule::default()).unwrap();
    assert_eq!(filtered.len(), 40);
    let r = HrvEngine::new().time_domain(&filtered).unwrap();
    // 40 NN, one gap → 38 successive differences, all |50| → pNN20 = 38/39.
    assert!((r.pnn20 - 38.0 / 39.0 * 100.0).abs() < 1e-9, "{}", r.pnn20);
    assert!((r.rmssd - 50.0).abs() < 1e-9);
}
