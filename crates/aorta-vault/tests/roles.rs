//! Institutions and roles wired through the vault's rules and the release
//! gate (issue 14 item 5; `docs/vault-sharing.md` request kinds 2 and 3,
//! `docs/vault-institutions.md`), tried as each party would try it: a
//! patient sharing to a certificate from an institution they never pinned,
//! an expired one, a doctor not named responsible, a plain doctor using the
//! responsible path, an institution replaying or not allowed break-glass,
//! a stranger relaying an emergency request, and someone wiping the log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use std::cell::Cell;

use aorta_base::codec::Encode;
use aorta_crypto::selective::RecordId;
use aorta_vault::audit::{AuditAnchor, AuditReport, Event};
use aorta_vault::gate::roles::{
    ROLE_REQUEST_INFO, RoleRequest, build_role_request, open_role_response,
};
use aorta_vault::gate::{self, KIND_EMERGENCY, KIND_RESPONSIBLE, Status};
use aorta_vault::grant::{Identity, RecipientKey};
use aorta_vault::institution::{
    EmergencyScope, EmergencyTerms, InstitutionError, InstitutionSigningKey, Role, certify,
    request_emergency,
};
use aorta_vault::rules::{GrantUse, Recipient, RoleUse, ShareOptions};
use aorta_vault::{EhrVault, VaultError};
use common::{Direct, NOW, YEAR, inst, opts, public_only, share_to, terms};

thread_local! {
    static CLOCK: Cell<u64> = const { Cell::new(NOW) };
}
fn clock() -> u64 {
    CLOCK.with(Cell::get)
}
fn set_clock(t: u64) {
    CLOCK.with(|c| c.set(t));
}

struct World {
    t: tempfile::TempDir,
    patient: EhrVault,
    pk: RecipientKey,
    rid: RecordId,
    other: RecordId,
    hospital: InstitutionSigningKey,
    doctor: Identity,
    doctor_vault: EhrVault,
}

fn world() -> World {
    set_clock(NOW);
    let t = tempfile::tempdir().unwrap();
    let patient = EhrVault::open(&t.path().join("p"))
        .unwrap()
        .with_clock(clock);
    let rid = patient.protect(b"lab results", b"pw", &opts()).unwrap();
    let other = patient
        .protect(b"discharge letter", b"pw", &opts())
        .unwrap();
    let hospital = InstitutionSigningKey::generate().unwrap();
    patient
        .pin_institution(hospital.public(), "St. Example Hospital", true)
        .unwrap();
    let doctor_vault = public_only(&t.path().join("p"), &t.path().join("d"), clock);
    World {
        pk: patient.patient_key().unwrap(),
        t,
        patient,
        rid,
        other,
        hospital,
        doctor: Identity::generate().unwrap(),
        doctor_vault,
    }
}

fn cert_for(key: &InstitutionSigningKey, doctor: &Identity, role: Role) -> Vec<u8> {
    certify(key, &terms(doctor.public(), role)).unwrap()
}

fn emergency_for(w: &World, cert: &[u8], scope: EmergencyScope) -> Vec<u8> {
    request_emergency(
        &w.hospital,
        &EmergencyTerms {
            certificate: cert,
            scope,
            reason: "unconscious in the emergency department",
            issued_at: clock(),
            valid_for_s: 4 * 3600,
            nonce: None,
        },
    )
    .unwrap()
}

fn role_use<'a>(w: &'a World, kind: u8, credential: &'a [u8], who: &'a Identity) -> RoleUse<'a> {
    RoleUse {
        kind,
        credential,
        identity: who,
        patient: &w.pk,
        gate_url: "in process",
    }
}

/// The doctor's vault recovers `rid` by role (`kind`, `credential`,
/// proving `who`) through `gate`'s vault answering in process.
fn by_role(
    w: &World,
    rid: &RecordId,
    kind: u8,
    credential: &[u8],
    who: &Identity,
    gate: &EhrVault,
) -> Result<Vec<u8>, VaultError> {
    w.doctor_vault
        .recover_with_role(rid, &role_use(w, kind, credential, who), &Direct(gate))
}

fn entries(v: &EhrVault) -> Vec<aorta_vault::audit::Entry> {
    v.audit_verify().unwrap()
}

fn refused_by_gate(e: &VaultError) -> &'static str {
    match e {
        VaultError::GateRefused { status, .. } => status,
        other => panic!("expected a gate refusal, got {other:?}"),
    }
}

// ---- sharing to certified doctors ---------------------------------------------

