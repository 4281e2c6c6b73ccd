//! Partition ownership and checkpoints in JetStream KV against a real
//! `nats-server` (started by the tests; `SKIPPED` without the binary):
//! takeover after an owner stops renewing, rebalancing when a worker
//! joins, a stale owner fenced (its renewals and its late checkpoint
//! refused), checkpoints larger than a NATS message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aorta_cluster::lease::lease_owners;
use aorta_cluster::testing::{NatsCluster, nats_server_or_skip};
use aorta_cluster::{
    CheckpointConfig, ClusterError, KvCheckpoints, LeaseConfig, Leases, Nats, is_fenced,
};
use aorta_stream::checkpoint::{Checkpoint, CheckpointStore};

fn connect(urls: &str) -> Nats {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Nats::connect(urls, Duration::from_secs(2)) {
            Ok(n) => return n,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("NATS not ready: {e}"),
        }
    }
}

fn join(nats: &Nats, id: &str, p: u32) -> Leases {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Leases::join(nats, id, p, LeaseConfig::default()) {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("join: {e}"),
        }
    }
}

/// Ticks `l` when due; asserts what it gains was free of every other
/// holder in `others`.
fn tick_if_due(l: &mut Leases) -> aorta_cluster::LeaseChanges {
    if l.due() {
        l.tick().unwrap_or_default()
    } else {
        aorta_cluster::LeaseChanges::default()
    }
}

