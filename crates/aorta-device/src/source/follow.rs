//! A WFDB record that is still being written, followed as a live signal:
//! the [`FrameSource`] behind `aorta device run --follow`.
//!
//! An acquisition program appends samples to the record's signal file
//! (all signals in one file, one sample per signal per frame, interleaved,
//! format 16, 212, 24, 32 or 80). The follower reads whole frames as they
//! appear and emits a device frame each time `frame_seconds` of samples are
//! there; the header's sample count (if any) is ignored, since the file is
//! growing. It ends when the file has not grown for `idle_timeout` (the
//! remaining samples go out as a last, shorter frame) or when `stop` is
//! raised. A frame's timestamp is `start_us` plus the signal time since the
//! first sample followed, so a device clock jump does not reorder frames.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aorta_crypto::frame::ChannelCalibration;
use aorta_signal::wfdb::{self as signal, Format, Header};

use crate::DeviceError;
use crate::agent::{FrameSource, SourceFrame};

fn refuse(hea: &Path, why: &str) -> DeviceError {
    DeviceError::Source(format!("{}: {why}", hea.display()))
}

/// Reads a growing record.
pub struct FollowSource {
    dat: PathBuf,
    format: Format,
    nsig: usize,
    fs: f64,
    rate_mhz: u32,
    calibration: Vec<ChannelCalibration>,
    /// Samples per channel per frame.
    per: usize,
    /// Byte offset of the next unread sample group.
    pos: u64,
    /// Samples (all channels interleaved) per readable group.
    group: usize,
    /// Bytes of one group.
    group_bytes: u64,
    /// Per channel, samples read but not emitted.
    pending: Vec<Vec<i32>>,
    /// The frame being handed out.
    out: Vec<Vec<i32>>,
    emitted: u64,
    start_us: i64,
    idle_timeout: Duration,
    poll: Duration,
    stop: Arc<AtomicBool>,
    done: bool,
}

impl FollowSource {
    /// Follows the record whose header is `header_path`, starting at the
    /// first sample in its signal file.
    pub fn new(
        header_path: &Path,
        frame_seconds: f64,
        start_us: i64,
        idle_timeout: Duration,
        stop: Arc<AtomicBool>,
    ) -> Result<Self, DeviceError> {
        let hea = aorta_signal::wfdb::RecordPath::resolve(header_path)?.header;
        let h: Header = aorta_signal::wfdb::read_header(&hea)?;
        let first = h
            .signals
            .first()
            .ok_or_else(|| refuse(&hea, "no signals"))?;
        if h.signals.iter().any(|s| {
            s.file_name != first.file_name || s.format != first.format || s.samples_per_frame != 1
        }) {
            return Err(refuse(
                &hea,
                "following needs all signals in one file, one format, one sample per frame",
            ));
        }
        let group = match first.format {
            Format::F16 | Format::F24 | Format::F32 | Format::F80 => 1,
            Format::F212 => 2,
            other => {
                return Err(refuse(
                    &hea,
                    &format!("format {} cannot be followed", other.code()),
                ));
            }
        };
        if first.byte_offset != 0 {
            return Err(refuse(
                &hea,
                "signal files with a byte offset cannot be followed",
            ));
        }
        let nsig = h.signals.len();
        // Read in units that end on a frame and a packing boundary.
        let group = if group == 2 && nsig % 2 == 1 {
            2 * nsig
        } else {
            nsig
        };
        let group_bytes = signal::bytes_needed(first.format, group as u64)
            .ok_or_else(|| refuse(&hea, "sample group size overflows"))?;
        let fs = h.sampling_frequency;
        if !(frame_seconds > 0.0 && frame_seconds <= 3600.0) {
            return Err(DeviceError::Config(
                "frame seconds must be in (0, 3600]".into(),
            ));
        }
        let rate = (fs * 1000.0).round();
        if !(1.0..=f64::from(u32::MAX)).contains(&rate) {
            return Err(refuse(
                &hea,
                &format!("sampling frequency {fs} Hz is out of range"),
            ));
        }
        let per = ((frame_seconds * fs).round() as usize).max(1);
        let calibration = super::calibration_of(&h)?;
        let dat = hea
            .parent()
            .unwrap_or(Path::new("."))
            .join(&first.file_name);
        Ok(FollowSource {
            dat,
            format: first.format,
            nsig,
            fs,
            rate_mhz: rate as u32,
            calibration,
            per,
            pos: 0,
            group,
            group_bytes,
            pending: vec![Vec::new(); nsig],
            out: vec![Vec::new(); nsig],
            emitted: 0,
            start_us,
            idle_timeout,
            poll: Duration::from_millis(50),
            stop,
            done: false,
        })
    }

