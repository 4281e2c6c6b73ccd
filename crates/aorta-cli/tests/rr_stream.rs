//! An RR-interval device end to end, through the real binaries over HTTPS on
//! loopback: `aorta demo --setup-only`, `aorta server`, `aorta worker stream`
//! (attested, simulated backend), `aorta device run --rr FILE --speed max`,
//! then `aorta results fetch --json` as the clinician.
//!
//! Proves: RR frames (codec 2) are accepted by the server, opened by the
//! worker with the released keys, enter the engine at the beat stage, and
//! the clinician opens HRV windows whose values match `HrvEngine` run on the
//! same intervals, plus heart-rate windows at the file's rate.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

use std::time::Duration;

use aorta_signal::hrv::{ArtefactRule, HrvEngine, HrvOptions, NnSeries};

mod common;
use common::{Run, Server, fetch_results, worker};

const W: i64 = 300_000_000;

/// A deterministic RR series (ms): ~70 bpm with respiratory and slow
/// modulation, 11 minutes.
fn rr_series() -> Vec<i32> {
    let mut v = Vec::new();
    let mut t = 0.0f64;
    while t < 660.0 {
        let rr = 850.0
            + 40.0 * (2.0 * std::f64::consts::PI * 0.25 * t).sin()
            + 25.0 * (2.0 * std::f64::consts::PI * 0.08 * t).sin();
        let rr = rr.round() as i32;
        v.push(rr);
        t += f64::from(rr) / 1000.0;
    }
    v
}

#[test]
fn rr_device_streams_to_hrv_results() {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("w");
    common::setup(&work, 1);
    let rr = rr_series();
    let mut text = String::from("rr_ms\n");
    for r in &rr {
        text.push_str(&format!("{r}\n"));
    }
    std::fs::write(work.join("strap.txt"), text).unwrap();
    // The first beat on a 5-minute boundary.
    let start = 1_800_000_000_000_000i64 - 1_800_000_000_000_000 % W;

    let srv = Server::start(&work, "server.toml");
    let _wrk = worker(&work, "server", &srv, true);
    let out = Run::new([
        "device",
        "run",
        "--device",
        "devices/DEMO-0001",
        "--rr",
        "strap.txt",
        "--server",
        &srv.url(),
        "--ca",
        "server/cert.pem",
        "--speed",
        "max",
        "--frame-seconds",
        "10",
        "--start-us",
        &start.to_string(),
        "--drain-timeout",
        "60",
        "--json",
    ])
    .cwd(&work)
    .ok();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["frames"], v["acked"], "{v}");
    assert_eq!(v["refused"].as_u64(), Some(0), "{v}");
    assert_eq!(v["samples"].as_u64(), Some(rr.len() as u64), "{v}");

    // Direct reference for the first window [start, start + 5 min).
    let mut beats = vec![start];
    for r in &rr {
        beats.push(beats.last().unwrap() + i64::from(*r) * 1000);
    }
    let in_w: Vec<f64> = beats
        .windows(2)
        .filter(|p| p[0] >= start && p[1] < start + W)
        .map(|p| (p[1] - p[0]) as f64 / 1000.0)
        .collect();
    let want = HrvEngine::new()
        .report(
            &NnSeries::from_rr(&in_w, &ArtefactRule::default()).unwrap(),
            &HrvOptions::default(),
        )
        .unwrap();

    let t0 = std::time::Instant::now();
    loop {
        let got = fetch_results(&work, &srv.url(), "server/cert.pem");
        let hrv: Vec<&serde_json::Value> = got
            .iter()
            .filter(|r| r["result"]["type"] == "hrv" && r["start"].as_i64() == Some(start))
            .collect();
        if let Some(h) = hrv.first() {
            assert_eq!(h["patient"], "DEMO-0001");
            assert_eq!(h["end"].as_i64(), Some(start + W));
            let r = &h["result"];
            assert_eq!(r["n_nn"].as_u64().unwrap() as usize, want.n_nn);
            for (k, w) in [
                ("sdnn", want.time.sdnn),
                ("rmssd", want.time.rmssd),
                ("lf", want.freq.lf),
                ("hf", want.freq.hf),
            ] {
                let g = r[k].as_f64().unwrap();
                assert!((g - w).abs() <= 1e-9 * w.abs().max(1.0), "{k}: {g} vs {w}");
            }
            // Heart-rate windows at the series' rate (~70 bpm).
            let hr: Vec<f64> = got
                .iter()
                .filter(|r| r["result"]["type"] == "heart_rate")
                .filter_map(|r| r["result"]["bpm"].as_f64())
                .collect();
            assert!(hr.len() > 50, "{} heart-rate windows", hr.len());
            assert!(hr.iter().all(|b| (60.0..80.0).contains(b)), "{hr:?}");
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "no HRV window after 90 s; results: {}",
            got.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
