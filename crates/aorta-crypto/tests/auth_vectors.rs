//! Test vectors for `docs/authentication.md`.
//!
//! `AORTA_WRITE_VECTORS=1 cargo test -p aorta-crypto --test auth_vectors`
//! (re)writes `docs/vectors/authentication/`; without it, this test checks
//! the committed vectors: the generator (fixed seeds; Ed25519 signing is
//! deterministic) reproduces every file byte for byte; every valid vector
//! verifies with `aorta_crypto::auth` / `aorta_crypto::directory`; every
//! invalid one is refused with the listed error kind; and an independent
//! implementation of the spec's tables (written here from the document with
//! `ed25519-dalek`, `sha2` and `hkdf` directly, not through
//! `aorta_crypto::auth`) verifies the same bytes and makes the same
//! signatures.
//!
//! The signed frame is `docs/vectors/frame-format/valid-rr.aof` and the
//! signed result's payload `docs/vectors/results/result-hr.aorr`, copied:
//! rewrite these vectors when those change.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)]

use std::path::PathBuf;

use aorta_base::codec::Encode;
use aorta_crypto::auth::{
    self, AuthError, SignedResult, SigningKey, WorkerCert, clinician_auth_key, frame_message,
    read_message,
};
use aorta_crypto::directory::{Directory, DirectoryError, Entry, Status};
use ed25519_dalek::Signer;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/vectors/authentication"
    ))
}

fn sibling(set: &str, file: &str) -> Vec<u8> {
    let vectors = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/vectors"));
    std::fs::read(vectors.join(set).join(file)).unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex");
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn unhex_n<const N: usize>(s: &str) -> [u8; N] {
    unhex(s).try_into().unwrap()
}

/// Deterministic seeds of the vectors: byte i = (seed + 7 i) mod 256.
fn bytes<const N: usize>(seed: u8) -> [u8; N] {
    std::array::from_fn(|i| seed.wrapping_add((i as u8).wrapping_mul(7)))
}

fn kind(e: &AuthError) -> &'static str {
    match e {
        AuthError::Malformed(_) => "malformed",
        AuthError::BadMagic { .. } => "bad_magic",
        AuthError::UnknownVersion { .. } => "unknown_version",
        AuthError::BadSignature { .. } => "bad_signature",
        AuthError::WrongIssuer { .. } => "wrong_issuer",
        AuthError::NotValidNow { .. } => "not_valid_now",
        AuthError::WrongCertificate { .. } => "wrong_certificate",
        _ => "other",
    }
}

const NOT_BEFORE: u64 = 1_700_000_000;
const NOT_AFTER: u64 = NOT_BEFORE + 30 * 24 * 3600;
const NOW: u64 = NOT_BEFORE + 3600;
const BACKEND: &str = "sev-snp";
const ASSIGNMENT: &str = "ward-a";
/// The store id: `SUBSCRIBER/RESULT_ID` (`aorta_worker::seal`).
const RESULT_ID: &str = "dr-alice/ECG-0001/hr/000042";
const SUBSCRIBER: &str = "dr-alice";
const READ_PATH: &str = "/v1/results?after=0&limit=100";
const READ_TIME: u64 = 1_700_000_123;

struct Built {
    doc: Value,
    files: Vec<(String, Vec<u8>)>,
}

