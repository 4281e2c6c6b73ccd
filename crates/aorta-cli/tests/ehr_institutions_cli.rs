//! `aorta ehr institution …`, `pin`, `unpin`, `pins`, `responsible`, `check`
//! end to end through the real binary: an institution certifies a doctor
//! and signs an emergency request; the patient pins it and names the
//! responsible doctor; a stranger's institution, a tampered certificate, an
//! expired certificate, a doctor-role certificate named responsible, an
//! institution not allowed emergency access, an unpinned institution are
//! refused with exit 1; over-long requests, bad times and overwrites are
//! errors (exit 2) that write nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use std::path::Path;
use std::process::Output;

use common::ehr::{keygen, ok_text, pin, responsible, s, text, unpin};
use common::{aorta, json, ok, stderr};

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

/// Exit 1 with `refused: …` naming `why`.
fn refused(o: &Output, why: &str) {
    assert_eq!(code(o), 1, "stderr: {}", stderr(o));
    let e = stderr(o);
    assert!(e.contains("refused:") && e.contains(why), "{e}");
}

fn certify(key: &Path, doctor_pk: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "ehr",
        "institution",
        "certify",
        "--key",
        s(key),
        "--doctor-key",
        doctor_pk,
        "--name",
        "Dr. Ada Example",
        "--staff-id",
        "S-0042",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    aorta(&args)
}

fn check(vault: &Path, file: &Path) -> Output {
    aorta(&["ehr", "check", "--vault", s(vault), s(file)])
}

/// `aorta ehr check --json` of `file`.
fn check_json(vault: &Path, file: &Path) -> Output {
    aorta(&["ehr", "check", "--vault", s(vault), s(file), "--json"])
}

