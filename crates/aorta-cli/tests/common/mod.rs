//! The one harness of the CLI tests: every file in `crates/aorta-cli/tests`
//! runs the real `aorta` binary through it.
//!
//! - [`aorta`], [`aorta_in`] and the [`Run`] builder (env, stdin, cwd) run
//!   the binary to completion; [`ok`] and [`json`] check the result.
//! - [`Proc`] is a child process killed on drop; [`Server`], [`Broker`] and
//!   [`worker`] start the real processes on port 0, read the address they
//!   bound from their own output and wait for readiness on a line they print,
//!   each within a bounded deadline (no port is ever guessed).
//! - Fixtures: `aorta demo --setup-only` ([`setup`]), factory-provisioned
//!   devices ([`factory_init`], [`provision`]), a simulated worker's trust
//!   ([`SimTrust`]), signal specs, the clinician's result fetch, and the
//!   shared data lookup ([`shared_data`]) that skips visibly when
//!   `../shared/data` is absent.
//! - [`ehr`]: the `aorta ehr …` commands and a real release gate.
#![allow(dead_code, reason = "each test file uses a part of the harness")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test harness: a failure panics with its context"
)]

pub mod ehr;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use aorta_enclave::wire::{self, Message, Role};
use aorta_signal::wfdb::{SignalSpec, parse_header};

/// The binary under test.
pub const AORTA: &str = env!("CARGO_BIN_EXE_aorta");
/// The MIT-BIH 100 excerpt shipped with the CLI (always present).
pub const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sample/100");
/// The shared data sets beside the repository (may be absent).
pub const SHARED_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data");
/// How long a process may take to print its readiness line.
pub const READY_DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Running the binary

/// Runs `aorta ARGS` to completion.
pub fn aorta(args: &[&str]) -> Output {
    Run::new(args).output()
}

/// Runs `aorta ARGS` in `cwd` to completion.
pub fn aorta_in(cwd: &Path, args: &[&str]) -> Output {
    Run::new(args).cwd(cwd).output()
}

/// One invocation of the binary: arguments, then env, stdin and cwd.
pub struct Run {
    cmd: Command,
    stdin: Option<Vec<u8>>,
}

impl Run {
    /// `aorta ARGS`.
    pub fn new<I, S>(args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(AORTA);
        cmd.args(args);
        Run { cmd, stdin: None }
    }

    /// One more argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Run {
        self.cmd.arg(a);
        self
    }

    /// More arguments.
    pub fn args<I, S>(mut self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Runs in `dir`.
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Run {
        self.cmd.current_dir(dir);
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Run {
        self.cmd.env(k, v);
        self
    }

    /// Feeds these bytes on stdin (then closes it).
    pub fn stdin(mut self, bytes: Vec<u8>) -> Run {
        self.stdin = Some(bytes);
        self
    }

    /// Runs to completion; stdout and stderr captured.
    pub fn output(mut self) -> Output {
        let Some(input) = self.stdin.take() else {
            return self.cmd.output().unwrap();
        };
        let mut child = self
            .cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stdin.take().unwrap();
        // A thread writes, so a child that answers as it reads cannot
        // deadlock against a full stdout pipe.
        let writer = std::thread::spawn(move || pipe.write_all(&input));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        out
    }

    /// Runs to completion and asserts success.
    pub fn ok(self) -> Output {
        ok(self.output())
    }

    /// Runs to completion, asserts success and parses stdout as JSON.
    pub fn json(self) -> serde_json::Value {
        json(self.output())
    }

    /// Starts it (stdout piped, stderr to `stderr`), killed on drop.
    pub fn spawn(mut self, stderr: Stdio) -> Proc {
        Proc::new(
            self.cmd
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(stderr)
                .spawn()
                .unwrap(),
        )
    }
}

/// Asserts that the run succeeded (showing both streams if not).
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

/// Asserts success and parses stdout as JSON.
pub fn json(o: Output) -> serde_json::Value {
    serde_json::from_slice(&ok(o).stdout).unwrap()
}

/// Parses stdout as JSON whatever the exit status.
pub fn stdout_json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

/// Stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ---------------------------------------------------------------------------
// Processes

/// A child process, killed on drop.
pub struct Proc(Option<Child>);

impl Proc {
    /// Takes ownership of `child`.
    pub fn new(child: Child) -> Proc {
        Proc(Some(child))
    }

    fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    /// Its stdout, once (when piped).
    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.child().stdout.take().unwrap()
    }

    /// Its stderr, once (when piped).
    pub fn take_stderr(&mut self) -> std::process::ChildStderr {
        self.child().stderr.take().unwrap()
    }

    /// Whether it has exited.
    pub fn exited(&mut self) -> bool {
        self.child().try_wait().unwrap().is_some()
    }

    /// Waits for its exit and collects what is left of its piped output.
    pub fn wait_output(mut self) -> Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }

    /// Sends `kill SIG PID` (e.g. `-TERM`); whether it was delivered.
    pub fn signal(&self, sig: &str) -> bool {
        send_signal(sig, self.id())
    }

    /// SIGTERM, then waits for the exit (20 s at most).
    pub fn term(&mut self) {
        self.signal("-TERM");
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("process did not stop on SIGTERM");
    }

    /// SIGKILL, and reaps it.
    pub fn kill9(&mut self) {
        self.signal("-KILL");
        let _ = self.child().wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether the `kill` command is there to send signals (procps); says SKIP if not.
pub fn have_kill() -> bool {
    let ok = Command::new("kill")
        .arg("-l")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: no `kill` command (procps) to send signals with");
    }
    ok
}

