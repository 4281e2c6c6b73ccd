//! The `aorta ehr …` part of the harness: path and output helpers, the
//! common command sequences (protect, keygen, patient-key, share, recover)
//! and [`GateProc`], a real `aorta ehr gate serve` on a free loopback port.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{AORTA, aorta, ok};

/// `p` as an argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Asserts that the run succeeded; its stdout trimmed.
pub fn ok_text(o: Output) -> String {
    String::from_utf8(ok(o).stdout).unwrap().trim().to_string()
}

/// Runs `aorta ARGS`, asserts success, returns stdout trimmed.
pub fn text(args: &[&str]) -> String {
    ok_text(aorta(args))
}

/// A patient's files in `d`: the vault `d/v` (not created yet), the
/// passphrase file `d/pw` holding `pw` and a note `d/note.txt` holding
/// `note`.
pub fn vault_pw_note(d: &Path, note: &[u8]) -> (PathBuf, PathBuf, PathBuf) {
    let pw = d.join("pw");
    std::fs::write(&pw, "pw").unwrap();
    let f = d.join("note.txt");
    std::fs::write(&f, note).unwrap();
    (d.join("v"), pw, f)
}

/// `aorta ehr protect` of `input` into `vault` with the passphrase in `pw`
/// (and `extra` options): the record id.
pub fn protect(vault: &Path, input: &Path, pw: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "ehr",
        "protect",
        "--vault",
        s(vault),
        "--in",
        s(input),
        "--passphrase-file",
        s(pw),
    ];
    args.extend_from_slice(extra);
    text(&args)
}

/// `aorta ehr keygen --out OUT`: the new identity's public key.
pub fn keygen(out: &Path) -> String {
    text(&["ehr", "keygen", "--out", s(out)])
}

/// `aorta ehr patient-key --vault VAULT`: the patient's public key.
pub fn patient_key(vault: &Path) -> String {
    text(&["ehr", "patient-key", "--vault", s(vault)])
}

/// `aorta ehr share --vault VAULT --record RID --passphrase-file PW EXTRA…`.
pub fn share_cmd(vault: &Path, rid: &str, pw: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "ehr",
        "share",
        "--vault",
        s(vault),
        "--record",
        rid,
        "--passphrase-file",
        s(pw),
    ];
    args.extend_from_slice(extra);
    aorta(&args)
}

/// `aorta ehr recover --vault VAULT --record RID EXTRA…`.
pub fn recover_cmd(vault: &Path, rid: &str, extra: &[&str]) -> Output {
    let mut args = vec!["ehr", "recover", "--vault", s(vault), "--record", rid];
    args.extend_from_slice(extra);
    aorta(&args)
}

/// `aorta ehr pin --vault VAULT --institution INST --name NAME EXTRA…`.
pub fn pin(vault: &Path, inst: &str, name: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "ehr",
        "pin",
        "--vault",
        s(vault),
        "--institution",
        inst,
        "--name",
        name,
    ];
    args.extend_from_slice(extra);
    aorta(&args)
}

/// `aorta ehr unpin --vault VAULT --institution INST`.
pub fn unpin(vault: &Path, inst: &str) -> Output {
    aorta(&["ehr", "unpin", "--vault", s(vault), "--institution", inst])
}

/// `aorta ehr responsible --vault VAULT --cert CERT`.
pub fn responsible(vault: &Path, cert: &Path) -> Output {
    aorta(&["ehr", "responsible", "--vault", s(vault), "--cert", s(cert)])
}

/// A recipient's vault at `dir` whose `vault.json` names only the public
/// store (`cloud`) of the patient's vault at `patient`.
pub fn public_only_vault(dir: &Path, patient: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("vault.json"),
        format!(
            r#"{{"public":[{{"type":"local","path":"{}"}}],"private":{{"type":"local","path":"mine"}}}}"#,
            patient.join("cloud").display()
        ),
    )
    .unwrap();
}

/// `aorta ehr gate serve` on a free loopback port, killed on drop.
pub struct GateProc {
    pub child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl GateProc {
    /// Starts the gate of `vault` and reads the address it printed.
    pub fn start(vault: &Path) -> Self {
        let mut child = Command::new(AORTA)
            .args([
                "ehr",
                "gate",
                "serve",
                "--vault",
                s(vault),
                "--listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("gate listening on ")
            .unwrap_or_else(|| panic!("gate printed {line:?}"))
            .to_string();
        let addr = url
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("gate printed {line:?}"))
            .to_string();
        Self { child, addr, url }
    }

    /// One raw HTTP exchange: the status code.
    pub fn raw(&self, head: &str, body: &[u8]) -> u16 {
        let mut c = std::net::TcpStream::connect(&self.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
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
