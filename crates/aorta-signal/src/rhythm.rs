//! Real-time rhythm analysis on beat times: atrial fibrillation episodes,
//! brady-/tachycardia and pauses; and, from classified beats
//! ([`RhythmMonitor::push_classified`], classes from [`crate::beats`]),
//! ventricular tachycardia, ventricular runs, bigeminy and trigeminy, with
//! the RR intervals next to ectopic beats left out of the AF evidence
//! (docs/signal.md, "Rhythms from beat classes").
//!
//! # Atrial fibrillation
//!
//! AF is "irregularly irregular": its RR intervals vary a lot *and* without
//! pattern. Sinus rhythm with ectopic beats varies too, but in patterns
//! (bigeminy, trigeminy, a premature beat and its compensatory pause), and
//! sinus arrhythmia varies smoothly. Over a sliding window of RR intervals
//! (default 32) the detector computes two figures:
//!
//! - **patterned irregularity** `minlag = min over lag ∈ {1,2,3} of
//!   median |RR[i] − RR[i−lag]| / median RR` — small when the rhythm repeats
//!   with a period of up to three beats (regular, bigeminy, trigeminy) or when
//!   most beats are regular with isolated ectopics; large in AF;
//! - **whiteness** `RMSSD / SDNN` — about √2 for uncorrelated intervals (AF),
//!   well below 1 for smooth sinus arrhythmia, near 2 for alternating
//!   patterns.
//!
//! A window is unreadable rather than AF when more than 10 % of its intervals
//! are shorter than half the median (extra detections from noise) or when
//! `minlag > 0.4` (more erratic than ventricular response in AF). A beat is
//! AF evidence when `0.07 < minlag ≤ 0.4`, `1.1 < RMSSD/SDNN < 1.7` and the
//! window is readable. An episode starts after `enter` (default 16)
//! consecutive evidence beats and ends after `exit` (default 16) consecutive
//! non-evidence beats; onset and
//! offset are dated back to the first beat of the run that decided them.
//! These are RR-irregularity features in the family of Tateno & Glass (2001)
//! and Dash et al. (2009, "Automatic real time detection of atrial
//! fibrillation", Ann. Biomed. Eng. 37:1701), with the lag-minimum added to
//! keep patterned ventricular ectopy from reading as AF.
//!
//! # Rate and pauses
//!
//! Bradycardia and tachycardia episodes use the mean heart rate of the last
//! 8 intervals (defaults < 50 bpm and > 120 bpm, monitor-alarm levels), with
//! hysteresis and an alarm delay so that a rate hovering at a limit does not
//! flicker: a tachycardia ends only below 110 bpm, a bradycardia only above
//! 55 bpm, and either state changes only after the new state has held for
//! 10 s (dated back to the beat where it began to hold); a
//! pause (asystole) is an interval ≥ 3 s, reported by [`RhythmMonitor::tick`]
//! as soon as 3 s pass without a beat, not only when the next beat arrives.

use std::collections::VecDeque;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum RhythmEventKind {
    /// Atrial fibrillation began.
    AfOnset,
    /// Atrial fibrillation ended.
    AfOffset,
    /// Heart rate fell below the bradycardia limit.
    BradyOnset,
    /// Heart rate rose back above the bradycardia limit.
    BradyOffset,
    /// Heart rate rose above the tachycardia limit.
    TachyOnset,
    /// Heart rate fell back below the tachycardia limit.
    TachyOffset,
    /// No beat for the pause limit: reported as soon as that much time has
    /// passed (see [`RhythmMonitor::tick`]), dated at the last beat.
    PauseOnset,
    /// A pause ended: the next beat came; dated at the last beat before it.
    Pause {
        /// Length of the pause, seconds.
        duration_s: f64,
    },
    /// The signal was lost (lead off, railed, gaps): no beats, no rhythm
    /// alarms until [`RhythmEventKind::SignalLostOffset`] (see [`crate::sqi`]).
    SignalLostOnset,
    /// The signal came back.
    SignalLostOffset,
    /// The signal became too noisy to analyse: no beats, no rhythm alarms.
    TooNoisyOnset,
    /// The signal became readable again.
    TooNoisyOffset,
    /// Ventricular fibrillation/flutter, detected from the signal.
    VfOnset,
    /// Ventricular fibrillation/flutter ended.
    VfOffset,
    /// Asystole: a readable flat line, detected from the signal.
    AsystoleOnset,
    /// Asystole ended.
    AsystoleOffset,
    /// Ventricular tachycardia began: at least [`RhythmConfig::vt_beats`]
    /// consecutive V beats faster than [`RhythmConfig::vt_bpm`]; dated at
    /// the first V beat of the run.
    VtOnset {
        /// Mean probability of V the classifier gave the run's beats.
        confidence: f64,
    },
    /// Ventricular tachycardia ended: [`RhythmConfig::vt_exit`] consecutive
    /// non-V beats; dated at the first of them.
    VtOffset,
    /// A run of at least [`RhythmConfig::vt_beats`] consecutive V beats no
    /// faster than [`RhythmConfig::vt_bpm`] (idioventricular) ended; dated at
    /// its first beat.
    VentricularRun {
        /// V beats in the run.
        beats: u32,
        /// Mean rate over the run, bpm.
        rate_bpm: f64,
        /// Mean probability of V of its beats.
        confidence: f64,
    },
    /// Ventricular bigeminy began (V after every other beat for
    /// [`RhythmConfig::pattern_cycles`] cycles); dated at the pattern's first beat.
    BigeminyOnset {
        /// Mean probability of V of the pattern's V beats.
        confidence: f64,
    },
    /// Ventricular bigeminy ended; dated at the first beat off the pattern.
    BigeminyOffset,
    /// Ventricular trigeminy began (V after every two beats for
    /// [`RhythmConfig::pattern_cycles`] cycles).
    TrigeminyOnset {
        /// Mean probability of V of the pattern's V beats.
        confidence: f64,
    },
    /// Ventricular trigeminy ended.
    TrigeminyOffset,
}

