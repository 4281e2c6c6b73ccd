//! Evidence producers: the worker side of attestation.
//!
//! Every producer takes the [`EvidenceClaims`] (nonce, worker key, app
//! measurement, time), asks its TEE to sign their 64-byte report data, and
//! returns [`Evidence`]. [`detect`] picks a hardware backend when its device
//! files exist; it never falls back to `sim` on its own.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer, SigningKey};
use zeroize::Zeroizing;

use crate::evidence::{Backend, Evidence, EvidenceBody, EvidenceClaims};

pub mod gramine;
pub mod tsm;

/// The message an Ed25519 sim platform key signs.
pub(crate) fn sim_signed_message(report_data: &[u8; 64], debug: bool) -> Vec<u8> {
    let mut m = Vec::with_capacity(100);
    m.extend_from_slice(b"aorta-sim-evidence v1\0");
    m.extend_from_slice(report_data);
    m.push(u8::from(debug));
    m
}

/// Why evidence could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The OS random generator failed.
    #[error("the operating system's random generator failed: {0}")]
    Random(#[from] aorta_base::random::RandomError),
    /// A TEE interface file could not be used.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The directory does not behave like the expected kernel/Gramine interface.
    #[error("{path} is not a usable {interface} interface: {detail}")]
    NotAnInterface {
        /// Interface name.
        interface: &'static str,
        /// Where we looked.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// Someone else wrote to the configfs-tsm entry while we used it.
    #[error(
        "configfs-tsm report {path} changed under us (generation {found}, expected {expected}); retry"
    )]
    GenerationRace {
        /// The entry.
        path: PathBuf,
        /// Expected generation.
        expected: u64,
        /// Found generation.
        found: u64,
    },
    /// The TEE produced a report for a different provider than requested.
    #[error("configfs-tsm provider is {found:?}, expected {expected:?}")]
    WrongProvider {
        /// Provider expected for the backend.
        expected: &'static str,
        /// Provider reported.
        found: String,
    },
    /// A backend file (platform key, collateral) is malformed.
    #[error("{path}: {detail}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The claims name another backend than this producer.
    #[error("claims are for backend {claims}, this producer is {producer}")]
    BackendMismatch {
        /// Backend in the claims.
        claims: Backend,
        /// This producer's backend.
        producer: Backend,
    },
    /// `auto` found no TEE.
    #[error(
        "no TEE interface found (looked for {dev}/attestation/quote and {sys}/kernel/config/tsm/report); \
         choose --backend sim explicitly for a NOT hardware-protected development worker"
    )]
    NoTee {
        /// The /dev root searched.
        dev: String,
        /// The /sys root searched.
        sys: String,
    },
}

/// An evidence producer.
pub trait Attester {
    /// The backend this producer speaks for.
    fn backend(&self) -> Backend;
    /// Produces evidence over `claims` (whose backend must be [`Attester::backend`]).
    fn attest(&self, claims: EvidenceClaims) -> Result<Evidence, AttestError>;
}

fn check_backend(claims: &EvidenceClaims, producer: Backend) -> Result<(), AttestError> {
    if claims.backend != producer {
        return Err(AttestError::BackendMismatch {
            claims: claims.backend,
            producer,
        });
    }
    Ok(())
}

/// The `sim` backend: evidence signed by a local Ed25519 platform key.
///
/// **Not hardware-protected**: whoever owns the machine owns the platform key
/// and the worker's memory. It exists so that development and CI exercise the
/// same protocol as real TEEs.
pub struct SimAttester {
    key: SigningKey,
    debug: bool,
}

impl std::fmt::Debug for SimAttester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SimAttester {{ platform_key: {}, debug: {} }}",
            aorta_base::hex::encode(&self.platform_public_key()),
            self.debug
        )
    }
}

impl SimAttester {
    /// A new random platform key.
    pub fn generate() -> Result<Self, AttestError> {
        let seed = aorta_base::random::secret::<32>()?;
        Ok(Self::from_seed(&seed))
    }