fn build() -> Built {
    let device = SigningKey::from_seed(&bytes::<32>(0xd0)).unwrap();
    let broker = SigningKey::from_seed(&bytes::<32>(0xb0)).unwrap();
    let other_broker = SigningKey::from_seed(&bytes::<32>(0xb1)).unwrap();
    let worker = SigningKey::from_seed(&bytes::<32>(0xa0)).unwrap();
    let measurement = bytes::<48>(0x40);
    let identity_secret = bytes::<32>(0x10);

    // Device frame signature.
    let frame = sibling("frame-format", "valid-rr.aof");
    let serial = aorta_crypto::frame::parse(&frame).unwrap().header.serial;
    let frame_sig = device.sign(&frame_message(&frame));

    // Directory: the signing device, a revoked one, one not yet registered.
    let mut d = Directory::default();
    d.devices.insert(
        serial.clone(),
        Entry {
            status: Status::Verified,
            slice_len: 120,
            min_key_uses: 1000,
            public_key: Some(device.public()),
        },
    );
    d.devices.insert(
        "ECG-0002".into(),
        Entry {
            status: Status::Revoked,
            slice_len: 120,
            min_key_uses: 1000,
            public_key: Some(bytes::<32>(0xd2)),
        },
    );
    d.devices.insert(
        "ECG-0003".into(),
        Entry {
            status: Status::Unverified,
            slice_len: 64,
            min_key_uses: 500,
            public_key: None,
        },
    );
    let directory = d.to_text();

    // Worker certificate and signed result.
    let cert = WorkerCert::issue(
        &broker,
        worker.public(),
        NOT_BEFORE,
        NOT_AFTER,
        true,
        BACKEND,
        &measurement,
        ASSIGNMENT,
        &[SUBSCRIBER.to_owned()],
    );
    let cert_bytes = cert.to_bytes();
    let payload = sibling("results", "result-hr.aorr");
    let result = SignedResult::sign(&worker, cert.digest(), RESULT_ID, &payload);

    // Clinician authentication key and a read request.
    let auth_key = clinician_auth_key(&identity_secret).unwrap();
    let read_msg = read_message(SUBSCRIBER, READ_TIME, READ_PATH);
    let read_sig = auth_key.sign(&read_msg);

    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("frame.aof".into(), frame.clone()),
        (
            "frame.signature.txt".into(),
            format!("{}\n", hex(&frame_sig)).into_bytes(),
        ),
        ("directory.txt".into(), directory.into_bytes()),
        ("worker.aowc".into(), cert_bytes.clone()),
        ("result.aosg".into(), result.clone()),
    ];
    let mut entries = vec![
        json!({"file": "frame.aof", "kind": "frame", "expect": "ok",
               "serial": serial, "public_key_hex": hex(&device.public()),
               "message_hex": hex(&frame_message(&frame)),
               "signature_file": "frame.signature.txt"}),
        json!({"file": "directory.txt", "kind": "directory", "expect": "ok", "devices": 3}),
        json!({"file": "worker.aowc", "kind": "certificate", "expect": "ok",
               "pinned_broker_hex": hex(&broker.public()), "now": NOW,
               "worker_key_hex": hex(&worker.public()), "not_before": NOT_BEFORE,
               "not_after": NOT_AFTER, "hardware": true, "backend": BACKEND,
               "measurement_hex": hex(&measurement), "assignment": ASSIGNMENT,
               "digest_hex": hex(&cert.digest())}),
        json!({"file": "result.aosg", "kind": "result", "expect": "ok",
               "certificate": "worker.aowc", "result_id": RESULT_ID,
               "payload_sha256_hex": hex(&Sha256::digest(&payload))}),
        // The valid certificate at the first second after its validity.
        json!({"file": "worker.aowc", "kind": "certificate", "expect": "not_valid_now",
               "pinned_broker_hex": hex(&broker.public()), "now": NOT_AFTER + 1}),
        // ... and one second before it.
        json!({"file": "worker.aowc", "kind": "certificate", "expect": "not_valid_now",
               "pinned_broker_hex": hex(&broker.public()), "now": NOT_BEFORE - 1}),
        // The valid certificate checked against another pinned broker key.
        json!({"file": "worker.aowc", "kind": "certificate", "expect": "wrong_issuer",
               "pinned_broker_hex": hex(&other_broker.public()), "now": NOW}),
        // The valid result presented under another result id.
        json!({"file": "result.aosg", "kind": "result", "expect": "bad_signature",
               "certificate": "worker.aowc", "result_id": "dr-alice/ECG-0001/hr/000043"}),
    ];
    let mut bad = |name: &str, k: &str, b: Vec<u8>, extra: Value, expect: &str| {
        files.push((name.to_owned(), b));
        let mut e = json!({"file": name, "kind": k, "expect": expect});
        for (key, v) in extra.as_object().unwrap() {
            e[key] = v.clone();
        }
        entries.push(e);
    };

    // Frames.
    let mut v = frame.clone();
    let last = v.len() - 1;
    v[last] ^= 1;
    bad(
        "frame-flipped-bit.aof",
        "frame",
        v,
        json!({"serial": serial, "public_key_hex": hex(&device.public()),
               "signature_file": "frame.signature.txt"}),
        "bad_signature",
    );

    // Certificates.
    let pin = json!({"pinned_broker_hex": hex(&broker.public()), "now": NOW});
    let mut v = cert_bytes.clone();
    let last = v.len() - 1;
    v[last] ^= 1;
    bad(
        "worker-flipped-signature.aowc",
        "certificate",
        v,
        pin.clone(),
        "bad_signature",
    );
    let mut v = cert_bytes.clone();
    v[5] ^= 1; // first byte of worker_key: a key the broker did not certify
    bad(
        "worker-flipped-key.aowc",
        "certificate",
        v,
        pin.clone(),
        "bad_signature",
    );
    let forged = WorkerCert::issue(
        &other_broker,
        worker.public(),
        NOT_BEFORE,
        NOT_AFTER,
        true,
        BACKEND,
        &measurement,
        ASSIGNMENT,
        &[SUBSCRIBER.to_owned()],
    );
    bad(
        "worker-wrong-issuer.aowc",
        "certificate",
        forged.to_bytes(),
        pin.clone(),
        "wrong_issuer",
    );
    let expired = WorkerCert::issue(
        &broker,
        worker.public(),
        NOT_BEFORE - 3600,
        NOW - 1,
        true,
        BACKEND,
        &measurement,
        ASSIGNMENT,
        &[SUBSCRIBER.to_owned()],
    );
    bad(
        "worker-expired.aowc",
        "certificate",
        expired.to_bytes(),
        pin.clone(),
        "not_valid_now",
    );
    let mut v = cert_bytes.clone();
    v.push(0);
    bad(
        "worker-trailing.aowc",
        "certificate",
        v,
        pin.clone(),
        "malformed",
    );
    bad(
        "worker-truncated.aowc",
        "certificate",
        cert_bytes[..cert_bytes.len() - 1].to_vec(),
        pin.clone(),
        "malformed",
    );
    let mut v = cert_bytes.clone();
    v[4] = 2;
    bad(
        "worker-version-2.aowc",
        "certificate",
        v,
        pin.clone(),
        "unknown_version",
    );
    let mut v = cert_bytes.clone();
    v[0] = b'X';
    bad(
        "worker-bad-magic.aowc",
        "certificate",
        v,
        pin.clone(),
        "bad_magic",
    );
    let mut v = cert_bytes.clone();
    v[4 + 1 + 32 + 32 + 16] = 2; // hardware flag
    bad(
        "worker-bad-hardware-flag.aowc",
        "certificate",
        v,
        pin.clone(),
        "malformed",
    );

    // Signed results.
    let rc = json!({"certificate": "worker.aowc", "result_id": RESULT_ID});
    let mut v = result.clone();
    let last = v.len() - 1;
    v[last] ^= 1;
    bad(
        "result-flipped-payload.aosg",
        "result",
        v,
        rc.clone(),
        "bad_signature",
    );
    let mut v = result.clone();
    v.push(0);
    bad(
        "result-trailing.aosg",
        "result",
        v,
        rc.clone(),
        "bad_signature",
    );
    let mut v = result.clone();
    v[5] ^= 1; // cert_digest
    bad(
        "result-other-certificate.aosg",
        "result",
        v,
        rc.clone(),
        "wrong_certificate",
    );
    // Signed by a key the broker never certified, naming the certificate.
    let uncertified = SigningKey::from_seed(&bytes::<32>(0xa1)).unwrap();
    bad(
        "result-uncertified-key.aosg",
        "result",
        SignedResult::sign(&uncertified, cert.digest(), RESULT_ID, &payload),
        rc.clone(),
        "bad_signature",
    );
    bad(
        "result-truncated.aosg",
        "result",
        result[..4 + 1 + 32 + 63].to_vec(),
        rc.clone(),
        "malformed",
    );
    let mut v = result.clone();
    v[4] = 2;
    bad(
        "result-version-2.aosg",
        "result",
        v,
        rc.clone(),
        "unknown_version",
    );

    // Directories refused (the line number is the one the error names).
    let key = hex(&device.public());
    let h = aorta_crypto::directory::HEADER;
    for (name, text, expect) in [
        (
            "directory-bad-header.txt",
            format!("aorta-device-directory-2\n{serial} verified 120 1000 {key}\n"),
            "bad_header",
        ),
        (
            "directory-upper-case-key.txt",
            format!("{h}\n{serial} verified 120 1000 {}\n", key.to_uppercase()),
            "line 2",
        ),
        (
            "directory-duplicate-serial.txt",
            format!(
                "{h}\n{serial} verified 120 1000 {key}\n# again\n{serial} revoked 120 1000 -\n"
            ),
            "line 4",
        ),
        (
            "directory-two-spaces.txt",
            format!("{h}\n{serial}  verified 120 1000 {key}\n"),
            "line 2",
        ),
        (
            "directory-zero-slice.txt",
            format!("{h}\n{serial} verified 0 1000 {key}\n"),
            "line 2",
        ),
    ] {
        bad(name, "directory", text.into_bytes(), json!({}), expect);
    }

    let doc = json!({
        "description": "aorta authentication (docs/authentication.md) test vectors; written by crates/aorta-crypto/tests/auth_vectors.rs. The seeds here are PUBLIC test values: never use them.",
        "device_seed_hex": hex(&bytes::<32>(0xd0)),
        "device_public_hex": hex(&device.public()),
        "broker_seed_hex": hex(&bytes::<32>(0xb0)),
        "broker_public_hex": hex(&broker.public()),
        "other_broker_seed_hex": hex(&bytes::<32>(0xb1)),
        "other_broker_public_hex": hex(&other_broker.public()),
        "worker_seed_hex": hex(&bytes::<32>(0xa0)),
        "worker_public_hex": hex(&worker.public()),
        "clinician": {
            "identity_secret_hex": hex(&identity_secret),
            "auth_seed_hex": hex(auth_key.seed()),
            "auth_public_hex": hex(&auth_key.public()),
            "subscriber": SUBSCRIBER,
            "unix_s": READ_TIME,
            "path_and_query": READ_PATH,
            "read_message_hex": hex(&read_msg),
            "read_signature_hex": hex(&read_sig),
        },
        "vectors": entries,
    });
    Built { doc, files }
}

