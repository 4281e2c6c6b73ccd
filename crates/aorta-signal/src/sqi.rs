//! Signal quality per second, and the signal states that come from it:
//! readable, too noisy, signal lost, ventricular fibrillation/flutter and
//! asystole.
//!
//! [`SignalQuality`] is online like the R-peak detector: samples are
//! processed one at a time, so what it reports never depends on how the input
//! was split; its memory is a ring of [`SqiConfig::window`] seconds fixed at
//! construction. It expects samples in millivolts (the thresholds below are
//! absolute amplitudes).
//!
//! # Per second
//!
//! At the end of every second `k` (samples `[round(k·fs), round((k+1)·fs))`)
//! the last [`SqiConfig::window`] seconds (4 s by default) of the signal
//! band-passed to 1–40 Hz are analysed:
//!
//! - **lost**: the raw signal of second `k` is (nearly) constant (range below
//!   [`SqiConfig::lost_range_mv`]: a disconnected lead or a flat-lined
//!   amplifier), or more than half its samples are not finite (gaps), or at
//!   least [`SqiConfig::rail_fraction`] of them sit at the second's minimum
//!   or maximum and as many in one run of equal samples (a railed or
//!   clipped amplifier);
//! - **flat**: readable (not lost) but with no electrical activity: the
//!   band-passed peak-to-peak amplitude of second `k` is below
//!   [`SqiConfig::asystole_mv`];
//! - **VF-like**: the window is organised like fibrillation or flutter: its
//!   VF-filter leakage (Kuo & Dillman 1978, as evaluated by Amann, Tratnig
//!   and Unterkofler, Biomed. Eng. Online 4:60, 2005) is below
//!   [`SqiConfig::vf_leakage`], its mean period is that of a 2.5–9 Hz
//!   oscillation, and its kurtosis is below [`SqiConfig::vf_kurtosis`]
//!   (no narrow QRS complexes stand out);
//! - **noisy**: none of the above, but the window's kurtosis is below
//!   [`SqiConfig::noisy_kurtosis`] (a clean ECG is peaked: kSQI of Li,
//!   Clifford and Mark 2008) or more than [`SqiConfig::noisy_hf`] of its
//!   power lies above 40 Hz (muscle noise).
//!
//! The quality index [`SecondQuality::sqi`] in `[0, 1]` rewards a peaked
//! band-passed signal with little power above 40 Hz; it is 0 when the second
//! is lost. It is what multi-lead fusion compares.
//!
//! # States
//!
//! [`SignalState`] is the second's class after hysteresis: a state other than
//! [`SignalState::Readable`] is entered after [`SqiConfig::enter`] consecutive
//! seconds of its class (asystole after [`SqiConfig::asystole_s`] flat
//! seconds) and left after [`SqiConfig::exit`] consecutive seconds of another
//! class. A state change is reported once, dated at the start of the first
//! second of the run that caused it.

use crate::filter::Biquad;
use crate::rhythm::{RhythmEvent, RhythmEventKind};

/// The class of one second, before hysteresis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SecondClass {
    /// An ECG that can be read.
    Readable,
    /// Noise that hides the ECG.
    Noisy,
    /// No signal: constant, railed or gaps.
    Lost,
    /// A readable flat line.
    Flat,
    /// Organised like ventricular fibrillation/flutter.
    VfLike,
}

/// The signal state after hysteresis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SignalState {
    /// Beats and rhythm can be analysed.
    Readable,
    /// Too noisy to analyse: no beats, no rhythm alarms.
    TooNoisy,
    /// Signal lost (lead off, railed, gaps): no beats, no rhythm alarms.
    SignalLost,
    /// Ventricular fibrillation or flutter: no beats.
    VentricularFibrillation,
    /// Asystole: a readable flat line.
    Asystole,
}

impl SignalState {
    /// Whether beats may be reported in this state.
    pub fn beats_allowed(self) -> bool {
        matches!(self, SignalState::Readable)
    }
}

