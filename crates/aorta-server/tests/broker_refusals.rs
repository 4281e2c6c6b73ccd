//! The key broker's decisions: the success path and each refusal the issue
//! names, with the sim backend, in process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

mod common;
use common::*;

#[test]
fn success_releases_exactly_the_assignment_keys() {
    let s = setup();
    let kp = WorkerKeypair::generate().unwrap();
    let (nonce, _) = s.broker.issue_nonce().unwrap();
    let c = claims(&s, &kp, nonce);
    let ev = s.platform.attest(c).unwrap();
    let rel = s.broker.release(&request(ev.encode(), &[])).unwrap();
    assert_eq!(rel.devices, ["ECG-1", "ECG-2"]);
    assert_eq!(rel.subscribers, ["dr-a"]);
    let bundle = open_bundle(&kp, &c, &rel.sealed).unwrap();
    assert_eq!(bundle.assignment, "ward-a");
    assert_eq!(bundle.transport_keys.len(), 2);
    assert_eq!(bundle.transport_key("ECG-1"), Some(&key(1)));
    assert_eq!(bundle.transport_key("ECG-2"), Some(&key(2)));
    assert_eq!(
        bundle.transport_key("ECG-3"),
        None,
        "another ward's key leaked"
    );
    assert_eq!(bundle.result_key("dr-a"), Some(&key(10)));
    // Asking for a subset releases only that subset.
    let (nonce, _) = s.broker.issue_nonce().unwrap();
    let c = claims(&s, &kp, nonce);
    let ev = s.platform.attest(c).unwrap();
    let rel = s.broker.release(&request(ev.encode(), &["ECG-2"])).unwrap();
    let bundle = open_bundle(&kp, &c, &rel.sealed).unwrap();
    assert_eq!(bundle.transport_keys.len(), 1);
    assert_eq!(bundle.transport_key("ECG-2"), Some(&key(2)));
    // Another key pair (an eavesdropper) cannot open it.
    let other = WorkerKeypair::generate().unwrap();
    assert!(open_bundle(&other, &c, &rel.sealed).is_err());
}

#[test]
fn wrong_measurement_is_refused() {
    let s = setup();
    let kp = WorkerKeypair::generate().unwrap();
    let (nonce, _) = s.broker.issue_nonce().unwrap();
    let mut c = claims(&s, &kp, nonce);
    c.app_measurement = Measurement::of_worker(b"patched worker", b"worker-config");
    let ev = s.platform.attest(c).unwrap();
    assert!(matches!(
        evidence_refusal(s.broker.release(&request(ev.encode(), &[]))),
        Refusal::MeasurementNotAllowed { .. }
    ));
    // Same binary, other configuration: also another measurement.
    let (nonce, _) = s.broker.issue_nonce().unwrap();
    let mut c = claims(&s, &kp, nonce);
    c.app_measurement = Measurement::of_worker(b"worker-binary", b"other-config");
    let ev = s.platform.attest(c).unwrap();
    assert!(matches!(
        evidence_refusal(s.broker.release(&request(ev.encode(), &[]))),
        Refusal::MeasurementNotAllowed { .. }
    ));
}

#[test]
fn replayed_nonce_is_refused() {
    let s = setup();
    let kp = WorkerKeypair::generate().unwrap();
    let (nonce, _) = s.broker.issue_nonce().unwrap();
    let ev = s.platform.attest(claims(&s, &kp, nonce)).unwrap();
    let req = request(ev.encode(), &[]);
    s.broker.release(&req).unwrap();
    assert!(matches!(
        s.broker.release(&req),
        Err(BrokerRefusal::UnknownNonce { .. })
    ));
    // A nonce the broker never issued.
    let ev = s
        .platform
        .attest(claims(&s, &kp, Nonce([0xee; 32])))
        .unwrap();
    assert!(matches!(
        s.broker.release(&request(ev.encode(), &[])),
        Err(BrokerRefusal::UnknownNonce { .. })
    ));
    // A refused attempt also consumes the nonce.
    let (nonce, _) = s.broker.issue_nonce().unwrap();
    let ev = s.platform.attest(claims(&s, &kp, nonce)).unwrap();
    let bad = request(ev.encode(), &["ECG-3"]);
    assert!(s.broker.release(&bad).is_err());
    assert!(matches!(
        s.broker.release(&request(ev.encode(), &[])),
        Err(BrokerRefusal::UnknownNonce { .. })
    ));
}

