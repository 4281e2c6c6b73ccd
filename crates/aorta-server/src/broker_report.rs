//! What the data owner reads before trusting the broker: a policy's summary
//! ([`PolicySummary`], `aorta broker check`) and an offline inspection of an
//! Intel DCAP quote ([`inspect_quote`], `aorta broker inspect-quote`). Both
//! are typed reports whose JSON is what the CLI prints with `--json`.

use std::collections::BTreeSet;

use aorta_base::hex;
use aorta_enclave::verify::{DcapReport, sgx_measurement, tdx_measurement, verify_dcap_quote};
use aorta_enclave::{Backend, Measurement, Refusal};

use crate::broker::policy::Policy;

/// One assignment of a [`PolicySummary`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AssignmentSummary<'a> {
    /// Name the worker asks for.
    pub name: &'a str,
    /// Device serials.
    pub devices: &'a BTreeSet<String>,
    /// Subscriber ids (clinicians).
    pub subscribers: &'a BTreeSet<String>,
}

/// What a policy allows, with measurements and keys in lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicySummary<'a> {
    /// Backends accepted (names as in the policy file).
    pub allowed_backends: Vec<&'static str>,
    /// Whether `sim` evidence is accepted.
    pub allow_simulation: bool,
    /// Measurements accepted.
    pub allowed_measurements: Vec<String>,
    /// Simulated-platform public keys accepted.
    pub sim_platform_keys: Vec<String>,
    /// Lowest Intel TCB status accepted.
    pub min_tcb: &'static str,
    /// Evidence older than this is refused (seconds).
    pub freshness_secs: u64,
    /// Lowest Intel `tcbEvaluationDataNumber` accepted, if any.
    pub min_tcb_eval_num: Option<u32>,
    /// Highest SEV-SNP VMPL accepted.
    pub snp_max_vmpl: u32,
    /// The assignments.
    pub assignments: Vec<AssignmentSummary<'a>>,
}

impl<'a> PolicySummary<'a> {
    /// The summary of `policy`.
    pub fn of(policy: &'a Policy) -> Self {
        let v = &policy.verifier;
        PolicySummary {
            allowed_backends: v.allowed_backends.iter().map(|b| b.name()).collect(),
            allow_simulation: v.allow_simulation,
            allowed_measurements: v
                .allowed_measurements
                .iter()
                .map(|m| hex::encode(m))
                .collect(),
            sim_platform_keys: v.sim_platform_keys.iter().map(|k| hex::encode(k)).collect(),
            min_tcb: v.min_tcb.name(),
            freshness_secs: v.freshness_secs,
            min_tcb_eval_num: v.min_tcb_eval_num,
            snp_max_vmpl: v.snp_max_vmpl,
            assignments: policy
                .assignments
                .iter()
                .map(|a| AssignmentSummary {
                    name: &a.name,
                    devices: &a.devices,
                    subscribers: &a.subscribers,
                })
                .collect(),
        }
    }
}

/// What a verified DCAP quote attests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QuoteReport {
    /// Always `true`: the quote verified (see [`QuoteRefused`] otherwise).
    pub verified: bool,
    /// `sgx` or `tdx`.
    pub kind: &'static str,
    /// Intel TCB status.
    pub tcb_status: String,
    /// Intel security advisories that apply.
    pub advisory_ids: Vec<String>,
    /// The TEE runs in debug mode (the broker refuses it).
    pub debug: bool,
    /// The 64 bytes of report data, hex.
    pub report_data: String,
    /// SGX MRENCLAVE or TDX MRTD ‖ RTMR0..2, hex.
    pub raw_measurement: String,
    /// The measurement to list in a policy (SGX: MRENCLAVE with the app
    /// measurement; TDX: MRTD and RTMRs with it), only when the worker's app
    /// measurement is given.
    pub policy_measurement: Option<String>,
}

impl QuoteReport {
    fn new(rep: &DcapReport, app: Option<&Measurement>) -> Self {
        let policy_measurement = app.map(|m| {
            hex::encode(&if rep.is_sgx {
                sgx_measurement(&rep.raw_measurement, m)
            } else {
                tdx_measurement(&rep.raw_measurement, m)
            })
        });
        QuoteReport {
            verified: true,
            kind: if rep.is_sgx { "sgx" } else { "tdx" },
            tcb_status: rep.tcb_status.clone(),
            advisory_ids: rep.advisory_ids.clone(),
            debug: rep.debug,
            report_data: hex::encode(&rep.report_data),
            raw_measurement: hex::encode(&rep.raw_measurement),
            policy_measurement,
        }
    }
}

/// Why a quote does not verify, as reported: the refusal's code and text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QuoteRefused {
    /// Always `false`.
    pub verified: bool,
    /// The refusal code ([`Refusal::code`]).
    pub code: u16,
    /// The refusal, in words.
    pub reason: String,
}

impl From<&Refusal> for QuoteRefused {
    fn from(e: &Refusal) -> Self {
        QuoteRefused {
            verified: false,
            code: e.code(),
            reason: e.to_string(),
        }
    }
}

/// Verifies a DCAP `quote` (SGX or TDX, per `backend`) offline with its
/// Intel `collateral` JSON at `now` (unix seconds) and reports what it
/// attests; `app` is the worker's app measurement from which the policy
/// measurement is computed (SGX and TDX).
pub fn inspect_quote(
    backend: Backend,
    quote: &[u8],
    collateral: &[u8],
    now: u64,
    app: Option<&Measurement>,
) -> Result<QuoteReport, Refusal> {
    let rep = verify_dcap_quote(backend, quote, collateral, now)?;
    Ok(QuoteReport::new(&rep, app))
}
