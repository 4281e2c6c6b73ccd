//! `aorta hrv` as a user runs it: `--rr` reads every RR text shape
//! `aorta device run --rr` reads (the same parser) and honours the time
//! column's gaps as the device does; `--record` flags a window its beats do
//! not cover instead of printing it as a full 5-minute result (issue 15,
//! item 4).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap or out-of-range index is the failure report"
)]
mod common;

use common::{Run, shared_data};

/// 150 intervals of 800 ms then 150 of 1000 ms (270 s of NN).
fn intervals() -> Vec<f64> {
    let mut v = vec![800.0; 150];
    v.extend(vec![1000.0; 150]);
    v
}

/// The same intervals in each shape the RR text format allows; `gap_s`
/// seconds of lost beats between the two halves in the timed shapes.
fn shapes(gap_s: f64) -> Vec<(&'static str, String)> {
    let rr = intervals();
    let mut t = 0.0;
    let times: Vec<f64> = rr
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if i == 150 {
                t += gap_s;
            }
            t += r / 1000.0;
            t
        })
        .collect();
    let plain: String = rr.iter().map(|r| format!("{r}\n")).collect();
    let timed = |sep: &str| -> String {
        rr.iter()
            .zip(&times)
            .map(|(r, t)| format!("{t:.3}{sep}{r}\n"))
            .collect()
    };
    vec![
        ("plain", plain.clone()),
        ("rr_ms header", format!("rr_ms\n{plain}")),
        (
            "comments, blanks, CRLF",
            format!(
                "# strap export\r\n\r\n{}",
                plain.replace('\n', " # beat\r\n")
            ),
        ),
        ("time_s,rr_ms", format!("time_s,rr_ms\n{}", timed(","))),
        ("time_s;rr_ms", format!("time_s;rr_ms\n{}", timed(";"))),
        ("tab", format!("time_s\trr_ms\n{}", timed("\t"))),
        ("timed, no header", timed(",")),
    ]
}

fn hrv_json(text: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("rr.txt");
    std::fs::write(&p, text).unwrap();
    Run::new(["hrv", "--json", "--rr"]).arg(&p).json()
}

#[test]
fn every_device_rr_shape_reads_the_same() {
    let want = hrv_json(&shapes(0.0)[0].1);
    assert_eq!(want["n_nn"], 300);
    for (name, text) in shapes(0.0) {
        // The device's reader takes it (one parser for both commands) ...
        let (segs, stats) = aorta_device::source::rr::rr_segments(&text).unwrap();
        assert_eq!((segs.len(), stats.kept), (1, 300), "{name}");
        // ... and `aorta hrv --rr` gives the same HRV.
        let got = hrv_json(&text);
        for k in ["n_nn", "mean_nn", "sdnn", "rmssd", "pnn50"] {
            assert_eq!(got[k], want[k], "{name}: {k}");
        }
        // The spectrum resamples at the beat times: written times (rounded
        // to 1 ms) and running sums differ in the last bits.
        for k in ["lf", "hf"] {
            let (g, w) = (got[k].as_f64().unwrap(), want[k].as_f64().unwrap());
            assert!((g - w).abs() <= 1e-9 * w, "{name}: {k} {g} vs {w}");
        }
    }
}

#[test]
fn a_time_gap_is_not_a_successive_difference() {
    // 20 s of lost beats between the 800 ms and the 1000 ms halves: the
    // device cuts its stream there, and HRV must not take 1000 − 800 as a
    // beat-to-beat difference: every successive difference is 0.
    for (name, text) in shapes(20.0)
        .into_iter()
        .filter(|(n, _)| n.contains("time") || n.contains("tab"))
    {
        let (segs, _) = aorta_device::source::rr::rr_segments(&text).unwrap();
        assert_eq!(segs.len(), 2, "{name}");
        let v = hrv_json(&text);
        assert_eq!(v["n_nn"], 300, "{name}");
        assert_eq!(v["rmssd"].as_f64(), Some(0.0), "{name}: {v}");
        assert!(v["sdnn"].as_f64().unwrap() > 90.0, "{name}");
    }
    // Without times the halves are consecutive: one 200 ms difference.
    let v = hrv_json(&shapes(20.0)[0].1);
    assert!(v["rmssd"].as_f64().unwrap() > 10.0, "{v}");
}

#[test]
fn record_window_without_beats_is_partial() {
    let Some(db) = shared_data("mitdb", "this test") else {
        return;
    };
    let v = Run::new(["hrv", "--json", "--record"])
        .arg(db.join("100"))
        .json();
    let w = v["windows"].as_array().unwrap();
    assert_eq!(w.len(), 7, "30:06 of signal in 300 s windows");
    for x in &w[..6] {
        assert_eq!(x["partial"], false, "{x}");
        assert!(x["hrv"]["sdnn"].as_f64().unwrap() > 0.0, "{x}");
    }
    // [1800, 2100) holds the record's last 6 s.
    let last = &w[6];
    assert_eq!(last["partial"], true, "{last}");
    assert!(last["coverage"].as_f64().unwrap() < 0.03, "{last}");
    for k in ["mean_hr", "sdnn", "rmssd", "lf", "hf", "sd1"] {
        assert!(last["hrv"][k].is_null(), "{k}: {last}");
    }
    let table = Run::new(["hrv", "--record"]).arg(db.join("100")).ok();
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    let row = table
        .lines()
        .find(|l| l.trim_start().starts_with("1800"))
        .unwrap();
    assert!(row.contains("partial"), "{table}");
    let full = table
        .lines()
        .find(|l| l.trim_start().starts_with("1500"))
        .unwrap();
    assert!(!full.contains("partial"), "{table}");
}
