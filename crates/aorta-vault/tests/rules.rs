//! The vault's rules live in the library: a front-end calling [`EhrVault`]
//! cannot recover with a revoked, expired or mismatched grant (the checks
//! are not the caller's), every operation writes its own audit entry, the
//! DICOM header is de-identified by default and grants default to 7 days.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: a failing unwrap, expect, panic or index is the test failing"
)]

mod common;

use std::path::PathBuf;

use aorta_crypto::selective::{Mode, RecordId};
use aorta_vault::audit::Event;
use aorta_vault::gate::GrantV2;
use aorta_vault::grant::{Identity, NEVER};
use aorta_vault::rules::{DEFAULT_GRANT_VALIDITY_S, Recipient, RevokeTarget, ShareOptions};
use aorta_vault::{Blame, EhrVault, VaultError};
use common::{T0, at_t0, opts_for, rwg, share_to, share_with};

const EMERGENCY: ShareOptions = ShareOptions {
    valid_for_s: None,
    emergency: true,
    keep_identifying_header: false,
};

fn events(v: &EhrVault) -> Vec<Event> {
    v.audit_verify().unwrap().iter().map(|e| e.event).collect()
}

fn vault() -> (tempfile::TempDir, EhrVault) {
    let d = tempfile::tempdir().unwrap();
    let v = EhrVault::open(d.path()).unwrap().with_clock(at_t0);
    (d, v)
}

#[test]
fn a_revoked_grant_is_refused_by_the_library_and_the_refusal_is_audited() {
    let (_d, v) = vault();
    let rid = v
        .protect(b"lab results", b"pw", &opts_for(Mode::Strong))
        .unwrap();
    let doctor = Identity::generate().unwrap();
    let shared = share_to(&v, &rid, doctor.public());
    let ok = rwg(&v, &rid, &shared.grant, &doctor).unwrap();
    assert_eq!(ok.bytes, b"lab results");
    assert_eq!(ok.grant_id.as_deref(), Some(&*shared.header.grant_hex()));

    let (gid, _) = v.revoke(RevokeTarget::Grant(&shared.grant)).unwrap();
    assert_eq!(gid, shared.header.grant_hex());
    let e = rwg(&v, &rid, &shared.grant, &doctor).unwrap_err();
    assert!(matches!(e, VaultError::Revoked { .. }), "{e}");
    assert_eq!(e.blame(), Blame::Refused);

    // A second front-end opening the same directory sees the revocation.
    let other = EhrVault::open_existing(v.store().dir()).unwrap();
    assert!(matches!(
        rwg(&other, &rid, &shared.grant, &doctor),
        Err(VaultError::Revoked { .. })
    ));

    // Revoking by id works too (any case, surrounding space ignored).
    let s2 = share_to(&v, &rid, doctor.public());
    let id = format!(" {} ", s2.header.grant_hex().to_uppercase());
    assert_eq!(
        v.revoke(RevokeTarget::Id(&id)).unwrap().0,
        s2.header.grant_hex()
    );
    assert!(matches!(
        rwg(&v, &rid, &s2.grant, &doctor),
        Err(VaultError::Revoked { .. })
    ));
    assert!(matches!(
        v.revoke(RevokeTarget::Id("not-hex")),
        Err(VaultError::Malformed { .. })
    ));

    let log = v.audit_verify().unwrap();
    let refusals: Vec<_> = log.iter().filter(|e| e.event == Event::Refuse).collect();
    assert_eq!(refusals.len(), 3);
    assert_eq!(refusals[0].grant.as_deref(), Some(&*gid));
    assert!(refusals[0].detail.contains("revoked"));
}

