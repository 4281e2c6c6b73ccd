//! # aorta-vault — the patient-controlled health-record vault
//!
//! Owns where the two fragments of a selectively encrypted record
//! ([`aorta_crypto::selective`]) live and who may combine them:
//!
//! * [`store`]: dispersion through `object_store` — the public fragment to the
//!   "cloud" store(s) (local directories by default, S3 by configuration),
//!   the private fragment to the device's local store, an optional backup of
//!   the (already encrypted) private fragment to a more trusted store;
//! * [`dispersal`]: optional k-of-n Reed-Solomon dispersal of the public
//!   fragment over n stores, so that any n − k stores may be lost;
//! * [`grant`]: sharing (paper Fig. 5) — recipients' X25519 identities, HPKE
//!   (RFC 9180) grants that wrap a record's recovery material with an expiry,
//!   revocation, standing emergency grants;
//! * [`audit`]: an append-only, hash-chained audit log of every protection,
//!   grant, use and revocation, verified on demand;
//! * [`deid`]: de-identification of a DICOM header (PS3.15 Basic Application
//!   Level Confidentiality Profile, the attributes aorta handles) before it is
//!   shared.
//!
//! Main types: [`store::Vault`] (open a vault directory, put and get
//! fragments, revoke), [`store::VaultConfig`] (`vault.json`),
//! [`grant::Identity`] / [`grant::RecipientKey`] / [`grant::GrantHeader`],
//! [`audit::AuditLog`], [`dispersal::Dispersal`], [`VaultError`].
//!
//! It must never: implement cryptography itself (HPKE, SHA-256,
//! Reed-Solomon come from audited crates; selective encryption from
//! `aorta-crypto`), hold a passphrase beyond passing it to `aorta-crypto`,
//! log or `Debug`-print secrets, or return recovered bytes that failed a
//! check.
//!
//! ```no_run
//! use aorta_vault::store::Vault;
//! let vault = Vault::open(std::path::Path::new("/tmp/my-vault")).unwrap();
//! let rec = aorta_crypto::selective::protect(b"record", b"passphrase", &Default::default()).unwrap();
//! vault.put_record(&rec).unwrap();
//! let public = vault.get_public(&rec.record_id).unwrap();
//! # let _ = public;
//! ```
#![deny(missing_docs)]

pub mod audit;
pub mod deid;

pub mod dispersal;
pub mod error;
pub mod grant;
pub mod store;

pub use error::VaultError;
