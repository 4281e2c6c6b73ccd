//! `aorta hrv`: heart-rate variability from an RR file or a WFDB record.
//!
//! `aorta hrv --rr FILE [--json]`: FILE holds one RR interval in ms per line
//! (blank lines and `#` comments ignored); [`print_report`] /
//! [`render_table`] print its one report. `aorta hrv --record PATH --window
//! 300 [--json]`: `aorta_signal::hrv::record_hrv` reports per window. The
//! input is a [`clap::ArgGroup`] of the two.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use aorta_signal::hrv::{
    ArtefactRule, HrvEngine, HrvOptions, HrvReport, NnSeries, RecordHrvReport, SpectralMethod,
    WindowResult, parse_rr_text, record_hrv,
};

/// Spectral method choice on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Spectral {
    /// Welch on NN resampled at 4 Hz (NeuroKit2's method).
    Welch,
    /// Lomb-Scargle on the uneven NN series.
    Lomb,
}

impl From<Spectral> for SpectralMethod {
    fn from(s: Spectral) -> Self {
        match s {
            Spectral::Welch => SpectralMethod::Welch,
            Spectral::Lomb => SpectralMethod::LombScargle,
        }
    }
}

/// `aorta hrv` arguments.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["rr", "record"])))]
pub struct HrvArgs {
    /// File with one RR interval in milliseconds per line (blank lines and `#` comments ignored).
    #[arg(long, value_name = "FILE")]
    pub rr: Option<PathBuf>,
    /// WFDB record (path without extension): detect beats on its first signal with aorta's
    /// R-peak detector and report HRV per window.
    #[arg(long, value_name = "PATH")]
    pub record: Option<PathBuf>,
    /// Window length in seconds for --record (Task Force short-term: 300).
    #[arg(long, default_value_t = 300.0, requires = "record")]
    pub window: f64,
    /// Signal index analysed with --record.
    #[arg(long, default_value_t = 0, requires = "record")]
    pub lead: usize,
    /// Spectral estimator for VLF/LF/HF.
    #[arg(long, value_enum, default_value_t = Spectral::Welch)]
    pub spectral: Spectral,
    /// Keep every RR interval: no range [300, 2000] ms / 20 %-from-local-median filter.
    #[arg(long)]
    pub no_artefact_filter: bool,
    /// Print JSON (the HrvReport keys; units ms, ms², %, bpm; undefined values are null).
    #[arg(long)]
    pub json: bool,
}

impl HrvArgs {
    /// The artefact rule these arguments select.
    pub fn artefact_rule(&self) -> ArtefactRule {
        if self.no_artefact_filter {
            ArtefactRule::none()
        } else {
            ArtefactRule::default()
        }
    }
}

/// Runs `aorta hrv`.
pub fn run(args: HrvArgs) -> anyhow::Result<ExitCode> {
    if let Some(record) = &args.record {
        return run_record(record, &args);
    }
    let Some(path) = &args.rr else {
        anyhow::bail!("no input: give --rr FILE or --record PATH");
    };
    let report = report_from_rr_file(path, &args.artefact_rule(), args.spectral.into())?;
    print_report(&report, args.spectral.into(), args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// `aorta hrv --record PATH [--window S]`: detect beats, report HRV per window.
fn run_record(record: &Path, args: &HrvArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.window.is_finite() && args.window >= 10.0,
        "--window must be at least 10 seconds"
    );
    let opts = HrvOptions {
        spectral: args.spectral.into(),
    };
    let report = record_hrv(record, args.lead, args.window, &args.artefact_rule(), &opts)?;
    crate::show(&report, args.json, print_windows)?;
    Ok(ExitCode::SUCCESS)
}

/// The per-window table of `aorta hrv --record`.
fn print_windows(report: &RecordHrvReport) {
    println!(
        "{}: {} beats detected at {} Hz; HRV per {} s window (ms, ms², bpm)",
        report.record, report.beats, report.fs, report.window_s
    );
    println!(
        "{:>7} {:>7} {:>5} {:>7} {:>7} {:>7} {:>9} {:>9} {:>6} {:>6} {:>6}",
        "start", "end", "NN", "HR", "SDNN", "RMSSD", "LF", "HF", "LF/HF", "SD1", "SampEn"
    );
    for w in &report.windows {
        let (s, e) = (w.start_s, w.end_s);
        match &w.result {
            WindowResult::Hrv(r) => println!(
                "{:>7.0} {:>7.0} {:>5} {:>7.1} {:>7.1} {:>7.1} {:>9.1} {:>9.1} {:>6.2} {:>6.1} {:>6.2}",
                s,
                e,
                r.n_nn,
                r.time.mean_hr,
                r.time.sdnn,
                r.time.rmssd,
                r.freq.lf,
                r.freq.hf,
                r.freq.lf_hf,
                r.nonlinear.sd1,
                r.nonlinear.sampen
            ),
            WindowResult::Error(msg) => println!("{s:>7.0} {e:>7.0}  {msg}"),
        }
    }
}

/// Reads an RR file and computes its report.
pub fn report_from_rr_file(
    path: &Path,
    rule: &ArtefactRule,
    spectral: SpectralMethod,
) -> anyhow::Result<HrvReport> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let rr = parse_rr_text(&bytes).with_context(|| format!("in {}", path.display()))?;
    let nn = NnSeries::from_rr(&rr, rule).with_context(|| format!("in {}", path.display()))?;
    let report = HrvEngine::new()
        .report(&nn, &HrvOptions { spectral })
        .with_context(|| format!("HRV of {}", path.display()))?;
    Ok(report)
}

