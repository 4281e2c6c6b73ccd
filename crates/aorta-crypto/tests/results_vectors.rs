//! Test vectors for `docs/results-format.md`.
//!
//! `AORTA_WRITE_VECTORS=1 cargo test -p aorta-crypto --test results_vectors`
//! (re)writes `docs/vectors/results/`; without it, this test checks the
//! committed vectors: the generator (explicit randomness) reproduces every
//! file byte for byte; every valid container opens to the listed plaintext;
//! every invalid one is refused with the listed error kind; and an
//! independent implementation of the spec's key schedule and associated
//! data (written here from the spec with `hpke` and `ring` directly, not
//! through `aorta_crypto::results`) opens the same bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)]

use std::path::PathBuf;

use aorta_crypto::results::{
    self, ClinicianIdentity, ClinicianPublic, ResultSession, ResultsError, open_envelope,
    open_state,
};
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, OpModeR};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use serde_json::{Value, json};

const SUBSCRIBER: &str = "dr-alice";

fn dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/vectors/results"
    ))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Deterministic "random" bytes of the vectors: byte i = (seed + 7 i) mod 256.
fn bytes<const N: usize>(seed: u8) -> [u8; N] {
    std::array::from_fn(|i| seed.wrapping_add((i as u8).wrapping_mul(7)))
}

fn kind(e: &ResultsError) -> &'static str {
    match e {
        ResultsError::Truncated { .. } => "truncated",
        ResultsError::BadMagic { .. } => "bad_magic",
        ResultsError::UnsupportedVersion { .. } => "unsupported_version",
        ResultsError::BadField { .. } => "bad_field",
        ResultsError::WrongSubscriber { .. } => "wrong_subscriber",
        ResultsError::WrongSession { .. } => "wrong_session",
        ResultsError::AuthenticationFailed { .. } => "authentication_failed",
        ResultsError::Oversize { .. } => "oversize",
        _ => "other",
    }
}

const HR_JSON: &str = r#"{"patient":"ECG-0001","kind":"hr","window_start_us":1700000000000000,"window_end_us":1700000010000000,"hr_bpm":72.53}"#;
const EVENTS_JSON: &str = r#"{"patient":"ECG-0001","kind":"events","events":[{"type":"pause","start_us":1700000003000000,"duration_ms":2140}]}"#;
const STATE: &[u8] = b"operator state of ward-a: watermark=1700000010000000";
const STATE_CONTEXT: &str = "ward-a";

struct Built {
    doc: Value,
    files: Vec<(String, Vec<u8>)>,
}

