//! Frames per second through one `aorta server` (HTTPS, signed frames,
//! every ingest check) into its frame log: the embedded file log, or NATS
//! JetStream on a local 1-node (R=1) or 3-node (R=3) cluster started here
//! (`docs/scale.md`, "Measured"). Needs nats-server (`AORTA_NATS_SERVER`
//! or PATH) for the JetStream modes.
//!
//! ```sh
//! cargo run --release -p aorta-server --example cluster_ingest_bench -- MODE [DEVICES] [FRAMES]
//! ```
//! MODE: `embedded`, `r1` or `r3`; DEVICES concurrent devices (default 64),
//! each posting FRAMES one-second 2-channel 360 Hz frames (default 100) one
//! after the other, each waiting for its acknowledgement, as the device
//! agent does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "a benchmark program: a failure is a panic with its message"
)]

#[path = "../tests/http_common/mod.rs"]
mod http_common;

use std::time::{Duration, Instant};

use aorta_cluster::testing::{NatsCluster, nats_server};
use aorta_server::http::ServerConfig;
use aorta_server::http::config::ClusterConfig;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map_or("r1", String::as_str).to_owned();
    let devices: usize = args.get(1).map_or(64, |s| s.parse().unwrap());
    let frames: u64 = args.get(2).map_or(100, |s| s.parse().unwrap());
    let nodes = match mode.as_str() {
        "embedded" => 0,
        "r1" => 1,
        "r3" => 3,
        m => panic!("mode {m}: embedded, r1 or r3"),
    };
    let nats = (nodes > 0).then(|| {
        let bin = nats_server().expect("no nats-server (AORTA_NATS_SERVER or PATH)");
        NatsCluster::start(&bin, nodes).unwrap()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ServerConfig {
        data_dir: dir.path().join("data"),
        max_frame_bytes: 64 << 10,
        max_connections_per_source: 4096,
        source_frame_bytes_per_sec: 0,
        ..ServerConfig::default()
    };
    if let Some(n) = &nats {
        let c = ClusterConfig {
            partitions: 16,
            replicas: nodes,
            ..ClusterConfig::new(&n.urls())
        };
        // A fresh cluster elects its JetStream leader first.
        let deadline = Instant::now() + Duration::from_secs(30);
        while aorta_cluster::Nats::connect(&c.nats, Duration::from_secs(2))
            .and_then(|x| x.ensure_stream(&c.spec()))
            .is_err()
        {
            assert!(Instant::now() < deadline, "JetStream not ready");
            std::thread::sleep(Duration::from_millis(200));
        }
        cfg.cluster = Some(c);
    }
    let serials: Vec<String> = (0..devices).map(|i| format!("BENCH-{i:05}")).collect();
    let names: Vec<&str> = serials.iter().map(String::as_str).collect();
    let r = http_common::serve_at(
        &cfg,
        http_common::directory_of(&names),
        Some(http_common::broker_key().public()),
    );
    // Sealed and signed before timing.
    let work: Vec<Vec<(Vec<u8>, String)>> = serials
        .iter()
        .map(|s| {
            (0..frames)
                .map(|seq| {
                    let f = http_common::sealed(s, 1, seq, 360);
                    let sig = http_common::signature_of(s, &f);
                    (f, sig)
                })
                .collect()
        })
        .collect();
    let bytes: usize = work.iter().flatten().map(|(f, _)| f.len()).sum();
    let url = format!("{}/v1/frames", r.url);
    let t0 = Instant::now();
    let mut lat: Vec<f64> = std::thread::scope(|s| {
        let hs: Vec<_> = work
            .iter()
            .map(|dev| {
                let client = r.client.clone();
                let url = url.clone();
                s.spawn(move || {
                    let mut lat = Vec::new();
                    for (f, sig) in dev {
                        loop {
                            let t = Instant::now();
                            let resp = client
                                .post(&url)
                                .header(aorta_api::SIGNATURE_HEADER, sig)
                                .body(f.clone())
                                .send()
                                .unwrap();
                            let status = resp.status().as_u16();
                            let _ = resp.bytes();
                            if status == 200 {
                                lat.push(t.elapsed().as_secs_f64() * 1e3);
                                break;
                            }
                            assert_eq!(status, 503, "refused");
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                    lat
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let secs = t0.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize];
    let n = lat.len();
    println!(
        "{{\"mode\": \"{mode}\", \"devices\": {devices}, \"frames\": {n}, \"frame_bytes\": {}, \"seconds\": {secs:.2}, \"frames_per_s\": {:.0}, \"samples_per_s\": {:.0}, \"p50_ms\": {:.2}, \"p99_ms\": {:.2}}}",
        bytes / n.max(1),
        n as f64 / secs,
        n as f64 * 720.0 / secs,
        pct(0.5),
        pct(0.99)
    );
    if let (Some(_), Some(c)) = (&nats, &cfg.cluster) {
        let x = aorta_cluster::Nats::connect(&c.nats, Duration::from_secs(2)).unwrap();
        let (messages, _) = x.stream_state(&c.spec()).unwrap();
        assert_eq!(
            messages, n as u64,
            "every acknowledged frame in the stream once"
        );
    }
}
