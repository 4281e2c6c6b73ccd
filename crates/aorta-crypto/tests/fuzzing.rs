//! Runs each `aorta_crypto::fuzzing` entry point over the committed vectors
//! (`docs/vectors/frame-format`, `docs/vectors/results`) and mutations of
//! them: valid vectors decode and round-trip exactly; no mutation panics.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)]

use std::path::{Path, PathBuf};

use aorta_crypto::fuzzing;

fn vectors(dir: &str, ext: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/vectors")
        .join(dir);
    let out = aorta_base::codec::vector_files(&dir, ext).unwrap();
    assert!(!out.is_empty(), "no .{ext} vectors in {}", dir.display());
    out
}

fn mutations(b: &[u8]) -> Vec<Vec<u8>> {
    aorta_base::codec::mutations(b, 256)
}

/// Runs `f` over the vectors of `dir` with extension `ext` and their
/// mutations; the vectors named in `valid` must decode.
fn run(f: fn(&[u8]) -> bool, dir: &str, ext: &str, valid: &[&str]) {
    let all = vectors(dir, ext);
    for name in valid {
        assert!(
            all.iter()
                .any(|(p, _)| p.file_name().is_some_and(|n| n == *name)),
            "vector {name} missing"
        );
    }
    for (path, b) in all {
        let name = path.file_name().unwrap().to_str().unwrap();
        let decoded = f(&b);
        if valid.contains(&name) {
            assert!(decoded, "{} does not decode", path.display());
        }
        for m in mutations(&b) {
            f(&m);
        }
    }
}

#[test]
fn frames() {
    run(
        fuzzing::frame,
        "frame-format",
        "aof",
        &[
            "valid-1ch-extremes.aof",
            "valid-2ch.aof",
            "valid-rr.aof",
            "flipped-tag-bit.aof",
        ],
    );
}

#[test]
fn frame_prefixes() {
    run(
        fuzzing::frame_prefix,
        "frame-format",
        "aof",
        &[
            "valid-1ch-extremes.aof",
            "valid-2ch.aof",
            "valid-rr.aof",
            "flipped-tag-bit.aof",
        ],
    );
}

#[test]
fn calibrations() {
    use aorta_base::codec::Encode;
    use aorta_crypto::frame::ChannelCalibration;
    for c in [
        ChannelCalibration::new(200.0, 1024, 1024, 11, "mV", "MLII"),
        ChannelCalibration::rr("RR chest strap"),
        ChannelCalibration::new(-0.5, -7, 0, 16, "", ""),
    ] {
        let b = c.to_bytes();
        assert!(fuzzing::calibration(&b));
        for m in mutations(&b) {
            fuzzing::calibration(&m);
        }
    }
}

#[test]
fn session_envelopes() {
    run(
        fuzzing::session_envelope,
        "results",
        "aors",
        &["session.aors", "envelope-to-bob.aors"],
    );
}

#[test]
fn sealed_results() {
    run(
        fuzzing::sealed_result,
        "results",
        "aorr",
        &[
            "result-hr.aorr",
            "result-events.aorr",
            "result-flipped-tag.aorr",
        ],
    );
}

#[test]
fn sealed_states() {
    run(fuzzing::sealed_state, "results", "aost", &["state.aost"]);
}

#[test]
fn session_checkpoints() {
    use aorta_crypto::results::{ClinicianIdentity, ResultSession};
    let alice = ClinicianIdentity::from_secret_bytes(&[0x11; 32]).unwrap();
    let (s, _) = ResultSession::open_new("dr-alice", &alice.public()).unwrap();
    let b = s.to_checkpoint();
    assert!(fuzzing::session_checkpoint(&b));
    for m in mutations(&b) {
        fuzzing::session_checkpoint(&m);
    }
}

#[test]
fn renegotiation_messages() {
    // magic ‖ version 1 ‖ type ‖ body
    let mut offer = b"AORN\x01\x01\x04SN-1".to_vec();
    offer.extend_from_slice(&7u64.to_be_bytes());
    offer.extend_from_slice(&[5; 64]);
    let mut reply = b"AORN\x01\x02".to_vec();
    reply.extend_from_slice(&[7; 24]); // status: max_key_uses, applied_counter, base_seq
    reply.extend_from_slice(&[6; 64]);
    for (f, b) in [
        (fuzzing::reneg_offer as fn(&[u8]) -> bool, offer),
        (fuzzing::reneg_reply, reply),
    ] {
        assert!(f(&b));
        for m in mutations(&b) {
            f(&m);
        }
    }
}

#[test]
fn vault_containers() {
    run(
        fuzzing::vault_public,
        "vault-format",
        "aosp",
        &[
            "faithful.public.aosp",
            "strong.public.aosp",
            "faithful-v2.public.aosp",
            "strong-v2.public.aosp",
            "strong-v2-2000.public.aosp",
        ],
    );
    run(
        fuzzing::vault_private,
        "vault-format",
        "aosr",
        &[
            "faithful.private.aosr",
            "strong.private.aosr",
            "faithful-v2.private.aosr",
            "strong-v2.private.aosr",
            "strong-v2-2000.private.aosr",
        ],
    );
    run(
        fuzzing::vault_material,
        "vault-format",
        "aosm",
        &[
            "faithful.material.aosm",
            "strong.material.aosm",
            "faithful-v2.material.aosm",
            "strong-v2.material.aosm",
            "strong-v2-2000.material.aosm",
        ],
    );
}
