//! The ECG operator: per device, raw samples in; beats, heart rate, HRV and
//! rhythm events out. It runs inside the attested worker.
//!
//! State per device (all of it checkpointed with the engine): the online
//! R-peak detector ([`aorta_signal::rpeak::Detector`]), the signal quality
//! ([`aorta_signal::sqi::SignalQuality`]), the beat classifier
//! ([`aorta_signal::beats::DetectedBeatClassifier`], on the detector's beats;
//! its model checkpointed by name and weights fingerprint), the rhythm monitor
//! ([`aorta_signal::rhythm::RhythmMonitor`]), the beat times still needed by
//! an open window, rhythm events waiting for the watermark, and for event
//! strips the last 33 s of every channel and the strips waiting for the 5 s
//! after their event. One 360-Hz device's state is about 102 KB of JSON, of
//! which the beat classifier about 24 KB (`tests/ecg_beat_classes.rs`).
//!
//! Every beat the detector keeps (while the signal is readable) is
//! classified N/S/V/F/Q and fed to
//! [`aorta_signal::rhythm::RhythmMonitor::push_classified`]: AF evidence
//! without the intervals next to V and F beats, and ventricular tachycardia,
//! ventricular runs, bigeminy and trigeminy — the code path of `aorta eval
//! rhythm|af`, which give the same events on the same samples. Beats from RR
//! input are not classified (no waveform): their AF uses every interval.
//!
//! Outputs, each with a deterministic identity `(device, start, end)`:
//! - [`EcgResult::HeartRate`] per sliding window (default 10 s every 5 s):
//!   beats in the window and the mean rate over their intervals;
//! - [`EcgResult::Hrv`] per tumbling window (default 5 min, Task Force):
//!   the main time-domain, frequency-domain and Poincaré values;
//! - [`EcgResult::Rhythm`] for each AF onset/offset, brady/tachy change,
//!   pause, signal state, VT onset/offset, ventricular run, bigeminy and
//!   trigeminy onset/offset, as an interval `[t, t + 1 + kind)` µs so that two events at the
//!   same instant keep distinct identities;
//! - [`EcgResult::Strip`] for each rhythm event of a device that sends
//!   samples: every channel, µV, from 5 s before the event to 5 s after,
//!   over `[t − 5 s, t + 5 s + 1 + kind)` (`docs/results-format.md`, "Event
//!   strips"; the ring of the last 33 s of all channels it is cut from is
//!   part of the state);
//! - [`EcgResult::Beats`] per tumbling window (default 30 s): the beat times.
//!
//! A chunk whose first sample is more than one second away from where the
//! previous chunk ended (a device restart), or that follows missing frames
//! ([`EcgEvent::AfterGap`]), restarts the detector.
//!
//! Two kinds of event enter the operator ([`EcgEvent`]):
//! - [`EcgEvent::Samples`]: raw ECG, which goes through the R-peak detector;
//! - [`EcgEvent::Rr`]: RR intervals from a chest strap or PPG wearable (RR
//!   upload frames, codec 2), which enter at the beat stage and skip the
//!   detector. The event time is the first beat; beat `k + 1` is at
//!   `t + rr[0] + … + rr[k]`. A frame that starts exactly at the previous
//!   frame's last beat continues the series; any other start is a gap: the
//!   beats after it form a new segment and no interval is counted across it
//!   (heart rate and HRV use only intervals inside a segment). The rhythm
//!   monitor sees the beats as they come, so a gap longer than the pause
//!   threshold is reported as a pause.
//!
//! Both feed the same beat stage: rhythm monitor, heart-rate and HRV windows
//! and result types.

use std::cell::RefCell;
use std::collections::VecDeque;

use aorta_signal::beats::{ClassifiedBeat, DetectedBeatClassifier, Model, model};
use aorta_signal::hrv::{ArtefactRule, HrvEngine, HrvOptions, NnSeries, WindowCoverage};
use aorta_signal::rhythm::{RhythmConfig, RhythmEvent, RhythmEventKind, RhythmMonitor};
use aorta_signal::rpeak::{Beat, Detector};
use aorta_signal::sqi::{SignalQuality, SignalState, StateChange};
use serde::{Deserialize, Serialize};

use crate::{KeyedOperator, Micros};

/// Consecutive samples of a device: the analysed lead (channel 0) and the
/// frame's other channels; the event time is the time of the first sample
/// (µs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EcgChunk {
    /// Sampling rate, Hz.
    pub fs: f64,
    /// Samples of the analysed lead (channel 0) in physical units (mV).
    pub samples: Vec<f64>,
    /// Every channel of the frame (0 = the analysed lead, 1, 2, …), each in
    /// µV with its own calibration ([`micro_volts`]) and as long as
    /// `samples`. Only event strips use them; when empty, strips show the
    /// analysed lead from `samples`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leads_uv: Vec<Vec<i32>>,
}