#[test]
fn every_operation_writes_its_audit_entry() {
    let (_d, v) = vault();
    let rid = v.protect(b"note", b"pw", &opts_for(Mode::Strong)).unwrap();
    assert_eq!(events(&v), [Event::Protect]);
    assert_eq!(v.recover_with_passphrase(&rid, b"pw").unwrap(), b"note");
    assert_eq!(events(&v), [Event::Protect, Event::Recover]);
    let doc = Identity::generate().unwrap();
    let g = share_to(&v, &rid, doc.public());
    let em = share_with(&v, &rid, doc.public(), &EMERGENCY);
    rwg(&v, &rid, &g.grant, &doc).unwrap();
    v.revoke(RevokeTarget::Grant(&em.grant)).unwrap();
    // A stranger holding the grant cannot open it: nothing reaches the
    // gate, nothing is audited.
    let stranger = Identity::generate().unwrap();
    assert!(matches!(
        rwg(&v, &rid, &g.grant, &stranger),
        Err(VaultError::GrantNotForUs)
    ));
    // The revoked grant's use reaches the gate and is refused there.
    assert!(matches!(
        rwg(&v, &rid, &em.grant, &doc),
        Err(VaultError::Revoked { .. })
    ));
    assert_eq!(
        events(&v),
        [
            Event::Protect,
            Event::Recover,
            Event::Grant,
            Event::Emergency,
            Event::Use,
            Event::Revoke,
            Event::Refuse,
        ]
    );
    let log = v.audit_verify().unwrap();
    assert!(log.iter().all(|e| e.time == T0 && e.record == rid.to_hex()));
    assert_eq!(log[0].detail, "mode strong");
    assert!(
        log[2]
            .detail
            .ends_with(&format!("expires {}", T0 + DEFAULT_GRANT_VALIDITY_S))
    );
    assert!(log[3].detail.ends_with("expires never"));

    // Refusals that are not the grant's (a wrong passphrase) write nothing
    // and return nothing.
    assert_eq!(
        v.recover_with_passphrase(&rid, b"wrong")
            .unwrap_err()
            .blame(),
        Blame::Refused
    );
    assert_eq!(
        v.share(
            &rid,
            b"wrong",
            &Recipient::Uncertified(doc.public()),
            &ShareOptions::default()
        )
        .unwrap_err()
        .blame(),
        Blame::Refused
    );
    assert_eq!(events(&v).len(), 7);
}

#[test]
fn expiry_defaults_and_checks_are_the_librarys() {
    let (_d, v) = vault();
    let rid = v.protect(b"ecg", b"pw", &opts_for(Mode::Strong)).unwrap();
    let doc = Identity::generate().unwrap();
    let default = share_to(&v, &rid, doc.public());
    assert_eq!(default.header.expires_at, T0 + 7 * 86_400);
    assert_eq!(default.header.issued_at, T0);
    let em = share_with(&v, &rid, doc.public(), &EMERGENCY);
    assert_eq!(em.header.expires_at, NEVER);
    assert!(em.header.emergency);
    let short = v
        .share(
            &rid,
            b"pw",
            &Recipient::Uncertified(doc.public()),
            &ShareOptions {
                valid_for_s: Some(0),
                ..Default::default()
            },
        )
        .unwrap();
    let e = rwg(&v, &rid, &short.grant, &doc).unwrap_err();
    assert!(matches!(e, VaultError::Expired { .. }), "{e}");

    // Later, the default grant has expired; the emergency grant has not.
    fn a_week_later() -> u64 {
        T0 + 7 * 86_400
    }
    let later = EhrVault::open_existing(v.store().dir())
        .unwrap()
        .with_clock(a_week_later);
    assert!(matches!(
        rwg(&later, &rid, &default.grant, &doc),
        Err(VaultError::Expired { .. })
    ));
    assert_eq!(rwg(&later, &rid, &em.grant, &doc).unwrap().bytes, b"ecg");
}

#[test]
fn a_grant_for_another_record_is_refused_as_input() {
    let (_d, v) = vault();
    let a = v.protect(b"first", b"pw", &opts_for(Mode::Strong)).unwrap();
    let b = v
        .protect(b"second", b"pw", &opts_for(Mode::Strong))
        .unwrap();
    let doc = Identity::generate().unwrap();
    let g = share_to(&v, &a, doc.public());
    let e = rwg(&v, &b, &g.grant, &doc).unwrap_err();
    assert!(matches!(e, VaultError::GrantForOtherRecord { .. }), "{e}");
    assert_eq!(e.blame(), Blame::Input);
    assert!(matches!(
        rwg(&v, &RecordId([0; 16]), b"junk", &doc),
        Err(VaultError::Decode { .. })
    ));
    assert_eq!(GrantV2::parse(&g.grant).unwrap().header.record_id, a);
}

#[test]
fn the_dicom_header_is_deidentified_unless_kept_and_faithful_mode_is_noted() {
    let dcm =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dicom/CT_small.dcm");
    let input = std::fs::read(&dcm).unwrap();
    let name: &[u8] = b"CompressedSamples^CT1";
    let has = |h: &[u8]| h.windows(name.len()).any(|w| w == name);
    assert!(has(&input));
    let (_d, v) = vault();
    let rid = v.protect(&input, b"pw", &opts_for(Mode::Faithful)).unwrap();
    let doc = Identity::generate().unwrap();
    let deid = share_to(&v, &rid, doc.public());
    assert!(
        deid.notes.iter().any(|n| n.contains("faithful mode")),
        "{:?}",
        deid.notes
    );
    let got = rwg(&v, &rid, &deid.grant, &doc).unwrap().bytes;
    assert!(!has(&got));
    let kept = v
        .share(
            &rid,
            b"pw",
            &Recipient::Uncertified(doc.public()),
            &ShareOptions {
                keep_identifying_header: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(rwg(&v, &rid, &kept.grant, &doc).unwrap().bytes, input);
}
