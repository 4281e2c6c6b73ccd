//! The in-process HTTPS server the HTTP tests drive: a temporary data
//! directory, a directory of test devices, real TLS on loopback.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the shared helpers"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::sync::Arc;

use aorta_crypto::auth::{SigningKey, WorkerCert};
use aorta_crypto::directory::{Directory, Entry, Status};
use aorta_crypto::frame::{self, ChannelCalibration, FrameHeader, TransportKey};
use aorta_crypto::keys::KeySlice;
use aorta_server::http::{ServerConfig, api, ingest::DeviceDirectory, tls};

pub struct Running {
    pub url: String,
    pub client: reqwest::blocking::Client,
    pub token: String,
    /// The data directory.
    pub data: std::path::PathBuf,
    /// The temporary directory holding it, when [`start`] made one.
    dir: Option<tempfile::TempDir>,
    /// The server state (limits, budgets, connections).
    pub state: Arc<api::AppState>,
    /// The certificate clients pin.
    pub cert: std::path::PathBuf,
    /// The address served.
    pub addr: std::net::SocketAddr,
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

/// The device's signing key (deterministic per serial in this test).
pub fn device_key(serial: &str) -> SigningKey {
    let d = ring::digest::digest(&ring::digest::SHA256, serial.as_bytes());
    SigningKey::from_seed(d.as_ref().try_into().unwrap()).unwrap()
}

/// A clinician's authentication key (deterministic per name here).
pub fn clinician_key(name: &str) -> SigningKey {
    let d = ring::digest::digest(
        &ring::digest::SHA256,
        format!("clinician {name}").as_bytes(),
    );
    SigningKey::from_seed(d.as_ref().try_into().unwrap()).unwrap()
}

/// `GET path_and_query` signed as clinician `who` with `key` at `time`.
pub fn read_as(r: &Running, who: &str, key: &SigningKey, pq: &str, time: u64) -> (u16, String) {
    let sig = key.sign(&aorta_crypto::auth::read_message(who, time, pq));
    let resp = r
        .client
        .get(format!("{}{pq}", r.url))
        .header(aorta_api::CLINICIAN_HEADER, who)
        .header(aorta_api::TIME_HEADER, time.to_string())
        .header(aorta_api::SIGNATURE_HEADER, aorta_base::hex::encode(&sig))
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

/// The broker's certifying key this test's server pins.
pub fn broker_key() -> SigningKey {
    SigningKey::from_seed(&[0x42; 32]).unwrap()
}

/// A `sim` worker's result-signing key and the certificate [`broker_key`]
/// issued it for an hour, for results sealed to `subscribers`.
pub fn worker_cert(subscribers: &[&str]) -> (SigningKey, WorkerCert) {
    let worker = SigningKey::from_seed(&[7u8; 32]).unwrap();
    let now = aorta_base::time::now_s();
    let subscribers: Vec<String> = subscribers.iter().map(|s| (*s).to_owned()).collect();
    let cert = WorkerCert::issue(
        &broker_key(),
        worker.public(),
        now - 10,
        now + 3600,
        false,
        "sim",
        &[1; 32],
        "ward-a",
        &subscribers,
    );
    (worker, cert)
}

pub fn entry(status: Status, slice_len: u16, key: bool, serial: &str) -> Entry {
    Entry {
        status,
        slice_len,
        min_key_uses: 1000,
        public_key: key.then(|| device_key(serial).public()),
    }
}

pub fn slice(serial: &str) -> KeySlice {
    KeySlice::new(serial, (0..16 * 32).map(|i| (i * 13 + 1) as u8).collect()).unwrap()
}

pub fn sealed(serial: &str, index: u16, seq: u64, n: usize) -> Vec<u8> {
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

/// The header of a frame of listed device `serial` that declares a whole
/// length of `total` bytes: what an attacker who read the public directory
/// sends first, so that the server must read the body up to its signature
/// check (`Ingest::precheck` refuses anything else at the first bytes).
pub fn frame_head(serial: &str, total: usize) -> Vec<u8> {
    let h = FrameHeader::new(serial, 0, 0, 0, 360_000, 2, 40, [9u8; 16]).unwrap();
    let n = h.encode_with_len(0).len();
    let head = h.encode_with_len((total - n) as u32);
    assert_eq!(frame::parse_prefix(&head).unwrap().unwrap().len, total);
    head
}

/// A frame of `serial` at sequence `seq` (key index 1) whose samples vary,
/// so that it does not compress to nothing (about 2 KB).
pub fn sealed_varied(serial: &str, seq: u64) -> Vec<u8> {
    let epoch = [9u8; 16];
    let k = TransportKey::derive(&slice(serial), 1, &epoch).unwrap();
    let n = 900;
    let h = FrameHeader::new(
        serial,
        1,
        seq,
        1_000_000 * seq as i64,
        360_000,
        2,
        n as u32,
        epoch,
    )
    .unwrap();
    let cal = vec![ChannelCalibration::new(200.0, 1024, 1024, 11, "mV", "MLII"); 2];
    let a: Vec<i32> = (0..n as i64)
        .map(|i| ((i * 7919 + seq as i64 * 104_729) % 2001) as i32 - 1000)
        .collect();
    let b: Vec<i32> = a.iter().rev().map(|v| v / 2).collect();
    frame::seal(&k, &h, &cal, &[&a[..], &b[..]]).unwrap()
}

/// A directory listing `serials`, each verified with its [`device_key`].
pub fn directory_of(serials: &[&str]) -> Arc<dyn DeviceDirectory> {
    let mut d = Directory::default();
    for s in serials {
        d.devices
            .insert((*s).to_owned(), entry(Status::Verified, 16, true, s));
    }
    Arc::new(d)
}

/// The signature header value of `frame` by its device.
pub fn signature_of(serial: &str, frame: &[u8]) -> String {
    aorta_base::hex::encode(&device_key(serial).sign(&aorta_crypto::auth::frame_message(frame)))
}

pub fn start(tweak: impl FnOnce(&mut ServerConfig)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig {
        data_dir: dir.path().join("data"),
        max_frame_bytes: 64 << 10,
        ..ServerConfig::default()
    };
    let clinicians = dir.path().join("clinicians.toml");
    std::fs::write(
        &clinicians,
        format!(
            "[clinicians]\ndr = \"{}\"\nother = \"{}\"\n",
            aorta_base::hex::encode(&clinician_key("dr").public()),
            aorta_base::hex::encode(&clinician_key("other").public())
        ),
    )
    .unwrap();
    cfg.clinicians = Some(clinicians);
    tweak(&mut cfg);
    let mut devices = Directory::default();
    for (serial, e) in [
        ("SN-OK", entry(Status::Verified, 16, true, "SN-OK")),
        ("SN-OTHER", entry(Status::Verified, 16, true, "SN-OTHER")),
        (
            "SN-UNVERIFIED",
            entry(Status::Unverified, 16, true, "SN-UNVERIFIED"),
        ),
        ("SN-SMALL", entry(Status::Verified, 8, true, "SN-SMALL")),
        ("SN-REVOKED", entry(Status::Revoked, 16, true, "SN-REVOKED")),
        (
            "SN-KEYLESS",
            entry(Status::Verified, 16, false, "SN-KEYLESS"),
        ),
    ] {
        devices.devices.insert(serial.to_owned(), e);
    }
    let devices: Arc<dyn DeviceDirectory> = Arc::new(devices);
    let mut r = serve_at(&cfg, devices, Some(broker_key().public()));
    r.dir = Some(dir);
    r
}

/// Serves `cfg` (its data directory made if needed) with `devices`, pinning
/// `broker_key`: the in-process server the HTTP tests drive.
pub fn serve_at(
    cfg: &ServerConfig,
    devices: Arc<dyn DeviceDirectory>,
    broker_key: Option<[u8; 32]>,
) -> Running {
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let state = api::open_state(cfg, devices, broker_key).unwrap();
    serve_state(cfg, state)
}

/// Serves an already opened `state` of `cfg` (e.g. one with the
/// renegotiation service).
pub fn serve_state(cfg: &ServerConfig, state: Arc<api::AppState>) -> Running {
    let (cert, key, _) = tls::ensure_dev_cert(&cfg.data_dir, &cfg.tls_names).unwrap();
    let served = state.clone();
    let tls_cfg = tls::server_config(&cert, &key).unwrap();
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(std_listener).unwrap();
            api::serve(l, tls_cfg, served, async {
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
        state,
        cert: cert.clone(),
        addr,
        url: format!("https://{addr}"),
        client,
        token,
        data: cfg.data_dir.clone(),
        dir: None,
        stop: Some(tx),
        thread: Some(thread),
    }
}

/// Posts `body` signed by the device it names (as the device does).
pub fn post(r: &Running, body: Vec<u8>) -> (u16, serde_json::Value) {
    let serial = frame::parse(&body)
        .map(|p| p.header.serial)
        .unwrap_or_default();
    let sig = device_key(&serial).sign(&aorta_crypto::auth::frame_message(&body));
    post_with(r, body, Some(&aorta_base::hex::encode(&sig)))
}

/// Posts `body` with `signature` as the `Aorta-Signature` header.
pub fn post_with(r: &Running, body: Vec<u8>, signature: Option<&str>) -> (u16, serde_json::Value) {
    let mut q = r.client.post(format!("{}/v1/frames", r.url));
    if let Some(sig) = signature {
        q = q.header(aorta_api::SIGNATURE_HEADER, sig);
    }
    let resp = q.body(body).send().unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// The server's `GET /metrics` text (HTTPS port).
pub fn metrics(r: &Running) -> String {
    r.client
        .get(format!("{}/metrics", r.url))
        .send()
        .unwrap()
        .text()
        .unwrap()
}

/// The value of the unlabelled sample `name` in a metrics text.
pub fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}
