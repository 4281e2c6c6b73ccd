//! AMD SEV-SNP attestation reports: parsing, the VCEK/VLEK certificate
//! chain to AMD's root keys, the report signature, and the policy checks.
//!
//! The cryptography is virtee's `sev` crate (`crypto_nossl`: RSA-PSS for
//! ARK → ASK → VCEK, ECDSA P-384/SHA-384 for the report). aorta adds:
//!
//! * the AMD root keys are **pinned**: only the ARKs built into `sev`
//!   (Milan, Genoa, Turin) are trust anchors; an ARK in the host's
//!   certificate table is never trusted (anyone can make a self-signed one);
//! * the certificate table (the configfs-tsm `auxblob`, the GUID table of
//!   the SNP extended report) is parsed here with the bounds-checked reader
//!   (`sev`'s own table parser reads through raw pointers and must not see
//!   host-controlled bytes);
//! * the report must be exactly 1184 bytes and must re-encode to the very
//!   bytes received (so no bit `sev`'s parser skips — reserved fields — can
//!   be altered under the signature);
//! * the checks [`check_snp_report`] makes: debug policy bit, VMPL, reported
//!   TCB, measurement, report data.

use sev::certs::snp::{Certificate, Chain, Verifiable, ca};
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Refusal, VerifierPolicy};
use crate::evidence::{Backend, EvidenceClaims, Measurement};
use aorta_base::codec::Reader;
use aorta_base::hex::encode as hex;

/// Length of an SEV-SNP attestation report (all versions so far).
pub const SNP_REPORT_LEN: usize = 1184;

/// Offsets of the signature's r and s (72 bytes each, little-endian).
const SIG_R: usize = 0x2a0;
const SIG_S: usize = 0x2e8;

/// Most entries accepted in a certificate table.
const MAX_CERT_ENTRIES: usize = 16;

/// Certificate-table GUIDs (AMD SEV-SNP firmware ABI, extended guest request),
/// in the byte order of their string form.
const GUID_ASK: [u8; 16] = [
    0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4, 0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7, 0x82,
];
const GUID_VCEK: [u8; 16] = [
    0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd,
];
const GUID_VLEK: [u8; 16] = [
    0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e, 0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1,
];

/// Bit 19 of the guest policy: debugging allowed (the host can read and
/// write the guest's memory). Always refused.
pub const SNP_POLICY_DEBUG: u64 = 1 << 19;

/// An SEV-SNP TCB version (security version numbers of the platform's
/// firmware components). A policy minimum is met when every component is at
/// least the minimum's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SnpTcb {
    /// PSP bootloader SVN.
    pub bootloader: u8,
    /// PSP OS (TEE) SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// Microcode patch level.
    pub microcode: u8,
}

impl SnpTcb {
    /// Whether every component is at least `min`'s.
    pub fn meets(&self, min: &SnpTcb) -> bool {
        self.bootloader >= min.bootloader
            && self.tee >= min.tee
            && self.snp >= min.snp
            && self.microcode >= min.microcode
    }
}

impl std::fmt::Display for SnpTcb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bootloader {}, tee {}, snp {}, microcode {}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

/// What an SEV-SNP report says (after [`verify_snp_report`], or only parsed
/// by [`parse_snp_report`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnpReport {
    /// Report format version.
    pub version: u32,
    /// The guest policy (bit 19: debug allowed).
    pub policy: u64,
    /// The VMPL the report was requested from (0 is the most privileged).
    pub vmpl: u32,
    /// The TCB the report claims (and whose VCEK signed it).
    pub reported_tcb: SnpTcb,
    /// The launch measurement (48 B).
    pub measurement: [u8; 48],
    /// The 64 bytes of report data.
    pub report_data: [u8; 64],
    /// Which key signed: 0 VCEK, 1 VLEK, 7 none.
    pub signing_key: u8,
}

fn invalid(detail: impl Into<String>) -> Refusal {
    Refusal::QuoteInvalid {
        backend: Backend::SevSnp,
        detail: detail.into(),
    }
}