#[test]
fn stale_evidence_is_refused() {
    let s = setup();
    let kp = WorkerKeypair::generate().unwrap();
    let (nonce, _) = s.broker.issue_nonce().unwrap();
    let mut c = claims(&s, &kp, nonce);
    c.issued_at = T0 - 61;
    let ev = s.platform.attest(c).unwrap();
    assert!(matches!(
        evidence_refusal(s.broker.release(&request(ev.encode(), &[]))),
        Refusal::Stale { .. }
    ));
    // Evidence made for an old challenge, presented late.
    let (nonce, _) = s.broker.issue_nonce().unwrap();
    s.clock.store(T0 + 120, Ordering::SeqCst);
    let ev = s.platform.attest(claims(&s, &kp, nonce)).unwrap();
    assert!(matches!(
        s.broker.release(&request(ev.encode(), &[])),
        Err(BrokerRefusal::ChallengeExpired { .. })
    ));
    // Evidence dated in the future.
    let (nonce, _) = s.broker.issue_nonce().unwrap();
    let mut c = claims(&s, &kp, nonce);
    c.issued_at += 3600;
    let ev = s.platform.attest(c).unwrap();
    assert!(matches!(
        evidence_refusal(s.broker.release(&request(ev.encode(), &[]))),
        Refusal::FromTheFuture { .. }
    ));
}