/// Prints one report as JSON or as a table.
pub fn print_report(
    report: &HrvReport,
    spectral: SpectralMethod,
    json: bool,
) -> anyhow::Result<()> {
    use std::io::Write;
    let text = if json {
        serde_json::to_string_pretty(report)? + "\n"
    } else {
        render_table(report, spectral)
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

/// The human-readable table.
pub fn render_table(r: &HrvReport, spectral: SpectralMethod) -> String {
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
        let header = match i {
            0 => Some("time domain"),
            11 => Some("frequency domain (0.0033-0.04 / 0.04-0.15 / 0.15-0.4 Hz)"),
            18 => Some("non-linear"),
            _ => None,
        };
        if let Some(h) = header {
            out.push_str(&format!("{h}\n"));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("aorta-hrv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn sample_rr() -> String {
        let mut s = String::from("# RR intervals (ms)\n");
        for i in 0..300 {
            let v = 800.0 + 40.0 * (i as f64 * 0.9).sin() + 15.0 * (i as f64 * 0.37).cos();
            s.push_str(&format!("{v:.1}\n"));
            if i % 50 == 0 {
                s.push('\n');
            }
        }
        s
    }

    #[test]
    fn json_has_exactly_the_contract_keys() {
        let p = write("ok.txt", &sample_rr());
        let r = report_from_rr_file(&p, &ArtefactRule::default(), SpectralMethod::Welch).unwrap();
        let v = serde_json::to_value(r).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut want = vec![
            "n_rr",
            "n_nn",
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
    fn table_shows_units() {
        let p = write("table.txt", &sample_rr());
        let r =
            report_from_rr_file(&p, &ArtefactRule::none(), SpectralMethod::LombScargle).unwrap();
        let t = render_table(&r, SpectralMethod::LombScargle);
        assert!(t.contains("Lomb-Scargle"));
        assert!(
            t.lines()
                .any(|l| l.trim_start().starts_with("sdnn") && l.ends_with("ms"))
        );
        assert!(
            t.lines()
                .any(|l| l.trim_start().starts_with("lf ") && l.ends_with("ms²"))
        );
        assert!(
            t.lines()
                .any(|l| l.trim_start().starts_with("mean_hr") && l.ends_with("bpm"))
        );
    }

    #[test]
    fn bad_line_is_named() {
        let p = write("bad.txt", "800\n810\nhello\n");
        let err =
            report_from_rr_file(&p, &ArtefactRule::none(), SpectralMethod::Welch).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("bad.txt"), "{msg}");
    }

    #[test]
    fn too_few_is_an_error() {
        let p = write("few.txt", "800\n810\n");
        let err =
            report_from_rr_file(&p, &ArtefactRule::none(), SpectralMethod::Welch).unwrap_err();
        assert!(format!("{err:#}").contains("too few"), "{err:#}");
    }
}
