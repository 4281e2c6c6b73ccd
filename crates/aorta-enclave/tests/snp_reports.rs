//! A real AMD SEV-SNP attestation report (Milan) with its real VCEK, from
//! virtee's `sev` crate (see `data/snp/README.md`), verified against the
//! pinned AMD root keys; altered reports, wrong chains and policy
//! violations refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)]

use aorta_enclave::Backend;
use aorta_enclave::evidence::{Evidence, EvidenceBody, EvidenceClaims, Measurement, Nonce};
use aorta_enclave::verify::snp::{
    SNP_REPORT_LEN, check_snp_report, parse_snp_report, snp_measurement, verify_snp_report,
};
use aorta_enclave::verify::{Refusal, SnpTcb, VerifierPolicy, verify};

const REPORT_HEX: &str = include_str!("data/snp/report_milan.hex");
const VCEK_MILAN: &[u8] = include_bytes!("data/snp/vcek_milan.der");
const VCEK_TURIN: &[u8] = include_bytes!("data/snp/vcek_turin.der");
const NOW: u64 = 1_800_000_000;

const GUID_VCEK: [u8; 16] = [
    0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd,
];
const GUID_ARK: [u8; 16] = [
    0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0, 0xae,
];

fn report() -> Vec<u8> {
    aorta_base::hex::decode(REPORT_HEX.trim(), aorta_base::hex::Case::Any).unwrap()
}

/// The configfs-tsm `auxblob` / extended-report certificate table.
fn table(entries: &[([u8; 16], &[u8])]) -> Vec<u8> {
    let head = 24 * (entries.len() + 1);
    let mut out = Vec::new();
    let mut data = Vec::new();
    for (guid, d) in entries {
        out.extend_from_slice(guid);
        out.extend_from_slice(&u32::try_from(head + data.len()).unwrap().to_le_bytes());
        out.extend_from_slice(&u32::try_from(d.len()).unwrap().to_le_bytes());
        data.extend_from_slice(d);
    }
    out.extend_from_slice(&[0; 24]);
    out.extend_from_slice(&data);
    out
}

fn certs() -> Vec<u8> {
    table(&[(GUID_VCEK, VCEK_MILAN)])
}

fn claims() -> EvidenceClaims {
    EvidenceClaims {
        backend: Backend::SevSnp,
        nonce: Nonce([3; 32]),
        worker_public_key: [9; 32],
        app_measurement: Measurement([1; 32]),
        issued_at: NOW,
    }
}

/// A policy the real report meets in every respect but the report data.
fn policy() -> VerifierPolicy {
    let (rep, _) = parse_snp_report(&report()).unwrap();
    VerifierPolicy {
        allowed_backends: vec![Backend::SevSnp],
        allowed_measurements: vec![snp_measurement(&rep.measurement, &claims().app_measurement)],
        snp_min_tcb: rep.reported_tcb,
        ..VerifierPolicy::default()
    }
}

fn full(report: Vec<u8>, certs: Vec<u8>, policy: &VerifierPolicy) -> Refusal {
    let ev = Evidence {
        claims: claims(),
        body: EvidenceBody::SevSnp { report, certs },
    };
    let ev = Evidence::decode(&ev.encode()).unwrap();
    verify(&ev, &Nonce([3; 32]), NOW, policy).unwrap_err()
}

#[test]
fn real_report_verifies_with_its_vcek_and_pinned_amd_roots() {
    let rep = verify_snp_report(&report(), &certs()).unwrap();
    assert_eq!(rep.version, 2);
    assert_eq!(rep.vmpl, 0);
    assert_eq!(rep.policy & (1 << 19), 0, "not a debug guest");
    assert_eq!(rep.signing_key, 0, "VCEK");
    // Through the whole verifier every check passes up to the binding: the
    // sample carries someone else's report data.
    let r = full(report(), certs(), &policy());
    assert_eq!(
        r,
        Refusal::ReportDataMismatch {
            backend: Backend::SevSnp
        }
    );
    assert_eq!(r.code(), 110);
    // The same report checked against claims whose report data it carries
    // would pass: the checks before the binding accept it.
    let rep = verify_snp_report(&report(), &certs()).unwrap();
    assert!(matches!(
        check_snp_report(&rep, &claims(), &policy()),
        Err(Refusal::ReportDataMismatch { .. })
    ));
}

#[test]
fn one_flipped_bit_in_any_signed_field_is_refused() {
    // version, guest_svn, policy, family_id, image_id, vmpl, sig_algo,
    // current_tcb, plat_info, key_info, report_data, measurement, host_data,
    // id/author key digests, report_id, reported_tcb, chip_id, committed
    // TCB, launch TCB; then the signature itself (0x2a0..).
    for off in [
        0x00, 0x04, 0x08, 0x0a, 0x10, 0x20, 0x30, 0x34, 0x38, 0x40, 0x48, 0x50, 0x70, 0x90, 0xc0,
        0xe0, 0x110, 0x140, 0x160, 0x180, 0x1a0, 0x1e0, 0x1f0, 0x1f8, 0x2a0, 0x2d0, 0x2e7, 0x2e8,
        0x300, 0x32f,
    ] {
        for bit in [0x01u8, 0x80] {
            let mut r = report();
            r[off] ^= bit;
            let e = verify_snp_report(&r, &certs());
            assert!(
                matches!(
                    e,
                    Err(Refusal::BadSignature { .. } | Refusal::QuoteInvalid { .. })
                ),
                "bit {bit:#x} of byte {off:#x}: {e:?}"
            );
        }
    }
    // A reserved byte the parser skips cannot be altered under the signature.
    let mut r = report();
    r[0x4c] ^= 1;
    assert!(matches!(
        verify_snp_report(&r, &certs()),
        Err(Refusal::QuoteInvalid { .. })
    ));
}