fn dir_kind(e: &DirectoryError) -> String {
    match e {
        DirectoryError::BadHeader => "bad_header".into(),
        DirectoryError::TooLarge { .. } => "too_large".into(),
        DirectoryError::Line { line, .. } => format!("line {line}"),
        _ => "other".into(),
    }
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap()
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} missing"))
        .to_owned()
}

/// What the library says about one vector: "ok" or the error kind.
fn library_outcome(v: &Value) -> String {
    let bytes = read(&s(v, "file"));
    match s(v, "kind").as_str() {
        "frame" => {
            let sig = unhex_n::<64>(
                String::from_utf8(read(&s(v, "signature_file")))
                    .unwrap()
                    .trim_end(),
            );
            let key = unhex_n::<32>(&s(v, "public_key_hex"));
            match auth::verify_frame(&key, &bytes, &sig) {
                Ok(()) => "ok".into(),
                Err(e) => kind(&e).into(),
            }
        }
        "directory" => match Directory::parse(std::str::from_utf8(&bytes).unwrap()) {
            Ok(d) => {
                assert_eq!(d.devices.len() as u64, v["devices"].as_u64().unwrap());
                assert_eq!(d.to_text().as_bytes(), &bytes[..], "not canonical");
                "ok".into()
            }
            Err(e) => dir_kind(&e),
        },
        "certificate" => {
            let pin = unhex_n::<32>(&s(v, "pinned_broker_hex"));
            match WorkerCert::parse(&bytes).and_then(|c| c.verify(&pin, v["now"].as_u64().unwrap()))
            {
                Ok(()) => "ok".into(),
                Err(e) => kind(&e).into(),
            }
        }
        "result" => {
            let cert = WorkerCert::parse(&read(&s(v, "certificate"))).unwrap();
            match SignedResult::parse(&bytes).and_then(|r| r.verify(&cert, &s(v, "result_id"))) {
                Ok(p) => {
                    assert_eq!(
                        hex(&Sha256::digest(p)),
                        s(v, "payload_sha256_hex"),
                        "payload"
                    );
                    "ok".into()
                }
                Err(e) => kind(&e).into(),
            }
        }
        k => panic!("unknown kind {k}"),
    }
}

