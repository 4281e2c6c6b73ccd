//! Break-glass emergency requests, format `AOER` v1
//! (`docs/vault-institutions.md`): signed by the institution (not by the
//! doctor), embedding the doctor's certificate, naming the records (or the
//! patient's key), a reason, a short validity and a nonce.

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
use aorta_crypto::selective::RecordId;

use super::cert::{DoctorCertificate, VerifiedDoctor};
use super::keys::{InstitutionKey, InstitutionSigningKey};
use super::pins::{PinnedInstitutions, ReplaySet};
use super::{InstitutionError, check_text, short_id};
use crate::VaultError;

/// Emergency request magic.
pub const EMERGENCY_MAGIC: &[u8; 4] = b"AOER";
/// Emergency request format version.
pub const EMERGENCY_VERSION: u8 = 1;
/// What the institution signs: this label, then every byte of the request
/// before the signature.
pub const EMERGENCY_LABEL: &[u8] = b"aorta/v1/vault-emergency-request\0";
/// Longest validity of an emergency request (`expires_at - issued_at`):
/// 24 hours. Longer requests are refused when checked (and not made).
pub const MAX_EMERGENCY_VALIDITY_S: u64 = 24 * 3600;
/// How far in the future a request's issue time may lie (clocks differ):
/// 5 minutes.
pub const CLOCK_SKEW_S: u64 = 300;
/// Most record ids one request names.
pub const MAX_EMERGENCY_RECORDS: usize = 64;
/// Longest reason, bytes of UTF-8.
pub const MAX_REASON_LEN: usize = 1024;
const WHAT: &str = "emergency request";
const SCOPE_RECORDS: u8 = 1;
const SCOPE_PATIENT: u8 = 2;

/// What an emergency request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmergencyScope {
    /// These records (1 to [`MAX_EMERGENCY_RECORDS`]).
    Records(Vec<RecordId>),
    /// Every record of the patient whose vault key this is (32 bytes; the
    /// gate compares it with its own key).
    Patient([u8; 32]),
}

/// A decoded (not yet verified) emergency request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmergencyRequest {
    /// The signing institution.
    pub institution: InstitutionKey,
    /// Random nonce (replay detection).
    pub nonce: [u8; 16],
    /// Issue time (unix seconds).
    pub issued_at: u64,
    /// End of validity (unix seconds, exclusive, later than `issued_at`).
    pub expires_at: u64,
    /// The doctor's certificate, as issued.
    pub certificate: DoctorCertificate,
    /// What is asked for.
    pub scope: EmergencyScope,
    /// Why (1 to [`MAX_REASON_LEN`] bytes, no control characters).
    pub reason: String,
    /// Ed25519 signature by `institution` over [`EMERGENCY_LABEL`] ‖ the
    /// bytes before it.
    pub signature: [u8; 64],
}

