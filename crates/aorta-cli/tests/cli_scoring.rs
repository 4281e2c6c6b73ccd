//! `aorta eval` and `aorta bench pipeline` never report a score for nothing
//! (issue 13, item 2): a figure with nothing to count prints `n/a` (JSON
//! `null`), a run that scored nothing exits 1, a record that fails to load
//! is in the JSON `errors` array and on stderr (exit 2), and options no
//! record can satisfy (a lead it lacks, `--start` past its end, an empty
//! RECORDS) are refused before anything is scored. Each test asserts stdout,
//! stderr and the exit status of the real binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]
mod common;

use std::path::Path;
use std::process::Output;

use aorta_signal::wfdb::{Annotation, encode_annotations};
use common::{Run, SAMPLE, stderr, stdout_json};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn rhythm(sample: u64, aux: &str) -> Annotation {
    Annotation {
        sample,
        code: 28, // RHYTHM
        subtype: 0,
        chan: 0,
        num: 0,
        aux: Some(aux.to_owned()),
    }
}

/// A database in `dir`: record `100` (the shipped 6-minute excerpt, 2
/// leads) annotated with one rhythm label and no beat, and record `flat`
/// (10 s of zeros: no beat to detect, none annotated).
fn fixture(dir: &Path) {
    for ext in ["hea", "dat"] {
        std::fs::copy(format!("{SAMPLE}.{ext}"), dir.join(format!("100.{ext}"))).unwrap();
    }
    let atr = encode_annotations(&[rhythm(0, "(N")]).unwrap();
    std::fs::write(dir.join("100.atr"), &atr).unwrap();
    std::fs::write(
        dir.join("flat.hea"),
        "flat 1 360 3600\nflat.dat 16 200 16 0 0 0 0 ECG\n",
    )
    .unwrap();
    std::fs::write(dir.join("flat.dat"), vec![0u8; 7200]).unwrap();
    std::fs::write(dir.join("flat.atr"), &atr).unwrap();
    std::fs::write(dir.join("RECORDS"), "100\nflat\n").unwrap();
}

fn eval(dir: &Path, args: &[&str]) -> Output {
    Run::new(args).arg("--db").arg(dir).output()
}

