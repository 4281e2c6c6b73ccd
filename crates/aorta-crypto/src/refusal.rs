//! The one registry of refusal codes: every `u16` code a worker, verifier or
//! key broker sends in a `Refused` or `FrameRefused` message (worker
//! protocol, `docs/worker-protocol.md`), with one name and one meaning each.
//! No number is used twice. The table for readers is
//! `docs/refusal-codes.md`; a test checks it matches [`ALL`].
//!
//! Ranges (who refuses, and who is to blame):
//!
//! * **1xx — attestation** (the verifier, `aorta_enclave::verify`): the
//!   evidence a worker sent is malformed, stale, or not allowed by policy.
//! * **2xx — frames** (the worker's frame opener and the host side of the
//!   frame boundary): a sealed frame could not be opened or used. 200 is
//!   "no key released"; 201–213 are the upload frame layer's refusals
//!   (`aorta_crypto::frame::FrameError`, one each); 214–298 the other
//!   frame formats and the analysis boundary.
//! * **3xx — key broker** (`aorta-server`'s broker): the request was well
//!   formed but the broker will not release keys for it.
//!
//! `aorta-crypto` owns the registry because the enclave (verifier, worker),
//! the server (broker) and the stream engine all depend on it.

// ---------------------------------------------------------- 1xx attestation

/// The evidence bytes are malformed.
pub const ATTEST_MALFORMED: u16 = 100;
/// The evidence's nonce is not the challenge the verifier issued.
pub const ATTEST_NONCE_MISMATCH: u16 = 101;
/// The evidence is older than the policy's freshness.
pub const ATTEST_STALE: u16 = 102;
/// The evidence is dated in the future.
pub const ATTEST_FROM_THE_FUTURE: u16 = 103;
/// Simulated attestation, and the policy does not allow it.
pub const ATTEST_SIMULATION_NOT_ALLOWED: u16 = 104;
/// The evidence's backend is not allowed by the policy.
pub const ATTEST_BACKEND_NOT_ALLOWED: u16 = 105;
/// A sim platform key the policy does not list.
pub const ATTEST_UNKNOWN_SIM_PLATFORM: u16 = 106;
/// The evidence's signature does not verify.
pub const ATTEST_BAD_SIGNATURE: u16 = 107;
/// A TEE in debug mode.
pub const ATTEST_DEBUG_TEE: u16 = 108;
/// The worker's measurement is not allowed by the policy.
pub const ATTEST_MEASUREMENT_NOT_ALLOWED: u16 = 109;
/// The report data does not bind the evidence's claims.
pub const ATTEST_REPORT_DATA_MISMATCH: u16 = 110;
/// Quote verification failed.
pub const ATTEST_QUOTE_INVALID: u16 = 111;
/// A DCAP quote came without its collateral.
pub const ATTEST_MISSING_COLLATERAL: u16 = 112;
/// The platform's TCB is below the policy minimum.
pub const ATTEST_TCB_TOO_LOW: u16 = 113;
/// This build cannot verify the backend (SEV-SNP).
pub const ATTEST_BACKEND_UNVERIFIABLE: u16 = 114;
/// Bytes after the end of a DCAP quote or an SEV-SNP report.
pub const ATTEST_TRAILING_BYTES: u16 = 115;
/// TDX TD attributes aorta refuses (TUD bits other than debug, migratable,
/// SEPT_VE_DISABLE off, reserved bits).
pub const ATTEST_TD_ATTRIBUTES: u16 = 116;
/// The collateral's `tcbEvaluationDataNumber` is below the policy's
/// `min_tcb_eval_num`.
pub const ATTEST_COLLATERAL_TOO_OLD: u16 = 117;
/// A certificate, CRL, TCB info or QE identity of the collateral is expired
/// or not yet valid.
pub const ATTEST_COLLATERAL_OUT_OF_DATE: u16 = 118;
/// An SEV-SNP report from a VMPL above the policy's `snp_max_vmpl`.
pub const ATTEST_VMPL_NOT_ALLOWED: u16 = 119;

// ---------------------------------------------------------------- 2xx frames

