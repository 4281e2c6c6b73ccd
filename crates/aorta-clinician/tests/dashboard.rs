//! The dashboard's model and its HTTP server, attacked as a page of another
//! site, a DNS-rebinding page and a client without the token would.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aorta_clinician::dashboard::model::{AlarmKind, MAX_HR_POINTS, MAX_PATIENTS, Priority, Ward};
use aorta_clinician::dashboard::{self, Config, DashboardError, Limits};
use aorta_signal::rhythm::{RhythmEvent, RhythmEventKind};
use aorta_stream::ecg::{EcgResult, EcgStrip, HrvSummary, StripLead};
use aorta_worker::clinician::OpenedResult;

const T0: i64 = 1_700_000_000_000_000;

fn hr(p: &str, t: i64, bpm: f64) -> OpenedResult {
    OpenedResult {
        patient: p.into(),
        start: t - 10_000_000,
        end: t,
        result: EcgResult::HeartRate { beats: 12, bpm },
    }
}

fn rhythm(p: &str, t: i64, kind: RhythmEventKind) -> OpenedResult {
    OpenedResult {
        patient: p.into(),
        start: t,
        end: t,
        result: EcgResult::Rhythm(RhythmEvent {
            time_s: (t - T0) as f64 / 1e6,
            kind,
        }),
    }
}

fn strip(p: &str, t: i64, kind: RhythmEventKind) -> OpenedResult {
    let fs = 360.0;
    let first = t - 5_000_000;
    let leads = (0..2)
        .map(|ch| StripLead {
            channel: ch,
            samples_uv: (0..3600)
                .map(|i| if i % 300 == 0 { 1200 } else { (i % 7) * 10 })
                .collect(),
        })
        .collect();
    OpenedResult {
        patient: p.into(),
        start: first,
        end: first + 10_000_000,
        result: EcgResult::Strip(EcgStrip {
            event: RhythmEvent {
                time_s: (t - T0) as f64 / 1e6,
                kind,
            },
            fs,
            first_sample_us: first,
            leads,
        }),
    }
}

fn hrv(p: &str, t: i64) -> OpenedResult {
    OpenedResult {
        patient: p.into(),
        start: t - 300_000_000,
        end: t,
        result: EcgResult::Hrv(HrvSummary {
            n_nn: 300,
            mean_nn: 800.0,
            sdnn: 45.0,
            rmssd: 30.0,
            pnn50: 10.0,
            lf: 500.0,
            hf: 300.0,
            lf_hf: 1.6,
            sd1: 20.0,
            sd2: 60.0,
            coverage: Some(1.0),
            partial: false,
        }),
    }
}

