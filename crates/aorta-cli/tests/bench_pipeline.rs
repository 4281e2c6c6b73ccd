//! `aorta bench pipeline --json` keeps the JSON contract, both
//! pipelines produce the same results, and the secure ones open with the
//! clinician's identity to exactly the plain ones.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use std::collections::HashMap;
use std::path::Path;

use aorta_base::hex::encode as to_hex;
use aorta_crypto::results::{ClinicianIdentity, open_envelope, sealed_result_session_id};
use aorta_stream::results::FileResultStore;
use common::{Run, shared_data};

const SUBSCRIBER: &str = "bench-clinician";

fn run(db: &Path, keep: &Path, devices: &str, seconds: &str) -> serde_json::Value {
    Run::new([
        "bench",
        "pipeline",
        "--devices",
        devices,
        "--seconds",
        seconds,
    ])
    .args([
        "--paced-seconds",
        "3",
        "--checkpoint-secs",
        "0.05",
        "--rounds",
        "2",
    ])
    .arg("--db")
    .arg(db)
    .arg("--keep")
    .arg(keep)
    .arg("--json")
    .json()
}

fn check_contract(v: &serde_json::Value, devices: u64) {
    for p in ["secure", "plain"] {
        for k in ["samples_per_s", "p50_ms", "p99_ms"] {
            assert!(v[p][k].as_f64().unwrap() > 0.0, "{p}.{k} in {v}");
        }
        assert_eq!(v[p]["refused"], 0, "{p}");
        assert_eq!(v[p]["paced"]["refused"], 0, "{p}");
    }
    let overhead = v["overhead"].as_f64().unwrap();
    let ratio = v["plain"]["samples_per_s"].as_f64().unwrap()
        / v["secure"]["samples_per_s"].as_f64().unwrap();
    assert!((overhead - ratio).abs() < 1e-9 * ratio);
    assert_eq!(v["devices"], devices);
    assert_eq!(
        v["realtime_samples_per_s"].as_f64().unwrap(),
        devices as f64 * 720.0
    );
    // The same work in both pipelines.
    assert_eq!(v["secure"]["samples"], v["plain"]["samples"]);
    assert_eq!(v["secure"]["frames"], v["plain"]["frames"]);
    let results = v["secure"]["results"].as_u64().unwrap();
    assert!(results > 0, "{v}");
    assert_eq!(v["plain"]["results"].as_u64().unwrap(), results);
    assert_eq!(
        v["secure"]["paced"]["results"],
        v["plain"]["paced"]["results"]
    );
    assert_eq!(v["results_identical"], true);
    assert_eq!(v["results_opened"].as_u64().unwrap(), results);
    // Checkpoints were taken (every 0.05 s) in both paced runs (3 s).
    assert!(
        v["secure"]["paced"]["checkpoints"].as_u64().unwrap() > 0,
        "{v}"
    );
    assert!(
        v["plain"]["paced"]["checkpoints"].as_u64().unwrap() > 0,
        "{v}"
    );
    assert_eq!(v["secure"]["rounds"].as_array().unwrap().len(), 2);
}

/// Opens the kept secure results with the kept clinician identity and
/// returns them with the plain ones (`id → JSON`).
fn open_kept(keep: &Path) -> (HashMap<String, Vec<u8>>, HashMap<String, Vec<u8>>) {
    let text = std::fs::read_to_string(keep.join("clinician.key")).unwrap();
    let id = ClinicianIdentity::from_file_text(&text).unwrap();
    // Stored records are signed (`aorta_crypto::auth::SignedResult`); the
    // sealed containers are their payloads.
    let sec: Vec<(String, Vec<u8>)> = FileResultStore::open(keep.join("secure-max/results.log"))
        .unwrap()
        .all()
        .unwrap()
        .into_iter()
        .map(|(k, rec)| {
            let p = aorta_crypto::auth::SignedResult::parse(&rec)
                .unwrap()
                .payload
                .to_vec();
            (k, p)
        })
        .collect();
    let plain: HashMap<String, Vec<u8>> = FileResultStore::open(keep.join("plain-max/results.log"))
        .unwrap()
        .all()
        .unwrap()
        .into_iter()
        .collect();
    let mut sessions = HashMap::new();
    for (k, env) in &sec {
        if k.starts_with(&format!("{SUBSCRIBER}/@session/")) {
            let s = open_envelope(&id, env).unwrap();
            assert_eq!(
                *k,
                format!("{SUBSCRIBER}/@session/{}", to_hex(&s.session_id()))
            );
            sessions.insert(s.session_id(), s);
        }
    }
    assert_eq!(sessions.len(), 1, "one result session per worker run");
    let mut opened = HashMap::new();
    for (k, sealed) in &sec {
        if k.contains("/@session/") {
            continue;
        }
        let rid = k.strip_prefix(&format!("{SUBSCRIBER}/")).unwrap();
        // The stored id says nothing: 48 hex digits, not the device, kind or time.
        assert!(
            rid.len() == 48 && rid.bytes().all(|b| b.is_ascii_hexdigit()),
            "stored id {k} is not opaque"
        );
        let s = &sessions[&sealed_result_session_id(sealed).unwrap()];
        let inner: aorta_worker::seal::IdentifiedResult<serde_json::Value> =
            serde_json::from_slice(&s.open(rid, sealed).unwrap()).unwrap();
        // Compared as JSON values (key order is not part of a result).
        let json = serde_json::to_vec(&inner.result).unwrap();
        // Nothing of the plain JSON is visible in the stored bytes.
        assert!(
            !plain
                .get(&inner.id)
                .is_some_and(|p| sealed.windows(p.len().min(16)).any(|w| p.starts_with(w))),
            "sealed result {k} shows its plaintext"
        );
        opened.insert(inner.id, json);
        // Under another result's id it does not open.
        assert!(s.open(&format!("{rid}x"), sealed).is_err());
    }
    let canon = |m: HashMap<String, Vec<u8>>| -> HashMap<String, Vec<u8>> {
        m.into_iter()
            .map(|(k, v)| {
                let v: serde_json::Value = serde_json::from_slice(&v).unwrap();
                (k, serde_json::to_vec(&v).unwrap())
            })
            .collect()
    };
    (canon(opened), canon(plain))
}

