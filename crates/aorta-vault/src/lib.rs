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
//! * [`dispersal`]: optional k-of-n Reed-Solomon dispersal of the public
//!   fragment over n stores, so that any n − k stores may be lost;
//! * [`grant`]: sharing (paper Fig. 5) — recipients' X25519 identities, HPKE
//!   (RFC 9180) grants that wrap a record's recovery material with an expiry,
//!   revocation, standing emergency grants;
//! * [`audit`]: an append-only, hash-chained audit log of every protection,
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
//! [`Blame`]. The byte formats (`AOSD` shards, `AOSG` grants) decode with
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
pub mod grant;
pub mod inputs;
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

        /// `AOSG` grant (header, encapsulated key, sealed material; not opened).
        grant: crate::grant::Grant<'_>;

        /// The 88-byte `AOSG` grant header alone.
        grant_header: crate::grant::GrantHeader;
    }
}
