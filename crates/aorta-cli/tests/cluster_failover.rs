//! Failover of cluster-mode workers (`aorta worker stream --nats`,
//! docs/scale.md) through the real binaries: an `aorta server` in cluster
//! mode on a 3-node R=3 nats-server cluster (started by the test;
//! `SKIPPED` without nats-server), devices uploading over HTTPS, workers
//! sharing the 8 partitions by leases in JetStream KV.
//!
//! - a worker killed with SIGKILL mid-run: its partitions are taken over
//!   by the others within 10 s (measured from the lease state), and a
//!   worker joining mid-run takes its share;
//! - a NATS node (the stream's leader) killed mid-run.
//!
//! Each then proves: every frame a device sealed was acknowledged and is
//! in the stream once; every partition's checkpoint covers its last
//! record (every acknowledged frame analysed); every result id is stored
//! once; and the results are exactly those of an uninterrupted reference
//! run — one worker reading the same stream afresh, with its own lease and
//! checkpoint buckets, into a second server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aorta_cluster::checkpoints::checkpoint_offsets;
use aorta_cluster::lease::lease_owners;
use aorta_cluster::testing::{NatsCluster, nats_server_or_skip};
use aorta_cluster::{Nats, StreamSpec};

mod common;
use common::{Proc, Run, SAMPLE, Server, fetch_results, write_config};

const P: u32 = 8;

fn spec() -> StreamSpec {
    StreamSpec {
        partitions: P,
        replicas: 3,
        ..StreamSpec::default()
    }
}

