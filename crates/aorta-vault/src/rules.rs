//! The vault's rules, in one place so that no front-end can skip them:
//! every operation of [`EhrVault`] checks what it must (revocation, expiry,
//! grant/record match, the passphrase) and writes its own audit entry.
//!
//! * [`EhrVault::protect`] disperses a record and logs `protect`;
//! * [`EhrVault::share`] opens the record with the passphrase,
//!   de-identifies its DICOM header unless told not to, applies the default
//!   validity ([`DEFAULT_GRANT_VALIDITY_S`]; standing emergency grants never
//!   expire), seals the grant and logs `grant` or `emergency`;
//! * [`EhrVault::recover_with_passphrase`] logs `recover`;
//! * [`EhrVault::recover_with_grant`] refuses a grant for another record,
//!   a revoked, expired or foreign grant and fragments that fail their
//!   checks, logging `use` on success and `refuse` (with the reason) on a
//!   refusal;
//! * [`EhrVault::revoke`] records the revocation and logs `revoke`;
//! * [`EhrVault::audit_verify`] checks the audit log's MAC chain, head and
//!   anchors.
//!
//! Recovered bytes are returned only after every check passed and the audit
//! entry was written.

use std::path::Path;

use aorta_base::hex::{self, Case};
use aorta_crypto::selective::container::open_private;
use aorta_crypto::selective::{
    MasterKey, Mode, ProtectOptions, Randomness, RecordId, open_private_with_key, protect_with_key,
    recover,
};

use crate::VaultError;
use crate::audit::{AuditAnchor, AuditLog, Entry, Event};
use crate::error::Blame;
use crate::grant::{self, GrantHeader, Identity, NEVER, RecipientKey};
use crate::integrity::StoreFailure;
use crate::store::Vault;

/// How long a grant is valid when the patient names no validity: 7 days.
/// Standing emergency grants default to [`NEVER`].
pub const DEFAULT_GRANT_VALIDITY_S: u64 = 7 * 86_400;

/// What [`EhrVault::share`] tells the patient about a faithful-mode record.
pub const FAITHFUL_GRANT_NOTE: &str = "note: this record uses faithful mode; its grant carries the record key K, \
     which lets the recipient test passphrase guesses offline (strong mode does not)";

/// How to share a record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShareOptions {
    /// Validity in seconds from now; `None`: [`DEFAULT_GRANT_VALIDITY_S`],
    /// or never for an emergency grant.
    pub valid_for_s: Option<u64>,
    /// A standing emergency grant for the responsible doctor.
    pub emergency: bool,
    /// Share the DICOM header as is instead of de-identifying it (the
    /// default is to de-identify).
    pub keep_identifying_header: bool,
}

/// A sealed grant, ready to hand to its recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shared {
    /// Its public header (grant id, expiry, recipient).
    pub header: GrantHeader,
    /// The grant bytes (`AOSG`).
    pub grant: Vec<u8>,
    /// Notes for the patient (faithful mode, a header shared unchanged).
    pub notes: Vec<String>,
}

/// A record recovered after every check passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The recovered record.
    pub bytes: Vec<u8>,
    /// The grant used (hex), `None` for the patient's passphrase.
    pub grant_id: Option<String>,
}

