//! The frame stream against real `nats-server` processes (started by the
//! tests, killed at the end; `SKIPPED` without the binary): publish
//! acknowledgements, JetStream's duplicate window, a reader resuming from a
//! saved position, an R=3 cluster losing a node mid-run, JetStream down.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aorta_cluster::testing::{NatsCluster, nats_server_or_skip};
use aorta_cluster::{ClusterError, Nats, StreamSpec, partition_of};
use aorta_stream::log::FrameLog;

fn spec(partitions: u32, replicas: usize) -> StreamSpec {
    StreamSpec {
        partitions,
        replicas,
        ack_timeout: Duration::from_secs(2),
        ..StreamSpec::default()
    }
}

/// Connects and creates the stream, retrying while a fresh cluster elects
/// its JetStream leader.
fn ready(urls: &str, s: &StreamSpec) -> Nats {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = Nats::connect(urls, Duration::from_secs(2)).and_then(|n| {
            n.ensure_stream(s)?;
            Ok(n)
        });
        match r {
            Ok(n) => return n,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("JetStream not ready: {e}"),
        }
    }
}

fn record(serial: &str, seq: u64) -> Vec<u8> {
    format!("{serial}:{seq}").into_bytes()
}

#[test]
fn acknowledged_frames_are_in_the_stream_and_a_retry_is_stored_once() {
    let Some(bin) = nats_server_or_skip("acknowledged_frames_are_in_the_stream") else {
        return;
    };
    let nats_proc = NatsCluster::start(&bin, 1).unwrap();
    let s = spec(4, 1);
    let nats = ready(&nats_proc.urls(), &s);
    let mut p = nats.publisher(&s);
    let a = p.append("dev-1", 0, &record("dev-1", 0)).unwrap();
    let b = p.append("dev-2", 0, &record("dev-2", 0)).unwrap();
    p.sync().unwrap();
    let (sa, da) = p.settled(a).unwrap();
    let (sb, db) = p.settled(b).unwrap();
    assert!(!da && !db);
    assert_eq!((sa, sb), (1, 2));
    assert_eq!(p.durable_end(), 2);
    // The device retries frame 0 through another ingest node (a fresh
    // publisher that never saw it): JetStream drops it, naming the first
    // copy's sequence.
    let mut other = nats.publisher(&s);
    let c = other.append("dev-1", 0, &record("dev-1", 0)).unwrap();
    other.sync().unwrap();
    assert_eq!(other.settled(c), Some((sa, true)));
    assert_eq!(nats.stream_state(&s).unwrap(), (2, 2));
    // Read back from the device's partition: exactly the record.
    let r = nats
        .reader(&s, &[partition_of("dev-1", 4)], Duration::from_millis(300))
        .unwrap();
    let (recs, next) = r.read_located(0, 100).unwrap();
    assert!(recs.contains(&(1, record("dev-1", 0))));
    assert!(
        !recs.iter().any(|(_, r)| r == &record("dev-2", 0))
            || partition_of("dev-2", 4) == partition_of("dev-1", 4)
    );
    assert_eq!(next, recs.last().unwrap().0 + 1);
}

#[test]
fn a_reader_resumes_from_a_saved_position_without_gaps_or_repeats() {
    let Some(bin) = nats_server_or_skip("a_reader_resumes_from_a_saved_position") else {
        return;
    };
    let nats_proc = NatsCluster::start(&bin, 1).unwrap();
    let s = spec(4, 1);
    let nats = ready(&nats_proc.urls(), &s);
    let mut p = nats.publisher(&s);
    let serials: Vec<String> = (0..12).map(|i| format!("dev-{i}")).collect();
    for seq in 0..20u64 {
        for d in &serials {
            p.append(d, seq, &record(d, seq)).unwrap();
        }
    }
    p.sync().unwrap();
    let mine = [0u32, 2];
    let expected: Vec<Vec<u8>> = (0..20u64)
        .flat_map(|seq| {
            serials
                .iter()
                .filter(|d| mine.contains(&partition_of(d, 4)))
                .map(move |d| record(d, seq))
        })
        .collect();
    assert!(expected.len() > 20 && expected.len() < 240);
    // A worker reads a little, "checkpoints" its position, dies; a new
    // one (new connection, new consumer) resumes there.
    let first = nats.reader(&s, &mine, Duration::from_millis(300)).unwrap();
    let mut got = Vec::new();
    let mut pos = 0;
    for _ in 0..3 {
        let (recs, next) = first.read_from(pos, 7).unwrap();
        assert_eq!(recs.len(), 7);
        got.extend(recs);
        pos = next;
    }
    drop(first);
    let again = Nats::connect(&nats_proc.urls(), Duration::from_secs(2)).unwrap();
    let second = again.reader(&s, &mine, Duration::from_millis(300)).unwrap();
    loop {
        let (recs, next) = second.read_from(pos, 50).unwrap();
        if recs.is_empty() {
            assert_eq!(next, pos);
            break;
        }
        got.extend(recs);
        pos = next;
    }
    assert_eq!(got, expected);
    // Reading again from an earlier saved position gives the same records.
    let (recs, _) = second.read_from(0, 5).unwrap();
    assert_eq!(recs, expected[..5]);
    assert!(matches!(
        nats.reader(&s, &[4], Duration::from_millis(10)),
        Err(ClusterError::Config(_))
    ));
}

