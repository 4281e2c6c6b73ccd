//! Damaged logs and full disks: opening a log never silently drops an
//! intact record (it cuts only a torn tail, or refuses with
//! `StreamError::Damaged`), salvage recovers every intact record at its
//! offset, and a failed append or sync is rolled back so that nothing is
//! acknowledged at a wrong offset (on a real, small tmpfs when run as root).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::path::Path;

use aorta_stream::StreamError;
use aorta_stream::log::{self, FileLog, FrameLog, HEADER_LEN, MAX_UNSYNCED, Verdict};
use aorta_stream::results::{FileResultStore, ResultSink};
use proptest::prelude::*;

/// Payload `i` of a test log: varied lengths, non-trivial bytes.
fn payload(i: usize) -> Vec<u8> {
    let n = 1 + (i * 37) % 200;
    (0..n).map(|j| (i * 31 + j * 7 + 3) as u8).collect()
}

/// Writes `n` records (synced) and returns their `(offset, payload)`.
fn write_log(p: &Path, n: usize) -> Vec<(u64, Vec<u8>)> {
    let mut log = FileLog::open(p).unwrap();
    let recs: Vec<_> = (0..n)
        .map(|i| {
            let b = payload(i);
            (log.append(&b).unwrap(), b)
        })
        .collect();
    log.sync().unwrap();
    recs
}

/// Every record, with its offset.
fn entries(p: &Path) -> Vec<(u64, Vec<u8>)> {
    let log = FileLog::open(p).unwrap();
    let (e, next) = log.read_entries(0, usize::MAX).unwrap();
    assert_eq!(next, log.end());
    e
}

/// The records none of whose bytes lie in `hit`.
fn untouched(recs: &[(u64, Vec<u8>)], hit: &[std::ops::Range<u64>]) -> Vec<(u64, Vec<u8>)> {
    recs.iter()
        .filter(|(o, b)| {
            let r = *o..o + (HEADER_LEN + b.len()) as u64;
            hit.iter().all(|h| h.end <= r.start || h.start >= r.end)
        })
        .cloned()
        .collect()
}

