//! The vault's rules, in one place so that no front-end can skip them:
//! every operation of [`EhrVault`] checks what it must and writes its own
//! audit entry.
//!
//! * [`EhrVault::protect`] disperses a record, keeps its material for the
//!   gate, and logs `protect`;
//! * [`EhrVault::share`] verifies the recipient's doctor certificate
//!   against the patient's pins with the vault's clock (a bare key only as
//!   [`Recipient::Uncertified`], audited as such), opens the record with the
//!   passphrase, checks the
//!   DICOM header can be de-identified (the gate does it at release unless
//!   told not to), applies the default validity
//!   ([`DEFAULT_GRANT_VALIDITY_S`]; standing emergency grants never
//!   expire), records the grant in the gate's table, seals an `AOSG` v2
//!   grant (no recovery material) in HPKE auth mode with the patient vault
//!   key and logs `grant` or `emergency`;
//! * [`EhrVault::answer_release`] is the patient's gate: the release
//!   decision ([`crate::gate::decide`]) with the gate's own clock —
//!   revocation, not-before, expiry, replay — logging `use` or `refuse`;
//!   with the patient's pins it also answers the responsible doctor and
//!   break-glass requests (`emergency-access`), see [`crate::gate::roles`];
//! * [`EhrVault::recover_with_role`] is a certified doctor's side of those;
//! * [`EhrVault::pin_institution`], [`EhrVault::unpin_institution`],
//!   [`EhrVault::set_institution_emergency`], [`EhrVault::set_responsible`]
//!   and [`EhrVault::clear_responsible`] change the pins and log `pin`;
//! * [`EhrVault::recover_with_grant`] is the recipient's side: opens the
//!   grant against the pinned patient key, asks the gate, opens the sealed
//!   release, fetches the public fragment and recovers;
//! * [`EhrVault::recover_with_passphrase`] logs `recover`;
//! * [`EhrVault::revoke`] marks the grant revoked for the gate and logs
//!   `revoke`; [`EhrVault::rekey`] re-protects a record under fresh keys,
//!   replaces its fragments everywhere and logs `rekey`;
//! * [`EhrVault::audit_verify`] checks the audit log's MAC chain, head and
//!   anchors.
//!
//! Recovered bytes are returned only after every check passed.

use std::path::Path;

use aorta_base::hex::{self, Case};
use std::sync::OnceLock;

use aorta_crypto::selective::container::{Randomness, open_private, parse_private};
use aorta_crypto::selective::{
    HeaderRule, MasterKey, Mode, ProtectOptions, RecordId, RecoveryMaterial, open_private_with_key,
    protect_with_key, recover,
};
use zeroize::Zeroizing;

use crate::VaultError;
use crate::audit::{AuditAnchor, AuditLog, Entry, Event};
use crate::gate::{
    self, CertifiedTo, GateEntry, GateState, GateTransport, GrantV2Header, ReplayCache, RoleState,
    Status,
};
use crate::grant::{self, Identity, NEVER, RecipientKey};
use crate::institution::{
    InstitutionKey, PinnedInstitutions, ReplaySet, VerifiedDoctor, VerifiedEmergency,
};
use crate::integrity::StoreFailure;
use crate::store::Vault;

/// Where grants send recipients when the patient names no gate: the gate
/// served on loopback by `aorta ehr gate serve`.
pub const DEFAULT_GATE_URL: &str = "http://127.0.0.1:7480";
const IDENTITY_OBJECT: &str = "vault-identity";
const MATERIAL_INFO: &[u8] = b"aorta-ehr gate material v1";

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
    /// A standing grant the patient issues in advance for one record
    /// (never expires unless `valid_for_s`; audited `emergency`). Not
    /// break-glass: that is the institution-signed request kind 3 of the
    /// gate ([`crate::gate::roles`]).
    pub emergency: bool,
    /// Share the DICOM header as is instead of de-identifying it (the
    /// default is to de-identify).
    pub keep_identifying_header: bool,
}

/// Whom [`EhrVault::share`] seals a grant to.
#[derive(Debug, Clone, Copy)]
pub enum Recipient<'a> {
    /// A doctor certificate (`AODC`): it must verify now, with the vault's
    /// clock, against the patient's pinned institutions; the grant is
    /// sealed to the certified doctor key.
    Certified(&'a [u8]),
    /// A bare key the patient vouches for by hand (`--uncertified`):
    /// audited as such.
    Uncertified(RecipientKey),
}

