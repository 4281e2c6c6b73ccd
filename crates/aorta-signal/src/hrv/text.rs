//! HRV of an RR text file ([`rr_file_hrv`]) and the text forms of the HRV
//! reports ([`report_table`], [`record_table`]): what `aorta hrv` prints
//! without `--json`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{
    ArtefactRule, HrvEngine, HrvError, HrvOptions, HrvReport, NnSeries, RecordHrvReport,
    RrParseError, SpectralMethod, WindowResult, parse_rr_series, rrtext::GAP_TOLERANCE_MS,
};

/// Why an RR file's HRV could not be computed; the message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RrFileError {
    /// The file cannot be read.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is not an RR interval.
    #[error("in {}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line and why.
        source: RrParseError,
    },
    /// The intervals admit no HRV (too few, after filtering).
    #[error("HRV of {}: {source}", path.display())]
    Hrv {
        /// The file.
        path: PathBuf,
        /// Why.
        source: HrvError,
    },
}

/// Reads an RR text file (`aorta_signal::hrv::rrtext`: `RR_MS` or
/// `TIME_S,RR_MS` lines, the format `aorta device run --rr` reads; with
/// times, a time gap breaks the series as [`NnSeries::from_timed_rr`]
/// says), filters it with `rule` and reports its HRV, the metrics it is too
/// short for withheld ([`HrvReport::withhold_short`]).
pub fn rr_file_hrv(
    path: &Path,
    rule: &ArtefactRule,
    opts: &HrvOptions,
) -> Result<HrvReport, RrFileError> {
    let path_buf = || path.to_path_buf();
    let bytes = std::fs::read(path).map_err(|source| RrFileError::Io {
        path: path_buf(),
        source,
    })?;
    let (rr, times) = parse_rr_series(&bytes).map_err(|source| RrFileError::Parse {
        path: path_buf(),
        source,
    })?;
    let hrv = |source| RrFileError::Hrv {
        path: path_buf(),
        source,
    };
    let nn = match times {
        Some(t) => NnSeries::from_timed_rr(&rr, &t, GAP_TOLERANCE_MS, rule),
        None => NnSeries::from_rr(&rr, rule),
    }
    .map_err(hrv)?;
    HrvEngine::new().report_checked(&nn, opts).map_err(hrv)
}

