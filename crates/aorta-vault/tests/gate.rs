//! The release gate, tried as a revoked recipient, a recipient with their
//! clock turned back, a stranger forging grants, a network stranger
//! replaying requests and sending garbage: each attack was first written
//! against the old grants (which carried the material) and watched succeed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use std::cell::RefCell;

use aorta_base::codec::Encode;
use aorta_crypto::selective::{RecordId, RecoveryMaterial, SelectiveError};
use aorta_vault::gate::{self, GateTransport, GrantV2, Status};
use aorta_vault::grant::{self, Identity, RecipientKey};
use aorta_vault::rules::{GrantUse, Recipient, RevokeTarget, ShareOptions};
use aorta_vault::{EhrVault, VaultError};
use common::{T0, at_t0, opts, public_only, share_to};
use hpke::Deserializable;

fn a_day_later() -> u64 {
    T0 + 86_400
}
fn an_hour_before() -> u64 {
    T0 - 3600
}

/// The patient's vault answering as the gate, in process; records requests
/// and answers as a network eavesdropper would.
struct Gate<'a> {
    vault: &'a EhrVault,
    seen: RefCell<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl<'a> Gate<'a> {
    fn new(vault: &'a EhrVault) -> Self {
        Self {
            vault,
            seen: RefCell::new(Vec::new()),
        }
    }
}

impl GateTransport for Gate<'_> {
    fn exchange(&self, _url: &str, request: &[u8]) -> Result<Vec<u8>, VaultError> {
        let (_, answer) = self.vault.answer_release(request);
        self.seen
            .borrow_mut()
            .push((request.to_vec(), answer.clone()));
        Ok(answer)
    }
}

fn recover(
    r: &EhrVault,
    rid: &RecordId,
    g: &[u8],
    who: &Identity,
    patient: &RecipientKey,
    gate: &dyn GateTransport,
) -> Result<Vec<u8>, VaultError> {
    let u = GrantUse {
        grant: g,
        identity: who,
        patient,
        gate_url: None,
    };
    r.recover_with_grant(rid, &u, gate).map(|r| r.bytes)
}

struct Setup {
    t: tempfile::TempDir,
    patient: EhrVault,
    pk: RecipientKey,
    rid: RecordId,
    doc: Identity,
}

fn setup() -> Setup {
    let t = tempfile::tempdir().unwrap();
    let patient = EhrVault::open(&t.path().join("p"))
        .unwrap()
        .with_clock(at_t0);
    let rid = patient.protect(b"lab results", b"pw", &opts()).unwrap();
    let pk = patient.patient_key().unwrap();
    Setup {
        t,
        patient,
        pk,
        rid,
        doc: Identity::generate().unwrap(),
    }
}

#[test]
fn revoked_grant_with_public_only_config_recovers_nothing() {
    let s = setup();
    let g = share_to(&s.patient, &s.rid, s.doc.public());
    let r = public_only(&s.t.path().join("p"), &s.t.path().join("r"), at_t0);
    let gate = Gate::new(&s.patient);
    assert_eq!(
        recover(&r, &s.rid, &g.grant, &s.doc, &s.pk, &gate).unwrap(),
        b"lab results"
    );
    s.patient.revoke(RevokeTarget::Grant(&g.grant)).unwrap();
    let e = recover(&r, &s.rid, &g.grant, &s.doc, &s.pk, &gate).unwrap_err();
    assert!(matches!(e, VaultError::Revoked { .. }), "{e}");
    // The grant itself carries nothing that recovers: no AOSM inside.
    let t = gate::open_grant(&g.grant, &s.doc, &s.pk).unwrap();
    assert_eq!(t.gate_url, aorta_vault::rules::DEFAULT_GATE_URL);
    assert!(!t.audit_anchor.is_empty(), "the audit anchor at issue time");
}