/// The heart rates (bpm) of the plain results; at least one.
fn heart_rates(plain: &HashMap<String, Vec<u8>>) -> Vec<f64> {
    let hr: Vec<f64> = plain
        .values()
        .map(|j| serde_json::from_slice::<serde_json::Value>(j).unwrap())
        .filter(|j| j["type"] == "heart_rate")
        .map(|j| j["bpm"].as_f64().unwrap())
        .collect();
    assert!(!hr.is_empty());
    hr
}

#[test]
fn secure_and_plain_agree_on_mitdb() {
    let Some(db) = shared_data("mitdb", "(the synthetic test still runs)") else {
        return;
    };
    let db = db.as_path();
    let keep = tempfile::tempdir().unwrap();
    let v = run(db, keep.path(), "4", "16");
    assert_eq!(v["data"].as_str().unwrap(), db.display().to_string());
    check_contract(&v, 4);
    let (opened, plain) = open_kept(keep.path());
    assert_eq!(opened, plain);
    // Heart-rate windows of real records carry plausible rates.
    let hr = heart_rates(&plain);
    assert!(hr.iter().all(|b| (30.0..200.0).contains(b)), "{hr:?}");
}

#[test]
fn synthetic_fallback_is_labelled_and_analysable() {
    let keep = tempfile::tempdir().unwrap();
    let absent = keep.path().join("no-such-db");
    let out = keep.path().join("out");
    let v = run(&absent, &out, "2", "16");
    assert_eq!(v["data"], "synthetic");
    check_contract(&v, 2);
    let (opened, plain) = open_kept(&out);
    assert_eq!(opened, plain);
    // The synthetic ECG's beats are detected: heart rates near the
    // generator's (58 and 65 bpm for the first two sources).
    let hr = heart_rates(&plain);
    assert!(hr.iter().all(|b| (50.0..75.0).contains(b)), "{hr:?}");
}

/// Issue 12: the event strips (every channel around each rhythm event) and
/// the beat times of each window reach the clinician through the secure
/// worker path (frames opened in the worker, results sealed per
/// subscriber), identical to the plain pipeline's. One AF record (201,
/// both channels), 45 s.
#[test]
fn strips_and_beats_reach_the_clinician_sealed() {
    let Some(db) = shared_data("mitdb", "(the other pipeline tests still ran)") else {
        return;
    };
    if !db.join("201.hea").is_file() {
        eprintln!("SKIP: record 201 is absent from {}", db.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("db");
    std::fs::create_dir(&one).unwrap();
    for ext in ["hea", "dat"] {
        std::fs::copy(
            db.join(format!("201.{ext}")),
            one.join(format!("201.{ext}")),
        )
        .unwrap();
    }
    let keep = dir.path().join("keep");
    let v = run(&one, &keep, "1", "45");
    check_contract(&v, 1);
    let (opened, plain) = open_kept(&keep);
    assert_eq!(opened, plain);
    let of = |t: &str| -> Vec<serde_json::Value> {
        opened
            .values()
            .map(|j| serde_json::from_slice::<serde_json::Value>(j).unwrap())
            .filter(|j| j["type"] == t)
            .collect()
    };
    let strips = of("strip");
    assert!(!strips.is_empty(), "no strip in {} results", opened.len());
    for s in &strips {
        let leads = s["leads"].as_array().unwrap();
        assert_eq!(leads.len(), 2, "both channels");
        assert_eq!(leads[1]["channel"], 1);
        let n = leads[0]["samples_uv"].as_array().unwrap().len();
        assert!(n > 0 && n <= 3600, "{n}");
        assert!(s["event"]["kind"].is_string());
    }
    assert_eq!(of("rhythm").len(), strips.len(), "one strip per event here");
    let beats = of("beats");
    assert!(
        beats
            .iter()
            .any(|b| b["r_peaks_us"].as_array().unwrap().len() > 20),
        "{beats:?}"
    );
    // What a sealed, signed strip costs in the store.
    let largest = FileResultStore::open(keep.join("secure-max/results.log"))
        .unwrap()
        .all()
        .unwrap()
        .into_iter()
        .map(|(_, r)| r.len())
        .max()
        .unwrap();
    let plain_largest = strips
        .iter()
        .map(|s| serde_json::to_vec(s).unwrap().len())
        .max()
        .unwrap();
    eprintln!(
        "largest strip: {plain_largest} bytes of JSON; largest stored record (signed, sealed): {largest} bytes"
    );
}
