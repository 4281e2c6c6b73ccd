//! Attestation + key release round trip with the sim backend:
//! challenge → evidence (Ed25519 sign) → broker verify → HPKE seal of the
//! assignment's keys → worker opens. In process, and over loopback TCP
//! (handshake + two request/response pairs, one connection per round trip).
//! `registry/*`: the same in process with device keys from a real device key
//! registry (120 group keys derived and released per device).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "a benchmark's setup fails loudly: unwrap, expect and indexing stop the run"
)]

use std::sync::Arc;

use aorta_base::hex::encode as hex;
use aorta_enclave::attest::{Attester, SimAttester};
use aorta_enclave::evidence::{Backend, EvidenceClaims, Measurement};
use aorta_enclave::keywrap::{Secret32, open_bundle};
use aorta_enclave::worker::WorkerKeypair;
use aorta_server::broker::policy::Policy;
use aorta_server::broker::{Broker, KeySource, MemoryKeySource, RegistryKeySource, ReleaseRequest};
use aorta_worker::client::{self as worker, KeyRequest, Unattested};
use criterion::{Criterion, criterion_group, criterion_main};

fn broker(devices: usize) -> (Arc<Broker>, SimAttester, Measurement) {
    let mut keys = MemoryKeySource::default();
    for i in 0..devices {
        keys.transport
            .insert(format!("ECG-{i}"), Secret32::from_bytes([i as u8; 32]));
    }
    keys.results
        .insert("dr".into(), Secret32::from_bytes([7; 32]));
    broker_with(devices, Arc::new(keys))
}

/// A registry with `devices` verified devices of 120 keys; the directory
/// lives as long as the returned guard.
fn registry_source(devices: usize) -> (tempfile::TempDir, RegistryKeySource) {
    let dir = tempfile::tempdir().unwrap();
    let reg = aorta_registry::Registry::init(
        dir.path(),
        aorta_registry::PoolConfig {
            pool_keys: 120 * devices as u64,
            slice_len: 120,
        },
    )
    .unwrap();
    for i in 0..devices {
        let serial = format!("ECG-{i}");
        let s = reg.provision(&serial).unwrap();
        reg.verify(&serial, &aorta_crypto::keys::commitment(&s).unwrap())
            .unwrap();
    }
    drop(reg);
    let mut results = MemoryKeySource::default();
    results
        .results
        .insert("dr".into(), Secret32::from_bytes([7; 32]));
    let src = RegistryKeySource::open(dir.path(), results).unwrap();
    (dir, src)
}

fn broker_with(
    devices: usize,
    keys: Arc<dyn KeySource>,
) -> (Arc<Broker>, SimAttester, Measurement) {
    let platform = SimAttester::from_seed(&[42; 32]);
    let m = Measurement::of_worker(b"bin", b"cfg");
    let devs: Vec<String> = (0..devices).map(|i| format!("\"ECG-{i}\"")).collect();
    let policy = Policy::from_toml_str(&format!(
        "allowed_backends = [\"sim\"]\nallow_simulation = true\nallowed_measurements = [\"{}\"]\nsim_platform_keys = [\"{}\"]\n[[assignments]]\nname = \"w\"\ndevices = [{}]\nsubscribers = [\"dr\"]\n",
        m.to_hex(),
        hex(&platform.platform_public_key()),
        devs.join(",")
    ))
    .unwrap();
    (Arc::new(Broker::new(policy, keys)), platform, m)
}

fn release_once(b: &Broker, platform: &SimAttester, m: Measurement) -> usize {
    let kp = WorkerKeypair::generate().unwrap();
    let (nonce, _) = b.issue_nonce().unwrap();
    let claims = EvidenceClaims {
        backend: Backend::Sim,
        nonce,
        worker_public_key: kp.public_bytes(),
        app_measurement: m,
        issued_at: aorta_base::time::now_s(),
    };
    let ev = platform.attest(claims).unwrap();
    let rel = b
        .release(&ReleaseRequest {
            evidence: ev.encode(),
            assignment: "w".into(),
            devices: vec![],
            subscribers: vec![],
        })
        .unwrap();
    open_bundle(&kp, &claims, &rel.sealed)
        .unwrap()
        .transport_keys
        .len()
}

fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("attest_release");
    for devices in [1usize, 100] {
        let (b, platform, m) = broker(devices);
        g.bench_function(format!("in_process/{devices}_devices"), |bench| {
            bench.iter(|| {
                let kp = WorkerKeypair::generate().unwrap();
                let (nonce, _) = b.issue_nonce().unwrap();
                let claims = EvidenceClaims {
                    backend: Backend::Sim,
                    nonce,
                    worker_public_key: kp.public_bytes(),
                    app_measurement: m,
                    issued_at: aorta_base::time::now_s(),
                };
                let ev = platform.attest(claims).unwrap();
                let rel = b
                    .release(&ReleaseRequest {
                        evidence: ev.encode(),
                        assignment: "w".into(),
                        devices: vec![],
                        subscribers: vec![],
                    })
                    .unwrap();
                let bundle = open_bundle(&kp, &claims, &rel.sealed).unwrap();
                assert_eq!(bundle.transport_keys.len(), devices);
            })
        });
    }
    for devices in [1usize, 100] {
        let (_dir, src) = registry_source(devices);
        let (b, platform, m) = broker_with(devices, Arc::new(src));
        g.bench_function(format!("registry/{devices}_devices"), |bench| {
            bench.iter(|| assert_eq!(release_once(&b, &platform, m), 120 * devices))
        });
    }
    let (b, platform, m) = broker(1);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let b2 = Arc::clone(&b);
    std::thread::spawn(move || aorta_server::broker::serve(listener, b2));
    let req = KeyRequest {
        assignment: "w".into(),
        devices: vec![],
        subscribers: vec![],
    };
    g.bench_function("loopback_tcp/1_devices", |bench| {
        bench.iter(|| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_nodelay(true).unwrap();
            let w = Unattested::new(m).unwrap();
            let ready = worker::attest_to_broker(&mut s, w, &platform, &req).unwrap();
            assert_eq!(ready.keys().transport_keys.len(), 1);
        })
    });
    g.finish();
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