#[test]
fn a_record_without_reference_beats_has_no_sensitivity() {
    let d = tempfile::tempdir().unwrap();
    fixture(d.path());
    let o = eval(d.path(), &["eval", "rpeaks", "--record", "100"]);
    let out = stdout(&o);
    // Detections but no reference beat: FP counted, Se n/a, +P 0.
    let row = out.lines().find(|l| l.starts_with("100 ")).unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "0", "{out}");
    assert!(cols[2].parse::<u64>().unwrap() > 0, "{out}");
    assert_eq!(&cols[3..6], ["0", "n/a", "0.00"], "{out}");
    assert!(!out.contains("100.00"), "{out}");
    assert_eq!(stderr(&o), "");
    assert_eq!(o.status.code(), Some(0));

    let o = eval(d.path(), &["eval", "rpeaks", "--record", "100", "--json"]);
    let v = stdout_json(&o);
    assert_eq!(v["records"][0]["se"], serde_json::Value::Null, "{v}");
    assert_eq!(v["records"][0]["ppv"], 0.0, "{v}");
    assert_eq!(v["gross"]["se"], serde_json::Value::Null, "{v}");
    assert_eq!(v["errors"], serde_json::json!([]), "{v}");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn nothing_scored_prints_n_a_and_exits_1() {
    let d = tempfile::tempdir().unwrap();
    fixture(d.path());
    let o = eval(
        d.path(),
        &["eval", "rpeaks", "--record", "flat", "--start", "0"],
    );
    let out = stdout(&o);
    let gross = out.lines().find(|l| l.starts_with("gross")).unwrap();
    assert_eq!(
        gross.split_whitespace().collect::<Vec<_>>(),
        ["gross", "0", "0", "0", "n/a", "n/a"],
        "{out}"
    );
    assert_eq!(
        stderr(&o),
        "nothing scored: no reference beat and no detection in the scored range\n"
    );
    assert_eq!(o.status.code(), Some(1));

    let o = eval(
        d.path(),
        &[
            "eval", "rpeaks", "--record", "flat", "--start", "0", "--json",
        ],
    );
    let v = stdout_json(&o);
    assert_eq!(v["gross"]["se"], serde_json::Value::Null, "{v}");
    assert_eq!(v["gross"]["ppv"], serde_json::Value::Null, "{v}");
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn a_record_that_fails_to_load_is_an_error_in_json_and_on_stderr() {
    let d = tempfile::tempdir().unwrap();
    fixture(d.path());
    let o = eval(
        d.path(),
        &[
            "eval", "rpeaks", "--record", "999", "--record", "100", "--json",
        ],
    );
    let v = stdout_json(&o);
    assert_eq!(v["records"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["errors"][0]["record"], "999", "{v}");
    assert!(
        v["errors"][0]["error"]
            .as_str()
            .unwrap()
            .contains("999.hea"),
        "{v}"
    );
    let err = stderr(&o);
    assert!(err.starts_with("error: record 999: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(o.status.code(), Some(2));

    // Only a missing record: nothing scored, n/a, the error, exit 2.
    let o = eval(d.path(), &["eval", "rpeaks", "--record", "999"]);
    assert!(stdout(&o).contains("n/a"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("100.00"), "{}", stdout(&o));
    assert!(stderr(&o).starts_with("error: record 999: "));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn options_no_record_satisfies_are_refused_before_scoring() {
    let d = tempfile::tempdir().unwrap();
    fixture(d.path());
    let cases: [(&[&str], &str); 3] = [
        (
            &["eval", "rpeaks", "--record", "100", "--lead", "5"],
            "error: --lead 5: record 100 has 2 signal(s) (leads 0 to 1)\n",
        ),
        (
            &["eval", "rpeaks", "--record", "100", "--start", "99999"],
            "error: --start 99999: record 100 ends at 360.0 s; nothing after it to score\n",
        ),
        (
            &["eval", "rpeaks", "--start", "360"],
            "error: --start 360: record 100 ends at 360.0 s; nothing after it to score\n",
        ),
    ];
    for (args, want) in cases {
        let o = eval(d.path(), args);
        assert_eq!(stdout(&o), "", "{args:?}");
        assert_eq!(stderr(&o), want, "{args:?}");
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
    // An empty RECORDS file: nothing to score is an error, for both scorers.
    std::fs::write(d.path().join("RECORDS"), "# none\n").unwrap();
    for cmd in ["rpeaks", "af"] {
        let o = eval(d.path(), &["eval", cmd, "--json"]);
        assert_eq!(stdout(&o), "", "{cmd}");
        let err = stderr(&o);
        assert!(
            err.starts_with("error: no records to score: ") && err.contains("RECORDS lists none"),
            "{cmd}: {err}"
        );
        assert_eq!(o.status.code(), Some(2), "{cmd}");
    }
}

#[test]
fn af_without_af_in_the_reference_has_no_sensitivity() {
    let d = tempfile::tempdir().unwrap();
    fixture(d.path());
    let o = eval(d.path(), &["eval", "af", "--record", "100"]);
    let out = stdout(&o);
    let summary = out.lines().find(|l| l.contains("-s segments")).unwrap();
    assert!(
        summary.starts_with("30-s segments: AF Se n/a  Sp "),
        "{out}"
    );
    assert!(out.contains("(Se n/a: no AF in the reference)"), "{out}");
    assert_eq!(stderr(&o), "");
    assert_eq!(o.status.code(), Some(0));

    let o = eval(d.path(), &["eval", "af", "--record", "100", "--json"]);
    let v = stdout_json(&o);
    assert_eq!(v["se"], serde_json::Value::Null, "{v}");
    assert!(v["sp"].as_f64().is_some(), "{v}");
    assert_eq!(v["errors"], serde_json::json!([]), "{v}");
}

#[test]
fn af_with_no_whole_segment_scores_nothing() {
    let d = tempfile::tempdir().unwrap();
    fixture(d.path());
    let o = eval(
        d.path(),
        &[
            "eval",
            "af",
            "--record",
            "100",
            "--segment",
            "400",
            "--json",
        ],
    );
    let v = stdout_json(&o);
    for k in ["se", "sp", "f1_af"] {
        assert_eq!(v[k], serde_json::Value::Null, "{k}: {v}");
    }
    assert_eq!(
        stderr(&o),
        "nothing scored: no segment or recording to classify\n"
    );
    assert_eq!(o.status.code(), Some(1));

    let o = eval(
        d.path(),
        &["eval", "af", "--record", "100", "--segment", "400"],
    );
    assert!(
        stdout(&o).contains("400-s segments: AF Se n/a  Sp n/a  (TP 0 FP 0 TN 0 FN 0)"),
        "{}",
        stdout(&o)
    );
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn af_lists_records_that_fail_to_load() {
    let d = tempfile::tempdir().unwrap();
    fixture(d.path());
    let o = eval(
        d.path(),
        &[
            "eval", "af", "--record", "100", "--record", "nosuch", "--json",
        ],
    );
    let v = stdout_json(&o);
    assert_eq!(v["errors"][0]["record"], "nosuch", "{v}");
    assert!(
        stderr(&o).starts_with("error: record nosuch: "),
        "{}",
        stderr(&o)
    );
    assert_eq!(o.status.code(), Some(2));
}

/// A run too short to produce any result compared nothing: it must not
/// claim "equal: true (0 results)".
#[test]
fn bench_pipeline_with_no_result_is_a_failed_check() {
    let o = Run::new([
        "bench",
        "pipeline",
        "--devices",
        "1",
        "--seconds",
        "1",
        "--paced-seconds",
        "1",
        "--rounds",
        "1",
        "--db",
        "/nonexistent/aorta-test-db",
    ])
    .output();
    let out = stdout(&o);
    assert!(
        out.ends_with(
            "secure results compared with the plain ones: nothing compared (0 results; give more --seconds)\n"
        ),
        "{out}"
    );
    assert!(!out.contains("true (0 results)"), "{out}");
    let err = stderr(&o);
    assert!(
        err.ends_with(
            "check failed: nothing compared: the run produced no result (give more --seconds)\n"
        ),
        "{err}"
    );
    assert_eq!(o.status.code(), Some(1));
}
