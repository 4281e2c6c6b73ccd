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

use std::io::{BufRead, Read, Write};
use std::path::Path;

use common::{aorta, ok};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn text(args: &[&str]) -> String {
    String::from_utf8(ok(aorta(args)).stdout)
        .unwrap()
        .trim()
        .to_string()
}

struct GateProc {
    child: std::process::Child,
    addr: String,
}

impl GateProc {
    fn start(vault: &Path) -> Self {
        let mut child = std::process::Command::new(common::AORTA)
            .args([
                "ehr",
                "gate",
                "serve",
                "--vault",
                s(vault),
                "--listen",
                "127.0.0.1:0",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("gate listening on http://")
            .unwrap()
            .to_string();
        Self { child, addr }
    }
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// One raw HTTP exchange: the status code.
    fn raw(&self, head: &str, body: &[u8]) -> u16 {
        let mut c = std::net::TcpStream::connect(&self.addr).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        c.write_all(head.as_bytes()).unwrap();
        let _ = c.write_all(body);
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        let t = String::from_utf8_lossy(&out);
        t.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for GateProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    let rid = text(&[
        "ehr",
        "protect",
        "--vault",
        s(&vault),
        "--in",
        s(&input),
        "--passphrase-file",
        s(&pw),
    ]);
    let doc_id = d.join("doc.id");
    let doc_pk = text(&["ehr", "keygen", "--out", s(&doc_id)]);
    let gate = GateProc::start(&vault);
    let patient = text(&["ehr", "patient-key", "--vault", s(&vault)]);
    let share = |out: &Path| {
        text(&[
            "ehr",
            "share",
            "--vault",
            s(&vault),
            "--record",
            &rid,
            "--passphrase-file",
            s(&pw),
            "--uncertified",
            "--to",
            &doc_pk,
            "--gate",
            &gate.url(),
            "--out",
            s(out),
        ])
    };
    let g1 = d.join("g1");
    let g2 = d.join("g2");
    share(&g1);
    share(&g2);
    // The recipient's vault names only the patient's public store.
    let rv = d.join("recipient");
    std::fs::create_dir_all(&rv).unwrap();
    std::fs::write(
        rv.join("vault.json"),
        format!(
            r#"{{"public":[{{"type":"local","path":"{}"}}],"private":{{"type":"local","path":"mine"}}}}"#,
            vault.join("cloud").display()
        ),
    )
    .unwrap();
    let recover = |g: &Path, out: &Path| {
        aorta(&[
            "ehr",
            "recover",
            "--vault",
            s(&rv),
            "--record",
            &rid,
            "--grant",
            s(g),
            "--identity",
            s(&doc_id),
            "--patient",
            &patient,
            "--out",
            s(out),
        ])
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
    let other = text(&["ehr", "keygen", "--out", s(&d.join("x.id"))]);
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