/// Parses a report **without verifying it**: length exactly
/// [`SNP_REPORT_LEN`] (more is [`Refusal::TrailingBytes`]) and canonical
/// (re-encoding gives the same bytes).
pub fn parse_snp_report(raw: &[u8]) -> Result<(SnpReport, AttestationReport), Refusal> {
    if raw.len() > SNP_REPORT_LEN {
        return Err(Refusal::TrailingBytes {
            backend: Backend::SevSnp,
            what: "report",
            extra: raw.len().saturating_sub(SNP_REPORT_LEN),
        });
    }
    if raw.len() < SNP_REPORT_LEN {
        return Err(invalid(format!(
            "report is {} bytes, an SEV-SNP report is {SNP_REPORT_LEN}",
            raw.len()
        )));
    }
    let rep = AttestationReport::from_bytes(raw).map_err(|e| invalid(format!("report: {e}")))?;
    let again = rep
        .to_bytes()
        .map_err(|e| invalid(format!("report: {e}")))?;
    if again.as_slice() != raw {
        return Err(invalid(
            "report is not canonical (reserved bytes are not zero, or a field this build does not read is set)",
        ));
    }
    // r and s are 48-byte P-384 scalars zero-extended to 72 bytes; `sev`
    // reads only the first 48, so the padding must be zero or it could be
    // altered under the signature.
    let padding_clear = [SIG_R + 48..SIG_R + 72, SIG_S + 48..SIG_S + 72]
        .into_iter()
        .all(|r| raw.get(r).is_some_and(|b| b.iter().all(|&x| x == 0)));
    if !padding_clear {
        return Err(invalid("signature r/s padding is not zero"));
    }
    let t = rep.reported_tcb;
    let summary = SnpReport {
        version: rep.version,
        policy: u64::from(rep.policy),
        vmpl: rep.vmpl,
        reported_tcb: SnpTcb {
            bootloader: t.bootloader,
            tee: t.tee,
            snp: t.snp,
            microcode: t.microcode,
        },
        measurement: rep.measurement,
        report_data: rep.report_data,
        signing_key: u8::try_from(rep.key_info.signing_key()).unwrap_or(u8::MAX),
    };
    Ok((summary, rep))
}

/// One entry of the certificate table.
struct CertEntry<'a> {
    guid: [u8; 16],
    data: &'a [u8],
}

/// Parses the GUID certificate table: entries `guid[16] ‖ offset u32le ‖
/// length u32le` up to an all-zero GUID; offsets count from the table start.
fn parse_cert_table(table: &[u8]) -> Result<Vec<CertEntry<'_>>, Refusal> {
    let bad = |d: &str| invalid(format!("certificate table: {d}"));
    let mut r = Reader::new(table);
    let mut out = Vec::new();
    loop {
        let guid: [u8; 16] = r.array("guid").map_err(|_| bad("truncated"))?;
        let offset = r.u32_le("offset").map_err(|_| bad("truncated"))?;
        let length = r.u32_le("length").map_err(|_| bad("truncated"))?;
        if guid == [0; 16] {
            break;
        }
        if out.len() >= MAX_CERT_ENTRIES {
            return Err(bad("too many entries"));
        }
        let start = usize::try_from(offset).map_err(|_| bad("offset out of range"))?;
        let len = usize::try_from(length).map_err(|_| bad("length out of range"))?;
        let data = start
            .checked_add(len)
            .and_then(|end| table.get(start..end))
            .ok_or_else(|| bad("an entry points outside the table"))?;
        out.push(CertEntry { guid, data });
    }
    Ok(out)
}

/// The pinned AMD root (ARK) and signing (ASK) certificates: Milan, Genoa, Turin.
fn builtin_chains() -> Vec<ca::Chain> {
    use sev::certs::snp::builtin::{genoa, milan, turin};
    [
        (milan::ark(), milan::ask()),
        (genoa::ark(), genoa::ask()),
        (turin::ark(), turin::ask()),
    ]
    .into_iter()
    .filter_map(|(ark, ask)| {
        Some(ca::Chain {
            ark: ark.ok()?,
            ask: ask.ok()?,
        })
    })
    .collect()
}

