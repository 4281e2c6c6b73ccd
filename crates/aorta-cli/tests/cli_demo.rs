//! `aorta demo` without surprises (issue 13, items 1 and 5), through the
//! real binary: the summary on stdout (the live view on stderr); an explicit
//! `--db` that is not a database refused before anything starts; the
//! default MIT-BIH found from the executable's repository when the working
//! directory has none; a failed run keeps its work directory and names it;
//! Ctrl-C stops the children and prints a partial summary, exit 130.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]
mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use common::{AORTA, Run, SAMPLE, have_kill, send_signal, shared_data};

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const SMALL: [&str; 6] = ["--devices", "1", "--duration", "12", "--speed", "max"];

#[test]
fn an_explicit_db_that_is_not_a_database_is_refused_before_anything_starts() {
    let o = Run::new(["demo"])
        .args(SMALL)
        .args(["--db", "/nonexistent/aorta-demo-db"])
        .output();
    assert_eq!(out(&o), "");
    assert_eq!(
        err(&o),
        "error: --db /nonexistent/aorta-demo-db: not a WFDB database (No such file or directory (os error 2))\n"
    );
    assert_eq!(o.status.code(), Some(2));

    // A directory with no record in it.
    let d = tempfile::tempdir().unwrap();
    let o = Run::new(["demo"])
        .args(SMALL)
        .arg("--db")
        .arg(d.path())
        .output();
    assert_eq!(out(&o), "");
    assert_eq!(
        err(&o),
        format!(
            "error: --db {}: not a WFDB database (no RECORDS entry, no .hea file)\n",
            d.path().display()
        )
    );
    assert_eq!(o.status.code(), Some(2));
}

/// `--setup-only` prints the record a device would replay: from a working
/// directory with no `../shared/data/mitdb`, the default is found beside
/// the repository the executable was built in.
#[test]
fn the_default_database_is_found_from_the_executables_repository() {
    if shared_data("mitdb", "the default-database test").is_none() {
        return;
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let beside = repo.join("../shared/data/mitdb/RECORDS");
    if !beside.is_file() {
        eprintln!(
            "SKIP the default-database test: {} is absent (the data is elsewhere)",
            beside.display()
        );
        return;
    }
    let cwd = tempfile::tempdir().unwrap();
    let dir = cwd.path().join("setup");
    let o = Run::new(["demo", "--setup-only", "--devices", "1", "--dir"])
        .arg(&dir)
        .cwd(cwd.path())
        .output();
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let stdout = out(&o);
    let record = stdout
        .split_whitespace()
        .skip_while(|w| *w != "--record")
        .nth(1)
        .unwrap_or_else(|| panic!("no --record in {stdout}"));
    assert!(
        record.ends_with("shared/data/mitdb/100") && !record.starts_with(dir.to_str().unwrap()),
        "replays {record}, not MIT-BIH 100:\n{stdout}"
    );
    assert!(!err(&o).contains("no MIT-BIH database"), "{}", err(&o));
}

#[test]
fn the_summary_goes_to_stdout_and_the_live_view_to_stderr() {
    let o = Run::new(["demo", "--sample"]).args(SMALL).output();
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let stdout = out(&o);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("1 devices · 8640 samples · 12 frames · "),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("(frame arrival → sealed results stored)\n"),
        "{stdout}"
    );
    let stderr = err(&o);
    assert!(
        stderr.contains("replaying the 6-minute MIT-BIH sample shipped in aorta"),
        "{stderr}"
    );
    assert!(!stderr.contains(" devices · "), "{stderr}");
}

/// A record whose signal file is cut short fails the run after the server
/// and worker started: the temporary work directory, with their logs, is
/// kept and named.
#[test]
fn a_failed_run_keeps_its_work_directory() {
    let db = tempfile::tempdir().unwrap();
    std::fs::copy(format!("{SAMPLE}.hea"), db.path().join("100.hea")).unwrap();
    let dat = std::fs::read(format!("{SAMPLE}.dat")).unwrap();
    std::fs::write(db.path().join("100.dat"), &dat[..300]).unwrap();
    std::fs::write(db.path().join("RECORDS"), "100\n").unwrap();
    let o = Run::new(["demo"])
        .args(SMALL)
        .arg("--db")
        .arg(db.path())
        .output();
    assert_eq!(out(&o), "");
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let stderr = err(&o);
    let marker = "its work directory (server.log, worker.log) is kept: ";
    let kept = stderr
        .lines()
        .find_map(|l| l.split_once(marker).map(|(_, p)| PathBuf::from(p.trim())))
        .unwrap_or_else(|| panic!("no kept directory named in:\n{stderr}"));
    assert!(kept.join("server.log").is_file(), "{stderr}");
    assert!(kept.join("worker.log").is_file(), "{stderr}");
    assert!(stderr.contains("reading "), "{stderr}");
    std::fs::remove_dir_all(&kept).unwrap();
}

/// Ctrl-C at a terminal: SIGINT to the demo's whole process group (its
/// server and worker too), or to the demo alone. Either way: the children
/// stop, a partial summary is printed, exit 130, no error.
#[test]
fn ctrl_c_prints_a_partial_summary_and_exits_130() {
    if !have_kill() {
        return;
    }
    for whole_group in [true, false] {
        let mut child = Command::new(AORTA)
            .args([
                "demo",
                "--sample",
                "--devices",
                "2",
                "--duration",
                "300",
                "--speed",
                "1",
            ])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = channel();
        let stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                all.push_str(&line);
                all.push('\n');
                let _ = tx.send(line);
            }
            all
        });
        // Streaming: the worker started and a progress line followed.
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut started = false;
        while Instant::now() < deadline {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else {
                continue;
            };
            if started {
                break;
            }
            started = line.contains("worker: attesting");
        }
        let pid = child.id();
        let target = if whole_group {
            format!("-{pid}")
        } else {
            pid.to_string()
        };
        assert!(
            Command::new("kill")
                .args(["-INT", "--", &target])
                .status()
                .unwrap()
                .success()
                || send_signal("-INT", pid)
        );
        let t = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if t.elapsed() > Duration::from_secs(90) {
                let _ = child.kill();
                panic!("the demo did not stop within 90 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut stdout = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
        let stderr = reader.join().unwrap();
        assert_eq!(status.code(), Some(130), "group {whole_group}: {stderr}");
        assert!(
            stdout.starts_with("interrupted (partial): 2 devices · "),
            "group {whole_group}: {stdout}\n{stderr}"
        );
        assert!(
            stderr.ends_with("interrupted: the devices, the worker and the server were stopped\n"),
            "group {whole_group}: {stderr}"
        );
        assert!(!stderr.contains("error"), "group {whole_group}: {stderr}");
        assert!(
            !stderr.contains("No such process") && !stdout.contains("NaN"),
            "group {whole_group}: {stdout}\n{stderr}"
        );
    }
}
