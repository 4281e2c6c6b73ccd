//! The host owns the frame log and the stored checkpoint. Played as the
//! host would: every record written twice, records dropped, two records
//! swapped, the checkpoint rolled back to an older one. The worker's
//! results then either equal the honest run's or say what was missing
//! (a `gap` result); no frame is analysed twice or out of order.
//!
//! Before the worker enforced per-device sequence order, doubling every
//! record changed every heart-rate window (each beat counted twice) and
//! produced rhythm events that are not in the signal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aorta_signal::wfdb::Record;
use aorta_stream::EngineConfig;
use aorta_stream::checkpoint::FileCheckpointStore;
use aorta_stream::ecg::EcgConfig;
use aorta_stream::job::{
    EcgJob, FrameOpen, Opened, PlainFrames, PlainResults, PlainState, Position, Refused,
    encode_plain_frame, encode_record,
};
use aorta_stream::log::{FileLog, FrameLog};
use aorta_stream::results::FileResultStore;

const T0: i64 = 1_767_225_600_000_000;
const SERIAL: &str = "DEV-1";

/// Plain frames with a position in front (`sequence u64 ‖ key_index u16`,
/// big-endian), standing for the authenticated header of a sealed frame:
/// the decoder's order rules are what is tested here.
struct Sequenced;

impl FrameOpen for Sequenced {
    fn open(&mut self, frame: &[u8]) -> Result<Opened, Refused> {
        let (pos, rest) = frame.split_at(10);
        let mut o = PlainFrames.open(rest)?;
        o.position = Some(Position {
            sequence: u64::from_be_bytes(pos[..8].try_into().unwrap()),
            key_index: u16::from_be_bytes(pos[8..].try_into().unwrap()),
            slice_len: 120,
        });
        Ok(o)
    }
}

/// 10-second frames of MIT-BIH record 100 (the 6-minute sample aorta
/// ships), device rotating its key every 5 frames.
fn frames() -> Vec<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../aorta-cli/assets/sample/100");
    let rec = Record::read(&path).unwrap();
    let fs = rec.fs();
    let per = (fs * 10.0) as usize;
    let cal: Vec<(f64, i32)> = rec
        .header
        .signals
        .iter()
        .map(|s| (s.gain, s.baseline))
        .collect();
    rec.blocks(per)
        .enumerate()
        .map(|(k, (start, chans))| {
            let t = T0 + (start as f64 * 1e6 / fs).round() as i64;
            let plain = encode_plain_frame(SERIAL, t, (fs * 1000.0) as u32, &cal, &chans).unwrap();
            let mut f = (k as u64).to_be_bytes().to_vec();
            f.extend_from_slice(&((k / 5) as u16).to_be_bytes());
            f.extend_from_slice(&plain);
            f
        })
        .collect()
}

type Job = EcgJob<Sequenced, FileCheckpointStore, FileResultStore, PlainResults, PlainState>;

fn open_job(dir: &Path) -> Job {
    EcgJob::open(
        EcgConfig::default(),
        EngineConfig::default(),
        Sequenced,
        FileCheckpointStore::new(dir.join("cp")).unwrap(),
        PlainState,
        FileResultStore::open(dir.join("results")).unwrap(),
        PlainResults,
        u64::MAX,
    )
    .unwrap()
}

/// Writes `records` (indices into `frames`) as the host's log.
fn write_log(dir: &Path, frames: &[Vec<u8>], records: &[usize]) -> FileLog {
    std::fs::create_dir_all(dir).unwrap();
    let mut log = FileLog::open(dir.join("log")).unwrap();
    for &i in records {
        log.append(&encode_record(0, &frames[i])).unwrap();
    }
    log.sync().unwrap();
    log
}

