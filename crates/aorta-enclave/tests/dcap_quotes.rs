//! Real Intel DCAP quotes (SGX and TDX, from dcap-qvl's samples; see
//! `fixtures/dcap/README.md`) verified offline at a fixed time, and altered
//! copies rejected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)]

use aorta_enclave::Backend;
use aorta_enclave::evidence::{Evidence, EvidenceBody, EvidenceClaims, Measurement, Nonce};
use aorta_enclave::verify::{Refusal, TcbLevel, VerifierPolicy, verify, verify_dcap_quote};

const SGX_QUOTE: &[u8] = include_bytes!("fixtures/dcap/sgx_quote");
const SGX_COLL: &[u8] = include_bytes!("fixtures/dcap/sgx_quote_collateral.json");
const TDX_QUOTE: &[u8] = include_bytes!("fixtures/dcap/tdx_quote");
const TDX_COLL: &[u8] = include_bytes!("fixtures/dcap/tdx_quote_collateral.json");
/// 2025-06-20T00:00:00Z, inside both collaterals' validity windows.
const NOW: u64 = 1_750_377_600;

#[test]
fn real_sgx_quote_verifies_offline() {
    let r = verify_dcap_quote(Backend::SgxGramine, SGX_QUOTE, SGX_COLL, NOW).unwrap();
    assert!(r.is_sgx);
    assert!(!r.debug);
    assert_eq!(r.tcb_status, "ConfigurationAndSWHardeningNeeded");
    assert_eq!(r.advisory_ids, ["INTEL-SA-00289", "INTEL-SA-00615"]);
    assert_eq!(r.raw_measurement.len(), 32);
    assert_eq!(&r.raw_measurement[..2], &[51, 216]);
}

#[test]
fn real_tdx_quote_verifies_offline() {
    let r = verify_dcap_quote(Backend::Tdx, TDX_QUOTE, TDX_COLL, NOW).unwrap();
    assert!(!r.is_sgx);
    assert!(!r.debug);
    assert_eq!(r.tcb_status, "UpToDate");
    assert_eq!(r.raw_measurement.len(), 4 * 48);
}

fn refused(backend: Backend, quote: &[u8], coll: &[u8], now: u64) -> Refusal {
    verify_dcap_quote(backend, quote, coll, now).unwrap_err()
}

#[test]
fn altered_quotes_are_rejected() {
    // Every region of the quote: header, report body (measurement, attributes,
    // report data), signature data, certification data.
    // SGX quote v3: header 0..48, report body 48..432, ECDSA signature
    // 436..500, attestation key 500..564, QE report 564..948, its signature
    // 948..1012. TDX quote v4: header 0..48, TD report 48..632, signature
    // 636..700, attestation key 700..764, QE report from 770.
    // (The PEM certificate chain at the end includes Intel's root, which the
    // verifier replaces by its built-in copy, so not every byte there counts.)
    for (name, quote, coll, backend, offsets) in [
        (
            "sgx",
            SGX_QUOTE,
            SGX_COLL,
            Backend::SgxGramine,
            vec![8, 60, 112, 200, 300, 400, 450, 520, 600, 800, 980],
        ),
        (
            "tdx",
            TDX_QUOTE,
            TDX_COLL,
            Backend::Tdx,
            vec![8, 60, 112, 200, 300, 400, 500, 600, 650, 720, 800, 1000],
        ),
    ] {
        for off in offsets {
            let mut q = quote.to_vec();
            q[off] ^= 0x01;
            let r = verify_dcap_quote(backend, &q, coll, NOW);
            assert!(
                matches!(r, Err(Refusal::QuoteInvalid { .. })),
                "{name}: flipping byte {off} was not rejected: {r:?}"
            );
        }
        for n in [0, 10, 48, 400, 700, 1000, quote.len() / 2] {
            assert!(
                matches!(
                    refused(backend, &quote[..n], coll, NOW),
                    Refusal::QuoteInvalid { .. }
                ),
                "{name}: truncation to {n}"
            );
        }
    }
}