/// Parameters of [`SignalQuality`] (amplitudes in mV, times in seconds).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SqiConfig {
    /// Sampling frequency, Hz.
    pub fs: f64,
    /// Analysis window, seconds (whole seconds).
    pub window: f64,
    /// A second whose raw range is below this is lost.
    pub lost_range_mv: f64,
    /// A second with at least this fraction of samples at its extremes is lost.
    pub rail_fraction: f64,
    /// A second whose band-passed peak-to-peak is below this is flat.
    pub asystole_mv: f64,
    /// Flat seconds before asystole is declared.
    pub asystole_s: u32,
    /// VF-filter leakage below this is VF-like.
    pub vf_leakage: f64,
    /// Kurtosis below this (with a low leakage) is VF-like.
    pub vf_kurtosis: f64,
    /// Kurtosis below this is noisy.
    pub noisy_kurtosis: f64,
    /// Fraction of power above 40 Hz above this is noisy.
    pub noisy_hf: f64,
    /// Consecutive seconds of a class that enter its state.
    pub enter: u32,
    /// Consecutive seconds of another class that leave a state.
    pub exit: u32,
}

impl SqiConfig {
    /// Defaults for sampling rate `fs`.
    pub fn new(fs: f64) -> SqiConfig {
        SqiConfig {
            fs,
            window: 4.0,
            lost_range_mv: 0.01,
            rail_fraction: 0.3,
            asystole_mv: 0.05,
            asystole_s: 4,
            vf_leakage: 0.5,
            vf_kurtosis: 3.5,
            noisy_kurtosis: 3.5,
            noisy_hf: 0.5,
            enter: 2,
            exit: 2,
        }
    }
}

/// Why a [`SignalQuality`] could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SqiConfigError {
    /// A parameter is out of range.
    #[error("invalid signal-quality parameter {name}: {value}")]
    Parameter {
        /// Parameter name.
        name: &'static str,
        /// Its value.
        value: f64,
    },
}

/// The analysis of one second.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SecondQuality {
    /// Index of the second from the start of the stream.
    pub second: u64,
    /// Its first sample.
    pub start: u64,
    /// Quality index in `[0, 1]` (0: unreadable).
    pub sqi: f64,
    /// Its class before hysteresis.
    pub class: SecondClass,
    /// The state after this second.
    pub state: SignalState,
    /// Kurtosis of the band-passed (1–40 Hz) window.
    pub kurtosis: f64,
    /// Kurtosis of the window in the QRS band (5–25 Hz).
    pub qrs_kurtosis: f64,
    /// VF-filter leakage of the window.
    pub leakage: f64,
    /// Fraction of the window's power above 40 Hz.
    pub hf_fraction: f64,
    /// Band-passed peak-to-peak amplitude of the second, mV.
    pub ptp_mv: f64,
}

/// A change of [`SignalState`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StateChange {
    /// Time of the change, seconds from the start of the stream.
    pub time_s: f64,
    /// The state left.
    pub from: SignalState,
    /// The state entered.
    pub to: SignalState,
}

impl SignalState {
    /// The rhythm events that enter (`true`) or leave (`false`) this state
    /// (`None` for [`SignalState::Readable`]).
    pub fn event(self, enter: bool) -> Option<RhythmEventKind> {
        use RhythmEventKind as K;
        let (on, off) = match self {
            SignalState::Readable => return None,
            SignalState::TooNoisy => (K::TooNoisyOnset, K::TooNoisyOffset),
            SignalState::SignalLost => (K::SignalLostOnset, K::SignalLostOffset),
            SignalState::VentricularFibrillation => (K::VfOnset, K::VfOffset),
            SignalState::Asystole => (K::AsystoleOnset, K::AsystoleOffset),
        };
        Some(if enter { on } else { off })
    }
}

impl StateChange {
    /// The change as rhythm events: the offset of the state left, then the
    /// onset of the state entered, both at [`StateChange::time_s`].
    pub fn events(&self) -> impl Iterator<Item = RhythmEvent> + '_ {
        [self.from.event(false), self.to.event(true)]
            .into_iter()
            .flatten()
            .map(|kind| RhythmEvent {
                time_s: self.time_s,
                kind,
            })
    }
}

