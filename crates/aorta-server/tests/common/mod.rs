//! Shared setup for the broker tests: a sim platform, a policy, in-memory keys.
#![allow(dead_code, unused_imports)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub use std::sync::atomic::{AtomicU64, Ordering};
pub use std::sync::{Arc, Mutex};

pub use aorta_enclave::attest::{Attester, SimAttester};
pub use aorta_enclave::evidence::{Backend, EvidenceBody, EvidenceClaims, Measurement, Nonce, hex};
pub use aorta_enclave::keywrap::{Secret32, open_bundle};
pub use aorta_enclave::verify::Refusal;
pub use aorta_enclave::worker::{self, ClientError, KeyRequest, Unattested, WorkerKeypair};
pub use aorta_server::broker::policy::Policy;
pub use aorta_server::broker::{Broker, BrokerRefusal, MemoryKeySource, ReleaseRequest};

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
    let broker = Arc::new(Broker::with_clock(
        policy,
        Arc::new(keys),
        Box::new(move || c.load(Ordering::SeqCst)),
    ));
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