/// A rhythm event at a time (seconds from the start of the stream).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RhythmEvent {
    /// Event time, seconds.
    pub time_s: f64,
    /// What happened.
    #[serde(flatten)]
    pub kind: RhythmEventKind,
}

/// Parameters of [`RhythmMonitor`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RhythmConfig {
    /// RR intervals per AF analysis window.
    pub af_window: usize,
    /// Consecutive evidence beats that start an AF episode.
    pub af_enter: usize,
    /// Consecutive non-evidence beats that end it.
    pub af_exit: usize,
    /// `minlag` range `(lower, upper]` for AF evidence.
    pub af_minlag: (f64, f64),
    /// Largest fraction of intervals shorter than half the median in a readable window.
    pub af_short_fraction: f64,
    /// Allowed `RMSSD/SDNN` range for AF.
    pub af_whiteness: (f64, f64),
    /// Bradycardia below this rate, bpm.
    pub brady_bpm: f64,
    /// Tachycardia above this rate, bpm.
    pub tachy_bpm: f64,
    /// Intervals averaged for the rate.
    pub rate_beats: usize,
    /// Pause (asystole) at or above this interval, seconds.
    pub pause_s: f64,
    /// Hysteresis of the rate limits, bpm: a tachycardia ends only below
    /// `tachy_bpm − rate_hysteresis_bpm`, a bradycardia only above
    /// `brady_bpm + rate_hysteresis_bpm / 2`.
    #[serde(default = "default_rate_hysteresis_bpm")]
    pub rate_hysteresis_bpm: f64,
    /// A brady-/tachycardia starts or ends only when the new state has held
    /// this long, seconds (the alarm delay of bedside monitors); the event
    /// is dated at the beat where it began to hold.
    #[serde(default = "default_rate_hold_s")]
    pub rate_hold_s: f64,
    /// Consecutive V beats that make a ventricular run (and a VT when fast).
    #[serde(default = "default_vt_beats")]
    pub vt_beats: usize,
    /// A V run faster than this is ventricular tachycardia, bpm.
    #[serde(default = "default_vt_bpm")]
    pub vt_bpm: f64,
    /// Consecutive non-V beats that end a VT.
    #[serde(default = "default_vt_exit")]
    pub vt_exit: usize,
    /// Cycles of the bigeminy / trigeminy pattern that start the episode.
    #[serde(default = "default_pattern_cycles")]
    pub pattern_cycles: usize,
    /// Consecutive beats off the pattern that end a bigeminy / trigeminy.
    #[serde(default = "default_pattern_exit")]
    pub pattern_exit: usize,
    /// With classified beats, also leave RR intervals next to S beats out of
    /// the AF evidence (those next to V and F beats always are).
    #[serde(default)]
    pub af_drop_s: bool,
    /// Smallest fraction of the time an AF window spans that its clean
    /// intervals must cover (the rest left out next to ectopic beats).
    #[serde(default = "default_af_min_clean")]
    pub af_min_clean: f64,
}

fn default_af_min_clean() -> f64 {
    RhythmConfig::default().af_min_clean
}

fn default_vt_beats() -> usize {
    RhythmConfig::default().vt_beats
}
fn default_vt_bpm() -> f64 {
    RhythmConfig::default().vt_bpm
}
fn default_vt_exit() -> usize {
    RhythmConfig::default().vt_exit
}
fn default_pattern_cycles() -> usize {
    RhythmConfig::default().pattern_cycles
}
fn default_pattern_exit() -> usize {
    RhythmConfig::default().pattern_exit
}

/// Checkpoints written before the rate hysteresis read as the defaults.
fn default_rate_hysteresis_bpm() -> f64 {
    RhythmConfig::default().rate_hysteresis_bpm
}

/// Checkpoints written before the rate hold read as the default.
fn default_rate_hold_s() -> f64 {
    RhythmConfig::default().rate_hold_s
}