fn build() -> Built {
    let alice = ClinicianIdentity::from_secret_bytes(&bytes::<32>(0x10)).unwrap();
    let bob = ClinicianIdentity::from_secret_bytes(&bytes::<32>(0x20)).unwrap();
    let session_key = bytes::<32>(0x30);
    let session_id = bytes::<16>(0x40);
    let eph = bytes::<32>(0x50);
    let nonce_hr = bytes::<12>(0x60);
    let nonce_ev = bytes::<12>(0x70);
    let state_key = bytes::<32>(0x80);
    let nonce_state = bytes::<12>(0x90);

    let (session, envelope) = ResultSession::open_new_with_randomness(
        SUBSCRIBER,
        &alice.public(),
        &session_key,
        session_id,
        &eph,
    )
    .unwrap();
    let hr = session
        .seal_with_nonce("ECG-0001/hr/000042", HR_JSON.as_bytes(), nonce_hr)
        .unwrap();
    let ev = session
        .seal_with_nonce("ECG-0001/events/000007", EVENTS_JSON.as_bytes(), nonce_ev)
        .unwrap();
    let state =
        results::seal_state_with_nonce(&state_key, STATE_CONTEXT.as_bytes(), STATE, nonce_state)
            .unwrap();
    // An envelope sealed to bob under the same id: alice cannot open it.
    let (_, env_bob) = ResultSession::open_new_with_randomness(
        SUBSCRIBER,
        &bob.public(),
        &session_key,
        session_id,
        &eph,
    )
    .unwrap();

    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "clinician.identity".into(),
            alice.to_file_text().as_bytes().to_vec(),
        ),
        (
            "clinician.pub".into(),
            format!("{}\n", alice.public()).into_bytes(),
        ),
        ("session.aors".into(), envelope.clone()),
        ("result-hr.aorr".into(), hr.clone()),
        ("result-events.aorr".into(), ev.clone()),
        ("state.aost".into(), state.clone()),
    ];
    let mut entries = vec![
        json!({"file": "session.aors", "container": "envelope", "expect": "ok",
               "subscriber_id": SUBSCRIBER, "session_id_hex": hex(&session_id),
               "session_key_hex": hex(&session_key)}),
        json!({"file": "result-hr.aorr", "container": "result", "result_id": "ECG-0001/hr/000042",
               "expect": "ok", "plaintext": HR_JSON, "nonce_hex": hex(&nonce_hr)}),
        json!({"file": "result-events.aorr", "container": "result",
               "result_id": "ECG-0001/events/000007", "expect": "ok", "plaintext": EVENTS_JSON,
               "nonce_hex": hex(&nonce_ev)}),
        json!({"file": "state.aost", "container": "state", "context": STATE_CONTEXT,
               "expect": "ok", "plaintext": String::from_utf8(STATE.to_vec()).unwrap(),
               "nonce_hex": hex(&nonce_state)}),
        // The same valid result, presented under another result id (moved by the host).
        json!({"file": "result-hr.aorr", "container": "result", "result_id": "ECG-0001/hr/000043",
               "expect": "authentication_failed"}),
        // The same valid state, opened under another context.
        json!({"file": "state.aost", "container": "state", "context": "ward-b",
               "expect": "authentication_failed"}),
    ];
    let mut bad = |name: &str, container: &str, b: Vec<u8>, extra: Value, expect: &str| {
        files.push((name.to_owned(), b));
        let mut e = json!({"file": name, "container": container, "expect": expect});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        entries.push(e);
    };
    let rid = json!({"result_id": "ECG-0001/hr/000042"});
    let ctx = json!({"context": STATE_CONTEXT});
    bad(
        "envelope-to-bob.aors",
        "envelope",
        env_bob,
        json!({}),
        "authentication_failed",
    );
    let mut v = envelope.clone();
    v[6] ^= 0x20; // "dr-alice" -> "Dr-alice": header is HPKE info and aad
    bad(
        "envelope-renamed.aors",
        "envelope",
        v,
        json!({}),
        "authentication_failed",
    );
    bad(
        "envelope-truncated.aors",
        "envelope",
        envelope[..envelope.len() - 1].to_vec(),
        json!({}),
        "truncated",
    );
    let mut v = envelope.clone();
    v.push(0);
    bad(
        "envelope-trailing.aors",
        "envelope",
        v,
        json!({}),
        "bad_field",
    );
    let mut v = envelope.clone();
    v[4] = 2;
    bad(
        "envelope-version-2.aors",
        "envelope",
        v,
        json!({}),
        "unsupported_version",
    );
    let mut v = envelope.clone();
    v[5] = 0;
    bad(
        "envelope-empty-subscriber.aors",
        "envelope",
        v,
        json!({}),
        "bad_field",
    );
    let mut v = hr.clone();
    let last = v.len() - 1;
    v[last] ^= 1;
    bad(
        "result-flipped-tag.aorr",
        "result",
        v,
        rid.clone(),
        "authentication_failed",
    );
    let mut v = hr.clone();
    v[21] ^= 1; // nonce
    bad(
        "result-flipped-nonce.aorr",
        "result",
        v,
        rid.clone(),
        "authentication_failed",
    );
    let mut v = hr.clone();
    v[5] ^= 1; // session id
    bad(
        "result-other-session.aorr",
        "result",
        v,
        rid.clone(),
        "wrong_session",
    );
    bad(
        "result-truncated.aorr",
        "result",
        hr[..results::RESULT_HEADER_LEN + results::TAG_LEN - 1].to_vec(),
        rid.clone(),
        "truncated",
    );
    let mut v = hr.clone();
    v[0] = b'X';
    bad(
        "result-bad-magic.aorr",
        "result",
        v,
        rid.clone(),
        "bad_magic",
    );
    let mut v = hr.clone();
    v[4] = 2;
    bad(
        "result-version-2.aorr",
        "result",
        v,
        rid,
        "unsupported_version",
    );
    let mut v = state.clone();
    v[9] ^= 1;
    bad(
        "state-flipped-nonce.aost",
        "state",
        v,
        ctx.clone(),
        "authentication_failed",
    );
    let mut v = state.clone();
    v[4] = 2;
    bad(
        "state-version-2.aost",
        "state",
        v,
        ctx.clone(),
        "unsupported_version",
    );
    bad(
        "state-truncated.aost",
        "state",
        state[..32].to_vec(),
        ctx,
        "truncated",
    );

    let doc = json!({
        "description": "aorta results (docs/results-format.md) test vectors; written by crates/aorta-crypto/tests/results_vectors.rs. The clinician secret key here is a PUBLIC TEST KEY: never use it.",
        "randomness": "every random input is byte i = (seed + 7 i) mod 256, seeds: secret 0x10, bob's secret 0x20, session key 0x30, session id 0x40, HPKE ephemeral ikm 0x50, nonces 0x60/0x70, state key 0x80, state nonce 0x90",
        "clinician_secret_hex": hex(&bytes::<32>(0x10)),
        "clinician_secret_text": alice.to_text().as_str(),
        "clinician_public_text": alice.public().to_text(),
        "bob_public_text": bob.public().to_text(),
        "subscriber_id": SUBSCRIBER,
        "session_id_hex": hex(&session_id),
        "session_key_hex": hex(&session_key),
        "hpke_ephemeral_ikm_hex": hex(&eph),
        "result_aead_key_hex": hex(&spec_result_key(&session_key, &session_id)),
        "state_key_hex": hex(&state_key),
        "state_aead_key_hex": hex(&spec_state_key(&state_key)),
        "vectors": entries,
    });
    Built { doc, files }
}