fn nats_ready(urls: &str) -> Nats {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = Nats::connect(urls, Duration::from_secs(2)).and_then(|n| {
            n.ensure_stream(&spec())?;
            Ok(n)
        });
        match r {
            Ok(n) => return n,
            Err(e) => {
                assert!(Instant::now() < deadline, "JetStream not ready: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// A server configuration `dir/NAME` over `data` in cluster mode.
fn cluster_config(dir: &Path, name: &str, data: &str, urls: &str) {
    write_config(dir, name, data, "127.0.0.1:0", "127.0.0.1:0");
    let mut c = std::fs::read_to_string(dir.join(name)).unwrap();
    c.push_str(&format!(
        "\n[cluster]\nnats = \"{urls}\"\npartitions = {P}\nreplicas = 3\nack_timeout_ms = 3000\n"
    ));
    std::fs::write(dir.join(name), c).unwrap();
}

/// `aorta worker stream --nats …` as worker `id` against `server` (data
/// directory `data`), with the lease and checkpoint buckets `buckets`;
/// stderr to `dir/ID.log`.
fn worker(
    dir: &Path,
    data: &str,
    server: &Server,
    urls: &str,
    id: &str,
    buckets: (&str, &str),
) -> Proc {
    Run::new([
        "worker",
        "stream",
        "--backend",
        "sim",
        "--broker",
        &server.broker(),
        "--assignment",
        "demo",
        "--sim-platform-key",
        "sim-platform.key",
        "--server",
        &server.url(),
        "--ca",
        &format!("{data}/cert.pem"),
        "--token-file",
        &format!("{data}/worker.token"),
        "--checkpoint-secs",
        "0.3",
        "--batch",
        "16",
        "--nats",
        urls,
        "--partitions",
        &P.to_string(),
        "--replicas",
        "3",
        "--worker-id",
        id,
        "--lease-bucket",
        buckets.0,
        "--checkpoint-bucket",
        buckets.1,
    ])
    .cwd(dir)
    .spawn(Stdio::from(
        std::fs::File::create(dir.join(format!("{id}.log"))).unwrap(),
    ))
}

const MAIN: (&str, &str) = ("AORTA_LEASES", "AORTA_CHECKPOINTS");
const REF: (&str, &str) = ("REF_LEASES", "REF_CHECKPOINTS");

/// The tails of the workers' logs (for a failure's message).
fn logs(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".log") && name.starts_with('w') {
            let t = std::fs::read_to_string(e.path()).unwrap_or_default();
            let tail: Vec<&str> = t.lines().rev().take(15).collect();
            out.push_str(&format!("--- {name}\n"));
            for l in tail.iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// Partition → owner (live ones only: a value with an owner).
fn owners(nats: &Nats, bucket: &str) -> BTreeMap<u32, String> {
    lease_owners(nats, bucket, P)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter_map(|(p, v)| {
            v.filter(|v| !v.owner.is_empty())
                .map(|v| (p as u32, v.owner))
        })
        .collect()
}

fn wait_for(dir: &Path, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < limit,
            "{what}: not after {limit:?}\n{}",
            logs(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    t.elapsed()
}

/// Every partition's checkpoint covers its last record.
fn caught_up(nats: &Nats, bucket: &str) -> bool {
    let Ok(offsets) = checkpoint_offsets(nats, bucket, P) else {
        return false;
    };
    (0..P).all(|p| match nats.last_sequence_of(&spec(), p) {
        Ok(None) => true,
        Ok(Some(last)) => offsets[p as usize].is_some_and(|o| o > last),
        Err(_) => false,
    })
}

fn devices(work: &Path, srv: &Server, n: usize, duration_s: u32) -> Vec<Proc> {
    let ca = work.join("server/cert.pem");
    (1..=n)
        .map(|i| {
            Run::new(["device", "run", "--device", &format!("devices/DEMO-{i:04}")])
                .args(["--record", SAMPLE, "--server", &srv.url(), "--ca"])
                .arg(&ca)
                .args(["--speed", "12", "--duration", &duration_s.to_string()])
                .arg("--json")
                .cwd(work)
                .spawn(Stdio::null())
        })
        .collect()
}

/// Waits for the devices: each sealed `duration_s` frames, all acknowledged.
fn devices_done(devs: Vec<Proc>, duration_s: u32) -> BTreeMap<String, u64> {
    let mut sealed = BTreeMap::new();
    for (i, dev) in devs.into_iter().enumerate() {
        let out = dev.wait_output();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["frames"], v["acked"], "device {i}: {v}");
        assert_eq!(v["queued_left"], 0, "device {i}: {v}");
        assert_eq!(v["refused"].as_u64(), Some(0), "device {i}: {v}");
        sealed.insert(format!("DEMO-{:04}", i + 1), v["frames"].as_u64().unwrap());
    }
    assert!(
        sealed.values().all(|n| *n == u64::from(duration_s)),
        "{sealed:?}"
    );
    sealed
}

/// Every frame in the stream, once per (serial, sequence), counted per device.
fn stream_counts(nats: &Nats) -> BTreeMap<String, u64> {
    let (messages, _) = nats.stream_state(&spec()).unwrap();
    let reader = nats
        .reader(
            &spec(),
            &(0..P).collect::<Vec<_>>(),
            Duration::from_millis(500),
        )
        .unwrap();
    let mut seen = HashSet::new();
    let mut per = BTreeMap::new();
    let mut pos = 0;
    let mut n = 0u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while n < messages && Instant::now() < deadline {
        let (recs, next) = reader.read_located(pos, 1000).unwrap();
        for (_, r) in recs {
            n += 1;
            let (_, f) = aorta_stream::job::decode_record(&r).unwrap();
            let h = aorta_crypto::frame::parse(f).unwrap().header;
            assert!(
                seen.insert((h.serial.clone(), h.sequence)),
                "frame stored twice"
            );
            *per.entry(h.serial).or_default() += 1;
        }
        pos = next;
    }
    assert_eq!(n, messages);
    per
}

/// The clinician's results, each once.
fn results(dir: &Path, data: &str, server: &Server) -> BTreeSet<String> {
    let v = fetch_results(dir, &server.url(), &format!("{data}/cert.pem"));
    let n = v.len();
    let set: BTreeSet<String> = v.iter().map(|r| r.to_string()).collect();
    assert_eq!(set.len(), n, "a result was returned twice");
    set
}

/// Every result id in `data`'s store, once (the server is stopped).
fn ids_unique(work: &Path, data: &str) {
    let store =
        aorta_stream::results::FileResultStore::open(work.join(format!("{data}/results.log")))
            .unwrap();
    let all = store.all().unwrap();
    let ids: HashSet<&String> = all.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), all.len(), "a result id was stored twice");
    assert!(!all.is_empty());
}

/// The uninterrupted reference over the same stream: a second server
/// (same keys) and one worker with its own buckets.
fn reference(work: &Path, urls: &str, nats: &Nats) -> BTreeSet<String> {
    let refdir = work.join("ref");
    std::fs::create_dir(&refdir).unwrap();
    for f in ["worker.token", "broker-state.key", "cert.pem", "key.pem"] {
        std::fs::copy(work.join("server").join(f), refdir.join(f)).unwrap();
    }
    cluster_config(work, "ref.toml", "ref", urls);
    let mut srv = Server::start(work, "ref.toml");
    let mut w = worker(work, "ref", &srv, urls, "w-ref", REF);
    wait_for(work, "reference caught up", Duration::from_secs(90), || {
        caught_up(nats, REF.1)
    });
    let r = results(work, "ref", &srv);
    w.term();
    srv.proc.term();
    ids_unique(work, "ref");
    r
}

fn compare(killed: &BTreeSet<String>, reference: &BTreeSet<String>) {
    let only_killed: Vec<_> = killed.difference(reference).take(3).collect();
    let only_ref: Vec<_> = reference.difference(killed).take(3).collect();
    assert!(
        only_killed.is_empty() && only_ref.is_empty(),
        "results differ from an uninterrupted run ({} vs {}): only after the kill {only_killed:?}, only in the reference {only_ref:?}",
        killed.len(),
        reference.len()
    );
}

#[test]
fn a_killed_worker_s_partitions_are_resumed_within_10_s_and_a_joining_worker_takes_its_share() {
    let Some(bin) = nats_server_or_skip("cluster_worker_kill9_and_join") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("w");
    common::setup(&work, 4);
    let nats_proc = NatsCluster::start(&bin, 3).unwrap();
    let urls = nats_proc.urls();
    let nats = nats_ready(&urls);
    cluster_config(&work, "server.toml", "server", &urls);
    let srv = Server::start(&work, "server.toml");

    let mut wa = worker(&work, "server", &srv, &urls, "w-a", MAIN);
    let wb = worker(&work, "server", &srv, &urls, "w-b", MAIN);
    wait_for(
        &work,
        "8 partitions owned by w-a and w-b",
        Duration::from_secs(60),
        || {
            let o = owners(&nats, MAIN.0);
            o.len() == P as usize
                && o.values().filter(|w| *w == "w-a").count() == 4
                && o.values().filter(|w| *w == "w-b").count() == 4
        },
    );
    let duration = 120;
    let devs = devices(&work, &srv, 4, duration);
    std::thread::sleep(Duration::from_secs(2));

    // A third worker joins mid-run: the others hand partitions back.
    let wc = worker(&work, "server", &srv, &urls, "w-c", MAIN);
    let join = wait_for(
        &work,
        "w-c holds its share",
        Duration::from_secs(30),
        || {
            let o = owners(&nats, MAIN.0);
            o.len() == P as usize && o.values().filter(|w| *w == "w-c").count() >= 2
        },
    );
    println!("join: w-c held its share {join:?} after it started (attestation included)");
    std::thread::sleep(Duration::from_secs(1));

    // SIGKILL w-a mid-run.
    let before = owners(&nats, MAIN.0);
    let lost: Vec<u32> = before
        .iter()
        .filter(|(_, w)| *w == "w-a")
        .map(|(p, _)| *p)
        .collect();
    assert!(!lost.is_empty(), "{before:?}");
    wa.kill9();
    let took = wait_for(
        &work,
        "w-a's partitions taken over",
        Duration::from_secs(10),
        || {
            let o = owners(&nats, MAIN.0);
            o.len() == P as usize && o.values().all(|w| w == "w-b" || w == "w-c")
        },
    );
    println!("SIGKILL: w-a's partitions {lost:?} taken over {took:?} after the kill");
    assert!(took <= Duration::from_secs(10));

    let sealed = devices_done(devs, duration);
    settle_and_compare(&work, srv, &urls, &nats, &sealed, [wb, wc]);
}

/// The end of a failure run: every acknowledged frame is in the stream;
/// once the workers caught up, the results (each id stored once) equal an
/// uninterrupted reference run's. Stops `workers` and `srv`.
fn settle_and_compare<const N: usize>(
    work: &Path,
    mut srv: Server,
    urls: &str,
    nats: &Nats,
    sealed: &BTreeMap<String, u64>,
    workers: [Proc; N],
) {
    assert_eq!(
        &stream_counts(nats),
        sealed,
        "acknowledged frames vs the stream"
    );
    wait_for(work, "workers caught up", Duration::from_secs(90), || {
        caught_up(nats, MAIN.1)
    });
    let killed = results(work, "server", &srv);
    for mut w in workers {
        w.term();
    }
    srv.proc.term();
    ids_unique(work, "server");
    let reference = reference(work, urls, nats);
    compare(&killed, &reference);
}

#[test]
fn a_nats_node_killed_mid_run_loses_no_acknowledged_frame_and_no_result() {
    let Some(bin) = nats_server_or_skip("cluster_nats_node_kill") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("w");
    common::setup(&work, 3);
    let mut nats_proc = NatsCluster::start(&bin, 3).unwrap();
    let urls = nats_proc.urls();
    let nats = nats_ready(&urls);
    cluster_config(&work, "server.toml", "server", &urls);
    let srv = Server::start(&work, "server.toml");
    let wa = worker(&work, "server", &srv, &urls, "w-a", MAIN);
    let wb = worker(&work, "server", &srv, &urls, "w-b", MAIN);
    wait_for(&work, "8 partitions owned", Duration::from_secs(60), || {
        owners(&nats, MAIN.0).len() == P as usize
    });
    let duration = 120;
    let devs = devices(&work, &srv, 3, duration);
    std::thread::sleep(Duration::from_secs(3));
    // SIGKILL the node leading the frame stream.
    let leader = nats.stream_leader(&spec()).unwrap().unwrap();
    let i = nats_proc.index_of(&leader).unwrap();
    nats_proc.kill(i);
    println!("killed nats node {leader}");
    let sealed = devices_done(devs, duration);
    // Read back from the two survivors.
    let survivors = (0..3)
        .filter(|j| *j != i)
        .map(|j| nats_proc.url(j))
        .collect::<Vec<_>>()
        .join(",");
    let nats = nats_ready(&survivors);
    settle_and_compare(&work, srv, &survivors, &nats, &sealed, [wa, wb]);
}
