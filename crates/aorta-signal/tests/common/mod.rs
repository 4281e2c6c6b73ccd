//! Shared helpers for tests that read `../shared/data`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)] // test code: a panic is a failed test
#![allow(
    dead_code,
    reason = "shared test helpers: not every test file uses every helper"
)]

use std::path::PathBuf;

/// `../shared/data/<sub>` relative to the repository, or `None` (with a
/// visible message) when it is absent, so tests skip instead of failing.
pub fn data_dir(sub: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(sub);
    if p.join("RECORDS").is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} not found (the shared MIT-BIH data is absent)",
            p.display()
        );
        None
    }
}

/// Record names listed in a database's RECORDS file.
pub fn records(db: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(db.join("RECORDS"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// Linear-interpolation resampling from `fs_in` to `fs_out`.
pub fn resample(x: &[f64], fs_in: f64, fs_out: f64) -> Vec<f64> {
    let n_out = ((x.len() as f64 - 1.0) * fs_out / fs_in).floor() as usize + 1;
    (0..n_out)
        .map(|k| {
            let t = k as f64 * fs_in / fs_out;
            let i = t.floor() as usize;
            let f = t - i as f64;
            let a = x[i];
            let b = *x.get(i + 1).unwrap_or(&a);
            a + f * (b - a)
        })
        .collect()
}
