//! The verifier: policy checks on [`Evidence`], Intel DCAP quote verification
//! (SGX, TDX) with `dcap-qvl`, and the [`AttestationVerified`] proof.
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
    /// No collateral came with a DCAP quote.
    #[error(
        "{backend} evidence carries no Intel collateral; the host must attach it (from a PCCS)"
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
    /// `sgx-gramine` → MRENCLAVE (32 B); `tdx` → SHA-256 of
    /// `"aorta-tdx-measurement v1\0" ‖ MRTD ‖ RTMR0 ‖ RTMR1 ‖ RTMR2 ‖ app measurement`.
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
}

/// Verifies a DCAP quote (SGX or TDX) with its collateral, offline, at
/// `now` (unix seconds): certificate chain to Intel's root, CRLs, TCB info
/// and QE identity signatures and validity, quote signature. Debug TEEs
/// pass *this* step (so that [`verify`] can refuse them with a typed reason).
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
    let collateral: dcap_qvl::QuoteCollateralV3 = serde_json::from_slice(collateral_json)
        .map_err(|e| invalid(format!("collateral JSON: {e}")))?;
    let rep = dcap_qvl::verify::QuoteVerifier::new_prod()
        .allow_debug(true)
        .verify(quote, &collateral, now)
        .map_err(|e| invalid(format!("{e:#}")))?;
    let td = |t: &dcap_qvl::quote::TDReport10| {
        let mut m = Vec::with_capacity(192);
        for part in [&t.mr_td, &t.rt_mr0, &t.rt_mr1, &t.rt_mr2] {
            m.extend_from_slice(part);
        }
        DcapReport {
            is_sgx: false,
            report_data: t.report_data,
            raw_measurement: m,
            debug: t.td_attributes[0] & 0x01 != 0,
            tcb_status: rep.status.clone(),
            advisory_ids: rep.advisory_ids.clone(),
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
        },
        Report::TD10(t) => td(t),
        Report::TD15(t) => td(&t.base),
        Report::TD15Ex(t) => td(&t.base.base),
    })
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
                rep.raw_measurement
            } else {
                tdx_measurement(&rep.raw_measurement, &c.app_measurement)
            };
            (m, Some(rep.tcb_status))
        }
        EvidenceBody::SevSnp { .. } => {
            return Err(Refusal::BackendUnverifiable {
                backend: Backend::SevSnp,
                detail: "SEV-SNP report verification (AMD VCEK/ASK/ARK chain) is not implemented yet",
            });
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
