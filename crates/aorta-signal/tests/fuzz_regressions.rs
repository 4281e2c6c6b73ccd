//! Findings of the coverage-guided fuzzing campaign (`docs/fuzzing.md`),
//! each a named regression test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use aorta_signal::wfdb::{Annotation, AnnotationError, encode_annotations, parse_annotations};

fn ann(sample: u64, code: u8) -> Annotation {
    Annotation {
        sample,
        code,
        subtype: 0,
        chan: 0,
        num: 0,
        aux: None,
    }
}

/// The encoder used to write a gap of 2^31 samples or more as one SKIP whose
/// signed 32-bit increment the parser read as negative (and refused gaps
/// over 2^32 outright): every gap now round-trips, split into several SKIPs.
#[test]
fn annotation_gaps_over_2_pow_31_round_trip() {
    let g31 = 1u64 << 31;
    let anns = vec![
        ann(10, 1),
        ann(10 + g31 - 1, 5),     // the largest single SKIP
        ann(10 + 2 * g31 + 4, 1), // just over: two SKIPs
        ann(10 + 2 * g31 + 4 + (1 << 34) + 7, 14),
        ann(10 + 2 * g31 + 4 + (1 << 34) + 7, 1), // zero gap after
    ];
    let bytes = encode_annotations(&anns).expect("every gap here is encodable");
    assert_eq!(
        parse_annotations(&bytes).expect("the encoder's output parses"),
        anns
    );
}

/// A gap too long to write in a bounded number of SKIPs is a typed error,
/// not a loop of 2^33 SKIPs.
#[test]
fn annotation_gap_beyond_the_cap_is_a_typed_error() {
    let anns = vec![ann(1, 1), ann(u64::MAX, 1)];
    assert!(matches!(
        encode_annotations(&anns),
        Err(AnnotationError::BadTime { offset: 1 })
    ));
}

/// Consecutive SKIPs add up (as in the WFDB library); the parser used to
/// keep only the last one.
#[test]
fn annotation_consecutive_skips_add_up() {
    let mut b = Vec::new();
    for _ in 0..4 {
        b.extend_from_slice(&(59u16 << 10).to_le_bytes());
        b.extend_from_slice(&0x7FFFu16.to_le_bytes());
        b.extend_from_slice(&0xFFFFu16.to_le_bytes());
    }
    b.extend_from_slice(&((1u16 << 10) | 1).to_le_bytes());
    let a = parse_annotations(&b).expect("a long gap parses");
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].sample, 1 + 4 * ((1u64 << 31) - 1));
}
