//! Helpers shared by the CLI tests that run `aorta server` and friends.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const AORTA: &str = env!("CARGO_BIN_EXE_aorta");

/// A child process killed on drop.
pub struct Proc(pub Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `aorta demo --setup-only` into `work` with `devices` devices, and a
/// server configuration `server.toml` on fixed ports; returns (port, broker port).
pub fn setup(work: &Path, devices: usize) -> (u16, u16) {
    ok(Command::new(AORTA)
        .args([
            "demo",
            "--setup-only",
            "--devices",
            &devices.to_string(),
            "--dir",
        ])
        .arg(work)
        .output()
        .unwrap());
    let (port, broker) = (free_port(), free_port());
    write_config(work, "server.toml", "server", port, broker);
    (port, broker)
}

pub fn write_config(dir: &Path, name: &str, data: &str, port: u16, broker: u16) {
    std::fs::write(
        dir.join(name),
        format!(
            "listen = \"127.0.0.1:{port}\"\nbroker_listen = \"127.0.0.1:{broker}\"\ndata_dir = \"{data}\"\n\
             registry = \"registry\"\npolicy = \"policy.toml\"\nsubscribers = \"subscribers.toml\"\n"
        ),
    )
    .unwrap();
}

/// Starts `aorta server --config` and waits for its listening line.
pub fn server(dir: &Path, config: &str) -> Proc {
    let mut c = Command::new(AORTA)
        .args(["server", "--config", config])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut r = BufReader::new(c.stderr.take().unwrap());
    let t = Instant::now();
    let mut line = String::new();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "server exited early");
        if line.contains("aorta server listening") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30));
    }
    std::thread::spawn(move || for _ in r.lines() {});
    Proc(c)
}

/// SIGTERM, and wait (20 s at most).
pub fn term(p: &mut Proc) {
    let _ = Command::new("kill")
        .args(["-TERM", &p.0.id().to_string()])
        .status();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(20) {
        if let Ok(Some(_)) = p.0.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("process did not stop on SIGTERM");
}

/// Starts `aorta worker stream` (sim backend) against the server whose data
/// directory is `data` (relative to `dir`); its stderr is appended to
/// `dir/worker-DATA.log`.
pub fn worker(dir: &Path, data: &str, port: u16, broker: u16) -> Proc {
    Proc(
        Command::new(AORTA)
            .args([
                "worker",
                "stream",
                "--backend",
                "sim",
                "--broker",
                &format!("127.0.0.1:{broker}"),
                "--assignment",
                "demo",
                "--sim-platform-key",
                "sim-platform.key",
                "--server",
                &format!("https://127.0.0.1:{port}"),
                "--ca",
                &format!("{data}/cert.pem"),
                "--token-file",
                &format!("{data}/worker.token"),
                "--checkpoint-secs",
                "0.3",
                "--batch",
                "16",
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("worker-{data}.log")))
                    .unwrap(),
            )
            .spawn()
            .unwrap(),
    )
}
