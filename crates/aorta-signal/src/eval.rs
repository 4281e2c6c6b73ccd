//! Beat-detection scoring per ANSI/AAMI EC57 (the rules of PhysioNet's `bxb`).
//!
//! A detection matches a reference beat when they are at most `window`
//! samples apart (EC57: 150 ms); each reference beat and each detection is
//! matched at most once, closest pairs first. Unmatched reference beats are
//! false negatives, unmatched detections false positives. Scoring covers the
//! interval `[start, end)`; EC57 excludes the first 5 minutes of each record
//! as the detector's learning period.
//!
//! Whole databases are scored by [`score_rpeaks`] and [`score_af`]: they
//! return typed reports ([`RpeakReport`], [`AfReport`]) whose JSON is what
//! `aorta eval rpeaks|af --json` prints.

use std::path::{Path, PathBuf};

use crate::monitor::{LeadMonitor, MultiLeadDetector};
use crate::rpeak::{Detector, DetectorConfig};
use crate::wfdb::{ReadOptions, Record, WfdbError, read_annotations};

/// Options for [`evaluate_record`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalOptions {
    /// Matching window in seconds (EC57: 0.150).
    pub window: f64,
    /// Scoring starts this many seconds into the record (EC57: 300).
    pub start: f64,
    /// Signal (lead) index fed to the detector.
    pub lead: usize,
    /// What to verify when reading each record.
    pub read: ReadOptions,
    /// Adds the [`crate::noise`] mix at this SNR (dB) to every lead analysed
    /// before detection (`None`: the clean signal).
    pub snr_db: Option<f64>,
    /// Seed of the noise mix (mixed with the record name and lead index).
    pub noise_seed: u64,
    /// Multi-lead fusion ([`crate::monitor::MultiLeadDetector`]) over every
    /// lead of the record instead of the single `lead`.
    pub fuse: bool,
    /// Gate beats by signal quality ([`crate::monitor::LeadMonitor`]); off:
    /// the bare [`Detector`].
    pub gate: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            window: 0.150,
            start: 300.0,
            lead: 0,
            read: ReadOptions::default(),
            snr_db: None,
            noise_seed: 1,
            fuse: false,
            gate: true,
        }
    }
}

/// The seed of the noise added to `lead` of record `name`: FNV-1a of the
/// name, mixed with the lead and the run's seed.
pub fn noise_seed(seed: u64, name: &str, lead: usize) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (lead as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// The score of one record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecordEval {
    /// Record name.
    pub record: String,
    /// Counts in the scored interval.
    pub counts: Counts,
    /// Largest report latency after the R-peak, in milliseconds.
    pub max_latency_ms: f64,
    /// Samples processed.
    pub samples: u64,
}

/// Runs the detector over one record's lead and scores it against the beat
/// annotations of its `.atr` file.
pub fn evaluate_record(db: &Path, name: &str, opts: &EvalOptions) -> Result<RecordEval, WfdbError> {
    let rec = Record::read_with(db.join(name), opts.read)?;
    let fs = rec.fs();
    let reference: Vec<u64> = read_annotations(db.join(format!("{name}.atr")))?
        .iter()
        .filter(|a| a.is_beat())
        .map(|a| a.sample)
        .collect();
    let leads: Vec<usize> = if opts.fuse {
        (0..rec.header.signals.len()).collect()
    } else {
        vec![opts.lead]
    };
    let mut signals: Vec<Vec<f64>> = Vec::with_capacity(leads.len());
    for &lead in &leads {
        let mut x = rec.physical(lead).unwrap_or_default();
        if let Some(snr) = opts.snr_db
            && let Some(amp) = crate::noise::qrs_amplitude(&x, &reference, fs)
        {
            crate::noise::add_noise(
                &mut x,
                fs,
                amp,
                snr,
                noise_seed(opts.noise_seed, name, lead),
            );
        }
        signals.push(x);
    }
    let bad = |e: String| WfdbError::Signal {
        path: db.join(name),
        error: crate::wfdb::SignalError::Inconsistent(e),
    };
    let mut beats = Vec::new();
    if opts.fuse {
        let mut det = MultiLeadDetector::new(fs, signals.len()).map_err(|e| bad(e.to_string()))?;
        let views: Vec<&[f64]> = signals.iter().map(Vec::as_slice).collect();
        det.push(&views, &mut beats)
            .map_err(|e| bad(e.to_string()))?;
        det.finish(&mut beats);
    } else if opts.gate {
        let mut det = LeadMonitor::new(fs).map_err(|e| bad(e.to_string()))?;
        let (mut seconds, mut changes) = (Vec::new(), Vec::new());
        for x in &signals {
            det.push(x, &mut beats, &mut seconds, &mut changes);
        }
        det.finish(&mut beats);
    } else {
        let mut det =
            Detector::with_config(DetectorConfig::new(fs)).map_err(|e| bad(e.to_string()))?;
        for x in &signals {
            det.push(x, &mut beats);
        }
        det.finish(&mut beats);
    }
    let len = signals.first().map_or(0, Vec::len);
    let detected: Vec<u64> = beats.iter().map(|b| b.sample).collect();
    let max_latency = beats
        .iter()
        .map(|b| b.reported_at.saturating_sub(b.sample))
        .max()
        .unwrap_or(0);
    let start = (opts.start * fs).round() as u64;
    let window = (opts.window * fs).round() as u64;
    Ok(RecordEval {
        record: name.to_string(),
        counts: match_beats(&reference, &detected, window, start, len as u64),
        max_latency_ms: max_latency as f64 * 1000.0 / fs,
        samples: len as u64,
    })
}

