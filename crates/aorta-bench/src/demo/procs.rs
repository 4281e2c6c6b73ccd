//! The cloud's processes: `aorta server` and `aorta worker stream` as child
//! processes of the given executable, killed when dropped.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::Context;

/// A child process killed on drop.
pub(crate) struct Proc {
    name: &'static str,
    pub(crate) child: Child,
}

impl Proc {
    /// SIGTERM and wait (up to 20 s, then SIGKILL).
    pub(crate) fn stop(&mut self) -> Option<std::process::ExitStatus> {
        // Already gone (a terminal's Ctrl-C reaches the children too).
        if let Ok(Some(s)) = self.child.try_wait() {
            return Some(s);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop in 20 s; killing it", self.name);
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Spawns `aorta ARGS`, its stderr copied to `log`; returns the process and
/// a channel of its stderr lines.
/// Spawns `EXE ARGS`, its stderr copied to `log`; returns the process and
/// a channel of its stderr lines.
pub(crate) fn spawn(
    exe: &Path,
    name: &'static str,
    args: &[&str],
    log: &Path,
) -> anyhow::Result<(Proc, Receiver<String>)> {
    spawn_with(exe, name, args, log, Stdio::null())
}

/// [`spawn`] with a pipe on its stdin, whose write end the [`Proc`] holds:
/// when this process ends, however it ends, the child reads end-of-file.
pub(crate) fn spawn_tied(
    exe: &Path,
    name: &'static str,
    args: &[&str],
    log: &Path,
) -> anyhow::Result<(Proc, Receiver<String>)> {
    spawn_with(exe, name, args, log, Stdio::piped())
}

fn spawn_with(
    exe: &Path,
    name: &'static str,
    args: &[&str],
    log: &Path,
    stdin: Stdio,
) -> anyhow::Result<(Proc, Receiver<String>)> {
    let mut child = Command::new(exe)
        .args(args)
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().context("no stderr")?;
    let mut file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
            let _ = tx.send(line);
        }
    });
    Ok((Proc { name, child }, rx))
}

/// Starts the server (with its broker) from `config`; the process, its
/// HTTPS address and its broker address.
pub(crate) fn start_server(
    exe: &Path,
    config: &Path,
    log: &Path,
) -> anyhow::Result<(Proc, String, String)> {
    let (server, lines) = spawn(
        exe,
        "server",
        &["server", "--config", config.to_str().context("path")?],
        log,
    )?;
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .context("the server did not start (see server.log)")?;
        if let Some(rest) = line.strip_prefix("aorta server listening on https://") {
            let addr = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            let broker = rest
                .split("(broker ")
                .nth(1)
                .and_then(|b| b.split(')').next())
                .unwrap_or_default()
                .to_owned();
            return Ok((server, addr, broker));
        }
    }
}
