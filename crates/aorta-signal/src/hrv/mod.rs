//! Heart-rate variability per the 1996 ESC/NASPE Task Force standard
//! ("Heart rate variability: standards of measurement, physiological
//! interpretation and clinical use", Circulation 93:1043–1065), with every
//! definition matched to NeuroKit2 0.2.13 so results are comparable (see
//! `docs/hrv.md` and the agreement test `tests/hrv_neurokit.rs`).
//!
//! ```
//! use aorta_signal::hrv::{ArtefactRule, HrvEngine, HrvOptions, NnSeries};
//! let rr: Vec<f64> = (0..300).map(|i| 800.0 + 40.0 * (i as f64 * 0.7).sin()).collect();
//! let nn = NnSeries::from_rr(&rr, &ArtefactRule::default())?;
//! let report = HrvEngine::new().report(&nn, &HrvOptions::default())?;
//! assert!(report.time.rmssd > 0.0 && report.freq.hf > 0.0);
//! # Ok::<(), aorta_signal::hrv::HrvError>(())
//! ```
//!
//! # Pipeline
//! 1. **NN series** ([`NnSeries`]): RR intervals (ms) from a list
//!    ([`NnSeries::from_rr`]) or from beat positions and labels
//!    ([`NnSeries::from_beats`]: only intervals between two normal beats;
//!    [`windows_from_beats`] cuts a beat list into e.g. 300 s windows), then
//!    an [`ArtefactRule`] (default: keep RR in [300, 2000] ms and within 20 %
//!    of the median of up to 5 neighbours on each side; [`ArtefactRule::none`]
//!    turns it off). Dropped intervals leave gaps: successive differences are
//!    only taken across directly successive NN pairs.
//! 2. **Metrics** ([`HrvEngine::report`] → [`HrvReport`]; or each family via
//!    [`HrvEngine::time_domain`], [`HrvEngine::frequency_domain`],
//!    [`HrvEngine::nonlinear`]).
//! 3. **Records** ([`record_hrv`] → [`RecordHrvReport`]): beats detected on
//!    a WFDB record, one report per window.
//!
//! # Definitions (units: ms, ms², %, bpm)
//! Time domain, over all N NN intervals; `d` = successive differences over
//! directly successive pairs:
//! - `mean_nn` = mean NN; `sdnn` = SD of NN with ddof 1;
//! - `rmssd` = √mean(d²); `sdsd` = SD of d with ddof 1;
//! - `pnn50`/`pnn20` = 100 · #(|d| > 50 / 20 ms) / (len(d) + 1) (NeuroKit2's
//!   denominator: the number of NN intervals when there is no gap);
//! - `mean_hr` = mean of 60000/NN; `min_hr` = 60000/max NN; `max_hr` = 60000/min NN;
//! - `hti` = N / height of the NN histogram with 1/128 s bins (edges at
//!   multiples of 7.8125 ms from 0); `tinn` = base width M − N of the
//!   least-squares triangle fitted to that histogram, searched as NeuroKit2
//!   does (see [`time::TimeDomain`] and `docs/hrv.md`).
//!
//! Frequency domain ([`SpectralMethod`]); bands VLF 0.0033–0.04, LF 0.04–0.15,
//! HF 0.15–0.4 Hz (lower edge inclusive, upper exclusive), trapezoidal
//! integration of the PSD points inside each band:
//! - default **Welch**: NN (ms) at the closing-beat times, resampled at 4 Hz
//!   on `t0, t0 + 0.25, …` with a quadratic interpolating spline (SciPy
//!   `interp1d(kind="quadratic")`, ends held constant), mean removed, no
//!   detrending; Hann (periodic) window of `nperseg = ⌊N/2⌋` samples
//!   (NeuroKit2: `int(2 / (2·fs/(N/2)) · fs)`), 50 % overlap, FFT length
//!   2·nperseg, density scaling, one-sided, mean of segments; points below
//!   `2·fs/(N/2)` Hz or above 0.5 Hz are discarded (NeuroKit2's
//!   `min_frequency`); a band with zero power is NaN;
//! - **Lomb-Scargle** on the uneven NN series (see [`SpectralMethod`]);
//! - `lf_hf` = LF/HF; `lfnu` = 100·LF/(LF+HF), `hfnu` = 100·HF/(LF+HF)
//!   (Task Force normalised units; NeuroKit2's `LFn` divides by its total
//!   power instead); `total_power` = VLF + LF + HF over finite bands
//!   (Task Force short-term total power; NeuroKit2's `TP` also adds ULF and
//!   VHF 0.4–0.5 Hz).
//!
//! Non-linear ([`nonlinear::NonLinear`]): Poincaré `sd1`, `sd2`, `sd1_sd2`
//! (ddof 1 over successive pairs), `sampen` (m = 2, r = 0.2·SDNN),
//! `dfa_alpha1` (scales 4–11), `dfa_alpha2` (scales 12…⌊(N+1)/10⌋).
//!
//! A metric that is undefined for the input (e.g. α2 with fewer than 129 NN,
//! VLF in a window too short to resolve it) is NaN, serialised as JSON `null`.
//! Inputs that are not an RR series at all (non-finite, ≤ 0 or > 60 s
//! intervals, non-increasing times, too few intervals) are a typed
//! [`HrvError`]. No function here panics.
//!
//! Cost: the full set for a 5-minute window (~400 NN) takes well under a
//! millisecond (see `benches/hrv.rs`); sample entropy is O(N²), so prefer
//! windows over whole-day series.