/// Opens the damaged copy at `p` (made from `recs` with `hit` changed):
/// either it opens and every untouched record is there at its offset, or
/// it is refused as damaged, unchanged, and salvage recovers every
/// untouched record at its offset. Returns whether it was refused.
fn check_open(p: &Path, recs: &[(u64, Vec<u8>)], hit: &[std::ops::Range<u64>]) -> bool {
    let want = untouched(recs, hit);
    let before = std::fs::read(p).unwrap();
    match FileLog::open(p) {
        Ok(log) => {
            let (got, _) = log.read_entries(0, usize::MAX).unwrap();
            for w in &want {
                assert!(got.contains(w), "record at {} dropped (hit {hit:?})", w.0);
            }
            false
        }
        Err(StreamError::Damaged { path, offset, what }) => {
            assert_eq!(path, p);
            assert_eq!(
                std::fs::read(p).unwrap(),
                before,
                "a refused open changed the file"
            );
            let text = StreamError::Damaged {
                path: path.clone(),
                offset,
                what,
            }
            .to_string();
            assert!(text.contains("aorta log salvage"), "{text}");
            let out = p.with_extension("salvaged");
            let _ = std::fs::remove_file(&out);
            let s = log::salvage(p, &out).unwrap();
            assert_eq!(s.verdict, Verdict::Damaged);
            assert!(s.bad.iter().any(|b| b.start == offset), "{s:?} {offset}");
            let got = entries(&out);
            for w in &want {
                assert!(
                    got.contains(w),
                    "salvage lost the record at {} ({s:?})",
                    w.0
                );
            }
            // The salvaged log opens clean: nothing left to cut.
            assert!(FileLog::open(&out).unwrap().torn_tail().is_none());
            assert_eq!(
                log::scan(&out, |_| Ok(())).unwrap().verdict,
                Verdict::Intact
            );
            std::fs::remove_file(&out).unwrap();
            true
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn a_flip_in_the_middle_never_silently_drops_later_records() {
    // The case: one flipped bit in record 10 cut the log there.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("frames.log");
    let recs = write_log(&p, 40);
    let mut bytes = std::fs::read(&p).unwrap();
    let at = recs[10].0 as usize + HEADER_LEN + 3;
    bytes[at] ^= 0x10;
    std::fs::write(&p, &bytes).unwrap();
    let len = bytes.len() as u64;
    match FileLog::open(&p) {
        Err(StreamError::Damaged { offset, .. }) => assert_eq!(offset, recs[10].0),
        Ok(log) => panic!(
            "opened and kept {} of {len} bytes: acknowledged records cut",
            log.end()
        ),
        Err(e) => panic!("{e}"),
    }
    assert_eq!(std::fs::metadata(&p).unwrap().len(), len);
}

#[test]
fn every_single_bit_flip_is_refused_or_only_cuts_the_last_record() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("log");
    let recs = write_log(&p, 12);
    let clean = std::fs::read(&p).unwrap();
    let (mut refused, mut opened) = (0, 0);
    for pos in 0..clean.len() {
        {
            let bit = (pos * 5 + 3) % 8;
            let mut b = clean.clone();
            b[pos] ^= 1 << bit;
            std::fs::write(&p, &b).unwrap();
            let hit = vec![std::ops::Range {
                start: pos as u64,
                end: pos as u64 + 1,
            }];
            if check_open(&p, &recs, &hit) {
                refused += 1;
            } else {
                opened += 1;
                // Only a flip in the last record may open (cut as torn).
                assert!(pos as u64 >= recs.last().unwrap().0, "flip at {pos} opened");
            }
        }
    }
    assert!(refused > 0 && opened > 0, "{refused} {opened}");
}

#[test]
fn torn_tails_are_cut_and_damage_before_them_is_not() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("log");
    let mut log = FileLog::open(&p).unwrap();
    let durable: Vec<_> = (0..20)
        .map(|i| (log.append(&payload(i)).unwrap(), payload(i)))
        .collect();
    log.sync().unwrap();
    let synced = log.end();
    // An unsynced batch, written out but never acknowledged.
    for i in 20..40 {
        log.append(&payload(i)).unwrap();
    }
    drop(log);
    let full = std::fs::read(&p).unwrap();
    // A crash at any point of the unsynced batch: cut, nothing durable lost.
    for cut in (synced as usize..full.len()).step_by(13) {
        std::fs::write(&p, &full[..cut]).unwrap();
        let log = FileLog::open(&p).unwrap();
        let (got, _) = log.read_entries(0, usize::MAX).unwrap();
        assert!(durable.iter().all(|r| got.contains(r)), "cut {cut}");
        assert!(log.end() <= cut as u64);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), log.end());
    }
    // A zero-filled hole in the unsynced part (write-back out of order)
    // with records after it: refused (safe), salvage keeps them all.
    let mut holed = full.clone();
    let h = synced as usize + 40;
    holed[h..h + 30].fill(0);
    std::fs::write(&p, &holed).unwrap();
    assert!(matches!(
        FileLog::open(&p),
        Err(StreamError::Damaged { .. })
    ));
    // A zero-filled tail with nothing after it is a torn tail.
    let mut zeros = full[..synced as usize].to_vec();
    zeros.extend_from_slice(&[0u8; 4096]);
    std::fs::write(&p, &zeros).unwrap();
    let log = FileLog::open(&p).unwrap();
    assert_eq!(
        log.torn_tail(),
        Some(log::TornTail {
            offset: synced,
            len: 4096
        })
    );
    assert_eq!(log.end(), synced);
    // More bad bytes than one unsynced batch can leave: refused.
    drop(log);
    let mut long = full[..synced as usize].to_vec();
    long.resize(synced as usize + MAX_UNSYNCED as usize + 1, 0xA5);
    std::fs::write(&p, &long).unwrap();
    assert!(
        matches!(FileLog::open(&p), Err(StreamError::Damaged { offset, .. }) if offset == synced)
    );
}

#[test]
fn salvage_never_overwrites_and_keeps_offsets_for_readers() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("log");
    let recs = write_log(&p, 30);
    let mut b = std::fs::read(&p).unwrap();
    // Two damaged ranges: a flipped length field and a smashed payload.
    b[recs[5].0 as usize + 1] ^= 0x40;
    let s = recs[17].0 as usize + HEADER_LEN;
    b[s..s + 4].copy_from_slice(b"XXXX");
    std::fs::write(&p, &b).unwrap();
    let out = d.path().join("new");
    std::fs::write(&out, b"keep me").unwrap();
    assert!(matches!(
        log::salvage(&p, &out),
        Err(StreamError::Io { .. })
    ));
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    std::fs::remove_file(&out).unwrap();
    let scan = log::salvage(&p, &out).unwrap();
    assert_eq!(scan.records, 28);
    assert_eq!(scan.bad.len(), 2);
    assert_eq!(scan.bad[0].start, recs[5].0);
    assert_eq!(scan.bad[0].end, recs[6].0);
    assert_eq!(scan.bad[1].start, recs[17].0);
    assert_eq!(scan.bad[1].end, recs[18].0);
    // Same length, same offsets: a reader at any acknowledged offset after
    // the damage reads the same records as before it.
    assert_eq!(std::fs::metadata(&out).unwrap().len(), b.len() as u64);
    let r = log::LogReader::new(&out);
    let (got, _) = r.read_from(recs[3].0, 10, b.len() as u64).unwrap();
    let want: Vec<Vec<u8>> = [3, 4, 6, 7, 8, 9, 10, 11, 12, 13]
        .iter()
        .map(|&i| recs[i].1.clone())
        .collect();
    assert_eq!(got, want);
    let (got, _) = r.read_from(recs[20].0, 1, b.len() as u64).unwrap();
    assert_eq!(got, vec![recs[20].1.clone()]);
    // A results store over the salvaged file keeps every intact result.
    let store = FileResultStore::open(&out).unwrap();
    assert_eq!(store.len(), 28);
}

