//! Issue 13, items 3 and 4: records read the way WFDB reads them, through
//! the real binary (stdout, stderr and exit code of each run).
//!
//! - One record-name rule for every reader (`DIR/NAME`, `.hea`, `.dat`,
//!   `.atr`; a directory is refused with what to give instead).
//! - Checksum 0 is "not recorded"; a mismatch names `--no-verify`, which
//!   every reader takes.
//! - `eval rpeaks` on a database without beat annotations says so.
//! - `frames open` writes format 24/32 when the samples need it, under the
//!   name asked for, with base time and comments; `bench compress` reports
//!   a record it cannot handle and measures the rest.
//! - `wfdb info` prints what `wfdbdesc` prints; `wfdb export` writes what
//!   `rdsamp -c -p -v` and `rdann` write, checked against the Python `wfdb`
//!   package's reading of the same records (fixtures made by
//!   `tools/wfdb_reference.py`).
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

use aorta_signal::wfdb::{Annotation, Format, Record, RecordOut, encode_annotations, write_record};
use common::{SAMPLE, aorta_in, factory_init, ok, provision, shared_data, spec, stderr};

/// Asserts a run's exit code, stdout and stderr exactly.
#[track_caller]
fn snap(o: &Output, code: i32, stdout: &str, stderr: &str) {
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(
        (o.status.code(), out.as_ref(), err.as_ref()),
        (Some(code), stdout, stderr),
        "exit code, stdout, stderr"
    );
}

/// The shipped MIT-BIH 100 excerpt copied to `d/db/100.{hea,dat}`.
fn sample_db(d: &Path) {
    std::fs::create_dir_all(d.join("db")).unwrap();
    for ext in ["hea", "dat"] {
        std::fs::copy(
            format!("{SAMPLE}.{ext}"),
            d.join("db").join(format!("100.{ext}")),
        )
        .unwrap();
    }
}

/// Rewrites the checksum field (7th) of every signal line of `hea`.
fn set_checksums(hea: &Path, value: &str) {
    let text = std::fs::read_to_string(hea).unwrap();
    let out: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 || l.starts_with('#') {
                return l.to_owned();
            }
            let mut f: Vec<&str> = l.split(' ').collect();
            f[6] = value;
            f.join(" ")
        })
        .collect();
    std::fs::write(hea, out.join("\n") + "\n").unwrap();
}

/// An `.atr` with a normal beat every 288 samples (0.8 s at 360 Hz).
fn write_atr(path: &Path, n: u64) {
    let anns: Vec<Annotation> = (1..n / 288)
        .map(|k| Annotation {
            sample: k * 288,
            code: 1,
            subtype: 0,
            chan: 0,
            num: 0,
            aux: None,
        })
        .collect();
    std::fs::write(path, encode_annotations(&anns).unwrap()).unwrap();
}

const INFO_100: &str = "\
Record 100
Notes
=====
 first 360 s of MIT-BIH Arrhythmia Database record 100 (PhysioNet, ODC-By 1.0)
=====

Starting time: not specified
Length:     6:00.000 (129600 sample intervals)
Sampling frequency: 360 Hz
2 signals
Group 0, Signal 0:
 File: 100.dat
 Description: MLII
 Gain: 200 adu/mV
 Initial value: 995
 Storage format: 212
 I/O: can be unbuffered
 ADC resolution: 11 bits
 ADC zero: 1024
 Baseline: 1024
 Samples: 129600
 Checksum: 14755 (verified)
Group 0, Signal 1:
 File: 100.dat
 Description: V5
 Gain: 200 adu/mV
 Initial value: 1011
 Storage format: 212
 I/O: can be unbuffered
 ADC resolution: 11 bits
 ADC zero: 1024
 Baseline: 1024
 Samples: 129600
 Checksum: 31914 (verified)
";

#[test]
fn wfdb_info_prints_what_wfdbdesc_prints() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    sample_db(d);
    snap(&aorta_in(d, &["wfdb", "info", "db/100"]), 0, INFO_100, "");
    // JSON: the format is the WFDB number, the length is in seconds.
    let o = ok(aorta_in(d, &["wfdb", "info", "db/100", "--json"]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["header"]["signals"][0]["format"], 212);
    assert_eq!(v["header"]["signals"][1]["format"], 212);
    assert_eq!(v["duration_s"], 360.0);
    assert_eq!(v["verified"], true);
    assert_eq!(v["samples_per_signal"], serde_json::json!([129600, 129600]));
}