impl Default for RhythmConfig {
    fn default() -> Self {
        RhythmConfig {
            af_window: 32,
            af_enter: 16,
            af_exit: 16,
            af_minlag: (0.07, 0.4),
            af_short_fraction: 0.1,
            af_whiteness: (1.1, 1.7),
            brady_bpm: 50.0,
            tachy_bpm: 120.0,
            rate_beats: 8,
            pause_s: 3.0,
            rate_hysteresis_bpm: 10.0,
            rate_hold_s: 10.0,
            vt_beats: 3,
            vt_bpm: 100.0,
            vt_exit: 4,
            pattern_cycles: 4,
            pattern_exit: 8,
            af_drop_s: false,
            af_min_clean: 0.5,
        }
    }
}

/// AF features of a series of RR intervals (any unit).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AfFeatures {
    /// Patterned irregularity (see the module docs).
    pub minlag: f64,
    /// RMSSD / SDNN.
    pub whiteness: f64,
    /// Fraction of intervals shorter than half the median.
    pub short_fraction: f64,
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v.get(m).copied()
    } else {
        Some(0.5 * (v.get(m - 1)? + v.get(m)?))
    }
}

/// Computes the AF features of `rr`; `None` below 8 intervals or on
/// non-finite or non-positive input.
pub fn af_features(rr: &[f64]) -> Option<AfFeatures> {
    if rr.len() < 8 || rr.iter().any(|v| !v.is_finite() || *v <= 0.0) {
        return None;
    }
    let med = median(&mut rr.to_vec())?;
    let mut minlag = f64::INFINITY;
    let mut buf = Vec::with_capacity(rr.len());
    for lag in 1..=3 {
        buf.clear();
        buf.extend(
            rr.iter()
                .zip(rr.iter().skip(lag))
                .map(|(a, b)| (b - a).abs()),
        );
        minlag = minlag.min(median(&mut buf)? / med);
    }
    let n = rr.len() as f64;
    let mean = rr.iter().sum::<f64>() / n;
    let sdnn = (rr.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    let rmssd = (rr
        .iter()
        .zip(rr.iter().skip(1))
        .map(|(a, b)| (b - a).powi(2))
        .sum::<f64>()
        / (n - 1.0))
        .sqrt();
    let whiteness = if sdnn > 0.0 { rmssd / sdnn } else { 0.0 };
    let short_fraction = rr.iter().filter(|&&v| v < 0.5 * med).count() as f64 / n;
    Some(AfFeatures {
        minlag,
        whiteness,
        short_fraction,
    })
}

impl RhythmConfig {
    /// Whether features are AF evidence under this configuration.
    pub fn is_af(&self, f: &AfFeatures) -> bool {
        f.minlag > self.af_minlag.0
            && f.minlag <= self.af_minlag.1
            && f.whiteness > self.af_whiteness.0
            && f.whiteness < self.af_whiteness.1
            && f.short_fraction <= self.af_short_fraction
    }
}

/// Classifies a whole short recording's RR series as AF or not (for
/// recordings too short for episode tracking, e.g. 10–60 s strips).
pub fn classify_af(rr: &[f64], cfg: &RhythmConfig) -> Option<bool> {
    af_features(rr).map(|f| cfg.is_af(&f))
}

/// Streaming rhythm monitor. Feed beat times in seconds, in order.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RhythmMonitor {
    cfg: RhythmConfig,
    last_beat: Option<f64>,
    rr: VecDeque<f64>,
    /// Beat times of the current evidence / non-evidence run.
    run_start: Option<f64>,
    run_len: usize,
    in_af: bool,
    brady: bool,
    tachy: bool,
    /// Since when the rate has wanted the other brady / tachy state (the
    /// start of the run that may change it), seconds.
    #[serde(default)]
    brady_pending: Option<f64>,
    #[serde(default)]
    tachy_pending: Option<f64>,
    pause_reported: bool,
    /// RR intervals of the AF evidence: with classified beats, only those
    /// between two beats that are neither V nor F (nor S with `af_drop_s`).
    #[serde(default)]
    af_rr: VecDeque<f64>,
    /// End time of each interval of `af_rr`, seconds.
    #[serde(default)]
    af_rr_end: VecDeque<f64>,
    /// State of the beat-class rhythms (absent in older checkpoints).
    #[serde(default)]
    classes: ClassState,
}

/// The state of the rhythms read from beat classes.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct ClassState {
    /// Whether the previous beat was left out of the AF evidence.
    prev_excluded: bool,
    /// Recent beats, newest last: (time, is V, probability of V).
    recent: VecDeque<(f64, bool, f64)>,
    /// The current run of V beats: count, first and last time, sum of p(V).
    run: u32,
    run_first: f64,
    run_last: f64,
    run_p: f64,
    run_is_vt: bool,
    vt: bool,
    vt_quiet: usize,
    vt_quiet_since: f64,
    bigeminy: bool,
    bigeminy_off: usize,
    bigeminy_off_since: f64,
    trigeminy: bool,
    trigeminy_off: usize,
    trigeminy_off_since: f64,
}

