//! RR-interval sources for `aorta device run --rr FILE` and
//! `--rr-from-annotations RECORD`: what a chest strap or PPG wearable sends.
//!
//! Both become *segments* of consecutive intervals (µs); a segment is cut
//! into frames of about `--frame-seconds` of beats, each frame starting at the
//! beat that ends the previous one. Where a segment ends (an interval outside
//! 200 ms..5 s, a time jump, a non-normal beat), the next frame starts at its
//! own first beat: the worker sees a gap and counts no interval across it.

use std::path::Path;

use aorta_crypto::frame::{self, ChannelCalibration, MAX_RR_US, MIN_RR_US};
use aorta_signal::hrv::parse_rr_lines;
use aorta_signal::hrv::rrtext::GAP_TOLERANCE_MS;

use crate::DeviceError;
use crate::agent::{FrameSource, SourceFrame};

/// Consecutive RR intervals: the time of the first beat (µs, relative to the
/// source's start) and the intervals (µs).
pub type Segment = (i64, Vec<i32>);

/// What a source was built from, for the user.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RrStats {
    /// Intervals kept.
    pub kept: usize,
    /// Intervals left out (out of range, or around a non-normal beat).
    pub skipped: usize,
}

fn push(segs: &mut Vec<Segment>, cur: &mut Option<Segment>) {
    if let Some(s) = cur.take() {
        segs.push(s);
    }
}

fn in_range(rr_us: i64) -> Option<i32> {
    if (i64::from(MIN_RR_US)..=i64::from(MAX_RR_US)).contains(&rr_us) {
        i32::try_from(rr_us).ok()
    } else {
        None
    }
}

/// Segments of RR text in aorta's one RR text format
/// ([`aorta_signal::hrv::rrtext`]: `RR_MS` or `TIME_S,RR_MS` lines). With
/// times, a beat whose time differs by more than [`GAP_TOLERANCE_MS`] (50 ms)
/// from the previous beat plus its interval starts a new segment (the rule
/// `aorta hrv --rr` uses too); without times, intervals are
/// consecutive from time 0. Intervals outside 200 ms..5 s end the segment
/// and are left out.
pub fn rr_segments(text: impl AsRef<[u8]>) -> Result<(Vec<Segment>, RrStats), DeviceError> {
    let lines =
        parse_rr_lines(text.as_ref()).map_err(|error| DeviceError::RrText { path: None, error })?;
    let mut segs = Vec::new();
    let mut cur: Option<Segment> = None;
    let mut stats = RrStats::default();
    let mut clock: i64 = 0; // µs, the beat ending the previous interval
    for l in lines {
        // Values are finite and within ±1e9 (the line reader's rule), so
        // these µs fit an i64 with room to spare.
        let rr_us = (l.rr_ms * 1000.0).round() as i64;
        let end_us = match l.time_s {
            Some(t) => (t * 1e6).round() as i64,
            None => clock.saturating_add(rr_us.max(0)),
        };
        let start_us = end_us - rr_us;
        let contiguous = cur
            .as_ref()
            .is_some_and(|_| (start_us - clock).abs() as f64 <= GAP_TOLERANCE_MS * 1000.0);
        let kept = in_range(rr_us);
        match kept {
            None => {
                stats.skipped += 1;
                push(&mut segs, &mut cur);
            }
            Some(rr) => {
                stats.kept += 1;
                match cur.as_mut() {
                    Some((_, v)) if contiguous => v.push(rr),
                    _ => {
                        push(&mut segs, &mut cur);
                        // Without times, or with a jump: the segment starts
                        // at this interval's first beat.
                        cur = Some((start_us, vec![rr]));
                    }
                }
            }
        }
        // Time follows the intervals actually sent, so frames stay contiguous.
        clock = match (&cur, kept) {
            (Some((t0, v)), Some(_)) => t0 + v.iter().map(|&x| i64::from(x)).sum::<i64>(),
            _ => end_us,
        };
    }
    push(&mut segs, &mut cur);
    if stats.kept == 0 {
        return Err(DeviceError::Source(
            "no RR interval in range 200 ms..5 s".into(),
        ));
    }
    Ok((segs, stats))
}

