//! `aorta device run` through the real binary, with the server unreachable:
//! every sealed frame lands in DEVICE/queue (nothing lost offline), a second
//! run keeps them ahead of its own, and SIGINT/SIGTERM stop cleanly (exit 0,
//! unsent frames on disk). Uploading to a live server is tested in
//! `aorta-device` (`http::tests`, a real TLS server in-process).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use aorta_signal::wfdb::{Format, SignalSpec, write_record_16};

fn aorta(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aorta"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// A provisioned device `dev`, a 20 s two-channel 360 Hz record `rec/r`, a
/// CA file `cert.pem`, and a server URL where nobody listens.
fn setup(d: &Path) -> String {
    ok(aorta(
        &["factory", "init", "--registry", "reg", "--pool-keys", "240"],
        d,
    ));
    ok(aorta(
        &[
            "factory",
            "provision",
            "--registry",
            "reg",
            "--serial",
            "ECG-RUN",
            "--out",
            "dev",
        ],
        d,
    ));
    let spec = SignalSpec {
        file_name: String::new(),
        format: Format::F16,
        samples_per_frame: 1,
        skew: 0,
        byte_offset: 0,
        gain: 200.0,
        baseline: 0,
        units: "mV".into(),
        adc_resolution: 11,
        adc_zero: 0,
        initial_value: None,
        checksum: None,
        block_size: 0,
        description: "MLII".into(),
    };
    let x: Vec<i32> = (0..7200).map(|i| ((i * 7) % 301) - 150).collect();
    std::fs::create_dir(d.join("rec")).unwrap();
    write_record_16(
        d.join("rec"),
        "r",
        360.0,
        &[spec.clone(), spec],
        &[x.clone(), x],
    )
    .unwrap();
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(d.join("cert.pem"), c.cert.pem()).unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("https://127.0.0.1:{port}")
}

fn queued(d: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(d.join("dev/queue"))
        .unwrap()
        .filter_map(|e| {
            let p: PathBuf = e.unwrap().path();
            (p.extension()? == "aof").then(|| p.file_stem()?.to_str()?.parse().ok())?
        })
        .collect();
    v.sort();
    v
}

fn run_args<'a>(server: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "device", "run", "--device", "dev", "--record", "rec/r", "--server", server, "--ca",
        "cert.pem", "--json",
    ];
    a.extend_from_slice(extra);
    a
}

#[test]
fn offline_frames_are_all_queued_and_a_rerun_keeps_them_first() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let server = setup(d);
    let o = ok(aorta(
        &run_args(&server, &["--speed", "max", "--drain-timeout", "0.3"]),
        d,
    ));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["frames"], 20, "{v}");
    assert_eq!(v["samples"], 7200);
    assert_eq!(v["acked"], 0);
    assert_eq!(v["refused"], 0);
    assert_eq!(v["queued_left"], 20);
    assert_eq!(v["resumed"], 0);
    assert!(v["retries"].as_u64().unwrap() >= 1);
    let first = queued(d);
    assert_eq!(first.len(), 20);

    // A second run (5 s of signal from 10 s in) keeps the first run's
    // frames, and its own sequences come after them (uploaded after them).
    let o = ok(aorta(
        &run_args(
            &server,
            &[
                "--speed",
                "max",
                "--drain-timeout",
                "0",
                "--offset",
                "10",
                "--duration",
                "5",
            ],
        ),
        d,
    ));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["resumed"].as_u64(), v["frames"].as_u64()),
        (Some(20), Some(5))
    );
    assert_eq!(v["queued_left"], 25);
    let all = queued(d);
    assert_eq!(&all[..20], &first[..]);
    assert!(all[20] > first[19]);
}

#[test]
fn sigint_and_sigterm_stop_cleanly_and_keep_unsent_frames() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let server = setup(d);
    for sig in ["-INT", "-TERM"] {
        let before = queued_or_empty(d).len();
        let mut child = Command::new(env!("CARGO_BIN_EXE_aorta"))
            .args(run_args(
                &server,
                &["--speed", "1", "--frame-seconds", "0.25"],
            ))
            .current_dir(d)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until this run has queued at least two frames.
        let t0 = Instant::now();
        while queued_or_empty(d).len() < before + 2 {
            assert!(t0.elapsed() < Duration::from_secs(30), "no frame queued");
            std::thread::sleep(Duration::from_millis(20));
        }
        let st = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let sent = Instant::now();
        let o = loop {
            if child.try_wait().unwrap().is_some() {
                break child.wait_with_output().unwrap();
            }
            assert!(
                sent.elapsed() < Duration::from_secs(20),
                "{sig}: no clean exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let o = ok(o);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["stopped"], true, "{sig}: {v}");
        let frames = v["frames"].as_u64().unwrap();
        assert!((2..80).contains(&frames), "{sig}: {v}");
        assert_eq!(v["acked"], 0);
        assert_eq!(
            v["queued_left"].as_u64().unwrap(),
            before as u64 + frames,
            "{sig}: {v}"
        );
        assert_eq!(queued(d).len() as u64, before as u64 + frames);
    }
}

fn queued_or_empty(d: &Path) -> Vec<u64> {
    if d.join("dev/queue").exists() {
        queued(d)
    } else {
        Vec::new()
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let server = setup(d);
    let http = server.replace("https", "http");
    for args in [
        run_args(&http, &[]),
        run_args(&server, &["--speed", "0"]),
        run_args(&server, &["--speed", "fast"]),
        run_args(&server, &["--frame-seconds", "0"]),
        run_args(&server, &["--offset", "25"]),
        run_args(&server, &["--drain-timeout", "-1"]),
    ] {
        let o = aorta(&args, d);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
    let mut no_ca = run_args(&server, &[]);
    no_ca[9] = "missing.pem";
    assert_eq!(aorta(&no_ca, d).status.code(), Some(2));
    // Nothing was sealed by a refused invocation.
    assert!(queued_or_empty(d).is_empty());
}