    /// Reads every whole group now in the file; returns whether any was read.
    fn read_available(&mut self) -> Result<bool, DeviceError> {
        let io = |e: std::io::Error| DeviceError::Source(format!("{}: {e}", self.dat.display()));
        let mut f = match std::fs::File::open(&self.dat) {
            Ok(f) => f,
            // Not created yet by the acquisition program.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io(e)),
        };
        let len = f.metadata().map_err(io)?.len();
        if len < self.pos {
            return Err(DeviceError::Source(format!(
                "{}: the file shrank from {} to {len} bytes while followed",
                self.dat.display(),
                self.pos
            )));
        }
        let groups = (len - self.pos) / self.group_bytes;
        if groups == 0 {
            return Ok(false);
        }
        // At most 16 MiB at a time.
        let groups = groups.min((16 << 20) / self.group_bytes.max(1)).max(1);
        let bytes = groups * self.group_bytes;
        f.seek(SeekFrom::Start(self.pos)).map_err(io)?;
        let mut buf = vec![0u8; usize::try_from(bytes).unwrap_or(usize::MAX)];
        f.read_exact(&mut buf).map_err(io)?;
        let n = usize::try_from(groups).unwrap_or(usize::MAX) * self.group;
        let samples = signal::decode(self.format, &buf, n)
            .map_err(|e| DeviceError::Source(format!("{}: {e}", self.dat.display())))?;
        for frame in samples.chunks_exact(self.nsig) {
            for (ch, v) in self.pending.iter_mut().zip(frame) {
                ch.push(*v);
            }
        }
        self.pos += bytes;
        Ok(true)
    }

    fn take(&mut self, n: usize) -> Result<Option<SourceFrame<'_>>, DeviceError> {
        for (out, pending) in self.out.iter_mut().zip(self.pending.iter_mut()) {
            out.clear();
            out.extend(pending.drain(..n.min(pending.len())));
        }
        let offset_us = (self.emitted as f64 * 1e6 / self.fs).round() as i64;
        self.emitted += n as u64;
        let first_sample_us = self
            .start_us
            .checked_add(offset_us)
            .ok_or_else(|| DeviceError::Source("timestamp overflow".into()))?;
        Ok(Some(SourceFrame {
            first_sample_us,
            channels: self.out.iter().map(Vec::as_slice).collect(),
        }))
    }
}

impl FrameSource for FollowSource {
    fn sample_rate_mhz(&self) -> u32 {
        self.rate_mhz
    }

    fn calibration(&self) -> &[ChannelCalibration] {
        &self.calibration
    }