struct L32;
impl hkdf::KeyType for L32 {
    fn len(&self) -> usize {
        32
    }
}

/// From the spec: HKDF-SHA256(salt = session id, ikm = session key, info = "aorta result key v1").
fn spec_result_key(session_key: &[u8], session_id: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    hkdf::Salt::new(hkdf::HKDF_SHA256, session_id)
        .extract(session_key)
        .expand(&[b"aorta result key v1"], L32)
        .unwrap()
        .fill(&mut out)
        .unwrap();
    out
}

/// From the spec: HKDF-SHA256(salt = empty, ikm = state key, info = "aorta state key v1").
fn spec_state_key(state_key: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    hkdf::Salt::new(hkdf::HKDF_SHA256, &[])
        .extract(state_key)
        .expand(&[b"aorta state key v1"], L32)
        .unwrap()
        .fill(&mut out)
        .unwrap();
    out
}

fn ring_open(key: &[u8; 32], nonce: &[u8], aad: &[u8], ct: &[u8]) -> Vec<u8> {
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).unwrap());
    let mut buf = ct.to_vec();
    let n = k
        .open_in_place(
            Nonce::try_assume_unique_for_key(nonce).unwrap(),
            Aad::from(aad),
            &mut buf,
        )
        .unwrap()
        .len();
    buf.truncate(n);
    buf
}