#[test]
fn every_reader_takes_a_record_with_or_without_its_extension() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    sample_db(d);
    for given in ["db/100", "db/100.hea", "db/100.dat", "db/100.atr"] {
        snap(&aorta_in(d, &["wfdb", "info", given]), 0, INFO_100, "");
    }
    // The same report, whatever the record was called (its `record` field
    // repeats what was given).
    let hrv = |r: &str| {
        let o = ok(aorta_in(d, &["hrv", "--record", r, "--json"]));
        let mut v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["record"], r);
        v["record"] = serde_json::Value::Null;
        v
    };
    let by_name = hrv("db/100");
    assert_eq!(hrv("db/100.dat"), by_name);
    assert_eq!(hrv("db/100.hea"), by_name);
    factory_init(d, 1200);
    ok(provision(d, "SN-1", "dev"));
    for (i, given) in ["db/100.dat", "db/100.hea"].iter().enumerate() {
        let out = format!("frames{i}");
        let o = ok(aorta_in(
            d,
            &[
                "device", "seal", "--device", "dev", "--record", given, "--out", &out,
            ],
        ));
        assert!(
            String::from_utf8_lossy(&o.stdout).starts_with("sealed 36 frames"),
            "{o:?}"
        );
    }
    write_atr(&d.join("db/100.atr"), 129600);
    let eval = |r: &str| {
        ok(aorta_in(
            d,
            &[
                "eval", "rpeaks", "--db", "db", "--record", r, "--start", "0", "--json",
            ],
        ))
        .stdout
    };
    assert_eq!(eval("100.dat"), eval("100"));
    assert_eq!(eval("100.hea"), eval("100"));
    let csv = ok(aorta_in(
        d,
        &["wfdb", "export", "--record", "db/100.dat", "--csv"],
    ))
    .stdout;
    assert_eq!(
        csv,
        ok(aorta_in(
            d,
            &["wfdb", "export", "--record", "db/100", "--csv"]
        ))
        .stdout
    );
    // No such record: the header looked for, and how to name a record.
    snap(
        &aorta_in(d, &["wfdb", "info", "db/999"]),
        2,
        "",
        "error: no WFDB record db/999: db/999.hea not found (give a record as DIR/NAME, DIR/NAME.hea or DIR/NAME.dat)\n",
    );
}

#[test]
fn a_directory_given_as_a_record_says_what_to_give() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    sample_db(d);
    let want = "error: db is a directory, not a record: give a record in it (e.g. db/100); commands that read a whole database take --db DIR\n";
    snap(&aorta_in(d, &["wfdb", "info", "db"]), 2, "", want);
    snap(
        &aorta_in(d, &["wfdb", "export", "--record", "db"]),
        2,
        "",
        want,
    );
    snap(&aorta_in(d, &["hrv", "--record", "db"]), 2, "", want);
    factory_init(d, 1200);
    ok(provision(d, "SN-1", "dev"));
    snap(
        &aorta_in(
            d,
            &[
                "device", "seal", "--device", "dev", "--record", "db", "--out", "f",
            ],
        ),
        2,
        "",
        want,
    );
    std::fs::create_dir(d.join("empty")).unwrap();
    snap(
        &aorta_in(d, &["wfdb", "info", "empty"]),
        2,
        "",
        "error: empty is a directory, not a record: give a record in it (e.g. empty/NAME)\n",
    );
}

#[test]
fn checksum_zero_is_not_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    sample_db(d);
    set_checksums(&d.join("db/100.hea"), "0");
    let want = INFO_100
        .replace("14755 (verified)", "0 (not recorded)")
        .replace("31914 (verified)", "0 (not recorded)");
    snap(&aorta_in(d, &["wfdb", "info", "db/100"]), 0, &want, "");
    ok(aorta_in(d, &["hrv", "--record", "db/100"]));
    factory_init(d, 1200);
    ok(provision(d, "SN-1", "dev"));
    ok(aorta_in(
        d,
        &[
            "device", "seal", "--device", "dev", "--record", "db/100", "--out", "f",
        ],
    ));
}

