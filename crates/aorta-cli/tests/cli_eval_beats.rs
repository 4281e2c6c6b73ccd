//! `aorta eval beats` and `aorta eval rhythm` (issue 15, items 1–2): JSON
//! shape, the leave-one-record-out protocol, and the feature dump the model
//! is trained on.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap or out-of-range index is the failure report"
)]
mod common;

use common::{Run, shared_data};

#[test]
fn eval_beats_json_is_leave_one_record_out() {
    let Some(db) = shared_data("mitdb", "this test") else {
        return;
    };
    let out = Run::new([
        "eval", "beats", "--json", "--record", "119", "--record", "100", "--db",
    ])
    .arg(&db)
    .ok();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["protocol"], "leave-one-record-out");
    for (row, name) in v["records"].as_array().unwrap().iter().zip(["119", "100"]) {
        assert_eq!(row["record"], name);
        assert_eq!(row["model_left_out"], name, "scored by a model that saw it");
    }
    for c in ["N", "S", "V", "F"] {
        assert!(v["classes"][c].get("se").is_some(), "{c}");
        assert!(v["classes"][c].get("ppv").is_some(), "{c}");
    }
    // 119: 444 V beats in bigeminy and trigeminy.
    assert!(v["classes"]["V"]["se"].as_f64().unwrap() > 0.9, "{v}");
    assert!(v["gross"]["detection_se"].as_f64().unwrap() > 0.99);
}

#[test]
fn eval_beats_dump_features_has_labels_and_every_feature() {
    let Some(db) = shared_data("mitdb", "this test") else {
        return;
    };
    let out = Run::new([
        "eval",
        "beats",
        "--record",
        "119",
        "--dump-features",
        "-",
        "--db",
    ])
    .arg(&db)
    .ok();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header.len(), 3 + aorta_signal::beats::FEATURES);
    assert_eq!(&header[..3], ["record", "sample", "label"]);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.len() > 1500, "{}", rows.len());
    assert!(
        rows.iter()
            .all(|r| r.len() == header.len() && r[0] == "119")
    );
    assert!(rows.iter().filter(|r| r[2] == "V").count() > 400);
}

#[test]
fn eval_rhythm_json_has_af_vt_and_a_place_for_vfl() {
    let Some(db) = shared_data("mitdb", "this test") else {
        return;
    };
    let out = Run::new(["eval", "rhythm", "--json", "--record", "205", "--db"])
        .arg(&db)
        .ok();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vt = &v["rhythms"]["VT"];
    assert!(vt["reference"].as_u64().unwrap() > 0, "{v}");
    assert!(vt["se"].as_f64().unwrap() > 0.5, "{v}");
    assert_eq!(v["rhythms"]["VFL"]["detected_here"], false);
    assert!(v["rhythms"]["VFL"]["se"].is_null());
    assert!(v["rhythms"]["AF"].get("duration_se").is_some());
}

/// `aorta eval af --through-worker` scores the live worker's ECG operator:
/// on these records its AF segments are the offline evaluation's (one code
/// path: detector, beat classes, AF without ectopy).
#[test]
fn eval_af_through_the_worker_scores_what_the_worker_emits() {
    let Some(db) = shared_data("mitdb", "this test") else {
        return;
    };
    let run = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec![
            "eval", "af", "--json", "--record", "201", "--record", "119", "--record", "208",
        ];
        args.extend_from_slice(extra);
        args.push("--db");
        let out = Run::new(args).arg(&db).ok();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let live = run(&["--through-worker"]);
    let offline = run(&[]);
    for k in ["tp", "fp", "tn", "fn"] {
        assert_eq!(live[k], offline[k], "{k}: {live} {offline}");
    }
    let rows = live["records"].as_array().unwrap();
    assert_eq!(rows[0]["record"], "201");
    assert!(rows[0]["tp"].as_u64().unwrap() > 10, "201 has AF: {live}");
    for row in &rows[1..] {
        assert_eq!(row["episodes"], serde_json::json!([]), "no AF on {row}");
    }
    // REFERENCE.csv strips are not records the worker can be run over here.
    if let Some(c) = shared_data("challenge-2017", "this test") {
        let out = Run::new(["eval", "af", "--through-worker", "--db"])
            .arg(&c)
            .output();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--through-worker"),
            "{out:?}"
        );
    }
}
