//! Runs each `aorta_enclave::fuzzing` entry point over the committed
//! vectors and mutations of them: valid vectors decode and round-trip
//! exactly; no mutation panics.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)]

use std::path::{Path, PathBuf};

use aorta_enclave::fuzzing;

fn vectors(dir: &str, ext: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/vectors")
        .join(dir);
    let out = aorta_base::codec::vector_files(&dir, ext).unwrap();
    assert!(!out.is_empty(), "no .{ext} vectors in {}", dir.display());
    out
}

fn mutations(b: &[u8]) -> Vec<Vec<u8>> {
    aorta_base::codec::mutations(b, 512)
}

fn run(f: fn(&[u8]) -> bool, dir: &str, ext: &str) {
    for (path, b) in vectors(dir, ext) {
        assert!(f(&b), "{} does not decode", path.display());
        for m in mutations(&b) {
            f(&m);
        }
    }
}

#[test]
fn worker_protocol_messages() {
    run(fuzzing::message, "worker-protocol", "bin");
}

#[test]
fn attestation_evidence() {
    run(fuzzing::evidence, "attestation", "bin");
}

#[test]
fn key_bundles() {
    use aorta_base::codec::Encode;
    use aorta_enclave::keywrap::{KeyBundle, Secret32};
    let mut b = KeyBundle::new("ward-7");
    b.transport_keys
        .push(("SN-1".into(), Secret32::from_bytes([3; 32])));
    b.result_keys
        .push(("dr-alice".into(), Secret32::from_bytes([4; 32])));
    for bundle in [KeyBundle::new("a"), b] {
        let bytes = bundle.to_bytes();
        assert!(fuzzing::key_bundle(&bytes));
        for m in mutations(&bytes) {
            fuzzing::key_bundle(&m);
        }
    }
    assert!(!fuzzing::key_bundle(&[]));
}
