//! Online beat classification into the ANSI/AAMI EC57 classes N, S, V, F, Q.
//!
//! # Features
//!
//! Each beat found by the R-peak detector ([`crate::rpeak::Detector`]) is
//! described by [`FEATURES`] numbers, nearly all of them *relative to the
//! patient*: the RR intervals before and after the beat against the local
//! (last 8 intervals) and the long-run (exponential, 64 beats) average RR;
//! and the QRS shape of the beat against the patient's running **dominant
//! template** — the mean shape of the largest of up to four clusters of
//! beats, each cluster the running mean of the beats that correlate with it
//! (Pearson ≥ 0.90 over −250…+400 ms). The shape features are the
//! correlations with the dominant template over the QRS (−80…+100 ms), the
//! whole beat and the P wave region (−250…−60 ms), the QRS width (the span
//! holding the central 90 % of the squared slope) and its ratio to the
//! template's, the peak-to-peak amplitude, slope energy and R deflection
//! relative to the template, the normalised RMS difference, and the share of
//! recent beats that fell into the beat's own cluster. Features relative to
//! the patient's own dominant beat are what let a model trained on other
//! patients work on a new one (de Chazal et al. 2004; Llamedo & Martínez
//! 2011; Mondéjar-Guerra et al. 2019).
//!
//! # Model
//!
//! Multinomial logistic regression over the standardised features (four
//! outputs N, S, V, F), trained by `tools/train_beats.py` on features that
//! this module computes (`aorta eval beats --dump-features`), with class
//! weights balancing the classes. Chosen over a tree ensemble or an MLP
//! because inter-patient generalisation over 22 records is limited by
//! patient variety, not by model capacity, and a linear model over
//! patient-relative features overfits least; its weights are a few hundred
//! numbers ([`model`]), so every leave-one-record-out fold is committed too
//! and `aorta eval beats` never scores a record with a model trained on it.
//! A beat whose features cannot be computed (a flat or saturated signal, no
//! template) is Q, *unclassifiable*.
//!
//! # Guarantees
//!
//! - **Online, chunk-invariant**: a beat is classified as soon as the next
//!   beat has been reported and 400 ms of signal after its R peak are in,
//!   or at the latest [`MAX_RR_S`] + the detector's latency after its R peak;
//!   the classes never depend on how the input was split.
//! - **Bounded memory**: a ring of filtered samples of a few seconds, four
//!   templates and a few counters, fixed at construction.

use std::collections::VecDeque;

use crate::filter::{Biquad, group_delay};
use crate::rpeak::{Beat, Detector, DetectorConfig, DetectorConfigError};

pub mod eval;
pub mod model;

pub use model::Model;

/// Number of features per beat.
pub const FEATURES: usize = 18;

/// Names of the features, in order (the columns of `--dump-features`).
pub const FEATURE_NAMES: [&str; FEATURES] = [
    "pre_rr",
    "post_rr",
    "ln_pre_local",
    "ln_post_local",
    "ln_pre_avg",
    "ln_post_pre",
    "ln_local_avg",
    "qrs_width",
    "ln_width_ratio",
    "ln_p2p_ratio",
    "corr_qrs",
    "corr_beat",
    "corr_p",
    "ln_energy_ratio",
    "r_ratio",
    "rms_diff",
    "cluster_share",
    "is_dominant",
];

/// RR intervals are clamped to this many seconds; a beat is classified at
/// the latest this long (plus the detector's latency) after its R peak.
pub const MAX_RR_S: f64 = 2.0;

/// Window around the R peak kept per beat, seconds before / after.
const PRE_S: f64 = 0.25;
const POST_S: f64 = 0.40;
/// QRS window, seconds before / after the R peak.
const QRS_PRE_S: f64 = 0.08;
const QRS_POST_S: f64 = 0.10;
/// P-wave region, seconds before the R peak (from PRE_S).
const P_END_S: f64 = 0.06;
/// Search for the extremum around the detector's R peak, seconds.
const ALIGN_S: f64 = 0.05;
const CLUSTERS: usize = 4;
const CLUSTER_CORR: f64 = 0.90;
const CLUSTER_DECAY: f64 = 1.0 / 128.0;
const TEMPLATE_RATE: f64 = 1.0 / 16.0;
const LOCAL_RR: usize = 8;
const AVG_RATE: f64 = 1.0 / 64.0;

/// An AAMI beat class.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum BeatClass {
    /// Normal and bundle-branch-block beats (and escape beats): `N L R e j`.
    N,
    /// Supraventricular ectopic beats: `A a J S`.
    S,
    /// Ventricular ectopic beats: `V E`.
    V,
    /// Fusion of ventricular and normal beats: `F`.
    F,
    /// Paced, fusion of paced and normal, unclassifiable: `/ f Q`.
    Q,
}

