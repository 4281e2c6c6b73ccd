//! Test vectors for the worker protocol (`docs/worker-protocol.md`) and the
//! evidence format (`docs/attestation.md`), under `docs/vectors/`.
//!
//! Run with `AORTA_REGENERATE_VECTORS=1` to (re)write them; otherwise the
//! committed files are checked: deterministic ones byte for byte, the HPKE
//! key release (randomised by its ephemeral key) by opening it with the
//! vector worker key and comparing the bundle.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)]

use std::path::PathBuf;

use aorta_base::hex::encode as hex;
use aorta_enclave::attest::{Attester, SimAttester};
use aorta_enclave::evidence::{Backend, Evidence, EvidenceClaims, Measurement, Nonce};
use aorta_enclave::keywrap::{KeyBundle, Secret32, open_bundle};
use aorta_enclave::verify::{VerifierPolicy, verify};
use aorta_enclave::wire::{self, DeviceSelection, Message, PROTOCOL_VERSION, Role};
use aorta_enclave::worker::WorkerKeypair;

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/vectors"))
}

fn regenerate() -> bool {
    std::env::var_os("AORTA_REGENERATE_VECTORS").is_some()
}

fn worker_key() -> WorkerKeypair {
    WorkerKeypair::from_ikm(&[0x11; 32])
}

fn claims() -> EvidenceClaims {
    EvidenceClaims {
        backend: Backend::Sim,
        nonce: Nonce([0x22; 32]),
        worker_public_key: worker_key().public_bytes(),
        app_measurement: Measurement::of_worker(b"aorta worker binary", b"window_secs = 300\n"),
        issued_at: 1_767_225_600,
    }
}

fn platform() -> SimAttester {
    SimAttester::from_seed(&[0x33; 32])
}

fn bundle() -> KeyBundle {
    let mut b = KeyBundle::new("ward-a");
    b.transport_keys
        .push(("ECG-0001".into(), Secret32::from_bytes([0x44; 32])));
    b.transport_keys
        .push(("ECG-0002".into(), Secret32::from_bytes([0x55; 32])));
    b.result_keys
        .push(("dr-alice".into(), Secret32::from_bytes([0x66; 32])));
    b
}

fn messages(evidence: &[u8]) -> Vec<(&'static str, Message)> {
    vec![
        (
            "01-hello-worker",
            Message::Hello {
                version: PROTOCOL_VERSION,
                role: Role::Worker,
            },
        ),
        ("02-challenge-request", Message::ChallengeRequest),
        (
            "03-challenge",
            Message::Challenge {
                nonce: Nonce([0x22; 32]),
                issued_at: 1_767_225_600,
            },
        ),
        (
            "04-key-request",
            Message::KeyRequest {
                evidence: evidence.to_vec(),
                assignment: "ward-a".into(),
                devices: vec!["ECG-0001".into(), "ECG-0002".into()],
                subscribers: vec!["dr-alice".into()],
            },
        ),
        (
            "06-refused",
            Message::Refused {
                code: 303,
                reason: "device \"ECG-0009\" is not in assignment \"ward-a\"".into(),
            },
        ),
        (
            "07-status",
            Message::Status {
                backend: 1,
                hardware_protected: false,
                measurement: claims().app_measurement.0.to_vec(),
                transport_keys: 2,
                result_keys: 1,
            },
        ),
        (
            "08-sealed-frame",
            Message::SealedFrame {
                frame: b"opaque sealed frame bytes".to_vec(),
            },
        ),
        (
            "09-frame-done",
            Message::FrameDone {
                serial: "ECG-0001".into(),
                sequence: 42,
                samples: 720,
            },
        ),
        (
            "10-frame-refused",
            Message::FrameRefused {
                code: 200,
                reason: "no transport key released for this frame's device".into(),
            },
        ),
        ("11-shutdown", Message::Shutdown),
        (
            "12-key-window-request-page",
            Message::KeyWindowRequest {
                evidence: evidence.to_vec(),
                assignment: "ward-a".into(),
                width: 4,
                devices: DeviceSelection::Page {
                    after: "ECG-0001".into(),
                    max: 15_000,
                },
                subscribers: vec![],
            },
        ),
        (
            "13-key-window-request-listed",
            Message::KeyWindowRequest {
                evidence: evidence.to_vec(),
                assignment: "ward-a".into(),
                width: 4,
                devices: DeviceSelection::Listed(vec![
                    ("ECG-0001".into(), 118),
                    ("ECG-0002".into(), 7),
                ]),
                subscribers: vec!["dr-alice".into()],
            },
        ),
    ]
}

