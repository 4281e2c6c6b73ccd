//! `kill -9` of the worker and of the server at random instants while two
//! devices stream, through the real binaries over HTTPS on loopback.
//!
//! Proves, after the devices finish and the worker catches up:
//! - every frame a device sealed was acknowledged, and every acknowledged
//!   frame is in the server's log exactly once (none lost, none doubled);
//! - every result id is stored once;
//! - the results are exactly those of an uninterrupted run: a fresh worker
//!   on a copy of the same log, without checkpoint or results, opens to the
//!   same set of (patient, window, result) values.
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
use std::time::Duration;

use aorta_stream::log::{FileLog, FrameLog};

mod common;
use common::{Proc, Run, SAMPLE, Server, fetch_results, stats, wait_until, worker, write_config};

/// Waits until the worker's checkpoint covers the whole log.
fn wait_caught_up(server: &Server, ca: &Path) {
    wait_until("worker caught up", Duration::from_secs(120), || {
        stats(&server.url(), ca).is_some_and(|s| {
            s["log_end"].as_u64().unwrap() > 0 && s["worker_offset"] == s["log_end"]
        })
    });
}

/// The clinician's results, each once.
fn results(dir: &Path, data: &str, server: &Server) -> BTreeSet<String> {
    let v = fetch_results(dir, &server.url(), &format!("{data}/cert.pem"));
    let n = v.len();
    let set: BTreeSet<String> = v.iter().map(|r| r.to_string()).collect();
    assert_eq!(set.len(), n, "a result was returned twice");
    set
}

/// Tiny deterministic PRNG (the kill instants vary with the seed printed).
struct Lcg(u64);
impl Lcg {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

#[test]
fn kill9_of_worker_and_server_loses_nothing_and_duplicates_nothing() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let work = d.join("w");
    common::setup(&work, 2);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill schedule seed {seed}");
    let mut rng = Lcg(seed);

    let mut srv = Server::start(&work, "server.toml");
    // Restarts keep the ports the first start bound: the devices and the
    // worker know the server by its address.
    write_config(
        &work,
        "server.toml",
        "server",
        &srv.addr.to_string(),
        &srv.broker(),
    );
    let ca = work.join("server/cert.pem");
    let mut wrk = worker(&work, "server", &srv, true);
    let devices: Vec<Proc> = ["DEMO-0001", "DEMO-0002"]
        .iter()
        .map(|s| {
            Run::new(["device", "run", "--device", &format!("devices/{s}")])
                .args(["--record", SAMPLE, "--server", &srv.url(), "--ca"])
                .arg(&ca)
                .args(["--speed", "12", "--duration", "96", "--json"])
                .cwd(&work)
                .spawn(Stdio::null())
        })
        .collect();

    // While they stream (~8 s): three worker kills and two server kills.
    let plan = ["worker", "server", "worker", "server", "worker"];
    for what in plan {
        std::thread::sleep(Duration::from_millis(rng.next_ms(300, 1500)));
        match what {
            "worker" => {
                wrk.kill9();
                std::thread::sleep(Duration::from_millis(rng.next_ms(50, 400)));
                wrk = worker(&work, "server", &srv, false);
            }
            _ => {
                srv.proc.kill9();
                std::thread::sleep(Duration::from_millis(rng.next_ms(50, 600)));
                srv = Server::start(&work, "server.toml");
            }
        }
    }
    // The devices finish: every sealed frame acknowledged, none refused.
    let mut sealed = BTreeMap::new();
    for (i, dev) in devices.into_iter().enumerate() {
        let out = dev.wait_output();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["frames"], v["acked"], "device {i}: {v}");
        assert_eq!(v["queued_left"], 0, "device {i}: {v}");
        assert_eq!(v["refused"].as_u64(), Some(0), "device {i}: {v}");
        sealed.insert(format!("DEMO-000{}", i + 1), v["frames"].as_u64().unwrap());
    }
    assert!(sealed.values().all(|n| *n == 96), "{sealed:?}");

    wait_caught_up(&srv, &ca);
    let killed = results(&work, "server", &srv);
    wrk.term();
    srv.proc.term();

    // Every acknowledged frame is in the log exactly once.
    let log = FileLog::open(work.join("server/frames.log")).unwrap();
    let (recs, _) = log.read_from(0, usize::MAX).unwrap();
    let mut seen = HashSet::new();
    let mut per: BTreeMap<String, u64> = BTreeMap::new();
    for r in &recs {
        let (_, f) = aorta_stream::job::decode_record(r).unwrap();
        let h = aorta_crypto::frame::parse(f).unwrap().header;
        assert!(
            seen.insert((h.serial.clone(), h.sequence)),
            "frame stored twice"
        );
        *per.entry(h.serial).or_default() += 1;
    }
    assert_eq!(per, sealed);
    // Every result id is stored once.
    let store =
        aorta_stream::results::FileResultStore::open(work.join("server/results.log")).unwrap();
    let all = store.all().unwrap();
    let ids: HashSet<&String> = all.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), all.len(), "a result id was stored twice");
    assert!(!killed.is_empty());

    // The uninterrupted reference: same log, fresh worker.
    let refdir = work.join("ref");
    std::fs::create_dir(&refdir).unwrap();
    for f in [
        "frames.log",
        "worker.token",
        "broker-state.key",
        "cert.pem",
        "key.pem",
    ] {
        std::fs::copy(work.join("server").join(f), refdir.join(f)).unwrap();
    }
    write_config(&work, "ref.toml", "ref", "127.0.0.1:0", "127.0.0.1:0");
    let mut srv2 = Server::start(&work, "ref.toml");
    let mut wrk2 = worker(&work, "ref", &srv2, true);
    wait_caught_up(&srv2, &work.join("ref/cert.pem"));
    let reference = results(&work, "ref", &srv2);
    wrk2.term();
    srv2.proc.term();
    let only_killed: Vec<_> = killed.difference(&reference).take(3).collect();
    let only_ref: Vec<_> = reference.difference(&killed).take(3).collect();
    assert!(
        only_killed.is_empty() && only_ref.is_empty(),
        "results differ from an uninterrupted run ({} vs {}): only after kills {only_killed:?}, only in reference {only_ref:?}",
        killed.len(),
        reference.len()
    );
}