/// A raw sample `v` of a channel calibrated `(gain, baseline)` in µV:
/// `round(1000 · (v − baseline) / gain)`, saturated to `i32` (the gain is
/// used as given: callers apply `aorta_crypto::frame::usable_gain` first).
/// The analysed lead's µV in a strip are `round(1000 · mV)` of the same
/// `(v − baseline) / gain`.
pub fn micro_volts(v: i32, baseline: i32, gain: f64) -> i32 {
    mv_to_uv((f64::from(v) - f64::from(baseline)) / gain)
}

/// mV → µV, rounded and saturated (`as` saturates; NaN is 0).
pub(crate) fn mv_to_uv(mv: f64) -> i32 {
    (mv * 1000.0).round() as i32
}

/// Consecutive RR intervals of a device; the event time is the time of the
/// beat that starts the first interval (µs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RrBeats {
    /// RR intervals, µs (each > 0; frames enforce 200 ms..5 s).
    pub rr_us: Vec<i32>,
}

/// What enters the ECG operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EcgEvent {
    /// Raw ECG samples: R-peak detection, then the beat stage.
    Samples(EcgChunk),
    /// RR intervals: straight to the beat stage.
    Rr(RrBeats),
    /// A frame that follows missing frames of its device: the gap is
    /// reported (an [`EcgResult::Gap`]), then the frame is analysed.
    AfterGap(Gap, Box<EcgEvent>),
}

/// Frames of a device that never reached the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// The first missing sequence number.
    pub first_missing: u64,
    /// How many sequence numbers are missing.
    pub missing: u64,
}

impl From<EcgChunk> for EcgEvent {
    fn from(c: EcgChunk) -> Self {
        EcgEvent::Samples(c)
    }
}

impl From<RrBeats> for EcgEvent {
    fn from(r: RrBeats) -> Self {
        EcgEvent::Rr(r)
    }
}

/// HRV summary of one window (absent values are NaN, `null` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HrvSummary {
    /// NN intervals used.
    pub n_nn: usize,
    /// Mean NN, ms.
    #[serde(deserialize_with = "nan_if_null")]
    pub mean_nn: f64,
    /// SDNN, ms.
    #[serde(deserialize_with = "nan_if_null")]
    pub sdnn: f64,
    /// RMSSD, ms.
    #[serde(deserialize_with = "nan_if_null")]
    pub rmssd: f64,
    /// pNN50, %.
    #[serde(deserialize_with = "nan_if_null")]
    pub pnn50: f64,
    /// LF power, ms².
    #[serde(deserialize_with = "nan_if_null")]
    pub lf: f64,
    /// HF power, ms².
    #[serde(deserialize_with = "nan_if_null")]
    pub hf: f64,
    /// LF/HF.
    #[serde(deserialize_with = "nan_if_null")]
    pub lf_hf: f64,
    /// Poincaré SD1, ms.
    #[serde(deserialize_with = "nan_if_null")]
    pub sd1: f64,
    /// Poincaré SD2, ms.
    #[serde(deserialize_with = "nan_if_null")]
    pub sd2: f64,
    /// Fraction of the window spanned by beat intervals inside it (0..=1;
    /// intervals across a gap or a segment break do not count). `None`
    /// (absent) in results written before coverage was recorded.
    #[serde(default)]
    pub coverage: Option<f64>,
    /// The window's beats cover less than
    /// [`aorta_signal::hrv::MIN_COVERAGE`] of it: not a full-length result.
    /// Each metric is also withheld (NaN) when the window holds less NN time
    /// than it needs ([`aorta_signal::hrv::HrvReport::withhold_short`]).
    #[serde(default)]
    pub partial: bool,
}

/// Deserializes a number, or `null` (how JSON writes NaN) as NaN, so results
/// and checkpointed state read back what was written.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One result of the ECG operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EcgResult {
    /// Heart rate over a sliding window.
    HeartRate {
        /// Beats detected in the window.
        beats: u32,
        /// Mean rate over the window's beat intervals (NaN with < 2 beats,
        /// `null` in JSON).
        #[serde(deserialize_with = "nan_if_null")]
        bpm: f64,
    },
    /// HRV over a tumbling window (absent values are NaN).
    Hrv(HrvSummary),
    /// A rhythm event.
    Rhythm(RhythmEvent),
    /// The ECG around a rhythm event, every channel the device sent
    /// (`docs/results-format.md`, "Event strips"). The result's window is
    /// the strip's nominal span `[t − 5 s, t + 5 s + 1 + kind)` (`kind` as in
    /// the event's own window), so it never equals the event's or another
    /// result's; the samples present start at `first_sample_us`.
    Strip(EcgStrip),
    /// The beats detected in one tumbling window (for beat annotations and
    /// beat-level review). The result's window is the tumbling window.
    Beats(BeatTimes),
    /// Frames of the device are missing: results around this window are
    /// computed without them (the window runs from the end of the last
    /// frame analysed to the start of the frame after the gap).
    Gap {
        /// The first missing sequence number.
        first_missing_sequence: u64,
        /// How many frames are missing.
        missing_frames: u64,
    },
}

