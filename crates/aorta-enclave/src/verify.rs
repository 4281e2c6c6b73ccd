//! The verifier: policy checks on [`Evidence`], Intel DCAP quote verification
//! (SGX, TDX) with `dcap-qvl`, AMD SEV-SNP report verification ([`snp`]),
//! and the [`AttestationVerified`] proof.
//!
//! [`verify`] is the only function in the crate that constructs an
//! [`AttestationVerified`] (its field is private to this module), and the
//! only way to obtain an [`AttestedWorker`]. Key release
//! ([`crate::keywrap::seal_bundle`]) takes an `&AttestedWorker`, so the type
//! system guarantees that keys are only ever wrapped to a public key that
//! passed every check here.

use std::fmt;

use aorta_crypto::refusal;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::attest::sim_signed_message;
use aorta_base::hex::encode as hex;

use crate::evidence::{Backend, Evidence, EvidenceBody, Measurement, Nonce};

mod collateral;
pub mod snp;
pub use snp::SnpTcb;

/// Largest clock difference tolerated for evidence dated in the future.
pub const MAX_CLOCK_SKEW_SECS: u64 = 30;

/// Intel TCB status levels, best first. A policy's `min_tcb` accepts its own
/// level and every better one. `Revoked` is always refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TcbLevel {
    /// `UpToDate`.
    UpToDate,
    /// `SWHardeningNeeded`: up to date, software mitigations required.
    SwHardeningNeeded,
    /// `ConfigurationNeeded`.
    ConfigurationNeeded,
    /// `ConfigurationAndSWHardeningNeeded`.
    ConfigurationAndSwHardeningNeeded,
    /// `OutOfDate` (and `TDRelaunchAdvised*`, `OutOfDateConfigurationNeeded`).
    OutOfDate,
}

impl TcbLevel {
    /// Maps an Intel status string; `None` for `Revoked` and unknown strings.
    pub fn from_intel(status: &str) -> Option<Self> {
        Some(match status {
            "UpToDate" => TcbLevel::UpToDate,
            "SWHardeningNeeded" => TcbLevel::SwHardeningNeeded,
            "ConfigurationNeeded" => TcbLevel::ConfigurationNeeded,
            "ConfigurationAndSWHardeningNeeded" => TcbLevel::ConfigurationAndSwHardeningNeeded,
            "OutOfDate"
            | "OutOfDateConfigurationNeeded"
            | "TDRelaunchAdvised"
            | "TDRelaunchAdvisedConfigurationNeeded" => TcbLevel::OutOfDate,
            _ => return None,
        })
    }

    /// The policy-file name (the Intel spelling of the level).
    pub fn name(self) -> &'static str {
        match self {
            TcbLevel::UpToDate => "UpToDate",
            TcbLevel::SwHardeningNeeded => "SWHardeningNeeded",
            TcbLevel::ConfigurationNeeded => "ConfigurationNeeded",
            TcbLevel::ConfigurationAndSwHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbLevel::OutOfDate => "OutOfDate",
        }
    }
}

/// What the verifier accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierPolicy {
    /// Backends accepted (`sim` additionally needs `allow_simulation`).
    pub allowed_backends: Vec<Backend>,
    /// Accept `sim` evidence (NOT hardware-protected). Default false.
    pub allow_simulation: bool,
    /// Accepted measurements (see [`AttestedWorker::measurement`] for what
    /// each backend measures).
    pub allowed_measurements: Vec<Vec<u8>>,
    /// Ed25519 keys of the simulated platforms whose `sim` evidence is accepted.
    pub sim_platform_keys: Vec<[u8; 32]>,
    /// Worst Intel TCB level accepted for DCAP quotes.
    pub min_tcb: TcbLevel,
    /// Evidence older than this many seconds is stale.
    pub freshness_secs: u64,
    /// Lowest Intel `tcbEvaluationDataNumber` accepted in DCAP collateral
    /// (the lower of the TCB info's and the QE identity's); `None` accepts
    /// any collateral that is signed and unexpired.
    pub min_tcb_eval_num: Option<u32>,
    /// Lowest SEV-SNP reported TCB accepted (each component).
    pub snp_min_tcb: SnpTcb,
    /// Highest SEV-SNP VMPL accepted (0, the most privileged, by default).
    pub snp_max_vmpl: u32,
}