#[test]
fn sharing_to_an_unpinned_forged_or_expired_certificate_is_refused() {
    let w = world();
    let share = |c: &[u8]| {
        w.patient.share(
            &w.rid,
            b"pw",
            &Recipient::Certified(c),
            &ShareOptions::default(),
        )
    };
    // A certificate from an institution the patient never pinned.
    let stranger = InstitutionSigningKey::generate().unwrap();
    let e = share(&cert_for(&stranger, &w.doctor, Role::Doctor)).unwrap_err();
    assert!(matches!(inst(e), InstitutionError::Unpinned { .. }));
    // One byte changed (the doctor key swapped for another).
    let mut forged = cert_for(&w.hospital, &w.doctor, Role::Doctor);
    forged[45] ^= 1;
    let e = share(&forged).unwrap_err();
    assert!(matches!(inst(e), InstitutionError::BadSignature { .. }));
    // Expired, by the vault's clock.
    let good = cert_for(&w.hospital, &w.doctor, Role::Doctor);
    set_clock(NOW + YEAR + 1);
    let e = share(&good).unwrap_err();
    assert!(matches!(
        inst(e),
        InstitutionError::CertificateExpired { .. }
    ));
    set_clock(NOW);
    // None of those wrote a grant.
    assert!(!entries(&w.patient).iter().any(|e| e.event == Event::Grant));

    // A valid certificate: the grant is sealed to the certified key, the
    // gate entry and the audit entry name the certificate.
    let s = share(&good).unwrap();
    assert_eq!(s.header.recipient, w.doctor.public());
    let grant_entry = entries(&w.patient)
        .into_iter()
        .find(|e| e.event == Event::Grant)
        .unwrap();
    let cert_id = aorta_base::hex::encode(
        &aorta_vault::institution::DoctorCertificate::parse(&good)
            .unwrap()
            .id(),
    );
    assert!(
        grant_entry.detail.contains(&cert_id),
        "{}",
        grant_entry.detail
    );
    assert!(grant_entry.detail.contains("St. Example Hospital"));
    let table = std::fs::read_to_string(w.t.path().join(format!(
        "p/device/gate/grants/{}.json",
        s.header.grant_hex()
    )))
    .unwrap();
    assert!(table.contains(&cert_id), "{table}");
    let u = GrantUse {
        grant: &s.grant,
        identity: &w.doctor,
        patient: &w.pk,
        gate_url: None,
    };
    let got = w
        .doctor_vault
        .recover_with_grant(&w.rid, &u, &Direct(&w.patient))
        .unwrap();
    assert_eq!(got.bytes, b"lab results");

    // The patient unpins the institution: its certificates are refused.
    w.patient.unpin_institution(&w.hospital.public()).unwrap();
    let e = share(&good).unwrap_err();
    assert!(matches!(inst(e), InstitutionError::Unpinned { .. }));
}

#[test]
fn an_uncertified_share_is_audited_as_such() {
    let w = world();
    share_to(&w.patient, &w.rid, w.doctor.public());
    let g = entries(&w.patient)
        .into_iter()
        .find(|e| e.event == Event::Grant)
        .unwrap();
    assert!(g.detail.contains("uncertified"), "{}", g.detail);
}

// ---- the responsible doctor ---------------------------------------------------

#[test]
fn the_named_responsible_doctor_reads_every_record_without_a_grant() {
    let w = world();
    let c = cert_for(&w.hospital, &w.doctor, Role::Responsible);
    w.patient.set_responsible(&c).unwrap();
    for (rid, want) in [
        (w.rid, b"lab results".as_slice()),
        (w.other, b"discharge letter".as_slice()),
    ] {
        let got = by_role(&w, &rid, KIND_RESPONSIBLE, &c, &w.doctor, &w.patient).unwrap();
        assert_eq!(got, want);
    }
    let uses: Vec<_> = entries(&w.patient)
        .into_iter()
        .filter(|e| e.event == Event::Use)
        .collect();
    assert_eq!(uses.len(), 2);
    assert!(
        uses[0].detail.contains("responsible doctor"),
        "{}",
        uses[0].detail
    );

    // The certificate expires: refused by the gate's clock.
    set_clock(NOW + YEAR);
    let e = by_role(&w, &w.rid, KIND_RESPONSIBLE, &c, &w.doctor, &w.patient).unwrap_err();
    assert_eq!(refused_by_gate(&e), Status::Denied.name());
    set_clock(NOW);

    // The patient unpins the institution: refused from then on.
    w.patient.unpin_institution(&w.hospital.public()).unwrap();
    let e = by_role(&w, &w.rid, KIND_RESPONSIBLE, &c, &w.doctor, &w.patient).unwrap_err();
    assert_eq!(refused_by_gate(&e), Status::Denied.name());
    let last = entries(&w.patient).pop().unwrap();
    assert_eq!(last.event, Event::Refuse);
    assert!(last.detail.contains("not pinned"), "{}", last.detail);
}