impl BeatClass {
    /// The five classes in order.
    pub const ALL: [BeatClass; 5] = [
        BeatClass::N,
        BeatClass::S,
        BeatClass::V,
        BeatClass::F,
        BeatClass::Q,
    ];

    /// The AAMI class of a MIT-BIH beat annotation symbol; `None` for
    /// non-beat annotations.
    pub fn from_symbol(symbol: &str) -> Option<BeatClass> {
        Some(match symbol {
            "N" | "L" | "R" | "e" | "j" => BeatClass::N,
            "A" | "a" | "J" | "S" => BeatClass::S,
            "V" | "E" => BeatClass::V,
            "F" => BeatClass::F,
            "/" | "f" | "Q" => BeatClass::Q,
            _ => return None,
        })
    }

    /// The class's letter.
    pub fn letter(self) -> &'static str {
        match self {
            BeatClass::N => "N",
            BeatClass::S => "S",
            BeatClass::V => "V",
            BeatClass::F => "F",
            BeatClass::Q => "Q",
        }
    }

    /// Index in [`BeatClass::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Ectopic (not conducted from the sinus node normally): S, V or F.
    pub fn is_ectopic(self) -> bool {
        matches!(self, BeatClass::S | BeatClass::V | BeatClass::F)
    }
}

/// A classified beat.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClassifiedBeat {
    /// The detector's beat (R-peak sample, report sample of the detector).
    pub beat: Beat,
    /// Sample index whose arrival made the classifier decide.
    pub classified_at: u64,
    /// The class.
    pub class: BeatClass,
    /// Model probability of that class (1 for Q from unusable features).
    pub confidence: f64,
    /// Probability of V (0 for Q).
    pub p_v: f64,
    /// The features, when they could be computed.
    pub features: Option<[f64; FEATURES]>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Cluster {
    #[serde(with = "crate::compact")]
    template: Vec<f64>,
    weight: f64,
}

/// The online beat classifier: R-peak detection ([`Detector`]) and
/// classification ([`DetectedBeatClassifier`]) of the samples of one lead.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BeatClassifier {
    det: Detector,
    core: DetectedBeatClassifier,
    #[serde(skip)]
    scratch: Vec<Beat>,
}

impl BeatClassifier {
    /// A classifier for sampling rate `fs` using the model trained on every
    /// shared record ([`model::full`]).
    pub fn new(fs: f64) -> Result<BeatClassifier, DetectorConfigError> {
        BeatClassifier::with_model(fs, model::full())
    }

    /// A classifier using `model` (e.g. [`model::without`] a record).
    pub fn with_model(
        fs: f64,
        model: &'static Model,
    ) -> Result<BeatClassifier, DetectorConfigError> {
        Ok(BeatClassifier {
            det: Detector::with_config(DetectorConfig::new(fs))?,
            core: DetectedBeatClassifier::with_model(fs, model)?,
            scratch: Vec::new(),
        })
    }

    /// Bytes held in buffers, fixed at construction (the templates are
    /// created once each).
    pub fn buffer_bytes(&self) -> usize {
        self.core.buffer_bytes() + self.det.buffer_bytes()
    }

    /// Samples consumed so far.
    pub fn samples_seen(&self) -> u64 {
        self.core.samples_seen()
    }

    /// The classification stage.
    pub fn core(&self) -> &DetectedBeatClassifier {
        &self.core
    }

    /// Consumes samples (any unit, mV recommended), appending every beat to
    /// `out` once it is classified. Non-finite samples count as 0.
    pub fn push(&mut self, samples: &[f64], out: &mut Vec<ClassifiedBeat>) {
        // The detector and the classification stage see the same pieces,
        // so the beats reach the stage exactly when they are reported.
        let step = self.core.step();
        for chunk in samples.chunks(step) {
            let mut found = std::mem::take(&mut self.scratch);
            found.clear();
            self.det.push(chunk, &mut found);
            self.core.push(chunk, &found, out);
            self.scratch = found;
        }
    }

    /// End of stream: classifies the beats still pending.
    pub fn finish(&mut self, out: &mut Vec<ClassifiedBeat>) {
        let mut found = Vec::new();
        self.det.finish(&mut found);
        self.core.finish(&found, out);
    }
}

/// Most beats waiting for their classification; more (only from a caller
/// reporting beats faster than any heart beats) are classified at once.
const MAX_PENDING: usize = 32;

