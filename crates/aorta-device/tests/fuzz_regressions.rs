//! Findings of the coverage-guided fuzzing campaign (`docs/fuzzing.md`),
//! each a named regression test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use aorta_base::codec::{Decode, Encode};
use aorta_device::fuzzing;
use aorta_device::rotation::RotationState;

/// Found by the `formats` target (pick 22, 39 bytes): a version-1 rotation
/// state, which the device still reads, is written back as version 2, and
/// the exact round-trip oracle panicked on it. The oracle now checks that
/// the upgrade keeps the value and that its version-2 bytes round-trip.
#[test]
fn rotation_state_version_1_upgrades_under_the_fuzz_oracle() {
    let v1: [u8; 39] = [
        65, 79, 83, 84, 1, 253, 0, 1, 0, 0, 0, 1, 47, 127, 99, 253, 2, 255, 255, 255, 255, 255,
        255, 255, 255, 30, 66, 0, 0, 0, 115, 0, 255, 1, 10, 1, 1, 47, 107,
    ];
    assert!(fuzzing::rotation_state(&v1), "the version-1 state decodes");
    let st = RotationState::from_bytes(&v1).unwrap();
    let v2 = st.to_bytes();
    assert_eq!(v2[4], 2, "written back as version 2");
    assert_eq!(RotationState::from_bytes(&v2).unwrap(), st);
    assert!(fuzzing::rotation_state(&v2));
}
