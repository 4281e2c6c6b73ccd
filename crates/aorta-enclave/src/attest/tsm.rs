//! Intel TDX and AMD SEV-SNP evidence through Linux `configfs-tsm`
//! (kernel ≥ 6.7, `Documentation/ABI/testing/configfs-tsm-report`).
//!
//! The file protocol, written here directly:
//!
//! 1. `mkdir /sys/kernel/config/tsm/report/<unique name>` — the kernel fills
//!    the new directory with attribute files;
//! 2. read `generation` (a decimal counter the kernel bumps on every write);
//! 3. write the 64-byte report data to `inblob` (generation + 1);
//! 4. read `outblob` (the TDX quote or SNP report; generating it happens on
//!    this read), `provider` (`tdx_guest` / `sev_guest`) and, if present,
//!    `auxblob` (SNP certificate table);
//! 5. read `generation` again: if it is not exactly one more than in step 2,
//!    another process wrote to the entry between our write and our read and
//!    the outblob may answer *their* inblob — refuse ([`AttestError::GenerationRace`]);
//! 6. `rmdir` the entry.

use std::path::{Path, PathBuf};

use super::{AttestError, Attester, check_backend};
use aorta_base::hex::encode as hex;

use crate::evidence::{Backend, Evidence, EvidenceBody, EvidenceClaims};

/// What a configfs-tsm entry returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TsmReport {
    /// `provider`, trimmed (`tdx_guest`, `sev_guest`).
    pub provider: String,
    /// `outblob`: the quote (TDX) or attestation report (SNP).
    pub outblob: Vec<u8>,
    /// `auxblob` (SNP certificates); empty when absent.
    pub auxblob: Vec<u8>,
    /// The generation the report belongs to.
    pub generation: u64,
}

/// One report entry directory, driven step by step.
#[derive(Debug)]
pub struct TsmEntry {
    dir: PathBuf,
    expected_generation: u64,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> AttestError + 'a {
    move |source| AttestError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn read_generation(dir: &Path) -> Result<u64, AttestError> {
    let p = dir.join("generation");
    let s = std::fs::read_to_string(&p).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            AttestError::NotAnInterface {
                interface: "configfs-tsm",
                path: dir.to_owned(),
                detail: "no `generation` attribute in the report entry".into(),
            }
        } else {
            AttestError::Io {
                op: "read",
                path: p.clone(),
                source: e,
            }
        }
    })?;
    s.trim().parse().map_err(|_| AttestError::NotAnInterface {
        interface: "configfs-tsm",
        path: p,
        detail: format!("generation is not a number: {:?}", s.trim()),
    })
}

impl TsmEntry {
    /// Creates a fresh entry (`mkdir`) under the report directory and opens it.
    pub fn create(report_root: &Path) -> Result<Self, AttestError> {
        let rnd = aorta_base::random::array::<8>()?;
        let dir = report_root.join(format!("aorta-{}-{}", std::process::id(), hex(&rnd)));
        std::fs::create_dir(&dir).map_err(io_err("mkdir", &dir))?;
        match Self::open(&dir) {
            Ok(e) => Ok(e),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    /// Opens an existing entry and records its current generation.
    pub fn open(dir: &Path) -> Result<Self, AttestError> {
        let expected_generation = read_generation(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            expected_generation,
        })
    }

    /// The entry's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the 64-byte report data to `inblob`.
    pub fn write_inblob(&mut self, report_data: &[u8; 64]) -> Result<(), AttestError> {
        let p = self.dir.join("inblob");
        std::fs::write(&p, report_data).map_err(io_err("write", &p))?;
        self.expected_generation = self.expected_generation.saturating_add(1);
        Ok(())
    }

    /// Reads `outblob`, `provider`, `auxblob`, then checks `generation`.
    pub fn collect(&self) -> Result<TsmReport, AttestError> {
        let p = self.dir.join("outblob");
        let outblob = std::fs::read(&p).map_err(io_err("read", &p))?;
        let p = self.dir.join("provider");
        let provider = std::fs::read_to_string(&p)
            .map_err(io_err("read", &p))?
            .trim()
            .to_owned();
        let p = self.dir.join("auxblob");
        let auxblob = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err("read", &p)(e)),
        };
        let generation = read_generation(&self.dir)?;
        if generation != self.expected_generation {
            return Err(AttestError::GenerationRace {
                path: self.dir.clone(),
                expected: self.expected_generation,
                found: generation,
            });
        }
        if outblob.is_empty() {
            return Err(AttestError::NotAnInterface {
                interface: "configfs-tsm",
                path: self.dir.clone(),
                detail: "empty outblob".into(),
            });
        }
        Ok(TsmReport {
            provider,
            outblob,
            auxblob,
            generation,
        })
    }

    /// Removes the entry (`rmdir`).
    pub fn remove(self) -> Result<(), AttestError> {
        std::fs::remove_dir(&self.dir).map_err(io_err("rmdir", &self.dir))
    }
}