#[test]
fn a_responsible_doctor_the_patient_did_not_name_is_refused_and_audited() {
    let w = world();
    let named = cert_for(&w.hospital, &w.doctor, Role::Responsible);
    w.patient.set_responsible(&named).unwrap();
    // Another doctor of the same hospital, also with the responsible role.
    let colleague = Identity::generate().unwrap();
    let c = cert_for(&w.hospital, &colleague, Role::Responsible);
    let e = by_role(&w, &w.rid, KIND_RESPONSIBLE, &c, &colleague, &w.patient).unwrap_err();
    assert_eq!(refused_by_gate(&e), Status::Denied.name());
    let last = entries(&w.patient).pop().unwrap();
    assert_eq!(last.event, Event::Refuse);
    assert!(
        last.detail
            .contains("not the responsible doctor the patient named")
    );
    // With no responsible doctor named at all, the same.
    w.patient.clear_responsible().unwrap();
    let e = by_role(&w, &w.rid, KIND_RESPONSIBLE, &named, &w.doctor, &w.patient).unwrap_err();
    assert_eq!(refused_by_gate(&e), Status::Denied.name());
}

#[test]
fn a_plain_doctor_certificate_cannot_use_the_responsible_path() {
    let w = world();
    w.patient
        .set_responsible(&cert_for(&w.hospital, &w.doctor, Role::Responsible))
        .unwrap();
    // The same doctor key, certified with the plain role.
    let plain = cert_for(&w.hospital, &w.doctor, Role::Doctor);
    let e = by_role(&w, &w.rid, KIND_RESPONSIBLE, &plain, &w.doctor, &w.patient).unwrap_err();
    assert_eq!(refused_by_gate(&e), Status::Denied.name());
    let last = entries(&w.patient).pop().unwrap();
    assert!(last.detail.contains("role is doctor"), "{}", last.detail);
}

/// A request carrying `credential` whose proof is made with `who`'s key —
/// what a stranger presenting someone else's certificate can build.
fn forged_role_request(w: &World, kind: u8, credential: &[u8], who: &Identity) -> Vec<u8> {
    let header = gate::RequestHeader {
        kind,
        grant_id: [0; 16],
        record_id: w.rid,
        sent_at: clock(),
        nonce: [9; 16],
    };
    // The credential's id, as a real request carries it.
    let mut req = RoleRequest {
        header,
        credential,
        enc: [0; 32],
        proof: [0; 16],
    };
    req.header.grant_id = {
        use sha2::Digest;
        let h = sha2::Sha256::digest(credential);
        h[..16].try_into().unwrap()
    };
    let bytes = req.to_bytes();
    let aad = &bytes[..bytes.len() - 48];
    let (enc, tag) = gate::seal_auth(who, &w.pk, ROLE_REQUEST_INFO, &[], aad).unwrap();
    req.enc = enc;
    req.proof = tag.try_into().unwrap();
    req.to_bytes()
}

#[test]
fn a_stranger_presenting_the_responsible_doctors_certificate_gets_nothing() {
    let w = world();
    let c = cert_for(&w.hospital, &w.doctor, Role::Responsible);
    w.patient.set_responsible(&c).unwrap();
    let stranger = Identity::generate().unwrap();
    // Our own builder refuses to build it.
    assert!(build_role_request(KIND_RESPONSIBLE, &c, &w.rid, &stranger, &w.pk, NOW).is_err());
    let req = forged_role_request(&w, KIND_RESPONSIBLE, &c, &stranger);
    let (status, answer) = w.patient.answer_release(&req);
    assert_eq!(status, Status::Unauthorised);
    assert_eq!(answer.len(), gate::RESPONSE_HEADER_LEN);
}

// ---- break-glass --------------------------------------------------------------

