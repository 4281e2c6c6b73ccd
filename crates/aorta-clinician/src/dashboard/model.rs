//! The dashboard's in-memory model of the ward, fed by opened results and
//! bounded in every dimension (patients, history points, events, strips).

use std::collections::{BTreeMap, VecDeque};

use aorta_signal::rhythm::{RhythmEvent, RhythmEventKind};
use aorta_stream::ecg::{EcgResult, EcgStrip, HrvSummary};
use aorta_worker::clinician::OpenedResult;
use serde::Serialize;

/// Most patients the model follows; results of further patients are
/// counted ([`Ward::patients_dropped`]) and dropped.
pub const MAX_PATIENTS: usize = 512;
/// Heart-rate points kept per patient (the oldest go first).
pub const MAX_HR_POINTS: usize = 2048;
/// HRV windows kept per patient (24 h of 5-minute windows).
pub const MAX_HRV_WINDOWS: usize = 288;
/// Timeline events kept per patient.
pub const MAX_EVENTS: usize = 256;
/// ECG strips kept per patient.
pub const MAX_STRIPS: usize = 16;
/// Alarms kept per patient (active, latched or acknowledged but still
/// present); the oldest ended and acknowledged ones go first.
pub const MAX_ALARMS: usize = 64;
/// A patient with no result for this long (wall clock, µs) shows
/// "signal lost".
pub const STALE_AFTER_US: i64 = 30_000_000;

/// IEC 60601-1-8 alarm priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Low priority: cyan, steady.
    Low,
    /// Medium priority: yellow, flashing slowly while unacknowledged.
    Medium,
    /// High priority: red, flashing fast while unacknowledged.
    High,
}

/// What an alarm is about (one per condition kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// Atrial fibrillation (`af_onset` … `af_offset`).
    Af,
    /// Bradycardia (`brady_onset` … `brady_offset`).
    Brady,
    /// Tachycardia (`tachy_onset` … `tachy_offset`).
    Tachy,
    /// Pause / asystole (`pause_onset` … `pause`).
    Pause,
    /// Frames of the device never reached the worker (technical alarm).
    SignalLost,
    /// Ventricular fibrillation/flutter read from the signal (`vf_onset` …
    /// `vf_offset`).
    Vf,
    /// Ventricular tachycardia (`vt_onset` … `vt_offset`).
    Vt,
    /// Asystole read from the signal: a readable flat line
    /// (`asystole_onset` … `asystole_offset`).
    Asystole,
    /// A run of ventricular beats no faster than the VT limit
    /// (`ventricular_run`, one event: the alarm is raised already over).
    VentricularRun,
    /// Ventricular bigeminy (`bigeminy_onset` … `bigeminy_offset`).
    Bigeminy,
    /// Ventricular trigeminy (`trigeminy_onset` … `trigeminy_offset`).
    Trigeminy,
    /// The signal is unreadable (lead off, railed, gaps in the samples):
    /// no beats and no rhythm alarms meanwhile (technical alarm;
    /// `signal_lost_onset` … `signal_lost_offset`).
    LeadsOff,
    /// The signal is too noisy to analyse (technical alarm;
    /// `too_noisy_onset` … `too_noisy_offset`).
    TooNoisy,
}

impl AlarmKind {
    /// The priority of the alarm (`docs/dashboard.md`, "Alarm priorities").
    pub fn priority(self) -> Priority {
        match self {
            AlarmKind::Pause | AlarmKind::Vf | AlarmKind::Vt | AlarmKind::Asystole => {
                Priority::High
            }
            AlarmKind::Af
            | AlarmKind::Brady
            | AlarmKind::Tachy
            | AlarmKind::VentricularRun
            | AlarmKind::Bigeminy
            | AlarmKind::Trigeminy => Priority::Medium,
            AlarmKind::SignalLost | AlarmKind::LeadsOff | AlarmKind::TooNoisy => Priority::Low,
        }
    }