impl RhythmMonitor {
    /// A monitor with `cfg`.
    pub fn new(cfg: RhythmConfig) -> RhythmMonitor {
        RhythmMonitor {
            cfg,
            last_beat: None,
            rr: VecDeque::with_capacity(cfg.af_window.max(cfg.rate_beats) + 1),
            run_start: None,
            run_len: 0,
            in_af: false,
            brady: false,
            tachy: false,
            brady_pending: None,
            tachy_pending: None,
            pause_reported: false,
            af_rr: VecDeque::with_capacity(cfg.af_window + 1),
            af_rr_end: VecDeque::with_capacity(cfg.af_window + 1),
            classes: ClassState::default(),
        }
    }

    /// True while a ventricular tachycardia is open.
    pub fn in_vt(&self) -> bool {
        self.classes.vt
    }

    /// Consumes one classified beat at `t_s` seconds (classes from
    /// [`crate::beats::BeatClassifier`], `p_v` its probability of V): the
    /// rate, pause and AF analysis of [`RhythmMonitor::push_beat`], with the
    /// RR intervals next to ectopic beats left out of the AF evidence, and
    /// ventricular tachycardia, ventricular runs, bigeminy and trigeminy.
    pub fn push_classified(
        &mut self,
        t_s: f64,
        class: crate::beats::BeatClass,
        p_v: f64,
        out: &mut Vec<RhythmEvent>,
    ) {
        if !t_s.is_finite() || self.last_beat.is_some_and(|l| t_s <= l) {
            return;
        }
        use crate::beats::BeatClass;
        let excluded = match class {
            BeatClass::V | BeatClass::F => true,
            BeatClass::S => self.cfg.af_drop_s,
            BeatClass::N | BeatClass::Q => false,
        };
        let clean = !excluded && !self.classes.prev_excluded;
        self.classes.prev_excluded = excluded;
        self.beat(t_s, clean, out);
        self.ventricular(t_s, class == BeatClass::V, p_v.clamp(0.0, 1.0), out);
    }

    fn ventricular(&mut self, t_s: f64, is_v: bool, p_v: f64, out: &mut Vec<RhythmEvent>) {
        let c = self.cfg;
        let st = &mut self.classes;
        let keep = (3 * c.pattern_cycles)
            .max(2 * c.pattern_cycles)
            .clamp(2, 64);
        st.recent.push_back((t_s, is_v, p_v));
        while st.recent.len() > keep {
            st.recent.pop_front();
        }
        let need = c.vt_beats.max(1) as u32;
        if is_v {
            if st.run == 0 {
                st.run_first = t_s;
                st.run_p = 0.0;
                st.run_is_vt = false;
            }
            st.run += 1;
            st.run_last = t_s;
            st.run_p += p_v;
            st.vt_quiet = 0;
            let rate = if st.run > 1 {
                60.0 * f64::from(st.run - 1) / (st.run_last - st.run_first).max(1e-9)
            } else {
                0.0
            };
            if st.run >= need && rate > c.vt_bpm {
                st.run_is_vt = true;
                if !st.vt {
                    st.vt = true;
                    out.push(RhythmEvent {
                        time_s: st.run_first,
                        kind: RhythmEventKind::VtOnset {
                            confidence: st.run_p / f64::from(st.run),
                        },
                    });
                }
            }
        } else {
            if st.run >= need && !st.run_is_vt {
                let rate = 60.0 * f64::from(st.run - 1) / (st.run_last - st.run_first).max(1e-9);
                out.push(RhythmEvent {
                    time_s: st.run_first,
                    kind: RhythmEventKind::VentricularRun {
                        beats: st.run,
                        rate_bpm: rate,
                        confidence: st.run_p / f64::from(st.run),
                    },
                });
            }
            st.run = 0;
            if st.vt {
                if st.vt_quiet == 0 {
                    st.vt_quiet_since = t_s;
                }
                st.vt_quiet += 1;
                if st.vt_quiet >= c.vt_exit.max(1) {
                    st.vt = false;
                    st.vt_quiet = 0;
                    out.push(RhythmEvent {
                        time_s: st.vt_quiet_since,
                        kind: RhythmEventKind::VtOffset,
                    });
                }
            }
        }
        let cycles = c.pattern_cycles.max(2);
        for period in [2usize, 3] {
            let n = period * cycles;
            let fits = st.recent.len() >= n && {
                let w: Vec<&(f64, bool, f64)> = st.recent.iter().rev().take(n).collect();
                // One V per period, at the same phase, the others not V.
                (0..period).any(|phase| {
                    w.iter()
                        .enumerate()
                        .all(|(i, b)| b.1 == (i % period == phase))
                })
            };
            let (on, off, since) = if period == 2 {
                (
                    &mut st.bigeminy,
                    &mut st.bigeminy_off,
                    &mut st.bigeminy_off_since,
                )
            } else {
                (
                    &mut st.trigeminy,
                    &mut st.trigeminy_off,
                    &mut st.trigeminy_off_since,
                )
            };
            if fits {
                *off = 0;
                if !*on {
                    *on = true;
                    let first = st
                        .recent
                        .get(st.recent.len().saturating_sub(n))
                        .map_or(t_s, |b| b.0);
                    let vs: Vec<f64> = st
                        .recent
                        .iter()
                        .rev()
                        .take(n)
                        .filter(|b| b.1)
                        .map(|b| b.2)
                        .collect();
                    let confidence = vs.iter().sum::<f64>() / vs.len().max(1) as f64;
                    let kind = if period == 2 {
                        RhythmEventKind::BigeminyOnset { confidence }
                    } else {
                        RhythmEventKind::TrigeminyOnset { confidence }
                    };
                    out.push(RhythmEvent {
                        time_s: first,
                        kind,
                    });
                }
            } else if *on {
                if *off == 0 {
                    *since = t_s;
                }
                *off += 1;
                if *off >= c.pattern_exit.max(1) {
                    *on = false;
                    *off = 0;
                    let kind = if period == 2 {
                        RhythmEventKind::BigeminyOffset
                    } else {
                        RhythmEventKind::TrigeminyOffset
                    };
                    out.push(RhythmEvent {
                        time_s: *since,
                        kind,
                    });
                }
            }
        }
    }