/// Reads [`rr_segments`] from a file.
pub fn read_rr_file(path: &Path) -> Result<(Vec<Segment>, RrStats), DeviceError> {
    let text = std::fs::read(path).map_err(|error| DeviceError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    rr_segments(text).map_err(|e| match e {
        DeviceError::RrText { path: None, error } => DeviceError::RrText {
            path: Some(path.to_path_buf()),
            error,
        },
        DeviceError::Source(why) => {
            DeviceError::Source(format!("RR file {}: {why}", path.display()))
        }
        other => other,
    })
}

/// RR segments from a WFDB record's beat annotations (`RECORD.atr`):
/// normal-to-normal intervals only (both beats `N`), as HRV wants; any other
/// beat, or an interval outside 200 ms..5 s, ends a segment.
pub fn from_annotations(record: &Path) -> Result<(Vec<Segment>, RrStats), DeviceError> {
    let at = aorta_signal::wfdb::RecordPath::resolve(record)?;
    let base = at.base();
    let header = aorta_signal::wfdb::read_header(&at.header)?;
    let fs = header.sampling_frequency;
    if !(fs.is_finite() && fs > 0.0) {
        return Err(DeviceError::Source(format!(
            "{}: no sampling frequency",
            base.display()
        )));
    }
    let anns = aorta_signal::wfdb::read_annotations(at.annotations("atr"))?;
    let beats: Vec<(i64, bool)> = anns
        .iter()
        .filter(|a| a.is_beat())
        .map(|a| {
            (
                (a.sample as f64 * 1e6 / fs).round() as i64,
                a.symbol() == "N",
            )
        })
        .collect();
    let mut segs = Vec::new();
    let mut cur: Option<Segment> = None;
    let mut stats = RrStats::default();
    for w in beats.windows(2) {
        let [(a, an), (b, bn)] = w else { continue };
        let Some(rr) = in_range(b - a).filter(|_| *an && *bn) else {
            stats.skipped += 1;
            push(&mut segs, &mut cur);
            continue;
        };
        stats.kept += 1;
        match cur.as_mut() {
            Some((_, v)) => v.push(rr),
            None => cur = Some((*a, vec![rr])),
        }
    }
    push(&mut segs, &mut cur);
    if stats.kept == 0 {
        return Err(DeviceError::Source(format!(
            "{}: no normal-to-normal interval",
            base.display()
        )));
    }
    Ok((segs, stats))
}

/// Replays RR segments as RR frames of about `frame_seconds` of beats each.
pub struct RrReplay {
    frames: Vec<Segment>,
    next: usize,
    cal: Vec<ChannelCalibration>,
}

impl RrReplay {
    /// Frames from `segs`, shifted by `start_us`.
    pub fn new(
        segs: &[Segment],
        frame_seconds: f64,
        start_us: i64,
        description: &str,
    ) -> Result<Self, DeviceError> {
        if !(frame_seconds.is_finite() && frame_seconds > 0.0 && frame_seconds <= 3600.0) {
            return Err(DeviceError::Config(
                "--frame-seconds must be in (0, 3600]".into(),
            ));
        }
        let per = (frame_seconds * 1e6) as i64;
        let mut frames = Vec::new();
        for (t0, rr) in segs {
            let mut t = start_us
                .checked_add(*t0)
                .ok_or_else(|| DeviceError::Config("time out of range".into()))?;
            let mut cur = Vec::new();
            let mut span = 0i64;
            for &r in rr {
                cur.push(r);
                span += i64::from(r);
                if span >= per || cur.len() >= frame::MAX_RR_PER_FRAME as usize {
                    frames.push((t, std::mem::take(&mut cur)));
                    t += span;
                    span = 0;
                }
            }
            if !cur.is_empty() {
                frames.push((t, cur));
            }
        }
        Ok(RrReplay {
            frames,
            next: 0,
            cal: vec![ChannelCalibration::rr(description)],
        })
    }

    /// Intervals in all frames.
    pub fn total_intervals(&self) -> usize {
        self.frames.iter().map(|f| f.1.len()).sum()
    }

    /// Seconds of beats covered (first to last beat, gaps included).
    pub fn seconds(&self) -> f64 {
        match (self.frames.first(), self.frames.last()) {
            (Some(a), Some(b)) => {
                (b.0 + b.1.iter().map(|&x| i64::from(x)).sum::<i64>() - a.0) as f64 / 1e6
            }
            _ => 0.0,
        }
    }
}

impl FrameSource for RrReplay {
    fn sample_rate_mhz(&self) -> u32 {
        frame::RR_SAMPLE_RATE_MHZ
    }
    fn calibration(&self) -> &[ChannelCalibration] {
        &self.cal
    }
    fn is_rr(&self) -> bool {
        true
    }
    fn next_frame(&mut self) -> Result<Option<SourceFrame<'_>>, DeviceError> {
        let i = self.next;
        self.next += 1;
        Ok(self.frames.get(i).map(|(t, rr)| SourceFrame {
            first_sample_us: *t,
            channels: vec![rr.as_slice()],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_intervals_are_one_segment_from_zero() {
        let (s, st) = rr_segments("rr_ms\n800\n810.5\n\n# note\n790\n").unwrap();
        assert_eq!(s, vec![(0, vec![800_000, 810_500, 790_000])]);
        assert_eq!(st.kept, 3);
    }

    #[test]
    fn out_of_range_and_time_jumps_cut_segments() {
        let (s, st) = rr_segments("800\n100\n800\n6000\n800\n").unwrap();
        assert_eq!(st.skipped, 2);
        assert_eq!(
            s,
            vec![
                (0, vec![800_000]),
                (900_000, vec![800_000]),
                (7_700_000, vec![800_000])
            ]
        );
        let (s, _) = rr_segments("time_s,rr_ms\n1.0,800\n1.8,800\n10.0,800\n10.8,800\n").unwrap();
        assert_eq!(
            s,
            vec![
                (200_000, vec![800_000, 800_000]),
                (9_200_000, vec![800_000, 800_000])
            ]
        );
    }

    #[test]
    fn hostile_text_is_an_error_not_a_panic() {
        for bad in [
            "",
            "abc\nxyz\n",
            "800\nNaN\n",
            "800\ninf\n",
            "1,800\n800\n",
            "1,2,3\n",
            "1e300\n",
            "100\n",
        ] {
            assert!(rr_segments(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn frames_are_contiguous_within_a_segment() {
        let segs = vec![(0, vec![1_000_000; 25]), (40_000_000, vec![500_000; 4])];
        let mut r = RrReplay::new(&segs, 10.0, 5, "x").unwrap();
        let mut got = Vec::new();
        while let Some(f) = r.next_frame().unwrap() {
            got.push((f.first_sample_us, f.channels[0].len()));
        }
        assert_eq!(
            got,
            vec![(5, 10), (10_000_005, 10), (20_000_005, 5), (40_000_005, 4)]
        );
    }

    #[test]
    fn mitdb_100_annotations_give_normal_to_normal_segments() {
        let db = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/mitdb");
        let rec = Path::new(db).join("100");
        if !Path::new(db).join("100.atr").is_file() {
            eprintln!("SKIPPED: {db} not found (the shared MIT-BIH data is absent)");
            return;
        }
        let (segs, st) = from_annotations(&rec).unwrap();
        // Record 100: 2,273 beats, 33 A and 1 V among them.
        assert!(
            st.kept > 2_100 && st.skipped > 30 && st.skipped < 100,
            "{st:?}"
        );
        assert!(segs.len() > 30);
        assert!(segs.windows(2).all(|w| w[0].0 < w[1].0));
        for (_, rr) in &segs {
            assert!(frame::check_rr(rr).is_ok());
        }
        let r = RrReplay::new(&segs, 10.0, 0, "RR").unwrap();
        assert_eq!(r.total_intervals(), st.kept);
        assert!((r.seconds() - 1805.0).abs() < 10.0, "{}", r.seconds());
    }
}