/// The classification stage of [`BeatClassifier`] for beats detected
/// elsewhere: it is given the samples of the lead and the beats a
/// [`Detector`] reported while consuming them (the streaming worker's own
/// detector, whose beats it gates by signal quality), and classifies each
/// beat as [`BeatClassifier`] would.
///
/// The whole state serialises (serde), the model by reference: its name
/// ([`Model::left_out`], empty for [`model::full`]) and a checksum of its
/// weights ([`Model::fingerprint`]), resolved to the built-in model of that
/// name on restore. A state naming no built-in model does not deserialize
/// (an error, never a guess); one saved under *other weights* of that name
/// (another model version) is restored with the built-in model and says so
/// ([`DetectedBeatClassifier::model_changed`]): what it has learnt (templates,
/// RR averages) does not depend on the model, only the class decisions do.
/// A state whose buffers do not fit its sampling rate does not deserialize.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "CoreState", into = "CoreState")]
pub struct DetectedBeatClassifier {
    fs: f64,
    model: &'static Model,
    /// Fingerprint of the model the state was saved under, when it was not
    /// the built-in one of that name.
    model_changed: Option<u64>,
    hp: Biquad,
    lp: Biquad,
    /// Delay of the morphology filter, samples.
    gd: u64,
    ring: Vec<f64>,
    /// Samples seen.
    n: u64,
    pre: usize,
    post: usize,
    /// Detected beats not yet classified (at most a few).
    pending: VecDeque<Beat>,
    prev_r: Option<u64>,
    local: VecDeque<f64>,
    avg_rr: Option<f64>,
    clusters: Vec<Cluster>,
    deadline: u64,
    /// Samples after an R peak by which its whole window is in.
    settle: u64,
}

/// The serialised form of [`DetectedBeatClassifier`].
#[derive(serde::Serialize, serde::Deserialize)]
struct CoreState {
    fs: f64,
    /// [`Model::left_out`] of the model.
    model: String,
    /// [`Model::fingerprint`] of the model, hexadecimal.
    model_fingerprint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model_changed: Option<String>,
    hp: Biquad,
    lp: Biquad,
    #[serde(with = "crate::compact")]
    ring: Vec<f64>,
    n: u64,
    pending: VecDeque<Beat>,
    prev_r: Option<u64>,
    local: VecDeque<f64>,
    avg_rr: Option<f64>,
    clusters: Vec<Cluster>,
}

