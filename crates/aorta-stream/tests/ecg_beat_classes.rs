//! Beat classes in the live ECG operator, on real MIT-BIH records (skipped,
//! visibly, without `../shared/data/mitdb`): ventricular tachycardia,
//! bigeminy and AF without ectopy through the worker's own operator, the
//! same events as the offline evaluation, checkpoints from before the beat
//! classifier, and the state a device costs.
//!
//! Every record here is classified by the model trained without it
//! (`model::held_out`): the figures are inter-patient, as `aorta eval` scores.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::path::PathBuf;

use aorta_signal::beats::model;
use aorta_signal::rhythm::{RhythmConfig, RhythmEvent, RhythmEventKind as K};
use aorta_signal::wfdb::Record;
use aorta_stream::ecg::{EcgChunk, EcgConfig, EcgOperator, EcgResult};
use aorta_stream::{Engine, EngineConfig, Output};

const T0: i64 = 1_767_225_600_000_000;

fn db() -> Option<PathBuf> {
    let db = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mitdb");
    if db.join("RECORDS").is_file() {
        Some(db)
    } else {
        eprintln!(
            "SKIPPED: {} not found (the shared MIT-BIH data is absent)",
            db.display()
        );
        None
    }
}

struct Run {
    /// Rhythm events, times in seconds from the record's start.
    events: Vec<RhythmEvent>,
    /// Largest engine snapshot seen (one device), bytes.
    max_snapshot: usize,
}

/// Record `name`'s first lead through the operator in 1-s frames; with
/// `strip_classifier_at`, the state is checkpointed there, the classifier
/// removed from it (a checkpoint written before it existed) and restored.
fn run(
    db: &std::path::Path,
    name: &str,
    seconds: Option<f64>,
    strip_classifier_at: Option<usize>,
) -> Run {
    let rec = Record::read(db.join(name)).unwrap();
    let fs = rec.fs();
    let mut x = rec.physical(0).unwrap();
    if let Some(s) = seconds {
        x.truncate((s * fs) as usize);
    }
    let new = || {
        Engine::<String, EcgOperator>::new(
            EcgOperator::new(EcgConfig::default()).with_beat_model(model::held_out(name)),
            EngineConfig::default(),
        )
    };
    let mut e = new();
    let mut out: Vec<Output<String, EcgResult>> = Vec::new();
    let chunk = fs as usize;
    let mut max_snapshot = 0;
    for (i, c) in x.chunks(chunk).enumerate() {
        if i % 60 == 59 {
            max_snapshot = max_snapshot.max(e.snapshot().unwrap().len());
        }
        if Some(i) == strip_classifier_at {
            let text = String::from_utf8(e.snapshot().unwrap()).unwrap();
            assert!(text.contains("\"classifier\""));
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            // As main's code wrote it before the classifier: no
            // `classifier`, the signal-quality rings as number arrays.
            fn strip(v: &mut serde_json::Value) {
                use base64::Engine as _;
                match v {
                    serde_json::Value::Object(m) => {
                        m.remove("classifier");
                        if let Some(q) = m.get_mut("quality").and_then(|q| q.as_object_mut()) {
                            for k in ["ring", "ring_qrs", "ring_hf"] {
                                let b = base64::engine::general_purpose::STANDARD
                                    .decode(q[k].as_str().unwrap())
                                    .unwrap();
                                let nums: Vec<f64> = b
                                    .chunks_exact(8)
                                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                                    .collect();
                                q.insert(k.to_string(), serde_json::json!(nums));
                            }
                        }
                        m.values_mut().for_each(strip);
                    }
                    serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
                    _ => {}
                }
            }
            strip(&mut v);
            let old = serde_json::to_vec(&v).unwrap();
            assert!(!String::from_utf8_lossy(&old).contains("\"classifier\""));
            e = new();
            e.restore(&old).unwrap();
        }
        let t = T0 + ((i * chunk) as f64 * 1e6 / fs).round() as i64;
        e.push(
            format!("dev-{name}"),
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
    let mut events: Vec<RhythmEvent> = out
        .iter()
        .filter_map(|o| match &o.value {
            EcgResult::Rhythm(ev) => Some(RhythmEvent {
                time_s: (o.start - T0) as f64 / 1e6,
                kind: ev.kind,
            }),
            _ => None,
        })
        .collect();
    events.sort_by(|a, b| a.time_s.total_cmp(&b.time_s));
    Run {
        events,
        max_snapshot,
    }
}

fn count(events: &[RhythmEvent], f: impl Fn(&K) -> bool) -> usize {
    events.iter().filter(|e| f(&e.kind)).count()
}

/// The events of the beat-class rhythms and AF, ordered by time (to the
/// ms) and kind.
fn class_events(events: &[RhythmEvent]) -> Vec<RhythmEvent> {
    let mut v: Vec<RhythmEvent> = events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                K::AfOnset
                    | K::AfOffset
                    | K::VtOnset { .. }
                    | K::VtOffset
                    | K::VentricularRun { .. }
                    | K::BigeminyOnset { .. }
                    | K::BigeminyOffset
                    | K::TrigeminyOnset { .. }
                    | K::TrigeminyOffset
            )
        })
        .copied()
        .collect();
    let key = |e: &RhythmEvent| {
        let name = format!("{:?}", e.kind);
        let name = name.split([' ', '{']).next().unwrap_or("").to_string();
        ((e.time_s * 1e3).round() as i64, name)
    };
    v.sort_by_key(key);
    v
}

