//! `aorta server`'s memory under hostile clients stays within the bound
//! `docs/server.md` ("Limits") states as a formula of its configuration:
//! measured on the real process (`/proc/PID/status`, VmHWM) while strangers
//! send unauthenticated worker bodies and leave frame bodies unfinished on
//! many connections. Before the limits, this attack took the server from
//! 14 MB to over 600 MB.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

mod common;
use common::*;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use aorta_server::http::ServerConfig;
use aorta_server::http::limits::Limits;

/// `VmKEY` of process `pid`, bytes.
fn vm(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls(addr: SocketAddr, ca: &std::path::Path) -> Tls {
    let mut cfg = aorta_api::client_tls_config_file(ca).unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

#[test]
fn hostile_clients_keep_the_server_within_its_documented_memory_bound() {
    if vm(std::process::id(), "VmHWM:").is_none() {
        eprintln!("SKIPPED: no /proc/PID/status (VmHWM) on this system");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("directory.txt"),
        "aorta-device-directory-1\n",
    )
    .unwrap();
    let config = "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\ndirectory = \"directory.txt\"\n\
        max_frame_bytes = 1048576\ningest_queue_bytes = 2097152\n\
        max_connections = 64\nmax_connections_per_source = 64\n\
        body_budget_bytes = 4194304\nconnection_body_bytes = 1048576\n\
        request_timeout_secs = 60\nidle_timeout_secs = 60\n";
    std::fs::write(dir.path().join("server.toml"), config).unwrap();
    let cfg = ServerConfig::from_toml_str(config, &dir.path().join("server.toml")).unwrap();
    let bound = Limits::from_config(&cfg).unauthenticated_bound(cfg.ingest_queue_bytes);
    let server = Server::start(dir.path(), "server.toml");
    let pid = server.proc.id();
    let ca = dir.path().join("data/cert.pem");
    // Warm up: one request through TLS, HTTP and the router.
    let mut s = tls(server.addr, &ca);
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(s);
    let base = vm(pid, "VmRSS:").unwrap();

    // Unauthenticated 300 MiB checkpoints: 64 MiB sent on each.
    let chunk = vec![0u8; 1 << 20];
    std::thread::scope(|sc| {
        for _ in 0..4 {
            sc.spawn(|| {
                let mut s = tls(server.addr, &ca);
                let head = "PUT /v1/checkpoint HTTP/1.1\r\nhost: localhost\r\ncontent-length: 314572800\r\n\r\n";
                if s.write_all(head.as_bytes()).is_err() {
                    return;
                }
                for _ in 0..64 {
                    if s.write_all(&chunk).is_err() {
                        return;
                    }
                }
            });
        }
    });
    // Frame bodies left unfinished on 48 connections: all but one byte.
    let sig = "ab".repeat(64);
    let mut held = Vec::new();
    for _ in 0..48 {
        let mut s = tls(server.addr, &ca);
        let head = format!(
            "POST /v1/frames HTTP/1.1\r\nhost: localhost\r\naorta-signature: {sig}\r\ncontent-length: 1048576\r\n\r\n"
        );
        if s.write_all(head.as_bytes()).is_ok() {
            let _ = s.write_all(&chunk[..(1 << 20) - 1]);
        }
        held.push(s);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let peak = vm(pid, "VmHWM:").unwrap();
    let grew = peak.saturating_sub(base);
    eprintln!(
        "server RSS {} MiB at rest, peak {} MiB under attack (+{} MiB); documented bound for this configuration +{} MiB",
        base >> 20,
        peak >> 20,
        grew >> 20,
        bound >> 20
    );
    assert!(
        grew <= bound,
        "the server grew {grew} bytes under hostile clients; the documented bound is {bound}"
    );
    drop(held);
}
