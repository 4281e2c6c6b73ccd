//! `aorta hrv`: heart-rate variability from an RR file
//! ([`aorta_signal::hrv::rr_file_hrv`]) or a WFDB record
//! ([`aorta_signal::hrv::record_hrv`], per window), printed as JSON or as
//! the tables of `aorta_signal::hrv`. The input is a [`clap::ArgGroup`] of
//! the two.

use std::path::PathBuf;
use std::process::ExitCode;

use aorta_signal::hrv::{
    ArtefactRule, HrvOptions, SpectralMethod, record_hrv_with, record_table, report_table,
    rr_file_hrv,
};

/// Spectral method choice on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Spectral {
    /// Welch on NN resampled at 4 Hz (NeuroKit2's method).
    Welch,
    /// Lomb-Scargle on the uneven NN series.
    Lomb,
}

/// `aorta hrv` arguments.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["rr", "record"])))]
pub struct HrvArgs {
    /// RR text file, the format `aorta device run --rr` reads: one interval in
    /// ms per line, or `time_s,rr_ms` lines (time of the beat ending the
    /// interval; a time gap breaks the series); `;` or tab may separate the
    /// fields; a header line, blank lines and `#` comments are skipped.
    #[arg(long, value_name = "FILE")]
    pub rr: Option<PathBuf>,
    /// WFDB record (DIR/NAME, DIR/NAME.hea or DIR/NAME.dat): detect beats on
    /// its first signal with aorta's R-peak detector and report HRV per window.
    #[arg(long, value_name = "PATH")]
    pub record: Option<PathBuf>,
    /// Window length in seconds for --record (Task Force short-term: 300).
    #[arg(long, default_value_t = 300.0, requires = "record", value_parser = crate::args::secs(10.0, crate::args::DAY))]
    pub window: f64,
    /// Read --record without checking its checksums and initial values.
    #[arg(long, conflicts_with = "rr")]
    pub no_verify: bool,
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

/// Runs `aorta hrv`.
pub fn run(args: HrvArgs) -> anyhow::Result<ExitCode> {
    crate::signals::abort_on_signals()?;
    let spectral = match args.spectral {
        Spectral::Welch => SpectralMethod::Welch,
        Spectral::Lomb => SpectralMethod::LombScargle,
    };
    let opts = HrvOptions { spectral };
    let rule = if args.no_artefact_filter {
        ArtefactRule::none()
    } else {
        ArtefactRule::default()
    };
    match (&args.record, &args.rr) {
        (Some(record), _) => {
            let read = crate::wfdb_cmd::read_options(args.no_verify);
            let report = record_hrv_with(record, read, args.lead, args.window, &rule, &opts)?;
            crate::show(&report, args.json, |r| out!("{}", record_table(r)))?;
        }
        (None, Some(path)) => {
            let report = rr_file_hrv(path, &rule, &opts)?;
            crate::show(&report, args.json, |r| {
                out!("{}", report_table(r, spectral))
            })?;
        }
        (None, None) => anyhow::bail!("no input: give --rr FILE or --record PATH"),
    }
    Ok(ExitCode::SUCCESS)
}
