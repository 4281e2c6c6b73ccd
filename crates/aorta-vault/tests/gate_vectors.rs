//! Test vectors for the gate protocol of `docs/vault-sharing.md`
//! (`docs/vectors/vault-sharing/`): an `AOSG` v2 grant and an `AOGQ`
//! request (HPKE made deterministic with a seeded generator), a refusal and
//! a release (`AOGR`; the release is sealed with fresh randomness at each
//! decision, so its vector is checked by opening it). They build on the
//! vault-format vectors (the strong-mode record and its material).
//!
//! Regenerate with `AORTA_WRITE_VECTORS=1 cargo test -p aorta-vault --test
//! gate_vectors`; otherwise this checks the committed bytes. Every
//! single-byte mutation and truncation of each is handled without a panic,
//! and no mutation of the grant, request or release opens.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: a failing unwrap, expect, panic or index is the test failing"
)]

mod common;

use std::path::PathBuf;

use aorta_base::codec::Encode;
use aorta_crypto::selective::{RecoveryMaterial, recover};
use aorta_vault::fuzzing;
use aorta_vault::gate::{self, GateEntry, GateState, GrantV2Header, ReplayCache, Status};
use aorta_vault::grant::Identity;
use common::{T0, VectorRng};

const URL: &str = "http://127.0.0.1:7480";

fn dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/vectors")
        .join(sub)
}

fn check(name: &str, bytes: &[u8], write: bool) {
    let p = dir("vault-sharing").join(name);
    if write {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
    }
    assert_eq!(
        std::fs::read(&p).unwrap(),
        bytes,
        "{name} differs from the committed vector"
    );
}

fn mutations(v: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    let flips = (0..v.len()).flat_map(move |i| {
        [0x01u8, 0x80].into_iter().map(move |x| {
            let mut m = v.to_vec();
            m[i] ^= x;
            m
        })
    });
    flips.chain((0..v.len()).map(move |n| v[..n].to_vec()))
}

#[test]
fn gate_vectors_match_and_open() {
    let write = std::env::var_os("AORTA_WRITE_VECTORS").is_some();
    let fmt = dir("vault-format");
    let material =
        RecoveryMaterial::from_bytes(&std::fs::read(fmt.join("strong.material.aosm")).unwrap())
            .unwrap();
    let public = std::fs::read(fmt.join("strong.public.aosp")).unwrap();
    let input = std::fs::read(fmt.join("input.bin")).unwrap();
    let anchor = std::fs::read(fmt.join("audit.anchor")).unwrap();

    let patient = Identity::derive(&[1; 32]).unwrap();
    let doctor = Identity::derive(&[2; 32]).unwrap();
    check("patient.identity", patient.to_text().as_bytes(), write);
    check("doctor.identity", doctor.to_text().as_bytes(), write);
    let header = GrantV2Header {
        grant_id: [0x11; 16],
        record_id: material.record_id,
        issued_at: T0,
        expires_at: T0 + 7 * 86_400,
        emergency: false,
        recipient: doctor.public(),
        patient: patient.public(),
    };
    let secret = [0x22; 32];
    let g = gate::seal_grant_with_rng(
        &patient,
        &header,
        &secret,
        URL,
        &anchor,
        &mut VectorRng::new([3; 32]),
    )
    .unwrap();
    check("grant.aosg", &g, write);
    assert!(fuzzing::gate_grant(&g));
    let ticket = gate::open_grant(&g, &doctor, &patient.public()).unwrap();
    assert_eq!(ticket.header, header);
    assert_eq!(*ticket.secret, secret);
    assert_eq!(ticket.gate_url, URL);
    assert_eq!(ticket.audit_anchor, anchor);

    let req = gate::build_request_with_rng(
        &ticket,
        &doctor,
        T0 + 60,
        [0x33; 16],
        &mut VectorRng::new([4; 32]),
    )
    .unwrap();
    let req_bytes = req.to_bytes();
    assert_eq!(req_bytes.len(), gate::REQUEST_LEN);
    check("request.aogq", &req_bytes, write);
    assert!(fuzzing::gate_request(&req_bytes));

    let entry = GateEntry {
        record: material.record_id,
        recipient: doctor.public(),
        secret: zeroize::Zeroizing::new(secret),
        issued_at: T0,
        expires_at: T0 + 7 * 86_400,
        emergency: false,
        keep_identifying_header: true,
        revoked: false,
        certified: None,
    };
    let lookup = |gid: &str| Ok((gid == "11111111111111111111111111111111").then(|| entry.clone()));
    let decide = |req: &[u8]| {
        let replays = ReplayCache::default();
        let state = GateState::new(&patient, &lookup, &replays);
        gate::decide(req, &state, T0 + 61, &|_| Ok(material.clone()))
    };
    let d = decide(&req_bytes);
    assert_eq!(d.status, Status::Released);
    let released = if write {
        d.response.clone()
    } else {
        std::fs::read(dir("vault-sharing").join("release.aogr")).unwrap()
    };
    check("release.aogr", &released, write);
    assert!(fuzzing::gate_response(&released));
    for r in [&released, &d.response] {
        let m = gate::open_response(r, &req, &ticket, &doctor).unwrap();
        assert_eq!(m, material);
        assert_eq!(recover(&public, &m).unwrap(), input);
    }
    let refused = gate::refusal(Status::Revoked, [0x11; 16], [0x33; 16], T0 + 61);
    check("refusal-revoked.aogr", &refused, write);
    assert!(fuzzing::gate_response(&refused));
    assert!(matches!(
        gate::open_response(&refused, &req, &ticket, &doctor),
        Err(aorta_vault::VaultError::Revoked { .. })
    ));

    // Mutations: never a panic; none opens or is released.
    for m in mutations(&g) {
        let _ = fuzzing::gate_grant(&m);
        assert!(gate::open_grant(&m, &doctor, &patient.public()).is_err());
    }
    for m in mutations(&req_bytes) {
        let _ = fuzzing::gate_request(&m);
        assert_ne!(decide(&m).status, Status::Released);
    }
    for m in mutations(&released) {
        let _ = fuzzing::gate_response(&m);
        assert!(gate::open_response(&m, &req, &ticket, &doctor).is_err());
    }
}

