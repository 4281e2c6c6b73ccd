//! The audit log against someone who edits files in the vault directory:
//! deleting the log and its head, truncating it and rewriting the head to
//! match, rewriting or reordering entries — all detected, through the
//! keyed chain and the anchor kept in the private store; and anchors a
//! grant carried out of the vault catch a log rebuilt from scratch.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: a failing unwrap, expect, panic or index is the test failing"
)]

use std::path::Path;

use aorta_crypto::selective::{KdfParams, Mode, ProtectOptions};
use aorta_vault::{Blame, EhrVault, VaultError};

fn opts() -> ProtectOptions {
    ProtectOptions {
        mode: Mode::Strong,
        kdf: KdfParams::INSECURE_TEST,
        ..Default::default()
    }
}

/// A vault with four audit entries (protect, recover × 3).
fn vault_with_entries() -> (tempfile::TempDir, EhrVault) {
    let d = tempfile::tempdir().unwrap();
    let v = EhrVault::open(d.path()).unwrap();
    let id = v.protect(b"ecg", b"pw", &opts()).unwrap();
    for _ in 0..3 {
        v.recover_with_passphrase(&id, b"pw").unwrap();
    }
    assert_eq!(v.audit_verify().unwrap().len(), 4);
    (d, v)
}

fn tampered(v: &EhrVault) {
    match v.audit_verify() {
        Err(e @ VaultError::AuditTampered { .. }) => assert_eq!(e.blame(), Blame::Tampered),
        other => panic!("tampering not detected: {other:?}"),
    }
}

fn log(d: &Path) -> std::path::PathBuf {
    d.join("audit.log")
}
fn head(d: &Path) -> std::path::PathBuf {
    d.join("audit.log.head")
}

#[test]
fn deleting_the_log_and_its_head_is_detected() {
    let (d, v) = vault_with_entries();
    std::fs::remove_file(log(d.path())).unwrap();
    std::fs::remove_file(head(d.path())).unwrap();
    tampered(&v);
}

#[test]
fn truncating_the_log_and_restoring_an_older_head_is_detected() {
    let d = tempfile::tempdir().unwrap();
    let v = EhrVault::open(d.path()).unwrap();
    let id = v.protect(b"ecg", b"pw", &opts()).unwrap();
    v.recover_with_passphrase(&id, b"pw").unwrap();
    // Whoever can read the vault directory keeps a copy of the head of two
    // entries…
    let old_head = std::fs::read(head(d.path())).unwrap();
    let two = std::fs::read_to_string(log(d.path())).unwrap();
    v.recover_with_passphrase(&id, b"pw").unwrap();
    v.recover_with_passphrase(&id, b"pw").unwrap();
    assert_eq!(v.audit_verify().unwrap().len(), 4);
    // …and later cuts the log back to them and puts that head back.
    std::fs::write(log(d.path()), &two).unwrap();
    std::fs::write(head(d.path()), &old_head).unwrap();
    tampered(&v);
}

#[test]
fn rewriting_or_reordering_entries_is_detected() {
    let (d, v) = vault_with_entries();
    let text = std::fs::read_to_string(log(d.path())).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Rewrite an entry, recomputing what a v1 log let anyone recompute: the
    // link of the next entry still names the old value, so also rewrite
    // the chain from there — without the key the MACs cannot be made.
    let edited = text.replacen("\"event\":\"recover\"", "\"event\":\"protect\"", 1);
    std::fs::write(log(d.path()), &edited).unwrap();
    tampered(&v);
    let swapped = format!("{}\n{}\n{}\n{}\n", lines[0], lines[2], lines[1], lines[3]);
    std::fs::write(log(d.path()), swapped).unwrap();
    tampered(&v);
    std::fs::write(log(d.path()), &text).unwrap();
    assert_eq!(v.audit_verify().unwrap().len(), 4);
}

#[cfg(unix)]
#[test]
fn the_audit_key_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let (d, _v) = vault_with_entries();
    let meta = std::fs::metadata(d.path().join("device/audit/key")).unwrap();
    assert_eq!(meta.len(), 32);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // Nothing of it reached the cloud store.
    assert!(!d.path().join("cloud/audit").exists());
}

#[test]
fn the_private_store_anchor_and_key_cannot_be_dropped_silently() {
    let (d, v) = vault_with_entries();
    std::fs::remove_file(d.path().join("device/audit/anchor")).unwrap();
    tampered(&v);
    let (d, v) = vault_with_entries();
    std::fs::remove_file(d.path().join("device/audit/key")).unwrap();
    tampered(&v);
}

#[test]
fn an_anchor_carried_out_of_the_vault_catches_a_wiped_or_rebuilt_log() {
    let (d, v) = vault_with_entries();
    let anchor = v.audit_anchor().unwrap();
    assert_eq!(anchor.count, 4);
    assert_eq!(v.audit_verify_with_anchors(&[anchor]).unwrap().len(), 4);

    // Whoever holds the device deletes everything of the log, key and
    // anchor included: on its own the vault now looks new (the documented
    // limit) …
    std::fs::remove_file(log(d.path())).unwrap();
    std::fs::remove_file(head(d.path())).unwrap();
    std::fs::remove_dir_all(d.path().join("device/audit")).unwrap();
    assert_eq!(v.audit_verify().unwrap().len(), 0);
    // … but the anchor a grant carried says otherwise.
    let e = v.audit_verify_with_anchors(&[anchor]).unwrap_err();
    assert!(matches!(e, VaultError::AuditTampered { .. }), "{e}");

    // A log rebuilt from scratch with a fresh key, even to the same length,
    // cannot meet the old anchor.
    let id = v.protect(b"ecg", b"pw", &opts()).unwrap();
    for _ in 0..3 {
        v.recover_with_passphrase(&id, b"pw").unwrap();
    }
    assert_eq!(v.audit_verify().unwrap().len(), 4);
    let e = v.audit_verify_with_anchors(&[anchor]).unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");

    // An anchor from an intact log that has grown since is met.
    let now = v.audit_anchor().unwrap();
    v.recover_with_passphrase(&id, b"pw").unwrap();
    assert_eq!(v.audit_verify_with_anchors(&[now]).unwrap().len(), 5);
}
