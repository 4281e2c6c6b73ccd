//! `aorta bench ingest --json` keeps its contract: both phases measured
//! with acknowledged genuine frames, the server's memory read, the hostile
//! clients assigned in turn and each of their attempts accounted for
//! exactly once. No threshold on speed: the figures belong in the notes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use common::Run;
use serde_json::Value;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn bench_ingest_measures_both_phases_and_what_each_hostile_client_achieved() {
    let v = Run::new(["bench", "ingest", "--devices", "4", "--hostile", "4"])
        .args(["--seconds", "2", "--json"])
        .json();
    assert_eq!(v["devices"], 4, "{v}");
    assert_eq!(v["hostile_total"], 4, "{v}");
    assert_eq!(v["server_survived"], true, "{v}");
    let idle = u(&v["rss_idle_bytes"]);
    assert!(idle > 1 << 20, "the server's memory was read: {v}");
    for p in ["clean", "hostile"] {
        let ph = &v[p];
        let acked = u(&ph["frames_acked"]);
        assert!(acked > 0, "{p}: frames acknowledged in {v}");
        assert!(acked <= u(&ph["frames_offered"]), "{p} in {v}");
        assert_eq!(u(&ph["refused"]), 0, "{p}: a genuine frame refused in {v}");
        let fps = f(&ph["frames_per_s"]);
        assert!(
            (fps - acked as f64 / f(&ph["seconds"])).abs() < 1e-6 * fps,
            "{p}: frames_per_s is acked / seconds in {v}"
        );
        // 4 devices offer 4 frames/s: more would be frames counted twice.
        assert!(fps <= 4.0 * 1.5, "{p} in {v}");
        let (p50, p99, max) = (f(&ph["p50_ms"]), f(&ph["p99_ms"]), f(&ph["max_ms"]));
        assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{p} in {v}");
        // The server's part of a frame's latency is within the device's.
        let (a50, a99) = (f(&ph["ack_p50_ms"]), f(&ph["ack_p99_ms"]));
        assert!(0.0 < a50 && a50 <= a99 && a99 <= max, "{p} in {v}");
        assert!(
            a50 <= p50 && a99 <= p99,
            "{p}: ack latency within the device's in {v}"
        );
        let peak = u(&ph["peak_rss_bytes"]);
        assert!(
            peak >= u(&ph["rss_end_bytes"]) && peak > 1 << 20,
            "{p} in {v}"
        );
        assert!(peak < 1 << 40, "{p} in {v}");
    }
    let ratio = f(&v["hostile"]["p99_ms"]) / f(&v["clean"]["p99_ms"]);
    assert!((f(&v["p99_ratio"]) - ratio).abs() < 1e-9 * ratio, "{v}");
    let ack = f(&v["hostile"]["ack_p99_ms"]) / f(&v["clean"]["ack_p99_ms"]);
    assert!((f(&v["ack_p99_ratio"]) - ack).abs() < 1e-9 * ack, "{v}");

    // Four clients: the first four kinds, one each.
    let kinds = ["checkpoint_put", "h2_streams", "slow_loris", "idle_h2"];
    let clients = v["hostile_clients"].as_object().unwrap();
    assert_eq!(clients.len(), 4, "{v}");
    let out = &v["hostile_outcomes"];
    for k in kinds {
        assert_eq!(clients[k], 1, "{k} in {v}");
        let o = &out[k];
        assert_eq!(o["clients"], 1, "{k} in {v}");
        let attempts = u(&o["attempts"]);
        assert!(attempts >= 1, "{k} attacked in {v}");
        let answered: u64 = o["answered"].as_object().unwrap().values().map(u).sum();
        let (closed, refused) = (u(&o["closed_by_server"]), u(&o["connect_failed"]));
        let (open, other) = (u(&o["open_at_end"]), u(&o["other_errors"]));
        // HTTP/2 answers count streams; every other answer ends an attempt.
        let per_attempt = if k == "h2_streams" { 0 } else { answered };
        assert_eq!(
            attempts,
            per_attempt + closed + refused + open + other,
            "{k}: each attempt ends exactly once in {v}"
        );
        assert_eq!(u(&o["cut"]), answered + closed + refused, "{k} in {v}");
        assert!(f(&o["longest_s"]) >= 0.0, "{k} in {v}");
    }
    // The attacks reached the server: the upload sent bytes, the HTTP/2
    // client opened streams.
    assert!(u(&out["checkpoint_put"]["bytes_sent"]) > 0, "{v}");
    assert!(u(&out["h2_streams"]["requests"]) > 0, "{v}");
}
