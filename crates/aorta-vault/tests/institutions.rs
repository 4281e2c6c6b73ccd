//! Institutions, doctor certificates and break-glass emergency requests
//! (`docs/vault-institutions.md`), tried as the attacker would: a stranger
//! with a self-made institution, a doctor who promotes himself or signs an
//! emergency request with his own key, an institution the patient did not
//! allow, expired, over-long, future and replayed requests, every tampered
//! byte. Plus the committed vectors (deterministic keys), the patient's
//! pins through the device store, and the parsers on random and mutated
//! input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use std::path::PathBuf;

use aorta_base::codec::{Decode, Encode};
use aorta_crypto::selective::RecordId;
use aorta_vault::grant::Identity;
use aorta_vault::institution::{
    self, CertTerms, DoctorCertificate, EmergencyRequest, EmergencyScope, EmergencyTerms,
    InstitutionError, InstitutionKey, InstitutionSigningKey, MAX_EMERGENCY_VALIDITY_S,
    PinnedInstitutions, ReplaySet, Role, accept_emergency, certify, request_emergency,
    verify_emergency,
};
use aorta_vault::store::Vault;
use aorta_vault::{Blame, VaultError, fuzzing};
use common::{NOW, YEAR, inst, terms};

struct World {
    hospital: InstitutionSigningKey,
    doctor: Identity,
    pins: PinnedInstitutions,
}

fn world() -> World {
    let hospital = InstitutionSigningKey::generate().unwrap();
    let mut pins = PinnedInstitutions::new();
    pins.pin(hospital.public(), "St. Example Hospital", true, NOW)
        .unwrap();
    World {
        hospital,
        doctor: Identity::generate().unwrap(),
        pins,
    }
}

fn cert(w: &World, role: Role) -> Vec<u8> {
    certify(&w.hospital, &terms(w.doctor.public(), role)).unwrap()
}

fn records() -> EmergencyScope {
    EmergencyScope::Records(vec![RecordId([7; 16]), RecordId([8; 16])])
}

fn emergency(key: &InstitutionSigningKey, cert: &[u8], issued_at: u64, valid: u64) -> Vec<u8> {
    request_emergency(
        key,
        &EmergencyTerms {
            certificate: cert,
            scope: records(),
            reason: "unconscious in the emergency department",
            issued_at,
            valid_for_s: valid,
            nonce: None,
        },
    )
    .unwrap()
}

// ---- doctor certificates ----------------------------------------------------

#[test]
fn a_certified_doctor_verifies_with_the_pinned_institution() {
    let w = world();
    let c = cert(&w, Role::Doctor);
    let d = institution::verify(&c, &w.pins, NOW).unwrap();
    assert_eq!(d.doctor, w.doctor.public());
    assert_eq!(d.institution, w.hospital.public());
    assert_eq!(d.institution_name, "St. Example Hospital");
    assert_eq!(d.name, "Dr. Ada Example");
    assert_eq!(d.staff_id, "S-0042");
    assert_eq!(d.role, Role::Doctor);
    assert!(!d.responsible_for_patient);
    assert_eq!(d.certificate_id, DoctorCertificate::parse(&c).unwrap().id());
}

/// A stranger makes an institution of his own and certifies himself: the
/// patient never pinned it.
#[test]
fn a_strangers_self_made_institution_is_refused() {
    let w = world();
    let fake = InstitutionSigningKey::generate().unwrap();
    let mallory = Identity::generate().unwrap();
    let c = certify(&fake, &terms(mallory.public(), Role::Responsible)).unwrap();
    let e = inst(institution::verify(&c, &w.pins, NOW).unwrap_err());
    assert!(matches!(e, InstitutionError::Unpinned { .. }), "{e}");
    assert_eq!(e.blame(), Blame::Refused);
}

