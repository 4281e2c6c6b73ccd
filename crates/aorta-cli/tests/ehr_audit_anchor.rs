//! `aorta ehr audit --verify` through the real binary against someone who
//! edits the vault directory: a deleted log and head, a log cut back with an
//! older head put back, and — with an anchor saved off the device by
//! `--print-anchor` — a log wiped together with its key and anchor.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use std::path::Path;

use common::ehr::{protect, recover_cmd, s, vault_pw_note};
use common::{aorta, ok};

fn audit(vault: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["ehr", "audit", "--vault", s(vault), "--verify"];
    args.extend_from_slice(extra);
    aorta(&args)
}

fn tampered(o: &std::process::Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("tampered"), "{err}");
}

#[test]
fn deletion_truncation_and_a_wiped_log_are_detected() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let (vault, pw, f) = vault_pw_note(d, "blood pressure 120/80\n".repeat(50).as_bytes());
    let protect = || protect(&vault, &f, &pw, &[]);
    protect();
    let log = vault.join("audit.log");
    let head = vault.join("audit.log.head");
    let one_log = std::fs::read(&log).unwrap();
    let one_head = std::fs::read(&head).unwrap();
    protect();
    protect();

    // Save an anchor off the device.
    let o = ok(audit(&vault, &["--print-anchor"]));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.contains("3 entries"), "{out}");
    let anchor_line = out
        .lines()
        .find(|l| l.starts_with("aorta-audit-anchor-1:"))
        .unwrap();
    let anchor = d.join("anchor.txt");
    std::fs::write(&anchor, format!("# saved\n{anchor_line}\n")).unwrap();
    let o = ok(audit(&vault, &["--anchor", s(&anchor)]));
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 given anchor(s) met"));

    // Cut back to one entry with the head of that time put back.
    let full_log = std::fs::read(&log).unwrap();
    let full_head = std::fs::read(&head).unwrap();
    std::fs::write(&log, &one_log).unwrap();
    std::fs::write(&head, &one_head).unwrap();
    tampered(&audit(&vault, &[]));

    // Log and head deleted.
    std::fs::remove_file(&log).unwrap();
    std::fs::remove_file(&head).unwrap();
    tampered(&audit(&vault, &[]));

    // Restored, it verifies again.
    std::fs::write(&log, &full_log).unwrap();
    std::fs::write(&head, &full_head).unwrap();
    ok(audit(&vault, &["--anchor", s(&anchor)]));

    // Everything of the log on the device wiped, key and anchor included:
    // only the anchor kept elsewhere shows it.
    std::fs::remove_file(&log).unwrap();
    std::fs::remove_file(&head).unwrap();
    std::fs::remove_dir_all(vault.join("device/audit")).unwrap();
    ok(audit(&vault, &[]));
    tampered(&audit(&vault, &["--anchor", s(&anchor)]));

    // A file that holds no anchor is an input error, not a verdict.
    let junk = d.join("junk.txt");
    std::fs::write(&junk, "hello\n").unwrap();
    let o = audit(&vault, &["--anchor", s(&junk)]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_tampered_cloud_copy_is_refused_naming_the_store_and_another_store_recovers() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let vault = d.join("v");
    std::fs::create_dir_all(&vault).unwrap();
    std::fs::write(
        vault.join("vault.json"),
        r#"{"public":[{"type":"local","path":"cloud-a"},{"type":"local","path":"cloud-b"}],
            "private":{"type":"local","path":"device"}}"#,
    )
    .unwrap();
    let pw = d.join("pw");
    std::fs::write(&pw, "pw").unwrap();
    let f = d.join("note.txt");
    std::fs::write(&f, "heart rate 72\n".repeat(200)).unwrap();
    let rid = protect(&vault, &f, &pw, &[]);
    let recover = |out: &Path| {
        recover_cmd(
            &vault,
            &rid,
            &["--passphrase-file", s(&pw), "--out", s(out)],
        )
    };
    let alter = |store: &str| {
        let p = vault.join(format!("{store}/records/{rid}.aosp"));
        let mut b = std::fs::read(&p).unwrap();
        b[200] ^= 0x40;
        std::fs::write(&p, b).unwrap();
    };
    alter("cloud-a");
    let out = d.join("out.txt");
    ok(recover(&out));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&f).unwrap());
    let listing =
        String::from_utf8(ok(aorta(&["ehr", "audit", "--vault", s(&vault)])).stdout).unwrap();
    assert!(listing.contains("cloud-a"), "{listing}");

    alter("cloud-b");
    let no = d.join("no.txt");
    let o = recover(&no);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("refused") && err.contains("cloud-a") && err.contains("cloud-b"),
        "{err}"
    );
    assert!(!no.exists());
}
