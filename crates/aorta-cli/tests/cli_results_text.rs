//! `aorta results fetch` as a clinician reads it (issue 13, items 1 and 6;
//! issue 12), through the real server, worker and device on loopback: the
//! text listing gives each result's window in RFC 3339 UTC and a compact
//! summary, `--follow` (started before the device) prints results as the
//! worker stores them (the server's long-poll), an unknown patient is
//! warned about, and the listing into a closed pipe (`aorta results fetch
//! | head`) ends quietly with status 0.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]
mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{AORTA, Run, SAMPLE, Server, broker_key_of, worker};

/// The first sample's time: 2027-01-15T08:00:00Z.
const START_US: i64 = 1_800_000_000_000_000;

fn fetch_args(url: &str, key: &str) -> Vec<String> {
    [
        "results",
        "fetch",
        "--server",
        url,
        "--ca",
        "server/cert.pem",
        "--broker-key",
        key,
        "--allow-sim",
        "--identity",
        "clinician.key",
        "--subscriber",
        "demo-clinician",
    ]
    .map(String::from)
    .to_vec()
}

/// `aorta ARGS` in `dir` with stdout a pipe whose reader is already gone.
fn into_closed_pipe(dir: &Path, args: &[String]) -> Output {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("sleep 0.5; exec \"$0\" \"$@\"")
        .arg(AORTA)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn results_fetch_prints_rfc3339_windows_and_ends_quietly_on_a_closed_pipe() {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("w");
    common::setup(&work, 1);
    let srv = Server::start(&work, "server.toml");
    let _wrk = worker(&work, "server", &srv, true);
    let key = broker_key_of(&work, "server/cert.pem");
    let args = fetch_args(&srv.url(), &key);
    // A follower started before any result exists: it warns that nothing
    // is stored for the subscriber yet, then prints results as they come.
    let mut follow_args = args.clone();
    follow_args.push("--follow".into());
    let mut follower = Command::new(AORTA)
        .args(&follow_args)
        .current_dir(&work)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Run::new([
        "device",
        "run",
        "--device",
        "devices/DEMO-0001",
        "--record",
        SAMPLE,
        "--server",
        &srv.url(),
        "--ca",
        "server/cert.pem",
        "--speed",
        "max",
        "--duration",
        "30",
        "--start-us",
        &START_US.to_string(),
        "--drain-timeout",
        "60",
    ])
    .cwd(&work)
    .ok();
    // The follower prints results without being restarted.
    let mut followed = Vec::new();
    let t0 = Instant::now();
    while followed.len() < 3 && t0.elapsed() < Duration::from_secs(120) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            followed.push(line);
        }
    }
    follower.kill().unwrap();
    let f = follower.wait_with_output().unwrap();
    let follow_err = String::from_utf8_lossy(&f.stderr);
    assert!(
        followed.len() >= 3,
        "--follow printed {followed:?}; stderr: {follow_err}"
    );
    assert!(
        followed
            .iter()
            .all(|l| l.starts_with("DEMO-0001 [2027-01-15T08:0")),
        "{followed:?}"
    );

    // Poll until the worker's results are there (heart rate every 5 s).
    let t0 = Instant::now();
    let listing = loop {
        let o = Run::new(&args).cwd(&work).output();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let text = String::from_utf8(o.stdout).unwrap();
        if text.lines().count() >= 3 {
            break text;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no results after 120 s: {text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    for line in listing.lines() {
        // DEMO-0001 [2027-01-15T08:00:00Z .. 2027-01-15T08:00:10Z] {…}
        let (head, json) = line.split_once("] ").unwrap_or_else(|| panic!("{line}"));
        let (patient, window) = head.split_once(" [").unwrap();
        assert_eq!(patient, "DEMO-0001", "{line}");
        let (a, b) = window.split_once(" .. ").unwrap();
        for t in [a, b] {
            assert!(
                t.starts_with("2027-01-15T08:0") && t.ends_with('Z') && !t.contains(' '),
                "{line}"
            );
        }
        assert!(a < b, "{line}");
        // A compact summary, never the samples of a strip or the beat list.
        let kind = json.split(' ').next().unwrap();
        assert!(
            ["heart_rate", "hrv", "rhythm", "strip", "beats", "gap"].contains(&kind),
            "{line}"
        );
        assert!(line.len() < 400, "{line}");
    }
    assert!(
        listing.contains("DEMO-0001 [2027-01-15T08:00:00Z .. "),
        "{listing}"
    );

    // The same results exported from the server (the fetch options).
    let mut export = args.clone();
    export[1] = "export".into();
    export.extend(["--format", "csv", "--out", "-"].map(String::from));
    let o = Run::new(&export).cwd(&work).ok();
    let csv = String::from_utf8(o.stdout).unwrap();
    assert!(csv.starts_with("patient,type,start,end,"), "{csv}");
    assert!(
        csv.lines().skip(1).count() >= listing.lines().count(),
        "{csv}"
    );
    assert!(
        csv.contains("DEMO-0001,heart_rate,2027-01-15T08:00:"),
        "{csv}"
    );

    // A patient no result is for: a warning naming the patients seen.
    let mut other = args.clone();
    other.extend(["--patient".to_owned(), "NO-SUCH-DEVICE".to_owned()]);
    let o = Run::new(&other).cwd(&work).output();
    assert_eq!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("warning: unknown patient NO-SUCH-DEVICE") && err.contains("DEMO-0001"),
        "{err}"
    );
    assert!(o.stdout.is_empty());

    let o = into_closed_pipe(&work, &args);
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    assert_eq!(o.status.code(), Some(0));
}
