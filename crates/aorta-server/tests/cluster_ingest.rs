//! `aorta server` in cluster mode (`[cluster]`, docs/scale.md) against real
//! `nats-server` processes the test starts (JetStream, loopback, free
//! ports; killed at the end) — `SKIPPED` without the binary: a frame is
//! acknowledged only once JetStream holds it; a device's retry through
//! another ingest node is stored once; JetStream down gives the device a
//! retryable 503, never an acknowledgement; with R=3 on a 3-node cluster a
//! node killed (SIGKILL) mid-run loses no acknowledged frame.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

mod http_common;
use http_common::{Running, post, sealed, start};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aorta_cluster::testing::{NatsCluster, nats_server_or_skip};
use aorta_cluster::{Nats, StreamSpec};
use aorta_server::http::config::ClusterConfig;

fn cluster_cfg(urls: &str, partitions: u32, replicas: usize, ack_ms: u64) -> ClusterConfig {
    ClusterConfig {
        partitions,
        replicas,
        ack_timeout_ms: ack_ms,
        ..ClusterConfig::new(urls)
    }
}

/// A server in cluster mode, once the (fresh) cluster has a JetStream
/// leader: retried until the stream can be made.
fn server(c: &ClusterConfig) -> Running {
    let spec = c.spec();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Nats::connect(&c.nats, Duration::from_secs(2)).and_then(|n| n.ensure_stream(&spec)) {
            Ok(()) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "JetStream not ready: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    let c = c.clone();
    start(move |cfg| cfg.cluster = Some(c))
}

/// Every record in the stream: stream sequence → the frame bytes (the
/// record without its arrival prefix).
fn stream_frames(urls: &str, spec: &StreamSpec) -> BTreeMap<u64, Vec<u8>> {
    let nats = Nats::connect(urls, Duration::from_secs(5)).unwrap();
    let (messages, _) = nats.stream_state(spec).unwrap();
    let reader = nats
        .reader(
            spec,
            &(0..spec.partitions).collect::<Vec<_>>(),
            Duration::from_millis(500),
        )
        .unwrap();
    let mut out = BTreeMap::new();
    let mut pos = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while (out.len() as u64) < messages && Instant::now() < deadline {
        let Ok((recs, next)) = reader.read_located(pos, 1000) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        for (seq, r) in recs {
            let (_, frame) = aorta_stream::job::decode_record(&r).unwrap();
            assert!(out.insert(seq, frame.to_vec()).is_none());
        }
        pos = next;
    }
    assert_eq!(out.len() as u64, messages);
    out
}

#[test]
fn cluster_mode_acknowledges_what_jetstream_holds_and_a_retry_is_stored_once() {
    let Some(bin) = nats_server_or_skip("cluster_mode_acknowledges_what_jetstream_holds") else {
        return;
    };
    let nats = NatsCluster::start(&bin, 1).unwrap();
    let c = cluster_cfg(&nats.urls(), 4, 1, 2000);
    let spec = c.spec();
    let a = server(&c);
    let mut sent = BTreeMap::new();
    for seq in 0..5 {
        let f = sealed("SN-OK", 1, seq, 360);
        let (status, ack) = post(&a, f.clone());
        assert_eq!(status, 200, "{ack}");
        assert_eq!(ack["duplicate"], false);
        sent.insert(ack["offset"].as_u64().unwrap(), f);
    }
    // Acknowledged with their stream sequences, and exactly those frames
    // are in the stream; nothing in a local frame log.
    assert_eq!(stream_frames(&nats.urls(), &spec), sent);
    assert!(!a.data.join("frames.log").exists());
    let (status, body) = {
        let r = a
            .client
            .get(format!("{}/v1/log?from=0&max=10", a.url))
            .bearer_auth(&a.token)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    assert_eq!(status, 409, "{body}");
    // The acceptance checks still run first: a revoked device, another
    // frame at a taken sequence; neither reaches the stream.
    assert_eq!(post(&a, sealed("SN-REVOKED", 1, 0, 360)).0, 403);
    assert_eq!(post(&a, sealed("SN-OK", 1, 2, 361)).0, 409);
    // The device retries frame 3 through the same node, then through a
    // second, stateless ingest node that never saw it: stored once.
    let f3 = sealed("SN-OK", 1, 3, 360);
    let (_, first) = post(&a, f3.clone());
    let b = server(&c);
    let (status, again) = post(&b, f3);
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["offset"], first["offset"]);
    assert_eq!(stream_frames(&nats.urls(), &spec), sent);
}

#[test]
fn jetstream_down_gives_the_device_503_never_an_ack() {
    let Some(bin) = nats_server_or_skip("jetstream_down_gives_the_device_503") else {
        return;
    };
    let mut nats = NatsCluster::start(&bin, 1).unwrap();
    let c = cluster_cfg(&nats.urls(), 2, 1, 1000);
    let spec = c.spec();
    let a = server(&c);
    assert_eq!(post(&a, sealed("SN-OK", 1, 0, 360)).0, 200);
    nats.kill(0);
    let f1 = sealed("SN-OK", 1, 1, 360);
    let t = Instant::now();
    let (status, body) = post(&a, f1.clone());
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "log_unavailable", "{body}");
    assert!(t.elapsed() < Duration::from_secs(10));
    // JetStream back (same store): the retry is acknowledged and stored once.
    nats.restart(0).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let ack = loop {
        let (status, ack) = post(&a, f1.clone());
        if status == 200 {
            break ack;
        }
        assert_eq!(status, 503, "{ack}");
        assert!(Instant::now() < deadline, "JetStream did not come back");
        std::thread::sleep(Duration::from_millis(200));
    };
    let frames = stream_frames(&nats.urls(), &spec);
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[&ack["offset"].as_u64().unwrap()], f1);
}

