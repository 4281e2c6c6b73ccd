//! AMD SEV-SNP attestation reports: parsing, the VCEK/VLEK certificate
//! chain to AMD's root keys, the report signature, and the policy checks.
//!
//! The cryptography is `ring`'s: RSASSA-PSS with SHA-384 for the certificate
//! chain ARK → ASK → VCEK/VLEK, ECDSA P-384 with SHA-384 for the report over
//! its first 0x2A0 bytes. Certificates are parsed with `x509-cert`; the
//! signed bytes are the certificate's own TBS bytes as received. aorta adds:
//!
//! * the AMD root keys are **pinned**: only the ARKs in `amd/` (Milan,
//!   Genoa, Turin; see `amd/README.md`) are trust anchors; an ARK in the
//!   host's certificate table is never trusted (anyone can make a
//!   self-signed one);
//! * the certificate table (the configfs-tsm `auxblob`, the GUID table of
//!   the SNP extended report) is parsed with the bounds-checked reader;
//! * the report must be exactly 1184 bytes with every reserved byte zero
//!   (so nothing the parser does not read can be altered under the
//!   signature, and nothing outside the signed part carries data);
//! * the checks [`check_snp_report`] makes: debug policy bit, VMPL, reported
//!   TCB, measurement, report data.

use std::ops::Range;

use ring::signature::{ECDSA_P384_SHA384_FIXED, RSA_PSS_2048_8192_SHA384, UnparsedPublicKey};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use x509_cert::Certificate;
use x509_cert::der::{Decode, Header, Reader as _, SliceReader};
use x509_cert::spki::ObjectIdentifier;

use super::{Refusal, VerifierPolicy};
use crate::evidence::{Backend, EvidenceClaims, Measurement};
use aorta_base::codec::Reader;
use aorta_base::hex::encode as hex;

/// Length of an SEV-SNP attestation report (all versions so far).
pub const SNP_REPORT_LEN: usize = 1184;

/// The report's signed part: bytes 0 to 0x29F.
const SIGNED: Range<usize> = 0..0x2a0;

/// Offsets of the signature's r and s (72 bytes each, little-endian; a
/// P-384 scalar is 48).
const SIG_R: usize = 0x2a0;
const SIG_S: usize = 0x2e8;
const SCALAR_LEN: usize = 48;

/// Offsets of the report fields aorta reads.
const OFF_VERSION: usize = 0x00;
const OFF_POLICY: usize = 0x08;
const OFF_VMPL: usize = 0x30;
const OFF_CURRENT_TCB: usize = 0x38;
const OFF_KEY_INFO: usize = 0x48;
const OFF_REPORT_DATA: usize = 0x50;
const OFF_MEASUREMENT: usize = 0x90;
const OFF_REPORTED_TCB: usize = 0x180;
const OFF_CPUID_FAMILY: usize = 0x188;
const OFF_CPUID_MODEL: usize = 0x189;
const OFF_CHIP_ID: usize = 0x1a0;
const OFF_COMMITTED_TCB: usize = 0x1e0;
const OFF_LAUNCH_TCB: usize = 0x1f0;

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

/// RSASSA-PSS (RFC 4055): the signature algorithm of AMD's ARK, ASK,
/// VCEK and VLEK certificates.
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");