mod freq;
mod minimum;
mod nn;
pub mod nonlinear;
mod record;
pub mod rrtext;
mod text;
pub mod time;

pub use freq::{FrequencyDomain, HF_BAND, LF_BAND, RESAMPLE_HZ, SpectralMethod, VLF_BAND};
pub use minimum::{
    MIN_COVERAGE, MIN_NN_S_BEAT, MIN_NN_S_HF, MIN_NN_S_LF, MIN_NN_S_SPREAD, MIN_NN_S_VLF,
    WindowCoverage,
};
pub use nn::{
    ArtefactRule, BeatWindow, LocalMedian, MAX_INTERVAL_MS, MAX_SPAN_S, NnSeries,
    SUCCESSIVE_TOLERANCE_MS, windows_from_beats,
};
pub use nonlinear::{NonLinear, sample_entropy};
pub use record::{
    MIN_WINDOW_S, RecordHrvError, RecordHrvReport, WindowHrv, WindowResult, record_hrv,
    record_hrv_with,
};
pub use rrtext::{RrLine, RrParseError, parse_rr_lines, parse_rr_series, parse_rr_text};
pub use text::{RrFileError, record_table, report_table, rr_file_hrv};
pub use time::TimeDomain;

/// Fewest NN intervals accepted by the metrics (SDSD needs two differences).
pub const MIN_NN: usize = 3;

/// Why an HRV computation refused its input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HrvError {
    /// Fewer NN intervals than the metrics need.
    #[error("too few NN intervals: need at least {needed}, got {got}")]
    TooFewIntervals {
        /// Minimum required.
        needed: usize,
        /// NN intervals available (after artefact/label filtering).
        got: usize,
    },
    /// An interval or time is NaN or infinite.
    #[error("value {index} is not a finite number ({value})")]
    NonFinite {
        /// 0-based position.
        index: usize,
        /// The value.
        value: f64,
    },
    /// An interval is not in `(0, 60000]` ms.
    #[error("interval {index} is {value} ms, outside (0, 60000] ms")]
    OutOfRange {
        /// 0-based position.
        index: usize,
        /// The value (ms).
        value: f64,
    },
    /// Interval times do not strictly increase.
    #[error("interval times do not strictly increase at position {index}")]
    TimeNotIncreasing {
        /// 0-based position of the offending time.
        index: usize,
    },
    /// Beat sample indices do not strictly increase.
    #[error("beat positions do not strictly increase at beat {index}")]
    BeatsNotIncreasing {
        /// 0-based beat index.
        index: usize,
    },
    /// The series covers more than [`MAX_SPAN_S`].
    #[error("series spans {seconds} s, more than the 7-day limit")]
    SpanTooLong {
        /// Span in seconds.
        seconds: f64,
    },
    /// Two parallel inputs differ in length.
    #[error("length mismatch: {intervals} intervals/beats but {times} times/labels")]
    LengthMismatch {
        /// Intervals (or beats).
        intervals: usize,
        /// Times (or labels).
        times: usize,
    },
    /// The analysis window length is not a finite positive number.
    #[error("window length {seconds} s is not finite and positive")]
    BadWindow {
        /// The value given.
        seconds: f64,
    },
    /// The sampling frequency is not a finite positive number.
    #[error("sampling frequency {fs} Hz is not finite and positive")]
    BadSamplingFrequency {
        /// The value given.
        fs: f64,
    },
}

