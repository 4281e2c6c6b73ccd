//! Hostile bytes in the device's own files and in renegotiation messages:
//! always a typed error, never a panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use aorta_crypto::reneg::{Offer, Reply, Sealed};
use aorta_device::rotation::RotationState;
use aorta_device::se::FileSecureElement;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn key_store_and_state_files_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), prefix in any::<bool>()) {
        let d = tempfile::tempdir().unwrap();
        let mut b = bytes;
        if prefix {
            let mut p = b"AOSE\x02".to_vec();
            p.extend_from_slice(&b);
            b = p;
        }
        std::fs::write(d.path().join("se.key"), &b).unwrap();
        prop_assert!(FileSecureElement::open(d.path().join("se.key")).is_err());
        let mut s = b"AOST\x01".to_vec();
        s.extend_from_slice(&b);
        std::fs::write(d.path().join("state"), &s).unwrap();
        let _ = RotationState::load(&d.path().join("state"));
    }

    #[test]
    fn reneg_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), t in 1u8..5) {
        let mut b = b"AORN".to_vec();
        b.push(aorta_crypto::reneg::VERSION);
        b.push(t);
        b.extend_from_slice(&bytes);
        let _ = Offer::decode(&b);
        let _ = Reply::decode(&b);
        let _ = Sealed::decode_value(&b);
        let _ = Sealed::decode_confirm(&b);
        let _ = Offer::decode(&bytes);
    }
}
