//! The MQTT front (`docs/mqtt.md`) against the same in-process ingest the
//! HTTPS tests drive: the device's MQTT 5 uplink over real TLS, raw MQTT
//! 3.1.1 clients over loopback TCP, and hostile clients.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

mod http_common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aorta_device::DeviceError;
use aorta_device::http::HttpOptions;
use aorta_device::mqtt::MqttTransport;
use aorta_device::queue::{Transport, UploadReply};
use aorta_server::http::config::MqttConfig;
use aorta_server::http::tls;
use aorta_server::mqtt::{self, MqttLimits};
use bytes::BytesMut;
use http_common::*;
use rumqttc::mqttbytes::v4;

struct Front {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves the MQTT front of `r`'s ingest (TLS with `r`'s certificate, or
/// plain TCP).
fn front(r: &Running, use_tls: bool, tweak: impl FnOnce(&mut MqttConfig)) -> Front {
    let mut cfg = MqttConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.insecure_plain_tcp = !use_tls;
    tweak(&mut cfg);
    let limits = MqttLimits::from_config(&cfg, r.state.limits().max_frame_bytes);
    let tls_cfg = use_tls.then(|| tls::server_config(&r.cert, &r.data.join(tls::DEV_KEY)).unwrap());
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let state = r.state.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            mqtt::serve(l, tls_cfg, state, limits, async {
                let _ = rx.await;
            })
            .await;
        });
    });
    Front {
        addr,
        stop: Some(tx),
        thread: Some(thread),
    }
}

fn signature(serial: &str, frame: &[u8]) -> [u8; 64] {
    device_key(serial).sign(&aorta_crypto::auth::frame_message(frame))
}

fn accepted(r: &Running) -> u64 {
    r.state.ingest().counters.accepted.load(Ordering::Relaxed)
}