    /// True while an AF episode is open.
    pub fn in_af(&self) -> bool {
        self.in_af
    }

    /// Reports a pause while it is happening: call with the current stream
    /// time. The onset is dated at the last beat, so the events do not depend
    /// on when or how often this is called.
    pub fn tick(&mut self, now_s: f64, out: &mut Vec<RhythmEvent>) {
        if let Some(last) = self.last_beat
            && now_s - last >= self.cfg.pause_s
            && !self.pause_reported
        {
            self.pause_reported = true;
            out.push(RhythmEvent {
                time_s: last,
                kind: RhythmEventKind::PauseOnset,
            });
        }
    }

    /// Consumes one beat at `t_s` seconds. Out-of-order or non-finite times are ignored.
    pub fn push_beat(&mut self, t_s: f64, out: &mut Vec<RhythmEvent>) {
        if !t_s.is_finite() || self.last_beat.is_some_and(|l| t_s <= l) {
            return;
        }
        self.beat(t_s, true, out);
    }

    /// One beat; `clean`: its RR interval counts as AF evidence.
    fn beat(&mut self, t_s: f64, clean: bool, out: &mut Vec<RhythmEvent>) {
        self.tick(t_s, out);
        let Some(last) = self.last_beat.replace(t_s) else {
            return;
        };
        self.pause_reported = false;
        let rr = t_s - last;
        if rr >= self.cfg.pause_s {
            out.push(RhythmEvent {
                time_s: last,
                kind: RhythmEventKind::Pause { duration_s: rr },
            });
            // A pause breaks the series: AF and rate analysis restart after it.
            self.rr.clear();
            self.af_rr.clear();
            self.af_rr_end.clear();
            return;
        }
        self.rr.push_back(rr);
        let cap = self.cfg.af_window.max(self.cfg.rate_beats);
        while self.rr.len() > cap {
            self.rr.pop_front();
        }
        self.rate(t_s, out);
        if clean {
            self.af_rr.push_back(rr);
            self.af_rr_end.push_back(t_s);
            while self.af_rr.len() > self.cfg.af_window.max(1) {
                self.af_rr.pop_front();
            }
            while self.af_rr_end.len() > self.af_rr.len() {
                self.af_rr_end.pop_front();
            }
            self.af(t_s, out);
        }
    }

    fn rate(&mut self, t_s: f64, out: &mut Vec<RhythmEvent>) {
        let k = self.cfg.rate_beats.max(1);
        if self.rr.len() < k {
            return;
        }
        let mean_rr = self.rr.iter().rev().take(k).sum::<f64>() / k as f64;
        let bpm = 60.0 / mean_rr;
        let c = self.cfg;
        let hyst = c.rate_hysteresis_bpm.max(0.0);
        let brady = if self.brady {
            bpm < c.brady_bpm + hyst / 2.0
        } else {
            bpm < c.brady_bpm
        };
        let tachy = if self.tachy {
            bpm > c.tachy_bpm - hyst
        } else {
            bpm > c.tachy_bpm
        };
        let hold = c.rate_hold_s.max(0.0);
        if let Some(time_s) = held(brady != self.brady, &mut self.brady_pending, t_s, hold) {
            self.brady = brady;
            let kind = if brady {
                RhythmEventKind::BradyOnset
            } else {
                RhythmEventKind::BradyOffset
            };
            out.push(RhythmEvent { time_s, kind });
        }
        if let Some(time_s) = held(tachy != self.tachy, &mut self.tachy_pending, t_s, hold) {
            self.tachy = tachy;
            let kind = if tachy {
                RhythmEventKind::TachyOnset
            } else {
                RhythmEventKind::TachyOffset
            };
            out.push(RhythmEvent { time_s, kind });
        }
    }

