//! `kill -9` at random instants: a child process ingests events into the
//! durable log (acknowledging only after sync) and processes them through a
//! checkpointed pipeline; the parent kills it with SIGKILL at random moments
//! and restarts it until it finishes. Then: every acknowledged event is in
//! the log, and the results equal an uninterrupted run, each stored once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)] // test code

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use aorta_stream::checkpoint::FileCheckpointStore;
use aorta_stream::log::{FileLog, FrameLog};
use aorta_stream::pipeline::Pipeline;
use aorta_stream::results::{FileResultStore, ResultSink};
use aorta_stream::window::{Aggregator, WindowAggregate, WindowSpec};
use aorta_stream::{Engine, EngineConfig, Micros, StreamError};

const EVENTS: u64 = 20_000;
const BATCH: u64 = 50;

/// Sum and count of values per 1-second window.
struct SumCount;
impl Aggregator for SumCount {
    type In = i64;
    type Acc = (u64, i64);
    type Out = (u64, i64);
    fn add(&self, acc: &mut (u64, i64), _t: Micros, v: &i64) {
        acc.0 += 1;
        acc.1 += v;
    }
    fn finish(&self, acc: (u64, i64), _s: Micros, _e: Micros) -> Option<(u64, i64)> {
        Some(acc)
    }
}

fn event(i: u64) -> (u32, Micros, i64) {
    (
        (i % 7) as u32,
        (i / 7) as Micros * 37_000,
        (i * 31 % 101) as i64,
    )
}

fn decode(b: &[u8]) -> Result<(u32, Micros, i64), StreamError> {
    serde_json::from_slice(b).map_err(|e| StreamError::Malformed(e.to_string()))
}

fn op() -> WindowAggregate<SumCount> {
    WindowAggregate::new(SumCount, WindowSpec::tumbling(1_000_000).unwrap())
}

/// One life of the worker: ingest what is missing, process, checkpoint.
fn child(dir: &Path) {
    let mut log = FileLog::open(dir.join("log")).unwrap();
    let ack = dir.join("acked");
    let mut pipe = Pipeline::open(
        op(),
        EngineConfig::default(),
        decode,
        FileCheckpointStore::new(dir.join("cp")).unwrap(),
        FileResultStore::open(dir.join("results")).unwrap(),
        200,
    )
    .unwrap();
    // The log is the truth of what was accepted: resume ingest after it.
    let mut next = {
        let (recs, _) = log.read_from(0, usize::MAX).unwrap();
        recs.len() as u64
    };
    while next < EVENTS {
        let end = (next + BATCH).min(EVENTS);
        for i in next..end {
            log.append(&serde_json::to_vec(&event(i)).unwrap()).unwrap();
        }
        log.sync().unwrap();
        // Acknowledge only after the log is durable.
        let tmp = dir.join("acked.tmp");
        std::fs::write(&tmp, end.to_string()).unwrap();
        std::fs::rename(&tmp, &ack).unwrap();
        next = end;
        pipe.step(&log, 10_000).unwrap();
        // Pace the work (≈ 0.8 s in all) so that the parent's kills land mid-run
        // on fast and slow machines alike.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    while pipe.step(&log, 10_000).unwrap() > 0 {}
    pipe.finish().unwrap();
    std::fs::write(dir.join("done"), b"1").unwrap();
}

#[test]
#[ignore = "run by kill9_at_random_points as a child process"]
fn kill9_child() {
    if let Ok(dir) = std::env::var("AORTA_KILL9_DIR") {
        child(Path::new(&dir));
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn kill9_at_random_points() {
    let dir: PathBuf = std::env::temp_dir().join(format!("aorta-kill9-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = 0xA0_27A_u64 ^ std::process::id() as u64;
    let mut kills = 0;
    let mut max_acked = 0u64;
    // Lives are killed at random instants until 30 kills have landed; then
    // one life is allowed to finish.
    let mut life = 0;
    loop {
        life += 1;
        assert!(life < 500, "no progress after {life} lives");
        let killing = kills < 30;
        let mut c = Command::new(&exe)
            .args([
                "--exact",
                "kill9_child",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("AORTA_KILL9_DIR", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if killing {
            let wait_ms = 2 + splitmix(&mut rng) % 24;
            std::thread::sleep(Duration::from_millis(wait_ms));
            if c.try_wait().unwrap().is_none() {
                c.kill().unwrap(); // SIGKILL
                kills += 1;
            }
        }
        let status = c.wait().unwrap();
        if !killing {
            assert!(status.success(), "the last life failed: {status}");
        }
        // Every acknowledged event must be in the log, now and after every crash.
        if let Ok(a) = std::fs::read_to_string(dir.join("acked")) {
            let acked: u64 = a.trim().parse().unwrap();
            assert!(acked >= max_acked, "acknowledgements never go back");
            max_acked = acked;
            let log = FileLog::open(dir.join("log")).unwrap();
            let (recs, _) = log.read_from(0, usize::MAX).unwrap();
            assert!(
                recs.len() as u64 >= acked,
                "life {life}: {} in log < {acked} acknowledged",
                recs.len()
            );
            for (i, r) in recs.iter().enumerate() {
                assert_eq!(decode(r).unwrap(), event(i as u64), "log record {i}");
            }
        }
        if dir.join("done").exists() {
            break;
        }
    }
    assert!(dir.join("done").exists(), "the worker never finished");
    assert!(
        kills >= 10,
        "only {kills} kills: the test did not exercise recovery"
    );

    // Reference: one uninterrupted in-memory run.
    let mut engine = Engine::new(op(), EngineConfig::default());
    let mut expect = Vec::new();
    for i in 0..EVENTS {
        let (k, t, v) = event(i);
        engine.push(k, t, v, &mut expect);
    }
    engine.finish(&mut expect);
    let mut expect: Vec<(String, (u64, i64))> = expect
        .into_iter()
        .map(|o| (format!("{}/{}/{}", o.key, o.start, o.end), o.value))
        .collect();
    expect.sort();

    let mut store = FileResultStore::open(dir.join("results")).unwrap();
    let raw = store.all().unwrap();
    let mut got: Vec<(String, (u64, i64))> = raw
        .iter()
        .map(|(id, p)| (id.clone(), serde_json::from_slice(p).unwrap()))
        .collect();
    got.sort();
    let before = got.len();
    got.dedup_by(|a, b| a.0 == b.0);
    assert_eq!(got.len(), before, "a result was stored twice");
    assert_eq!(got, expect, "results differ from an uninterrupted run");
    assert!(!store.put(&expect[0].0, b"x").unwrap());
    eprintln!(
        "kill9: {kills} SIGKILLs, {} results, all exactly once",
        got.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