/// Opens the committed containers following only the spec's byte tables.
fn independent_open(doc: &Value) {
    let d = dir();
    let sk = unhex(doc["clinician_secret_hex"].as_str().unwrap());
    let env = std::fs::read(d.join("session.aors")).unwrap();
    // Layout: AORS | 1 | n | subscriber | session_id(16) | enc(32) | ct(48)
    assert_eq!(&env[..5], b"AORS\x01");
    let n = usize::from(env[5]);
    let sub = &env[6..6 + n];
    let sid = &env[6 + n..22 + n];
    let enc = &env[22 + n..54 + n];
    let ct = &env[54 + n..];
    assert_eq!(ct.len(), 48);
    let mut info = b"aorta result session v1".to_vec();
    info.push(n as u8);
    info.extend_from_slice(sub);
    info.extend_from_slice(sid);
    let skr = <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(&sk).unwrap();
    let enc = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(enc).unwrap();
    let session_key = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        &skr,
        &enc,
        &info,
        ct,
        &env[..22 + n],
    )
    .unwrap();
    assert_eq!(hex(&session_key), doc["session_key_hex"].as_str().unwrap());
    let key = spec_result_key(&session_key, sid);
    for (file, rid, pt) in [
        ("result-hr.aorr", "ECG-0001/hr/000042", HR_JSON),
        ("result-events.aorr", "ECG-0001/events/000007", EVENTS_JSON),
    ] {
        let r = std::fs::read(d.join(file)).unwrap();
        // AORR | 1 | session_id(16) | nonce(12) | ct‖tag
        assert_eq!(&r[..5], b"AORR\x01");
        assert_eq!(&r[5..21], sid);
        let mut aad = b"AORR\x01".to_vec();
        aad.extend_from_slice(sid);
        aad.push(n as u8);
        aad.extend_from_slice(sub);
        aad.push(rid.len() as u8);
        aad.extend_from_slice(rid.as_bytes());
        assert_eq!(ring_open(&key, &r[21..33], &aad, &r[33..]), pt.as_bytes());
    }
    let s = std::fs::read(d.join("state.aost")).unwrap();
    // AOST | 1 | nonce(12) | ct‖tag ; aad = AOST | 1 | context
    assert_eq!(&s[..5], b"AOST\x01");
    let mut aad = b"AOST\x01".to_vec();
    aad.extend_from_slice(STATE_CONTEXT.as_bytes());
    let sk: [u8; 32] = unhex(doc["state_key_hex"].as_str().unwrap())
        .try_into()
        .unwrap();
    assert_eq!(
        ring_open(&spec_state_key(&sk), &s[5..17], &aad, &s[17..]),
        STATE
    );
}

#[test]
fn results_format_vectors() {
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
        "vectors.json differs from the generator: key schedule or format changed"
    );
    // Every generated file is the committed file, byte for byte.
    for (name, b) in &files {
        let on_disk = std::fs::read(d.join(name)).unwrap();
        assert_eq!(&on_disk, b, "{name} differs from the generator");
    }

    // The library opens the committed files.
    let identity = ClinicianIdentity::from_file_text(
        &std::fs::read_to_string(d.join("clinician.identity")).unwrap(),
    )
    .unwrap();
    let public = ClinicianPublic::from_text(
        std::fs::read_to_string(d.join("clinician.pub"))
            .unwrap()
            .trim_end(),
    )
    .unwrap();
    assert_eq!(identity.public(), public);
    assert_eq!(
        public.to_text(),
        committed["clinician_public_text"].as_str().unwrap()
    );
    let opened = open_envelope(&identity, &std::fs::read(d.join("session.aors")).unwrap()).unwrap();
    let state_key: [u8; 32] = unhex(committed["state_key_hex"].as_str().unwrap())
        .try_into()
        .unwrap();
    for v in committed["vectors"].as_array().unwrap() {
        let name = v["file"].as_str().unwrap();
        let b = std::fs::read(d.join(name)).unwrap();
        let got: Result<Vec<u8>, ResultsError> = match v["container"].as_str().unwrap() {
            "envelope" => open_envelope(&identity, &b).map(|o| {
                assert_eq!(o.subscriber_id(), SUBSCRIBER);
                hex(&o.session_id()).into_bytes()
            }),
            "result" => opened
                .open(v["result_id"].as_str().unwrap(), &b)
                .map(|p| p.to_vec()),
            "state" => open_state(&state_key, v["context"].as_str().unwrap().as_bytes(), &b)
                .map(|p| p.to_vec()),
            other => panic!("unknown container {other}"),
        };
        match v["expect"].as_str().unwrap() {
            "ok" => {
                let got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
                let want = match v["container"].as_str().unwrap() {
                    "envelope" => v["session_id_hex"].as_str().unwrap().as_bytes().to_vec(),
                    _ => v["plaintext"].as_str().unwrap().as_bytes().to_vec(),
                };
                assert_eq!(got, want, "{name}");
            }
            k => {
                let e = got.err().unwrap_or_else(|| panic!("{name} was accepted"));
                assert_eq!(kind(&e), k, "{name}: {e}");
            }
        }
    }
    independent_open(&committed);
}

