//! Opened results as WFDB annotation files (PhysioNet's `annot(5)` MIT
//! format, written by [`aorta_signal::wfdb::encode_annotations`]).
//!
//! One record per patient (device serial): a header `<record>.hea` with no
//! signals, whose sampling frequency maps sample numbers to time and whose
//! base time and date are the record's time zero (UTC), and an annotation
//! file `<record>.<annotator>` ([`ANNOTATOR`] by default) holding, in time
//! order:
//!
//! - `N` (code 1) at every detected beat of the `beats` results (duplicate
//!   times dropped);
//! - `+` (rhythm change, code 28) with aux `(AFIB` at an AF onset and `(N`
//!   at an AF offset, as MIT-BIH marks rhythm;
//! - `"` (comment, code 22) with the event's name as aux for the events no
//!   rhythm label describes honestly (`brady_onset`, `tachy_offset`,
//!   `pause_onset`, `pause 3.4 s`…: MIT-BIH's `(SBR` means *sinus*
//!   bradycardia and `(T` ventricular trigeminy, which the detector does not
//!   tell), and for each data gap (`gap 3 frames`).
//!
//! Sample `k` is at `base + k / fs`, rounded to the nearest sample. The
//! frequency is `fs` when the caller gives one, else that of the patient's
//! strips when they all share one, else [`DEFAULT_FS`]. The base is the
//! earliest time annotated, truncated to the millisecond.

use aorta_signal::rhythm::RhythmEventKind;
use aorta_signal::wfdb::{Annotation, RHYTHM, encode_annotations};
use aorta_stream::ecg::EcgResult;
use aorta_worker::clinician::OpenedResult;

use super::{ExportError, event_name, pause_duration};

/// The default annotator name (the file's extension).
pub const ANNOTATOR: &str = "aorta";
/// The sampling frequency used when neither the caller nor the patient's
/// strips give one, Hz (MIT-BIH's).
pub const DEFAULT_FS: f64 = 360.0;
/// Code of a normal beat (`N`).
pub const NORMAL: u8 = 1;
/// Code of a comment annotation (`"`).
pub const NOTE: u8 = 22;

/// One patient's record.
#[derive(Debug, Clone, PartialEq)]
pub struct WfdbRecord {
    /// The device serial.
    pub patient: String,
    /// The record name: the serial with every character other than ASCII
    /// letters, digits and `_` replaced by `_`.
    pub record: String,
    /// The header's text (`<record>.hea`).
    pub header: String,
    /// The annotation file's bytes (`<record>.<annotator>`).
    pub annotations: Vec<u8>,
    /// Sampling frequency of the sample numbers, Hz.
    pub fs: f64,
    /// Time of sample 0, µs since the Unix epoch.
    pub base_us: i64,
    /// `N` annotations written.
    pub beats: usize,
    /// `+` annotations written.
    pub rhythm: usize,
    /// `"` annotations written.
    pub notes: usize,
}

fn record_name(serial: &str) -> String {
    let name: String = serial
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "_".to_owned()
    } else {
        name
    }
}

/// `(time µs, code, aux)` of what one result annotates.
fn marks(r: &OpenedResult, out: &mut Vec<(i64, u8, Option<String>)>) {
    match &r.result {
        EcgResult::Beats(b) => out.extend(b.r_peaks_us.iter().map(|&t| (t, NORMAL, None))),
        EcgResult::Rhythm(e) => {
            let aux = match e.kind {
                RhythmEventKind::AfOnset => Some((RHYTHM, "(AFIB".to_owned())),
                RhythmEventKind::VtOnset { .. } => Some((RHYTHM, "(VT".to_owned())),
                RhythmEventKind::VfOnset => Some((RHYTHM, "(VFL".to_owned())),
                RhythmEventKind::BigeminyOnset { .. } => Some((RHYTHM, "(B".to_owned())),
                RhythmEventKind::TrigeminyOnset { .. } => Some((RHYTHM, "(T".to_owned())),
                // The end of a rhythm episode: back to normal, as MIT-BIH's
                // annotators mark it.
                RhythmEventKind::AfOffset
                | RhythmEventKind::VtOffset
                | RhythmEventKind::VfOffset
                | RhythmEventKind::BigeminyOffset
                | RhythmEventKind::TrigeminyOffset => Some((RHYTHM, "(N".to_owned())),
                _ => None,
            };
            let (code, aux) = aux.unwrap_or_else(|| {
                let name = event_name(e);
                let text = match pause_duration(e) {
                    Some(d) if d.is_finite() => format!("{name} {d:.1} s"),
                    _ => name,
                };
                (NOTE, text)
            });
            out.push((r.start, code, Some(aux)));
        }
        EcgResult::Gap { missing_frames, .. } => {
            out.push((r.start, NOTE, Some(format!("gap {missing_frames} frames"))));
        }
        EcgResult::HeartRate { .. } | EcgResult::Hrv(_) | EcgResult::Strip(_) => {}
    }
}