impl Default for VerifierPolicy {
    fn default() -> Self {
        Self {
            allowed_backends: vec![Backend::Tdx, Backend::SgxGramine],
            allow_simulation: false,
            allowed_measurements: Vec::new(),
            sim_platform_keys: Vec::new(),
            min_tcb: TcbLevel::UpToDate,
            freshness_secs: 300,
            min_tcb_eval_num: None,
            snp_min_tcb: SnpTcb::default(),
            snp_max_vmpl: 0,
        }
    }
}

/// Why evidence was refused (the worker's or its platform's fault, or the
/// policy's verdict). Each has a stable wire code ([`Refusal::code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The evidence bytes are malformed.
    #[error("malformed evidence: {0}")]
    Malformed(#[from] crate::evidence::EvidenceError),
    /// The evidence answers another challenge.
    #[error("evidence nonce {found} does not match the challenge")]
    NonceMismatch {
        /// The nonce in the evidence (hex).
        found: String,
    },
    /// The evidence is older than the freshness window.
    #[error("stale evidence: issued at {issued_at}, now {now}, window {window_secs} s")]
    Stale {
        /// Evidence time (unix s).
        issued_at: u64,
        /// Verifier time.
        now: u64,
        /// Policy window.
        window_secs: u64,
    },
    /// The evidence is dated in the future.
    #[error("evidence dated in the future: issued at {issued_at}, now {now}")]
    FromTheFuture {
        /// Evidence time.
        issued_at: u64,
        /// Verifier time.
        now: u64,
    },
    /// `sim` evidence while `allow_simulation` is false.
    #[error("simulation evidence refused: the policy does not set allow_simulation = true")]
    SimulationNotAllowed,
    /// The backend is not in `allowed_backends`.
    #[error("backend {backend} is not allowed by the policy")]
    BackendNotAllowed {
        /// The backend.
        backend: Backend,
    },
    /// `sim` evidence from a platform key the policy does not list.
    #[error("unknown sim platform key {key}")]
    UnknownSimPlatform {
        /// Key (hex).
        key: String,
    },
    /// A signature over the evidence does not verify.
    #[error("{backend} evidence signature does not verify")]
    BadSignature {
        /// The backend.
        backend: Backend,
    },
    /// The TEE runs in debug mode (its memory is readable by the host).
    #[error("{backend} TEE runs in debug mode; debug TEEs are always refused")]
    DebugTee {
        /// The backend.
        backend: Backend,
    },
    /// The measurement is not allowed.
    #[error("measurement {measurement} ({backend}) is not in allowed_measurements")]
    MeasurementNotAllowed {
        /// The backend.
        backend: Backend,
        /// The measurement (hex).
        measurement: String,
    },
    /// The quote's report data does not bind this evidence's claims.
    #[error(
        "{backend} quote report data does not match the evidence claims (nonce, worker key, measurement, time)"
    )]
    ReportDataMismatch {
        /// The backend.
        backend: Backend,
    },
    /// The quote failed DCAP verification (signature, certificate chain, collateral, time).
    #[error("{backend} quote verification failed: {detail}")]
    QuoteInvalid {
        /// The backend.
        backend: Backend,
        /// dcap-qvl's reason.
        detail: String,
    },
    /// No collateral came with a DCAP quote (Intel collateral) or an
    /// SEV-SNP report (the VCEK/VLEK certificate table).
    #[error(
        "{backend} evidence carries no collateral; the host must attach it (Intel: from the PCCS; SEV-SNP: the VCEK/VLEK certificate table)"
    )]
    MissingCollateral {
        /// The backend.
        backend: Backend,
    },
    /// The platform's TCB level is below the policy's minimum.
    #[error("TCB status {status} is below the policy minimum {min}")]
    TcbTooLow {
        /// Intel status string.
        status: String,
        /// Policy minimum.
        min: &'static str,
    },
    /// Bytes after the end of the quote or report.
    #[error("{extra} bytes after the end of the {backend} {what}")]
    TrailingBytes {
        /// The backend.
        backend: Backend,
        /// `quote` or `report`.
        what: &'static str,
        /// How many.
        extra: usize,
    },
    /// TDX TD attributes aorta refuses (besides the debug bit, [`Refusal::DebugTee`]).
    #[error("TDX TD attributes {attributes:#018x} refused: {detail}")]
    TdAttributes {
        /// `TD_ATTRIBUTES` as a little-endian u64.
        attributes: u64,
        /// Which bits.
        detail: &'static str,
    },
    /// The collateral's TCB evaluation data number is below the policy's minimum.
    #[error(
        "collateral tcbEvaluationDataNumber {found} is below the policy's min_tcb_eval_num {min}; fetch fresh collateral from the PCCS"
    )]
    CollateralTooOld {
        /// The lower of the TCB info's and the QE identity's number.
        found: u32,
        /// Policy minimum.
        min: u32,
    },
    /// A certificate, CRL, TCB info or QE identity of the collateral is not
    /// valid at the verifier's time.
    #[error(
        "{item} is {state} at {now}: valid from {not_before} to {not_after}; fetch fresh collateral from the PCCS"
    )]
    CollateralOutOfDate {
        /// What (e.g. `PCK CRL issued by CN=Intel SGX PCK Platform CA, ...`).
        item: String,
        /// `expired` or `not yet valid`.
        state: &'static str,
        /// Start of validity, ISO-8601 UTC.
        not_before: String,
        /// End of validity, ISO-8601 UTC (`none` when the CRL gives none).
        not_after: String,
        /// The verifier's time, ISO-8601 UTC.
        now: String,
    },
    /// The SEV-SNP report comes from a VMPL the policy does not accept.
    #[error("SEV-SNP report from VMPL {vmpl}; the policy accepts VMPL 0..={max} (snp_max_vmpl)")]
    VmplNotAllowed {
        /// The report's VMPL.
        vmpl: u32,
        /// Policy maximum.
        max: u32,
    },
    /// The SEV-SNP reported TCB is below the policy minimum.
    #[error("SEV-SNP reported TCB ({reported}) is below the policy minimum snp_min_tcb ({min})")]
    SnpTcbTooLow {
        /// What the report says.
        reported: SnpTcb,
        /// Policy minimum.
        min: SnpTcb,
    },
    /// aorta cannot verify this backend's evidence yet.
    #[error("{backend} evidence cannot be verified by this build: {detail}")]
    BackendUnverifiable {
        /// The backend.
        backend: Backend,
        /// Why.
        detail: &'static str,
    },
}