/// The ECG around one rhythm event: every channel of the device's frames,
/// in µV, from about 5 s before the event to 5 s after it (shorter where the
/// stream starts later, ends sooner or has a gap: `docs/results-format.md`,
/// "Event strips").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EcgStrip {
    /// The event the strip shows (as in its `rhythm` result).
    pub event: RhythmEvent,
    /// Sampling rate, Hz.
    pub fs: f64,
    /// Time of each lead's first sample, µs since the Unix epoch.
    pub first_sample_us: i64,
    /// One entry per channel, in the frames' channel order.
    pub leads: Vec<StripLead>,
}

/// The beats of one window ([`EcgResult::Beats`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeatTimes {
    /// Beat times (R peaks, or the beats an RR stream implies), µs since
    /// the Unix epoch, ascending, each inside the result's window.
    pub r_peaks_us: Vec<i64>,
}

/// One channel of an [`EcgStrip`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripLead {
    /// Channel index in the device's frames (0 = the analysed lead).
    pub channel: u16,
    /// Samples, µV (baseline removed by the channel's calibration).
    pub samples_uv: Vec<i32>,
}

/// Parameters of [`EcgOperator`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EcgConfig {
    /// Heart-rate window length, µs.
    pub hr_window: Micros,
    /// Heart-rate window slide, µs.
    pub hr_slide: Micros,
    /// HRV window length, µs.
    pub hrv_window: Micros,
    /// Rhythm monitor parameters.
    pub rhythm: RhythmConfig,
    /// Beat-times ([`EcgResult::Beats`]) tumbling window, µs (default 30 s;
    /// absent in configurations and checkpoints written before it existed).
    #[serde(default = "default_beats_window")]
    pub beats_window: Micros,
}

fn default_beats_window() -> Micros {
    30_000_000
}

impl EcgConfig {
    /// Checks the windows: each positive, and the result windows of the
    /// different kinds never equal (a result's id is `device/start/end`, so
    /// two kinds with one window would share an id and the store would keep
    /// only one): heart-rate, HRV and beat-times windows of different
    /// lengths, none of the length of a strip's window (10 s + 1..9 µs).
    pub fn check(&self) -> Result<(), crate::StreamError> {
        let bad = |m: String| Err(crate::StreamError::Config(m));
        let w = [
            ("heart-rate window", self.hr_window),
            ("heart-rate slide", self.hr_slide),
            ("HRV window", self.hrv_window),
            ("beat-times window", self.beats_window),
        ];
        if let Some((name, v)) = w.iter().find(|(_, v)| *v <= 0) {
            return bad(format!("{name} must be positive, not {v} µs"));
        }
        let lengths = [
            ("heart-rate", self.hr_window),
            ("HRV", self.hrv_window),
            ("beat-times", self.beats_window),
        ];
        for (i, (a, la)) in lengths.iter().enumerate() {
            for (b, lb) in lengths.iter().skip(i + 1) {
                if la == lb {
                    return bad(format!(
                        "the {a} and {b} windows are both {la} µs: their results would share ids; make them differ"
                    ));
                }
            }
            let strip = 2 * crate::ecg_strip::STRIP_HALF_US;
            if *la > strip && *la <= strip + 1 + MAX_KIND_CODE {
                return bad(format!(
                    "the {a} window of {la} µs has the length of an event strip's window"
                ));
            }
        }
        Ok(())
    }
}

impl Default for EcgConfig {
    fn default() -> Self {
        EcgConfig {
            hr_window: 10_000_000,
            hr_slide: 5_000_000,
            hrv_window: 300_000_000,
            rhythm: RhythmConfig::default(),
            beats_window: default_beats_window(),
        }
    }
}

