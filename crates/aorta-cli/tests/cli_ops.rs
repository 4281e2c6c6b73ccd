//! Operations (issue 13, item 7), with the real `aorta` binary: `RUST_LOG`
//! and `--log-format json` for `aorta server`, `aorta broker serve` and
//! `aorta worker`; log lines without `Some(…)`/`None`; secrets absent even at
//! `RUST_LOG=trace`; the plain-HTTP operations port (`metrics_listen`) with
//! `/metrics` (counters, `aorta_build_info`, process metrics), `/healthz`
//! and `/readyz`; durable counters that survive a restart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

mod common;
use common::{Proc, Run, SimTrust, aorta};

/// How long a server may take to start or stop.
const DEADLINE: Duration = Duration::from_secs(60);

/// A keyless server's files in `dir`: an empty public device directory and
/// `server.toml` (port 0 everywhere) with `extra` appended.
fn server_files(dir: &Path, extra: &str) {
    std::fs::write(
        dir.join("directory.txt"),
        format!("{}\n", aorta_crypto::directory::HEADER),
    )
    .unwrap();
    std::fs::write(
        dir.join("server.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\ndirectory = \"directory.txt\"\n{extra}"
        ),
    )
    .unwrap();
}

/// A running `aorta server`: its stderr lines as they come.
struct Srv {
    proc: Proc,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Srv {
    /// `aorta server --config server.toml ARGS` in `dir` with `env`.
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Srv {
        // Blank = unset: the test does not inherit its runner's RUST_LOG.
        let mut run = Run::new(["server", "--config", "server.toml"])
            .args(args)
            .cwd(dir)
            .env("RUST_LOG", "");
        for (k, v) in env {
            run = run.env(k, v);
        }
        let mut proc = run.spawn(Stdio::piped());
        let err = proc.take_stderr();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines() {
                let Ok(l) = l else { return };
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        let mut s = Srv {
            proc,
            lines: rx,
            seen: Vec::new(),
        };
        s.wait_for("aorta server listening on https://");
        s
    }

    /// Waits for a stderr line containing `what`; returns it.
    fn wait_for(&mut self, what: &str) -> String {
        let t = Instant::now();
        while t.elapsed() < DEADLINE {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(what) {
                        return l;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
        }
        panic!("no stderr line with {what:?}; it said: {:#?}", self.seen)
    }

    /// The operations port's address, from its start line.
    fn ops(&self) -> SocketAddr {
        self.seen
            .iter()
            .find_map(|l| l.strip_prefix("aorta server operations port on http://"))
            .unwrap_or_else(|| panic!("no operations port line: {:#?}", self.seen))
            .parse()
            .unwrap()
    }

    /// SIGTERM; the exit code and every stderr line.
    fn stop(mut self) -> (Option<i32>, Vec<String>) {
        assert!(self.proc.signal("-TERM"));
        let o = self.proc.wait_output();
        self.seen.extend(self.lines.iter());
        (o.status.code(), self.seen)
    }
}

/// `GET`/`POST PATH` over plain HTTP/1.1: status and body.
fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

/// Runs to completion within [`DEADLINE`] (a process that does not stop
/// fails the test instead of hanging it).
fn bounded(run: Run) -> Output {
    let mut p = run.spawn(Stdio::piped());
    let t = Instant::now();
    while !p.exited() {
        assert!(t.elapsed() < DEADLINE, "still running after {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    p.wait_output()
}

#[test]
fn server_log_lines_name_values_plainly() {
    let t = tempfile::tempdir().unwrap();
    server_files(t.path(), "metrics_listen = \"127.0.0.1:0\"\n");
    let s = Srv::start(t.path(), &[], &[]);
    let (code, lines) = s.stop();
    assert_eq!(code, Some(0), "{lines:#?}");
    let listening = lines
        .iter()
        .find(|l| l.contains("listening (HTTP/2 and HTTP/1.1 over TLS)"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(listening.contains(" INFO "), "{listening}");
    assert!(listening.contains("broker=off"), "{listening}");
    assert!(listening.contains("metrics=127.0.0.1:"), "{listening}");
    for l in &lines {
        assert!(!l.contains("Some(") && !l.contains("None"), "{l}");
    }
    // The machine-readable lines scripts read stay as they were.
    assert!(
        lines.iter().any(
            |l| l.starts_with("aorta server listening on https://127.0.0.1:")
                && l.contains(" (broker off), certificate ")
        ),
        "{lines:#?}"
    );
}

#[test]
fn server_logs_json_lines_on_request() {
    let t = tempfile::tempdir().unwrap();
    server_files(t.path(), "");
    let s = Srv::start(t.path(), &["--log-format", "json"], &[]);
    let (code, lines) = s.stop();
    assert_eq!(code, Some(0), "{lines:#?}");
    let mut events = Vec::new();
    for l in &lines {
        if l.starts_with("aorta server ") {
            continue; // the readiness line, plain text by design
        }
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        for k in ["timestamp", "level", "target", "message"] {
            assert!(v[k].is_string(), "{k} in {l}");
        }
        events.push(v);
    }
    let listening = events
        .iter()
        .find(|v| v["message"] == "listening (HTTP/2 and HTTP/1.1 over TLS)")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["target"], "aorta::server");
    assert_eq!(listening["broker"], "off");
    assert_eq!(listening["metrics"], "off");
    assert!(
        listening["addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(events.iter().any(|v| {
        v["level"] == "WARN"
            && v["message"]
                .as_str()
                .unwrap()
                .contains("no broker_key configured")
    }));
    assert!(events.iter().any(|v| v["message"] == "stopped"));

    // An unknown format is a usage error before anything starts.
    let o = aorta(&["server", "--log-format", "yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("invalid value 'yaml' for '--log-format <LOG_FORMAT>'")
            && e.contains("[possible values: text, json]"),
        "{e}"
    );
}

#[test]
fn rust_log_filters_and_wins_over_verbose() {
    let t = tempfile::tempdir().unwrap();
    server_files(t.path(), "");
    // RUST_LOG=warn: the warning, not the INFO lines.
    let s = Srv::start(t.path(), &["-v"], &[("RUST_LOG", "warn")]);
    let (code, lines) = s.stop();
    assert_eq!(code, Some(0), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" WARN ") && l.contains("no broker_key configured")),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains(" INFO ")
            || l.contains(" DEBUG ")
            || l.contains("listening (HTTP/2")),
        "{lines:#?}"
    );
    // RUST_LOG=off: only the readiness line.
    let s = Srv::start(t.path(), &[], &[("RUST_LOG", "off")]);
    let (code, lines) = s.stop();
    assert_eq!(code, Some(0), "{lines:#?}");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    // Per target: the server's INFO lines, nothing of aorta::ingest.
    let s = Srv::start(t.path(), &[], &[("RUST_LOG", "aorta::server=info")]);
    let (_, lines) = s.stop();
    assert!(lines.iter().any(|l| l.contains("listening (HTTP/2")));
    // -v without RUST_LOG: DEBUG events (a failed TLS handshake) appear.
    let mut s = Srv::start(t.path(), &["-v"], &[]);
    let addr = s
        .seen
        .iter()
        .find_map(|l| l.strip_prefix("aorta server listening on https://"))
        .and_then(|r| r.split_once(' '))
        .map(|(a, _)| a.parse::<SocketAddr>().unwrap())
        .unwrap();
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    drop(c);
    let l = s.wait_for("TLS handshake failed");
    assert!(l.contains(" DEBUG "), "{l}");
    let (code, _) = s.stop();
    assert_eq!(code, Some(0));

    // An invalid filter is an error, before anything starts.
    let o = bounded(
        Run::new(["server", "--config", "server.toml"])
            .cwd(t.path())
            .env("RUST_LOG", "aorta=loud"),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.starts_with(
            "error: RUST_LOG=\"aorta=loud\" is not a log filter (e.g. RUST_LOG=info, RUST_LOG=aorta::server=debug,warn, RUST_LOG=off)\n  caused by: "
        ),
        "{e}"
    );
}

/// Fills `data/` with `frames` log records and `results` stored results,
/// as a previous run would have left them.
fn stored_before(dir: &Path, frames: usize, results: usize) {
    use aorta_stream::log::FrameLog;
    use aorta_stream::results::ResultSink;
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut log = aorta_stream::log::FileLog::open(data.join("frames.log")).unwrap();
    for i in 0..frames {
        log.append(format!("record {i}").as_bytes()).unwrap();
    }
    log.sync().unwrap();
    let mut store = aorta_stream::results::FileResultStore::open(data.join("results.log")).unwrap();
    for i in 0..results {
        store.put(&format!("dr/SN/0/{i}"), b"sealed").unwrap();
    }
    store.sync().unwrap();
}

/// The value of the sample line `name ` in a Prometheus text.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

#[test]
fn operations_port_serves_metrics_health_and_readiness() {
    let t = tempfile::tempdir().unwrap();
    server_files(t.path(), "metrics_listen = \"127.0.0.1:0\"\n");
    stored_before(t.path(), 3, 2);
    let s = Srv::start(t.path(), &[], &[]);
    let ops = s.ops();
    assert!(ops.ip().is_loopback());

    let (status, m) = http(ops, "GET", "/metrics");
    assert_eq!(status, 200, "{m}");
    let version = env!("CARGO_PKG_VERSION");
    let info = m
        .lines()
        .find(|l| l.starts_with("aorta_build_info{"))
        .unwrap_or_else(|| panic!("{m}"));
    assert!(
        info.starts_with(&format!("aorta_build_info{{version=\"{version}\",git=\""))
            && info.ends_with("\"} 1"),
        "{info}"
    );
    assert!(m.contains("# TYPE aorta_build_info gauge"));
    // The process metrics, from /proc.
    assert!(sample(&m, "process_resident_memory_bytes") > 1e6, "{m}");
    assert!(sample(&m, "process_virtual_memory_bytes") > 1e6, "{m}");
    assert!(sample(&m, "process_open_fds") >= 3.0, "{m}");
    assert!(sample(&m, "process_max_fds") >= sample(&m, "process_open_fds"));
    assert!(sample(&m, "process_cpu_seconds_total") >= 0.0, "{m}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = sample(&m, "process_start_time_seconds");
    assert!(
        started <= now + 2.0 && started > now - 600.0,
        "{started} {now}"
    );
    assert!(m.contains("# TYPE process_cpu_seconds_total counter"));
    // Durable counters count what the stores held at start.
    assert_eq!(sample(&m, "aorta_ingest_frames_accepted_total"), 3.0, "{m}");
    assert_eq!(sample(&m, "aorta_results_stored_total"), 2.0, "{m}");
    // Process-lifetime ones start at zero.
    assert_eq!(sample(&m, "aorta_ingest_frames_duplicate_total"), 0.0);

    assert_eq!(http(ops, "GET", "/healthz"), (200, "ok".into()));
    assert_eq!(http(ops, "GET", "/readyz"), (200, "ready".into()));
    // Anything else: a JSON error, nothing more.
    let (status, body) = http(ops, "GET", "/v1/log?from=0");
    assert_eq!(status, 404);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "not_found");
    let (status, body) = http(ops, "POST", "/metrics");
    assert_eq!(status, 405);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "method_not_allowed");
    let (code, lines) = s.stop();
    assert_eq!(code, Some(0), "{lines:#?}");

    // After a restart the durable counters hold; a port already taken is
    // a clear error.
    let s = Srv::start(t.path(), &[], &[]);
    let ops = s.ops();
    let (_, m) = http(ops, "GET", "/metrics");
    assert_eq!(sample(&m, "aorta_ingest_frames_accepted_total"), 3.0, "{m}");
    assert_eq!(sample(&m, "aorta_results_stored_total"), 2.0, "{m}");
    let t2 = tempfile::tempdir().unwrap();
    server_files(t2.path(), &format!("metrics_listen = \"{ops}\"\n"));
    let o = bounded(
        Run::new(["server", "--config", "server.toml"])
            .cwd(t2.path())
            .env("RUST_LOG", ""),
    );
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains(&format!(
            "error: binding the operations port (metrics_listen) {ops}"
        )),
        "{e}"
    );
    s.stop();

    // Off by default: no port, no line.
    let t3 = tempfile::tempdir().unwrap();
    server_files(t3.path(), "");
    let s = Srv::start(t3.path(), &[], &[]);
    let (_, lines) = s.stop();
    assert!(
        !lines.iter().any(|l| l.contains("operations port")),
        "{lines:#?}"
    );
}

const KEY1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const KEYR: &str = "abababababababababababababababababababababababababababababababab";

#[test]
fn broker_and_worker_log_json_and_never_a_key_even_at_trace() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let trust = SimTrust::new(d, "window_secs = 300\n", &["ECG-1"]);
    let keys = d.join("keys.toml");
    std::fs::write(
        &keys,
        format!("[transport]\n\"ECG-1\" = \"{KEY1}\"\n[results]\n\"dr-a\" = \"{KEYR}\"\n"),
    )
    .unwrap();
    let state_key = d.join("state.key");
    let broker_log = d.join("broker.log");
    let mut broker = Run::new(["broker", "serve", "--listen", "127.0.0.1:0", "--policy"])
        .arg(&trust.policy)
        .arg("--keys")
        .arg(&keys)
        .arg("--state-key")
        .arg(&state_key)
        .args(["--log-format", "json"])
        .env("RUST_LOG", "trace")
        .cwd(d)
        .spawn(Stdio::from(std::fs::File::create(&broker_log).unwrap()));
    let mut first = String::new();
    BufReader::new(broker.take_stdout())
        .read_line(&mut first)
        .unwrap();
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{first:?}"))
        .to_owned();
    let o = Run::new(["worker", "run", "--backend", "sim", "--json"])
        .args(["--broker", &addr, "--assignment", "ward-a"])
        .arg("--config")
        .arg(&trust.config)
        .arg("--sim-platform-key")
        .arg(&trust.platform_key)
        .args(["--log-format", "json"])
        .env("RUST_LOG", "trace")
        .output();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(status["transport_keys"], 1);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let got = events
        .iter()
        .find(|v| v["message"] == "keys received")
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(
        (&got["target"], &got["transport_keys"], &got["backend"]),
        (
            &serde_json::json!("aorta::worker"),
            &serde_json::json!(1),
            &serde_json::json!("sim")
        )
    );
    broker.term();
    let blog = std::fs::read_to_string(&broker_log).unwrap();
    let released = blog
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["decision"] == "release")
        .unwrap_or_else(|| panic!("{blog}"));
    assert_eq!(released["assignment"], "ward-a");
    // No key in any log line: the device and result keys, the state
    // secret, the sim platform key.
    let state = std::fs::read_to_string(&state_key).unwrap();
    let platform = aorta_base::hex::encode(&std::fs::read(&trust.platform_key).unwrap());
    for secret in [KEY1, KEYR, state.trim(), &platform] {
        assert!(secret.len() >= 32);
        assert!(!blog.contains(secret), "broker log holds a secret");
        assert!(!stderr.contains(secret), "worker log holds a secret");
        assert!(
            !String::from_utf8_lossy(&o.stdout).contains(secret),
            "worker status holds a secret"
        );
    }
}

