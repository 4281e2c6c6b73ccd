//! The broker's policy file (TOML). Unknown keys are refused, so a typo —
//! or an attempt to write `allow_debug = true` — fails loudly.
//!
//! ```toml
//! allowed_backends = ["tdx", "sgx-gramine"]   # sim also needs allow_simulation
//! allow_simulation = false                     # sim is NOT hardware-protected
//! allowed_measurements = ["<hex>", ...]        # see AttestedWorker::measurement
//! sim_platform_keys = ["<hex Ed25519 public key>"]
//! min_tcb = "UpToDate"                         # worst Intel TCB level accepted
//! freshness_secs = 300                         # evidence and challenge lifetime
//! min_tcb_eval_num = 17                        # optional: lowest Intel tcbEvaluationDataNumber
//! snp_min_tcb = { bootloader = 3, tee = 0, snp = 8, microcode = 115 }  # set it with "sev-snp" (default: all 0)
//! snp_max_vmpl = 0                             # optional, default 0
//!
//! [[assignments]]
//! name = "ward-a"
//! devices = ["ECG-0001", "ECG-0002"]
//! subscribers = ["dr-alice"]
//! ```
//! Debug TEEs are always refused; there is no setting for them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aorta_enclave::Backend;
use aorta_enclave::verify::{SnpTcb, TcbLevel, VerifierPolicy};
use serde::Deserialize;

/// One worker assignment: which devices' streams it analyses and which
/// subscribers it seals results for.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// Name the worker asks for.
    pub name: String,
    /// Device serials.
    pub devices: BTreeSet<String>,
    /// Subscriber ids (clinicians).
    #[serde(default)]
    pub subscribers: BTreeSet<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    allowed_backends: Vec<String>,
    #[serde(default)]
    allow_simulation: bool,
    #[serde(default)]
    allowed_measurements: Vec<String>,
    #[serde(default)]
    sim_platform_keys: Vec<String>,
    #[serde(default = "default_min_tcb")]
    min_tcb: String,
    #[serde(default = "default_freshness")]
    freshness_secs: u64,
    #[serde(default)]
    min_tcb_eval_num: Option<u32>,
    #[serde(default)]
    snp_min_tcb: Option<RawSnpTcb>,
    #[serde(default)]
    snp_max_vmpl: u32,
    #[serde(default)]
    assignments: Vec<Assignment>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSnpTcb {
    bootloader: u8,
    tee: u8,
    snp: u8,
    microcode: u8,
}

fn default_min_tcb() -> String {
    "UpToDate".into()
}
fn default_freshness() -> u64 {
    300
}

/// A parsed, validated policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// What the evidence verifier accepts.
    pub verifier: VerifierPolicy,
    /// Assignments by name.
    pub assignments: Vec<Assignment>,
}

/// A policy that cannot be used (configuration error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Reading the file failed.
    #[error("cannot read policy {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML or unknown/missing keys.
    #[error("policy{}: {detail}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Parse {
        /// The file, if any.
        path: Option<PathBuf>,
        /// Parser message (with line and column).
        detail: String,
    },
    /// A value is invalid.
    #[error("policy field {field}: {detail}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
}

