//! Provisioning, verification and frame acceptance against a real redb registry.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)]

use aorta_crypto::frame::{self, ChannelCalibration, FrameHeader, TransportKey};
use aorta_crypto::keys::{self, KeyPrf, KeySlice};
use aorta_registry::{AcceptError, PoolConfig, RefusalKind, Registry, RegistryError};

fn small_pool(slices: u64) -> PoolConfig {
    PoolConfig {
        pool_keys: slices * 120,
        slice_len: 120,
    }
}

fn seal(keys: &KeySlice, index: u16, seq: u64, epoch: [u8; 16]) -> Vec<u8> {
    let key = TransportKey::derive(keys, index, &epoch).unwrap();
    let x: Vec<i32> = (0..36).map(|i| (i * 37) % 101).collect();
    let h = FrameHeader::new(keys.serial(), index, seq, 0, 360_000, 1, 36, epoch).unwrap();
    let cal = [ChannelCalibration::new(200.0, 0, 0, 11, "mV", "MLII")];
    frame::seal(&key, &h, &cal, &[&x]).unwrap()
}

#[test]
fn provisioning_refuses_reprovisioning_overlap_and_exhaustion() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::init(dir.path(), small_pool(3)).unwrap();
    assert!(matches!(
        Registry::init(dir.path(), small_pool(3)),
        Err(RegistryError::AlreadyExists { .. })
    ));
    let a = reg.provision("SN-A").unwrap();
    assert_eq!(a.slice_len(), 120);
    assert!(matches!(
        reg.provision("SN-A"),
        Err(RegistryError::AlreadyProvisioned { ref serial, offset: 0 }) if serial == "SN-A"
    ));
    // Overlapping slices, on either side.
    for off in [0, 60, 119] {
        match reg.provision_at("SN-X", off) {
            Err(RegistryError::Overlap { other, .. }) => assert_eq!(other, "SN-A"),
            r => panic!("offset {off}: {r:?}"),
        }
    }
    let c = reg.provision_at("SN-C", 240).unwrap();
    match reg.provision_at("SN-Y", 200) {
        Err(RegistryError::Overlap { other, .. }) => assert_eq!(other, "SN-C"),
        r => panic!("{r:?}"),
    }
    let b = reg.provision_at("SN-B", 120).unwrap();
    // Slices are distinct and contiguous pieces of the pool.
    assert_ne!(a.material(), b.material());
    assert_ne!(b.material(), c.material());
    assert!(matches!(
        reg.provision("SN-D"),
        Err(RegistryError::PoolExhausted { .. })
    ));
    assert!(matches!(
        reg.provision_at("SN-D", u64::MAX - 3),
        Err(RegistryError::PoolExhausted { .. })
    ));
    // Reopen: everything persisted, same keys.
    drop(reg);
    let reg = Registry::open(dir.path()).unwrap();
    assert_eq!(reg.device_keys("SN-B").unwrap().material(), b.material());
    assert!(matches!(
        reg.device_keys("nope"),
        Err(RegistryError::UnknownSerial { .. })
    ));
}

