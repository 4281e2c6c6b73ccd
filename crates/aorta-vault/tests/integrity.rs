//! Keyed integrity of the public fragment per replica and per shard, and
//! recovery that fails over: a cloud that alters its copy (and recomputes
//! every unkeyed checksum, as it can) no longer blocks recovery while
//! another store holds an intact copy, and the altered store is named.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: a failing unwrap, expect, panic or index is the test failing"
)]

mod common;

use std::path::Path;

use aorta_crypto::selective::RecordId;
use aorta_vault::audit::Event;
use aorta_vault::grant::Identity;
use aorta_vault::integrity::{StoreFailure, StoreFault};
use aorta_vault::{Blame, EhrVault, VaultError};
use common::{opts, rwg, share_to};
use sha2::{Digest, Sha256};

const PUBLIC_HEADER_LEN: usize = 32;
const SEGMENT_BYTES: usize = 8192 * 28;

fn input() -> Vec<u8> {
    (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn write_config(dir: &Path, stores: &[&str], dispersal: Option<(u8, u8)>) {
    let public: Vec<String> = stores
        .iter()
        .map(|s| format!(r#"{{"type":"local","path":"{s}"}}"#))
        .collect();
    let disp = dispersal.map_or_else(
        || "null".to_string(),
        |(k, n)| format!(r#"{{"k":{k},"n":{n}}}"#),
    );
    std::fs::write(
        dir.join("vault.json"),
        format!(
            r#"{{"public":[{}],"private":{{"type":"local","path":"device"}},"dispersal":{disp}}}"#,
            public.join(",")
        ),
    )
    .unwrap();
}

/// What a cloud holding a bare `AOSP` container can do: flip body bytes and
/// recompute the unkeyed checksum (docs/vault-format.md: SHA-256 of the
/// 32-byte header and the SHA-256 of each 229376-byte body segment).
fn forge_aosp(c: &mut [u8]) {
    let body_end = c.len() - 32;
    c[PUBLIC_HEADER_LEN + 10] ^= 0xff;
    c[PUBLIC_HEADER_LEN + 500] ^= 0x01;
    let mut h = Sha256::new();
    h.update(&c[..PUBLIC_HEADER_LEN]);
    for seg in c[PUBLIC_HEADER_LEN..body_end].chunks(SEGMENT_BYTES) {
        h.update(Sha256::digest(seg));
    }
    let sum = h.finalize();
    c[body_end..].copy_from_slice(&sum);
}

/// Alters a stored replica: finds the embedded `AOSP` container wherever
/// the object format puts it and forges it (and, for an unkeyed wrapper,
/// whatever checksum follows it could be recomputed as well — the MAC
/// cannot).
fn tamper_replica(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let at = b.windows(4).position(|w| w == b"AOSP").unwrap();
    let len = if at == 0 { b.len() } else { b.len() - at - 32 };
    forge_aosp(&mut b[at..at + len]);
    std::fs::write(path, b).unwrap();
}

fn replica(dir: &Path, store: &str, id: &RecordId) -> std::path::PathBuf {
    dir.join(format!("{store}/records/{id}.aosp"))
}

#[test]
fn a_tampered_replica_with_a_recomputed_checksum_does_not_block_recovery_from_an_intact_one() {
    let d = tempfile::tempdir().unwrap();
    write_config(d.path(), &["cloud-a", "cloud-b"], None);
    let v = EhrVault::open(d.path()).unwrap();
    let data = input();
    let id = v.protect(&data, b"pw", &opts()).unwrap();
    tamper_replica(&replica(d.path(), "cloud-a", &id));
    let (got, failed) = v.recover_with_passphrase_reporting(&id, b"pw").unwrap();
    assert_eq!(got, data);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].index, 0);
    assert_eq!(failed[0].store, "local:cloud-a");
    assert_eq!(failed[0].fault, StoreFault::BadTag);
    // The audit entry names the tampered store.
    let log = v.audit_verify().unwrap();
    let last = log.last().unwrap();
    assert_eq!(last.event, Event::Recover);
    assert!(last.detail.contains("cloud-a"), "{}", last.detail);

    // A recipient with a grant fails over the same way.
    let doc = Identity::generate().unwrap();
    let g = share_to(&v, &id, doc.public());
    assert_eq!(rwg(&v, &id, &g.grant, &doc).unwrap().bytes, data);

    // Both altered: a typed error blamed on the stores, naming both, and
    // no bytes.
    tamper_replica(&replica(d.path(), "cloud-b", &id));
    let e = v.recover_with_passphrase(&id, b"pw").unwrap_err();
    assert_eq!(e.blame(), Blame::Tampered, "{e}");
    let VaultError::PublicUnavailable { failures, .. } = &e else {
        panic!("{e}");
    };
    assert_eq!(
        faults(failures),
        [(0, StoreFault::BadTag), (1, StoreFault::BadTag)]
    );
    assert!(e.to_string().contains("cloud-a") && e.to_string().contains("cloud-b"));
    let e = rwg(&v, &id, &g.grant, &doc).unwrap_err();
    assert!(matches!(e, VaultError::PublicUnavailable { .. }), "{e}");
}

fn faults(f: &[StoreFailure]) -> Vec<(usize, StoreFault)> {
    f.iter().map(|f| (f.index, f.fault.clone())).collect()
}

#[test]
fn an_order_of_stores_with_the_intact_copy_first_reads_only_that_one() {
    let d = tempfile::tempdir().unwrap();
    write_config(d.path(), &["cloud-a", "cloud-b"], None);
    let v = EhrVault::open(d.path()).unwrap();
    let id = v.protect(&input(), b"pw", &opts()).unwrap();
    tamper_replica(&replica(d.path(), "cloud-b", &id));
    let (got, failed) = v.recover_with_passphrase_reporting(&id, b"pw").unwrap();
    assert_eq!(got, input());
    assert!(failed.is_empty());
}

#[test]
fn a_replica_of_another_record_is_refused() {
    let d = tempfile::tempdir().unwrap();
    write_config(d.path(), &["cloud-a", "cloud-b"], None);
    let v = EhrVault::open(d.path()).unwrap();
    let a = v.protect(&input(), b"pw", &opts()).unwrap();
    let b = v.protect(b"another record", b"pw", &opts()).unwrap();
    std::fs::copy(
        replica(d.path(), "cloud-b", &b),
        replica(d.path(), "cloud-a", &a),
    )
    .unwrap();
    let (got, failed) = v.recover_with_passphrase_reporting(&a, b"pw").unwrap();
    assert_eq!(got, input());
    assert_eq!(faults(&failed), [(0, StoreFault::BadTag)]);
}

#[test]
fn first_version_bare_replicas_are_still_read_and_fail_over_on_the_private_binding() {
    let d = tempfile::tempdir().unwrap();
    write_config(d.path(), &["cloud-a", "cloud-b"], None);
    let v = EhrVault::open(d.path()).unwrap();
    let data = input();
    let id = v.protect(&data, b"pw", &opts()).unwrap();
    // Rewrite both replicas as the first version stored them: the bare
    // AOSP container.
    for s in ["cloud-a", "cloud-b"] {
        let p = replica(d.path(), s, &id);
        let b = std::fs::read(&p).unwrap();
        assert_eq!(&b[..4], b"AOSI");
        std::fs::write(&p, &b[32..b.len() - 32]).unwrap();
    }
    assert_eq!(v.recover_with_passphrase(&id, b"pw").unwrap(), data);
    tamper_replica(&replica(d.path(), "cloud-a", &id));
    let (got, failed) = v.recover_with_passphrase_reporting(&id, b"pw").unwrap();
    assert_eq!(got, data);
    assert_one_mismatch(&failed, 0);
}

/// Exactly one store failed: store `index`, its copy not matching.
fn assert_one_mismatch(failed: &[StoreFailure], index: usize) {
    assert!(
        matches!(
            failed,
            [StoreFailure {
                index: i,
                fault: StoreFault::Mismatch { .. },
                ..
            }] if *i == index
        ),
        "{failed:?}"
    );
}

fn shard(dir: &Path, store: usize, id: &RecordId) -> std::path::PathBuf {
    dir.join(format!("c{store}/records/{id}.aosp.shard{store}"))
}

fn dispersed() -> (tempfile::TempDir, EhrVault, RecordId) {
    let d = tempfile::tempdir().unwrap();
    write_config(d.path(), &["c0", "c1", "c2"], Some((2, 3)));
    let v = EhrVault::open(d.path()).unwrap();
    let id = v.protect(&input(), b"pw", &opts()).unwrap();
    (d, v, id)
}

#[test]
fn a_tampered_shard_is_named_and_any_two_verified_shards_recover() {
    let (d, v, id) = dispersed();
    let p = shard(d.path(), 0, &id);
    let mut b = std::fs::read(&p).unwrap();
    b[100] ^= 1;
    std::fs::write(&p, &b).unwrap();
    let (got, failed) = v.recover_with_passphrase_reporting(&id, b"pw").unwrap();
    assert_eq!(got, input());
    assert_eq!(faults(&failed), [(0, StoreFault::BadTag)]);
    assert_eq!(failed[0].store, "local:c0");

    // A second tampered shard leaves one: a typed error naming both.
    let p = shard(d.path(), 2, &id);
    let mut b = std::fs::read(&p).unwrap();
    b[60] ^= 1;
    std::fs::write(&p, &b).unwrap();
    let e = v.recover_with_passphrase(&id, b"pw").unwrap_err();
    assert_eq!(e.blame(), Blame::Tampered);
    let VaultError::PublicUnavailable { failures, .. } = &e else {
        panic!("{e}");
    };
    assert_eq!(
        faults(failures),
        [(0, StoreFault::BadTag), (2, StoreFault::BadTag)]
    );
}

#[test]
fn a_shard_moved_between_indexes_or_records_is_refused() {
    let (d, v, id) = dispersed();
    // Store 0 now holds store 1's (genuine) shard.
    std::fs::copy(shard(d.path(), 1, &id), shard(d.path(), 0, &id)).unwrap();
    let (got, failed) = v.recover_with_passphrase_reporting(&id, b"pw").unwrap();
    assert_eq!(got, input());
    assert!(
        matches!(
            &failed[..],
            [StoreFailure {
                index: 0,
                fault: StoreFault::Misplaced { .. },
                ..
            }]
        ),
        "{failed:?}"
    );
    // Store 2 now holds another record's shard 2.
    let other = v.protect(b"another record", b"pw", &opts()).unwrap();
    std::fs::copy(shard(d.path(), 2, &other), shard(d.path(), 2, &id)).unwrap();
    let e = v.recover_with_passphrase(&id, b"pw").unwrap_err();
    let VaultError::PublicUnavailable { failures, .. } = &e else {
        panic!("{e}");
    };
    assert!(
        matches!(failures[0].fault, StoreFault::Misplaced { .. }),
        "{e}"
    );
    assert_eq!(
        (failures[1].index, &failures[1].fault),
        (2, &StoreFault::BadTag)
    );
    assert_eq!(failures.len(), 2);
}

#[test]
fn a_forged_shard_downgraded_to_the_unkeyed_version_is_outvoted_and_named() {
    let (d, v, id) = dispersed();
    // The cloud alters its shard and rewrites it as an `AOSD` v1 shard,
    // whose checksum it can compute.
    let p = shard(d.path(), 0, &id);
    let mut b = std::fs::read(&p).unwrap();
    b[4] = 1;
    b[100] ^= 0xff;
    let end = b.len() - 32;
    let sum = Sha256::digest(&b[..end]);
    b[end..].copy_from_slice(&sum);
    std::fs::write(&p, &b).unwrap();
    let (got, failed) = v.recover_with_passphrase_reporting(&id, b"pw").unwrap();
    assert_eq!(got, input());
    assert_one_mismatch(&failed, 0);
    // With store 2 gone, the forged v1 shard and the genuine shard 1 do not
    // rebuild the sealed container: refused, no bytes.
    std::fs::remove_file(shard(d.path(), 2, &id)).unwrap();
    let e = v.recover_with_passphrase(&id, b"pw").unwrap_err();
    assert_eq!(e.blame(), Blame::Tampered, "{e}");
}