#[test]
fn break_glass_releases_once_per_record_and_is_audited_and_shown() {
    let w = world();
    let c = cert_for(&w.hospital, &w.doctor, Role::Doctor);
    let req = emergency_for(&w, &c, EmergencyScope::Records(vec![w.rid]));
    let got = by_role(&w, &w.rid, KIND_EMERGENCY, &req, &w.doctor, &w.patient).unwrap();
    assert_eq!(got, b"lab results");
    // The same emergency request again (a fresh gate request): refused.
    let e = by_role(&w, &w.rid, KIND_EMERGENCY, &req, &w.doctor, &w.patient).unwrap_err();
    assert_eq!(refused_by_gate(&e), Status::Replayed.name());
    // After a gate restart (a new process over the same vault): refused.
    let restarted = EhrVault::open_existing(&w.t.path().join("p"))
        .unwrap()
        .with_clock(clock);
    let e = by_role(&w, &w.rid, KIND_EMERGENCY, &req, &w.doctor, &restarted).unwrap_err();
    assert_eq!(refused_by_gate(&e), Status::Replayed.name());
    // A record the request does not name: refused.
    let e = by_role(&w, &w.other, KIND_EMERGENCY, &req, &w.doctor, &w.patient).unwrap_err();
    assert_eq!(refused_by_gate(&e), Status::Denied.name());

    let all = entries(&w.patient);
    let report = AuditReport::new(&all);
    assert_eq!(report.emergency_accesses.len(), 1);
    let a = report.emergency_accesses[0];
    assert_eq!(a.event.name(), "emergency-access");
    assert_eq!(a.record, w.rid.to_hex());
    for fact in [
        "unconscious in the emergency department",
        "Dr. Ada Example",
        "S-0042",
        "St. Example Hospital",
    ] {
        assert!(a.detail.contains(fact), "{fact} missing from {}", a.detail);
    }
    assert_eq!(report.emergency_refusals.len(), 3);
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("\"emergency_accesses\""));
    assert!(json.contains("\"event\":\"emergency-access\""));
}

#[test]
fn a_patient_scope_request_covers_every_record_of_this_patient_only() {
    let w = world();
    let c = cert_for(&w.hospital, &w.doctor, Role::Doctor);
    let mine = emergency_for(&w, &c, EmergencyScope::Patient(w.pk.0));
    for rid in [w.rid, w.other] {
        by_role(&w, &rid, KIND_EMERGENCY, &mine, &w.doctor, &w.patient).unwrap();
    }
    let someone_else = emergency_for(&w, &c, EmergencyScope::Patient([5; 32]));
    let e = by_role(
        &w,
        &w.rid,
        KIND_EMERGENCY,
        &someone_else,
        &w.doctor,
        &w.patient,
    )
    .unwrap_err();
    assert_eq!(refused_by_gate(&e), Status::Denied.name());
}

#[test]
fn an_institution_not_allowed_break_glass_is_refused_and_audited() {
    let w = world();
    w.patient
        .set_institution_emergency(&w.hospital.public(), false)
        .unwrap();
    let c = cert_for(&w.hospital, &w.doctor, Role::Doctor);
    let req = emergency_for(&w, &c, EmergencyScope::Records(vec![w.rid]));
    let e = by_role(&w, &w.rid, KIND_EMERGENCY, &req, &w.doctor, &w.patient).unwrap_err();
    assert_eq!(refused_by_gate(&e), Status::Denied.name());
    let all = entries(&w.patient);
    let last = all.last().unwrap();
    assert_eq!(last.event, Event::Refuse);
    assert!(
        last.detail.contains("not allowed emergency access"),
        "{}",
        last.detail
    );
    assert_eq!(AuditReport::new(&all).emergency_refusals.len(), 1);
    // Allowed again, the same request (not used up by the refusal) works.
    w.patient
        .set_institution_emergency(&w.hospital.public(), true)
        .unwrap();
    by_role(&w, &w.rid, KIND_EMERGENCY, &req, &w.doctor, &w.patient).unwrap();
    // An expired request: refused, by the gate's clock.
    set_clock(NOW + 5 * 3600);
    let e = by_role(&w, &w.other, KIND_EMERGENCY, &req, &w.doctor, &w.patient).unwrap_err();
    assert_eq!(refused_by_gate(&e), Status::Expired.name());
}

#[test]
fn a_stranger_relaying_an_emergency_request_gets_nothing_they_can_open() {
    let w = world();
    let c = cert_for(&w.hospital, &w.doctor, Role::Doctor);
    let aoer = emergency_for(&w, &c, EmergencyScope::Records(vec![w.rid]));
    let stranger = Identity::generate().unwrap();
    // The stranger presents the emergency request with their own key:
    // refused, audited, and the request is not used up.
    let forged = forged_role_request(&w, KIND_EMERGENCY, &aoer, &stranger);
    let (status, answer) = w.patient.answer_release(&forged);
    assert_eq!(status, Status::Unauthorised);
    assert_eq!(answer.len(), gate::RESPONSE_HEADER_LEN);
    let last = entries(&w.patient).pop().unwrap();
    assert_eq!(last.event, Event::Refuse);
    assert!(last.detail.contains("relayed"), "{}", last.detail);
    // The stranger relays the doctor's own gate request (copied off the
    // network): the release is sealed to the doctor's key.
    let (bytes, header) =
        build_role_request(KIND_EMERGENCY, &aoer, &w.rid, &w.doctor, &w.pk, NOW).unwrap();
    let (status, answer) = w.patient.answer_release(&bytes);
    assert_eq!(status, Status::Released);
    let e = open_role_response(&answer, &header, &w.pk, &stranger).unwrap_err();
    assert!(matches!(e, VaultError::GateAnswer { .. }), "{e}");
    // The doctor, who holds the key, opens it.
    open_role_response(&answer, &header, &w.pk, &w.doctor).unwrap();
}

