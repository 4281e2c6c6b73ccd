//! The documented deployment, played with real processes on loopback: the
//! cloud host runs `aorta server` with no key at all (no registry, no KEK,
//! no broker key) and only the public device directory; the data owner runs
//! the key broker with the registry elsewhere. Devices stream, the attested
//! worker analyses, the clinician reads results it can verify. Then the
//! data owner revokes the device and its frames are refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

mod common;
use common::{Broker, Run, SAMPLE, Server, aorta_in, stats, wait_until};

/// `aorta results fetch --json` as the setup's clinician, pinning
/// `broker_key` (and accepting `sim` workers with `allow_sim`).
fn fetch(work: &Path, url: &str, ca: &Path, broker_key: &str, allow_sim: bool) -> Output {
    let mut run = Run::new(["results", "fetch", "--server", url, "--ca"])
        .arg(ca)
        .args(["--broker-key", broker_key, "--identity", "clinician.key"])
        .args(["--subscriber", "demo-clinician", "--json"]);
    if allow_sim {
        run = run.arg("--allow-sim");
    }
    run.cwd(work).output()
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn device_run(work: &Path, url: &str, ca: &Path, seconds: &str) -> serde_json::Value {
    let out = Run::new(["device", "run", "--device", "devices/DEMO-0001"])
        .args(["--record", SAMPLE, "--server", url, "--ca"])
        .arg(ca)
        .args(["--speed", "12", "--duration", seconds, "--json"])
        .cwd(work)
        .output();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{out:?}"))
}

#[test]
fn a_host_without_any_key_streams_and_serves_only_verified_results() {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("w");
    common::setup(&work, 1);
    // The data owner: the broker with the registry and its certifying key.
    std::fs::create_dir_all(work.join("owner")).unwrap();
    let broker = Broker::start(
        &work,
        &[
            "--policy",
            "policy.toml",
            "--registry",
            "registry",
            "--keys",
            "subscribers.toml",
            "--signing-key",
            "owner/broker-signing.key",
            "--state-key",
            "owner/broker-state.key",
        ],
        &work.join("broker.log"),
    );
    let out = aorta_in(
        &work,
        &[
            "broker",
            "public-key",
            "--signing-key",
            "owner/broker-signing.key",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let broker_key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(broker_key.len(), 64);

    // The host: a directory of its own holding only the public directory.
    let host = work.join("host");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::copy(
        work.join("registry/directory.txt"),
        host.join("directory.txt"),
    )
    .unwrap();
    std::fs::write(
        host.join("server.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\ndirectory = \"directory.txt\"\n\
             registry = \"no-registry-on-this-host\"\nbroker_key = \"{broker_key}\"\n\
             clinicians = \"../clinicians.toml\"\n"
        ),
    )
    .unwrap();
    let mut srv = Server::start(&host, "server.toml");
    assert!(srv.broker.is_none(), "the host runs no broker");
    let ca = host.join("data/cert.pem");

    let mut wrk = Run::new(["worker", "stream", "--backend", "sim", "--broker"])
        .arg(&broker.addr)
        .args([
            "--assignment",
            "demo",
            "--sim-platform-key",
            "sim-platform.key",
        ])
        .args(["--server", &srv.url(), "--ca"])
        .arg(&ca)
        .arg("--token-file")
        .arg(host.join("data/worker.token"))
        .args(["--checkpoint-secs", "0.3"])
        .cwd(&work)
        .spawn(Stdio::from(
            std::fs::File::create(work.join("worker.log")).unwrap(),
        ));

    let v = device_run(&work, &srv.url(), &ca, "48");
    assert_eq!(v["frames"], v["acked"], "{v}");
    assert_eq!(v["refused"].as_u64(), Some(0), "{v}");
    wait_until("worker caught up", Duration::from_secs(120), || {
        stats(&srv.url(), &ca).is_some_and(|s| {
            s["log_end"].as_u64().unwrap() > 0 && s["worker_offset"] == s["log_end"]
        })
    });
    wrk.term();
    // The clinician pins the broker key: every result verifies, exit 0.
    let out = fetch(&work, &srv.url(), &ca, &broker_key, true);
    assert!(out.status.success(), "{out:?}");
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!results.as_array().unwrap().is_empty(), "no results");
    let genuine = results.as_array().unwrap().len();

    // The host forges: it writes into its own results store a record sealed
    // to the clinician (it has their public key) and signed by a key it
    // certified itself, and the genuine record again under another id;
    // then restarts its server. The clinician sees exactly the genuine
    // results and is told about the rest (exit 1).
    srv.proc.term();
    {
        use aorta_crypto::auth::{SignedResult, SigningKey, WorkerCert};
        use aorta_stream::results::{FileResultStore, ResultSink};
        let mut store = FileResultStore::open(host.join("data/results.log")).unwrap();
        let (gid, grec) = store
            .all()
            .unwrap()
            .into_iter()
            .find(|(i, _)| !i.contains("@session"))
            .unwrap();
        let rogue = SigningKey::generate().unwrap();
        let now = aorta_base::time::now_s();
        let cert = WorkerCert::issue(
            &rogue,
            rogue.public(),
            now - 60,
            now + 3600,
            true,
            "tdx",
            &[0u8; 32],
            "demo",
            &["demo-clinician".to_owned()],
        );
        let cert_bytes = aorta_base::codec::Encode::to_bytes(&cert);
        std::fs::write(
            host.join("data/certs")
                .join(format!("{}.aowc", aorta_base::hex::encode(&cert.digest()))),
            &cert_bytes,
        )
        .unwrap();
        let id = format!("demo-clinician/{}", "ab".repeat(16));
        let forged = SignedResult::sign(
            &rogue,
            cert.digest(),
            &id,
            b"{\"type\":\"heart_rate\",\"bpm\":187.5}",
        );
        store.put(&id, &forged).unwrap();
        store.put(&format!("{gid}0"), &grec).unwrap();
        store.sync().unwrap();
    }
    srv = Server::start(&host, "server.toml");
    let out = fetch(&work, &srv.url(), &ca, &broker_key, true);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        shown.as_array().unwrap().len(),
        genuine,
        "only the genuine results"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("187.5"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused 2 record(s)"),
        "{out:?}"
    );
    // Without --allow-sim the sim worker's results are refused too.
    let out = fetch(&work, &srv.url(), &ca, &broker_key, false);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("allow-sim"),
        "{out:?}"
    );

    // Pinning another broker key, nothing verifies: exit 1, saying why.
    let out = fetch(&work, &srv.url(), &ca, &"ab".repeat(32), false);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused"));

    // Nothing on the host's disk is key material: no KEK, no registry, no
    // broker or device key; the KEK's bytes appear in no host file.
    let kek = std::fs::read(work.join("registry/kek")).unwrap();
    for f in files_under(&host) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            ![
                "kek",
                "registry.redb",
                "broker-signing.key",
                "broker-state.key",
                "se.key"
            ]
            .contains(&name.as_str()),
            "{}",
            f.display()
        );
        let b = std::fs::read(&f).unwrap();
        assert!(
            !b.windows(kek.len().min(32)).any(|w| kek.starts_with(w)),
            "{} holds KEK bytes",
            f.display()
        );
    }

    // The data owner retires the device (the broker holds the registry:
    // stop it first) and publishes the directory to the host.
    drop(broker);
    let out = aorta_in(
        &work,
        &["factory", "revoke", "--registry", "registry", "DEMO-0001"],
    );
    assert!(out.status.success(), "{out:?}");
    std::fs::copy(
        work.join("registry/directory.txt"),
        host.join("directory.txt"),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let v = device_run(&work, &srv.url(), &ca, "12");
    assert_eq!(v["acked"].as_u64(), Some(0), "{v}");
    assert!(v["refused"].as_u64().unwrap() > 0, "{v}");
    srv.proc.term();
}