/// Which grant to revoke.
#[derive(Debug, Clone, Copy)]
pub enum RevokeTarget<'a> {
    /// The grant itself (its record is named in the audit entry).
    Grant(&'a [u8]),
    /// The grant id (32 hex digits) printed when it was issued.
    Id(&'a str),
}

/// A vault with its rules: the only way to protect, share, recover and
/// revoke that cannot forget a check or an audit entry.
#[derive(Debug)]
pub struct EhrVault {
    store: Vault,
    log: AuditLog,
    clock: fn() -> u64,
}

impl EhrVault {
    /// Opens (creating if needed) the vault in `dir` (see [`Vault::open`]).
    pub fn open(dir: &Path) -> Result<Self, VaultError> {
        Vault::open(dir).map(Self::new)
    }

    /// Opens an existing vault (see [`Vault::open_existing`]).
    pub fn open_existing(dir: &Path) -> Result<Self, VaultError> {
        Vault::open_existing(dir).map(Self::new)
    }

    /// The rules over an opened store; the audit log is the store's.
    pub fn new(store: Vault) -> Self {
        let log = AuditLog::new(&store.audit_path(), store.device());
        Self {
            store,
            log,
            clock: aorta_base::time::now_s,
        }
    }

    /// Replaces the wall clock (unix seconds) used for issue times, expiry
    /// checks and audit entries: tests and simulations.
    pub fn with_clock(mut self, clock: fn() -> u64) -> Self {
        self.clock = clock;
        self
    }

    /// The underlying stores.
    pub fn store(&self) -> &Vault {
        &self.store
    }

    /// Protects `data` under `passphrase`, disperses both fragments and logs
    /// `protect`. Returns the new record's id.
    pub fn protect(
        &self,
        data: &[u8],
        passphrase: &[u8],
        opts: &ProtectOptions,
    ) -> Result<RecordId, VaultError> {
        // One Argon2id derivation: K protects the record and opens its
        // private fragment again for the integrity key of the public copies.
        let rnd = Randomness::fresh()?;
        let k = MasterKey::derive(passphrase, &rnd.salt, &opts.kdf)?;
        let p = protect_with_key(data, &k, opts, &rnd)?;
        let m = open_private_with_key(&p.private, &k)?;
        self.store.put_record(&p, &m)?;
        self.log.append(
            (self.clock)(),
            Event::Protect,
            &p.record_id.to_hex(),
            None,
            &format!("mode {}", opts.mode.name()),
        )?;
        Ok(p.record_id)
    }

    /// The patient recovers a record with the passphrase; logs `recover`.
    pub fn recover_with_passphrase(
        &self,
        record: &RecordId,
        passphrase: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        self.recover_with_passphrase_reporting(record, passphrase)
            .map(|(bytes, _)| bytes)
    }

    /// [`EhrVault::recover_with_passphrase`], also returning the public
    /// stores whose copy failed (tampered, missing, unreadable) while
    /// another store's copy verified; they are named in the `recover` audit
    /// entry too.
    pub fn recover_with_passphrase_reporting(
        &self,
        record: &RecordId,
        passphrase: &[u8],
    ) -> Result<(Vec<u8>, Vec<StoreFailure>), VaultError> {
        let private = self.store.get_private(record)?;
        let m = open_private(&private, passphrase)?;
        let (public, failures) = self.store.get_public_verified(record, &m)?;
        let bytes = recover(&public, &m)?;
        self.log.append(
            (self.clock)(),
            Event::Recover,
            &record.to_hex(),
            None,
            &failures_detail(&failures),
        )?;
        Ok((bytes, failures))
    }

    /// A recipient recovers `record` with a grant and their identity. The
    /// grant must name `record`, must not be revoked or expired, and must
    /// open with `identity`; the fragments must pass their checks. Logs
    /// `use`, or `refuse` with the reason when a check says no.
    pub fn recover_with_grant(
        &self,
        record: &RecordId,
        grant_bytes: &[u8],
        identity: &Identity,
    ) -> Result<Recovered, VaultError> {
        let h = grant::peek(grant_bytes)?;
        if h.record_id != *record {
            return Err(VaultError::GrantForOtherRecord {
                grant_record: h.record_id.to_hex(),
                record: record.to_hex(),
            });
        }
        let gid = h.grant_hex();
        let checked = || -> Result<Vec<u8>, VaultError> {
            if self.store.is_revoked(&gid)? {
                return Err(VaultError::Revoked {
                    grant_id: gid.clone(),
                });
            }
            let (_, m) = grant::open(grant_bytes, identity, (self.clock)())?;
            let (public, _failed_stores) = self.store.get_public_verified(record, &m)?;
            Ok(recover(&public, &m)?)
        };
        match checked() {
            Ok(bytes) => {
                self.log
                    .append((self.clock)(), Event::Use, &record.to_hex(), Some(&gid), "")?;
                Ok(Recovered {
                    bytes,
                    grant_id: Some(gid),
                })
            }
            Err(e) => {
                if e.blame() == Blame::Refused {
                    self.log.append(
                        (self.clock)(),
                        Event::Refuse,
                        &record.to_hex(),
                        Some(&gid),
                        &e.to_string(),
                    )?;
                }
                Err(e)
            }
        }
    }

    /// Grants `recipient` access to `record`: opens it with `passphrase`,
    /// de-identifies its header unless `opts` says to keep it, seals the
    /// grant with the default or given validity, and logs `grant` or
    /// `emergency`.
    pub fn share(
        &self,
        record: &RecordId,
        passphrase: &[u8],
        recipient: &RecipientKey,
        opts: &ShareOptions,
    ) -> Result<Shared, VaultError> {
        let private = self.store.get_private(record)?;
        let mut m = open_private(&private, passphrase)?;
        let mut notes = Vec::new();
        if m.mode == Mode::Faithful {
            notes.push(FAITHFUL_GRANT_NOTE.to_string());
        }
        if !opts.keep_identifying_header {
            let (head, note) = crate::deid::deidentify_head(&m.head, record)?;
            m.head = head;
            notes.extend(note);
        }
        let now = (self.clock)();
        let expires_at = match (opts.valid_for_s, opts.emergency) {
            (Some(d), _) => now.saturating_add(d),
            (None, true) => NEVER,
            (None, false) => now.saturating_add(DEFAULT_GRANT_VALIDITY_S),
        };
        let (header, bytes) = grant::seal(&m, recipient, now, expires_at, opts.emergency)?;
        let expires = if expires_at == NEVER {
            "never".to_string()
        } else {
            expires_at.to_string()
        };
        self.log.append(
            now,
            if opts.emergency {
                Event::Emergency
            } else {
                Event::Grant
            },
            &record.to_hex(),
            Some(&header.grant_hex()),
            &format!("to {} expires {expires}", recipient.to_text()),
        )?;
        Ok(Shared {
            header,
            grant: bytes,
            notes,
        })
    }

    /// Revokes a grant (from then on [`EhrVault::recover_with_grant`]
    /// refuses it) and logs `revoke`. Returns the grant id (hex).
    pub fn revoke(&self, target: RevokeTarget<'_>) -> Result<String, VaultError> {
        let (gid, record) = match target {
            RevokeTarget::Grant(g) => {
                let h = grant::peek(g)?;
                (h.grant_hex(), h.record_id.to_hex())
            }
            RevokeTarget::Id(id) => {
                let id = id.trim().to_ascii_lowercase();
                hex::decode_array::<16>(&id, Case::Lower).map_err(|_| VaultError::Malformed {
                    what: "grant id",
                    offset: 0,
                    reason: "expected 32 hex digits",
                })?;
                (id, String::new())
            }
        };
        self.store.revoke(&gid)?;
        self.log
            .append((self.clock)(), Event::Revoke, &record, Some(&gid), "")?;
        Ok(gid)
    }

    /// Verifies the audit log: its MAC chain, its head and the anchor in
    /// the private store; returns its entries.
    pub fn audit_verify(&self) -> Result<Vec<Entry>, VaultError> {
        self.log.verify()
    }

    /// [`EhrVault::audit_verify`], and every anchor given (from grants this
    /// vault issued) must be met: deletion, truncation or a log rebuilt
    /// with a fresh key since the anchor was taken are reported.
    pub fn audit_verify_with_anchors(
        &self,
        anchors: &[AuditAnchor],
    ) -> Result<Vec<Entry>, VaultError> {
        self.log.verify_with_anchors(anchors)
    }

    /// The audit log's current anchor (count, chain value, MAC), for a
    /// grant to carry out of the vault.
    pub fn audit_anchor(&self) -> Result<AuditAnchor, VaultError> {
        self.log.anchor()
    }
}

/// The audit detail naming public stores whose copy failed ("" when none).
fn failures_detail(failures: &[StoreFailure]) -> String {
    failures
        .iter()
        .map(|f| format!("public {f}"))
        .collect::<Vec<_>>()
        .join("; ")
}
