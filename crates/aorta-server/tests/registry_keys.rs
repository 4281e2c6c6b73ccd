//! The broker with device keys from the device key registry: it releases
//! each assigned device's group keys as `SERIAL/INDEX`, nothing of other
//! devices, nothing of unverified or unknown devices, and the released keys
//! open frames sealed by the device code.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

mod common;
use common::*;

use aorta_crypto::frame::{self, ChannelCalibration, FrameHeader, TransportKey};
use aorta_crypto::keys::{self, KeySlice};
use aorta_registry::{PoolConfig, Registry};
use aorta_server::broker::{RegistryKeySource, group_key_name};

struct Fixture {
    _dir: tempfile::TempDir,
    broker: Broker,
    platform: SimAttester,
    measurement: Measurement,
    slices: Vec<KeySlice>,
    groups: Vec<Vec<[u8; 32]>>,
}

/// ECG-1 and ECG-2 provisioned and verified; ECG-3 provisioned, never
/// verified; ECG-9 unknown to the registry.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::init(
        dir.path(),
        PoolConfig {
            pool_keys: 3 * 16,
            slice_len: 16,
        },
    )
    .unwrap();
    let mut slices = Vec::new();
    let mut groups = Vec::new();
    for serial in ["ECG-1", "ECG-2"] {
        let s = reg.provision(serial).unwrap();
        reg.verify(serial, &keys::commitment(&s).unwrap()).unwrap();
        groups.push(
            reg.transport_group_keys(serial)
                .unwrap()
                .iter()
                .map(|g| **g)
                .collect::<Vec<_>>(),
        );
        slices.push(s);
    }
    reg.provision("ECG-3").unwrap();
    drop(reg); // the broker opens the store itself (it is locked while open)
    let mut results = MemoryKeySource::default();
    results.results.insert("dr-a".into(), key(10));
    let source = RegistryKeySource::open(dir.path(), results).unwrap();
    let platform = SimAttester::from_seed(&[42; 32]);
    let measurement = Measurement::of_worker(b"worker-binary", b"worker-config");
    let policy =
        Policy::from_toml_str(&policy_toml(&platform, &measurement, r#"["sim"]"#, true)).unwrap();
    let broker = Broker::with_clock(policy, Arc::new(source), Box::new(|| T0));
    Fixture {
        _dir: dir,
        broker,
        platform,
        measurement,
        slices,
        groups,
    }
}

fn release(
    f: &Fixture,
    assignment: &str,
    devices: &[&str],
) -> (
    WorkerKeypair,
    EvidenceClaims,
    Result<aorta_server::broker::Released, BrokerRefusal>,
) {
    let kp = WorkerKeypair::generate().unwrap();
    let (nonce, issued_at) = f.broker.issue_nonce().unwrap();
    let c = EvidenceClaims {
        backend: Backend::Sim,
        nonce,
        worker_public_key: kp.public_bytes(),
        app_measurement: f.measurement,
        issued_at,
    };
    let ev = f.platform.attest(c).unwrap();
    let r = f.broker.release(&ReleaseRequest {
        evidence: ev.encode(),
        assignment: assignment.into(),
        devices: devices.iter().map(|d| d.to_string()).collect(),
        subscribers: vec![],
    });
    (kp, c, r)
}

#[test]
fn registry_source_releases_group_keys_of_exactly_the_assigned_devices() {
    let f = fixture();
    let (kp, c, r) = release(&f, "ward-a", &[]);
    let rel = r.unwrap();
    assert_eq!(rel.devices, ["ECG-1", "ECG-2"]);
    let bundle = open_bundle(&kp, &c, &rel.sealed).unwrap();
    // 16 group keys per device, named SERIAL/INDEX, equal to the registry's.
    assert_eq!(bundle.transport_keys.len(), 32);
    for (d, serial) in ["ECG-1", "ECG-2"].iter().enumerate() {
        for i in 0..16 {
            let k = bundle
                .transport_key(&group_key_name(serial, i as u16))
                .unwrap_or_else(|| panic!("{serial}/{i} missing"));
            assert_eq!(k.expose(), &f.groups[d][i]);
        }
        // No bare per-device key, no factory key.
        assert!(bundle.transport_key(serial).is_none());
    }
    for (_, k) in &bundle.transport_keys {
        for s in &f.slices {
            assert!(!s.material().windows(32).any(|w| w == k.expose()));
        }
    }
    assert_eq!(bundle.result_key("dr-a"), Some(&key(10)));

    // A subset: only that device's group keys.
    let (kp, c, r) = release(&f, "ward-a", &["ECG-2"]);
    let bundle = open_bundle(&kp, &c, &r.unwrap().sealed).unwrap();
    assert_eq!(bundle.transport_keys.len(), 16);
    assert!(
        bundle
            .transport_keys
            .iter()
            .all(|(n, _)| n.starts_with("ECG-2/"))
    );

    // The released group key opens a frame sealed by the device code, for
    // whatever run epoch the device drew.
    let epoch = [0x5a; 16];
    let dev_key = TransportKey::derive(&f.slices[1], 9, &epoch).unwrap();
    let h = FrameHeader::new("ECG-2", 9, 77, 0, 360_000, 1, 4, epoch).unwrap();
    let cal = [ChannelCalibration::new(200.0, 0, 0, 11, "mV", "MLII")];
    let sealed = frame::seal(&dev_key, &h, &cal, &[&[5, 6, 7, 8][..]]).unwrap();
    let p = frame::parse(&sealed).unwrap();
    let g = bundle.transport_key("ECG-2/9").unwrap();
    let tk = TransportKey::from_group(g.expose(), "ECG-2", 9, &p.header.epoch).unwrap();
    assert_eq!(p.open(&tk).unwrap().samples, vec![vec![5, 6, 7, 8]]);
}

#[test]
fn registry_source_refuses_devices_outside_the_assignment_unverified_and_unknown() {
    let f = fixture();
    let (_, _, r) = release(&f, "ward-a", &["ECG-3"]);
    let e = r.unwrap_err();
    assert!(
        matches!(e, BrokerRefusal::DeviceOutsideAssignment { ref serial, .. } if serial == "ECG-3")
    );
    assert_eq!(e.code(), 303);
    // ward-b holds ECG-3 (provisioned, never verified) and ECG-9 (unknown):
    // the registry releases neither; the broker refuses as a configuration error.
    for d in ["ECG-3", "ECG-9"] {
        let (_, _, r) = release(&f, "ward-b", &[d]);
        let e = r.unwrap_err();
        assert!(
            matches!(e, BrokerRefusal::KeyUnavailable { what: "device", ref id } if id == d),
            "{e:?}"
        );
        assert_eq!(e.code(), 305);
    }
}
