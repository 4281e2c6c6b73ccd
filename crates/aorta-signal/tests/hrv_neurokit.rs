//! Agreement with NeuroKit2 on real MIT-BIH NN series.
//!
//! The fixture `fixtures/hrv/neurokit_mitdb.json` is written by
//! `tools/hrv_reference.py` (NeuroKit2 version recorded inside): 5-minute
//! windows of `.atr` reference beats, NN = intervals between two N/L/R beats,
//! and NeuroKit2's `hrv_time`, `hrv_frequency` (Welch, 4 Hz, absolute power)
//! and `hrv_nonlinear` on exactly that NN series.
// Test helpers may unwrap and index like the tests themselves (see clippy.toml).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)]

use aorta_signal::hrv::{ArtefactRule, HrvEngine, HrvOptions, HrvReport, NnSeries};
use serde_json::Value;

const FIXTURE: &str = include_str!("fixtures/hrv/neurokit_mitdb.json");

fn nums(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn rel(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / b.abs().max(f64::MIN_POSITIVE)
    }
}

struct Check {
    name: &'static str,
    tol: f64,
    worst: f64,
    worst_at: String,
}

fn windows() -> Vec<Value> {
    let doc: Value = serde_json::from_str(FIXTURE).unwrap();
    assert!(doc["neurokit2_version"].as_str().is_some());
    doc["windows"].as_array().unwrap().clone()
}

fn report_for(w: &Value) -> HrvReport {
    let nn = NnSeries::new(nums(&w["nn_ms"]), nums(&w["nn_time_s"])).unwrap();
    HrvEngine::new()
        .report(&nn, &HrvOptions::default())
        .unwrap()
}