/// The worker's AF, VT, ventricular-run, bigeminy and trigeminy events are
/// the offline evaluation's (`aorta eval rhythm|af`): one code path, the
/// same beats, the same classes; only the time base differs (the worker
/// dates beats in whole µs of wall-clock time).
#[test]
fn the_live_operator_gives_the_offline_evaluations_events() {
    let Some(db) = db() else { return };
    for name in ["119", "201", "203", "208"] {
        let live = class_events(&run(&db, name, None, None).events);
        let (offline, _) = aorta_signal::rhythm_eval::record_events(
            &db,
            name,
            &aorta_signal::eval::EvalOptions::default(),
            &RhythmConfig::default(),
        )
        .unwrap();
        let offline = class_events(&offline);
        assert!(!offline.is_empty(), "{name}");
        assert_eq!(live.len(), offline.len(), "{name}: {live:?}\n{offline:?}");
        for (a, b) in live.iter().zip(&offline) {
            assert!((a.time_s - b.time_s).abs() < 1e-3, "{name}: {a:?} {b:?}");
            match (a.kind, b.kind) {
                (K::VtOnset { confidence: x }, K::VtOnset { confidence: y })
                | (K::BigeminyOnset { confidence: x }, K::BigeminyOnset { confidence: y })
                | (K::TrigeminyOnset { confidence: x }, K::TrigeminyOnset { confidence: y }) => {
                    assert!((x - y).abs() < 1e-9, "{name}: {a:?} {b:?}")
                }
                (x, y) => assert_eq!(
                    std::mem::discriminant(&x),
                    std::mem::discriminant(&y),
                    "{name}: {a:?} {b:?}"
                ),
            }
        }
    }
}

/// 119 (ventricular bigeminy and trigeminy) raises bigeminy; 203 and 205
/// (episodes of ventricular tachycardia) raise VT, each with a confidence.
#[test]
fn bigeminy_on_119_and_vt_on_203_and_205() {
    let Some(db) = db() else { return };
    let r = run(&db, "119", None, None);
    let big: Vec<f64> = r
        .events
        .iter()
        .filter_map(|e| match e.kind {
            K::BigeminyOnset { confidence } => Some(confidence),
            _ => None,
        })
        .collect();
    eprintln!("119: {} bigeminy onsets", big.len());
    assert!(!big.is_empty());
    assert!(big.iter().all(|c| *c > 0.5 && *c <= 1.0), "{big:?}");
    assert_eq!(
        big.len(),
        count(&r.events, |k| matches!(k, K::BigeminyOffset)),
        "every bigeminy ends"
    );
    for name in ["203", "205"] {
        let r = run(&db, name, None, None);
        let vt: Vec<f64> = r
            .events
            .iter()
            .filter_map(|e| match e.kind {
                K::VtOnset { confidence } => Some(confidence),
                _ => None,
            })
            .collect();
        eprintln!("{name}: {} VT onsets", vt.len());
        assert!(!vt.is_empty(), "{name}");
        assert!(vt.iter().all(|c| *c > 0.5 && *c <= 1.0), "{vt:?}");
        assert_eq!(vt.len(), count(&r.events, |k| matches!(k, K::VtOffset)));
    }
}

/// The target: no AF alarm on records without AF (106, 119, 208:
/// ventricular ectopy, bigeminy, trigeminy, fusion beats), through the live
/// operator.
#[test]
fn no_af_alarm_on_106_119_208() {
    let Some(db) = db() else { return };
    for name in ["106", "119", "208"] {
        let r = run(&db, name, None, None);
        let af = count(&r.events, |k| matches!(k, K::AfOnset));
        assert_eq!(af, 0, "{name}: {:?}", r.events);
    }
}

/// A checkpoint written before the operator classified beats (no
/// `classifier` key, the signal-quality rings as arrays of numbers: main's
/// form before this change) still loads: the classifier starts at the next
/// chunk, and bigeminy is still found after it.
#[test]
fn checkpoints_from_before_the_beat_classifier_still_load() {
    let Some(db) = db() else { return };
    let whole = run(&db, "119", Some(900.0), None);
    let restored = run(&db, "119", Some(900.0), Some(300));
    let before = |r: &Run| -> Vec<RhythmEvent> {
        r.events
            .iter()
            .filter(|e| e.time_s < 290.0)
            .copied()
            .collect()
    };
    assert_eq!(before(&restored), before(&whole));
    let later = |r: &Run| {
        r.events
            .iter()
            .filter(|e| e.time_s > 330.0 && matches!(e.kind, K::BigeminyOnset { .. }))
            .count()
    };
    eprintln!(
        "119, 900 s: bigeminy onsets after 330 s: {} uninterrupted, {} restored from a checkpoint without the classifier at 300 s",
        later(&whole),
        later(&restored)
    );
    assert!(later(&whole) > 0);
    assert!(later(&restored) > 0);
}

