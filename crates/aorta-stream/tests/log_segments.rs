//! A segmented log: offsets stay global across segment files, readers
//! cross segment boundaries, retention deletes only segments every
//! checkpoint has passed and whose time has expired, and a deleted offset
//! is a typed error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::time::{Duration, SystemTime};

use aorta_stream::StreamError;
use aorta_stream::log::{
    FileLog, FrameLog, HEADER_LEN, LogOptions, LogReader, retire_segments, segment_path, segments,
};

fn rec(i: usize) -> Vec<u8> {
    vec![(i % 251) as u8 + 1; 100 + i % 50]
}

#[test]
fn segments_roll_keep_global_offsets_and_retire_only_what_is_covered_and_expired() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("frames.log");
    let opts = LogOptions {
        segment_bytes: 4096,
    };
    let mut log = FileLog::open_with(&p, opts).unwrap();
    let mut all = Vec::new();
    for i in 0..200 {
        all.push((log.append(&rec(i)).unwrap(), rec(i)));
        if i % 7 == 0 {
            log.sync().unwrap();
        }
    }
    log.sync().unwrap();
    let end = log.end();
    // Offsets are contiguous and global.
    for w in all.windows(2) {
        assert_eq!(w[1].0, w[0].0 + (HEADER_LEN + w[0].1.len()) as u64);
    }
    let segs = segments(&p).unwrap();
    assert!(segs.len() > 5, "{segs:?}");
    for w in segs.windows(2) {
        let len = std::fs::metadata(&w[0].1).unwrap().len();
        assert!(len <= 4096);
        assert_eq!(w[0].0 + len, w[1].0);
        assert_eq!(w[1].1, segment_path(&p, w[1].0));
    }
    // Readers cross segment boundaries.
    let r = LogReader::new(&p);
    let (got, next) = r.read_from(0, usize::MAX, end).unwrap();
    assert_eq!(next, end);
    assert_eq!(got, all.iter().map(|a| a.1.clone()).collect::<Vec<_>>());
    let (got, _) = log.read_entries(all[37].0, 60).unwrap();
    assert_eq!(got, all[37..97].to_vec());
    drop(log);
    // Reopened: appends continue in the last segment at the same end.
    let mut log = FileLog::open_with(&p, opts).unwrap();
    assert_eq!(log.end(), end);
    assert_eq!(log.append(b"after").unwrap(), end);
    log.sync().unwrap();

    // Retention: nothing while the checkpoint has not passed a segment or
    // its time has not expired.
    let cut = segs[3].0; // the checkpoint covers the first three segments
    let past = SystemTime::now() - Duration::from_secs(3600);
    assert!(
        retire_segments(&p, cut, past).unwrap().is_empty(),
        "not expired yet"
    );
    assert!(
        retire_segments(&p, 0, SystemTime::now())
            .unwrap()
            .is_empty(),
        "not covered"
    );
    let gone = retire_segments(&p, cut + 1, SystemTime::now()).unwrap();
    assert_eq!(gone, vec![segs[0].0, segs[1].0, segs[2].0]);
    assert!(!p.exists());
    // A deleted offset is a typed error naming where the log starts now.
    match r.read_from(all[0].0, 1, end) {
        Err(StreamError::Deleted { offset, first, .. }) => {
            assert_eq!((offset, first), (0, cut));
        }
        other => panic!("{other:?}"),
    }
    let (got, _) = r.read_from(cut, 1, end).unwrap();
    let i = all.iter().position(|a| a.0 == cut).unwrap();
    assert_eq!(got, vec![all[i].1.clone()]);
    drop(log);
    // Reopened without the first segments: the base-0 file is not
    // recreated, offsets stay, the log starts at the first kept segment.
    let log = FileLog::open_with(&p, opts).unwrap();
    assert!(!p.exists());
    assert_eq!(log.first_offset().unwrap(), cut);
    assert_eq!(log.end(), end + (HEADER_LEN + 5) as u64);
    let (got, _) = log.read_entries(cut, usize::MAX).unwrap();
    assert_eq!(got.len(), all.len() - i + 1);
}

#[test]
fn damage_in_a_closed_segment_is_refused_naming_that_segment() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("frames.log");
    let opts = LogOptions {
        segment_bytes: 2048,
    };
    let mut log = FileLog::open_with(&p, opts).unwrap();
    for i in 0..60 {
        log.append(&rec(i)).unwrap();
    }
    log.sync().unwrap();
    drop(log);
    let segs = segments(&p).unwrap();
    // A torn tail in the last segment is cut.
    let last = &segs.last().unwrap().1;
    let mut b = std::fs::read(last).unwrap();
    b.extend_from_slice(&[0xEE; 30]);
    std::fs::write(last, &b).unwrap();
    assert!(FileLog::open_with(&p, opts).unwrap().torn_tail().is_some());
    // A flipped bit in a closed segment's last record is damage, not torn.
    let f = &segs[1].1;
    let mut b = std::fs::read(f).unwrap();
    let n = b.len();
    b[n - 3] ^= 1;
    std::fs::write(f, &b).unwrap();
    match FileLog::open_with(&p, opts) {
        Err(StreamError::Damaged { path, .. }) => assert_eq!(&path, f),
        other => panic!("{other:?}"),
    }
}

#[test]
fn results_retention_deletes_old_segments_and_keeps_the_rest_readable() {
    use aorta_stream::results::{FileResultStore, ResultSink};
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("results.log");
    let opts = LogOptions {
        segment_bytes: 1024,
    };
    let mut s = FileResultStore::open_with(&p, opts).unwrap();
    for i in 0..40 {
        s.put(&format!("id/{i}"), &[i as u8; 100]).unwrap();
    }
    s.sync().unwrap();
    // Old enough (cutoff now), covered (results need no checkpoint).
    let gone = retire_segments(&p, u64::MAX, SystemTime::now()).unwrap();
    assert!(!gone.is_empty());
    let first = segments(&p).unwrap()[0].0;
    assert!(matches!(s.read_from(0, 1), Err(StreamError::Deleted { first: f, .. }) if f == first));
    let kept = s.all().unwrap();
    assert!(!kept.is_empty() && kept.len() < 40);
    assert_eq!(kept.last().unwrap().0, "id/39");
    drop(s);
    let s = FileResultStore::open_with(&p, opts).unwrap();
    assert_eq!(s.len(), kept.len());
    assert_eq!(s.all().unwrap(), kept);
}