/// Online per-second signal quality and signal state (see the module docs).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SignalQuality {
    cfg: SqiConfig,
    hp: Biquad,
    lp: Biquad,
    hf: Biquad,
    qhp: Biquad,
    qlp: Biquad,
    /// Ring of band-passed samples (the analysis window).
    #[serde(with = "crate::compact")]
    ring: Vec<f64>,
    /// Ring of QRS-band (5–25 Hz) samples.
    #[serde(with = "crate::compact")]
    ring_qrs: Vec<f64>,
    /// Ring of squared high-frequency samples.
    #[serde(with = "crate::compact")]
    ring_hf: Vec<f64>,
    pos: usize,
    filled: usize,
    n: u64,
    second: u64,
    next_boundary: u64,
    // Raw statistics of the current second.
    count: u64,
    nonfinite: u64,
    max: f64,
    at_max: u64,
    min: f64,
    at_min: u64,
    bmax: f64,
    bmin: f64,
    /// Previous raw sample and the current run of equal samples.
    prev: Option<f64>,
    run: u64,
    longest_run: u64,
    // Hysteresis.
    state: SignalState,
    run_class: SecondClass,
    run_len: u32,
    run_start: u64,
    last: Option<SecondQuality>,
}

impl SignalQuality {
    /// Defaults for sampling rate `fs`.
    pub fn new(fs: f64) -> Result<SignalQuality, SqiConfigError> {
        SignalQuality::with_config(SqiConfig::new(fs))
    }

