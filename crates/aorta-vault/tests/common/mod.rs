//! Helpers shared by the vault's integration tests: the in-process gate,
//! a recipient recovering through it, vault setup with a fixed clock,
//! institution certificate terms and the deterministic generator of the
//! test vectors. Each test file uses some of them.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a failing unwrap, expect or panic is the test failing"
)]

use std::convert::Infallible;
use std::path::Path;

use aorta_crypto::selective::{KdfParams, Mode, ProtectOptions, RecordId};
use aorta_vault::gate::GateTransport;
use aorta_vault::grant::{Identity, RecipientKey};
use aorta_vault::institution::{CertTerms, InstitutionError, Role};
use aorta_vault::rules::{GrantUse, Recipient, Recovered, ShareOptions, Shared};
use aorta_vault::{EhrVault, VaultError};
use sha2::{Digest, Sha256};

/// The fixed time of the gate and rules tests.
pub const T0: u64 = 1_700_000_000;
/// The fixed time of the institution and role tests.
pub const NOW: u64 = 1_800_000_000;
pub const YEAR: u64 = 365 * 86_400;

pub fn at_t0() -> u64 {
    T0
}

/// Protection in `mode` with the fast (insecure) test KDF.
pub fn opts_for(mode: Mode) -> ProtectOptions {
    ProtectOptions {
        mode,
        kdf: KdfParams::INSECURE_TEST,
        ..Default::default()
    }
}

/// Strong-mode protection with the fast (insecure) test KDF.
pub fn opts() -> ProtectOptions {
    opts_for(Mode::Strong)
}

/// The patient's vault answering as its own gate, in process.
pub struct Direct<'a>(pub &'a EhrVault);

impl GateTransport for Direct<'_> {
    fn exchange(&self, _url: &str, request: &[u8]) -> Result<Vec<u8>, VaultError> {
        Ok(self.0.answer_release(request).1)
    }
}

/// A recipient recovers through `v`'s gate (and `v`'s public stores).
pub fn rwg(
    v: &EhrVault,
    rid: &RecordId,
    grant: &[u8],
    who: &Identity,
) -> Result<Recovered, VaultError> {
    let patient = v.patient_key().unwrap();
    let u = GrantUse {
        grant,
        identity: who,
        patient: &patient,
        gate_url: None,
    };
    v.recover_with_grant(rid, &u, &Direct(v))
}

/// `v` shares `rid` (passphrase `pw`) with `who`, uncertified, default terms.
pub fn share_to(v: &EhrVault, rid: &RecordId, who: RecipientKey) -> Shared {
    share_with(v, rid, who, &ShareOptions::default())
}

/// `v` shares `rid` (passphrase `pw`) with `who`, uncertified, on `terms`.
pub fn share_with(v: &EhrVault, rid: &RecordId, who: RecipientKey, terms: &ShareOptions) -> Shared {
    v.share(rid, b"pw", &Recipient::Uncertified(who), terms)
        .unwrap()
}

/// A recipient's vault at `dir` whose `vault.json` names only the public
/// store of the patient's vault at `patient` (its private store is its own,
/// empty), on `clock`.
pub fn public_only(patient: &Path, dir: &Path, clock: fn() -> u64) -> EhrVault {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("vault.json"),
        format!(
            r#"{{"public":[{{"type":"local","path":"{}"}}],"private":{{"type":"local","path":"mine"}}}}"#,
            patient.join("cloud").display()
        ),
    )
    .unwrap();
    EhrVault::open_existing(dir).unwrap().with_clock(clock)
}

/// The terms of Dr. Ada Example's certificate, valid around [`NOW`].
pub fn terms(doctor: RecipientKey, role: Role) -> CertTerms<'static> {
    CertTerms {
        doctor,
        name: "Dr. Ada Example",
        staff_id: "S-0042",
        role,
        not_before: NOW - 10,
        not_after: NOW + YEAR,
    }
}

/// The institution refusal inside `e` (a test failure if it is another).
pub fn inst(e: VaultError) -> InstitutionError {
    match e {
        VaultError::Institution(i) => i,
        other => panic!("expected an institution refusal, got {other:?}"),
    }
}

/// A predictable generator for vectors only: SHA-256(seed ‖ counter) blocks.
pub struct VectorRng {
    seed: [u8; 32],
    counter: u64,
    buf: Vec<u8>,
}

impl VectorRng {
    pub fn new(seed: [u8; 32]) -> Self {
        Self {
            seed,
            counter: 0,
            buf: Vec::new(),
        }
    }
    fn byte(&mut self) -> u8 {
        if self.buf.is_empty() {
            let mut h = Sha256::new();
            h.update(self.seed);
            h.update(self.counter.to_be_bytes());
            self.counter += 1;
            self.buf = h.finalize().to_vec();
            self.buf.reverse();
        }
        self.buf.pop().unwrap()
    }
}

impl hpke::rand_core::TryRng for VectorRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for d in dst {
            *d = self.byte();
        }
        Ok(())
    }
}

impl hpke::rand_core::TryCryptoRng for VectorRng {}
