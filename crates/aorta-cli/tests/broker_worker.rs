//! `aorta broker serve` and `aorta worker run --backend sim`, both from the
//! real binary on loopback: the worker attests, receives exactly its
//! assignment's keys, and refusals exit 1 with the reason; then the worker
//! speaks the host protocol over stdin/stdout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use aorta_enclave::wire::Message;
use common::{
    Broker, SimTrust, after_greeting, aorta, host_session, json, read_messages, stdout_json,
};

const KEY1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const KEY2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const KEY9: &str = "9999999999999999999999999999999999999999999999999999999999999999";
const KEYR: &str = "abababababababababababababababababababababababababababababababab";

#[test]
fn worker_attests_to_broker_from_the_cli() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let trust = SimTrust::new(
        d,
        "# worker configuration\nwindow_secs = 300\n",
        &["ECG-1", "ECG-2"],
    );
    let (platform_key, config, policy) = (&trust.platform_key, &trust.config, &trust.policy);
    let keys = d.join("keys.toml");
    std::fs::write(
        &keys,
        format!(
            "[transport]\n\"ECG-1\" = \"{KEY1}\"\n\"ECG-2\" = \"{KEY2}\"\n\"ECG-9\" = \"{KEY9}\"\n[results]\n\"dr-a\" = \"{KEYR}\"\n"
        ),
    )
    .unwrap();
    let check = json(aorta(&[
        "broker",
        "check",
        "--json",
        "--policy",
        policy.to_str().unwrap(),
    ]));
    assert_eq!(check["allow_simulation"], true);

    let broker = Broker::start(
        d,
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--keys",
            keys.to_str().unwrap(),
        ],
        &d.join("broker.log"),
    );
    let addr = broker.addr.clone();
    let run_as = |key: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "worker",
            "run",
            "--backend",
            "sim",
            "--json",
            "--broker",
            &addr,
            "--assignment",
            "ward-a",
            "--sim-platform-key",
            key.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        aorta(&args)
    };
    let run = |extra: &[&str]| run_as(platform_key, extra);

    // Success: exactly the assignment's keys.
    let ok = run(&["--config", config.to_str().unwrap()]);
    let v = json(ok.clone());
    assert_eq!(v["backend"], "sim");
    assert_eq!(v["hardware_protected"], false);
    assert!(
        v["warning"]
            .as_str()
            .unwrap()
            .contains("NOT hardware-protected")
    );
    assert_eq!(v["transport_keys"], 2);
    assert_eq!(v["result_keys"], 1);
    assert_eq!(v["devices"], serde_json::json!(["ECG-1", "ECG-2"]));
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(stderr.contains("NOT hardware-protected"), "{stderr}");
    for k in [KEY1, KEY2, KEY9, KEYR] {
        assert!(!String::from_utf8_lossy(&ok.stdout).contains(k));
        assert!(!stderr.contains(k));
    }

    // A device outside the assignment: refused, exit 1.
    let r = run(&["--config", config.to_str().unwrap(), "--device", "ECG-9"]);
    assert_eq!(r.status.code(), Some(1));
    let v = stdout_json(&r);
    assert_eq!(v["refused"]["code"], 303);

    // Another configuration = another measurement: refused.
    let other = d.join("other.toml");
    std::fs::write(&other, b"window_secs = 1\n").unwrap();
    let r = run(&["--config", other.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    let v = stdout_json(&r);
    assert_eq!(v["refused"]["code"], 109);

    // An unknown platform key: refused.
    let r = run_as(
        &d.join("other-platform.key"),
        &["--config", config.to_str().unwrap()],
    );
    assert_eq!(r.status.code(), Some(1));

    // Usage error: unknown backend → exit 2.
    let r = run(&["--backend", "sgx"]);
    assert_eq!(r.status.code(), Some(2));

    // The host protocol over the worker's stdin/stdout.
    let out = trust
        .serve_stdio(&addr)
        .stdin(host_session(&[b"not a frame".to_vec()]))
        .output();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing the host got from the worker process holds key bytes or hex.
    for k in [KEY1, KEY2, KEY9, KEYR] {
        let raw = aorta_base::hex::decode(k.trim(), aorta_base::hex::Case::Any).unwrap();
        for stream in [&out.stdout, &out.stderr] {
            assert!(!stream.windows(32).any(|w| w == raw.as_slice()));
            assert!(!String::from_utf8_lossy(stream).contains(k));
        }
    }
    let msgs = read_messages(&out.stdout);
    let replies = after_greeting(&msgs, 2, 1);
    assert!(matches!(replies[0], Message::FrameRefused { .. }));
    assert_eq!(msgs.len(), 3);
}