/// The configfs-tsm producer for `tdx` or `sev-snp`.
#[derive(Debug)]
pub struct TsmAttester {
    report_root: PathBuf,
    backend: Backend,
    collateral: Vec<u8>,
}

impl TsmAttester {
    /// A producer using `report_root` (normally `/sys/kernel/config/tsm/report`).
    /// `collateral` is attached to TDX evidence (Intel collateral JSON).
    pub fn new(report_root: PathBuf, backend: Backend, collateral: Vec<u8>) -> Self {
        Self {
            report_root,
            backend,
            collateral,
        }
    }

    /// The provider name the kernel reports for this backend.
    pub fn expected_provider(&self) -> &'static str {
        match self.backend {
            Backend::SevSnp => "sev_guest",
            _ => "tdx_guest",
        }
    }

    /// Runs steps 2–5 on an opened entry and builds the evidence.
    pub fn attest_with_entry(
        &self,
        entry: &mut TsmEntry,
        claims: EvidenceClaims,
    ) -> Result<Evidence, AttestError> {
        check_backend(&claims, self.backend)?;
        entry.write_inblob(&claims.report_data())?;
        let rep = entry.collect()?;
        if rep.provider != self.expected_provider() {
            return Err(AttestError::WrongProvider {
                expected: self.expected_provider(),
                found: rep.provider,
            });
        }
        let body = match self.backend {
            Backend::SevSnp => EvidenceBody::SevSnp {
                report: rep.outblob,
                certs: rep.auxblob,
            },
            _ => EvidenceBody::Tdx {
                quote: rep.outblob,
                collateral: self.collateral.clone(),
            },
        };
        Ok(Evidence { claims, body })
    }
}

impl Attester for TsmAttester {
    fn backend(&self) -> Backend {
        self.backend
    }

