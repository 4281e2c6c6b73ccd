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
    clippy::indexing_slicing
)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aorta_stream::log::{FileLog, FrameLog};

mod common;
use common::{AORTA, Proc, free_port, ok, server, term, worker, write_config};

const RECORD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sample/100");

fn kill9(p: &mut Proc) {
    let _ = Command::new("kill")
        .args(["-KILL", &p.0.id().to_string()])
        .status();
    let _ = p.0.wait();
}

fn stats(port: u16, ca: &Path) -> serde_json::Value {
    let s =
        aorta_worker::server::Server::new(&format!("https://127.0.0.1:{port}"), ca, None).unwrap();
    serde_json::to_value(s.stats().unwrap()).unwrap()
}

/// Waits until the worker's checkpoint covers the whole log.
fn wait_caught_up(port: u16, ca: &Path) {
    let t = Instant::now();
    loop {
        if let Ok(s) = std::panic::catch_unwind(|| stats(port, ca)) {
            if s["log_end"].as_u64().unwrap() > 0 && s["worker_offset"] == s["log_end"] {
                return;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "worker never caught up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn results(dir: &Path, data: &str, port: u16) -> BTreeSet<String> {
    let o = ok(Command::new(AORTA)
        .args([
            "results",
            "fetch",
            "--server",
            &format!("https://127.0.0.1:{port}"),
            "--ca",
            &format!("{data}/cert.pem"),
            "--identity",
            "clinician.key",
            "--subscriber",
            "demo-clinician",
            "--json",
        ])
        .current_dir(dir)
        .output()
        .unwrap());
    let v: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
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
    let (port, broker) = common::setup(&work, 2);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("kill schedule seed {seed}");
    let mut rng = Lcg(seed);

    let mut srv = server(&work, "server.toml");
    let ca = work.join("server/cert.pem");
    let mut wrk = worker(&work, "server", port, broker);
    let devices: Vec<Proc> = ["DEMO-0001", "DEMO-0002"]
        .iter()
        .map(|s| {
            Proc(
                Command::new(AORTA)
                    .args([
                        "device",
                        "run",
                        "--device",
                        &format!("devices/{s}"),
                        "--record",
                        RECORD,
                        "--server",
                        &format!("https://127.0.0.1:{port}"),
                        "--ca",
                        ca.to_str().unwrap(),
                        "--speed",
                        "12",
                        "--duration",
                        "96",
                        "--json",
                    ])
                    .current_dir(&work)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();

    // While they stream (~8 s): three worker kills and two server kills.
    let plan = ["worker", "server", "worker", "server", "worker"];
    for what in plan {
        std::thread::sleep(Duration::from_millis(rng.next_ms(300, 1500)));
        match what {
            "worker" => {
                kill9(&mut wrk);
                std::thread::sleep(Duration::from_millis(rng.next_ms(50, 400)));
                wrk = worker(&work, "server", port, broker);
            }
            _ => {
                kill9(&mut srv);
                std::thread::sleep(Duration::from_millis(rng.next_ms(50, 600)));
                srv = server(&work, "server.toml");
            }
        }
    }
    // The devices finish: every sealed frame acknowledged, none refused.
    let mut sealed = BTreeMap::new();
    for (i, mut dev) in devices.into_iter().enumerate() {
        let out = std::mem::replace(&mut dev.0, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["frames"], v["acked"], "device {i}: {v}");
        assert_eq!(v["queued_left"], 0, "device {i}: {v}");
        assert_eq!(v["refused"].as_u64(), Some(0), "device {i}: {v}");
        sealed.insert(format!("DEMO-000{}", i + 1), v["frames"].as_u64().unwrap());
    }
    assert!(sealed.values().all(|n| *n == 96), "{sealed:?}");

    wait_caught_up(port, &ca);
    let killed = results(&work, "server", port);
    term(&mut wrk);
    term(&mut srv);

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
    let (p2, b2) = (free_port(), free_port());
    write_config(&work, "ref.toml", "ref", p2, b2);
    let mut srv2 = server(&work, "ref.toml");
    let mut wrk2 = worker(&work, "ref", p2, b2);
    wait_caught_up(p2, &work.join("ref/cert.pem"));
    let reference = results(&work, "ref", p2);
    term(&mut wrk2);
    term(&mut srv2);
    let only_killed: Vec<_> = killed.difference(&reference).take(3).collect();
    let only_ref: Vec<_> = reference.difference(&killed).take(3).collect();
    assert!(
        only_killed.is_empty() && only_ref.is_empty(),
        "results differ from an uninterrupted run ({} vs {}): only after kills {only_killed:?}, only in reference {only_ref:?}",
        killed.len(),
        reference.len()
    );
}