#[test]
fn a_checksum_mismatch_names_no_verify_and_every_reader_takes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    sample_db(d);
    set_checksums(&d.join("db/100.hea"), "1234");
    write_atr(&d.join("db/100.atr"), 129600);
    factory_init(d, 1200);
    ok(provision(d, "SN-1", "dev"));
    let why = "signal 0 (MLII): checksum mismatch: header says 1234, data sums to 14755 (the header or the signal file is damaged; --no-verify reads the record without this check)";
    let single = format!("error: db/100.dat: {why}\n");
    let per_record = format!("error: record 100: db/100.dat: {why}\n");
    let readers: [&[&str]; 7] = [
        &["wfdb", "info", "db/100"],
        &["wfdb", "export", "--record", "db/100"],
        &["hrv", "--record", "db/100"],
        &[
            "device", "seal", "--device", "dev", "--record", "db/100", "--out", "f",
        ],
        &["eval", "rpeaks", "--db", "db", "--start", "0"],
        &["eval", "af", "--db", "db"],
        &["bench", "compress", "--db", "db"],
    ];
    for args in readers {
        let o = aorta_in(d, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        let want = if matches!(args[0], "eval" | "bench") {
            &per_record
        } else {
            &single
        };
        assert_eq!(err, *want, "{args:?}");
        let mut with: Vec<&str> = args.to_vec();
        with.push("--no-verify");
        if args[0] == "device" {
            with[7] = "f2";
        }
        let o = aorta_in(d, &with);
        assert_eq!(o.status.code(), Some(0), "{with:?}: {o:?}");
    }
    // The same for a record streamed to a server (where nobody listens: port
    // 1 is privileged, never ephemeral): refused before the first frame.
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(d.join("cert.pem"), c.cert.pem()).unwrap();
    let run: &[&str] = &[
        "device",
        "run",
        "--device",
        "dev",
        "--record",
        "db/100",
        "--server",
        "https://127.0.0.1:1",
        "--ca",
        "cert.pem",
        "--speed",
        "max",
        "--duration",
        "1",
        "--drain-timeout",
        "0",
        "--json",
    ];
    snap(&aorta_in(d, run), 2, "", &single);
    let o = aorta_in(d, &[run, &["--no-verify"]].concat());
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["frames"], 1, "{v}");
    // --no-verify is about a record: with RR input it is a usage error.
    for args in [
        &["hrv", "--rr", "rr.txt", "--no-verify"][..],
        &[
            "device",
            "run",
            "--device",
            "dev",
            "--rr",
            "rr.txt",
            "--no-verify",
            "--server",
            "https://127.0.0.1:1",
            "--ca",
            "cert.pem",
        ][..],
    ] {
        let o = aorta_in(d, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        let err = stderr(&o);
        assert!(
            err.starts_with("error: the argument '--rr <")
                && err.contains("' cannot be used with '--no-verify'"),
            "{err}"
        );
    }
}

#[test]
fn eval_rpeaks_on_a_database_without_beat_annotations_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    sample_db(d);
    snap(
        &aorta_in(d, &["eval", "rpeaks", "--db", "db"]),
        2,
        "",
        "error: db: no beat annotations: none of its 1 records to score has a NAME.atr file; eval rpeaks needs reference beats (a database such as mitdb); for one rhythm label per recording (REFERENCE.csv) use eval af\n",
    );
    let Some(db) = shared_data("challenge-2017", "eval rpeaks on PhysioNet/CinC 2017") else {
        return;
    };
    let o = aorta_in(d, &["eval", "rpeaks", "--db", db.to_str().unwrap()]);
    snap(
        &o,
        2,
        "",
        &format!(
            "error: {}: no beat annotations: none of its 151 records to score has a NAME.atr file; eval rpeaks needs reference beats (a database such as mitdb); for one rhythm label per recording (REFERENCE.csv) use eval af\n",
            db.display()
        ),
    );
}

#[test]
fn a_database_without_records_is_read_from_its_headers() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    sample_db(d);
    for ext in ["hea", "dat"] {
        let src = SAMPLE.replace("/100", "/203");
        std::fs::copy(format!("{src}.{ext}"), d.join(format!("db/203.{ext}"))).unwrap();
    }
    write_atr(&d.join("db/100.atr"), 129600);
    write_atr(&d.join("db/203.atr"), 129600);
    assert!(!d.join("db/RECORDS").exists());
    let v: serde_json::Value = serde_json::from_slice(
        &ok(aorta_in(d, &["bench", "compress", "--db", "db", "--json"])).stdout,
    )
    .unwrap();
    let names: Vec<&str> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["100", "203"]);
    let o = ok(aorta_in(
        d,
        &["eval", "rpeaks", "--db", "db", "--start", "0", "--json"],
    ));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["records"].as_array().unwrap().len(), 2, "{v}");
}