    /// The alarm's text on the monitor.
    pub fn label(self) -> &'static str {
        match self {
            AlarmKind::Af => "AFIB",
            AlarmKind::Brady => "BRADY",
            AlarmKind::Tachy => "TACHY",
            AlarmKind::Pause => "PAUSE / ASYSTOLE",
            AlarmKind::SignalLost => "SIGNAL LOST",
            AlarmKind::Vf => "VFIB / VFL",
            AlarmKind::Vt => "V-TACH",
            AlarmKind::Asystole => "ASYSTOLE",
            AlarmKind::VentricularRun => "V-RUN",
            AlarmKind::Bigeminy => "BIGEMINY",
            AlarmKind::Trigeminy => "TRIGEMINY",
            AlarmKind::LeadsOff => "LEADS OFF",
            AlarmKind::TooNoisy => "NOISY SIGNAL",
        }
    }

    fn name(self) -> &'static str {
        match self {
            AlarmKind::Af => "af",
            AlarmKind::Brady => "brady",
            AlarmKind::Tachy => "tachy",
            AlarmKind::Pause => "pause",
            AlarmKind::SignalLost => "signal_lost",
            AlarmKind::Vf => "vf",
            AlarmKind::Vt => "vt",
            AlarmKind::Asystole => "asystole",
            AlarmKind::VentricularRun => "ventricular_run",
            AlarmKind::Bigeminy => "bigeminy",
            AlarmKind::Trigeminy => "trigeminy",
            AlarmKind::LeadsOff => "leads_off",
            AlarmKind::TooNoisy => "too_noisy",
        }
    }

    /// The condition a rhythm event starts (`Some((kind, true))`) or ends
    /// (`Some((kind, false))`); `None` for an event that is no alarm.
    pub fn of_event(kind: &RhythmEventKind) -> Option<(AlarmKind, bool)> {
        use RhythmEventKind as K;
        Some(match kind {
            K::AfOnset => (AlarmKind::Af, true),
            K::AfOffset => (AlarmKind::Af, false),
            K::BradyOnset => (AlarmKind::Brady, true),
            K::BradyOffset => (AlarmKind::Brady, false),
            K::TachyOnset => (AlarmKind::Tachy, true),
            K::TachyOffset => (AlarmKind::Tachy, false),
            K::PauseOnset => (AlarmKind::Pause, true),
            K::Pause { .. } => (AlarmKind::Pause, false),
            K::VfOnset => (AlarmKind::Vf, true),
            K::VfOffset => (AlarmKind::Vf, false),
            K::VtOnset { .. } => (AlarmKind::Vt, true),
            K::VtOffset => (AlarmKind::Vt, false),
            K::AsystoleOnset => (AlarmKind::Asystole, true),
            K::AsystoleOffset => (AlarmKind::Asystole, false),
            K::VentricularRun { .. } => (AlarmKind::VentricularRun, false),
            K::BigeminyOnset { .. } => (AlarmKind::Bigeminy, true),
            K::BigeminyOffset => (AlarmKind::Bigeminy, false),
            K::TrigeminyOnset { .. } => (AlarmKind::Trigeminy, true),
            K::TrigeminyOffset => (AlarmKind::Trigeminy, false),
            K::SignalLostOnset => (AlarmKind::LeadsOff, true),
            K::SignalLostOffset => (AlarmKind::LeadsOff, false),
            K::TooNoisyOnset => (AlarmKind::TooNoisy, true),
            K::TooNoisyOffset => (AlarmKind::TooNoisy, false),
            _ => return None,
        })
    }
}

/// One alarm of a patient.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alarm {
    /// Stable id: `PATIENT/KIND/START_US`.
    pub id: String,
    /// What it is about.
    pub kind: AlarmKind,
    /// Its priority.
    pub priority: Priority,
    /// Its text.
    pub label: &'static str,
    /// When the condition began, µs since the Unix epoch.
    pub start_us: i64,
    /// When it ended (`None`: still present).
    pub end_us: Option<i64>,
    /// Acknowledged by the clinician (the flashing stops).
    pub acknowledged: bool,
    /// A detail (e.g. the number of missing frames).
    pub detail: String,
    /// How often the condition came back while the alarm was latched.
    pub repeats: u32,
}

impl Alarm {
    /// Shown: still present, or ended but not acknowledged (latched).
    pub fn shown(&self) -> bool {
        self.end_us.is_none() || !self.acknowledged
    }
}