/// The report as a table: one metric a line with its unit, by family.
pub fn report_table(r: &HrvReport, spectral: SpectralMethod) -> String {
    let method = match spectral {
        SpectralMethod::LombScargle => "Lomb-Scargle on uneven NN",
        _ => "Welch on NN resampled at 4 Hz",
    };
    let rows: [(&str, f64, &str); 24] = [
        ("mean_nn", r.time.mean_nn, "ms"),
        ("sdnn", r.time.sdnn, "ms"),
        ("rmssd", r.time.rmssd, "ms"),
        ("sdsd", r.time.sdsd, "ms"),
        ("pnn50", r.time.pnn50, "%"),
        ("pnn20", r.time.pnn20, "%"),
        ("mean_hr", r.time.mean_hr, "bpm"),
        ("min_hr", r.time.min_hr, "bpm"),
        ("max_hr", r.time.max_hr, "bpm"),
        ("hti", r.time.hti, ""),
        ("tinn", r.time.tinn, "ms"),
        ("vlf", r.freq.vlf, "ms²"),
        ("lf", r.freq.lf, "ms²"),
        ("hf", r.freq.hf, "ms²"),
        ("lf_hf", r.freq.lf_hf, ""),
        ("lfnu", r.freq.lfnu, "%"),
        ("hfnu", r.freq.hfnu, "%"),
        ("total_power", r.freq.total_power, "ms²"),
        ("sd1", r.nonlinear.sd1, "ms"),
        ("sd2", r.nonlinear.sd2, "ms"),
        ("sd1_sd2", r.nonlinear.sd1_sd2, ""),
        ("sampen", r.nonlinear.sampen, ""),
        ("dfa_alpha1", r.nonlinear.dfa_alpha1, ""),
        ("dfa_alpha2", r.nonlinear.dfa_alpha2, ""),
    ];
    let mut out = format!(
        "HRV of {} NN intervals ({} RR before filtering); spectrum: {method}\n",
        r.n_nn, r.n_rr
    );
    for (i, (name, v, unit)) in rows.iter().enumerate() {
        let heading = match i {
            0 => "time domain\n",
            11 => "frequency domain (0.0033-0.04 / 0.04-0.15 / 0.15-0.4 Hz)\n",
            18 => "non-linear\n",
            _ => "",
        };
        out.push_str(heading);
        let value = if v.is_finite() {
            format!("{v:.3}")
        } else {
            "n/a".to_string()
        };
        let line = format!("  {name:<12} {value:>12} {unit}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The per-window table of a record's HRV.
pub fn record_table(report: &RecordHrvReport) -> String {
    let mut out = format!(
        "{}: {} beats detected at {} Hz; HRV per {} s window (ms, ms², bpm)\n{:>7} {:>7} {:>5} {:>7} {:>7} {:>7} {:>9} {:>9} {:>6} {:>6} {:>6}\n",
        report.record,
        report.beats,
        report.fs,
        report.window_s,
        "start",
        "end",
        "NN",
        "HR",
        "SDNN",
        "RMSSD",
        "LF",
        "HF",
        "LF/HF",
        "SD1",
        "SampEn"
    );
    for w in &report.windows {
        let (s, e) = (w.start_s, w.end_s);
        let v = |x: f64, prec: usize, width: usize| {
            if x.is_finite() {
                format!("{x:>width$.prec$}")
            } else {
                format!("{:>width$}", "-")
            }
        };
        // Writing to a String cannot fail.
        let _ = match &w.result {
            WindowResult::Hrv(r) => write!(
                out,
                "{:>7.0} {:>7.0} {:>5} {} {} {} {} {} {} {} {}",
                s,
                e,
                r.n_nn,
                v(r.time.mean_hr, 1, 7),
                v(r.time.sdnn, 1, 7),
                v(r.time.rmssd, 1, 7),
                v(r.freq.lf, 1, 9),
                v(r.freq.hf, 1, 9),
                v(r.freq.lf_hf, 2, 6),
                v(r.nonlinear.sd1, 1, 6),
                v(r.nonlinear.sampen, 2, 6)
            ),
            WindowResult::Error(msg) => write!(out, "{s:>7.0} {e:>7.0}  {msg}"),
        };
        if w.coverage.partial {
            let _ = write!(
                out,
                "  partial: beats cover {:.0} % of the window",
                w.coverage.coverage * 100.0
            );
        }
        out.push('\n');
    }
    if report.windows.iter().any(|w| w.coverage.partial) {
        out.push_str(
            "partial windows are not full-length results; \"-\": too little NN time for the metric (docs/hrv.md)\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    fn sample_rr() -> String {
        let mut s = String::from("# RR intervals (ms)\n");
        for i in 0..300 {
            let v = 800.0 + 40.0 * (f64::from(i) * 0.9).sin() + 15.0 * (f64::from(i) * 0.37).cos();
            s.push_str(&format!("{v:.1}\n"));
            if i % 50 == 0 {
                s.push('\n');
            }
        }
        s
    }

    fn report(
        p: &Path,
        rule: &ArtefactRule,
        spectral: SpectralMethod,
    ) -> Result<HrvReport, RrFileError> {
        rr_file_hrv(p, rule, &HrvOptions { spectral })
    }

    #[test]
    fn json_has_exactly_the_contract_keys() {
        let (_d, p) = write("ok.txt", &sample_rr());
        let r = report(&p, &ArtefactRule::default(), SpectralMethod::Welch).unwrap();
        let v = serde_json::to_value(r).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut want = vec![
            "n_rr",
            "n_nn",
            "nn_s",
            "mean_nn",
            "sdnn",
            "rmssd",
            "sdsd",
            "pnn50",
            "pnn20",
            "mean_hr",
            "min_hr",
            "max_hr",
            "hti",
            "tinn",
            "vlf",
            "lf",
            "hf",
            "lf_hf",
            "lfnu",
            "hfnu",
            "total_power",
            "sd1",
            "sd2",
            "sd1_sd2",
            "sampen",
            "dfa_alpha1",
            "dfa_alpha2",
        ];
        want.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(v["n_rr"], 300);
        assert!(v["rmssd"].as_f64().unwrap() > 0.0);
    }

    #[test]
    fn table_shows_units_and_families() {
        let (_d, p) = write("table.txt", &sample_rr());
        let r = report(&p, &ArtefactRule::none(), SpectralMethod::LombScargle).unwrap();
        let t = report_table(&r, SpectralMethod::LombScargle);
        assert!(t.contains("Lomb-Scargle"));
        for (metric, unit) in [("sdnn", "ms"), ("lf ", "ms²"), ("mean_hr", "bpm")] {
            assert!(
                t.lines()
                    .any(|l| l.trim_start().starts_with(metric) && l.ends_with(unit)),
                "{metric}: {t}"
            );
        }
        let headings: Vec<&str> = t.lines().filter(|l| !l.starts_with(' ')).collect();
        assert_eq!(headings.len(), 4, "{t}");
        assert_eq!(t.lines().count(), 1 + 3 + 24, "{t}");
    }

    #[test]
    fn bad_line_is_named() {
        let (_d, p) = write("bad.txt", "800\n810\nhello\n");
        let err = report(&p, &ArtefactRule::none(), SpectralMethod::Welch).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("bad.txt"), "{msg}");
    }

    #[test]
    fn too_few_is_an_error() {
        let (_d, p) = write("few.txt", "800\n810\n");
        let err = report(&p, &ArtefactRule::none(), SpectralMethod::Welch).unwrap_err();
        assert!(err.to_string().contains("too few"), "{err}");
    }
}