/// True positives, false positives and false negatives, with derived figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Matched reference beats.
    pub tp: u64,
    /// Detections with no reference beat.
    pub fp: u64,
    /// Reference beats with no detection.
    #[serde(rename = "fn")]
    pub fn_: u64,
}

impl Counts {
    /// Sensitivity TP / (TP + FN) as a fraction (1 when there is no reference beat).
    pub fn se(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// Positive predictivity TP / (TP + FP) as a fraction (1 when nothing was detected).
    pub fn ppv(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// Matches sorted `detected` against sorted `reference` sample times within
/// `window` samples, counting only events in `[start, end)`.
pub fn match_beats(
    reference: &[u64],
    detected: &[u64],
    window: u64,
    start: u64,
    end: u64,
) -> Counts {
    let in_range = |t: &&u64| **t >= start && **t < end;
    let r: Vec<u64> = reference.iter().filter(in_range).copied().collect();
    // Detections just outside the range may legitimately match a reference beat inside it.
    let d: Vec<u64> = detected
        .iter()
        .filter(|t| **t + window >= start && **t < end.saturating_add(window))
        .copied()
        .collect();
    // Candidate pairs (distance, ref index, det index) within the window.
    let mut pairs: Vec<(u64, usize, usize)> = Vec::new();
    let mut j0 = 0usize;
    for (i, &rt) in r.iter().enumerate() {
        while d.get(j0).is_some_and(|&dt| dt + window < rt) {
            j0 += 1;
        }
        let mut j = j0;
        while let Some(&dt) = d.get(j) {
            if dt > rt + window {
                break;
            }
            pairs.push((dt.abs_diff(rt), i, j));
            j += 1;
        }
    }
    pairs.sort_unstable();
    let mut r_used = vec![false; r.len()];
    let mut d_used = vec![false; d.len()];
    let mut tp = 0;
    for (_, i, j) in pairs {
        if let (Some(ru @ false), Some(du @ false)) = (r_used.get_mut(i), d_used.get_mut(j)) {
            *ru = true;
            *du = true;
            tp += 1;
        }
    }
    // Unmatched detections outside the range are not counted.
    let fp = d
        .iter()
        .zip(&d_used)
        .filter(|(t, used)| !**used && **t >= start && **t < end)
        .count() as u64;
    Counts {
        tp,
        fp,
        fn_: r.len() as u64 - tp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_window() {
        let r = [100, 500, 900, 1300];
        let d = [110, 520, 960, 1000, 1301];
        let c = match_beats(&r, &d, 54, 0, 2000);
        assert_eq!(
            c,
            Counts {
                tp: 3,
                fp: 2,
                fn_: 1
            }
        );
        assert!((c.se() - 0.75).abs() < 1e-12);
        assert!((c.ppv() - 0.6).abs() < 1e-12);
    }

    #[test]
    fn closest_pair_wins_and_no_double_match() {
        // One detection between two reference beats may match only one.
        let c = match_beats(&[100, 150], &[126], 54, 0, 1000);
        assert_eq!(
            c,
            Counts {
                tp: 1,
                fp: 0,
                fn_: 1
            }
        );
        let c = match_beats(&[100], &[60, 95, 140], 54, 0, 1000);
        assert_eq!(
            c,
            Counts {
                tp: 1,
                fp: 2,
                fn_: 0
            }
        );
    }

    #[test]
    fn start_excludes_learning_period() {
        let c = match_beats(&[10, 20, 500], &[12, 30, 498], 5, 100, 1000);
        assert_eq!(
            c,
            Counts {
                tp: 1,
                fp: 0,
                fn_: 0
            }
        );
        // A detection just before `start` may match the first reference beat after it.
        let c = match_beats(&[102], &[98], 5, 100, 1000);
        assert_eq!(
            c,
            Counts {
                tp: 1,
                fp: 0,
                fn_: 0
            }
        );
    }

    #[test]
    fn empty_inputs() {
        assert_eq!(match_beats(&[], &[], 5, 0, 10), Counts::default());
        assert_eq!(match_beats(&[1, 2], &[], 5, 0, 10).se(), 0.0);
        assert_eq!(match_beats(&[], &[1], 5, 0, 10).ppv(), 0.0);
    }
}

/// Scores of the AF detector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Confusion {
    /// AF called AF.
    pub tp: u64,
    /// Not-AF called AF.
    pub fp: u64,
    /// Not-AF called not-AF.
    pub tn: u64,
    /// AF called not-AF.
    #[serde(rename = "fn")]
    pub fn_: u64,
}

impl Confusion {
    /// Adds one decision.
    pub fn add(&mut self, truth: bool, predicted: bool) {
        match (truth, predicted) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (false, false) => self.tn += 1,
            (true, false) => self.fn_ += 1,
        }
    }

    /// Sensitivity.
    pub fn se(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// Specificity.
    pub fn sp(&self) -> f64 {
        ratio(self.tn, self.tn + self.fp)
    }

    /// F1 of the AF class, 2·TP / (2·TP + FP + FN) (the Challenge 2017 F1 for class A).
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

impl std::ops::AddAssign for Confusion {
    fn add_assign(&mut self, o: Confusion) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.tn += o.tn;
        self.fn_ += o.fn_;
    }
}

fn overlap(intervals: &[(f64, f64)], a: f64, b: f64) -> f64 {
    intervals
        .iter()
        .map(|&(s, e)| (e.min(b) - s.max(a)).max(0.0))
        .sum()
}

fn detect_beat_times(rec: &Record, lead: usize) -> Result<(Vec<f64>, f64), String> {
    let fs = rec.fs();
    let signal = rec
        .physical(lead)
        .ok_or_else(|| format!("no signal {lead}"))?;
    let beats = crate::rpeak::detect(&signal, fs).map_err(|e| e.to_string())?;
    Ok((
        beats.iter().map(|b| b.sample as f64 / fs).collect(),
        signal.len() as f64 / fs,
    ))
}

/// AF score of one MIT-BIH-style record over fixed segments.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AfRecordEval {
    /// Record name.
    pub record: String,
    /// Segment decisions (flat in JSON: `tp`, `fp`, `tn`, `fn`).
    #[serde(flatten)]
    pub segments: Confusion,
    /// Detected AF episodes (onset, offset) in seconds.
    pub episodes: Vec<(f64, f64)>,
}

/// Scores AF detection on a record with `(AFIB` rhythm annotations: the
/// record is cut into `segment`-second pieces; a piece is AF in the
/// reference (or the detection) when more than half of it lies in an AFIB
/// episode of the reference (or of the detector's output).
pub fn evaluate_af_record(
    db: &Path,
    name: &str,
    segment: f64,
    cfg: &crate::rhythm::RhythmConfig,
) -> Result<AfRecordEval, WfdbError> {
    evaluate_af_record_with(db, name, segment, cfg, ReadOptions::default())
}

/// Which RR intervals are AF evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AfEvidence {
    /// Intervals next to ectopic beats left out (beats classified by the
    /// model trained without the record): what `aorta eval af` scores.
    #[default]
    WithoutEctopy,
    /// Every interval between detected beats, as the live worker's
    /// [`crate::rhythm::RhythmMonitor::push_beat`] still uses them.
    EveryInterval,
}

/// [`evaluate_af_record`] reading the record with `read`.
pub fn evaluate_af_record_with(
    db: &Path,
    name: &str,
    segment: f64,
    cfg: &crate::rhythm::RhythmConfig,
    read: ReadOptions,
) -> Result<AfRecordEval, WfdbError> {
    evaluate_af_record_from(db, name, segment, cfg, read, AfEvidence::default())
}

/// [`evaluate_af_record_with`] with the AF evidence chosen.
pub fn evaluate_af_record_from(
    db: &Path,
    name: &str,
    segment: f64,
    cfg: &crate::rhythm::RhythmConfig,
    read: ReadOptions,
    evidence: AfEvidence,
) -> Result<AfRecordEval, WfdbError> {
    let rec = Record::read_with(db.join(name), read)?;
    let fs = rec.fs();
    let (events, duration) = match evidence {
        AfEvidence::WithoutEctopy => record_rhythm_events(&rec, db, name, cfg)?,
        AfEvidence::EveryInterval => {
            let (times, duration) = detect_beat_times(&rec, 0).map_err(|e| WfdbError::Signal {
                path: db.join(name),
                error: crate::wfdb::SignalError::Inconsistent(e),
            })?;
            let mut mon = crate::rhythm::RhythmMonitor::new(*cfg);
            let mut events = Vec::new();
            for &t in &times {
                mon.push_beat(t, &mut events);
            }
            mon.finish(duration, &mut events);
            (events, duration)
        }
    };
    score_af_events(db, name, fs, duration, segment, &events)
}

/// Scores the AF episodes of `events` (a monitor's events over record
/// `name`, times in seconds from its start; `duration` seconds long at
/// `fs` Hz) over `segment`-second pieces against the record's `(AFIB`
/// annotations, as [`evaluate_af_record`] does with its own events.
pub fn score_af_events(
    db: &Path,
    name: &str,
    fs: f64,
    duration: f64,
    segment: f64,
    events: &[crate::rhythm::RhythmEvent],
) -> Result<AfRecordEval, WfdbError> {
    let episodes = crate::rhythm::af_episodes(events);
    // Reference AFIB intervals from rhythm-change annotations.
    let anns = read_annotations(db.join(format!("{name}.atr")))?;
    let mut truth = Vec::new();
    let mut open: Option<f64> = None;
    for a in anns.iter().filter(|a| a.rhythm().is_some()) {
        let t = a.sample as f64 / fs;
        let is_af = a.rhythm() == Some("AFIB");
        match (open, is_af) {
            (None, true) => open = Some(t),
            (Some(s), false) => {
                truth.push((s, t));
                open = None;
            }
            _ => {}
        }
    }
    if let Some(s) = open {
        truth.push((s, duration));
    }
    let mut c = Confusion::default();
    let mut a = 0.0;
    while a + segment <= duration {
        let b = a + segment;
        c.add(
            overlap(&truth, a, b) > segment / 2.0,
            overlap(&episodes, a, b) > segment / 2.0,
        );
        a = b;
    }
    Ok(AfRecordEval {
        record: name.to_string(),
        segments: c,
        episodes,
    })
}

/// The rhythm events of a record's first lead (R peaks detected, beats
/// classified by the model trained without the record, then the
/// [`crate::rhythm::RhythmMonitor`] with `cfg`) and the record's duration,
/// seconds.
pub fn rhythm_events(
    db: &Path,
    name: &str,
    cfg: &crate::rhythm::RhythmConfig,
) -> Result<(Vec<crate::rhythm::RhythmEvent>, f64), WfdbError> {
    let rec = Record::read_with(db.join(name), ReadOptions::default())?;
    record_rhythm_events(&rec, db, name, cfg)
}

fn record_rhythm_events(
    rec: &Record,
    db: &Path,
    name: &str,
    cfg: &crate::rhythm::RhythmConfig,
) -> Result<(Vec<crate::rhythm::RhythmEvent>, f64), WfdbError> {
    // Beats classified by the model that never saw this record, so that
    // the AF evidence leaves out the intervals next to ectopic beats.
    let fs = rec.fs();
    let err = |e: String| WfdbError::Signal {
        path: db.join(name),
        error: crate::wfdb::SignalError::Inconsistent(e),
    };
    let signal = rec.physical(0).ok_or_else(|| err("no signal 0".into()))?;
    let beats = crate::beats::classify(&signal, fs, crate::beats::model::held_out(name))
        .map_err(|e| err(e.to_string()))?;
    let duration = signal.len() as f64 / fs;
    Ok((
        crate::rhythm_eval::classified_events(&beats, fs, duration, cfg),
        duration,
    ))
}

/// Classifies one short recording (e.g. a PhysioNet/CinC 2017 strip) as AF or
/// not from the RR intervals of the detected beats. Recordings with fewer
/// than 9 beats are called not-AF.
pub fn classify_af_recording(
    db: &Path,
    name: &str,
    cfg: &crate::rhythm::RhythmConfig,
) -> Result<bool, WfdbError> {
    let rec = Record::read_with(db.join(name), crate::wfdb::ReadOptions::unverified())?;
    let (times, _) = detect_beat_times(&rec, 0).map_err(|e| WfdbError::Signal {
        path: db.join(name),
        error: crate::wfdb::SignalError::Inconsistent(e),
    })?;
    let rr: Vec<f64> = times
        .iter()
        .zip(times.iter().skip(1))
        .map(|(a, b)| b - a)
        .collect();
    Ok(crate::rhythm::classify_af(&rr, cfg).unwrap_or(false))
}

/// Why a database could not be scored at all (one record that fails is a
/// [`RecordFailure`] in the report instead, and the batch goes on).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// The database's `RECORDS` list cannot be read.
    #[error(
        "cannot read {} (pass --record NAME or a database directory)",
        path.display()
    )]
    RecordList {
        /// The `RECORDS` file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// None of the records to score has a beat-annotation file.
    #[error(
        "{}: no beat annotations: none of its {records} records to score has a NAME.atr file; eval rpeaks needs reference beats (a database such as mitdb); for one rhythm label per recording (REFERENCE.csv) use eval af",
        db.display()
    )]
    NoBeatAnnotations {
        /// The database.
        db: PathBuf,
        /// Records looked at.
        records: usize,
    },
    /// The database's `REFERENCE.csv` cannot be read.
    #[error("reading {}", path.display())]
    Reference {
        /// The `REFERENCE.csv` file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `REFERENCE.csv` line is not `record,label`.
    #[error("{}: line {line}: expected `record,label`", path.display())]
    ReferenceLine {
        /// The `REFERENCE.csv` file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
}

/// A record of a database run that could not be scored.
#[derive(Debug)]
pub struct RecordFailure {
    /// Record name.
    pub record: String,
    /// What went wrong.
    pub error: WfdbError,
}

/// Record names: `explicit` when it is not empty (a name given with one of
/// the record's files, `100.dat`, is the record `100`), else the database's
/// records ([`crate::wfdb::database_records`]: the lines of `DB/RECORDS`, or
/// without one its `.hea` files, sorted).
pub fn record_list(db: &Path, explicit: &[String]) -> Result<Vec<String>, EvalError> {
    if !explicit.is_empty() {
        // A record named with one of its files (`100.dat`, `100.hea`) is the
        // record `100`, by the rule of every reader.
        return Ok(explicit
            .iter()
            .map(|n| {
                crate::wfdb::RecordPath::resolve(db.join(n))
                    .ok()
                    .and_then(|at| {
                        at.base()
                            .strip_prefix(db)
                            .ok()
                            .map(|p| p.to_string_lossy().into_owned())
                    })
                    .unwrap_or_else(|| n.clone())
            })
            .collect());
    }
    crate::wfdb::database_records(db).map_err(|source| EvalError::RecordList {
        path: db.join("RECORDS"),
        source,
    })
}

/// Checks that at least one of `names` has a beat-annotation file
/// (`DB/NAME.atr`) before a database is scored against reference beats.
pub fn check_beat_annotations(db: &Path, names: &[String]) -> Result<(), EvalError> {
    if names.iter().any(|n| db.join(format!("{n}.atr")).is_file()) {
        Ok(())
    } else {
        Err(EvalError::NoBeatAnnotations {
            db: db.to_path_buf(),
            records: names.len(),
        })
    }
}

/// Runs `f` on every record; a record that fails is kept as a
/// [`RecordFailure`] and the batch goes on.
fn each_record<T: Send>(
    names: &[String],
    f: impl Fn(&str) -> Result<T, WfdbError> + Sync,
) -> (Vec<T>, Vec<RecordFailure>) {
    let mut rows = Vec::with_capacity(names.len());
    let mut failures = Vec::new();
    for (name, r) in names.iter().zip(parallel_map(names, |n| f(n))) {
        match r {
            Ok(r) => rows.push(r),
            Err(error) => failures.push(RecordFailure {
                record: name.clone(),
                error,
            }),
        }
    }
    (rows, failures)
}

/// `items.iter().map(f).collect()`, run on as many threads as the process
/// may use (`std::thread::available_parallelism`, which follows CPU
/// affinity and cgroup quotas), each thread taking the next unclaimed item;
/// the results come back in the order of `items` whatever the threads'
/// timing, so reports are deterministic. One item per thread is in flight.
/// A panic in `f` is re-raised on the caller's thread.
pub fn parallel_map<I: Sync, T: Send>(items: &[I], f: impl Fn(&I) -> T + Sync) -> Vec<T> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<T>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        done.push((i, f(item)));
                    }
                    done
                })
            })
            .collect();
        for w in workers {
            match w.join() {
                Ok(done) => {
                    for (i, v) in done {
                        if let Some(slot) = slots.get_mut(i) {
                            *slot = Some(v);
                        }
                    }
                }
                Err(payload) => std::panic::resume_unwind(payload),
            }
        }
    });
    // Every index below items.len() was claimed by exactly one thread.
    slots.into_iter().flatten().collect()
}

