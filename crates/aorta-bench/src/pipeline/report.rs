//! The typed report of `aorta bench pipeline` and how it is computed from
//! the runs.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use aorta_crypto::results::ClinicianIdentity;
use aorta_stream::results::FileResultStore;
use serde::Serialize;

use super::run::RunStats;
use super::{Measured, PipelineConfig};

/// The overhead target: plain / secure throughput at most this.
const OVERHEAD_MAX: f64 = 1.15;

/// What `aorta bench pipeline` measured (its `--json` output).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PipelineReport {
    /// The secure pipeline.
    pub secure: PipelineFigures,
    /// The plain pipeline.
    pub plain: PipelineFigures,
    /// Plain / secure throughput (median rounds).
    pub overhead: f64,
    /// Secure / plain CPU time (all rounds).
    pub overhead_cpu: f64,
    /// Full-speed rounds per pipeline.
    pub rounds: usize,
    /// Devices.
    pub devices: usize,
    /// Samples per second real time needs (720 per device).
    pub realtime_samples_per_s: f64,
    /// Seconds of signal per device at full speed.
    pub seconds: f64,
    /// Seconds of signal per device paced.
    pub paced_seconds: f64,
    /// Seconds of signal per frame.
    pub frame_seconds: f64,
    /// The database replayed, or `synthetic`.
    pub data: String,
    /// The secure results, opened, equal the plain ones (vacuously true
    /// when none were compared: see `results_opened`, and [`Self::ok`]).
    pub results_identical: bool,
    /// Secure results opened.
    pub results_opened: usize,
    /// The attestation backend.
    pub attestation: &'static str,
    /// Threads per pipeline (ingest, worker).
    pub threads: u32,
    /// The targets and whether they were met.
    pub targets: Targets,
    /// Frames refused or undecodable over every run.
    #[serde(skip)]
    pub refused: u64,
}

impl PipelineReport {
    /// The report as text (what `aorta bench pipeline` prints).
    pub fn table(&self) -> String {
        let r = self;
        let mut out = format!(
            "{} devices, {} s of signal per device at full speed, {} s paced in real time (data: {}; sim attestation, NOT hardware-protected)\n{:<8} {:>14} {:>10} {:>10} {:>10} {:>12} {:>14} {:>8}\n",
            r.devices,
            r.seconds,
            r.paced_seconds,
            r.data,
            "pipeline",
            "samples/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "final lag ms",
            "max backlog",
            "results"
        );
        for (name, p) in [("secure", &r.secure), ("plain", &r.plain)] {
            let _ = writeln!(
                out,
                "{:<8} {:>14.0} {:>10.1} {:>10.1} {:>10.1} {:>12.1} {:>14.0} {:>8.0}",
                name,
                p.samples_per_s,
                p.p50_ms,
                p.p99_ms,
                p.paced.max_ms,
                p.paced.final_lag_ms,
                p.paced.max_backlog_frames as f64,
                p.run.results as f64,
            );
        }
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "overhead (plain / secure throughput, median of {} rounds): {:.3}× (target ≤ 1.15×); by CPU time: {:.3}×; real time needs {:.0} samples/s",
            r.rounds, r.overhead, r.overhead_cpu, r.realtime_samples_per_s,
        );
        if r.results_opened == 0 {
            // An empty comparison proves nothing: say so (and `ok` fails).
            out.push_str(
                "secure results compared with the plain ones: nothing compared (0 results; give more --seconds)\n",
            );
        } else {
            let _ = writeln!(
                out,
                "secure results opened with the clinician's identity and equal to the plain ones: {} ({} results)",
                r.results_identical, r.results_opened
            );
        }
        out
    }

    /// True when at least one result was compared, the results are
    /// identical and no frame was refused (the CLI exits 1 otherwise).
    pub fn ok(&self) -> bool {
        self.results_identical && self.results_opened > 0 && self.refused == 0
    }
}

/// The targets of the bench.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Targets {
    /// Largest acceptable overhead.
    pub overhead_max: f64,
    /// `overhead <= overhead_max`.
    pub overhead_met: bool,
    /// The secure pipeline keeps up with real time.
    pub realtime_met: bool,
}

