//! Test vectors for `docs/frame-format.md`.
//!
//! `AORTA_WRITE_VECTORS=1 cargo test -p aorta-crypto --test frame_vectors`
//! (re)writes `docs/vectors/frame-format/`; without it, this test checks the
//! committed vectors: the group and transport key derivations, every valid frame opens
//! to the listed samples and re-seals to the same bytes, every invalid frame
//! is refused with the listed error kind.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)]

use std::path::PathBuf;

use aorta_crypto::frame::{self, ChannelCalibration, FrameError, FrameHeader, TransportKey};
use aorta_crypto::keys::{self, KeySlice};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use serde_json::{Value, json};

const SERIAL: &str = "AORTA-VEC-1";
const EPOCH: [u8; 16] = *b"aorta-vec-epoch!";

fn dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/vectors/frame-format"
    ))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Factory keys of the vectors: key j, byte b = (j * 32 + b) mod 251.
fn key_slice() -> KeySlice {
    KeySlice::new(SERIAL, (0..120 * 32).map(|i| (i % 251) as u8).collect()).unwrap()
}

fn kind(e: &FrameError) -> &'static str {
    match e {
        FrameError::Truncated { .. } => "truncated",
        FrameError::TrailingBytes { .. } => "trailing_bytes",
        FrameError::Oversize { .. } => "oversize",
        FrameError::BadMagic => "bad_magic",
        FrameError::UnsupportedVersion { .. } => "unsupported_version",
        FrameError::UnknownCodec { .. } => "unknown_codec",
        FrameError::BadField { .. } => "bad_field",
        FrameError::AuthenticationFailed => "authentication_failed",
        FrameError::DecompressionBomb { .. } => "decompression_bomb",
        FrameError::MalformedPayload(_) => "malformed_payload",
        _ => "other",
    }
}

fn cal2() -> Vec<ChannelCalibration> {
    vec![
        ChannelCalibration::new(200.0, 1024, 1024, 11, "mV", "MLII"),
        ChannelCalibration::new(200.0, 1024, 1024, 11, "mV", "V5"),
    ]
}

/// Header bytes written by hand from the spec's table (not by the library).
fn spec_header(key_index: u16, seq: u64, channels: u16, n: u32, ct_len: u32) -> Vec<u8> {
    let mut b = b"AOFR".to_vec();
    b.push(1);
    b.push(1);
    b.extend_from_slice(&key_index.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&360_000u32.to_be_bytes());
    b.extend_from_slice(&channels.to_be_bytes());
    b.extend_from_slice(&n.to_be_bytes());
    b.extend_from_slice(&EPOCH);
    b.push(SERIAL.len() as u8);
    b.extend_from_slice(SERIAL.as_bytes());
    b.extend_from_slice(&ct_len.to_be_bytes());
    b
}

