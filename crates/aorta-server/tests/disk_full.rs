//! A full disk under real ingest (HTTPS on loopback, the data directory on
//! a tmpfs of a few hundred KiB mounted by the test; needs root): the
//! server answers `507 storage_full` without acknowledging, loses no
//! acknowledged frame, and accepts again — the refused frames too — once
//! space is freed. Damaged logs: the server refuses to start, naming the
//! file, the offset and the commands to run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

mod http_common;
use http_common::{Running, directory_of, sealed_varied, serve_at, signature_of};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aorta_server::http::{ServerConfig, api};
use aorta_stream::log::{FileLog, HEADER_LEN};

const SERIAL: &str = "SN-FULL";

use aorta_base::testing::Tmpfs;

fn config(data: &Path) -> ServerConfig {
    ServerConfig {
        data_dir: data.to_path_buf(),
        max_frame_bytes: 64 << 10,
        ..ServerConfig::default()
    }
}

fn start(data: &Path) -> Running {
    serve_at(&config(data), directory_of(&[SERIAL]), None)
}

/// Posts frame `seq`: (status, JSON body).
fn post(r: &Running, seq: u64) -> (u16, serde_json::Value) {
    let body = sealed_varied(SERIAL, seq);
    let sig = signature_of(SERIAL, &body);
    let resp = r
        .client
        .post(format!("{}/v1/frames", r.url))
        .header(aorta_api::SIGNATURE_HEADER, sig)
        .body(body)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    (status, serde_json::from_str(&text).unwrap())
}

/// Every `(offset, frame)` in the log.
fn logged(log: &Path) -> Vec<(u64, Vec<u8>)> {
    let l = FileLog::open(log).unwrap();
    let (e, _) = l.read_entries(0, usize::MAX).unwrap();
    e.into_iter()
        .map(|(o, r)| {
            let (_, f) = aorta_stream::job::decode_record(&r).unwrap();
            (o, f.to_vec())
        })
        .collect()
}

#[test]
fn a_full_disk_is_507_without_acknowledging_and_ingest_resumes_when_space_returns() {
    let Some(fs) = Tmpfs::mount(384) else {
        return;
    };
    let data: PathBuf = fs.path().join("data");
    let ballast = fs.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; 96 << 10]).unwrap();
    let r = start(&data);
    let mut acked: Vec<(u64, u64)> = Vec::new(); // (sequence, offset)
    let mut refused = Vec::new();
    let mut seq = 0;
    while refused.len() < 5 {
        let (s, v) = post(&r, seq);
        match s {
            200 => {
                assert!(
                    refused.is_empty(),
                    "acknowledged after a 507 without freeing space"
                );
                assert_eq!(v["duplicate"], false);
                acked.push((seq, v["offset"].as_u64().unwrap()));
            }
            507 => {
                assert_eq!(v["error"], "storage_full", "{v}");
                refused.push(seq);
            }
            _ => panic!("{s} {v}"),
        }
        seq += 1;
        assert!(seq < 10_000, "the disk never filled");
    }
    assert!(acked.len() > 10, "{acked:?}");
    // Nothing past the last acknowledged frame is on disk.
    let log = data.join("frames.log");
    let on_disk = std::fs::metadata(&log).unwrap().len();
    let (last_seq, last_off) = *acked.last().unwrap();
    assert_eq!(
        on_disk,
        last_off
            + (HEADER_LEN
                + aorta_stream::job::RECORD_PREFIX
                + sealed_varied(SERIAL, last_seq).len()) as u64
    );
    // Free space: the refused frames are accepted now (not taken for
    // duplicates), right after the last acknowledged one.
    std::fs::remove_file(&ballast).unwrap();
    let mut expect = on_disk;
    for &q in &refused {
        let (s, v) = post(&r, q);
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["duplicate"], false, "{v}");
        assert_eq!(v["offset"].as_u64().unwrap(), expect);
        acked.push((q, expect));
        expect +=
            (HEADER_LEN + aorta_stream::job::RECORD_PREFIX + sealed_varied(SERIAL, q).len()) as u64;
    }
    // An exact re-send of an acknowledged frame is still a duplicate at its offset.
    let (s, v) = post(&r, acked[3].0);
    assert_eq!((s, v["duplicate"].as_bool()), (200, Some(true)));
    assert_eq!(v["offset"].as_u64(), Some(acked[3].1));
    drop(r);
    // Every acknowledged frame is in the log at its offset, nothing else.
    let want: Vec<(u64, Vec<u8>)> = acked
        .iter()
        .map(|&(q, o)| (o, sealed_varied(SERIAL, q)))
        .collect();
    assert_eq!(logged(&log), want);
    // And the server starts again on it.
    drop(start(&data));
}

