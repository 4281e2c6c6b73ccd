//! Doctor certificates, format `AODC` v1 (`docs/vault-institutions.md`): an
//! institution certifies a doctor's X25519 key with a name, a staff id, a
//! role and a validity, signed with Ed25519 over a domain-separated
//! message.

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};

use super::keys::{InstitutionKey, InstitutionSigningKey};
use super::pins::PinnedInstitutions;
use super::{InstitutionError, check_text, short_id};
use crate::VaultError;
use crate::grant::RecipientKey;

/// Certificate magic.
pub const CERT_MAGIC: &[u8; 4] = b"AODC";
/// Certificate format version.
pub const CERT_VERSION: u8 = 1;
/// What the institution signs: this label, then every byte of the
/// certificate before the signature.
pub const CERT_LABEL: &[u8] = b"aorta/v1/vault-doctor-certificate\0";
/// Longest display name, bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 128;
/// Longest staff id, bytes of UTF-8.
pub const MAX_STAFF_ID_LEN: usize = 64;
const WHAT: &str = "doctor certificate";
const ROLE_OFFSET: usize = 5;

/// A doctor's role, certified by the institution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A doctor of the institution: receives what the patient grants.
    Doctor,
    /// A responsible doctor (paper 004 §4.2's "higher access control
    /// role"): may be named by the patient as their responsible doctor.
    Responsible,
}

impl Role {
    /// The role byte.
    pub fn byte(self) -> u8 {
        match self {
            Role::Doctor => 1,
            Role::Responsible => 2,
        }
    }
    /// The role of a byte, if known.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Role::Doctor),
            2 => Some(Role::Responsible),
            _ => None,
        }
    }
    /// `doctor` or `responsible`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Doctor => "doctor",
            Role::Responsible => "responsible",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = VaultError;
    fn from_str(s: &str) -> Result<Self, VaultError> {
        match s {
            "doctor" => Ok(Role::Doctor),
            "responsible" => Ok(Role::Responsible),
            _ => Err(VaultError::BadInput {
                what: format!("role {s:?}"),
                reason: "expected doctor or responsible".into(),
            }),
        }
    }
}

/// A decoded (not yet verified) doctor certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoctorCertificate {
    /// The certified role.
    pub role: Role,
    /// The certifying institution (its public key is its key id).
    pub institution: InstitutionKey,
    /// The doctor's X25519 public key (what grants are sealed to).
    pub doctor: RecipientKey,
    /// Start of validity (unix seconds, inclusive).
    pub not_before: u64,
    /// End of validity (unix seconds, exclusive).
    pub not_after: u64,
    /// Display name.
    pub name: String,
    /// Staff id (may be empty).
    pub staff_id: String,
    /// Ed25519 signature by `institution` over [`CERT_LABEL`] ‖ the bytes
    /// before it.
    pub signature: [u8; 64],
}