/// One entry of a patient's event timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEvent {
    /// When, µs since the Unix epoch.
    pub time_us: i64,
    /// The rhythm event (`None` for a gap).
    pub rhythm: Option<RhythmEvent>,
    /// A gap: how many frames are missing.
    pub missing_frames: Option<u64>,
    /// Short text.
    pub text: String,
    /// The priority of the alarm it raises or ends, if any.
    pub priority: Option<Priority>,
}

/// A heart-rate point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HrPoint {
    /// Window end, µs.
    pub t: i64,
    /// bpm (`null` when the window had < 2 beats).
    pub bpm: Option<f64>,
}

/// An HRV window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HrvPoint {
    /// Window start, µs.
    pub start: i64,
    /// Window end, µs.
    pub end: i64,
    /// The summary (NaN as `null`).
    pub hrv: HrvSummary,
}

/// A stored strip.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStrip {
    /// Sequence number in this patient's strips (the strip's id).
    pub n: u64,
    /// The strip (matched to its timeline event by its `event`).
    pub strip: EcgStrip,
}

/// Everything the dashboard knows of one patient.
#[derive(Debug, Clone, Default)]
pub struct Patient {
    hr: Option<HrPoint>,
    hrv: Option<HrvPoint>,
    /// The rhythm conditions present now, in the order they began.
    active: Vec<AlarmKind>,
    last_gap: Option<(i64, u64)>,
    /// Wall-clock time of the last result, µs.
    last_seen_us: i64,
    /// Event time of the latest result, µs.
    last_data_us: i64,
    results: u64,
    hr_trend: VecDeque<HrPoint>,
    hrv_windows: VecDeque<HrvPoint>,
    events: VecDeque<TimelineEvent>,
    strips: VecDeque<StoredStrip>,
    next_strip: u64,
    alarms: Vec<Alarm>,
}

/// The ward: every patient the clinician's results name.
#[derive(Debug, Default)]
pub struct Ward {
    patients: BTreeMap<String, Patient>,
    patients_dropped: u64,
    version: u64,
    results: u64,
    source: Source,
}

/// How the feed from the server is doing.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Source {
    /// The last poll failed with this error (`None`: it worked).
    pub error: Option<String>,
    /// Records refused (forged, altered or sealed to someone else).
    pub refused: u64,
    /// Results whose session envelope the host has withheld.
    pub withheld: usize,
    /// Worker certificates refused, and why.
    pub certificate_refusals: Vec<String>,
    /// Wall-clock time of the last successful poll, µs.
    pub last_poll_us: Option<i64>,
}

/// A tile of the ward view.
#[derive(Debug, Clone, Serialize)]
pub struct Tile {
    /// The patient (device serial).
    pub patient: String,
    /// Latest heart rate, bpm.
    pub hr: Option<f64>,
    /// Time of the latest heart rate, µs.
    pub hr_time_us: Option<i64>,
    /// The rhythm state ("SINUS", "AFIB", "BRADY", …).
    pub rhythm: String,
    /// Latest HRV window.
    pub hrv: Option<HrvPoint>,
    /// "ok", "gap" or "lost".
    pub signal: &'static str,
    /// Text of the signal status.
    pub signal_text: String,
    /// Alarms shown (present or latched), highest priority first.
    pub alarms: Vec<Alarm>,
    /// Highest priority among unacknowledged shown alarms.
    pub top_priority: Option<Priority>,
    /// Results received.
    pub results: u64,
    /// The latest heart rates (at most [`TILE_HR_POINTS`], oldest first).
    pub hr_recent: Vec<Option<f64>>,
    /// The analysed lead of the latest event strip, thinned for the tile.
    pub ecg: Option<TileEcg>,
}

/// Heart-rate points a tile carries for its sparkline.
pub const TILE_HR_POINTS: usize = 90;
/// Most samples of a tile's ECG trace.
pub const TILE_ECG_SAMPLES: usize = 720;