impl Refusal {
    /// Stable wire code (1xx: evidence and policy), from the one registry
    /// ([`aorta_crypto::refusal`]).
    pub fn code(&self) -> u16 {
        match self {
            Refusal::Malformed(_) => refusal::ATTEST_MALFORMED,
            Refusal::NonceMismatch { .. } => refusal::ATTEST_NONCE_MISMATCH,
            Refusal::Stale { .. } => refusal::ATTEST_STALE,
            Refusal::FromTheFuture { .. } => refusal::ATTEST_FROM_THE_FUTURE,
            Refusal::SimulationNotAllowed => refusal::ATTEST_SIMULATION_NOT_ALLOWED,
            Refusal::BackendNotAllowed { .. } => refusal::ATTEST_BACKEND_NOT_ALLOWED,
            Refusal::UnknownSimPlatform { .. } => refusal::ATTEST_UNKNOWN_SIM_PLATFORM,
            Refusal::BadSignature { .. } => refusal::ATTEST_BAD_SIGNATURE,
            Refusal::DebugTee { .. } => refusal::ATTEST_DEBUG_TEE,
            Refusal::MeasurementNotAllowed { .. } => refusal::ATTEST_MEASUREMENT_NOT_ALLOWED,
            Refusal::ReportDataMismatch { .. } => refusal::ATTEST_REPORT_DATA_MISMATCH,
            Refusal::QuoteInvalid { .. } => refusal::ATTEST_QUOTE_INVALID,
            Refusal::MissingCollateral { .. } => refusal::ATTEST_MISSING_COLLATERAL,
            Refusal::TcbTooLow { .. } => refusal::ATTEST_TCB_TOO_LOW,
            Refusal::BackendUnverifiable { .. } => refusal::ATTEST_BACKEND_UNVERIFIABLE,
            Refusal::TrailingBytes { .. } => refusal::ATTEST_TRAILING_BYTES,
            Refusal::TdAttributes { .. } => refusal::ATTEST_TD_ATTRIBUTES,
            Refusal::CollateralTooOld { .. } => refusal::ATTEST_COLLATERAL_TOO_OLD,
            Refusal::CollateralOutOfDate { .. } => refusal::ATTEST_COLLATERAL_OUT_OF_DATE,
            Refusal::VmplNotAllowed { .. } => refusal::ATTEST_VMPL_NOT_ALLOWED,
            Refusal::SnpTcbTooLow { .. } => refusal::ATTEST_TCB_TOO_LOW,
        }
    }
}

