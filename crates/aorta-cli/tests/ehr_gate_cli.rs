//! `aorta ehr gate serve`, `recover --patient --gate`, `revoke --rekey`
//! through the real binary: a recipient whose vault names only the public
//! store recovers through the gate, is refused after revocation, and the
//! material cached before a rekey decrypts nothing after; the gate answers
//! garbage, oversized and wrong-path requests with typed 4xx.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use std::path::Path;

use common::aorta;
use common::ehr::{
    GateProc, keygen, ok_text, patient_key, protect, public_only_vault, recover_cmd, s, share_cmd,
    text,
};

#[test]
fn public_only_recipient_revocation_and_rekey_through_the_gate() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let vault = d.join("patient");
    let pw = d.join("pw");
    std::fs::write(&pw, "pass phrase\n").unwrap();
    let input = d.join("rec.bin");
    let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&input, &data).unwrap();
    let rid = protect(&vault, &input, &pw, &[]);
    let doc_id = d.join("doc.id");
    let doc_pk = keygen(&doc_id);
    let gate = GateProc::start(&vault);
    let patient = patient_key(&vault);
    let share = |out: &Path| {
        let to = ["--uncertified", "--to", &doc_pk, "--gate", &gate.url];
        ok_text(share_cmd(
            &vault,
            &rid,
            &pw,
            &[&to, &["--out", s(out)][..]].concat(),
        ))
    };
    let g1 = d.join("g1");
    let g2 = d.join("g2");
    share(&g1);
    share(&g2);
    // The recipient's vault names only the patient's public store.
    let rv = d.join("recipient");
    public_only_vault(&rv, &vault);
    let recover = |g: &Path, out: &Path| {
        recover_cmd(
            &rv,
            &rid,
            &[
                "--grant",
                s(g),
                "--identity",
                s(&doc_id),
                "--patient",
                &patient,
                "--out",
                s(out),
            ],
        )
    };
    let out = d.join("out1");
    let o = recover(&g1, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&out).unwrap(), data);

    // Revoke g1 and rekey: g1 refused by the gate, g2 still works.
    let r = text(&[
        "ehr",
        "revoke",
        "--vault",
        s(&vault),
        "--grant",
        s(&g1),
        "--rekey",
        "--passphrase-file",
        s(&pw),
    ]);
    assert!(r.contains("revoked") && r.contains("rekeyed"), "{r}");
    let no = d.join("no");
    let o = recover(&g1, &no);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("revoked"));
    assert!(!no.exists());
    let out2 = d.join("out2");
    let o = recover(&g2, &out2);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&out2).unwrap(), data);

    // A wrong patient key: refused as not from the patient.
    let other = keygen(&d.join("x.id"));
    let o = aorta(&[
        "ehr",
        "recover",
        "--vault",
        s(&rv),
        "--record",
        &rid,
        "--grant",
        s(&g2),
        "--identity",
        s(&doc_id),
        "--patient",
        &other,
        "--out",
        s(&no),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not from the patient"));

    // Hostile HTTP: typed 4xx, and the gate still serves afterwards.
    let post = |len: usize| {
        format!("POST /v1/release HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n")
    };
    assert_eq!(gate.raw(&post(10), b"0123456789"), 400);
    assert_eq!(gate.raw(&post(10_000_000), b"xx"), 413);
    assert_eq!(
        gate.raw("GET /v1/release HTTP/1.1\r\nHost: x\r\n\r\n", b""),
        405
    );
    assert_eq!(
        gate.raw(
            "POST /other HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            b""
        ),
        404
    );
    let out3 = d.join("out3");
    assert!(recover(&g2, &out3).status.success());

    // The patient's log shows the uses and the refusal.
    let a = text(&["ehr", "audit", "--vault", s(&vault), "--verify"]);
    assert!(a.contains(" use ") && a.contains(" refuse "), "{a}");
}

/// `ehr gate serve` is a service with nothing to flush: SIGTERM stops it
/// with exit 0 (`docs/cli.md`, "Signals").
#[test]
fn gate_serve_stops_on_sigterm_with_exit_0() {
    let t = tempfile::tempdir().unwrap();
    let vault = t.path().join("v");
    std::fs::create_dir_all(&vault).unwrap();
    let mut g = GateProc::start(&vault);
    let st = std::process::Command::new("kill")
        .args(["-TERM", &g.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = g.child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "gate still running");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}