/// No transport key was released for the frame's device (and, for upload
/// frames, key index).
pub const FRAME_NO_KEY: u16 = 200;
/// Fewer bytes than the header or the declared ciphertext needs.
pub const FRAME_TRUNCATED: u16 = 201;
/// Bytes after the declared ciphertext.
pub const FRAME_TRAILING_BYTES: u16 = 202;
/// The frame, or its declared ciphertext, is larger than allowed.
pub const FRAME_OVERSIZE: u16 = 203;
/// Not an aorta upload frame.
pub const FRAME_BAD_MAGIC: u16 = 204;
/// A frame version this build does not read.
pub const FRAME_UNSUPPORTED_VERSION: u16 = 205;
/// Unknown codec.
pub const FRAME_UNKNOWN_CODEC: u16 = 206;
/// A header field is out of range.
pub const FRAME_BAD_FIELD: u16 = 207;
/// Authentication failed: tampered frame, or a key that is not the device's.
pub const FRAME_AUTHENTICATION_FAILED: u16 = 208;
/// The compressed payload declares more than the header's samples allow.
pub const FRAME_DECOMPRESSION_BOMB: u16 = 209;
/// The authenticated payload does not parse.
pub const FRAME_MALFORMED_PAYLOAD: u16 = 210;
/// The transport key could not be derived from the released key.
pub const FRAME_KEY_DERIVATION: u16 = 211;
/// An RR frame (codec 2) holds an interval outside the accepted range.
pub const FRAME_RR_OUT_OF_RANGE: u16 = 212;
/// An RR frame's calibration is not the fixed RR calibration.
pub const FRAME_RR_CALIBRATION: u16 = 213;
/// A plain (unsealed, test and replay) frame is malformed. It was sent as
/// 101 before, which is [`ATTEST_NONCE_MISMATCH`].
pub const FRAME_PLAIN_MALFORMED: u16 = 214;
/// A frame whose sequence number the worker has already passed for its
/// device (a duplicate, replayed or reordered log record): never analysed
/// twice or out of order.
pub const FRAME_SEQUENCE_PASSED: u16 = 215;
/// A frame whose key index leaves its device's key-index window (seen
/// from the last frame the worker analysed).
pub const FRAME_KEY_INDEX_WINDOW: u16 = 216;
/// The frame did not cross the host/worker boundary (the protocol message
/// carrying it did not encode or decode).
pub const FRAME_BOUNDARY: u16 = 296;
/// An opened frame's shape cannot be analysed (an RR frame with more than
/// one channel, a lead without a usable rate or calibration).
pub const FRAME_UNUSABLE: u16 = 297;
/// A refusal of the frame layer this build has no code for, or a worker
/// that gave no result for the frame.
pub const FRAME_OTHER: u16 = 298;

// ------------------------------------------------------------ 3xx key broker

/// The nonce is unknown or already used (a replay).
pub const BROKER_UNKNOWN_NONCE: u16 = 300;
/// The challenge expired.
pub const BROKER_CHALLENGE_EXPIRED: u16 = 301;
/// The assignment is not in the broker's policy.
pub const BROKER_UNKNOWN_ASSIGNMENT: u16 = 302;
/// A requested device is outside the assignment.
pub const BROKER_DEVICE_OUTSIDE_ASSIGNMENT: u16 = 303;
/// A requested subscriber is outside the assignment.
pub const BROKER_SUBSCRIBER_OUTSIDE_ASSIGNMENT: u16 = 304;
/// No key is registered for an assigned device or subscriber.
pub const BROKER_KEY_UNAVAILABLE: u16 = 305;
/// Too many outstanding challenges.
pub const BROKER_BUSY: u16 = 306;
/// This source (IP address, IPv6 /64) asked for challenges faster than its
/// rate, or holds its whole share of outstanding challenges.
pub const BROKER_RATE_LIMITED: u16 = 307;
/// This source already has its most concurrent broker connections.
pub const BROKER_TOO_MANY_CONNECTIONS: u16 = 308;
/// A key window request is malformed: a width or page size of 0, a key
/// index outside the device's slice, or a device listed twice.
pub const BROKER_BAD_WINDOW: u16 = 309;
/// The broker failed (including an assignment too large for one bundle).
pub const BROKER_INTERNAL: u16 = 399;

