//! Beat-class scoring in the manner of ANSI/AAMI EC57, strictly
//! inter-patient, and the feature dump the model is trained on.
//!
//! Detected beats are matched to reference beats as in
//! [`crate::eval::match_beats`] (closest pairs first, within the window,
//! each at most once). Every reference beat in the scored interval lands in
//! a confusion matrix row by its AAMI class and in a column by the class the
//! classifier gave its matched detection, or in the column *missed* when
//! the detector missed it; detections matching no reference beat land in
//! the row *extra*. For a class `c`:
//!
//! - Se(c) = matrix\[c\]\[c\] / (row `c` including *missed*);
//! - +P(c) = matrix\[c\]\[c\] / (column `c` including *extra*).
//!
//! So a beat the detector misses counts against Se and a detection of
//! nothing labelled `c` counts against +P(c): the figures are those of the
//! whole system (detector and classifier), as EC57 asks.
//!
//! Each record is classified with [`super::model::held_out`]: the model
//! trained without it. No record is ever scored by a model that saw it.

use std::path::Path;

use super::{BeatClass, ClassifiedBeat, FEATURE_NAMES, model};
use crate::eval::{EvalOptions, RecordFailure, parallel_map};
use crate::wfdb::{Record, SignalError, WfdbError, read_annotations};

/// Reference beats of a record: (sample, AAMI class).
pub fn reference_beats(db: &Path, name: &str) -> Result<Vec<(u64, BeatClass)>, WfdbError> {
    Ok(read_annotations(db.join(format!("{name}.atr")))?
        .iter()
        .filter_map(|a| BeatClass::from_symbol(a.symbol()).map(|c| (a.sample, c)))
        .collect())
}

/// Pairs `(reference index, detection index)` within `window` samples,
/// closest first, each side used at most once. Both inputs sorted.
pub fn match_pairs(reference: &[u64], detected: &[u64], window: u64) -> Vec<(usize, usize)> {
    let mut pairs: Vec<(u64, usize, usize)> = Vec::new();
    let mut j0 = 0usize;
    for (i, &rt) in reference.iter().enumerate() {
        while detected.get(j0).is_some_and(|&dt| dt + window < rt) {
            j0 += 1;
        }
        let mut j = j0;
        while let Some(&dt) = detected.get(j) {
            if dt > rt + window {
                break;
            }
            pairs.push((dt.abs_diff(rt), i, j));
            j += 1;
        }
    }
    pairs.sort_unstable();
    let mut r_used = vec![false; reference.len()];
    let mut d_used = vec![false; detected.len()];
    let mut out = Vec::new();
    for (_, i, j) in pairs {
        if let (Some(ru @ false), Some(du @ false)) = (r_used.get_mut(i), d_used.get_mut(j)) {
            *ru = true;
            *du = true;
            out.push((i, j));
        }
    }
    out.sort_unstable();
    out
}

fn signal_error(db: &Path, name: &str, e: impl ToString) -> WfdbError {
    WfdbError::Signal {
        path: db.join(name),
        error: SignalError::Inconsistent(e.to_string()),
    }
}

/// Classifies one record's lead with `model`; returns the classified beats
/// and the number of samples.
pub fn classify_record(
    db: &Path,
    name: &str,
    opts: &EvalOptions,
    model: &'static model::Model,
) -> Result<(Vec<ClassifiedBeat>, f64, u64), WfdbError> {
    let rec = Record::read_with(db.join(name), opts.read)?;
    let fs = rec.fs();
    let signal = rec
        .physical(opts.lead)
        .ok_or_else(|| signal_error(db, name, format!("no signal {}", opts.lead)))?;
    let beats = super::classify(&signal, fs, model).map_err(|e| signal_error(db, name, e))?;
    Ok((beats, fs, signal.len() as u64))
}

/// Rows of the confusion matrix: reference N, S, V, F, Q, then *extra*.
pub const ROWS: usize = 6;
/// Columns: classified N, S, V, F, Q, then *missed*.
pub const COLS: usize = 6;

/// Confusion matrix of one record or a database (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClassMatrix(pub [[u64; COLS]; ROWS]);

impl ClassMatrix {
    fn add(&mut self, row: usize, col: usize) {
        if let Some(v) = self.0.get_mut(row).and_then(|r| r.get_mut(col)) {
            *v += 1;
        }
    }

    fn cell(&self, row: usize, col: usize) -> u64 {
        self.0
            .get(row)
            .and_then(|r| r.get(col))
            .copied()
            .unwrap_or(0)
    }

    /// Counts of class `c`: (true positives, reference total, detected total).
    pub fn class_counts(&self, c: BeatClass) -> (u64, u64, u64) {
        let k = c.index();
        let tp = self.cell(k, k);
        let reference: u64 = (0..COLS).map(|j| self.cell(k, j)).sum();
        let detected: u64 = (0..ROWS).map(|i| self.cell(i, k)).sum();
        (tp, reference, detected)
    }