/// The pinned AMD root (ARK) and signing (ASK) certificates, PEM: Milan,
/// Genoa, Turin (origin: `amd/README.md`).
const PINNED: [(&[u8], &[u8]); 3] = [
    (
        include_bytes!("amd/milan_ark.pem"),
        include_bytes!("amd/milan_ask.pem"),
    ),
    (
        include_bytes!("amd/genoa_ark.pem"),
        include_bytes!("amd/genoa_ask.pem"),
    ),
    (
        include_bytes!("amd/turin_ark.pem"),
        include_bytes!("amd/turin_ask.pem"),
    ),
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

/// A report's ECDSA P-384 signature as `r ‖ s`, 48 bytes each, big-endian
/// (the report stores each little-endian in a 72-byte field).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnpSignature(pub [u8; 2 * SCALAR_LEN]);

fn invalid(detail: impl Into<String>) -> Refusal {
    Refusal::QuoteInvalid {
        backend: Backend::SevSnp,
        detail: detail.into(),
    }
}

/// `N` bytes of `raw` from `at`.
fn field<const N: usize>(raw: &[u8], at: usize) -> Result<[u8; N], Refusal> {
    at.checked_add(N)
        .and_then(|end| raw.get(at..end))
        .and_then(|b| <[u8; N]>::try_from(b).ok())
        .ok_or_else(|| invalid("report: truncated"))
}

fn byte(raw: &[u8], at: usize) -> Result<u8, Refusal> {
    raw.get(at)
        .copied()
        .ok_or_else(|| invalid("report: truncated"))
}

/// How the 8 bytes of a TCB version are laid out: Milan and Genoa
/// (`bootloader, tee, 0, 0, 0, 0, snp, microcode`) or Turin and later
/// (`fmc, bootloader, tee, snp, 0, 0, 0, microcode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TcbLayout {
    Legacy,
    Turin,
}

impl TcbLayout {
    /// The reserved bytes of a TCB version at `at`.
    fn reserved(self, at: usize) -> Range<usize> {
        match self {
            TcbLayout::Legacy => at.saturating_add(2)..at.saturating_add(6),
            TcbLayout::Turin => at.saturating_add(4)..at.saturating_add(7),
        }
    }