/// The files of the checkpoint store (what the host copies).
fn snapshot_dir(dir: &Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// Results by id (`serial/start/end` → JSON).
fn results(dir: &Path) -> BTreeMap<String, serde_json::Value> {
    FileResultStore::open(dir.join("results"))
        .unwrap()
        .all()
        .unwrap()
        .into_iter()
        .map(|(id, b)| (id, serde_json::from_slice(&b).unwrap()))
        .collect()
}

/// Runs the whole log, then end of input; (results, refusals, gaps).
fn run(dir: &Path, log: &FileLog) -> (BTreeMap<String, serde_json::Value>, u64, u64) {
    let mut job = open_job(dir);
    while job.run_batch(log, 7).unwrap().records > 0 {}
    let refused = job.decoder().refused().values().sum();
    let gaps = job.decoder().gaps();
    job.pipeline_mut().finish().unwrap();
    (results(dir), refused, gaps)
}

/// `(start, end)` of a result id.
fn window(id: &str) -> (i64, i64) {
    let mut p = id.rsplitn(3, '/');
    let end = p.next().unwrap().parse().unwrap();
    let start = p.next().unwrap().parse().unwrap();
    (start, end)
}

/// Every result of `got` equals the honest one, except results whose
/// window overlaps a reported gap widened by the longest window (5 min);
/// and the gaps reported are exactly `expected` (first missing, count).
fn equal_or_gap(
    honest: &BTreeMap<String, serde_json::Value>,
    got: &BTreeMap<String, serde_json::Value>,
    expected: &[(u64, u64)],
) {
    let gaps: Vec<(i64, i64, u64, u64)> = got
        .iter()
        .filter(|(_, v)| v["type"] == "gap")
        .map(|(id, v)| {
            let (s, e) = window(id);
            (
                s,
                e,
                v["first_missing_sequence"].as_u64().unwrap(),
                v["missing_frames"].as_u64().unwrap(),
            )
        })
        .collect();
    let said: Vec<(u64, u64)> = gaps.iter().map(|g| (g.2, g.3)).collect();
    assert_eq!(said, expected, "gaps reported");
    let tainted = |id: &str| {
        let (s, e) = window(id);
        gaps.iter()
            .any(|g| s < g.1 + 300_000_000 && e > g.0 - 300_000_000)
    };
    let mut same = 0;
    for (id, v) in got {
        if v["type"] == "gap" {
            continue;
        }
        if honest.get(id) == Some(v) {
            same += 1;
        } else {
            assert!(tainted(id), "result {id} differs from the honest run: {v}");
        }
    }
    for id in honest.keys() {
        assert!(
            got.contains_key(id) || tainted(id),
            "result {id} is missing"
        );
    }
    assert!(same > 0);
}

#[test]
fn what_the_host_does_to_the_log_cannot_change_a_result() {
    let t = tempfile::tempdir().unwrap();
    let f = frames();
    let n = f.len();
    assert!(n >= 30, "{n} frames");
    let all: Vec<usize> = (0..n).collect();

    let (honest, refused, gaps) = run(
        &t.path().join("honest"),
        &write_log(&t.path().join("honest"), &f, &all),
    );
    assert_eq!((refused, gaps), (0, 0));
    assert!(honest.values().any(|v| v["type"] == "heart_rate"));

    // Every record twice: each duplicate is refused, results are the honest ones.
    let doubled: Vec<usize> = all.iter().flat_map(|&i| [i, i]).collect();
    let d = t.path().join("doubled");
    let (got, refused, gaps) = run(&d, &write_log(&d, &f, &doubled));
    assert_eq!((refused, gaps), (n as u64, 0));
    assert_eq!(got, honest, "doubled log");

    // The whole log replayed after itself: the same.
    let replayed: Vec<usize> = all.iter().chain(all.iter()).copied().collect();
    let d = t.path().join("replayed");
    let (got, refused, _) = run(&d, &write_log(&d, &f, &replayed));
    assert_eq!(refused, n as u64);
    assert_eq!(got, honest, "replayed log");

    // Two frames dropped: reported as gaps, everything else as honest.
    let dropped: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&i| i != 12 && i != 20)
        .collect();
    let d = t.path().join("dropped");
    let (got, refused, gaps) = run(&d, &write_log(&d, &f, &dropped));
    assert_eq!((refused, gaps), (0, 2));
    equal_or_gap(&honest, &got, &[(12, 1), (20, 1)]);

    // The log starts late (the host hides a device's first frames): the
    // missing start is reported too.
    let late: Vec<usize> = (5..n).collect();
    let d = t.path().join("late");
    let (got, refused, gaps) = run(&d, &write_log(&d, &f, &late));
    assert_eq!((refused, gaps), (0, 1));
    equal_or_gap(&honest, &got, &[(0, 5)]);

    // Two frames swapped: the late one is refused (never analysed out of
    // order) and reported missing.
    let mut swapped = all.clone();
    swapped.swap(15, 16);
    let d = t.path().join("swapped");
    let (got, refused, gaps) = run(&d, &write_log(&d, &f, &swapped));
    assert_eq!((refused, gaps), (1, 1));
    equal_or_gap(&honest, &got, &[(15, 1)]);

    // A frame whose key index jumps beyond what its sequence allows is
    // refused (the key-index window, from the last frame analysed).
    let mut jumped = f.clone();
    jumped[25][8..10].copy_from_slice(&90u16.to_be_bytes());
    let d = t.path().join("jumped");
    let (got, refused, gaps) = run(&d, &write_log(&d, &jumped, &all));
    assert_eq!((refused, gaps), (1, 1));
    equal_or_gap(&honest, &got, &[(25, 1)]);

    // The checkpoint rolled back: the host keeps an early checkpoint and
    // restores it after the worker went further. The worker re-analyses
    // from there; the results are the honest ones, none stored twice.
    let d = t.path().join("rollback");
    let log = write_log(&d, &f, &all);
    let mut job = open_job(&d);
    job.run_batch(&log, 10).unwrap();
    job.checkpoint().unwrap();
    let early = snapshot_dir(&d.join("cp"));
    while job.run_batch(&log, 7).unwrap().records > 0 {}
    job.checkpoint().unwrap();
    drop(job);
    std::fs::remove_dir_all(d.join("cp")).unwrap();
    std::fs::create_dir_all(d.join("cp")).unwrap();
    for (name, bytes) in early {
        std::fs::write(d.join("cp").join(name), bytes).unwrap();
    }
    let (got, refused, gaps) = run(&d, &log);
    assert_eq!((refused, gaps), (0, 0));
    assert_eq!(got, honest, "rolled-back checkpoint");
}

