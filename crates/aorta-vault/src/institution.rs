//! Institutions and roles (paper 004: Fig. 2's trust area, §3 step 5 "once
//! institutes are authenticated", §4.2's responsible doctor with "a higher
//! access control role", Fig. 5's sharing with access control by the
//! patient). The formats are specified byte for byte in
//! `docs/vault-institutions.md`.
//!
//! * [`InstitutionSigningKey`] / [`InstitutionKey`]: an institution's
//!   Ed25519 key (from `ring`, through [`aorta_crypto::auth`]) and its text
//!   forms `aorta-institution-1<hex>` / `AORTA-INSTITUTION-SECRET-1<HEX>`.
//! * [`DoctorCertificate`] (`AODC` v1): the institution certifies a
//!   doctor's X25519 key (the [`crate::grant::RecipientKey`] grants are
//!   sealed to), name, staff id, [`Role`] (doctor or responsible doctor)
//!   and validity; [`verify`] checks it against the patient's
//!   [`PinnedInstitutions`] and a clock.
//! * [`PinnedInstitutions`]: what the patient's device trusts — pinned
//!   institution keys, which of them may ask for break-glass access, and
//!   the patient's responsible doctor (by certificate). Kept in the private
//!   (device) store ([`PinnedInstitutions::load`] / [`PinnedInstitutions::save`]).
//! * [`EmergencyRequest`] (`AOER` v1): a break-glass request signed by the
//!   institution (not by the doctor), embedding the doctor's certificate,
//!   naming records or the patient's key, a reason, a validity of at most
//!   [`MAX_EMERGENCY_VALIDITY_S`] and a nonce; [`verify_emergency`] checks
//!   it, [`ReplaySet`] refuses a nonce already used, [`accept_emergency`]
//!   does both.
//!
//! What this module decides is whether a certificate or a request is
//! genuine and current for this patient; what is released for it, and the
//! `emergency-access` audit entry, are the release gate's (see the
//! document).

mod cert;
mod emergency;
mod keys;
mod pins;

pub use cert::{
    CERT_LABEL, CERT_MAGIC, CERT_VERSION, CertTerms, DoctorCertificate, MAX_NAME_LEN,
    MAX_STAFF_ID_LEN, Role, VerifiedDoctor, certify, verify,
};
pub use emergency::{
    CLOCK_SKEW_S, EMERGENCY_LABEL, EMERGENCY_MAGIC, EMERGENCY_VERSION, EmergencyRequest,
    EmergencyScope, EmergencyTerms, MAX_EMERGENCY_RECORDS, MAX_EMERGENCY_VALIDITY_S,
    MAX_REASON_LEN, VerifiedEmergency, accept_emergency, request_emergency, verify_emergency,
};
pub use keys::{
    InstitutionKey, InstitutionSigningKey, PUBLIC_TEXT_PREFIX, SECRET_TEXT_PREFIX,
    read_signing_key, write_signing_key,
};
pub use pins::{
    PINS_SETTING, PinnedInstitution, PinnedInstitutions, REPLAY_SETTING, ReplaySet,
    ResponsibleDoctor,
};

use crate::Blame;