// ---- The independent implementation: docs/authentication.md's tables. ----

fn dalek_key(seed_hex: &str) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&unhex_n::<32>(seed_hex))
}

fn dalek_verify(public: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    let Ok(k) = ed25519_dalek::VerifyingKey::from_bytes(public) else {
        return false;
    };
    k.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
        .is_ok()
}

fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// "Device frame signature": label ‖ SHA-256(frame).
fn spec_frame_message(frame: &[u8]) -> Vec<u8> {
    let mut m = b"aorta/v1/device-frame\0".to_vec();
    m.extend_from_slice(&sha256(frame));
    m
}

/// "Worker certificate": the fields at the table's offsets.
struct SpecCert<'a> {
    body: &'a [u8],
    worker_key: [u8; 32],
    broker_key: [u8; 32],
    not_before: u64,
    not_after: u64,
    hardware: u8,
    backend: &'a [u8],
    measurement: &'a [u8],
    assignment: &'a [u8],
    subscribers: Vec<&'a [u8]>,
    signature: [u8; 64],
}

fn spec_cert(b: &[u8]) -> SpecCert<'_> {
    assert_eq!(&b[0..4], b"AOWC");
    assert_eq!(b[4], 1);
    let u64_at = |o: usize| u64::from_be_bytes(b[o..o + 8].try_into().unwrap());
    let mut o = 86;
    fn field<'b>(b: &'b [u8], o: &mut usize) -> &'b [u8] {
        let n = usize::from(b[*o]);
        let f = &b[*o + 1..*o + 1 + n];
        *o += 1 + n;
        f
    }
    let backend = field(b, &mut o);
    let measurement = field(b, &mut o);
    let assignment = field(b, &mut o);
    let n = usize::from(u16::from_be_bytes([b[o], b[o + 1]]));
    o += 2;
    let mut subscribers = Vec::new();
    for _ in 0..n {
        subscribers.push(field(b, &mut o));
    }
    assert_eq!(b.len(), o + 64, "exact length");
    SpecCert {
        body: &b[..o],
        worker_key: b[5..37].try_into().unwrap(),
        broker_key: b[37..69].try_into().unwrap(),
        not_before: u64_at(69),
        not_after: u64_at(77),
        hardware: b[85],
        backend,
        measurement,
        assignment,
        subscribers,
        signature: b[o..].try_into().unwrap(),
    }
}

