//! Intel SGX evidence through Gramine's `/dev/attestation` pseudo-files.
//!
//! Protocol (Gramine ≥ 1.0, "attestation" docs): optionally read
//! `attestation_type` (`dcap` for DCAP quotes; `none` means the manifest did
//! not enable remote attestation); write the 64-byte report data to
//! `user_report_data`; read `quote` — Gramine asks the quoting enclave for an
//! SGX quote whose report data is what we wrote.

use std::path::PathBuf;

use super::{AttestError, Attester, check_backend};
use crate::evidence::{Backend, Evidence, EvidenceBody, EvidenceClaims};

/// The Gramine `/dev/attestation` producer.
#[derive(Debug)]
pub struct GramineAttester {
    dir: PathBuf,
    collateral: Vec<u8>,
}

impl GramineAttester {
    /// A producer using `dir` (normally `/dev/attestation`); `collateral` is
    /// the Intel collateral JSON attached to the evidence.
    pub fn new(dir: PathBuf, collateral: Vec<u8>) -> Self {
        Self { dir, collateral }
    }
}

impl Attester for GramineAttester {
    fn backend(&self) -> Backend {
        Backend::SgxGramine
    }

    fn attest(&self, claims: EvidenceClaims) -> Result<Evidence, AttestError> {
        check_backend(&claims, Backend::SgxGramine)?;
        let ty = self.dir.join("attestation_type");
        match std::fs::read_to_string(&ty) {
            Ok(s) if s.trim() == "dcap" => {}
            Ok(s) => {
                return Err(AttestError::NotAnInterface {
                    interface: "Gramine /dev/attestation",
                    path: ty,
                    detail: format!(
                        "attestation type is {:?}; set sgx.remote_attestation = \"dcap\" in the manifest",
                        s.trim()
                    ),
                });
            }
            // Older Gramine versions have no attestation_type file.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(AttestError::Io {
                    op: "read",
                    path: ty,
                    source,
                });
            }
        }
        let urd = self.dir.join("user_report_data");
        std::fs::write(&urd, claims.report_data()).map_err(|source| AttestError::Io {
            op: "write",
            path: urd,
            source,
        })?;
        let qp = self.dir.join("quote");
        let quote = std::fs::read(&qp).map_err(|source| AttestError::Io {
            op: "read",
            path: qp.clone(),
            source,
        })?;
        if quote.is_empty() {
            return Err(AttestError::NotAnInterface {
                interface: "Gramine /dev/attestation",
                path: qp,
                detail: "empty quote".into(),
            });
        }
        Ok(Evidence {
            claims,
            body: EvidenceBody::SgxGramine {
                quote,
                collateral: self.collateral.clone(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{Measurement, Nonce};

    fn claims() -> EvidenceClaims {
        EvidenceClaims {
            backend: Backend::SgxGramine,
            nonce: Nonce([1; 32]),
            worker_public_key: [2; 32],
            app_measurement: Measurement([3; 32]),
            issued_at: 9,
        }
    }

    #[test]
    fn writes_report_data_and_reads_quote() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("attestation_type"), b"dcap\n").unwrap();
        std::fs::write(t.path().join("quote"), b"SGXQUOTE").unwrap();
        let a = GramineAttester::new(t.path().into(), b"{}".to_vec());
        let ev = a.attest(claims()).unwrap();
        assert_eq!(
            std::fs::read(t.path().join("user_report_data")).unwrap(),
            claims().report_data()
        );
        assert_eq!(
            ev.body,
            EvidenceBody::SgxGramine {
                quote: b"SGXQUOTE".to_vec(),
                collateral: b"{}".to_vec()
            }
        );
    }

    #[test]
    fn refuses_non_dcap_and_missing_files() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("attestation_type"), b"none").unwrap();
        std::fs::write(t.path().join("quote"), b"Q").unwrap();
        let a = GramineAttester::new(t.path().into(), vec![]);
        assert!(matches!(
            a.attest(claims()),
            Err(AttestError::NotAnInterface { .. })
        ));
        let a = GramineAttester::new(t.path().join("missing"), vec![]);
        assert!(matches!(a.attest(claims()), Err(AttestError::Io { .. })));
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("quote"), b"").unwrap();
        let a = GramineAttester::new(t.path().into(), vec![]);
        assert!(matches!(
            a.attest(claims()),
            Err(AttestError::NotAnInterface { .. })
        ));
    }
}
