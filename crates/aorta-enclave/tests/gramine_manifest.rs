//! The Gramine manifest the SGX worker is built from pins its command line
//! and mounts no writable host directory (`deploy/gramine/`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)]

const MANIFEST: &str = include_str!("../../../deploy/gramine/aorta-worker.manifest.template");

/// The manifest's settings, comments stripped.
fn settings() -> String {
    MANIFEST
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_host_cannot_choose_the_workers_arguments() {
    let s = settings();
    assert!(!s.contains("insecure__use_cmdline_argv"), "{s}");
    assert!(!s.contains("insecure__"), "no insecure option at all");
    assert!(s.contains("loader.argv = ["));
    for pinned in [
        "\"--backend\", \"sgx-gramine\"",
        "\"--config\", \"{{ worker_config }}\"",
    ] {
        assert!(s.contains(pinned), "{pinned}");
    }
}

#[test]
fn no_host_directory_is_mounted_as_state_and_debug_is_off() {
    let s = settings();
    assert!(!s.contains("/var/lib/aorta"), "{s}");
    assert!(s.contains("sgx.debug = false"));
    // Allowed (unmeasured) files are single files, never a directory.
    let allowed = s.split("sgx.allowed_files = [").nth(1).unwrap();
    let allowed = allowed.split(']').next().unwrap();
    for line in allowed.lines().map(str::trim).filter(|l| !l.is_empty()) {
        assert!(!line.trim_end_matches(',').ends_with("/\""), "{line}");
    }
    // The config is measured.
    let trusted = s.split("sgx.trusted_files = [").nth(1).unwrap();
    assert!(trusted.contains("file:{{ worker_config }}"));
}
