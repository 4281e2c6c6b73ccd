//! Issue 13, item 6, through the real binary: one key text for every
//! identity (a clinician's key is an EHR grant recipient's key, given inline
//! or in a file; the first `aorta-ehr-pk1:` form still read), no output
//! file replaced without `--force`, `--expires 0d` refused, and times in
//! RFC 3339 UTC in the human-facing listings. Each test asserts stdout,
//! stderr and the exit status, and that a refusal changes nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]
mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::ehr::{GateProc, patient_key, protect, recover_cmd, s, share_cmd, vault_pw_note};
use common::{aorta, stderr};

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A vault in `d/v` holding one protected note; its record id.
struct Vault {
    dir: PathBuf,
    pw: PathBuf,
    rid: String,
    note: Vec<u8>,
}

fn vault(d: &Path) -> Vault {
    let note = b"blood pressure 120/80, no allergies\n".repeat(20);
    let (dir, pw, f) = vault_pw_note(d, &note);
    let rid = protect(&dir, &f, &pw, &[]);
    Vault { dir, pw, rid, note }
}

impl Vault {
    fn share(&self, to: &str, out: &Path, extra: &[&str]) -> Output {
        let to = ["--uncertified", "--to", to, "--out", s(out)];
        share_cmd(&self.dir, &self.rid, &self.pw, &[&to, extra].concat())
    }

    /// Recovers with a grant through the vault's gate (`ehr gate serve`,
    /// started for the call) and the pinned patient key.
    fn recover_grant(&self, grant: &Path, identity: &Path, out: &Path, extra: &[&str]) -> Output {
        let patient = patient_key(&self.dir);
        let gate = GateProc::start(&self.dir);
        let how = [
            "--grant",
            s(grant),
            "--identity",
            s(identity),
            "--patient",
            &patient,
            "--gate",
            &gate.url,
            "--out",
            s(out),
        ];
        recover_cmd(&self.dir, &self.rid, &[&how, extra].concat())
    }

    fn audit(&self) -> String {
        let o = aorta(&["ehr", "audit", "--vault", s(&self.dir)]);
        assert!(o.status.success(), "{}", stderr(&o));
        out(&o)
    }
}

fn clinician_keygen(d: &Path, name: &str) -> (PathBuf, String) {
    let key = d.join(name);
    let o = aorta(&["clinician", "keygen", "--out", s(&key)]);
    assert!(o.status.success(), "{}", stderr(&o));
    (key, out(&o).trim().to_owned())
}

/// A recipient from `aorta ehr keygen` (whatever key text it prints).
fn ehr_keygen(d: &Path, name: &str) -> (PathBuf, String) {
    let key = d.join(name);
    let o = aorta(&["ehr", "keygen", "--out", s(&key)]);
    assert!(o.status.success(), "{}", stderr(&o));
    (key, out(&o).trim().to_owned())
}

fn is_rfc3339_utc(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 20
        && t.ends_with('Z')
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && t.chars()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19].contains(&i) || c.is_ascii_digit())
}

