//! Test vectors for the vault formats of `docs/vault-format.md` that live in
//! aorta-vault: dispersal shards (`AOSD`), a grant (`AOSG`, HPKE made
//! deterministic with a seeded generator), an identity and public key, and
//! an audit log with its head. They build on the selective-encryption
//! vectors written by aorta-crypto's `vault_format_vectors` test.
//!
//! Regenerate with `AORTA_WRITE_VECTORS=1 cargo test -p aorta-vault --test
//! vault_format_vectors`; otherwise this checks the committed bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: a failing unwrap, expect, panic or index is the test failing"
)]

mod common;

use std::path::PathBuf;

use aorta_base::codec::Encode;
use aorta_crypto::selective::{RecordId, RecoveryMaterial, recover};
use aorta_vault::audit::{AuditAnchor, AuditKey, AuditLog, Event};
use aorta_vault::dispersal::{self, Dispersal};
use aorta_vault::grant::{self, Identity};
use aorta_vault::integrity::{self, IntegrityKey};
use aorta_vault::store::DeviceStore;
use common::VectorRng;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/vectors/vault-format")
}

fn check(name: &str, bytes: &[u8], write: bool) {
    let p = dir().join(name);
    if write {
        std::fs::write(&p, bytes).unwrap();
    }
    assert_eq!(
        std::fs::read(&p).unwrap(),
        bytes,
        "{name} differs from the committed vector"
    );
}

#[test]
fn vault_vectors_match() {
    let write = std::env::var_os("AORTA_WRITE_VECTORS").is_some();
    let public = std::fs::read(dir().join("strong.public.aosp")).unwrap();
    let material =
        RecoveryMaterial::from_bytes(&std::fs::read(dir().join("strong.material.aosm")).unwrap())
            .unwrap();
    let rid = RecordId(*b"record-id-000001");
    assert_eq!(material.record_id, rid);

    // The integrity key of the record, a tagged replica, and 2-of-3 tagged
    // shards over the strong public container; any two rebuild it.
    let key = IntegrityKey::for_material(&material).unwrap();
    check(
        "strong.integrity-key.hex",
        format!("{}\n", aorta_base::hex::encode(key.as_bytes())).as_bytes(),
        write,
    );
    let replica = integrity::seal_replica(&public, rid, &key).unwrap();
    check("strong.public.aosi", &replica, write);
    assert_eq!(
        integrity::open_replica(&replica, &rid, &key).unwrap(),
        public
    );
    let d = Dispersal { k: 2, n: 3 };
    let shards = dispersal::encode(&public, rid, d, &key).unwrap();
    for (i, s) in shards.iter().enumerate() {
        check(&format!("strong.public.aosp.shard{i}.aosd"), s, write);
    }
    let some = vec![None, Some(shards[1].clone()), Some(shards[2].clone())];
    assert_eq!(dispersal::decode(&some, rid, d, &key).unwrap(), public);
    // The first version's shards (unkeyed checksum) are still read.
    let v1: Vec<Option<Vec<u8>>> = (0..3)
        .map(|i| {
            Some(std::fs::read(dir().join(format!("strong.public.aosp.shard{i}.v1.aosd"))).unwrap())
        })
        .collect();
    let last_two = [None, v1[1].clone(), v1[2].clone()];
    assert_eq!(dispersal::decode(&last_two, rid, d, &key).unwrap(), public);
    // Under the wrong store's index they are refused.
    let shifted = [v1[1].clone(), v1[2].clone(), None];
    assert!(dispersal::decode(&shifted, rid, d, &key).is_err());

    // Identity and grant.
    let id = Identity::derive(&[0x11; 32]).unwrap();
    check("recipient.identity", id.to_text().as_bytes(), write);
    check(
        "recipient.pk",
        format!("{}\n", id.public().to_text()).as_bytes(),
        write,
    );
    let mut rng = VectorRng::new([0x22; 32]);
    let (h, g) = grant::seal_with_rng(
        &material,
        &id.public(),
        1_700_000_000,
        1_700_086_400,
        false,
        *b"grant-id-0000001",
        &mut rng,
    )
    .unwrap();
    check("strong.grant.aosg", &g, write);
    let (h2, m2) = grant::open(&g, &id, 1_700_000_100).unwrap();
    assert_eq!(h, h2);
    assert_eq!(
        recover(&public, &m2).unwrap(),
        std::fs::read(dir().join("input.bin")).unwrap()
    );
    assert!(grant::open(&g, &id, 1_700_086_400).is_err());

    // Audit log with fixed times and a fixed audit key (32 × 0x33).
    let t = tempfile::tempdir().unwrap();
    let device = t.path().join("device");
    let log = AuditLog::new(
        &t.path().join("audit.log"),
        DeviceStore::local(&device).unwrap(),
    );
    log.install_known_key(AuditKey::from_bytes([0x33; 32]))
        .unwrap();
    let r = rid.to_hex();
    log.append(1_700_000_000, Event::Protect, &r, None, "mode strong")
        .unwrap();
    log.append(
        1_700_000_050,
        Event::Grant,
        &r,
        Some(&h.grant_hex()),
        &format!("to {} expires 1700086400", id.public().to_text()),
    )
    .unwrap();
    log.append(1_700_000_100, Event::Use, &r, Some(&h.grant_hex()), "")
        .unwrap();
    log.append(1_700_000_200, Event::Revoke, &r, Some(&h.grant_hex()), "")
        .unwrap();
    check(
        "audit.log",
        &std::fs::read(t.path().join("audit.log")).unwrap(),
        write,
    );
    check(
        "audit.log.head",
        &std::fs::read(t.path().join("audit.log.head")).unwrap(),
        write,
    );
    let anchor = log.anchor().unwrap();
    check("audit.anchor", &anchor.to_bytes(), write);
    assert_eq!(
        std::fs::read(device.join("audit/anchor")).unwrap(),
        anchor.to_bytes()
    );

    // The committed log verifies against the committed anchor with that key.
    let t2 = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t2.path().join("audit")).unwrap();
    std::fs::write(t2.path().join("audit/key"), [0x33; 32]).unwrap();
    std::fs::copy(dir().join("audit.anchor"), t2.path().join("audit/anchor")).unwrap();
    let committed = AuditLog::new(
        &dir().join("audit.log"),
        DeviceStore::local(t2.path()).unwrap(),
    );
    let committed_anchor =
        AuditAnchor::parse(&std::fs::read(dir().join("audit.anchor")).unwrap()).unwrap();
    assert_eq!(committed_anchor.count, 4);
    assert_eq!(
        committed
            .verify_with_anchors(&[committed_anchor])
            .unwrap()
            .len(),
        4
    );

    // The first version's log (unkeyed, no key in the private store) is
    // still read.
    let empty = tempfile::tempdir().unwrap();
    let v1 = AuditLog::new(
        &dir().join("audit.v1.log"),
        DeviceStore::local(empty.path()).unwrap(),
    );
    let entries = v1.verify().unwrap();
    assert_eq!(entries.len(), 4);
    assert!(entries.iter().all(|e| e.version == 1));
}