#[test]
fn disallowed_backend_is_refused() {
    // Simulation not enabled: sim evidence refused.
    let s = setup_with(r#"["tdx"]"#, false);
    let kp = WorkerKeypair::generate().unwrap();
    let (nonce, _) = s.broker.issue_nonce().unwrap();
    let ev = s.platform.attest(claims(&s, &kp, nonce)).unwrap();
    assert_eq!(
        evidence_refusal(s.broker.release(&request(ev.encode(), &[]))),
        Refusal::SimulationNotAllowed
    );
    // Simulation enabled, but sim not among the allowed backends.
    let s = setup_with(r#"["tdx"]"#, true);
    let (nonce, _) = s.broker.issue_nonce().unwrap();
    let ev = s.platform.attest(claims(&s, &kp, nonce)).unwrap();
    assert!(matches!(
        evidence_refusal(s.broker.release(&request(ev.encode(), &[]))),
        Refusal::BackendNotAllowed {
            backend: Backend::Sim
        }
    ));
    // SEV-SNP evidence with a report that is not a genuine, signed one.
    let s = setup_with(r#"["sev-snp", "sim"]"#, true);
    let (nonce, _) = s.broker.issue_nonce().unwrap();
    let mut c = claims(&s, &kp, nonce);
    c.backend = Backend::SevSnp;
    let ev = aorta_enclave::Evidence {
        claims: c,
        body: EvidenceBody::SevSnp {
            report: vec![0; 1184],
            certs: vec![],
        },
    };
    assert!(matches!(
        evidence_refusal(s.broker.release(&request(ev.encode(), &[]))),
        Refusal::QuoteInvalid {
            backend: Backend::SevSnp,
            ..
        }
    ));
}

#[test]
fn debug_tee_is_refused() {
    let s = setup();
    let kp = WorkerKeypair::generate().unwrap();
    let (nonce, _) = s.broker.issue_nonce().unwrap();
    let debug_platform = SimAttester::from_seed(&[42; 32]).with_debug(true);
    let ev = debug_platform.attest(claims(&s, &kp, nonce)).unwrap();
    assert_eq!(
        evidence_refusal(s.broker.release(&request(ev.encode(), &[]))),
        Refusal::DebugTee {
            backend: Backend::Sim
        }
    );
}

#[test]
fn tampered_signature_is_refused() {
    let s = setup();
    let kp = WorkerKeypair::generate().unwrap();
    // A flipped bit in the signature.
    let (nonce, _) = s.broker.issue_nonce().unwrap();
    let mut enc = s.platform.attest(claims(&s, &kp, nonce)).unwrap().encode();
    let last = enc.len() - 1;
    enc[last] ^= 0x01;
    assert_eq!(
        evidence_refusal(s.broker.release(&request(enc, &[]))),
        Refusal::BadSignature {
            backend: Backend::Sim
        }
    );
    // A host that swaps in its own public key to receive the keys.
    let (nonce, _) = s.broker.issue_nonce().unwrap();
    let mut ev = s.platform.attest(claims(&s, &kp, nonce)).unwrap();
    ev.claims.worker_public_key = WorkerKeypair::generate().unwrap().public_bytes();
    assert_eq!(
        evidence_refusal(s.broker.release(&request(ev.encode(), &[]))),
        Refusal::BadSignature {
            backend: Backend::Sim
        }
    );
    // The debug flag flipped off after signing.
    let (nonce, _) = s.broker.issue_nonce().unwrap();
    let mut ev = SimAttester::from_seed(&[42; 32])
        .with_debug(true)
        .attest(claims(&s, &kp, nonce))
        .unwrap();
    if let EvidenceBody::Sim { debug, .. } = &mut ev.body {
        *debug = false;
    }
    assert!(matches!(
        evidence_refusal(s.broker.release(&request(ev.encode(), &[]))),
        Refusal::BadSignature { .. }
    ));
    // A platform key the policy does not list.
    let (nonce, _) = s.broker.issue_nonce().unwrap();
    let ev = SimAttester::from_seed(&[7; 32])
        .attest(claims(&s, &kp, nonce))
        .unwrap();
    assert!(matches!(
        evidence_refusal(s.broker.release(&request(ev.encode(), &[]))),
        Refusal::UnknownSimPlatform { .. }
    ));
    // Garbage evidence.
    let (_nonce, _) = s.broker.issue_nonce().unwrap();
    assert!(matches!(
        evidence_refusal(s.broker.release(&request(b"AOEVjunk".to_vec(), &[]))),
        Refusal::Malformed(_)
    ));
}

#[test]
fn device_outside_the_assignment_is_refused() {
    let s = setup();
    let kp = WorkerKeypair::generate().unwrap();
    for (devices, subscribers, assignment) in [
        (vec!["ECG-1", "ECG-3"], vec![], "ward-a"),
        (vec!["ECG-7"], vec![], "ward-a"),
        (vec!["ECG-1"], vec!["dr-b"], "ward-a"),
        (vec![], vec![], "ward-z"),
    ] {
        let (nonce, _) = s.broker.issue_nonce().unwrap();
        let ev = s.platform.attest(claims(&s, &kp, nonce)).unwrap();
        let req = ReleaseRequest {
            evidence: ev.encode(),
            assignment: assignment.into(),
            devices: devices.iter().map(|d| d.to_string()).collect(),
            subscribers: subscribers.iter().map(|d| d.to_string()).collect(),
        };
        let r = s.broker.release(&req);
        assert!(
            matches!(
                r,
                Err(BrokerRefusal::DeviceOutsideAssignment { .. }
                    | BrokerRefusal::SubscriberOutsideAssignment { .. }
                    | BrokerRefusal::UnknownAssignment { .. })
            ),
            "{devices:?} {subscribers:?} {assignment}: {r:?}"
        );
    }
    // An assigned device without a registered key: refused, nothing partial.
    let (nonce, _) = s.broker.issue_nonce().unwrap();
    let ev = s.platform.attest(claims(&s, &kp, nonce)).unwrap();
    let req = ReleaseRequest {
        evidence: ev.encode(),
        assignment: "ward-b".into(),
        devices: vec![],
        subscribers: vec![],
    };
    assert!(matches!(
        s.broker.release(&req),
        Err(BrokerRefusal::KeyUnavailable { what: "device", .. })
    ));
}

/// A duplex in-memory stream: reads from `input`, writes into `output`.
struct Duplex {
    input: std::io::Cursor<Vec<u8>>,
    output: Vec<u8>,
}

impl std::io::Read for Duplex {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(b)
    }
}

impl std::io::Write for Duplex {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.output.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn hello(role: aorta_enclave::wire::Role) -> Vec<u8> {
    aorta_enclave::wire::Message::Hello {
        version: aorta_enclave::wire::PROTOCOL_VERSION,
        role,
    }
    .encode()
    .unwrap()
}

#[test]
fn broker_connection_refuses_protocol_abuse() {
    use aorta_enclave::wire::{Message, Role};
    let s = setup();
    // A host (not a worker) may not talk to the broker.
    let mut d = Duplex {
        input: std::io::Cursor::new(hello(Role::Host)),
        output: vec![],
    };
    assert!(s.broker.handle_connection(&mut d).is_err());
    // A worker sending a host message.
    let mut input = hello(Role::Worker);
    input.extend(Message::Shutdown.encode().unwrap());
    let mut d = Duplex {
        input: std::io::Cursor::new(input),
        output: vec![],
    };
    assert!(s.broker.handle_connection(&mut d).is_err());
    // More than the per-connection message limit: served up to the limit, then closed.
    let mut input = hello(Role::Worker);
    for _ in 0..100 {
        input.extend(Message::ChallengeRequest.encode().unwrap());
    }
    let mut d = Duplex {
        input: std::io::Cursor::new(input),
        output: vec![],
    };
    s.broker.handle_connection(&mut d).unwrap();
    let mut cur = std::io::Cursor::new(d.output);
    let mut n = 0;
    while let Some(m) = aorta_enclave::wire::read_message(&mut cur).unwrap() {
        if matches!(m, Message::Challenge { .. }) {
            n += 1;
        }
    }
    assert_eq!(n, aorta_server::broker::MAX_MESSAGES_PER_CONNECTION);
}

#[test]
fn huge_identifiers_still_get_a_refusal() {
    use aorta_enclave::wire::{Message, Role};
    let s = setup();
    let kp = WorkerKeypair::generate().unwrap();
    let (nonce, _) = s.broker.issue_nonce().unwrap();
    let ev = s.platform.attest(claims(&s, &kp, nonce)).unwrap();
    let mut input = hello(Role::Worker);
    input.extend(
        Message::KeyRequest {
            evidence: ev.encode(),
            assignment: "ward-a".into(),
            devices: vec!["é".repeat(30_000)],
            subscribers: vec![],
        }
        .encode()
        .unwrap(),
    );
    let mut d = Duplex {
        input: std::io::Cursor::new(input),
        output: vec![],
    };
    s.broker.handle_connection(&mut d).unwrap();
    let mut cur = std::io::Cursor::new(d.output);
    let _hello = aorta_enclave::wire::read_message(&mut cur).unwrap();
    match aorta_enclave::wire::read_message(&mut cur).unwrap() {
        Some(Message::Refused { code: 303, reason }) => assert!(reason.len() <= 1030),
        other => panic!("{other:?}"),
    }
}

proptest::proptest! {
    #[test]
    fn hostile_bytes_to_the_broker_never_panic(
        garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        after_hello in proptest::prelude::any::<bool>(),
    ) {
        let s = setup();
        let mut input = if after_hello { hello(aorta_enclave::wire::Role::Worker) } else { vec![] };
        input.extend(garbage);
        let mut d = Duplex { input: std::io::Cursor::new(input), output: vec![] };
        let _ = s.broker.handle_connection(&mut d);
    }

    #[test]
    fn hostile_policy_text_never_panics(text in "\\PC{0,200}") {
        let _ = Policy::from_toml_str(&text);
    }

    #[test]
    fn hostile_key_requests_are_refused(
        evidence in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        assignment in "\\PC{0,20}",
    ) {
        let s = setup();
        let r = s.broker.release(&ReleaseRequest { evidence, assignment, devices: vec![], subscribers: vec![] });
        proptest::prop_assert!(r.is_err());
    }
}

#[test]
fn key_file_is_parsed_and_errors_never_echo_keys() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("keys.toml");
    std::fs::write(
        &p,
        "[transport]\n\"ECG-1\" = \"0101010101010101010101010101010101010101010101010101010101010101\"\n[results]\n\"dr\" = \"0202020202020202020202020202020202020202020202020202020202020202\"\n",
    )
    .unwrap();
    let k = MemoryKeySource::from_toml_file(&p).unwrap();
    use aorta_server::broker::KeySource;
    assert_eq!(k.transport_key("ECG-1"), Some(key(1)));
    assert_eq!(k.result_key("dr"), Some(key(2)));
    assert!(!format!("{k:?}").contains("0101"));
    // A short key and broken TOML: errors that do not quote the key material.
    for bad in [
        "[transport]\n\"ECG-1\" = \"abcdef0123456789\"\n",
        "[transport]\n\"ECG-1\" = 0123456789abcdef0123456789abcdef\n",
        "[transport\n\"ECG-1\" = \"0123456789abcdef0123456789abcdef\"\n",
    ] {
        std::fs::write(&p, bad).unwrap();
        let e = MemoryKeySource::from_toml_file(&p).unwrap_err().to_string();
        assert!(!e.contains("0123456789abcdef"), "{e}");
    }
}

#[test]
fn outstanding_challenges_are_bounded_and_expire() {
    let s = setup();
    for _ in 0..aorta_server::broker::MAX_OUTSTANDING_NONCES {
        s.broker.issue_nonce().unwrap();
    }
    assert_eq!(s.broker.issue_nonce().unwrap_err(), BrokerRefusal::Busy);
    s.clock.store(T0 + 61, Ordering::SeqCst);
    s.broker.issue_nonce().unwrap();
}