    fn attest(&self, claims: EvidenceClaims) -> Result<Evidence, AttestError> {
        check_backend(&claims, self.backend)?;
        let mut entry = TsmEntry::create(&self.report_root)?;
        let res = self.attest_with_entry(&mut entry, claims);
        let dir = entry.dir().to_owned();
        if let Err(e) = entry.remove() {
            tracing::warn!(target: "aorta::attest", entry = %dir.display(), error = %e, "could not remove configfs-tsm entry");
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{Measurement, Nonce};

    fn claims(backend: Backend) -> EvidenceClaims {
        EvidenceClaims {
            backend,
            nonce: Nonce([4; 32]),
            worker_public_key: [5; 32],
            app_measurement: Measurement([6; 32]),
            issued_at: 1,
        }
    }

    /// A fake entry as the kernel would present it right after `mkdir`.
    fn fake_entry(root: &Path, generation: u64, provider: &str) -> PathBuf {
        let dir = root.join("entry");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("generation"), format!("{generation}\n")).unwrap();
        std::fs::write(dir.join("provider"), format!("{provider}\n")).unwrap();
        dir
    }

    /// Plays the kernel's part after `inblob` was written: checks the
    /// inblob, fills outblob/auxblob and bumps generation by `bump`.
    fn kernel_answers(dir: &Path, expect_inblob: &[u8; 64], generation: u64, aux: bool) {
        assert_eq!(std::fs::read(dir.join("inblob")).unwrap(), expect_inblob);
        let mut quote = b"QUOTE:".to_vec();
        quote.extend_from_slice(expect_inblob);
        std::fs::write(dir.join("outblob"), quote).unwrap();
        if aux {
            std::fs::write(dir.join("auxblob"), b"CERTS").unwrap();
        }
        std::fs::write(dir.join("generation"), format!("{generation}\n")).unwrap();
    }

    #[test]
    fn tdx_file_protocol_binds_report_data() {
        let t = tempfile::tempdir().unwrap();
        let dir = fake_entry(t.path(), 7, "tdx_guest");
        let att = TsmAttester::new(t.path().into(), Backend::Tdx, b"{}".to_vec());
        let c = claims(Backend::Tdx);
        let mut entry = TsmEntry::open(&dir).unwrap();
        entry.write_inblob(&c.report_data()).unwrap();
        kernel_answers(&dir, &c.report_data(), 8, false);
        let rep = entry.collect().unwrap();
        assert_eq!(rep.generation, 8);
        assert_eq!(&rep.outblob[6..], &c.report_data());
        // And the whole attest_with_entry path on a fresh fake entry.
        let t2 = tempfile::tempdir().unwrap();
        let dir2 = fake_entry(t2.path(), 0, "tdx_guest");
        let mut e2 = TsmEntry::open(&dir2).unwrap();
        // Without the kernel's answer, outblob is missing → typed I/O error, not a panic.
        let r = att.attest_with_entry(&mut e2, c);
        assert!(matches!(r, Err(AttestError::Io { op: "read", .. })));
    }

    #[test]
    fn generation_race_is_detected() {
        let t = tempfile::tempdir().unwrap();
        let dir = fake_entry(t.path(), 3, "tdx_guest");
        let c = claims(Backend::Tdx);
        let mut entry = TsmEntry::open(&dir).unwrap();
        entry.write_inblob(&c.report_data()).unwrap();
        // Someone else wrote inblob too: generation jumped by 2.
        kernel_answers(&dir, &c.report_data(), 5, false);
        assert!(matches!(
            entry.collect(),
            Err(AttestError::GenerationRace {
                expected: 4,
                found: 5,
                ..
            })
        ));
    }

    #[test]
    fn snp_reads_auxblob_and_checks_provider() {
        let t = tempfile::tempdir().unwrap();
        let dir = fake_entry(t.path(), 0, "sev_guest");
        let att = TsmAttester::new(t.path().into(), Backend::SevSnp, vec![]);
        let c = claims(Backend::SevSnp);
        let mut entry = TsmEntry::open(&dir).unwrap();
        // Pre-answer as the kernel (the file protocol only reads after writing).
        let rd = c.report_data();
        std::fs::write(dir.join("inblob"), rd).unwrap();
        kernel_answers(&dir, &rd, 1, true);
        let ev = att.attest_with_entry(&mut entry, c).unwrap();
        match ev.body {
            EvidenceBody::SevSnp { report, certs } => {
                assert_eq!(&report[6..], &rd);
                assert_eq!(certs, b"CERTS");
            }
            other => panic!("{other:?}"),
        }
        // A TDX producer on an SNP entry refuses.
        let t = tempfile::tempdir().unwrap();
        let dir = fake_entry(t.path(), 0, "sev_guest");
        let mut entry = TsmEntry::open(&dir).unwrap();
        std::fs::write(dir.join("inblob"), rd).unwrap();
        kernel_answers(&dir, &rd, 1, false);
        let tdx = TsmAttester::new(t.path().into(), Backend::Tdx, vec![]);
        let mut c2 = c;
        c2.backend = Backend::Tdx;
        // inblob content differs now (different backend in report data) but
        // the provider check fires first on collect.
        assert!(matches!(
            tdx.attest_with_entry(&mut entry, c2),
            Err(AttestError::WrongProvider { .. })
        ));
    }

    #[test]
    fn create_on_a_plain_directory_is_not_configfs() {
        let t = tempfile::tempdir().unwrap();
        let att = TsmAttester::new(t.path().into(), Backend::Tdx, vec![]);
        // mkdir works in a plain directory, but no attribute files appear.
        let err = att.attest(claims(Backend::Tdx)).unwrap_err();
        assert!(matches!(err, AttestError::NotAnInterface { .. }), "{err}");
        // The entry was cleaned up.
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
        // Missing report root: typed I/O error.
        let att = TsmAttester::new(t.path().join("nope"), Backend::Tdx, vec![]);
        assert!(matches!(
            att.attest(claims(Backend::Tdx)),
            Err(AttestError::Io { op: "mkdir", .. })
        ));
        // Claims for another backend are refused before touching files.
        assert!(matches!(
            att.attest(claims(Backend::Sim)),
            Err(AttestError::BackendMismatch { .. })
        ));
    }

    #[test]
    fn garbage_generation_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let dir = fake_entry(t.path(), 0, "tdx_guest");
        std::fs::write(dir.join("generation"), b"zzz").unwrap();
        assert!(matches!(
            TsmEntry::open(&dir),
            Err(AttestError::NotAnInterface { .. })
        ));
    }
}
