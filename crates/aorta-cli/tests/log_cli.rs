//! `aorta log check` and `aorta log salvage` on damaged frame and results
//! logs, run as an operator would.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]
mod common;

use aorta_stream::log::{FileLog, FrameLog, HEADER_LEN};
use aorta_stream::results::{FileResultStore, ResultSink};
use common::Run;

#[test]
fn check_reports_damage_and_salvage_recovers_every_intact_record() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("frames.log");
    let mut log = FileLog::open(&p).unwrap();
    let recs: Vec<(u64, Vec<u8>)> = (0..50u8)
        .map(|i| {
            let b = vec![i + 1; 100 + usize::from(i)];
            (log.append(&b).unwrap(), b)
        })
        .collect();
    log.sync().unwrap();
    drop(log);
    let v = Run::new(["log", "check", "--json"]).arg(&p).json();
    assert_eq!(
        (v["verdict"].as_str(), v["records"].as_u64()),
        (Some("intact"), Some(50))
    );

    let mut b = std::fs::read(&p).unwrap();
    b[recs[10].0 as usize + HEADER_LEN + 5] ^= 1;
    b[recs[30].0 as usize + 2] ^= 0x80;
    std::fs::write(&p, &b).unwrap();
    let out = Run::new(["log", "check"]).arg(&p).output();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("bad bytes {}..{}", recs[10].0, recs[11].0)),
        "{text}"
    );
    assert!(
        text.contains(&format!("bad bytes {}..{}", recs[30].0, recs[31].0)),
        "{text}"
    );
    assert!(text.contains("DAMAGED"), "{text}");

    // Salvage never overwrites an existing file.
    let new = d.path().join("frames.new");
    std::fs::write(&new, b"mine").unwrap();
    let out = Run::new(["log", "salvage"])
        .arg(&p)
        .arg("--out")
        .arg(&new)
        .output();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read(&new).unwrap(), b"mine");
    std::fs::remove_file(&new).unwrap();
    let v = Run::new(["log", "salvage", "--json"])
        .arg(&p)
        .arg("--out")
        .arg(&new)
        .json();
    assert_eq!(v["records"], 48);
    assert_eq!(v["bad"].as_array().unwrap().len(), 2);
    let (got, _) = FileLog::open(&new)
        .unwrap()
        .read_entries(0, usize::MAX)
        .unwrap();
    let want: Vec<_> = recs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 10 && *i != 30)
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(got, want);
    let v = Run::new(["log", "check", "--json"]).arg(&new).json();
    assert_eq!(v["verdict"], "intact");

    // A results store: the same.
    let rp = d.path().join("results.log");
    let mut s = FileResultStore::open(&rp).unwrap();
    for i in 0..10 {
        s.put(&format!("result/{i}"), &[i as u8; 64]).unwrap();
    }
    s.sync().unwrap();
    drop(s);
    let mut b = std::fs::read(&rp).unwrap();
    b[30] ^= 8;
    std::fs::write(&rp, &b).unwrap();
    assert_eq!(
        Run::new(["log", "check"]).arg(&rp).output().status.code(),
        Some(1)
    );
    let rnew = d.path().join("results.new");
    Run::new(["log", "salvage"])
        .arg(&rp)
        .arg("--out")
        .arg(&rnew)
        .ok();
    let ids: Vec<String> = FileResultStore::open(&rnew)
        .unwrap()
        .all()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        ids,
        (1..10).map(|i| format!("result/{i}")).collect::<Vec<_>>()
    );
}
