//! What a WFDB record holds: its header, sample counts and (optionally) how
//! many annotations and beats an annotator's file lists. The JSON of
//! [`RecordInfo`] is what `aorta wfdb info --json` prints; [`describe`] is
//! its text, laid out as WFDB's `wfdbdesc` prints a record.

use std::fmt::Write as _;
use std::path::Path;

use super::{Header, ReadOptions, Record, RecordPath, WfdbError, read_annotations};

/// A record's header and counts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecordInfo {
    /// The parsed header.
    pub header: Header,
    /// Samples read per signal, in header order.
    pub samples_per_signal: Vec<usize>,
    /// Length in seconds (frames / sampling frequency).
    pub duration_s: f64,
    /// Whether the checksums were checked against the data.
    pub verified: bool,
    /// Annotations in the annotator's file (when one was asked for).
    pub annotations: Option<usize>,
    /// Beat annotations among them.
    pub beats: Option<usize>,
}

/// Reads the record at `record` (named by the rule of
/// [`RecordPath::resolve`]) with `opts` and, when `annotator` is given (e.g.
/// `atr`), its annotation file `NAME.ANNOTATOR` beside the header.
pub fn record_info(
    record: &Path,
    opts: ReadOptions,
    annotator: Option<&str>,
) -> Result<RecordInfo, WfdbError> {
    let at = RecordPath::resolve(record)?;
    let rec = Record::read_with(&at.header, opts)?;
    let anns = match annotator {
        Some(a) => Some(read_annotations(at.annotations(a))?),
        None => None,
    };
    let frames = rec
        .header
        .signals
        .first()
        .zip(rec.samples.first())
        .map_or(0, |(s, v)| v.len() / s.samples_per_frame.max(1) as usize);
    Ok(RecordInfo {
        samples_per_signal: rec.samples.iter().map(Vec::len).collect(),
        duration_s: frames as f64 / rec.header.sampling_frequency,
        verified: opts.verify_checksum,
        header: rec.header,
        annotations: anns.as_ref().map(Vec::len),
        beats: anns.map(|a| a.iter().filter(|x| x.is_beat()).count()),
    })
}

/// A duration as WFDB's `mstimstr` writes it: `M:SS.mmm`, or `H:MM:SS.mmm`
/// from one hour.
pub fn wfdb_time(seconds: f64) -> String {
    let ms = (seconds * 1000.0).round().max(0.0) as u64;
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}.{frac:03}")
    } else {
        format!("{m}:{s:02}.{frac:03}")
    }
}

/// The text of `aorta wfdb info`: what `wfdbdesc` prints, in its layout
/// (notes, starting time, length as `mstimstr` writes it, sampling
/// frequency, then per signal its group, file, description, gain and units,
/// initial value, storage format and samples per frame, I/O blocking, ADC
/// resolution and zero, baseline, checksum), plus the byte offset and skew
/// when set, the samples read, whether aorta verified the checksum and the
/// annotation counts.
pub fn describe(info: &RecordInfo) -> String {
    let h = &info.header;
    let mut o = String::new();
    let _ = writeln!(o, "Record {}", h.record_name);
    if !h.comments.is_empty() {
        let _ = writeln!(o, "Notes\n=====");
        for c in &h.comments {
            let _ = writeln!(o, " {c}");
        }
        let _ = writeln!(o, "=====\n");
    }
    let start = match (&h.base_time, &h.base_date) {
        (Some(t), Some(d)) => format!("[{t} {d}]"),
        (Some(t), None) => format!("[{t}]"),
        _ => "not specified".to_owned(),
    };
    let _ = writeln!(o, "Starting time: {start}");
    let frames = (info.duration_s * h.sampling_frequency).round() as u64;
    let _ = writeln!(
        o,
        "Length: {:>12} ({frames} sample intervals)",
        wfdb_time(info.duration_s)
    );
    let _ = writeln!(o, "Sampling frequency: {} Hz", h.sampling_frequency);
    if let Some(cf) = h.counter_frequency {
        let _ = writeln!(o, "Counter frequency: {cf} ticks/second");
    }
    let _ = writeln!(
        o,
        "{} signal{}",
        h.signals.len(),
        if h.signals.len() == 1 { "" } else { "s" }
    );
    let mut groups: Vec<&str> = Vec::new();
    for (i, s) in h.signals.iter().enumerate() {
        let group = match groups.iter().position(|f| *f == s.file_name) {
            Some(g) => g,
            None => {
                groups.push(&s.file_name);
                groups.len() - 1
            }
        };
        let _ = writeln!(o, "Group {group}, Signal {i}:");
        let _ = writeln!(o, " File: {}", s.file_name);
        let _ = writeln!(o, " Description: {}", s.description);
        let _ = writeln!(o, " Gain: {} adu/{}", s.gain, s.units);
        if let Some(v) = s.initial_value {
            let _ = writeln!(o, " Initial value: {v}");
        }
        let spf = if s.samples_per_frame > 1 {
            format!(" ({} samples per frame)", s.samples_per_frame)
        } else {
            String::new()
        };
        let _ = writeln!(o, " Storage format: {}{spf}", s.format.code());
        if s.byte_offset > 0 {
            let _ = writeln!(o, " Byte offset: {}", s.byte_offset);
        }
        if s.skew > 0 {
            let _ = writeln!(o, " Skew: {}", s.skew);
        }
        if s.block_size > 0 {
            let _ = writeln!(o, " I/O: {}-byte blocks", s.block_size);
        } else {
            let _ = writeln!(o, " I/O: can be unbuffered");
        }
        let _ = writeln!(o, " ADC resolution: {} bits", s.adc_resolution);
        let _ = writeln!(o, " ADC zero: {}", s.adc_zero);
        let _ = writeln!(o, " Baseline: {}", s.baseline);
        if let Some(n) = info.samples_per_signal.get(i) {
            let _ = writeln!(o, " Samples: {n}");
        }
        let check = match s.checksum {
            Some(0) => "0 (not recorded)".to_owned(),
            Some(c) if info.verified => format!("{c} (verified)"),
            Some(c) => format!("{c} (not verified)"),
            None => "not given".to_owned(),
        };
        let _ = writeln!(o, " Checksum: {check}");
    }
    if let (Some(a), Some(b)) = (info.annotations, info.beats) {
        let _ = writeln!(o, "Annotations: {a} ({b} beats)");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::wfdb_time;

    #[test]
    fn wfdb_time_as_mstimstr() {
        assert_eq!(wfdb_time(650000.0 / 360.0), "30:05.556");
        assert_eq!(wfdb_time(30.0), "0:30.000");
        assert_eq!(wfdb_time(3725.5), "1:02:05.500");
    }
}