#[test]
fn store_holds_only_wrapped_keys_and_needs_the_kek() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::init(dir.path(), small_pool(2)).unwrap();
    let a = reg.provision("SN-A").unwrap();
    drop(reg);
    let db = std::fs::read(dir.path().join("registry.redb")).unwrap();
    for key in a.material().chunks(32) {
        assert!(
            !db.windows(32).any(|w| w == key),
            "a raw key is in the store"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("kek"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A different KEK cannot unwrap the pool.
    std::fs::remove_file(dir.path().join("kek")).unwrap();
    std::fs::write(dir.path().join("kek"), [7u8; 32]).unwrap();
    let reg = Registry::open(dir.path()).unwrap();
    assert!(matches!(
        reg.device_keys("SN-A"),
        Err(RegistryError::Corrupt(_))
    ));
}

#[test]
fn key_verification_at_assembly() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::init(dir.path(), small_pool(2)).unwrap();
    let a = reg.provision("SN-A").unwrap();
    let b = reg.provision("SN-B").unwrap();
    // A device that was loaded with the wrong slice (B's keys under A's serial).
    let wrong = KeySlice::new("SN-A", b.material().to_vec()).unwrap();
    let err = reg
        .verify("SN-A", &keys::commitment(&wrong).unwrap())
        .unwrap_err();
    assert!(matches!(err, RegistryError::CommitmentMismatch { ref serial } if serial == "SN-A"));
    assert!(err.to_string().contains("SN-A"));
    assert!(!reg.device("SN-A").unwrap().verified);
    reg.verify("SN-A", &keys::commitment(&a).unwrap()).unwrap();
    assert!(reg.device("SN-A").unwrap().verified);
}

#[test]
fn frame_acceptance_refuses_each_kind_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::init(dir.path(), small_pool(3)).unwrap();
    let a = reg.provision("SN-A").unwrap();
    let unverified = reg.provision("SN-U").unwrap();
    reg.verify("SN-A", &keys::commitment(&a).unwrap()).unwrap();
    let e = [1u8; 16];

    let kind = |r: Result<_, AcceptError>| r.map(|_| ()).unwrap_err().kind();

    // Unknown serial.
    let ghost = KeySlice::new("SN-GHOST", vec![1; 120 * 32]).unwrap();
    assert_eq!(
        kind(reg.accept_frame(&seal(&ghost, 0, 0, e))),
        RefusalKind::UnknownSerial
    );
    // Not verified.
    assert_eq!(
        kind(reg.accept_frame(&seal(&unverified, 0, 0, e))),
        RefusalKind::NotVerified
    );
    // Wrong keys under a real serial: authentication fails.
    let forged = KeySlice::new("SN-A", vec![9; 120 * 32]).unwrap();
    assert_eq!(
        kind(reg.accept_frame(&seal(&forged, 0, 0, e))),
        RefusalKind::AuthenticationFailed
    );

    // Good frames, with a sequence gap.
    let f0 = seal(&a, 0, 0, e);
    let acc = reg.accept_frame(&f0).unwrap();
    assert!(!acc.duplicate);
    assert_eq!(acc.ack(), ("SN-A".to_owned(), 0));
    reg.accept_frame(&seal(&a, 0, 5, e)).unwrap();
    // Exact re-send: acknowledged again, not stored twice.
    assert!(reg.accept_frame(&f0).unwrap().duplicate);
    // Same sequence, different bytes (another epoch): replay.
    assert_eq!(
        kind(reg.accept_frame(&seal(&a, 0, 0, [2; 16]))),
        RefusalKind::Replayed
    );
    // Older, never-accepted sequence: reordered.
    assert_eq!(
        kind(reg.accept_frame(&seal(&a, 0, 3, e))),
        RefusalKind::Reordered
    );
    // Key index jumping ahead beyond the window (gap of 1 frame allows one step).
    assert_eq!(
        kind(reg.accept_frame(&seal(&a, 5, 6, e))),
        RefusalKind::KeyIndexOutOfWindow
    );
    // Stale (going back) index.
    reg.accept_frame(&seal(&a, 1, 6, e)).unwrap();
    assert_eq!(
        kind(reg.accept_frame(&seal(&a, 0, 7, e))),
        RefusalKind::KeyIndexOutOfWindow
    );
    // A key index beyond the slice.
    let mut big = seal(&a, 1, 8, e);
    big[6] = 0x01;
    big[7] = 0x00; // key index 256
    assert_eq!(
        kind(reg.accept_frame(&big)),
        RefusalKind::KeyIndexOutOfWindow
    );
    // Flipped bit, truncation, oversize, unknown version.
    let mut flipped = seal(&a, 1, 9, e);
    let last = flipped.len() - 1;
    flipped[last] ^= 0x10;
    assert_eq!(
        kind(reg.accept_frame(&flipped)),
        RefusalKind::AuthenticationFailed
    );
    let good = seal(&a, 1, 9, e);
    assert_eq!(
        kind(reg.accept_frame(&good[..good.len() - 3])),
        RefusalKind::Truncated
    );
    assert_eq!(
        kind(reg.accept_frame(&vec![0u8; (8 << 20) + 1])),
        RefusalKind::Oversize
    );
    let mut v2 = good.clone();
    v2[4] = 2;
    assert_eq!(kind(reg.accept_frame(&v2)), RefusalKind::UnknownFormat);
    // After all that, the good frame is still accepted: refusals changed nothing.
    reg.accept_frame(&good).unwrap();

    let c = reg.counters();
    assert_eq!(c.accepted(), 4);
    assert_eq!(c.duplicates(), 1);
    for (k, n) in [
        (RefusalKind::UnknownSerial, 1),
        (RefusalKind::NotVerified, 1),
        (RefusalKind::AuthenticationFailed, 2),
        (RefusalKind::Replayed, 1),
        (RefusalKind::Reordered, 1),
        (RefusalKind::KeyIndexOutOfWindow, 3),
        (RefusalKind::Truncated, 1),
        (RefusalKind::Oversize, 1),
        (RefusalKind::UnknownFormat, 1),
    ] {
        assert_eq!(c.get(k), n, "{}", k.name());
    }
    let info = reg.device("SN-A").unwrap();
    assert_eq!(info.last_sequence, Some(9));
    assert!(reg.is_acknowledged("SN-A", 5).unwrap());
    assert!(!reg.is_acknowledged("SN-A", 3).unwrap());
}