/// Per-device state of [`EcgOperator`].
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct EcgState {
    detector: Option<Detector>,
    fs: f64,
    /// Time of the detector's sample 0, µs.
    origin: Micros,
    /// Time just after the last sample seen, µs.
    next_t: Micros,
    monitor: Option<RhythmMonitor>,
    /// Beat times not yet behind every open window, µs.
    beats: VecDeque<Micros>,
    next_hr: Option<Micros>,
    next_hrv: Option<Micros>,
    pending: Vec<(Micros, Micros, EcgResult)>,
    /// Beat times (held in `beats`) that start a segment: no interval ends
    /// at them. Only RR input creates segments.
    #[serde(default)]
    breaks: VecDeque<Micros>,
    /// The last beat of the RR series, µs (None before any RR event or
    /// after raw samples).
    #[serde(default)]
    last_rr_beat: Option<Micros>,
    /// Start of the next beat-times window.
    #[serde(default)]
    next_beats: Option<Micros>,
    /// Recent samples of every channel and strips awaiting their samples.
    #[serde(default)]
    strips: crate::ecg_strip::StripBook,
    /// Signal quality of the analysed lead (absent in older checkpoints:
    /// started at the next chunk).
    #[serde(default)]
    quality: Option<SignalQuality>,
    /// Detector sample at which `quality` started.
    #[serde(default)]
    quality_offset: u64,
    /// Beat classification of the analysed lead, on the detector's beats
    /// (absent in older checkpoints: started at the next chunk, at the
    /// detector's sample count).
    #[serde(default)]
    classifier: Option<DetectedBeatClassifier>,
}

/// What the rhythm monitor sees of one chunk, in order.
enum Step {
    /// A classified beat of the analysed lead.
    Beat(ClassifiedBeat),
    /// A change of signal state.
    Change(StateChange),
}

/// The ECG operator (one per worker: it reuses HRV buffers).
#[derive(Debug)]
pub struct EcgOperator {
    cfg: EcgConfig,
    hrv: RefCell<HrvEngine>,
    beat_model: &'static Model,
}

impl Default for EcgOperator {
    fn default() -> Self {
        EcgOperator::new(EcgConfig::default())
    }
}

/// The beats in `[s, e)` (the deque is in time order: two binary searches,
/// not a scan of every beat held).
fn beats_in(beats: &VecDeque<Micros>, s: Micros, e: Micros) -> Vec<Micros> {
    let from = beats.partition_point(|b| *b < s);
    let to = beats.partition_point(|b| *b < e);
    beats.range(from..to.max(from)).copied().collect()
}

/// The intervals (µs) between consecutive `inside` beats that belong to one
/// segment (the later beat is not in `breaks`).
fn intervals(inside: &[Micros], breaks: &VecDeque<Micros>) -> Vec<Micros> {
    inside
        .iter()
        .zip(inside.iter().skip(1))
        .filter(|(_, b)| breaks.binary_search(b).is_err())
        .map(|(a, b)| b - a)
        .collect()
}

/// A beat is classified at most this long after its R peak: the
/// classifier's deadline ([`aorta_signal::beats::MAX_RR_S`] plus the
/// detector's 250-ms latency bound) plus its quarter-second step.
const CLASSIFY_LAG_US: Micros = 2_750_000;

/// The largest [`kind_code`].
const MAX_KIND_CODE: Micros = 23;

fn kind_code(k: &RhythmEventKind) -> Micros {
    match k {
        RhythmEventKind::AfOnset => 0,
        RhythmEventKind::AfOffset => 1,
        RhythmEventKind::BradyOnset => 2,
        RhythmEventKind::BradyOffset => 3,
        RhythmEventKind::TachyOnset => 4,
        RhythmEventKind::TachyOffset => 5,
        RhythmEventKind::Pause { .. } => 6,
        RhythmEventKind::PauseOnset => 7,
        RhythmEventKind::SignalLostOnset => 9,
        RhythmEventKind::SignalLostOffset => 10,
        RhythmEventKind::TooNoisyOnset => 11,
        RhythmEventKind::TooNoisyOffset => 12,
        RhythmEventKind::VfOnset => 13,
        RhythmEventKind::VfOffset => 14,
        RhythmEventKind::AsystoleOnset => 15,
        RhythmEventKind::AsystoleOffset => 16,
        RhythmEventKind::VtOnset { .. } => 17,
        RhythmEventKind::VtOffset => 18,
        RhythmEventKind::VentricularRun { .. } => 19,
        RhythmEventKind::BigeminyOnset { .. } => 20,
        RhythmEventKind::BigeminyOffset => 21,
        RhythmEventKind::TrigeminyOnset { .. } => 22,
        RhythmEventKind::TrigeminyOffset => 23,
        _ => 8,
    }
}

impl EcgOperator {
    /// An operator with `cfg`.
    pub fn new(cfg: EcgConfig) -> Self {
        EcgOperator {
            cfg,
            hrv: RefCell::new(HrvEngine::new()),
            beat_model: model::full(),
        }
    }

    /// The operator classifying beats with `model` instead of the model
    /// trained on every shared record ([`model::full`]): for evaluation on
    /// a shared record with the model that never saw it
    /// ([`model::held_out`]). A device whose checkpointed classifier names
    /// another model keeps that one (resolved by name on restore).
    pub fn with_beat_model(mut self, model: &'static Model) -> Self {
        self.beat_model = model;
        self
    }

