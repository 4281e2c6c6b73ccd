//! The clinician's live view: the results opened so far, per patient,
//! redrawn on stderr.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use aorta_stream::ecg::EcgResult;
use aorta_worker::clinician::OpenedResult;

/// Per-patient live view.
#[derive(Default, Clone)]
pub(crate) struct Patient {
    pub(crate) record: String,
    bpm: Option<f64>,
    sdnn: Option<f64>,
    rmssd: Option<f64>,
    lf_hf: Option<f64>,
    events: Vec<String>,
    pub(crate) results: u64,
}

pub(crate) fn apply(view: &mut BTreeMap<String, Patient>, r: &OpenedResult, events: &mut u64) {
    let p = view.entry(r.patient.clone()).or_default();
    p.results += 1;
    let finite = |v: f64| Some(v).filter(|x| x.is_finite());
    match &r.result {
        EcgResult::HeartRate { bpm, .. } => p.bpm = finite(*bpm),
        EcgResult::Hrv(h) => {
            p.sdnn = finite(h.sdnn);
            p.rmssd = finite(h.rmssd);
            p.lf_hf = finite(h.lf_hf);
        }
        EcgResult::Rhythm(ev) => {
            *events += 1;
            p.events.push(kind_name(&ev.kind));
        }
        // A strip repeats its event's rhythm result and beats repeat the
        // heart rate: the terminal view shows neither waveform nor beats.
        EcgResult::Strip(_) | EcgResult::Beats(_) => {}
        EcgResult::Gap { missing_frames, .. } => {
            *events += 1;
            p.events
                .push(format!("gap ({missing_frames} frames missing)"));
        }
    }
}

/// A rhythm event kind's name as it is written in results (`af_onset`,
/// `vt_onset`, `bigeminy_onset`, …).
pub(crate) fn kind_name(kind: &aorta_signal::rhythm::RhythmEventKind) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.get("kind")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or("–".into(), |x| format!("{x:.prec$}"))
}

fn render(
    view: &BTreeMap<String, Patient>,
    sent: u64,
    total: u64,
    acked: u64,
    frames: u64,
    elapsed: f64,
) -> Vec<String> {
    let frac = if total == 0 {
        1.0
    } else {
        sent as f64 / total as f64
    };
    let width = 30;
    let filled = ((frac * width as f64).round() as usize).min(width);
    let mut lines = vec![format!(
        "[{}{}] {:5.1}%  {:>10} samples sent  {:>6}/{:<6} frames acked  {:5.1} s",
        "#".repeat(filled),
        ".".repeat(width - filled),
        frac * 100.0,
        sent,
        acked,
        frames,
        elapsed
    )];
    lines.push(format!(
        "{:<10} {:<7} {:>7} {:>9} {:>9} {:>7}  {}",
        "patient", "record", "HR bpm", "SDNN ms", "RMSSD ms", "LF/HF", "rhythm events"
    ));
    for (serial, p) in view.iter().take(16) {
        let ev = if p.events.is_empty() {
            "–".to_string()
        } else {
            let last: Vec<&str> = p.events.iter().rev().take(3).map(String::as_str).collect();
            format!("{} (last: {})", p.events.len(), last.join(", "))
        };
        lines.push(format!(
            "{:<10} {:<7} {:>7} {:>9} {:>9} {:>7}  {}",
            serial,
            p.record,
            fmt_opt(p.bpm, 0),
            fmt_opt(p.sdnn, 1),
            fmt_opt(p.rmssd, 1),
            fmt_opt(p.lf_hf, 2),
            ev
        ));
    }
    if view.len() > 16 {
        lines.push(format!("… and {} more patients", view.len() - 16));
    }
    lines
}

/// Progress counters the view shows.
pub(crate) struct Progress {
    /// Samples sent (all channels).
    pub(crate) sent: u64,
    /// Samples to send.
    pub(crate) total: u64,
    /// Frames acknowledged.
    pub(crate) acked: u64,
    /// Frames sealed.
    pub(crate) frames: u64,
}

/// Draws the view on stderr: redrawn in place on a terminal, otherwise
/// its progress line every 5 s and at the end.
pub(crate) struct Screen {
    tty: bool,
    drawn: usize,
    last_plain: Instant,
    t0: Instant,
}

impl Screen {
    pub(crate) fn new(t0: Instant) -> Screen {
        Screen {
            tty: std::io::stderr().is_terminal(),
            drawn: 0,
            last_plain: Instant::now(),
            t0,
        }
    }

    pub(crate) fn draw(&mut self, view: &BTreeMap<String, Patient>, p: &Progress, final_: bool) {
        let lines = render(
            view,
            p.sent,
            p.total,
            p.acked,
            p.frames,
            self.t0.elapsed().as_secs_f64(),
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            if self.drawn > 0 {
                let _ = write!(err, "\x1b[{}A", self.drawn);
            }
            for l in &lines {
                let _ = writeln!(err, "\x1b[2K{l}");
            }
            self.drawn = lines.len();
        } else if final_ || self.last_plain.elapsed() >= Duration::from_secs(5) {
            let _ = writeln!(err, "{}", lines.first().cloned().unwrap_or_default());
            self.last_plain = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;
    use aorta_signal::rhythm::RhythmEventKind as K;

    /// The live view names the beat-class rhythms as results do.
    #[test]
    fn beat_class_rhythms_are_named_as_in_results() {
        for (k, name) in [
            (K::AfOnset, "af_onset"),
            (K::VtOnset { confidence: 0.9 }, "vt_onset"),
            (K::VtOffset, "vt_offset"),
            (
                K::VentricularRun {
                    beats: 4,
                    rate_bpm: 60.0,
                    confidence: 0.8,
                },
                "ventricular_run",
            ),
            (K::BigeminyOnset { confidence: 0.9 }, "bigeminy_onset"),
            (K::BigeminyOffset, "bigeminy_offset"),
            (K::TrigeminyOnset { confidence: 0.9 }, "trigeminy_onset"),
            (K::TrigeminyOffset, "trigeminy_offset"),
        ] {
            assert_eq!(kind_name(&k), name);
        }
    }
}
