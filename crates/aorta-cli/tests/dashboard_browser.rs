//! The clinician's dashboard in a real browser (Debian's headless Chromium
//! driven over WebDriver by `chromedriver`), during a real
//! `aorta demo --dashboard` run of MIT-BIH 100 and 203 (AF):
//!
//! - a tile per patient appears;
//! - the AF alarm of 203 appears within 5 s of the worker emitting it.
//!   "Emitting" is the time the AF-onset result is stored at the server:
//!   this test reads the results itself every 100 ms with the demo's
//!   clinician identity, and takes the start of the last read that did
//!   *not* return the result as the emission time (an earlier bound than
//!   the true store time, so the measured delay is an over-estimate). An
//!   alarm emitted before the page had loaded is timed from the page load;
//! - the patient view draws the event's ECG strip on paper (every lead's
//!   samples drawn, dark trace pixels on the canvas, 96/25.4 px per mm);
//! - clicking "Ack" acknowledges the alarm and writes the audit line (the
//!   clinician's public key, the alarm).
//!
//! Skipped (visibly) without `/usr/bin/chromium`, `chromedriver` or the
//! shared MIT-BIH data. With `AORTA_SCREENSHOTS=1` it also writes the ward
//! and patient views to `docs/img/dashboard-{ward,patient}.png`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{Proc, Run, shared_data};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";

fn chromedriver() -> Option<PathBuf> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// A WebDriver session on a chromedriver of our own.
struct Browser {
    base: String,
    http: reqwest::blocking::Client,
    _driver: Proc,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(driver: &Path) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let driver = Proc::new(child);
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let root = format!("http://127.0.0.1:{port}");
        let t = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{root}/status")).send()
                && let Ok(v) = r.json::<Value>()
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--no-first-run", "--window-size=1440,900", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let v: Value = http
            .post(format!("{root}/session"))
            .json(&caps)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_owned();
        Browser {
            base: format!("{root}/session/{session}"),
            http,
            _driver: driver,
            _profile: profile,
        }
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let v: Value = r.send().unwrap().json().unwrap();
        if let Some(e) = v["value"].get("error") {
            panic!("WebDriver {path}: {e}: {}", v["value"]["message"]);
        }
        v["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})));
    }