/// The ECG a tile shows: the first lead of the latest event strip.
#[derive(Debug, Clone, Serialize)]
pub struct TileEcg {
    /// Sampling rate after thinning, Hz.
    pub fs: f64,
    /// Samples, µV.
    pub samples_uv: Vec<i32>,
    /// Time of the first sample, µs.
    pub first_sample_us: i64,
    /// The event the strip shows.
    pub text: String,
}

/// The ward view's data (`GET /api/state`).
#[derive(Debug, Clone, Serialize)]
pub struct WardView {
    /// Changes whenever the model does.
    pub version: u64,
    /// Tiles, sorted by alarm priority (unacknowledged first), then patient.
    pub tiles: Vec<Tile>,
    /// Results received.
    pub results: u64,
    /// Patients beyond [`MAX_PATIENTS`] whose results were dropped.
    pub patients_dropped: u64,
    /// The feed.
    pub source: Source,
    /// Server clock, µs.
    pub now_us: i64,
}

/// One patient's view (`GET /api/patient/ID`).
#[derive(Debug, Clone, Serialize)]
pub struct PatientView {
    /// The tile.
    pub tile: Tile,
    /// Heart-rate trend.
    pub hr_trend: Vec<HrPoint>,
    /// HRV windows.
    pub hrv_windows: Vec<HrvPoint>,
    /// Timeline, newest first, each with its strip's id when there is one.
    pub events: Vec<(TimelineEvent, Option<u64>)>,
    /// Every alarm kept (shown or not), newest first.
    pub alarms: Vec<Alarm>,
}

/// A strip for the page (`GET /api/strip/ID/N`).
#[derive(Debug, Clone, Serialize)]
pub struct StripView<'a> {
    /// Patient.
    pub patient: &'a str,
    /// Strip id.
    pub n: u64,
    /// The strip.
    pub strip: &'a EcgStrip,
}

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// No such alarm (never raised, or dropped from the bounded history).
    #[error("no alarm {0}")]
    Unknown(String),
}

fn push_bounded<T>(q: &mut VecDeque<T>, v: T, max: usize) {
    if q.len() >= max {
        q.pop_front();
    }
    q.push_back(v);
}

fn kind_text(k: &RhythmEventKind) -> String {
    match k {
        RhythmEventKind::AfOnset => "AF onset".into(),
        RhythmEventKind::AfOffset => "AF offset".into(),
        RhythmEventKind::BradyOnset => "Bradycardia onset".into(),
        RhythmEventKind::BradyOffset => "Bradycardia offset".into(),
        RhythmEventKind::TachyOnset => "Tachycardia onset".into(),
        RhythmEventKind::TachyOffset => "Tachycardia offset".into(),
        RhythmEventKind::PauseOnset => "Pause (no beat)".into(),
        RhythmEventKind::Pause { duration_s } => format!("Pause ended ({duration_s:.1} s)"),
        RhythmEventKind::VfOnset => "VF/VFL onset".into(),
        RhythmEventKind::VfOffset => "VF/VFL offset".into(),
        RhythmEventKind::VtOnset { confidence } => {
            format!("V-tach onset (confidence {:.0} %)", confidence * 100.0)
        }
        RhythmEventKind::VtOffset => "V-tach offset".into(),
        RhythmEventKind::AsystoleOnset => "Asystole onset (flat line)".into(),
        RhythmEventKind::AsystoleOffset => "Asystole offset".into(),
        RhythmEventKind::VentricularRun {
            beats, rate_bpm, ..
        } => format!("Ventricular run: {beats} beats at {rate_bpm:.0} bpm"),
        RhythmEventKind::BigeminyOnset { .. } => "Bigeminy onset".into(),
        RhythmEventKind::BigeminyOffset => "Bigeminy offset".into(),
        RhythmEventKind::TrigeminyOnset { .. } => "Trigeminy onset".into(),
        RhythmEventKind::TrigeminyOffset => "Trigeminy offset".into(),
        RhythmEventKind::SignalLostOnset => "Leads off / signal lost".into(),
        RhythmEventKind::SignalLostOffset => "Signal back".into(),
        RhythmEventKind::TooNoisyOnset => "Signal too noisy to analyse".into(),
        RhythmEventKind::TooNoisyOffset => "Signal readable again".into(),
        _ => "rhythm event".into(),
    }
}

