//! `aorta worker stream --nats` against a NATS that requires credentials
//! (`docs/scale.md`, "Securing NATS"), through the real binaries: with a
//! wrong password the worker stops at once with an error naming the
//! credentials (it is not retried as an outage); with the right user and
//! password file it joins the cluster and takes the partitions' leases.
//! `SKIPPED` without nats-server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

use std::time::{Duration, Instant};

use aorta_cluster::lease::lease_owners;
use aorta_cluster::testing::{NatsCluster, nats_server_or_skip};
use aorta_cluster::{Nats, NatsAuth, StreamSpec};

mod common;
use common::{Server, wait_until, worker_with};

const P: u32 = 2;

#[test]
fn a_cluster_worker_authenticates_to_nats_and_a_wrong_password_stops_it() {
    let Some(bin) = nats_server_or_skip("a_cluster_worker_authenticates_to_nats") else {
        return;
    };
    let conf = r#"authorization { users: [ { user: aorta-worker, password: "worker-pw-0c4f" } ] }"#;
    let nats = NatsCluster::start_with(&bin, 1, conf).unwrap();
    let urls = nats.urls();
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("w");
    common::setup(&work, 1);
    std::fs::write(work.join("good.pw"), "worker-pw-0c4f\n").unwrap();
    std::fs::write(work.join("bad.pw"), "guessed\n").unwrap();
    let auth = NatsAuth {
        user: Some((
            "aorta-worker".into(),
            NatsAuth::read_secret(&work.join("good.pw"), "password").unwrap(),
        )),
        ..NatsAuth::default()
    };
    let spec = StreamSpec {
        partitions: P,
        ..StreamSpec::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let n = loop {
        match Nats::connect_with(&urls, &auth, Duration::from_secs(2))
            .and_then(|n| n.ensure_stream(&spec).map(|()| n))
        {
            Ok(n) => break n,
            Err(e) => {
                assert!(Instant::now() < deadline, "JetStream not ready: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    let srv = Server::start(&work, "server.toml");
    let cluster = |password: &str| {
        vec![
            "--nats".to_owned(),
            urls.clone(),
            "--partitions".to_owned(),
            P.to_string(),
            "--nats-user".to_owned(),
            "aorta-worker".to_owned(),
            "--nats-password-file".to_owned(),
            password.to_owned(),
        ]
    };
    // A wrong password: the worker stops, saying why.
    let args = cluster("bad.pw");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut w = worker_with(&work, "server", &srv, false, &refs);
    wait_until("the worker stops", Duration::from_secs(60), || w.exited());
    let log = std::fs::read_to_string(work.join("worker-server.log")).unwrap();
    assert!(log.contains("credentials"), "{log}");
    // The right one: it joins and holds every partition's lease.
    std::fs::remove_file(work.join("worker-server.log")).unwrap();
    let args = cluster("good.pw");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut w = worker_with(&work, "server", &srv, false, &refs);
    wait_until(
        "the worker holds the leases",
        Duration::from_secs(60),
        || {
            lease_owners(&n, "AORTA_LEASES", P).is_ok_and(|o| {
                o.iter()
                    .all(|l| l.as_ref().is_some_and(|l| !l.owner.is_empty()))
            })
        },
    );
    assert!(!w.exited());
    w.term();
}
