//! The HTTPS API against hostile and broken input, in process over real
//! TLS on loopback: every bad frame gets its 4xx and a JSON reason, nothing
//! is a 5xx or a panic, acknowledged frames are in the log, backpressure
//! answers 503 with Retry-After, worker routes need the token.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::collections::HashMap;
use std::sync::Arc;

use aorta_crypto::frame::{self, ChannelCalibration, FrameHeader, TransportKey};
use aorta_crypto::keys::KeySlice;
use aorta_server::http::{ServerConfig, api, ingest::DeviceDirectory, tls};
use aorta_stream::log::{FileLog, FrameLog};
use proptest::prelude::*;

struct Running {
    url: String,
    client: reqwest::blocking::Client,
    token: String,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn slice(serial: &str) -> KeySlice {
    KeySlice::new(serial, (0..16 * 32).map(|i| (i * 13 + 1) as u8).collect()).unwrap()
}

fn sealed(serial: &str, index: u16, seq: u64, n: usize) -> Vec<u8> {
    let epoch = [9u8; 16];
    let k = TransportKey::derive(&slice(serial), index, &epoch).unwrap();
    let h = FrameHeader::new(
        serial,
        index,
        seq,
        1_000_000 * seq as i64,
        360_000,
        2,
        n as u32,
        epoch,
    )
    .unwrap();
    let cal = vec![ChannelCalibration::new(200.0, 1024, 1024, 11, "mV", "MLII"); 2];
    let a: Vec<i32> = (0..n as i32).map(|i| 1024 + (i * 37 % 91)).collect();
    let b: Vec<i32> = (0..n as i32).map(|i| 1000 - (i * 11 % 53)).collect();
    frame::seal(&k, &h, &cal, &[&a[..], &b[..]]).unwrap()
}

fn start(tweak: impl FnOnce(&mut ServerConfig)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig {
        data_dir: dir.path().join("data"),
        max_frame_bytes: 64 << 10,
        ..ServerConfig::default()
    };
    tweak(&mut cfg);
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let (cert, key, made) = tls::ensure_dev_cert(&cfg.data_dir, &cfg.tls_names).unwrap();
    assert!(made);
    let devices: HashMap<String, (bool, u16)> = [
        ("SN-OK".to_string(), (true, 16u16)),
        ("SN-UNVERIFIED".to_string(), (false, 16u16)),
        ("SN-SMALL".to_string(), (true, 8u16)),
    ]
    .into_iter()
    .collect();
    let devices: Arc<dyn DeviceDirectory> = Arc::new(devices);
    let state = api::open_state(&cfg, devices).unwrap();
    let tls_cfg = tls::server_config(&cert, &key).unwrap();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let max = cfg.max_frame_bytes;
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(std_listener).unwrap();
            api::serve(l, tls_cfg, state, max, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
    });
    let client = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(aorta_api::client_tls_config_file(&cert).unwrap())
        .build()
        .unwrap();
    let token = std::fs::read_to_string(cfg.data_dir.join("worker.token"))
        .unwrap()
        .trim()
        .to_owned();
    Running {
        url: format!("https://{addr}"),
        client,
        token,
        dir,
        stop: Some(tx),
        thread: Some(thread),
    }
}