impl DoctorCertificate {
    /// Every byte before the signature.
    fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(90 + self.name.len() + self.staff_id.len());
        out.extend_from_slice(CERT_MAGIC);
        out.push(CERT_VERSION);
        out.push(self.role.byte());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.institution.0);
        out.extend_from_slice(&self.doctor.0);
        out.extend_from_slice(&self.not_before.to_be_bytes());
        out.extend_from_slice(&self.not_after.to_be_bytes());
        // Lengths are bounded by the constructors and the decoder.
        out.push(u8::try_from(self.name.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(self.name.as_bytes());
        out.push(u8::try_from(self.staff_id.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(self.staff_id.as_bytes());
        out
    }

    /// The message the institution signs.
    fn signed_message(&self) -> Vec<u8> {
        let mut m = CERT_LABEL.to_vec();
        m.extend_from_slice(&self.body());
        m
    }

    /// Decodes a certificate: an unknown version is
    /// [`VaultError::UnknownVersion`], an unknown role
    /// [`InstitutionError::UnknownRole`]; the signature is not checked
    /// ([`verify`] does).
    pub fn parse(d: &[u8]) -> Result<Self, VaultError> {
        crate::format::check_version(d, CERT_MAGIC, CERT_VERSION, WHAT)?;
        if d.get(..4) == Some(CERT_MAGIC.as_slice())
            && let Some(&role) = d.get(ROLE_OFFSET)
            && Role::from_byte(role).is_none()
        {
            return Err(InstitutionError::UnknownRole { role }.into());
        }
        Self::from_bytes(d).map_err(VaultError::decode(WHAT))
    }

    /// Signs these exact fields with `key` (whatever the `institution`
    /// field says) and returns the certificate's bytes. No check of the
    /// fields: [`certify`] is what institutions call; this is for test
    /// vectors and for tests that play a careless or hostile signer.
    pub fn signed_by(mut self, key: &InstitutionSigningKey) -> Vec<u8> {
        self.signature = key.sign(&self.signed_message());
        self.to_bytes()
    }

    /// The certificate's id (first 16 bytes of SHA-256 of its bytes), for
    /// audit entries.
    pub fn id(&self) -> [u8; 16] {
        short_id(&self.to_bytes())
    }

    /// Checks this certificate (decoded from `bytes`) for a patient.
    pub(crate) fn check(
        &self,
        pins: &PinnedInstitutions,
        now: u64,
    ) -> Result<VerifiedDoctor, VaultError> {
        let pin = pins
            .get(&self.institution)
            .ok_or_else(|| InstitutionError::Unpinned {
                institution: self.institution.to_text(),
            })?;
        aorta_crypto::auth::verify(
            &self.institution.0,
            &self.signed_message(),
            &self.signature,
            WHAT,
        )
        .map_err(|_| InstitutionError::BadSignature { what: WHAT })?;
        if now < self.not_before {
            return Err(InstitutionError::CertificateNotYetValid {
                not_before: self.not_before,
                now,
            }
            .into());
        }
        if now >= self.not_after {
            return Err(InstitutionError::CertificateExpired {
                not_after: self.not_after,
                now,
            }
            .into());
        }
        let responsible_for_patient = self.role == Role::Responsible
            && pins
                .responsible()
                .is_some_and(|r| r.institution == self.institution && r.doctor == self.doctor);
        Ok(VerifiedDoctor {
            certificate_id: self.id(),
            institution: self.institution,
            institution_name: pin.name.clone(),
            doctor: self.doctor,
            name: self.name.clone(),
            staff_id: self.staff_id.clone(),
            role: self.role,
            not_before: self.not_before,
            not_after: self.not_after,
            responsible_for_patient,
        })
    }
}

impl Encode for DoctorCertificate {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.body());
        out.extend_from_slice(&self.signature);
    }
}

/// Reads a length-prefixed display text.
pub(crate) fn text_field(
    r: &mut Reader<'_>,
    field: &'static str,
    min: usize,
    max: usize,
) -> Result<String, DecodeError> {
    let b = r.bytes_u8(field)?;
    check_text(b, min, max)
        .map(str::to_owned)
        .map_err(|reason| r.invalid(field, b.len(), reason))
}

impl Decode<'_> for DoctorCertificate {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if &r.array::<4>("magic")? != CERT_MAGIC {
            return Err(r.invalid("magic", 4, "bad magic"));
        }
        if r.u8("version")? != CERT_VERSION {
            return Err(r.invalid("version", 1, "unknown format version"));
        }
        let role =
            Role::from_byte(r.u8("role")?).ok_or_else(|| r.invalid("role", 1, "unknown role"))?;
        if r.array::<2>("reserved")? != [0, 0] {
            return Err(r.invalid("reserved", 2, "non-zero reserved bytes"));
        }
        let institution = InstitutionKey(r.array("institution key")?);
        let doctor = RecipientKey(r.array("doctor key")?);
        let not_before = r.u64("not before")?;
        let not_after = r.u64("not after")?;
        if not_after <= not_before {
            return Err(r.invalid("not after", 8, "not after must be later than not before"));
        }
        let name = text_field(r, "name", 1, MAX_NAME_LEN)?;
        let staff_id = text_field(r, "staff id", 0, MAX_STAFF_ID_LEN)?;
        let signature = r.array("signature")?;
        Ok(Self {
            role,
            institution,
            doctor,
            not_before,
            not_after,
            name,
            staff_id,
            signature,
        })
    }
}