#[test]
fn outside_the_collateral_window_is_rejected_naming_the_item_in_iso_8601() {
    // A year later the TCB info and CRLs have expired; before issue they are
    // not yet valid. The operator reads which item, its dates in ISO-8601
    // UTC and what to do — not a debug struct in unix seconds.
    for (now, state) in [
        (NOW + 365 * 86_400, "expired"),
        (NOW - 365 * 86_400, "not yet valid"),
    ] {
        for (backend, quote, coll) in [
            (Backend::Tdx, TDX_QUOTE, TDX_COLL),
            (Backend::SgxGramine, SGX_QUOTE, SGX_COLL),
        ] {
            let e = refused(backend, quote, coll, now);
            assert_eq!(e.code(), 118, "{e}");
            let msg = e.to_string();
            assert!(msg.contains(state), "{msg}");
            assert!(msg.contains("CRL") || msg.contains("certificate"), "{msg}");
            assert!(
                msg.contains("fetch fresh collateral from the PCCS"),
                "{msg}"
            );
            assert!(msg.contains("2025-"), "{msg}");
            assert!(msg.contains("T") && msg.contains("Z"), "{msg}");
            for debug_output in ["UnixTime", "CrlExpired", "NotValidYet", "{ "] {
                assert!(!msg.contains(debug_output), "{msg}");
            }
        }
    }
    let e = refused(Backend::Tdx, TDX_QUOTE, TDX_COLL, NOW + 365 * 86_400);
    assert_eq!(
        e.to_string(),
        "Intel SGX Root CA CRL (issued by C=US,ST=CA,L=Santa Clara,O=Intel Corporation,CN=Intel SGX Root CA) \
         is expired at 2026-06-20T00:00:00Z: valid from 2025-03-20T11:21:57Z to 2026-04-03T11:21:57Z; \
         fetch fresh collateral from the PCCS"
    );
}

#[test]
fn bytes_after_the_quote_are_refused() {
    for (backend, quote, coll) in [
        (Backend::Tdx, TDX_QUOTE, TDX_COLL),
        (Backend::SgxGramine, SGX_QUOTE, SGX_COLL),
    ] {
        // Zero padding (as quote generators return it) is not data.
        let mut q = quote.to_vec();
        q.extend([0u8; 64]);
        assert!(verify_dcap_quote(backend, &q, coll, NOW).is_ok());
        for tail in [&[1u8][..], &[0, 0, 0xaa], &[0x5a; 64]] {
            let mut q = quote.to_vec();
            q.extend_from_slice(tail);
            let e = refused(backend, &q, coll, NOW);
            assert!(
                matches!(
                    e,
                    Refusal::TrailingBytes {
                        what: "quote",
                        extra,
                        ..
                    } if extra >= tail.len()
                ),
                "{e:?}"
            );
            assert_eq!(e.code(), 115);
        }
    }
}

#[test]
fn td_attributes_are_checked_by_aorta() {
    use aorta_enclave::verify::{TD_ATTR_SEPT_VE_DISABLE, check_td_attributes};
    // The real TDX quote's attributes pass.
    let r = verify_dcap_quote(Backend::Tdx, TDX_QUOTE, TDX_COLL, NOW).unwrap();
    let real = r.td_attributes.unwrap();
    assert!(check_td_attributes(real).is_ok(), "{real:#x}");
    // dcap-qvl runs with allow_debug(true): its TUD checks are off, so ours
    // must refuse debug (bit 0) and the profiling bits 4-6.
    assert_eq!(
        check_td_attributes(real | 1),
        Err(Refusal::DebugTee {
            backend: Backend::Tdx
        })
    );
    for bit in [4, 5, 6, 7, 1] {
        let e = check_td_attributes(real | (1 << bit)).unwrap_err();
        assert!(
            matches!(e, Refusal::TdAttributes { .. }),
            "bit {bit}: {e:?}"
        );
        assert_eq!(e.code(), 116);
    }
    // Migratable, SEPT_VE_DISABLE clear, reserved bits.
    for attrs in [
        real | (1 << 29),
        real & !TD_ATTR_SEPT_VE_DISABLE,
        real | (1 << 40),
    ] {
        assert!(matches!(
            check_td_attributes(attrs),
            Err(Refusal::TdAttributes { .. })
        ));
    }
}

#[test]
fn collateral_below_min_tcb_eval_num_is_refused() {
    let r = verify_dcap_quote(Backend::Tdx, TDX_QUOTE, TDX_COLL, NOW).unwrap();
    assert_eq!(r.tcb_eval_num, 17);
    let (ev, nonce) = evidence(Backend::Tdx, TDX_QUOTE, TDX_COLL);
    let p = VerifierPolicy {
        min_tcb_eval_num: Some(18),
        ..hw_policy(TcbLevel::UpToDate)
    };
    let e = verify(&ev, &nonce, NOW, &p).unwrap_err();
    assert_eq!(e, Refusal::CollateralTooOld { found: 17, min: 18 });
    assert_eq!(e.code(), 117);
    assert!(e.to_string().contains("PCCS"));
    // At the minimum the check passes (and the binding is what fails).
    let p = VerifierPolicy {
        min_tcb_eval_num: Some(17),
        ..hw_policy(TcbLevel::UpToDate)
    };
    assert!(matches!(
        verify(&ev, &nonce, NOW, &p),
        Err(Refusal::ReportDataMismatch { .. })
    ));
}