/// Zero-sized proof that [`verify`] accepted a piece of evidence. Only this
/// module can construct it; it is neither `Clone` nor `Default`.
pub struct AttestationVerified {
    _private: (),
}

impl fmt::Debug for AttestationVerified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AttestationVerified")
    }
}

/// A worker whose evidence passed verification: its attested HPKE public
/// key, what it runs, and the proof.
#[derive(Debug)]
pub struct AttestedWorker {
    backend: Backend,
    measurement: Vec<u8>,
    app_measurement: Measurement,
    worker_public_key: [u8; 32],
    report_data: [u8; 64],
    tcb_status: Option<String>,
    proof: AttestationVerified,
}

impl AttestedWorker {
    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }
    /// Whether TEE hardware protects the worker (false for `sim`).
    pub fn hardware_protected(&self) -> bool {
        self.backend.is_hardware()
    }
    /// The policy-checked measurement: `sim` → the app measurement (32 B);
    /// `sgx-gramine` → SHA-256 of `"aorta-sgx-measurement v1\0" ‖ MRENCLAVE ‖
    /// app measurement` ([`sgx_measurement`]); `tdx` → SHA-256 of
    /// `"aorta-tdx-measurement v1\0" ‖ MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ app
    /// measurement`; `sev-snp` → SHA-256 of `"aorta-snp-measurement v1\0" ‖
    /// MEASUREMENT ‖ app measurement` ([`snp::snp_measurement`]).
    pub fn measurement(&self) -> &[u8] {
        &self.measurement
    }
    /// The worker's self-reported binary+config measurement (bound in the report data).
    pub fn app_measurement(&self) -> Measurement {
        self.app_measurement
    }
    /// The attested X25519 (HPKE) public key.
    pub fn public_key(&self) -> &[u8; 32] {
        &self.worker_public_key
    }
    /// The report data the TEE signed (used as HPKE associated data).
    pub fn report_data(&self) -> &[u8; 64] {
        &self.report_data
    }
    /// Intel TCB status, for DCAP backends.
    pub fn tcb_status(&self) -> Option<&str> {
        self.tcb_status.as_deref()
    }
    /// The proof of verification.
    pub fn proof(&self) -> &AttestationVerified {
        &self.proof
    }
}

/// What a DCAP quote says once its signatures and collateral verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DcapReport {
    /// `true` for an SGX enclave quote, `false` for a TDX quote.
    pub is_sgx: bool,
    /// The 64 bytes of report data.
    pub report_data: [u8; 64],
    /// SGX: MRENCLAVE (32 B). TDX: MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 (4 × 48 B).
    pub raw_measurement: Vec<u8>,
    /// SGX `DEBUG` attribute / TDX `TUD.DEBUG` attribute.
    pub debug: bool,
    /// Intel TCB status string.
    pub tcb_status: String,
    /// Intel security advisories that apply.
    pub advisory_ids: Vec<String>,
    /// TDX `TD_ATTRIBUTES` (little-endian u64); `None` for SGX.
    pub td_attributes: Option<u64>,
    /// The lower of the collateral's TCB info and QE identity
    /// `tcbEvaluationDataNumber`.
    pub tcb_eval_num: u32,
}