#[test]
fn server_at_trace_logs_no_token_and_no_tls_key() {
    let t = tempfile::tempdir().unwrap();
    server_files(t.path(), "");
    let s = Srv::start(
        t.path(),
        &["--log-format", "json"],
        &[("RUST_LOG", "trace")],
    );
    let url = s
        .seen
        .iter()
        .find_map(|l| l.strip_prefix("aorta server listening on "))
        .and_then(|r| r.split_once(' '))
        .map(|(u, _)| u.to_owned())
        .unwrap();
    let data = t.path().join("data");
    let token = std::fs::read_to_string(data.join("worker.token"))
        .unwrap()
        .trim()
        .to_owned();
    // A worker request over HTTP/2 carrying the token, and a stranger's
    // request with a wrong one.
    let worker =
        aorta_worker::server::Server::new(&url, &data.join("cert.pem"), Some(token.clone()))
            .unwrap();
    assert!(worker.load_checkpoint().unwrap().is_none());
    let wrong = "f".repeat(48);
    let stranger =
        aorta_worker::server::Server::new(&url, &data.join("cert.pem"), Some(wrong.clone()))
            .unwrap();
    assert!(stranger.load_checkpoint().is_err());
    let (code, lines) = s.stop();
    assert_eq!(code, Some(0));
    // Trace level did log (the HTTP/2 machinery), so the check means something.
    assert!(
        lines.iter().any(|l| l.contains("\"level\":\"TRACE\"")),
        "{lines:#?}"
    );
    let all = lines.join("\n");
    assert!(token.len() >= 32);
    assert!(!all.contains(&token), "the worker token is in the log");
    assert!(!all.contains(&wrong), "a presented token is in the log");
    let key = std::fs::read_to_string(data.join("key.pem")).unwrap();
    for l in key.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!all.contains(l), "TLS key material is in the log");
    }
}

