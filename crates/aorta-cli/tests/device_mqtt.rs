//! `aorta device run --mqtt` against the real `aorta server` process with
//! an `[mqtt]` table (docs/mqtt.md): every frame sealed is acknowledged over
//! MQTT 5 and lands in the server's log exactly once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::io::Write;
use std::process::Stdio;

mod common;
use common::{Run, SAMPLE, Server, stats};

#[test]
fn device_run_over_mqtt_lands_every_frame_exactly_once() {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("w");
    common::setup(&work, 1);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = std::fs::OpenOptions::new()
        .append(true)
        .open(work.join("server.toml"))
        .unwrap();
    writeln!(cfg, "\n[mqtt]\nlisten = \"127.0.0.1:{port}\"").unwrap();
    drop(cfg);
    let srv = Server::start(&work, "server.toml");
    let ca = work.join("server/cert.pem");
    let device = std::fs::read_dir(work.join("devices"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let out = Run::new(["device", "run", "--device"])
        .arg(&device)
        .args(["--record", SAMPLE])
        .args(["--mqtt", &format!("mqtts://localhost:{port}"), "--ca"])
        .arg(&ca)
        .args(["--speed", "max", "--duration", "12", "--json"])
        .cwd(&work)
        .spawn(Stdio::piped())
        .wait_output();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["frames"], 12, "{v}");
    assert_eq!(v["acked"], 12, "{v}");
    assert_eq!(v["refused"], 0, "{v}");
    assert_eq!(v["queued_left"], 0, "{v}");
    let s = stats(&srv.url(), &ca).unwrap();
    assert_eq!(s["frames_accepted"], 12, "{s}");
    assert_eq!(s["frames_duplicate"], 0, "{s}");
}