/// Verifies an SEV-SNP report with the certificate table `certs`: the
/// VCEK (or VLEK) chains to a pinned AMD ARK (through the built-in ASK, or an
/// ASK/ASVK from the table that the pinned ARK signed), and it signed the
/// report. Policy checks are [`check_snp_report`]'s.
pub fn verify_snp_report(raw: &[u8], certs: &[u8]) -> Result<SnpReport, Refusal> {
    let (summary, rep) = parse_snp_report(raw)?;
    if certs.is_empty() {
        return Err(Refusal::MissingCollateral {
            backend: Backend::SevSnp,
        });
    }
    let entries = parse_cert_table(certs)?;
    let wanted = match summary.signing_key {
        0 => GUID_VCEK,
        1 => GUID_VLEK,
        k => {
            return Err(invalid(format!(
                "report signing key {k} (0 VCEK, 1 VLEK; 7 means unsigned)"
            )));
        }
    };
    let mut veks = entries.iter().filter(|e| e.guid == wanted);
    let vek_der = veks
        .next()
        .ok_or_else(|| {
            invalid(if wanted == GUID_VCEK {
                "the certificate table has no VCEK certificate"
            } else {
                "the certificate table has no VLEK certificate"
            })
        })?
        .data;
    if veks.next().is_some() {
        return Err(invalid(
            "the certificate table has two endorsement-key certificates",
        ));
    }
    let vek = Certificate::from_der(vek_der).map_err(|e| invalid(format!("VCEK/VLEK: {e}")))?;
    // Intermediates: the built-in ASKs, and any ASK/ASVK the host supplied
    // (only accepted when a pinned ARK signed it).
    let mut anchors = builtin_chains();
    let supplied: Vec<Certificate> = entries
        .iter()
        .filter(|e| e.guid == GUID_ASK)
        .filter_map(|e| Certificate::from_der(e.data).ok())
        .collect();
    let arks: Vec<Certificate> = anchors.iter().map(|c| c.ark.clone()).collect();
    for ask in supplied {
        for ark in &arks {
            anchors.push(ca::Chain {
                ark: ark.clone(),
                ask: ask.clone(),
            });
        }
    }
    let chain = anchors
        .into_iter()
        .map(|ca| Chain {
            ca,
            vek: vek.clone(),
        })
        .find(|c| c.verify().is_ok())
        .ok_or_else(|| {
            invalid("the VCEK/VLEK certificate does not chain to a pinned AMD root key (ARK)")
        })?;
    (&chain, &rep).verify().map_err(|_| Refusal::BadSignature {
        backend: Backend::SevSnp,
    })?;
    Ok(summary)
}

/// The SEV-SNP measurement aorta's policy matches:
/// `SHA-256("aorta-snp-measurement v1\0" ‖ MEASUREMENT ‖ app_measurement)`.
pub fn snp_measurement(launch: &[u8; 48], app: &Measurement) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"aorta-snp-measurement v1\0");
    h.update(launch);
    h.update(app.0);
    h.finalize().to_vec()
}

/// The policy checks on a verified report, in order: debug policy bit →
/// VMPL at most `snp_max_vmpl` → reported TCB at least `snp_min_tcb` →
/// measurement allowed → report data binds `claims`. Returns the policy
/// measurement.
pub fn check_snp_report(
    rep: &SnpReport,
    claims: &EvidenceClaims,
    policy: &VerifierPolicy,
) -> Result<Vec<u8>, Refusal> {
    if rep.policy & SNP_POLICY_DEBUG != 0 {
        return Err(Refusal::DebugTee {
            backend: Backend::SevSnp,
        });
    }
    if rep.vmpl > policy.snp_max_vmpl {
        return Err(Refusal::VmplNotAllowed {
            vmpl: rep.vmpl,
            max: policy.snp_max_vmpl,
        });
    }
    if !rep.reported_tcb.meets(&policy.snp_min_tcb) {
        return Err(Refusal::SnpTcbTooLow {
            reported: rep.reported_tcb,
            min: policy.snp_min_tcb,
        });
    }
    let m = snp_measurement(&rep.measurement, &claims.app_measurement);
    if !policy
        .allowed_measurements
        .iter()
        .any(|a| bool::from(a.as_slice().ct_eq(m.as_slice())))
    {
        return Err(Refusal::MeasurementNotAllowed {
            backend: Backend::SevSnp,
            measurement: hex(&m),
        });
    }
    if !bool::from(rep.report_data.ct_eq(&claims.report_data())) {
        return Err(Refusal::ReportDataMismatch {
            backend: Backend::SevSnp,
        });
    }
    Ok(m)
}