/// Beat-detection counts with sensitivity and positive predictivity
/// (fractions), as the reports print them.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BeatScore {
    /// Matched reference beats.
    pub tp: u64,
    /// Detections with no reference beat.
    pub fp: u64,
    /// Reference beats with no detection.
    #[serde(rename = "fn")]
    pub fn_: u64,
    /// Sensitivity, [`Counts::se`].
    pub se: f64,
    /// Positive predictivity, [`Counts::ppv`].
    pub ppv: f64,
}

impl From<Counts> for BeatScore {
    fn from(c: Counts) -> Self {
        BeatScore {
            tp: c.tp,
            fp: c.fp,
            fn_: c.fn_,
            se: c.se(),
            ppv: c.ppv(),
        }
    }
}

/// One record's row of an [`RpeakReport`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RpeakRow {
    /// Record name.
    pub record: String,
    /// Its counts and figures.
    #[serde(flatten)]
    pub score: BeatScore,
    /// Largest report latency after the R-peak, in milliseconds.
    pub max_latency_ms: f64,
}

/// The R-peak detector scored over a database (EC57 beat-by-beat).
#[derive(Debug, serde::Serialize)]
pub struct RpeakReport {
    /// One row per record scored.
    pub records: Vec<RpeakRow>,
    /// Gross figures: the counts of every record summed.
    pub gross: BeatScore,
    /// Matching window in seconds.
    pub window_s: f64,
    /// Seconds at the start of each record not scored.
    pub start_s: f64,
    /// Signal (lead) index analysed (ignored when `fused`).
    pub lead: usize,
    /// Every lead fused ([`crate::monitor::MultiLeadDetector`]).
    pub fused: bool,
    /// Beats gated by signal quality ([`crate::monitor::LeadMonitor`]).
    pub gated: bool,
    /// SNR of the [`crate::noise`] mix added, dB (`null`: clean signal).
    pub snr_db: Option<f64>,
    /// Seed of the noise mix (`null` when no noise was added).
    pub noise_seed: Option<u64>,
    /// Records that could not be scored (not in the JSON).
    #[serde(skip)]
    pub failures: Vec<RecordFailure>,
}

