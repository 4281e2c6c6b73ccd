//! The ECG operator on a real MIT-BIH record (201: AF episodes, ectopy):
//! heart rate against the reference beats, HRV windows, AF events, and
//! identical results after a checkpoint/restore and with other chunk sizes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)] // test code

use std::path::PathBuf;

use aorta_signal::wfdb::{Record, read_annotations};
use aorta_stream::ecg::{EcgChunk, EcgConfig, EcgOperator, EcgResult};
use aorta_stream::{Engine, EngineConfig, Output};

const T0: i64 = 1_767_225_600_000_000;

fn record() -> Option<(Vec<f64>, f64, Vec<i64>)> {
    let db = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mitdb");
    if !db.join("201.hea").is_file() {
        eprintln!(
            "SKIPPED: {} not found (the shared MIT-BIH data is absent)",
            db.display()
        );
        return None;
    }
    let rec = Record::read(db.join("201")).unwrap();
    let fs = rec.fs();
    let beats = read_annotations(db.join("201.atr"))
        .unwrap()
        .iter()
        .filter(|a| a.is_beat())
        .map(|a| T0 + (a.sample as f64 * 1e6 / fs).round() as i64)
        .collect();
    Some((rec.physical(0).unwrap(), fs, beats))
}

fn run(x: &[f64], fs: f64, chunk: usize, restore_at: Option<usize>) -> Vec<String> {
    let new = || {
        Engine::<String, EcgOperator>::new(
            EcgOperator::new(EcgConfig::default()),
            EngineConfig::default(),
        )
    };
    let mut e = new();
    let mut out: Vec<Output<String, EcgResult>> = Vec::new();
    for (i, c) in x.chunks(chunk).enumerate() {
        if Some(i) == restore_at {
            let snap = e.snapshot().unwrap();
            e = new();
            e.restore(&snap).unwrap();
        }
        let t = T0 + ((i * chunk) as f64 * 1e6 / fs).round() as i64;
        e.push(
            "dev-201".to_string(),
            t,
            EcgChunk {
                fs,
                samples: c.to_vec(),
                leads_uv: Vec::new(),
            }
            .into(),
            &mut out,
        );
    }
    e.finish(&mut out);
    // NaN-safe comparison: compare serialised results.
    let mut v: Vec<String> = out
        .iter()
        .map(|o| serde_json::to_string(o).unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn heart_rate_hrv_and_af_on_record_201() {
    let Some((x, fs, ref_beats)) = record() else {
        return;
    };
    let results = run(&x, fs, 360, None);
    let parsed: Vec<Output<String, EcgResult>> = results
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    let mut hr = 0;
    let mut close = 0;
    let mut hrv = 0;
    let mut af_onsets = 0;
    for o in &parsed {
        match &o.value {
            EcgResult::HeartRate { bpm, .. } => {
                hr += 1;
                let inside: Vec<i64> = ref_beats
                    .iter()
                    .copied()
                    .filter(|b| *b >= o.start && *b < o.end)
                    .collect();
                if inside.len() >= 2 {
                    let ref_bpm = 60e6 * (inside.len() - 1) as f64
                        / (inside[inside.len() - 1] - inside[0]) as f64;
                    if (bpm - ref_bpm).abs() <= 3.0 {
                        close += 1;
                    }
                }
            }
            EcgResult::Hrv(s) => {
                hrv += 1;
                assert!(s.n_nn > 100 && s.rmssd > 0.0, "{s:?}");
            }
            EcgResult::Rhythm(ev) => {
                if matches!(ev.kind, aorta_signal::rhythm::RhythmEventKind::AfOnset) {
                    af_onsets += 1;
                }
            }
            EcgResult::Strip(_) | EcgResult::Beats(_) => {}
            EcgResult::Gap { .. } => panic!("no frame is missing here: {o:?}"),
        }
    }
    assert!(hr > 350, "{hr} heart-rate windows");
    assert!(
        close as f64 >= 0.95 * hr as f64,
        "only {close} of {hr} HR windows within 3 bpm of the reference"
    );
    assert_eq!(hrv, 6, "six full 5-minute windows in 30:05");
    assert!(af_onsets >= 1, "record 201 has AF episodes");
}

#[test]
fn checkpoint_restore_and_chunking_do_not_change_results() {
    let Some((x, fs, _)) = record() else { return };
    let x = &x[..(600.0 * fs) as usize];
    let whole = run(x, fs, 360, None);
    assert!(!whole.is_empty());
    let same = |a: &[String], b: &[String], what: &str| {
        assert_eq!(a.len(), b.len(), "{what}: different number of results");
        if let Some((x, y)) = a.iter().zip(b).find(|(x, y)| x != y) {
            panic!("{what}: first difference:\n  {x}\n  {y}");
        }
    };
    same(
        &run(x, fs, 360, Some(250)),
        &whole,
        "restored from a checkpoint at 250 s",
    );
    same(&run(x, fs, 90, None), &whole, "quarter-second chunks");
    same(&run(x, fs, 3600, None), &whole, "ten-second chunks");
}