/// A clinician's key text, inline, is a grant recipient; the clinician
/// opens the grant with the identity file `clinician keygen` wrote.
#[test]
fn a_clinician_key_given_inline_receives_a_grant() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let v = vault(d);
    let (key, public) = clinician_keygen(d, "doc.key");
    assert!(public.starts_with("aorta-clinician-1"), "{public}");
    let grant = d.join("doc.grant");
    let o = v.share(&public, &grant, &["--expires", "1h"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(out(&o).trim().len(), 32, "the grant id: {}", out(&o));
    let recovered = d.join("note.out");
    let o = v.recover_grant(&grant, &key, &recovered, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(out(&o), "");
    assert_eq!(std::fs::read(&recovered).unwrap(), v.note);
}

/// `ehr keygen` writes the same key text as `clinician keygen`; a key file
/// and the first `aorta-ehr-pk1:` text work as `--to`; an argument that is
/// neither a key nor a file says so.
#[test]
fn one_key_text_inline_in_a_file_or_in_the_old_form() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let v = vault(d);
    let id = d.join("r.identity");
    let o = aorta(&["ehr", "keygen", "--out", s(&id)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let public = out(&o).trim().to_owned();
    assert!(public.starts_with("aorta-clinician-1"), "{public}");
    assert_eq!(public.len(), "aorta-clinician-1".len() + 64);
    // The same identity file `clinician public` reads.
    let o = aorta(&["clinician", "public", "--identity", s(&id)]);
    assert_eq!(out(&o).trim(), public, "{}", stderr(&o));

    let pk_file = d.join("r.pk");
    std::fs::write(&pk_file, format!("{public}\n")).unwrap();
    let old = format!("aorta-ehr-pk1:{}", &public["aorta-clinician-1".len()..]);
    for (n, to) in [s(&pk_file), old.as_str()].into_iter().enumerate() {
        let g = d.join(format!("g{n}"));
        let o = v.share(to, &g, &[]);
        assert_eq!(o.status.code(), Some(0), "{to}: {}", stderr(&o));
        let r = d.join(format!("r{n}"));
        let o = v.recover_grant(&g, &id, &r, &[]);
        assert_eq!(o.status.code(), Some(0), "{to}: {}", stderr(&o));
        assert_eq!(std::fs::read(&r).unwrap(), v.note);
    }

    let g = d.join("never");
    let o = v.share("aorta-doctor-7", &g, &[]);
    assert_eq!(out(&o), "");
    assert_eq!(
        stderr(&o),
        "error: recipient \"aorta-doctor-7\": neither a public key (aorta-clinician-1 followed by 64 hex digits) nor an existing file\n"
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(!g.exists());
}

/// `share --out` and `recover --out` refuse an existing file (before any
/// grant is made) unless `--force`.
#[test]
fn output_files_are_replaced_only_with_force() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let v = vault(d);
    let (key, public) = ehr_keygen(d, "doc.key");
    let grant = d.join("doc.grant");
    std::fs::write(&grant, "precious").unwrap();
    let audit_before = v.audit();
    let o = v.share(&public, &grant, &[]);
    assert_eq!(out(&o), "");
    assert_eq!(
        stderr(&o),
        format!(
            "error: {} already exists; refusing to overwrite it (give --force to replace it)\n",
            grant.display()
        )
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(std::fs::read(&grant).unwrap(), b"precious");
    assert_eq!(v.audit(), audit_before, "no grant was made");

    let o = v.share(&public, &grant, &["--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_ne!(std::fs::read(&grant).unwrap(), b"precious");

    let target = d.join("note.out");
    std::fs::write(&target, "keep me").unwrap();
    let o = v.recover_grant(&grant, &key, &target, &[]);
    assert_eq!(out(&o), "");
    assert_eq!(
        stderr(&o),
        format!(
            "error: {} already exists; refusing to overwrite it (give --force to replace it)\n",
            target.display()
        )
    );
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
    let o = aorta(&[
        "ehr",
        "recover",
        "--vault",
        s(&v.dir),
        "--record",
        &v.rid,
        "--passphrase-file",
        s(&v.pw),
        "--out",
        s(&target),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");

    let o = v.recover_grant(&grant, &key, &target, &["--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(std::fs::read(&target).unwrap(), v.note);
}

/// A grant valid for no time at all is refused before it is made.
#[test]
fn a_zero_validity_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let v = vault(d);
    let (_, public) = ehr_keygen(d, "doc.key");
    let audit_before = v.audit();
    for zero in ["0d", "0", "0s", "0w"] {
        let g = d.join("g");
        let o = v.share(&public, &g, &["--expires", zero]);
        assert_eq!(out(&o), "", "{zero}");
        assert_eq!(
            stderr(&o),
            format!("error: validity {zero:?}: a grant must be valid for longer than 0\n"),
            "{zero}"
        );
        assert_eq!(o.status.code(), Some(2), "{zero}");
        assert!(!g.exists(), "{zero}");
    }
    assert_eq!(v.audit(), audit_before);
}

/// The audit listing and `share`'s note give times in RFC 3339 UTC; the
/// JSON keeps unix seconds.
#[test]
fn audit_and_share_print_rfc3339_times() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let v = vault(d);
    let (_, public) = ehr_keygen(d, "doc.key");
    let grant = d.join("g");
    let o = v.share(&public, &grant, &["--expires", "2d"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let note = stderr(&o);
    let until = note
        .lines()
        .find(|l| l.starts_with("grant written"))
        .unwrap_or_default()
        .trim()
        .strip_prefix(&format!(
            "grant written to {}; valid until ",
            grant.display()
        ))
        .unwrap_or_else(|| panic!("{note}"));
    assert!(is_rfc3339_utc(until), "{note}");

    let listing = v.audit();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 2, "{listing}");
    for l in &lines {
        let time = l.split_whitespace().nth(1).unwrap();
        assert!(is_rfc3339_utc(time), "{l}");
    }
    assert!(lines[0].contains(" protect "), "{listing}");
    let g = lines[1];
    assert!(g.contains(" grant "), "{g}");
    let expires = g.rsplit("expires ").next().unwrap();
    assert_eq!(expires, until, "{g}");

    let o = aorta(&["ehr", "audit", "--vault", s(&v.dir), "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(j["entries"][0]["time"].as_u64().unwrap() > 1_700_000_000);
}

/// An expired grant's refusal names the times in RFC 3339 UTC.
#[test]
fn an_expired_grant_is_refused_with_rfc3339_times() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let v = vault(d);
    let (key, public) = ehr_keygen(d, "doc.key");
    let grant = d.join("g");
    let o = v.share(&public, &grant, &["--expires", "1s"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Past the expiry (whole seconds).
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let target = d.join("r");
    let o = v.recover_grant(&grant, &key, &target, &[]);
    assert_eq!(out(&o), "");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    let rest = e
        .strip_prefix("refused: grant refused: expired at ")
        .unwrap_or_else(|| panic!("{e}"));
    let (at, now) = rest.trim_end().split_once(" (now ").unwrap();
    assert!(is_rfc3339_utc(at), "{e}");
    assert!(is_rfc3339_utc(now.trim_end_matches(')')), "{e}");
    assert!(!target.exists());
}
