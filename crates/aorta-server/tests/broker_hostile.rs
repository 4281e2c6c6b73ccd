//! The key broker under hostile load, over loopback TCP, as the attacker
//! would do it: idle connections, a byte-dripping client and a challenge
//! flood, each from its own source address (Linux routes all of 127/8 to
//! `lo`, so clients bound to 127.0.0.x are distinct sources), while a real
//! worker from another source attests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use aorta_crypto::refusal::{BROKER_RATE_LIMITED, BROKER_TOO_MANY_CONNECTIONS};
use aorta_enclave::wire::{self, Message, Role};
use aorta_server::broker::{Limits, Source};

const WORKER_SRC: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);

/// A TCP connection to `to` from source address `src`.
fn connect_from(src: Ipv4Addr, to: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(src.into(), 0).into()).unwrap();
    s.connect(&to.into()).unwrap();
    s.into()
}

/// The broker of `s` (clock at now) served on a loopback port forever.
fn start(s: &Setup) -> SocketAddr {
    s.clock.store(aorta_base::time::now_s(), Ordering::SeqCst);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let b = Arc::clone(&s.broker);
    std::thread::spawn(move || aorta_server::broker::serve(listener, b));
    addr
}

/// A real worker from `src` attests as `aorta worker` does (60-s read
/// timeout); the keys it got, or why not.
fn worker_attests(s: &Setup, addr: SocketAddr, src: Ipv4Addr) -> Result<usize, ClientError> {
    let mut conn = connect_from(src, addr);
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let req = KeyRequest {
        assignment: "ward-a".into(),
        devices: vec![],
        subscribers: vec![],
    };
    let w = Unattested::new(s.measurement).unwrap();
    attest_to_broker(&mut conn, w, &s.platform, &req).map(|r| r.keys().transport_keys.len())
}

fn hello() -> Vec<u8> {
    Message::Hello {
        version: wire::PROTOCOL_VERSION,
        role: Role::Worker,
    }
    .encode()
    .unwrap()
}

