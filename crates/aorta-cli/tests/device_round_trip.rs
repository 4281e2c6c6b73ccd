//! The done-when check, through the real binary: provision a device,
//! seal a real MIT-BIH record, open the frames, and get back the identical
//! digital samples, gains and baselines. Also: a tampered frame is refused
//! and named, re-provisioning is refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use std::path::Path;
use std::process::Output;

use aorta_signal::wfdb::Record;
use common::{aorta_in, factory_init, files_in, ok, provision, shared_data};

/// `aorta frames open` of the frames in `d/INPUT` into the WFDB directory `d/OUT`.
fn open_frames(d: &Path, input: &str, out: &str) -> Output {
    aorta_in(
        d,
        &[
            "frames",
            "open",
            "--registry",
            "reg",
            "--in",
            input,
            "--out-wfdb",
            out,
        ],
    )
}

/// With `AORTA_ROUNDTRIP_ALL=1`, every record listed in mitdb/RECORDS makes
/// the same round trip (about a minute in debug; off by default to keep CI fast).
#[test]
fn every_mitdb_record_round_trips_when_asked() {
    if std::env::var_os("AORTA_ROUNDTRIP_ALL").is_none() {
        eprintln!("SKIP: set AORTA_ROUNDTRIP_ALL=1 to round-trip every mitdb record");
        return;
    }
    let Some(db) = shared_data("mitdb", "the every-record round trip") else {
        return;
    };
    let list = std::fs::read_to_string(db.join("RECORDS")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    factory_init(d, 12000);
    for name in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let serial = format!("MITDB-{name}");
        let (dev, frames, out) = (
            format!("dev{name}"),
            format!("frames{name}"),
            format!("out{name}"),
        );
        let rec = db.join(name);
        ok(provision(d, &serial, &dev));
        ok(aorta_in(
            d,
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
        ));
        ok(open_frames(d, &frames, &out));
        let back = Record::read(d.join(&out).join(format!("MITDB_{name}"))).unwrap();
        let orig = Record::read(&rec).unwrap();
        assert_eq!(back.samples, orig.samples, "record {name}");
        eprintln!("record {name}: identical samples");
    }
}

#[test]
fn mitdb_100_round_trips_through_sealed_frames() {
    let Some(rec_path) = shared_data("mitdb/100", "the MIT-BIH 100 round trip") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let rec = rec_path.to_str().unwrap();
    factory_init(d, 1200);
    ok(provision(d, "SN-100", "dev"));
    let again = provision(d, "SN-100", "dev2");
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("SN-100"));
    ok(aorta_in(
        d,
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
    ));
    ok(open_frames(d, "frames", "out"));

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
    ok(open_frames(d, "frames", "out2"));
    assert_eq!(
        Record::read(d.join("out2/SN_100")).unwrap().samples,
        orig.samples
    );

    // A missing frame in the middle: the stream has a gap; refused and named.
    let names = files_in(&d.join("frames"));
    std::fs::create_dir(d.join("gappy")).unwrap();
    for (i, p) in names.iter().enumerate() {
        if i != 3 {
            std::fs::copy(p, d.join("gappy").join(p.file_name().unwrap())).unwrap();
        }
    }
    let o = open_frames(d, "gappy", "outg");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("gap") && err.contains(names[4].file_name().unwrap().to_str().unwrap()),
        "{err}"
    );

    // One flipped bit in one frame: refused, named, exit 1.
    let names = files_in(&d.join("frames"));
    let victim = &names[7];
    let mut b = std::fs::read(victim).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x04;
    std::fs::write(victim, &b).unwrap();
    let o = open_frames(d, "frames", "out3");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(victim.file_name().unwrap().to_str().unwrap()),
        "{err}"
    );
}