/// TDX `TD_ATTRIBUTES` bits (Intel TDX Module ABI): TUD (bits 0–7, bit 0
/// DEBUG, bits 4–6 TD profiling / performance-monitoring, the rest reserved).
pub const TD_ATTR_TUD_MASK: u64 = 0xff;
/// `TD_ATTRIBUTES.DEBUG`.
pub const TD_ATTR_DEBUG: u64 = 1;
/// `TD_ATTRIBUTES.SEPT_VE_DISABLE` (bit 28): must be set.
pub const TD_ATTR_SEPT_VE_DISABLE: u64 = 1 << 28;
/// `TD_ATTRIBUTES.MIGRATABLE` (bit 29): must be clear.
pub const TD_ATTR_MIGRATABLE: u64 = 1 << 29;
/// Reserved bits that must be zero (TDX Module ABI 348551-008US, table 3.23).
pub const TD_ATTR_RESERVED: u64 = 0x0e | 0xff80 | (0xf << 23) | (((1u64 << 30) - 1) << 32);

/// aorta's own check of TDX `TD_ATTRIBUTES` (dcap-qvl runs with
/// `allow_debug(true)` so that debug TDs get a typed refusal, which also
/// switches off its TUD checks): debug → [`Refusal::DebugTee`]; any other TUD
/// bit, migratable, SEPT_VE_DISABLE clear or a reserved bit →
/// [`Refusal::TdAttributes`].
pub fn check_td_attributes(attributes: u64) -> Result<(), Refusal> {
    let refuse = |detail| Err(Refusal::TdAttributes { attributes, detail });
    if attributes & TD_ATTR_DEBUG != 0 {
        return Err(Refusal::DebugTee {
            backend: Backend::Tdx,
        });
    }
    if attributes & TD_ATTR_TUD_MASK != 0 {
        return refuse("TUD bits set (TD profiling / performance monitoring or reserved)");
    }
    if attributes & TD_ATTR_RESERVED != 0 {
        return refuse("reserved bits set");
    }
    if attributes & TD_ATTR_MIGRATABLE != 0 {
        return refuse("MIGRATABLE is set");
    }
    if attributes & TD_ATTR_SEPT_VE_DISABLE == 0 {
        return refuse("SEPT_VE_DISABLE is not set");
    }
    Ok(())
}

/// The length a DCAP quote declares (header, body, signature data), or
/// `None` when it is too short to tell (dcap-qvl then refuses it).
fn dcap_quote_len(q: &[u8]) -> Option<usize> {
    let u16_at = |o: usize| {
        Some(u16::from_le_bytes(
            q.get(o..o.checked_add(2)?)?.try_into().ok()?,
        ))
    };
    let u32_at = |o: usize| {
        usize::try_from(u32::from_le_bytes(
            q.get(o..o.checked_add(4)?)?.try_into().ok()?,
        ))
        .ok()
    };
    match u16_at(0)? {
        3 => 436usize.checked_add(u32_at(432)?),
        4 => 636usize.checked_add(u32_at(632)?),
        5 => {
            let body = u32_at(50)?;
            let sig_at = 54usize.checked_add(body)?;
            sig_at.checked_add(4)?.checked_add(u32_at(sig_at)?)
        }
        _ => None,
    }
}