fn build() -> (Value, Vec<(String, Vec<u8>)>) {
    let ks = key_slice();
    let tk = keys::transport_key_bytes(&ks, 5, &EPOCH).unwrap();
    let key = TransportKey::derive(&ks, 5, &EPOCH).unwrap();
    let mut files = Vec::new();
    let mut entries = Vec::new();

    // 1. A valid 2-channel frame (MIT-BIH 100's first 12 samples).
    let x = vec![995, 995, 995, 995, 995, 995, 995, 995, 1000, 997, 995, 994];
    let y = vec![
        1011, 1011, 1011, 1011, 1011, 1011, 1011, 1011, 1008, 1008, 1007, 1007,
    ];
    let h = FrameHeader::new(
        SERIAL,
        5,
        1000,
        1_700_000_000_000_000,
        360_000,
        2,
        12,
        EPOCH,
    )
    .unwrap();
    let valid = frame::seal(&key, &h, &cal2(), &[&x, &y]).unwrap();
    files.push(("valid-2ch.aof".to_owned(), valid.clone()));
    entries.push(
        json!({"file": "valid-2ch.aof", "key_index": 5, "sequence": 1000, "expect": "ok",
        "samples": [x, y]}),
    );

    // 2. A valid 1-channel frame with extreme values (escape path).
    let z = vec![i32::MIN, i32::MAX, 0, -1, 1, 300, -300];
    let h1 =
        FrameHeader::new(SERIAL, 5, 1001, 1_700_000_000_019_444, 360_000, 1, 7, EPOCH).unwrap();
    let cal1 = vec![ChannelCalibration::new(1000.0, 0, 0, 16, "mV", "ECG")];
    let valid1 = frame::seal(&key, &h1, &cal1, &[&z]).unwrap();
    files.push(("valid-1ch-extremes.aof".to_owned(), valid1));
    entries.push(
        json!({"file": "valid-1ch-extremes.aof", "key_index": 5, "sequence": 1001, "expect": "ok",
        "samples": [z]}),
    );

    // 3. A valid RR-interval frame (codec 2): eight sinus-rhythm
    // beat-to-beat intervals in µs (one premature beat and its pause).
    let rr = vec![
        811_111, 788_889, 791_667, 788_889, 816_667, 652_778, 994_444, 844_444,
    ];
    let hr = FrameHeader::new_rr(SERIAL, 5, 1004, 1_700_000_001_027_778, 8, EPOCH).unwrap();
    let valid_rr = frame::seal(&key, &hr, &[ChannelCalibration::rr("RR MLII")], &[&rr]).unwrap();
    files.push(("valid-rr.aof".to_owned(), valid_rr.clone()));
    entries.push(
        json!({"file": "valid-rr.aof", "key_index": 5, "sequence": 1004, "expect": "ok",
        "codec": 2, "samples": [rr]}),
    );
    // An RR frame whose header claims another rate (offsets 24..28).
    let mut v = valid_rr;
    v[27] ^= 0x01;
    files.push(("rr-bad-rate.aof".to_owned(), v));
    entries.push(json!({"file": "rr-bad-rate.aof", "key_index": 5, "expect": "bad_field"}));

    // Refusals derived from the valid frame.
    let mut bad = |name: &str, b: Vec<u8>, expect: &str| {
        files.push((format!("{name}.aof"), b));
        entries.push(json!({"file": format!("{name}.aof"), "key_index": 5, "expect": expect}));
    };
    let mut v = valid.clone();
    let last = v.len() - 1;
    v[last] ^= 0x01;
    bad("flipped-tag-bit", v, "authentication_failed");
    let mut v = valid.clone();
    v[15] ^= 0x01; // sequence, inside the associated data
    bad("flipped-header-bit", v, "authentication_failed");
    bad("truncated", valid[..valid.len() - 1].to_vec(), "truncated");
    let mut v = valid.clone();
    v.push(0);
    bad("trailing-byte", v, "trailing_bytes");
    let mut v = valid.clone();
    v[4] = 2;
    bad("unknown-version", v, "unsupported_version");
    let mut v = valid.clone();
    v[0] = b'X';
    bad("bad-magic", v, "bad_magic");
    let mut v = valid.clone();
    v[5] = 7;
    bad("unknown-codec", v, "unknown_codec");
    let mut v = spec_header(5, 1002, 1, 12, (8 << 20) as u32);
    v.extend_from_slice(&[0; 64]);
    bad("oversize-declared", v, "oversize");

    // A decompression bomb sealed by a key holder: 12 samples declared, the
    // zstd frame expands to 64 MiB.
    let mut body = Vec::new();
    let mut cal = Vec::new();
    cal.extend_from_slice(&200f64.to_bits().to_be_bytes());
    cal.extend_from_slice(&[0; 10]);
    cal.extend_from_slice(&[0, 0]);
    body.extend_from_slice(&(cal.len() as u16).to_be_bytes());
    body.extend_from_slice(&cal);
    body.extend_from_slice(&zstd::bulk::compress(&vec![0u8; 64 << 20], 19).unwrap());
    let aad = spec_header(5, 1003, 1, 12, (body.len() + 16) as u32);
    let lk = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, tk.as_ref()).unwrap());
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&1003u64.to_be_bytes());
    let tag = lk
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(n), Aad::from(&aad), &mut body)
        .unwrap();
    let mut bomb = aad;
    bomb.extend_from_slice(&body);
    bomb.extend_from_slice(tag.as_ref());
    bad("decompression-bomb", bomb, "decompression_bomb");

    let doc = json!({
        "description": "aorta upload frame (docs/frame-format.md) test vectors; written by crates/aorta-crypto/tests/frame_vectors.rs",
        "serial": SERIAL,
        "factory_keys": "120 keys of 32 bytes; byte i of the concatenation is i mod 251",
        "epoch_hex": hex(&EPOCH),
        "key_index": 5,
        "group_key_hex": hex(keys::transport_group_key(&ks, 5).unwrap().as_ref()),
        "transport_key_hex": hex(tk.as_ref()),
        "commitment_hex": hex(&keys::commitment(&ks).unwrap()),
        "vectors": entries,
    });
    (doc, files)
}

#[test]
fn frame_format_vectors() {
    let (doc, files) = build();
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
    let ks = key_slice();
    let key = TransportKey::derive(&ks, 5, &EPOCH).unwrap();
    // The two-step derivation from the committed group key gives the
    // committed transport key (what an attested worker computes).
    let group: [u8; 32] = hex_decode(committed["group_key_hex"].as_str().unwrap())
        .try_into()
        .unwrap();
    assert_eq!(
        hex(keys::transport_key_from_group(&group, SERIAL, 5, &EPOCH)
            .unwrap()
            .as_ref()),
        committed["transport_key_hex"].as_str().unwrap()
    );
    let from_group = TransportKey::from_group(&group, SERIAL, 5, &EPOCH).unwrap();
    for v in committed["vectors"].as_array().unwrap() {
        let name = v["file"].as_str().unwrap();
        let bytes = std::fs::read(d.join(name)).unwrap();
        let result = frame::parse(&bytes).and_then(|p| p.open(&key));
        let via_group = frame::parse(&bytes).and_then(|p| p.open(&from_group));
        assert_eq!(result, via_group, "{name}: group-key path differs");
        match v["expect"].as_str().unwrap() {
            "ok" => {
                let f = result.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(
                    u64::from(f.header.codec),
                    v["codec"].as_u64().unwrap_or(1),
                    "{name}: codec"
                );
                assert_eq!(f.header.is_rr(), f.header.codec == 2, "{name}");
                let want: Vec<Vec<i32>> = serde_json::from_value(v["samples"].clone()).unwrap();
                assert_eq!(f.samples, want, "{name}");
                // Re-sealing with the same inputs gives the same bytes.
                let refs: Vec<&[i32]> = f.samples.iter().map(Vec::as_slice).collect();
                let again = frame::seal(&key, &f.header, &f.calibration, &refs).unwrap();
                assert_eq!(again, bytes, "{name}: re-seal differs");
            }
            kind_name => {
                let e = result
                    .err()
                    .unwrap_or_else(|| panic!("{name} was accepted"));
                assert_eq!(kind(&e), kind_name, "{name}: {e}");
            }
        }
        // The generator's bytes are the committed bytes.
        let generated = files.iter().find(|(n, _)| n == name).unwrap();
        assert_eq!(generated.1, bytes, "{name} differs from the generator");
    }
}
