//! The device's own disk formats through `aorta_device::fuzzing`: files the
//! device wrote decode and round-trip exactly; every truncation, bit flip
//! and extra byte is refused or decodes to a value that round-trips, and
//! none panics; a flipped bit in a key store fails its checksum.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use aorta_crypto::keys::{KEY_LEN, KeySlice};
use aorta_device::fuzzing;
use aorta_device::rotation::RotationState;
use aorta_device::se::FileSecureElement;

#[test]
fn a_key_store_round_trips_and_no_mutation_passes_unnoticed() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("se.key");
    let keys: Vec<u8> = (0..4 * KEY_LEN).map(|i| i as u8).collect();
    FileSecureElement::create(&p, KeySlice::new("SN-0042", keys).unwrap()).unwrap();
    let b = std::fs::read(&p).unwrap();
    assert!(fuzzing::key_store(&b));
    for m in aorta_base::codec::mutations(&b, b.len()) {
        // Only the file itself decodes: the checksum covers every byte.
        assert!(!fuzzing::key_store(&m), "a mutated key store decoded");
    }
}

#[test]
fn a_rotation_state_round_trips_and_mutations_never_panic() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("rotation.state");
    let st = RotationState {
        reserved_until: 128,
        base_seq: 64,
        base_index: 3,
        max_key_uses: 1000,
        reneg_counter: 2,
        applied_counter: 1,
        change_times: vec![1_700_000_000, 1_700_086_400],
    };
    st.store(&p).unwrap();
    let b = std::fs::read(&p).unwrap();
    assert!(fuzzing::rotation_state(&b));
    assert_eq!(RotationState::load(&p).unwrap(), st);
    for m in aorta_base::codec::mutations(&b, b.len()) {
        fuzzing::rotation_state(&m);
    }
    // Truncated or extended files are refused with a reason.
    std::fs::write(&p, &b[..b.len() - 1]).unwrap();
    let e = RotationState::load(&p).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    let mut longer = b.clone();
    longer.push(0);
    std::fs::write(&p, &longer).unwrap();
    let e = RotationState::load(&p).unwrap_err().to_string();
    assert!(e.contains("trailing"), "{e}");
}
