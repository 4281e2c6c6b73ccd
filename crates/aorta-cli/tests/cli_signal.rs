//! The real `aorta` binary, run as a user would: JSON contracts of the
//! signal commands and clear errors on bad input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)] // test code

use std::path::PathBuf;
use std::process::Command;

fn aorta() -> Command {
    Command::new(env!("CARGO_BIN_EXE_aorta"))
}

fn data(sub: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(sub);
    if p.join("RECORDS").is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} not found (the shared data is absent)",
            p.display()
        );
        None
    }
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aorta-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn eval_rpeaks_json_contract() {
    let Some(db) = data("mitdb") else { return };
    let out = aorta()
        .args([
            "eval", "rpeaks", "--json", "--record", "100", "--record", "203", "--db",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 2);
    for r in recs {
        for k in ["record", "tp", "fp", "fn", "se", "ppv"] {
            assert!(r.get(k).is_some(), "missing {k}");
        }
        assert!(r["se"].as_f64().unwrap() <= 1.0 && r["ppv"].as_f64().unwrap() >= 0.95);
    }
    for k in ["tp", "fp", "fn", "se", "ppv"] {
        assert!(v["gross"].get(k).is_some(), "missing gross.{k}");
    }
}

#[test]
fn eval_af_json_contract() {
    let Some(db) = data("challenge-2017") else {
        return;
    };
    let out = aorta()
        .args(["eval", "af", "--json", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in ["se", "sp", "f1_af"] {
        let x = v[k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&x), "{k} = {x}");
    }
}

#[test]
fn hrv_record_windows() {
    let Some(db) = data("mitdb") else { return };
    let out = aorta()
        .args(["hrv", "--json", "--window", "300", "--record"])
        .arg(db.join("100"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let w = v["windows"].as_array().unwrap();
    assert_eq!(w.len(), 7, "30:06 of signal in 300 s windows");
    let first = &w[0]["hrv"];
    assert!((60.0..90.0).contains(&first["mean_hr"].as_f64().unwrap()));
    assert!(first["rmssd"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_inputs_exit_2_and_name_the_file() {
    let d = tmpdir("bad");
    std::fs::write(
        d.join("r.hea"),
        "r 1 360 100\nr.dat 212 200 11 1024 0 0 0 I\n",
    )
    .unwrap();
    std::fs::write(d.join("r.dat"), [0u8; 10]).unwrap();
    let out = aorta()
        .args(["wfdb", "info"])
        .arg(d.join("r"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("r.dat") && err.contains("truncated"), "{err}");

    std::fs::write(d.join("rr.txt"), "800\n810\nxx\n").unwrap();
    let out = aorta()
        .args(["hrv", "--rr"])
        .arg(d.join("rr.txt"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3"));

    let out = aorta()
        .args(["eval", "rpeaks", "--db"])
        .arg(d.join("missing"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RECORDS"));
}