    /// With explicit parameters.
    pub fn with_config(cfg: SqiConfig) -> Result<SignalQuality, SqiConfigError> {
        let check = |name: &'static str, value: f64, lo: f64, hi: f64| {
            if value.is_finite() && value >= lo && value <= hi {
                Ok(())
            } else {
                Err(SqiConfigError::Parameter { name, value })
            }
        };
        check("fs", cfg.fs, 100.0, 10_000.0)?;
        check("window", cfg.window, 1.0, 16.0)?;
        check("lost_range_mv", cfg.lost_range_mv, 0.0, 10.0)?;
        check("rail_fraction", cfg.rail_fraction, 0.0, 1.0)?;
        check("asystole_mv", cfg.asystole_mv, 0.0, 10.0)?;
        check("asystole_s", f64::from(cfg.asystole_s), 1.0, 60.0)?;
        check("vf_leakage", cfg.vf_leakage, 0.0, 1.0)?;
        check("vf_kurtosis", cfg.vf_kurtosis, 0.0, 100.0)?;
        check("noisy_kurtosis", cfg.noisy_kurtosis, 0.0, 100.0)?;
        check("noisy_hf", cfg.noisy_hf, 0.0, 1.0)?;
        check("enter", f64::from(cfg.enter), 1.0, 60.0)?;
        check("exit", f64::from(cfg.exit), 1.0, 60.0)?;
        let fs = cfg.fs;
        let len = (cfg.window.round() * fs).round() as usize;
        Ok(SignalQuality {
            cfg,
            hp: Biquad::highpass(fs, 1.0),
            lp: Biquad::lowpass(fs, 40.0),
            hf: Biquad::highpass(fs, 40.0),
            qhp: Biquad::highpass(fs, 5.0),
            qlp: Biquad::lowpass(fs, 25.0),
            ring: vec![0.0; len.max(1)],
            ring_qrs: vec![0.0; len.max(1)],
            ring_hf: vec![0.0; len.max(1)],
            pos: 0,
            filled: 0,
            n: 0,
            second: 0,
            next_boundary: fs.round() as u64,
            count: 0,
            nonfinite: 0,
            max: f64::MIN,
            at_max: 0,
            min: f64::MAX,
            at_min: 0,
            bmax: f64::MIN,
            bmin: f64::MAX,
            prev: None,
            run: 0,
            longest_run: 0,
            state: SignalState::Readable,
            run_class: SecondClass::Readable,
            run_len: 0,
            run_start: 0,
            last: None,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &SqiConfig {
        &self.cfg
    }

    /// The current state.
    pub fn state(&self) -> SignalState {
        self.state
    }

    /// The last second analysed.
    pub fn last(&self) -> Option<&SecondQuality> {
        self.last.as_ref()
    }

    /// Samples consumed so far.
    pub fn samples_seen(&self) -> u64 {
        self.n
    }

    /// The first sample of the next second to complete.
    pub fn next_boundary(&self) -> u64 {
        self.next_boundary
    }

    /// Bytes held in the buffers: fixed at construction.
    pub fn buffer_bytes(&self) -> usize {
        (self.ring.capacity() + self.ring_hf.capacity() + self.ring_qrs.capacity())
            * std::mem::size_of::<f64>()
    }

    /// Consumes samples (mV); appends the analysis of every second completed
    /// to `seconds` and every state change to `changes`.
    pub fn push(
        &mut self,
        samples: &[f64],
        seconds: &mut Vec<SecondQuality>,
        changes: &mut Vec<StateChange>,
    ) {
        for &x in samples {
            self.step(x, seconds, changes);
        }
    }

    #[inline]
    fn step(&mut self, x: f64, seconds: &mut Vec<SecondQuality>, changes: &mut Vec<StateChange>) {
        self.count = self.count.saturating_add(1);
        let v = if x.is_finite() {
            if self.prev == Some(x) {
                self.run = self.run.saturating_add(1);
            } else {
                self.run = 1;
            }
            self.prev = Some(x);
            self.longest_run = self.longest_run.max(self.run);
            if x > self.max {
                self.max = x;
                self.at_max = 1;
            } else if x == self.max {
                self.at_max = self.at_max.saturating_add(1);
            }
            if x < self.min {
                self.min = x;
                self.at_min = 1;
            } else if x == self.min {
                self.at_min = self.at_min.saturating_add(1);
            }
            x
        } else {
            self.nonfinite = self.nonfinite.saturating_add(1);
            0.0
        };
        let b = self.lp.step(self.hp.step(v));
        let h = self.hf.step(v);
        let q = self.qlp.step(self.qhp.step(v));
        if let Some(slot) = self.ring.get_mut(self.pos) {
            *slot = b;
        }
        if let Some(slot) = self.ring_qrs.get_mut(self.pos) {
            *slot = q;
        }
        if let Some(slot) = self.ring_hf.get_mut(self.pos) {
            *slot = h * h;
        }
        self.pos = self.pos.saturating_add(1);
        if self.pos >= self.ring.len() {
            self.pos = 0;
        }
        self.filled = self.filled.saturating_add(1).min(self.ring.len());
        self.bmax = self.bmax.max(b);
        self.bmin = self.bmin.min(b);
        self.n = self.n.saturating_add(1);
        if self.n >= self.next_boundary {
            self.close_second(seconds, changes);
        }
    }

    fn close_second(&mut self, seconds: &mut Vec<SecondQuality>, changes: &mut Vec<StateChange>) {
        let fs = self.cfg.fs;
        let start = (self.second as f64 * fs).round() as u64;
        let count = self.count.max(1) as f64;
        let range = if self.max >= self.min {
            self.max - self.min
        } else {
            0.0
        };
        let lost = self.nonfinite as f64 > 0.5 * count
            || range < self.cfg.lost_range_mv
            || (self.at_max.saturating_add(self.at_min) as f64 >= self.cfg.rail_fraction * count
                && self.longest_run as f64 >= self.cfg.rail_fraction * count);
        let ptp = if self.bmax >= self.bmin {
            self.bmax - self.bmin
        } else {
            0.0
        };
        let f = features(&self.ring, &self.ring_hf, self.pos, self.filled, fs);
        let qrs_kurtosis = kurtosis(&self.ring_qrs, self.filled);
        let class = if lost {
            SecondClass::Lost
        } else if ptp < self.cfg.asystole_mv {
            SecondClass::Flat
        } else if self.filled < self.ring.len() {
            // Not a full window yet: judged on the raw checks only.
            SecondClass::Readable
        } else if f.leakage < self.cfg.vf_leakage
            && f.kurtosis < self.cfg.vf_kurtosis
            && (0.5 * fs / 9.0..=0.5 * fs / 2.5).contains(&f.half_period)
        {
            SecondClass::VfLike
        } else if qrs_kurtosis < self.cfg.noisy_kurtosis {
            SecondClass::Noisy
        } else {
            SecondClass::Readable
        };
        let sqi = if lost {
            0.0
        } else {
            ((qrs_kurtosis - 3.0) / 7.0).clamp(0.0, 1.0)
        };
        self.hysteresis(class, start, changes);
        let q = SecondQuality {
            second: self.second,
            start,
            sqi,
            class,
            state: self.state,
            kurtosis: f.kurtosis,
            qrs_kurtosis,
            leakage: f.leakage,
            hf_fraction: f.hf_fraction,
            ptp_mv: ptp,
        };
        self.last = Some(q);
        seconds.push(q);
        self.second = self.second.saturating_add(1);
        self.next_boundary = (self.second.saturating_add(1) as f64 * fs).round() as u64;
        self.count = 0;
        self.nonfinite = 0;
        self.max = f64::MIN;
        self.at_max = 0;
        self.min = f64::MAX;
        self.at_min = 0;
        self.bmax = f64::MIN;
        self.bmin = f64::MAX;
        self.run = 0;
        self.longest_run = 0;
    }

    fn hysteresis(&mut self, class: SecondClass, start: u64, changes: &mut Vec<StateChange>) {
        if class == self.run_class {
            self.run_len = self.run_len.saturating_add(1);
        } else {
            self.run_class = class;
            self.run_len = 1;
            self.run_start = start;
        }
        let target = match class {
            SecondClass::Readable => SignalState::Readable,
            SecondClass::Noisy => SignalState::TooNoisy,
            SecondClass::Lost => SignalState::SignalLost,
            SecondClass::VfLike => SignalState::VentricularFibrillation,
            SecondClass::Flat => SignalState::Asystole,
        };
        if target == self.state {
            return;
        }
        let needed = match (self.state, target) {
            (_, SignalState::Asystole) => self.cfg.asystole_s,
            // A lost signal is unambiguous: at once.
            (_, SignalState::SignalLost) => 1,
            (SignalState::Readable, _) => self.cfg.enter,
            (_, SignalState::Readable) => self.cfg.exit,
            _ => self.cfg.enter,
        };
        if self.run_len >= needed {
            changes.push(StateChange {
                time_s: self.run_start as f64 / self.cfg.fs,
                from: self.state,
                to: target,
            });
            self.state = target;
        }
    }
}

/// Kurtosis of the first `filled` samples of `ring` (order does not matter).
fn kurtosis(ring: &[f64], filled: usize) -> f64 {
    let w = ring.get(..filled).unwrap_or(ring);
    let n = w.len().max(1) as f64;
    let mean = w.iter().sum::<f64>() / n;
    let (mut m2, mut m4) = (0.0, 0.0);
    for v in w {
        let d = v - mean;
        m2 += d * d;
        m4 += d * d * d * d;
    }
    m2 /= n;
    m4 /= n;
    if m2 > 0.0 { m4 / (m2 * m2) } else { 0.0 }
}

struct Features {
    kurtosis: f64,
    leakage: f64,
    hf_fraction: f64,
    /// Half the mean period, samples (the VF filter's N).
    half_period: f64,
}

/// Window features over the ring (oldest sample at `pos` once full).
fn features(ring: &[f64], ring_hf: &[f64], pos: usize, filled: usize, fs: f64) -> Features {
    let len = ring.len();
    let at = |i: usize| -> f64 {
        // i-th oldest sample of the window.
        let start = if filled < len { 0 } else { pos };
        ring.get((start + i) % len.max(1)).copied().unwrap_or(0.0)
    };
    let n = filled.max(1) as f64;
    let mean = (0..filled).map(at).sum::<f64>() / n;
    let (mut m2, mut m4, mut abs_sum, mut diff_sum) = (0.0, 0.0, 0.0, 0.0);
    for i in 0..filled {
        let d = at(i) - mean;
        m2 += d * d;
        m4 += d * d * d * d;
        abs_sum += d.abs();
        if i > 0 {
            diff_sum += (at(i) - at(i - 1)).abs();
        }
    }
    m2 /= n;
    m4 /= n;
    let kurtosis = if m2 > 0.0 { m4 / (m2 * m2) } else { 0.0 };
    let half_period = if diff_sum > 0.0 {
        (std::f64::consts::PI * abs_sum / diff_sum + 0.5).floor()
    } else {
        0.0
    };
    let lag = half_period as usize;
    let (mut num, mut den) = (0.0, 0.0);
    if lag > 0 && lag < filled {
        for i in lag..filled {
            let a = at(i) - mean;
            let b = at(i - lag) - mean;
            num += (a + b).abs();
            den += a.abs() + b.abs();
        }
    }
    let leakage = if den > 0.0 { num / den } else { 1.0 };
    let hf: f64 = ring_hf.iter().take(filled).sum::<f64>() / n;
    let hf_fraction = if hf + m2 > 0.0 { hf / (hf + m2) } else { 0.0 };
    let _ = fs;
    Features {
        kurtosis,
        leakage,
        hf_fraction,
        half_period,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(x: &[f64], fs: f64) -> (Vec<SecondQuality>, Vec<StateChange>) {
        let mut q = SignalQuality::new(fs).unwrap_or_else(|e| panic!("{e}"));
        let (mut s, mut c) = (Vec::new(), Vec::new());
        q.push(x, &mut s, &mut c);
        (s, c)
    }

    #[test]
    fn state_changes_as_rhythm_events() {
        let c = StateChange {
            time_s: 12.0,
            from: SignalState::TooNoisy,
            to: SignalState::SignalLost,
        };
        let kinds: Vec<RhythmEventKind> = c.events().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                RhythmEventKind::TooNoisyOffset,
                RhythmEventKind::SignalLostOnset
            ]
        );
        let json = serde_json::to_string(&c.events().last()).unwrap_or_default();
        assert_eq!(json, r#"{"time_s":12.0,"kind":"signal_lost_onset"}"#);
    }

    #[test]
    fn hostile_state_does_not_panic() {
        let q = SignalQuality::new(360.0).unwrap_or_else(|e| panic!("{e}"));
        let mut v = serde_json::to_value(&q).unwrap_or_default();
        for (k, x) in [
            ("ring", serde_json::json!([])),
            ("ring_qrs", serde_json::json!([1.0])),
            ("pos", serde_json::json!(u64::MAX)),
            ("filled", serde_json::json!(u64::MAX)),
            ("n", serde_json::json!(u64::MAX)),
            ("second", serde_json::json!(u64::MAX)),
            ("count", serde_json::json!(u64::MAX)),
            ("at_max", serde_json::json!(u64::MAX)),
            ("at_min", serde_json::json!(u64::MAX)),
            ("run", serde_json::json!(u64::MAX)),
        ] {
            if let Some(slot) = v.get_mut(k) {
                *slot = x;
            }
        }
        let mut q: SignalQuality = serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"));
        let (mut s, mut c) = (Vec::new(), Vec::new());
        q.push(
            &[1e308, -1e308, f64::NAN, f64::INFINITY, 0.0],
            &mut s,
            &mut c,
        );
        let mut fresh = SignalQuality::new(360.0).unwrap_or_else(|e| panic!("{e}"));
        fresh.push(&vec![1e308; 2000], &mut s, &mut c);
        // Any state round-trips through JSON (checkpoints), even after NaN
        // samples only.
        let mut q = SignalQuality::new(360.0).unwrap_or_else(|e| panic!("{e}"));
        q.push(&[f64::NAN; 10], &mut s, &mut c);
        let text = serde_json::to_string(&q).unwrap_or_default();
        assert!(
            serde_json::from_str::<SignalQuality>(&text).is_ok(),
            "{text}"
        );
    }

    #[test]
    fn constant_signal_is_lost() {
        let (s, c) = run(&vec![0.3; 3600], 360.0);
        assert_eq!(s.len(), 10);
        assert!(
            s.iter()
                .all(|q| q.class == SecondClass::Lost && q.sqi == 0.0)
        );
        assert_eq!(c.first().map(|c| c.to), Some(SignalState::SignalLost));
    }

    #[test]
    fn sine_at_5_hz_is_vf_like() {
        let fs = 250.0;
        let x: Vec<f64> = (0..(20.0 * fs) as usize)
            .map(|i| (std::f64::consts::TAU * 5.0 * i as f64 / fs).sin())
            .collect();
        let (s, c) = run(&x, fs);
        assert!(
            s.iter().skip(5).all(|q| q.class == SecondClass::VfLike),
            "{s:?}"
        );
        assert!(
            c.iter()
                .any(|c| c.to == SignalState::VentricularFibrillation)
        );
    }
}
