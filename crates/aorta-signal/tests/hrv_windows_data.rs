//! HRV windows on real MIT-BIH records: a window the beats do not cover is
//! flagged partial and the metrics it holds too little NN time for are
//! withheld, never reported as a full 5-minute result (issue 15, item 4);
//! whole windows keep every metric, equal to the unchecked report (and so to
//! NeuroKit2, `hrv_neurokit.rs`).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)]

mod common;

use aorta_signal::hrv::{
    ArtefactRule, HrvEngine, HrvOptions, MIN_NN_S_VLF, NnSeries, WindowResult, record_hrv,
};
use serde_json::Value;

#[test]
fn record_100_last_window_is_partial_not_a_5_minute_result() {
    let Some(db) = common::data_dir("mitdb") else {
        return;
    };
    // Record 100 is 30:06 long: six whole 300 s windows and 6 s in a seventh.
    let r = record_hrv(
        &db.join("100"),
        0,
        300.0,
        &ArtefactRule::default(),
        &HrvOptions::default(),
    )
    .unwrap();
    assert_eq!(r.windows.len(), 7);
    for w in &r.windows[..6] {
        assert!(!w.coverage.partial, "{w:?}");
        assert!(w.coverage.coverage > 0.98, "{w:?}");
        let WindowResult::Hrv(h) = &w.result else {
            panic!("{w:?}")
        };
        for v in [h.time.sdnn, h.time.rmssd, h.freq.lf, h.freq.hf, h.freq.vlf] {
            assert!(v.is_finite(), "{w:?}");
        }
    }
    let last = &r.windows[6];
    assert_eq!(last.start_s, 1800.0);
    assert!(last.coverage.partial, "{last:?}");
    assert!(last.coverage.coverage < 0.03, "{last:?}");
    let WindowResult::Hrv(h) = &last.result else {
        panic!("{last:?}")
    };
    // 3 to 11 NN intervals: no SDNN, RMSSD, heart rate or spectrum from them.
    assert!((3..=11).contains(&h.n_nn), "{}", h.n_nn);
    for v in [
        h.time.mean_hr,
        h.time.sdnn,
        h.time.rmssd,
        h.time.pnn50,
        h.nonlinear.sd1,
        h.nonlinear.sd2,
        h.freq.lf,
        h.freq.hf,
    ] {
        assert!(v.is_nan(), "{last:?}");
    }
    let json = serde_json::to_value(last).unwrap();
    assert_eq!(json["partial"], Value::Bool(true));
    assert!(json["hrv"]["sdnn"].is_null() && json["hrv"]["rmssd"].is_null());
}

#[test]
fn whole_fixture_windows_lose_no_metric() {
    let doc: Value =
        serde_json::from_str(include_str!("fixtures/hrv/neurokit_mitdb.json")).unwrap();
    let nums = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let mut whole = 0;
    for w in doc["windows"].as_array().unwrap() {
        let nn = NnSeries::new(nums(&w["nn_ms"]), nums(&w["nn_time_s"])).unwrap();
        let mut engine = HrvEngine::new();
        let plain = engine.report(&nn, &HrvOptions::default()).unwrap();
        let checked = engine.report_checked(&nn, &HrvOptions::default()).unwrap();
        if plain.nn_s >= MIN_NN_S_VLF {
            whole += 1;
            // Same values, bit for bit (NaN where NeuroKit2 has NaN too).
            assert_eq!(format!("{plain:?}"), format!("{checked:?}"));
        } else {
            // Fewer NN seconds (ectopy, AF): only the spectrum's low end goes.
            assert!(checked.freq.vlf.is_nan() && checked.time.sdnn.is_finite());
        }
    }
    assert!(whole >= 6, "{whole} whole windows");
}
