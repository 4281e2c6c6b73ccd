//! The operations port (`api::ops`) in process: readiness follows the
//! server's state (ready while serving, 503 with a JSON reason once it
//! stops, while liveness stays 200); the service port's `/metrics` carries
//! the same build and process metrics; durable counters survive a restart
//! while process-lifetime ones start again at zero.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::net::SocketAddr;
use std::sync::Arc;

use aorta_server::http::{ServerConfig, api};

mod http_common;
use http_common::*;

/// Serves `state`'s operations port on loopback from its own runtime
/// (for the rest of the test process).
fn ops_port(state: Arc<api::AppState>) -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            api::ops::serve(l, state).await;
        });
    });
    addr
}

/// `GET PATH` over plain HTTP/1.1: status and body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_owned(),
    )
}

#[test]
fn readiness_follows_the_server_and_liveness_stays() {
    let r = start(|_| {});
    let state = r.state.clone();
    let ops = ops_port(state.clone());
    assert_eq!(get(ops, "/readyz"), (200, "ready".into()));
    assert_eq!(state.readiness(), Ok(()));
    // The service port stops: not ready, with a JSON reason; still live.
    drop(r);
    assert_eq!(state.readiness(), Err("stopping"));
    let (s, body) = get(ops, "/readyz");
    assert_eq!(s, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "not_ready");
    assert_eq!(v["detail"], "not ready: stopping");
    assert_eq!(get(ops, "/healthz"), (200, "ok".into()));
}

#[test]
fn idle_clients_cannot_hold_the_operations_port() {
    use std::io::Read;
    let r = start(|_| {});
    let ops = ops_port(r.state.clone());
    let t = std::time::Instant::now();
    // Every slot taken by a client that says nothing.
    let idle: Vec<std::net::TcpStream> = (0..api::ops::MAX_CONNECTIONS)
        .map(|_| std::net::TcpStream::connect(ops).unwrap())
        .collect();
    // Give the server time to accept them all, then one more is closed at
    // once, unanswered.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut extra = std::net::TcpStream::connect(ops).unwrap();
    extra
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    // Closed by the server: end of stream or reset, not a read timeout.
    let closed = |c: &mut std::net::TcpStream| match c.read(&mut [0u8; 16]) {
        Ok(n) => n == 0,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(closed(&mut extra), "over the limit: closed at once");
    // Each idle one is closed by the deadline, and the port serves again.
    for mut c in idle {
        c.set_read_timeout(Some(api::ops::CONNECTION_DEADLINE * 3))
            .unwrap();
        assert!(closed(&mut c), "an idle connection outlived the deadline");
    }
    assert!(t.elapsed() < api::ops::CONNECTION_DEADLINE * 3);
    assert_eq!(get(ops, "/readyz"), (200, "ready".into()));
}

#[test]
fn service_port_metrics_carry_build_and_process_metrics() {
    let r = start(|_| {});
    let m = metrics(&r);
    assert!(
        m.contains(&format!(
            "aorta_build_info{{version=\"{}\",git=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            api::ops::GIT_COMMIT
        )),
        "{m}"
    );
    assert!(!api::ops::GIT_COMMIT.is_empty());
    assert!(sample(&m, "process_open_fds") > 0, "{m}");
    assert!(sample(&m, "process_resident_memory_bytes") > 0, "{m}");
    let p = api::ops::ProcessStats::read();
    assert!(p.cpu_seconds.is_some() && p.start_time.is_some() && p.max_fds.is_some());
}

#[test]
fn durable_counters_survive_a_restart_and_lifetime_ones_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        data_dir: dir.path().join("data"),
        max_frame_bytes: 64 << 10,
        ..ServerConfig::default()
    };
    let devices = || directory_of(&["SN-OK"]);
    let (f1, f2) = (sealed("SN-OK", 0, 1, 360), sealed("SN-OK", 0, 2, 360));
    let r = serve_at(&cfg, devices(), Some(broker_key().public()));
    assert_eq!(post(&r, f1.clone()).0, 200);
    assert_eq!(post(&r, f2.clone()).0, 200);
    assert_eq!(post(&r, f2.clone()).0, 200); // a duplicate
    let m = metrics(&r);
    assert_eq!(sample(&m, "aorta_ingest_frames_accepted_total"), 2, "{m}");
    assert_eq!(sample(&m, "aorta_ingest_frames_duplicate_total"), 1, "{m}");
    let bytes = sample(&m, "aorta_ingest_bytes_total");
    assert!(bytes as usize > f1.len() + f2.len(), "{m}");
    drop(r);

    let r = serve_at(&cfg, devices(), Some(broker_key().public()));
    let m = metrics(&r);
    assert_eq!(sample(&m, "aorta_ingest_frames_accepted_total"), 2, "{m}");
    assert_eq!(sample(&m, "aorta_ingest_bytes_total"), bytes, "{m}");
    assert_eq!(sample(&m, "aorta_ingest_frames_duplicate_total"), 0, "{m}");
    // /v1/stats counts this process (docs/server-api.md).
    let st: serde_json::Value = r
        .client
        .get(format!("{}/v1/stats", r.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(st["frames_accepted"], 0);
    // A new frame adds to the durable count.
    assert_eq!(post(&r, sealed("SN-OK", 0, 3, 360)).0, 200);
    // (past the 200 ms the computed counters are reused for)
    std::thread::sleep(std::time::Duration::from_millis(300));
    let m = metrics(&r);
    assert_eq!(sample(&m, "aorta_ingest_frames_accepted_total"), 3, "{m}");
}
