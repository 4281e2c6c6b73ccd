//! The offline buffer under random kills: the device process is "killed"
//! (all its in-memory state dropped, then rebuilt from disk) at random points
//! — after sealing before buffering, in the middle of writing a buffered
//! frame, after buffering, and after the server stored a frame but before the
//! device processed the acknowledgement — while the network goes up and
//! down. At the end no buffered sample is lost and none is stored twice.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::collections::BTreeMap;

use aorta_crypto::frame::ChannelCalibration;
use aorta_crypto::keys;
use aorta_device::DeviceError;
use aorta_device::queue::{OfflineQueue, QueueLimits, Transport, UploadReply, flush};
use aorta_device::rotation::Sealer;
use aorta_device::se::FileSecureElement;
use aorta_registry::{PoolConfig, Registry};

const L: usize = 36; // samples per frame

fn source(t: usize) -> i32 {
    ((t * 7919) % 2003) as i32 - 1000
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// The server: the registry plus its durable frame store (first sample index → samples).
struct Server<'a> {
    reg: &'a Registry,
    store: &'a mut BTreeMap<usize, Vec<i32>>,
    stored_twice: &'a mut usize,
    network_up: bool,
    /// Percent chance the device dies after the server stored a frame but
    /// before the acknowledgement is processed.
    die_after_store: u64,
    rng: &'a mut Rng,
}

impl Transport for Server<'_> {
    fn upload(&mut self, frame: &[u8], _signature: &[u8; 64]) -> Result<UploadReply, DeviceError> {
        if !self.network_up {
            return Err(DeviceError::Network("down".into()));
        }
        match self.reg.accept_frame(frame) {
            Ok(acc) => {
                let start = (acc.frame.header.first_sample_us / 1000) as usize;
                if !acc.duplicate
                    && self
                        .store
                        .insert(start, acc.frame.samples[0].clone())
                        .is_some()
                {
                    *self.stored_twice += 1;
                }
                if self.rng.chance(self.die_after_store) {
                    return Err(DeviceError::Network("device killed before the ack".into()));
                }
                Ok(UploadReply::Ack {
                    sequence: acc.frame.header.sequence,
                })
            }
            Err(e) => Ok(UploadReply::Refused {
                sequence: aorta_crypto::frame::parse(frame)
                    .map(|p| p.header.sequence)
                    .unwrap_or(0),
                reason: e.to_string(),
            }),
        }
    }
}

#[test]
fn random_kills_lose_and_duplicate_nothing() {
    let d = tempfile::tempdir().unwrap();
    let reg = Registry::init(
        d.path().join("reg"),
        PoolConfig {
            pool_keys: 120,
            slice_len: 120,
        },
    )
    .unwrap();
    let keys = reg.provision("SN-KILL").unwrap();
    reg.verify("SN-KILL", &keys::commitment(&keys).unwrap())
        .unwrap();
    let dev = aorta_device::DeviceDir::new(d.path());
    let se_path = dev.se();
    FileSecureElement::create(&se_path, keys).unwrap();
    let state = dev.state();
    let qdir = dev.queue();
    let limits = QueueLimits {
        max_bytes: 1 << 30,
        max_frames: 1 << 20,
    };
    let cal = [ChannelCalibration::new(200.0, 0, 0, 11, "mV", "MLII")];

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut store = BTreeMap::new();
    let mut stored_twice = 0usize;
    let mut buffered: Vec<usize> = Vec::new(); // frames whose push completed
    let mut lost_unbuffered = 0usize;
    let mut kills = 0usize;
    let mut refused = Vec::new();

    let boot = || {
        (
            Sealer::new(FileSecureElement::open(&se_path).unwrap(), &state).unwrap(),
            OfflineQueue::open(&qdir, limits).unwrap(),
        )
    };
    let (mut sealer, mut queue) = boot();
    let mut network_up = true;
    let frames = 240;
    for i in 0..frames {
        if rng.chance(10) {
            network_up = !network_up;
        }
        let start = i * L;
        let x: Vec<i32> = (start..start + L).map(source).collect();
        let f = sealer
            .seal((start * 1000) as i64, 1_000_000, &cal, &[&x])
            .unwrap();
        if rng.chance(5) {
            // Killed after sealing, before buffering: these samples were never buffered.
            lost_unbuffered += 1;
            kills += 1;
            (sealer, queue) = boot();
            continue;
        }
        if rng.chance(5) {
            // Killed in the middle of writing the frame to the buffer.
            std::fs::write(
                qdir.join(format!(".{:020}.aof.tmp", f.sequence)),
                &f.bytes[..f.bytes.len() / 2],
            )
            .unwrap();
            lost_unbuffered += 1;
            kills += 1;
            (sealer, queue) = boot();
            continue;
        }
        queue.push(f.sequence, &f.bytes).unwrap();
        buffered.push(start);
        if rng.chance(5) {
            kills += 1;
            (sealer, queue) = boot();
        }
        if rng.chance(30) {
            let mut server = Server {
                reg: &reg,
                store: &mut store,
                stored_twice: &mut stored_twice,
                network_up,
                die_after_store: 15,
                rng: &mut rng,
            };
            match flush(&mut queue, &mut server, sealer.secure_element()) {
                Ok(r) => refused.extend(r.refused),
                Err(DeviceError::Network(why)) => {
                    if why.contains("killed") {
                        kills += 1;
                        (sealer, queue) = boot();
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    // Reconnect for good and drain the buffer, oldest first.
    loop {
        let mut server = Server {
            reg: &reg,
            store: &mut store,
            stored_twice: &mut stored_twice,
            network_up: true,
            die_after_store: 10,
            rng: &mut rng,
        };
        match flush(&mut queue, &mut server, sealer.secure_element()) {
            Ok(r) => {
                refused.extend(r.refused);
                break;
            }
            Err(DeviceError::Network(_)) => {
                kills += 1;
                (sealer, queue) = boot();
            }
            Err(e) => panic!("{e}"),
        }
    }
    let _ = &sealer;
    assert!(refused.is_empty(), "{refused:?}");
    assert!(queue.is_empty());
    assert_eq!(stored_twice, 0, "a frame was stored twice");
    let stored: Vec<usize> = store.keys().copied().collect();
    assert_eq!(
        stored, buffered,
        "buffered frames lost or extra frames stored"
    );
    for (start, samples) in &store {
        let want: Vec<i32> = (*start..start + L).map(source).collect();
        assert_eq!(samples, &want);
    }
    assert!(
        reg.counters().duplicates() > 0,
        "the test never exercised a re-send"
    );
    assert!(kills > 20 && lost_unbuffered > 0, "kills {kills}");
    eprintln!(
        "{frames} frames: {} buffered and stored exactly once, {lost_unbuffered} killed before buffering, {kills} kills, {} re-sends deduplicated",
        buffered.len(),
        reg.counters().duplicates()
    );
}