#[test]
fn the_model_raises_sorts_ends_and_acknowledges_alarms() {
    let mut w = Ward::new();
    let now = T0 + 60_000_000;
    w.feed(
        &[
            hr("sinus", T0 + 10_000_000, 72.0),
            hrv("sinus", T0 + 300_000_000),
            hr("af", T0 + 10_000_000, 110.0),
            rhythm("af", T0 + 20_000_000, RhythmEventKind::AfOnset),
            strip("af", T0 + 20_000_000, RhythmEventKind::AfOnset),
            hr("pause", T0 + 10_000_000, 40.0),
            rhythm("pause", T0 + 30_000_000, RhythmEventKind::PauseOnset),
            OpenedResult {
                patient: "gap".into(),
                start: T0 + 5_000_000,
                end: T0 + 9_000_000,
                result: EcgResult::Gap {
                    first_missing_sequence: 5,
                    missing_frames: 4,
                },
            },
        ],
        now,
    );
    let v = w.view(now);
    let order: Vec<&str> = v.tiles.iter().map(|t| t.patient.as_str()).collect();
    // High (pause), medium (AF), low (signal lost), then no alarm.
    assert_eq!(order, ["pause", "af", "gap", "sinus"]);
    let af = &v.tiles[1];
    assert_eq!(af.rhythm, "AFIB");
    assert_eq!(af.alarms.len(), 1);
    assert_eq!(af.alarms[0].kind, AlarmKind::Af);
    assert_eq!(af.alarms[0].priority, Priority::Medium);
    assert_eq!(v.tiles[0].top_priority, Some(Priority::High));
    assert_eq!(v.tiles[2].signal, "gap");
    assert_eq!(v.tiles[2].alarms[0].priority, Priority::Low);
    assert_eq!(v.tiles[3].rhythm, "SINUS");
    assert_eq!(v.tiles[3].hrv.unwrap().hrv.sdnn, 45.0);
    // The AF event's strip is linked from the timeline.
    let p = w.patient("af", now).unwrap();
    let (ev, strip_n) = &p.events[0];
    assert_eq!(ev.text, "AF onset");
    let s = w.strip("af", strip_n.unwrap()).unwrap();
    assert_eq!(s.strip.leads.len(), 2);

    // Acknowledged, the pause (still present) sorts below unacknowledged AF.
    let pause_id = v.tiles[0].alarms[0].id.clone();
    let a = w.acknowledge(&pause_id).unwrap();
    assert!(a.acknowledged);
    let order: Vec<String> = w.view(now).tiles.into_iter().map(|t| t.patient).collect();
    assert_eq!(order, ["af", "gap", "pause", "sinus"]);
    // The pause ends: acknowledged and over, it is no longer shown.
    w.feed(
        &[rhythm(
            "pause",
            T0 + 34_000_000,
            RhythmEventKind::Pause { duration_s: 4.0 },
        )],
        now,
    );
    let t = w
        .view(now)
        .tiles
        .into_iter()
        .find(|t| t.patient == "pause")
        .unwrap();
    assert!(t.alarms.is_empty(), "{:?}", t.alarms);
    // An AF offset ends the AF alarm but it stays (latched) until acknowledged.
    w.feed(
        &[rhythm("af", T0 + 40_000_000, RhythmEventKind::AfOffset)],
        now,
    );
    let t = w
        .view(now)
        .tiles
        .into_iter()
        .find(|t| t.patient == "af")
        .unwrap();
    assert_eq!(t.rhythm, "SINUS");
    assert_eq!(t.alarms.len(), 1);
    assert!(t.alarms[0].end_us.is_some());
    assert!(w.acknowledge("af/af/1").is_err());
    // AF returns while latched: the same alarm, active again, not another.
    w.feed(
        &[rhythm("af", T0 + 50_000_000, RhythmEventKind::AfOnset)],
        now,
    );
    let t = w
        .view(now)
        .tiles
        .into_iter()
        .find(|t| t.patient == "af")
        .unwrap();
    assert_eq!(t.alarms.len(), 1);
    assert!(t.alarms[0].end_us.is_none());
    assert_eq!(t.alarms[0].repeats, 1);
    // Once acknowledged and over, a new onset is a new alarm.
    let id = t.alarms[0].id.clone();
    w.acknowledge(&id).unwrap();
    w.feed(
        &[
            rhythm("af", T0 + 60_000_000, RhythmEventKind::AfOffset),
            rhythm("af", T0 + 70_000_000, RhythmEventKind::AfOnset),
        ],
        now,
    );
    let t = w
        .view(now)
        .tiles
        .into_iter()
        .find(|t| t.patient == "af")
        .unwrap();
    assert_eq!(t.alarms.len(), 1);
    assert_ne!(t.alarms[0].id, id);
    assert!(!t.alarms[0].acknowledged);
    // A patient silent for over 30 s of wall clock: signal lost.
    let later = now + 31_000_000;
    let t = w
        .view(later)
        .tiles
        .into_iter()
        .find(|t| t.patient == "sinus")
        .unwrap();
    assert_eq!(t.signal, "lost");
}

#[test]
fn the_model_is_bounded() {
    let mut w = Ward::new();
    let many: Vec<OpenedResult> = (0..(MAX_HR_POINTS as i64 + 500))
        .map(|i| hr("p", T0 + i * 1_000_000, 60.0))
        .collect();
    w.feed(&many, T0);
    assert_eq!(w.patient("p", T0).unwrap().hr_trend.len(), MAX_HR_POINTS);
    for i in 0..300 {
        w.feed(
            &[
                rhythm("p", T0 + i * 2, RhythmEventKind::AfOnset),
                rhythm("p", T0 + i * 2 + 1, RhythmEventKind::AfOffset),
            ],
            T0,
        );
        w.feed(&[strip("p", T0 + i, RhythmEventKind::AfOnset)], T0);
        w.acknowledge(&format!("p/af/{}", T0 + i * 2)).unwrap();
    }
    let p = w.patient("p", T0).unwrap();
    assert_eq!(
        p.events.len(),
        aorta_clinician::dashboard::model::MAX_EVENTS
    );
    assert_eq!(
        p.alarms.len(),
        aorta_clinician::dashboard::model::MAX_ALARMS
    );
    assert!(w.strip("p", 299).is_some());
    assert!(w.strip("p", 0).is_none(), "the oldest strips go");
    let others: Vec<OpenedResult> = (0..MAX_PATIENTS + 10)
        .map(|i| hr(&format!("q{i}"), T0, 60.0))
        .collect();
    w.feed(&others, T0);
    assert_eq!(w.view(T0).tiles.len(), MAX_PATIENTS);
    assert_eq!(w.patients_dropped(), 11);
}