#[test]
fn the_results_store_refuses_damage_too() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("results.log");
    let mut s = FileResultStore::open(&p).unwrap();
    for i in 0..20 {
        s.put(&format!("id/{i}"), &payload(i)).unwrap();
    }
    s.sync().unwrap();
    drop(s);
    let mut b = std::fs::read(&p).unwrap();
    b[200] ^= 4;
    std::fs::write(&p, &b).unwrap();
    let e = FileResultStore::open(&p).unwrap_err();
    assert!(matches!(e, StreamError::Damaged { .. }), "{e}");
    assert!(e.to_string().contains("aorta log check"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Any mix of flipped bits, overwritten runs and zeroed runs: open never
    /// silently drops an untouched record, salvage recovers all of them.
    #[test]
    fn random_damage_never_loses_an_intact_record(
        n in 2usize..40,
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..4),
        runs in prop::collection::vec((any::<prop::sample::Index>(), 1usize..64, any::<bool>()), 0..3),
    ) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let recs = write_log(&p, n);
        let mut b = std::fs::read(&p).unwrap();
        let len = b.len();
        let mut hit = Vec::new();
        for (i, bit) in flips {
            let at = i.index(len);
            b[at] ^= 1 << bit;
            hit.push(at as u64..at as u64 + 1);
        }
        for (i, k, zero) in runs {
            let at = i.index(len);
            let end = (at + k).min(len);
            for (j, x) in b[at..end].iter_mut().enumerate() {
                *x = if zero { 0 } else { (j as u8).wrapping_mul(151) ^ 0x5c };
            }
            hit.push(at as u64..end as u64);
        }
        std::fs::write(&p, &b).unwrap();
        check_open(&p, &recs, &hit);
    }
}

// --- A full disk: a real tmpfs of a few hundred KiB (needs root). ---

use aorta_base::testing::Tmpfs;

#[test]
fn a_full_disk_rolls_back_and_recovers_when_space_returns() {
    let Some(fs) = Tmpfs::mount(512) else {
        return;
    };
    let p = fs.path().join("frames.log");
    // Ballast to free later.
    std::fs::write(fs.path().join("ballast"), vec![1u8; 128 << 10]).unwrap();
    let mut log = FileLog::open(&p).unwrap();
    let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut full = 0;
    for batch in 0..1000 {
        let recs: Vec<Vec<u8>> = (0..7)
            .map(|i| vec![(batch * 7 + i) as u8 | 1; 3000 + i * 100])
            .collect();
        let mut offs = Vec::new();
        let mut err = None;
        for r in &recs {
            match log.append(r) {
                Ok(o) => offs.push(o),
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let err = match err {
            None => log.sync().err(),
            e => e,
        };
        match err {
            None => acked.extend(offs.into_iter().zip(recs)),
            Some(StreamError::StorageFull { .. }) => {
                // Rolled back to the last durable end, on disk too.
                let end = acked
                    .last()
                    .map_or(0, |(o, r)| o + (HEADER_LEN + r.len()) as u64);
                assert_eq!(log.durable_end(), end);
                assert_eq!(log.end(), end);
                assert_eq!(std::fs::metadata(&p).unwrap().len(), end);
                full += 1;
                if full == 3 {
                    std::fs::remove_file(fs.path().join("ballast")).unwrap();
                }
                if full == 6 {
                    break;
                }
            }
            Some(e) => panic!("{e}"),
        }
    }
    assert_eq!(full, 6, "the disk never filled");
    // Space came back once (after the third failure): appends resumed, the
    // records after it sit right after the last acknowledged one.
    let got = entries(&p);
    assert_eq!(got, acked);
    // Results: a failed batch's ids are forgotten and stored on retry.
    drop(log);
    std::fs::remove_file(&p).unwrap();
    std::fs::write(fs.path().join("ballast"), vec![1u8; 64 << 10]).unwrap();
    let rp = fs.path().join("results.log");
    let mut store = FileResultStore::open(&rp).unwrap();
    let mut stored = 0;
    let failed_id = loop {
        let id = format!("r/{stored}");
        let r = store.put(&id, &vec![7u8; 9000]).and_then(|_| store.sync());
        match r {
            Ok(()) => stored += 1,
            Err(StreamError::StorageFull { .. }) => break id,
            Err(e) => panic!("{e}"),
        }
    };
    assert!(stored > 0);
    assert_eq!(store.len(), stored);
    assert_eq!(std::fs::metadata(&rp).unwrap().len(), store.durable_end());
    std::fs::remove_file(fs.path().join("ballast")).unwrap();
    assert!(
        store.put(&failed_id, b"again").unwrap(),
        "the failed id was kept"
    );
    store.sync().unwrap();
    drop(store);
    let store = FileResultStore::open(&rp).unwrap();
    assert_eq!(store.len(), stored + 1);
    assert_eq!(
        store.all().unwrap().last().unwrap(),
        &(failed_id, b"again".to_vec())
    );
}