#[test]
fn expired_grant_with_the_recipients_clock_turned_back_is_refused_by_the_gate() {
    let s = setup();
    let g = s
        .patient
        .share(
            &s.rid,
            b"pw",
            &Recipient::Uncertified(s.doc.public()),
            &ShareOptions {
                valid_for_s: Some(60),
                ..Default::default()
            },
        )
        .unwrap();
    // The recipient's clock says T0; the gate's says a day later.
    let r = public_only(&s.t.path().join("p"), &s.t.path().join("r"), at_t0);
    let later = EhrVault::open_existing(&s.t.path().join("p"))
        .unwrap()
        .with_clock(a_day_later);
    // The request's own time is checked against the gate's clock too.
    let e = recover(&r, &s.rid, &g.grant, &s.doc, &s.pk, &Gate::new(&later)).unwrap_err();
    assert!(matches!(e, VaultError::GateRefused { .. }), "{e}");
    let r_later = public_only(&s.t.path().join("p"), &s.t.path().join("r2"), a_day_later);
    let e = recover(
        &r_later,
        &s.rid,
        &g.grant,
        &s.doc,
        &s.pk,
        &Gate::new(&later),
    )
    .unwrap_err();
    assert!(matches!(e, VaultError::Expired { .. }), "{e}");
    // Before its issue time (the gate's clock) it is not valid either.
    let before = EhrVault::open_existing(&s.t.path().join("p"))
        .unwrap()
        .with_clock(an_hour_before);
    let r_before = public_only(
        &s.t.path().join("p"),
        &s.t.path().join("r3"),
        an_hour_before,
    );
    let e = recover(
        &r_before,
        &s.rid,
        &g.grant,
        &s.doc,
        &s.pk,
        &Gate::new(&before),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            VaultError::GateRefused {
                status: "not yet valid",
                ..
            }
        ),
        "{e}"
    );
    let log = s.patient.audit_verify().unwrap();
    assert!(log.iter().any(|e| e.detail.contains("expired")));
}

#[test]
fn a_grant_forged_by_a_stranger_is_refused_as_not_from_the_patient() {
    let s = setup();
    let t2 = tempfile::tempdir().unwrap();
    let stranger = EhrVault::open(t2.path()).unwrap().with_clock(at_t0);
    let srid = stranger.protect(b"fake results", b"x", &opts()).unwrap();
    // 1. Sealed with the stranger's own vault key.
    let g = stranger
        .share(
            &srid,
            b"x",
            &Recipient::Uncertified(s.doc.public()),
            &ShareOptions::default(),
        )
        .unwrap();
    let e = gate::open_grant(&g.grant, &s.doc, &s.pk).unwrap_err();
    assert!(matches!(e, VaultError::GrantNotFromPatient { .. }), "{e}");
    // 2. Naming the patient's key but sealed with the stranger's.
    let mut h = GrantV2::parse(&g.grant).unwrap().header;
    h.patient = s.pk;
    let aad = h.to_bytes();
    let skey = Identity::generate().unwrap();
    let (enc, ct) = gate::seal_auth(
        &skey,
        &s.doc.public(),
        b"aorta-ehr grant v2",
        &[0u8; 40],
        &aad,
    )
    .unwrap();
    let forged = [aad.clone(), enc.to_vec(), ct].concat();
    let e = gate::open_grant(&forged, &s.doc, &s.pk).unwrap_err();
    assert!(matches!(e, VaultError::GrantNotFromPatient { .. }), "{e}");
    // 3. Base mode (no sender key at all), naming the patient's key.
    let pkr = <hpke::kem::X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(&s.doc.public().0)
        .unwrap();
    let (enc, ct) = hpke::single_shot_seal::<
        hpke::aead::ChaCha20Poly1305,
        hpke::kdf::HkdfSha256,
        hpke::kem::X25519HkdfSha256,
    >(
        &hpke::OpModeS::Base,
        &pkr,
        b"aorta-ehr grant v2",
        &[0u8; 40],
        &aad,
    )
    .unwrap();
    let forged = [aad, hpke::Serializable::to_bytes(&enc).to_vec(), ct].concat();
    let e = gate::open_grant(&forged, &s.doc, &s.pk).unwrap_err();
    assert!(matches!(e, VaultError::GrantNotFromPatient { .. }), "{e}");
    // The patient's real grant opens.
    let real = share_to(&s.patient, &s.rid, s.doc.public());
    gate::open_grant(&real.grant, &s.doc, &s.pk).unwrap();
}

