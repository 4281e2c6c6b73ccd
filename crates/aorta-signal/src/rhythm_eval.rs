//! Rhythm-episode scoring in the manner of ANSI/AAMI EC57 (the episode and
//! duration statistics of PhysioNet's `epic`), against the rhythm-change
//! annotations (`(AFIB`, `(VT`, `(B`, `(T`…) of MIT-BIH-style records.
//!
//! Each record's lead 0 goes through the R-peak detector, the beat
//! classifier (the model trained without the record,
//! [`crate::beats::model::held_out`]) and the [`RhythmMonitor`]; its
//! episodes of each rhythm are compared with the reference episodes:
//!
//! - episode Se: reference episodes overlapped by a detected episode /
//!   reference episodes;
//! - episode +P: detected episodes overlapped by a reference episode /
//!   detected episodes;
//! - duration Se: overlap / reference duration; duration +P: overlap /
//!   detected duration.
//!
//! The whole record is scored (no learning period). Rhythms: `AF` (`(AFIB`),
//! `VT` (`(VT`), `bigeminy` (`(B`), `trigeminy` (`(T`), and `VFL` (`(VFL`),
//! whose detector works on the signal rather than on beats and is not part
//! of this scorer yet: its reference episodes are counted and its detected
//! figures are `null`.

use std::path::Path;

use crate::beats::eval::classify_record;
use crate::beats::{ClassifiedBeat, model};
use crate::eval::{EvalOptions, RecordFailure, parallel_map};
use crate::rhythm::{RhythmConfig, RhythmEvent, RhythmEventKind, RhythmMonitor, episodes};
use crate::wfdb::{WfdbError, read_annotations};

/// The rhythms scored: (JSON name, MIT-BIH rhythm label).
pub const RHYTHMS: [(&str, &str); 5] = [
    ("AF", "AFIB"),
    ("VT", "VT"),
    ("VFL", "VFL"),
    ("bigeminy", "B"),
    ("trigeminy", "T"),
];

/// Rhythm events of classified beats (times in seconds = sample / `fs`),
/// closed at `duration_s`.
pub fn classified_events(
    beats: &[ClassifiedBeat],
    fs: f64,
    duration_s: f64,
    cfg: &RhythmConfig,
) -> Vec<RhythmEvent> {
    let mut mon = RhythmMonitor::new(*cfg);
    let mut events = Vec::new();
    for b in beats {
        mon.push_classified(b.beat.sample as f64 / fs, b.class, b.p_v, &mut events);
    }
    mon.finish(duration_s, &mut events);
    events
}

/// The rhythm events of a record (lead `opts.lead`), its beats classified
/// by the model that never saw it, and its duration in seconds.
pub fn record_events(
    db: &Path,
    name: &str,
    opts: &EvalOptions,
    cfg: &RhythmConfig,
) -> Result<(Vec<RhythmEvent>, f64), WfdbError> {
    let (beats, fs, len) = classify_record(db, name, opts, model::held_out(name))?;
    let duration = len as f64 / fs;
    Ok((classified_events(&beats, fs, duration, cfg), duration))
}

/// Reference episodes of rhythm `label` (e.g. `AFIB`) from a record's
/// rhythm-change annotations, seconds.
pub fn reference_episodes(
    db: &Path,
    name: &str,
    fs: f64,
    duration_s: f64,
    label: &str,
) -> Result<Vec<(f64, f64)>, WfdbError> {
    let anns = read_annotations(db.join(format!("{name}.atr")))?;
    let mut eps = Vec::new();
    let mut open: Option<f64> = None;
    for a in anns.iter() {
        let Some(r) = a.rhythm() else { continue };
        let t = a.sample as f64 / fs;
        let is = r == label;
        match (open, is) {
            (None, true) => open = Some(t),
            (Some(s), false) => {
                eps.push((s, t));
                open = None;
            }
            _ => {}
        }
    }
    if let Some(s) = open {
        eps.push((s, duration_s));
    }
    Ok(eps)
}