#[test]
fn the_server_refuses_to_start_on_a_damaged_log_and_names_what_to_run() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let r = start(&data);
    for q in 0..20 {
        assert_eq!(post(&r, q).0, 200);
    }
    drop(r);
    let log = data.join("frames.log");
    let entries = logged(&log);
    let mut b = std::fs::read(&log).unwrap();
    let at = entries[10].0 as usize + 40;
    b[at] ^= 2;
    std::fs::write(&log, &b).unwrap();
    let e = api::open_state(&config(&data), directory_of(&[SERIAL]), None)
        .err()
        .unwrap();
    let text = format!("{e:#}");
    assert!(text.contains(&log.display().to_string()), "{text}");
    assert!(
        text.contains(&format!("damaged at byte {}", entries[10].0)),
        "{text}"
    );
    assert!(
        text.contains("aorta log check") && text.contains("aorta log salvage"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(&log).unwrap(),
        b,
        "the refused start changed the log"
    );
    // Salvaged, it starts, and every intact frame is at its offset.
    let out = data.join("frames.salvaged");
    aorta_stream::log::salvage(&log, &out).unwrap();
    std::fs::rename(&out, &log).unwrap();
    let r = start(&data);
    let (s, v) = post(&r, 15);
    assert_eq!((s, v["duplicate"].as_bool()), (200, Some(true)));
    assert_eq!(v["offset"].as_u64(), Some(entries[15].0));
    drop(r);
    let now = logged(&log);
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(now.contains(e), i != 10, "entry {i}");
    }
    // The results store too.
    drop(
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("results.log"))
            .unwrap(),
    );
    let mut s = aorta_stream::results::FileResultStore::open(data.join("results.log")).unwrap();
    for i in 0..5 {
        aorta_stream::results::ResultSink::put(&mut s, &format!("id{i}"), &[i as u8 + 1; 300])
            .unwrap();
    }
    aorta_stream::results::ResultSink::sync(&mut s).unwrap();
    drop(s);
    let rl = data.join("results.log");
    let mut b = std::fs::read(&rl).unwrap();
    b[20] ^= 1;
    std::fs::write(&rl, &b).unwrap();
    let e = api::open_state(&config(&data), directory_of(&[SERIAL]), None)
        .err()
        .unwrap();
    let text = format!("{e:#}");
    assert!(
        text.contains("results.log") && text.contains("aorta log salvage"),
        "{text}"
    );
}

#[test]
fn a_batch_that_hits_a_full_disk_is_refused_from_its_first_rolled_back_frame_and_forgotten() {
    use aorta_server::http::ingest::{GroupCommit, IngestCounters, IngestError, Submission};
    let Some(fs) = Tmpfs::mount(256) else {
        return;
    };
    let log = fs.path().join("frames.log");
    let ballast = fs.path().join("ballast");
    let counters = Arc::new(IngestCounters::default());
    let mut gc = GroupCommit::open(&log, counters.clone()).unwrap();
    let sub = |seq: u64, fill: u8| {
        Submission::new("SN-B".into(), seq, 1, &vec![fill; 4000 + seq as usize])
    };
    // Durable first: two frames.
    let c = gc.commit(vec![sub(0, 1), sub(1, 2)]);
    assert!(c.acks.iter().all(Result::is_ok) && c.sync_error.is_none());
    let durable = gc.durable_end();
    std::fs::write(&ballast, vec![0u8; 160 << 10]).unwrap();
    // A batch larger than the space left, with a re-send of frame 0, a
    // replay of frame 1 and a re-send of its own first frame.
    let batch = || {
        let mut b: Vec<Submission> = (2..30).map(|q| sub(q, q as u8)).collect();
        b.push(sub(0, 1));
        b.push(sub(1, 9));
        b.push(sub(2, 2));
        b
    };
    let c = gc.commit(batch());
    assert!(c.sync_error.is_some());
    assert!(
        c.acks
            .iter()
            .all(|a| matches!(a, Err(IngestError::StorageFull))),
        "{:?}",
        c.acks
    );
    assert_eq!(gc.durable_end(), durable);
    assert_eq!(gc.end(), durable);
    assert_eq!(std::fs::metadata(&log).unwrap().len(), durable);
    assert_eq!(
        counters.accepted.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    // Space returns: the same batch is stored, nothing taken for a duplicate
    // of what was rolled back.
    std::fs::remove_file(&ballast).unwrap();
    let c = gc.commit(batch());
    assert!(c.sync_error.is_none());
    let n = c.acks.len();
    for (i, a) in c.acks.iter().enumerate() {
        match (i, a) {
            (0, Ok(a)) => assert_eq!((a.offset, a.duplicate), (durable, false)),
            (i, Ok(a)) if i == n - 3 => assert_eq!((a.offset, a.duplicate), (0, true)),
            (i, Err(IngestError::Replayed { sequence: 1, .. })) if i == n - 2 => {}
            (i, Ok(a)) if i == n - 1 => assert_eq!((a.offset, a.duplicate), (durable, true)),
            (_, Ok(a)) => assert!(!a.duplicate),
            (i, e) => panic!("{i}: {e:?}"),
        }
    }
    drop(gc);
    assert_eq!(
        FileLog::open(&log)
            .unwrap()
            .read_entries(0, usize::MAX)
            .unwrap()
            .0
            .len(),
        30
    );
}