/// The strips' common sampling rate, if they share one.
fn strip_fs<'a>(results: impl Iterator<Item = &'a OpenedResult>) -> Option<f64> {
    let mut fs = None;
    for r in results {
        if let EcgResult::Strip(s) = &r.result {
            match fs {
                None => fs = Some(s.fs),
                Some(f) if f == s.fs => {}
                Some(_) => return None,
            }
        }
    }
    fs.filter(|f: &f64| f.is_finite() && *f > 0.0)
}

/// `HH:MM:SS.mmm DD/MM/YYYY` of `us` (UTC), as a WFDB header's base time
/// and date.
fn base_time(us: i64) -> Result<String, ExportError> {
    let iso = super::iso(us)?; // YYYY-MM-DDTHH:MM:SS.mmmZ
    let (date, time) = iso.split_once('T').unwrap_or((&iso, ""));
    let time = time.trim_end_matches('Z');
    let mut d = date.split('-');
    let (Some(y), Some(m), Some(day)) = (d.next(), d.next(), d.next()) else {
        return Err(ExportError::Unrepresentable(format!("time {us} µs")));
    };
    Ok(format!("{time} {day}/{m}/{y}"))
}

/// One record per patient, in order of first appearance; `fs` overrides
/// the sampling frequency (see the module's documentation). Patients with
/// nothing to annotate get a record with an empty annotation file.
pub fn records(results: &[OpenedResult], fs: Option<f64>) -> Result<Vec<WfdbRecord>, ExportError> {
    if let Some(f) = fs
        && !(f.is_finite() && f > 0.0 && f <= 1e6)
    {
        return Err(ExportError::Unrepresentable(format!(
            "sampling frequency {f} Hz (must be in (0, 1000000])"
        )));
    }
    let mut patients: Vec<&str> = Vec::new();
    for r in results {
        if !patients.contains(&r.patient.as_str()) {
            patients.push(&r.patient);
        }
    }
    let mut out = Vec::with_capacity(patients.len());
    let mut names: Vec<String> = Vec::new();
    for p in patients {
        let mine = || results.iter().filter(move |r| r.patient == p);
        let fs = fs.or_else(|| strip_fs(mine())).unwrap_or(DEFAULT_FS);
        let mut m = Vec::new();
        for r in mine() {
            marks(r, &mut m);
        }
        // Time order; at one instant rhythm before notes before beats, as
        // MIT-BIH writes a rhythm change before the beat it starts at.
        let rank = |code: u8| match code {
            RHYTHM => 0,
            NOTE => 1,
            _ => 2,
        };
        m.sort_by_key(|a| (a.0, rank(a.1)));
        m.dedup();
        let first = m
            .first()
            .map(|x| x.0)
            .or_else(|| mine().map(|r| r.start).min())
            .unwrap_or(0);
        let base_us = first - first.rem_euclid(1000);
        let mut record = record_name(p);
        // Two serials that map to one name get distinct records.
        if names.contains(&record) {
            let mut k = 2;
            while names.contains(&format!("{record}_{k}")) {
                k += 1;
            }
            record = format!("{record}_{k}");
        }
        names.push(record.clone());
        let anns: Vec<Annotation> = m
            .iter()
            .map(|(t, code, aux)| Annotation {
                sample: (((t - base_us) as f64) * fs / 1e6).round().max(0.0) as u64,
                code: *code,
                subtype: 0,
                chan: 0,
                num: 0,
                aux: aux.clone(),
            })
            .collect();
        let bytes = encode_annotations(&anns).map_err(|source| ExportError::Wfdb {
            record: record.clone(),
            source,
        })?;
        let samples = anns.last().map_or(0, |a| a.sample + 1);
        let header = format!(
            "{record} 0 {fs} {samples} {}\n# aorta results export: annotations of device {} (detected beats N, rhythm +, events \"); times UTC\n",
            base_time(base_us)?,
            p.replace(['\n', '\r'], " ")
        );
        out.push(WfdbRecord {
            patient: p.to_owned(),
            record,
            header,
            annotations: bytes,
            fs,
            base_us,
            beats: m.iter().filter(|x| x.1 == NORMAL).count(),
            rhythm: m.iter().filter(|x| x.1 == RHYTHM).count(),
            notes: m.iter().filter(|x| x.1 == NOTE).count(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        reason = "a test fails by panicking"
    )]
    use super::*;
    use aorta_signal::rhythm::RhythmEvent;
    use aorta_signal::wfdb::{parse_annotations, parse_header};
    use aorta_stream::ecg::BeatTimes;

    const T0: i64 = 1_700_000_000_000_000;

    #[test]
    fn beats_and_rhythm_read_back_with_their_times() {
        let beats = |from: i64| OpenedResult {
            patient: "SN-1".into(),
            start: from,
            end: from + 10_000_000,
            result: EcgResult::Beats(BeatTimes {
                r_peaks_us: (0..10).map(|k| from + 500_000 + k * 800_000).collect(),
            }),
        };
        let ev = |t: i64, kind| OpenedResult {
            patient: "SN-1".into(),
            start: t,
            end: t + 1,
            result: EcgResult::Rhythm(RhythmEvent { time_s: 0.0, kind }),
        };
        let results = vec![
            beats(T0),
            ev(T0 + 2_100_000, RhythmEventKind::AfOnset),
            beats(T0 + 10_000_000),
            ev(T0 + 12_900_000, RhythmEventKind::AfOffset),
            ev(T0 + 13_000_000, RhythmEventKind::Pause { duration_s: 3.25 }),
        ];
        let recs = records(&results, None).unwrap();
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!((r.beats, r.rhythm, r.notes), (20, 2, 1));
        assert_eq!(r.fs, DEFAULT_FS);
        let h = parse_header(&r.header).unwrap();
        assert_eq!(h.sampling_frequency, 360.0);
        assert_eq!(h.base_time.as_deref(), Some("22:13:20.500"));
        assert_eq!(h.base_date.as_deref(), Some("14/11/2023"));
        let anns = parse_annotations(&r.annotations).unwrap();
        assert_eq!(anns.len(), 23);
        assert_eq!(anns[0].sample, 0);
        let af = anns.iter().find(|a| a.rhythm() == Some("AFIB")).unwrap();
        assert_eq!(af.sample, 576, "1.6 s after the base at 360 Hz");
        assert!(anns.iter().any(|a| a.rhythm() == Some("N")));
        assert!(
            anns.iter()
                .any(|a| a.code == NOTE && a.aux.as_deref() == Some("pause 3.2 s"))
        );
        let times: Vec<u64> = anns.iter().map(|a| a.sample).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn strips_set_the_rate_and_bad_rates_are_refused() {
        let strip = OpenedResult {
            patient: "a/b".into(),
            start: T0,
            end: T0 + 10_000_000,
            result: EcgResult::Strip(aorta_stream::ecg::EcgStrip {
                event: RhythmEvent {
                    time_s: 0.0,
                    kind: RhythmEventKind::AfOnset,
                },
                fs: 250.0,
                first_sample_us: T0,
                leads: vec![],
            }),
        };
        let recs = records(std::slice::from_ref(&strip), None).unwrap();
        assert_eq!((recs[0].fs, recs[0].record.as_str()), (250.0, "a_b"));
        assert_eq!(
            records(std::slice::from_ref(&strip), Some(1000.0)).unwrap()[0].fs,
            1000.0
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                records(&[], Some(bad)),
                Err(ExportError::Unrepresentable(_))
            ));
        }
    }
}
