//! Every numeric flag of every subcommand, given 0, -1, nan, inf (as
//! applicable) and out-of-range values: the real binary must answer with
//! clap's usage error (exit 2) naming the flag, before it starts anything,
//! and must not hang. The harness kills a run after a generous 60 s and
//! fails it; nothing is timed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]
mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{AORTA, shared_data};

/// Generous: only a hang reaches it.
const KILL_AFTER: Duration = Duration::from_secs(60);

/// Runs `aorta ARGS` in `cwd`; (exit code, stderr). A run still going
/// after [`KILL_AFTER`] is killed and fails the test.
fn run_bounded(cwd: &std::path::Path, args: &[String]) -> (Option<i32>, String) {
    let mut child = Command::new(AORTA)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > KILL_AFTER {
            let _ = child.kill();
            let _ = child.wait();
            panic!("aorta {args:?} still running after {KILL_AFTER:?}: killed (a hang)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status.code(), reader.join().unwrap())
}

const F: &[&str] = &["0", "-1", "nan", "inf", "-inf"];
const NONNEG: &[&str] = &["-1", "-0.5", "nan", "inf"];
const COUNT: &[&str] = &["0", "-1", "nan", "1.5"];
const WHOLE: &[&str] = &["-1", "nan", "1.5"];

/// (the command with its required arguments, flag, bad values).
fn table() -> Vec<(Vec<&'static str>, &'static str, Vec<&'static str>)> {
    let v = |s: &[&'static str]| s.to_vec();
    let eval_af = v(&["eval", "af", "--db", "db"]);
    let rpeaks = v(&["eval", "rpeaks", "--db", "db"]);
    let hrv = v(&["hrv", "--record", "rec"]);
    let compress = v(&["bench", "compress", "--db", "db"]);
    let pipeline = v(&["bench", "pipeline", "--db", "db"]);
    let rr = v(&["bench", "rr-stream", "--input", "in"]);
    let se = v(&["bench", "se"]);
    let demo = v(&["demo", "--dir", "d", "--setup-only"]);
    let seal = v(&[
        "device", "seal", "--device", "dev", "--record", "rec", "--out", "out",
    ]);
    let run = v(&[
        "device",
        "run",
        "--device",
        "dev",
        "--record",
        "rec",
        "--server",
        "https://127.0.0.1:1",
        "--ca",
        "ca.pem",
    ]);
    let follow = [run.clone(), v(&["--follow"])].concat();
    let init = v(&["factory", "init", "--registry", "reg"]);
    let stream = v(&[
        "worker",
        "stream",
        "--backend",
        "sim",
        "--broker",
        "127.0.0.1:1",
        "--assignment",
        "a",
        "--ca",
        "ca.pem",
        "--token-file",
        "t",
    ]);
    let wrun = v(&["worker", "run", "--backend", "sim", "--assignment", "a"]);
    let serve = v(&["broker", "serve", "--policy", "p.toml", "--keys", "k.toml"]);
    let quote = v(&[
        "broker",
        "inspect-quote",
        "--backend",
        "tdx",
        "--quote",
        "q",
        "--collateral",
        "c",
    ]);
    let protect = v(&[
        "ehr",
        "protect",
        "--vault",
        "v",
        "--in",
        "f",
        "--passphrase-file",
        "p",
    ]);
    vec![
        (eval_af, "--segment", v(&[F, &["0.5", "86401"]].concat())),
        (rpeaks.clone(), "--start", v(NONNEG)),
        (rpeaks.clone(), "--window", v(&[F, &["11"]].concat())),
        (rpeaks, "--lead", v(WHOLE)),
        (hrv.clone(), "--window", v(&[F, &["5"]].concat())),
        (hrv, "--lead", v(WHOLE)),
        (compress, "--frame-seconds", v(&[F, &["3601"]].concat())),
        (pipeline.clone(), "--devices", v(COUNT)),
        (pipeline.clone(), "--seconds", v(F)),
        (pipeline.clone(), "--paced-seconds", v(F)),
        (pipeline.clone(), "--frame-seconds", v(F)),
        (pipeline.clone(), "--batch", v(COUNT)),
        (pipeline.clone(), "--rounds", v(COUNT)),
        (pipeline, "--checkpoint-secs", v(F)),
        (rr.clone(), "--patients", v(COUNT)),
        (rr.clone(), "--threads", v(&[COUNT, &["4097"]].concat())),
        (rr, "--seed", v(WHOLE)),
        (se.clone(), "--size", v(COUNT)),
        (se, "--min-time", v(F)),
        (demo.clone(), "--devices", v(&[COUNT, &["501"]].concat())),
        (demo.clone(), "--duration", v(&[F, &["0.5"]].concat())),
        (demo.clone(), "--frame-seconds", v(F)),
        (demo, "--speed", v(F)),
        (seal.clone(), "--frame-seconds", v(F)),
        (seal, "--start-us", v(&["nan", "1.5", "inf"])),
        (run.clone(), "--frame-seconds", v(F)),
        (run.clone(), "--duration", v(F)),
        (run.clone(), "--offset", v(NONNEG)),
        (run.clone(), "--drain-timeout", v(NONNEG)),
        (run.clone(), "--speed", v(F)),
        (run, "--start-us", v(&["nan", "1.5"])),
        (follow, "--idle-timeout", v(F)),
        (
            init.clone(),
            "--pool-keys",
            v(&[COUNT, &["7", "16777217"]].concat()),
        ),
        (init, "--slice-len", v(&[COUNT, &["7", "65536"]].concat())),
        (stream.clone(), "--batch", v(COUNT)),
        (
            stream.clone(),
            "--partitions",
            v(&[COUNT, &["4097"]].concat()),
        ),
        (stream.clone(), "--replicas", v(&[COUNT, &["6"]].concat())),
        (
            stream.clone(),
            "--lease-ttl-ms",
            v(&[COUNT, &["299", "600001"]].concat()),
        ),
        (
            stream.clone(),
            "--lease-renew-ms",
            v(&[COUNT, &["200001"]].concat()),
        ),
        (stream.clone(), "--checkpoint-secs", v(F)),
        (stream, "--key-window", v(&[COUNT, &["65536"]].concat())),
        (
            wrun,
            "--broker",
            v(&["127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "h:-1"]),
        ),
        (
            serve,
            "--listen",
            v(&["127.0.0.1", "127.0.0.1:65536", "127.0.0.1:-1", ":7450"]),
        ),
        (quote, "--at", v(WHOLE)),
        (protect, "--header-bytes", v(WHOLE)),
    ]
}

#[test]
fn every_bad_numeric_value_is_a_usage_error_naming_the_flag() {
    let t = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut runs = 0;
    for (cmd, flag, bad) in table() {
        for value in bad {
            let mut args: Vec<String> = cmd.iter().map(|s| (*s).to_owned()).collect();
            // `--flag=VALUE`: a value starting with '-' reaches the parser.
            args.push(format!("{flag}={value}"));
            let (code, err) = run_bounded(t.path(), &args);
            runs += 1;
            if code != Some(2) || !err.contains(&format!("'{flag}")) {
                failures.push(format!(
                    "aorta {}: exit {code:?}, stderr: {err}",
                    args.join(" ")
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {runs} runs:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Nothing was started or written by a refused invocation.
    assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
}

/// The case with a real database: `eval af --segment 0` looped
/// forever at 100 % CPU.
#[test]
fn eval_af_with_a_zero_segment_over_a_real_database_does_not_hang() {
    let Some(db) = shared_data("mitdb", "this test") else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    for value in ["0", "-0", "nan", "1e-300"] {
        let args = vec![
            "eval".to_owned(),
            "af".to_owned(),
            "--db".to_owned(),
            db.display().to_string(),
            format!("--segment={value}"),
        ];
        let (code, err) = run_bounded(t.path(), &args);
        assert_eq!(code, Some(2), "{value}: {err}");
        assert!(err.contains("'--segment"), "{value}: {err}");
    }
}
