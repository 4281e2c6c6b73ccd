//! Output to a closed pipe ends quietly with status 0, as ripgrep does
//! (issue 13, item 1): `aorta hrv … --json | head`, `aorta eval rpeaks … |
//! true`. The reader's end is closed before `aorta` starts (a shell waits,
//! then execs it), so its first write meets EPIPE every time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]
mod common;

use std::process::{Command, Output, Stdio};

use common::{AORTA, SAMPLE};

/// Runs `aorta ARGS` with stdout a pipe whose reader is already gone.
fn into_closed_pipe(args: &[&str]) -> Output {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("sleep 0.5; exec \"$0\" \"$@\"")
        .arg(AORTA)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

fn check_quiet(args: &[&str]) {
    let o = into_closed_pipe(args);
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "",
        "{args:?}: nothing on stderr"
    );
    assert_eq!(o.status.code(), Some(0), "{args:?}");
}

#[test]
fn hrv_json_into_a_closed_pipe_exits_0_quietly() {
    check_quiet(&["hrv", "--record", SAMPLE, "--json"]);
    check_quiet(&["hrv", "--record", SAMPLE]);
}

#[test]
fn eval_into_a_closed_pipe_exits_0_quietly() {
    let d = tempfile::tempdir().unwrap();
    for ext in ["hea", "dat"] {
        std::fs::copy(
            format!("{SAMPLE}.{ext}"),
            d.path().join(format!("100.{ext}")),
        )
        .unwrap();
    }
    let beats: Vec<aorta_signal::wfdb::Annotation> = (1..350u64)
        .map(|s| aorta_signal::wfdb::Annotation {
            sample: s * 360,
            code: 1, // NORMAL
            subtype: 0,
            chan: 0,
            num: 0,
            aux: None,
        })
        .collect();
    std::fs::write(
        d.path().join("100.atr"),
        aorta_signal::wfdb::encode_annotations(&beats).unwrap(),
    )
    .unwrap();
    let db = d.path().to_str().unwrap();
    check_quiet(&["eval", "rpeaks", "--db", db, "--record", "100"]);
    check_quiet(&["eval", "rpeaks", "--db", db, "--record", "100", "--json"]);
    check_quiet(&["eval", "af", "--db", db, "--record", "100"]);
}

#[test]
fn short_reports_into_a_closed_pipe_exit_0_quietly() {
    let d = tempfile::tempdir().unwrap();
    let key = d.path().join("c.key");
    let o = Command::new(AORTA)
        .args(["clinician", "keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(o.status.success());
    check_quiet(&["clinician", "public", "--identity", key.to_str().unwrap()]);
    check_quiet(&["ehr", "entropy", &format!("{SAMPLE}.dat")]);
}