/// What a certified doctor brings to recover a record without a grant: as
/// the patient's responsible doctor (their `AODC`) or by break-glass (the
/// institution's `AOER`).
#[derive(Debug, Clone, Copy)]
pub struct RoleUse<'a> {
    /// [`gate::KIND_RESPONSIBLE`] or [`gate::KIND_EMERGENCY`].
    pub kind: u8,
    /// The certificate (kind 2) or the emergency request (kind 3).
    pub credential: &'a [u8],
    /// The doctor's identity (the certified key).
    pub identity: &'a Identity,
    /// The patient vault key, pinned.
    pub patient: &'a RecipientKey,
    /// The patient's gate.
    pub gate_url: &'a str,
}

/// A sealed grant, ready to hand to its recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shared {
    /// Its public header (grant id, expiry, recipient, patient key).
    pub header: GrantV2Header,
    /// The grant bytes (`AOSG` v2).
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

/// What a recipient brings to recover a record through the patient's gate.
#[derive(Debug, Clone, Copy)]
pub struct GrantUse<'a> {
    /// The grant bytes (`AOSG` v2).
    pub grant: &'a [u8],
    /// The recipient's identity.
    pub identity: &'a Identity,
    /// The patient vault key the recipient pinned (given by the patient out
    /// of band, printed by `aorta ehr share`).
    pub patient: &'a RecipientKey,
    /// Ask this gate instead of the one the grant names.
    pub gate_url: Option<&'a str>,
}