fn independent_check(doc: &Value) {
    let valid = |k: &str| {
        doc["vectors"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["kind"] == k && v["expect"] == "ok")
            .unwrap()
            .clone()
    };

    // Device frame: the committed signature verifies, and signing the
    // spec's message with the device seed gives exactly it.
    let fv = valid("frame");
    let frame = read(&s(&fv, "file"));
    let msg = spec_frame_message(&frame);
    assert_eq!(hex(&msg), s(&fv, "message_hex"));
    let sig_text = String::from_utf8(read(&s(&fv, "signature_file"))).unwrap();
    assert_eq!(sig_text.len(), 129, "128 hex digits and a newline");
    assert!(
        sig_text
            .trim_end()
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    );
    let sig = unhex_n::<64>(sig_text.trim_end());
    let device = dalek_key(&s(doc, "device_seed_hex"));
    assert_eq!(
        hex(device.verifying_key().as_bytes()),
        s(doc, "device_public_hex")
    );
    assert_eq!(device.sign(&msg).to_bytes(), sig);
    assert!(dalek_verify(device.verifying_key().as_bytes(), &msg, &sig));
    // Any other frame bytes or another label do not verify.
    let mut other = frame.clone();
    other[0] ^= 1;
    assert!(!dalek_verify(
        device.verifying_key().as_bytes(),
        &spec_frame_message(&other),
        &sig
    ));

    // Directory: a minimal reader of the ABNF finds the frame's device,
    // verified, with the device key.
    let dv = valid("directory");
    let text = String::from_utf8(read(&s(&dv, "file"))).unwrap();
    let mut lines = text.split('\n');
    assert_eq!(lines.next(), Some("aorta-device-directory-1"));
    let mut found = false;
    for l in lines.filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let f: Vec<&str> = l.split(' ').collect();
        assert_eq!(f.len(), 5, "{l}");
        if f[0] == s(&fv, "serial") {
            assert_eq!(f[1], "verified");
            assert_eq!(f[4], s(doc, "device_public_hex"));
            found = true;
        }
    }
    assert!(found);

    // Worker certificate: the table's fields, the signature over label ‖
    // body by the broker key, the digest over the whole encoding.
    let cv = valid("certificate");
    let cb = read(&s(&cv, "file"));
    let c = spec_cert(&cb);
    let broker = dalek_key(&s(doc, "broker_seed_hex"));
    assert_eq!(&c.broker_key, broker.verifying_key().as_bytes());
    assert_eq!(hex(&c.broker_key), s(&cv, "pinned_broker_hex"));
    assert_eq!(hex(&c.worker_key), s(&cv, "worker_key_hex"));
    assert_eq!(c.not_before, cv["not_before"].as_u64().unwrap());
    assert_eq!(c.not_after, cv["not_after"].as_u64().unwrap());
    assert_eq!(c.hardware, 1);
    assert_eq!(c.backend, s(&cv, "backend").as_bytes());
    assert_eq!(hex(c.measurement), s(&cv, "measurement_hex"));
    assert_eq!(c.assignment, s(&cv, "assignment").as_bytes());
    assert_eq!(c.subscribers, vec![SUBSCRIBER.as_bytes()]);
    let now = cv["now"].as_u64().unwrap();
    assert!(c.not_before <= now && now <= c.not_after);
    let mut cmsg = b"aorta/v1/worker-certificate\0".to_vec();
    cmsg.extend_from_slice(c.body);
    assert!(dalek_verify(&c.broker_key, &cmsg, &c.signature));
    assert_eq!(broker.sign(&cmsg).to_bytes(), c.signature);
    let digest = sha256(&cb);
    assert_eq!(hex(&digest), s(&cv, "digest_hex"));

    // Signed result: layout, and the signature by the certified worker key
    // over label ‖ cert_digest ‖ u16 BE len(id) ‖ id ‖ SHA-256(payload).
    let rv = valid("result");
    let rb = read(&s(&rv, "file"));
    assert_eq!(&rb[0..4], b"AOSG");
    assert_eq!(rb[4], 1);
    assert_eq!(rb[5..37], digest);
    let rsig: [u8; 64] = rb[37..101].try_into().unwrap();
    let payload = &rb[101..];
    assert_eq!(hex(&sha256(payload)), s(&rv, "payload_sha256_hex"));
    let id = s(&rv, "result_id");
    let mut rmsg = b"aorta/v1/result\0".to_vec();
    rmsg.extend_from_slice(&digest);
    rmsg.extend_from_slice(&u16::try_from(id.len()).unwrap().to_be_bytes());
    rmsg.extend_from_slice(id.as_bytes());
    rmsg.extend_from_slice(&sha256(payload));
    assert!(dalek_verify(&c.worker_key, &rmsg, &rsig));
    let worker = dalek_key(&s(doc, "worker_seed_hex"));
    assert_eq!(worker.sign(&rmsg).to_bytes(), rsig);

    // Clinician: seed = HKDF-SHA256(salt, ikm = identity secret, info = "",
    // L = 32); the read message; the signature.
    let cl = &doc["clinician"];
    let secret = unhex(&s(cl, "identity_secret_hex"));
    let mut seed = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(Some(b"aorta/v1/clinician-auth"), &secret)
        .expand(&[], &mut seed)
        .unwrap();
    assert_eq!(hex(&seed), s(cl, "auth_seed_hex"));
    let auth = ed25519_dalek::SigningKey::from_bytes(&seed);
    assert_eq!(
        hex(auth.verifying_key().as_bytes()),
        s(cl, "auth_public_hex")
    );
    let sub = s(cl, "subscriber");
    let path = s(cl, "path_and_query");
    let mut m = b"aorta/v1/results-read\0".to_vec();
    m.push(u8::try_from(sub.len()).unwrap());
    m.extend_from_slice(sub.as_bytes());
    m.extend_from_slice(&cl["unix_s"].as_u64().unwrap().to_be_bytes());
    m.extend_from_slice(&u16::try_from(path.len()).unwrap().to_be_bytes());
    m.extend_from_slice(path.as_bytes());
    assert_eq!(hex(&m), s(cl, "read_message_hex"));
    let rs = unhex_n::<64>(&s(cl, "read_signature_hex"));
    assert_eq!(auth.sign(&m).to_bytes(), rs);
    assert!(dalek_verify(auth.verifying_key().as_bytes(), &m, &rs));
    // Domain separation: the read signature is not a frame signature of
    // the same bytes.
    assert!(!dalek_verify(
        auth.verifying_key().as_bytes(),
        &spec_frame_message(&m),
        &rs
    ));
}