/// One pipeline's figures.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PipelineFigures {
    /// Throughput of the median full-speed round.
    pub samples_per_s: f64,
    /// Paced latency, median (ms).
    pub p50_ms: f64,
    /// Paced latency, 99th percentile (ms).
    pub p99_ms: f64,
    /// Wall time of the median round (s).
    pub seconds: f64,
    /// The median round's counts.
    #[serde(flatten)]
    pub run: RunCounts,
    /// Ingest CPU time of the median round (s).
    pub ingest_cpu_s: f64,
    /// Samples per CPU second of the median round.
    pub cpu_samples_per_s: f64,
    /// Median latency at full speed (ms).
    pub max_speed_p50_ms: f64,
    /// Every full-speed round.
    pub rounds: Vec<RoundFigures>,
    /// The paced run.
    pub paced: PacedFigures,
}

/// What one run processed.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RunCounts {
    /// Frames.
    pub frames: u64,
    /// Samples.
    pub samples: u64,
    /// Results.
    pub results: u64,
    /// Frames refused or undecodable.
    pub refused: u64,
    /// Checkpoints.
    pub checkpoints: u64,
    /// Longest checkpoint (ms).
    pub checkpoint_max_ms: f64,
    /// Worker CPU time (s).
    pub worker_cpu_s: f64,
}

impl From<&RunStats> for RunCounts {
    fn from(r: &RunStats) -> RunCounts {
        RunCounts {
            frames: r.frames,
            samples: r.samples,
            results: r.results,
            refused: r.refused + r.undecodable,
            checkpoints: r.checkpoints,
            checkpoint_max_ms: r.checkpoint_max_ms,
            worker_cpu_s: r.worker_cpu_s,
        }
    }
}

/// One full-speed round.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RoundFigures {
    /// Throughput.
    pub samples_per_s: f64,
    /// Wall time (s).
    pub seconds: f64,
    /// Worker CPU time (s).
    pub worker_cpu_s: f64,
    /// Ingest CPU time (s).
    pub ingest_cpu_s: f64,
}

/// The run paced in real time.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PacedFigures {
    /// Seconds of signal per device.
    pub signal_seconds: f64,
    /// The paced run's counts.
    #[serde(flatten)]
    pub run: RunCounts,
    /// Latency, median (ms).
    pub p50_ms: f64,
    /// Latency, 99th percentile (ms).
    pub p99_ms: f64,
    /// Latency, largest (ms).
    pub max_ms: f64,
    /// Most frames durable but not yet processed.
    pub max_backlog_frames: u64,
    /// From the last frame's release to its results being durable (ms).
    pub final_lag_ms: f64,
    /// The worker kept up (final lag under one frame, p99 under 1 s).
    pub kept_up: bool,
}

fn percentile_ms(sorted_us: &[i64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted_us.len() - 1) as f64).round() as usize;
    sorted_us.get(i).copied().unwrap_or_default() as f64 / 1e3
}

