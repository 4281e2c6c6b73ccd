//! RR frames through the ECG job: MIT-BIH record 100's beat annotations,
//! normal-to-normal (N→N) intervals only, sent as RR frames (a non-N beat
//! ends a segment; the next frame starts a new one), give HRV windows equal
//! (1e-9 relative) to `aorta_signal::hrv::HrvEngine` run directly on the same
//! RR series per 5-minute window. A restart from the checkpoint half-way
//! gives the same results and no duplicates.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)] // test code

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aorta_signal::hrv::{ArtefactRule, HrvEngine, HrvOptions, NnSeries};
use aorta_signal::wfdb::{Record, read_annotations};
use aorta_stream::EngineConfig;
use aorta_stream::checkpoint::FileCheckpointStore;
use aorta_stream::ecg::EcgConfig;
use aorta_stream::job::{
    EcgJob, PlainFrames, PlainResults, PlainState, encode_plain_rr_frame, encode_record,
};
use aorta_stream::log::{FileLog, FrameLog};
use aorta_stream::results::FileResultStore;
use serde_json::Value;

const T0: i64 = 1_767_225_600_000_000;
const W: i64 = 300_000_000;

/// Segments of consecutive N→N intervals: (first beat time, intervals µs).
fn segments() -> Option<Vec<(i64, Vec<i32>)>> {
    let db = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mitdb");
    if !db.join("100.atr").is_file() {
        eprintln!(
            "SKIPPED: {} not found (the shared MIT-BIH data is absent)",
            db.display()
        );
        return None;
    }
    let fs = Record::read(db.join("100")).unwrap().fs();
    let beats: Vec<(i64, bool)> = read_annotations(db.join("100.atr"))
        .unwrap()
        .iter()
        .filter(|a| a.is_beat())
        .map(|a| {
            (
                T0 + (a.sample as f64 * 1e6 / fs).round() as i64,
                a.symbol() == "N",
            )
        })
        .collect();
    let mut segs: Vec<(i64, Vec<i32>)> = Vec::new();
    let mut cur: Option<(i64, Vec<i32>)> = None;
    for w in beats.windows(2) {
        let ((a, an), (b, bn)) = (w[0], w[1]);
        let rr = i32::try_from(b - a).unwrap();
        let ok = an && bn && (200_000..=5_000_000).contains(&rr);
        match (&mut cur, ok) {
            (Some((_, v)), true) => v.push(rr),
            (None, true) => cur = Some((a, vec![rr])),
            (_, false) => segs.extend(cur.take()),
        }
    }
    segs.extend(cur);
    Some(segs)
}

/// RR frames of about 10 s of beats each.
fn frames(segs: &[(i64, Vec<i32>)]) -> Vec<(i64, Vec<i32>)> {
    let mut out = Vec::new();
    for (t0, rr) in segs {
        let mut t = *t0;
        let mut cur = Vec::new();
        let mut span = 0i64;
        for &r in rr {
            cur.push(r);
            span += i64::from(r);
            if span >= 10_000_000 {
                out.push((t, std::mem::take(&mut cur)));
                t += span;
                span = 0;
            }
        }
        if !cur.is_empty() {
            out.push((t, cur));
        }
    }
    out
}

fn open_job(
    dir: &Path,
) -> EcgJob<PlainFrames, FileCheckpointStore, FileResultStore, PlainResults, PlainState> {
    EcgJob::open(
        EcgConfig::default(),
        EngineConfig::default(),
        PlainFrames,
        FileCheckpointStore::new(dir.join("cp")).unwrap(),
        PlainState,
        FileResultStore::open(dir.join("results")).unwrap(),
        PlainResults,
        7,
    )
    .unwrap()
}