/// Erasing a patient (`docs/erasure.md`): the job's checkpoint keeps
/// nothing of the device but its position, and that position still stops
/// the host from replaying the device's old frames afterwards.
#[test]
fn an_erased_device_leaves_only_its_position_and_old_frames_stay_refused() {
    use aorta_stream::checkpoint::CheckpointStore;
    use base64::Engine as _;
    let all = frames();
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let log = write_log(dir, &all, &(0..20).collect::<Vec<_>>());
    let mut job = open_job(dir);
    while job.run_batch(&log, 7).unwrap().records > 0 {}
    let state = |dir: &Path| -> (String, String) {
        let cp = FileCheckpointStore::new(dir.join("cp"))
            .unwrap()
            .load()
            .unwrap()
            .unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&cp.state)
            .unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let (engine, decoder) = text.split_once('\n').unwrap();
        (engine.to_owned(), decoder.to_owned())
    };
    job.checkpoint().unwrap();
    let (engine, _) = state(dir);
    assert!(engine.contains(SERIAL), "the device has operator state");
    assert!(job.erase_device(SERIAL));
    job.checkpoint().unwrap();
    let (engine, decoder) = state(dir);
    assert!(!engine.contains(SERIAL), "operator state left: {engine}");
    let order: serde_json::Value = serde_json::from_str(&decoder).unwrap();
    assert_eq!(order[SERIAL]["next"], 20, "{decoder}");
    // The host appends old frames again, then the next one: the old ones
    // are refused, the next is analysed as a fresh start without a gap.
    let mut log = log;
    for i in [3usize, 19, 20] {
        log.append(&encode_record(0, &all[i])).unwrap();
    }
    log.sync().unwrap();
    let refused_before: u64 = job.decoder().refused().values().sum();
    while job.run_batch(&log, 7).unwrap().records > 0 {}
    let refused: u64 = job.decoder().refused().values().sum();
    assert_eq!(refused - refused_before, 2);
    assert_eq!(job.decoder().gaps(), 0);
}