    /// Ends the detector's run: its last beats are flushed and classified.
    fn end_run(&self, state: &mut EcgState) {
        let mut flushed = Vec::new();
        if let Some(d) = state.detector.as_mut() {
            d.finish(&mut flushed);
        }
        let mut classified = Vec::new();
        let classify = state.classifier.is_some();
        if let Some(c) = state.classifier.as_mut() {
            c.finish(&flushed, &mut classified);
        }
        // Without a classifier (a checkpoint from before it, flushed before
        // the next chunk) the beats go to the monitor unclassified.
        self.add_beats(state, &flushed, !classify);
        let mut events = Vec::new();
        self.add_classified(state, &classified, &mut events);
        Self::queue_events(state, events);
    }

    /// Classified beats of the analysed lead into the rhythm monitor.
    fn add_classified(
        &self,
        state: &mut EcgState,
        beats: &[ClassifiedBeat],
        events: &mut Vec<RhythmEvent>,
    ) {
        let Some(m) = state.monitor.as_mut() else {
            return;
        };
        for b in beats {
            let t = state.origin + (b.beat.sample as f64 * 1e6 / state.fs).round() as Micros;
            m.push_classified(t as f64 / 1e6, b.class, b.p_v, events);
        }
    }

    fn queue_events(state: &mut EcgState, events: Vec<RhythmEvent>) {
        Self::queue_events_from(state, events, None);
    }

    /// Queues events found at stream time `found` (µs) or later than the
    /// detector's latency after their beats: their strips start no earlier
    /// than `found − RING_HISTORY_US + CLASSIFY_LAG_US`, a time the strip
    /// ring holds whatever the chunking (it keeps `RING_HISTORY_US` back
    /// from the end of the previous chunk, and an event found at `found`
    /// was found in a chunk that ends after `found − CLASSIFY_LAG_US`).
    fn queue_events_from(state: &mut EcgState, events: Vec<RhythmEvent>, found: Option<Micros>) {
        let from = found.map(|f| {
            f.saturating_sub(crate::ecg_strip::RING_HISTORY_US)
                .saturating_add(CLASSIFY_LAG_US)
        });
        for e in events {
            let t = (e.time_s * 1e6).round() as Micros;
            let code = kind_code(&e.kind);
            state.strips.on_event(t, code, e, from);
            state.pending.push((t, t + 1 + code, EcgResult::Rhythm(e)));
        }
    }

    /// Detected beats into the windows (and into the rhythm monitor when
    /// `to_monitor`: beats that are not classified).
    fn add_beats(&self, state: &mut EcgState, beats: &[Beat], to_monitor: bool) {
        let mut events = Vec::new();
        for b in beats {
            let t = state.origin + (b.sample as f64 * 1e6 / state.fs).round() as Micros;
            self.add_beat_time(state, t, &mut events, to_monitor);
        }
        Self::queue_events(state, events);
    }

    fn add_beat_time(
        &self,
        state: &mut EcgState,
        t: Micros,
        events: &mut Vec<RhythmEvent>,
        to_monitor: bool,
    ) {
        state.beats.push_back(t);
        if to_monitor && let Some(m) = state.monitor.as_mut() {
            m.push_beat(t as f64 / 1e6, events);
        }
        let align = |size: Micros| t.div_euclid(size) * size;
        state.next_hr.get_or_insert(align(self.cfg.hr_slide));
        state.next_hrv.get_or_insert(align(self.cfg.hrv_window));
        state.next_beats.get_or_insert(align(self.cfg.beats_window));
    }

    /// RR intervals enter at the beat stage (no detector).
    fn on_rr(&self, state: &mut EcgState, t: Micros, rr: &RrBeats) {
        // A device that switches from raw ECG to RR: flush its detector.
        if state.detector.is_some() {
            self.end_run(state);
            state.detector = None;
            state.classifier = None;
            state
                .strips
                .close(state.origin, state.fs, &mut state.pending);
        }
        if state.monitor.is_none() {
            state.monitor = Some(RhythmMonitor::new(self.cfg.rhythm));
        }
        let mut events = Vec::new();
        let mut beat = t;
        // The first beat is the previous frame's last beat (a continuation),
        // or the start of a new segment: the first beat this frame adds then
        // starts the segment.
        let continuation = state.last_rr_beat == Some(t);
        let mut new_segment = !continuation;
        let mut add = |state: &mut EcgState, b: Micros, events: &mut Vec<RhythmEvent>| {
            // Beats at or before what is held (an overlapping frame) are skipped.
            if state.beats.back().is_none_or(|&h| b > h) {
                if new_segment {
                    state.breaks.push_back(b);
                    new_segment = false;
                }
                self.add_beat_time(state, b, events, true);
            }
        };
        if !continuation {
            add(state, t, &mut events);
        }
        for &r in &rr.rr_us {
            if r <= 0 {
                break; // frames refuse these; never move time backwards
            }
            beat = beat.saturating_add(Micros::from(r));
            add(state, beat, &mut events);
        }
        state.last_rr_beat = Some(beat);
        state.next_t = state.next_t.max(beat);
        if let Some(m) = state.monitor.as_mut() {
            m.tick(state.next_t as f64 / 1e6, &mut events);
        }
        Self::queue_events(state, events);
    }

