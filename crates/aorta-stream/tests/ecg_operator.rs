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

fn run_events(
    x: &[f64],
    fs: f64,
    strip_quality_at: Option<usize>,
) -> Vec<Output<String, EcgResult>> {
    let new = || {
        Engine::<String, EcgOperator>::new(
            EcgOperator::new(EcgConfig::default()),
            EngineConfig::default(),
        )
    };
    let mut e = new();
    let mut out = Vec::new();
    let chunk = 360;
    for (i, c) in x.chunks(chunk).enumerate() {
        if Some(i) == strip_quality_at {
            // A checkpoint written before signal quality existed: no
            // `quality` / `quality_offset` keys.
            let snap = e.snapshot().unwrap();
            let text = String::from_utf8(snap).unwrap();
            assert!(text.contains("\"quality\""));
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            fn strip(v: &mut serde_json::Value) {
                match v {
                    serde_json::Value::Object(m) => {
                        m.remove("quality");
                        m.remove("quality_offset");
                        m.values_mut().for_each(strip);
                    }
                    serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
                    _ => {}
                }
            }
            strip(&mut v);
            let old = serde_json::to_vec(&v).unwrap();
            assert!(!String::from_utf8_lossy(&old).contains("\"quality\""));
            e = new();
            e.restore(&old).unwrap();
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
    out
}

#[test]
fn lead_off_gives_signal_lost_events_and_no_pause_alarm() {
    use aorta_signal::rhythm::RhythmEventKind as K;
    let Some((mut x, fs, _)) = record() else {
        return;
    };
    x.truncate((120.0 * fs) as usize);
    // Lead off (the amplifier sends NaN gaps) from 40 to 60 s.
    for v in &mut x[(40.0 * fs) as usize..(60.0 * fs) as usize] {
        *v = f64::NAN;
    }
    let out = run_events(&x, fs, None);
    let rel = |o: &Output<String, EcgResult>| (o.start - T0) as f64 / 1e6;
    let events: Vec<(f64, K)> = out
        .iter()
        .filter_map(|o| match &o.value {
            EcgResult::Rhythm(e) => Some((rel(o), e.kind)),
            _ => None,
        })
        .collect();
    let on: Vec<f64> = events
        .iter()
        .filter(|e| e.1 == K::SignalLostOnset)
        .map(|e| e.0)
        .collect();
    let off: Vec<f64> = events
        .iter()
        .filter(|e| e.1 == K::SignalLostOffset)
        .map(|e| e.0)
        .collect();
    assert_eq!(on.len(), 1, "{events:?}");
    assert_eq!(off.len(), 1, "{events:?}");
    assert!((39.0..=41.0).contains(&on[0]), "{events:?}");
    assert!((60.0..=63.0).contains(&off[0]), "{events:?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.1, K::PauseOnset | K::Pause { .. }) && e.0 > 38.0),
        "a pause alarm for a lost signal: {events:?}"
    );
    // Beats come back after the stretch: heart rate is reported again.
    assert!(
        out.iter()
            .any(|o| matches!(o.value, EcgResult::HeartRate { .. }) && rel(o) >= 70.0)
    );

    // A checkpoint from before signal quality still loads; the quality
    // restarts at the next chunk and sees the lead-off all the same.
    let restored = run_events(&x, fs, Some(20));
    let lost = restored
        .iter()
        .filter(|o| matches!(&o.value, EcgResult::Rhythm(e) if e.kind == K::SignalLostOnset))
        .count();
    assert_eq!(lost, 1);
}
