//! Erasing one device's frames from the frame log in place: none of its
//! bytes (frame bytes, serial) remain in the file, every other record keeps
//! its offset and is read as before, an interrupted erase is finished by
//! the next one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use aorta_crypto::frame::{self, ChannelCalibration, FrameHeader, TransportKey};
use aorta_crypto::keys::KeySlice;
use aorta_stream::job::{encode_record, erase_device_frames};
use aorta_stream::log::{self, FileLog, FrameLog, HEADER_LEN, RecordHeader, Verdict};

fn sealed(serial: &str, seq: u64) -> Vec<u8> {
    let slice = KeySlice::new(serial, (0..16 * 32).map(|i| (i * 13 + 1) as u8).collect()).unwrap();
    let epoch = [9u8; 16];
    let k = TransportKey::derive(&slice, 1, &epoch).unwrap();
    let n = 200;
    let h = FrameHeader::new(serial, 1, seq, 1_000_000 * seq as i64, 360_000, 2, n, epoch).unwrap();
    let cal = vec![ChannelCalibration::new(200.0, 1024, 1024, 11, "mV", "MLII"); 2];
    let a: Vec<i32> = (0..n as i32)
        .map(|i| (i * 7919 + seq as i32 * 31) % 1500)
        .collect();
    frame::seal(&k, &h, &cal, &[&a[..], &a[..]]).unwrap()
}

/// True when `needle` occurs in `hay`.
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn none_of_an_erased_devices_bytes_remain_and_other_offsets_stay() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("frames.log");
    // In segments of 4 KiB: the device's frames are in every one.
    let opts = log::LogOptions {
        segment_bytes: 4096,
    };
    let mut l = FileLog::open_with(&p, opts).unwrap();
    let mut all = Vec::new();
    for seq in 0..30 {
        for serial in ["SN-KEEP-1", "SN-GONE-PATIENT", "SN-KEEP-2"] {
            let f = sealed(serial, seq);
            let off = l
                .append(&encode_record(1_700_000_000_000_000 + seq as i64, &f))
                .unwrap();
            all.push((serial, off, f));
        }
    }
    l.sync().unwrap();
    drop(l);
    let files = || -> Vec<u8> {
        let segs = log::segments(&p).unwrap();
        assert!(segs.len() > 3);
        segs.iter()
            .flat_map(|(_, f)| std::fs::read(f).unwrap())
            .collect()
    };
    let before = files();
    assert!(contains(&before, b"SN-GONE-PATIENT"));
    let e = erase_device_frames(&p, "SN-GONE-PATIENT").unwrap();
    assert_eq!((e.records, e.fillers_zeroed), (30, 0));
    let after = files();
    assert_eq!(after.len(), before.len());
    assert!(
        !contains(&after, b"SN-GONE-PATIENT"),
        "the serial is still in the file"
    );
    for (serial, _, f) in &all {
        // Every 24-byte window of the frame's ciphertext tail: none left.
        let tail = &f[f.len() - 64..];
        let gone = tail.windows(24).all(|w| !contains(&after, w));
        assert_eq!(gone, *serial == "SN-GONE-PATIENT", "{serial}");
    }
    // Others keep their offsets; readers skip the fillers.
    let l = FileLog::open_with(&p, opts).unwrap();
    let (got, _) = l.read_entries(0, usize::MAX).unwrap();
    let want: Vec<(u64, Vec<u8>)> = all
        .iter()
        .filter(|(s, _, _)| *s != "SN-GONE-PATIENT")
        .map(|(_, o, f)| {
            let (rec, _) = l.read_entries(*o, 1).unwrap();
            assert_eq!(
                aorta_stream::job::decode_record(&rec[0].1).unwrap().1,
                &f[..]
            );
            rec[0].clone()
        })
        .collect();
    assert_eq!(got, want);
    for (_, f) in log::segments(&p).unwrap() {
        assert_eq!(log::scan(&f, |_| Ok(())).unwrap().verdict, Verdict::Intact);
    }
    // Erasing again finds nothing more.
    assert_eq!(
        erase_device_frames(&p, "SN-GONE-PATIENT").unwrap().records,
        0
    );
}

#[test]
fn an_interrupted_erase_is_finished_and_a_damaged_log_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("frames.log");
    let mut l = FileLog::open(&p).unwrap();
    let a = l.append(b"secret patient bytes").unwrap();
    let b = l.append(b"other").unwrap();
    l.sync().unwrap();
    drop(l);
    // A crash after the header phase: a filler whose body holds the bytes.
    let mut bytes = std::fs::read(&p).unwrap();
    let h = RecordHeader::filler(20);
    bytes[a as usize..a as usize + HEADER_LEN]
        .copy_from_slice(&aorta_base::codec::Encode::to_bytes(&h));
    std::fs::write(&p, &bytes).unwrap();
    let e = log::erase(&p, |_| false).unwrap();
    assert_eq!((e.records, e.fillers_zeroed), (0, 1));
    let after = std::fs::read(&p).unwrap();
    assert!(!contains(&after, b"secret"));
    let (got, _) = FileLog::open(&p).unwrap().read_entries(0, 9).unwrap();
    assert_eq!(got, vec![(b, b"other".to_vec())]);
    // Damage before the end (an intact record follows the flipped one):
    // refused, nothing changed.
    let mut bad = after.clone();
    bad[b as usize + HEADER_LEN] ^= 1;
    std::fs::write(&p, [&bad[..], &after[b as usize..]].concat()).unwrap();
    let snapshot = std::fs::read(&p).unwrap();
    assert!(matches!(
        log::erase(&p, |_| true),
        Err(aorta_stream::StreamError::Damaged { .. })
    ));
    assert_eq!(std::fs::read(&p).unwrap(), snapshot);
}

#[test]
fn results_erased_in_every_segment_others_keep_their_offsets() {
    use aorta_stream::results::{FileResultStore, ResultSink};
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("results.log");
    let opts = log::LogOptions {
        segment_bytes: 2048,
    };
    let mut s = FileResultStore::open_with(&p, opts).unwrap();
    for i in 0..60 {
        s.put(
            &format!("sub/gone-{i}"),
            format!("PATIENT-SECRET-{i:03}").as_bytes(),
        )
        .unwrap();
        s.put(
            &format!("sub/keep-{i}"),
            format!("other-result-{i:03}").as_bytes(),
        )
        .unwrap();
    }
    s.sync().unwrap();
    let (before, end) = s.read_from(0, usize::MAX).unwrap();
    let e = s.erase_where(|id| id.starts_with("sub/gone-")).unwrap();
    assert_eq!(e.records, 60);
    assert_eq!(s.len(), 60);
    let disk: Vec<u8> = log::segments(&p)
        .unwrap()
        .iter()
        .flat_map(|(_, f)| std::fs::read(f).unwrap())
        .collect();
    assert!(log::segments(&p).unwrap().len() > 2);
    assert!(!contains(&disk, b"PATIENT-SECRET"));
    assert!(!contains(&disk, b"gone-"));
    let (after, end2) = s.read_from(0, usize::MAX).unwrap();
    assert_eq!(end2, end);
    let kept: Vec<_> = before
        .into_iter()
        .filter(|(id, _)| id.starts_with("sub/keep-"))
        .collect();
    assert_eq!(after, kept);
    // The erased ids are forgotten: stored again if they come again.
    assert!(s.put("sub/gone-1", b"again").unwrap());
    assert!(!s.put("sub/keep-1", b"dup").unwrap());
}