/// Scores the R-peak detector on the records `names` of database `db`.
pub fn score_rpeaks(db: &Path, names: &[String], opts: &EvalOptions) -> RpeakReport {
    let (rows, failures) = each_record(names, |name| evaluate_record(db, name, opts));
    let mut gross = Counts::default();
    for r in &rows {
        gross += r.counts;
    }
    RpeakReport {
        records: rows
            .into_iter()
            .map(|r| RpeakRow {
                record: r.record,
                score: r.counts.into(),
                max_latency_ms: r.max_latency_ms,
            })
            .collect(),
        gross: gross.into(),
        window_s: opts.window,
        start_s: opts.start,
        lead: opts.lead,
        fused: opts.fuse,
        gated: opts.gate || opts.fuse,
        snr_db: opts.snr_db,
        noise_seed: opts.snr_db.map(|_| opts.noise_seed),
        failures,
    }
}

/// AF-detector decisions with sensitivity, specificity and F1 of the AF class.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct AfScore {
    /// Sensitivity, [`Confusion::se`].
    pub se: f64,
    /// Specificity, [`Confusion::sp`].
    pub sp: f64,
    /// F1 of the AF class, [`Confusion::f1`].
    pub f1_af: f64,
    /// AF called AF.
    pub tp: u64,
    /// Not-AF called AF.
    pub fp: u64,
    /// Not-AF called not-AF.
    pub tn: u64,
    /// AF called not-AF.
    #[serde(rename = "fn")]
    pub fn_: u64,
}

