//! The standard exports of real results, checked by other people's code:
//! the ECG operator runs over MIT-BIH record 201 (AF episodes, two
//! channels) as the worker runs it, and its results are exported
//!
//! - to FHIR R4: `tools/fhir_validate.py` validates every resource against
//!   the R4 4.0.1 model (fhir.resources 6.1.0) and that every reference
//!   resolves, and refuses a broken Observation (so it can fail);
//! - to WFDB annotations: `tools/wfdb_rdann_check.py` reads them with
//!   wfdb-python's `rdann`, and the beat count, the rhythm changes and
//!   their times are ours.
//!
//! Each skips visibly (prints `SKIPPED: …`) only when the data, python or
//! the package is missing; `tools/test.sh` installs them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use aorta_clinician::export;
use aorta_signal::wfdb::Record;
use aorta_stream::ecg::{EcgConfig, EcgEvent, EcgOperator, EcgResult};
use aorta_stream::job::ecg_chunk;
use aorta_stream::{Engine, EngineConfig, Output};
use aorta_worker::clinician::OpenedResult;

const T0: i64 = 1_767_225_600_000_000;
/// Seconds of record 201 analysed: it holds an AF onset and offset.
const SECONDS: f64 = 600.0;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The results of the ECG operator on the first [`SECONDS`] of record 201,
/// one-second frames of both channels, as the clinician opens them.
fn results_of_201() -> Option<Vec<OpenedResult>> {
    let db = root().join("../shared/data/mitdb");
    if !db.join("201.hea").is_file() {
        eprintln!(
            "SKIPPED: {} not found (the shared MIT-BIH data is absent)",
            db.display()
        );
        return None;
    }
    let rec = Record::read(db.join("201")).unwrap();
    let fs = rec.fs();
    let n = ((SECONDS * fs) as usize).min(rec.samples[0].len());
    let cal: Vec<(f64, i32)> = rec
        .header
        .signals
        .iter()
        .map(|s| (s.gain, s.baseline))
        .collect();
    let mut e = Engine::<String, EcgOperator>::new(
        EcgOperator::new(EcgConfig::default()),
        EngineConfig::default(),
    );
    let mut out: Vec<Output<String, EcgResult>> = Vec::new();
    let frame = fs as usize;
    let mut a = 0;
    while a < n {
        let b = (a + frame).min(n);
        let mut raw = Vec::with_capacity(2 * (b - a));
        for i in a..b {
            raw.push(rec.samples[0][i]);
            raw.push(rec.samples[1][i]);
        }
        let chunk = ecg_chunk(fs, 2, &cal, &raw).unwrap();
        let t = T0 + (a as f64 * 1e6 / fs).round() as i64;
        e.push("SN-201".to_string(), t, EcgEvent::Samples(chunk), &mut out);
        a = b;
    }
    e.finish(&mut out);
    Some(
        out.into_iter()
            .map(|o| OpenedResult {
                patient: o.key,
                start: o.start,
                end: o.end,
                result: o.value,
            })
            .collect(),
    )
}

/// The python that has `module` importable: `env` if set, else
/// `fallback` if it exists, else `python3`; `None` (with the reason
/// printed) when none has it.
fn python_with(module: &str, env: &str, fallback: Option<PathBuf>) -> Option<PathBuf> {
    let mut tried = Vec::new();
    let candidates: Vec<PathBuf> = std::env::var_os(env)
        .map(PathBuf::from)
        .into_iter()
        .chain(fallback.filter(|p| p.is_file()))
        .chain(std::iter::once(PathBuf::from("python3")))
        .collect();
    for py in candidates {
        let ok = Command::new(&py)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(py);
        }
        tried.push(py.display().to_string());
    }
    eprintln!(
        "SKIPPED: no python with `{module}` (tried {}; tools/test.sh installs it)",
        tried.join(", ")
    );
    None
}

fn fhir_python() -> Option<PathBuf> {
    let fallback = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/aorta/fhir-r4-venv/bin/python3"));
    let py = python_with("fhir.resources", "AORTA_FHIR_R4_PYTHON", fallback)?;
    // Only the R4 4.0.1 models count (the script exits 3 otherwise).
    let o = Command::new(&py)
        .args([
            "-c",
            "import fhir.resources.observation as o; assert 'Version: 4.0.1' in o.__doc__",
        ])
        .output()
        .unwrap();
    if !o.status.success() {
        eprintln!(
            "SKIPPED: {} has fhir.resources, but not the FHIR R4 4.0.1 models (fhir.resources==6.1.0; tools/test.sh installs it)",
            py.display()
        );
        return None;
    }
    Some(py)
}