/// Why a saved [`DetectedBeatClassifier`] was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// No built-in model has this name.
    #[error("no built-in beat model is named {0:?}")]
    UnknownModel(String),
    /// The sampling rate is not supported.
    #[error("beat classifier state: {0}")]
    Rate(#[from] DetectorConfigError),
    /// A buffer or counter does not fit the state's sampling rate.
    #[error("beat classifier state is inconsistent: {0}")]
    Inconsistent(&'static str),
}

impl From<DetectedBeatClassifier> for CoreState {
    fn from(c: DetectedBeatClassifier) -> CoreState {
        CoreState {
            fs: c.fs,
            model: c.model.left_out.to_string(),
            model_fingerprint: format!("{:016x}", c.model.fingerprint()),
            model_changed: c.model_changed.map(|f| format!("{f:016x}")),
            hp: c.hp,
            lp: c.lp,
            ring: c.ring,
            n: c.n,
            pending: c.pending,
            prev_r: c.prev_r,
            local: c.local,
            avg_rr: c.avg_rr,
            clusters: c.clusters,
        }
    }
}

impl TryFrom<CoreState> for DetectedBeatClassifier {
    type Error = RestoreError;

    fn try_from(s: CoreState) -> Result<DetectedBeatClassifier, RestoreError> {
        let model = if s.model.is_empty() {
            model::full()
        } else {
            model::without(&s.model).ok_or_else(|| RestoreError::UnknownModel(s.model.clone()))?
        };
        let saved = u64::from_str_radix(&s.model_fingerprint, 16)
            .map_err(|_| RestoreError::Inconsistent("model fingerprint"))?;
        let earlier = match s.model_changed.as_deref() {
            Some(f) => Some(
                u64::from_str_radix(f, 16)
                    .map_err(|_| RestoreError::Inconsistent("model fingerprint"))?,
            ),
            None => None,
        };
        let mut c = DetectedBeatClassifier::with_model(s.fs, model)?;
        let bad = RestoreError::Inconsistent;
        if s.ring.len() != c.ring.len() {
            return Err(bad("ring length"));
        }
        let width = c.pre + c.post + 1;
        if s.clusters.len() > CLUSTERS
            || s.clusters
                .iter()
                .any(|k| k.template.len() != width || !k.weight.is_finite())
        {
            return Err(bad("templates"));
        }
        if s.n > 1 << 62
            || s.pending.len() > MAX_PENDING
            || s.local.len() > LOCAL_RR
            || s.pending
                .iter()
                .any(|b| b.sample > s.n || b.reported_at > s.n)
            || s.prev_r.is_some_and(|r| r > s.n)
        {
            return Err(bad("beat queues"));
        }
        if s.ring.iter().any(|v| !v.is_finite()) {
            return Err(bad("ring values"));
        }
        c.model_changed = if saved == model.fingerprint() {
            earlier
        } else {
            Some(saved)
        };
        c.hp = s.hp;
        c.lp = s.lp;
        c.ring = s.ring;
        c.n = s.n;
        c.pending = s.pending;
        c.prev_r = s.prev_r;
        c.local = s.local;
        c.avg_rr = s.avg_rr;
        c.clusters = s.clusters;
        Ok(c)
    }
}

impl DetectedBeatClassifier {
    /// A classification stage for sampling rate `fs` using `model`.
    pub fn with_model(
        fs: f64,
        model: &'static Model,
    ) -> Result<DetectedBeatClassifier, DetectorConfigError> {
        DetectedBeatClassifier::starting_at(fs, model, 0)
    }

    /// A stage whose first sample is the detector's sample `first` (for a
    /// detector that has already run: the beats' sample indices are the
    /// detector's).
    pub fn starting_at(
        fs: f64,
        model: &'static Model,
        first: u64,
    ) -> Result<DetectedBeatClassifier, DetectorConfigError> {
        // The detector's checks of the rate (and its latency bound).
        let cfg = DetectorConfig::new(fs);
        Detector::with_config(cfg)?;
        let hp = Biquad::highpass(fs, 0.5);
        let lp = Biquad::lowpass(fs, 40.0);
        let gd = group_delay(&[hp, lp], fs, 10.0).round().max(0.0) as u64;
        let s = |t: f64| (t * fs).round().max(1.0) as usize;
        let pre = s(PRE_S);
        let post = s(POST_S);
        let deadline = s(MAX_RR_S + cfg.max_latency) as u64 + 1;
        let ring = deadline as usize + pre + post + gd as usize + s(0.5);
        Ok(DetectedBeatClassifier {
            fs,
            model,
            model_changed: None,
            hp,
            lp,
            gd,
            ring: vec![0.0; ring],
            n: first,
            pre,
            post,
            pending: VecDeque::new(),
            prev_r: None,
            local: VecDeque::with_capacity(LOCAL_RR + 1),
            avg_rr: None,
            clusters: Vec::with_capacity(CLUSTERS),
            deadline,
            settle: (post + s(ALIGN_S) + 1) as u64 + gd,
        })
    }

    /// The model in use.
    pub fn model(&self) -> &'static Model {
        self.model
    }

    /// `Some(fingerprint)` when this state was restored from one saved under
    /// another version of its model (which it then replaced by the built-in
    /// one): the classes before and after the restore come from different
    /// weights.
    pub fn model_changed(&self) -> Option<u64> {
        self.model_changed
    }

    /// Bytes held in buffers, fixed at construction (the templates are
    /// created once each).
    pub fn buffer_bytes(&self) -> usize {
        (self.ring.capacity() + CLUSTERS * (self.pre + self.post + 1)) * 8
    }

    /// Samples consumed so far (counting from the detector's sample 0).
    pub fn samples_seen(&self) -> u64 {
        self.n
    }

    /// R-peak sample of the oldest beat given but not yet classified.
    pub fn oldest_pending(&self) -> Option<u64> {
        self.pending.front().map(|b| b.sample)
    }

    /// Sub-chunks short enough that the ring still holds every window a
    /// decision taken at their end may need.
    fn step(&self) -> usize {
        ((0.25 * self.fs) as usize).max(1)
    }

    /// Consumes the samples that follow those already seen, and `beats`:
    /// the beats a detector reported while consuming exactly these samples
    /// (each enters when the sample that made it reported,
    /// [`Beat::reported_at`], has), appending every beat to `out` once it is
    /// classified. Leave beats out (e.g. while the signal is unreadable) by
    /// not passing them. Non-finite samples count as 0.
    pub fn push(&mut self, samples: &[f64], beats: &[Beat], out: &mut Vec<ClassifiedBeat>) {
        let mut next = 0;
        for chunk in samples.chunks(self.step()) {
            for &x in chunk {
                let x = if x.is_finite() {
                    x.clamp(-1e6, 1e6)
                } else {
                    0.0
                };
                let y = self.lp.step(self.hp.step(x));
                let len = self.ring.len() as u64;
                if let Some(slot) = self.ring.get_mut((self.n % len.max(1)) as usize) {
                    *slot = y;
                }
                self.n += 1;
            }
            while let Some(b) = beats.get(next).filter(|b| b.reported_at < self.n) {
                self.pending.push_back(*b);
                next += 1;
            }
            self.decide(false, out);
        }
        // Beats reported later than these samples (not from a detector fed
        // exactly these samples) enter now.
        if let Some(rest) = beats.get(next..).filter(|r| !r.is_empty()) {
            self.pending.extend(rest.iter().copied());
            self.decide(false, out);
        }
    }

    /// Classifies every pending beat now, with `beats` (those a detector
    /// reported when it was flushed) added: at the end of a stream, or where
    /// the caller stops giving beats.
    pub fn finish(&mut self, beats: &[Beat], out: &mut Vec<ClassifiedBeat>) {
        self.pending.extend(beats.iter().copied());
        self.decide(true, out);
    }

    fn decide(&mut self, end: bool, out: &mut Vec<ClassifiedBeat>) {
        while let Some(&b) = self.pending.front() {
            let next = self.pending.get(1).map(|n| n.sample);
            let ready = end
                || self.pending.len() > MAX_PENDING
                || self.n >= b.sample.saturating_add(self.deadline)
                || (next.is_some() && self.n > b.sample.saturating_add(self.settle));
            if !ready {
                break;
            }
            self.pending.pop_front();
            let c = self.classify(b, next);
            out.push(c);
        }
    }

    /// Filtered sample at absolute index `i` aligned to the raw signal
    /// (filter delay removed); edges are extended with the nearest sample.
    fn at(&self, i: i64) -> f64 {
        let len = (self.ring.len() as i64).max(1);
        let newest = self.n as i64 - 1;
        let oldest = (self.n as i64 - len).max(0);
        let j = (i + self.gd as i64).clamp(oldest, newest.max(oldest));
        self.ring
            .get(j.rem_euclid(len) as usize)
            .copied()
            .unwrap_or(0.0)
    }

    fn classify(&mut self, b: Beat, next: Option<u64>) -> ClassifiedBeat {
        let fs = self.fs;
        let max_rr = MAX_RR_S;
        let post_rr = next
            .map(|n| (n.saturating_sub(b.sample) as f64 / fs).min(max_rr))
            .filter(|v| *v > 0.0)
            .unwrap_or(max_rr);
        let pre_rr = self
            .prev_r
            .map(|p| (b.sample.saturating_sub(p) as f64 / fs).min(max_rr))
            .filter(|v| *v > 0.0)
            .unwrap_or(post_rr);
        self.prev_r = Some(b.sample);
        let local = if self.local.is_empty() {
            pre_rr
        } else {
            self.local.iter().sum::<f64>() / self.local.len() as f64
        };
        let avg = self.avg_rr.unwrap_or(pre_rr);
        // Align on the extremum near the detector's R peak.
        let a = (ALIGN_S * fs).round() as i64;
        let r0 = b.sample as i64;
        let base = self.baseline(r0);
        let mut r = r0;
        let mut best = f64::NEG_INFINITY;
        for i in r0 - a..=r0 + a {
            let v = (self.at(i) - base).abs();
            if v > best {
                best = v;
                r = i;
            }
        }
        let base = self.baseline(r);
        let beat: Vec<f64> = (r - self.pre as i64..=r + self.post as i64)
            .map(|i| self.at(i) - base)
            .collect();
        let features = self.features(&beat, pre_rr, post_rr, local, avg);
        // Update the running state after the features are taken.
        self.local.push_back(pre_rr);
        while self.local.len() > LOCAL_RR {
            self.local.pop_front();
        }
        self.avg_rr = Some(avg + AVG_RATE * (pre_rr - avg));
        self.learn(&beat);
        let (class, confidence, p_v) = match features {
            Some(f) => {
                let p = self.model.probabilities(&f);
                let (mut k, mut pk) = (0, f64::NEG_INFINITY);
                for (i, &v) in p.iter().enumerate() {
                    if v > pk {
                        k = i;
                        pk = v;
                    }
                }
                let class = BeatClass::ALL.get(k).copied().unwrap_or(BeatClass::Q);
                (
                    class,
                    pk,
                    p.get(BeatClass::V.index()).copied().unwrap_or(0.0),
                )
            }
            None => (BeatClass::Q, 1.0, 0.0),
        };
        ClassifiedBeat {
            beat: b,
            classified_at: self.n,
            class,
            confidence,
            p_v,
            features,
        }
    }

    /// Mean of the 30 ms starting 120 ms before `r` (the PR segment of a
    /// normal beat).
    fn baseline(&self, r: i64) -> f64 {
        let s = (0.12 * self.fs).round() as i64;
        let w = ((0.03 * self.fs).round() as i64).max(1);
        (r - s..r - s + w).map(|i| self.at(i)).sum::<f64>() / w as f64
    }

    fn dominant(&self) -> Option<(usize, &Cluster)> {
        self.clusters
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.weight.total_cmp(&b.1.weight))
    }

    fn best_cluster(&self, beat: &[f64]) -> Option<(usize, f64)> {
        self.clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (i, corr(beat, &c.template)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    fn learn(&mut self, beat: &[f64]) {
        for c in &mut self.clusters {
            c.weight *= 1.0 - CLUSTER_DECAY;
        }
        match self.best_cluster(beat) {
            Some((i, rho)) if rho >= CLUSTER_CORR => {
                if let Some(c) = self.clusters.get_mut(i) {
                    for (t, &x) in c.template.iter_mut().zip(beat) {
                        *t += TEMPLATE_RATE * (x - *t);
                    }
                    c.weight += 1.0;
                }
            }
            _ => {
                let fresh = Cluster {
                    template: beat.to_vec(),
                    weight: 1.0,
                };
                if self.clusters.len() < CLUSTERS {
                    self.clusters.push(fresh);
                } else if let Some(weakest) = self
                    .clusters
                    .iter_mut()
                    .min_by(|a, b| a.weight.total_cmp(&b.weight))
                {
                    *weakest = fresh;
                }
            }
        }
    }

    fn features(
        &self,
        beat: &[f64],
        pre_rr: f64,
        post_rr: f64,
        local: f64,
        avg: f64,
    ) -> Option<[f64; FEATURES]> {
        let (di, dom) = self.dominant()?;
        let t = &dom.template;
        let fs = self.fs;
        let q0 = self.pre - (QRS_PRE_S * fs).round() as usize;
        let q1 = self.pre + (QRS_POST_S * fs).round() as usize;
        let p1 = self.pre - (P_END_S * fs).round() as usize;
        let bq = beat.get(q0..=q1)?;
        let tq = t.get(q0..=q1)?;
        let p2p = |v: &[f64]| {
            let mx = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mn = v.iter().copied().fold(f64::INFINITY, f64::min);
            mx - mn
        };
        let (bp, tp) = (p2p(bq), p2p(tq));
        let (be, te) = (slope_energy(bq), slope_energy(tq));
        let (bw, tw) = (width(bq, fs), width(tq, fs));
        if !(tp > 1e-9 && bp > 1e-9 && be > 0.0 && te > 0.0 && bw > 0.0 && tw > 0.0) {
            return None;
        }
        let r_t = t.get(self.pre).copied()?;
        let r_b = beat.get(self.pre).copied()?;
        let rms = (bq
            .iter()
            .zip(tq)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f64>()
            / tq.iter().map(|y| y * y).sum::<f64>().max(1e-18))
        .sqrt();
        let total: f64 = self.clusters.iter().map(|c| c.weight).sum();
        let (own, share) = match self.best_cluster(beat) {
            Some((i, rho)) if rho >= CLUSTER_CORR => (
                i,
                self.clusters.get(i).map_or(0.0, |c| c.weight) / total.max(1e-9),
            ),
            _ => (usize::MAX, 0.0),
        };
        let ln = |v: f64| v.max(1e-3).ln().clamp(-5.0, 5.0);
        let f = [
            pre_rr,
            post_rr,
            ln(pre_rr / local),
            ln(post_rr / local),
            ln(pre_rr / avg),
            ln(post_rr / pre_rr),
            ln(local / avg),
            bw,
            ln(bw / tw),
            ln(bp / tp),
            max_lag_corr(bq, tq),
            corr(beat, t),
            corr(beat.get(..p1)?, t.get(..p1)?),
            ln(be / te),
            (r_b / tp).clamp(-5.0, 5.0) * r_t.signum(),
            rms.min(5.0),
            share,
            if own == di { 1.0 } else { 0.0 },
        ];
        f.iter().all(|v| v.is_finite()).then_some(f)
    }
}

/// Pearson correlation (0 when either side is constant).
fn corr(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n < 2 {
        return 0.0;
    }
    let (a, b) = (a.get(..n).unwrap_or(&[]), b.get(..n).unwrap_or(&[]));
    let ma = a.iter().sum::<f64>() / n as f64;
    let mb = b.iter().sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x - ma, y - mb);
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    if saa <= 0.0 || sbb <= 0.0 {
        0.0
    } else {
        (sab / (saa * sbb).sqrt()).clamp(-1.0, 1.0)
    }
}

