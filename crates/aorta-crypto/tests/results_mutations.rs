//! Every single-byte mutation (all 255 other values at every offset), every
//! truncation and every one-byte extension of valid session envelopes,
//! sealed results and sealed state is refused with a typed error — never
//! accepted, never a panic — and random multi-byte mutations (proptest)
//! likewise.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)]

use aorta_crypto::results::{
    ClinicianIdentity, OpenedSession, ResultSession, ResultsError, open_envelope, open_state,
    seal_state,
};
use proptest::prelude::*;

struct Fixture {
    alice: ClinicianIdentity,
    envelope: Vec<u8>,
    opened: OpenedSession,
    result: Vec<u8>,
    state: Vec<u8>,
}

const RID: &str = "ECG-0042/hrv/000003";
const KEY: [u8; 32] = [0x42; 32];

fn fixture() -> Fixture {
    let alice = ClinicianIdentity::generate().unwrap();
    let (session, envelope) = ResultSession::open_new("dr-alice", &alice.public()).unwrap();
    let result = session
        .seal(RID, br#"{"sdnn_ms":41.2,"rmssd_ms":27.9}"#)
        .unwrap();
    let state = seal_state(&KEY, b"ward-a", b"checkpoint 17: seq=12345").unwrap();
    let opened = open_envelope(&alice, &envelope).unwrap();
    Fixture {
        alice,
        envelope,
        opened,
        result,
        state,
    }
}

/// Every variant of `valid` with one byte changed, one truncation, or one byte appended.
fn single_byte_variants(valid: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    let changed = (0..valid.len()).flat_map(move |i| {
        (1..=255u8).map(move |d| {
            let mut v = valid.to_vec();
            v[i] = v[i].wrapping_add(d);
            v
        })
    });
    let truncated = (0..valid.len()).map(move |n| valid[..n].to_vec());
    let extended = [0u8, 0xff].into_iter().map(move |b| {
        let mut v = valid.to_vec();
        v.push(b);
        v
    });
    changed.chain(truncated).chain(extended)
}

fn check_refused(what: &str, r: Result<impl Sized, ResultsError>, v: &[u8]) {
    assert!(r.is_err(), "{what}: mutation accepted: {v:02x?}");
}

#[test]
fn every_single_byte_mutation_of_an_envelope_is_refused() {
    let f = fixture();
    let mut n = 0;
    for v in single_byte_variants(&f.envelope) {
        check_refused("envelope", open_envelope(&f.alice, &v), &v);
        n += 1;
    }
    eprintln!("{n} envelope variants refused");
}

#[test]
fn every_single_byte_mutation_of_a_result_is_refused() {
    let f = fixture();
    assert!(f.opened.open(RID, &f.result).is_ok());
    let mut n = 0;
    for v in single_byte_variants(&f.result) {
        check_refused("result", f.opened.open(RID, &v), &v);
        n += 1;
    }
    eprintln!("{n} sealed result variants refused");
}

#[test]
fn every_single_byte_mutation_of_state_is_refused() {
    let f = fixture();
    assert!(open_state(&KEY, b"ward-a", &f.state).is_ok());
    let mut n = 0;
    for v in single_byte_variants(&f.state) {
        check_refused("state", open_state(&KEY, b"ward-a", &v), &v);
        n += 1;
    }
    eprintln!("{n} sealed state variants refused");
}

fn mutate(valid: &[u8], edits: &[(usize, u8)], cut: Option<usize>, tail: &[u8]) -> Vec<u8> {
    let mut v = valid.to_vec();
    for &(p, x) in edits {
        let i = p % v.len();
        v[i] ^= x;
    }
    if let Some(c) = cut {
        v.truncate(c % (v.len() + 1));
    }
    v.extend_from_slice(tail);
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_mutations_are_refused(
        edits in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..6),
        cut in proptest::option::of(any::<usize>()),
        tail in proptest::collection::vec(any::<u8>(), 0..4),
    ) {
        prop_assume!(!edits.is_empty() || cut.is_some() || !tail.is_empty());
        let f = fixture();
        for (valid, which) in [(&f.envelope, 0), (&f.result, 1), (&f.state, 2)] {
            let v = mutate(valid, &edits, cut, &tail);
            if &v == valid {
                continue; // e.g. two edits that cancel, or a cut past the end
            }
            let refused = match which {
                0 => open_envelope(&f.alice, &v).is_err(),
                1 => f.opened.open(RID, &v).is_err(),
                _ => open_state(&KEY, b"ward-a", &v).is_err(),
            };
            prop_assert!(refused, "accepted mutation of container {}", which);
        }
    }
}
