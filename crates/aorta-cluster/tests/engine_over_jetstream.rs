//! The engine's recoverable pipeline (`aorta_stream::pipeline`) reading
//! the frame stream through `PartitionReader`, against a real nats-server:
//! a worker that dies after a checkpoint (and after more work it never
//! checkpointed) resumes from the checkpoint's stream sequence in a new
//! process's connection, and the stored results equal one uninterrupted
//! run's, each exactly once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::time::{Duration, Instant};

use aorta_cluster::testing::{NatsCluster, nats_server_or_skip};
use aorta_cluster::{Nats, StreamSpec};
use aorta_stream::checkpoint::FileCheckpointStore;
use aorta_stream::pipeline::Pipeline;
use aorta_stream::results::{FileResultStore, ResultSink};
use aorta_stream::window::{Aggregator, WindowAggregate, WindowSpec};
use aorta_stream::{Engine, EngineConfig, Micros, StreamError};

const EVENTS: u64 = 3_000;

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

type Pipe = Pipeline<
    u32,
    WindowAggregate<SumCount>,
    FileCheckpointStore,
    FileResultStore,
    fn(&[u8]) -> Result<(u32, Micros, i64), StreamError>,
>;

fn open(dir: &std::path::Path) -> Pipe {
    Pipeline::open(
        op(),
        EngineConfig::default(),
        decode as fn(&[u8]) -> Result<(u32, Micros, i64), StreamError>,
        FileCheckpointStore::new(dir.join("cp")).unwrap(),
        FileResultStore::open(dir.join("results")).unwrap(),
        u64::MAX,
    )
    .unwrap()
}

#[test]
fn the_engine_resumes_from_a_checkpointed_stream_sequence_exactly_once() {
    let Some(bin) = nats_server_or_skip("the_engine_resumes_from_a_checkpointed_stream_sequence")
    else {
        return;
    };
    let nats_proc = NatsCluster::start(&bin, 1).unwrap();
    let spec = StreamSpec {
        partitions: 4,
        ..StreamSpec::default()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let nats = loop {
        match Nats::connect(&nats_proc.urls(), Duration::from_secs(2)).and_then(|n| {
            n.ensure_stream(&spec)?;
            Ok(n)
        }) {
            Ok(n) => break n,
            Err(e) => {
                assert!(Instant::now() < deadline, "{e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    // Ingest: key k is "device" dev-k, the event index its sequence.
    let mut p = nats.publisher(&spec);
    for i in 0..EVENTS {
        let (k, t, v) = event(i);
        p.append(
            &format!("dev-{k}"),
            i,
            &serde_json::to_vec(&(k, t, v)).unwrap(),
        )
        .unwrap();
        if i % 500 == 499 {
            p.sync().unwrap();
        }
    }
    p.sync().unwrap();
    let all: Vec<u32> = (0..spec.partitions).collect();
    let dir = tempfile::tempdir().unwrap();

    // First life: 1,000 records, a checkpoint, 700 more, then death.
    {
        let reader = nats
            .reader(&spec, &all, Duration::from_millis(200))
            .unwrap();
        let mut pipe = open(dir.path());
        let mut n = 0;
        while n < 1_000 {
            n += pipe.step(&reader, 1_000 - n).unwrap();
        }
        pipe.checkpoint().unwrap();
        assert_eq!(
            pipe.offset(),
            1_001,
            "the checkpoint holds a stream sequence"
        );
        let mut more = 0;
        while more < 700 {
            more += pipe.step(&reader, 700 - more).unwrap();
        }
        pipe.sync_results().unwrap();
    }
    // Second life: a new connection and consumer, from the checkpoint.
    let again = Nats::connect(&nats_proc.urls(), Duration::from_secs(2)).unwrap();
    let reader = again
        .reader(&spec, &all, Duration::from_millis(200))
        .unwrap();
    let mut pipe = open(dir.path());
    assert_eq!(pipe.offset(), 1_001);
    while pipe.step(&reader, 500).unwrap() > 0 {}
    pipe.finish().unwrap();
    assert_eq!(pipe.offset(), EVENTS + 1);

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
    drop(pipe);
    let mut store = FileResultStore::open(dir.path().join("results")).unwrap();
    let mut got: Vec<(String, (u64, i64))> = store
        .all()
        .unwrap()
        .iter()
        .map(|(id, p)| (id.clone(), serde_json::from_slice(p).unwrap()))
        .collect();
    got.sort();
    let before = got.len();
    got.dedup_by(|a, b| a.0 == b.0);
    assert_eq!(got.len(), before, "a result was stored twice");
    assert_eq!(got, expect);
    assert!(!store.put(&expect[0].0, b"x").unwrap());
}
