//! `aorta broker inspect-quote` on the real Intel DCAP sample quotes
//! (see crates/aorta-enclave/tests/fixtures/dcap/README.md), and
//! `aorta worker run --backend auto|tdx` on a machine without a TEE.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

const AORTA: &str = env!("CARGO_BIN_EXE_aorta");
const FIX: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../aorta-enclave/tests/fixtures/dcap"
);
const AT: &str = "1750377600";

#[test]
fn inspects_real_quotes() {
    let o = Command::new(AORTA)
        .args([
            "broker",
            "inspect-quote",
            "--json",
            "--backend",
            "sgx-gramine",
            "--at",
            AT,
        ])
        .arg("--quote")
        .arg(format!("{FIX}/sgx_quote"))
        .arg("--collateral")
        .arg(format!("{FIX}/sgx_quote_collateral.json"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "sgx");
    assert_eq!(v["tcb_status"], "ConfigurationAndSWHardeningNeeded");
    assert_eq!(v["debug"], false);
    assert!(
        v["policy_measurement"]
            .as_str()
            .unwrap()
            .starts_with("33d8")
    );

    let o = Command::new(AORTA)
        .args([
            "broker",
            "inspect-quote",
            "--json",
            "--backend",
            "tdx",
            "--at",
            AT,
        ])
        .args(["--app-measurement", &"ab".repeat(32)])
        .arg("--quote")
        .arg(format!("{FIX}/tdx_quote"))
        .arg("--collateral")
        .arg(format!("{FIX}/tdx_quote_collateral.json"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["kind"], "tdx");
    assert_eq!(v["tcb_status"], "UpToDate");
    assert_eq!(v["policy_measurement"].as_str().unwrap().len(), 64);

    // An altered quote: exit 1 with the reason.
    let t = tempfile::tempdir().unwrap();
    let mut q = std::fs::read(format!("{FIX}/tdx_quote")).unwrap();
    q[300] ^= 1;
    std::fs::write(t.path().join("q"), q).unwrap();
    let o = Command::new(AORTA)
        .args([
            "broker",
            "inspect-quote",
            "--json",
            "--backend",
            "tdx",
            "--at",
            AT,
        ])
        .arg("--quote")
        .arg(t.path().join("q"))
        .arg("--collateral")
        .arg(format!("{FIX}/tdx_quote_collateral.json"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verified"], false);
    assert_eq!(v["code"], 111);
}

#[test]
fn hardware_backends_fail_clearly_without_a_tee() {
    if std::path::Path::new("/dev/attestation/quote").exists()
        || std::path::Path::new("/dev/tdx_guest").exists()
        || std::path::Path::new("/dev/sev-guest").exists()
    {
        eprintln!("SKIP: this machine has a TEE interface");
        return;
    }
    for backend in ["auto", "tdx", "sgx-gramine"] {
        let o = Command::new(AORTA)
            .args([
                "worker",
                "run",
                "--backend",
                backend,
                "--broker",
                "127.0.0.1:1",
                "--assignment",
                "a",
            ])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{backend}");
        let err = String::from_utf8_lossy(&o.stderr);
        if backend == "auto" {
            assert!(err.contains("--backend sim"), "{err}");
        }
    }
}
