//! The whole broker exchange over loopback TCP with the worker's client,
//! a refusal over the wire, and every log line checked for key bytes. (Its
//! own test binary: `tracing` caches per-callsite interest process-wide.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

mod common;
use common::*;

/// The whole exchange over loopback TCP with the worker's client, then a
/// refusal over the wire, and every log line checked for key bytes.
#[test]
fn over_tcp_with_logs_free_of_keys() {
    let (logs, dispatch) = capture_logs(tracing::Level::DEBUG);
    let _g = tracing::dispatcher::set_default(&dispatch);

    let s = setup();
    let (addr, server) = serve_broker_tcp(&s, &dispatch, 2);
    let req = KeyRequest {
        assignment: "ward-a".into(),
        devices: vec![],
        subscribers: vec![],
    };
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    let w = Unattested::new(s.measurement).unwrap();
    let ready = attest_to_broker(&mut conn, w, &s.platform, &req).unwrap();
    assert_eq!(ready.keys().transport_keys.len(), 2);
    assert_eq!(ready.keys().result_key("dr-a"), Some(&key(10)));
    drop(conn);
    // A worker with a modified binary is refused over the wire with code 109.
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    let w = Unattested::new(Measurement::of_worker(b"evil", b"")).unwrap();
    match attest_to_broker(&mut conn, w, &s.platform, &req) {
        Err(ClientError::Refused { code, reason }) => {
            assert_eq!(code, 109);
            assert!(reason.contains("measurement"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    drop(conn);
    server.join().unwrap();
    let text = String::from_utf8(logs.bytes()).unwrap();
    assert!(
        text.contains("decision=\"release\"") || text.contains("decision=release"),
        "{text}"
    );
    assert!(text.contains("refuse"), "{text}");
    assert!(text.contains("NOT hardware-protected"), "{text}");
    for k in [1u8, 2, 3, 10] {
        let kb = [k; 32];
        assert!(!text.contains(&hex(&kb)), "key {k} hex in logs");
        assert!(
            !logs.bytes().windows(32).any(|w| w == kb),
            "key {k} bytes in logs"
        );
    }
}
