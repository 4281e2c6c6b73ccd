//! Test vectors for `docs/vault-format.md`: fixed passphrase, salt, record id,
//! nonce and secret, fixed input → fixed container bytes.
//!
//! Regenerate (only when the format version changes) with
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
    HeaderRule, KdfParams, Mode, ProtectOptions, Randomness, RecordId, RecordSecret,
    protect_deterministic, recover_with_passphrase,
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

fn randomness() -> Randomness {
    Randomness {
        salt: *b"aorta-vec-salt-1",
        record_id: RecordId(*b"record-id-000001"),
        nonce: *b"nonce-000001",
        secret: RecordSecret::from_bytes([0x5a; 32]),
    }
}

fn generate(mode: Mode) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let opts = ProtectOptions {
        mode,
        kdf: KdfParams::INSECURE_TEST,
        header: HeaderRule::Bytes(10),
    };
    let p = protect_deterministic(&input(), PASSPHRASE, &opts, &randomness()).unwrap();
    let m = open_private(&p.private, PASSPHRASE).unwrap();
    (p.public, p.private, m.to_bytes().to_vec())
}

#[test]
fn vault_format_vectors_match() {
    let d = dir();
    let write = std::env::var_os("AORTA_WRITE_VECTORS").is_some();
    if write {
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("input.bin"), input()).unwrap();
        std::fs::write(d.join("passphrase.txt"), PASSPHRASE).unwrap();
    }
    assert_eq!(std::fs::read(d.join("input.bin")).unwrap(), input());
    assert_eq!(std::fs::read(d.join("passphrase.txt")).unwrap(), PASSPHRASE);
    for mode in [Mode::Faithful, Mode::Strong] {
        let (public, private, material) = generate(mode);
        let names = [
            (format!("{}.public.aosp", mode.name()), &public),
            (format!("{}.private.aosr", mode.name()), &private),
            (format!("{}.material.aosm", mode.name()), &material),
        ];
        for (name, bytes) in names {
            let path = d.join(&name);
            if write {
                std::fs::write(&path, bytes).unwrap();
            }
            let stored = std::fs::read(&path).unwrap();
            assert_eq!(&stored, bytes, "{name} differs from the committed vector");
        }
        let pubc = std::fs::read(d.join(format!("{}.public.aosp", mode.name()))).unwrap();
        let privc = std::fs::read(d.join(format!("{}.private.aosr", mode.name()))).unwrap();
        assert_eq!(
            recover_with_passphrase(&pubc, &privc, PASSPHRASE).unwrap(),
            input()
        );
    }
}