fn post(r: &Running, body: Vec<u8>) -> (u16, serde_json::Value) {
    let resp = r
        .client
        .post(format!("{}/v1/frames", r.url))
        .body(body)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

#[test]
fn frames_are_acknowledged_once_durable_and_bad_frames_get_their_4xx() {
    let r = start(|_| {});
    let good = sealed("SN-OK", 1, 7, 360);
    let (s, ack) = post(&r, good.clone());
    assert_eq!(s, 200, "{ack}");
    assert_eq!(ack["serial"], "SN-OK");
    assert_eq!(ack["sequence"], 7);
    assert_eq!(ack["duplicate"], false);
    // The acknowledged frame is in the log, whole.
    let log = FileLog::open(r.dir.path().join("data/frames.log")).unwrap();
    let (recs, _) = log.read_from(0, 10).unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(&recs[0][8..], &good[..]);
    // An exact re-send is acknowledged again, not stored twice.
    let (s, ack) = post(&r, good.clone());
    assert_eq!(
        (s, &ack["duplicate"]),
        (200, &serde_json::Value::Bool(true))
    );
    // The same sequence with other bytes is a replay.
    let (s, e) = post(&r, sealed("SN-OK", 2, 7, 360));
    assert_eq!((s, e["error"].as_str()), (409, Some("sequence_replayed")));

    let mut truncated = good.clone();
    truncated.truncate(good.len() - 5);
    let mut bad_version = good.clone();
    bad_version[4] = 99;
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (Vec::new(), 400, "malformed_frame"),
        (b"hello world".to_vec(), 400, "malformed_frame"),
        (truncated, 400, "malformed_frame"),
        (bad_version, 400, "unsupported_version"),
        (sealed("SN-NOBODY", 0, 1, 360), 403, "unknown_device"),
        (
            sealed("SN-UNVERIFIED", 0, 1, 360),
            403,
            "device_not_verified",
        ),
        (sealed("SN-SMALL", 8, 8, 360), 403, "key_index_out_of_range"),
    ];
    for (body, status, name) in cases {
        let (s, e) = post(&r, body);
        assert_eq!(s, status, "{e}");
        assert_eq!(e["error"].as_str(), Some(name), "{e}");
        assert!(e["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    // Larger than max_frame_bytes: 413 before anything is parsed.
    let (s, _) = post(&r, vec![0u8; 70 << 10]);
    assert_eq!(s, 413);
    // Nothing refused reached the log.
    let (recs, _) = FileLog::open(r.dir.path().join("data/frames.log"))
        .unwrap()
        .read_from(0, 10)
        .unwrap();
    assert_eq!(recs.len(), 1);
    // The refusals are counted by name.
    let m = r
        .client
        .get(format!("{}/metrics", r.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(m.contains("aorta_ingest_frames_accepted_total 1"), "{m}");
    assert!(m.contains("aorta_ingest_frames_refused_total{reason=\"unknown_device\"} 1"));
    assert!(m.contains("aorta_ingest_frames_refused_total{reason=\"sequence_replayed\"} 1"));
}

#[test]
fn backpressure_from_a_lagging_worker_is_503_with_retry_after() {
    let r = start(|c| c.max_worker_lag_bytes = 1000);
    // The first frames fit in the allowed lag; then ingest refuses to grow it.
    let mut statuses = Vec::new();
    for seq in 0..6 {
        let resp = r
            .client
            .post(format!("{}/v1/frames", r.url))
            .body(sealed("SN-OK", 0, seq, 360))
            .send()
            .unwrap();
        let s = resp.status().as_u16();
        if s == 503 {
            assert_eq!(
                resp.headers().get("retry-after").unwrap().to_str().unwrap(),
                "1"
            );
        }
        statuses.push(s);
    }
    assert_eq!(statuses[0], 200);
    assert!(statuses.contains(&503), "{statuses:?}");
    // Once the worker checkpoints past the log end, ingest accepts again.
    let end: u64 = std::fs::metadata(r.dir.path().join("data/frames.log"))
        .unwrap()
        .len();
    let cp = aorta_stream::checkpoint::Checkpoint::new(end, b"{}".to_vec()).unwrap();
    let s = r
        .client
        .put(format!("{}/v1/checkpoint", r.url))
        .bearer_auth(&r.token)
        .body(serde_json::to_vec(&cp).unwrap())
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(s, 204);
    let (s, _) = post(&r, sealed("SN-OK", 0, 100, 360));
    assert_eq!(s, 200);
}

#[test]
fn worker_routes_need_the_token_and_refuse_garbage() {
    let r = start(|_| {});
    let get = |path: &str, token: Option<&str>| {
        let mut q = r.client.get(format!("{}{path}", r.url));
        if let Some(t) = token {
            q = q.bearer_auth(t);
        }
        q.send().unwrap().status().as_u16()
    };
    assert_eq!(get("/v1/log?from=0", None), 401);
    assert_eq!(get("/v1/log?from=0", Some("wrong")), 401);
    assert_eq!(get("/v1/checkpoint", None), 401);
    assert_eq!(get("/v1/log?from=0", Some(&r.token)), 200);
    assert_eq!(get("/v1/log?from=999999", Some(&r.token)), 416);
    assert_eq!(get("/v1/log?from=abc", Some(&r.token)), 400);
    assert_eq!(get("/v1/checkpoint", Some(&r.token)), 204);
    assert_eq!(get("/v1/results?after=99999", None), 416);
    assert_eq!(get("/healthz", None), 200);
    let send = |method: reqwest::Method, path: &str, body: &[u8]| {
        r.client
            .request(method, format!("{}{path}", r.url))
            .bearer_auth(&r.token)
            .body(body.to_vec())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    for body in [
        &b""[..],
        b"{",
        b"[]",
        br#"{"results":[{"id":"","body":""}]}"#,
        br#"{"results":[{"id":"a","body":"***"}]}"#,
        br#"{"results":[],"extra":1}"#,
    ] {
        assert_eq!(send(reqwest::Method::POST, "/v1/results", body), 400);
    }
    for body in [
        &b"nope"[..],
        br#"{"version":1,"log_offset":0,"state":"x","crc":1}"#,
        br#"{"version":2,"log_offset":0,"state":"","crc":0}"#,
    ] {
        assert_eq!(send(reqwest::Method::PUT, "/v1/checkpoint", body), 400);
    }
    // A good batch is stored once, a replay of it is counted as duplicate.
    let batch =
        br#"{"results":[{"id":"dr/SN/0/1","body":"AAEC"}],"latencies_us":[1500],"opened":1}"#;
    let ans = r
        .client
        .post(format!("{}/v1/results", r.url))
        .bearer_auth(&r.token)
        .body(batch.to_vec())
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(ans, r#"{"stored":1,"duplicates":0}"#);
    let ans = r
        .client
        .post(format!("{}/v1/results", r.url))
        .bearer_auth(&r.token)
        .body(batch.to_vec())
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(ans, r#"{"stored":0,"duplicates":1}"#);
    let page: serde_json::Value = r
        .client
        .get(format!("{}/v1/results?prefix=dr/", r.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(page["results"][0]["id"], "dr/SN/0/1");
    assert_eq!(page["results"][0]["body"], "AAEC");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    /// Any mutation or truncation of a valid frame gets a 2xx or a 4xx,
    /// never a 5xx, and the server keeps serving.
    #[test]
    fn mutated_frames_never_get_a_5xx(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
        thread_local!(static R: Running = start(|_| {}));
        R.with(|r| {
            let mut f = sealed("SN-OK", 0, 1, 360);
            for (at, b) in &edits {
                let i = at % f.len();
                f[i] ^= b | 1;
            }
            if cut % 3 == 0 {
                f.truncate(cut % f.len());
            }
            let (s, _) = post(r, f);
            prop_assert!(s < 500, "status {}", s);
            let (s, _) = post(r, sealed("SN-OK", 0, 1, 360));
            prop_assert!(s == 200 || s == 409, "good frame after a bad one: {}", s);
            Ok(())
        })?;
    }
}
