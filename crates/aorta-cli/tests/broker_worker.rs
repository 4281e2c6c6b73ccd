//! `aorta broker serve` and `aorta worker run --backend sim`, both from the
//! real binary on loopback: the worker attests, receives exactly its
//! assignment's keys, and refusals exit 1 with the reason; then the worker
//! speaks the host protocol over stdin/stdout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use aorta_enclave::wire::{self, Message, Role};

const AORTA: &str = env!("CARGO_BIN_EXE_aorta");

fn aorta(args: &[&str]) -> Output {
    Command::new(AORTA).args(args).output().unwrap()
}

fn stdout_json(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

struct Broker(Child);
impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_broker(policy: &Path, keys: &Path) -> (Broker, String) {
    let mut child = Command::new(AORTA)
        .args(["broker", "serve", "--listen", "127.0.0.1:0", "--policy"])
        .arg(policy)
        .arg("--keys")
        .arg(keys)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected broker output {line:?}"))
        .to_owned();
    (Broker(child), addr)
}

const KEY1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const KEY2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const KEY9: &str = "9999999999999999999999999999999999999999999999999999999999999999";
const KEYR: &str = "abababababababababababababababababababababababababababababababab";

#[test]
fn worker_attests_to_broker_from_the_cli() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let platform_key = d.join("platform.key");
    let config = d.join("worker.toml");
    std::fs::write(&config, b"# worker configuration\nwindow_secs = 300\n").unwrap();

    let pk = stdout_json(&aorta(&[
        "worker",
        "sim-platform",
        "--json",
        "--key",
        platform_key.to_str().unwrap(),
    ]))["platform_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let m = stdout_json(&aorta(&[
        "worker",
        "measure",
        "--json",
        "--config",
        config.to_str().unwrap(),
    ]))["measurement"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(m.len(), 64);

    let policy = d.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            r#"allowed_backends = ["sim"]
allow_simulation = true
allowed_measurements = ["{m}"]
sim_platform_keys = ["{pk}"]
freshness_secs = 120

[[assignments]]
name = "ward-a"
devices = ["ECG-1", "ECG-2"]
subscribers = ["dr-a"]
"#
        ),
    )
    .unwrap();
    let keys = d.join("keys.toml");
    std::fs::write(
        &keys,
        format!(
            "[transport]\n\"ECG-1\" = \"{KEY1}\"\n\"ECG-2\" = \"{KEY2}\"\n\"ECG-9\" = \"{KEY9}\"\n[results]\n\"dr-a\" = \"{KEYR}\"\n"
        ),
    )
    .unwrap();
    let check = aorta(&[
        "broker",
        "check",
        "--json",
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_eq!(stdout_json(&check)["allow_simulation"], true);

    let (_broker, addr) = start_broker(&policy, &keys);
    let run = |extra: &[&str]| {
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
            platform_key.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        aorta(&args)
    };

    // Success: exactly the assignment's keys.
    let ok = run(&["--config", config.to_str().unwrap()]);
    let v = stdout_json(&ok);
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
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["refused"]["code"], 303);

    // Another configuration = another measurement: refused.
    let other = d.join("other.toml");
    std::fs::write(&other, b"window_secs = 1\n").unwrap();
    let r = run(&["--config", other.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["refused"]["code"], 109);

    // An unknown platform key: refused.
    let r = aorta(&[
        "worker",
        "run",
        "--backend",
        "sim",
        "--json",
        "--broker",
        &addr,
        "--assignment",
        "ward-a",
        "--config",
        config.to_str().unwrap(),
        "--sim-platform-key",
        d.join("other-platform.key").to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(1));

    // Usage error: unknown backend → exit 2.
    let r = run(&["--backend", "sgx"]);
    assert_eq!(r.status.code(), Some(2));

    // The host protocol over the worker's stdin/stdout.
    let mut child = Command::new(AORTA)
        .args([
            "worker",
            "run",
            "--backend",
            "sim",
            "--serve-stdio",
            "--broker",
            &addr,
            "--assignment",
            "ward-a",
            "--config",
            config.to_str().unwrap(),
            "--sim-platform-key",
            platform_key.to_str().unwrap(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    for m in [
        Message::Hello {
            version: wire::PROTOCOL_VERSION,
            role: Role::Host,
        },
        Message::SealedFrame {
            frame: b"not a frame".to_vec(),
        },
        Message::Shutdown,
    ] {
        input.write_all(&m.encode().unwrap()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing the host got from the worker process holds key bytes or hex.
    for k in [KEY1, KEY2, KEY9, KEYR] {
        let raw = aorta_enclave::evidence::parse_hex(k).unwrap();
        for stream in [&out.stdout, &out.stderr] {
            assert!(!stream.windows(32).any(|w| w == raw.as_slice()));
            assert!(!String::from_utf8_lossy(stream).contains(k));
        }
    }
    let mut cur = std::io::Cursor::new(out.stdout);
    let mut msgs = Vec::new();
    while let Some(m) = wire::read_message(&mut cur).unwrap() {
        msgs.push(m);
    }
    assert!(matches!(
        msgs[0],
        Message::Hello {
            role: Role::Worker,
            ..
        }
    ));
    assert!(matches!(
        msgs[1],
        Message::Status {
            backend: 1,
            hardware_protected: false,
            transport_keys: 2,
            result_keys: 1,
            ..
        }
    ));
    assert!(matches!(msgs[2], Message::FrameRefused { .. }));
    assert_eq!(msgs.len(), 3);
}