/// Every code with its constant's name and meaning, in code order (the
/// source of `docs/refusal-codes.md`).
pub const ALL: &[(u16, &str, &str)] = &[
    (ATTEST_MALFORMED, "ATTEST_MALFORMED", "malformed evidence"),
    (
        ATTEST_NONCE_MISMATCH,
        "ATTEST_NONCE_MISMATCH",
        "nonce does not match",
    ),
    (ATTEST_STALE, "ATTEST_STALE", "stale evidence"),
    (
        ATTEST_FROM_THE_FUTURE,
        "ATTEST_FROM_THE_FUTURE",
        "evidence dated in the future",
    ),
    (
        ATTEST_SIMULATION_NOT_ALLOWED,
        "ATTEST_SIMULATION_NOT_ALLOWED",
        "sim refused (`allow_simulation` not set)",
    ),
    (
        ATTEST_BACKEND_NOT_ALLOWED,
        "ATTEST_BACKEND_NOT_ALLOWED",
        "backend not allowed",
    ),
    (
        ATTEST_UNKNOWN_SIM_PLATFORM,
        "ATTEST_UNKNOWN_SIM_PLATFORM",
        "unknown sim platform key",
    ),
    (
        ATTEST_BAD_SIGNATURE,
        "ATTEST_BAD_SIGNATURE",
        "bad signature",
    ),
    (ATTEST_DEBUG_TEE, "ATTEST_DEBUG_TEE", "debug TEE"),
    (
        ATTEST_MEASUREMENT_NOT_ALLOWED,
        "ATTEST_MEASUREMENT_NOT_ALLOWED",
        "measurement not allowed",
    ),
    (
        ATTEST_REPORT_DATA_MISMATCH,
        "ATTEST_REPORT_DATA_MISMATCH",
        "report data does not bind the claims",
    ),
    (
        ATTEST_QUOTE_INVALID,
        "ATTEST_QUOTE_INVALID",
        "quote verification failed",
    ),
    (
        ATTEST_MISSING_COLLATERAL,
        "ATTEST_MISSING_COLLATERAL",
        "no collateral with a DCAP quote",
    ),
    (
        ATTEST_TCB_TOO_LOW,
        "ATTEST_TCB_TOO_LOW",
        "TCB below the policy minimum",
    ),
    (
        ATTEST_BACKEND_UNVERIFIABLE,
        "ATTEST_BACKEND_UNVERIFIABLE",
        "backend not verifiable by this build (SEV-SNP)",
    ),
    (
        ATTEST_TRAILING_BYTES,
        "ATTEST_TRAILING_BYTES",
        "bytes after the quote or report",
    ),
    (
        ATTEST_TD_ATTRIBUTES,
        "ATTEST_TD_ATTRIBUTES",
        "TDX TD attributes refused (TUD, migratable, SEPT_VE_DISABLE, reserved)",
    ),
    (
        ATTEST_COLLATERAL_TOO_OLD,
        "ATTEST_COLLATERAL_TOO_OLD",
        "collateral tcbEvaluationDataNumber below `min_tcb_eval_num`",
    ),
    (
        ATTEST_COLLATERAL_OUT_OF_DATE,
        "ATTEST_COLLATERAL_OUT_OF_DATE",
        "collateral certificate, CRL, TCB info or QE identity expired or not yet valid",
    ),
    (
        ATTEST_VMPL_NOT_ALLOWED,
        "ATTEST_VMPL_NOT_ALLOWED",
        "SEV-SNP report from a VMPL above `snp_max_vmpl`",
    ),
    (
        FRAME_NO_KEY,
        "FRAME_NO_KEY",
        "no transport key released for the frame's device and key index",
    ),
    (FRAME_TRUNCATED, "FRAME_TRUNCATED", "truncated frame"),
    (
        FRAME_TRAILING_BYTES,
        "FRAME_TRAILING_BYTES",
        "trailing bytes",
    ),
    (FRAME_OVERSIZE, "FRAME_OVERSIZE", "oversize frame"),
    (FRAME_BAD_MAGIC, "FRAME_BAD_MAGIC", "bad magic"),
    (
        FRAME_UNSUPPORTED_VERSION,
        "FRAME_UNSUPPORTED_VERSION",
        "unsupported frame version",
    ),
    (FRAME_UNKNOWN_CODEC, "FRAME_UNKNOWN_CODEC", "unknown codec"),
    (FRAME_BAD_FIELD, "FRAME_BAD_FIELD", "bad header field"),
    (
        FRAME_AUTHENTICATION_FAILED,
        "FRAME_AUTHENTICATION_FAILED",
        "authentication failed (tampered, or not this device's key)",
    ),
    (
        FRAME_DECOMPRESSION_BOMB,
        "FRAME_DECOMPRESSION_BOMB",
        "decompression bomb",
    ),
    (
        FRAME_MALFORMED_PAYLOAD,
        "FRAME_MALFORMED_PAYLOAD",
        "malformed payload",
    ),
    (
        FRAME_KEY_DERIVATION,
        "FRAME_KEY_DERIVATION",
        "transport key derivation failed",
    ),
    (
        FRAME_RR_OUT_OF_RANGE,
        "FRAME_RR_OUT_OF_RANGE",
        "RR interval out of range",
    ),
    (
        FRAME_RR_CALIBRATION,
        "FRAME_RR_CALIBRATION",
        "RR frame calibration is not the RR calibration",
    ),
    (
        FRAME_PLAIN_MALFORMED,
        "FRAME_PLAIN_MALFORMED",
        "malformed plain (unsealed) frame",
    ),
    (
        FRAME_SEQUENCE_PASSED,
        "FRAME_SEQUENCE_PASSED",
        "sequence already passed for the device (duplicate, replay or reorder)",
    ),
    (
        FRAME_KEY_INDEX_WINDOW,
        "FRAME_KEY_INDEX_WINDOW",
        "key index outside the device's key-index window",
    ),
    (
        FRAME_BOUNDARY,
        "FRAME_BOUNDARY",
        "frame did not cross the host/worker boundary",
    ),
    (
        FRAME_UNUSABLE,
        "FRAME_UNUSABLE",
        "opened frame cannot be analysed (channels, rate, calibration)",
    ),
    (
        FRAME_OTHER,
        "FRAME_OTHER",
        "other frame refusal, or no result from the worker",
    ),
    (
        BROKER_UNKNOWN_NONCE,
        "BROKER_UNKNOWN_NONCE",
        "nonce unknown or already used (replay)",
    ),
    (
        BROKER_CHALLENGE_EXPIRED,
        "BROKER_CHALLENGE_EXPIRED",
        "challenge expired",
    ),
    (
        BROKER_UNKNOWN_ASSIGNMENT,
        "BROKER_UNKNOWN_ASSIGNMENT",
        "unknown assignment",
    ),
    (
        BROKER_DEVICE_OUTSIDE_ASSIGNMENT,
        "BROKER_DEVICE_OUTSIDE_ASSIGNMENT",
        "device outside the assignment",
    ),
    (
        BROKER_SUBSCRIBER_OUTSIDE_ASSIGNMENT,
        "BROKER_SUBSCRIBER_OUTSIDE_ASSIGNMENT",
        "subscriber outside the assignment",
    ),
    (
        BROKER_KEY_UNAVAILABLE,
        "BROKER_KEY_UNAVAILABLE",
        "no key registered for an assigned device/subscriber",
    ),
    (
        BROKER_BUSY,
        "BROKER_BUSY",
        "too many outstanding challenges",
    ),
    (
        BROKER_RATE_LIMITED,
        "BROKER_RATE_LIMITED",
        "too many challenges from this source (rate or outstanding share); retry later",
    ),
    (
        BROKER_TOO_MANY_CONNECTIONS,
        "BROKER_TOO_MANY_CONNECTIONS",
        "too many concurrent connections from this source",
    ),
    (
        BROKER_BAD_WINDOW,
        "BROKER_BAD_WINDOW",
        "malformed key window request (width or page size 0, index outside the slice, device listed twice)",
    ),
    (
        BROKER_INTERNAL,
        "BROKER_INTERNAL",
        "internal error (also: assignment too large for one bundle)",
    ),
];