/// Request kinds 2 (responsible doctor) and 3 (break-glass), built on the
/// institution vectors (`docs/vectors/vault-institutions/`: its doctor
/// identity, `responsible.aodc`, `emergency.aoer`) and this directory's
/// patient key.
#[test]
fn role_request_vectors_match_and_open() {
    use aorta_crypto::selective::RecordId;
    use aorta_vault::gate::roles::{build_role_request_with_rng, open_role_response};
    use aorta_vault::gate::{KIND_EMERGENCY, KIND_RESPONSIBLE, RoleState};
    use aorta_vault::institution::{InstitutionKey, PinnedInstitutions, ReplaySet};
    use std::cell::RefCell;

    let write = std::env::var_os("AORTA_WRITE_VECTORS").is_some();
    let inst = dir("vault-institutions");
    let fmt = dir("vault-format");
    let patient = Identity::derive(&[1; 32]).unwrap();
    let doctor =
        Identity::from_text(&std::fs::read_to_string(inst.join("doctor.identity")).unwrap())
            .unwrap();
    let inst_key = InstitutionKey::from_text(
        std::fs::read_to_string(inst.join("institution.pk"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let cert = std::fs::read(inst.join("responsible.aodc")).unwrap();
    let aoer = std::fs::read(inst.join("emergency.aoer")).unwrap();
    let record = RecordId(*b"record-id-000001");
    let mut material =
        RecoveryMaterial::from_bytes(&std::fs::read(fmt.join("strong.material.aosm")).unwrap())
            .unwrap();
    material.record_id = record;
    // The request of the institution vectors is issued at 1800003600 for 4 h.
    let sent = 1_800_003_660;
    let mut pins = PinnedInstitutions::new();
    pins.pin(inst_key, "St. Example", true, 1_800_000_000)
        .unwrap();
    pins.set_responsible(&cert, sent).unwrap();

    let mut built = Vec::new();
    for (kind, cred, nonce, seed, name) in [
        (
            KIND_RESPONSIBLE,
            &cert,
            [0x44; 16],
            [5; 32],
            "responsible-request.aogq",
        ),
        (
            KIND_EMERGENCY,
            &aoer,
            [0x55; 16],
            [6; 32],
            "emergency-request.aogq",
        ),
    ] {
        let (bytes, header) = build_role_request_with_rng(
            kind,
            cred,
            &record,
            &doctor,
            &patient.public(),
            sent,
            nonce,
            &mut VectorRng::new(seed),
        )
        .unwrap();
        check(name, &bytes, write);
        assert!(fuzzing::gate_role_request(&bytes));
        built.push((bytes, header));
    }
    let lookup = |_: &str| Ok(None);
    let decide = |req: &[u8]| {
        let replays = ReplayCache::default();
        let set = RefCell::new(ReplaySet::new());
        let admit = |v: &aorta_vault::institution::VerifiedEmergency, now: u64| {
            set.borrow_mut().admit(v, now)
        };
        let roles = RoleState {
            pins: &pins,
            admit: &admit,
        };
        let state = GateState::new(&patient, &lookup, &replays).with_roles(&roles);
        gate::decide(req, &state, sent + 1, &|_| Ok(material.clone()))
    };
    for (bytes, header) in &built {
        let d = decide(bytes);
        assert_eq!(d.status, Status::Released);
        let m = open_role_response(&d.response, header, &patient.public(), &doctor).unwrap();
        assert_eq!(m, material);
        for m in mutations(bytes) {
            let _ = fuzzing::gate_role_request(&m);
            assert_ne!(decide(&m).status, Status::Released);
        }
    }
}