/// What a device costs in a checkpoint (JSON), measured on 119: the whole
/// engine with one device, and the beat classifier's part of it.
#[test]
fn the_state_of_a_device_is_bounded() {
    let Some(db) = db() else { return };
    let r = run(&db, "119", Some(600.0), None);
    let rec = Record::read(db.join("119")).unwrap();
    let fs = rec.fs();
    let x = rec.physical(0).unwrap();
    let mut e = Engine::<String, EcgOperator>::new(
        EcgOperator::new(EcgConfig::default()),
        EngineConfig::default(),
    );
    let mut out = Vec::new();
    for (i, c) in x[..(300.0 * fs) as usize].chunks(fs as usize).enumerate() {
        e.push(
            "dev".into(),
            T0 + i as i64 * 1_000_000,
            EcgChunk {
                fs,
                samples: c.to_vec(),
                leads_uv: Vec::new(),
            }
            .into(),
            &mut out,
        );
    }
    let snap = e.snapshot().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&snap).unwrap();
    let text = serde_json::to_string(&v).unwrap();
    let at = text.find("\"classifier\":").unwrap();
    let classifier: serde_json::Value = serde_json::Deserializer::from_str(&text[at + 13..])
        .into_iter()
        .next()
        .unwrap()
        .unwrap();
    let c_len = serde_json::to_string(&classifier).unwrap().len();
    eprintln!(
        "one 360-Hz device: checkpoint {} bytes (largest over 600 s: {}), of which the beat classifier {} bytes",
        snap.len(),
        r.max_snapshot,
        c_len
    );
    assert!(c_len < 30_000, "{c_len}");
    assert!(r.max_snapshot < 120_000, "{}", r.max_snapshot);
}

/// A checkpoint restores to exactly the results of an uninterrupted run
/// (every f64 of the state read back bit for bit: the beat confidences in
/// the rhythm monitor differed in the last digit before `float_roundtrip`),
/// also when written before the compact form of the sample buffers (the
/// signal-quality rings as JSON arrays of numbers).
#[test]
fn checkpoints_with_sample_buffers_as_number_arrays_still_load() {
    use base64::Engine as _;
    let Some(db) = db() else { return };
    let rec = Record::read(db.join("119")).unwrap();
    let fs = rec.fs();
    let x = &rec.physical(0).unwrap()[..(240.0 * fs) as usize];
    let new = || {
        Engine::<String, EcgOperator>::new(
            EcgOperator::new(EcgConfig::default()),
            EngineConfig::default(),
        )
    };
    let feed = |e: &mut Engine<String, EcgOperator>, from: usize, to: usize, out: &mut Vec<_>| {
        for i in from..to {
            let c = &x[i * 360..(i + 1) * 360];
            e.push(
                "dev".to_string(),
                T0 + i as i64 * 1_000_000,
                EcgChunk {
                    fs,
                    samples: c.to_vec(),
                    leads_uv: Vec::new(),
                }
                .into(),
                out,
            );
        }
    };
    let mut whole = new();
    let mut a: Vec<Output<String, EcgResult>> = Vec::new();
    feed(&mut whole, 0, 240, &mut a);
    whole.finish(&mut a);

    let mut restored = Vec::new();
    for rewrite in [false, true] {
        let mut first = new();
        let mut b = Vec::new();
        feed(&mut first, 0, 120, &mut b);
        // Rewritten as text (a detour through `serde_json::Value` would round
        // the other numbers of the state).
        let mut text = String::from_utf8(first.snapshot().unwrap()).unwrap();
        let q = text.find("\"quality\":").unwrap();
        for k in ["ring", "ring_qrs", "ring_hf"]
            .into_iter()
            .filter(|_| rewrite)
        {
            let key = format!("\"{k}\":\"");
            let at = q + text[q..].find(&key).unwrap() + key.len();
            let len = text[at..].find('"').unwrap();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&text[at..at + len])
                .unwrap();
            let nums: Vec<f64> = bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            assert!(nums.len() > 360, "{k}");
            text.replace_range(at - 1..at + len + 1, &serde_json::to_string(&nums).unwrap());
        }
        assert_eq!(text[q..].contains("\"ring_hf\":\""), !rewrite);
        let mut second = new();
        second.restore(text.as_bytes()).unwrap();
        feed(&mut second, 120, 240, &mut b);
        second.finish(&mut b);
        restored.push(b);
    }
    let text = |o: &[Output<String, EcgResult>]| {
        let mut v: Vec<String> = o
            .iter()
            .map(|x| serde_json::to_string(x).unwrap())
            .collect();
        v.sort();
        v
    };
    let a = text(&a);
    for b in &restored {
        let b = text(b);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert!(x == y, "first difference:\n  {:.300}\n  {:.300}", x, y);
        }
    }
}