/// Opens every sealed result in `secure` with the clinician's identity and
/// compares it to the plain store: the same ids with the same JSON.
pub(super) fn results_identical(
    secure: &Path,
    plain: &Path,
    identity: &ClinicianIdentity,
    subscriber: &str,
) -> anyhow::Result<(bool, usize)> {
    // The secure store holds signed records (`aorta_crypto::auth`); the
    // comparison opens what they carry.
    let sec = FileResultStore::open(secure)?
        .all()?
        .into_iter()
        .map(|(id, rec)| {
            let payload = aorta_crypto::auth::SignedResult::parse(&rec)?
                .payload
                .to_vec();
            Ok((id, payload))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let pl = FileResultStore::open(plain)?.all()?;
    let mut sessions = HashMap::new();
    let session_prefix = format!("{subscriber}/@session/");
    for (id, env) in &sec {
        if id.starts_with(&session_prefix) {
            let s = aorta_crypto::results::open_envelope(identity, env)?;
            sessions.insert(s.session_id(), s);
        }
    }
    let mut opened = HashMap::new();
    for (id, sealed) in &sec {
        if id.starts_with(&session_prefix) {
            continue;
        }
        let rid = id
            .strip_prefix(&format!("{subscriber}/"))
            .context("a secure result is not stored under the subscriber")?;
        let sid = aorta_crypto::results::sealed_result_session_id(sealed)?;
        let s = sessions
            .get(&sid)
            .context("a sealed result names no stored session")?;
        // The stored id is opaque: the result's own id and JSON are inside.
        let inner: aorta_worker::seal::IdentifiedResult<serde_json::Value> =
            serde_json::from_slice(&s.open(rid, sealed)?)?;
        opened.insert(inner.id, inner.result);
    }
    let same = opened.len() == pl.len()
        && pl.iter().all(|(id, json)| {
            serde_json::from_slice::<serde_json::Value>(json)
                .is_ok_and(|plain| opened.get(id) == Some(&plain))
        });
    Ok((same, opened.len()))
}

/// The round with the median throughput.
fn median_round(rounds: &[RunStats]) -> Option<&RunStats> {
    let mut v: Vec<&RunStats> = rounds.iter().collect();
    v.sort_by(|a, b| (a.samples as f64 / a.seconds).total_cmp(&(b.samples as f64 / b.seconds)));
    v.get(v.len() / 2).copied()
}

fn sorted(v: &[i64]) -> Vec<i64> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}

fn cpu(r: &RunStats) -> f64 {
    r.worker_cpu_s + r.ingest_cpu_s
}

fn paced_figures(paced: &RunStats, lat: &[i64], paced_s: f64, frame_s: f64) -> PacedFigures {
    let p99 = percentile_ms(lat, 99.0);
    PacedFigures {
        signal_seconds: paced_s,
        run: paced.into(),
        p50_ms: percentile_ms(lat, 50.0),
        p99_ms: p99,
        max_ms: lat.last().map_or(f64::NAN, |&v| v as f64 / 1e3),
        max_backlog_frames: paced.max_backlog_frames,
        final_lag_ms: paced.final_lag_ms,
        kept_up: paced.final_lag_ms < frame_s * 1e3 && p99 < 1000.0,
    }
}

fn pipeline_figures(
    rounds: &[RunStats],
    paced: &RunStats,
    paced_s: f64,
    frame_s: f64,
) -> anyhow::Result<PipelineFigures> {
    let max = median_round(rounds).context("no full-speed round")?;
    let lat = sorted(&paced.latencies_us);
    let lat_max = sorted(&max.latencies_us);
    Ok(PipelineFigures {
        samples_per_s: max.samples as f64 / max.seconds,
        p50_ms: percentile_ms(&lat, 50.0),
        p99_ms: percentile_ms(&lat, 99.0),
        seconds: max.seconds,
        run: max.into(),
        ingest_cpu_s: max.ingest_cpu_s,
        cpu_samples_per_s: max.samples as f64 / cpu(max),
        max_speed_p50_ms: percentile_ms(&lat_max, 50.0),
        rounds: rounds
            .iter()
            .map(|r| RoundFigures {
                samples_per_s: r.samples as f64 / r.seconds,
                seconds: r.seconds,
                worker_cpu_s: r.worker_cpu_s,
                ingest_cpu_s: r.ingest_cpu_s,
            })
            .collect(),
        paced: paced_figures(paced, &lat, paced_s, frame_s),
    })
}

/// The report of the runs in `m`.
pub(super) fn build(
    cfg: &PipelineConfig,
    data: String,
    m: &Measured,
    frames_max: usize,
    frames_paced: usize,
) -> anyhow::Result<PipelineReport> {
    let paced_s = frames_paced as f64 * cfg.frame_seconds;
    let secure = pipeline_figures(&m.secure_max, &m.secure_paced, paced_s, cfg.frame_seconds)?;
    let plain = pipeline_figures(&m.plain_max, &m.plain_paced, paced_s, cfg.frame_seconds)?;
    let overhead = plain.samples_per_s / secure.samples_per_s;
    let realtime = cfg.devices as f64 * 720.0;
    let refused = m
        .secure_max
        .iter()
        .chain(&m.plain_max)
        .chain([&m.secure_paced, &m.plain_paced])
        .map(|r| r.refused + r.undecodable)
        .sum::<u64>();
    let targets = Targets {
        overhead_max: OVERHEAD_MAX,
        overhead_met: overhead <= OVERHEAD_MAX,
        realtime_met: secure.samples_per_s >= realtime && secure.paced.kept_up,
    };
    Ok(PipelineReport {
        overhead,
        overhead_cpu: m.secure_max.iter().map(cpu).sum::<f64>()
            / m.plain_max.iter().map(cpu).sum::<f64>(),
        rounds: cfg.rounds.max(1),
        devices: cfg.devices,
        realtime_samples_per_s: realtime,
        seconds: frames_max as f64 * cfg.frame_seconds,
        paced_seconds: paced_s,
        frame_seconds: cfg.frame_seconds,
        data,
        results_identical: m.same,
        results_opened: m.opened,
        attestation: "sim (NOT hardware-protected)",
        threads: 2,
        targets,
        refused,
        secure,
        plain,
    })
}
