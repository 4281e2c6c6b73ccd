//! `aorta device run` through the real binary. With the server unreachable:
//! every sealed frame lands in DEVICE/queue (nothing lost offline), a second
//! run keeps them ahead of its own, and SIGINT/SIGTERM stop cleanly (exit 0,
//! unsent frames on disk); a second signal during a hung upload exits at once
//! (130) and still loses no frame. With a minimal HTTPS ingest in the test (rustls,
//! HTTP/1.1, frames accepted by the real key registry, the protocol of
//! docs/device-agent.md): a run stopped during an outage is resumed by the
//! next, which uploads the old frames first; the server ends up with every
//! sample of the record exactly once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aorta_signal::wfdb::write_record_16;
use common::{Run, aorta_in, factory_init, have_kill, ok, provision, spec, wait_until};

/// A provisioned device `dev`, a 20 s two-channel 360 Hz record `rec/r`, a
/// CA file `cert.pem`, and a server URL where nobody listens.
fn setup(d: &Path) -> String {
    factory_init(d, 240);
    ok(provision(d, "ECG-RUN", "dev"));
    let spec = spec("MLII", 11, 0);
    let x = signal();
    std::fs::create_dir(d.join("rec")).unwrap();
    write_record_16(
        d.join("rec"),
        "r",
        360.0,
        &[spec.clone(), spec],
        &[x.clone(), x],
    )
    .unwrap();
    let c =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    std::fs::write(d.join("cert.pem"), c.cert.pem()).unwrap();
    std::fs::write(d.join("cert.der"), c.cert.der()).unwrap();
    std::fs::write(d.join("key.der"), c.signing_key.serialize_der()).unwrap();
    // Port 1 (tcpmux) is privileged and never an ephemeral port: nothing
    // listens there, and no other test can take it in the meantime.
    "https://127.0.0.1:1".to_owned()
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
    let o = ok(aorta_in(
        d,
        &run_args(&server, &["--speed", "max", "--drain-timeout", "0.3"]),
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
    let o = ok(aorta_in(
        d,
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
    if !have_kill() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let server = setup(d);
    for sig in ["-INT", "-TERM"] {
        let before = queued_or_empty(d).len();
        let mut child = Run::new(run_args(
            &server,
            // (the drain timeout only bounds a failed test's orphan)
            &[
                "--speed",
                "1",
                "--frame-seconds",
                "0.25",
                "--drain-timeout",
                "1",
            ],
        ))
        .cwd(d)
        .spawn(Stdio::piped());
        // Wait until this run has queued at least two frames.
        wait_until("two frames queued", Duration::from_secs(30), || {
            queued_or_empty(d).len() >= before + 2
        });
        assert!(child.signal(sig));
        wait_until(
            &format!("{sig}: clean exit"),
            Duration::from_secs(20),
            || child.exited(),
        );
        let o = ok(child.wait_output());
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
        // No partial file: every entry of the queue is a whole `<seq>.aof`.
        let entries = std::fs::read_dir(d.join("dev/queue")).unwrap().count();
        assert_eq!(entries, queued(d).len(), "{sig}: a stray file in the queue");
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
        let o = aorta_in(d, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
    let mut no_ca = run_args(&server, &[]);
    no_ca[9] = "missing.pem";
    assert_eq!(aorta_in(d, &no_ca).status.code(), Some(2));
    // Nothing was sealed by a refused invocation.
    assert!(queued_or_empty(d).is_empty());
}

fn signal() -> Vec<i32> {
    (0..7200).map(|i| ((i * 7) % 301) - 150).collect()
}

/// What the mini ingest stored: (sequence, first sample µs, channel 0).
type Store = Arc<Mutex<Vec<(u64, i64, Vec<i32>)>>>;

/// A minimal HTTPS/1.1 ingest on 127.0.0.1: 503 + `Retry-After: 0` while
/// `down`, else the registry accepts (200 JSON) or refuses (422) the frame.
fn ingest(d: &Path, down: Arc<AtomicBool>, store: Store) -> String {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = rustls::pki_types::CertificateDer::from(std::fs::read(d.join("cert.der")).unwrap());
    let key =
        rustls::pki_types::PrivatePkcs8KeyDer::from(std::fs::read(d.join("key.der")).unwrap());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key.into())
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let cfg = Arc::new(cfg);
    let reg = Arc::new(aorta_registry::Registry::open(d.join("reg")).unwrap());
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for sock in l.incoming() {
            let Ok(sock) = sock else { continue };
            let (cfg, reg, down, store) = (cfg.clone(), reg.clone(), down.clone(), store.clone());
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(cfg).unwrap();
                let mut r = BufReader::new(rustls::StreamOwned::new(conn, sock));
                loop {
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end().to_ascii_lowercase();
                        if l.is_empty() {
                            break;
                        }
                        if let Some(v) = l.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let (status, extra, out) = if down.load(Ordering::SeqCst) {
                        (
                            503,
                            "retry-after: 0\r\n",
                            r#"{"error":"busy","detail":"down"}"#.to_owned(),
                        )
                    } else {
                        match reg.accept_frame(&body) {
                            Ok(a) => {
                                let h = &a.frame.header;
                                let mut st = store.lock().unwrap();
                                if !a.duplicate {
                                    st.push((
                                        h.sequence,
                                        h.first_sample_us,
                                        a.frame.samples[0].clone(),
                                    ));
                                }
                                let reply = format!(
                                    r#"{{"serial":"{}","sequence":{},"offset":{},"duplicate":{}}}"#,
                                    h.serial,
                                    h.sequence,
                                    st.len(),
                                    a.duplicate
                                );
                                (200, "", reply)
                            }
                            Err(e) => (422, "", format!(r#"{{"error":"refused","detail":"{e}"}}"#)),
                        }
                    };
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n",
                        out.len()
                    );
                    let w = r.get_mut();
                    if w.write_all(head.as_bytes()).is_err() || w.write_all(out.as_bytes()).is_err()
                    {
                        return;
                    }
                    let _ = w.flush();
                }
            });
        }
    });
    format!("https://127.0.0.1:{port}")
}

#[test]
fn a_stopped_run_during_an_outage_is_resumed_and_every_sample_arrives_once() {
    if !have_kill() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    let down = Arc::new(AtomicBool::new(true));
    let store: Store = Arc::default();
    let server = ingest(d, down.clone(), store.clone());

    // Run 1, server down: 4× real time from t = 0 s, stopped by SIGINT
    // once at least three frames are queued.
    let child = Run::new(run_args(
        &server,
        &["--speed", "4", "--start-us", "0", "--drain-timeout", "1"],
    ))
    .cwd(d)
    .spawn(Stdio::piped());
    wait_until("three frames queued", Duration::from_secs(30), || {
        queued_or_empty(d).len() >= 3
    });
    assert!(child.signal("-INT"));
    let o = ok(child.wait_output());
    let v1: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let n1 = v1["frames"].as_u64().unwrap();
    assert_eq!(v1["stopped"], true, "{v1}");
    assert_eq!(v1["acked"], 0, "{v1}");
    assert!(v1["retries"].as_u64().unwrap() >= 1, "{v1}");
    assert_eq!(v1["queued_left"].as_u64(), Some(n1));
    assert!(store.lock().unwrap().is_empty());
    let old = queued(d);

    // Run 2, server up: the rest of the record, as fast as possible.
    down.store(false, Ordering::SeqCst);
    let start = n1.to_string();
    let start_us = (n1 * 1_000_000).to_string();
    let o = ok(aorta_in(
        d,
        &run_args(
            &server,
            &[
                "--speed",
                "max",
                "--offset",
                &start,
                "--start-us",
                &start_us,
            ],
        ),
    ));
    let v2: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v2["resumed"].as_u64(), Some(n1), "{v2}");
    assert_eq!(v2["frames"].as_u64(), Some(20 - n1), "{v2}");
    assert_eq!(v2["acked"], 20, "{v2}");
    assert_eq!(
        (v2["queued_left"].as_u64(), v2["refused"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(queued(d).is_empty());

    // The server got the old frames first, then the new ones, each once,
    // and together they are the whole record, sample for sample.
    let st = store.lock().unwrap();
    let seqs: Vec<u64> = st.iter().map(|s| s.0).collect();
    assert_eq!(&seqs[..old.len()], &old[..]);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let mut by_time: Vec<(i64, Vec<i32>)> = st.iter().map(|s| (s.1, s.2.clone())).collect();
    by_time.sort();
    let mut got = Vec::new();
    for (us, samples) in by_time {
        assert_eq!(us, got.len() as i64 * 1_000_000 / 360, "frame at {us} µs");
        got.extend(samples);
    }
    assert_eq!(got, signal());
}

/// An operator's second Ctrl-C while the first waits for an upload: the
/// process exits at once with 130, and every sealed frame is still queued.
#[test]
fn a_second_signal_exits_at_once_with_130_and_loses_nothing() {
    if !have_kill() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d);
    // A server that accepts connections and never answers: the upload stays
    // in flight until the client's timeouts.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://127.0.0.1:{}", l.local_addr().unwrap().port());
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            h.lock().unwrap().push(s);
        }
    });
    let mut child = Run::new(run_args(&url, &["--speed", "max"]))
        .cwd(d)
        .spawn(Stdio::piped());
    wait_until("an upload in flight", Duration::from_secs(30), || {
        !held.lock().unwrap().is_empty()
    });
    assert!(child.signal("-INT"));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !child.exited(),
        "the first signal waits for the upload in flight"
    );
    assert!(child.signal("-INT"));
    wait_until("exit on the second signal", Duration::from_secs(5), || {
        child.exited()
    });
    assert_eq!(child.wait_output().status.code(), Some(130));
    assert!(!queued(d).is_empty(), "sealed frames stay queued");
}