#[test]
fn role_requests_survive_mutation_without_panic_or_release() {
    let w = world();
    let c = cert_for(&w.hospital, &w.doctor, Role::Responsible);
    w.patient.set_responsible(&c).unwrap();
    let (good, _) =
        build_role_request(KIND_RESPONSIBLE, &c, &w.rid, &w.doctor, &w.pk, NOW).unwrap();
    assert!(aorta_vault::fuzzing::gate_role_request(&good));
    for m in aorta_base::codec::mutations(&good, 4096) {
        let _ = aorta_vault::fuzzing::gate_role_request(&m);
        let (status, _) = w.patient.answer_release(&m);
        assert_ne!(status, Status::Released, "a mutated request was released");
    }
}

// ---- pins and anchors ---------------------------------------------------------

#[test]
fn pin_changes_are_audited() {
    let w = world();
    let c = cert_for(&w.hospital, &w.doctor, Role::Responsible);
    w.patient.set_responsible(&c).unwrap();
    w.patient
        .set_institution_emergency(&w.hospital.public(), false)
        .unwrap();
    w.patient.clear_responsible().unwrap();
    w.patient.unpin_institution(&w.hospital.public()).unwrap();
    let pins: Vec<_> = entries(&w.patient)
        .into_iter()
        .filter(|e| e.event == Event::Pin)
        .map(|e| e.detail)
        .collect();
    assert_eq!(pins.len(), 5, "{pins:?}");
    assert!(pins[0].starts_with("pinned institution \"St. Example Hospital\""));
    assert!(pins[1].contains("responsible doctor named"));
    assert!(pins[2].contains("emergency access denied"));
    assert!(pins[3].contains("responsible doctor cleared"));
    assert!(pins[4].starts_with("unpinned institution"));
}

#[test]
fn the_anchor_a_grant_carries_catches_a_wiped_or_truncated_log() {
    let w = world();
    let c = cert_for(&w.hospital, &w.doctor, Role::Doctor);
    let s = w
        .patient
        .share(
            &w.rid,
            b"pw",
            &Recipient::Certified(&c),
            &ShareOptions::default(),
        )
        .unwrap();
    // The doctor extracts the anchor from the grant they hold.
    let t = gate::open_grant(&s.grant, &w.doctor, &w.pk).unwrap();
    let anchor = AuditAnchor::parse(&t.audit_anchor).unwrap();
    let text = anchor.to_text();
    assert!(text.starts_with("aorta-audit-anchor-1:"));
    let anchor = AuditAnchor::from_text(&text).unwrap();
    w.patient.audit_verify_with_anchors(&[anchor]).unwrap();
    // Whoever holds the device truncates the log to one entry, then wipes
    // it with the device anchor: the grant's anchor still says more.
    let p = w.t.path().join("p");
    let log = std::fs::read_to_string(p.join("audit.log")).unwrap();
    std::fs::write(
        p.join("audit.log"),
        format!("{}\n", log.lines().next().unwrap()),
    )
    .unwrap();
    assert!(w.patient.audit_verify_with_anchors(&[anchor]).is_err());
    std::fs::remove_file(p.join("audit.log")).unwrap();
    std::fs::remove_file(p.join("audit.log.head")).unwrap();
    std::fs::remove_dir_all(p.join("device/audit")).unwrap();
    let fresh = EhrVault::open_existing(&p).unwrap();
    let e = fresh.audit_verify_with_anchors(&[anchor]).unwrap_err();
    assert_eq!(e.blame(), aorta_vault::Blame::Tampered, "{e}");
}

#[test]
fn a_rekey_is_audited_as_rekey() {
    let w = world();
    w.patient.rekey(&w.rid, b"pw").unwrap();
    let last = entries(&w.patient).pop().unwrap();
    assert_eq!(last.event, Event::Rekey);
    assert_eq!(last.event.name(), "rekey");
    assert_eq!(last.record, w.rid.to_hex());
}