#[test]
fn agrees_with_neurokit2() {
    let doc: Value = serde_json::from_str(FIXTURE).unwrap();
    eprintln!(
        "NeuroKit2 {} reference, {} windows",
        doc["neurokit2_version"],
        windows().len()
    );
    type Get = fn(&HrvReport) -> f64;
    type Want = fn(&Value) -> f64;
    let specs: Vec<(&'static str, f64, Get, Want)> = vec![
        // Time domain and Poincaré: 1e-6 relative (the contract).
        (
            "mean_nn",
            1e-6,
            |r| r.time.mean_nn,
            |w| w["MeanNN"].as_f64().unwrap(),
        ),
        (
            "sdnn",
            1e-6,
            |r| r.time.sdnn,
            |w| w["SDNN"].as_f64().unwrap(),
        ),
        (
            "rmssd",
            1e-6,
            |r| r.time.rmssd,
            |w| w["RMSSD"].as_f64().unwrap(),
        ),
        (
            "sdsd",
            1e-6,
            |r| r.time.sdsd,
            |w| w["SDSD"].as_f64().unwrap(),
        ),
        (
            "pnn50",
            1e-6,
            |r| r.time.pnn50,
            |w| w["pNN50"].as_f64().unwrap(),
        ),
        (
            "pnn20",
            1e-6,
            |r| r.time.pnn20,
            |w| w["pNN20"].as_f64().unwrap(),
        ),
        (
            "min_hr",
            1e-6,
            |r| r.time.min_hr,
            |w| 60_000.0 / w["MaxNN"].as_f64().unwrap(),
        ),
        (
            "max_hr",
            1e-6,
            |r| r.time.max_hr,
            |w| 60_000.0 / w["MinNN"].as_f64().unwrap(),
        ),
        ("hti", 1e-6, |r| r.time.hti, |w| w["HTI"].as_f64().unwrap()),
        (
            "tinn",
            1e-6,
            |r| r.time.tinn,
            |w| w["TINN"].as_f64().unwrap(),
        ),
        (
            "sd1",
            1e-6,
            |r| r.nonlinear.sd1,
            |w| w["SD1"].as_f64().unwrap(),
        ),
        (
            "sd2",
            1e-6,
            |r| r.nonlinear.sd2,
            |w| w["SD2"].as_f64().unwrap(),
        ),
        (
            "sd1_sd2",
            1e-6,
            |r| r.nonlinear.sd1_sd2,
            |w| w["SD1SD2"].as_f64().unwrap(),
        ),
        // Frequency domain, same method (Welch on 4 Hz quadratic-spline resampling):
        // the issue asks for 5 %; we reproduce NeuroKit2 to rounding, so assert 1e-9.
        ("vlf", 1e-9, |r| r.freq.vlf, |w| w["VLF"].as_f64().unwrap()),
        ("lf", 1e-9, |r| r.freq.lf, |w| w["LF"].as_f64().unwrap()),
        ("hf", 1e-9, |r| r.freq.hf, |w| w["HF"].as_f64().unwrap()),
        (
            "lf_hf",
            1e-9,
            |r| r.freq.lf_hf,
            |w| w["LFHF"].as_f64().unwrap(),
        ),
        (
            "lfnu",
            1e-9,
            |r| r.freq.lfnu,
            |w| {
                let (lf, hf) = (w["LF"].as_f64().unwrap(), w["HF"].as_f64().unwrap());
                100.0 * lf / (lf + hf)
            },
        ),
        (
            "total_power",
            1e-9,
            |r| r.freq.total_power,
            |w| w["VLF"].as_f64().unwrap() + w["LF"].as_f64().unwrap() + w["HF"].as_f64().unwrap(),
        ),
        // Sample entropy: identical match counts, so equal to rounding.
        (
            "sampen",
            1e-9,
            |r| r.nonlinear.sampen,
            |w| w["SampEn"].as_f64().unwrap(),
        ),
        // DFA: same scales and segments; least squares in closed form vs numpy.polyfit.
        (
            "dfa_alpha1",
            1e-9,
            |r| r.nonlinear.dfa_alpha1,
            |w| w["DFA_alpha1"].as_f64().unwrap(),
        ),
        (
            "dfa_alpha2",
            1e-9,
            |r| r.nonlinear.dfa_alpha2,
            |w| w["DFA_alpha2"].as_f64().unwrap(),
        ),
    ];
    let mut checks: Vec<Check> = specs
        .iter()
        .map(|(name, tol, _, _)| Check {
            name,
            tol: *tol,
            worst: 0.0,
            worst_at: String::new(),
        })
        .collect();
    for w in windows() {
        let r = report_for(&w);
        let nk = &w["neurokit"];
        let at = format!("{}@{}s", w["record"].as_str().unwrap(), w["start_s"]);
        for ((_, _, get, want), c) in specs.iter().zip(checks.iter_mut()) {
            let e = rel(get(&r), want(nk));
            assert!(
                !e.is_nan(),
                "{} at {at}: ours {} theirs {}",
                c.name,
                get(&r),
                want(nk)
            );
            if e > c.worst {
                c.worst = e;
                c.worst_at = at.clone();
            }
        }
    }
    eprintln!(
        "{:<12} {:>12} {:>10}  worst window",
        "metric", "max rel err", "tolerance"
    );
    for c in &checks {
        eprintln!(
            "{:<12} {:>12.3e} {:>10.0e}  {}",
            c.name, c.worst, c.tol, c.worst_at
        );
    }
    for c in &checks {
        assert!(
            c.worst <= c.tol,
            "{}: relative error {:.3e} at {} exceeds {:.0e}",
            c.name,
            c.worst,
            c.worst_at,
            c.tol
        );
    }
}

