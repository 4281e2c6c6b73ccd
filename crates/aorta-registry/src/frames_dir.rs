//! A directory of upload frames opened into one stream and written back as
//! a WFDB record (`aorta frames open`).
//!
//! Every frame goes through [`Registry::accept_frame`] (oldest sequence
//! first, by file name); the frames must come from one device with one
//! sample rate and calibration, and each must continue the samples so far
//! (its first sample's index, recovered from its timestamp, is the count so
//! far: no gap, no overlap). The record keeps the original digital values,
//! gains and baselines ([`signal_spec`]), in the narrowest of WFDB formats
//! 16, 24 and 32 that holds them, with the first sample's time as its base
//! time and date (UTC) and comment lines naming the device and frame count.
//! Frames carry no record name or header comments of the source record, so
//! the name is the caller's (`--name`) or the serial's.

use std::path::{Path, PathBuf};

use aorta_crypto::frame::ChannelCalibration;
use aorta_signal::wfdb::{Format, RecordOut, SignalSpec, WfdbError, write_record};

use crate::{AcceptError, Registry};

/// Frames of one device opened in order.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenedStream {
    /// The device serial.
    pub serial: String,
    /// Sampling rate, millihertz.
    pub sample_rate_mhz: u32,
    /// Per-channel calibration.
    pub calibration: Vec<ChannelCalibration>,
    /// Samples per channel, in order.
    pub samples: Vec<Vec<i32>>,
    /// Time of the first sample, µs since the Unix epoch.
    pub first_sample_us: i64,
    /// Frames opened.
    pub frames: usize,
    /// Of them, frames already acknowledged before.
    pub duplicates: usize,
}

/// Why a directory of frames could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenFramesError {
    /// Reading the directory or a frame failed.
    #[error("reading {}: {error}", path.display())]
    Io {
        /// File or directory.
        path: PathBuf,
        /// Error.
        error: std::io::Error,
    },
    /// The directory holds no `.aof` frame.
    #[error("no .aof frames in {}", dir.display())]
    NoFrames {
        /// The directory.
        dir: PathBuf,
    },
    /// The registry refused a frame.
    #[error("frame {}: refused ({}): {error}", path.display(), error.kind().name())]
    Refused {
        /// The frame file.
        path: PathBuf,
        /// The refusal.
        error: AcceptError,
    },
    /// A frame's serial, rate or calibration differs from the first frame's.
    #[error(
        "frame {}: refused: serial, sample rate or calibration differs from the first frame",
        path.display()
    )]
    Mismatch {
        /// The frame file.
        path: PathBuf,
    },
    /// A frame does not continue the samples so far.
    #[error(
        "frame {}: refused: its first sample is number {got} of the stream, expected {expected} (gap or overlap)",
        path.display()
    )]
    Discontinuous {
        /// The frame file.
        path: PathBuf,
        /// Index of its first sample.
        got: i64,
        /// Samples so far.
        expected: i64,
    },
    /// Writing the record failed.
    #[error(transparent)]
    Wfdb(#[from] WfdbError),
}

impl OpenFramesError {
    /// True when a frame was refused (the check failed), false when the
    /// input could not be read or the output written.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            OpenFramesError::Refused { .. }
                | OpenFramesError::Mismatch { .. }
                | OpenFramesError::Discontinuous { .. }
        )
    }
}

/// The `.aof` files of `dir`, sorted by name.
pub fn frame_files(dir: &Path) -> Result<Vec<PathBuf>, OpenFramesError> {
    let io = |error| OpenFramesError::Io {
        path: dir.to_path_buf(),
        error,
    };
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "aof"))
        .collect();
    v.sort();
    Ok(v)
}