struct Srv {
    running: dashboard::Running,
    ward: Arc<Mutex<Ward>>,
    audit: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn start(limits: Limits) -> Srv {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let ward = Arc::new(Mutex::new(Ward::new()));
    ward.lock().unwrap().feed(
        &[
            hr("p1", T0 + 10_000_000, 90.0),
            rhythm("p1", T0 + 20_000_000, RhythmEventKind::AfOnset),
        ],
        aorta_base::time::now_us(),
    );
    let running = dashboard::start(
        Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            allow_remote: false,
            audit: audit.clone(),
            clinician: "aorta-clinician-1test".into(),
            limits,
        },
        ward.clone(),
    )
    .unwrap();
    Srv {
        running,
        ward,
        audit,
        _dir: dir,
    }
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// One raw HTTP/1.1 exchange: `head` without the final blank line.
fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

fn token(s: &Srv) -> String {
    s.running.url().split("token=").nth(1).unwrap().to_owned()
}

fn csrf(s: &Srv, cookie: &str) -> String {
    let a = raw(
        s.running.addr(),
        &format!(
            "GET / HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}",
            s.running.addr()
        ),
        b"",
    );
    assert_eq!(a.status, 200, "{}", a.head);
    let at = a.body.find("name=\"aorta-csrf\" content=\"").unwrap() + 27;
    a.body[at..at + 64].to_owned()
}

fn ack_request(s: &Srv, extra: &str, body: &str) -> Answer {
    raw(
        s.running.addr(),
        &format!(
            "POST /api/ack HTTP/1.1\r\nHost: {}\r\nContent-Length: {}{extra}",
            s.running.addr(),
            body.len()
        ),
        body.as_bytes(),
    )
}

fn audit_lines(s: &Srv) -> usize {
    std::fs::read_to_string(&s.audit)
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn the_token_becomes_an_http_only_strict_cookie_and_every_request_needs_it() {
    let s = start(Limits::default());
    let addr = s.running.addr();
    assert!(
        s.running
            .url()
            .starts_with(&format!("http://{addr}/?token="))
    );
    // Without the token: refused, every path.
    for path in [
        "/",
        "/api/state",
        "/api/patient?id=p1",
        "/app.js",
        "/api/strip?id=p1&n=0",
    ] {
        let a = raw(addr, &format!("GET {path} HTTP/1.1\r\nHost: {addr}"), b"");
        assert_eq!(a.status, 401, "{path}: {}", a.head);
        assert!(!a.body.contains("p1"));
    }
    let a = raw(
        addr,
        &format!("GET /?token={} HTTP/1.1\r\nHost: {addr}", "0".repeat(64)),
        b"",
    );
    assert_eq!(a.status, 401);
    let a = raw(
        addr,
        &format!(
            "GET /api/state HTTP/1.1\r\nHost: {addr}\r\nCookie: {}={}",
            dashboard::COOKIE,
            "0".repeat(64)
        ),
        b"",
    );
    assert_eq!(a.status, 401);
    // With it: a cookie scripts cannot read and other sites never send.
    let a = raw(
        addr,
        &format!("GET /?token={} HTTP/1.1\r\nHost: {addr}", token(&s)),
        b"",
    );
    assert_eq!(a.status, 303, "{}", a.head);
    let set = a
        .head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = format!("{}={}", dashboard::COOKIE, token(&s));
    let a = raw(
        addr,
        &format!("GET /api/state HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}"),
        b"",
    );
    assert_eq!(a.status, 200, "{}", a.head);
    assert!(a.body.contains("\"patient\":\"p1\""));
    assert!(
        a.head
            .to_ascii_lowercase()
            .contains("content-security-policy: default-src 'self'"),
        "{}",
        a.head
    );
    // localhost works too.
    let a = raw(
        addr,
        &format!(
            "GET /api/state HTTP/1.1\r\nHost: localhost:{}\r\nCookie: {cookie}",
            addr.port()
        ),
        b"",
    );
    assert_eq!(a.status, 200);
}

#[test]
fn a_foreign_host_is_refused_even_with_the_cookie() {
    // DNS rebinding: evil.example resolves to 127.0.0.1; the browser sends
    // Host: evil.example:PORT (and would send no cookie, but even with one).
    let s = start(Limits::default());
    let addr = s.running.addr();
    let cookie = format!("{}={}", dashboard::COOKIE, token(&s));
    for host in [
        format!("evil.example:{}", addr.port()),
        "127.0.0.1".into(),
        format!("127.0.0.1:{}", addr.port() ^ 1),
    ] {
        let a = raw(
            addr,
            &format!("GET /api/state HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}"),
            b"",
        );
        assert_eq!(a.status, 421, "{host}: {}", a.head);
        assert!(!a.body.contains("p1"));
    }
    let a = raw(
        addr,
        &format!(
            "GET /?token={} HTTP/1.1\r\nHost: evil.example:{}",
            token(&s),
            addr.port()
        ),
        b"",
    );
    assert_eq!(a.status, 421);
    // No Host at all (HTTP/1.0 style).
    let a = raw(
        addr,
        &format!("GET /api/state HTTP/1.0\r\nCookie: {cookie}"),
        b"",
    );
    assert_ne!(a.status, 200);
}

#[test]
fn cross_site_posts_are_refused_and_a_real_acknowledgement_is_audited() {
    let s = start(Limits::default());
    let cookie = format!("{}={}", dashboard::COOKIE, token(&s));
    let csrf = csrf(&s, &cookie);
    let id = s.ward.lock().unwrap().view(0).tiles[0].alarms[0].id.clone();
    let body = format!("{{\"alarm\":\"{id}\"}}");
    let j = "\r\nContent-Type: application/json";
    // A cross-site form post (SameSite=Strict would already drop the
    // cookie; here the cookie is sent anyway): no CSRF header.
    let a = ack_request(
        &s,
        &format!(
            "\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nOrigin: http://evil.example"
        ),
        &format!("alarm={id}"),
    );
    assert_eq!(a.status, 403, "{}", a.head);
    let a = ack_request(&s, &format!("\r\nCookie: {cookie}{j}"), &body);
    assert_eq!(a.status, 403, "no CSRF header");
    let a = ack_request(
        &s,
        &format!(
            "\r\nCookie: {cookie}{j}\r\n{}: {}",
            dashboard::CSRF_HEADER,
            "0".repeat(64)
        ),
        &body,
    );
    assert_eq!(a.status, 403, "wrong CSRF token");
    let h = format!(
        "\r\nCookie: {cookie}{j}\r\n{}: {csrf}",
        dashboard::CSRF_HEADER
    );
    let a = ack_request(&s, &format!("{h}\r\nOrigin: http://evil.example"), &body);
    assert_eq!(a.status, 403, "foreign origin");
    let a = ack_request(&s, &format!("{h}\r\nSec-Fetch-Site: cross-site"), &body);
    assert_eq!(a.status, 403, "cross-site fetch");
    // Without the cookie, even with the CSRF token.
    let a = ack_request(
        &s,
        &format!("{j}\r\n{}: {csrf}", dashboard::CSRF_HEADER),
        &body,
    );
    assert_eq!(a.status, 401);
    assert_eq!(audit_lines(&s), 0);
    assert!(!s.ward.lock().unwrap().alarm(&id).unwrap().acknowledged);
    // An unknown alarm: 404, nothing audited.
    let a = ack_request(&s, &h, "{\"alarm\":\"p1/af/1\"}");
    assert_eq!(a.status, 404);
    assert_eq!(audit_lines(&s), 0);
    // The page's own request.
    let a = ack_request(
        &s,
        &format!(
            "{h}\r\nOrigin: http://{}\r\nSec-Fetch-Site: same-origin",
            s.running.addr()
        ),
        &body,
    );
    assert_eq!(a.status, 200, "{} {}", a.head, a.body);
    assert!(s.ward.lock().unwrap().alarm(&id).unwrap().acknowledged);
    let text = std::fs::read_to_string(&s.audit).unwrap();
    let line: aorta_clinician::dashboard::audit::AuditLine =
        serde_json::from_str(text.trim()).unwrap();
    assert_eq!(line.clinician, "aorta-clinician-1test");
    assert_eq!(line.alarm, id);
    assert_eq!(line.patient, "p1");
    assert_eq!(line.kind, "af");
    assert_eq!(line.priority, "medium");
    assert_eq!(line.action, "acknowledge");
    assert!(line.time.ends_with('Z'));
    assert!((aorta_base::time::now_us() - line.time_us).abs() < 60_000_000);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&s.audit).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "audit file readable by others: {mode:o}");
    }
}

