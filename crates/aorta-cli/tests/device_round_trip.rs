//! The done-when check, through the real binary: provision a device,
//! seal a real MIT-BIH record, open the frames, and get back the identical
//! digital samples, gains and baselines. Also: a tampered frame is refused
//! and named, re-provisioning is refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use aorta_signal::wfdb::Record;

fn data() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"))
}

fn aorta(args: &[&str], cwd: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_aorta"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// With `AORTA_ROUNDTRIP_ALL=1`, every record listed in mitdb/RECORDS makes
/// the same round trip (about a minute in debug; off by default to keep CI fast).
#[test]
fn every_mitdb_record_round_trips_when_asked() {
    if std::env::var_os("AORTA_ROUNDTRIP_ALL").is_none() {
        eprintln!("SKIP: set AORTA_ROUNDTRIP_ALL=1 to round-trip every mitdb record");
        return;
    }
    let db = data().join("mitdb");
    let Ok(list) = std::fs::read_to_string(db.join("RECORDS")) else {
        eprintln!("SKIP: {} not found (shared data absent)", db.display());
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    ok(aorta(
        &[
            "factory",
            "init",
            "--registry",
            "reg",
            "--pool-keys",
            "12000",
        ],
        d,
    ));
    for name in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let serial = format!("MITDB-{name}");
        let (dev, frames, out) = (
            format!("dev{name}"),
            format!("frames{name}"),
            format!("out{name}"),
        );
        let rec = db.join(name);
        ok(aorta(
            &[
                "factory",
                "provision",
                "--registry",
                "reg",
                "--serial",
                &serial,
                "--out",
                &dev,
            ],
            d,
        ));
        ok(aorta(
            &[
                "device",
                "seal",
                "--device",
                &dev,
                "--record",
                rec.to_str().unwrap(),
                "--out",
                &frames,
            ],
            d,
        ));
        ok(aorta(
            &[
                "frames",
                "open",
                "--registry",
                "reg",
                "--in",
                &frames,
                "--out-wfdb",
                &out,
            ],
            d,
        ));
        let back = Record::read(d.join(&out).join(format!("MITDB_{name}"))).unwrap();
        let orig = Record::read(&rec).unwrap();
        assert_eq!(back.samples, orig.samples, "record {name}");
        eprintln!("record {name}: identical samples");
    }
}

#[test]
fn mitdb_100_round_trips_through_sealed_frames() {
    let rec_path = data().join("mitdb/100");
    if !rec_path.with_extension("hea").exists() {
        eprintln!(
            "SKIP: {} not found (shared data absent)",
            rec_path.display()
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let rec = rec_path.to_str().unwrap();
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    };
    ok(aorta(
        &[
            "factory",
            "init",
            "--registry",
            "reg",
            "--pool-keys",
            "1200",
        ],
        d,
    ));
    ok(aorta(
        &[
            "factory",
            "provision",
            "--registry",
            "reg",
            "--serial",
            "SN-100",
            "--out",
            "dev",
        ],
        d,
    ));
    let again = aorta(
        &[
            "factory",
            "provision",
            "--registry",
            "reg",
            "--serial",
            "SN-100",
            "--out",
            "dev2",
        ],
        d,
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("SN-100"));
    ok(aorta(
        &[
            "device",
            "seal",
            "--device",
            "dev",
            "--record",
            rec,
            "--frame-seconds",
            "10",
            "--out",
            "frames",
        ],
        d,
    ));
    ok(aorta(
        &[
            "frames",
            "open",
            "--registry",
            "reg",
            "--in",
            "frames",
            "--out-wfdb",
            "out",
        ],
        d,
    ));

    let orig = Record::read(&rec_path).unwrap();
    let back = Record::read(d.join("out/SN_100")).unwrap(); // checksums verified too
    assert_eq!(back.samples, orig.samples);
    assert_eq!(back.fs(), orig.fs());
    for (a, b) in back.header.signals.iter().zip(&orig.header.signals) {
        assert_eq!(
            (a.gain, a.baseline, a.adc_zero, a.adc_resolution),
            (b.gain, b.baseline, b.adc_zero, b.adc_resolution)
        );
        assert_eq!((&a.units, &a.description), (&b.units, &b.description));
        assert_eq!((a.checksum, a.initial_value), (b.checksum, b.initial_value));
    }

    // Opening again: every frame is an acknowledged re-send, still identical output.
    ok(aorta(
        &[
            "frames",
            "open",
            "--registry",
            "reg",
            "--in",
            "frames",
            "--out-wfdb",
            "out2",
        ],
        d,
    ));
    assert_eq!(
        Record::read(d.join("out2/SN_100")).unwrap().samples,
        orig.samples
    );

    // A missing frame in the middle: the stream has a gap; refused and named.
    let mut names: Vec<_> = std::fs::read_dir(d.join("frames"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    std::fs::create_dir(d.join("gappy")).unwrap();
    for (i, p) in names.iter().enumerate() {
        if i != 3 {
            std::fs::copy(p, d.join("gappy").join(p.file_name().unwrap())).unwrap();
        }
    }
    let o = aorta(
        &[
            "frames",
            "open",
            "--registry",
            "reg",
            "--in",
            "gappy",
            "--out-wfdb",
            "outg",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("gap") && err.contains(names[4].file_name().unwrap().to_str().unwrap()),
        "{err}"
    );

    // One flipped bit in one frame: refused, named, exit 1.
    let mut names: Vec<_> = std::fs::read_dir(d.join("frames"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let victim = &names[7];
    let mut b = std::fs::read(victim).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x04;
    std::fs::write(victim, &b).unwrap();
    let o = aorta(
        &[
            "frames",
            "open",
            "--registry",
            "reg",
            "--in",
            "frames",
            "--out-wfdb",
            "out3",
        ],
        d,
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(victim.file_name().unwrap().to_str().unwrap()),
        "{err}"
    );
}