/// From the spec ("Result ids"): `hex(A ‖ B)`, with `A = HMAC(K_id, id)[0..16]`,
/// `B = HMAC(K_S, A)[0..8]`, `K_id` and `K_S` HKDF-SHA256 of the state key.
fn spec_opaque_id(state_key: &[u8], id: &str) -> (String, [u8; 32]) {
    let key = |info: &[u8]| {
        let mut out = [0u8; 32];
        hkdf::Salt::new(hkdf::HKDF_SHA256, &[])
            .extract(state_key)
            .expand(&[info], L32)
            .unwrap()
            .fill(&mut out)
            .unwrap();
        out
    };
    let serial = id.rsplitn(3, '/').nth(2).unwrap();
    let k_id = key(b"aorta/v1/result-id");
    let k_s = key(&[b"aorta/v1/erase-token/".as_slice(), serial.as_bytes()].concat());
    let hmac = |k: &[u8], m: &[u8]| {
        ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, k), m)
            .as_ref()
            .to_vec()
    };
    let a = hmac(&k_id, id.as_bytes())[..16].to_vec();
    let b = hmac(&k_s, &a)[..8].to_vec();
    (hex(&[a, b].concat()), k_s)
}

/// `opaque-ids.json`: stored ids and erase tokens of a few results, made
/// by the library and checked against the spec computed independently.
#[test]
fn opaque_id_vectors() {
    use aorta_crypto::results::{EraseToken, opaque_id};
    let state_key = bytes::<32>(0x51);
    let ids = [
        "DEMO-0001/1795397100000000/1795397110000000",
        "DEMO-0001/1795397110000000/1795397120000000",
        "DEMO-0002/1795397100000000/1795397110000000",
        "a.b_c-9/0/1",
    ];
    let mut rows = Vec::new();
    for id in ids {
        let (want, k_s) = spec_opaque_id(&state_key, id);
        let got = opaque_id(&state_key, id);
        assert_eq!(got, want, "{id}");
        let serial = id.rsplitn(3, '/').nth(2).unwrap();
        let token = EraseToken::derive(&state_key, serial);
        assert_eq!(token.to_hex().as_str(), hex(&k_s));
        rows.push(serde_json::json!({"id": id, "opaque": got, "erase_token_hex": hex(&k_s)}));
    }
    // Each token matches its device's ids and no other.
    for r in &rows {
        let t = EraseToken::from_hex(r["erase_token_hex"].as_str().unwrap()).unwrap();
        for o in &rows {
            let same = r["id"].as_str().unwrap().split('/').next()
                == o["id"].as_str().unwrap().split('/').next();
            assert_eq!(t.matches(o["opaque"].as_str().unwrap()), same);
        }
    }
    let doc = serde_json::json!({"state_key_hex": hex(&state_key), "ids": rows});
    let path = dir().join("opaque-ids.json");
    if std::env::var_os("AORTA_WRITE_VECTORS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap() + "\n").unwrap();
    }
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        committed, doc,
        "opaque-ids.json differs: the id scheme changed"
    );
}