impl From<Confusion> for AfScore {
    fn from(c: Confusion) -> Self {
        AfScore {
            se: c.se(),
            sp: c.sp(),
            f1_af: c.f1(),
            tp: c.tp,
            fp: c.fp,
            tn: c.tn,
            fn_: c.fn_,
        }
    }
}

/// One recording of a `REFERENCE.csv` database and the detector's call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AfRecordingRow {
    /// Record name.
    pub record: String,
    /// Reference label (`A` is AF).
    pub label: String,
    /// The detector called it AF.
    pub af: bool,
}

/// What an [`AfReport`] scored: whole recordings or fixed segments (JSON
/// key `unit`: `recording` or `segment`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "unit", rename_all = "lowercase")]
pub enum AfUnits {
    /// Short recordings against `REFERENCE.csv` (PhysioNet/CinC 2017).
    Recording {
        /// One row per recording.
        records: Vec<AfRecordingRow>,
    },
    /// Fixed segments of records with rhythm annotations.
    Segment {
        /// Segment length in seconds.
        segment_s: f64,
        /// One row per record.
        records: Vec<AfRecordEval>,
    },
}

/// The AF detector scored over a database.
#[derive(Debug, serde::Serialize)]
pub struct AfReport {
    /// Decisions summed over every recording or segment.
    #[serde(flatten)]
    pub score: AfScore,
    /// The unit scored and the rows.
    #[serde(flatten)]
    pub units: AfUnits,
    /// Records that could not be scored (not in the JSON).
    #[serde(skip)]
    pub failures: Vec<RecordFailure>,
}

