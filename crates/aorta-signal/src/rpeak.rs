//! Causal, online R-peak (QRS) detection.
//!
//! # Algorithm
//!
//! A Pan–Tompkins-class detector (J. Pan, W. J. Tompkins, "A Real-Time QRS
//! Detection Algorithm", IEEE Trans. Biomed. Eng. 32(3):230–236, 1985), with
//! the peak-level statistics of P. S. Hamilton and W. J. Tompkins ("Quantitative
//! investigation of QRS detection rules using the MIT/BIH arrhythmia database",
//! IEEE Trans. Biomed. Eng. 33(12):1157–1165, 1986), re-derived for any
//! sampling rate and for a hard latency bound:
//!
//! 1. band-pass 5–15 Hz (two Butterworth-type biquads designed for `fs`);
//! 2. derivative over ≈10 ms, squaring, moving-window integration (150 ms);
//! 3. peaks of the integrated signal are candidates; each is classified
//!    against adaptive signal/noise peak levels (`SPK`, `NPK`) with the
//!    threshold `NPK + 0.25·(SPK − NPK)`, halved once no beat has been seen
//!    for 1.66 mean RR intervals (the latency-bounded form of search-back);
//!    a peak updates `SPK` as at most 1.5·`SPK`, so tall ectopic beats do
//!    not lift the threshold over the small beats between them;
//! 4. candidates within 360 ms of the previous beat must show at least half
//!    of its maximal slope (T-wave rejection); candidates within the 200 ms
//!    refractory period can only replace a still-pending beat if larger;
//! 5. the R-peak is placed at the extremum of the band-passed signal in the
//!    candidate's window, corrected by the band-pass group delay.
//!
//! # Guarantees
//!
//! - **Causal and chunk-independent**: samples are processed one at a time,
//!   so the beats reported never depend on how the input was split.
//! - **Bounded latency**: every beat is reported at most
//!   [`DetectorConfig::max_latency`] (default 250 ms) after its R-peak
//!   ([`Beat::reported_at`] − [`Beat::sample`]).
//! - **Bounded memory**: ring buffers sized from `fs` at construction.
//!
//! ```
//! use aorta_signal::rpeak::Detector;
//! let fs = 360.0;
//! let mut det = Detector::new(fs).unwrap();
//! // A synthetic 60 bpm train of narrow spikes.
//! let signal: Vec<f64> = (0..(10.0 * fs) as usize)
//!     .map(|i| if i % 360 == 100 { 1.0 } else { 0.0 })
//!     .collect();
//! let mut beats = Vec::new();
//! det.push(&signal, &mut beats);
//! det.finish(&mut beats);
//! assert!(beats.len() >= 9);
//! ```

use crate::filter::{Biquad, group_delay};

/// A detected beat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Beat {
    /// Sample index of the R-peak.
    pub sample: u64,
    /// Index of the input sample whose arrival made the detector report it.
    pub reported_at: u64,
}

/// Why a detector could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DetectorConfigError {
    /// Sampling rate outside the supported range.
    #[error("sampling frequency {0} Hz is outside the supported 100–10000 Hz")]
    SamplingRate(f64),
    /// A parameter is out of range.
    #[error("invalid detector parameter {name}: {value}")]
    Parameter {
        /// Parameter name.
        name: &'static str,
        /// Its value.
        value: f64,
    },
}

/// Detector parameters (times in seconds).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DetectorConfig {
    /// Sampling frequency in Hz.
    pub fs: f64,
    /// Band-pass corners in Hz.
    pub band: (f64, f64),
    /// Moving-window integration length.
    pub integration_window: f64,
    /// Refractory period.
    pub refractory: f64,
    /// Window after a beat within which T-wave rejection applies.
    pub t_wave_window: f64,
    /// Upper bound on report latency after the R-peak.
    pub max_latency: f64,
    /// Threshold position between noise and signal levels.
    pub threshold_fraction: f64,
    /// Initial learning period.
    pub learning: f64,
}

impl DetectorConfig {
    /// Defaults for sampling rate `fs`.
    pub fn new(fs: f64) -> DetectorConfig {
        DetectorConfig {
            fs,
            band: (8.0, 16.0),
            integration_window: 0.200,
            refractory: 0.200,
            t_wave_window: 0.360,
            max_latency: 0.250,
            threshold_fraction: 0.33,
            learning: 2.0,
        }
    }
}

const RR_HISTORY: usize = 8;

/// Largest peak, relative to the signal level, that updates the signal level.
const SPK_CLAMP: f64 = 1.5;