impl Patient {
    fn raise(&mut self, patient: &str, kind: AlarmKind, start_us: i64, detail: String) {
        // One present alarm per kind: a repeated onset is the same alarm.
        if self
            .alarms
            .iter()
            .any(|a| a.kind == kind && a.end_us.is_none())
        {
            return;
        }
        // A condition that returns while its alarm is still latched
        // (ended, not acknowledged) re-activates that alarm rather than
        // stacking another: the clinician acknowledges it once.
        if let Some(a) = self
            .alarms
            .iter_mut()
            .find(|a| a.kind == kind && !a.acknowledged)
        {
            a.end_us = None;
            a.repeats += 1;
            a.detail = detail;
            return;
        }
        if self.alarms.len() >= MAX_ALARMS {
            // Drop the oldest alarm that is over (ended and acknowledged);
            // failing that, the oldest ended one; failing that, the oldest.
            let victim = self
                .alarms
                .iter()
                .position(|a| !a.shown())
                .or_else(|| self.alarms.iter().position(|a| a.end_us.is_some()))
                .unwrap_or(0);
            if victim < self.alarms.len() {
                self.alarms.remove(victim);
            }
        }
        self.alarms.push(Alarm {
            id: format!("{patient}/{}/{start_us}", kind.name()),
            kind,
            priority: kind.priority(),
            label: kind.label(),
            start_us,
            end_us: None,
            acknowledged: false,
            detail,
            repeats: 0,
        });
    }

    fn end(&mut self, kind: AlarmKind, end_us: i64) {
        for a in &mut self.alarms {
            if a.kind == kind && a.end_us.is_none() {
                a.end_us = Some(end_us.max(a.start_us));
            }
        }
    }

    fn rhythm_label(&self) -> String {
        let mut present = self.active.clone();
        present.sort_by_key(|k| std::cmp::Reverse(k.priority()));
        if present.is_empty() {
            if self.hr.is_some() {
                "SINUS".into()
            } else {
                "—".into()
            }
        } else {
            let labels: Vec<&str> = present.iter().map(|k| k.label()).collect();
            labels.join(" · ")
        }
    }

    fn tile(&self, id: &str, now_us: i64) -> Tile {
        let mut alarms: Vec<Alarm> = self.alarms.iter().filter(|a| a.shown()).cloned().collect();
        alarms.sort_by(|a, b| {
            (b.priority, !b.acknowledged, b.start_us).cmp(&(
                a.priority,
                !a.acknowledged,
                a.start_us,
            ))
        });
        let top_priority = alarms
            .iter()
            .filter(|a| !a.acknowledged)
            .map(|a| a.priority)
            .max();
        let (signal, signal_text) = if self.results == 0 {
            ("lost", "no data yet".to_owned())
        } else if now_us.saturating_sub(self.last_seen_us) > STALE_AFTER_US {
            (
                "lost",
                format!(
                    "signal lost: no result for {} s",
                    now_us.saturating_sub(self.last_seen_us) / 1_000_000
                ),
            )
        } else if self.active.contains(&AlarmKind::LeadsOff) {
            ("lost", "leads off / signal lost: no analysis".to_owned())
        } else if self.active.contains(&AlarmKind::TooNoisy) {
            ("noisy", "signal too noisy to analyse".to_owned())
        } else if let Some((t, n)) = self.last_gap.filter(|(t, _)| {
            // A gap in the last 60 s of the patient's data.
            self.last_data_us.saturating_sub(*t) < 60_000_000
        }) {
            (
                "gap",
                format!("{n} frame(s) lost at {}", crate::dashboard::iso(t)),
            )
        } else {
            ("ok", "signal OK".to_owned())
        };
        Tile {
            patient: id.to_owned(),
            hr: self.hr.and_then(|p| p.bpm),
            hr_time_us: self.hr.map(|p| p.t),
            rhythm: self.rhythm_label(),
            hrv: self.hrv,
            signal,
            signal_text,
            alarms,
            top_priority,
            results: self.results,
            hr_recent: self
                .hr_trend
                .iter()
                .skip(self.hr_trend.len().saturating_sub(TILE_HR_POINTS))
                .map(|p| p.bpm)
                .collect(),
            ecg: self.strips.back().and_then(|s| {
                let lead = s.strip.leads.first()?;
                let step = lead.samples_uv.len().div_ceil(TILE_ECG_SAMPLES).max(1);
                Some(TileEcg {
                    fs: s.strip.fs / step as f64,
                    samples_uv: lead.samples_uv.iter().step_by(step).copied().collect(),
                    first_sample_us: s.strip.first_sample_us,
                    text: kind_text(&s.strip.event.kind),
                })
            }),
        }
    }

