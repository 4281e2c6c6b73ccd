//! R-peak detection gated by signal quality, on one lead or fused over
//! several.
//!
//! [`LeadMonitor`] runs the R-peak [`Detector`] and the [`SignalQuality`]
//! analysis side by side on one lead and reports no beat while the signal
//! state is not [`SignalState::Readable`] (too noisy, signal lost,
//! ventricular fibrillation/flutter, asystole). A beat reported during second
//! `k` is judged by the state after second `k − 1`, so the detector keeps its
//! latency bound; the first seconds of an unreadable stretch (the
//! [`SqiConfig::enter`] seconds the state needs to change) can still carry
//! beats.
//!
//! [`MultiLeadDetector`] runs one [`LeadMonitor`] per lead and, second by
//! second, reports the beats of one lead: the primary lead (the first) while
//! its quality holds, another lead while the primary's is clearly worse
//! (its state unreadable while the other's is readable, or its
//! [`SecondQuality::sqi`] lower by more than [`FusionConfig::margin`]; the
//! default margin, 1, switches on readability alone), as bedside monitors
//! pick their analysis lead. A beat closer than [`FusionConfig::refractory`] to the
//! last beat reported is dropped (the same beat seen on two leads around a
//! switch).
//!
//! Both are online and chunk-invariant (every lead is cut at the same second
//! boundaries whatever the input chunks) and their memory is fixed at
//! construction.

use crate::rpeak::{Beat, Detector, DetectorConfig, DetectorConfigError};
use crate::sqi::{
    SecondQuality, SignalQuality, SignalState, SqiConfig, SqiConfigError, StateChange,
};

/// Why a monitor could not be built or fed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// Bad detector parameters.
    #[error(transparent)]
    Detector(#[from] DetectorConfigError),
    /// Bad signal-quality parameters.
    #[error(transparent)]
    Sqi(#[from] SqiConfigError),
    /// No lead, or too many.
    #[error("a multi-lead detector needs 1 to {max} leads, got {got}")]
    LeadCount {
        /// Leads given.
        got: usize,
        /// Most supported.
        max: usize,
    },
    /// The leads of one push differ in length.
    #[error("lead {lead} has {got} samples in this push, lead 0 has {expected}")]
    Ragged {
        /// Lead index.
        lead: usize,
        /// Its sample count.
        got: usize,
        /// Lead 0's.
        expected: usize,
    },
}

/// One lead: the R-peak detector gated by the signal state.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LeadMonitor {
    det: Detector,
    sqi: SignalQuality,
    #[serde(skip)]
    scratch: Vec<Beat>,
}

impl LeadMonitor {
    /// Default detector and quality parameters for `fs` Hz.
    pub fn new(fs: f64) -> Result<LeadMonitor, MonitorError> {
        LeadMonitor::with_config(DetectorConfig::new(fs), SqiConfig::new(fs))
    }

    /// Explicit parameters (both must have the same `fs`).
    pub fn with_config(det: DetectorConfig, sqi: SqiConfig) -> Result<LeadMonitor, MonitorError> {
        if det.fs != sqi.fs {
            return Err(MonitorError::Sqi(SqiConfigError::Parameter {
                name: "fs (differs from the detector's)",
                value: sqi.fs,
            }));
        }
        Ok(LeadMonitor {
            det: Detector::with_config(det)?,
            sqi: SignalQuality::with_config(sqi)?,
            scratch: Vec::new(),
        })
    }

    /// The current signal state.
    pub fn state(&self) -> SignalState {
        self.sqi.state()
    }

    /// The last second analysed.
    pub fn last_second(&self) -> Option<&SecondQuality> {
        self.sqi.last()
    }

    /// Bytes held in buffers: fixed at construction.
    pub fn buffer_bytes(&self) -> usize {
        self.det.buffer_bytes() + self.sqi.buffer_bytes()
    }

