//! Frame sources: where a device's samples come from.
//!
//! Each implements [`FrameSource`](crate::agent::FrameSource):
//!
//! - [`record::RecordReplay`]: a WFDB record replayed as a live signal
//!   (`aorta device seal`, `aorta device run --record`, `aorta demo`);
//! - [`follow::FollowSource`]: a WFDB record that is still being written
//!   (`aorta device run --follow`);
//! - [`rr::RrReplay`]: RR intervals from a text file
//!   ([`aorta_signal::hrv::parse_rr_lines`]) or a record's beat annotations
//!   (`aorta device run --rr`, `--rr-from-annotations`).
//!
//! [`Input`] names one of them as `aorta device run` does and opens it.
//!
//! A WFDB header's signals become frame calibration through one function,
//! [`calibration_of`].

pub mod follow;
pub mod record;
pub mod rr;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use aorta_crypto::frame::ChannelCalibration;
use aorta_signal::wfdb::{Header, ReadOptions, Record, SignalSpec};

use crate::DeviceError;
use crate::agent::FrameSource;
use record::{RecordReplay, ReplayOptions};

/// What a device streams.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// ECG samples of a WFDB record ([`RecordReplay`]), read with these
    /// verification options.
    Record(PathBuf, ReadOptions),
    /// ECG samples of a WFDB record still being written
    /// ([`follow::FollowSource`]); `idle` without growth ends it.
    Follow {
        /// The record.
        record: PathBuf,
        /// How long without growth ends the stream.
        idle: Duration,
    },
    /// RR intervals from a text file ([`rr::read_rr_file`]).
    RrFile(PathBuf),
    /// Normal-to-normal RR intervals of a record's beat annotations
    /// ([`rr::from_annotations`]).
    RrAnnotations(PathBuf),
}

/// An opened [`Input`].
pub struct Opened {
    /// The frames.
    pub source: Box<dyn FrameSource>,
    /// What it streams, for a progress line (`12.0 s of rec/100`, …).
    pub what: String,
}

impl Input {
    /// Opens the source: frames of `opts.frame_seconds` from event time
    /// `opts.start_us` (a record replay also honours the offset and
    /// duration; a followed record ends early when `stop` is raised).
    pub fn open(&self, opts: &ReplayOptions, stop: Arc<AtomicBool>) -> Result<Opened, DeviceError> {
        let (source, what): (Box<dyn FrameSource>, String) = match self {
            Input::Record(path, read) => {
                let src = RecordReplay::new(Arc::new(Record::read_with(path, *read)?), opts)?;
                let seconds =
                    src.total_samples() as f64 * 1000.0 / f64::from(src.sample_rate_mhz());
                (
                    Box::new(src),
                    format!("{seconds:.1} s of {}", path.display()),
                )
            }
            Input::Follow { record, idle } => {
                let src = follow::FollowSource::new(
                    record,
                    opts.frame_seconds,
                    opts.start_us,
                    *idle,
                    stop,
                )?;
                let what = format!(
                    "{} as it grows (ends after {:.1} s without growth)",
                    record.display(),
                    idle.as_secs_f64()
                );
                (Box::new(src), what)
            }
            Input::RrFile(path) | Input::RrAnnotations(path) => {
                let (segs, stats, kind) = match self {
                    Input::RrFile(_) => {
                        let (s, st) = rr::read_rr_file(path)?;
                        (s, st, "RR intervals")
                    }
                    _ => {
                        let (s, st) = rr::from_annotations(path)?;
                        (s, st, "N→N RR intervals")
                    }
                };
                let src = rr::RrReplay::new(&segs, opts.frame_seconds, opts.start_us, "RR")?;
                let what = format!(
                    "{} {kind} ({:.1} s, {} segments, {} left out) of {} as RR frames",
                    src.total_intervals(),
                    src.seconds(),
                    segs.len(),
                    stats.skipped,
                    path.display()
                );
                (Box::new(src), what)
            }
        };
        Ok(Opened { source, what })
    }
}

/// WFDB's default ADC gain (the one definition, with the rule
/// [`aorta_crypto::frame::usable_gain`]).
pub use aorta_crypto::frame::DEFAULT_GAIN;

/// The frame calibration of one WFDB signal.
///
/// The one fallback rule ([`aorta_crypto::frame::usable_gain`], which the
/// worker applies too): a gain that is not a finite number above 0 is
/// replaced by WFDB's default [`DEFAULT_GAIN`] (the header parser already
/// does this for a missing or 0 gain; this covers hand-built headers). The
/// baseline, ADC zero, units and description are copied; an ADC resolution
/// that does not fit the frame's 16-bit field is refused.
pub fn channel_calibration(s: &SignalSpec) -> Result<ChannelCalibration, DeviceError> {
    let gain = aorta_crypto::frame::usable_gain(s.gain);
    let adc_resolution = u16::try_from(s.adc_resolution).map_err(|_| {
        DeviceError::Source(format!(
            "signal {:?}: ADC resolution {} out of range",
            s.description, s.adc_resolution
        ))
    })?;
    Ok(ChannelCalibration::new(
        gain,
        s.baseline,
        s.adc_zero,
        adc_resolution,
        &s.units,
        &s.description,
    ))
}

/// The frame calibration of each signal of a WFDB header
/// ([`channel_calibration`] per signal).
pub fn calibration_of(h: &Header) -> Result<Vec<ChannelCalibration>, DeviceError> {
    h.signals.iter().map(channel_calibration).collect()
}

#[cfg(test)]
mod tests {
    use aorta_signal::wfdb::Format;

    use super::*;

    fn spec(gain: f64, adc_resolution: u32) -> SignalSpec {
        SignalSpec {
            file_name: "r.dat".into(),
            format: Format::F16,
            samples_per_frame: 1,
            skew: 0,
            byte_offset: 0,
            gain,
            baseline: -3,
            units: "mV".into(),
            adc_resolution,
            adc_zero: 5,
            initial_value: None,
            checksum: None,
            block_size: 0,
            description: "V5".into(),
        }
    }

    #[test]
    fn header_fields_are_copied_and_bad_gains_fall_back() {
        let c = channel_calibration(&spec(100.0, 11)).unwrap();
        assert_eq!(c, ChannelCalibration::new(100.0, -3, 5, 11, "mV", "V5"));
        for g in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(
                channel_calibration(&spec(g, 11)).unwrap().gain,
                DEFAULT_GAIN
            );
        }
        assert!(channel_calibration(&spec(200.0, 70_000)).is_err());
    }
}