    fn af(&mut self, t_s: f64, out: &mut Vec<RhythmEvent>) {
        let n = self.cfg.af_window;
        if self.af_rr.len() < n {
            return;
        }
        let window: Vec<f64> = self.af_rr.iter().rev().take(n).copied().collect();
        let Some(f) = af_features(&window) else {
            return;
        };
        // A window whose clean intervals cover too little of the time it
        // spans (ectopic beats left out) is not AF evidence.
        let covered: f64 = window.iter().sum();
        let span = match (self.af_rr_end.front(), self.af_rr.front()) {
            (Some(end), Some(rr)) if self.af_rr_end.len() == self.af_rr.len() => t_s - (end - rr),
            _ => covered,
        };
        let evidence = self.cfg.is_af(&f) && covered >= self.cfg.af_min_clean * span;
        if evidence != self.in_af {
            if self.run_len == 0 {
                self.run_start = Some(t_s);
            }
            self.run_len += 1;
            let need = if self.in_af {
                self.cfg.af_exit
            } else {
                self.cfg.af_enter
            };
            if self.run_len >= need {
                self.in_af = evidence;
                let time_s = self.run_start.unwrap_or(t_s);
                let kind = if evidence {
                    RhythmEventKind::AfOnset
                } else {
                    RhythmEventKind::AfOffset
                };
                out.push(RhythmEvent { time_s, kind });
                self.run_len = 0;
            }
        } else {
            self.run_len = 0;
        }
    }

    /// Closes open episodes at the end of the stream (time `end_s`).
    pub fn finish(&mut self, end_s: f64, out: &mut Vec<RhythmEvent>) {
        self.tick(end_s, out);
        self.brady_pending = None;
        self.tachy_pending = None;
        if self.in_af {
            self.in_af = false;
            out.push(RhythmEvent {
                time_s: end_s,
                kind: RhythmEventKind::AfOffset,
            });
        }
        if self.brady {
            self.brady = false;
            out.push(RhythmEvent {
                time_s: end_s,
                kind: RhythmEventKind::BradyOffset,
            });
        }
        if self.tachy {
            self.tachy = false;
            out.push(RhythmEvent {
                time_s: end_s,
                kind: RhythmEventKind::TachyOffset,
            });
        }
        let st = &mut self.classes;
        for (on, kind) in [
            (&mut st.vt, RhythmEventKind::VtOffset),
            (&mut st.bigeminy, RhythmEventKind::BigeminyOffset),
            (&mut st.trigeminy, RhythmEventKind::TrigeminyOffset),
        ] {
            if *on {
                *on = false;
                out.push(RhythmEvent {
                    time_s: end_s,
                    kind,
                });
            }
        }
    }
}

/// Whether a wanted change of state has held `hold` seconds at beat `t_s`:
/// `Some(time it began)` when it has (the run is then over), `None` while it
/// is still young or when no change is wanted (which ends the run).
fn held(wants_change: bool, pending: &mut Option<f64>, t_s: f64, hold: f64) -> Option<f64> {
    if !wants_change {
        *pending = None;
        return None;
    }
    let since = *pending.get_or_insert(t_s);
    if t_s - since >= hold {
        *pending = None;
        Some(since)
    } else {
        None
    }
}

/// AF episodes `(onset_s, offset_s)` from a monitor's events.
pub fn af_episodes(events: &[RhythmEvent]) -> Vec<(f64, f64)> {
    episodes(events, |k| match k {
        RhythmEventKind::AfOnset => Some(true),
        RhythmEventKind::AfOffset => Some(false),
        _ => None,
    })
}

/// Episodes `(onset_s, offset_s)` of the rhythm whose onset and offset
/// events `which` maps to `Some(true)` and `Some(false)`.
pub fn episodes(
    events: &[RhythmEvent],
    which: impl Fn(&RhythmEventKind) -> Option<bool>,
) -> Vec<(f64, f64)> {
    let mut eps = Vec::new();
    let mut open = None;
    for e in events {
        match which(&e.kind) {
            Some(true) => open = open.or(Some(e.time_s)),
            Some(false) => {
                if let Some(s) = open.take() {
                    eps.push((s, e.time_s));
                }
            }
            None => {}
        }
    }
    eps
}

