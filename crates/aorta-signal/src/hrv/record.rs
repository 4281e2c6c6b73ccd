//! HRV of a WFDB record: beats detected on one signal with aorta's R-peak
//! detector ([`crate::rpeak::detect`]), cut into windows
//! ([`windows_from_beats`]) and reported per window ([`HrvEngine::report`]).
//! The JSON of [`RecordHrvReport`] is what `aorta hrv --record PATH --json`
//! prints.

use std::path::{Path, PathBuf};

use super::{
    ArtefactRule, HrvEngine, HrvError, HrvOptions, HrvReport, WindowCoverage, windows_from_beats,
};
use crate::rpeak::DetectorConfigError;
use crate::wfdb::{ReadOptions, Record, WfdbError};

/// Why a record's HRV could not be computed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordHrvError {
    /// The record cannot be read.
    #[error(transparent)]
    Wfdb(#[from] WfdbError),
    /// The record has no signal of that index.
    #[error("{} has no signal {lead}", path.display())]
    NoSignal {
        /// The record path.
        path: PathBuf,
        /// The signal index asked for.
        lead: usize,
    },
    /// The R-peak detector refused the record's sampling frequency.
    #[error(transparent)]
    Detector(#[from] DetectorConfigError),
    /// The beats cannot be cut into windows.
    #[error(transparent)]
    Hrv(#[from] HrvError),
    /// The window is shorter than [`MIN_WINDOW_S`] (or not a number).
    #[error("the window must be at least {MIN_WINDOW_S} seconds, not {window_s}")]
    Window {
        /// The window asked for (s).
        window_s: f64,
    },
}

/// Shortest HRV window a record is cut into (s): shorter windows hold too
/// few beats for the frequency domain's lowest band to mean anything.
pub const MIN_WINDOW_S: f64 = 10.0;

/// HRV of one window, or why it has none.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum WindowResult {
    /// The window's report (JSON key `hrv`).
    #[serde(rename = "hrv")]
    Hrv(HrvReport),
    /// Too few beats (e.g. signal loss): the window is reported as such, not
    /// dropped (JSON key `error`, the message).
    #[serde(rename = "error", serialize_with = "display")]
    Error(HrvError),
}

fn display<S: serde::Serializer>(e: &HrvError, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(e)
}

/// One window of a [`RecordHrvReport`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WindowHrv {
    /// Window start (s).
    pub start_s: f64,
    /// Window end (s).
    pub end_s: f64,
    /// How much of the window its beats cover (JSON keys `coverage`,
    /// `partial`): a partial window is not a full-length result.
    #[serde(flatten)]
    pub coverage: WindowCoverage,
    /// Its HRV (metrics the window is too short for withheld, see
    /// [`HrvReport::withhold_short`]), or why it has none.
    #[serde(flatten)]
    pub result: WindowResult,
}

/// HRV per window of a WFDB record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecordHrvReport {
    /// The record path as given.
    pub record: String,
    /// Sampling frequency (Hz).
    pub fs: f64,
    /// Beats detected.
    pub beats: usize,
    /// Window length (s).
    pub window_s: f64,
    /// Windows that hold at least one beat, in order.
    pub windows: Vec<WindowHrv>,
}

/// Reads the record at `path`, detects beats on signal `lead` and reports
/// HRV per `window_s`-second window (at least [`MIN_WINDOW_S`]).
pub fn record_hrv(
    path: &Path,
    lead: usize,
    window_s: f64,
    rule: &ArtefactRule,
    opts: &HrvOptions,
) -> Result<RecordHrvReport, RecordHrvError> {
    record_hrv_with(path, ReadOptions::default(), lead, window_s, rule, opts)
}