#[test]
fn sgx_policy_measurement_pins_the_worker_config() {
    use aorta_enclave::verify::sgx_measurement;
    let r = verify_dcap_quote(Backend::SgxGramine, SGX_QUOTE, SGX_COLL, NOW).unwrap();
    // MRENCLAVE alone no longer matches: a host-chosen config would run under it.
    let a = sgx_measurement(&r.raw_measurement, &Measurement([1; 32]));
    let b = sgx_measurement(&r.raw_measurement, &Measurement([2; 32]));
    assert_ne!(a, b);
    assert_ne!(a, r.raw_measurement);
    assert_eq!(a.len(), 32);
}

#[test]
fn altered_or_missing_collateral_is_rejected() {
    let mut c: serde_json::Value = serde_json::from_slice(TDX_COLL).unwrap();
    let tcb = c["tcb_info"]
        .as_str()
        .unwrap()
        .replace("UpToDate", "UpToDatf");
    c["tcb_info"] = serde_json::Value::String(tcb);
    let bad = serde_json::to_vec(&c).unwrap();
    assert!(matches!(
        refused(Backend::Tdx, TDX_QUOTE, &bad, NOW),
        Refusal::QuoteInvalid { .. }
    ));
    assert!(matches!(
        refused(Backend::Tdx, TDX_QUOTE, b"", NOW),
        Refusal::MissingCollateral { .. }
    ));
    assert!(matches!(
        refused(Backend::Tdx, TDX_QUOTE, b"{not json", NOW),
        Refusal::QuoteInvalid { .. }
    ));
    // The SGX quote with the TDX collateral: wrong TCB info / QE identity.
    assert!(matches!(
        refused(Backend::SgxGramine, SGX_QUOTE, TDX_COLL, NOW),
        Refusal::QuoteInvalid { .. }
    ));
}

fn evidence(backend: Backend, quote: &[u8], coll: &[u8]) -> (Evidence, Nonce) {
    let nonce = Nonce([3; 32]);
    let claims = EvidenceClaims {
        backend,
        nonce,
        worker_public_key: [9; 32],
        app_measurement: Measurement([1; 32]),
        issued_at: NOW,
    };
    let body = match backend {
        Backend::Tdx => EvidenceBody::Tdx {
            quote: quote.to_vec(),
            collateral: coll.to_vec(),
        },
        _ => EvidenceBody::SgxGramine {
            quote: quote.to_vec(),
            collateral: coll.to_vec(),
        },
    };
    (Evidence { claims, body }, nonce)
}

fn hw_policy(min_tcb: TcbLevel) -> VerifierPolicy {
    VerifierPolicy {
        min_tcb,
        ..VerifierPolicy::default()
    }
}

/// The full evidence path on real quotes: Intel's signatures verify, then
/// aorta's own checks run. The sample quotes carry someone else's report
/// data, so the binding to our nonce and worker key must fail — which shows
/// the binding is enforced on real hardware quotes.
#[test]
fn real_quotes_through_the_evidence_verifier() {
    let (ev, nonce) = evidence(Backend::Tdx, TDX_QUOTE, TDX_COLL);
    let ev = Evidence::decode(&ev.encode()).unwrap();
    assert!(matches!(
        verify(&ev, &nonce, NOW, &hw_policy(TcbLevel::UpToDate)),
        Err(Refusal::ReportDataMismatch {
            backend: Backend::Tdx
        })
    ));
    // SGX sample: TCB ConfigurationAndSWHardeningNeeded is below UpToDate.
    let (ev, nonce) = evidence(Backend::SgxGramine, SGX_QUOTE, SGX_COLL);
    assert!(matches!(
        verify(&ev, &nonce, NOW, &hw_policy(TcbLevel::UpToDate)),
        Err(Refusal::TcbTooLow { .. })
    ));
    assert!(matches!(
        verify(
            &ev,
            &nonce,
            NOW,
            &hw_policy(TcbLevel::ConfigurationAndSwHardeningNeeded)
        ),
        Err(Refusal::ReportDataMismatch { .. })
    ));
    // A TDX quote presented as SGX evidence.
    let (ev, nonce) = evidence(Backend::SgxGramine, TDX_QUOTE, TDX_COLL);
    assert!(matches!(
        verify(&ev, &nonce, NOW, &hw_policy(TcbLevel::OutOfDate)),
        Err(Refusal::QuoteInvalid { .. })
    ));
    // Backend not in the policy.
    let (ev, nonce) = evidence(Backend::Tdx, TDX_QUOTE, TDX_COLL);
    let p = VerifierPolicy {
        allowed_backends: vec![Backend::SgxGramine],
        ..VerifierPolicy::default()
    };
    assert!(matches!(
        verify(&ev, &nonce, NOW, &p),
        Err(Refusal::BackendNotAllowed { .. })
    ));
}
