//! Institutions and roles through the real binary and a real gate process:
//! `share --to-cert` (certified by default, bare keys only with
//! `--uncertified`), the responsible doctor (`recover --as-responsible`),
//! break-glass (`recover --emergency`, used once, also across a gate
//! restart, shown first by `aorta ehr audit`), pin changes audited, and
//! the audit anchor a grant carries (`grant-anchor`, `audit --grant`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use std::path::Path;

use common::ehr::{
    GateProc, keygen, patient_key, pin, protect, public_only_vault, recover_cmd, responsible, s,
    share_cmd, text, unpin,
};
use common::{aorta, ok, stderr};

#[test]
fn certified_sharing_responsible_doctor_and_break_glass() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let vault = d.join("patient");
    let pw = d.join("pw");
    std::fs::write(&pw, "pass phrase\n").unwrap();
    let input = d.join("rec.bin");
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 11 % 253) as u8).collect();
    std::fs::write(&input, &data).unwrap();
    let rid = protect(&vault, &input, &pw, &[]);
    let patient = patient_key(&vault);
    // The hospital, a plain doctor and a responsible doctor.
    let inst_key = d.join("inst.key");
    let inst = text(&["ehr", "institution", "keygen", "--out", s(&inst_key)]);
    let doc_id = d.join("doc.id");
    let doc_pk = keygen(&doc_id);
    let resp_id = d.join("resp.id");
    let resp_pk = keygen(&resp_id);
    let certify = |pk: &str, role: &str, out: &Path| {
        ok(aorta(&[
            "ehr",
            "institution",
            "certify",
            "--key",
            s(&inst_key),
            "--doctor-key",
            pk,
            "--name",
            "Dr. Ada Example",
            "--staff-id",
            "S-0042",
            "--role",
            role,
            "--out",
            s(out),
        ]));
    };
    let doc_cert = d.join("doc.aodc");
    certify(&doc_pk, "doctor", &doc_cert);
    let resp_cert = d.join("resp.aodc");
    certify(&resp_pk, "responsible", &resp_cert);

    let gate = GateProc::start(&vault);
    let url0 = gate.url.clone();
    let share = |to: &[&str], out: &Path| {
        share_cmd(
            &vault,
            &rid,
            &pw,
            &[&["--gate", &url0, "--out", s(out)], to].concat(),
        )
    };
    // A bare key is no longer enough on its own.
    let o = share(&["--to", &doc_pk], &d.join("bare.grant"));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!d.join("bare.grant").exists());
    // A certificate from an institution the patient has not pinned.
    let g = d.join("doc.grant");
    let o = share(&["--to-cert", s(&doc_cert)], &g);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("not pinned"), "{}", stderr(&o));
    assert!(!g.exists());

    // The patient pins the hospital, allowing break-glass.
    ok(pin(&vault, &inst, "St. Example", &["--emergency"]));
    let o = share(&["--to-cert", s(&doc_cert)], &g);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The doctor's vault names only the patient's public store.
    let rv = d.join("doctor");
    public_only_vault(&rv, &vault);
    let recover = |how: &[&str], id: &Path, out: &Path| {
        let who = ["--identity", s(id), "--patient", &patient, "--out", s(out)];
        recover_cmd(&rv, &rid, &[&who, how].concat())
    };
    let out = d.join("by-grant");
    let o = recover(&["--grant", s(&g)], &doc_id, &out);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), data);

    // The anchor the grant carries, extracted by the doctor, checked by
    // the patient.
    let anchor = text(&[
        "ehr",
        "grant-anchor",
        "--grant",
        s(&g),
        "--identity",
        s(&doc_id),
        "--patient",
        &patient,
    ]);
    assert!(anchor.starts_with("aorta-audit-anchor-1:"), "{anchor}");
    let anchor_file = d.join("anchor.txt");
    std::fs::write(&anchor_file, &anchor).unwrap();
    let v = text(&[
        "ehr",
        "audit",
        "--vault",
        s(&vault),
        "--verify",
        "--anchor",
        s(&anchor_file),
        "--grant",
        s(&g),
        "--identity",
        s(&doc_id),
        "--patient",
        &patient,
    ]);
    assert!(v.contains("2 given anchor(s) met"), "{v}");

    // The responsible doctor: refused until named, then reads without a
    // grant; a plain doctor certificate cannot use the path.
    let as_resp = |cert: &Path, id: &Path, out: &Path, url: &str| {
        recover(
            &["--as-responsible", "--cert", s(cert), "--gate", url],
            id,
            out,
        )
    };
    let o = as_resp(&resp_cert, &resp_id, &d.join("r0"), &url0);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    ok(responsible(&vault, &resp_cert));
    let o = as_resp(&resp_cert, &resp_id, &d.join("r1"), &url0);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(d.join("r1")).unwrap(), data);
    let o = as_resp(&doc_cert, &doc_id, &d.join("r2"), &url0);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!d.join("r2").exists());

    // Break-glass: the hospital signs a request for the plain doctor.
    let req = d.join("req.aoer");
    ok(aorta(&[
        "ehr",
        "institution",
        "emergency",
        "--key",
        s(&inst_key),
        "--cert",
        s(&doc_cert),
        "--records",
        &rid,
        "--reason",
        "unconscious in the emergency department",
        "--out",
        s(&req),
    ]));
    let glass = |gate: &GateProc, out: &Path| {
        recover(
            &[
                "--emergency",
                s(&req),
                "--cert",
                s(&doc_cert),
                "--gate",
                &gate.url,
            ],
            &doc_id,
            out,
        )
    };
    let o = glass(&gate, &d.join("e1"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(d.join("e1")).unwrap(), data);
    let o = glass(&gate, &d.join("e2"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("replayed"), "{}", stderr(&o));
    drop(gate);
    let gate = GateProc::start(&vault);
    let o = glass(&gate, &d.join("e3"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!d.join("e3").exists());

    // The patient sees it first thing.
    let listing = text(&["ehr", "audit", "--vault", s(&vault)]);
    let first = listing.lines().next().unwrap();
    assert!(
        first.starts_with("!! 1 emergency access(es), 2 refused emergency request(s)"),
        "{listing}"
    );
    assert!(listing.contains("emergency-access"), "{listing}");
    assert!(listing.contains("unconscious in the emergency department"));
    assert!(listing.contains(" pin "), "{listing}");
    let json: serde_json::Value =
        serde_json::from_str(&text(&["ehr", "audit", "--vault", s(&vault), "--json"])).unwrap();
    assert_eq!(json["emergency_accesses"].as_array().unwrap().len(), 1);

    // The patient unpins the hospital: its certificates are refused.
    ok(unpin(&vault, &inst));
    let o = share(&["--to-cert", s(&doc_cert)], &d.join("after-unpin"));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let o = as_resp(&resp_cert, &resp_id, &d.join("r3"), &gate.url);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));

    // Whoever holds the device wipes the log and its anchors: the anchor
    // the grant carried still catches it.
    drop(gate);
    std::fs::remove_file(vault.join("audit.log")).unwrap();
    std::fs::remove_file(vault.join("audit.log.head")).unwrap();
    std::fs::remove_dir_all(vault.join("device/audit")).unwrap();
    let o = aorta(&[
        "ehr",
        "audit",
        "--vault",
        s(&vault),
        "--verify",
        "--anchor",
        s(&anchor_file),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}