fn device(r: &Running, f: &Front) -> MqttTransport {
    MqttTransport::new(
        &format!("mqtts://localhost:{}", f.addr.port()),
        &r.cert,
        HttpOptions {
            request_timeout: Duration::from_secs(10),
            ..HttpOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn device_uplink_frames_land_in_the_log_and_are_acknowledged_exactly() {
    let r = start(|_| {});
    let f = front(&r, true, |_| {});
    let mut t = device(&r, &f);
    for seq in 0..5 {
        let frame = sealed("SN-OK", 1, seq, 40);
        let reply = t.upload(&frame, &signature("SN-OK", &frame)).unwrap();
        assert!(
            matches!(reply, UploadReply::Ack { sequence } if sequence == seq),
            "{reply:?}"
        );
        // Acknowledged means durable: the log's durable end covers it.
        assert_eq!(accepted(&r), seq + 1);
    }
    let end = *r.state.ingest().end.borrow();
    assert!(end > 0);
    // An exact re-send is acknowledged again and stored once.
    let frame = sealed("SN-OK", 1, 4, 40);
    let reply = t.upload(&frame, &signature("SN-OK", &frame)).unwrap();
    assert!(
        matches!(reply, UploadReply::Ack { sequence: 4 }),
        "{reply:?}"
    );
    assert_eq!(accepted(&r), 5);
    assert_eq!(*r.state.ingest().end.borrow(), end);
}

#[test]
fn refused_frames_are_never_acknowledged_and_the_device_is_told_why() {
    let r = start(|_| {});
    let f = front(&r, true, |_| {});
    let mut t = device(&r, &f);
    let frame = sealed("SN-OK", 1, 1, 40);
    // A bad signature: 401, as over HTTPS (retried: the directory may not
    // list the device yet), never a success PUBACK.
    let mut bad = signature("SN-OK", &frame);
    bad[0] ^= 1;
    match t.upload(&frame, &bad) {
        Err(DeviceError::ServerBusy {
            status: 401,
            detail,
            ..
        }) => {
            assert!(detail.contains("device_signature_invalid"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    // An unknown serial: refused at the frame header, before the payload.
    let stranger = sealed("SN-NOBODY", 1, 1, 40);
    match t.upload(&stranger, &signature("SN-NOBODY", &stranger)) {
        Err(DeviceError::ServerBusy { status: 401, .. }) | Err(DeviceError::Network(_)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(accepted(&r), 0);
    // A replayed sequence (other bytes, same sequence): refused for good.
    t.upload(&frame, &signature("SN-OK", &frame)).unwrap();
    let other = sealed("SN-OK", 2, 1, 40);
    match t.upload(&other, &signature("SN-OK", &other)).unwrap() {
        UploadReply::Refused {
            sequence: 1,
            reason,
        } => {
            assert!(
                reason.contains("409") && reason.contains("sequence_replayed"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(accepted(&r), 1);
}

// --- raw MQTT 3.1.1 clients over plain TCP ---

fn write(s: &mut TcpStream, p: v4::Packet) {
    let mut b = BytesMut::new();
    p.write(&mut b, 1 << 24).unwrap();
    s.write_all(&b).unwrap();
}

fn connect(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write(&mut s, v4::Packet::Connect(v4::Connect::new("raw")));
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0], "CONNACK accepted");
    s
}

fn publish(s: &mut TcpStream, pkid: u16, qos: rumqttc::QoS, topic: &str, payload: Vec<u8>) {
    let mut p = v4::Publish::new(topic, qos, payload);
    p.pkid = pkid;
    write(s, v4::Packet::Publish(p));
}

/// What the server sends until it closes (or `wait` passes): the bytes,
/// and whether it closed.
fn drain(s: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (out, true),
            Err(_) => return (out, false),
        }
    }
}

/// The first bytes of a 3.1.1 QoS 1 PUBLISH (packet id 1) to `topic`
/// whose payload is `total` bytes long, `prefix` of them included.
fn publish_head(topic: &str, prefix: &[u8], total: usize) -> Vec<u8> {
    let remaining = 2 + topic.len() + 2 + total;
    let mut b = vec![0x32];
    let mut n = remaining;
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        b.push(byte);
        if n == 0 {
            break;
        }
    }
    b.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    b.extend_from_slice(topic.as_bytes());
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(prefix);
    b
}

fn signed_payload(serial: &str, frame: &[u8]) -> Vec<u8> {
    mqtt::payload(&signature(serial, frame), frame)
}

#[test]
fn mqtt_311_puback_only_for_an_accepted_frame_a_refusal_disconnects() {
    let r = start(|_| {});
    let f = front(&r, false, |_| {});
    let mut s = connect(f.addr);
    let frame = sealed("SN-OK", 1, 7, 40);
    publish(
        &mut s,
        9,
        rumqttc::QoS::AtLeastOnce,
        "aorta/v1/frames/SN-OK",
        signed_payload("SN-OK", &frame),
    );
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [0x40, 2, 0, 9], "PUBACK of packet 9");
    assert_eq!(accepted(&r), 1);
    // Bad signature: no PUBACK, the connection is closed.
    let other = sealed("SN-OK", 1, 8, 40);
    let mut p = signed_payload("SN-OK", &other);
    p[3] ^= 0x10;
    publish(
        &mut s,
        10,
        rumqttc::QoS::AtLeastOnce,
        "aorta/v1/frames/SN-OK",
        p,
    );
    let (got, closed) = drain(&mut s, Duration::from_secs(5));
    assert!(
        got.is_empty() && closed,
        "no PUBACK, closed: {got:?} {closed}"
    );
    // A frame published to another serial's topic: refused the same way.
    let mut s = connect(f.addr);
    publish(
        &mut s,
        11,
        rumqttc::QoS::AtLeastOnce,
        "aorta/v1/frames/SN-OTHER",
        signed_payload("SN-OK", &other),
    );
    let (got, closed) = drain(&mut s, Duration::from_secs(5));
    assert!(got.is_empty() && closed, "{got:?} {closed}");
    assert_eq!(accepted(&r), 1);
}

#[test]
fn qos0_subscribe_and_foreign_topics_are_refused() {
    let r = start(|_| {});
    let f = front(&r, false, |_| {});
    let frame = sealed("SN-OK", 1, 1, 40);
    type Case<'a> = Box<dyn Fn(&mut TcpStream) + 'a>;
    let cases: Vec<Case<'_>> = vec![
        Box::new(|s| {
            publish(
                s,
                0,
                rumqttc::QoS::AtMostOnce,
                "aorta/v1/frames/SN-OK",
                signed_payload("SN-OK", &frame),
            )
        }),
        Box::new(|s| {
            publish(
                s,
                1,
                rumqttc::QoS::ExactlyOnce,
                "aorta/v1/frames/SN-OK",
                signed_payload("SN-OK", &frame),
            )
        }),
        Box::new(|s| {
            publish(
                s,
                1,
                rumqttc::QoS::AtLeastOnce,
                "aorta/v1/frames/#",
                signed_payload("SN-OK", &frame),
            )
        }),
        Box::new(|s| {
            publish(
                s,
                1,
                rumqttc::QoS::AtLeastOnce,
                "elsewhere",
                signed_payload("SN-OK", &frame),
            )
        }),
        Box::new(|s| {
            write(
                s,
                v4::Packet::Subscribe(v4::Subscribe::new("aorta/#", rumqttc::QoS::AtLeastOnce)),
            )
        }),
    ];
    for (i, case) in cases.iter().enumerate() {
        let mut s = connect(f.addr);
        case(&mut s);
        let (got, closed) = drain(&mut s, Duration::from_secs(5));
        assert!(got.is_empty() && closed, "case {i}: {got:?} {closed}");
    }
    assert_eq!(accepted(&r), 0);
}

#[test]
fn a_connection_that_never_sends_connect_is_closed_by_the_deadline() {
    let r = start(|_| {});
    let f = front(&r, false, |c| c.connect_timeout_secs = 1);
    let mut s = TcpStream::connect(f.addr).unwrap();
    let t0 = Instant::now();
    let (got, closed) = drain(&mut s, Duration::from_secs(10));
    assert!(closed && got.is_empty(), "closed by the server");
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    // The same over TLS: an idle TCP connection never handshaking.
    let f = front(&r, true, |c| c.connect_timeout_secs = 1);
    let mut s = TcpStream::connect(f.addr).unwrap();
    let (_, closed) = drain(&mut s, Duration::from_secs(10));
    assert!(closed);
}

#[test]
fn a_silent_connection_is_closed_after_one_and_a_half_keep_alives() {
    let r = start(|_| {});
    let f = front(&r, false, |c| c.max_keep_alive_secs = 1);
    let mut s = connect(f.addr);
    let t0 = Instant::now();
    let (_, closed) = drain(&mut s, Duration::from_secs(10));
    assert!(closed);
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
}

#[test]
fn a_packet_claiming_a_huge_remaining_length_is_refused_from_its_header() {
    let r = start(|_| {});
    let f = front(&r, false, |_| {});
    // Before CONNECT and after it: 268,435,455 bytes claimed, none sent.
    for connected in [false, true] {
        let mut s = if connected {
            connect(f.addr)
        } else {
            TcpStream::connect(f.addr).unwrap()
        };
        s.write_all(&[0x32, 0xff, 0xff, 0xff, 0x7f]).unwrap();
        let (got, closed) = drain(&mut s, Duration::from_secs(5));
        assert!(closed && got.is_empty(), "connected={connected}: {got:?}");
    }
    // A PUBLISH whose frame header names no listed device is refused at
    // its header: the server closes before the rest of the declared
    // payload arrives.
    let mut s = connect(f.addr);
    let head = frame_head("SN-NOBODY", 60 << 10);
    let mut payload = vec![0u8; 64];
    payload.extend_from_slice(&head);
    let b = publish_head("aorta/v1/frames/SN-NOBODY", &payload, 64 + (60 << 10));
    s.write_all(&b).unwrap();
    let (got, closed) = drain(&mut s, Duration::from_secs(5));
    assert!(closed && got.is_empty(), "{got:?}");
    assert_eq!(accepted(&r), 0);
}

#[test]
fn connections_over_the_per_source_share_are_closed_at_once() {
    let r = start(|_| {});
    let f = front(&r, false, |c| {
        c.max_connections_per_source = 3;
        c.connect_timeout_secs = 30;
    });
    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(f.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(f.addr).unwrap();
    let t0 = Instant::now();
    let (_, closed) = drain(&mut extra, Duration::from_secs(5));
    assert!(
        closed && t0.elapsed() < Duration::from_secs(3),
        "the fourth is closed at once"
    );
    // The three held ones are still open (they may still CONNECT).
    for mut s in held {
        let (_, closed) = drain(&mut s, Duration::from_millis(200));
        assert!(!closed);
    }
    // And the global cap: a front of two connections closes the third.
    let f = front(&r, false, |c| {
        c.max_connections = 2;
        c.connect_timeout_secs = 30;
    });
    let _a = TcpStream::connect(f.addr).unwrap();
    let _b = TcpStream::connect(f.addr).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut c = TcpStream::connect(f.addr).unwrap();
    let (_, closed) = drain(&mut c, Duration::from_secs(5));
    assert!(closed);
}

/// Cluster mode (`[cluster]`): the PUBACK waits for JetStream's
/// acknowledgement; with NATS down the device gets a retryable refusal
/// (503 `log_unavailable`), never a success, and once NATS is back its
/// retry is acknowledged and stored once. `SKIPPED` without nats-server.
#[test]
fn cluster_mode_no_puback_while_jetstream_is_down_then_one_once_back() {
    use aorta_cluster::Nats;
    use aorta_cluster::testing::{NatsCluster, nats_server_or_skip};
    use aorta_server::http::config::ClusterConfig;
    let Some(bin) = nats_server_or_skip("mqtt cluster_mode_no_puback_while_jetstream_is_down")
    else {
        return;
    };
    let mut nats = NatsCluster::start(&bin, 1).unwrap();
    let c = ClusterConfig {
        partitions: 2,
        replicas: 1,
        ack_timeout_ms: 1000,
        ..ClusterConfig::new(&nats.urls())
    };
    let spec = c.spec();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) =
        Nats::connect(&c.nats, Duration::from_secs(2)).and_then(|n| n.ensure_stream(&spec))
    {
        assert!(Instant::now() < deadline, "JetStream not ready: {e}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = start(move |cfg| cfg.cluster = Some(c));
    let f = front(&r, true, |_| {});
    let mut t = device(&r, &f);
    let f0 = sealed("SN-OK", 1, 0, 360);
    let reply = t.upload(&f0, &signature("SN-OK", &f0)).unwrap();
    assert!(
        matches!(reply, UploadReply::Ack { sequence: 0 }),
        "{reply:?}"
    );
    nats.kill(0);
    let f1 = sealed("SN-OK", 1, 1, 360);
    match t.upload(&f1, &signature("SN-OK", &f1)) {
        Err(DeviceError::ServerBusy {
            status: 503,
            detail,
            retry_after,
        }) => {
            assert!(detail.contains("log_unavailable"), "{detail}");
            assert_eq!(retry_after, Some(Duration::from_secs(1)));
        }
        other => panic!("no success PUBACK while JetStream is down: {other:?}"),
    }
    nats.restart(0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match t.upload(&f1, &signature("SN-OK", &f1)) {
            Ok(UploadReply::Ack { sequence: 1 }) => break,
            Err(DeviceError::ServerBusy { status: 503, .. }) | Err(DeviceError::Network(_)) => {}
            other => panic!("{other:?}"),
        }
        assert!(Instant::now() < deadline, "JetStream did not come back");
        std::thread::sleep(Duration::from_millis(200));
    }
    let nats_client = Nats::connect(&nats.urls(), Duration::from_secs(5)).unwrap();
    let (messages, _) = nats_client.stream_state(&spec).unwrap();
    assert_eq!(messages, 2, "each frame stored once");
}

#[test]
fn packet_bytes_are_charged_to_the_body_budget_shared_with_https() {
    // 48 KiB for every frame body in memory, HTTPS and MQTT together.
    let r = start(|c| {
        c.body_budget_bytes = 48 << 10;
        c.connection_body_bytes = 48 << 10;
    });
    let f = front(&r, false, |_| {});
    // A listed serial's header (public: the directory), so the precheck
    // passes, then 40 KiB of a 60 KiB payload from each of two clients:
    // the second goes over the budget and is closed before its payload
    // is complete; the first holds its 40 KiB.
    let mut held = Vec::new();
    let mut closed_any = false;
    for _ in 0..2 {
        let mut s = connect(f.addr);
        let mut payload = vec![0u8; 64];
        payload.extend_from_slice(&frame_head("SN-OK", 60 << 10));
        payload.resize(40 << 10, 0);
        s.write_all(&publish_head(
            "aorta/v1/frames/SN-OK",
            &payload,
            64 + (60 << 10),
        ))
        .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let (_, closed) = drain(&mut s, Duration::from_millis(500));
        closed_any |= closed;
        held.push(s);
    }
    assert!(closed_any, "one client is refused by the budget");
    assert!(r.state.body_bytes_in_use() <= 48 << 10);
    drop(held);
    let t0 = Instant::now();
    while r.state.body_bytes_in_use() > 0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "charges given back");
        std::thread::sleep(Duration::from_millis(20));
    }
}
