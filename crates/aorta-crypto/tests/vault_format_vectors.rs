//! Test vectors for `docs/vault-format.md`: fixed passphrase, salt, record id,
//! nonce and secret, fixed input → fixed container bytes, in format v1
//! (`<mode>.*`, still read) and v2 (`<mode>-v2.*`, written for new records;
//! `strong-v2-2000.*` covers several AES batches).
//!
//! Regenerate (only when a format version is added) with
//! `AORTA_WRITE_VECTORS=1 cargo test -p aorta-crypto --test vault_format_vectors`.
//! Otherwise the test checks that this build produces the committed bytes
//! byte for byte and recovers the committed input from them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)] // test helpers

use std::path::PathBuf;

use aorta_crypto::selective::container::open_private;
use aorta_crypto::selective::{
    FormatVersion, HeaderRule, KdfParams, Mode, ProtectOptions, Randomness, RecordId, RecordSecret,
    protect_deterministic_as, recover_with_passphrase,
};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/vectors/vault-format")
}

const PASSPHRASE: &[u8] = b"correct horse battery staple";

fn input() -> Vec<u8> {
    // 100 bytes: three full units and a 4-byte partial unit, with a 10-byte header.
    let mut v = b"HEADER0001".to_vec();
    v.extend((0u8..90).map(|i| i.wrapping_mul(37).wrapping_add(11)));
    v
}

/// 2,000 bytes (63 units: one full batch of 32 units and a partial batch,
/// with a 16-byte partial unit), no header.
fn input_2000() -> Vec<u8> {
    (0u32..2000)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

fn randomness() -> Randomness {
    Randomness {
        salt: *b"aorta-vec-salt-1",
        record_id: RecordId(*b"record-id-000001"),
        nonce: *b"nonce-000001",
        secret: RecordSecret::from_bytes([0x5a; 32]),
    }
}

fn generate(
    input: &[u8],
    head: u64,
    mode: Mode,
    version: FormatVersion,
) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let opts = ProtectOptions {
        mode,
        kdf: KdfParams::INSECURE_TEST,
        header: HeaderRule::Bytes(head),
    };
    let p = protect_deterministic_as(input, PASSPHRASE, &opts, &randomness(), version).unwrap();
    let m = open_private(&p.private, PASSPHRASE).unwrap();
    assert_eq!(m.version, version);
    (p.public, p.private, m.to_bytes().to_vec())
}

#[test]
fn vault_format_vectors_match() {
    let d = dir();
    let write = std::env::var_os("AORTA_WRITE_VECTORS").is_some();
    if write {
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("input.bin"), input()).unwrap();
        std::fs::write(d.join("input-2000.bin"), input_2000()).unwrap();
        std::fs::write(d.join("passphrase.txt"), PASSPHRASE).unwrap();
    }
    assert_eq!(std::fs::read(d.join("input.bin")).unwrap(), input());
    assert_eq!(
        std::fs::read(d.join("input-2000.bin")).unwrap(),
        input_2000()
    );
    assert_eq!(std::fs::read(d.join("passphrase.txt")).unwrap(), PASSPHRASE);
    let cases = [
        ("faithful", input(), 10, Mode::Faithful, FormatVersion::V1),
        ("strong", input(), 10, Mode::Strong, FormatVersion::V1),
        (
            "faithful-v2",
            input(),
            10,
            Mode::Faithful,
            FormatVersion::V2,
        ),
        ("strong-v2", input(), 10, Mode::Strong, FormatVersion::V2),
        (
            "strong-v2-2000",
            input_2000(),
            0,
            Mode::Strong,
            FormatVersion::V2,
        ),
    ];
    for (stem, input, head, mode, version) in cases {
        let (public, private, material) = generate(&input, head, mode, version);
        assert_eq!(public[4], version.to_byte(), "{stem}");
        let names = [
            (format!("{stem}.public.aosp"), &public),
            (format!("{stem}.private.aosr"), &private),
            (format!("{stem}.material.aosm"), &material),
        ];
        for (name, bytes) in names {
            let path = d.join(&name);
            if write {
                std::fs::write(&path, bytes).unwrap();
            }
            let stored = std::fs::read(&path).unwrap();
            assert_eq!(&stored, bytes, "{name} differs from the committed vector");
        }
        let pubc = std::fs::read(d.join(format!("{stem}.public.aosp"))).unwrap();
        let privc = std::fs::read(d.join(format!("{stem}.private.aosr"))).unwrap();
        assert_eq!(
            recover_with_passphrase(&pubc, &privc, PASSPHRASE).unwrap(),
            input,
            "{stem}"
        );
    }
}