/// The name and meaning of `code`, if it is registered.
pub fn describe(code: u16) -> Option<(&'static str, &'static str)> {
    ALL.iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, name, meaning)| (*name, *meaning))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_code_is_used_twice_and_the_table_is_in_order() {
        for pair in ALL.windows(2) {
            if let [(a, na, _), (b, nb, _)] = pair {
                assert!(a < b, "{na} ({a}) then {nb} ({b})");
            }
        }
        let mut names: Vec<_> = ALL.iter().map(|(_, n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }

    #[test]
    fn docs_table_matches_the_registry() {
        let doc = include_str!("../../../docs/refusal-codes.md");
        let rows: Vec<(u16, String, String)> = doc
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l
                    .trim()
                    .trim_matches('|')
                    .split('|')
                    .map(str::trim)
                    .collect();
                let [code, name, meaning] = cells.as_slice() else {
                    return None;
                };
                Some((
                    code.parse().ok()?,
                    name.trim_matches('`').to_owned(),
                    (*meaning).to_owned(),
                ))
            })
            .collect();
        let want: Vec<(u16, String, String)> = ALL
            .iter()
            .map(|(c, n, m)| (*c, (*n).to_owned(), (*m).to_owned()))
            .collect();
        assert_eq!(
            rows, want,
            "docs/refusal-codes.md differs from refusal::ALL"
        );
        assert_eq!(
            describe(101),
            Some(("ATTEST_NONCE_MISMATCH", "nonce does not match"))
        );
        assert_eq!(describe(1), None);
    }
}