/// Scores the AF detector on database `db`: when it holds `REFERENCE.csv`,
/// each listed recording (those in `records`, or all) is classified whole
/// ([`classify_af_recording`]); otherwise each record (`records`, or
/// `DB/RECORDS`) is scored over `segment`-second pieces
/// ([`evaluate_af_record`]).
pub fn score_af(
    db: &Path,
    records: &[String],
    segment: f64,
    cfg: &crate::rhythm::RhythmConfig,
) -> Result<AfReport, EvalError> {
    score_af_with(db, records, segment, cfg, ReadOptions::default())
}

/// [`score_af`] reading annotated records with `read` (recordings scored
/// against `REFERENCE.csv` are read without verification, as before: the
/// PhysioNet/CinC 2017 headers carry placeholder initial values).
pub fn score_af_with(
    db: &Path,
    records: &[String],
    segment: f64,
    cfg: &crate::rhythm::RhythmConfig,
    read: ReadOptions,
) -> Result<AfReport, EvalError> {
    let mut total = Confusion::default();
    let reference = db.join("REFERENCE.csv");
    if reference.is_file() {
        let text = std::fs::read_to_string(&reference).map_err(|source| EvalError::Reference {
            path: reference.clone(),
            source,
        })?;
        let mut listed = Vec::new();
        for (lno, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let Some((name, label)) = line.trim().split_once(',') else {
                return Err(EvalError::ReferenceLine {
                    path: reference,
                    line: lno + 1,
                });
            };
            if !records.is_empty() && !records.iter().any(|r| r == name) {
                continue;
            }
            listed.push((name, label));
        }
        let decided = parallel_map(&listed, |(name, _)| classify_af_recording(db, name, cfg));
        let mut rows = Vec::new();
        let mut failures = Vec::new();
        for ((name, label), r) in listed.into_iter().zip(decided) {
            match r {
                Ok(af) => {
                    total.add(label == "A", af);
                    rows.push(AfRecordingRow {
                        record: name.to_string(),
                        label: label.to_string(),
                        af,
                    });
                }
                Err(error) => failures.push(RecordFailure {
                    record: name.to_string(),
                    error,
                }),
            }
        }
        return Ok(AfReport {
            score: total.into(),
            units: AfUnits::Recording { records: rows },
            failures,
        });
    }
    let names = record_list(db, records)?;
    let (rows, failures) = each_record(&names, |name| {
        evaluate_af_record_with(db, name, segment, cfg, read)
    });
    Ok(af_segment_report(rows, failures, segment))
}