/// Runs the frames through the job, restarting it from its checkpoint after
/// `restart_at` log records; returns HRV windows by start time.
fn run(dir: &Path, frames: &[(i64, Vec<i32>)], restart_at: usize) -> BTreeMap<i64, Value> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let mut log = FileLog::open(dir.join("log")).unwrap();
    for (t, rr) in frames {
        let f = encode_plain_rr_frame("RR-100", *t, rr).unwrap();
        log.append(&encode_record(0, &f)).unwrap();
    }
    log.sync().unwrap();
    let mut job = open_job(dir);
    let mut done = 0;
    while done < restart_at {
        done += job
            .run_batch(&log, 5.min(restart_at - done))
            .unwrap()
            .records;
    }
    drop(job); // a crash after the last checkpoint: records since replay
    let mut job = open_job(dir);
    while job.run_batch(&log, 64).unwrap().records > 0 {}
    assert_eq!(
        job.decoder().refused().len(),
        0,
        "{:?}",
        job.decoder().refused()
    );
    job.pipeline_mut().finish().unwrap();
    let store = FileResultStore::open(dir.join("results")).unwrap();
    let mut hrv = BTreeMap::new();
    let mut ids = std::collections::BTreeSet::new();
    for (id, payload) in store.all().unwrap() {
        assert!(ids.insert(id.clone()), "result {id} stored twice");
        let v: Value = serde_json::from_slice(&payload).unwrap();
        if v["type"] == "hrv" {
            let parts: Vec<&str> = id.split('/').collect();
            assert_eq!(parts[0], "RR-100");
            let s: i64 = parts[1].parse().unwrap();
            assert_eq!(parts[2].parse::<i64>().unwrap(), s + W);
            hrv.insert(s, v);
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    hrv
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

#[test]
fn rr_frames_give_the_hrv_of_the_direct_computation() {
    let Some(segs) = segments() else {
        return;
    };
    let frames = frames(&segs);
    assert!(frames.len() > 150, "{} frames", frames.len());
    let dir = std::env::temp_dir().join(format!("aorta-rr-frames-{}", std::process::id()));
    let got = run(&dir, &frames, frames.len() / 2);

    // Reference: every N→N interval (a, b), window [s, s + W) holding both beats.
    let intervals: Vec<(i64, i64)> = segs
        .iter()
        .flat_map(|(t0, rr)| {
            let mut t = *t0;
            rr.iter()
                .map(move |&r| {
                    let a = t;
                    t += i64::from(r);
                    (a, t)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let first = intervals.first().unwrap().0;
    let last = intervals.last().unwrap().1;
    let mut engine = HrvEngine::new();
    let mut s = first.div_euclid(W) * W;
    let mut want = 0;
    while s + W <= last + 1 {
        let rr: Vec<f64> = intervals
            .iter()
            .filter(|(a, b)| *a >= s && *b < s + W)
            .map(|(a, b)| (b - a) as f64 / 1000.0)
            .collect();
        let r = NnSeries::from_rr(&rr, &ArtefactRule::default())
            .and_then(|nn| engine.report(&nn, &HrvOptions::default()))
            .unwrap();
        let g = got
            .get(&s)
            .unwrap_or_else(|| panic!("no HRV window at {s}"));
        let num = |k: &str| g[k].as_f64().unwrap_or(f64::NAN);
        assert_eq!(g["n_nn"].as_u64().unwrap() as usize, r.n_nn, "window {s}");
        for (k, v) in [
            ("mean_nn", r.time.mean_nn),
            ("sdnn", r.time.sdnn),
            ("rmssd", r.time.rmssd),
            ("pnn50", r.time.pnn50),
            ("lf", r.freq.lf),
            ("hf", r.freq.hf),
            ("lf_hf", r.freq.lf_hf),
            ("sd1", r.nonlinear.sd1),
            ("sd2", r.nonlinear.sd2),
        ] {
            assert!(
                close(num(k), v),
                "window {s} {k}: job {} direct {v}",
                num(k)
            );
        }
        want += 1;
        s += W;
    }
    // Record 100 is 30:06 long: six full 5-minute windows.
    assert!(want >= 6, "{want} windows");
    assert_eq!(got.len(), want, "windows: job {} direct {want}", got.len());
}

#[test]
fn a_gap_is_not_an_interval() {
    // Two segments 20 s apart: HRV uses the intervals of each, never the gap.
    let dir = std::env::temp_dir().join(format!("aorta-rr-gap-{}", std::process::id()));
    let t0 = 1_800_000_000_000_000 - 1_800_000_000_000_000 % W;
    let a: Vec<i32> = vec![800_000; 200]; // 160 s at 75 bpm
    let b: Vec<i32> = vec![780_000; 200]; // from 180 s, 156 s at 77 bpm
    let frames = vec![(t0, a.clone()), (t0 + 180_000_000, b.clone())];
    let got = run(&dir, &frames, 1);
    // Window [t0, t0 + 300 s): all of `a`, and the 153 intervals of `b`
    // that end before 300 s.
    let rr: Vec<f64> = a
        .iter()
        .chain(&b[..153])
        .map(|&r| f64::from(r) / 1000.0)
        .collect();
    let r = HrvEngine::new()
        .report(
            &NnSeries::from_rr(&rr, &ArtefactRule::default()).unwrap(),
            &HrvOptions::default(),
        )
        .unwrap();
    let w = got.get(&t0).unwrap();
    assert_eq!(w["n_nn"].as_u64().unwrap() as usize, r.n_nn);
    assert!(close(w["mean_nn"].as_f64().unwrap(), r.time.mean_nn));
    assert!(close(w["rmssd"].as_f64().unwrap(), r.time.rmssd));
    assert!(r.time.mean_nn < 800.0);
}

#[test]
fn an_overlapping_frame_adds_no_beat_twice_and_no_false_interval() {
    let dir = std::env::temp_dir().join(format!("aorta-rr-overlap-{}", std::process::id()));
    let t0 = 1_800_000_000_000_000 - 1_800_000_000_000_000 % W;
    // 240 s of beats, then a frame restarting 40 s earlier (200 s .. 360 s):
    // its beats up to 240 s are already held; the first new one (240.8 s)
    // starts a segment.
    let frames = vec![
        (t0, vec![800_000; 300]),
        (t0 + 200_000_000, vec![800_000; 200]),
    ];
    let got = run(&dir, &frames, 1);
    let w = got.get(&t0).unwrap();
    // 300 intervals of the first frame, then 240.8 s .. 299.2 s: 73.
    assert_eq!(w["n_nn"].as_u64().unwrap(), 373, "{w}");
    assert!(close(w["mean_nn"].as_f64().unwrap(), 800.0));
}
