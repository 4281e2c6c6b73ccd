//! `aorta admin erase --patient SERIAL` (GDPR art. 17, `docs/erasure.md`)
//! through the real binaries: two devices stream, the worker analyses,
//! then one patient is erased. Tried as an auditor with the whole data
//! directory would check it:
//! - none of the patient's bytes remain in any file of the server's data
//!   directory: not the serial, not a window of any of their frames, not a
//!   window of any of their stored result records;
//! - the other patient's frames and results are all still there and read
//!   as before; the clinician sees no result of the erased patient;
//! - the audit log records both steps without naming the serial;
//! - erasing is refused while the server runs (it rewrites files in place).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use aorta_stream::log::{FileLog, FrameLog};

mod common;
use common::{Run, SAMPLE, Server, fetch_results, stats, wait_until, worker};

const GONE: &str = "DEMO-0002";
const KEPT: &str = "DEMO-0001";

fn wait_caught_up(server: &Server, ca: &Path) {
    wait_until("worker caught up", Duration::from_secs(120), || {
        stats(&server.url(), ca).is_some_and(|s| {
            s["log_end"].as_u64().unwrap() > 0 && s["worker_offset"] == s["log_end"]
        })
    });
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Each frame of the log with its serial.
fn frames(data: &Path) -> Vec<(String, Vec<u8>)> {
    let log = FileLog::open(data.join("frames.log")).unwrap();
    let (recs, _) = log.read_from(0, usize::MAX).unwrap();
    recs.iter()
        .map(|r| {
            let (_, f) = aorta_stream::job::decode_record(r).unwrap();
            let serial = aorta_crypto::frame::parse(f).unwrap().header.serial;
            (serial, f.to_vec())
        })
        .collect()
}

/// Every stored result record `(id, payload)`.
fn result_records(data: &Path) -> BTreeSet<(String, Vec<u8>)> {
    aorta_stream::results::FileResultStore::open(data.join("results.log"))
        .unwrap()
        .all()
        .unwrap()
        .into_iter()
        .collect()
}

/// The clinician's results, as JSON text, by patient.
fn results_of(work: &Path, srv: &Server, patient: &str) -> BTreeSet<String> {
    fetch_results(work, &srv.url(), "server/cert.pem")
        .into_iter()
        .filter(|r| r["patient"] == patient)
        .map(|r| r.to_string())
        .collect()
}

#[test]
fn an_erased_patient_leaves_no_byte_in_the_data_directory() {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("w");
    common::setup(&work, 2);
    let data = work.join("server");
    let ca = data.join("cert.pem");

    let mut srv = Server::start(&work, "server.toml");
    let mut wrk = worker(&work, "server", &srv, true);
    for serial in [KEPT, GONE] {
        let out = Run::new(["device", "run", "--device", &format!("devices/{serial}")])
            .args(["--record", SAMPLE, "--server", &srv.url(), "--ca"])
            .arg(&ca)
            .args(["--speed", "20", "--duration", "120", "--json"])
            .cwd(&work)
            .spawn(Stdio::null())
            .wait_output();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["frames"], v["acked"], "{v}");
    }
    wait_caught_up(&srv, &ca);
    let kept_before = results_of(&work, &srv, KEPT);
    let gone_before = results_of(&work, &srv, GONE);
    assert!(!kept_before.is_empty() && !gone_before.is_empty());

    // While the server runs, erasing is refused: nothing is touched.
    let out = Run::new([
        "admin",
        "erase",
        "--config",
        "server.toml",
        "--patient",
        GONE,
    ])
    .cwd(&work)
    .output();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stop it first"), "{err}");

    wrk.term();
    srv.proc.term();
    let all_frames = frames(&data);
    let records_before = result_records(&data);
    let gone_frames: Vec<&Vec<u8>> = all_frames
        .iter()
        .filter(|(s, _)| s == GONE)
        .map(|(_, f)| f)
        .collect();
    assert!(!gone_frames.is_empty());

    // Server stopped: the frames go now.
    let report = Run::new([
        "admin",
        "erase",
        "--config",
        "server.toml",
        "--patient",
        GONE,
    ])
    .arg("--json")
    .cwd(&work)
    .json();
    assert_eq!(
        report["frames_erased"].as_u64().unwrap() as usize,
        gone_frames.len(),
        "{report}"
    );
    assert_eq!(report["pending"], 1);
    let left = frames(&data);
    assert!(left.iter().all(|(s, _)| s != GONE));
    assert_eq!(
        left,
        all_frames
            .iter()
            .filter(|(s, _)| s != GONE)
            .cloned()
            .collect::<Vec<_>>()
    );

    // The server and worker run again: the worker drops the patient's
    // operator state, checkpoints, and hands over the erase token.
    let mut srv = Server::start(&work, "server.toml");
    let mut wrk = worker(&work, "server", &srv, true);
    let audit = data.join("audit.log");
    wait_until("erasure completed", Duration::from_secs(60), || {
        std::fs::read_to_string(&audit).is_ok_and(|a| a.contains("\"event\":\"erased\""))
    });
    assert_eq!(results_of(&work, &srv, KEPT), kept_before);
    assert!(results_of(&work, &srv, GONE).is_empty());
    wrk.term();
    srv.proc.term();

    // Exactly the patient's result records are gone; the others unchanged.
    let records_after = result_records(&data);
    let removed: Vec<_> = records_before.difference(&records_after).collect();
    // Added since: only the restarted worker's session envelope.
    for (id, _) in records_after.difference(&records_before) {
        assert!(id.contains("/@session/"), "{id}");
    }
    assert_eq!(
        removed.len(),
        gone_before.len(),
        "one record per result (one subscriber)"
    );

    // No byte of the patient's anywhere in the data directory.
    let files = files_under(&data);
    let mut disk = Vec::new();
    for f in &files {
        disk.extend(std::fs::read(f).unwrap());
    }
    assert!(
        !contains(&disk, GONE.as_bytes()),
        "the serial is still on disk"
    );
    for f in &gone_frames {
        let tail = &f[f.len() - 48..];
        assert!(
            !contains(&disk, &tail[..24]) && !contains(&disk, &tail[24..]),
            "a frame's bytes remain"
        );
    }
    for (id, payload) in &removed {
        assert!(!contains(&disk, id.as_bytes()), "a result id remains");
        let tail = &payload[payload.len() - 48..];
        assert!(
            !contains(&disk, &tail[..24]) && !contains(&disk, &tail[24..]),
            "a result's bytes remain"
        );
    }
    // The other patient's frames are all still there.
    for (_, f) in all_frames.iter().filter(|(s, _)| s == KEPT) {
        assert!(contains(&disk, &f[f.len() - 24..]));
    }
    // The audit log: both steps, the device named by its HMAC only.
    let audit = std::fs::read_to_string(&audit).unwrap();
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{audit}");
    assert_eq!(lines[0]["event"], "erase_requested");
    assert_eq!(lines[1]["event"], "erased");
    assert_eq!(
        lines[0]["frames"].as_u64().unwrap() as usize,
        gone_frames.len()
    );
    assert_eq!(
        lines[1]["results"].as_u64().unwrap() as usize,
        removed.len()
    );
    assert_eq!(lines[0]["device_mac"], report["device_mac"]);
    assert_eq!(lines[1]["device_mac"], report["device_mac"]);
    let pending = std::fs::read_to_string(data.join("erasure/pending.json")).unwrap();
    assert!(!pending.contains(GONE), "{pending}");
}