#[test]
fn authentication_vectors() {
    let Built { doc, files } = build();
    let d = dir();
    if std::env::var_os("AORTA_WRITE_VECTORS").is_some() {
        std::fs::create_dir_all(&d).unwrap();
        for (name, b) in &files {
            std::fs::write(d.join(name), b).unwrap();
        }
        std::fs::write(
            d.join("vectors.json"),
            serde_json::to_string_pretty(&doc).unwrap() + "\n",
        )
        .unwrap();
    }
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("vectors.json")).unwrap()).unwrap();
    assert_eq!(
        committed, doc,
        "vectors.json differs from the generator: a format or derivation changed"
    );
    for (name, b) in &files {
        let on_disk = std::fs::read(d.join(name)).unwrap();
        assert_eq!(&on_disk, b, "{name} differs from the generator");
    }

    // The library reaches every vector's expected outcome.
    for v in committed["vectors"].as_array().unwrap() {
        assert_eq!(library_outcome(v), s(v, "expect"), "{v}");
    }
    // The library's clinician key and read message are the committed ones.
    let cl = &committed["clinician"];
    let k = clinician_auth_key(&unhex_n::<32>(&s(cl, "identity_secret_hex"))).unwrap();
    assert_eq!(hex(&k.public()), s(cl, "auth_public_hex"));
    let m = read_message(
        &s(cl, "subscriber"),
        cl["unix_s"].as_u64().unwrap(),
        &s(cl, "path_and_query"),
    );
    auth::verify(
        &k.public(),
        &m,
        &unhex_n::<64>(&s(cl, "read_signature_hex")),
        "read",
    )
    .unwrap();

    // And the independent implementation agrees.
    independent_check(&committed);
}