#[test]
fn jetstream_down_fails_the_batch_within_the_timeout_never_acknowledges() {
    let Some(bin) = nats_server_or_skip("jetstream_down_fails_the_batch") else {
        return;
    };
    let mut nats_proc = NatsCluster::start(&bin, 1).unwrap();
    let s = StreamSpec {
        ack_timeout: Duration::from_millis(800),
        ..spec(2, 1)
    };
    let nats = ready(&nats_proc.urls(), &s);
    let mut p = nats.publisher(&s);
    p.append("dev-1", 0, b"zero").unwrap();
    p.sync().unwrap();
    nats_proc.kill(0);
    let pos = p.append("dev-1", 1, b"one").unwrap();
    let t = Instant::now();
    let e = p.sync().unwrap_err();
    assert!(matches!(e, ClusterError::Unavailable(_)), "{e}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(p.settled(pos), None);
    assert_eq!(p.durable_end(), 1);
    assert_eq!(p.end(), 1, "rolled back");
    // Back up (same store): the retry is stored, once.
    nats_proc.restart(0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pos = p.append("dev-1", 1, b"one").unwrap();
        match p.sync() {
            Ok(()) => {
                assert_eq!(p.settled(pos).unwrap().0, 2);
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("JetStream did not come back: {e}"),
        }
    }
    assert_eq!(nats.stream_state(&s).unwrap(), (2, 2));
}

#[test]
fn r3_cluster_loses_a_node_mid_run_and_no_acknowledged_frame() {
    let Some(bin) = nats_server_or_skip("r3_cluster_loses_a_node_mid_run") else {
        return;
    };
    let mut nats_proc = NatsCluster::start(&bin, 3).unwrap();
    let s = spec(8, 3);
    let urls = nats_proc.urls();
    let nats = ready(&urls, &s);
    let devices: Vec<String> = (0..16).map(|i| format!("dev-{i:03}")).collect();
    // Each device's frames, batch by batch; a batch that fails is retried
    // (as devices retry a 503) until acknowledged. Node 1 dies half-way.
    let mut p = nats.publisher(&s);
    let mut acked: BTreeMap<(String, u64), u64> = BTreeMap::new();
    let mut retries = 0;
    let mut killed = 0;
    for seq in 0..40u64 {
        if seq == 20 {
            // The stream's leader: its replicas must elect another.
            let leader = nats.stream_leader(&s).unwrap().unwrap();
            killed = nats_proc.index_of(&leader).unwrap();
            nats_proc.kill(killed);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let pos: Vec<(String, u64)> = devices
                .iter()
                .map(|d| (d.clone(), p.append(d, seq, &record(d, seq)).unwrap()))
                .collect();
            match p.sync() {
                Ok(()) => {
                    for (d, at) in pos {
                        let (sequence, _) = p.settled(at).unwrap();
                        let before = acked.insert((d, seq), sequence);
                        assert!(before.is_none());
                    }
                    break;
                }
                Err(e) => {
                    assert!(Instant::now() < deadline, "no quorum after the kill: {e}");
                    retries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
    assert_eq!(acked.len(), 16 * 40);
    // Every acknowledged frame is in the stream exactly once, at the
    // sequence it was acknowledged with, read from the surviving nodes.
    let survivors: Vec<String> = (0..3)
        .filter(|i| *i != killed)
        .map(|i| nats_proc.url(i))
        .collect();
    let reader = Nats::connect(&survivors.join(","), Duration::from_secs(5))
        .unwrap()
        .reader(&s, &(0..8).collect::<Vec<_>>(), Duration::from_millis(500))
        .unwrap();
    let mut seen: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    let mut pos = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < acked.len() && Instant::now() < deadline {
        match reader.read_located(pos, 500) {
            Ok((recs, next)) => {
                for (sequence, r) in recs {
                    assert!(seen.insert(r, sequence).is_none(), "a frame read twice");
                }
                pos = next;
            }
            Err(e) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    for ((d, seq), sequence) in &acked {
        assert_eq!(seen.get(&record(d, *seq)), Some(sequence), "{d}/{seq} lost");
    }
    assert_eq!(seen.len(), acked.len());
    println!(
        "r3: {} frames acknowledged, leader n{killed} killed, {retries} batch retries after the kill",
        acked.len()
    );
}