/// Opens every frame of `dir` (see the module doc).
pub fn open_frames_dir(reg: &Registry, dir: &Path) -> Result<OpenedStream, OpenFramesError> {
    let files = frame_files(dir)?;
    let mut out: Option<OpenedStream> = None;
    let mut stream_start_us: Option<i64> = None;
    for path in files {
        let bytes = std::fs::read(&path).map_err(|error| OpenFramesError::Io {
            path: path.clone(),
            error,
        })?;
        let acc = match reg.accept_frame(&bytes) {
            Ok(a) => a,
            Err(error) => return Err(OpenFramesError::Refused { path, error }),
        };
        let f = acc.frame;
        let h = &f.header;
        let s = out.get_or_insert_with(|| OpenedStream {
            serial: h.serial.clone(),
            sample_rate_mhz: h.sample_rate_mhz,
            calibration: f.calibration.clone(),
            samples: vec![Vec::new(); usize::from(h.channels)],
            first_sample_us: h.first_sample_us,
            frames: 0,
            duplicates: 0,
        });
        if s.serial != h.serial
            || s.sample_rate_mhz != h.sample_rate_mhz
            || s.calibration != f.calibration
        {
            return Err(OpenFramesError::Mismatch { path });
        }
        // The first sample's index, recovered from its timestamp, must
        // continue the samples so far: no gap, no overlap.
        let t0 = *stream_start_us.get_or_insert(h.first_sample_us);
        let got = sample_index(h.first_sample_us.saturating_sub(t0), h.sample_rate_hz());
        let expected = s.samples.first().map_or(0, Vec::len) as i64;
        if got != expected {
            return Err(OpenFramesError::Discontinuous {
                path,
                got,
                expected,
            });
        }
        s.frames += 1;
        s.duplicates += usize::from(acc.duplicate);
        for (dst, src) in s.samples.iter_mut().zip(f.samples) {
            dst.extend(src);
        }
    }
    out.ok_or_else(|| OpenFramesError::NoFrames {
        dir: dir.to_path_buf(),
    })
}

/// Index of a sample `offset_us` after the stream's first sample. The device
/// rounds each frame's timestamp to the microsecond, so this recovers the
/// exact index for any rate below 1 MHz.
fn sample_index(offset_us: i64, fs: f64) -> i64 {
    (offset_us as f64 * fs / 1e6).round() as i64
}

/// The WFDB signal (format 16) of a channel's frame calibration: the
/// inverse of the device's header-to-calibration mapping.
pub fn signal_spec(c: &ChannelCalibration) -> SignalSpec {
    SignalSpec {
        file_name: String::new(),
        format: Format::F16,
        samples_per_frame: 1,
        skew: 0,
        byte_offset: 0,
        gain: c.gain,
        baseline: c.baseline,
        units: c.units.clone(),
        adc_resolution: u32::from(c.adc_resolution),
        adc_zero: c.adc_zero,
        initial_value: None,
        checksum: None,
        block_size: 0,
        description: c.description.clone(),
    }
}

impl OpenedStream {
    /// The record name: the serial with characters other than ASCII letters
    /// and digits replaced by `_`.
    pub fn record_name(&self) -> String {
        self.serial
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    }

    /// Writes the stream as a WFDB record named `name` (default
    /// [`OpenedStream::record_name`]) into `out_dir` (created), in the
    /// narrowest of formats 16, 24 and 32 that holds the samples; returns
    /// the header's path and the format written.
    pub fn write_wfdb(
        &self,
        out_dir: &Path,
        name: Option<&str>,
    ) -> Result<(PathBuf, Format), OpenFramesError> {
        std::fs::create_dir_all(out_dir).map_err(|error| OpenFramesError::Io {
            path: out_dir.to_path_buf(),
            error,
        })?;
        let specs: Vec<SignalSpec> = self.calibration.iter().map(signal_spec).collect();
        let name = name.map_or_else(|| self.record_name(), str::to_owned);
        let (time, date) = wfdb_base_time(self.first_sample_us);
        let comments = [format!(
            "aorta frames open: {} frames of device {}",
            self.frames, self.serial
        )];
        let format = write_record(
            out_dir,
            &RecordOut {
                name: &name,
                fs: f64::from(self.sample_rate_mhz) / 1000.0,
                signals: &specs,
                samples: &self.samples,
                base: Some((&time, &date)),
                comments: &comments,
            },
        )?;
        Ok((out_dir.join(format!("{name}.hea")), format))
    }
}

/// A time in µs since the Unix epoch as WFDB's base time and date (UTC):
/// `HH:MM:SS` (with `.mmm` when not a whole second) and `DD/MM/YYYY`.
pub fn wfdb_base_time(us: i64) -> (String, String) {
    let ms = us.div_euclid(1000);
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (h, m, s, frac) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    let time = if frac == 0 {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}.{frac:03}")
    };
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    (time, format!("{d:02}/{mo:02}/{y:04}"))
}

#[cfg(test)]
mod tests {
    use super::wfdb_base_time;

    #[test]
    fn base_time_is_utc_wfdb_text() {
        assert_eq!(wfdb_base_time(0), ("00:00:00".into(), "01/01/1970".into()));
        // 2024-02-29T23:59:58.250Z
        assert_eq!(
            wfdb_base_time(1_709_251_198_250_000),
            ("23:59:58.250".into(), "29/02/2024".into())
        );
        assert_eq!(
            wfdb_base_time(-1_000_000),
            ("23:59:59".into(), "31/12/1969".into())
        );
    }
}