/// Verifies a DCAP quote (SGX or TDX) with its collateral, offline, at
/// `now` (unix seconds): no bytes after the quote, every certificate, CRL,
/// TCB info and QE identity of the collateral valid at `now` (else
/// [`Refusal::CollateralOutOfDate`], naming it with its dates), then
/// dcap-qvl: certificate chain to Intel's root, CRLs, TCB info and QE
/// identity signatures, quote signature. Debug TEEs pass *this* step (so
/// that [`verify`] can refuse them with a typed reason).
pub fn verify_dcap_quote(
    backend: Backend,
    quote: &[u8],
    collateral_json: &[u8],
    now: u64,
) -> Result<DcapReport, Refusal> {
    use dcap_qvl::quote::Report;
    if collateral_json.is_empty() {
        return Err(Refusal::MissingCollateral { backend });
    }
    let invalid = |detail: String| Refusal::QuoteInvalid { backend, detail };
    // Quote generators return the quote in a zero-padded buffer (the real
    // TDX sample carries 70 zero bytes): zero padding is cut off, any other
    // byte after the declared end is refused.
    let quote = match dcap_quote_len(quote).and_then(|len| quote.split_at_checked(len)) {
        Some((q, tail)) if tail.iter().all(|&b| b == 0) => q,
        Some((q, tail)) => {
            return Err(Refusal::TrailingBytes {
                backend,
                what: "quote",
                extra: quote.len().saturating_sub(q.len()).max(tail.len()),
            });
        }
        None => quote,
    };
    let collateral: dcap_qvl::QuoteCollateralV3 = serde_json::from_slice(collateral_json)
        .map_err(|e| invalid(format!("collateral JSON: {e}")))?;
    collateral::check_validity(&collateral, quote, now)?;
    let rep = dcap_qvl::verify::QuoteVerifier::new_prod()
        .allow_debug(true)
        .verify(quote, &collateral, now)
        .map_err(|e| invalid(format!("{e:#}")))?;
    // Signed by Intel and verified above: the lower of the two numbers.
    let tcb_eval_num = collateral::eval_num(&collateral.tcb_info)
        .min(collateral::eval_num(&collateral.qe_identity));
    let td = |t: &dcap_qvl::quote::TDReport10| {
        let mut m = Vec::with_capacity(192);
        for part in [&t.mr_td, &t.rt_mr0, &t.rt_mr1, &t.rt_mr2] {
            m.extend_from_slice(part);
        }
        let attrs = u64::from_le_bytes(t.td_attributes);
        DcapReport {
            is_sgx: false,
            report_data: t.report_data,
            raw_measurement: m,
            debug: attrs & TD_ATTR_DEBUG != 0,
            tcb_status: rep.status.clone(),
            advisory_ids: rep.advisory_ids.clone(),
            td_attributes: Some(attrs),
            tcb_eval_num,
        }
    };
    Ok(match &rep.report {
        Report::SgxEnclave(e) => DcapReport {
            is_sgx: true,
            report_data: e.report_data,
            raw_measurement: e.mr_enclave.to_vec(),
            debug: e.attributes[0] & 0x02 != 0,
            tcb_status: rep.status.clone(),
            advisory_ids: rep.advisory_ids.clone(),
            td_attributes: None,
            tcb_eval_num,
        },
        Report::TD10(t) => td(t),
        Report::TD15(t) => td(&t.base),
        Report::TD15Ex(t) => td(&t.base.base),
    })
}

/// The SGX measurement aorta's policy matches (see
/// [`AttestedWorker::measurement`]): MRENCLAVE covers Gramine, the manifest
/// and its trusted files; the app measurement adds the configuration bytes
/// the worker actually runs with, as for TDX.
pub fn sgx_measurement(mr_enclave: &[u8], app: &Measurement) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"aorta-sgx-measurement v1\0");
    h.update(mr_enclave);
    h.update(app.0);
    h.finalize().to_vec()
}

/// The TDX measurement aorta's policy matches (see [`AttestedWorker::measurement`]).
pub fn tdx_measurement(raw: &[u8], app: &Measurement) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"aorta-tdx-measurement v1\0");
    h.update(raw);
    h.update(app.0);
    h.finalize().to_vec()
}