/// Ventricular-tachycardia episodes from a monitor's events.
pub fn vt_episodes(events: &[RhythmEvent]) -> Vec<(f64, f64)> {
    episodes(events, |k| match k {
        RhythmEventKind::VtOnset { .. } => Some(true),
        RhythmEventKind::VtOffset => Some(false),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    fn run(rr: &[f64]) -> Vec<RhythmEvent> {
        let mut m = RhythmMonitor::new(RhythmConfig::default());
        let mut out = Vec::new();
        let mut t = 0.0;
        m.push_beat(t, &mut out);
        for r in rr {
            t += r;
            m.push_beat(t, &mut out);
        }
        m.finish(t, &mut out);
        out
    }

    #[test]
    fn regular_and_bigeminy_are_not_af_but_random_is() {
        let regular = vec![0.8; 200];
        assert!(af_episodes(&run(&regular)).is_empty());
        let bigeminy: Vec<f64> = (0..200)
            .map(|i| if i % 2 == 0 { 0.55 } else { 1.05 })
            .collect();
        assert!(af_episodes(&run(&bigeminy)).is_empty());
        let mut seed = 7;
        let mut rr: Vec<f64> = vec![0.8; 100];
        rr.extend((0..200).map(|_| 0.4 + 0.6 * lcg(&mut seed)));
        rr.extend(vec![0.8; 100]);
        let eps = af_episodes(&run(&rr));
        // The irregular stretch runs from 80 s to 220 s: nearly all of it is
        // called AF (the first window must fill first), nothing outside it.
        let inside: f64 = eps
            .iter()
            .map(|&(a, b)| b.min(220.0) - a.max(80.0))
            .filter(|d| *d > 0.0)
            .sum();
        assert!(inside >= 0.75 * 140.0, "{eps:?}");
        assert!(eps.iter().all(|&(a, b)| a >= 80.0 && b <= 235.0), "{eps:?}");
    }

    #[test]
    fn pause_is_reported_while_it_happens() {
        let mut m = RhythmMonitor::new(RhythmConfig::default());
        let mut out = Vec::new();
        m.push_beat(10.0, &mut out);
        m.tick(12.5, &mut out);
        assert!(out.is_empty());
        m.tick(13.1, &mut out);
        m.tick(13.5, &mut out);
        assert_eq!(
            out,
            vec![RhythmEvent {
                time_s: 10.0,
                kind: RhythmEventKind::PauseOnset
            }],
            "reported once"
        );
        m.push_beat(14.0, &mut out);
        assert_eq!(
            out[1],
            RhythmEvent {
                time_s: 10.0,
                kind: RhythmEventKind::Pause { duration_s: 4.0 }
            }
        );
        // Without ticks the same two events come with the next beat.
        let mut m = RhythmMonitor::new(RhythmConfig::default());
        let mut late = Vec::new();
        m.push_beat(10.0, &mut late);
        m.push_beat(14.0, &mut late);
        assert_eq!(late, out);
    }

    #[test]
    fn brady_and_tachy() {
        let mut rr = vec![0.8; 20];
        rr.extend(vec![1.5; 20]);
        rr.extend(vec![0.4; 50]);
        let kinds: Vec<_> = run(&rr).into_iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                RhythmEventKind::BradyOnset,
                RhythmEventKind::BradyOffset,
                RhythmEventKind::TachyOnset,
                RhythmEventKind::TachyOffset
            ]
        );
    }

    #[test]
    fn a_rate_hovering_at_a_limit_does_not_flicker() {
        // 20 s at 130 bpm (a tachycardia), then 8 beats at 125 bpm, 8 at
        // 116 bpm, and again, for 3 minutes: the 8-beat mean crosses 120 bpm
        // again and again, but never leaves the band of the hysteresis
        // (110 bpm) once the tachycardia is on.
        let mut rr = vec![0.8; 10];
        rr.extend(vec![60.0 / 130.0; 44]);
        while rr.iter().sum::<f64>() < 200.0 {
            rr.extend(vec![0.48; 8]);
            rr.extend(vec![60.0 / 116.0; 8]);
        }
        let events = run(&rr);
        let onsets = events
            .iter()
            .filter(|e| e.kind == RhythmEventKind::TachyOnset)
            .count();
        assert_eq!(onsets, 1, "{events:?}");
        // Without hysteresis and hold, the same series flickers.
        let mut m = RhythmMonitor::new(RhythmConfig {
            rate_hysteresis_bpm: 0.0,
            rate_hold_s: 0.0,
            ..RhythmConfig::default()
        });
        let mut out = Vec::new();
        let mut t = 0.0;
        for r in &rr {
            t += r;
            m.push_beat(t, &mut out);
        }
        assert!(out.len() > 10, "{out:?}");
    }

    #[test]
    fn a_short_burst_raises_no_rate_event() {
        // 6 s at 150 bpm inside sinus rhythm: shorter than the 10-s hold.
        let mut rr = vec![0.8; 30];
        rr.extend(vec![0.4; 15]);
        rr.extend(vec![0.8; 30]);
        assert!(run(&rr).is_empty());
    }

    #[test]
    fn checkpoints_from_before_the_hysteresis_still_load() {
        let mut v = serde_json::to_value(RhythmMonitor::new(RhythmConfig::default())).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("brady_pending");
        o.remove("tachy_pending");
        let cfg = o.get_mut("cfg").unwrap().as_object_mut().unwrap();
        cfg.remove("rate_hysteresis_bpm");
        cfg.remove("rate_hold_s");
        let m: RhythmMonitor = serde_json::from_value(v).unwrap();
        assert_eq!(m.cfg, RhythmConfig::default());
    }

    fn run_classes(beats: &[(f64, crate::beats::BeatClass)]) -> Vec<RhythmEvent> {
        let mut m = RhythmMonitor::new(RhythmConfig::default());
        let mut out = Vec::new();
        let mut t = 0.0;
        for &(rr, c) in beats {
            t += rr;
            let p = if c == crate::beats::BeatClass::V {
                0.9
            } else {
                0.05
            };
            m.push_classified(t, c, p, &mut out);
        }
        m.finish(t + 1.0, &mut out);
        out
    }

    #[test]
    fn vt_needs_three_fast_v_beats_and_does_not_flicker() {
        use crate::beats::BeatClass::{N, V};
        let mut b = vec![(0.8, N); 20];
        b.extend(vec![(0.8, V); 2]); // a slow couplet: nothing
        b.extend(vec![(0.8, N); 10]);
        b.extend(vec![(0.4, V); 10]); // 150 bpm: VT
        b.push((0.4, N)); // one beat off does not end it
        b.extend(vec![(0.4, V); 10]);
        b.extend(vec![(0.8, N); 10]);
        b.extend(vec![(1.0, V); 4]); // 60 bpm: a ventricular run, not VT
        b.extend(vec![(0.8, N); 10]);
        let out = run_classes(&b);
        let vt = vt_episodes(&out);
        assert_eq!(vt.len(), 1, "{out:?}");
        assert!((vt[0].0 - (20.0 * 0.8 + 2.0 * 0.8 + 10.0 * 0.8 + 0.4)).abs() < 1e-9);
        assert!(out.iter().any(|e| matches!(
            e.kind,
            RhythmEventKind::VtOnset { confidence } if (confidence - 0.9).abs() < 1e-9
        )));
        let runs: Vec<_> = out
            .iter()
            .filter_map(|e| match e.kind {
                RhythmEventKind::VentricularRun {
                    beats, rate_bpm, ..
                } => Some((beats, rate_bpm)),
                _ => None,
            })
            .collect();
        assert_eq!(runs.len(), 1, "{out:?}");
        assert_eq!(runs[0].0, 4);
        assert!((runs[0].1 - 60.0).abs() < 1e-6);
    }

    #[test]
    fn bigeminy_and_trigeminy() {
        use crate::beats::BeatClass::{N, V};
        let mut b = vec![(0.8, N); 10];
        for _ in 0..20 {
            b.push((0.9, N));
            b.push((0.5, V));
        }
        b.extend(vec![(0.8, N); 20]);
        for _ in 0..20 {
            b.push((0.9, N));
            b.push((0.9, N));
            b.push((0.5, V));
        }
        b.extend(vec![(0.8, N); 20]);
        let out = run_classes(&b);
        let kinds: Vec<&str> = out
            .iter()
            .filter_map(|e| match e.kind {
                RhythmEventKind::BigeminyOnset { .. } => Some("B+"),
                RhythmEventKind::BigeminyOffset => Some("B-"),
                RhythmEventKind::TrigeminyOnset { .. } => Some("T+"),
                RhythmEventKind::TrigeminyOffset => Some("T-"),
                _ => None,
            })
            .collect();
        assert_eq!(kinds, ["B+", "B-", "T+", "T-"], "{out:?}");
        // Bigeminy's RR alternation is never AF: the V intervals are left out.
        assert!(af_episodes(&out).is_empty());
    }

    #[test]
    fn new_events_serialize_with_snake_case_kinds() {
        let e = RhythmEvent {
            time_s: 1.5,
            kind: RhythmEventKind::VtOnset { confidence: 0.75 },
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"time_s":1.5,"kind":"vt_onset","confidence":0.75}"#
        );
        let old = RhythmEvent {
            time_s: 2.0,
            kind: RhythmEventKind::AfOnset,
        };
        assert_eq!(
            serde_json::to_string(&old).unwrap(),
            r#"{"time_s":2.0,"kind":"af_onset"}"#
        );
    }

    #[test]
    fn checkpoints_from_before_the_beat_classes_still_load() {
        let mut v = serde_json::to_value(RhythmMonitor::new(RhythmConfig::default())).unwrap();
        let o = v.as_object_mut().unwrap();
        o.remove("af_rr");
        o.remove("af_rr_end");
        o.remove("classes");
        let cfg = o.get_mut("cfg").unwrap().as_object_mut().unwrap();
        for k in [
            "vt_beats",
            "vt_bpm",
            "vt_exit",
            "pattern_cycles",
            "pattern_exit",
            "af_drop_s",
            "af_min_clean",
        ] {
            assert!(cfg.remove(k).is_some(), "{k}");
        }
        let m: RhythmMonitor = serde_json::from_value(v).unwrap();
        assert_eq!(m.cfg, RhythmConfig::default());
        assert!(!m.in_vt());
    }

    #[test]
    fn hostile_times_ignored() {
        let mut m = RhythmMonitor::new(RhythmConfig::default());
        let mut out = Vec::new();
        for t in [f64::NAN, 1.0, 0.5, f64::INFINITY, 1.0, -3.0] {
            m.push_beat(t, &mut out);
        }
        assert!(out.is_empty());
        assert!(af_features(&[1.0, f64::NAN, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]).is_none());
        assert!(af_features(&[]).is_none());
    }
}