#[test]
fn r3_a_nats_node_killed_mid_run_loses_no_acknowledged_frame() {
    let Some(bin) = nats_server_or_skip("r3_a_nats_node_killed_mid_run") else {
        return;
    };
    let mut nats = NatsCluster::start(&bin, 3).unwrap();
    let c = cluster_cfg(&nats.urls(), 4, 3, 2000);
    let spec = c.spec();
    let a = server(&c);
    // Two devices send 30 frames each, retrying a refused frame as the
    // device agent does; the stream's leader node is killed with SIGKILL
    // after 10 frames each.
    let mut acked: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut refused = 0;
    let mut killed = 0;
    for seq in 0..30 {
        if seq == 10 {
            // The stream's leader: its replicas must elect another.
            let leader = Nats::connect(&nats.urls(), Duration::from_secs(2))
                .unwrap()
                .stream_leader(&spec)
                .unwrap()
                .unwrap();
            killed = nats.index_of(&leader).unwrap();
            nats.kill(killed);
        }
        for serial in ["SN-OK", "SN-OTHER"] {
            let f = sealed(serial, 1, seq, 360);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let (status, ack) = post(&a, f.clone());
                if status == 200 {
                    let at = ack["offset"].as_u64().unwrap();
                    assert!(acked.insert(at, f).is_none());
                    break;
                }
                assert_eq!(status, 503, "{ack}");
                assert!(Instant::now() < deadline, "no quorum after the kill");
                refused += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    assert_eq!(acked.len(), 60);
    let survivors: Vec<String> = (0..3)
        .filter(|i| *i != killed)
        .map(|i| nats.url(i))
        .collect();
    let survivors = survivors.join(",");
    assert_eq!(stream_frames(&survivors, &spec), acked);
    println!(
        "r3 through the server: 60 frames acknowledged, {refused} refusals (503) during the failover"
    );
}

/// `[cluster]` credentials (`docs/scale.md`, "Securing NATS"): with its
/// user and password file the server ingests into a NATS that refuses
/// strangers; with a wrong password it does not start, and says why.
#[test]
fn cluster_credentials_come_from_the_config_and_a_wrong_password_stops_the_start() {
    let Some(bin) = nats_server_or_skip("cluster_credentials_come_from_the_config") else {
        return;
    };
    let conf = r#"authorization { users: [ { user: aorta-ingest, password: "ingest-pw-5d1e" } ] }"#;
    let nats = NatsCluster::start_with(&bin, 1, conf).unwrap();
    let t = tempfile::tempdir().unwrap();
    let (good, bad) = (t.path().join("good.pw"), t.path().join("bad.pw"));
    std::fs::write(&good, "ingest-pw-5d1e\n").unwrap();
    std::fs::write(&bad, "guessed\n").unwrap();
    let with_password = |file: &std::path::Path| ClusterConfig {
        user: Some("aorta-ingest".into()),
        password_file: Some(file.to_owned()),
        ..cluster_cfg(&nats.urls(), 2, 1, 2000)
    };
    // A stranger (no credentials) is refused by NATS itself.
    assert!(Nats::connect(&nats.urls(), Duration::from_secs(2)).is_err());
    // The server with its credentials: JetStream may still be starting.
    let c = with_password(&good);
    let auth = c.auth().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Nats::connect_with(&c.nats, &auth, Duration::from_secs(2))
        .and_then(|n| n.ensure_stream(&c.spec()))
        .is_err()
    {
        assert!(Instant::now() < deadline, "JetStream not ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    let a = start({
        let c = c.clone();
        move |cfg| cfg.cluster = Some(c)
    });
    let (status, ack) = post(&a, sealed("SN-OK", 1, 0, 360));
    assert_eq!(status, 200, "{ack}");
    // A wrong password: the server refuses to start and names the cause.
    let mut cfg = aorta_server::http::ServerConfig {
        data_dir: t.path().join("data"),
        cluster: Some(with_password(&bad)),
        ..aorta_server::http::ServerConfig::default()
    };
    cfg.max_frame_bytes = 64 << 10;
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let devices: std::sync::Arc<dyn aorta_server::http::ingest::DeviceDirectory> =
        std::sync::Arc::new(aorta_crypto::directory::Directory::default());
    let err = match aorta_server::http::api::open_state(&cfg, devices, None) {
        Ok(_) => panic!("a server with a wrong NATS password started"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("credentials"), "{err}");
}