/// Detected episodes of one of the [`RHYTHMS`]; `None` for a rhythm this
/// scorer has no detector for (VFL).
pub fn detected_episodes(events: &[RhythmEvent], rhythm: &str) -> Option<Vec<(f64, f64)>> {
    let pick = |on: fn(&RhythmEventKind) -> bool, off: fn(&RhythmEventKind) -> bool| {
        episodes(events, move |k| {
            if on(k) {
                Some(true)
            } else if off(k) {
                Some(false)
            } else {
                None
            }
        })
    };
    Some(match rhythm {
        "AF" => crate::rhythm::af_episodes(events),
        "VT" => crate::rhythm::vt_episodes(events),
        "bigeminy" => pick(
            |k| matches!(k, RhythmEventKind::BigeminyOnset { .. }),
            |k| matches!(k, RhythmEventKind::BigeminyOffset),
        ),
        "trigeminy" => pick(
            |k| matches!(k, RhythmEventKind::TrigeminyOnset { .. }),
            |k| matches!(k, RhythmEventKind::TrigeminyOffset),
        ),
        _ => return None,
    })
}

/// Episode counts of one rhythm (summable).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct EpisodeCounts {
    /// Reference episodes.
    pub reference: u64,
    /// Reference episodes overlapped by a detected one.
    pub reference_found: u64,
    /// Detected episodes (`null`-scored when the rhythm has no detector).
    pub detected: u64,
    /// Detected episodes overlapping a reference one.
    pub detected_true: u64,
    /// Reference duration, seconds.
    pub reference_s: f64,
    /// Detected duration, seconds.
    pub detected_s: f64,
    /// Duration both call the rhythm, seconds.
    pub overlap_s: f64,
}

impl std::ops::AddAssign for EpisodeCounts {
    fn add_assign(&mut self, o: EpisodeCounts) {
        self.reference += o.reference;
        self.reference_found += o.reference_found;
        self.detected += o.detected;
        self.detected_true += o.detected_true;
        self.reference_s += o.reference_s;
        self.detected_s += o.detected_s;
        self.overlap_s += o.overlap_s;
    }
}

fn overlap(a: (f64, f64), b: (f64, f64)) -> f64 {
    (a.1.min(b.1) - a.0.max(b.0)).max(0.0)
}

/// Compares detected with reference episodes.
pub fn episode_counts(reference: &[(f64, f64)], detected: &[(f64, f64)]) -> EpisodeCounts {
    // A zero-length episode (a run of one interval) still counts when it
    // falls inside the other side's episode.
    let touches = |a: (f64, f64), b: (f64, f64)| a.0 <= b.1 && b.0 <= a.1;
    EpisodeCounts {
        reference: reference.len() as u64,
        reference_found: reference
            .iter()
            .filter(|r| detected.iter().any(|d| touches(**r, *d)))
            .count() as u64,
        detected: detected.len() as u64,
        detected_true: detected
            .iter()
            .filter(|d| reference.iter().any(|r| touches(*r, **d)))
            .count() as u64,
        reference_s: reference.iter().map(|r| r.1 - r.0).sum(),
        detected_s: detected.iter().map(|d| d.1 - d.0).sum(),
        overlap_s: reference
            .iter()
            .map(|r| detected.iter().map(|d| overlap(*r, *d)).sum::<f64>())
            .sum(),
    }
}

/// Figures of one rhythm (`null` when undefined).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct EpisodeScore {
    /// Whether this scorer detects the rhythm (false: VFL, detected from the
    /// signal elsewhere).
    pub detected_here: bool,
    /// Episode sensitivity.
    pub se: Option<f64>,
    /// Episode positive predictivity.
    pub ppv: Option<f64>,
    /// Duration sensitivity.
    pub duration_se: Option<f64>,
    /// Duration positive predictivity.
    pub duration_ppv: Option<f64>,
    /// The counts.
    #[serde(flatten)]
    pub counts: EpisodeCounts,
}

