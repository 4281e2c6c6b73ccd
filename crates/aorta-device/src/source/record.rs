//! A WFDB record replayed as a device's live signal: the [`FrameSource`]
//! behind `aorta device seal`, `aorta device run` and `aorta demo`.
//!
//! The replay starts `offset_seconds` into the record and lasts
//! `duration_seconds` of signal (default: to the end of the record); a
//! duration longer than what is left wraps around to the record's start, so
//! a 30-minute record can feed a longer stream. Frames hold
//! `frame_seconds` of samples (the last one, and the one at a wrap, may be
//! shorter); a frame's timestamp is `start_us` plus the signal time since
//! the offset. Many replays can share one record (`Arc`), e.g. one per
//! simulated device in `aorta demo`.

use std::sync::Arc;

use aorta_crypto::frame::ChannelCalibration;
use aorta_signal::wfdb::Record;

use crate::DeviceError;
use crate::agent::{FrameSource, SourceFrame};
use crate::queue::OfflineQueue;
use crate::rotation::Sealer;
use crate::se::SecureElement;

fn config(msg: String) -> DeviceError {
    DeviceError::Config(msg)
}

fn source(msg: String) -> DeviceError {
    DeviceError::Source(msg)
}

/// Which part of the record to replay, and how to cut it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayOptions {
    /// Seconds of samples per frame, in (0, 3600].
    pub frame_seconds: f64,
    /// Where in the record to start, in seconds.
    pub offset_seconds: f64,
    /// Seconds of signal to replay (`None`: to the end of the record).
    pub duration_seconds: Option<f64>,
    /// Timestamp of the first replayed sample, µs since the Unix epoch.
    pub start_us: i64,
}

/// A record replayed frame by frame.
#[derive(Debug)]
pub struct RecordReplay {
    record: Arc<Record>,
    calibration: Vec<ChannelCalibration>,
    rate_mhz: u32,
    fs: f64,
    per: usize,
    len: usize,
    first: usize,
    total: u64,
    pos: u64,
    start_us: i64,
}

impl RecordReplay {
    /// Prepares a replay; checks the record (one sampling rate, sane
    /// calibration) and the options.
    pub fn new(record: Arc<Record>, opts: &ReplayOptions) -> Result<Self, DeviceError> {
        if !(opts.frame_seconds > 0.0 && opts.frame_seconds <= 3600.0) {
            return Err(config("frame seconds must be in (0, 3600]".into()));
        }
        if !(opts.offset_seconds.is_finite() && opts.offset_seconds >= 0.0) {
            return Err(config("offset must be a number of seconds ≥ 0".into()));
        }
        if let Some(d) = opts.duration_seconds
            && !(d.is_finite() && d > 0.0)
        {
            return Err(config("duration must be a number of seconds > 0".into()));
        }
        let h = &record.header;
        let fs = h.sampling_frequency;
        let rate_mhz = (fs * 1000.0).round();
        if !(1.0..=f64::from(u32::MAX)).contains(&rate_mhz) {
            return Err(source(format!(
                "sampling frequency {fs} Hz is out of range"
            )));
        }
        let len = record.samples.first().map_or(0, Vec::len);
        if record.samples.iter().any(|s| s.len() != len) {
            return Err(source(
                "multi-frequency records are not supported (signals differ in length)".into(),
            ));
        }
        if len == 0 {
            return Err(source("the record has no samples".into()));
        }
        let calibration = super::calibration_of(h)?;
        let first = (opts.offset_seconds * fs).round();
        if first >= len as f64 {
            return Err(config(format!(
                "offset {} s is past the end of the record ({:.1} s)",
                opts.offset_seconds,
                len as f64 / fs
            )));
        }
        let first = first as usize;
        let total = match opts.duration_seconds {
            None => (len - first) as u64,
            Some(d) => {
                let t = (d * fs).round();
                if t > 1e15 {
                    return Err(config(format!("duration {d} s is too long")));
                }
                (t as u64).max(1)
            }
        };
        Ok(RecordReplay {
            calibration,
            rate_mhz: rate_mhz as u32,
            fs,
            per: (fs * opts.frame_seconds).round().max(1.0) as usize,
            len,
            first,
            total,
            pos: 0,
            start_us: opts.start_us,
            record,
        })
    }

    /// Samples per channel the whole replay yields.
    pub fn total_samples(&self) -> u64 {
        self.total
    }

    /// Channels per frame.
    pub fn channels(&self) -> usize {
        self.record.samples.len()
    }
}

impl FrameSource for RecordReplay {
    fn sample_rate_mhz(&self) -> u32 {
        self.rate_mhz
    }

    fn calibration(&self) -> &[ChannelCalibration] {
        &self.calibration
    }

    fn next_frame(&mut self) -> Result<Option<SourceFrame<'_>>, DeviceError> {
        if self.pos >= self.total {
            return Ok(None);
        }
        // `len > 0` (checked in `new`); positions are below 1e15.
        let idx = ((self.first as u64 + self.pos) % self.len as u64) as usize;
        let n = self
            .per
            .min(self.len - idx)
            .min(usize::try_from(self.total - self.pos).unwrap_or(usize::MAX));
        let offset_us = (self.pos as f64 * 1e6 / self.fs).round() as i64;
        let first_sample_us = self
            .start_us
            .checked_add(offset_us)
            .ok_or_else(|| DeviceError::Source("timestamp overflow".into()))?;
        self.pos += n as u64;
        let channels = self
            .record
            .samples
            .iter()
            .map(|s| s.get(idx..idx + n).unwrap_or_default())
            .collect();
        Ok(Some(SourceFrame {
            first_sample_us,
            channels,
        }))
    }
}