/// Best correlation of `a` and `b` shifted by up to 3 samples either way.
fn max_lag_corr(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let mut best = corr(a, b);
    for lag in 1..=3usize.min(n / 4) {
        let (Some(a1), Some(b1), Some(a2), Some(b2)) = (
            a.get(lag..n),
            b.get(..n - lag),
            a.get(..n - lag),
            b.get(lag..n),
        ) else {
            continue;
        };
        best = best.max(corr(a1, b1)).max(corr(a2, b2));
    }
    best
}

fn slope_energy(v: &[f64]) -> f64 {
    v.windows(2)
        .map(|w| match w {
            [a, b] => (b - a) * (b - a),
            _ => 0.0,
        })
        .sum()
}

/// Span, seconds, holding the central 90 % of the squared slope.
fn width(v: &[f64], fs: f64) -> f64 {
    let total = slope_energy(v);
    if total <= 0.0 {
        return 0.0;
    }
    let (mut acc, mut lo, mut hi) = (0.0, None, None);
    for (i, w) in v.windows(2).enumerate() {
        if let [a, b] = w {
            acc += (b - a) * (b - a);
        }
        if lo.is_none() && acc >= 0.05 * total {
            lo = Some(i);
        }
        if hi.is_none() && acc >= 0.95 * total {
            hi = Some(i);
        }
    }
    match (lo, hi) {
        (Some(l), Some(h)) => (h - l + 1) as f64 / fs,
        _ => 0.0,
    }
}