/// The online detector. Feed samples (any unit; physical mV recommended)
/// with [`Detector::push`], and call [`Detector::finish`] at end of stream.
///
/// The whole state serialises (serde) so a streaming engine can checkpoint it;
/// a damaged or hostile serialised state cannot make it panic (every buffer
/// access is bounds-checked), only produce wrong beats.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Detector {
    cfg: DetectorConfig,
    filters: [Biquad; 2],
    /// Group delay of the band-pass at 10 Hz, samples.
    gd: u64,
    deriv_lag: usize,
    win: usize,
    refractory: u64,
    t_wave: u64,
    budget: u64,
    learning: u64,
    /// Ring of band-passed samples (for derivative, slope and R location).
    y: Vec<f64>,
    /// Ring of squared derivative samples (moving-window integration).
    e: Vec<f64>,
    mwi_sum: f64,
    /// Position in `e` (kept apart from `n` to avoid a division per sample).
    e_pos: usize,
    /// Windows since the integration sum was last re-summed.
    e_wraps: u32,
    n: u64,
    // Peak tracking on the integrated signal.
    rising: bool,
    peak_val: f64,
    peak_idx: u64,
    valley: f64,
    // Levels.
    spk: f64,
    npk: f64,
    learn_max: f64,
    // Beat history.
    last_beat: Option<LastBeat>,
    rr: [u64; RR_HISTORY],
    rr_len: usize,
    rr_pos: usize,
    rr_regular: [u64; RR_HISTORY],
    rr_regular_len: usize,
    rr_regular_pos: usize,
    pending: Option<Pending>,
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct LastBeat {
    /// R sample.
    r: u64,
    /// Peak index on the integrated signal.
    idx: u64,
    slope: f64,
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Pending {
    r: u64,
    idx: u64,
    peak: f64,
    slope: f64,
}

impl Detector {
    /// A detector with default parameters for sampling rate `fs` Hz.
    pub fn new(fs: f64) -> Result<Detector, DetectorConfigError> {
        Detector::with_config(DetectorConfig::new(fs))
    }

    /// A detector with explicit parameters.
    pub fn with_config(cfg: DetectorConfig) -> Result<Detector, DetectorConfigError> {
        let fs = cfg.fs;
        if !fs.is_finite() || !(100.0..=10_000.0).contains(&fs) {
            return Err(DetectorConfigError::SamplingRate(fs));
        }
        let check = |name: &'static str, value: f64, lo: f64, hi: f64| {
            if value.is_finite() && value >= lo && value <= hi {
                Ok(())
            } else {
                Err(DetectorConfigError::Parameter { name, value })
            }
        };
        check("band.low", cfg.band.0, 0.5, fs / 4.0)?;
        check("band.high", cfg.band.1, cfg.band.0, fs / 2.5)?;
        check("integration_window", cfg.integration_window, 0.02, 0.5)?;
        check("refractory", cfg.refractory, 0.05, 0.5)?;
        check("t_wave_window", cfg.t_wave_window, 0.0, 1.0)?;
        check("max_latency", cfg.max_latency, 0.15, 5.0)?;
        check("threshold_fraction", cfg.threshold_fraction, 0.01, 0.99)?;
        check("learning", cfg.learning, 0.0, 30.0)?;
        let filters = [
            Biquad::highpass(fs, cfg.band.0),
            Biquad::lowpass(fs, cfg.band.1),
        ];
        let gd = group_delay(&filters, fs, (cfg.band.0 + cfg.band.1) / 2.0)
            .round()
            .max(0.0) as u64;
        let samples = |t: f64| (t * fs).round().max(1.0) as u64;
        let win = samples(cfg.integration_window) as usize;
        let budget = samples(cfg.max_latency);
        let ring = (budget as usize + win + gd as usize + 8).next_power_of_two();
        Ok(Detector {
            cfg,
            filters,
            gd,
            deriv_lag: samples(0.010).max(2) as usize,
            win,
            refractory: samples(cfg.refractory),
            t_wave: samples(cfg.t_wave_window),
            budget,
            learning: samples(cfg.learning),
            y: vec![0.0; ring],
            e: vec![0.0; win],
            mwi_sum: 0.0,
            e_pos: 0,
            e_wraps: 0,
            n: 0,
            rising: true,
            peak_val: 0.0,
            peak_idx: 0,
            valley: 0.0,
            spk: 0.0,
            npk: 0.0,
            learn_max: 0.0,
            last_beat: None,
            rr: [0; RR_HISTORY],
            rr_len: 0,
            rr_pos: 0,
            rr_regular: [0; RR_HISTORY],
            rr_regular_len: 0,
            rr_regular_pos: 0,
            pending: None,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// Bytes held in the detector's buffers: fixed at construction, whatever
    /// the length of the stream.
    pub fn buffer_bytes(&self) -> usize {
        (self.y.capacity() + self.e.capacity()) * std::mem::size_of::<f64>()
    }

    /// Number of samples consumed so far.
    pub fn samples_seen(&self) -> u64 {
        self.n
    }

    /// Consumes samples, appending each beat to `out` as soon as it is decided.
    /// Non-finite samples are treated as 0 (a gap), never as a panic.
    pub fn push(&mut self, samples: &[f64], out: &mut Vec<Beat>) {
        for &x in samples {
            self.step(if x.is_finite() { x } else { 0.0 }, out);
        }
    }

    /// Consumes one sample.
    #[inline]
    fn step(&mut self, x: f64, out: &mut Vec<Beat>) {
        let [hp, lp] = &mut self.filters;
        let yv = lp.step(hp.step(x));
        let mask = self.y.len().wrapping_sub(1);
        let n = self.n;
        let i = (n as usize) & mask;
        let lagged = self
            .y
            .get(i.wrapping_sub(self.deriv_lag) & mask)
            .copied()
            .unwrap_or(0.0);
        if let Some(slot) = self.y.get_mut(i) {
            *slot = yv;
        }
        let d = yv - lagged;
        let ev = d.abs();
        if let Some(slot) = self.e.get_mut(self.e_pos) {
            self.mwi_sum += ev - *slot;
            *slot = ev;
        }
        self.e_pos += 1;
        if self.e_pos == self.e.len() {
            self.e_pos = 0;
            self.e_wraps += 1;
            if self.e_wraps == 16 {
                // Re-sum now and then to cancel floating-point drift.
                self.e_wraps = 0;
                self.mwi_sum = self.e.iter().sum();
            }
        }
        let m = self.mwi_sum;

        if self.rising {
            if m >= self.peak_val {
                self.peak_val = m;
                self.peak_idx = n;
            } else if m < 0.5 * self.peak_val || n - self.peak_idx >= self.confirm_timeout() {
                let (pv, pi) = (self.peak_val, self.peak_idx);
                self.rising = false;
                self.valley = m;
                self.candidate(pv, pi, out);
            }
        } else if m < self.valley {
            self.valley = m;
        } else if m > self.valley * 1.05 + f64::MIN_POSITIVE {
            self.rising = true;
            self.peak_val = m;
            self.peak_idx = n;
        }

        if let Some(p) = self.pending {
            let hold = self.budget.saturating_sub(1);
            if n >= p.r + hold {
                self.emit(out);
            }
        }
        self.n = n + 1;
    }

    fn confirm_timeout(&self) -> u64 {
        // Keeps the worst-case report latency within the budget.
        (self.budget / 3).max(2)
    }

    fn rr_mean(buf: &[u64; RR_HISTORY], len: usize) -> Option<f64> {
        if len == 0 {
            return None;
        }
        Some(buf.iter().take(len).sum::<u64>() as f64 / len as f64)
    }

    /// Maximal |slope| of the band-passed signal in `[from, to]`.
    fn slope(&self, from: u64, to: u64) -> f64 {
        let mask = self.y.len().wrapping_sub(1);
        let mut best = 0.0f64;
        let mut prev: Option<f64> = None;
        for t in from..=to {
            let v = self.y.get((t as usize) & mask).copied().unwrap_or(0.0);
            if let Some(p) = prev {
                best = best.max((v - p).abs());
            }
            prev = Some(v);
        }
        best
    }

    /// Locates the R-peak for an integrated-signal peak at `idx`.
    fn locate(&self, idx: u64) -> u64 {
        let now = self.n;
        let oldest = now.saturating_sub(self.budget.saturating_sub(self.gd + 2)) + self.gd;
        let lo = idx
            .saturating_sub(self.win as u64 + self.gd)
            .max(oldest)
            .max(now.saturating_sub((self.y.len() as u64).saturating_sub(1)));
        let hi = idx.max(lo);
        let mask = self.y.len().wrapping_sub(1);
        let mut best = lo;
        let mut best_v = -1.0;
        for t in lo..=hi {
            let v = self
                .y
                .get((t as usize) & mask)
                .copied()
                .unwrap_or(0.0)
                .abs();
            if v > best_v {
                best_v = v;
                best = t;
            }
        }
        best.saturating_sub(self.gd)
    }

    fn candidate(&mut self, peak: f64, idx: u64, out: &mut Vec<Beat>) {
        let slope = self.slope(idx.saturating_sub(self.win as u64), idx);
        let since_pending = self.pending.map(|p| idx.saturating_sub(p.idx));
        if let (Some(p), Some(dt)) = (self.pending, since_pending)
            && dt < self.refractory
        {
            if peak > p.peak {
                let r = self.locate(idx);
                self.pending = Some(Pending {
                    r: r.max(p.r),
                    idx,
                    peak,
                    slope,
                });
            }
            return;
        }
        let since_last = self.last_beat.map(|b| idx.saturating_sub(b.idx));
        if let Some(dt) = since_last
            && self.pending.is_none()
            && dt < self.refractory
        {
            return;
        }

        if idx < self.learning {
            self.learn_max = self.learn_max.max(peak);
            if peak >= 0.3 * self.learn_max {
                self.accept(peak, idx, slope, false, out);
            }
            return;
        }
        if self.spk == 0.0 {
            // End of learning: initialise levels from what was seen.
            self.spk = 0.5 * self.learn_max.max(peak);
            self.npk = 0.1 * self.spk;
        }

        let thr1 = self.npk + self.cfg.threshold_fraction * (self.spk - self.npk);
        let rr_ref = Self::rr_mean(&self.rr_regular, self.rr_regular_len)
            .or(Self::rr_mean(&self.rr, self.rr_len));
        let searchback = match (since_last, rr_ref) {
            (Some(dt), Some(rr)) => dt as f64 > 1.66 * rr,
            _ => false,
        };
        let thr = if searchback { 0.5 * thr1 } else { thr1 };
        if peak > thr {
            if let (Some(dt), Some(last)) = (since_last, self.last_beat)
                && dt < self.t_wave
                && slope < 0.5 * last.slope
            {
                self.noise_level(peak);
                return;
            }
            self.signal_level(peak, searchback);
            self.accept(peak, idx, slope, searchback, out);
        } else {
            self.noise_level(peak);
        }
    }

    fn signal_level(&mut self, peak: f64, searchback: bool) {
        // A peak counts at most 1.5 × the signal level: tall ectopic beats
        // (or artefacts) no longer lift the threshold over the small normal
        // beats between them (V1 in bigeminy: records 200, 208).
        let peak = if self.spk > 0.0 {
            peak.min(SPK_CLAMP * self.spk)
        } else {
            peak
        };
        if searchback {
            self.spk = 0.25 * peak + 0.75 * self.spk;
        } else {
            self.spk = 0.125 * peak + 0.875 * self.spk;
        }
    }

    fn noise_level(&mut self, peak: f64) {
        self.npk = 0.125 * peak + 0.875 * self.npk;
    }

    fn accept(&mut self, peak: f64, idx: u64, slope: f64, _searchback: bool, out: &mut Vec<Beat>) {
        if self.pending.is_some() {
            self.emit(out);
        }
        let r = self.locate(idx);
        let r = match self.last_beat {
            Some(b) if r <= b.r => b.r + 1,
            _ => r,
        };
        self.pending = Some(Pending {
            r,
            idx,
            peak,
            slope,
        });
    }

    fn emit(&mut self, out: &mut Vec<Beat>) {
        let Some(p) = self.pending.take() else { return };
        if let Some(last) = self.last_beat {
            let rr = p.r.saturating_sub(last.r);
            if let Some(slot) = self.rr.get_mut(self.rr_pos) {
                *slot = rr;
            }
            self.rr_pos = (self.rr_pos + 1) % RR_HISTORY;
            self.rr_len = (self.rr_len + 1).min(RR_HISTORY);
            let regular = match Self::rr_mean(&self.rr_regular, self.rr_regular_len) {
                Some(avg) => (rr as f64) > 0.92 * avg && (rr as f64) < 1.16 * avg,
                None => true,
            };
            if regular {
                if let Some(slot) = self.rr_regular.get_mut(self.rr_regular_pos) {
                    *slot = rr;
                }
                self.rr_regular_pos = (self.rr_regular_pos + 1) % RR_HISTORY;
                self.rr_regular_len = (self.rr_regular_len + 1).min(RR_HISTORY);
            } else if self.rr_len == RR_HISTORY {
                // Rhythm changed: fall back to the recent mean (as Pan–Tompkins
                // does for irregular rhythms).
                self.rr_regular = self.rr;
                self.rr_regular_len = self.rr_len;
            }
        }
        self.last_beat = Some(LastBeat {
            r: p.r,
            idx: p.idx,
            slope: p.slope,
        });
        out.push(Beat {
            sample: p.r,
            reported_at: self.n,
        });
    }

    /// Flushes the beat still held for refractory replacement (end of stream).
    pub fn finish(&mut self, out: &mut Vec<Beat>) {
        self.emit(out);
    }
}

/// Detects beats in a whole signal (convenience wrapper over [`Detector`]).
pub fn detect(signal: &[f64], fs: f64) -> Result<Vec<Beat>, DetectorConfigError> {
    let mut det = Detector::new(fs)?;
    let mut out = Vec::with_capacity(signal.len() / (fs as usize).max(1) * 2);
    det.push(signal, &mut out);
    det.finish(&mut out);
    Ok(out)
}