impl EmergencyRequest {
    fn body(&self) -> Vec<u8> {
        let cert = self.certificate.to_bytes();
        let mut out = Vec::with_capacity(160 + cert.len() + self.reason.len());
        out.extend_from_slice(EMERGENCY_MAGIC);
        out.push(EMERGENCY_VERSION);
        out.push(match self.scope {
            EmergencyScope::Records(_) => SCOPE_RECORDS,
            EmergencyScope::Patient(_) => SCOPE_PATIENT,
        });
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.institution.0);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        // Lengths are bounded by the constructors and the decoder.
        out.extend_from_slice(&u16::try_from(cert.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(&cert);
        match &self.scope {
            EmergencyScope::Records(ids) => {
                out.push(u8::try_from(ids.len()).unwrap_or(u8::MAX));
                for id in ids {
                    out.extend_from_slice(&id.0);
                }
            }
            EmergencyScope::Patient(k) => out.extend_from_slice(k),
        }
        out.extend_from_slice(
            &u16::try_from(self.reason.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(self.reason.as_bytes());
        out
    }

    fn signed_message(&self) -> Vec<u8> {
        let mut m = EMERGENCY_LABEL.to_vec();
        m.extend_from_slice(&self.body());
        m
    }

    /// Signs these exact fields with `key` (whatever the `institution`
    /// field says) and returns the request's bytes. No check of the fields
    /// (validity, certificate issuer): [`request_emergency`] is what
    /// institutions call; this is for test vectors and for tests that play
    /// a careless or hostile signer.
    pub fn signed_by(mut self, key: &InstitutionSigningKey) -> Vec<u8> {
        self.signature = key.sign(&self.signed_message());
        self.to_bytes()
    }

    /// Decodes a request (an unknown version of the request or of the
    /// certificate inside is [`VaultError::UnknownVersion`]); nothing is
    /// verified ([`verify_emergency`] does).
    pub fn parse(d: &[u8]) -> Result<Self, VaultError> {
        crate::format::check_version(d, EMERGENCY_MAGIC, EMERGENCY_VERSION, WHAT)?;
        // The certificate inside, for its own typed version and role errors.
        if d.get(..5) == Some(b"AOER\x01".as_slice())
            && let Some(&[hi, lo]) = d.get(72..74)
        {
            let len = usize::from(u16::from_be_bytes([hi, lo]));
            if let Some(c) = d.get(74..74 + len) {
                DoctorCertificate::parse(c)?;
            }
        }
        Self::from_bytes(d).map_err(VaultError::decode(WHAT))
    }
}

impl Encode for EmergencyRequest {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.body());
        out.extend_from_slice(&self.signature);
    }
}

impl Decode<'_> for EmergencyRequest {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if &r.array::<4>("magic")? != EMERGENCY_MAGIC {
            return Err(r.invalid("magic", 4, "bad magic"));
        }
        if r.u8("version")? != EMERGENCY_VERSION {
            return Err(r.invalid("version", 1, "unknown format version"));
        }
        let kind = r.u8("scope")?;
        if kind != SCOPE_RECORDS && kind != SCOPE_PATIENT {
            return Err(r.invalid("scope", 1, "unknown scope"));
        }
        if r.array::<2>("reserved")? != [0, 0] {
            return Err(r.invalid("reserved", 2, "non-zero reserved bytes"));
        }
        let institution = InstitutionKey(r.array("institution key")?);
        let nonce = r.array("nonce")?;
        let issued_at = r.u64("issued at")?;
        let expires_at = r.u64("expires at")?;
        if expires_at <= issued_at {
            return Err(r.invalid("expires at", 8, "expires at must be later than issued at"));
        }
        let cert_bytes = r.bytes_u16("certificate")?;
        let certificate = DoctorCertificate::from_bytes(cert_bytes)
            .map_err(|_| r.invalid("certificate", cert_bytes.len(), "not a doctor certificate"))?;
        let scope = if kind == SCOPE_RECORDS {
            let n = usize::from(r.u8("record count")?);
            if n == 0 || n > MAX_EMERGENCY_RECORDS {
                return Err(r.invalid("record count", 1, "1 to 64 records"));
            }
            let mut ids = Vec::with_capacity(n);
            for _ in 0..n {
                ids.push(RecordId(r.array("record id")?));
            }
            EmergencyScope::Records(ids)
        } else {
            EmergencyScope::Patient(r.array("patient key")?)
        };
        let reason = r.bytes_u16("reason")?;
        let reason = check_text(reason, 1, MAX_REASON_LEN)
            .map(str::to_owned)
            .map_err(|why| r.invalid("reason", reason.len(), why))?;
        let signature = r.array("signature")?;
        Ok(Self {
            institution,
            nonce,
            issued_at,
            expires_at,
            certificate,
            scope,
            reason,
            signature,
        })
    }
}

/// What an institution asks for in an emergency.
#[derive(Debug, Clone)]
pub struct EmergencyTerms<'a> {
    /// The doctor's certificate (issued by the same institution).
    pub certificate: &'a [u8],
    /// What is asked for.
    pub scope: EmergencyScope,
    /// Why.
    pub reason: &'a str,
    /// Issue time (unix seconds).
    pub issued_at: u64,
    /// Validity in seconds (1 to [`MAX_EMERGENCY_VALIDITY_S`]).
    pub valid_for_s: u64,
    /// The nonce; `None` draws 16 random bytes (always, outside test
    /// vectors).
    pub nonce: Option<[u8; 16]>,
}

/// The institution `key` signs an emergency request: the request's bytes.
pub fn request_emergency(
    key: &InstitutionSigningKey,
    t: &EmergencyTerms<'_>,
) -> Result<Vec<u8>, VaultError> {
    let bad = |what: &str, reason: String| VaultError::BadInput {
        what: what.into(),
        reason,
    };
    let certificate = DoctorCertificate::parse(t.certificate)?;
    if certificate.institution != key.public() {
        return Err(InstitutionError::WrongInstitution {
            request: key.public().to_text(),
            certificate: certificate.institution.to_text(),
        }
        .into());
    }
    if t.valid_for_s == 0 || t.valid_for_s > MAX_EMERGENCY_VALIDITY_S {
        return Err(bad(
            "emergency validity",
            format!("must be 1 s to {MAX_EMERGENCY_VALIDITY_S} s (24 h)"),
        ));
    }
    check_text(t.reason.as_bytes(), 1, MAX_REASON_LEN)
        .map_err(|r| bad("emergency reason", r.into()))?;
    if let EmergencyScope::Records(ids) = &t.scope
        && (ids.is_empty() || ids.len() > MAX_EMERGENCY_RECORDS)
    {
        return Err(bad(
            "emergency records",
            format!("name 1 to {MAX_EMERGENCY_RECORDS} records"),
        ));
    }
    let nonce = match t.nonce {
        Some(n) => n,
        None => aorta_base::random::array::<16>()?,
    };
    let expires_at = t
        .issued_at
        .checked_add(t.valid_for_s)
        .ok_or_else(|| bad("emergency validity", "ends after the end of time".into()))?;
    let req = EmergencyRequest {
        institution: key.public(),
        nonce,
        issued_at: t.issued_at,
        expires_at,
        certificate,
        scope: t.scope.clone(),
        reason: t.reason.to_owned(),
        signature: [0; 64],
    };
    Ok(req.signed_by(key))
}