fn check_or_write(name: &str, bytes: &[u8]) {
    let p = root().join(name);
    if regenerate() {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
    } else {
        let got = std::fs::read(&p).unwrap_or_else(|e| {
            panic!("{}: {e} (run with AORTA_REGENERATE_VECTORS=1)", p.display())
        });
        assert_eq!(
            got,
            bytes,
            "{} differs from the encoder's output",
            p.display()
        );
    }
}

#[test]
fn evidence_vectors() {
    let ev = platform().attest(claims()).unwrap();
    let enc = ev.encode();
    check_or_write("attestation/sim-evidence.bin", &enc);
    let info = serde_json::json!({
        "description": "sim evidence v1 (Ed25519 platform key from seed 0x33*32; worker X25519 key from HPKE DeriveKeyPair(ikm = 0x11*32))",
        "platform_public_key": hex(&platform().platform_public_key()),
        "worker_public_key": hex(&claims().worker_public_key),
        "nonce": claims().nonce.to_hex(),
        "app_measurement": claims().app_measurement.to_hex(),
        "issued_at": claims().issued_at,
        "report_data": hex(&claims().report_data()),
        "file": "sim-evidence.bin",
    });
    check_or_write(
        "attestation/sim-evidence.json",
        format!("{}\n", serde_json::to_string_pretty(&info).unwrap()).as_bytes(),
    );
    // The committed vector decodes and verifies.
    let dec =
        Evidence::decode(&std::fs::read(root().join("attestation/sim-evidence.bin")).unwrap())
            .unwrap();
    let policy = VerifierPolicy {
        allowed_backends: vec![Backend::Sim],
        allow_simulation: true,
        allowed_measurements: vec![claims().app_measurement.0.to_vec()],
        sim_platform_keys: vec![platform().platform_public_key()],
        ..VerifierPolicy::default()
    };
    verify(&dec, &claims().nonce, claims().issued_at, &policy).unwrap();
}

#[test]
fn worker_protocol_vectors() {
    let ev = platform().attest(claims()).unwrap().encode();
    let mut index = Vec::new();
    for (name, m) in messages(&ev) {
        let file = format!("worker-protocol/{name}.bin");
        check_or_write(&file, &m.encode().unwrap());
        let bytes = std::fs::read(root().join(&file)).unwrap();
        let mut c = std::io::Cursor::new(&bytes);
        assert_eq!(wire::read_message(&mut c).unwrap().unwrap(), m);
        index.push(serde_json::json!({
            "file": format!("{name}.bin"),
            "type": format!("0x{:02x}", m.type_byte()),
            "message": m.name(),
        }));
    }
    // Key release: HPKE is randomised, so the file is written once and then
    // checked by opening it with the vector worker key.
    let p = root().join("worker-protocol/05-key-release.bin");
    if regenerate() {
        // Sealing needs an AttestedWorker: verify the vector evidence first.
        let policy = VerifierPolicy {
            allowed_backends: vec![Backend::Sim],
            allow_simulation: true,
            allowed_measurements: vec![claims().app_measurement.0.to_vec()],
            sim_platform_keys: vec![platform().platform_public_key()],
            ..VerifierPolicy::default()
        };
        let w = verify(
            &Evidence::decode(&ev).unwrap(),
            &claims().nonce,
            claims().issued_at,
            &policy,
        )
        .unwrap();
        let sealed = aorta_enclave::keywrap::seal_bundle(&w, &bundle()).unwrap();
        std::fs::write(&p, Message::KeyRelease { sealed }.encode().unwrap()).unwrap();
    }
    let bytes = std::fs::read(&p).unwrap();
    let Some(Message::KeyRelease { sealed }) =
        wire::read_message(&mut std::io::Cursor::new(&bytes)).unwrap()
    else {
        panic!("05-key-release.bin is not a KeyRelease");
    };
    assert_eq!(
        open_bundle(&worker_key(), &claims(), &sealed).unwrap(),
        bundle()
    );
    index.push(serde_json::json!({
        "file": "05-key-release.bin", "type": "0x13", "message": "KeyRelease",
        "note": "HPKE-sealed bundle: assignment ward-a, ECG-0001 = 0x44*32, ECG-0002 = 0x55*32, dr-alice = 0x66*32; opens with the worker key of attestation/sim-evidence.json",
    }));
    index.sort_by_key(|v| v["file"].as_str().unwrap().to_owned());
    check_or_write(
        "worker-protocol/index.json",
        format!("{}\n", serde_json::to_string_pretty(&index).unwrap()).as_bytes(),
    );
}