    /// Per-class score.
    pub fn class_score(&self, c: BeatClass) -> ClassScore {
        let (tp, reference, detected) = self.class_counts(c);
        ClassScore {
            se: if reference == 0 {
                None
            } else {
                Some(tp as f64 / reference as f64)
            },
            ppv: if detected == 0 {
                None
            } else {
                Some(tp as f64 / detected as f64)
            },
            tp,
            reference,
            detected,
        }
    }
}

impl std::ops::AddAssign for ClassMatrix {
    fn add_assign(&mut self, o: ClassMatrix) {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }
}

/// Se and +P of one class (`null` in JSON when undefined: no reference beat
/// of the class, or none classified as it).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ClassScore {
    /// Sensitivity.
    pub se: Option<f64>,
    /// Positive predictivity.
    pub ppv: Option<f64>,
    /// Reference beats of the class classified as it.
    pub tp: u64,
    /// Reference beats of the class in the scored interval.
    pub reference: u64,
    /// Detections classified as the class.
    pub detected: u64,
}

/// Per-class scores (JSON `classes.{N,S,V,F,Q}`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[allow(non_snake_case, reason = "the AAMI class letters are the JSON keys")]
pub struct Classes {
    /// Normal.
    pub N: ClassScore,
    /// Supraventricular ectopic.
    pub S: ClassScore,
    /// Ventricular ectopic.
    pub V: ClassScore,
    /// Fusion.
    pub F: ClassScore,
    /// Paced / unclassifiable.
    pub Q: ClassScore,
}

impl From<&ClassMatrix> for Classes {
    fn from(m: &ClassMatrix) -> Self {
        Classes {
            N: m.class_score(BeatClass::N),
            S: m.class_score(BeatClass::S),
            V: m.class_score(BeatClass::V),
            F: m.class_score(BeatClass::F),
            Q: m.class_score(BeatClass::Q),
        }
    }
}

/// Gross figures: beat detection and classification accuracy.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Gross {
    /// Reference beats detected / reference beats.
    pub detection_se: f64,
    /// Detections matching a reference beat / detections.
    pub detection_ppv: f64,
    /// Matched beats whose class is right / matched beats.
    pub accuracy: f64,
    /// Reference beats scored.
    pub reference: u64,
}

impl From<&ClassMatrix> for Gross {
    fn from(m: &ClassMatrix) -> Self {
        let matched: u64 = (0..5)
            .flat_map(|i| (0..5).map(move |j| (i, j)))
            .map(|(i, j)| m.cell(i, j))
            .sum();
        let right: u64 = (0..5).map(|i| m.cell(i, i)).sum();
        let missed: u64 = (0..5).map(|i| m.cell(i, 5)).sum();
        let extra: u64 = (0..5).map(|j| m.cell(5, j)).sum();
        let frac = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
        Gross {
            detection_se: frac(matched, matched + missed),
            detection_ppv: frac(matched, matched + extra),
            accuracy: frac(right, matched),
            reference: matched + missed,
        }
    }
}

/// One record's row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BeatRow {
    /// Record name.
    pub record: String,
    /// The record the model left out (the record itself, or empty when
    /// the record was never a training record and the full model is used).
    pub model_left_out: String,
    /// Per-class scores.
    pub classes: Classes,
    /// The confusion matrix (rows N S V F Q extra, columns N S V F Q missed).
    pub matrix: ClassMatrix,
}

/// Beat classification scored over a database.
#[derive(Debug, serde::Serialize)]
pub struct BeatReport {
    /// Per-class figures over every record (the counts summed).
    pub classes: Classes,
    /// Gross figures.
    pub gross: Gross,
    /// The summed confusion matrix.
    pub matrix: ClassMatrix,
    /// Always `leave-one-record-out`.
    pub protocol: &'static str,
    /// One row per record.
    pub records: Vec<BeatRow>,
    /// Matching window, seconds.
    pub window_s: f64,
    /// Seconds at the start of each record not scored.
    pub start_s: f64,
    /// Lead analysed.
    pub lead: usize,
    /// Records that could not be scored (not in the JSON).
    #[serde(skip)]
    pub failures: Vec<RecordFailure>,
}