#[test]
fn key_index_wraps_around_the_slice() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::init(dir.path(), small_pool(1)).unwrap();
    let a = reg.provision("SN-W").unwrap();
    reg.verify("SN-W", &keys::commitment(&a).unwrap()).unwrap();
    let e = [3u8; 16];
    // Walk the whole slice and back to index 0 (one step per frame is inside the window).
    for (seq, idx) in (0..120u16).chain([0, 1]).enumerate() {
        reg.accept_frame(&seal(&a, idx, seq as u64, e)).unwrap();
    }
    assert_eq!(reg.device("SN-W").unwrap().last_key_index, 1);
}

#[test]
fn concurrent_resends_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::init(dir.path(), small_pool(1)).unwrap();
    let a = reg.provision("SN-C").unwrap();
    reg.verify("SN-C", &keys::commitment(&a).unwrap()).unwrap();
    let frames: Vec<Vec<u8>> = (0..6).map(|s| seal(&a, 0, s, [5; 16])).collect();
    // Four threads upload the same frames at once (a device re-sending while
    // an earlier upload is still in flight).
    let stored = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for _ in 0..4 {
            sc.spawn(|| {
                for f in &frames {
                    if let Ok(acc) = reg.accept_frame(f)
                        && !acc.duplicate
                    {
                        stored.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(stored.into_inner(), 6);
    assert_eq!(reg.counters().accepted(), 6);
}

/// Random mutations of a valid frame through the whole server path
/// (`accept_frame`): all refused, each counted, and none changes state (the
/// unmutated frame is accepted afterwards). `AORTA_REGISTRY_MUTATIONS`
/// cases, default 100,000 (about 8 s in debug).
#[test]
fn mutated_frames_are_refused_by_the_server_without_state_change() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let cases: u32 = std::env::var("AORTA_REGISTRY_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::init(dir.path(), small_pool(1)).unwrap();
    let a = reg.provision("SN-M").unwrap();
    reg.verify("SN-M", &keys::commitment(&a).unwrap()).unwrap();
    reg.accept_frame(&seal(&a, 0, 0, [1; 16])).unwrap();
    let valid = seal(&a, 0, 1, [1; 16]);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(any::<usize>(), 1u8..=255, any::<usize>(), 0u8..3),
            |(pos, x, cut, how)| {
                let mut b = valid.clone();
                match how {
                    0 => {
                        let p = pos % b.len();
                        b[p] ^= x;
                    }
                    1 => b.truncate(cut % b.len()),
                    _ => b.insert(pos % (b.len() + 1), x),
                }
                prop_assert!(reg.accept_frame(&b).is_err());
                Ok(())
            },
        )
        .unwrap();
    let refused: u64 = RefusalKind::ALL
        .iter()
        .map(|k| reg.counters().get(*k))
        .sum();
    assert_eq!(refused, u64::from(cases));
    assert_eq!(reg.counters().get(RefusalKind::Internal), 0);
    assert!(!reg.accept_frame(&valid).unwrap().duplicate);
}

#[test]
fn group_keys_open_every_frame_and_are_released_only_for_verified_devices() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::init(dir.path(), small_pool(2)).unwrap();
    let a = reg.provision("SN-A").unwrap();
    let b = reg.provision("SN-B").unwrap();
    // Provisioned but not verified: no keys leave the registry.
    assert!(matches!(
        reg.transport_group_keys("SN-A"),
        Err(RegistryError::NotVerified { ref serial }) if serial == "SN-A"
    ));
    assert!(matches!(
        reg.transport_group_keys("SN-NONE"),
        Err(RegistryError::UnknownSerial { .. })
    ));
    reg.verify("SN-A", &keys::commitment(&a).unwrap()).unwrap();
    reg.verify("SN-B", &keys::commitment(&b).unwrap()).unwrap();
    let ga = reg.transport_group_keys("SN-A").unwrap();
    let gb = reg.transport_group_keys("SN-B").unwrap();
    assert_eq!(ga.len(), 120);
    // One per index, all distinct, and distinct between devices.
    let all: std::collections::HashSet<[u8; 32]> = ga.iter().chain(&gb).map(|g| **g).collect();
    assert_eq!(all.len(), 240);
    // A frame sealed by the device opens with the key derived from the
    // released group key of its index and its header's epoch — for several
    // indices (including the wrap-around groups at the end) and epochs.
    for (index, epoch) in [(0u16, [1u8; 16]), (7, [2; 16]), (119, [3; 16])] {
        let f = seal(&a, index, 1, epoch);
        let p = frame::parse(&f).unwrap();
        let tk = TransportKey::from_group(
            &ga[usize::from(index)],
            "SN-A",
            p.header.key_index,
            &p.header.epoch,
        )
        .unwrap();
        assert!(p.open(&tk).is_ok(), "index {index}");
        // Another index's or another device's group key does not open it.
        for wrong in [&ga[usize::from((index + 1) % 120)], &gb[usize::from(index)]] {
            let p = frame::parse(&f).unwrap();
            let tk = TransportKey::from_group(wrong, "SN-A", index, &epoch).unwrap();
            assert!(p.open(&tk).is_err());
        }
    }
}

/// The public directory follows every change of a device; a signing key
/// is registered once; a revoked device's keys are never released again.
#[test]
fn directory_signing_keys_and_revocation() {
    use aorta_crypto::directory::{Directory, Status};
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::init(dir.path(), small_pool(2)).unwrap();
    let on_disk =
        || Directory::parse(&std::fs::read_to_string(reg.directory_path()).unwrap()).unwrap();
    assert!(on_disk().devices.is_empty());
    let a = reg.provision("SN-A").unwrap();
    assert_eq!(on_disk().devices["SN-A"].status, Status::Unverified);
    reg.verify("SN-A", &keys::commitment(&a).unwrap()).unwrap();
    reg.register_key("SN-A", &[5u8; 32]).unwrap();
    reg.register_key("SN-A", &[5u8; 32]).unwrap();
    assert!(matches!(
        reg.register_key("SN-A", &[6u8; 32]),
        Err(RegistryError::KeyAlreadyRegistered { .. })
    ));
    let e = &on_disk().devices["SN-A"];
    assert_eq!(
        (e.status, e.public_key),
        (Status::Verified, Some([5u8; 32]))
    );
    assert!(reg.transport_group_keys("SN-A").is_ok());
    reg.revoke("SN-A").unwrap();
    assert_eq!(on_disk().devices["SN-A"].status, Status::Revoked);
    assert!(matches!(
        reg.transport_group_keys("SN-A"),
        Err(RegistryError::Revoked { .. })
    ));
    // The directory holds no key material: no byte run of the device's keys.
    let text = std::fs::read(reg.directory_path()).unwrap();
    let material = a.material();
    assert!(
        !text
            .windows(16)
            .any(|w| material.windows(16).any(|m| m == w))
    );
}