/// What an institution certifies.
#[derive(Debug, Clone, Copy)]
pub struct CertTerms<'a> {
    /// The doctor's X25519 public key.
    pub doctor: RecipientKey,
    /// Display name (1 to [`MAX_NAME_LEN`] bytes, no control characters).
    pub name: &'a str,
    /// Staff id (0 to [`MAX_STAFF_ID_LEN`] bytes, no control characters).
    pub staff_id: &'a str,
    /// The role.
    pub role: Role,
    /// Start of validity (unix seconds).
    pub not_before: u64,
    /// End of validity (unix seconds, later than `not_before`).
    pub not_after: u64,
}

/// The institution `key` certifies a doctor: the certificate's bytes.
pub fn certify(key: &InstitutionSigningKey, t: &CertTerms<'_>) -> Result<Vec<u8>, VaultError> {
    let bad = |what: &str, reason: &str| VaultError::BadInput {
        what: what.into(),
        reason: reason.into(),
    };
    check_text(t.name.as_bytes(), 1, MAX_NAME_LEN).map_err(|r| bad("doctor name", r))?;
    check_text(t.staff_id.as_bytes(), 0, MAX_STAFF_ID_LEN).map_err(|r| bad("staff id", r))?;
    if t.not_after <= t.not_before {
        return Err(bad("validity", "not after must be later than not before"));
    }
    let c = DoctorCertificate {
        role: t.role,
        institution: key.public(),
        doctor: t.doctor,
        not_before: t.not_before,
        not_after: t.not_after,
        name: t.name.to_owned(),
        staff_id: t.staff_id.to_owned(),
        signature: [0; 64],
    };
    Ok(c.signed_by(key))
}

/// A certificate that verified for this patient at the time given.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifiedDoctor {
    /// The certificate's id (first 16 bytes of SHA-256 of its bytes).
    #[serde(serialize_with = "hex16")]
    pub certificate_id: [u8; 16],
    /// The certifying institution (pinned).
    #[serde(serialize_with = "inst_text")]
    pub institution: InstitutionKey,
    /// The name the patient gave the institution when pinning it.
    pub institution_name: String,
    /// The doctor's X25519 key: seal grants to it.
    #[serde(serialize_with = "recipient_text")]
    pub doctor: RecipientKey,
    /// Display name, as certified.
    pub name: String,
    /// Staff id, as certified.
    pub staff_id: String,
    /// The certified role.
    pub role: Role,
    /// Start of validity.
    pub not_before: u64,
    /// End of validity.
    pub not_after: u64,
    /// The patient named this doctor (same institution, same key) their
    /// responsible doctor, and the certificate's role is responsible.
    pub responsible_for_patient: bool,
}

impl VerifiedDoctor {
    /// The doctor as the audit log names them: name, staff id, key,
    /// certificate id, institution name and key.
    pub(crate) fn audit_detail(&self) -> String {
        format!(
            "doctor {:?} staff {:?} key {} certificate {} institution {:?} {}",
            self.name,
            self.staff_id,
            self.doctor.to_text(),
            aorta_base::hex::encode(&self.certificate_id),
            self.institution_name,
            self.institution.to_text()
        )
    }
}

fn hex16<S: serde::Serializer>(v: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&aorta_base::hex::encode(v))
}
fn inst_text<S: serde::Serializer>(v: &InstitutionKey, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_text())
}
fn recipient_text<S: serde::Serializer>(v: &RecipientKey, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_text())
}

/// Verifies a doctor certificate for the patient whose pins are `pins`, at
/// unix time `now`: the certifying institution must be pinned
/// ([`InstitutionError::Unpinned`]), its signature must verify
/// ([`InstitutionError::BadSignature`]), and `now` must lie in
/// `[not_before, not_after)` ([`InstitutionError::CertificateNotYetValid`],
/// [`InstitutionError::CertificateExpired`]). Unknown versions and roles
/// are [`VaultError::UnknownVersion`] and [`InstitutionError::UnknownRole`].
pub fn verify(
    cert: &[u8],
    pins: &PinnedInstitutions,
    now: u64,
) -> Result<VerifiedDoctor, VaultError> {
    DoctorCertificate::parse(cert)?.check(pins, now)
}