#[test]
fn oversized_bodies_and_heads_are_refused() {
    let s = start(Limits::default());
    let cookie = format!("{}={}", dashboard::COOKIE, token(&s));
    let csrf = csrf(&s, &cookie);
    let h = format!(
        "\r\nCookie: {cookie}\r\nContent-Type: application/json\r\n{}: {csrf}",
        dashboard::CSRF_HEADER
    );
    // Declared too large: refused unread.
    let a = raw(
        s.running.addr(),
        &format!(
            "POST /api/ack HTTP/1.1\r\nHost: {}\r\nContent-Length: 100000000{h}",
            s.running.addr()
        ),
        b"{",
    );
    assert_eq!(a.status, 413, "{}", a.head);
    // Chunked, no length: cut at the limit.
    let big = format!("{:x}\r\n{}\r\n0\r\n\r\n", 64 * 1024, "x".repeat(64 * 1024));
    let a = raw(
        s.running.addr(),
        &format!(
            "POST /api/ack HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked{h}",
            s.running.addr()
        ),
        big.as_bytes(),
    );
    assert_eq!(a.status, 413, "{}", a.head);
    // A 1 MiB header.
    let a = raw(
        s.running.addr(),
        &format!(
            "GET /api/state HTTP/1.1\r\nHost: {}\r\nX-Big: {}",
            s.running.addr(),
            "a".repeat(1 << 20)
        ),
        b"",
    );
    assert!(
        a.status == 431 || a.status == 400 || a.status == 0,
        "{}",
        a.head
    );
    assert_eq!(audit_lines(&s), 0);
}