/// [`record_hrv`] reading the record with `read` (e.g.
/// [`ReadOptions::unverified`] for `--no-verify`).
pub fn record_hrv_with(
    path: &Path,
    read: ReadOptions,
    lead: usize,
    window_s: f64,
    rule: &ArtefactRule,
    opts: &HrvOptions,
) -> Result<RecordHrvReport, RecordHrvError> {
    if !(window_s.is_finite() && window_s >= MIN_WINDOW_S) {
        return Err(RecordHrvError::Window { window_s });
    }
    let rec = Record::read_with(path, read)?;
    let fs = rec.fs();
    let signal = rec.physical(lead).ok_or_else(|| RecordHrvError::NoSignal {
        path: path.to_path_buf(),
        lead,
    })?;
    let beats: Vec<u64> = crate::rpeak::detect(&signal, fs)?
        .iter()
        .map(|b| b.sample)
        .collect();
    let mut engine = HrvEngine::new();
    let windows = windows_from_beats(&beats, fs, None, window_s, rule)?
        .iter()
        .map(|w| WindowHrv {
            start_s: w.start_s,
            end_s: w.end_s,
            coverage: WindowCoverage::new(covered_s(&beats, fs, w.start_s, w.end_s), window_s),
            result: match engine.report_checked(&w.nn, opts) {
                Ok(r) => WindowResult::Hrv(r),
                Err(e) => WindowResult::Error(e),
            },
        })
        .collect();
    Ok(RecordHrvReport {
        record: path.display().to_string(),
        fs,
        beats: beats.len(),
        window_s,
        windows,
    })
}

/// Seconds between the first and the last beat of `[start_s, end_s)`: the
/// time the window's beat intervals span.
fn covered_s(beats: &[u64], fs: f64, start_s: f64, end_s: f64) -> f64 {
    let a = beats.partition_point(|&b| (b as f64 / fs) < start_s);
    let b = beats.partition_point(|&b| (b as f64 / fs) < end_s);
    match (beats.get(a), b.checked_sub(1).and_then(|i| beats.get(i))) {
        (Some(&first), Some(&last)) if b > a => last.saturating_sub(first) as f64 / fs,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_json_has_hrv_or_error() {
        let w = WindowHrv {
            start_s: 0.0,
            end_s: 300.0,
            coverage: WindowCoverage::new(1.5, 300.0),
            result: WindowResult::Error(HrvError::TooFewIntervals { needed: 3, got: 1 }),
        };
        assert_eq!(
            serde_json::to_string(&w).unwrap(),
            r#"{"start_s":0.0,"end_s":300.0,"coverage":0.005,"partial":true,"error":"too few NN intervals: need at least 3, got 1"}"#
        );
        let rr: Vec<f64> = (0..300)
            .map(|i| 800.0 + 40.0 * (f64::from(i) * 0.7).sin())
            .collect();
        let nn = super::super::NnSeries::from_rr(&rr, &ArtefactRule::default()).unwrap();
        let r = HrvEngine::new()
            .report(&nn, &HrvOptions::default())
            .unwrap();
        let w = WindowHrv {
            start_s: 0.0,
            end_s: 300.0,
            coverage: WindowCoverage::new(240.0, 300.0),
            result: WindowResult::Hrv(r),
        };
        let text = serde_json::to_string(&w).unwrap();
        assert!(
            text.starts_with(
                r#"{"start_s":0.0,"end_s":300.0,"coverage":0.8,"partial":true,"hrv":{"n_rr":300,"#
            ),
            "{text}"
        );
    }

    #[test]
    fn covered_seconds_are_the_beats_span_inside_the_window() {
        let beats: Vec<u64> = (0..20).map(|i| 100 + i * 100).collect(); // 1..=20 s at 100 Hz
        assert_eq!(covered_s(&beats, 100.0, 0.0, 10.0), 8.0); // 1..=9 s
        assert_eq!(covered_s(&beats, 100.0, 10.0, 20.0), 9.0); // 10..=19 s
        assert_eq!(covered_s(&beats, 100.0, 20.0, 30.0), 0.0); // one beat
        assert_eq!(covered_s(&beats, 100.0, 30.0, 40.0), 0.0);
    }

    #[test]
    fn short_windows_are_refused_before_reading() {
        for w in [9.99, 0.0, -1.0, f64::NAN] {
            let err = record_hrv(
                Path::new("/nonexistent/aorta/rec"),
                0,
                w,
                &ArtefactRule::default(),
                &HrvOptions::default(),
            )
            .unwrap_err();
            assert!(matches!(err, RecordHrvError::Window { .. }), "{err}");
        }
    }

    #[test]
    fn missing_record_is_a_wfdb_error() {
        let err = record_hrv(
            Path::new("/nonexistent/aorta/rec"),
            0,
            300.0,
            &ArtefactRule::default(),
            &HrvOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, RecordHrvError::Wfdb(_)), "{err}");
    }
}
