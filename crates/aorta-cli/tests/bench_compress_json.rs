//! `aorta bench compress --json` keeps the JSON contract exactly.
mod common;

use aorta_signal::wfdb::write_record_16;
use common::{Run, spec};

#[test]
fn json_contract() {
    let d = tempfile::tempdir().unwrap();
    let spec = spec("ECG", 12, 0);
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
    let v = Run::new(["bench", "compress", "--db"])
        .arg(d.path())
        .arg("--json")
        .json();
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