/// The events of one record for [`score_af_records_from`]: the rhythm
/// events (seconds from the record's start), the sampling rate and the
/// record's duration, seconds.
pub type RecordEvents = (Vec<crate::rhythm::RhythmEvent>, f64, f64);

/// Scores AF over `segment`-second pieces of each annotated record
/// (`records`, or `DB/RECORDS`) with the events `events_of` gives for it
/// (e.g. the live worker's operator run over the record).
pub fn score_af_records_from(
    db: &Path,
    records: &[String],
    segment: f64,
    events_of: impl Fn(&str) -> Result<RecordEvents, WfdbError> + Sync,
) -> Result<AfReport, EvalError> {
    let names = record_list(db, records)?;
    let (rows, failures) = each_record(&names, |name| {
        let (events, fs, duration) = events_of(name)?;
        score_af_events(db, name, fs, duration, segment, &events)
    });
    Ok(af_segment_report(rows, failures, segment))
}

fn af_segment_report(
    rows: Vec<AfRecordEval>,
    failures: Vec<RecordFailure>,
    segment: f64,
) -> AfReport {
    let mut total = Confusion::default();
    for r in &rows {
        total += r.segments;
    }
    AfReport {
        score: total.into(),
        units: AfUnits::Segment {
            segment_s: segment,
            records: rows,
        },
        failures,
    }
}

