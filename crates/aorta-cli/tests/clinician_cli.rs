//! `aorta clinician keygen|public` through the real binary: the identity
//! file is created 0600 and never overwritten, the printed public key is the
//! identity's and results sealed to it open with the file; malformed
//! identity files are input errors (exit 2).
mod common;

use aorta_crypto::results::{ClinicianPublic, ResultSession, open_envelope};
use common::aorta;

#[test]
fn keygen_public_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice.identity");
    let p = path.to_str().unwrap();

    let o = aorta(&["clinician", "keygen", "--out", p]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let public_text = String::from_utf8(o.stdout).unwrap().trim().to_owned();
    let public = ClinicianPublic::from_text(&public_text).unwrap();
    let content = std::fs::read(&path).unwrap();
    // The secret never goes to stdout or stderr.
    let secret_line = String::from_utf8(content.clone())
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AORTA-CLINICIAN-SECRET-1"))
        .unwrap()
        .to_owned();
    assert!(!String::from_utf8_lossy(&o.stderr).contains(&secret_line));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }

    // Refuses to overwrite: exit 1, file unchanged.
    let o = aorta(&["clinician", "keygen", "--out", p]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    assert_eq!(std::fs::read(&path).unwrap(), content);

    // `public` prints the same key.
    let o = aorta(&["clinician", "public", "--identity", p]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8(o.stdout).unwrap().trim(), public_text);

    // A result sealed to the printed key opens with the identity file.
    let id = aorta_crypto::results::ClinicianIdentity::from_file_text(
        &std::fs::read_to_string(&path).unwrap(),
    )
    .unwrap();
    let (s, env) = ResultSession::open_new("dr-alice", &public).unwrap();
    let sealed = s.seal("r", b"{}").unwrap();
    assert_eq!(
        &open_envelope(&id, &env)
            .unwrap()
            .open("r", &sealed)
            .unwrap()[..],
        b"{}"
    );

    // Malformed identity files: exit 2 with a message, no panic.
    for (name, text) in [
        ("empty", String::new()),
        ("public-only", format!("{public_text}\n")),
        ("lower", secret_line.to_lowercase()),
        ("short", secret_line[..secret_line.len() - 1].to_owned()),
    ] {
        let bad = dir.path().join(name);
        std::fs::write(&bad, text).unwrap();
        let o = aorta(&["clinician", "public", "--identity", bad.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{name}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("not a clinician identity file"),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = aorta(&["clinician", "public", "--identity", "/nonexistent/x"]);
    assert_eq!(o.status.code(), Some(2));
}

/// `clinician serve` refuses a non-loopback address without
/// `--allow-remote`, before reading anything (the identity here does not
/// even exist).
#[test]
fn serve_refuses_a_non_loopback_listen() {
    let o = aorta(&[
        "clinician",
        "serve",
        "--identity",
        "/nonexistent/clinician.key",
        "--ca",
        "/nonexistent/cert.pem",
        "--broker-key",
        &"00".repeat(32),
        "--subscriber",
        "s",
        "--listen",
        "0.0.0.0:0",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "a usage error: {err}");
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(o.stdout.is_empty());
}