    fn on_chunk(&self, state: &mut EcgState, t: Micros, chunk: &EcgChunk) {
        state.last_rr_beat = None;
        let restart = match &state.detector {
            None => true,
            Some(_) => state.fs != chunk.fs || (t - state.next_t).abs() > 1_000_000,
        };
        if restart {
            self.end_run(state);
            // The run ends: its strips are cut from what it holds.
            state
                .strips
                .close(state.origin, state.fs, &mut state.pending);
            // An invalid rate leaves the device without a detector: its chunks are ignored.
            state.detector = Detector::new(chunk.fs).ok();
            state.classifier = DetectedBeatClassifier::with_model(chunk.fs, self.beat_model).ok();
            // A signal state still open ends where the run ends.
            if let Some(ev) = state.quality.take().and_then(|q| q.state().event(false)) {
                let time_s = state.next_t.max(state.origin) as f64 / 1e6;
                Self::queue_events(state, vec![RhythmEvent { time_s, kind: ev }]);
            }
            state.fs = chunk.fs;
            state.origin = t;
            if state.monitor.is_none() {
                state.monitor = Some(RhythmMonitor::new(self.cfg.rhythm));
            }
        }
        let Some(det) = state.detector.as_mut() else {
            return;
        };
        state.strips.append(
            det.samples_seen(),
            &chunk.samples,
            &chunk.leads_uv,
            state.origin,
            state.fs,
            &mut state.pending,
        );
        if state.quality.is_none() {
            // A new run, or a checkpoint from before signal quality.
            state.quality = SignalQuality::new(state.fs).ok();
            state.quality_offset = det.samples_seen();
        }
        if state.classifier.is_none() {
            // A checkpoint from before beat classification.
            state.classifier =
                DetectedBeatClassifier::starting_at(state.fs, self.beat_model, det.samples_seen())
                    .ok();
        }
        // The detector and the signal quality see the same samples, cut at
        // the quality's second boundaries: a beat is kept only while the
        // signal is readable (judged at the last second boundary).
        let mut beats = Vec::new();
        let mut piece_beats = Vec::new();
        let mut changes = Vec::new();
        let mut seconds = Vec::new();
        // Classified beats and signal-state changes, in order.
        let mut steps = Vec::new();
        let mut classified = Vec::new();
        let mut rest: &[f64] = &chunk.samples;
        while !rest.is_empty() {
            let take = match state.quality.as_ref() {
                Some(q) => {
                    usize::try_from(q.next_boundary().saturating_sub(q.samples_seen()).max(1))
                        .unwrap_or(usize::MAX)
                        .min(rest.len())
                }
                None => rest.len(),
            };
            let (piece, tail) = rest.split_at(take);
            det.push(piece, &mut piece_beats);
            let allowed = state
                .quality
                .as_ref()
                .is_none_or(|q| q.state().beats_allowed());
            if !allowed {
                piece_beats.clear();
            }
            // The classifier sees every sample and the beats kept.
            if let Some(c) = state.classifier.as_mut() {
                c.push(piece, &piece_beats, &mut classified);
            }
            beats.append(&mut piece_beats);
            steps.extend(classified.drain(..).map(Step::Beat));
            if let Some(q) = state.quality.as_mut() {
                q.push(piece, &mut seconds, &mut changes);
                seconds.clear();
            }
            for c in changes.drain(..) {
                if c.from == SignalState::Readable
                    && let Some(k) = state.classifier.as_mut()
                {
                    // The beats before the signal became unreadable are
                    // classified now, so they reach the monitor before it
                    // restarts.
                    k.finish(&[], &mut classified);
                    steps.extend(classified.drain(..).map(Step::Beat));
                }
                steps.push(Step::Change(c));
            }
            rest = tail;
        }
        let seen = det.samples_seen();
        state.next_t = state.origin + (seen as f64 * 1e6 / state.fs).round() as Micros;
        self.add_beats(state, &beats, false);
        let mut events = Vec::new();
        let base_s = state.origin as f64 / 1e6 + state.quality_offset as f64 / state.fs;
        for step in &steps {
            let c = match step {
                Step::Beat(b) => {
                    let mut found = Vec::new();
                    self.add_classified(state, std::slice::from_ref(b), &mut found);
                    let t =
                        state.origin + (b.beat.sample as f64 * 1e6 / state.fs).round() as Micros;
                    Self::queue_events_from(state, found, Some(t));
                    continue;
                }
                Step::Change(c) => c,
            };
            events.extend(c.events().map(|mut e| {
                e.time_s += base_s;
                e
            }));
            if c.from == SignalState::Readable {
                // The signal became unreadable: open episodes close there
                // and rhythm analysis starts afresh once it is readable
                // again, so no pause, AF or rate alarm spans the stretch.
                if let Some(m) = state.monitor.as_mut() {
                    m.finish(c.time_s + base_s, &mut events);
                }
                state.monitor = Some(RhythmMonitor::new(self.cfg.rhythm));
            }
        }
        let readable = state
            .quality
            .as_ref()
            .is_none_or(|q| q.state().beats_allowed());
        // A pause is judged up to the oldest beat detected but not yet
        // classified (at most about 2.3 s back): no pause ends after it.
        let unclassified = state
            .classifier
            .as_ref()
            .and_then(|c| c.oldest_pending())
            .map(|s| state.origin + (s as f64 * 1e6 / state.fs).round() as Micros);
        let now = unclassified.map_or(state.next_t, |u| u.min(state.next_t));
        Self::queue_events(state, events);
        let mut ticked = Vec::new();
        if readable && let Some(m) = state.monitor.as_mut() {
            m.tick(now as f64 / 1e6, &mut ticked);
        }
        // `now` is at most CLASSIFY_LAG_US before the chunk's end.
        Self::queue_events_from(state, ticked, Some(now));
        state
            .strips
            .complete(state.origin, state.fs, &mut state.pending);
    }