    fn read(self, b: [u8; 8]) -> SnpTcb {
        match self {
            TcbLayout::Legacy => SnpTcb {
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
            TcbLayout::Turin => SnpTcb {
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
        }
    }
}

/// The TCB layout of a report: version 2 reports tell by the chip ID
/// (Turin's has only its first 8 bytes set), later ones by the CPUID family
/// and model they carry. The same rule as virtee's `sev` 8.0.0.
fn tcb_layout(raw: &[u8], version: u32) -> Result<TcbLayout, Refusal> {
    if version == 2 {
        let chip_id: [u8; 64] = field(raw, OFF_CHIP_ID)?;
        if chip_id == [0; 64] {
            return Err(invalid(
                "a version 2 report with a masked chip ID does not tell its TCB layout",
            ));
        }
        return Ok(if chip_id.iter().skip(8).all(|&b| b == 0) {
            TcbLayout::Turin
        } else {
            TcbLayout::Legacy
        });
    }
    let family = byte(raw, OFF_CPUID_FAMILY)?;
    let model = byte(raw, OFF_CPUID_MODEL)?;
    match (family, model) {
        // Milan, Genoa.
        (0x19, 0x00..=0x1f | 0xa0..=0xaf) => Ok(TcbLayout::Legacy),
        // Turin, Venice.
        (0x1a, 0x00..=0x11 | 0x50..=0x57 | 0x90..=0xaf | 0xc0..=0xc7) => Ok(TcbLayout::Turin),
        _ => Err(invalid(format!(
            "report from an unknown processor (CPUID family {family:#x}, model {model:#x})"
        ))),
    }
}

/// The reserved bytes of a report of `version` (all must be zero).
fn reserved(version: u32, layout: TcbLayout) -> Vec<Range<usize>> {
    let mut r = vec![
        0x4c..0x50,
        if version == 2 {
            0x188..0x1a0
        } else {
            0x18b..0x1a0
        },
        0x1eb..0x1ec,
        0x1ef..0x1f0,
        // Version 5 added the launch and current mitigation vectors.
        if version >= 5 {
            0x208..SIGNED.end
        } else {
            0x1f8..SIGNED.end
        },
        SIG_S + 72..SNP_REPORT_LEN,
    ];
    r.extend(
        [
            OFF_CURRENT_TCB,
            OFF_REPORTED_TCB,
            OFF_COMMITTED_TCB,
            OFF_LAUNCH_TCB,
        ]
        .map(|at| layout.reserved(at)),
    );
    r
}

fn all_zero(raw: &[u8], range: Range<usize>) -> bool {
    raw.get(range).is_some_and(|b| b.iter().all(|&x| x == 0))
}

/// A 72-byte little-endian signature scalar as 48 bytes big-endian.
fn scalar(raw: &[u8], at: usize) -> Result<[u8; SCALAR_LEN], Refusal> {
    let mut s: [u8; SCALAR_LEN] = field(raw, at)?;
    s.reverse();
    Ok(s)
}

/// Parses a report **without verifying it**: length exactly
/// [`SNP_REPORT_LEN`] (more is [`Refusal::TrailingBytes`]), a version aorta
/// knows (2 or later), every reserved byte zero, including the unused high
/// bytes of the signature's r and s.
pub fn parse_snp_report(raw: &[u8]) -> Result<(SnpReport, SnpSignature), Refusal> {
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
    let version = u32::from_le_bytes(field(raw, OFF_VERSION)?);
    if version < 2 {
        return Err(invalid(format!(
            "report version {version} is not supported (2 and later are)"
        )));
    }
    let layout = tcb_layout(raw, version)?;
    if !reserved(version, layout)
        .into_iter()
        .all(|r| all_zero(raw, r))
    {
        return Err(invalid(
            "report is not canonical (reserved bytes are not zero)",
        ));
    }
    // r and s are 48-byte P-384 scalars zero-extended to 72 bytes: the
    // padding must be zero or it could be altered under the signature.
    let padding_clear = [
        SIG_R + SCALAR_LEN..SIG_R + 72,
        SIG_S + SCALAR_LEN..SIG_S + 72,
    ]
    .into_iter()
    .all(|r| all_zero(raw, r));
    if !padding_clear {
        return Err(invalid("signature r/s padding is not zero"));
    }
    let mut sig = [0; 2 * SCALAR_LEN];
    let (r, s) = sig.split_at_mut(SCALAR_LEN);
    r.copy_from_slice(&scalar(raw, SIG_R)?);
    s.copy_from_slice(&scalar(raw, SIG_S)?);
    let key_info = u32::from_le_bytes(field(raw, OFF_KEY_INFO)?);
    let summary = SnpReport {
        version,
        policy: u64::from_le_bytes(field(raw, OFF_POLICY)?),
        vmpl: u32::from_le_bytes(field(raw, OFF_VMPL)?),
        reported_tcb: layout.read(field(raw, OFF_REPORTED_TCB)?),
        measurement: field(raw, OFF_MEASUREMENT)?,
        report_data: field(raw, OFF_REPORT_DATA)?,
        // Bits 4:2 of KEY_INFO.
        signing_key: u8::try_from((key_info >> 2) & 0x7).unwrap_or(u8::MAX),
    };
    Ok((summary, SnpSignature(sig)))
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

/// A parsed AMD certificate with the DER bytes of its `tbsCertificate` as
/// received (what its issuer signed).
struct AmdCert<'a> {
    tbs: &'a [u8],
    cert: Certificate,
}

impl<'a> AmdCert<'a> {
    fn from_der(der: &'a [u8]) -> Result<Self, x509_cert::der::Error> {
        let cert = Certificate::from_der(der)?;
        // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm,
        // signatureValue }: the first element's whole TLV.
        let mut r = SliceReader::new(der)?;
        Header::decode(&mut r)?;
        let tbs = r.tlv_bytes()?;
        Ok(Self { tbs, cert })
    }

    /// The subject public key: an RSAPublicKey (DER) for ARK and ASK, an
    /// uncompressed P-384 point for a VCEK/VLEK.
    fn public_key(&self) -> Option<&[u8]> {
        self.cert
            .tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .as_bytes()
    }

    /// Whether this certificate's (RSA) key signed `subject` with RSASSA-PSS,
    /// SHA-384.
    fn signed(&self, subject: &AmdCert<'_>) -> bool {
        if subject.cert.signature_algorithm().oid != RSASSA_PSS {
            return false;
        }
        let (Some(key), Some(sig)) = (self.public_key(), subject.cert.signature().as_bytes())
        else {
            return false;
        };
        UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA384, key)
            .verify(subject.tbs, sig)
            .is_ok()
    }
}

/// The pinned ARK and ASK certificates, DER.
fn pinned_der() -> Vec<(Vec<u8>, Vec<u8>)> {
    let der = |pem: &[u8]| match x509_cert::der::pem::decode_vec(pem) {
        Ok(("CERTIFICATE", der)) => Some(der),
        _ => None,
    };
    PINNED
        .iter()
        .filter_map(|(ark, ask)| Some((der(ark)?, der(ask)?)))
        .collect()
}

/// Verifies an SEV-SNP report with the certificate table `certs`: the
/// VCEK (or VLEK) chains to a pinned AMD ARK (through the pinned ASK, or an
/// ASK/ASVK from the table that the pinned ARK signed), and it signed the
/// report. Policy checks are [`check_snp_report`]'s.
pub fn verify_snp_report(raw: &[u8], certs: &[u8]) -> Result<SnpReport, Refusal> {
    let (summary, sig) = parse_snp_report(raw)?;
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
    let vek = AmdCert::from_der(vek_der).map_err(|e| invalid(format!("VCEK/VLEK: {e}")))?;
    // Trust anchors: the pinned ARKs (self-signed). Intermediates: the
    // pinned ASKs, and any ASK/ASVK the host supplied (only accepted when a
    // pinned ARK signed it).
    let pinned = pinned_der();
    let arks: Vec<AmdCert<'_>> = pinned
        .iter()
        .filter_map(|(ark, _)| AmdCert::from_der(ark).ok())
        .filter(|ark| ark.signed(ark))
        .collect();
    let asks: Vec<AmdCert<'_>> = pinned
        .iter()
        .map(|(_, ask)| ask.as_slice())
        .chain(
            entries
                .iter()
                .filter(|e| e.guid == GUID_ASK)
                .map(|e| e.data),
        )
        .filter_map(|der| AmdCert::from_der(der).ok())
        .collect();
    let chained = asks
        .iter()
        .any(|ask| ask.signed(&vek) && arks.iter().any(|ark| ark.signed(ask)));
    if !chained {
        return Err(invalid(
            "the VCEK/VLEK certificate does not chain to a pinned AMD root key (ARK)",
        ));
    }
    let bad_signature = || Refusal::BadSignature {
        backend: Backend::SevSnp,
    };
    let key = vek.public_key().ok_or_else(bad_signature)?;
    let signed = raw.get(SIGNED).ok_or_else(bad_signature)?;
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, key)
        .verify(signed, &sig.0)
        .map_err(|_| bad_signature())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pinned_ark_is_self_signed_and_signs_its_ask_only() {
        let pinned = pinned_der();
        assert_eq!(pinned.len(), PINNED.len(), "every pinned PEM decodes");
        let certs: Vec<(AmdCert<'_>, AmdCert<'_>)> = pinned
            .iter()
            .map(|(ark, ask)| {
                (
                    AmdCert::from_der(ark).unwrap(),
                    AmdCert::from_der(ask).unwrap(),
                )
            })
            .collect();
        for (i, (ark, _)) in certs.iter().enumerate() {
            assert!(ark.signed(ark), "ARK {i} is self-signed");
            for (j, (_, ask)) in certs.iter().enumerate() {
                assert_eq!(ark.signed(ask), i == j, "ARK {i} signs ASK {j}");
            }
        }
    }

    #[test]
    fn tcb_layouts() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(
            TcbLayout::Legacy.read(b),
            SnpTcb {
                bootloader: 1,
                tee: 2,
                snp: 7,
                microcode: 8
            }
        );
        assert_eq!(
            TcbLayout::Turin.read(b),
            SnpTcb {
                bootloader: 2,
                tee: 3,
                snp: 4,
                microcode: 8
            }
        );
        assert_eq!(TcbLayout::Legacy.reserved(0x38), 0x3a..0x3e);
        assert_eq!(TcbLayout::Turin.reserved(0x38), 0x3c..0x3f);
    }
}