/// Options for [`HrvEngine::report`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HrvOptions {
    /// Spectral estimator (default: Welch on 4 Hz resampled NN).
    pub spectral: SpectralMethod,
}

/// Every HRV metric for one NN series: the three families side by side.
/// The JSON is flat — keys are the families' field names (snake_case:
/// `mean_nn`, `sdnn`, …, `lf`, `hf`, …, `sd1`, …); units ms, ms², %, bpm;
/// NaN serialises as `null`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct HrvReport {
    /// RR intervals before filtering.
    pub n_rr: usize,
    /// NN intervals used.
    pub n_nn: usize,
    /// Seconds of NN: the sum of the NN intervals used (what the per-metric
    /// minima of [`HrvReport::withhold_short`] are measured against).
    pub nn_s: f64,
    /// Time-domain and geometric metrics.
    #[serde(flatten)]
    pub time: TimeDomain,
    /// Frequency-domain metrics.
    #[serde(flatten)]
    pub freq: FrequencyDomain,
    /// Poincaré, sample entropy and DFA.
    #[serde(flatten)]
    pub nonlinear: NonLinear,
}

/// Computes HRV metrics, reusing its buffers and FFT plans between calls
/// (create one per thread and keep it).
#[derive(Debug, Default)]
pub struct HrvEngine {
    time: time::TimeScratch,
    freq: freq::FreqScratch,
    nonlinear: nonlinear::NonLinearScratch,
}

fn check_len(nn: &NnSeries) -> Result<(), HrvError> {
    if nn.len() < MIN_NN {
        return Err(HrvError::TooFewIntervals {
            needed: MIN_NN,
            got: nn.len(),
        });
    }
    Ok(())
}

impl HrvEngine {
    /// A new engine with empty buffers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Time-domain and geometric metrics.
    pub fn time_domain(&mut self, nn: &NnSeries) -> Result<TimeDomain, HrvError> {
        check_len(nn)?;
        Ok(time::time_domain_with(nn, &mut self.time))
    }

    /// Frequency-domain metrics with the given spectral method.
    pub fn frequency_domain(
        &mut self,
        nn: &NnSeries,
        method: SpectralMethod,
    ) -> Result<FrequencyDomain, HrvError> {
        check_len(nn)?;
        Ok(freq::frequency_domain_with(nn, method, &mut self.freq))
    }

    /// Poincaré, sample entropy and DFA.
    pub fn nonlinear(&mut self, nn: &NnSeries) -> Result<NonLinear, HrvError> {
        check_len(nn)?;
        Ok(nonlinear::nonlinear_with(nn, &mut self.nonlinear))
    }

    /// The full report, every metric the series defines (as NeuroKit2
    /// computes them, however short the series; see
    /// [`HrvEngine::report_checked`]).
    pub fn report(&mut self, nn: &NnSeries, opts: &HrvOptions) -> Result<HrvReport, HrvError> {
        Ok(HrvReport {
            n_rr: nn.n_rr(),
            n_nn: nn.len(),
            nn_s: nn.nn_ms().iter().sum::<f64>() / 1000.0,
            time: self.time_domain(nn)?,
            freq: self.frequency_domain(nn, opts.spectral)?,
            nonlinear: self.nonlinear(nn)?,
        })
    }
}

impl HrvEngine {
    /// [`HrvEngine::report`] with the metrics the series is too short for
    /// withheld ([`HrvReport::withhold_short`]): what `aorta hrv` and the
    /// pipeline report.
    pub fn report_checked(
        &mut self,
        nn: &NnSeries,
        opts: &HrvOptions,
    ) -> Result<HrvReport, HrvError> {
        let mut r = self.report(nn, opts)?;
        r.withhold_short();
        Ok(r)
    }
}

/// One-shot convenience: [`HrvEngine::report`] with a fresh engine.
pub fn hrv_report(nn: &NnSeries, opts: &HrvOptions) -> Result<HrvReport, HrvError> {
    HrvEngine::new().report(nn, opts)
}
