//! Shared setup for the broker tests: a sim platform, a policy, in-memory keys.
#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a different part of the shared helpers"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

pub use std::sync::atomic::{AtomicU64, Ordering};
pub use std::sync::{Arc, Mutex};

pub use aorta_base::hex::encode as hex;
pub use aorta_enclave::attest::{Attester, SimAttester};
pub use aorta_enclave::evidence::{Backend, EvidenceBody, EvidenceClaims, Measurement, Nonce};
pub use aorta_enclave::keywrap::{Secret32, open_bundle};
pub use aorta_enclave::verify::Refusal;
pub use aorta_enclave::worker::{self, WorkerKeypair};
pub use aorta_server::broker::policy::Policy;
pub use aorta_server::broker::{Broker, BrokerRefusal, MemoryKeySource, ReleaseRequest};
pub use aorta_worker::client::{ClientError, KeyRequest, Unattested, attest_to_broker};

pub const T0: u64 = 1_800_000_000;

pub struct Setup {
    pub broker: Arc<Broker>,
    pub clock: Arc<AtomicU64>,
    pub platform: SimAttester,
    pub measurement: Measurement,
}

pub fn key(i: u8) -> Secret32 {
    Secret32::from_bytes([i; 32])
}

pub fn policy_toml(
    platform: &SimAttester,
    measurement: &Measurement,
    backends: &str,
    sim: bool,
) -> String {
    format!(
        r#"
        allowed_backends = {backends}
        allow_simulation = {sim}
        allowed_measurements = ["{m}"]
        sim_platform_keys = ["{k}"]
        freshness_secs = 60
        [[assignments]]
        name = "ward-a"
        devices = ["ECG-1", "ECG-2"]
        subscribers = ["dr-a"]
        [[assignments]]
        name = "ward-b"
        devices = ["ECG-3", "ECG-9"]
        subscribers = []
        "#,
        m = measurement.to_hex(),
        k = hex(&platform.platform_public_key()),
    )
}

pub fn setup_with(backends: &str, sim: bool) -> Setup {
    setup_limited(backends, sim, aorta_server::broker::Limits::default())
}

/// [`setup_with`] with the broker's load limits `limits`.
pub fn setup_limited(backends: &str, sim: bool, limits: aorta_server::broker::Limits) -> Setup {
    let platform = SimAttester::from_seed(&[42; 32]);
    let measurement = Measurement::of_worker(b"worker-binary", b"worker-config");
    let policy =
        Policy::from_toml_str(&policy_toml(&platform, &measurement, backends, sim)).unwrap();
    let mut keys = MemoryKeySource::default();
    keys.transport.insert("ECG-1".into(), key(1));
    keys.transport.insert("ECG-2".into(), key(2));
    keys.transport.insert("ECG-3".into(), key(3));
    keys.results.insert("dr-a".into(), key(10));
    let clock = Arc::new(AtomicU64::new(T0));
    let c = Arc::clone(&clock);
    let broker = Arc::new(
        Broker::with_clock(
            policy,
            Arc::new(keys),
            Box::new(move || c.load(Ordering::SeqCst)),
        )
        .with_limits(limits),
    );
    Setup {
        broker,
        clock,
        platform,
        measurement,
    }
}

pub fn setup() -> Setup {
    setup_with(r#"["sim"]"#, true)
}

pub fn claims(s: &Setup, kp: &WorkerKeypair, nonce: Nonce) -> EvidenceClaims {
    EvidenceClaims {
        backend: Backend::Sim,
        nonce,
        worker_public_key: kp.public_bytes(),
        app_measurement: s.measurement,
        issued_at: s.clock.load(Ordering::SeqCst),
    }
}

pub fn request(evidence: Vec<u8>, devices: &[&str]) -> ReleaseRequest {
    ReleaseRequest {
        evidence,
        assignment: "ward-a".into(),
        devices: devices.iter().map(|d| d.to_string()).collect(),
        subscribers: vec![],
    }
}

pub fn evidence_refusal(r: Result<aorta_server::broker::Released, BrokerRefusal>) -> Refusal {
    match r {
        Err(BrokerRefusal::Evidence(e)) => e,
        other => panic!("expected an evidence refusal, got {other:?}"),
    }
}

/// A small AEAD frame format for tests only ("TFR1"), standing in for the
/// device issue's upload frames at the [`worker::FrameOpener`] seam:
/// `"TFR1" | serial (u16 len) | sequence u64 | ChaCha20-Poly1305(samples as
/// i16 LE)` with the header as associated data and the sequence as nonce.
pub struct TestFrames;

pub fn test_header(serial: &str, seq: u64) -> Vec<u8> {
    let mut h = b"TFR1".to_vec();
    h.extend_from_slice(&(serial.len() as u16).to_be_bytes());
    h.extend_from_slice(serial.as_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h
}

fn test_nonce(seq: u64) -> chacha20poly1305::Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_be_bytes());
    chacha20poly1305::Nonce::from(n)
}