fn validate(py: &Path, bundle: &serde_json::Value, dir: &Path) -> (bool, String, String) {
    let path = dir.join("bundle.json");
    std::fs::write(&path, serde_json::to_vec_pretty(bundle).unwrap()).unwrap();
    let o = Command::new(py)
        .arg(root().join("tools/fhir_validate.py"))
        .arg(&path)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn the_fhir_export_of_record_201_is_valid_r4() {
    let Some(results) = results_of_201() else {
        return;
    };
    let count = |f: fn(&EcgResult) -> bool| results.iter().filter(|r| f(&r.result)).count();
    let strips = count(|r| matches!(r, EcgResult::Strip(_)));
    let rhythm = count(|r| matches!(r, EcgResult::Rhythm(_)));
    let hr = count(|r| matches!(r, EcgResult::HeartRate { .. }));
    let hrv = count(|r| matches!(r, EcgResult::Hrv(_)));
    assert!(
        strips > 0 && rhythm > 0 && hr > 100 && hrv > 0,
        "{strips} {rhythm} {hr} {hrv}"
    );
    let bundle = export::fhir::bundle(&results).unwrap();
    // Reproducible: the same results, the same bytes.
    assert_eq!(
        serde_json::to_string(&bundle).unwrap(),
        serde_json::to_string(&export::fhir::bundle(&results).unwrap()).unwrap()
    );
    let entries = bundle["entry"].as_array().unwrap().len();
    assert_eq!(entries, 2 + hr + 9 * hrv + rhythm + strips);
    let Some(py) = fhir_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = validate(&py, &bundle, dir.path());
    assert!(ok, "{err}");
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["resources"], entries);
    assert_eq!(summary["by_type"]["Patient"], 1);
    assert_eq!(summary["by_type"]["Device"], 1);
    println!("validated {entries} resources as FHIR R4 4.0.1: {out}");

    // The validator can fail: an Observation without its required status,
    // a quantity that is not a decimal, a strip sample that is not a
    // decimal, and a dangling reference are refused.
    let mut broken = bundle.clone();
    broken["entry"][2]["resource"]
        .as_object_mut()
        .unwrap()
        .remove("status");
    let (ok, _, err) = validate(&py, &broken, dir.path());
    assert!(
        !ok && err.contains("entry 2") && err.contains("status"),
        "{err}"
    );
    let mut broken = bundle.clone();
    let hr_at = broken["entry"]
        .as_array()
        .unwrap()
        .iter()
        .position(|e| e["resource"]["valueQuantity"]["value"].is_number())
        .unwrap();
    broken["entry"][hr_at]["resource"]["valueQuantity"]["value"] = "seventy".into();
    let (ok, _, err) = validate(&py, &broken, dir.path());
    assert!(!ok && err.contains(&format!("entry {hr_at}")), "{err}");
    let mut broken = bundle.clone();
    let i = broken["entry"]
        .as_array()
        .unwrap()
        .iter()
        .position(|e| {
            e["resource"]["component"][0]
                .get("valueSampledData")
                .is_some()
        })
        .unwrap();
    broken["entry"][i]["resource"]["component"][0]["valueSampledData"]["data"] = "1 2 x".into();
    let (ok, _, err) = validate(&py, &broken, dir.path());
    assert!(!ok, "a SampledData with a non-decimal sample passed");
    assert!(err.contains(&format!("entry {i}")), "{err}");
    let mut broken = bundle;
    broken["entry"][3]["resource"]["subject"]["reference"] = "urn:uuid:nobody".into();
    let (ok, _, err) = validate(&py, &broken, dir.path());
    assert!(!ok && err.contains("resolves to no entry"), "{err}");
}

#[test]
fn wfdb_python_reads_the_annotations_of_record_201() {
    let Some(results) = results_of_201() else {
        return;
    };
    let beats: usize = results
        .iter()
        .map(|r| match &r.result {
            EcgResult::Beats(b) => b.r_peaks_us.len(),
            _ => 0,
        })
        .sum();
    let af_onsets: Vec<i64> = results
        .iter()
        .filter(|r| {
            matches!(&r.result, EcgResult::Rhythm(e)
                if e.kind == aorta_signal::rhythm::RhythmEventKind::AfOnset)
        })
        .map(|r| r.start)
        .collect();
    assert!(
        beats > 500 && !af_onsets.is_empty(),
        "{beats} {af_onsets:?}"
    );
    let recs = export::wfdb::records(&results, None).unwrap();
    assert_eq!(recs.len(), 1);
    let rec = &recs[0];
    assert_eq!(rec.fs, 360.0, "the strips' rate");
    assert_eq!(rec.beats, beats);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(format!("{}.hea", rec.record)), &rec.header).unwrap();
    std::fs::write(
        dir.path()
            .join(format!("{}.{}", rec.record, export::wfdb::ANNOTATOR)),
        &rec.annotations,
    )
    .unwrap();
    let Some(py) = python_with("wfdb", "AORTA_WFDB_PYTHON", None) else {
        return;
    };
    let o = Command::new(&py)
        .arg(root().join("tools/wfdb_rdann_check.py"))
        .arg(dir.path().join(&rec.record))
        .arg(export::wfdb::ANNOTATOR)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    println!("rdann: {v}");
    assert_eq!(v["fs"], 360.0);
    assert_eq!(v["symbols"]["N"], beats);
    assert_eq!(v["n"], rec.beats + rec.rhythm + rec.notes);
    let afib: Vec<u64> = v["aux"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a[1] == "+" && a[2] == "(AFIB")
        .map(|a| a[0].as_u64().unwrap())
        .collect();
    assert_eq!(afib.len(), af_onsets.len());
    // Each onset's sample number maps back to its time at 360 Hz from the
    // header's base (within one sample).
    for (s, t) in afib.iter().zip(&af_onsets) {
        let back = rec.base_us + (*s as f64 * 1e6 / 360.0).round() as i64;
        assert!((back - t).abs() <= 1_400, "{back} vs {t}");
    }
    let base = export::iso_ms(rec.base_us).unwrap();
    let hms = &base[11..23];
    // wfdb-python prints the time with µs: `00:00:00.044000`.
    assert_eq!(
        v["base_time"].as_str().unwrap(),
        format!("{hms}000"),
        "{base}"
    );
    assert_eq!(v["base_date"].as_str().unwrap(), &base[..10]);
}