/// `NnSeries::from_beats` with N/L/R labels rebuilds the fixture's NN series
/// (values and times) from its beat list exactly.
#[test]
fn nn_from_beats_matches_fixture() {
    for w in windows() {
        let samples: Vec<u64> = w["beat_samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let normal: Vec<bool> = w["beat_symbols"]
            .as_str()
            .unwrap()
            .chars()
            .map(|c| matches!(c, 'N' | 'L' | 'R'))
            .collect();
        let fs = w["fs"].as_f64().unwrap();
        let s = NnSeries::from_beats(&samples, fs, Some(&normal), &ArtefactRule::none()).unwrap();
        assert_eq!(s.nn_ms(), nums(&w["nn_ms"]).as_slice());
        assert_eq!(s.t_s(), nums(&w["nn_time_s"]).as_slice());
        assert_eq!(s.n_rr(), samples.len() - 1);
        // The 300 s windowing used by `aorta hrv --record` gives the same window.
        let ws = aorta_signal::hrv::windows_from_beats(
            &samples,
            fs,
            Some(&normal),
            300.0,
            &ArtefactRule::none(),
        )
        .unwrap();
        assert_eq!(ws.len(), 1);
        assert_eq!(ws[0].start_s, w["start_s"].as_f64().unwrap());
        assert_eq!(ws[0].nn, s);
        // Gaps inferred from times (NnSeries::new) equal gaps known from labels.
        let t = NnSeries::new(nums(&w["nn_ms"]), nums(&w["nn_time_s"])).unwrap();
        assert_eq!(s.successive(), t.successive());
    }
}

/// The fixture's beats are the real `.atr` beats, read by aorta's own WFDB
/// reader (skips when the shared data is absent).
#[test]
fn fixture_beats_come_from_the_atr_files() {
    let db = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/mitdb");
    if !std::path::Path::new(db).join("100.atr").exists() {
        eprintln!("SKIP: {db} not present");
        return;
    }
    for w in windows() {
        let rec = w["record"].as_str().unwrap();
        let anns = aorta_signal::wfdb::read_annotations(format!("{db}/{rec}.atr")).unwrap();
        let fs = w["fs"].as_f64().unwrap();
        let lo = w["start_s"].as_f64().unwrap() * fs;
        let hi = w["end_s"].as_f64().unwrap() * fs;
        let beats: Vec<_> = anns
            .iter()
            .filter(|a| a.is_beat() && (a.sample as f64) >= lo && (a.sample as f64) < hi)
            .collect();
        let samples: Vec<u64> = beats.iter().map(|a| a.sample).collect();
        let symbols: String = beats.iter().map(|a| a.symbol()).collect();
        let want: Vec<u64> = w["beat_samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(samples, want, "{rec}");
        assert_eq!(symbols, w["beat_symbols"].as_str().unwrap(), "{rec}");
    }
}

/// The default artefact rule, given beats without labels, finds the intervals
/// that touch a non-normal beat and keeps the normal-to-normal ones (windows
/// in sinus rhythm; in the atrial-fibrillation windows of 201 and 210 the
/// 20 % rule also drops irregular N-N intervals, which is printed, not asserted).
#[test]
fn default_rule_on_unlabelled_real_beats() {
    let (mut ectopic, mut ectopic_dropped, mut normal, mut normal_kept) = (0, 0, 0, 0);
    for w in windows() {
        let samples: Vec<u64> = w["beat_samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let sym: Vec<char> = w["beat_symbols"].as_str().unwrap().chars().collect();
        let fs = w["fs"].as_f64().unwrap();
        let s = NnSeries::from_beats(&samples, fs, None, &ArtefactRule::default()).unwrap();
        let kept: std::collections::HashSet<u64> =
            s.t_s().iter().map(|t| (t * fs).round() as u64).collect();
        let (mut e, mut ed, mut n, mut nk) = (0, 0, 0, 0);
        for i in 1..samples.len() {
            let is_nn = matches!(sym[i - 1], 'N' | 'L' | 'R') && matches!(sym[i], 'N' | 'L' | 'R');
            let k = kept.contains(&samples[i]);
            if is_nn {
                n += 1;
                nk += k as usize;
            } else {
                e += 1;
                ed += (!k) as usize;
            }
        }
        eprintln!(
            "{}@{}: non-NN intervals dropped {ed}/{e}, NN kept {nk}/{n}",
            w["record"].as_str().unwrap(),
            w["start_s"]
        );
        if matches!(w["record"].as_str().unwrap(), "201" | "210") {
            continue;
        }
        ectopic += e;
        ectopic_dropped += ed;
        normal += n;
        normal_kept += nk;
    }
    let se = ectopic_dropped as f64 / ectopic as f64;
    let keep = normal_kept as f64 / normal as f64;
    eprintln!("sinus-rhythm windows: non-NN dropped {se:.3}, NN kept {keep:.4}");
    // Measured: 218/246 = 0.886 dropped, 2692/2693 kept.
    assert!(se >= 0.85, "{se}");
    assert!(keep >= 0.99, "{keep}");
}