    fn hrv_summary(&self, beats: &[Micros], breaks: &VecDeque<Micros>) -> HrvSummary {
        let nan = f64::NAN;
        let iv = intervals(beats, breaks);
        let covered_s = iv.iter().sum::<Micros>() as f64 / 1e6;
        let cov = WindowCoverage::new(covered_s, self.cfg.hrv_window as f64 / 1e6);
        let rr: Vec<f64> = iv.iter().map(|d| *d as f64 / 1000.0).collect();
        let report = NnSeries::from_rr(&rr, &ArtefactRule::default()).and_then(|nn| {
            self.hrv
                .borrow_mut()
                .report_checked(&nn, &HrvOptions::default())
        });
        match report {
            Ok(r) => HrvSummary {
                n_nn: r.n_nn,
                mean_nn: r.time.mean_nn,
                sdnn: r.time.sdnn,
                rmssd: r.time.rmssd,
                pnn50: r.time.pnn50,
                lf: r.freq.lf,
                hf: r.freq.hf,
                lf_hf: r.freq.lf_hf,
                sd1: r.nonlinear.sd1,
                sd2: r.nonlinear.sd2,
                coverage: Some(cov.coverage),
                partial: cov.partial,
            },
            Err(_) => HrvSummary {
                n_nn: 0,
                mean_nn: nan,
                sdnn: nan,
                rmssd: nan,
                pnn50: nan,
                lf: nan,
                hf: nan,
                lf_hf: nan,
                sd1: nan,
                sd2: nan,
                coverage: Some(cov.coverage),
                partial: cov.partial,
            },
        }
    }
}

impl KeyedOperator for EcgOperator {
    type Event = EcgEvent;
    type Output = EcgResult;
    type State = EcgState;

    fn on_event(&self, state: &mut EcgState, t: Micros, ev: &EcgEvent) {
        match ev {
            EcgEvent::Samples(chunk) => self.on_chunk(state, t, chunk),
            EcgEvent::Rr(rr) => self.on_rr(state, t, rr),
            EcgEvent::AfterGap(g, inner) => {
                // The window runs from just after the last sample analysed
                // (+1 µs: never on the grid of the heart-rate and HRV
                // windows, whose ids it would otherwise share) to the frame
                // after the gap.
                let end_of_last = state.last_rr_beat.unwrap_or(state.next_t);
                let start = if end_of_last > 0 && end_of_last.saturating_add(1) < t {
                    end_of_last + 1
                } else {
                    t.saturating_sub(1)
                };
                // Samples are missing: the detector restarts at the frame
                // after the gap (even one that starts within a second of
                // the last, which it would otherwise take as contiguous and
                // date every later beat too early), and a strip never spans
                // the gap.
                if matches!(**inner, EcgEvent::Samples(_)) && state.detector.is_some() {
                    self.end_run(state);
                    state.detector = None;
                    state.classifier = None;
                }
                state
                    .strips
                    .close(state.origin, state.fs, &mut state.pending);
                state.pending.push((
                    start,
                    t,
                    EcgResult::Gap {
                        first_missing_sequence: g.first_missing,
                        missing_frames: g.missing,
                    },
                ));
                self.on_event(state, t, inner);
            }
        }
    }