    /// A platform key from a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
            debug: false,
        }
    }

    /// Marks the simulated TEE as running in debug mode (verifiers refuse it).
    pub fn with_debug(mut self, debug: bool) -> Self {
        self.debug = debug;
        self
    }

    /// Loads the platform key seed from `path` (32 raw bytes), creating it
    /// with mode 0600 when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, AttestError> {
        match std::fs::read(path) {
            Ok(b) => {
                let b = Zeroizing::new(b);
                let seed: [u8; 32] = b.as_slice().try_into().map_err(|_| AttestError::BadFile {
                    path: path.to_owned(),
                    detail: format!(
                        "a sim platform key file holds 32 bytes, this one {}",
                        b.len()
                    ),
                })?;
                let seed = Zeroizing::new(seed);
                Ok(Self::from_seed(&seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let me = Self::generate()?;
                aorta_base::fs::write_private_new(path, me.key.as_bytes()).map_err(|e| {
                    AttestError::Io {
                        op: "create",
                        path: path.to_owned(),
                        source: std::io::Error::other(e),
                    }
                })?;
                Ok(me)
            }
            Err(source) => Err(AttestError::Io {
                op: "read",
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// The platform's Ed25519 public key (what a policy lists in `sim_platform_keys`).
    pub fn platform_public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }
}

impl Attester for SimAttester {
    fn backend(&self) -> Backend {
        Backend::Sim
    }

    fn attest(&self, claims: EvidenceClaims) -> Result<Evidence, AttestError> {
        check_backend(&claims, Backend::Sim)?;
        tracing::warn!(target: "aorta::attest", "{}", crate::SIM_WARNING);
        let msg = sim_signed_message(&claims.report_data(), self.debug);
        let signature = self.key.sign(&msg).to_bytes();
        Ok(Evidence {
            claims,
            body: EvidenceBody::Sim {
                platform_key: self.platform_public_key(),
                debug: self.debug,
                signature,
            },
        })
    }
}

/// Where [`detect`] looks; `/` in production, a tempdir in tests.
#[derive(Clone, Debug)]
pub struct SystemRoots {
    /// The `/sys` directory.
    pub sys: PathBuf,
    /// The `/dev` directory.
    pub dev: PathBuf,
}

impl Default for SystemRoots {
    fn default() -> Self {
        Self {
            sys: PathBuf::from("/sys"),
            dev: PathBuf::from("/dev"),
        }
    }
}

impl SystemRoots {
    /// The configfs-tsm report directory.
    pub fn tsm_report_dir(&self) -> PathBuf {
        self.sys.join("kernel/config/tsm/report")
    }

    /// Gramine's attestation pseudo-directory.
    pub fn gramine_dir(&self) -> PathBuf {
        self.dev.join("attestation")
    }
}

/// Picks the hardware backend whose interface exists: Gramine's
/// `/dev/attestation/quote` → `sgx-gramine`; configfs-tsm plus
/// `/dev/tdx_guest` → `tdx`; configfs-tsm plus `/dev/sev-guest` → `sev-snp`.
/// Never returns `sim`.
pub fn detect(roots: &SystemRoots) -> Result<Backend, AttestError> {
    if roots.gramine_dir().join("quote").exists() {
        return Ok(Backend::SgxGramine);
    }
    if roots.tsm_report_dir().is_dir() {
        if roots.dev.join("tdx_guest").exists() {
            return Ok(Backend::Tdx);
        }
        if roots.dev.join("sev-guest").exists() {
            return Ok(Backend::SevSnp);
        }
    }
    Err(AttestError::NoTee {
        dev: roots.dev.display().to_string(),
        sys: roots.sys.display().to_string(),
    })
}

/// Builds the producer for a hardware `backend` (`sim` is built with
/// [`SimAttester`] since it needs a platform key). `collateral` is the Intel
/// collateral JSON the host fetched for DCAP quotes (may be empty; the
/// verifier then refuses with `MissingCollateral`).
pub fn hardware_attester(
    backend: Backend,
    roots: &SystemRoots,
    collateral: Vec<u8>,
) -> Option<Box<dyn Attester + Send + Sync>> {
    match backend {
        Backend::Tdx | Backend::SevSnp => Some(Box::new(tsm::TsmAttester::new(
            roots.tsm_report_dir(),
            backend,
            collateral,
        ))),
        Backend::SgxGramine => Some(Box::new(gramine::GramineAttester::new(
            roots.gramine_dir(),
            collateral,
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_prefers_present_interfaces_and_never_sim() {
        let d = tempfile::tempdir().unwrap();
        let roots = SystemRoots {
            sys: d.path().join("sys"),
            dev: d.path().join("dev"),
        };
        assert!(matches!(detect(&roots), Err(AttestError::NoTee { .. })));
        std::fs::create_dir_all(roots.tsm_report_dir()).unwrap();
        // configfs-tsm without a guest device: still no TEE.
        assert!(matches!(detect(&roots), Err(AttestError::NoTee { .. })));
        std::fs::create_dir_all(&roots.dev).unwrap();
        std::fs::write(roots.dev.join("sev-guest"), b"").unwrap();
        assert_eq!(detect(&roots).unwrap(), Backend::SevSnp);
        std::fs::write(roots.dev.join("tdx_guest"), b"").unwrap();
        assert_eq!(detect(&roots).unwrap(), Backend::Tdx);
        std::fs::create_dir_all(roots.gramine_dir()).unwrap();
        std::fs::write(roots.gramine_dir().join("quote"), b"").unwrap();
        assert_eq!(detect(&roots).unwrap(), Backend::SgxGramine);
    }

    #[test]
    fn sim_key_file_is_created_private_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k/platform.key");
        let a = SimAttester::load_or_create(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = SimAttester::load_or_create(&p).unwrap();
        assert_eq!(a.platform_public_key(), b.platform_public_key());
        std::fs::write(&p, b"short").unwrap();
        assert!(matches!(
            SimAttester::load_or_create(&p),
            Err(AttestError::BadFile { .. })
        ));
    }
}