/// The negative vectors are refused by the independent implementation too
/// (signature-wise): no flipped or forged vector verifies under dalek.
#[test]
fn negative_vectors_do_not_verify_independently() {
    if std::env::var_os("AORTA_WRITE_VECTORS").is_some() {
        return; // the other test is rewriting the files
    }
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("vectors.json")).unwrap())
            .unwrap();
    let broker: [u8; 32] = unhex_n(&s(&doc, "broker_public_hex"));
    for v in doc["vectors"].as_array().unwrap() {
        let b = read(&s(v, "file"));
        match (s(v, "kind").as_str(), s(v, "expect").as_str()) {
            ("frame", "bad_signature") => {
                let sig = unhex_n::<64>(
                    String::from_utf8(read(&s(v, "signature_file")))
                        .unwrap()
                        .trim_end(),
                );
                let key = unhex_n::<32>(&s(v, "public_key_hex"));
                assert!(!dalek_verify(&key, &spec_frame_message(&b), &sig));
            }
            ("certificate", "wrong_issuer") => {
                // Issuer first: the key in the certificate is not the pin.
                let pin: [u8; 32] = unhex_n(&s(v, "pinned_broker_hex"));
                assert_ne!(spec_cert(&b).broker_key, pin, "{v}");
            }
            ("certificate", "bad_signature") => {
                let c = spec_cert(&b);
                assert_eq!(c.broker_key, broker);
                let mut m = b"aorta/v1/worker-certificate\0".to_vec();
                m.extend_from_slice(c.body);
                assert!(!dalek_verify(&broker, &m, &c.signature), "{v}");
            }
            ("certificate", "not_valid_now") => {
                let c = spec_cert(&b);
                let now = v["now"].as_u64().unwrap();
                assert!(now < c.not_before || now > c.not_after, "{v}");
            }
            _ => {}
        }
    }
}