#[cfg(test)]
mod report_tests {
    use super::*;

    #[test]
    fn parallel_map_keeps_the_input_order() {
        // Items of very different cost finish out of order on the threads.
        let items: Vec<u64> = (0..64).map(|i| (i * 7919) % 97).collect();
        let got = parallel_map(&items, |&k| {
            let mut x = k;
            for _ in 0..k * 2000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            (k, x)
        });
        let want: Vec<u64> = items.clone();
        assert_eq!(got.iter().map(|p| p.0).collect::<Vec<_>>(), want);
        assert!(parallel_map(&Vec::<u8>::new(), |&b| b).is_empty());
    }

    #[test]
    fn rpeak_report_json_keys_in_order() {
        let report = RpeakReport {
            records: vec![RpeakRow {
                record: "100".into(),
                score: Counts {
                    tp: 3,
                    fp: 1,
                    fn_: 1,
                }
                .into(),
                max_latency_ms: 250.0,
            }],
            gross: Counts {
                tp: 3,
                fp: 1,
                fn_: 1,
            }
            .into(),
            window_s: 0.15,
            start_s: 300.0,
            lead: 0,
            fused: false,
            gated: true,
            snr_db: Some(0.0),
            noise_seed: Some(1),
            failures: Vec::new(),
        };
        assert_eq!(
            serde_json::to_string(&report).unwrap(),
            concat!(
                r#"{"records":[{"record":"100","tp":3,"fp":1,"fn":1,"se":0.75,"ppv":0.75,"max_latency_ms":250.0}],"#,
                r#""gross":{"tp":3,"fp":1,"fn":1,"se":0.75,"ppv":0.75},"window_s":0.15,"start_s":300.0,"lead":0,"#,
                r#""fused":false,"gated":true,"snr_db":0.0,"noise_seed":1}"#
            )
        );
    }

    #[test]
    fn af_report_json_keys_in_order() {
        let mut c = Confusion::default();
        c.add(true, true);
        c.add(false, false);
        let recordings = AfReport {
            score: c.into(),
            units: AfUnits::Recording {
                records: vec![AfRecordingRow {
                    record: "A00004".into(),
                    label: "A".into(),
                    af: true,
                }],
            },
            failures: Vec::new(),
        };
        assert_eq!(
            serde_json::to_string(&recordings).unwrap(),
            concat!(
                r#"{"se":1.0,"sp":1.0,"f1_af":1.0,"tp":1,"fp":0,"tn":1,"fn":0,"unit":"recording","#,
                r#""records":[{"record":"A00004","label":"A","af":true}]}"#
            )
        );
        let segments = AfReport {
            score: c.into(),
            units: AfUnits::Segment {
                segment_s: 30.0,
                records: vec![AfRecordEval {
                    record: "203".into(),
                    segments: c,
                    episodes: vec![(1.5, 2.5)],
                }],
            },
            failures: Vec::new(),
        };
        assert_eq!(
            serde_json::to_string(&segments).unwrap(),
            concat!(
                r#"{"se":1.0,"sp":1.0,"f1_af":1.0,"tp":1,"fp":0,"tn":1,"fn":0,"unit":"segment","#,
                r#""segment_s":30.0,"records":[{"record":"203","tp":1,"fp":0,"tn":1,"fn":0,"#,
                r#""episodes":[[1.5,2.5]]}]}"#
            )
        );
    }

    #[test]
    fn record_list_names_records_file() {
        let dir = std::env::temp_dir().join(format!("aorta-eval-list-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = record_list(&dir.join("missing"), &[]).unwrap_err();
        assert!(err.to_string().contains("RECORDS"), "{err}");
        std::fs::write(dir.join("RECORDS"), "100\n# note\n\n 101 \n").unwrap();
        assert_eq!(record_list(&dir, &[]).unwrap(), vec!["100", "101"]);
        assert_eq!(record_list(&dir, &["7".into()]).unwrap(), vec!["7"]);
    }
}