impl EpisodeScore {
    fn new(c: EpisodeCounts, detected_here: bool) -> EpisodeScore {
        let f = |a: f64, b: f64| (detected_here && b > 0.0).then(|| a / b);
        EpisodeScore {
            detected_here,
            se: f(c.reference_found as f64, c.reference as f64),
            ppv: f(c.detected_true as f64, c.detected as f64),
            duration_se: f(c.overlap_s, c.reference_s),
            duration_ppv: f(c.overlap_s, c.detected_s),
            counts: c,
        }
    }
}

/// One record's episodes of each rhythm.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RhythmRow {
    /// Record name.
    pub record: String,
    /// Per rhythm (name as in [`RHYTHMS`]): counts.
    pub rhythms: std::collections::BTreeMap<String, EpisodeCounts>,
    /// Detected episodes per rhythm, seconds.
    pub episodes: std::collections::BTreeMap<String, Vec<(f64, f64)>>,
}

/// Rhythm episodes scored over a database.
#[derive(Debug, serde::Serialize)]
pub struct RhythmReport {
    /// Per rhythm, over every record.
    pub rhythms: std::collections::BTreeMap<String, EpisodeScore>,
    /// One row per record.
    pub records: Vec<RhythmRow>,
    /// Always `leave-one-record-out` (beat classes).
    pub protocol: &'static str,
    /// Records that could not be scored (not in the JSON).
    #[serde(skip)]
    pub failures: Vec<RecordFailure>,
}

/// Scores one record.
pub fn evaluate_rhythm_record(
    db: &Path,
    name: &str,
    opts: &EvalOptions,
    cfg: &RhythmConfig,
) -> Result<RhythmRow, WfdbError> {
    let fs = crate::wfdb::read_header(db.join(name))?.sampling_frequency;
    let (events, duration) = record_events(db, name, opts, cfg)?;
    let mut rhythms = std::collections::BTreeMap::new();
    let mut found = std::collections::BTreeMap::new();
    for (key, label) in RHYTHMS {
        let reference = reference_episodes(db, name, fs, duration, label)?;
        let detected = detected_episodes(&events, key);
        rhythms.insert(
            key.to_string(),
            episode_counts(&reference, detected.as_deref().unwrap_or(&[])),
        );
        if let Some(d) = detected {
            found.insert(key.to_string(), d);
        }
    }
    Ok(RhythmRow {
        record: name.to_string(),
        rhythms,
        episodes: found,
    })
}

/// Scores the rhythm episodes on the records `names` of database `db`.
pub fn score_rhythm(
    db: &Path,
    names: &[String],
    opts: &EvalOptions,
    cfg: &RhythmConfig,
) -> RhythmReport {
    let results = parallel_map(names, |n| evaluate_rhythm_record(db, n, opts, cfg));
    let mut records = Vec::new();
    let mut failures = Vec::new();
    let mut total: std::collections::BTreeMap<String, EpisodeCounts> = RHYTHMS
        .iter()
        .map(|(k, _)| (k.to_string(), EpisodeCounts::default()))
        .collect();
    for (name, r) in names.iter().zip(results) {
        match r {
            Ok(row) => {
                for (k, c) in &row.rhythms {
                    if let Some(t) = total.get_mut(k) {
                        *t += *c;
                    }
                }
                records.push(row);
            }
            Err(error) => failures.push(RecordFailure {
                record: name.clone(),
                error,
            }),
        }
    }
    RhythmReport {
        rhythms: total
            .into_iter()
            .map(|(k, c)| {
                let here = detected_episodes(&[], &k).is_some();
                (k, EpisodeScore::new(c, here))
            })
            .collect(),
        records,
        protocol: "leave-one-record-out",
        failures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn episode_matching() {
        let c = episode_counts(&[(10.0, 20.0), (50.0, 60.0)], &[(15.0, 25.0), (80.0, 90.0)]);
        assert_eq!((c.reference, c.reference_found), (2, 1));
        assert_eq!((c.detected, c.detected_true), (2, 1));
        assert!((c.overlap_s - 5.0).abs() < 1e-12);
        let s = EpisodeScore::new(c, true);
        assert_eq!(s.se, Some(0.5));
        assert_eq!(s.duration_ppv, Some(0.25));
        assert_eq!(EpisodeScore::new(c, false).se, None);
    }
}