/// A vault with its rules: the only way to protect, share, recover and
/// revoke that cannot forget a check or an audit entry.
#[derive(Debug)]
pub struct EhrVault {
    store: Vault,
    log: AuditLog,
    clock: fn() -> u64,
    gate_url: String,
    identity: OnceLock<Identity>,
    replays: ReplayCache,
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
            gate_url: DEFAULT_GATE_URL.to_string(),
            identity: OnceLock::new(),
            replays: ReplayCache::default(),
        }
    }

    /// The gate URL new grants name (default [`DEFAULT_GATE_URL`]).
    pub fn with_gate_url(mut self, url: &str) -> Self {
        self.gate_url = url.to_string();
        self
    }

    /// The patient vault's identity (X25519), created with the vault and
    /// kept in the private store (`gate/vault-identity`): it seals grants
    /// and releases in HPKE auth mode.
    fn identity(&self) -> Result<&Identity, VaultError> {
        if let Some(id) = self.identity.get() {
            return Ok(id);
        }
        let id = match self.store.get_gate_object(IDENTITY_OBJECT)? {
            Some(b) => {
                let text =
                    Zeroizing::new(String::from_utf8(b).map_err(|_| VaultError::Malformed {
                        what: "vault identity",
                        offset: 0,
                        reason: "not text",
                    })?);
                Identity::from_text(&text)?
            }
            None => {
                let id = Identity::generate()?;
                self.store
                    .put_gate_object(IDENTITY_OBJECT, id.to_text().as_bytes().to_vec())?;
                id
            }
        };
        Ok(self.identity.get_or_init(|| id))
    }

    /// The patient vault's public key: recipients pin it to know a grant
    /// (and a release) came from this patient.
    pub fn patient_key(&self) -> Result<RecipientKey, VaultError> {
        self.identity().map(Identity::public)
    }

    fn entry(&self, gid: &str) -> Result<Option<GateEntry>, VaultError> {
        if gid.len() != 32
            || !gid
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Ok(None);
        }
        self.store
            .get_gate_object(&format!("grants/{gid}.json"))?
            .map(|b| GateEntry::from_json(&Zeroizing::new(b)))
            .transpose()
    }

    fn put_entry(&self, gid: &str, e: &GateEntry) -> Result<(), VaultError> {
        self.store
            .put_gate_object(&format!("grants/{gid}.json"), e.to_json()?.to_vec())
    }

    /// Keeps the gate's copy of a record's recovery material, sealed to the
    /// vault identity (so the gate releases without the passphrase).
    fn put_gate_material(&self, m: &RecoveryMaterial) -> Result<(), VaultError> {
        let id = self.identity()?;
        let (enc, ct) = gate::seal_auth(
            id,
            &id.public(),
            MATERIAL_INFO,
            &m.to_bytes(),
            &m.record_id.0,
        )?;
        self.store.put_gate_object(
            &format!("material/{}", m.record_id.to_hex()),
            [enc.to_vec(), ct].concat(),
        )
    }

    fn gate_material(&self, record: &RecordId) -> Result<RecoveryMaterial, VaultError> {
        let id = self.identity()?;
        let b = self
            .store
            .get_gate_object(&format!("material/{}", record.to_hex()))?
            .ok_or_else(|| VaultError::NotFound {
                record_id: record.to_hex(),
                store: "the gate's material".into(),
            })?;
        let bad = VaultError::Malformed {
            what: "gate material",
            offset: 0,
            reason: "does not open with the vault identity",
        };
        let (enc, ct) = b.split_first_chunk::<32>().ok_or(bad)?;
        let plain =
            gate::open_auth(id, &id.public(), enc, MATERIAL_INFO, ct, &record.0).map_err(|_| {
                VaultError::Malformed {
                    what: "gate material",
                    offset: 0,
                    reason: "does not open with the vault identity",
                }
            })?;
        Ok(RecoveryMaterial::from_bytes(&plain)?)
    }

    /// The audit anchor a grant carries: the log's current `AOSA` anchor
    /// (80 bytes, `docs/vault-format.md`).
    fn grant_anchor(&self) -> Result<Vec<u8>, VaultError> {
        Ok(aorta_base::codec::Encode::to_bytes(&self.log.anchor()?))
    }

    /// The gate's answer to one request (`AOGQ` → `AOGR`, see
    /// `docs/vault-sharing.md`): the release decision ([`gate::decide`])
    /// with this vault's grant table and clock, audited as `use` or
    /// `refuse` in the patient's log when the request proved its grant.
    /// Never fails: an audit or store failure becomes an `unavailable`
    /// answer (and the material is not released unaudited).
    pub fn answer_release(&self, request: &[u8]) -> (Status, Vec<u8>) {
        let now = (self.clock)();
        let Ok(identity) = self.identity() else {
            return (
                Status::Unavailable,
                gate::refusal(Status::Unavailable, [0; 16], [0; 16], now),
            );
        };
        let lookup = |gid: &str| self.entry(gid);
        // Only the responsible-doctor and break-glass kinds read the pins (a
        // grant request does not depend on them).
        let role_kind = matches!(
            request.get(5),
            Some(&gate::KIND_RESPONSIBLE) | Some(&gate::KIND_EMERGENCY)
        );
        let pins = if role_kind {
            PinnedInstitutions::load(&self.store)
        } else {
            Ok(PinnedInstitutions::new())
        };
        let pins = match pins {
            Ok(p) => p,
            Err(_) => {
                let (g, n) = gate_ids(request);
                return (
                    Status::Unavailable,
                    gate::refusal(Status::Unavailable, g, n, now),
                );
            }
        };
        // The replay set is loaded, admitted and saved per use: persisted
        // before anything is released, and shared by every gate process.
        let admit = |v: &VerifiedEmergency, now: u64| -> Result<(), VaultError> {
            let mut set = ReplaySet::load(&self.store)?;
            set.admit(v, now)?;
            set.save(&self.store)
        };
        let roles = RoleState {
            pins: &pins,
            admit: &admit,
        };
        let state = GateState::new(identity, &lookup, &self.replays).with_roles(&roles);
        let d = gate::decide(request, &state, now, &|r| self.gate_material(r));
        if let Some(a) = &d.audited
            && self
                .log
                .append(now, a.event, &a.record.to_hex(), Some(&a.grant), &a.detail)
                .is_err()
        {
            let (g, n) = gate_ids(request);
            return (
                Status::Unavailable,
                gate::refusal(Status::Unavailable, g, n, now),
            );
        }
        (d.status, d.response)
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
        // The vault identity is created with the vault's first record.
        self.identity()?;
        // One Argon2id derivation: K protects the record and opens its
        // private fragment again for the integrity key of the public copies.
        let rnd = Randomness::fresh()?;
        let k = MasterKey::derive(passphrase, &rnd.salt, &opts.kdf)?;
        let p = protect_with_key(data, &k, opts, &rnd)?;
        let m = open_private_with_key(&p.private, &k)?;
        self.store.put_record(&p, &m)?;
        // The gate keeps every record's material: the responsible doctor
        // and break-glass reach records the patient never shared.
        self.put_gate_material(&m)?;
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

    /// A recipient recovers `record` with a grant through the patient's
    /// gate: opens the grant (it must be sealed by the pinned patient key),
    /// asks the gate (which judges revocation and expiry with its own
    /// clock), opens the released material, fetches the public fragment
    /// from this vault's public store(s) and recovers. A version-1 grant
    /// (which carried the material itself) is refused.
    pub fn recover_with_grant(
        &self,
        record: &RecordId,
        use_: &GrantUse<'_>,
        transport: &dyn GateTransport,
    ) -> Result<Recovered, VaultError> {
        if gate::grant_version(use_.grant) == Some(grant::GRANT_VERSION) {
            return Err(VaultError::BadInput {
                what: "grant".into(),
                reason: "a version-1 grant (it carries the recovery material itself); the vault \
                         no longer accepts them: ask the patient for a new grant"
                    .into(),
            });
        }
        let ticket = gate::open_grant(use_.grant, use_.identity, use_.patient)?;
        if ticket.header.record_id != *record {
            return Err(VaultError::GrantForOtherRecord {
                grant_record: ticket.header.record_id.to_hex(),
                record: record.to_hex(),
            });
        }
        let request = gate::build_request(&ticket, use_.identity, (self.clock)())?;
        let url = use_.gate_url.unwrap_or(&ticket.gate_url);
        let answer = transport.exchange(url, &aorta_base::codec::Encode::to_bytes(&request))?;
        let m = gate::open_response(&answer, &request, &ticket, use_.identity)?;
        let (public, _failed_stores) = self.store.get_public_verified(record, &m)?;
        Ok(Recovered {
            bytes: recover(&public, &m)?,
            grant_id: Some(ticket.header.grant_hex()),
        })
    }

    /// Grants `recipient` access to `record`: opens it with `passphrase`,
    /// de-identifies its header unless `opts` says to keep it, seals the
    /// grant with the default or given validity, and logs `grant` or
    /// `emergency`.
    pub fn share(
        &self,
        record: &RecordId,
        passphrase: &[u8],
        to: &Recipient<'_>,
        opts: &ShareOptions,
    ) -> Result<Shared, VaultError> {
        let now = (self.clock)();
        // The certificate is checked first, with the vault's clock and the
        // patient's pins: nothing is opened for a recipient refused.
        let (recipient, doctor) = match to {
            Recipient::Certified(cert) => {
                let d =
                    crate::institution::verify(cert, &PinnedInstitutions::load(&self.store)?, now)?;
                (d.doctor, Some(d))
            }
            Recipient::Uncertified(k) => (*k, None),
        };
        let recipient = &recipient;
        let private = self.store.get_private(record)?;
        let m = open_private(&private, passphrase)?;
        let mut notes = Vec::new();
        if m.mode == Mode::Faithful {
            notes.push(FAITHFUL_GRANT_NOTE.to_string());
        }
        if !opts.keep_identifying_header {
            // The gate de-identifies at each release; this checks it can.
            let (_, note) = crate::deid::deidentify_head(&m.head, record)?;
            notes.extend(note);
        }
        let expires_at = match (opts.valid_for_s, opts.emergency) {
            (Some(d), _) => now.saturating_add(d),
            (None, true) => NEVER,
            (None, false) => now.saturating_add(DEFAULT_GRANT_VALIDITY_S),
        };
        let identity = self.identity()?;
        self.put_gate_material(&m)?;
        let header = GrantV2Header {
            grant_id: aorta_base::random::array::<16>()?,
            record_id: *record,
            issued_at: now,
            expires_at,
            emergency: opts.emergency,
            recipient: *recipient,
            patient: identity.public(),
        };
        let secret = aorta_base::random::secret::<32>()?;
        let entry = GateEntry {
            record: *record,
            recipient: *recipient,
            secret: secret.clone(),
            issued_at: now,
            expires_at,
            emergency: opts.emergency,
            keep_identifying_header: opts.keep_identifying_header,
            revoked: false,
            certified: doctor.as_ref().map(|d| CertifiedTo {
                certificate: hex::encode(&d.certificate_id),
                institution: d.institution.to_text(),
            }),
        };
        let bytes = gate::seal_grant(
            identity,
            &header,
            &secret,
            &self.gate_url,
            &self.grant_anchor()?,
        )?;
        self.put_entry(&header.grant_hex(), &entry)?;
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
            &format!(
                "to {} {} expires {expires}",
                recipient.to_text(),
                doctor.as_ref().map_or_else(
                    || "(uncertified key, vouched for by the patient)".to_string(),
                    |d| format!(
                        "(doctor {:?} certificate {} institution {:?} {})",
                        d.name,
                        hex::encode(&d.certificate_id),
                        d.institution_name,
                        d.institution.to_text()
                    )
                )
            ),
        )?;
        Ok(Shared {
            header,
            grant: bytes,
            notes,
        })
    }

    /// Revokes a grant: the gate refuses it from then on (its table entry
    /// is marked, and the `revoked/` marker written), and logs `revoke`.
    /// Returns the grant id (hex) and its record when known.
    pub fn revoke(
        &self,
        target: RevokeTarget<'_>,
    ) -> Result<(String, Option<RecordId>), VaultError> {
        let (gid, record) = match target {
            RevokeTarget::Grant(g) => match gate::grant_version(g) {
                Some(gate::GRANT_V2) => {
                    let h = gate::GrantV2::parse(g)?.header;
                    (h.grant_hex(), Some(h.record_id))
                }
                _ => {
                    let h = grant::peek(g)?;
                    (h.grant_hex(), Some(h.record_id))
                }
            },
            RevokeTarget::Id(id) => {
                let id = id.trim().to_ascii_lowercase();
                hex::decode_array::<16>(&id, Case::Lower).map_err(|_| VaultError::Malformed {
                    what: "grant id",
                    offset: 0,
                    reason: "expected 32 hex digits",
                })?;
                (id, None)
            }
        };
        let entry = self.entry(&gid)?;
        let record = record.or(entry.as_ref().map(|e| e.record));
        if let Some(mut e) = entry {
            e.revoked = true;
            self.put_entry(&gid, &e)?;
        }
        self.store.revoke(&gid)?;
        let rec = record.map(|r| r.to_hex()).unwrap_or_default();
        self.log
            .append((self.clock)(), Event::Revoke, &rec, Some(&gid), "")?;
        Ok((gid, record))
    }

    /// Re-protects `record` under fresh keys (fresh salt, nonce and, in
    /// strong mode, record secret; the same record id, passphrase, mode and
    /// KDF costs) and replaces its public fragment in every store (every
    /// replica or shard), its private fragment (and backup) and the gate's
    /// material. Material released before — or carried by a version-1
    /// grant — no longer matches anything stored after. Logs `protect` with
    /// the detail `rekey` (event `rekey`).
    pub fn rekey(&self, record: &RecordId, passphrase: &[u8]) -> Result<(), VaultError> {
        let private = self.store.get_private(record)?;
        let (ph, _) = parse_private(&private)?;
        let m = open_private(&private, passphrase)?;
        let (public, _failed_stores) = self.store.get_public_verified(record, &m)?;
        let bytes = Zeroizing::new(recover(&public, &m)?);
        let mut rnd = Randomness::fresh()?;
        rnd.record_id = *record;
        let opts = ProtectOptions {
            mode: ph.mode,
            kdf: ph.kdf,
            header: HeaderRule::Bytes(m.head.len() as u64),
        };
        let k = MasterKey::derive(passphrase, &rnd.salt, &opts.kdf)?;
        let p = protect_with_key(&bytes, &k, &opts, &rnd)?;
        let fresh = open_private_with_key(&p.private, &k)?;
        self.store.put_record(&p, &fresh)?;
        self.put_gate_material(&fresh)?;
        self.log.append(
            (self.clock)(),
            Event::Rekey,
            &record.to_hex(),
            None,
            &format!(
                "rekey (mode {}): fresh keys, public and private fragments replaced",
                ph.mode.name()
            ),
        )?;
        Ok(())
    }

    /// A certified doctor recovers `record` without a per-record grant:
    /// as the patient's responsible doctor ([`gate::KIND_RESPONSIBLE`],
    /// credential = their certificate) or by break-glass
    /// ([`gate::KIND_EMERGENCY`], credential = the institution's emergency
    /// request). The gate decides; this side proves the doctor key, opens
    /// the release (sealed by the pinned patient key), fetches the public
    /// fragment and recovers.
    pub fn recover_with_role(
        &self,
        record: &RecordId,
        use_: &RoleUse<'_>,
        transport: &dyn GateTransport,
    ) -> Result<Vec<u8>, VaultError> {
        let (request, header) = gate::roles::build_role_request(
            use_.kind,
            use_.credential,
            record,
            use_.identity,
            use_.patient,
            (self.clock)(),
        )?;
        let answer = transport.exchange(use_.gate_url, &request)?;
        let m = gate::roles::open_role_response(&answer, &header, use_.patient, use_.identity)?;
        let (public, _failed_stores) = self.store.get_public_verified(record, &m)?;
        Ok(recover(&public, &m)?)
    }

    /// The patient's pinned institutions, emergency permissions and
    /// responsible doctor (from the device store).
    pub fn pins(&self) -> Result<PinnedInstitutions, VaultError> {
        PinnedInstitutions::load(&self.store)
    }

    fn log_pin(&self, detail: &str) -> Result<(), VaultError> {
        self.log
            .append((self.clock)(), Event::Pin, "", None, detail)
            .map(|_| ())
    }

    /// Pins an institution key under `name`, allowing break-glass requests
    /// from it or not (an institution already pinned gets the new name and
    /// permission); audited `pin`. Returns whether it is new.
    pub fn pin_institution(
        &self,
        key: InstitutionKey,
        name: &str,
        emergency: bool,
    ) -> Result<bool, VaultError> {
        let mut pins = self.pins()?;
        let new = pins.pin(key, name, emergency, (self.clock)())?;
        pins.save(&self.store)?;
        self.log_pin(&format!(
            "{} institution {name:?} {}, emergency access {}",
            if new { "pinned" } else { "re-pinned" },
            key.to_text(),
            if emergency { "allowed" } else { "denied" }
        ))?;
        Ok(new)
    }

    /// Unpins an institution (its certificates and requests are refused
    /// from now on; a responsible doctor it certified is no longer named);
    /// audited `pin`.
    pub fn unpin_institution(&self, key: &InstitutionKey) -> Result<(), VaultError> {
        let mut pins = self.pins()?;
        let had_responsible = pins.responsible().is_some();
        pins.unpin(key)?;
        pins.save(&self.store)?;
        let cleared = had_responsible && pins.responsible().is_none();
        self.log_pin(&format!(
            "unpinned institution {}{}",
            key.to_text(),
            if cleared {
                "; the responsible doctor it certified is no longer named"
            } else {
                ""
            }
        ))
    }

    /// Allows or denies break-glass requests from a pinned institution;
    /// audited `pin`.
    pub fn set_institution_emergency(
        &self,
        key: &InstitutionKey,
        allowed: bool,
    ) -> Result<(), VaultError> {
        let mut pins = self.pins()?;
        pins.set_emergency(key, allowed)?;
        pins.save(&self.store)?;
        self.log_pin(&format!(
            "emergency access {} for institution {}",
            if allowed { "allowed" } else { "denied" },
            key.to_text()
        ))
    }

    /// Names the patient's responsible doctor by certificate (it must
    /// verify now with the vault's clock and carry the responsible role);
    /// audited `pin`.
    pub fn set_responsible(&self, cert: &[u8]) -> Result<VerifiedDoctor, VaultError> {
        let mut pins = self.pins()?;
        let d = pins.set_responsible(cert, (self.clock)())?;
        pins.save(&self.store)?;
        self.log_pin(&format!("responsible doctor named: {}", d.audit_detail()))?;
        Ok(d)
    }

    /// No responsible doctor any more; audited `pin`.
    pub fn clear_responsible(&self) -> Result<(), VaultError> {
        let mut pins = self.pins()?;
        pins.clear_responsible();
        pins.save(&self.store)?;
        self.log_pin("responsible doctor cleared")
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

/// The grant id and nonce of a request that may not parse (for an
/// `unavailable` answer).
fn gate_ids(request: &[u8]) -> ([u8; 16], [u8; 16]) {
    gate::Request::parse(request)
        .map_or(([0; 16], [0; 16]), |r| (r.header.grant_id, r.header.nonce))
}
