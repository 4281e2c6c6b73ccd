//! Runs each `aorta_registry::fuzzing` entry point over valid records and
//! mutations of them: valid records decode and round-trip exactly; no
//! mutation panics.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)]

use aorta_registry::fuzzing;

fn mutations(b: &[u8]) -> Vec<Vec<u8>> {
    aorta_base::codec::mutations(b, 1048576)
}

fn run(f: fn(&[u8]) -> bool, valid: &[Vec<u8>]) {
    for b in valid {
        assert!(f(b), "{b:?} does not decode");
        for m in mutations(b) {
            f(&m);
        }
    }
}

#[test]
fn device_records() {
    let mut rec = vec![2u8];
    rec.extend_from_slice(&4096u64.to_be_bytes());
    rec.extend_from_slice(&120u16.to_be_bytes());
    rec.push(1);
    rec.extend_from_slice(&10_000u64.to_be_bytes());
    rec.extend_from_slice(&5_000u64.to_be_bytes());
    let mut keyless = rec.clone();
    keyless.push(0);
    keyless.extend_from_slice(&[0u8; 32]);
    keyless.push(0);
    rec.push(1);
    rec.extend_from_slice(&[0x5a; 32]);
    rec.push(1);
    run(fuzzing::device_record, &[rec, keyless]);
    assert!(!fuzzing::device_record(&[3]));
}

#[test]
fn frame_states() {
    let mut none = vec![0u8];
    none.extend_from_slice(&0u64.to_be_bytes());
    none.extend_from_slice(&0u16.to_be_bytes());
    let mut some = vec![1u8];
    some.extend_from_slice(&77u64.to_be_bytes());
    some.extend_from_slice(&3u16.to_be_bytes());
    run(fuzzing::frame_state, &[none, some]);
}

#[test]
fn alloc_records() {
    let mut a = 120u64.to_be_bytes().to_vec();
    a.extend_from_slice(b"SN-0001");
    run(fuzzing::alloc_record, &[a, 0u64.to_be_bytes().to_vec()]);
    assert!(!fuzzing::alloc_record(&[0; 7]));
}

#[test]
fn reneg_histories() {
    let mut h = 7u64.to_be_bytes().to_vec();
    h.extend_from_slice(&1_700_000_000u64.to_be_bytes());
    run(fuzzing::reneg_history, &[h, 0u64.to_be_bytes().to_vec()]);
    // A partial change time is an error, not a silently dropped entry.
    assert!(!fuzzing::reneg_history(&[0; 12]));
    assert!(!fuzzing::reneg_history(&[]));
}