#[test]
fn wrong_or_missing_chain_is_refused() {
    // A genuine AMD VCEK of another chip (Turin): its chain verifies, its key
    // did not sign this report.
    let e = verify_snp_report(&report(), &table(&[(GUID_VCEK, VCEK_TURIN)])).unwrap_err();
    assert_eq!(
        e,
        Refusal::BadSignature {
            backend: Backend::SevSnp
        }
    );
    // The right VCEK with one byte of its signed body altered: no pinned ARK/ASK signs it.
    let mut v = VCEK_MILAN.to_vec();
    v[40] ^= 0xff;
    assert!(matches!(
        verify_snp_report(&report(), &table(&[(GUID_VCEK, &v)])),
        Err(Refusal::QuoteInvalid { .. })
    ));
    // An "ARK" supplied by the host is never a trust anchor (here the VCEK
    // itself listed as ARK, with no VCEK).
    assert!(matches!(
        verify_snp_report(&report(), &table(&[(GUID_ARK, VCEK_MILAN)])),
        Err(Refusal::QuoteInvalid { .. })
    ));
    // No certificate table.
    assert_eq!(
        full(report(), vec![], &policy()),
        Refusal::MissingCollateral {
            backend: Backend::SevSnp
        }
    );
    // A table whose entry points outside it, and truncated tables: refused, no panic.
    let mut t = certs();
    t[16] = 0xff;
    assert!(matches!(
        verify_snp_report(&report(), &t),
        Err(Refusal::QuoteInvalid { .. })
    ));
    let t = certs();
    for n in [1, 23, 24, 40, 47, t.len() - 1] {
        assert!(verify_snp_report(&report(), &t[..n]).is_err(), "prefix {n}");
    }
}

#[test]
fn debug_guest_policy_is_refused() {
    let mut r = report();
    r[0x08 + 2] |= 0x08; // policy bit 19: DEBUG
    // As sent: the signature no longer covers it.
    assert_eq!(
        full(r.clone(), certs(), &policy()),
        Refusal::BadSignature {
            backend: Backend::SevSnp
        }
    );
    // And the policy check refuses a debug guest on its own.
    let (rep, _) = parse_snp_report(&r).unwrap();
    let e = check_snp_report(&rep, &claims(), &policy()).unwrap_err();
    assert_eq!(
        e,
        Refusal::DebugTee {
            backend: Backend::SevSnp
        }
    );
    assert_eq!(e.code(), 108);
}

#[test]
fn vmpl_above_the_policy_maximum_is_refused() {
    let mut r = report();
    r[0x30] = 1; // VMPL 1
    assert_eq!(
        full(r.clone(), certs(), &policy()),
        Refusal::BadSignature {
            backend: Backend::SevSnp
        }
    );
    let (rep, _) = parse_snp_report(&r).unwrap();
    let e = check_snp_report(&rep, &claims(), &policy()).unwrap_err();
    assert_eq!(e, Refusal::VmplNotAllowed { vmpl: 1, max: 0 });
    assert_eq!(e.code(), 119);
    let p = VerifierPolicy {
        snp_max_vmpl: 1,
        ..policy()
    };
    assert!(matches!(
        check_snp_report(&rep, &claims(), &p),
        Err(Refusal::ReportDataMismatch { .. })
    ));
}

#[test]
fn reported_tcb_below_the_policy_minimum_is_refused() {
    let (rep, _) = parse_snp_report(&report()).unwrap();
    for bump in [
        |t: &mut SnpTcb| t.bootloader += 1,
        |t: &mut SnpTcb| t.tee += 1,
        |t: &mut SnpTcb| t.snp += 1,
        |t: &mut SnpTcb| t.microcode += 1,
    ] {
        let mut p = policy();
        bump(&mut p.snp_min_tcb);
        let e = full(report(), certs(), &p);
        assert_eq!(
            e,
            Refusal::SnpTcbTooLow {
                reported: rep.reported_tcb,
                min: p.snp_min_tcb
            }
        );
        assert_eq!(e.code(), 113);
    }
}

#[test]
fn wrong_measurement_is_refused() {
    let p = VerifierPolicy {
        allowed_measurements: vec![vec![0; 32]],
        ..policy()
    };
    assert!(matches!(
        full(report(), certs(), &p),
        Refusal::MeasurementNotAllowed {
            backend: Backend::SevSnp,
            ..
        }
    ));
    // Another worker (app measurement) on the same launch measurement.
    let (rep, _) = parse_snp_report(&report()).unwrap();
    let mut c = claims();
    c.app_measurement = Measurement([2; 32]);
    assert!(matches!(
        check_snp_report(&rep, &c, &policy()),
        Err(Refusal::MeasurementNotAllowed { .. })
    ));
}

#[test]
fn trailing_or_missing_bytes_are_refused() {
    let mut r = report();
    r.push(0);
    let e = full(r, certs(), &policy());
    assert_eq!(
        e,
        Refusal::TrailingBytes {
            backend: Backend::SevSnp,
            what: "report",
            extra: 1
        }
    );
    assert_eq!(e.code(), 115);
    let r = report();
    assert!(matches!(
        verify_snp_report(&r[..SNP_REPORT_LEN - 1], &certs()),
        Err(Refusal::QuoteInvalid { .. })
    ));
}
