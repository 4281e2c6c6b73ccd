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

mod http_common;
use http_common::{directory_of, sealed_varied, signature_of};

use std::sync::atomic::Ordering;
use std::time::Duration;

use aorta_server::http::ingest::{Ingest, Retention};
use aorta_stream::StreamError;
use aorta_stream::log::segments;

const SERIAL: &str = "SN-FULL";

fn submit(rt: &tokio::runtime::Runtime, ingest: &Ingest, seq: u64) -> u64 {
    let body = sealed_varied(SERIAL, seq);
    let sig = signature_of(SERIAL, &body);
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
    let start = || {
        Ingest::start_with(
            d.path(),
            directory_of(&[SERIAL]),
            1024,
            64 << 20,
            0,
            retention(),
        )
        .unwrap()
    };
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
    match ingest
        .reader
        .as_ref()
        .unwrap()
        .read_from(offsets[0], 1, end)
    {
        Err(StreamError::Deleted { first: f, .. }) => assert_eq!(f, first),
        other => panic!("{other:?}"),
    }
    let (recs, _) = ingest
        .reader
        .as_ref()
        .unwrap()
        .read_from(covered, 100, end)
        .unwrap();
    assert_eq!(recs.len(), 20);
    // New frames still go to the end, at global offsets.
    let next = submit(&rt, &ingest, 60);
    assert_eq!(next, end);
    drop(ingest);
    // A restart opens the remaining segments; offsets unchanged.
    let ingest = start();
    let end2 = *ingest.end.borrow();
    assert!(end2 > next);
    let (recs, _) = ingest
        .reader
        .as_ref()
        .unwrap()
        .read_from(covered, 100, end2)
        .unwrap();
    assert_eq!(recs.len(), 21);
    assert_eq!(submit(&rt, &ingest, 61), end2);
}
