//! What the patient's device trusts: pinned institutions (with their
//! emergency permission), the patient's responsible doctor, and the nonces
//! of emergency requests already used. Both are kept as JSON in the
//! private (device) store ([`crate::store::Vault::device_setting`]).

use super::cert::{Role, VerifiedDoctor, verify};
use super::emergency::{MAX_EMERGENCY_VALIDITY_S, VerifiedEmergency};
use super::keys::InstitutionKey;
use super::{InstitutionError, MAX_NAME_LEN, check_text};
use crate::VaultError;
use crate::grant::RecipientKey;
use crate::store::Vault;

/// The device setting holding the pins.
pub const PINS_SETTING: &str = "institutions.json";
/// The device setting holding the emergency replay set.
pub const REPLAY_SETTING: &str = "emergency-nonces.json";
const FILE_VERSION: u8 = 1;

/// One pinned institution.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedInstitution {
    /// The institution's public key.
    pub key: InstitutionKey,
    /// The patient's name for it (shown in listings).
    pub name: String,
    /// The patient allows this institution to ask for break-glass access.
    pub emergency: bool,
    /// When it was pinned (unix seconds).
    pub pinned_at: u64,
}

/// The patient's responsible doctor, named by certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponsibleDoctor {
    /// The certifying institution.
    pub institution: InstitutionKey,
    /// The doctor's key.
    #[serde(with = "recipient_text")]
    pub doctor: RecipientKey,
    /// The certified name.
    pub name: String,
    /// The certificate as given (hex in the file).
    #[serde(with = "hex_bytes")]
    pub certificate: Vec<u8>,
}

mod recipient_text {
    use crate::grant::RecipientKey;
    pub fn serialize<S: serde::Serializer>(v: &RecipientKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_text())
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<RecipientKey, D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        RecipientKey::from_text(&s).map_err(serde::de::Error::custom)
    }
}

mod hex_bytes {
    use aorta_base::hex::{self, Case};
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        hex::decode(&s, Case::Lower).map_err(serde::de::Error::custom)
    }
}

/// The institutions a patient pinned, and their responsible doctor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinnedInstitutions {
    #[serde(default = "file_version")]
    version: u8,
    institutions: Vec<PinnedInstitution>,
    #[serde(default)]
    responsible: Option<ResponsibleDoctor>,
}

fn file_version() -> u8 {
    FILE_VERSION
}

fn settings_error(what: &str, e: impl std::fmt::Display) -> VaultError {
    VaultError::BadInput {
        what: format!("device store settings/{what}"),
        reason: e.to_string(),
    }
}

impl PinnedInstitutions {
    /// No pins.
    pub fn new() -> Self {
        Self {
            version: FILE_VERSION,
            institutions: Vec::new(),
            responsible: None,
        }
    }

    /// Pins `key` under `name` (1 to 128 bytes, no control characters),
    /// allowing emergency requests from it or not. An institution already
    /// pinned gets the new name and emergency permission (its pin time
    /// stays). Returns whether it is new.
    pub fn pin(
        &mut self,
        key: InstitutionKey,
        name: &str,
        emergency: bool,
        now: u64,
    ) -> Result<bool, VaultError> {
        check_text(name.as_bytes(), 1, MAX_NAME_LEN).map_err(|r| VaultError::BadInput {
            what: "institution name".into(),
            reason: r.into(),
        })?;
        if let Some(p) = self.institutions.iter_mut().find(|p| p.key == key) {
            p.name = name.to_owned();
            p.emergency = emergency;
            return Ok(false);
        }
        self.institutions.push(PinnedInstitution {
            key,
            name: name.to_owned(),
            emergency,
            pinned_at: now,
        });
        Ok(true)
    }

    /// Unpins `key`: its certificates and requests are refused from now on;
    /// a responsible doctor it certified is no longer named.
    pub fn unpin(&mut self, key: &InstitutionKey) -> Result<(), VaultError> {
        let before = self.institutions.len();
        self.institutions.retain(|p| p.key != *key);
        if self.institutions.len() == before {
            return Err(no_such_pin(key));
        }
        if self
            .responsible
            .as_ref()
            .is_some_and(|r| r.institution == *key)
        {
            self.responsible = None;
        }
        Ok(())
    }

    /// The pin of `key`, if pinned.
    pub fn get(&self, key: &InstitutionKey) -> Option<&PinnedInstitution> {
        self.institutions.iter().find(|p| p.key == *key)
    }

    /// Every pin, in pinning order.
    pub fn list(&self) -> &[PinnedInstitution] {
        &self.institutions
    }

    /// Allows (`true`) or denies (`false`) emergency requests from `key`.
    pub fn set_emergency(&mut self, key: &InstitutionKey, allowed: bool) -> Result<(), VaultError> {
        let p = self
            .institutions
            .iter_mut()
            .find(|p| p.key == *key)
            .ok_or_else(|| no_such_pin(key))?;
        p.emergency = allowed;
        Ok(())
    }