    fn next_frame(&mut self) -> Result<Option<SourceFrame<'_>>, DeviceError> {
        if self.done {
            return Ok(None);
        }
        let mut last_growth = Instant::now();
        loop {
            let have = self.pending.first().map_or(0, Vec::len);
            if have >= self.per {
                return self.take(self.per);
            }
            if self.read_available()? {
                last_growth = Instant::now();
                continue;
            }
            if self.stop.load(Ordering::Relaxed) || last_growth.elapsed() >= self.idle_timeout {
                self.done = true;
                return if have > 0 { self.take(have) } else { Ok(None) };
            }
            std::thread::sleep(self.poll);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use aorta_signal::wfdb::{SignalSpec, write_record_16};

    use super::*;

    fn spec(d: &str) -> SignalSpec {
        // The registry's inverse mapping: format 16, the calibration as given.
        aorta_registry::frames_dir::signal_spec(&ChannelCalibration::new(200.0, 0, 0, 12, "mV", d))
    }

    #[test]
    fn follows_a_file_that_grows_and_ends_on_idle() {
        let t = tempfile::tempdir().unwrap();
        let a: Vec<i32> = (0..1000).collect();
        let b: Vec<i32> = (0..1000).map(|v| -v).collect();
        // Write the whole record, then keep only the first 300 frames on disk.
        write_record_16(
            t.path(),
            "live",
            100.0,
            &[spec("I"), spec("II")],
            &[a.clone(), b.clone()],
        )
        .unwrap();
        let dat = t.path().join("live.dat");
        let full = std::fs::read(&dat).unwrap();
        std::fs::write(&dat, &full[..300 * 4]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut f = FollowSource::new(
            &t.path().join("live"),
            1.0,
            1_000,
            Duration::from_millis(400),
            stop,
        )
        .unwrap();
        let writer = {
            let dat = dat.clone();
            let rest = full[300 * 4..].to_vec();
            std::thread::spawn(move || {
                // The acquisition program appends in odd-sized pieces,
                // splitting frames.
                for piece in rest.chunks(333) {
                    std::thread::sleep(Duration::from_millis(20));
                    let mut o = std::fs::OpenOptions::new().append(true).open(&dat).unwrap();
                    o.write_all(piece).unwrap();
                }
            })
        };
        let mut got: Vec<(i64, Vec<i32>, Vec<i32>)> = Vec::new();
        while let Some(fr) = f.next_frame().unwrap() {
            got.push((
                fr.first_sample_us,
                fr.channels[0].to_vec(),
                fr.channels[1].to_vec(),
            ));
        }
        writer.join().unwrap();
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|g| g.1.len() == 100));
        assert_eq!(got[3].0, 1_000 + 3_000_000);
        let all_a: Vec<i32> = got.iter().flat_map(|g| g.1.clone()).collect();
        let all_b: Vec<i32> = got.iter().flat_map(|g| g.2.clone()).collect();
        assert_eq!((all_a, all_b), (a, b));
    }

    #[test]
    fn a_partial_tail_is_the_last_frame_and_stop_ends_it() {
        let t = tempfile::tempdir().unwrap();
        let a: Vec<i32> = (0..250).collect();
        write_record_16(t.path(), "r", 100.0, &[spec("I")], std::slice::from_ref(&a)).unwrap();
        // A torn sample (odd byte count) is not read.
        let dat = t.path().join("r.dat");
        let mut o = std::fs::OpenOptions::new().append(true).open(&dat).unwrap();
        o.write_all(&[7]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut f = FollowSource::new(
            &t.path().join("r.hea"),
            1.0,
            0,
            Duration::from_secs(60),
            stop.clone(),
        )
        .unwrap();
        assert_eq!(f.next_frame().unwrap().unwrap().channels[0].len(), 100);
        assert_eq!(f.next_frame().unwrap().unwrap().channels[0].len(), 100);
        stop.store(true, Ordering::Relaxed);
        let last = f.next_frame().unwrap().unwrap();
        assert_eq!(last.channels[0], &a[200..]);
        assert!(f.next_frame().unwrap().is_none());
    }

    #[test]
    fn records_that_cannot_be_followed_are_refused() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join("x.hea"),
            "x 2 360\nx.dat 16 200 11 0\ny.dat 16 200 11 0\n",
        )
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let e = FollowSource::new(&t.path().join("x"), 1.0, 0, Duration::ZERO, stop.clone());
        assert!(e.is_err());
        std::fs::write(t.path().join("z.hea"), "z 1 360\nz.dat 310 200 11 0\n").unwrap();
        assert!(
            FollowSource::new(&t.path().join("z"), 1.0, 0, Duration::ZERO, stop.clone()).is_err()
        );
        std::fs::write(t.path().join("w.hea"), "w 1 360\nw.dat 16 200 11 0\n").unwrap();
        assert!(FollowSource::new(&t.path().join("w"), 0.0, 0, Duration::ZERO, stop).is_err());
        // The shrinking file is an error, not a panic.
        std::fs::write(t.path().join("w.dat"), [0u8; 40]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let mut f =
            FollowSource::new(&t.path().join("w"), 0.01, 0, Duration::from_secs(5), stop).unwrap();
        assert!(f.next_frame().unwrap().is_some());
        std::fs::write(t.path().join("w.dat"), [0u8; 2]).unwrap();
        let mut end = f.next_frame().map(|o| o.is_some());
        while let Ok(true) = end {
            end = f.next_frame().map(|o| o.is_some());
        }
        assert!(end.unwrap_err().to_string().contains("shrank"));
    }
}
