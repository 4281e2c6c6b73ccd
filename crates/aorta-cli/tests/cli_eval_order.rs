//! `aorta eval` scores records in parallel on every core the process may use
//! and still prints them in the order asked, with the same figures as one
//! core scoring them one after another (issue 15, item 5).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap or out-of-range index is the failure report"
)]
mod common;

use common::{Run, shared_data};

#[test]
fn parallel_eval_is_in_order_and_equals_one_core() {
    let Some(db) = shared_data("mitdb", "this test") else {
        return;
    };
    // Long and short, in an order that is not the RECORDS order.
    let names = ["203", "100", "210", "101", "208", "119"];
    let mut args = vec!["eval", "rpeaks", "--json"];
    for n in names {
        args.extend(["--record", n]);
    }
    args.push("--db");
    let all = Run::new(args.clone()).arg(&db).ok();
    let v: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    let got: Vec<&str> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record"].as_str().unwrap())
        .collect();
    assert_eq!(got, names);
    // One core (taskset, when present): the same bytes.
    if std::process::Command::new("taskset")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let bin = env!("CARGO_BIN_EXE_aorta");
        let one = std::process::Command::new("taskset")
            .args(["-c", "0", bin])
            .args(&args)
            .arg(&db)
            .output()
            .unwrap();
        assert!(one.status.success());
        assert_eq!(
            String::from_utf8_lossy(&one.stdout),
            String::from_utf8_lossy(&all.stdout)
        );
    } else {
        eprintln!("SKIPPED (one-core comparison): taskset not found");
    }
}