/// Verifies `evidence` against the challenge `expected_nonce`, the time
/// `now` (unix seconds) and `policy`.
pub fn verify(
    evidence: &Evidence,
    expected_nonce: &Nonce,
    now: u64,
    policy: &VerifierPolicy,
) -> Result<AttestedWorker, Refusal> {
    let c = &evidence.claims;
    if !bool::from(c.nonce.0.ct_eq(&expected_nonce.0)) {
        return Err(Refusal::NonceMismatch {
            found: c.nonce.to_hex(),
        });
    }
    if c.issued_at > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
        return Err(Refusal::FromTheFuture {
            issued_at: c.issued_at,
            now,
        });
    }
    if now.saturating_sub(c.issued_at) > policy.freshness_secs {
        return Err(Refusal::Stale {
            issued_at: c.issued_at,
            now,
            window_secs: policy.freshness_secs,
        });
    }
    if c.backend == Backend::Sim && !policy.allow_simulation {
        return Err(Refusal::SimulationNotAllowed);
    }
    if !policy.allowed_backends.contains(&c.backend) {
        return Err(Refusal::BackendNotAllowed { backend: c.backend });
    }
    let report_data = c.report_data();
    let (measurement, tcb_status) = match &evidence.body {
        EvidenceBody::Sim {
            platform_key,
            debug,
            signature,
        } => {
            if !policy
                .sim_platform_keys
                .iter()
                .any(|k| bool::from(k.ct_eq(platform_key)))
            {
                return Err(Refusal::UnknownSimPlatform {
                    key: hex(platform_key),
                });
            }
            let bad = || Refusal::BadSignature {
                backend: Backend::Sim,
            };
            let vk = VerifyingKey::from_bytes(platform_key).map_err(|_| bad())?;
            vk.verify_strict(
                &sim_signed_message(&report_data, *debug),
                &Signature::from_bytes(signature),
            )
            .map_err(|_| bad())?;
            if *debug {
                return Err(Refusal::DebugTee {
                    backend: Backend::Sim,
                });
            }
            (c.app_measurement.0.to_vec(), None)
        }
        EvidenceBody::Tdx { quote, collateral }
        | EvidenceBody::SgxGramine { quote, collateral } => {
            let rep = verify_dcap_quote(c.backend, quote, collateral, now)?;
            if rep.is_sgx != (c.backend == Backend::SgxGramine) {
                return Err(Refusal::QuoteInvalid {
                    backend: c.backend,
                    detail: format!(
                        "quote is a {} quote",
                        if rep.is_sgx { "SGX" } else { "TDX" }
                    ),
                });
            }
            if rep.debug {
                return Err(Refusal::DebugTee { backend: c.backend });
            }
            if let Some(attrs) = rep.td_attributes {
                check_td_attributes(attrs)?;
            }
            if let Some(min) = policy.min_tcb_eval_num
                && rep.tcb_eval_num < min
            {
                return Err(Refusal::CollateralTooOld {
                    found: rep.tcb_eval_num,
                    min,
                });
            }
            match TcbLevel::from_intel(&rep.tcb_status) {
                Some(level) if level <= policy.min_tcb => {}
                _ => {
                    return Err(Refusal::TcbTooLow {
                        status: rep.tcb_status,
                        min: policy.min_tcb.name(),
                    });
                }
            }
            if !bool::from(rep.report_data.ct_eq(&report_data)) {
                return Err(Refusal::ReportDataMismatch { backend: c.backend });
            }
            let m = if rep.is_sgx {
                sgx_measurement(&rep.raw_measurement, &c.app_measurement)
            } else {
                tdx_measurement(&rep.raw_measurement, &c.app_measurement)
            };
            (m, Some(rep.tcb_status))
        }
        EvidenceBody::SevSnp { report, certs } => {
            let rep = snp::verify_snp_report(report, certs)?;
            (snp::check_snp_report(&rep, c, policy)?, None)
        }
    };
    if !policy
        .allowed_measurements
        .iter()
        .any(|m| bool::from(m.as_slice().ct_eq(measurement.as_slice())))
    {
        return Err(Refusal::MeasurementNotAllowed {
            backend: c.backend,
            measurement: hex(&measurement),
        });
    }
    Ok(AttestedWorker {
        backend: c.backend,
        measurement,
        app_measurement: c.app_measurement,
        worker_public_key: c.worker_public_key,
        report_data,
        tcb_status,
        proof: AttestationVerified { _private: () },
    })
}