    fn on_watermark(
        &self,
        state: &mut EcgState,
        wm: Micros,
        emit: &mut dyn FnMut(Micros, Micros, EcgResult),
    ) {
        // Beats up to `wm` minus the detector's latency bound are final.
        let done = if wm == Micros::MAX {
            wm
        } else {
            wm.saturating_sub(300_000)
        };
        if wm == Micros::MAX {
            self.end_run(state);
            let mut events = Vec::new();
            if let Some(m) = state.monitor.as_mut() {
                m.finish(state.next_t as f64 / 1e6, &mut events);
            }
            Self::queue_events(state, events);
            state
                .strips
                .close(state.origin, state.fs, &mut state.pending);
        }
        let last_beat = state.beats.back().copied();
        let end_of_data = if wm == Micros::MAX {
            last_beat.map_or(Micros::MIN, |b| b + 1)
        } else {
            done
        };
        // Heart rate, sliding windows.
        while let Some(s) = state.next_hr {
            let e = s + self.cfg.hr_window;
            if e > end_of_data {
                break;
            }
            let inside = beats_in(&state.beats, s, e);
            // Mean rate over the window's intervals (inside one segment).
            let iv = intervals(&inside, &state.breaks);
            let span: Micros = iv.iter().sum();
            let bpm = if !iv.is_empty() && span > 0 {
                60e6 * iv.len() as f64 / span as f64
            } else {
                f64::NAN
            };
            emit(
                s,
                e,
                EcgResult::HeartRate {
                    beats: inside.len() as u32,
                    bpm,
                },
            );
            state.next_hr = Some(s + self.cfg.hr_slide);
        }
        // HRV, tumbling windows.
        while let Some(s) = state.next_hrv {
            let e = s + self.cfg.hrv_window;
            if e > end_of_data {
                break;
            }
            let inside = beats_in(&state.beats, s, e);
            emit(
                s,
                e,
                EcgResult::Hrv(self.hrv_summary(&inside, &state.breaks)),
            );
            state.next_hrv = Some(e);
        }
        // Beat times, tumbling windows.
        while let Some(s) = state.next_beats {
            let e = s + self.cfg.beats_window;
            if e > end_of_data {
                break;
            }
            emit(
                s,
                e,
                EcgResult::Beats(BeatTimes {
                    r_peaks_us: beats_in(&state.beats, s, e),
                }),
            );
            state.next_beats = Some(e);
        }
        // Rhythm events (and strips) whose time has passed.
        let mut keep = Vec::new();
        for (s, e, r) in state.pending.drain(..) {
            if s <= done {
                emit(s, e, r);
            } else {
                keep.push((s, e, r));
            }
        }
        state.pending = keep;
        // Evict beats behind every open window.
        let horizon = [state.next_hr, state.next_hrv, state.next_beats]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Micros::MIN);
        while state.beats.front().is_some_and(|&b| b < horizon) {
            state.beats.pop_front();
        }
        // A held beat that starts a segment keeps its break; older ones go.
        let first = state.beats.front().copied().unwrap_or(Micros::MAX);
        while state.breaks.front().is_some_and(|&b| b < first) {
            state.breaks.pop_front();
        }
        if wm == Micros::MAX {
            *state = EcgState::default();
        }
    }

    fn is_empty(&self, state: &EcgState) -> bool {
        state.detector.is_none() && state.pending.is_empty() && state.beats.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn results_with_nan_read_back() {
        let hr = EcgResult::HeartRate {
            beats: 1,
            bpm: f64::NAN,
        };
        let json = serde_json::to_string(&hr).unwrap();
        assert_eq!(json, r#"{"type":"heart_rate","beats":1,"bpm":null}"#);
        match serde_json::from_str::<EcgResult>(&json).unwrap() {
            EcgResult::HeartRate { beats: 1, bpm } => assert!(bpm.is_nan()),
            other => panic!("{other:?}"),
        }
        let json = r#"{"type":"hrv","n_nn":0,"mean_nn":null,"sdnn":null,"rmssd":null,"pnn50":null,"lf":null,"hf":null,"lf_hf":null,"sd1":null,"sd2":7.5}"#;
        match serde_json::from_str::<EcgResult>(json).unwrap() {
            // Written before coverage was recorded: read as unknown, not partial.
            EcgResult::Hrv(h) => {
                assert!(h.sdnn.is_nan() && h.sd2 == 7.5 && h.coverage.is_none() && !h.partial)
            }
            other => panic!("{other:?}"),
        }
    }
}