    fn js(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    fn click(&self, css: &str) {
        let e = self.call(
            reqwest::Method::POST,
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        let id = e["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap()
            .to_owned();
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        );
    }

    fn screenshot(&self) -> Vec<u8> {
        let v = self.call(reqwest::Method::GET, "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    }

    /// Evaluates `script` every 100 ms until it returns a truthy value.
    fn wait(&self, what: &str, limit: Duration, script: &str, args: Value) -> Value {
        let t = Instant::now();
        loop {
            let v = self.js(script, args.clone());
            if !(v.is_null() || v == false || v == json!([]) || v == 0) {
                return v;
            }
            assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.base).send();
    }
}

/// The first AF onset of `patient` as the test's own reader sees it: the
/// alarm id the dashboard gives it and the earliest instant it can have
/// been stored.
struct Emitted {
    alarm: String,
    not_before: Instant,
}

/// Reads the results sealed to the demo's clinician every 100 ms until
/// `stop`, reporting the first AF onset of `patient`.
fn watch_store(dir: &Path, url: &str, patient: &str, stop: Arc<AtomicBool>) -> Receiver<Emitted> {
    let identity = aorta_worker::clinician::read_identity(&dir.join("clinician.key"))
        .unwrap()
        .identity;
    let data = dir.join("server");
    let broker = aorta_server::broker::load_or_create_signing_key(&data.join("broker-signing.key"))
        .unwrap()
        .public();
    let srv = aorta_worker::server::Server::new(url, &data.join("cert.pem"), None).unwrap();
    let mut reader = aorta_worker::clinician::ResultReader::new(
        srv,
        identity,
        "demo-clinician",
        Some(patient),
        broker,
    )
    .unwrap()
    .allow_simulation(true);
    let (tx, rx) = channel();
    let patient = patient.to_owned();
    std::thread::spawn(move || {
        let mut last_miss = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let got = reader.poll().unwrap_or_default();
            if let Some(r) = got.iter().find(|r| {
                matches!(&r.result, aorta_stream::ecg::EcgResult::Rhythm(e)
                    if e.kind == aorta_signal::rhythm::RhythmEventKind::AfOnset)
            }) {
                let _ = tx.send(Emitted {
                    alarm: format!("{patient}/af/{}", r.start),
                    not_before: last_miss,
                });
                return;
            }
            last_miss = started;
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    rx
}

#[test]
fn the_dashboard_in_chromium_during_a_demo() {
    let Some(db) = shared_data("mitdb", "dashboard browser test") else {
        return;
    };
    let (Some(driver), true) = (chromedriver(), Path::new(CHROMIUM).is_file()) else {
        eprintln!(
            "SKIPPED dashboard browser test: {CHROMIUM} or chromedriver absent (apt-get install chromium chromium-driver)"
        );
        return;
    };
    // reqwest is built without a default TLS provider (plain HTTP here).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    // 100 (sinus) and 203 (AF), 150 s each at 5× real time: 30 s of
    // streaming; the dashboard keeps serving after the summary. For the
    // screenshots: a fuller ward, long enough for a 5-minute HRV window.
    let shots = std::env::var_os("AORTA_SCREENSHOTS").is_some();
    let (devices, duration) = if shots { (6, "330") } else { (2, "150") };
    let mut demo = Run::new([
        "demo",
        "--dashboard",
        "--dashboard-listen",
        "127.0.0.1:0",
        "--devices",
        &devices.to_string(),
        "--duration",
        duration,
        "--speed",
        "5",
    ])
    .arg("--db")
    .arg(&db)
    .arg("--dir")
    .arg(&dir)
    .spawn(Stdio::piped());
    let (tx, lines) = channel::<String>();
    let log = Arc::new(Mutex::new(String::new()));
    {
        let stderr = demo.take_stderr();
        let log = log.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&format!("{l}\n"));
                let _ = tx.send(l);
            }
        });
    }
    let (mut server, mut url) = (None, None);
    let t = Instant::now();
    while server.is_none() || url.is_none() {
        let l = lines
            .recv_timeout(Duration::from_secs(60).saturating_sub(t.elapsed()))
            .unwrap_or_else(|_| {
                panic!(
                    "the demo printed no dashboard URL:\n{}",
                    log.lock().unwrap()
                )
            });
        if let Some(r) = l.trim().strip_prefix("server: ") {
            server = r.split_whitespace().next().map(str::to_owned);
        }
        if let Some(r) = l.trim().strip_prefix("clinician dashboard: ") {
            url = r.split_whitespace().next().map(str::to_owned);
        }
    }
    let (server, url) = (server.unwrap(), url.unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let emitted = watch_store(&dir, &server, "DEMO-0002", stop.clone());

    let b = Browser::start(&driver);
    b.goto(&url);
    // The token went into the cookie; the address bar no longer holds it.
    let here = b.js("return location.href", json!([]));
    assert!(!here.as_str().unwrap().contains("token"), "{here}");
    let page_ready = Instant::now();

    // A tile per patient.
    let tiles = b.wait(
        "a tile per patient",
        Duration::from_secs(60),
        "const t = [...document.querySelectorAll('.tile')].map(e => e.dataset.patient).sort();
         return t.length === arguments[0] ? t : null;",
        json!([devices]),
    );
    let want: Vec<String> = (1..=devices).map(|i| format!("DEMO-{i:04}")).collect();
    assert_eq!(tiles, json!(want));

    // The AF alarm, within 5 s of its emission.
    let e = emitted
        .recv_timeout(Duration::from_secs(90))
        .unwrap_or_else(|_| panic!("no AF onset for 203 was stored:\n{}", log.lock().unwrap()));
    stop.store(true, Ordering::Relaxed);
    let from = e.not_before.max(page_ready);
    b.wait(
        "the AF alarm on the ward",
        Duration::from_secs(30),
        "return document.querySelector(`.tile .alarm[data-alarm-id=\"${arguments[0]}\"]`) !== null",
        json!([e.alarm]),
    );
    let delay = from.elapsed();
    eprintln!(
        "AF alarm shown {:.2} s after it was stored (upper bound)",
        delay.as_secs_f64()
    );
    assert!(delay <= Duration::from_secs(5), "AF alarm after {delay:?}");
    let a = b.js(
        "const a = document.querySelector(`.tile .alarm[data-alarm-id=\"${arguments[0]}\"]`);
         return [a.dataset.priority, a.dataset.acknowledged, getComputedStyle(a).animationName,
                 a.closest('.tile').dataset.patient];",
        json!([e.alarm]),
    );
    assert_eq!(a, json!(["medium", "false", "flash-medium", "DEMO-0002"]));

    if shots {
        // Until a 5-minute HRV window is in.
        b.wait(
            "an HRV window",
            Duration::from_secs(180),
            "return document.querySelector('.tile .hrv b') !== null",
            json!([]),
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/img");
    let ward = b.screenshot();
    assert_eq!(&ward[..8], b"\x89PNG\r\n\x1a\n");
    if shots {
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join("dashboard-ward.png"), &ward).unwrap();
    }

    // The patient view: trends, the timeline and a strip on ECG paper.
    b.click(".tile[data-patient=\"DEMO-0002\"]");
    let strip = b.wait(
        "the ECG strip",
        Duration::from_secs(30),
        "const c = document.getElementById('strip');
         if (!c || !(+c.dataset.samplesDrawn > 0)) return null;
         const g = c.getContext('2d');
         const d = g.getImageData(0, 0, c.width, c.height).data;
         let dark = 0;
         for (let i = 0; i < d.length; i += 4) if (d[i] < 90 && d[i+1] < 90 && d[i+2] < 90) dark++;
         return {samples: +c.dataset.samplesDrawn, leads: +c.dataset.leads, dark,
                 pxPerMm: +c.dataset.pxPerMm, cssWidth: parseFloat(c.style.width),
                 hr: +document.getElementById('hr-trend').dataset.points};",
        json!([]),
    );
    eprintln!("strip: {strip}");
    assert_eq!(strip["leads"], 2, "MIT-BIH records have two leads");
    // About 10 s at 360 Hz per lead.
    assert!(strip["samples"].as_u64().unwrap() >= 2 * 360 * 5, "{strip}");
    assert!(
        strip["dark"].as_u64().unwrap() > 1000,
        "no trace drawn: {strip}"
    );
    assert!((strip["pxPerMm"].as_f64().unwrap() - 96.0 / 25.4).abs() < 1e-3);
    assert!(strip["hr"].as_u64().unwrap() > 0, "HR trend empty");
    // 25 mm/s: a 10-s strip is at least 250 mm wide on the canvas.
    assert!(strip["cssWidth"].as_f64().unwrap() >= 250.0 * 96.0 / 25.4 * 0.5);
    if shots {
        // The AF onset's strip, when it is still in the timeline.
        let af = b.js(
            "const li = [...document.querySelectorAll('#patient li.has-strip')]
                 .filter(l => l.textContent.includes('AF onset')).pop();
             if (li) { li.click(); return true; } return false;",
            json!([]),
        );
        if af == true {
            b.wait(
                "the AF onset's strip",
                Duration::from_secs(10),
                "const h = document.querySelector('.stripbox h2');
                 return h && h.textContent.includes('AF onset')",
                json!([]),
            );
        }
        b.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": 1440, "height": 1250})),
        );
        std::thread::sleep(Duration::from_secs(2));
        std::fs::write(docs.join("dashboard-patient.png"), b.screenshot()).unwrap();
    }

    // Acknowledge: the alarm stops flashing and the audit line is written.
    let audit = dir.join("clinician.key.dashboard-audit.jsonl");
    assert_eq!(std::fs::read_to_string(&audit).unwrap_or_default(), "");
    b.click(&format!(
        ".palarms button.ack[data-alarm-id=\"{}\"]",
        e.alarm
    ));
    b.wait(
        "the acknowledgement",
        Duration::from_secs(10),
        "return [...document.querySelectorAll(`#patient .alarm[data-alarm-id=\"${arguments[0]}\"]`)]
                .every(a => a.dataset.acknowledged === 'true');",
        json!([e.alarm]),
    );
    let text = std::fs::read_to_string(&audit).unwrap();
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["alarm"], e.alarm);
    assert_eq!(line["action"], "acknowledge");
    assert_eq!(line["patient"], "DEMO-0002");
    let public = aorta_worker::clinician::read_identity(&dir.join("clinician.key"))
        .unwrap()
        .identity
        .public()
        .to_string();
    assert_eq!(line["clinician"], public);
    b.goto(url.split('?').next().unwrap());
    let t = b.wait(
        "the ward after the acknowledgement",
        Duration::from_secs(10),
        "const a = document.querySelector(`.tile .alarm[data-alarm-id=\"${arguments[0]}\"]`);
         return a ? a.dataset.acknowledged : 'gone';",
        json!([e.alarm]),
    );
    assert!(t == "true" || t == "gone", "{t}");

    // The demo ends with its summary; the dashboard serves on until SIGTERM.
    drop(b);
    let t = Instant::now();
    while !log.lock().unwrap().contains("keeps serving") {
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "no summary:\n{}",
            log.lock().unwrap()
        );
        assert!(!demo.exited(), "the demo exited:\n{}", log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    let page = reqwest::blocking::get(url.split('?').next().unwrap()).unwrap();
    assert_eq!(
        page.status(),
        401,
        "still serving, and still behind its token"
    );
    demo.term();
    let out = demo.wait_output();
    assert!(
        out.status.success(),
        "{:?}\n{}",
        out.status,
        log.lock().unwrap()
    );
}

/// A demo killed outright (SIGKILL: no cleanup runs) does not leave its
/// dashboard behind: the dashboard reads end-of-file on the stdin the demo
/// held and exits.
#[test]
fn the_dashboard_ends_with_a_killed_demo() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let mut demo = Run::new([
        "demo",
        "--dashboard",
        "--dashboard-listen",
        "127.0.0.1:0",
        "--devices",
        "1",
        "--duration",
        "300",
        "--speed",
        "1",
        "--sample",
    ])
    .arg("--dir")
    .arg(&dir)
    .spawn(Stdio::piped());
    let stderr = demo.take_stderr();
    let (tx, lines) = channel::<String>();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let t = Instant::now();
    let addr = loop {
        let l = lines
            .recv_timeout(Duration::from_secs(60).saturating_sub(t.elapsed()))
            .expect("the demo printed no dashboard URL");
        if let Some(r) = l.trim().strip_prefix("clinician dashboard: http://") {
            break r.split('/').next().unwrap().to_owned();
        }
    };
    assert!(std::net::TcpStream::connect(&addr).is_ok(), "dashboard up");
    demo.kill9();
    let t = Instant::now();
    while std::net::TcpStream::connect(&addr).is_ok() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the dashboard outlived the killed demo"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The demo's server and worker are not tied to it that way (yet):
    // stop the ones this test started, found by its own work directory.
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(dir.to_str().unwrap()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}
