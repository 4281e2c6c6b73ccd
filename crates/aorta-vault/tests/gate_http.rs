//! The gate's HTTP server keeps its bounds against clients that hold
//! connections open: a silent connection is closed after the connection
//! timeout, connections over the limit are closed at once, and the gate
//! serves again once they are gone; a full recovery runs over HTTP.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use aorta_vault::EhrVault;
use aorta_vault::gate::http::{HttpGate, Limits, run};
use aorta_vault::grant::Identity;
use aorta_vault::rules::GrantUse;
use common::{opts, share_to};

fn start(dir: &std::path::Path, limits: Limits) -> std::net::SocketAddr {
    let v = EhrVault::open_existing(dir).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        run(
            "127.0.0.1:0".parse().unwrap(),
            v,
            limits,
            |a| tx.send(a).unwrap(),
            std::future::pending(),
        )
        .unwrap();
    });
    rx.recv_timeout(Duration::from_secs(20)).unwrap()
}

/// Bytes read until the server closes (or 20 s pass).
fn until_closed(c: &mut TcpStream) -> Vec<u8> {
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    out
}

#[test]
fn silent_and_surplus_connections_are_closed_and_recovery_works_over_http() {
    let t = tempfile::tempdir().unwrap();
    let patient = EhrVault::open(t.path()).unwrap();
    let rid = patient.protect(b"ecg over http", b"pw", &opts()).unwrap();
    let doc = Identity::generate().unwrap();
    let g = share_to(&patient, &rid, doc.public());
    let pk = patient.patient_key().unwrap();
    let addr = start(
        t.path(),
        Limits {
            max_connections: 2,
            connection_timeout: Duration::from_millis(800),
        },
    );
    let url = format!("http://{addr}");
    let recover = || {
        patient.recover_with_grant(
            &rid,
            &GrantUse {
                grant: &g.grant,
                identity: &doc,
                patient: &pk,
                gate_url: Some(&url),
            },
            &HttpGate::default(),
        )
    };
    assert_eq!(recover().unwrap().bytes, b"ecg over http");

    // Two silent connections fill the limit; a third is closed at once.
    let mut a = TcpStream::connect(addr).unwrap();
    let mut b = TcpStream::connect(addr).unwrap();
    a.write_all(b"POST /v1/release HTTP/1.1\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut c = TcpStream::connect(addr).unwrap();
    let started = std::time::Instant::now();
    assert!(until_closed(&mut c).is_empty());
    assert!(started.elapsed() < Duration::from_millis(700));
    // The silent ones are closed by the connection timeout.
    until_closed(&mut a);
    until_closed(&mut b);
    // And the gate serves again.
    assert_eq!(recover().unwrap().bytes, b"ecg over http");

    // An unreachable gate, or an https one, is a typed environment error.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    for u in [dead.as_str(), "https://127.0.0.1:1", "not a url"] {
        let e = patient
            .recover_with_grant(
                &rid,
                &GrantUse {
                    grant: &g.grant,
                    identity: &doc,
                    patient: &pk,
                    gate_url: Some(u),
                },
                &HttpGate::default(),
            )
            .unwrap_err();
        assert!(
            matches!(e, aorta_vault::VaultError::GateUnreachable { .. }),
            "{u}: {e}"
        );
        assert_eq!(e.blame(), aorta_vault::Blame::Environment);
    }
}
