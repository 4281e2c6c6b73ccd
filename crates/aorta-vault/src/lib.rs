//! # aorta-vault — the patient-controlled health-record vault
//!
//! Owns where the two fragments of a selectively encrypted record
//! ([`aorta_crypto::selective`]) live, who may combine them, and the rules
//! every front-end obeys:
//!
//! * [`rules`]: [`EhrVault`], the vault's operations with their checks and
//!   audit entries built in — protect, share (de-identification and the
//!   7-day default validity), recover with the passphrase or a grant
//!   (revocation, expiry and grant/record match checked here, not by the
//!   caller), revoke, verify the audit log;
//! * [`store`]: dispersion through `object_store` — the public fragment to the
//!   "cloud" store(s) (local directories by default, S3 by configuration),
//!   the private fragment to the device's local store, an optional backup of
//!   the (already encrypted) private fragment to a more trusted store;
//! * [`integrity`]: the HMAC tag on every stored public replica (`AOSI`)
//!   and shard, under a key only the private fragment yields, and what
//!   recovery reports about stores whose copy failed;
//! * [`dispersal`]: optional k-of-n Reed-Solomon dispersal of the public
//!   fragment over n stores, so that any n − k stores may be lost;
//! * [`grant`]: recipients' X25519 identities and the first (`AOSG` v1)
//!   grants, which carried the recovery material (read for tests and
//!   vectors, no longer issued nor accepted);
//! * [`gate`]: sharing (paper Fig. 5) through the patient's release gate —
//!   `AOSG` v2 grants sealed in HPKE auth mode by the patient vault's key,
//!   carrying no recovery material; the gate request/response protocol; the
//!   release decision (revocation, not-before, expiry with the gate's
//!   clock); the bounded HTTP server and client (`docs/vault-sharing.md`);
//! * [`institution`]: institutions and roles — institution keys that the
//!   patient pins, doctor certificates (`AODC`, doctor or responsible
//!   doctor), break-glass emergency requests signed by the institution
//!   (`AOER`, time-boxed, replay-checked);
//! * [`audit`]: an append-only audit log, MACed under the patient's key and
//!   anchored in the private store (and in grants), of every protection,
//!   grant, use and revocation, verified on demand;
//! * [`deid`]: de-identification of a DICOM header (PS3.15 Basic Application
//!   Level Confidentiality Profile, the attributes aorta handles) before it is
//!   shared;
//! * [`inputs`]: what every front-end reads the same way — passphrase files,
//!   identity files (never overwritten), recipient keys inline or in a file,
//!   grant validities (`7d`), and the entropy report of `aorta ehr entropy`.
//!
//! Main types: [`EhrVault`] (what a front-end calls), [`store::Vault`] (the
//! stores beneath it: put and get fragments, record revocations), [`store::VaultConfig`] (`vault.json`),
//! [`grant::Identity`] / [`grant::RecipientKey`] / [`grant::GrantHeader`],
//! [`audit::AuditLog`], [`dispersal::Dispersal`], [`VaultError`] with its
//! [`Blame`]. The byte formats (`AOSI` replicas, `AOSD` shards, `AOSG` grants,
//! `AOSA` audit anchors) decode with
//! [`aorta_base::codec`].
//!
//! It must never: implement cryptography itself (HPKE, SHA-256,
//! Reed-Solomon come from audited crates; selective encryption from
//! `aorta-crypto`), hold a passphrase beyond passing it to `aorta-crypto`,
//! log or `Debug`-print secrets, return recovered bytes that failed a check,
//! or parse command lines and print (front-ends do that).
//!
//! ```no_run
//! use aorta_vault::EhrVault;
//! let vault = EhrVault::open(std::path::Path::new("/tmp/my-vault")).unwrap();
//! let id = vault.protect(b"record", b"passphrase", &Default::default()).unwrap();
//! let back = vault.recover_with_passphrase(&id, b"passphrase").unwrap();
//! # let _ = back;
//! ```
#![deny(missing_docs)]

pub mod audit;
pub mod deid;
pub mod dispersal;
pub mod error;
pub mod figure;
mod format;
pub mod gate;
pub mod grant;
pub mod inputs;
pub mod institution;
pub mod integrity;
pub mod rules;
pub mod store;

pub use error::{Blame, VaultError};
pub use rules::EhrVault;

/// Decode → re-encode → compare oracles, one per vault byte format, for
/// fuzzers and the mutation tests (not a stable API).
#[doc(hidden)]
pub mod fuzzing {
    aorta_base::fuzz_entry_points! {
        /// `AOSD` dispersal shard.
        shard: crate::dispersal::Shard<'_>;

        /// `AOSA` audit anchor (MAC not checked).
        audit_anchor: crate::audit::AuditAnchor;

        /// `AOSI` public replica (tag not checked).
        replica: crate::integrity::Replica<'_>;

        /// `AOSG` grant (header, encapsulated key, sealed material; not opened).
        grant: crate::grant::Grant<'_>;

        /// The 88-byte `AOSG` grant header alone.
        grant_header: crate::grant::GrantHeader;

        /// `AODC` doctor certificate (decoded, not verified).
        doctor_certificate: crate::institution::DoctorCertificate;

        /// `AOER` break-glass emergency request (decoded, not verified).
        emergency_request: crate::institution::EmergencyRequest;

        /// `AOSG` v2 gate grant (header, encapsulated key, sealed ticket; not opened).
        gate_grant: crate::gate::GrantV2<'_>;

        /// `AOGQ` gate request.
        gate_request: crate::gate::Request;

        /// `AOGQ` kind 2/3 request (responsible doctor, break-glass; proof not checked).
        gate_role_request: crate::gate::roles::RoleRequest<'_>;

        /// `AOGR` gate response (not opened).
        gate_response: crate::gate::Response<'_>;
    }
}