#[test]
fn a_network_stranger_replaying_or_forging_requests_gets_nothing_to_open() {
    let s = setup();
    let g = share_to(&s.patient, &s.rid, s.doc.public());
    let gate = Gate::new(&s.patient);
    recover(&s.patient, &s.rid, &g.grant, &s.doc, &s.pk, &gate).unwrap();
    let (req, answer) = gate.seen.borrow()[0].clone();
    // The eavesdropped answer opens for nobody but the recipient.
    let stranger = Identity::generate().unwrap();
    let ticket = gate::open_grant(&g.grant, &s.doc, &s.pk).unwrap();
    let parsed = gate::Request::parse(&req).unwrap();
    assert!(gate::open_response(&answer, &parsed, &ticket, &stranger).is_err());
    // Replayed: refused, and no material in the answer.
    let (st, again) = s.patient.answer_release(&req);
    assert_eq!(st, Status::Replayed);
    assert_eq!(again.len(), gate::RESPONSE_HEADER_LEN);
    // A stranger's own request for the grant id (no secret, wrong key).
    let fake_ticket = gate::Ticket {
        header: ticket.header,
        secret: zeroize::Zeroizing::new([7u8; 32]),
        gate_url: String::new(),
        audit_anchor: Vec::new(),
    };
    let fr = gate::build_request(&fake_ticket, &stranger, T0).unwrap();
    let (st, a) = s.patient.answer_release(&fr.to_bytes());
    assert_eq!(st, Status::Unauthorised);
    assert_eq!(a.len(), gate::RESPONSE_HEADER_LEN);
    // The right key but not the secret: the same answer.
    let fr = gate::build_request(&fake_ticket, &s.doc, T0).unwrap();
    assert_eq!(
        s.patient.answer_release(&fr.to_bytes()).0,
        Status::Unauthorised
    );
    // Strangers' requests are not written to the patient's log.
    let log = s.patient.audit_verify().unwrap();
    assert_eq!(
        log.iter()
            .filter(|e| e.event == aorta_vault::audit::Event::Refuse)
            .count(),
        1
    );
}

#[test]
fn a_request_sent_outside_the_gates_skew_window_is_refused_and_audited() {
    // A grant holder replaying their own request after the gate forgot its
    // nonce (a restart) is held to the gate's clock: a request more than
    // MAX_SKEW_S away from it is refused as stale, in either direction.
    let s = setup();
    let g = share_to(&s.patient, &s.rid, s.doc.public());
    let ticket = gate::open_grant(&g.grant, &s.doc, &s.pk).unwrap();
    for sent_at in [T0 - gate::MAX_SKEW_S - 1, T0 + gate::MAX_SKEW_S + 1] {
        let req = gate::build_request(&ticket, &s.doc, sent_at).unwrap();
        let (st, a) = s.patient.answer_release(&req.to_bytes());
        assert_eq!(st, Status::Stale, "sent at {sent_at}");
        assert_eq!(a.len(), gate::RESPONSE_HEADER_LEN, "no material");
    }
    let refusals = s
        .patient
        .audit_verify()
        .unwrap()
        .iter()
        .filter(|e| e.event == aorta_vault::audit::Event::Refuse)
        .count();
    assert_eq!(refusals, 2);
    // Just inside the window: released.
    let req = gate::build_request(&ticket, &s.doc, T0 - gate::MAX_SKEW_S).unwrap();
    let (st, a) = s.patient.answer_release(&req.to_bytes());
    assert_eq!(st, Status::Released);
    assert!(gate::open_response(&a, &req, &ticket, &s.doc).is_ok());
}

#[test]
fn garbage_and_oversized_requests_are_typed_refusals() {
    let s = setup();
    for junk in [
        Vec::new(),
        b"AOGQ".to_vec(),
        vec![0u8; gate::REQUEST_LEN],
        vec![0xff; 1 << 20],
        {
            let mut v = b"AOGQ\x09".to_vec();
            v.resize(gate::REQUEST_LEN, 0);
            v
        },
    ] {
        let (st, a) = s.patient.answer_release(&junk);
        assert_eq!(st, Status::Malformed);
        assert_eq!(st.http(), 400);
        assert!(gate::Response::parse(&a).is_ok());
    }
}