fn limited(limits: Limits) -> Setup {
    setup_limited(r#"["sim"]"#, true, limits)
}

/// The next message on `c`, or why none.
fn next(c: &mut TcpStream) -> Result<Option<Message>, wire::WireError> {
    wire::read_message(c)
}

#[test]
fn idle_connections_from_one_source_do_not_lock_out_a_worker() {
    let s = setup();
    let addr = start(&s);
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let mut idle: Vec<TcpStream> = (0..80).map(|_| connect_from(attacker, addr)).collect();
    let got = worker_attests(&s, addr, WORKER_SRC);
    assert_eq!(got.unwrap(), 2);
    // The attacker's connections beyond its source's limit were told why.
    let last = idle.last_mut().unwrap();
    last.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    assert!(matches!(next(last), Ok(Some(Message::Hello { .. }))));
    match next(last) {
        Ok(Some(Message::Refused { code, reason })) => {
            assert_eq!(code, BROKER_TOO_MANY_CONNECTIONS, "{reason}");
            assert!(reason.contains("at most 8"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(next(last), Ok(None)));
}

#[test]
fn a_worker_from_a_source_at_its_limit_is_told_so() {
    let s = setup();
    let addr = start(&s);
    let src = Ipv4Addr::new(127, 0, 0, 5);
    let idle: Vec<TcpStream> = (0..8).map(|_| connect_from(src, addr)).collect();
    // The 8 are accepted in order before the worker's 9th connection.
    for mut c in idle.iter() {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
    }
    match worker_attests(&s, addr, src) {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, BROKER_TOO_MANY_CONNECTIONS),
        other => panic!("{other:?}"),
    }
    drop(idle);
    // Once they are gone, the same source is served again.
    let mut tries = 0;
    loop {
        match worker_attests(&s, addr, src) {
            Ok(n) => {
                assert_eq!(n, 2);
                break;
            }
            // The broker may not have seen all eight close yet.
            Err(ClientError::Refused { code, .. })
                if code == BROKER_TOO_MANY_CONNECTIONS && tries < 100 =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn when_every_slot_is_taken_a_worker_waits_for_one_instead_of_failing() {
    let s = limited(Limits::default().with_connection_deadline(Duration::from_secs(1)));
    let addr = start(&s);
    // Eight sources hold eight idle connections each: all 64 slots.
    let mut idle = Vec::new();
    for i in 0..8u8 {
        let src = Ipv4Addr::new(127, 0, 1, 10 + i);
        for _ in 0..8 {
            let mut c = connect_from(src, addr);
            c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut b = [0u8; 1];
            c.read_exact(&mut b).unwrap(); // accepted: the broker's Hello
            idle.push(c);
        }
    }
    // The worker's connection waits in the listen queue until the
    // deadline frees slots, then attests.
    let got = worker_attests(&s, addr, WORKER_SRC);
    assert_eq!(got.unwrap(), 2);
    drop(idle);
}

#[test]
fn a_byte_dripping_client_is_cut_at_the_connection_deadline() {
    let s = limited(Limits::default().with_connection_deadline(Duration::from_secs(1)));
    let addr = start(&s);
    let mut c = connect_from(Ipv4Addr::new(127, 0, 0, 3), addr);
    c.write_all(&hello()).unwrap();
    // One message announced as 1 MiB, then its body one byte at a time.
    c.write_all(&(1u32 << 20).to_be_bytes()).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let mut closed = false;
    // Generous cap: the harness gives up after 15 s of dripping.
    while started.elapsed() < Duration::from_secs(15) {
        if c.write_all(&[0x12]).is_err() {
            closed = true;
            break;
        }
        match c.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {} // the broker's Hello
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(
        closed,
        "a client dripping one byte per 50 ms still held its connection after {:?}",
        started.elapsed()
    );
}

/// Floods `n` challenge requests from `src`, 16 per connection (the
/// per-connection message limit), on `threads` connections at a time;
/// returns (challenges asked for, issued, refusal codes seen).
fn flood(addr: SocketAddr, src: Ipv4Addr, n: usize, threads: usize) -> (usize, usize, Vec<u16>) {
    let per_thread = n / threads;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || {
                let mut issued = 0usize;
                let mut codes = Vec::new();
                let mut sent = 0usize;
                let mut req = hello();
                for _ in 0..16 {
                    req.extend(Message::ChallengeRequest.encode().unwrap());
                }
                while sent < per_thread {
                    let mut c = connect_from(src, addr);
                    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    if c.write_all(&req).is_err() {
                        sent += 16;
                        continue;
                    }
                    sent += 16;
                    loop {
                        match wire::read_message(&mut c) {
                            Ok(Some(Message::Challenge { .. })) => issued += 1,
                            Ok(Some(Message::Refused { code, .. })) => codes.push(code),
                            Ok(Some(_)) => {}
                            Ok(None) | Err(_) => break,
                        }
                    }
                }
                (sent, issued, codes)
            })
        })
        .collect();
    let (mut sent, mut issued) = (0, 0);
    let mut codes = Vec::new();
    for h in handles {
        let (n, i, c) = h.join().unwrap();
        sent += n;
        issued += i;
        codes.extend(c);
    }
    (sent, issued, codes)
}

#[test]
fn a_challenge_flood_from_one_source_neither_refuses_a_worker_nor_goes_unanswered() {
    let s = setup();
    let addr = start(&s);
    let flooder = Ipv4Addr::new(127, 0, 0, 4);
    let started = Instant::now();
    let (sent, issued, codes) = flood(addr, flooder, 100_000, 4);
    let took = started.elapsed();
    eprintln!(
        "flood: {issued} challenges issued, {} refused in {took:?}",
        codes.len()
    );
    let got = worker_attests(&s, addr, WORKER_SRC);
    assert_eq!(got.unwrap(), 2);
    // The flooder itself is told why, with the rate-limit code, and got no
    // more than its burst plus its rate over the flood's time.
    assert!(
        !codes.is_empty() && codes.iter().all(|c| *c == BROKER_RATE_LIMITED),
        "flooder refusals: {:?}",
        &codes[..codes.len().min(5)]
    );
    let most = 32.0 + 2.0 * took.as_secs_f64() + 1.0;
    assert!(
        (issued as f64) <= most,
        "{issued} challenges issued, at most {most}"
    );
    assert!(sent >= 100_000);
    assert_eq!(issued + codes.len(), sent, "every request answered");
}

#[test]
fn a_flooder_without_a_rate_limit_still_holds_only_its_share_of_nonces() {
    // Rate limit out of the way: the per-source share alone must protect
    // other sources. The flood is in process with injected sources.
    let s = limited(
        Limits::default()
            .with_challenge_rate(u32::MAX, u32::MAX)
            .with_nonces(100_000, 256),
    );
    let addr = start(&s);
    let flooders = [Ipv4Addr::new(127, 0, 0, 6), Ipv4Addr::new(127, 0, 0, 7)];
    for f in flooders {
        let src = Source::of(f.into());
        let mut issued = 0;
        for _ in 0..100_000 {
            match s.broker.respond_to(src, Message::ChallengeRequest).unwrap() {
                Message::Challenge { .. } => issued += 1,
                Message::Refused { code, reason } => {
                    assert_eq!(code, BROKER_RATE_LIMITED, "{reason}");
                    assert!(reason.contains("share"), "{reason}");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(issued, 256);
    }
    let got = worker_attests(&s, addr, WORKER_SRC);
    assert_eq!(got.unwrap(), 2);
    // The share is of unused nonces: a worker from a flooder's source is
    // refused while the share is full, and served once its nonces expire.
    match worker_attests(&s, addr, flooders[0]) {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, BROKER_RATE_LIMITED),
        other => panic!("{other:?}"),
    }
    s.clock.fetch_add(61, Ordering::SeqCst);
    assert!(matches!(
        s.broker
            .respond_to(Source::of(flooders[0].into()), Message::ChallengeRequest)
            .unwrap(),
        Message::Challenge { .. }
    ));
}

#[test]
fn sources_are_addresses_and_ipv6_prefixes() {
    use std::net::IpAddr;
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
    let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(Source::of(a), Source::of(b));
    assert_ne!(Source::of(a), Source::of(c));
    let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
    assert_eq!(
        Source::of(mapped),
        Source::of(Ipv4Addr::new(10, 0, 0, 1).into())
    );
    assert_ne!(
        Source::of(Ipv4Addr::new(10, 0, 0, 1).into()),
        Source::of(Ipv4Addr::new(10, 0, 0, 2).into())
    );
    assert_eq!(Source::of(a).to_string(), "2001:db8:1:2::/64");
}