/// Why an institution, a doctor certificate or an emergency request was
/// refused. Carried by [`crate::VaultError::Institution`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InstitutionError {
    /// The institution's key is not pinned by the patient.
    #[error("institution {institution} is not pinned by the patient")]
    Unpinned {
        /// The institution's key text.
        institution: String,
    },
    /// The signature does not verify with the institution's key (forged,
    /// signed by someone else — a doctor's own key included — or modified).
    #[error("{what}: the institution's signature does not verify (forged or modified)")]
    BadSignature {
        /// What was signed.
        what: &'static str,
    },
    /// The doctor certificate is no longer valid.
    #[error("doctor certificate expired at {} (now {})", iso(*not_after), iso(*now))]
    CertificateExpired {
        /// End of validity.
        not_after: u64,
        /// The time checked.
        now: u64,
    },
    /// The doctor certificate is not valid yet.
    #[error("doctor certificate is valid only from {} (now {})", iso(*not_before), iso(*now))]
    CertificateNotYetValid {
        /// Start of validity.
        not_before: u64,
        /// The time checked.
        now: u64,
    },
    /// A role byte this build does not know.
    #[error(
        "doctor certificate has role {role}, this aorta knows 1 (doctor) and 2 (responsible); upgrade aorta"
    )]
    UnknownRole {
        /// The role byte.
        role: u8,
    },
    /// The patient has not allowed this institution to ask for break-glass
    /// access.
    #[error("institution {institution} is pinned but not allowed emergency access by the patient")]
    EmergencyNotAllowed {
        /// The institution's key text.
        institution: String,
    },
    /// The emergency request has expired.
    #[error("emergency request expired at {} (now {})", iso(*expires_at), iso(*now))]
    EmergencyExpired {
        /// End of validity.
        expires_at: u64,
        /// The time checked.
        now: u64,
    },
    /// The emergency request is issued in the future (beyond the allowed
    /// clock skew).
    #[error("emergency request issued at {} is in the future (now {})", iso(*issued_at), iso(*now))]
    EmergencyNotYetValid {
        /// Issue time.
        issued_at: u64,
        /// The time checked.
        now: u64,
    },
    /// The emergency request asks for longer than the maximum validity.
    #[error(
        "emergency request valid for {seconds} s, more than the {max} s an emergency request may last"
    )]
    ValidityTooLong {
        /// Requested validity, seconds (`expires_at - issued_at`).
        seconds: u64,
        /// The maximum.
        max: u64,
    },
    /// This emergency request (its nonce) was already used.
    #[error("emergency request {nonce} was already used (replay)")]
    Replayed {
        /// The nonce, hex.
        nonce: String,
    },
    /// The request's institution is not the one that certified the doctor.
    #[error(
        "emergency request signed by institution {request} for a doctor certified by {certificate}"
    )]
    WrongInstitution {
        /// The request's institution key text.
        request: String,
        /// The certificate's institution key text.
        certificate: String,
    },
    /// Only a certificate with the responsible role can name the patient's
    /// responsible doctor.
    #[error(
        "the certificate's role is {role}; only a \"responsible\" certificate names a responsible doctor"
    )]
    NotResponsibleRole {
        /// The certificate's role name.
        role: &'static str,
    },
    /// The institution is not pinned (for unpin / allow / deny).
    #[error("institution {institution} is not pinned")]
    NoSuchPin {
        /// The institution's key text.
        institution: String,
    },
}

impl InstitutionError {
    /// Who is to blame: unknown roles and pin bookkeeping are the input's,
    /// everything else is a check that said no.
    pub fn blame(&self) -> Blame {
        match self {
            Self::UnknownRole { .. } | Self::NoSuchPin { .. } => Blame::Input,
            _ => Blame::Refused,
        }
    }
}

/// Unix seconds as RFC 3339 UTC for messages; out of range, the number.
pub(crate) fn iso(secs: u64) -> String {
    if secs > 253_402_300_799 {
        return format!("unix time {secs}");
    }
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

/// Checks a display text (a name, a staff id, a reason): at most `max`
/// bytes of UTF-8, at least `min`, no control characters (they would let a
/// text forge lines in an audit listing).
pub(crate) fn check_text(b: &[u8], min: usize, max: usize) -> Result<&str, &'static str> {
    if b.len() < min {
        return Err("empty");
    }
    if b.len() > max {
        return Err("too long");
    }
    let s = std::str::from_utf8(b).map_err(|_| "not UTF-8")?;
    if s.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    Ok(s)
}

/// The first 16 bytes of SHA-256 of `bytes`: the id of a certificate or a
/// request in audit entries.
pub(crate) fn short_id(bytes: &[u8]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(bytes);
    let mut out = [0u8; 16];
    out.copy_from_slice(h.get(..16).unwrap_or(&[0u8; 16]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_texts_are_bounded_and_free_of_control_characters() {
        assert_eq!(
            check_text(b"Dr. \xc3\x89mile", 1, 128),
            Ok("Dr. \u{c9}mile")
        );
        assert_eq!(check_text(b"", 0, 4), Ok(""));
        assert!(check_text(b"", 1, 4).is_err());
        assert!(check_text(b"12345", 1, 4).is_err());
        assert!(check_text(b"a\nb", 1, 4).is_err());
        assert!(check_text(b"a\x1b[2J", 1, 8).is_err());
        assert!(check_text(b"\xc2\x85", 1, 8).is_err(), "C1 control (NEL)");
        assert!(check_text(b"\xff", 1, 4).is_err());
    }

    #[test]
    fn roles_and_blame() {
        for r in [Role::Doctor, Role::Responsible] {
            assert_eq!(Role::from_byte(r.byte()), Some(r));
            assert_eq!(r.name().parse::<Role>().unwrap(), r);
        }
        assert_eq!(Role::from_byte(0), None);
        assert_eq!(Role::from_byte(3), None);
        assert!("chief".parse::<Role>().is_err());
        assert_eq!(
            InstitutionError::UnknownRole { role: 3 }.blame(),
            Blame::Input
        );
        let e = crate::VaultError::from(InstitutionError::Replayed { nonce: "00".into() });
        assert_eq!(e.blame(), Blame::Refused);
        assert!(iso(0).starts_with("1970-01-01T00:00:00"));
        assert_eq!(short_id(b"x").len(), 16);
    }
}