/// Classifies a whole signal (convenience wrapper over [`BeatClassifier`]).
pub fn classify(
    signal: &[f64],
    fs: f64,
    model: &'static Model,
) -> Result<Vec<ClassifiedBeat>, DetectorConfigError> {
    let mut c = BeatClassifier::with_model(fs, model)?;
    let mut out = Vec::new();
    c.push(signal, &mut out);
    c.finish(&mut out);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic(fs: f64, secs: f64) -> Vec<f64> {
        // Narrow normal beats every 0.8 s; every 5th beat early and wide.
        let n = (secs * fs) as usize;
        let mut x = vec![0.0; n];
        let mut t = 0.5;
        let mut k = 0;
        while t < secs - 1.0 {
            let wide = k % 5 == 4;
            let (w, a) = if wide { (0.06, -1.5) } else { (0.012, 1.0) };
            let c = t + if wide { -0.25 } else { 0.0 };
            for (i, v) in x.iter_mut().enumerate() {
                let d = i as f64 / fs - c;
                *v += a * (-(d * d) / (2.0 * w * w)).exp();
            }
            t += 0.8;
            k += 1;
        }
        x
    }

    #[test]
    fn chunking_does_not_change_the_classes() {
        let fs = 360.0;
        let x = synthetic(fs, 60.0);
        let whole = classify(&x, fs, model::full()).unwrap();
        assert!(whole.len() > 60, "{}", whole.len());
        for chunk in [1usize, 7, 100, 4096] {
            let mut c = BeatClassifier::new(fs).unwrap();
            let mut out = Vec::new();
            for part in x.chunks(chunk) {
                c.push(part, &mut out);
            }
            c.finish(&mut out);
            assert_eq!(strip(&out), strip(&whole), "chunk {chunk}");
        }
    }

    fn strip(v: &[ClassifiedBeat]) -> Vec<(u64, BeatClass, u64)> {
        v.iter()
            .map(|b| (b.beat.sample, b.class, b.confidence.to_bits()))
            .collect()
    }

    #[test]
    fn an_outside_detector_gives_the_same_classes() {
        // The worker's way: its own detector, fed pieces of any length, and
        // the stage given the samples and the beats of each piece.
        let fs = 360.0;
        let x = synthetic(fs, 60.0);
        let whole = classify(&x, fs, model::full()).unwrap();
        for piece in [1usize, 90, 360, 1000, 4096] {
            let mut det = Detector::with_config(DetectorConfig::new(fs)).unwrap();
            let mut core = DetectedBeatClassifier::with_model(fs, model::full()).unwrap();
            let mut out = Vec::new();
            for part in x.chunks(piece) {
                let mut beats = Vec::new();
                det.push(part, &mut beats);
                core.push(part, &beats, &mut out);
            }
            let mut beats = Vec::new();
            det.finish(&mut beats);
            core.finish(&beats, &mut out);
            assert_eq!(strip(&out), strip(&whole), "pieces of {piece}");
        }
    }

    #[test]
    fn a_checkpoint_restores_the_same_classes() {
        let fs = 360.0;
        let x = synthetic(fs, 60.0);
        let whole = classify(&x, fs, model::full()).unwrap();
        let mut c = BeatClassifier::new(fs).unwrap();
        let mut out = Vec::new();
        let cut = (27.3 * fs) as usize;
        c.push(&x[..cut], &mut out);
        let json = serde_json::to_string(&c).unwrap();
        let mut c: BeatClassifier = serde_json::from_str(&json).unwrap();
        assert_eq!(c.core().model_changed(), None);
        c.push(&x[cut..], &mut out);
        c.finish(&mut out);
        assert_eq!(strip(&out), strip(&whole));
    }

    #[test]
    fn a_checkpoint_of_another_model_is_never_taken_silently() {
        let fs = 250.0;
        let mut c = DetectedBeatClassifier::with_model(fs, model::full()).unwrap();
        let mut out = Vec::new();
        c.push(&synthetic(fs, 20.0), &[], &mut out);
        let v = serde_json::to_value(&c).unwrap();
        let fp = format!("{:016x}", model::full().fingerprint());
        assert_eq!(v["model"], "");
        assert_eq!(v["model_fingerprint"], fp.as_str());
        // Saved under other weights of the same name: restored with the
        // built-in model, and it says so (also after another checkpoint).
        let mut other = v.clone();
        other["model_fingerprint"] = "0123456789abcdef".into();
        let r: DetectedBeatClassifier = serde_json::from_value(other).unwrap();
        assert_eq!(r.model_changed(), Some(0x0123_4567_89ab_cdef));
        assert!(std::ptr::eq(r.model(), model::full()));
        let again: DetectedBeatClassifier =
            serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(again.model_changed(), Some(0x0123_4567_89ab_cdef));
        // A model no build has: refused.
        let mut unknown = v.clone();
        unknown["model"] = "999".into();
        let e = serde_json::from_value::<DetectedBeatClassifier>(unknown).unwrap_err();
        assert!(e.to_string().contains("no built-in beat model"), "{e}");
        // A fold is resolved by its name.
        let fold = "100";
        let mut named = v.clone();
        named["model"] = fold.into();
        named["model_fingerprint"] =
            format!("{:016x}", model::without(fold).unwrap().fingerprint()).into();
        let r: DetectedBeatClassifier = serde_json::from_value(named).unwrap();
        assert_eq!(r.model().left_out, fold);
        assert_eq!(r.model_changed(), None);
        // Buffers that do not fit the rate, or a rate out of range: refused.
        for (key, bad) in [
            ("ring", serde_json::json!([0.0, 1.0])),
            ("fs", serde_json::json!(1.0)),
            (
                "clusters",
                serde_json::json!([{ "template": [1.0], "weight": 1.0 }]),
            ),
            ("model_fingerprint", serde_json::json!("xyz")),
            ("n", serde_json::json!(u64::MAX)),
            (
                "pending",
                serde_json::json!([{ "sample": u64::MAX, "reported_at": u64::MAX }]),
            ),
        ] {
            let mut w = v.clone();
            w[key] = bad;
            assert!(
                serde_json::from_value::<DetectedBeatClassifier>(w).is_err(),
                "{key}"
            );
        }
    }

    #[test]
    fn flat_and_hostile_input_is_q_or_nothing() {
        let fs = 250.0;
        let mut x = vec![0.0; 5000];
        x.extend(std::iter::repeat_n(f64::NAN, 500));
        x.extend(std::iter::repeat_n(f64::INFINITY, 500));
        let out = classify(&x, fs, model::full()).unwrap();
        assert!(out.iter().all(|b| b.class == BeatClass::Q), "{out:?}");
        assert!(BeatClassifier::new(f64::NAN).is_err());
    }

    #[test]
    fn memory_is_fixed() {
        let fs = 360.0;
        let mut c = BeatClassifier::new(fs).unwrap();
        let before = c.buffer_bytes();
        let x = synthetic(fs, 120.0);
        let mut out = Vec::new();
        c.push(&x, &mut out);
        assert_eq!(c.buffer_bytes(), before);
        assert!(c.core.pending.len() <= 8);
        assert!(c.core.clusters.len() <= CLUSTERS);
    }

    #[test]
    fn aami_mapping() {
        for (s, c) in [
            ("N", BeatClass::N),
            ("L", BeatClass::N),
            ("A", BeatClass::S),
            ("V", BeatClass::V),
            ("E", BeatClass::V),
            ("F", BeatClass::F),
            ("/", BeatClass::Q),
        ] {
            assert_eq!(BeatClass::from_symbol(s), Some(c));
        }
        assert_eq!(BeatClass::from_symbol("+"), None);
    }
}