impl Policy {
    /// Reads and validates a policy file.
    pub fn from_file(path: &Path) -> Result<Self, PolicyError> {
        let s = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&s).map_err(|e| match e {
            PolicyError::Parse { detail, .. } => PolicyError::Parse {
                path: Some(path.to_owned()),
                detail,
            },
            other => other,
        })
    }

    /// Parses and validates policy TOML.
    pub fn from_toml_str(s: &str) -> Result<Self, PolicyError> {
        let raw: RawPolicy = toml::from_str(s).map_err(|e| PolicyError::Parse {
            path: None,
            detail: e.to_string(),
        })?;
        let invalid = |field, detail: String| PolicyError::Invalid { field, detail };
        let mut allowed_backends = Vec::new();
        for b in &raw.allowed_backends {
            let b: Backend = b
                .parse()
                .map_err(|e: aorta_enclave::evidence::UnknownBackend| {
                    invalid("allowed_backends", e.to_string())
                })?;
            allowed_backends.push(b);
        }
        if allowed_backends.contains(&Backend::Sim) && !raw.allow_simulation {
            return Err(invalid(
                "allowed_backends",
                "lists \"sim\" but allow_simulation is not true; sim evidence is NOT hardware-protected, set allow_simulation = true to accept it knowingly".into(),
            ));
        }
        let mut allowed_measurements = Vec::new();
        for m in &raw.allowed_measurements {
            let b = aorta_base::hex::decode(m.trim(), aorta_base::hex::Case::Any)
                .ok()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| invalid("allowed_measurements", format!("not hex: {m:?}")))?;
            allowed_measurements.push(b);
        }
        let mut sim_platform_keys = Vec::new();
        for k in &raw.sim_platform_keys {
            let b: [u8; 32] = aorta_base::hex::decode(k.trim(), aorta_base::hex::Case::Any)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    invalid(
                        "sim_platform_keys",
                        format!("not a 32-byte hex Ed25519 public key: {k:?}"),
                    )
                })?;
            sim_platform_keys.push(b);
        }
        let min_tcb = [
            TcbLevel::UpToDate,
            TcbLevel::SwHardeningNeeded,
            TcbLevel::ConfigurationNeeded,
            TcbLevel::ConfigurationAndSwHardeningNeeded,
            TcbLevel::OutOfDate,
        ]
        .into_iter()
        .find(|l| l.name() == raw.min_tcb)
        .ok_or_else(|| {
            invalid(
                "min_tcb",
                format!(
                    "{:?} is not one of UpToDate, SWHardeningNeeded, ConfigurationNeeded, ConfigurationAndSWHardeningNeeded, OutOfDate",
                    raw.min_tcb
                ),
            )
        })?;
        if raw.freshness_secs == 0 || raw.freshness_secs > 86_400 {
            return Err(invalid(
                "freshness_secs",
                format!("{} is outside 1..=86400", raw.freshness_secs),
            ));
        }
        let snp_min_tcb = match raw.snp_min_tcb {
            Some(t) => SnpTcb {
                bootloader: t.bootloader,
                tee: t.tee,
                snp: t.snp,
                microcode: t.microcode,
            },
            None => SnpTcb::default(),
        };
        if raw.snp_max_vmpl > 3 {
            return Err(invalid(
                "snp_max_vmpl",
                format!("{} is outside 0..=3", raw.snp_max_vmpl),
            ));
        }
        let mut names = BTreeSet::new();
        for a in &raw.assignments {
            if !names.insert(a.name.clone()) {
                return Err(invalid(
                    "assignments",
                    format!("duplicate name {:?}", a.name),
                ));
            }
        }
        Ok(Self {
            verifier: VerifierPolicy {
                allowed_backends,
                allow_simulation: raw.allow_simulation,
                allowed_measurements,
                sim_platform_keys,
                min_tcb,
                freshness_secs: raw.freshness_secs,
                min_tcb_eval_num: raw.min_tcb_eval_num,
                snp_min_tcb,
                snp_max_vmpl: raw.snp_max_vmpl,
            },
            assignments: raw.assignments,
        })
    }

    /// The assignment called `name`.
    pub fn assignment(&self, name: &str) -> Option<&Assignment> {
        self.assignments.iter().find(|a| a.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
        allowed_backends = ["sim", "tdx"]
        allow_simulation = true
        allowed_measurements = ["aabb"]
        sim_platform_keys = ["0101010101010101010101010101010101010101010101010101010101010101"]
        min_tcb = "SWHardeningNeeded"
        freshness_secs = 60
        [[assignments]]
        name = "a"
        devices = ["d1", "d2"]
        subscribers = ["s1"]
    "#;

    #[test]
    fn parses_a_full_policy() {
        let p = Policy::from_toml_str(OK).unwrap();
        assert_eq!(p.verifier.allowed_backends, [Backend::Sim, Backend::Tdx]);
        assert!(p.verifier.allow_simulation);
        assert_eq!(p.verifier.allowed_measurements, [vec![0xaa, 0xbb]]);
        assert_eq!(p.verifier.min_tcb, TcbLevel::SwHardeningNeeded);
        assert_eq!(p.assignment("a").unwrap().devices.len(), 2);
        assert!(p.assignment("b").is_none());
    }

    #[test]
    fn refuses_bad_policies() {
        for (bad, what) in [
            (
                "allowed_backends = [\"sim\"]",
                "sim without allow_simulation",
            ),
            ("allowed_backends = [\"sgx\"]", "unknown backend"),
            (
                "allowed_backends = []\nallow_debug = true",
                "no debug switch",
            ),
            (
                "allowed_backends = []\nallowed_measurements = [\"xyz\"]",
                "bad hex",
            ),
            (
                "allowed_backends = []\nsim_platform_keys = [\"aa\"]",
                "short key",
            ),
            ("allowed_backends = []\nmin_tcb = \"Great\"", "bad tcb"),
            ("allowed_backends = []\nfreshness_secs = 0", "zero window"),
            ("allowed_backends = [", "broken toml"),
            ("", "missing allowed_backends"),
            (
                "allowed_backends = []\n[[assignments]]\nname='x'\ndevices=[]\n[[assignments]]\nname='x'\ndevices=[]",
                "duplicate assignment",
            ),
        ] {
            assert!(Policy::from_toml_str(bad).is_err(), "{what} was accepted");
        }
    }

    #[test]
    fn hardening_fields_parse() {
        let p = Policy::from_toml_str(
            "allowed_backends = [\"sev-snp\", \"tdx\"]\nmin_tcb_eval_num = 17\n\
             snp_min_tcb = { bootloader = 3, tee = 0, snp = 8, microcode = 115 }\nsnp_max_vmpl = 1",
        )
        .unwrap();
        assert_eq!(p.verifier.min_tcb_eval_num, Some(17));
        assert_eq!(p.verifier.snp_min_tcb.microcode, 115);
        assert_eq!(p.verifier.snp_max_vmpl, 1);
        let p = Policy::from_toml_str("allowed_backends = [\"tdx\"]").unwrap();
        assert_eq!(p.verifier.min_tcb_eval_num, None);
        assert_eq!(p.verifier.snp_max_vmpl, 0);
        for bad in [
            "allowed_backends = []\nsnp_max_vmpl = 4",
            "allowed_backends = []\nmin_tcb_eval_num = -1",
            "allowed_backends = []\nsnp_min_tcb = { bootloader = 3 }",
        ] {
            assert!(Policy::from_toml_str(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn missing_file_is_a_typed_error() {
        let e = Policy::from_file(Path::new("/nonexistent/aorta/policy.toml")).unwrap_err();
        assert!(matches!(e, PolicyError::Io { .. }));
    }
}
