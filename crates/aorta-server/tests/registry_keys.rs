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
    broker: Arc<Broker>,
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
    let broker = Arc::new(Broker::with_clock(
        policy,
        Arc::new(source),
        Box::new(|| T0),
    ));
    Fixture {
        _dir: dir,
        broker,
        platform,
        measurement,
        slices,
        groups,
    }
}

/// A fresh worker key pair, its claims for a nonce of `f`'s broker, and
/// the sim evidence for them.
fn attested(f: &Fixture) -> (WorkerKeypair, EvidenceClaims, Vec<u8>) {
    let kp = WorkerKeypair::generate().unwrap();
    let (nonce, issued_at) = f.broker.issue_nonce().unwrap();
    let c = EvidenceClaims {
        backend: Backend::Sim,
        nonce,
        worker_public_key: kp.public_bytes(),
        app_measurement: f.measurement,
        issued_at,
    };
    let ev = f.platform.attest(c).unwrap().encode();
    (kp, c, ev)
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
    let (kp, c, evidence) = attested(f);
    let r = f.broker.release(&ReleaseRequest {
        evidence,
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

fn release_windowed(
    f: &Fixture,
    width: u16,
    devices: aorta_enclave::wire::DeviceSelection,
) -> (
    WorkerKeypair,
    EvidenceClaims,
    Result<aorta_server::broker::Released, BrokerRefusal>,
) {
    let (kp, c, evidence) = attested(f);
    let r = f
        .broker
        .release_windowed(&aorta_server::broker::WindowRequest {
            evidence,
            assignment: "ward-a".into(),
            width,
            devices,
            subscribers: vec![],
        });
    (kp, c, r)
}

/// Key windows (issue 11, item 4): a worker asking for a window holds only
/// those key indices of each device — wrapping around the slice as the
/// device's rotation does — and learns each device's slice length; pages
/// cover the assignment's devices once each, in serial order.
#[test]
fn key_windows_release_only_the_indices_asked_for_and_pages_cover_the_assignment() {
    use aorta_enclave::wire::DeviceSelection::{Listed, Page};
    let f = fixture();
    let (kp, c, r) = release_windowed(&f, 3, Listed(vec![("ECG-2".into(), 14)]));
    let rel = r.unwrap();
    assert_eq!(rel.devices, ["ECG-2"]);
    let b = open_bundle(&kp, &c, &rel.sealed).unwrap();
    let names: Vec<&str> = b
        .transport_keys
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !n.starts_with('@'))
        .collect();
    assert_eq!(names, ["ECG-2/14", "ECG-2/15", "ECG-2/0"]);
    for (i, name) in [14usize, 15, 0].iter().zip(&names) {
        assert_eq!(b.transport_key(name).unwrap().expose(), &f.groups[1][*i]);
    }
    assert_eq!(b.slices, [("ECG-2".to_owned(), 16)]);
    assert_eq!(b.result_key("dr-a"), Some(&key(10)));

    // Pages of one device: ECG-1, then ECG-2, then an empty last page.
    let mut after = String::new();
    let mut seen = Vec::new();
    loop {
        let (kp, c, r) = release_windowed(
            &f,
            2,
            Page {
                after: after.clone(),
                max: 1,
            },
        );
        let rel = r.unwrap();
        let b = open_bundle(&kp, &c, &rel.sealed).unwrap();
        let devices: Vec<&str> = b
            .transport_keys
            .iter()
            .filter_map(|(n, _)| n.split_once('/').map(|(s, _)| s))
            .collect();
        assert_eq!(devices.len(), 2 * rel.devices.len(), "{devices:?}");
        seen.extend(rel.devices.iter().cloned());
        match rel.devices.last() {
            Some(last) => after = last.clone(),
            None => break,
        }
    }
    assert_eq!(seen, ["ECG-1", "ECG-2"]);

    // A window at least the slice's length is the whole slice (version 2).
    let (kp, c, r) = release_windowed(&f, 16, Listed(vec![("ECG-1".into(), 5)]));
    let b = open_bundle(&kp, &c, &r.unwrap().sealed).unwrap();
    assert_eq!(b.transport_keys.len(), 16);
    assert!(b.slices.is_empty());
}

/// What a window request cannot get: devices outside the assignment, an
/// index outside the slice, a device twice, or a width or page of 0.
#[test]
fn malformed_key_windows_are_refused_with_their_own_code() {
    use aorta_enclave::wire::DeviceSelection::{Listed, Page};
    let f = fixture();
    let code = |width, sel| release_windowed(&f, width, sel).2.unwrap_err().code();
    assert_eq!(
        code(2, Listed(vec![("ECG-3".into(), 0)])),
        aorta_crypto::refusal::BROKER_DEVICE_OUTSIDE_ASSIGNMENT
    );
    for (width, sel) in [
        (2, Listed(vec![("ECG-1".into(), 16)])),
        (2, Listed(vec![("ECG-1".into(), 0), ("ECG-1".into(), 1)])),
        (0, Listed(vec![("ECG-1".into(), 0)])),
        (
            2,
            Page {
                after: String::new(),
                max: 0,
            },
        ),
    ] {
        assert_eq!(
            code(width, sel.clone()),
            aorta_crypto::refusal::BROKER_BAD_WINDOW,
            "{width} {sel:?}"
        );
    }
}

/// Frame `sequence` of `serial` (slice `s`) sealed by the device code with
/// key index `index`.
fn sealed_frame(s: &KeySlice, serial: &str, index: u16, sequence: u64) -> Vec<u8> {
    let epoch = [0x5a; 16];
    let dev_key = TransportKey::derive(s, index, &epoch).unwrap();
    let t0 = sequence as i64 * 1_000_000;
    let h = FrameHeader::new(serial, index, sequence, t0, 360_000, 1, 4, epoch).unwrap();
    let cal = [ChannelCalibration::new(200.0, 0, 0, 11, "mV", "MLII")];
    frame::seal(&dev_key, &h, &cal, &[&[5, 6, 7, 8][..]]).unwrap()
}

/// The worker's side of key windows: it starts with a window of 2 indices
/// per device, and as a device's frames rotate through its whole slice
/// (and wrap) it fetches the moved window before the batch is opened — no
/// frame is refused for a key the broker would release, and the worker
/// never holds more than one window per device. A frame naming an index
/// outside the slice fetches nothing; a fetch that fails fails the batch
/// (to be retried), opening nothing.
#[test]
fn the_worker_fetches_moved_key_windows_before_opening_and_holds_one_window_per_device() {
    use aorta_enclave::wire::DeviceSelection::{Listed, Page};
    use aorta_stream::job::FrameOpen;
    use aorta_worker::client::attest_to_broker_windowed;
    use aorta_worker::frames::SecureFrames;
    use std::os::unix::net::UnixStream;

    let f = fixture();
    let exchange = {
        let broker = Arc::clone(&f.broker);
        let m = f.measurement;
        move |sel: aorta_enclave::wire::DeviceSelection| {
            let (mut worker_side, mut broker_side) = UnixStream::pair().unwrap();
            let b = Arc::clone(&broker);
            let t = std::thread::spawn(move || {
                let _ = b.handle_connection(&mut broker_side);
            });
            let platform = SimAttester::from_seed(&[42; 32]);
            let r = attest_to_broker_windowed(
                &mut worker_side,
                Unattested::new(m).unwrap(),
                &platform,
                "ward-a",
                2,
                sel,
            );
            drop(worker_side);
            t.join().unwrap();
            r
        }
    };
    let first = exchange(Page {
        after: String::new(),
        max: 100,
    })
    .unwrap();
    assert_eq!(first.keys().slices.len(), 2);
    let fetches = Arc::new(AtomicU64::new(0));
    let (fetch_exchange, counter) = (exchange.clone(), Arc::clone(&fetches));
    let mut frames = SecureFrames::new(first).with_key_windows(
        2,
        Box::new(move |wants: &[(String, u16)]| {
            counter.fetch_add(1, Ordering::Relaxed);
            fetch_exchange(Listed(wants.to_vec()))
                .map(|r| vec![r])
                .map_err(|e| aorta_worker::WorkerError::Peer(e.to_string()))
        }),
    );
    let held = |frames: &SecureFrames, serial: &str| {
        frames
            .ready()
            .keys()
            .transport_keys
            .iter()
            .filter(|(n, _)| n.starts_with(&format!("{serial}/")))
            .count()
    };
    // ECG-1 walks its whole slice of 16 and wraps; ECG-2 stays at 0.
    let mut seq = 0;
    for index in (0..16u16).chain([0, 1]) {
        let batch = [
            sealed_frame(&f.slices[0], "ECG-1", index, seq),
            sealed_frame(&f.slices[1], "ECG-2", 0, seq),
        ];
        seq += 1;
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        frames.prepare(&refs).unwrap();
        for fr in &batch {
            let o = frames
                .open(fr)
                .unwrap_or_else(|r| panic!("index {index}: refused {} {}", r.code, r.reason));
            assert_eq!(o.position.unwrap().slice_len, 16);
        }
        assert_eq!(held(&frames, "ECG-1"), 2, "index {index}");
        assert_eq!(held(&frames, "ECG-2"), 2, "index {index}");
    }
    // A window of 2 starts at the frame's index: one fetch each time the
    // device moves past it (at 2, 4, …, 14, then the wrap to 0).
    let moved = fetches.load(Ordering::Relaxed);
    assert_eq!(moved, 8);
    assert_eq!(frames.window_refreshes(), moved);

    // An index outside the slice fetches nothing and is refused (200).
    let bogus = {
        let mut fr = sealed_frame(&f.slices[0], "ECG-1", 3, seq);
        // key_index is bytes 6..8 of the header (docs/frame-format.md);
        // rewrite it to 40 (the frame no longer authenticates, and must
        // not get that far).
        assert_eq!(&fr[6..8], &3u16.to_be_bytes());
        fr[6..8].copy_from_slice(&40u16.to_be_bytes());
        assert_eq!(frame::parse(&fr).unwrap().header.key_index, 40);
        fr
    };
    frames.prepare(&[&bogus]).unwrap();
    assert_eq!(fetches.load(Ordering::Relaxed), moved);
    assert_eq!(
        frames.open(&bogus).unwrap_err().code,
        aorta_crypto::refusal::FRAME_NO_KEY
    );

    // A failing fetch fails the batch before anything is opened.
    let mut failing = SecureFrames::new(
        exchange(Page {
            after: String::new(),
            max: 100,
        })
        .unwrap(),
    )
    .with_key_windows(
        2,
        Box::new(|_: &[(String, u16)]| {
            Err(aorta_worker::WorkerError::Peer("broker unreachable".into()))
        }),
    );
    let later = sealed_frame(&f.slices[0], "ECG-1", 7, seq + 1);
    assert!(failing.prepare(&[&later]).is_err());
    assert_eq!(failing.window_refreshes(), 0);
}
