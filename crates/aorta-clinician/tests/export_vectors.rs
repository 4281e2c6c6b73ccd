//! Test vectors of the exports (`docs/vectors/exports/`, `docs/fhir.md`):
//! `results.json` (what `aorta results fetch --json` prints: two patients,
//! heart rate, beats, an AF onset, a two-channel strip, HRV with a NaN)
//! and, derived from it, `bundle.json` (FHIR R4), `results.csv` and the
//! WFDB record `SN_1.hea` / `SN_1.aorta`. Each export must reproduce its
//! vector byte for byte. The vectors are written by this test itself with
//! `AORTA_WRITE_VECTORS=1` (never by hand).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::path::PathBuf;

use aorta_clinician::export;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/vectors/exports")
}

#[test]
fn every_export_reproduces_its_vector() {
    let d = dir();
    let results = export::read_results(&d.join("results.json")).unwrap();
    let mut bundle = serde_json::to_vec_pretty(&export::fhir::bundle(&results).unwrap()).unwrap();
    bundle.push(b'\n');
    let csv = export::csv::to_csv(&results).into_bytes();
    let recs = export::wfdb::records(&results, None).unwrap();
    let rec = recs.iter().find(|r| r.patient == "SN-1").unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("bundle.json", bundle),
        ("results.csv", csv),
        ("SN_1.hea", rec.header.clone().into_bytes()),
        ("SN_1.aorta", rec.annotations.clone()),
    ];
    let write = std::env::var_os("AORTA_WRITE_VECTORS").is_some();
    for (name, bytes) in files {
        let p = d.join(name);
        if write {
            std::fs::write(&p, &bytes).unwrap();
        }
        let want = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(want == bytes, "{name} differs from its vector");
    }
}