#[test]
fn a_partition_is_taken_over_within_ttl_plus_one_renewal_after_its_owner_stops() {
    let Some(bin) = nats_server_or_skip("takeover_after_owner_stops") else {
        return;
    };
    let nats_proc = NatsCluster::start(&bin, 1).unwrap();
    let nats = connect(&nats_proc.urls());
    let cfg = LeaseConfig::default();
    let mut a = join(&nats, "worker-a", 4);
    let ch = a.tick().unwrap();
    assert_eq!(
        ch.gained,
        vec![0, 1, 2, 3],
        "alone, A claims every partition"
    );
    assert_eq!(a.owned(), vec![0, 1, 2, 3]);
    // A's last renewal, then A stops (killed: it writes nothing more).
    std::thread::sleep(Duration::from_millis(1100));
    let ch = a.tick().unwrap();
    assert!(ch.lost.is_empty() && ch.gained.is_empty());
    let last_renewal = Instant::now();
    drop(a);
    let mut b = join(&nats, "worker-b", 4);
    let mut gained = BTreeSet::new();
    while gained.len() < 4 {
        assert!(
            last_renewal.elapsed() < Duration::from_secs(10),
            "no takeover: {gained:?}"
        );
        gained.extend(tick_if_due(&mut b).gained);
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = last_renewal.elapsed();
    println!("takeover of 4 partitions after {took:?} (TTL 3 s, renewal 1 s)");
    assert!(
        took >= cfg.ttl,
        "taken over before the TTL ran out: {took:?}"
    );
    assert!(
        took <= cfg.ttl + cfg.renew + Duration::from_millis(700),
        "takeover took {took:?}"
    );
    let owners = lease_owners(&nats, &cfg.bucket, 4).unwrap();
    assert!(
        owners
            .iter()
            .all(|o| o.as_ref().unwrap().owner == "worker-b")
    );
}

#[test]
fn a_joining_worker_gets_its_fair_share_and_no_partition_has_two_holders() {
    let Some(bin) = nats_server_or_skip("rebalance_on_join") else {
        return;
    };
    let nats_proc = NatsCluster::start(&bin, 1).unwrap();
    let nats = connect(&nats_proc.urls());
    let mut a = join(&nats, "worker-a", 5);
    assert_eq!(a.tick().unwrap().gained.len(), 5);
    let mut b = join(&nats, "worker-b", 5);
    let start = Instant::now();
    let mut handed_back = Vec::new();
    loop {
        let ch = tick_if_due(&mut a);
        // The owner above its share checkpoints (nothing to do here) and
        // hands the surplus back.
        for p in ch.surplus {
            a.release(p).unwrap();
            handed_back.push(p);
        }
        tick_if_due(&mut b);
        let (ha, hb): (BTreeSet<u32>, BTreeSet<u32>) = (
            a.owned().into_iter().collect(),
            b.owned().into_iter().collect(),
        );
        assert!(ha.is_disjoint(&hb), "two holders: {ha:?} {hb:?}");
        if ha.len() == 3 && hb.len() == 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no rebalance: A {ha:?} B {hb:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("rebalanced 3/2 after {:?}", start.elapsed());
    assert_eq!(handed_back.len(), 2);
    assert_eq!(a.live(), ["worker-a", "worker-b"]);
    // B leaves cleanly: its partitions are free at once and A takes them.
    b.leave().unwrap();
    let start = Instant::now();
    while a.owned().len() < 5 {
        // A sees B's membership gone at its next tick.
        tick_if_due(&mut a);
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", a.owned());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cp(offset: u64, state: &str) -> Checkpoint {
    Checkpoint::new(offset, state.as_bytes().to_vec()).unwrap()
}

#[test]
fn a_stale_owner_is_fenced_its_renewals_and_late_checkpoint_refused() {
    let Some(bin) = nats_server_or_skip("stale_owner_fenced") else {
        return;
    };
    let nats_proc = NatsCluster::start(&bin, 1).unwrap();
    let nats = connect(&nats_proc.urls());
    let ccfg = CheckpointConfig::default();
    let mut a = join(&nats, "worker-a", 1);
    assert_eq!(a.tick().unwrap().gained, vec![0]);
    let mut a_cp = KvCheckpoints::claim(&nats, &ccfg, 0, "worker-a").unwrap();
    assert_eq!(a_cp.load().unwrap(), None);
    a_cp.save(&cp(10, "{\"n\":1}")).unwrap();
    // A pauses (a long GC, a stopped VM): no renewal for longer than the TTL.
    let mut b = join(&nats, "worker-b", 1);
    let start = Instant::now();
    while !b.holds(0) {
        tick_if_due(&mut b);
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    // A no longer counts itself as owner (its local deadline passed before B
    // could claim) ...
    assert!(!a.holds(0), "A must have stopped before B took over");
    let mut b_cp = KvCheckpoints::claim(&nats, &ccfg, 0, "worker-b").unwrap();
    assert_eq!(b_cp.load().unwrap(), Some(cp(10, "{\"n\":1}")));
    // ... and when it wakes, everything it writes is refused: its late
    // checkpoint, a load, its renewal.
    let late = a_cp.save(&cp(20, "{\"n\":2}")).unwrap_err();
    assert!(is_fenced(&late), "{late}");
    assert!(is_fenced(&a_cp.load().unwrap_err()));
    assert_eq!(a.tick().unwrap().lost, vec![0]);
    assert!(!a.holds(0));
    // B's checkpoints go on.
    b_cp.save(&cp(30, "{\"n\":3}")).unwrap();
    assert_eq!(b_cp.load().unwrap(), Some(cp(30, "{\"n\":3}")));
    // A claiming the checkpoint again (a bug: without the lease) would
    // fence B's next write, never mix the two.
    let direct = KvCheckpoints::claim(&nats, &ccfg, 0, "worker-a").unwrap();
    assert!(is_fenced(&b_cp.save(&cp(40, "{}")).unwrap_err()));
    drop(direct);
}

#[test]
fn a_checkpoint_larger_than_a_nats_message_is_chunked_and_read_back() {
    let Some(bin) = nats_server_or_skip("chunked_checkpoint") else {
        return;
    };
    let nats_proc = NatsCluster::start(&bin, 1).unwrap();
    let nats = connect(&nats_proc.urls());
    let ccfg = CheckpointConfig::default();
    let mut s = KvCheckpoints::claim(&nats, &ccfg, 3, "worker-a").unwrap();
    // 3 MiB of state: three times NATS's default max_payload (1 MiB).
    let big: String = (0..3 * 1024 * 1024 / 8)
        .map(|i| format!("{:07x},", i % 0x0fff_ffff))
        .collect();
    let state = format!("[\"{big}\"]");
    let c1 = cp(1_000, &state);
    s.save(&c1).unwrap();
    assert_eq!(s.load().unwrap(), Some(c1.clone()));
    // Alternate slots: a second big save, then a small (inline) one.
    let c2 = cp(2_000, &state.replace('a', "b"));
    s.save(&c2).unwrap();
    assert_eq!(s.load().unwrap(), Some(c2));
    // A new owner reads it back after a takeover.
    let t = KvCheckpoints::claim(&nats, &ccfg, 3, "worker-b").unwrap();
    assert_eq!(t.load().unwrap().map(|c| c.log_offset), Some(2_000));
    let mut t = t;
    t.save(&cp(3_000, "{}")).unwrap();
    assert_eq!(t.load().unwrap(), Some(cp(3_000, "{}")));
    // Too small a chunk size is a configuration error, not a panic.
    let bad = CheckpointConfig {
        chunk_bytes: 10,
        ..CheckpointConfig::default()
    };
    assert!(matches!(
        KvCheckpoints::claim(&nats, &bad, 0, "worker-a"),
        Err(ClusterError::Config(_))
    ));
}

#[test]
fn a_survivor_at_its_share_takes_a_dead_peer_s_partitions_within_one_ttl_plus_renewal() {
    let Some(bin) = nats_server_or_skip("survivor_takes_over") else {
        return;
    };
    let nats_proc = NatsCluster::start(&bin, 1).unwrap();
    let nats = connect(&nats_proc.urls());
    let cfg = LeaseConfig::default();
    let mut a = join(&nats, "worker-a", 4);
    let mut b = join(&nats, "worker-b", 4);
    // Both run until they share 2/2 and have seen each other for a while.
    let start = Instant::now();
    while !(a.owned().len() == 2 && b.owned().len() == 2 && start.elapsed() > cfg.ttl * 2) {
        for p in tick_if_due(&mut a).surplus {
            a.release(p).unwrap();
        }
        tick_if_due(&mut b);
        assert!(start.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(20));
    }
    // A renews one last time, then dies.
    while !a.due() {
        std::thread::sleep(Duration::from_millis(10));
    }
    a.tick().unwrap();
    let last_renewal = Instant::now();
    drop(a);
    while b.owned().len() < 4 {
        tick_if_due(&mut b);
        assert!(last_renewal.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = last_renewal.elapsed();
    println!("survivor took the dead peer's partitions after {took:?}");
    assert!(
        took <= cfg.ttl + cfg.renew + Duration::from_millis(700),
        "takeover took {took:?}: the survivor must already know the age of every partition key"
    );
}