/// Scores one record with the model that never saw it.
pub fn evaluate_beats_record(
    db: &Path,
    name: &str,
    opts: &EvalOptions,
) -> Result<BeatRow, WfdbError> {
    let m = model::held_out(name);
    let (beats, fs, len) = classify_record(db, name, opts, m)?;
    let reference = reference_beats(db, name)?;
    let start = (opts.start * fs).round() as u64;
    let window = (opts.window * fs).round() as u64;
    let rs: Vec<u64> = reference.iter().map(|r| r.0).collect();
    let ds: Vec<u64> = beats.iter().map(|b| b.beat.sample).collect();
    let pairs = match_pairs(&rs, &ds, window);
    let mut matrix = ClassMatrix::default();
    let mut r_used = vec![false; rs.len()];
    let mut d_used = vec![false; ds.len()];
    let inside = |t: u64| t >= start && t < len;
    for &(i, j) in &pairs {
        if let (Some(ru), Some(du)) = (r_used.get_mut(i), d_used.get_mut(j)) {
            *ru = true;
            *du = true;
        }
        if let (Some(&(t, rc)), Some(b)) = (reference.get(i), beats.get(j))
            && inside(t)
        {
            matrix.add(rc.index(), b.class.index());
        }
    }
    for ((t, rc), used) in reference.iter().zip(&r_used) {
        if !used && inside(*t) {
            matrix.add(rc.index(), 5);
        }
    }
    for (b, used) in beats.iter().zip(&d_used) {
        if !used && inside(b.beat.sample) {
            matrix.add(5, b.class.index());
        }
    }
    Ok(BeatRow {
        record: name.to_string(),
        model_left_out: m.left_out.to_string(),
        classes: (&matrix).into(),
        matrix,
    })
}

/// Scores beat classification on the records `names` of database `db`,
/// each with the model trained without it.
pub fn score_beats(db: &Path, names: &[String], opts: &EvalOptions) -> BeatReport {
    let results = parallel_map(names, |n| evaluate_beats_record(db, n, opts));
    let mut records = Vec::new();
    let mut failures = Vec::new();
    let mut matrix = ClassMatrix::default();
    for (name, r) in names.iter().zip(results) {
        match r {
            Ok(row) => {
                matrix += row.matrix;
                records.push(row);
            }
            Err(error) => failures.push(RecordFailure {
                record: name.clone(),
                error,
            }),
        }
    }
    BeatReport {
        classes: (&matrix).into(),
        gross: (&matrix).into(),
        matrix,
        protocol: "leave-one-record-out",
        records,
        window_s: opts.window,
        start_s: opts.start,
        lead: opts.lead,
        failures,
    }
}

/// Writes the features of every detected beat of the records `names` as CSV
/// (`record,sample,label,<feature names>`; `label` is the AAMI class of the
/// matched reference beat, `-` for a detection matching none), the input of
/// `tools/train_beats.py`. Beats whose features cannot be computed are left
/// out. The features do not depend on the model.
pub fn dump_features(
    db: &Path,
    names: &[String],
    opts: &EvalOptions,
    out: &mut impl std::io::Write,
) -> Result<Vec<RecordFailure>, std::io::Error> {
    write!(out, "record,sample,label")?;
    for n in FEATURE_NAMES {
        write!(out, ",{n}")?;
    }
    writeln!(out)?;
    let results = parallel_map(names, |name| -> Result<String, WfdbError> {
        let (beats, fs, _) = classify_record(db, name, opts, model::full())?;
        let reference = reference_beats(db, name)?;
        let rs: Vec<u64> = reference.iter().map(|r| r.0).collect();
        let ds: Vec<u64> = beats.iter().map(|b| b.beat.sample).collect();
        let window = (opts.window * fs).round() as u64;
        let mut label = vec!["-"; ds.len()];
        for (i, j) in match_pairs(&rs, &ds, window) {
            if let (Some(l), Some((_, c))) = (label.get_mut(j), reference.get(i)) {
                *l = c.letter();
            }
        }
        let mut s = String::new();
        for (b, l) in beats.iter().zip(label) {
            if let Some(f) = b.features {
                s.push_str(&format!("{name},{},{l}", b.beat.sample));
                for v in f {
                    s.push_str(&format!(",{v:e}"));
                }
                s.push('\n');
            }
        }
        Ok(s)
    });
    let mut failures = Vec::new();
    for (name, r) in names.iter().zip(results) {
        match r {
            Ok(s) => out.write_all(s.as_bytes())?,
            Err(error) => failures.push(RecordFailure {
                record: name.clone(),
                error,
            }),
        }
    }
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_closest_first() {
        assert_eq!(match_pairs(&[100, 150], &[126], 54), vec![(1, 0)]);
        assert_eq!(match_pairs(&[100], &[60, 95, 140], 54), vec![(0, 1)]);
        assert!(match_pairs(&[], &[1], 5).is_empty());
    }

    #[test]
    fn matrix_scores() {
        let mut m = ClassMatrix::default();
        // 8 V beats: 6 right, 1 called N, 1 missed; 2 N called V; 1 extra V.
        for _ in 0..6 {
            m.add(2, 2);
        }
        m.add(2, 0);
        m.add(2, 5);
        m.add(0, 2);
        m.add(0, 2);
        m.add(5, 2);
        let v = m.class_score(BeatClass::V);
        assert_eq!((v.tp, v.reference, v.detected), (6, 8, 9));
        assert_eq!(v.se, Some(0.75));
        assert_eq!(m.class_score(BeatClass::S).se, None);
        let g = Gross::from(&m);
        assert_eq!(g.reference, 10);
        assert!((g.accuracy - 6.0 / 9.0).abs() < 1e-12);
    }
}