    /// Consumes samples (mV): beats reported while the signal is readable go
    /// to `beats`, each completed second to `seconds`, state changes to
    /// `changes`.
    pub fn push(
        &mut self,
        samples: &[f64],
        beats: &mut Vec<Beat>,
        seconds: &mut Vec<SecondQuality>,
        changes: &mut Vec<StateChange>,
    ) {
        let mut rest = samples;
        while !rest.is_empty() {
            let left = self
                .sqi
                .next_boundary()
                .saturating_sub(self.sqi.samples_seen())
                .max(1);
            let take = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
            let (piece, tail) = rest.split_at(take);
            self.det.push(piece, &mut self.scratch);
            if self.sqi.state().beats_allowed() {
                beats.append(&mut self.scratch);
            } else {
                self.scratch.clear();
            }
            self.sqi.push(piece, seconds, changes);
            rest = tail;
        }
    }

    /// End of stream: flushes the beat still held by the detector (reported
    /// only if the signal is readable).
    pub fn finish(&mut self, beats: &mut Vec<Beat>) {
        self.det.finish(&mut self.scratch);
        if self.sqi.state().beats_allowed() {
            beats.append(&mut self.scratch);
        } else {
            self.scratch.clear();
        }
    }
}

/// Parameters of [`MultiLeadDetector`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FusionConfig {
    /// Quality lead a secondary lead must have over the primary to be used.
    pub margin: f64,
    /// Beats closer than this to the last one reported are dropped, seconds.
    pub refractory: f64,
}

impl Default for FusionConfig {
    fn default() -> Self {
        FusionConfig {
            // Measured on the shared MIT-BIH records (docs/signal.md):
            // switching on a quality lead of 0.3 lost beats against MLII
            // alone; switching only when the primary is unreadable gains.
            margin: 1.0,
            refractory: 0.2,
        }
    }
}

/// Most leads a [`MultiLeadDetector`] takes (a 12-lead ECG has 12).
pub const MAX_LEADS: usize = 16;

/// Multi-lead fusion: the beats of the lead with the better signal quality,
/// second by second (see the module docs).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MultiLeadDetector {
    cfg: FusionConfig,
    leads: Vec<LeadMonitor>,
    active: usize,
    last_beat: Option<u64>,
    refractory: u64,
    #[serde(skip)]
    beats: Vec<Vec<Beat>>,
    #[serde(skip)]
    seconds: Vec<Vec<SecondQuality>>,
    #[serde(skip)]
    changes: Vec<StateChange>,
}

impl MultiLeadDetector {
    /// `leads` leads at `fs` Hz with default parameters.
    pub fn new(fs: f64, leads: usize) -> Result<MultiLeadDetector, MonitorError> {
        MultiLeadDetector::with_config(
            DetectorConfig::new(fs),
            SqiConfig::new(fs),
            FusionConfig::default(),
            leads,
        )
    }