/// What [`seal_record`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SealSummary {
    /// Frames sealed.
    pub frames: u64,
    /// Their sealed size in bytes.
    pub bytes: u64,
    /// Sequence of the first frame (`None`: nothing sealed).
    pub first_sequence: Option<u64>,
    /// The sealer's next sequence after the last frame.
    pub next_sequence: u64,
    /// Samples per channel sealed.
    pub samples: u64,
    /// Channels per frame.
    pub channels: usize,
}

impl SealSummary {
    /// Sealed bytes as a percentage of the same samples stored as 16-bit
    /// integers.
    pub fn percent_of_16_bit(&self) -> f64 {
        let raw = self.samples * self.channels as u64 * 2;
        100.0 * self.bytes as f64 / raw.max(1) as f64
    }
}

/// `aorta device seal`: the agent's seal-and-queue step
/// ([`crate::agent::seal_and_queue`]) over a whole replay, without an uplink;
/// the frames land in `queue`.
pub fn seal_record<S: SecureElement>(
    src: &mut RecordReplay,
    sealer: &mut Sealer<S>,
    queue: &mut OfflineQueue,
) -> Result<SealSummary, DeviceError> {
    let (rate, cal) = (src.sample_rate_mhz(), src.calibration().to_vec());
    let mut sum = SealSummary {
        frames: 0,
        bytes: 0,
        first_sequence: None,
        next_sequence: sealer.next_sequence(),
        samples: src.total_samples(),
        channels: src.channels(),
    };
    while let Some(frame) = src.next_frame()? {
        let (f, _) = crate::agent::seal_and_queue(sealer, queue, rate, &cal, &frame)?;
        sum.first_sequence.get_or_insert(f.sequence);
        sum.frames += 1;
        sum.bytes += f.bytes.len() as u64;
    }
    sum.next_sequence = sealer.next_sequence();
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use aorta_signal::wfdb::{Format, Header, SignalSpec};

    use super::*;

    fn record(len: usize) -> Arc<Record> {
        let spec = SignalSpec {
            file_name: "r.dat".into(),
            format: Format::F16,
            samples_per_frame: 1,
            skew: 0,
            byte_offset: 0,
            gain: 200.0,
            baseline: 3,
            units: "mV".into(),
            adc_resolution: 11,
            adc_zero: 1,
            initial_value: None,
            checksum: None,
            block_size: 0,
            description: "MLII".into(),
        };
        let header = Header {
            record_name: "r".into(),
            sampling_frequency: 10.0,
            counter_frequency: None,
            samples_per_signal: Some(len as u64),
            base_time: None,
            base_date: None,
            signals: vec![spec.clone(), spec],
            comments: Vec::new(),
        };
        let a: Vec<i32> = (0..len as i32).collect();
        let b: Vec<i32> = a.iter().map(|x| -x).collect();
        Arc::new(Record {
            header,
            samples: vec![a, b],
        })
    }

    fn frames(r: &mut RecordReplay) -> Vec<(i64, Vec<i32>, Vec<i32>)> {
        let mut out = Vec::new();
        while let Some(f) = r.next_frame().unwrap() {
            out.push((
                f.first_sample_us,
                f.channels[0].to_vec(),
                f.channels[1].to_vec(),
            ));
        }
        out
    }

    fn opts(frame: f64, offset: f64, duration: Option<f64>) -> ReplayOptions {
        ReplayOptions {
            frame_seconds: frame,
            offset_seconds: offset,
            duration_seconds: duration,
            start_us: 1_000,
        }
    }

    #[test]
    fn whole_record_in_frames() {
        let mut r = RecordReplay::new(record(25), &opts(1.0, 0.0, None)).unwrap();
        assert_eq!(
            (r.total_samples(), r.channels(), r.sample_rate_mhz()),
            (25, 2, 10_000)
        );
        assert_eq!(r.calibration()[0].baseline, 3);
        let f = frames(&mut r);
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].0, 1_000);
        assert_eq!(f[1].0, 1_001_000);
        assert_eq!(
            f[2],
            (2_001_000, (20..25).collect(), (-24..=-20).rev().collect())
        );
    }

    #[test]
    fn offset_and_duration_wrap_around() {
        // Start at 2.0 s (sample 20) of a 2.5 s record, replay 1.2 s: 5
        // samples to the end, then 7 from the start; timestamps continue.
        let mut r = RecordReplay::new(record(25), &opts(0.4, 2.0, Some(1.2))).unwrap();
        let f = frames(&mut r);
        let starts: Vec<i64> = f.iter().map(|x| x.0).collect();
        assert_eq!(starts, vec![1_000, 401_000, 501_000, 901_000]);
        let all: Vec<i32> = f.iter().flat_map(|x| x.1.clone()).collect();
        assert_eq!(all, vec![20, 21, 22, 23, 24, 0, 1, 2, 3, 4, 5, 6]);
        assert!(r.next_frame().unwrap().is_none());
    }

    #[test]
    fn a_replay_can_move_to_a_device_thread() {
        fn send<T: Send>() {}
        send::<RecordReplay>();
        send::<crate::rotation::Sealer<crate::se::FileSecureElement>>();
    }

    #[test]
    fn bad_options_are_refused() {
        for o in [
            opts(0.0, 0.0, None),
            opts(f64::NAN, 0.0, None),
            opts(1.0, -1.0, None),
            opts(1.0, 2.5, None),
            opts(1.0, 0.0, Some(0.0)),
            opts(1.0, 0.0, Some(f64::INFINITY)),
        ] {
            assert!(RecordReplay::new(record(25), &o).is_err(), "{o:?}");
        }
        assert!(RecordReplay::new(record(0), &opts(1.0, 0.0, None)).is_err());
    }
}
