//! `aorta demo` end to end (the README's main command), small: two devices,
//! 40 s of signal each at full speed, through the real server, broker and
//! worker processes. Checks the JSON summary's contract and its arithmetic,
//! and that the clinician could open every result.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

const AORTA: &str = env!("CARGO_BIN_EXE_aorta");
const MITDB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/mitdb");

fn demo(db: &str) -> serde_json::Value {
    let o = Command::new(AORTA)
        .args([
            "demo",
            "--devices",
            "2",
            "--duration",
            "40",
            "--speed",
            "max",
            "--json",
            "--db",
            db,
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "demo failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn check(v: &serde_json::Value) {
    assert_eq!(v["devices"], 2);
    // 2 devices × 40 s × 360 Hz × 2 channels, in 1-s frames.
    assert_eq!(v["samples"], 2 * 40 * 360 * 2);
    assert_eq!(v["frames"], 2 * 40);
    assert!(v["events"].as_u64().is_some());
    assert!(v["samples_per_s"].as_f64().unwrap() > 0.0);
    let (p50, p99) = (
        v["latency_ms"]["p50"].as_f64().unwrap(),
        v["latency_ms"]["p99"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p99 >= p50, "{v}");
    // Heart rate every 5 s per device (10-s windows): about 7 each.
    assert!(v["results"].as_u64().unwrap() >= 12, "{v}");
    assert_eq!(v["results_unopenable"], 0);
    assert_eq!(v["hardware_protected"], false);
}

#[test]
fn demo_runs_on_the_shipped_sample() {
    let v = demo("/nonexistent/mitdb");
    assert_eq!(v["sample_data"], true);
    check(&v);
}

#[test]
fn demo_runs_on_mitdb() {
    if !std::path::Path::new(MITDB).join("RECORDS").exists() {
        eprintln!("SKIP: {MITDB} absent (the shipped-sample test still ran)");
        return;
    }
    let v = demo(MITDB);
    assert_eq!(v["sample_data"], false);
    check(&v);
}
