//! The whole broker exchange over loopback TCP with the worker's client,
//! a refusal over the wire, and every log line checked for key bytes. (Its
//! own test binary: `tracing` caches per-callsite interest process-wide.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;

/// The whole exchange over loopback TCP with the worker's client, then a
/// refusal over the wire, and every log line checked for key bytes.
#[test]
fn over_tcp_with_logs_free_of_keys() {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let logs = Buf::default();
    let l2 = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || l2.clone())
        .finish();
    let dispatch = tracing::Dispatch::new(subscriber);
    let _g = tracing::dispatcher::set_default(&dispatch);

    let s = setup();
    s.clock
        .store(aorta_server::broker::unix_now(), Ordering::SeqCst);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let b = Arc::clone(&s.broker);
    let d2 = dispatch.clone();
    let server = std::thread::spawn(move || {
        tracing::dispatcher::with_default(&d2, || {
            for _ in 0..2 {
                let (mut c, _) = listener.accept().unwrap();
                b.handle_connection(&mut c).unwrap();
            }
        })
    });
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
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
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
            !logs.0.lock().unwrap().windows(32).any(|w| w == kb),
            "key {k} bytes in logs"
        );
    }
}