    fn timeline(&mut self, e: TimelineEvent) {
        push_bounded(&mut self.events, e, MAX_EVENTS);
    }

    fn feed(&mut self, id: &str, r: &OpenedResult, now_us: i64) {
        self.results += 1;
        self.last_seen_us = now_us;
        self.last_data_us = self.last_data_us.max(r.end);
        match &r.result {
            EcgResult::HeartRate { bpm, .. } => {
                let p = HrPoint {
                    t: r.end,
                    bpm: bpm.is_finite().then_some(*bpm),
                };
                if self.hr.is_none_or(|h| h.t <= p.t) {
                    self.hr = Some(p);
                }
                push_bounded(&mut self.hr_trend, p, MAX_HR_POINTS);
            }
            EcgResult::Hrv(h) => {
                let p = HrvPoint {
                    start: r.start,
                    end: r.end,
                    hrv: *h,
                };
                // The tile shows the latest full window: a partial one (the
                // stream's first or last minutes, docs/hrv.md) only while
                // there is no full one.
                let newer = self.hrv.is_none_or(|x| x.end <= p.end);
                let full_or_only = !h.partial || self.hrv.is_none_or(|x| x.hrv.partial);
                if newer && full_or_only {
                    self.hrv = Some(p);
                }
                push_bounded(&mut self.hrv_windows, p, MAX_HRV_WINDOWS);
            }
            EcgResult::Rhythm(ev) => self.rhythm(id, r.start, ev),
            EcgResult::Strip(s) => {
                let n = self.next_strip;
                self.next_strip += 1;
                push_bounded(
                    &mut self.strips,
                    StoredStrip {
                        n,
                        strip: s.clone(),
                    },
                    MAX_STRIPS,
                );
            }
            EcgResult::Gap { missing_frames, .. } => {
                self.last_gap = Some((r.start, *missing_frames));
                self.raise(
                    id,
                    AlarmKind::SignalLost,
                    r.start,
                    format!("{missing_frames} frame(s) never reached the worker"),
                );
                // The data resumed (a gap is reported with the frame after
                // it): the condition is over, latched until acknowledged.
                self.end(AlarmKind::SignalLost, r.end);
                self.timeline(TimelineEvent {
                    time_us: r.start,
                    rhythm: None,
                    missing_frames: Some(*missing_frames),
                    text: format!("Signal lost: {missing_frames} frame(s) missing"),
                    priority: Some(Priority::Low),
                });
            }
            // Beats (and result types added later) are not shown.
            _ => {}
        }
    }

    fn rhythm(&mut self, id: &str, t: i64, ev: &RhythmEvent) {
        let (kind, onset) = match AlarmKind::of_event(&ev.kind) {
            Some((k, on)) => (Some(k), on),
            None => (None, false),
        };
        if let Some(k) = kind {
            self.active.retain(|a| *a != k);
            if onset {
                self.active.push(k);
            }
            if onset {
                self.raise(id, k, t, kind_text(&ev.kind));
            } else if matches!(k, AlarmKind::Pause | AlarmKind::VentricularRun)
                && !self
                    .alarms
                    .iter()
                    .any(|a| a.kind == k && a.end_us.is_none())
            {
                // A pause whose onset was not seen (e.g. the stream
                // restarted): raise it, already over.
                self.raise(id, k, t, kind_text(&ev.kind));
                self.end(k, t);
            } else {
                self.end(k, t);
            }
        }
        self.timeline(TimelineEvent {
            time_us: t,
            rhythm: Some(*ev),
            missing_frames: None,
            text: kind_text(&ev.kind),
            priority: kind.map(AlarmKind::priority),
        });
    }
}