#[test]
fn physionet_2017_records_are_read_by_every_reader() {
    let Some(rec) = shared_data(
        "challenge-2017/A00001",
        "reading PhysioNet/CinC 2017 records",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let r = rec.to_str().unwrap();
    let o = ok(aorta_in(d, &["wfdb", "info", r]));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(" Checksum: 0 (not recorded)\n"),
        "{o:?}"
    );
    ok(aorta_in(d, &["hrv", "--record", r, "--window", "10"]));
    ok(aorta_in(
        d,
        &["hrv", "--record", &format!("{r}.mat"), "--window", "10"],
    ));
    factory_init(d, 1200);
    ok(provision(d, "SN-1", "dev"));
    ok(aorta_in(
        d,
        &[
            "device", "seal", "--device", "dev", "--record", r, "--out", "f",
        ],
    ));
    // A00066's header gives an initial value its data does not start with.
    let bad = rec.with_file_name("A00066");
    let o = aorta_in(d, &["wfdb", "info", bad.to_str().unwrap()]);
    snap(
        &o,
        2,
        "",
        &format!(
            "error: {}.mat: signal 0 (ECG): initial value mismatch: header says 336, first sample is -16 (the header or the signal file is damaged; --no-verify reads the record without this check)\n",
            bad.display()
        ),
    );
    ok(aorta_in(
        d,
        &["wfdb", "info", bad.to_str().unwrap(), "--no-verify"],
    ));
}

/// A record of `n` samples a signal whose values reach `peak`, written in
/// the narrowest format that holds them.
fn wide_record(dir: &Path, name: &str, peak: i32) -> Format {
    let n = 3600usize;
    let x: Vec<i32> = (0..n)
        .map(|i| {
            let t = i as f64 / 360.0;
            (f64::from(peak) * (2.0 * std::f64::consts::PI * 1.2 * t).sin()) as i32
        })
        .collect();
    let y: Vec<i32> = x.iter().map(|v| v / 3 - 7).collect();
    let mut s = spec("ECG", 24, 0);
    s.gain = 1000.0;
    let comments = ["age 50".to_owned()];
    write_record(
        dir,
        &RecordOut {
            name,
            fs: 360.0,
            signals: &[s.clone(), s],
            samples: &[x, y],
            base: None,
            comments: &comments,
        },
    )
    .unwrap()
}

