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
//! A WFDB header's signals become frame calibration through one function,
//! [`calibration_of`].

pub mod follow;
pub mod record;
pub mod rr;

use aorta_crypto::frame::ChannelCalibration;
use aorta_signal::wfdb::{Header, SignalSpec};

use crate::DeviceError;

/// WFDB's default ADC gain (digital units per physical unit).
pub const DEFAULT_GAIN: f64 = 200.0;

/// The frame calibration of one WFDB signal.
///
/// The one fallback rule: a gain that is not a finite number above 0 is
/// replaced by WFDB's default [`DEFAULT_GAIN`] (the header parser already
/// does this for a missing or 0 gain; this covers hand-built headers). The
/// baseline, ADC zero, units and description are copied; an ADC resolution
/// that does not fit the frame's 16-bit field is refused.
pub fn channel_calibration(s: &SignalSpec) -> Result<ChannelCalibration, DeviceError> {
    let gain = if s.gain.is_finite() && s.gain > 0.0 {
        s.gain
    } else {
        DEFAULT_GAIN
    };
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