#[test]
fn connections_are_bounded_in_number_and_time() {
    let s = start(Limits {
        max_connections: 2,
        connection_timeout: Duration::from_secs(1),
        ..Limits::default()
    });
    let addr = s.running.addr();
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    // A third is closed at once.
    let mut third = TcpStream::connect(addr).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(third.read(&mut buf).unwrap_or(0), 0);
    // The idle ones are closed after the connection timeout.
    let t = Instant::now();
    for mut c in idle {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(c.read(&mut buf).unwrap_or(0), 0);
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    // And the server still answers.
    let a = raw(
        addr,
        &format!("GET /api/state HTTP/1.1\r\nHost: {addr}"),
        b"",
    );
    assert_eq!(a.status, 401);
}

#[test]
fn a_non_loopback_address_needs_allow_remote() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        listen: "0.0.0.0:0".parse().unwrap(),
        allow_remote: false,
        audit: dir.path().join("a"),
        clinician: "x".into(),
        limits: Limits::default(),
    };
    let e = dashboard::start(cfg.clone(), Arc::new(Mutex::new(Ward::new())));
    assert!(matches!(e, Err(DashboardError::NotLoopback(_))));
    let ok = dashboard::start(
        Config {
            allow_remote: true,
            ..cfg
        },
        Arc::new(Mutex::new(Ward::new())),
    )
    .unwrap();
    ok.stop();
}

#[test]
fn audit_lines_match_the_vector() {
    use aorta_clinician::dashboard::audit::{AuditLine, AuditLog};
    use aorta_clinician::dashboard::model::Alarm;
    let vector = include_str!("../../../docs/vectors/dashboard-audit/ack.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path, &format!("aorta-clinician-1{}", "a".repeat(64))).unwrap();
    let alarm = Alarm {
        id: "DEMO-0002/af/1700000000000000".into(),
        kind: AlarmKind::Af,
        priority: Priority::Medium,
        label: "AFIB",
        start_us: 1_700_000_000_000_000,
        end_us: None,
        acknowledged: false,
        detail: String::new(),
        repeats: 0,
    };
    log.append(&alarm, 1_700_000_005_000_000).unwrap();
    log.append(&alarm, 1_700_000_005_000_000).unwrap();
    let written = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        written,
        format!("{vector}{vector}"),
        "append-only, one line each"
    );
    let line: AuditLine = serde_json::from_str(vector.trim()).unwrap();
    assert_eq!(line.kind, "af");
    let extra = vector.trim().replace("}", ",\"x\":1}");
    assert!(serde_json::from_str::<AuditLine>(&extra).is_err());
}

