//! The signal the simulated devices replay: MIT-BIH records or, when the
//! database is absent, a synthetic two-lead ECG.

use std::path::{Path, PathBuf};

use anyhow::Context;
use aorta_crypto::frame::ChannelCalibration;
use aorta_device::source::channel_calibration;

/// One source signal the devices replay (two channels, digital units).
pub(crate) struct Source {
    pub(crate) fs: f64,
    pub(crate) calibration: Vec<ChannelCalibration>,
    pub(crate) channels: [Vec<i32>; 2],
}

/// Loads up to `want` two-channel records of `db`, keeping `keep_s` seconds
/// from the start of each.
pub(crate) fn load_db(db: &Path, want: usize, keep_s: f64) -> anyhow::Result<Vec<Source>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(db)
        .with_context(|| format!("reading {}", db.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "hea"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for hea in names {
        if out.len() >= want {
            break;
        }
        let rec = aorta_signal::wfdb::Record::read(&hea)
            .with_context(|| format!("reading {}", hea.display()))?;
        let fs = rec.fs();
        let (Some(s0), Some(s1), Some(h0), Some(h1)) = (
            rec.samples.first(),
            rec.samples.get(1),
            rec.header.signals.first(),
            rec.header.signals.get(1),
        ) else {
            continue;
        };
        if !(fs.is_finite() && fs > 0.0) {
            continue;
        }
        let keep = ((keep_s * fs).ceil() as usize).min(s0.len()).min(s1.len());
        // The device's one WFDB-header-to-calibration mapping.
        let (Ok(c0), Ok(c1)) = (channel_calibration(h0), channel_calibration(h1)) else {
            continue;
        };
        out.push(Source {
            fs,
            calibration: vec![c0, c1],
            channels: [
                s0.get(..keep).unwrap_or_default().to_vec(),
                s1.get(..keep).unwrap_or_default().to_vec(),
            ],
        });
    }
    anyhow::ensure!(!out.is_empty(), "no two-channel record in {}", db.display());
    Ok(out)
}

/// A synthetic two-lead ECG at 360 Hz (used only when the database is
/// absent): P-QRS-T complexes as Gaussian waves, a heart rate drifting
/// between sources with respiratory sinus arrhythmia and beat-to-beat
/// jitter, baseline wander and noise; 200 units/mV, baseline 1024 (as MIT-BIH).
pub(crate) fn synthetic(count: usize, secs: f64) -> Vec<Source> {
    let fs = 360.0;
    let n = (secs * fs).ceil() as usize;
    (0..count)
        .map(|s| {
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (s as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
            let mut uniform = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng >> 11) as f64 / (1u64 << 53) as f64
            };
            let hr = 58.0 + 7.0 * (s % 6) as f64;
            // Beat times.
            let mut beats = Vec::new();
            let mut t = 0.3 * uniform();
            while t < secs + 2.0 {
                beats.push(t);
                let rr = 60.0 / hr
                    * (1.0 + 0.05 * (2.0 * std::f64::consts::PI * 0.25 * t).sin())
                    * (1.0 + 0.03 * (uniform() - 0.5));
                t += rr;
            }
            let wave = |x: f64, at: f64, width: f64, amp: f64| {
                let z = (x - at) / width;
                amp * (-0.5 * z * z).exp()
            };
            let mut a = vec![0i32; n];
            let mut b = vec![0i32; n];
            let mut next = 0usize;
            for i in 0..n {
                let x = i as f64 / fs;
                while beats.get(next + 1).is_some_and(|&bt| bt < x - 0.4) {
                    next += 1;
                }
                let mut v1 = 0.0;
                let mut v2 = 0.0;
                for bt in beats.iter().skip(next).take(3) {
                    let d = x - bt;
                    if !(-0.4..=0.6).contains(&d) {
                        continue;
                    }
                    let p = wave(d, -0.18, 0.025, 0.12);
                    let qrs = wave(d, -0.025, 0.010, -0.12)
                        + wave(d, 0.0, 0.012, 1.3)
                        + wave(d, 0.028, 0.012, -0.3);
                    let tw = wave(d, 0.28, 0.055, 0.28);
                    v1 += p + qrs + tw;
                    v2 += 0.6 * p + 0.7 * qrs + 0.45 * tw;
                }
                let wander = 0.06 * (2.0 * std::f64::consts::PI * 0.3 * x + s as f64).sin();
                v1 += wander + 0.015 * (uniform() - 0.5);
                v2 += 0.8 * wander + 0.015 * (uniform() - 0.5);
                if let (Some(pa), Some(pb)) = (a.get_mut(i), b.get_mut(i)) {
                    *pa = 1024 + (v1 * 200.0).round() as i32;
                    *pb = 1024 + (v2 * 200.0).round() as i32;
                }
            }
            let cal = |d: &str| ChannelCalibration::new(200.0, 1024, 1024, 11, "mV", d);
            Source {
                fs,
                calibration: vec![cal("synthetic I"), cal("synthetic II")],
                channels: [a, b],
            }
        })
        .collect()
}