impl Ward {
    /// An empty ward.
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes whenever the model does.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Patients whose results were dropped (more than [`MAX_PATIENTS`]).
    pub fn patients_dropped(&self) -> u64 {
        self.patients_dropped
    }

    /// Adds opened results (received at wall-clock `now_us`).
    pub fn feed(&mut self, results: &[OpenedResult], now_us: i64) {
        for r in results {
            if !self.patients.contains_key(&r.patient) && self.patients.len() >= MAX_PATIENTS {
                self.patients_dropped += 1;
                continue;
            }
            self.results += 1;
            let p = self.patients.entry(r.patient.clone()).or_default();
            p.feed(&r.patient, r, now_us);
        }
        if !results.is_empty() {
            self.version += 1;
        }
    }

    /// Records how the last poll went.
    pub fn set_source(&mut self, source: Source) {
        if self.source != source {
            self.source = source;
            self.version += 1;
        }
    }

    /// The ward view at wall-clock `now_us`.
    pub fn view(&self, now_us: i64) -> WardView {
        let mut tiles: Vec<Tile> = self
            .patients
            .iter()
            .map(|(id, p)| p.tile(id, now_us))
            .collect();
        // Unacknowledged alarms first, by priority; then acknowledged ones
        // by priority; then the rest; by patient within each.
        let rank = |t: &Tile| {
            let unacked = t.top_priority.map_or(0, |p| p as u8 + 1);
            let any = t
                .alarms
                .iter()
                .map(|a| a.priority as u8 + 1)
                .max()
                .unwrap_or(0);
            (unacked, any)
        };
        tiles.sort_by(|a, b| {
            rank(b)
                .cmp(&rank(a))
                .then_with(|| a.patient.cmp(&b.patient))
        });
        WardView {
            version: self.version,
            tiles,
            results: self.results,
            patients_dropped: self.patients_dropped,
            source: self.source.clone(),
            now_us,
        }
    }

    /// One patient's view, or `None` for an unknown patient.
    pub fn patient(&self, id: &str, now_us: i64) -> Option<PatientView> {
        let p = self.patients.get(id)?;
        let events = p
            .events
            .iter()
            .rev()
            .map(|e| {
                let strip = e
                    .rhythm
                    .and_then(|ev| p.strips.iter().find(|s| s.strip.event == ev).map(|s| s.n));
                (e.clone(), strip)
            })
            .collect();
        let mut alarms = p.alarms.clone();
        alarms.reverse();
        Some(PatientView {
            tile: p.tile(id, now_us),
            hr_trend: p.hr_trend.iter().copied().collect(),
            hrv_windows: p.hrv_windows.iter().copied().collect(),
            events,
            alarms,
        })
    }

    /// A patient's strip `n`.
    pub fn strip<'a>(&'a self, id: &'a str, n: u64) -> Option<StripView<'a>> {
        let s = self.patients.get(id)?.strips.iter().find(|s| s.n == n)?;
        Some(StripView {
            patient: id,
            n,
            strip: &s.strip,
        })
    }

    /// Alarm `id` as it is now.
    pub fn alarm(&self, id: &str) -> Option<Alarm> {
        let patient = id.rsplitn(3, '/').nth(2)?;
        self.patients
            .get(patient)?
            .alarms
            .iter()
            .find(|a| a.id == id)
            .cloned()
    }

    /// Marks alarm `id` acknowledged; the alarm as it now is. Acknowledging
    /// twice is allowed (and audited twice).
    pub fn acknowledge(&mut self, id: &str) -> Result<Alarm, AckError> {
        // `PATIENT/KIND/START_US`; a serial may itself hold '/'.
        let patient = id.rsplitn(3, '/').nth(2).unwrap_or_default();
        let a = self
            .patients
            .get_mut(patient)
            .and_then(|p| p.alarms.iter_mut().find(|a| a.id == id))
            .ok_or_else(|| AckError::Unknown(id.to_owned()))?;
        a.acknowledged = true;
        let out = a.clone();
        self.version += 1;
        Ok(out)
    }
}