#[test]
fn institutions_pins_responsible_and_emergency_requests() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    let vault = p("vault");
    std::fs::create_dir(&vault).unwrap();

    // The institution's key: printed public key, owner-only, never overwritten.
    let inst_pk = text(&["ehr", "institution", "keygen", "--out", s(&p("inst.key"))]);
    assert!(inst_pk.starts_with("aorta-institution-1"), "{inst_pk}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(p("inst.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let before = std::fs::read(p("inst.key")).unwrap();
    let again = aorta(&["ehr", "institution", "keygen", "--out", s(&p("inst.key"))]);
    assert_eq!(code(&again), 2);
    assert!(
        stderr(&again).contains("refusing to overwrite"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read(p("inst.key")).unwrap(), before);
    assert_eq!(
        text(&["ehr", "institution", "public", "--key", s(&p("inst.key"))]),
        inst_pk
    );

    // A doctor (recipient identity) certified as doctor and as responsible.
    let doc_pk = keygen(&p("doc.id"));
    ok(certify(&p("inst.key"), &doc_pk, &p("doc.aodc"), &[]));
    ok(certify(
        &p("inst.key"),
        &doc_pk,
        &p("resp.aodc"),
        &["--role", "responsible"],
    ));
    let over = certify(&p("inst.key"), &doc_pk, &p("doc.aodc"), &[]);
    assert_eq!(code(&over), 2);
    assert!(stderr(&over).contains("--force"), "{}", stderr(&over));
    let bad_role = certify(&p("inst.key"), &doc_pk, &p("x.aodc"), &["--role", "chief"]);
    assert_eq!(code(&bad_role), 2);
    let bad_time = certify(
        &p("inst.key"),
        &doc_pk,
        &p("x.aodc"),
        &["--not-before", "yesterday"],
    );
    assert_eq!(code(&bad_time), 2);
    assert!(
        stderr(&bad_time).contains("RFC 3339"),
        "{}",
        stderr(&bad_time)
    );
    assert!(!p("x.aodc").exists());

    // Not pinned yet: refused.
    refused(&check(&vault, &p("doc.aodc")), "not pinned");
    let listing = text(&["ehr", "pins", "--vault", s(&vault)]);
    assert!(listing.contains("no institutions pinned"), "{listing}");

    // The patient pins the institution (emergency not allowed yet).
    let pinned = ok_text(pin(&vault, &inst_pk, "St. Example", &[]));
    assert!(pinned.contains("not allowed"), "{pinned}");
    let out = text(&["ehr", "check", "--vault", s(&vault), s(&p("doc.aodc"))]);
    assert!(
        out.contains("certificate verified") && out.contains("Dr. Ada Example"),
        "{out}"
    );
    let j = json(check_json(&vault, &p("doc.aodc")));
    assert_eq!(j["role"], "doctor");
    assert_eq!(j["doctor"], doc_pk.as_str());
    assert_eq!(j["staff_id"], "S-0042");

    // Every flipped byte of the certificate is refused.
    let cert = std::fs::read(p("doc.aodc")).unwrap();
    for i in [5, 10, 45, 80, 95, cert.len() - 1] {
        let mut t = cert.clone();
        t[i] ^= 1;
        std::fs::write(p("t.aodc"), &t).unwrap();
        let o = check(&vault, &p("t.aodc"));
        assert!(code(&o) != 0, "byte {i} accepted");
    }
    // A doctor promoting himself to responsible: a bad signature.
    let mut promoted = cert.clone();
    promoted[5] = 2;
    std::fs::write(p("t.aodc"), &promoted).unwrap();
    refused(&check(&vault, &p("t.aodc")), "signature");

    // A stranger's self-made institution.
    text(&["ehr", "institution", "keygen", "--out", s(&p("fake.key"))]);
    ok(certify(
        &p("fake.key"),
        &doc_pk,
        &p("fake.aodc"),
        &["--role", "responsible"],
    ));
    refused(&check(&vault, &p("fake.aodc")), "not pinned");

    // An expired certificate.
    ok(certify(
        &p("inst.key"),
        &doc_pk,
        &p("old.aodc"),
        &["--not-before", "2020-01-01T00:00:00Z", "--valid", "1d"],
    ));
    refused(
        &check(&vault, &p("old.aodc")),
        "expired at 2020-01-02T00:00:00Z",
    );

    // The responsible doctor: only a responsible certificate, only pinned.
    let r = responsible(&vault, &p("doc.aodc"));
    refused(&r, "responsible");
    let r = responsible(&vault, &p("fake.aodc"));
    refused(&r, "not pinned");
    ok(responsible(&vault, &p("resp.aodc")));
    let j = json(aorta(&["ehr", "pins", "--vault", s(&vault), "--json"]));
    assert_eq!(j["institutions"][0]["key"], inst_pk.as_str());
    assert_eq!(j["institutions"][0]["name"], "St. Example");
    assert_eq!(j["institutions"][0]["emergency"], false);
    assert_eq!(j["responsible"]["doctor"], doc_pk.as_str());

    // Emergency requests: at most 24 h; a record id is 32 hex digits.
    let emergency = |out: &Path, valid: &str, records: &str| {
        aorta(&[
            "ehr",
            "institution",
            "emergency",
            "--key",
            s(&p("inst.key")),
            "--cert",
            s(&p("resp.aodc")),
            "--records",
            records,
            "--reason",
            "unconscious in the emergency department",
            "--valid",
            valid,
            "--out",
            s(out),
        ])
    };
    let rid = "00112233445566778899aabbccddeeff";
    let long = emergency(&p("long.aoer"), "25h", rid);
    assert_eq!(code(&long), 2);
    assert!(stderr(&long).contains("24h"), "{}", stderr(&long));
    assert!(!p("long.aoer").exists());
    assert_eq!(code(&emergency(&p("bad.aoer"), "4h", "nothex")), 2);
    ok(emergency(
        &p("req.aoer"),
        "4h",
        &format!("{rid},ffeeddccbbaa99887766554433221100"),
    ));
    // The institution is pinned but not allowed emergency access.
    refused(
        &check(&vault, &p("req.aoer")),
        "not allowed emergency access",
    );
    // The patient allows it: the request verifies (and is not used up).
    // (The key may be given in a file; pinning again keeps the name.)
    std::fs::write(p("inst.pk"), format!("{inst_pk}\n")).unwrap();
    let again = text(&[
        "ehr",
        "pin",
        "--vault",
        s(&vault),
        "--institution",
        s(&p("inst.pk")),
        "--emergency",
    ]);
    assert!(
        again.starts_with("updated") && again.contains("\"St. Example\"; emergency access allowed"),
        "{again}"
    );
    for _ in 0..2 {
        let out = text(&["ehr", "check", "--vault", s(&vault), s(&p("req.aoer"))]);
        assert!(
            out.contains("verified (not used)") && out.contains(rid),
            "{out}"
        );
        assert!(out.contains("the patient's responsible doctor"), "{out}");
    }
    let j = json(check_json(&vault, &p("req.aoer")));
    assert_eq!(j["kind"], "emergency-request");
    assert_eq!(j["records"].as_array().unwrap().len(), 2);
    let valid_for = j["expires_at"].as_u64().unwrap() - j["issued_at"].as_u64().unwrap();
    assert_eq!(valid_for, 4 * 3600);
    // A stranger's institution cannot sign for the pinned one's doctor.
    let forged = aorta(&[
        "ehr",
        "institution",
        "emergency",
        "--key",
        s(&p("fake.key")),
        "--cert",
        s(&p("resp.aodc")),
        "--records",
        rid,
        "--reason",
        "x",
        "--out",
        s(&p("forged.aoer")),
    ]);
    assert_eq!(code(&forged), 2, "{}", stderr(&forged));
    assert!(
        stderr(&forged).contains("certified by"),
        "{}",
        stderr(&forged)
    );
    assert!(!p("forged.aoer").exists());
    let mut req = std::fs::read(p("req.aoer")).unwrap();
    let last = req.len() - 1;
    req[last] ^= 1;
    std::fs::write(p("t.aoer"), &req).unwrap();
    refused(&check(&vault, &p("t.aoer")), "signature");

    // Unpinned: everything from it is refused, the responsible doctor gone.
    ok_text(unpin(&vault, &inst_pk));
    refused(&check(&vault, &p("doc.aodc")), "not pinned");
    refused(&check(&vault, &p("req.aoer")), "not pinned");
    let listing = text(&["ehr", "pins", "--vault", s(&vault)]);
    assert!(listing.contains("responsible doctor: none"), "{listing}");
    let again = unpin(&vault, &inst_pk);
    assert_eq!(code(&again), 2);
    // A missing vault is an error, not a new one.
    let none = aorta(&["ehr", "pins", "--vault", s(&p("nope"))]);
    assert_eq!(code(&none), 2);
    assert!(!p("nope").exists());
}