/// A stranger floods `POST /v1/frames` with garbage that carries a
/// well-formed (meaningless) signature header, so every request reaches
/// the frame checks and is refused. Each refusal used to write one log
/// line: the stranger wrote the operator's log (and disk) at the speed of
/// its requests. The log now keeps a sample (at most
/// `aorta_server::log_throttle::REFUSALS_PER_SEC` lines a second, the next
/// line counting what it left out); the metrics count every refusal.
#[test]
fn a_flood_of_refused_frames_cannot_flood_the_log() {
    const FLOOD: usize = 300;
    let t = tempfile::tempdir().unwrap();
    server_files(t.path(), "metrics_listen = \"127.0.0.1:0\"\n");
    // The stranger has read the public directory: its bodies start with a
    // listed device's well-formed frame header, so each reaches the
    // signature check (as `aorta bench ingest`'s attackers do).
    let serial = "FLOOD-0001";
    std::fs::write(
        t.path().join("directory.txt"),
        format!(
            "{}\n{serial} verified 120 1000 {}\n",
            aorta_crypto::directory::HEADER,
            "3d".repeat(32)
        ),
    )
    .unwrap();
    let s = Srv::start(t.path(), &[], &[]);
    let addr: SocketAddr = s
        .seen
        .iter()
        .find_map(|l| l.strip_prefix("aorta server listening on https://"))
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    let tls = std::sync::Arc::new(
        aorta_api::client_tls_config_file(&t.path().join("data").join("cert.pem")).unwrap(),
    );
    let sig = "ab".repeat(64);
    let started = Instant::now();
    for i in 0..FLOOD {
        let name = rustls::pki_types::ServerName::try_from(addr.ip().to_string()).unwrap();
        let conn = rustls::ClientConnection::new(tls.clone(), name).unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut tls_stream = rustls::StreamOwned::new(conn, tcp);
        let payload = [i as u8; 64];
        let mut body =
            aorta_crypto::frame::FrameHeader::new(serial, 0, i as u64, 0, 360_000, 2, 360, [7; 16])
                .unwrap()
                .encode_with_len(payload.len() as u32);
        body.extend_from_slice(&payload);
        write!(
            tls_stream,
            "POST /v1/frames HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\naorta-signature: {sig}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        tls_stream.write_all(&body).unwrap();
        let mut resp = Vec::new();
        let _ = tls_stream.read_to_end(&mut resp);
        let head = String::from_utf8_lossy(&resp);
        assert!(head.starts_with("HTTP/1.1 4"), "request {i}: {head}");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (metrics_status, metrics) = http(s.ops(), "GET", "/metrics");
    assert_eq!(metrics_status, 200);
    let refused: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("aorta_ingest_frames_refused_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        refused >= FLOOD as f64,
        "every refusal is counted: {refused}\n{metrics}"
    );
    let (code, lines) = s.stop();
    assert_eq!(code, Some(0));
    let logged: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("frame refused"))
        .collect();
    let bound = aorta_server::log_throttle::REFUSALS_PER_SEC as f64 * (elapsed.ceil() + 1.0);
    assert!(
        (logged.len() as f64) <= bound,
        "{} refusal lines for {FLOOD} refusals in {elapsed:.1} s (at most {bound})",
        logged.len()
    );
    assert!(!logged.is_empty(), "refusals are still logged (a sample)");
    assert!(
        logged
            .iter()
            .any(|l| l.contains("suppressed=") && !l.contains("suppressed=0")),
        "a line says how many it left out: {logged:#?}"
    );
}
