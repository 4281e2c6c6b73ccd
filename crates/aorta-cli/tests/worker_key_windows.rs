//! `aorta worker stream --key-window 1` through the real binaries on
//! loopback (issue 11, item 4): the worker attests in pages of key windows
//! instead of taking every device's whole key slice, and still opens every
//! frame the devices upload. (That a worker fetches a device's moved window
//! before opening its frames is proved against a real broker in
//! `aorta-server`'s `registry_keys.rs`: the demo's devices do not rotate
//! keys within a test's minutes.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]
mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Run, SAMPLE, Server, stats, wait_until, worker_with};

#[test]
fn a_worker_with_key_windows_opens_every_frame() {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("w");
    common::setup(&work, 3);
    let srv = Server::start(&work, "server.toml");
    let ca = work.join("server/cert.pem");
    let mut wrk = worker_with(&work, "server", &srv, true, &["--key-window", "1"]);
    let devices: Vec<_> = ["DEMO-0001", "DEMO-0002", "DEMO-0003"]
        .iter()
        .map(|s| {
            Run::new(["device", "run", "--device", &format!("devices/{s}")])
                .args(["--record", SAMPLE, "--server", &srv.url(), "--ca"])
                .arg(&ca)
                .args(["--speed", "12", "--duration", "12", "--json"])
                .cwd(&work)
                .spawn(Stdio::null())
        })
        .collect();
    let mut sent = 0;
    for d in devices {
        let v: serde_json::Value = serde_json::from_slice(&d.wait_output().stdout).unwrap();
        assert_eq!(v["frames"], v["acked"], "{v}");
        sent += v["acked"].as_u64().unwrap();
    }
    assert_eq!(sent, 36);
    wait_until("worker opened every frame", Duration::from_secs(60), || {
        stats(&srv.url(), &ca).is_some_and(|s| s["frames_opened"].as_u64() == Some(sent))
    });
    let s = stats(&srv.url(), &ca).unwrap();
    assert!(
        s["frames_refused_by_worker"]
            .as_object()
            .is_none_or(|m| m.is_empty()),
        "{s}"
    );
    wrk.term();
    let log = std::fs::read_to_string(work.join("worker-server.log")).unwrap();
    // Three devices, one key index each, plus the state and result-signing
    // keys (whole slices would be 3 × 120 + 2).
    assert!(
        log.contains("devices=3 transport_keys=5 key_window=1"),
        "{log}"
    );
}
