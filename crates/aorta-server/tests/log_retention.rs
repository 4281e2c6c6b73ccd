//! Retention of the frame log under real ingest: segments are deleted only
//! once the worker's checkpoint has passed them and their time expired;
//! offsets stay global; a deleted offset is a typed error; a restart opens
//! the remaining segments.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aorta_crypto::auth::SigningKey;
use aorta_crypto::directory::{Directory, Entry, Status};
use aorta_crypto::frame::{self, ChannelCalibration, FrameHeader, TransportKey};
use aorta_crypto::keys::KeySlice;
use aorta_server::http::ingest::{DeviceDirectory, Ingest, Retention};
use aorta_stream::StreamError;
use aorta_stream::log::segments;

const SERIAL: &str = "SN-FULL";

fn device_key() -> SigningKey {
    let d = ring::digest::digest(&ring::digest::SHA256, SERIAL.as_bytes());
    SigningKey::from_seed(d.as_ref().try_into().unwrap()).unwrap()
}

fn sealed(seq: u64) -> Vec<u8> {
    let slice = KeySlice::new(SERIAL, (0..16 * 32).map(|i| (i * 13 + 1) as u8).collect()).unwrap();
    let epoch = [9u8; 16];
    let k = TransportKey::derive(&slice, 1, &epoch).unwrap();
    let n = 900;
    let h = FrameHeader::new(
        SERIAL,
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
    // Varied samples: the frame does not compress to nothing.
    let a: Vec<i32> = (0..n as i64)
        .map(|i| ((i * 7919 + seq as i64 * 104_729) % 2001) as i32 - 1000)
        .collect();
    let b: Vec<i32> = a.iter().rev().map(|v| v / 2).collect();
    frame::seal(&k, &h, &cal, &[&a[..], &b[..]]).unwrap()
}

fn devices() -> Arc<dyn DeviceDirectory> {
    let mut d = Directory::default();
    d.devices.insert(
        SERIAL.to_owned(),
        Entry {
            status: Status::Verified,
            slice_len: 16,
            min_key_uses: 100_000,
            public_key: Some(device_key().public()),
        },
    );
    Arc::new(d)
}

fn submit(rt: &tokio::runtime::Runtime, ingest: &Ingest, seq: u64) -> u64 {
    let body = sealed(seq);
    let sig =
        aorta_base::hex::encode(&device_key().sign(&aorta_crypto::auth::frame_message(&body)));
    let ack = rt.block_on(ingest.submit(1, &body, Some(&sig))).unwrap();
    assert!(!ack.duplicate);
    ack.offset
}

fn retention() -> Retention {
    Retention {
        segment_bytes: 2 << 10,
        keep: Some(Duration::ZERO),
        check_every: Duration::from_millis(20),
    }
}

#[test]
fn segments_go_only_once_the_checkpoint_passed_them_and_offsets_stay() {
    let d = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let start = || Ingest::start_with(d.path(), devices(), 1024, 64 << 20, 0, retention()).unwrap();
    let ingest = start();
    let offsets: Vec<u64> = (0..60).map(|q| submit(&rt, &ingest, q)).collect();
    let log = d.path().join("frames.log");
    let before = segments(&log).unwrap();
    assert!(before.len() > 3, "{before:?}");
    // No checkpoint yet: nothing goes, however old.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(segments(&log).unwrap(), before);
    // The worker checkpointed at frame 40: the segments wholly before it go.
    let covered = offsets[40];
    ingest.worker_offset.store(covered, Ordering::Relaxed);
    let mut now = before.clone();
    for _ in 0..250 {
        now = segments(&log).unwrap();
        // Done once the segment after the first kept one starts past the
        // checkpoint: every segment wholly before it is gone.
        if now.get(1).is_none_or(|s| s.0 > covered) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let first = now[0].0;
    assert!(first > 0 && first <= covered, "{now:?}");
    let kept: Vec<_> = before.iter().filter(|s| s.0 >= first).cloned().collect();
    assert_eq!(now, kept);
    assert!(now.get(1).is_none_or(|s| s.0 > covered), "{now:?}");
    let end = *ingest.end.borrow();
    match ingest.reader.read_from(offsets[0], 1, end) {
        Err(StreamError::Deleted { first: f, .. }) => assert_eq!(f, first),
        other => panic!("{other:?}"),
    }
    let (recs, _) = ingest.reader.read_from(covered, 100, end).unwrap();
    assert_eq!(recs.len(), 20);
    // New frames still go to the end, at global offsets.
    let next = submit(&rt, &ingest, 60);
    assert_eq!(next, end);
    drop(ingest);
    // A restart opens the remaining segments; offsets unchanged.
    let ingest = start();
    let end2 = *ingest.end.borrow();
    assert!(end2 > next);
    let (recs, _) = ingest.reader.read_from(covered, 100, end2).unwrap();
    assert_eq!(recs.len(), 21);
    assert_eq!(submit(&rt, &ingest, 61), end2);
}