pub fn seal_test_frame(key: &Secret32, serial: &str, seq: u64, samples: &[i32]) -> Vec<u8> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    let header = test_header(serial, seq);
    let pt: Vec<u8> = samples
        .iter()
        .flat_map(|s| (*s as i16).to_le_bytes())
        .collect();
    let c = chacha20poly1305::ChaCha20Poly1305::new(&(*key.expose()).into());
    let ct = c
        .encrypt(
            &test_nonce(seq),
            Payload {
                msg: &pt,
                aad: &header,
            },
        )
        .unwrap();
    let mut out = header;
    out.extend_from_slice(&ct);
    out
}

impl worker::FrameOpener for TestFrames {
    fn serial(&self, frame: &[u8]) -> Result<String, worker::FrameRefusal> {
        let bad = || worker::FrameRefusal {
            code: 201,
            reason: "malformed test frame header".into(),
        };
        if frame.get(..4) != Some(b"TFR1") {
            return Err(bad());
        }
        let n = u16::from_be_bytes(frame.get(4..6).ok_or_else(bad)?.try_into().unwrap()) as usize;
        let s = frame.get(6..6 + n).ok_or_else(bad)?;
        String::from_utf8(s.to_vec()).map_err(|_| bad())
    }

    fn open(
        &self,
        frame: &[u8],
        key: &Secret32,
    ) -> Result<worker::WorkerFrame, worker::FrameRefusal> {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        let serial = self.serial(frame)?;
        let hl = 6 + serial.len() + 8;
        let bad = || worker::FrameRefusal {
            code: 202,
            reason: "test frame does not authenticate".into(),
        };
        let header = frame.get(..hl).ok_or_else(bad)?;
        let seq = u64::from_be_bytes(header[hl - 8..].try_into().unwrap());
        let c = chacha20poly1305::ChaCha20Poly1305::new(&(*key.expose()).into());
        let pt = zeroize::Zeroizing::new(
            c.decrypt(
                &test_nonce(seq),
                Payload {
                    msg: &frame[hl..],
                    aad: header,
                },
            )
            .map_err(|_| bad())?,
        );
        let samples = pt
            .chunks_exact(2)
            .map(|c| i32::from(i16::from_le_bytes([c[0], c[1]])))
            .collect();
        Ok(worker::WorkerFrame {
            codec: 0,
            serial,
            sequence: seq,
            first_sample_us: 0,
            sample_rate_hz: 0.0,
            channels: 1,
            calibration: Vec::new(),
            samples: zeroize::Zeroizing::new(samples),
        })
    }
}

/// Log output captured in memory (every event a [`capture_logs`] dispatch saw).
#[derive(Clone, Default)]
pub struct LogBuf(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuf {
    /// Everything logged so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

/// A `tracing` dispatch that writes every event at `level` or above, without
/// colours, into the returned buffer.
pub fn capture_logs(level: tracing::Level) -> (LogBuf, tracing::Dispatch) {
    let logs = LogBuf::default();
    let l2 = logs.clone();
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || l2.clone())
            .finish(),
    );
    (logs, dispatch)
}

/// Serves `connections` connections of the setup's broker (clock set to now)
/// on a loopback port, logging to `dispatch`: the address and the thread.
pub fn serve_broker_tcp(
    s: &Setup,
    dispatch: &tracing::Dispatch,
    connections: usize,
) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    s.clock.store(aorta_base::time::now_s(), Ordering::SeqCst);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let b = Arc::clone(&s.broker);
    let d2 = dispatch.clone();
    let server = std::thread::spawn(move || {
        tracing::dispatcher::with_default(&d2, || {
            for _ in 0..connections {
                let (mut c, _) = listener.accept().unwrap();
                b.handle_connection(&mut c).unwrap();
            }
        })
    });
    (addr, server)
}
