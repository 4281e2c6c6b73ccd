//! `aorta bench compress --json` keeps the JSON contract exactly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Command;

use aorta_signal::wfdb::{Format, SignalSpec, write_record_16};

#[test]
fn json_contract() {
    let d = tempfile::tempdir().unwrap();
    let spec = SignalSpec {
        file_name: String::new(),
        format: Format::F16,
        samples_per_frame: 1,
        skew: 0,
        byte_offset: 0,
        gain: 200.0,
        baseline: 0,
        units: "mV".into(),
        adc_resolution: 12,
        adc_zero: 0,
        initial_value: None,
        checksum: None,
        block_size: 0,
        description: "ECG".into(),
    };
    for (name, k) in [("r1", 3), ("r2", 5)] {
        let x: Vec<i32> = (0..3600).map(|i| ((i * k) % 97) - 48).collect();
        write_record_16(
            d.path(),
            name,
            360.0,
            &[spec.clone(), spec.clone()],
            &[x.clone(), x],
        )
        .unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_aorta"))
        .args(["bench", "compress", "--db"])
        .arg(d.path())
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let codecs = ["aorta", "gzip6", "zstd3", "dedup_gzip"];
    let check = |o: &serde_json::Value| {
        assert!(o["raw_bytes"].as_u64().unwrap() > 0);
        for c in codecs {
            assert!(o[c]["bytes"].as_u64().unwrap() > 0, "{c}");
            assert!(o[c]["mb_per_s"].as_f64().is_some(), "{c}");
        }
    };
    let records = v["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    records.iter().for_each(check);
    check(&v["total"]);
    assert_eq!(v["total"]["raw_bytes"].as_u64().unwrap(), 2 * 3600 * 2 * 2);
    assert_eq!(
        v["total"]["aorta"]["bytes"].as_u64().unwrap(),
        records
            .iter()
            .map(|r| r["aorta"]["bytes"].as_u64().unwrap())
            .sum::<u64>()
    );
}