/// An emergency request that verified for this patient at the time given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEmergency {
    /// The request's id (first 16 bytes of SHA-256 of its bytes), for the
    /// audit entry.
    pub request_id: [u8; 16],
    /// The doctor, verified with the same pins and clock.
    pub doctor: VerifiedDoctor,
    /// What is asked for.
    pub scope: EmergencyScope,
    /// Why.
    pub reason: String,
    /// Issue time.
    pub issued_at: u64,
    /// End of validity: whatever the gate releases for this request, it
    /// releases only until then.
    pub expires_at: u64,
    /// The nonce.
    pub nonce: [u8; 16],
}

impl VerifiedEmergency {
    /// Whether the request covers `record` (by id; a patient-key request
    /// covers a record when `patient_key` is that key).
    pub fn covers(&self, record: &RecordId, patient_key: Option<&[u8; 32]>) -> bool {
        match &self.scope {
            EmergencyScope::Records(ids) => ids.contains(record),
            EmergencyScope::Patient(k) => patient_key == Some(k),
        }
    }
}

/// Verifies an emergency request for the patient whose pins are `pins`, at
/// unix time `now`, refusing (in this order): an unpinned institution
/// ([`InstitutionError::Unpinned`]); a signature that does not verify with
/// the institution's key — forged, modified, or signed by anyone else such
/// as the doctor himself ([`InstitutionError::BadSignature`]); an
/// institution the patient did not allow emergency access
/// ([`InstitutionError::EmergencyNotAllowed`]); a validity over
/// [`MAX_EMERGENCY_VALIDITY_S`] ([`InstitutionError::ValidityTooLong`]); an
/// issue time more than [`CLOCK_SKEW_S`] ahead
/// ([`InstitutionError::EmergencyNotYetValid`]); an expired request
/// ([`InstitutionError::EmergencyExpired`]); a certificate from another
/// institution ([`InstitutionError::WrongInstitution`]); and whatever
/// [`super::verify`] refuses in the doctor's certificate. Replays are
/// refused by [`ReplaySet::admit`]; [`accept_emergency`] does both.
pub fn verify_emergency(
    bytes: &[u8],
    pins: &PinnedInstitutions,
    now: u64,
) -> Result<VerifiedEmergency, VaultError> {
    let req = EmergencyRequest::parse(bytes)?;
    let pin = pins
        .get(&req.institution)
        .ok_or_else(|| InstitutionError::Unpinned {
            institution: req.institution.to_text(),
        })?;
    aorta_crypto::auth::verify(
        &req.institution.0,
        &req.signed_message(),
        &req.signature,
        WHAT,
    )
    .map_err(|_| InstitutionError::BadSignature { what: WHAT })?;
    if !pin.emergency {
        return Err(InstitutionError::EmergencyNotAllowed {
            institution: req.institution.to_text(),
        }
        .into());
    }
    let seconds = req.expires_at - req.issued_at;
    if seconds > MAX_EMERGENCY_VALIDITY_S {
        return Err(InstitutionError::ValidityTooLong {
            seconds,
            max: MAX_EMERGENCY_VALIDITY_S,
        }
        .into());
    }
    if req.issued_at > now.saturating_add(CLOCK_SKEW_S) {
        return Err(InstitutionError::EmergencyNotYetValid {
            issued_at: req.issued_at,
            now,
        }
        .into());
    }
    if now >= req.expires_at {
        return Err(InstitutionError::EmergencyExpired {
            expires_at: req.expires_at,
            now,
        }
        .into());
    }
    if req.certificate.institution != req.institution {
        return Err(InstitutionError::WrongInstitution {
            request: req.institution.to_text(),
            certificate: req.certificate.institution.to_text(),
        }
        .into());
    }
    let doctor = req.certificate.check(pins, now)?;
    Ok(VerifiedEmergency {
        request_id: short_id(bytes),
        doctor,
        scope: req.scope,
        reason: req.reason,
        issued_at: req.issued_at,
        expires_at: req.expires_at,
        nonce: req.nonce,
    })
}

/// [`verify_emergency`], then [`ReplaySet::admit`]: what the gate calls
/// before releasing anything for an emergency. Persist `replay` afterwards
/// ([`ReplaySet::save`]) before releasing.
pub fn accept_emergency(
    bytes: &[u8],
    pins: &PinnedInstitutions,
    replay: &mut ReplaySet,
    now: u64,
) -> Result<VerifiedEmergency, VaultError> {
    let v = verify_emergency(bytes, pins, now)?;
    replay.admit(&v, now)?;
    Ok(v)
}