/// `kill SIG PID`; whether it was delivered.
pub fn send_signal(sig: &str, pid: u32) -> bool {
    Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// Every line of `r`, as it comes, from a thread that also appends it to
/// `tee` (if any) and keeps draining `r` until it closes.
fn lines(r: impl Read + Send + 'static, tee: Option<PathBuf>) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut log = tee.map(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap()
        });
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { return };
            if let Some(f) = log.as_mut() {
                let _ = writeln!(f, "{line}");
            }
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits (at most [`READY_DEADLINE`]) for the first line `pick` accepts.
fn wait_line<T>(what: &str, rx: &Receiver<String>, pick: impl Fn(&str) -> Option<T>) -> T {
    let deadline = Instant::now() + READY_DEADLINE;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => match pick(&line) {
                Some(t) => return t,
                None => seen.push(line),
            },
            Err(RecvTimeoutError::Timeout) => {
                panic!("{what} not ready after {READY_DEADLINE:?}; it said: {seen:#?}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("{what} exited before it was ready; it said: {seen:#?}")
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Server, broker, worker

/// A running `aorta server`, with the addresses it bound.
pub struct Server {
    /// The process.
    pub proc: Proc,
    /// Its HTTPS address.
    pub addr: SocketAddr,
    /// Its key broker's address (with a policy configured).
    pub broker: Option<SocketAddr>,
}

impl Server {
    /// Starts `aorta server --config CONFIG` in `dir` and waits for its
    /// machine-readable line `aorta server listening on https://ADDR
    /// (broker ADDR|off), certificate PATH` (on stderr).
    pub fn start(dir: &Path, config: &str) -> Server {
        let mut proc = Run::new(["server", "--config", config])
            .cwd(dir)
            .spawn(Stdio::piped());
        let rx = lines(proc.take_stderr(), None);
        let (addr, broker) = wait_line("aorta server", &rx, |l| {
            let rest = l.strip_prefix("aorta server listening on https://")?;
            let (addr, rest) = rest.split_once(" (broker ")?;
            let (broker, _) = rest.split_once(')')?;
            Some((addr.parse().unwrap(), broker.parse().ok()))
        });
        Server { proc, addr, broker }
    }

    /// `https://ADDR`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The broker's `HOST:PORT`.
    pub fn broker(&self) -> String {
        self.broker.expect("the server runs no broker").to_string()
    }
}

/// The server's `GET /v1/stats`, or `None` while it does not answer.
pub fn stats(url: &str, ca: &Path) -> Option<serde_json::Value> {
    let stats = aorta_worker::server::Server::new(url, ca, None)
        .ok()?
        .stats()
        .ok()?;
    serde_json::to_value(stats).ok()
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < limit, "{what}: not after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `aorta broker serve`, with the address it bound.
pub struct Broker {
    /// The process.
    pub proc: Proc,
    /// `HOST:PORT` it listens on.
    pub addr: String,
}

impl Broker {
    /// Starts `aorta broker serve --listen 127.0.0.1:0 ARGS` in `dir`, its
    /// stderr to `log`, and reads `listening on ADDR` (its first stdout line).
    pub fn start(dir: &Path, args: &[&str], log: &Path) -> Broker {
        let mut proc = Run::new(["broker", "serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .cwd(dir)
            .spawn(Stdio::from(std::fs::File::create(log).unwrap()));
        let rx = lines(proc.take_stdout(), None);
        let addr = wait_line("aorta broker", &rx, |l| {
            l.trim().strip_prefix("listening on ").map(str::to_owned)
        });
        Broker { proc, addr }
    }
}

/// Starts `aorta worker stream` (sim backend, assignment `demo`) against
/// `server`, whose data directory is `data` (relative to `dir`); its stderr
/// is appended to `dir/worker-DATA.log`. With `ready`, waits until it logs
/// that it holds its keys and streams.
pub fn worker(dir: &Path, data: &str, server: &Server, ready: bool) -> Proc {
    worker_with(dir, data, server, ready, &[])
}

/// [`worker`] with `extra` arguments.
pub fn worker_with(dir: &Path, data: &str, server: &Server, ready: bool, extra: &[&str]) -> Proc {
    let mut proc = Run::new([
        "worker",
        "stream",
        "--backend",
        "sim",
        "--broker",
        &server.broker(),
        "--assignment",
        "demo",
        "--sim-platform-key",
        "sim-platform.key",
        "--server",
        &server.url(),
        "--ca",
        &format!("{data}/cert.pem"),
        "--token-file",
        &format!("{data}/worker.token"),
        "--checkpoint-secs",
        "0.3",
        "--batch",
        "16",
    ])
    .args(extra)
    .cwd(dir)
    .spawn(Stdio::piped());
    let rx = lines(
        proc.take_stderr(),
        Some(dir.join(format!("worker-{data}.log"))),
    );
    if ready {
        wait_line("aorta worker stream", &rx, |l| {
            l.contains("keys received; streaming").then_some(())
        });
    }
    proc
}

// ---------------------------------------------------------------------------
// Fixtures

/// `aorta demo --setup-only` into `work` with `devices` devices, and a
/// server configuration `server.toml` (data in `server/`) on port 0.
pub fn setup(work: &Path, devices: usize) {
    Run::new(["demo", "--setup-only", "--devices", &devices.to_string()])
        .arg("--dir")
        .arg(work)
        .ok();
    write_config(work, "server.toml", "server", "127.0.0.1:0", "127.0.0.1:0");
}

/// A server configuration `dir/NAME` over the data directory `data` and the
/// setup's registry, policy and subscribers.
pub fn write_config(dir: &Path, name: &str, data: &str, listen: &str, broker: &str) {
    std::fs::write(
        dir.join(name),
        format!(
            "listen = \"{listen}\"\nbroker_listen = \"{broker}\"\ndata_dir = \"{data}\"\n\
             registry = \"registry\"\npolicy = \"policy.toml\"\nsubscribers = \"subscribers.toml\"\n\
             clinicians = \"clinicians.toml\"\n"
        ),
    )
    .unwrap();
}

/// `aorta results fetch --json` in `dir` as the setup's clinician.
/// The broker key of a server whose in-process broker keeps its
/// certifying key beside `ca` (its data directory).
pub fn broker_key_of(dir: &Path, ca: &str) -> String {
    let key = Path::new(ca).with_file_name("broker-signing.key");
    let out = aorta_in(
        dir,
        &[
            "broker",
            "public-key",
            "--signing-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub fn fetch_results(dir: &Path, url: &str, ca: &str) -> Vec<serde_json::Value> {
    let key = broker_key_of(dir, ca);
    serde_json::from_value(
        Run::new(["results", "fetch", "--server", url, "--ca", ca])
            .args(["--broker-key", &key, "--allow-sim"])
            .args(["--identity", "clinician.key"])
            .args(["--subscriber", "demo-clinician", "--json"])
            .cwd(dir)
            .json(),
    )
    .unwrap()
}

/// `aorta factory init` of the registry `dir/reg` with `pool_keys` keys.
pub fn factory_init(dir: &Path, pool_keys: u32) {
    let n = pool_keys.to_string();
    ok(aorta_in(
        dir,
        &["factory", "init", "--registry", "reg", "--pool-keys", &n],
    ));
}

/// `aorta factory provision` of `serial` from `dir/reg` into `dir/OUT`.
pub fn provision(dir: &Path, serial: &str, out: &str) -> Output {
    aorta_in(
        dir,
        &[
            "factory",
            "provision",
            "--registry",
            "reg",
            "--serial",
            serial,
            "--out",
            out,
        ],
    )
}

/// The paths in `dir`, sorted.
pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
}

/// A format-16 signal of gain 200/mV with baseline and ADC zero `zero`,
/// as a WFDB header line declares it.
pub fn spec(description: &str, adc_resolution: u32, zero: i32) -> SignalSpec {
    let line = format!("s.dat 16 200({zero})/mV {adc_resolution} {zero} 0 0 0 {description}");
    let mut header = parse_header(&format!("s 1 360\n{line}\n")).unwrap();
    let mut s = header.signals.remove(0);
    // A header states these of its own data; `write_record_16` computes them.
    s.file_name.clear();
    (s.initial_value, s.checksum) = (None, None);
    s
}

/// `../shared/data/SUB` (or `$AORTA_SHARED_DATA/SUB`) when present (a
/// database with `RECORDS`, or a record with its `.hea`); otherwise says
/// `SKIP WHAT` and returns `None`.
pub fn shared_data(sub: &str, what: &str) -> Option<PathBuf> {
    // `AORTA_SHARED_DATA` points elsewhere (e.g. from a git worktree, which
    // has no `../shared` beside it).
    let root = std::env::var_os("AORTA_SHARED_DATA")
        .map_or_else(|| PathBuf::from(SHARED_DATA), PathBuf::from);
    let p = root.join(sub);
    if p.join("RECORDS").is_file() || p.with_extension("hea").is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIP {what}: {} not found (the shared data is absent)",
            p.display()
        );
        None
    }
}

/// What a simulated worker needs to be trusted by a key broker: its
/// platform key, its configuration, and a policy naming both.
pub struct SimTrust {
    /// The simulated platform's key file.
    pub platform_key: PathBuf,
    /// The worker configuration file (measured with the binary).
    pub config: PathBuf,
    /// The data owner's policy.
    pub policy: PathBuf,
}

impl SimTrust {
    /// In `dir`: `platform.key`, `worker.toml` (holding `config`) and a
    /// `policy.toml` allowing the sim backend, this measurement and
    /// platform, with assignment `ward-a` = `devices`, subscriber `dr-a`.
    pub fn new(dir: &Path, config: &str, devices: &[&str]) -> SimTrust {
        let platform_key = dir.join("platform.key");
        let config_path = dir.join("worker.toml");
        std::fs::write(&config_path, config).unwrap();
        let pk = Run::new(["worker", "sim-platform", "--json", "--key"])
            .arg(&platform_key)
            .json()["platform_key"]
            .as_str()
            .unwrap()
            .to_owned();
        let m = Run::new(["worker", "measure", "--json", "--config"])
            .arg(&config_path)
            .json()["measurement"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(m.len(), 64);
        let devices = serde_json::to_string(devices).unwrap();
        let policy = dir.join("policy.toml");
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
devices = {devices}
subscribers = ["dr-a"]
"#
            ),
        )
        .unwrap();
        SimTrust {
            platform_key,
            config: config_path,
            policy,
        }
    }

    /// `aorta worker run --backend sim --serve-stdio` for `ward-a` from the
    /// broker at `addr`.
    pub fn serve_stdio(&self, addr: &str) -> Run {
        Run::new(["worker", "run", "--backend", "sim", "--serve-stdio"])
            .args(["--broker", addr, "--assignment", "ward-a", "--config"])
            .arg(&self.config)
            .arg("--sim-platform-key")
            .arg(&self.platform_key)
    }
}

/// Every host-protocol message in `bytes`.
pub fn read_messages(bytes: &[u8]) -> Vec<Message> {
    let mut cur = std::io::Cursor::new(bytes);
    let mut msgs = Vec::new();
    while let Some(m) = wire::read_message(&mut cur).unwrap() {
        msgs.push(m);
    }
    msgs
}

/// The host's side of a session: `Hello`, these frames, `Shutdown`, encoded.
pub fn host_session(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut msgs = vec![Message::Hello {
        version: wire::PROTOCOL_VERSION,
        role: Role::Host,
    }];
    msgs.extend(
        frames
            .iter()
            .map(|f| Message::SealedFrame { frame: f.clone() }),
    );
    msgs.push(Message::Shutdown);
    msgs.iter().flat_map(|m| m.encode().unwrap()).collect()
}

/// Asserts a simulated worker's greeting (`Hello`, then its `Status` with
/// these key counts) and returns the replies after it.
pub fn after_greeting(msgs: &[Message], transport: u16, results: u16) -> &[Message] {
    assert!(matches!(
        msgs[0],
        Message::Hello {
            role: Role::Worker,
            ..
        }
    ));
    assert!(
        matches!(
            msgs[1],
            Message::Status {
                backend: 1,
                hardware_protected: false,
                transport_keys,
                result_keys,
                ..
            } if transport_keys == transport && result_keys == results
        ),
        "{:?}",
        msgs[1]
    );
    &msgs[2..]
}