#[test]
fn frames_open_writes_24_and_32_bit_records_under_the_name_asked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir(d.join("db")).unwrap();
    assert_eq!(wide_record(&d.join("db"), "r24", 3_000_000), Format::F24);
    assert_eq!(
        wide_record(&d.join("db"), "r32", 1_000_000_000),
        Format::F32
    );
    factory_init(d, 1200);
    for (name, fmt) in [("r24", 24), ("r32", 32)] {
        let (dev, frames, out) = (
            format!("dev{name}"),
            format!("f{name}"),
            format!("out{name}"),
        );
        ok(provision(d, &format!("SN-{name}"), &dev));
        let rec = format!("db/{name}");
        ok(aorta_in(
            d,
            &[
                "device",
                "seal",
                "--device",
                &dev,
                "--record",
                &rec,
                "--out",
                &frames,
                "--start-us",
                "1709251198250000",
                "--frame-seconds",
                "1",
            ],
        ));
        let o = aorta_in(
            d,
            &[
                "frames",
                "open",
                "--registry",
                "reg",
                "--in",
                &frames,
                "--out-wfdb",
                &out,
                "--name",
                name,
            ],
        );
        snap(
            &o,
            0,
            &format!(
                "opened 10 frames (0 already acknowledged) from device SN-{name}: 3600 samples × 2 channels → {out}/{name}.hea (format {fmt})\n"
            ),
            "",
        );
        let orig = Record::read(d.join(&rec)).unwrap();
        let back = Record::read(d.join(&out).join(name)).unwrap();
        assert_eq!(back.samples, orig.samples);
        assert_eq!(back.header.record_name, name);
        assert_eq!(back.header.signals[0].format.code(), fmt);
        assert_eq!(back.header.base_time.as_deref(), Some("23:59:58.250"));
        assert_eq!(back.header.base_date.as_deref(), Some("29/02/2024"));
        assert_eq!(
            back.header.comments,
            [format!("aorta frames open: 10 frames of device SN-{name}")]
        );
    }
    // A name that is not a plain file name is refused before anything is written.
    let o = aorta_in(
        d,
        &[
            "frames",
            "open",
            "--registry",
            "reg",
            "--in",
            "fr24",
            "--out-wfdb",
            "o",
            "--name",
            "../x",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(!d.join("x.hea").exists());
}

#[test]
fn bench_compress_reports_a_record_it_cannot_handle_and_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir(d.join("db")).unwrap();
    assert_eq!(wide_record(&d.join("db"), "a16", 3000), Format::F16);
    assert_eq!(wide_record(&d.join("db"), "b24", 3_000_000), Format::F24);
    assert_eq!(wide_record(&d.join("db"), "c16", 2000), Format::F16);
    let o = aorta_in(d, &["bench", "compress", "--db", "db", "--json"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = "sample 62827 does not fit 16 bits (raw size is 16-bit samples)";
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!("error: record b24: {err}\n")
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a16", "c16"]);
    assert_eq!(
        v["errors"],
        serde_json::json!([{"record": "b24", "error": err}])
    );
    assert_eq!(v["total"]["raw_bytes"], 2 * 3600 * 2 * 2);
    // The table too: both measured records, then the total.
    let o = aorta_in(d, &["bench", "compress", "--db", "db"]);
    assert_eq!(o.status.code(), Some(2));
    let text = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(rows, ["record", "a16", "c16", "total", "aorta"], "{text}");
}

/// The Python `wfdb` package's reading of a record (a fixture).
fn reference(name: &str) -> serde_json::Value {
    let path = format!(
        "{}/tests/fixtures/wfdb/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn info_and_export_agree_with_python_wfdb() {
    for (sub, fixture) in [
        ("mitdb/100", "mitdb_100"),
        ("mitdb/208", "mitdb_208"),
        ("challenge-2017/A00001", "challenge-2017_A00001"),
    ] {
        let Some(rec) = shared_data(sub, "comparing with the Python wfdb package") else {
            continue;
        };
        let want = reference(fixture);
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let r = rec.to_str().unwrap();
        let info: serde_json::Value =
            serde_json::from_slice(&ok(aorta_in(d, &["wfdb", "info", r, "--json"])).stdout)
                .unwrap();
        let h = &info["header"];
        assert_eq!(h["record_name"], want["record_name"]);
        assert_eq!(h["sampling_frequency"].as_f64(), want["fs"].as_f64());
        assert_eq!(h["samples_per_signal"], want["sig_len"]);
        assert_eq!(h["comments"], want["comments"]);
        for (s, w) in h["signals"]
            .as_array()
            .unwrap()
            .iter()
            .zip(want["signals"].as_array().unwrap())
        {
            assert_eq!(s["file_name"], w["file_name"]);
            assert_eq!(s["format"], w["fmt"]);
            assert_eq!(s["gain"].as_f64(), w["adc_gain"].as_f64());
            assert_eq!(s["baseline"], w["baseline"]);
            assert_eq!(s["units"], w["units"]);
            assert_eq!(s["adc_resolution"], w["adc_res"]);
            assert_eq!(s["adc_zero"], w["adc_zero"]);
            assert_eq!(s["initial_value"], w["init_value"]);
            assert_eq!(s["checksum"], w["checksum"]);
            assert_eq!(s["description"], w["sig_name"]);
        }
        // Samples in physical units: the first rows, as p_signal.
        let csv = ok(aorta_in(d, &["wfdb", "export", "--record", r, "--csv"])).stdout;
        let csv = String::from_utf8(csv).unwrap();
        let mut lines = csv.lines();
        let names: Vec<String> = want["signals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!(",'{}'", s["sig_name"].as_str().unwrap()))
            .collect();
        assert_eq!(
            lines.next(),
            Some(format!("'Elapsed time'{}", names.concat()).as_str())
        );
        lines.next();
        let fs = want["fs"].as_f64().unwrap();
        let rows = want["p_signal"].as_array().unwrap();
        for (i, (line, row)) in lines.by_ref().zip(rows).enumerate() {
            let f: Vec<f64> = line.split(',').map(|x| x.parse().unwrap()).collect();
            assert!((f[0] - i as f64 / fs).abs() < 5e-4, "{sub} row {i}: {line}");
            for (a, b) in f[1..].iter().zip(row.as_array().unwrap()) {
                assert!(
                    (a - b.as_f64().unwrap()).abs() < 1e-12,
                    "{sub} row {i}: {line} vs {row}"
                );
            }
        }
        let tail = want["p_signal_tail"].as_array().unwrap();
        let last: Vec<&str> = csv.lines().skip(csv.lines().count() - tail.len()).collect();
        for (line, row) in last.iter().zip(tail) {
            for (a, b) in line.split(',').skip(1).zip(row.as_array().unwrap()) {
                let a: f64 = a.parse().unwrap();
                assert!(
                    (a - b.as_f64().unwrap()).abs() < 1e-12,
                    "{sub} tail: {line} vs {row}"
                );
            }
        }
        assert_eq!(
            csv.lines().count() - 2,
            want["sig_len"].as_u64().unwrap() as usize,
            "{sub}: one line per sample"
        );
        // Annotations as rdann reads them.
        let Some(anns) = want.get("annotations") else {
            continue;
        };
        let text = ok(aorta_in(
            d,
            &["wfdb", "export", "--record", r, "--annotations", "atr"],
        ))
        .stdout;
        let text = String::from_utf8(text).unwrap();
        for (line, a) in text.lines().zip(anns.as_array().unwrap()) {
            let (fields, aux) = line.split_once('\t').unwrap_or((line, ""));
            let f: Vec<&str> = fields.split_whitespace().collect();
            let ms = (a["sample"].as_f64().unwrap() / fs * 1000.0).round() as u64;
            assert_eq!(
                f,
                [
                    format!("{}:{:02}.{:03}", ms / 60000, ms / 1000 % 60, ms % 1000).as_str(),
                    &a["sample"].to_string(),
                    a["symbol"].as_str().unwrap(),
                    &a["subtype"].to_string(),
                    &a["chan"].to_string(),
                    &a["num"].to_string(),
                ],
                "{sub}: {line}"
            );
            // rdann prints the aux string up to its NUL padding.
            let want_aux = a["aux"].as_str().unwrap().trim_end_matches('\0');
            assert_eq!(aux, want_aux, "{sub}: {line}");
        }
        assert!(
            text.starts_with("    0:00.050       18     +    0    0    0\t(N\n")
                || sub != "mitdb/100"
        );
    }
}

#[test]
fn wfdb_export_writes_what_rdsamp_and_rdann_write() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    sample_db(d);
    let run = |args: &[&str]| {
        let o = aorta_in(d, args);
        assert_eq!(
            (o.status.code(), stderr(&o).as_str()),
            (Some(0), ""),
            "{args:?}"
        );
        String::from_utf8(o.stdout).unwrap()
    };
    // rdsamp -c -p -v: quoted headings and units, then time and values.
    let csv = run(&["wfdb", "export", "--record", "db/100", "--csv"]);
    assert!(
        csv.starts_with("'Elapsed time','MLII','V5'\n'seconds','mV','mV'\n0.000,-0.145,-0.065\n0.003,-0.145,-0.065\n"),
        "{}",
        &csv[..200]
    );
    assert_eq!(csv.lines().count(), 2 + 129600);
    assert!(
        csv.ends_with("359.994,-0.38,-0.525\n359.997,-0.375,-0.51\n"), // as wfdb.rdrecord
        "{}",
        &csv[csv.len() - 100..]
    );
    // rdsamp -p -v: right-aligned columns.
    let tab = run(&["wfdb", "export", "--record", "db/100"]);
    assert!(
        tab.starts_with("   Elapsed time\t   MLII\t     V5\n      (seconds)\t   (mV)\t   (mV)\n          0.000\t -0.145\t -0.065\n"),
        "{}",
        &tab[..200]
    );
    // rdann: time, sample, mnemonic, subtype, channel, number.
    write_atr(&d.join("db/100.atr"), 129600);
    let ann = run(&[
        "wfdb",
        "export",
        "--record",
        "db/100",
        "--annotations",
        "atr",
    ]);
    assert!(
        ann.starts_with("    0:00.800      288     N    0    0    0\n    0:01.600      576     N    0    0    0\n"),
        "{ann}"
    );
    assert_eq!(ann.lines().count(), 129600 / 288 - 1);
    snap(
        &aorta_in(
            d,
            &[
                "wfdb",
                "export",
                "--record",
                "db/100",
                "--annotations",
                "qrs",
            ],
        ),
        2,
        "",
        "error: db/100.qrs: No such file or directory (os error 2)\n",
    );
}