    /// Names the patient's responsible doctor by certificate: the
    /// certificate must verify now ([`verify`]) and carry the responsible
    /// role ([`InstitutionError::NotResponsibleRole`] otherwise).
    pub fn set_responsible(&mut self, cert: &[u8], now: u64) -> Result<VerifiedDoctor, VaultError> {
        let mut d = verify(cert, self, now)?;
        if d.role != Role::Responsible {
            return Err(InstitutionError::NotResponsibleRole {
                role: d.role.name(),
            }
            .into());
        }
        self.responsible = Some(ResponsibleDoctor {
            institution: d.institution,
            doctor: d.doctor,
            name: d.name.clone(),
            certificate: cert.to_vec(),
        });
        d.responsible_for_patient = true;
        Ok(d)
    }

    /// No responsible doctor any more.
    pub fn clear_responsible(&mut self) {
        self.responsible = None;
    }

    /// The responsible doctor the patient named, if any.
    pub fn responsible(&self) -> Option<&ResponsibleDoctor> {
        self.responsible.as_ref()
    }

    /// The JSON form (what [`PinnedInstitutions::save`] stores).
    pub fn to_json(&self) -> Result<Vec<u8>, VaultError> {
        serde_json::to_vec_pretty(self).map_err(|_| VaultError::Internal {
            what: "institution pins do not serialize",
        })
    }

    /// Parses the JSON form (unknown fields or versions refused).
    pub fn from_json(b: &[u8]) -> Result<Self, VaultError> {
        let p: Self = serde_json::from_slice(b).map_err(|e| settings_error(PINS_SETTING, e))?;
        if p.version != FILE_VERSION {
            return Err(VaultError::UnknownVersion {
                what: "institution pins",
                version: p.version,
                supported: FILE_VERSION,
            });
        }
        Ok(p)
    }

    /// The pins in the vault's private (device) store (none yet: empty).
    pub fn load(vault: &Vault) -> Result<Self, VaultError> {
        match vault.device_setting(PINS_SETTING, None)? {
            Some(b) => Self::from_json(&b),
            None => Ok(Self::new()),
        }
    }

    /// Stores the pins in the vault's private (device) store.
    pub fn save(&self, vault: &Vault) -> Result<(), VaultError> {
        vault
            .device_setting(PINS_SETTING, Some(self.to_json()?))
            .map(|_| ())
    }
}

impl Default for PinnedInstitutions {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for ReplaySet {
    fn default() -> Self {
        Self::new()
    }
}

fn no_such_pin(key: &InstitutionKey) -> VaultError {
    InstitutionError::NoSuchPin {
        institution: key.to_text(),
    }
    .into()
}

/// One used emergency request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Used {
    institution: InstitutionKey,
    #[serde(with = "hex_bytes")]
    nonce: Vec<u8>,
    expires_at: u64,
}

/// The emergency requests already used, by (institution, nonce): a request
/// is admitted once. An entry is kept until 24 h after its request expired
/// (so a clock set back by up to a day does not revive it) and dropped
/// then, so the set stays as small as the requests of the last two days.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplaySet {
    #[serde(default = "file_version")]
    version: u8,
    used: Vec<Used>,
}

impl ReplaySet {
    /// Empty.
    pub fn new() -> Self {
        Self {
            version: FILE_VERSION,
            used: Vec::new(),
        }
    }

    /// Admits a verified request once: a second time (same institution and
    /// nonce) is [`InstitutionError::Replayed`]. Drops entries long expired.
    pub fn admit(&mut self, e: &VerifiedEmergency, now: u64) -> Result<(), VaultError> {
        self.prune(now);
        let inst = e.doctor.institution;
        if self
            .used
            .iter()
            .any(|u| u.institution == inst && u.nonce == e.nonce)
        {
            return Err(InstitutionError::Replayed {
                nonce: aorta_base::hex::encode(&e.nonce),
            }
            .into());
        }
        self.used.push(Used {
            institution: inst,
            nonce: e.nonce.to_vec(),
            expires_at: e.expires_at,
        });
        Ok(())
    }

    /// Drops entries whose request expired more than 24 h before `now`.
    pub fn prune(&mut self, now: u64) {
        self.used
            .retain(|u| u.expires_at.saturating_add(MAX_EMERGENCY_VALIDITY_S) > now);
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.used.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.used.is_empty()
    }

    /// The JSON form.
    pub fn to_json(&self) -> Result<Vec<u8>, VaultError> {
        serde_json::to_vec(self).map_err(|_| VaultError::Internal {
            what: "emergency replay set does not serialize",
        })
    }

    /// Parses the JSON form.
    pub fn from_json(b: &[u8]) -> Result<Self, VaultError> {
        let r: Self = serde_json::from_slice(b).map_err(|e| settings_error(REPLAY_SETTING, e))?;
        if r.version != FILE_VERSION {
            return Err(VaultError::UnknownVersion {
                what: "emergency replay set",
                version: r.version,
                supported: FILE_VERSION,
            });
        }
        if r.used.iter().any(|u| u.nonce.len() != 16) {
            return Err(settings_error(REPLAY_SETTING, "a nonce is not 16 bytes"));
        }
        Ok(r)
    }

    /// The set in the vault's private (device) store (none yet: empty).
    pub fn load(vault: &Vault) -> Result<Self, VaultError> {
        match vault.device_setting(REPLAY_SETTING, None)? {
            Some(b) => Self::from_json(&b),
            None => Ok(Self::new()),
        }
    }

    /// Stores the set in the vault's private (device) store.
    pub fn save(&self, vault: &Vault) -> Result<(), VaultError> {
        vault
            .device_setting(REPLAY_SETTING, Some(self.to_json()?))
            .map(|_| ())
    }
}
