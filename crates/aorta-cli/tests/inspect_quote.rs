//! `aorta broker inspect-quote` on the real Intel DCAP sample quotes
//! (see crates/aorta-enclave/tests/fixtures/dcap/README.md), and
//! `aorta worker run --backend auto|tdx` on a machine without a TEE.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use common::{Run, aorta, stdout_json};

const FIX: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../aorta-enclave/tests/fixtures/dcap"
);
const AT: &str = "1750377600";

/// `aorta broker inspect-quote --json --backend BACKEND --at AT EXTRA
/// --quote QUOTE --collateral FIX/COLLATERAL`.
fn inspect(backend: &str, extra: &[&str], quote: &str, collateral: &str) -> Run {
    Run::new([
        "broker",
        "inspect-quote",
        "--json",
        "--backend",
        backend,
        "--at",
        AT,
    ])
    .args(extra)
    .args(["--quote", quote, "--collateral"])
    .arg(format!("{FIX}/{collateral}"))
}

#[test]
fn inspects_real_quotes() {
    let v = inspect(
        "sgx-gramine",
        &[],
        &format!("{FIX}/sgx_quote"),
        "sgx_quote_collateral.json",
    )
    .json();
    assert_eq!(v["kind"], "sgx");
    assert_eq!(v["tcb_status"], "ConfigurationAndSWHardeningNeeded");
    assert_eq!(v["debug"], false);
    assert!(v["raw_measurement"].as_str().unwrap().starts_with("33d8"));
    // MRENCLAVE alone does not pin the worker's config: the policy
    // measurement needs the app measurement, as for TDX.
    assert!(v["policy_measurement"].is_null());
    let v = inspect(
        "sgx-gramine",
        &["--app-measurement", &"ab".repeat(32)],
        &format!("{FIX}/sgx_quote"),
        "sgx_quote_collateral.json",
    )
    .json();
    assert_eq!(v["policy_measurement"].as_str().unwrap().len(), 64);

    let v = inspect(
        "tdx",
        &["--app-measurement", &"ab".repeat(32)],
        &format!("{FIX}/tdx_quote"),
        "tdx_quote_collateral.json",
    )
    .json();
    assert_eq!(v["kind"], "tdx");
    assert_eq!(v["tcb_status"], "UpToDate");
    assert_eq!(v["policy_measurement"].as_str().unwrap().len(), 64);

    // An altered quote: exit 1 with the reason.
    let t = tempfile::tempdir().unwrap();
    let mut q = std::fs::read(format!("{FIX}/tdx_quote")).unwrap();
    q[300] ^= 1;
    let altered = t.path().join("q");
    std::fs::write(&altered, q).unwrap();
    let o = inspect(
        "tdx",
        &[],
        altered.to_str().unwrap(),
        "tdx_quote_collateral.json",
    )
    .output();
    assert_eq!(o.status.code(), Some(1));
    let v = stdout_json(&o);
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
        let o = aorta(&[
            "worker",
            "run",
            "--backend",
            backend,
            "--broker",
            "127.0.0.1:1",
            "--assignment",
            "a",
        ]);
        assert_eq!(o.status.code(), Some(2), "{backend}");
        let err = String::from_utf8_lossy(&o.stderr);
        if backend == "auto" {
            assert!(err.contains("--backend sim"), "{err}");
        }
    }
}
