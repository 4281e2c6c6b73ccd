//! `aorta demo` end to end (the README's main command), small: two devices,
//! 40 s of signal each at full speed, through the real server, broker and
//! worker processes. Checks the JSON summary's contract and its arithmetic,
//! and that the clinician could open every result.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use common::{Run, shared_data};

/// `aorta demo` of `data`: `["--db", DIR]` or `["--sample"]`.
fn demo(data: &[&str]) -> serde_json::Value {
    Run::new([
        "demo",
        "--devices",
        "2",
        "--duration",
        "40",
        "--speed",
        "max",
        "--json",
    ])
    .args(data)
    .json()
}

fn check(v: &serde_json::Value) {
    assert_eq!(v["devices"], 2);
    // 2 devices × 40 s × 360 Hz × 2 channels, in 1-s frames.
    assert_eq!(v["samples"], 2 * 40 * 360 * 2);
    assert_eq!(v["frames"], 2 * 40);
    assert!(v["events"].as_u64().is_some());
    // The events by kind (as results name them) add up to the events.
    let by_kind = v["events_by_kind"].as_object().unwrap();
    let sum: u64 = by_kind.values().map(|n| n.as_u64().unwrap()).sum();
    assert_eq!(Some(sum), v["events"].as_u64(), "{v}");
    assert!(
        by_kind
            .keys()
            .all(|k| k.chars().all(|c| c.is_ascii_lowercase() || c == '_')),
        "{v}"
    );
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
    assert_eq!(v["interrupted"], false);
}

#[test]
fn demo_runs_on_the_shipped_sample() {
    let v = demo(&["--sample"]);
    assert_eq!(v["sample_data"], true);
    check(&v);
}

#[test]
fn demo_runs_on_mitdb() {
    let Some(mitdb) = shared_data("mitdb", "(the shipped-sample test still ran)") else {
        return;
    };
    let v = demo(&["--db", mitdb.to_str().unwrap()]);
    assert_eq!(v["sample_data"], false);
    check(&v);
}
