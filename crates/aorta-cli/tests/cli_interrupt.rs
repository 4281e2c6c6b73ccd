//! Ctrl-C (SIGINT) on long commands, as a user sends it: a batch command
//! (`bench compress` over a database) aborts promptly with 130 and
//! leaves no output behind; `broker serve` treats it as a shutdown request
//! and exits 0, as does `server` with its in-process broker (`docs/cli.md`,
//! "Signals"). `device run`'s clean stop is in
//! `device_run.rs`. Waits are generous bounds on a condition, not timings.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]
mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Broker, Run, Server, SimTrust, have_kill, setup, shared_data, wait_until};

#[test]
fn batch_commands_over_a_database_stop_on_sigint_with_130_and_leave_nothing() {
    if !have_kill() {
        return;
    }
    let Some(db) = shared_data("mitdb", "this test") else {
        return;
    };
    // `eval rpeaks` and `eval af` share the signal handling (signals.rs)
    // but are left out: they score all of MIT-BIH in under half a second
    // (the signal code is optimized even in debug builds), so a signal
    // after any fixed delay races their end. `bench compress` takes tens of
    // seconds.
    {
        let cmd = &["bench", "compress", "--json", "--db"][..];
        let t = tempfile::tempdir().unwrap();
        let mut p = Run::new(cmd).arg(&db).cwd(t.path()).spawn(Stdio::piped());
        // Let it get into the database (every command here takes far
        // longer than this over all of MIT-BIH in a debug build).
        std::thread::sleep(Duration::from_millis(800));
        assert!(!p.exited(), "{cmd:?} ended before the signal");
        assert!(p.signal("-INT"));
        wait_until(
            &format!("{cmd:?} ends on SIGINT"),
            Duration::from_secs(30),
            || p.exited(),
        );
        let o = p.wait_output();
        assert_eq!(o.status.code(), Some(130), "{cmd:?}: {:?}", o.status);
        assert!(o.stdout.is_empty(), "{cmd:?}: partial report on stdout");
        assert_eq!(
            std::fs::read_dir(t.path()).unwrap().count(),
            0,
            "{cmd:?} left files behind"
        );
    }
}

#[test]
fn broker_serve_shuts_down_on_sigint_and_sigterm_with_0() {
    if !have_kill() {
        return;
    }
    for sig in ["-INT", "-TERM"] {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let trust = SimTrust::new(d, "", &["ECG-1"]);
        std::fs::write(
            d.join("keys.toml"),
            format!("[results]\n\"dr-a\" = \"{}\"\n", "11".repeat(32)),
        )
        .unwrap();
        let policy = trust.policy.display().to_string();
        let mut b = Broker::start(
            d,
            &["--policy", &policy, "--keys", "keys.toml"],
            &d.join("broker.log"),
        );
        assert!(b.proc.signal(sig));
        wait_until(
            &format!("broker serve ends on {sig}"),
            Duration::from_secs(30),
            || b.proc.exited(),
        );
        let o = b.proc.wait_output();
        assert_eq!(o.status.code(), Some(0), "{sig}: {:?}", o.status);
    }
}

#[test]
fn the_server_with_its_broker_shuts_down_on_sigint_with_0() {
    if !have_kill() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    setup(d, 1);
    let mut s = Server::start(d, "server.toml");
    assert!(s.broker.is_some(), "the in-process broker runs");
    assert!(s.proc.signal("-INT"));
    wait_until("server ends on SIGINT", Duration::from_secs(30), || {
        s.proc.exited()
    });
    let o = s.proc.wait_output();
    assert_eq!(o.status.code(), Some(0), "{:?}", o.status);
}
