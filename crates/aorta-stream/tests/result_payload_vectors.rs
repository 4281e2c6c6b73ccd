//! Test vectors of the `strip` and `beats` result payloads
//! (`docs/results-format.md`, "Event strips", "Beat times"): the sealed
//! plaintext `{"id", "result"}` exactly as the worker writes it (the result
//! re-serialised as a JSON value, so keys sorted). The test fails if the
//! bytes the types produce change, and reads every vector back.
//!
//! `AORTA_WRITE_VECTORS=1 cargo test -p aorta-stream --test result_payload_vectors`
//! rewrites them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test fails by panicking"
)]

use std::path::PathBuf;

use aorta_signal::rhythm::{RhythmEvent, RhythmEventKind};
use aorta_stream::ecg::{BeatTimes, EcgResult, EcgStrip, StripLead};
use serde_json::{Value, json};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/vectors/results")
}

/// The AORR plaintext of result `r` under its own id, as
/// `aorta_worker::seal::SubscriberSealer` builds it.
fn plaintext(id: &str, r: &EcgResult) -> Vec<u8> {
    let payload = serde_json::to_vec(r).unwrap();
    let result: Value = serde_json::from_slice(&payload).unwrap();
    let mut b = canonical(&json!({"id": id, "result": result})).into_bytes();
    b.push(b'\n');
    b
}

/// `v` as compact JSON with every object's keys sorted, whatever serde_json's
/// features: a dependency elsewhere in the workspace turns on its
/// `preserve_order`, which would otherwise change the bytes with the set of
/// packages built.
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", serde_json::to_string(k).unwrap(), canonical(&m[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        leaf => serde_json::to_string(leaf).unwrap(),
    }
}

/// What a reader takes from a vector (`IdentifiedResult<EcgResult>`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "the id is read, not checked here")]
struct Identified {
    id: String,
    result: EcgResult,
}

const T: i64 = 1_767_225_622_502_778; // an AF onset, µs since the Unix epoch

fn vectors() -> Vec<(&'static str, &'static str, String, EcgResult)> {
    let event = RhythmEvent {
        time_s: T as f64 / 1e6,
        kind: RhythmEventKind::AfOnset,
    };
    // Eight samples per lead stand for the 3,600 of a 10-s strip at 360 Hz.
    let strip = EcgStrip {
        event,
        fs: 360.0,
        first_sample_us: T - 5_000_000,
        leads: vec![
            StripLead {
                channel: 0,
                samples_uv: vec![-120, -115, -95, 310, 1450, 620, -210, -150],
            },
            StripLead {
                channel: 1,
                samples_uv: vec![35, 40, 30, -260, -880, -300, 55, 40],
            },
        ],
    };
    let pause = EcgStrip {
        event: RhythmEvent {
            time_s: 1_767_225_700.0,
            kind: RhythmEventKind::Pause { duration_s: 3.5 },
        },
        fs: 250.0,
        first_sample_us: 1_767_225_695_000_000,
        leads: vec![StripLead {
            channel: 0,
            samples_uv: vec![0, 5, -5],
        }],
    };
    vec![
        (
            "payload-strip.json",
            "a strip of two channels around an AF onset (kind code 0)",
            format!("DEMO-0003/{}/{}", T - 5_000_000, T + 5_000_001),
            EcgResult::Strip(strip),
        ),
        (
            "payload-strip-pause.json",
            "a one-channel strip of a pause (kind code 6: the window ends 7 µs after t + 5 s)",
            "DEMO-0004/1767225695000000/1767225705000007".into(),
            EcgResult::Strip(pause),
        ),
        (
            "payload-beats.json",
            "the beat times of a 30-s window",
            "DEMO-0003/1767225600000000/1767225630000000".into(),
            EcgResult::Beats(BeatTimes {
                r_peaks_us: vec![
                    1_767_225_600_402_778,
                    1_767_225_601_238_889,
                    1_767_225_629_997_222,
                ],
            }),
        ),
        (
            "payload-beats-empty.json",
            "a 30-s window without a beat",
            "DEMO-0003/1767225630000000/1767225660000000".into(),
            EcgResult::Beats(BeatTimes { r_peaks_us: vec![] }),
        ),
    ]
}

/// Payloads a reader must refuse: what the types do not describe.
fn refused() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        (
            "payload-strip-float-samples.json",
            "samples are whole µV, not floats",
            r#"{"id":"DEMO-0003/0/10000001","result":{"event":{"kind":"af_onset","time_s":5.0},"first_sample_us":0,"fs":360.0,"leads":[{"channel":0,"samples_uv":[1.5]}],"type":"strip"}}"#,
        ),
        (
            "payload-strip-no-leads.json",
            "leads is required",
            r#"{"id":"DEMO-0003/0/10000001","result":{"event":{"kind":"af_onset","time_s":5.0},"first_sample_us":0,"fs":360.0,"type":"strip"}}"#,
        ),
        (
            "payload-strip-negative-channel.json",
            "a strip's channel is an unsigned 16-bit index",
            r#"{"id":"DEMO-0003/0/10000001","result":{"event":{"kind":"af_onset","time_s":5.0},"first_sample_us":0,"fs":360.0,"leads":[{"channel":-1,"samples_uv":[1]}],"type":"strip"}}"#,
        ),
        (
            "payload-beats-text-times.json",
            "beat times are integers (µs)",
            r#"{"id":"DEMO-0003/0/30000000","result":{"r_peaks_us":["1767225600402778"],"type":"beats"}}"#,
        ),
    ]
}

#[test]
fn strip_and_beats_payload_vectors() {
    let d = dir();
    let write = std::env::var_os("AORTA_WRITE_VECTORS").is_some();
    let mut index = Vec::new();
    for (file, what, id, r) in vectors() {
        let bytes = plaintext(&id, &r);
        if write {
            std::fs::write(d.join(file), &bytes).unwrap();
        }
        let stored = std::fs::read(d.join(file)).unwrap();
        assert!(
            stored == bytes,
            "{file} differs from what the types write: the payload format changed (update docs/results-format.md and rewrite the vectors)"
        );
        let back: Identified = serde_json::from_slice(&stored).unwrap();
        assert_eq!(back.result, r, "{file} reads back");
        assert_eq!(back.id, id);
        index.push(json!({"file": file, "expect": "ok", "what": what}));
    }
    for (file, what, text) in refused() {
        let bytes = format!("{text}\n").into_bytes();
        if write {
            std::fs::write(d.join(file), &bytes).unwrap();
        }
        let stored = std::fs::read(d.join(file)).unwrap();
        assert_eq!(stored, bytes, "{file}");
        assert!(
            serde_json::from_slice::<Identified>(&stored).is_err(),
            "{file} must be refused: {what}"
        );
        index.push(json!({"file": file, "expect": "refused", "what": what}));
    }
    let index = json!({
        "description": "plaintexts of sealed `strip` and `beats` results (docs/results-format.md, \"Event strips\", \"Beat times\"); written by crates/aorta-stream/tests/result_payload_vectors.rs",
        "vectors": index,
    });
    let mut text = serde_json::to_string_pretty(&index).unwrap();
    text.push('\n');
    if write {
        std::fs::write(d.join("payloads.json"), &text).unwrap();
    }
    // Compared as JSON: the index's key order follows serde_json's features.
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("payloads.json")).unwrap()).unwrap();
    assert_eq!(stored, index, "payloads.json differs from the generator");
}