/// Material the gate released before a rekey (cached by the recipient)
/// decrypts nothing stored after; the revoked grant is refused; another
/// grant still works (the gate serves the new material); the material an
/// old v1 grant carried is useless too, and v1 grants are refused.
#[test]
fn revoke_with_rekey_makes_cached_material_useless() {
    let s = setup();
    let g1 = share_to(&s.patient, &s.rid, s.doc.public());
    let other = Identity::generate().unwrap();
    let g2 = share_to(&s.patient, &s.rid, other.public());
    // An old v1 grant, as the vault issued before (it carries the material).
    let m_old = {
        let private = s.patient.store().get_private(&s.rid).unwrap();
        aorta_crypto::selective::container::open_private(&private, b"pw").unwrap()
    };
    let (_, v1) = grant::seal(&m_old, &s.doc.public(), T0, T0 + 3600, false).unwrap();
    let e = recover(
        &s.patient,
        &s.rid,
        &v1,
        &s.doc,
        &s.pk,
        &Gate::new(&s.patient),
    )
    .unwrap_err();
    assert!(matches!(e, VaultError::BadInput { .. }), "{e}");

    // The recipient caches what the gate released.
    let cached: RecoveryMaterial = {
        let ticket = gate::open_grant(&g1.grant, &s.doc, &s.pk).unwrap();
        let req = gate::build_request(&ticket, &s.doc, T0).unwrap();
        let (_, a) = s.patient.answer_release(&req.to_bytes());
        gate::open_response(&a, &req, &ticket, &s.doc).unwrap()
    };
    let (before, _) = s
        .patient
        .store()
        .get_public_verified(&s.rid, &cached)
        .unwrap();
    assert_eq!(
        aorta_crypto::selective::recover(&before, &cached).unwrap(),
        b"lab results"
    );

    s.patient.revoke(RevokeTarget::Grant(&g1.grant)).unwrap();
    s.patient.rekey(&s.rid, b"pw").unwrap();

    // The public fragment stored after the rekey (what the cloud now
    // serves), fetched and verified with the patient's fresh material.
    let fresh = aorta_crypto::selective::open_private(
        &s.patient.store().get_private(&s.rid).unwrap(),
        b"pw",
    )
    .unwrap();
    let (after, _) = s
        .patient
        .store()
        .get_public_verified(&s.rid, &fresh)
        .unwrap();
    assert_ne!(before, after);
    for m in [&cached, &m_old] {
        let e = aorta_crypto::selective::recover(&after, m).unwrap_err();
        assert!(matches!(e, SelectiveError::PublicMismatch { .. }), "{e}");
    }
    let gate = Gate::new(&s.patient);
    let e = recover(&s.patient, &s.rid, &g1.grant, &s.doc, &s.pk, &gate).unwrap_err();
    assert!(matches!(e, VaultError::Revoked { .. }), "{e}");
    let r = public_only(&s.t.path().join("p"), &s.t.path().join("r"), at_t0);
    assert_eq!(
        recover(&r, &s.rid, &g2.grant, &other, &s.pk, &gate).unwrap(),
        b"lab results"
    );
    assert_eq!(
        s.patient.recover_with_passphrase(&s.rid, b"pw").unwrap(),
        b"lab results"
    );
}

/// A rekey replaces every shard of a dispersed record.
#[test]
fn rekey_replaces_every_shard() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("p");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("vault.json"),
        r#"{"public":[{"type":"local","path":"c0"},{"type":"local","path":"c1"},{"type":"local","path":"c2"}],
            "private":{"type":"local","path":"phone"},"dispersal":{"k":2,"n":3}}"#,
    )
    .unwrap();
    let v = EhrVault::open(&dir).unwrap().with_clock(at_t0);
    let rid = v.protect(&vec![42u8; 5000], b"pw", &opts()).unwrap();
    let shard = |i: usize| {
        std::fs::read(dir.join(format!("c{i}/records/{}.aosp.shard{i}", rid.to_hex()))).unwrap()
    };
    let old: Vec<_> = (0..3).map(shard).collect();
    v.rekey(&rid, b"pw").unwrap();
    for (i, o) in old.iter().enumerate() {
        assert_ne!(&shard(i), o, "shard {i} not replaced");
    }
    assert_eq!(
        v.recover_with_passphrase(&rid, b"pw").unwrap(),
        vec![42u8; 5000]
    );
}

proptest::proptest! {
    #[test]
    fn the_gate_and_the_recipient_never_panic_on_hostile_bytes(
        d in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
    ) {
        static S: std::sync::OnceLock<(tempfile::TempDir, std::sync::Mutex<EhrVault>, Identity)> =
            std::sync::OnceLock::new();
        let (_, v, id) = S.get_or_init(|| {
            let t = tempfile::tempdir().unwrap();
            let v = EhrVault::open(t.path()).unwrap().with_clock(at_t0);
            (t, std::sync::Mutex::new(v), Identity::generate().unwrap())
        });
        let v = v.lock().unwrap();
        let (st, _) = v.answer_release(&d);
        proptest::prop_assert!(st != Status::Released);
        let _ = gate::open_grant(&d, id, &id.public());
        let _ = gate::Response::parse(&d);
        let _ = gate::Request::parse(&d);
        let _ = GrantV2::parse(&d);
    }
}