/// The rhythms issue 15 added reach the ward with monitor priorities:
/// VF, VT and asystole read from the signal are high (red), bigeminy and a
/// ventricular run medium, leads off and noise low (technical); a
/// ventricular run is one event, raised already over; an offset ends its
/// alarm; leads off shows in the tile's signal status.
#[test]
fn ventricular_rhythms_asystole_and_leads_off_get_monitor_priorities() {
    let mut w = Ward::new();
    let now = T0 + 60_000_000;
    w.feed(
        &[
            hr("vt", T0 + 1_000_000, 150.0),
            rhythm(
                "vt",
                T0 + 2_000_000,
                RhythmEventKind::VtOnset { confidence: 0.9 },
            ),
            hr("vf", T0 + 1_000_000, 0.0),
            rhythm("vf", T0 + 2_000_000, RhythmEventKind::VfOnset),
            hr("flat", T0 + 1_000_000, 0.0),
            rhythm("flat", T0 + 2_000_000, RhythmEventKind::AsystoleOnset),
            hr("big", T0 + 1_000_000, 80.0),
            rhythm(
                "big",
                T0 + 2_000_000,
                RhythmEventKind::BigeminyOnset { confidence: 0.8 },
            ),
            hr("run", T0 + 1_000_000, 80.0),
            rhythm(
                "run",
                T0 + 2_000_000,
                RhythmEventKind::VentricularRun {
                    beats: 4,
                    rate_bpm: 90.0,
                    confidence: 0.7,
                },
            ),
            hr("off", T0 + 1_000_000, 70.0),
            rhythm("off", T0 + 2_000_000, RhythmEventKind::SignalLostOnset),
            hr("ok", T0 + 1_000_000, 70.0),
        ],
        now,
    );
    let v = w.view(now);
    let tile = |p: &str| v.tiles.iter().find(|t| t.patient == p).unwrap();
    for (p, kind, label) in [
        ("vt", AlarmKind::Vt, "V-TACH"),
        ("vf", AlarmKind::Vf, "VFIB / VFL"),
        ("flat", AlarmKind::Asystole, "ASYSTOLE"),
    ] {
        let t = tile(p);
        assert_eq!(t.alarms[0].kind, kind, "{p}");
        assert_eq!(t.alarms[0].priority, Priority::High, "{p}");
        assert_eq!(t.rhythm, label, "{p}");
        assert!(t.alarms[0].end_us.is_none(), "{p}: present");
    }
    assert_eq!(tile("big").alarms[0].priority, Priority::Medium);
    let run = &tile("run").alarms[0];
    assert_eq!(
        (run.kind, run.priority),
        (AlarmKind::VentricularRun, Priority::Medium)
    );
    assert!(
        run.end_us.is_some(),
        "a run is one event: raised already over"
    );
    let off = tile("off");
    assert_eq!(
        (off.alarms[0].kind, off.alarms[0].priority),
        (AlarmKind::LeadsOff, Priority::Low)
    );
    assert_eq!(off.signal, "lost");
    assert_eq!(tile("ok").rhythm, "SINUS");
    // High before medium before low before none.
    let rank = |p: &str| v.tiles.iter().position(|t| t.patient == p).unwrap();
    assert!(rank("vt").max(rank("vf")).max(rank("flat")) < rank("big").min(rank("run")));
    assert!(rank("big").max(rank("run")) < rank("off"));
    assert!(rank("off") < rank("ok"));

    // The offsets end the alarms; the leads coming back clears the status.
    w.feed(
        &[
            rhythm("vt", T0 + 9_000_000, RhythmEventKind::VtOffset),
            rhythm("off", T0 + 9_000_000, RhythmEventKind::SignalLostOffset),
        ],
        now,
    );
    let v = w.view(now);
    let tile = |p: &str| v.tiles.iter().find(|t| t.patient == p).unwrap();
    assert!(tile("vt").alarms[0].end_us.is_some());
    assert_eq!(tile("vt").rhythm, "SINUS");
    assert_eq!(tile("off").signal, "ok");
}