/// The stranger writes the pinned hospital's key into his certificate but
/// can only sign it with his own key.
#[test]
fn a_certificate_naming_the_pinned_institution_but_signed_by_another_key_is_refused() {
    let w = world();
    let fake = InstitutionSigningKey::generate().unwrap();
    let mallory = Identity::generate().unwrap();
    let mut c =
        DoctorCertificate::parse(&certify(&fake, &terms(mallory.public(), Role::Doctor)).unwrap())
            .unwrap();
    c.institution = w.hospital.public();
    let forged = c.signed_by(&fake);
    let e = inst(institution::verify(&forged, &w.pins, NOW).unwrap_err());
    assert!(matches!(e, InstitutionError::BadSignature { .. }), "{e}");
}

/// A doctor promotes himself to responsible (role byte), extends his
/// validity, swaps in another key: every single changed byte is refused.
#[test]
fn every_tampered_certificate_byte_is_refused() {
    let w = world();
    let c = cert(&w, Role::Doctor);
    // The role byte at offset 5: doctor (1) → responsible (2).
    let mut promoted = c.clone();
    promoted[5] = 2;
    let e = inst(institution::verify(&promoted, &w.pins, NOW).unwrap_err());
    assert!(matches!(e, InstitutionError::BadSignature { .. }), "{e}");
    for i in 0..c.len() {
        for x in [0x01u8, 0x80] {
            let mut t = c.clone();
            t[i] ^= x;
            assert!(
                institution::verify(&t, &w.pins, NOW).is_err(),
                "byte {i} ^ {x:#x} accepted"
            );
        }
    }
    for n in 0..c.len() {
        assert!(institution::verify(&c[..n], &w.pins, NOW).is_err());
    }
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused() {
    let w = world();
    let c = cert(&w, Role::Doctor);
    let e = inst(institution::verify(&c, &w.pins, NOW + YEAR).unwrap_err());
    assert!(
        matches!(e, InstitutionError::CertificateExpired { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("T"), "RFC 3339 times: {e}");
    let e = inst(institution::verify(&c, &w.pins, NOW - 11).unwrap_err());
    assert!(
        matches!(e, InstitutionError::CertificateNotYetValid { .. }),
        "{e}"
    );
    assert!(institution::verify(&c, &w.pins, NOW + YEAR - 1).is_ok());
}

#[test]
fn unknown_versions_and_roles_are_typed() {
    let w = world();
    let c = cert(&w, Role::Doctor);
    let mut v2 = c.clone();
    v2[4] = 2;
    assert!(matches!(
        institution::verify(&v2, &w.pins, NOW).unwrap_err(),
        VaultError::UnknownVersion {
            version: 2,
            supported: 1,
            ..
        }
    ));
    let mut r9 = c.clone();
    r9[5] = 9;
    let e = inst(institution::verify(&r9, &w.pins, NOW).unwrap_err());
    assert_eq!(e, InstitutionError::UnknownRole { role: 9 });
    assert_eq!(e.blame(), Blame::Input);
}

#[test]
fn an_unpinned_institution_is_refused_from_then_on() {
    let mut w = world();
    let c = cert(&w, Role::Doctor);
    assert!(institution::verify(&c, &w.pins, NOW).is_ok());
    w.pins.unpin(&w.hospital.public()).unwrap();
    let e = inst(institution::verify(&c, &w.pins, NOW).unwrap_err());
    assert!(matches!(e, InstitutionError::Unpinned { .. }), "{e}");
    let e = inst(w.pins.unpin(&w.hospital.public()).unwrap_err());
    assert!(matches!(e, InstitutionError::NoSuchPin { .. }), "{e}");
}

#[test]
fn certify_refuses_bad_terms() {
    let w = world();
    let mut t = terms(w.doctor.public(), Role::Doctor);
    t.name = "";
    assert_eq!(certify(&w.hospital, &t).unwrap_err().blame(), Blame::Input);
    t.name = "Dr. Evil\nrecord 00 grant 00 released";
    assert_eq!(certify(&w.hospital, &t).unwrap_err().blame(), Blame::Input);
    let long = "x".repeat(129);
    t.name = &long;
    assert_eq!(certify(&w.hospital, &t).unwrap_err().blame(), Blame::Input);
    let mut t = terms(w.doctor.public(), Role::Doctor);
    t.not_after = t.not_before;
    assert_eq!(certify(&w.hospital, &t).unwrap_err().blame(), Blame::Input);
}

// ---- the responsible doctor -------------------------------------------------

#[test]
fn only_a_responsible_certificate_names_the_responsible_doctor() {
    let mut w = world();
    let plain = cert(&w, Role::Doctor);
    let e = inst(w.pins.set_responsible(&plain, NOW).unwrap_err());
    assert!(
        matches!(e, InstitutionError::NotResponsibleRole { .. }),
        "{e}"
    );
    assert!(w.pins.responsible().is_none());

    let resp = cert(&w, Role::Responsible);
    let d = w.pins.set_responsible(&resp, NOW).unwrap();
    assert!(d.responsible_for_patient);
    assert!(
        institution::verify(&resp, &w.pins, NOW)
            .unwrap()
            .responsible_for_patient
    );
    // Another responsible doctor of the same hospital is not the patient's.
    let other = Identity::generate().unwrap();
    let oc = certify(&w.hospital, &terms(other.public(), Role::Responsible)).unwrap();
    assert!(
        !institution::verify(&oc, &w.pins, NOW)
            .unwrap()
            .responsible_for_patient
    );
    // A stranger's responsible certificate cannot be named.
    let fake = InstitutionSigningKey::generate().unwrap();
    let fc = certify(&fake, &terms(w.doctor.public(), Role::Responsible)).unwrap();
    assert!(w.pins.set_responsible(&fc, NOW).is_err());
    assert_eq!(w.pins.responsible().unwrap().doctor, w.doctor.public());
    // Unpinning the hospital forgets the responsible doctor it certified.
    w.pins.unpin(&w.hospital.public()).unwrap();
    assert!(w.pins.responsible().is_none());
}

// ---- break-glass emergency requests ----------------------------------------

#[test]
fn an_institutions_emergency_request_verifies_once() {
    let w = world();
    let c = cert(&w, Role::Doctor);
    let req = emergency(&w.hospital, &c, NOW, 4 * 3600);
    let mut seen = ReplaySet::new();
    let v = accept_emergency(&req, &w.pins, &mut seen, NOW + 60).unwrap();
    assert_eq!(v.doctor.doctor, w.doctor.public());
    assert_eq!(v.expires_at, NOW + 4 * 3600);
    assert_eq!(v.reason, "unconscious in the emergency department");
    assert!(v.covers(&RecordId([7; 16]), None));
    assert!(!v.covers(&RecordId([9; 16]), None));
    // The same bytes again: a replay.
    let e = inst(accept_emergency(&req, &w.pins, &mut seen, NOW + 61).unwrap_err());
    assert!(matches!(e, InstitutionError::Replayed { .. }), "{e}");
    // A fresh request (new nonce) for the same doctor is fine.
    let again = emergency(&w.hospital, &c, NOW, 4 * 3600);
    assert!(accept_emergency(&again, &w.pins, &mut seen, NOW + 62).is_ok());
    assert_eq!(seen.len(), 2);
}

/// A doctor makes an Ed25519 key of his own and signs an emergency request
/// with it, naming his real certificate and the pinned hospital.
#[test]
fn a_doctor_signing_an_emergency_request_himself_is_refused() {
    let w = world();
    let c = cert(&w, Role::Responsible);
    let own = InstitutionSigningKey::generate().unwrap();
    let mut req = EmergencyRequest::parse(&emergency(&w.hospital, &c, NOW, 3600)).unwrap();
    req.nonce = [1; 16];
    let forged = req.clone().signed_by(&own);
    let e = inst(verify_emergency(&forged, &w.pins, NOW).unwrap_err());
    assert!(matches!(e, InstitutionError::BadSignature { .. }), "{e}");
    // Or names his own key as the institution: not pinned.
    req.institution = own.public();
    let e = inst(verify_emergency(&req.signed_by(&own), &w.pins, NOW).unwrap_err());
    assert!(matches!(e, InstitutionError::Unpinned { .. }), "{e}");
    // And request_emergency itself refuses a certificate of another issuer.
    assert!(matches!(
        inst(
            request_emergency(
                &own,
                &EmergencyTerms {
                    certificate: &c,
                    scope: records(),
                    reason: "x",
                    issued_at: NOW,
                    valid_for_s: 60,
                    nonce: None,
                }
            )
            .unwrap_err()
        ),
        InstitutionError::WrongInstitution { .. }
    ));
}

#[test]
fn an_institution_not_allowed_emergency_access_is_refused() {
    let mut w = world();
    w.pins.set_emergency(&w.hospital.public(), false).unwrap();
    let c = cert(&w, Role::Doctor);
    let req = emergency(&w.hospital, &c, NOW, 3600);
    let e = inst(verify_emergency(&req, &w.pins, NOW).unwrap_err());
    assert!(
        matches!(e, InstitutionError::EmergencyNotAllowed { .. }),
        "{e}"
    );
    // The certificate still verifies for ordinary sharing.
    assert!(institution::verify(&c, &w.pins, NOW).is_ok());
    w.pins.set_emergency(&w.hospital.public(), true).unwrap();
    assert!(verify_emergency(&req, &w.pins, NOW).is_ok());
}

#[test]
fn expired_future_and_over_long_requests_are_refused() {
    let w = world();
    let c = cert(&w, Role::Doctor);
    let req = emergency(&w.hospital, &c, NOW, 3600);
    let e = inst(verify_emergency(&req, &w.pins, NOW + 3600).unwrap_err());
    assert!(
        matches!(e, InstitutionError::EmergencyExpired { .. }),
        "{e}"
    );
    // Issued in the future: up to 5 minutes of clock skew are allowed.
    let ahead = emergency(&w.hospital, &c, NOW + 301, 3600);
    let e = inst(verify_emergency(&ahead, &w.pins, NOW).unwrap_err());
    assert!(
        matches!(e, InstitutionError::EmergencyNotYetValid { .. }),
        "{e}"
    );
    let skew = emergency(&w.hospital, &c, NOW + 300, 3600);
    assert!(verify_emergency(&skew, &w.pins, NOW).is_ok(), "5 min skew");

    // request_emergency will not make an over-long request ...
    let too_long = request_emergency(
        &w.hospital,
        &EmergencyTerms {
            certificate: &c,
            scope: records(),
            reason: "x",
            issued_at: NOW,
            valid_for_s: MAX_EMERGENCY_VALIDITY_S + 1,
            nonce: None,
        },
    );
    assert_eq!(too_long.unwrap_err().blame(), Blame::Input);
    // ... and one the institution signs anyway (its own tool) is refused.
    let mut r = EmergencyRequest::parse(&req).unwrap();
    r.expires_at = r.issued_at + 7 * 86_400;
    let long = r.signed_by(&w.hospital);
    let e = inst(verify_emergency(&long, &w.pins, NOW).unwrap_err());
    assert_eq!(
        e,
        InstitutionError::ValidityTooLong {
            seconds: 7 * 86_400,
            max: MAX_EMERGENCY_VALIDITY_S
        }
    );
    // Exactly 24 h is allowed.
    assert!(
        verify_emergency(
            &emergency(&w.hospital, &c, NOW, MAX_EMERGENCY_VALIDITY_S),
            &w.pins,
            NOW
        )
        .is_ok()
    );
}

#[test]
fn a_request_with_an_expired_certificate_or_another_institutions_doctor_is_refused() {
    let mut w = world();
    let mut t = terms(w.doctor.public(), Role::Doctor);
    t.not_after = NOW + 100;
    let short = certify(&w.hospital, &t).unwrap();
    let req = emergency(&w.hospital, &short, NOW, 3600);
    assert!(verify_emergency(&req, &w.pins, NOW + 99).is_ok());
    let e = inst(verify_emergency(&req, &w.pins, NOW + 100).unwrap_err());
    assert!(
        matches!(e, InstitutionError::CertificateExpired { .. }),
        "{e}"
    );

    // Clinic B (pinned, allowed) signs a request for hospital A's doctor.
    let clinic = InstitutionSigningKey::generate().unwrap();
    w.pins.pin(clinic.public(), "Clinic B", true, NOW).unwrap();
    let mut r =
        EmergencyRequest::parse(&emergency(&w.hospital, &cert(&w, Role::Doctor), NOW, 3600))
            .unwrap();
    r.institution = clinic.public();
    let e = inst(verify_emergency(&r.signed_by(&clinic), &w.pins, NOW).unwrap_err());
    assert!(
        matches!(e, InstitutionError::WrongInstitution { .. }),
        "{e}"
    );
}

#[test]
fn every_tampered_emergency_byte_is_refused() {
    let w = world();
    let req = emergency(&w.hospital, &cert(&w, Role::Doctor), NOW, 3600);
    for i in 0..req.len() {
        let mut t = req.clone();
        t[i] ^= 0x01;
        assert!(
            verify_emergency(&t, &w.pins, NOW).is_err(),
            "byte {i} accepted"
        );
    }
    for n in 0..req.len() {
        assert!(verify_emergency(&req[..n], &w.pins, NOW).is_err());
    }
    let mut longer = req.clone();
    longer.push(0);
    assert!(verify_emergency(&longer, &w.pins, NOW).is_err());
}

#[test]
fn a_patient_key_scope_covers_only_that_patient() {
    let w = world();
    let c = cert(&w, Role::Doctor);
    let req = request_emergency(
        &w.hospital,
        &EmergencyTerms {
            certificate: &c,
            scope: EmergencyScope::Patient([5; 32]),
            reason: "stroke",
            issued_at: NOW,
            valid_for_s: 600,
            nonce: None,
        },
    )
    .unwrap();
    let v = verify_emergency(&req, &w.pins, NOW).unwrap();
    assert!(v.covers(&RecordId([1; 16]), Some(&[5; 32])));
    assert!(!v.covers(&RecordId([1; 16]), Some(&[6; 32])));
    assert!(!v.covers(&RecordId([1; 16]), None));
}

// ---- the patient's device store ---------------------------------------------

#[test]
fn pins_responsible_and_replay_set_persist_in_the_device_store() {
    let d = tempfile::tempdir().unwrap();
    let w = world();
    let vault = Vault::open(d.path()).unwrap();
    assert!(PinnedInstitutions::load(&vault).unwrap().list().is_empty());
    let mut pins = PinnedInstitutions::load(&vault).unwrap();
    assert!(
        pins.pin(w.hospital.public(), "St. Example", false, NOW)
            .unwrap()
    );
    assert!(
        !pins
            .pin(w.hospital.public(), "St. Example Hospital", true, NOW + 5)
            .unwrap()
    );
    let resp = cert(&w, Role::Responsible);
    pins.set_responsible(&resp, NOW).unwrap();
    pins.save(&vault).unwrap();

    let vault = Vault::open(d.path()).unwrap();
    let back = PinnedInstitutions::load(&vault).unwrap();
    assert_eq!(back, pins);
    assert_eq!(back.list()[0].name, "St. Example Hospital");
    assert_eq!(back.list()[0].pinned_at, NOW);
    assert!(back.list()[0].emergency);
    assert_eq!(back.responsible().unwrap().certificate, resp);
    // Stored in the private store, not in the cloud.
    assert!(d.path().join("device/settings/institutions.json").is_file());
    assert!(!d.path().join("cloud/settings").exists());

    // A replay survives a restart of the gate.
    let req = emergency(&w.hospital, &resp, NOW, 3600);
    let mut seen = ReplaySet::load(&vault).unwrap();
    accept_emergency(&req, &back, &mut seen, NOW).unwrap();
    seen.save(&vault).unwrap();
    let mut seen = ReplaySet::load(&Vault::open(d.path()).unwrap()).unwrap();
    let e = inst(accept_emergency(&req, &back, &mut seen, NOW + 1).unwrap_err());
    assert!(matches!(e, InstitutionError::Replayed { .. }), "{e}");
    // Entries go a day after their request expired, no sooner.
    seen.prune(NOW + 3600 + MAX_EMERGENCY_VALIDITY_S - 1);
    assert_eq!(seen.len(), 1);
    seen.prune(NOW + 3600 + MAX_EMERGENCY_VALIDITY_S);
    assert!(seen.is_empty());

    // A corrupted or future pins file is an error, not an empty trust list.
    vault
        .device_setting("institutions.json", Some(b"{\"version\":1}".to_vec()))
        .unwrap();
    assert!(PinnedInstitutions::load(&vault).is_err());
    let mut v9 = String::from_utf8(back.to_json().unwrap()).unwrap();
    v9 = v9.replacen("\"version\": 1", "\"version\": 9", 1);
    assert!(matches!(
        PinnedInstitutions::from_json(v9.as_bytes()).unwrap_err(),
        VaultError::UnknownVersion { version: 9, .. }
    ));
}

// ---- key texts --------------------------------------------------------------

#[test]
fn institution_key_texts() {
    let k = InstitutionSigningKey::generate().unwrap();
    let pk = k.public().to_text();
    assert!(pk.starts_with("aorta-institution-1"));
    assert_eq!(pk.len(), "aorta-institution-1".len() + 64);
    assert_eq!(
        InstitutionKey::from_text(&format!(" {pk}\n")).unwrap(),
        k.public()
    );
    assert!(InstitutionKey::from_text(&pk.to_uppercase()).is_err());
    assert!(InstitutionKey::from_text(&pk[..pk.len() - 1]).is_err());
    // A clinician key is not an institution key.
    let c = Identity::generate().unwrap().public().to_text();
    assert!(InstitutionKey::from_text(&c).is_err());

    let file = k.to_file_text();
    let back = InstitutionSigningKey::from_file_text(&file).unwrap();
    assert_eq!(back.public(), k.public());
    let secret_line = file.lines().last().unwrap();
    assert!(secret_line.starts_with("AORTA-INSTITUTION-SECRET-1"));
    assert!(!format!("{k:?}").contains(&secret_line["AORTA-INSTITUTION-SECRET-1".len()..]));
    // A public key comment that does not match the secret is refused.
    let other = InstitutionSigningKey::generate().unwrap();
    let mixed = format!("# public key: {}\n{secret_line}\n", other.public());
    assert!(InstitutionSigningKey::from_file_text(&mixed).is_err());
    assert!(
        InstitutionSigningKey::from_file_text(&format!("{secret_line}\n{secret_line}\n")).is_err()
    );

    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("inst.key");
    institution::write_signing_key(&p, &k).unwrap();
    let again = institution::write_signing_key(&p, &other).unwrap_err();
    assert!(
        again.to_string().contains("refusing to overwrite"),
        "{again}"
    );
    assert_eq!(
        institution::read_signing_key(&p).unwrap().public(),
        k.public()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

// ---- vectors and fuzzing ----------------------------------------------------

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/vectors/vault-institutions")
}

/// The deterministic vector set: institution seed 0x11…, doctor X25519 key
/// derived from 0x22…, fixed times, nonce and records.
fn vector_set() -> Vec<(&'static str, Vec<u8>)> {
    let hospital = InstitutionSigningKey::from_seed(&[0x11; 32]).unwrap();
    let doctor = Identity::derive(&[0x22; 32]).unwrap();
    let t = |role| CertTerms {
        doctor: doctor.public(),
        name: "Dr. Ada Example",
        staff_id: "S-0042",
        role,
        not_before: 1_800_000_000,
        not_after: 1_800_000_000 + YEAR,
    };
    let doc = certify(&hospital, &t(Role::Doctor)).unwrap();
    let resp = certify(&hospital, &t(Role::Responsible)).unwrap();
    let req = request_emergency(
        &hospital,
        &EmergencyTerms {
            certificate: &resp,
            scope: EmergencyScope::Records(vec![RecordId(*b"record-id-000001")]),
            reason: "unconscious in the emergency department",
            issued_at: 1_800_003_600,
            valid_for_s: 4 * 3600,
            nonce: Some(*b"emergency-nonce1"),
        },
    )
    .unwrap();
    vec![
        (
            "institution.key",
            hospital.to_file_text().as_bytes().to_vec(),
        ),
        (
            "institution.pk",
            format!("{}\n", hospital.public()).into_bytes(),
        ),
        ("doctor.identity", doctor.to_text().as_bytes().to_vec()),
        ("doctor.aodc", doc),
        ("responsible.aodc", resp),
        ("emergency.aoer", req),
    ]
}

/// Regenerate (only when a format version changes) with
/// `AORTA_WRITE_VECTORS=1 cargo test -p aorta-vault --test institutions`.
#[test]
fn vectors_match_and_verify() {
    let d = vectors_dir();
    let write = std::env::var_os("AORTA_WRITE_VECTORS").is_some();
    if write {
        std::fs::create_dir_all(&d).unwrap();
    }
    for (name, bytes) in vector_set() {
        let p = d.join(name);
        if write {
            std::fs::write(&p, &bytes).unwrap();
        }
        let stored = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(stored, bytes, "{name} differs from this build's output");
    }
    let read = |n: &str| std::fs::read(d.join(n)).unwrap();
    let hospital =
        InstitutionKey::from_text(std::str::from_utf8(&read("institution.pk")).unwrap()).unwrap();
    let mut pins = PinnedInstitutions::new();
    pins.pin(hospital, "Vector Hospital", true, 1_800_000_000)
        .unwrap();
    let d1 = institution::verify(&read("doctor.aodc"), &pins, 1_800_003_600).unwrap();
    assert_eq!(d1.role, Role::Doctor);
    let doctor =
        Identity::from_text(std::str::from_utf8(&read("doctor.identity")).unwrap()).unwrap();
    assert_eq!(d1.doctor, doctor.public());
    pins.set_responsible(&read("responsible.aodc"), 1_800_003_600)
        .unwrap();
    let v = verify_emergency(&read("emergency.aoer"), &pins, 1_800_003_600).unwrap();
    assert!(v.doctor.responsible_for_patient);
    assert_eq!(v.nonce, *b"emergency-nonce1");
    assert_eq!(v.expires_at, 1_800_003_600 + 4 * 3600);
    // Decoded and re-encoded, the same bytes.
    assert!(fuzzing::doctor_certificate(&read("doctor.aodc")));
    assert!(fuzzing::doctor_certificate(&read("responsible.aodc")));
    assert!(fuzzing::emergency_request(&read("emergency.aoer")));
    let c = DoctorCertificate::from_bytes(&read("doctor.aodc")).unwrap();
    assert_eq!(c.to_bytes(), read("doctor.aodc"));
}

#[test]
fn vector_mutations_never_panic_and_never_verify() {
    let d = vectors_dir();
    let hospital = InstitutionSigningKey::from_seed(&[0x11; 32]).unwrap();
    let mut pins = PinnedInstitutions::new();
    pins.pin(hospital.public(), "Vector Hospital", true, 0)
        .unwrap();
    for (name, oracle) in [
        (
            "doctor.aodc",
            fuzzing::doctor_certificate as fn(&[u8]) -> bool,
        ),
        ("emergency.aoer", fuzzing::emergency_request),
    ] {
        let v = std::fs::read(d.join(name)).unwrap();
        let original = v.clone();
        for m in aorta_base::codec::mutations(&v, v.len()) {
            let _ = oracle(&m);
            if m != original {
                assert!(institution::verify(&m, &pins, 1_800_003_600).is_err());
                assert!(verify_emergency(&m, &pins, 1_800_003_600).is_err());
            }
        }
    }
}

proptest::proptest! {
    #[test]
    fn parsers_never_panic(d in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        static PINS: std::sync::OnceLock<PinnedInstitutions> = std::sync::OnceLock::new();
        let pins = PINS.get_or_init(PinnedInstitutions::new);
        let _ = fuzzing::doctor_certificate(&d);
        let _ = fuzzing::emergency_request(&d);
        let _ = institution::verify(&d, pins, NOW);
        let _ = verify_emergency(&d, pins, NOW);
        let _ = PinnedInstitutions::from_json(&d);
        let _ = ReplaySet::from_json(&d);
    }

    #[test]
    fn prefixed_inputs_never_panic(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..500), magic in 0usize..2) {
        let mut d = [b"AODC\x01".as_slice(), b"AOER\x01".as_slice()][magic].to_vec();
        d.extend_from_slice(&tail);
        let _ = fuzzing::doctor_certificate(&d);
        let _ = fuzzing::emergency_request(&d);
        let _ = DoctorCertificate::parse(&d);
        let _ = EmergencyRequest::parse(&d);
    }
}