    /// Explicit parameters.
    pub fn with_config(
        det: DetectorConfig,
        sqi: SqiConfig,
        cfg: FusionConfig,
        leads: usize,
    ) -> Result<MultiLeadDetector, MonitorError> {
        if leads == 0 || leads > MAX_LEADS {
            return Err(MonitorError::LeadCount {
                got: leads,
                max: MAX_LEADS,
            });
        }
        if !(cfg.margin.is_finite() && (0.0..=1.0).contains(&cfg.margin)) {
            return Err(MonitorError::Sqi(SqiConfigError::Parameter {
                name: "fusion margin",
                value: cfg.margin,
            }));
        }
        if !(cfg.refractory.is_finite() && (0.05..=0.5).contains(&cfg.refractory)) {
            return Err(MonitorError::Sqi(SqiConfigError::Parameter {
                name: "fusion refractory",
                value: cfg.refractory,
            }));
        }
        let monitors = (0..leads)
            .map(|_| LeadMonitor::with_config(det, sqi))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MultiLeadDetector {
            cfg,
            leads: monitors,
            active: 0,
            last_beat: None,
            refractory: (cfg.refractory * det.fs).round() as u64,
            beats: Vec::new(),
            seconds: Vec::new(),
            changes: Vec::new(),
        })
    }

    /// Number of leads.
    pub fn leads(&self) -> usize {
        self.leads.len()
    }

    /// The lead whose beats are reported now.
    pub fn active_lead(&self) -> usize {
        self.active
    }

    /// The fused signal state: the active lead's.
    pub fn state(&self) -> SignalState {
        self.leads
            .get(self.active)
            .map_or(SignalState::SignalLost, LeadMonitor::state)
    }

    /// Bytes held in buffers: fixed at construction.
    pub fn buffer_bytes(&self) -> usize {
        self.leads.iter().map(LeadMonitor::buffer_bytes).sum()
    }

    /// Consumes the same span of samples on every lead (`channels[l]` is lead
    /// `l`, all the same length) and appends the fused beats to `out`.
    pub fn push(&mut self, channels: &[&[f64]], out: &mut Vec<Beat>) -> Result<(), MonitorError> {
        if channels.len() != self.leads.len() {
            return Err(MonitorError::LeadCount {
                got: channels.len(),
                max: self.leads.len(),
            });
        }
        let expected = channels.first().map_or(0, |c| c.len());
        for (lead, c) in channels.iter().enumerate() {
            if c.len() != expected {
                return Err(MonitorError::Ragged {
                    lead,
                    got: c.len(),
                    expected,
                });
            }
        }
        self.beats.resize_with(self.leads.len(), Vec::new);
        self.seconds.resize_with(self.leads.len(), Vec::new);
        let mut pos = 0;
        while pos < expected {
            let left = self.leads.first().map_or(1, |m| {
                m.sqi
                    .next_boundary()
                    .saturating_sub(m.sqi.samples_seen())
                    .max(1)
            });
            let end = pos
                .saturating_add(usize::try_from(left).unwrap_or(usize::MAX))
                .min(expected);
            for (l, m) in self.leads.iter_mut().enumerate() {
                let piece = channels.get(l).and_then(|c| c.get(pos..end)).unwrap_or(&[]);
                if let (Some(b), Some(s)) = (self.beats.get_mut(l), self.seconds.get_mut(l)) {
                    m.push(piece, b, s, &mut self.changes);
                }
            }
            self.take_active(out);
            self.changes.clear();
            if self.seconds.iter().any(|s| !s.is_empty()) {
                self.select();
                for s in &mut self.seconds {
                    s.clear();
                }
            }
            pos = end;
        }
        Ok(())
    }

    /// End of stream.
    pub fn finish(&mut self, out: &mut Vec<Beat>) {
        self.beats.resize_with(self.leads.len(), Vec::new);
        for (m, b) in self.leads.iter_mut().zip(self.beats.iter_mut()) {
            m.finish(b);
        }
        self.take_active(out);
    }

    fn take_active(&mut self, out: &mut Vec<Beat>) {
        for (l, b) in self.beats.iter_mut().enumerate() {
            if l == self.active {
                for beat in b.drain(..) {
                    let keep = match self.last_beat {
                        Some(last) => beat.sample > last.saturating_add(self.refractory),
                        None => true,
                    };
                    if keep {
                        self.last_beat = Some(beat.sample);
                        out.push(beat);
                    }
                }
            } else {
                b.clear();
            }
        }
    }

    fn select(&mut self) {
        let quality = |m: &LeadMonitor| -> (bool, f64) {
            (
                m.state().beats_allowed(),
                m.last_second().map_or(0.0, |q| q.sqi),
            )
        };
        let Some(primary) = self.leads.first().map(quality) else {
            return;
        };
        let mut best = 0;
        let mut best_q = primary;
        for (l, m) in self.leads.iter().enumerate().skip(1) {
            let q = quality(m);
            let better =
                (q.0 && !best_q.0) || (q.0 == best_q.0 && q.1 > best_q.1 + self.cfg.margin);
            if better {
                best = l;
                best_q = q;
            }
        }
        self.active = best;
    }
}
