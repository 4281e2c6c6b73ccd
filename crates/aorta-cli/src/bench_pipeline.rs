//! `aorta bench pipeline`: the same ECG workload through the secure pipeline
//! and through a plain one, in one run, in process.
//!
//! Both pipelines are two threads, as in `aorta server` + `aorta worker
//! stream`: an **ingest** thread that checks each frame's header, prefixes
//! its arrival time (`encode_record`), appends it to a [`FileLog`] and
//! fsyncs once per batch of up to 1,024 frames (group commit), publishing the
//! durable end after each sync; and a **worker** thread that runs
//! [`EcgJob`] over a read-only view of that log up to the published end,
//! makes each batch's results durable, and checkpoints every 5 s of signal.
//!
//! - **secure**: AOFR frames sealed as devices seal them (AES-256-GCM under
//!   per-frame transport keys derived from each device's key slice; sealing
//!   is the devices' work and happens before timing); the worker is a
//!   [`Ready`] obtained by a real in-process sim attestation and key release
//!   by a [`Broker`]; frames cross the host↔worker message boundary
//!   ([`SecureFrames`]); results are sealed to one clinician
//!   ([`aorta_worker::seal::SubscriberSealer`]) and checkpoints under the released state key
//!   ([`aorta_worker::seal::StateKeySealer`]).
//! - **plain**: the same samples as [`encode_plain_frame`] frames (same
//!   codec), [`PlainFrames`], [`PlainResults`], [`PlainState`].
//!
//! Two measurements per pipeline: throughput at full speed (all frames
//! offered at once; samples of all channels / wall time from the first
//! append to the last result durable), and latency paced in real time
//! (frame `k` of every device released at `t0 + (k+1)·F`; latency = results
//! durable − release time, per frame).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use aorta_crypto::frame::{self, ChannelCalibration, FrameHeader, TransportKey};
use aorta_crypto::keys::{self, KeySlice};
use aorta_crypto::results::ClinicianIdentity;
use aorta_enclave::attest::SimAttester;
use aorta_enclave::evidence::{Measurement, hex};
use aorta_enclave::keywrap::Secret32;
use aorta_server::broker::policy::Policy;
use aorta_server::broker::{Broker, KeySource, ReleaseRequest};
use aorta_stream::StreamError;
use aorta_stream::checkpoint::{CheckpointStore, FileCheckpointStore};
use aorta_stream::job::{
    EcgJob, FrameOpen, PlainFrames, PlainResults, PlainState, ResultSealer, StateSealer,
    encode_plain_frame, encode_record, now_us,
};
use aorta_stream::log::{FileLog, FrameLog, LogReader};
use aorta_stream::results::{FileResultStore, ResultSink};
use aorta_worker::client::{Ready, Unattested};
use aorta_worker::frames::SecureFrames;
use aorta_worker::seal::sealers;
use rayon::prelude::*;
use ring::rand::SecureRandom;

/// Keys in each simulated device's slice (the smallest slice the key scheme
/// allows, `aorta_crypto::keys::GROUP_LEN`).
const SLICE_KEYS: usize = keys::GROUP_LEN as usize;
/// Key indices whose group keys the broker releases per device (a bundle
/// holds at most 65,535 keys: 10,000 devices × 8 would not fit).
const RELEASED_INDICES: u16 = 4;
/// Frames per ingest group commit (as `aorta server`'s log writer).
const INGEST_BATCH: usize = 1024;
/// Event time of every device's first sample (µs; a multiple of 5 min).
const T_BASE_US: i64 = 1_700_000_100_000_000;
/// The subscriber the worker seals results to.
const SUBSCRIBER: &str = "bench-clinician";
/// The assignment name.
const ASSIGNMENT: &str = "bench-pipeline";

/// Arguments of `aorta bench pipeline`.
#[derive(clap::Args)]
pub struct Args {
    /// Concurrent devices (each 360 Hz, two channels with MIT-BIH).
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Seconds of signal per device for the full-speed throughput run.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Seconds of signal per device for the real-time paced latency run.
    #[arg(long, default_value_t = 20.0)]
    paced_seconds: f64,
    /// Seconds of signal per frame.
    #[arg(long, default_value_t = 1.0)]
    frame_seconds: f64,
    /// WFDB database the devices replay (device d plays record d mod R from
    /// an offset in [0, 300) s). When absent, a synthetic ECG is used and the
    /// output says so.
    #[arg(long, default_value = "../shared/data/mitdb")]
    db: PathBuf,
    /// Worker records per batch (as `aorta worker stream --batch`).
    #[arg(long, default_value_t = 1024)]
    batch: usize,
    /// Full-speed rounds per pipeline, alternating plain and secure; the
    /// median round of each is reported (the machine may be shared).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Worker checkpoint interval, seconds of signal (every devices ×
    /// this / frame-seconds records, in both pipelines and both runs; the
    /// real worker checkpoints every 5 s of wall time, the same while it
    /// keeps up in real time).
    #[arg(long, default_value_t = 5.0)]
    checkpoint_secs: f64,
    /// Keep the logs, result stores and checkpoints in DIR (with the
    /// clinician identity in DIR/clinician.key) instead of a temporary
    /// directory that is removed afterwards.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Print JSON (`secure`, `plain` with `samples_per_s`, `p50_ms`, `p99_ms`;
    /// `overhead`, `devices`, `realtime_samples_per_s`, …).
    #[arg(long)]
    json: bool,
}

// ---------------------------------------------------------------- signal

/// One source signal the devices replay (two channels, digital units).
struct Source {
    fs: f64,
    calibration: Vec<ChannelCalibration>,
    channels: [Vec<i32>; 2],
}

/// Loads up to `want` two-channel records of `db`, keeping `keep_s` seconds
/// from the start of each.
fn load_db(db: &Path, want: usize, keep_s: f64) -> anyhow::Result<Vec<Source>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(db)
        .with_context(|| format!("reading {}", db.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "hea"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for hea in names {
        if out.len() >= want {
            break;
        }
        let rec = aorta_signal::wfdb::Record::read(&hea)
            .with_context(|| format!("reading {}", hea.display()))?;
        let fs = rec.fs();
        let (Some(s0), Some(s1), Some(h0), Some(h1)) = (
            rec.samples.first(),
            rec.samples.get(1),
            rec.header.signals.first(),
            rec.header.signals.get(1),
        ) else {
            continue;
        };
        if !(fs.is_finite() && fs > 0.0) {
            continue;
        }
        let keep = ((keep_s * fs).ceil() as usize).min(s0.len()).min(s1.len());
        let cal = |h: &aorta_signal::wfdb::SignalSpec| {
            ChannelCalibration::new(
                if h.gain.is_finite() && h.gain != 0.0 {
                    h.gain
                } else {
                    200.0
                },
                h.baseline,
                h.adc_zero,
                u16::try_from(h.adc_resolution).unwrap_or(0),
                &h.units,
                &h.description,
            )
        };
        out.push(Source {
            fs,
            calibration: vec![cal(h0), cal(h1)],
            channels: [
                s0.get(..keep).unwrap_or_default().to_vec(),
                s1.get(..keep).unwrap_or_default().to_vec(),
            ],
        });
    }
    anyhow::ensure!(!out.is_empty(), "no two-channel record in {}", db.display());
    Ok(out)
}

/// A synthetic two-lead ECG at 360 Hz (used only when the database is
/// absent): P-QRS-T complexes as Gaussian waves, a heart rate drifting
/// between sources with respiratory sinus arrhythmia and beat-to-beat
/// jitter, baseline wander and noise; 200 units/mV, baseline 1024 (as MIT-BIH).
fn synthetic(count: usize, secs: f64) -> Vec<Source> {
    let fs = 360.0;
    let n = (secs * fs).ceil() as usize;
    (0..count)
        .map(|s| {
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (s as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
            let mut uniform = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng >> 11) as f64 / (1u64 << 53) as f64
            };
            let hr = 58.0 + 7.0 * (s % 6) as f64;
            // Beat times.
            let mut beats = Vec::new();
            let mut t = 0.3 * uniform();
            while t < secs + 2.0 {
                beats.push(t);
                let rr = 60.0 / hr
                    * (1.0 + 0.05 * (2.0 * std::f64::consts::PI * 0.25 * t).sin())
                    * (1.0 + 0.03 * (uniform() - 0.5));
                t += rr;
            }
            let wave = |x: f64, at: f64, width: f64, amp: f64| {
                let z = (x - at) / width;
                amp * (-0.5 * z * z).exp()
            };
            let mut a = vec![0i32; n];
            let mut b = vec![0i32; n];
            let mut next = 0usize;
            for i in 0..n {
                let x = i as f64 / fs;
                while beats.get(next + 1).is_some_and(|&bt| bt < x - 0.4) {
                    next += 1;
                }
                let mut v1 = 0.0;
                let mut v2 = 0.0;
                for bt in beats.iter().skip(next).take(3) {
                    let d = x - bt;
                    if !(-0.4..=0.6).contains(&d) {
                        continue;
                    }
                    let p = wave(d, -0.18, 0.025, 0.12);
                    let qrs = wave(d, -0.025, 0.010, -0.12)
                        + wave(d, 0.0, 0.012, 1.3)
                        + wave(d, 0.028, 0.012, -0.3);
                    let tw = wave(d, 0.28, 0.055, 0.28);
                    v1 += p + qrs + tw;
                    v2 += 0.6 * p + 0.7 * qrs + 0.45 * tw;
                }
                let wander = 0.06 * (2.0 * std::f64::consts::PI * 0.3 * x + s as f64).sin();
                v1 += wander + 0.015 * (uniform() - 0.5);
                v2 += 0.8 * wander + 0.015 * (uniform() - 0.5);
                if let (Some(pa), Some(pb)) = (a.get_mut(i), b.get_mut(i)) {
                    *pa = 1024 + (v1 * 200.0).round() as i32;
                    *pb = 1024 + (v2 * 200.0).round() as i32;
                }
            }
            let cal = |d: &str| ChannelCalibration::new(200.0, 1024, 1024, 11, "mV", d);
            Source {
                fs,
                calibration: vec![cal("synthetic I"), cal("synthetic II")],
                channels: [a, b],
            }
        })
        .collect()
}

// ---------------------------------------------------------------- devices

/// One device's frames in both forms, with what the broker must release.
struct DeviceFrames {
    serial: String,
    secure: Vec<Vec<u8>>,
    plain: Vec<Vec<u8>>,
    /// Samples (all channels) of each frame.
    samples: Vec<u64>,
    /// Group keys `G_0 … G_(RELEASED_INDICES-1)`.
    groups: Vec<Secret32>,
}

fn random<const N: usize>(rng: &ring::rand::SystemRandom) -> anyhow::Result<[u8; N]> {
    let mut b = [0u8; N];
    rng.fill(&mut b)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    Ok(b)
}

/// The devices' work, done before timing: each device gets a fresh key
/// slice and epoch, derives its transport key and seals `frames` frames of
/// its signal; the same samples are also encoded as plain frames.
fn make_devices(
    sources: &[Source],
    devices: usize,
    frames: usize,
    frame_s: f64,
) -> anyhow::Result<Vec<DeviceFrames>> {
    let rng = ring::rand::SystemRandom::new();
    (0..devices)
        .into_par_iter()
        .map(|d| {
            let src = sources.get(d % sources.len()).context("no source signal")?;
            let per = ((frame_s * src.fs).round() as usize).max(1);
            let [c0, c1] = &src.channels;
            let len = c0.len().min(c1.len());
            let need = per * frames;
            let offset = if len > need {
                let want = ((d as u64).wrapping_mul(7919) % 300) as usize * src.fs as usize;
                want.min(len - need)
            } else {
                0
            };
            let serial = format!("BP-{d:05}");
            let mut material = vec![0u8; SLICE_KEYS * 32];
            rng.fill(&mut material)
                .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
            let slice = KeySlice::new(&serial, material)?;
            let epoch: [u8; keys::EPOCH_LEN] = random(&rng)?;
            let index = (d % usize::from(RELEASED_INDICES)) as u16;
            let tk = TransportKey::derive(&slice, index, &epoch)?;
            let groups = (0..RELEASED_INDICES)
                .map(|i| keys::transport_group_key(&slice, i).map(|g| Secret32::from_bytes(*g)))
                .collect::<Result<Vec<_>, _>>()?;
            let rate_mhz = (src.fs * 1000.0).round() as u32;
            let cal_plain: Vec<(f64, i32)> = src
                .calibration
                .iter()
                .map(|c| (c.gain, c.baseline))
                .collect();
            let mut out = DeviceFrames {
                serial: serial.clone(),
                secure: Vec::with_capacity(frames),
                plain: Vec::with_capacity(frames),
                samples: Vec::with_capacity(frames),
                groups,
            };
            for k in 0..frames {
                let a = offset + k * per;
                let b = (a + per).min(len);
                if a >= b {
                    break;
                }
                let chans: Vec<&[i32]> = src
                    .channels
                    .iter()
                    .map(|c| c.get(a..b).unwrap_or_default())
                    .collect();
                let t = T_BASE_US + (k as f64 * frame_s * 1e6).round() as i64;
                let h = FrameHeader::new(
                    &serial,
                    index,
                    k as u64,
                    t,
                    rate_mhz,
                    2,
                    (b - a) as u32,
                    epoch,
                )?;
                out.secure
                    .push(frame::seal(&tk, &h, &src.calibration, &chans)?);
                out.plain.push(encode_plain_frame(
                    &serial, t, rate_mhz, &cal_plain, &chans,
                )?);
                out.samples.push(2 * (b - a) as u64);
            }
            Ok(out)
        })
        .collect()
}

// ---------------------------------------------------------------- broker

/// The broker's key source for the bench: the devices' group keys, the
/// clinician's public key as the subscriber's result key, and worker state
/// keys derived from a state secret.
struct BenchKeys {
    groups: std::collections::HashMap<String, Vec<Secret32>>,
    clinician: Secret32,
    state_secret: Secret32,
}

impl KeySource for BenchKeys {
    fn transport_key(&self, _serial: &str) -> Option<Secret32> {
        None
    }
    fn result_key(&self, id: &str) -> Option<Secret32> {
        (id == SUBSCRIBER).then(|| self.clinician.clone())
    }
    fn transport_group_keys(&self, serial: &str) -> Option<Vec<Secret32>> {
        self.groups.get(serial).cloned()
    }
    fn state_key(&self, assignment: &str) -> Option<Secret32> {
        keys::worker_state_key(self.state_secret.expose(), assignment)
            .ok()
            .map(|k| Secret32::from_bytes(*k))
    }
}

/// A broker with a sim-attestation policy for the assignment, and the
/// platform and measurement a worker attests with.
fn broker(
    keys: BenchKeys,
    serials: &[String],
) -> anyhow::Result<(Broker, SimAttester, Measurement)> {
    let rng = ring::rand::SystemRandom::new();
    let platform = SimAttester::from_seed(&random::<32>(&rng)?);
    let m = Measurement::of_worker(b"aorta bench pipeline", b"");
    let devs: Vec<String> = serials.iter().map(|s| format!("\"{s}\"")).collect();
    let policy = Policy::from_toml_str(&format!(
        "allowed_backends = [\"sim\"]\nallow_simulation = true\nallowed_measurements = [\"{}\"]\nsim_platform_keys = [\"{}\"]\n[[assignments]]\nname = \"{ASSIGNMENT}\"\ndevices = [{}]\nsubscribers = [\"{SUBSCRIBER}\"]\n",
        m.to_hex(),
        hex(&platform.platform_public_key()),
        devs.join(",")
    ))?;
    Ok((Broker::new(policy, Arc::new(keys)), platform, m))
}

/// A worker attested in process: nonce → sim evidence → broker verification
/// and HPKE key release → the worker opens its bundle.
fn attest(broker: &Broker, platform: &SimAttester, m: Measurement) -> anyhow::Result<Ready> {
    let w = Unattested::new(m).map_err(|e| anyhow::anyhow!("random generator: {e}"))?;
    let (nonce, issued_at) = broker
        .issue_nonce()
        .map_err(|e| anyhow::anyhow!("broker: {e}"))?;
    let awaiting = w.attest(platform, nonce, issued_at)?;
    let rel = broker
        .release(&ReleaseRequest {
            evidence: awaiting.evidence().encode(),
            assignment: ASSIGNMENT.into(),
            devices: Vec::new(),
            subscribers: Vec::new(),
        })
        .map_err(|e| anyhow::anyhow!("the broker refused (code {}): {e}", e.code()))?;
    Ok(awaiting.receive_keys(&rel.sealed)?)
}

// ---------------------------------------------------------------- pipeline

/// A read-only view of the ingest log up to the end ingest published after
/// its last sync: what the worker reads.
struct PublishedLog {
    reader: LogReader,
    end: Arc<AtomicU64>,
}

impl FrameLog for PublishedLog {
    fn append(&mut self, _payload: &[u8]) -> Result<u64, StreamError> {
        Err(StreamError::Config(
            "the worker's view of the log is read-only".into(),
        ))
    }
    fn sync(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }
    fn read_from(&self, offset: u64, max: usize) -> Result<(Vec<Vec<u8>>, u64), StreamError> {
        self.reader.read_from(offset, max, self.end())
    }
}

/// How ingest offers the frames.
#[derive(Clone, Copy)]
enum Pace {
    /// Everything at once.
    Max,
    /// Frame `k` of every device at `t0 + (k+1)·F` seconds.
    RealTime(f64),
}

/// What one pipeline run measured.
#[derive(Debug, Default)]
struct RunStats {
    frames: u64,
    samples: u64,
    seconds: f64,
    results: u64,
    refused: u64,
    undecodable: u64,
    checkpoints: u64,
    /// Longest checkpoint (worker blocked), ms.
    checkpoint_max_ms: f64,
    /// CPU time of the worker thread, s.
    worker_cpu_s: f64,
    /// CPU time of the ingest thread, s.
    ingest_cpu_s: f64,
    latencies_us: Vec<i64>,
    max_backlog_frames: u64,
    /// From the last frame's release to its results being durable.
    final_lag_ms: f64,
}

/// CPU time of the calling thread in seconds (`/proc/thread-self/schedstat`,
/// Linux); NaN where unavailable.
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(f64::NAN, |ns| ns as f64 / 1e9)
}

/// The ingest's header check: the secure host parses the AOFR header.
fn check_sealed(f: &[u8]) -> bool {
    frame::parse(f).is_ok()
}

/// The plain baseline's header check: its serial field.
fn check_plain(f: &[u8]) -> bool {
    f.split_first().is_some_and(|(&n, rest)| {
        rest.get(..usize::from(n))
            .is_some_and(|s| std::str::from_utf8(s).is_ok())
    })
}

struct Workload<'a> {
    devices: &'a [DeviceFrames],
    secure: bool,
    /// Frames per device offered.
    frames: usize,
}

impl Workload<'_> {
    fn frame(&self, d: usize, k: usize) -> Option<(&[u8], u64)> {
        let dev = self.devices.get(d)?;
        let f = if self.secure {
            dev.secure.get(k)
        } else {
            dev.plain.get(k)
        }?;
        Some((f.as_slice(), dev.samples.get(k).copied().unwrap_or(0)))
    }
}

/// Runs ingest and worker threads over `w` in `dir`; `job` builds the
/// worker's job inside its thread.
#[allow(clippy::too_many_arguments)]
fn run_pipeline<F, RS, SS>(
    w: &Workload<'_>,
    pace: Pace,
    dir: &Path,
    batch: usize,
    checkpoint_every: u64,
    frames: F,
    sealer: RS,
    state: SS,
) -> anyhow::Result<RunStats>
where
    F: FrameOpen + Send,
    RS: ResultSealer + Send,
    SS: StateSealer + Send,
{
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut log = FileLog::open(dir.join("frames.log"))?;
    anyhow::ensure!(log.end() == 0, "{} is not empty", dir.display());
    let end = Arc::new(AtomicU64::new(0));
    let published = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let view = PublishedLog {
        reader: log.reader(),
        end: end.clone(),
    };
    let results = FileResultStore::open(dir.join("results.log"))?;
    let checkpoints = FileCheckpointStore::new(dir.join("checkpoint"))?;
    let check = if w.secure { check_sealed } else { check_plain };
    let devices = w.devices.len();

    std::thread::scope(|scope| -> anyhow::Result<RunStats> {
        let name = if w.secure {
            "worker-secure"
        } else {
            "worker-plain"
        };
        let worker = std::thread::Builder::new()
            .name(name.into())
            .spawn_scoped(scope, {
                let published = published.clone();
                let done = done.clone();
                move || -> anyhow::Result<(RunStats, Instant)> {
                    worker_loop(
                        view,
                        published,
                        done,
                        batch,
                        checkpoint_every,
                        frames,
                        checkpoints,
                        state,
                        results,
                        sealer,
                    )
                }
            })?;
        let worker_thread = worker.thread().clone();
        // Ingest, on this thread.
        let mut stats = RunStats::default();
        let mut pending = 0usize;
        let publish = |log: &mut FileLog, pending: &mut usize| -> anyhow::Result<()> {
            log.sync()?;
            end.store(log.end(), Ordering::Release);
            published.fetch_add(*pending as u64, Ordering::AcqRel);
            *pending = 0;
            worker_thread.unpark();
            Ok(())
        };
        let cpu0 = thread_cpu_s();
        let t0 = Instant::now();
        let wall0 = now_us();
        let mut last_release = t0;
        let ingest = (|| -> anyhow::Result<()> {
            for k in 0..w.frames {
                let arrival = match pace {
                    Pace::Max => None,
                    Pace::RealTime(f) => {
                        let at = Duration::from_secs_f64(f * (k + 1) as f64);
                        let deadline = t0 + at;
                        let now = Instant::now();
                        if deadline > now {
                            std::thread::sleep(deadline - now);
                        }
                        last_release = deadline;
                        Some(wall0 + at.as_micros() as i64)
                    }
                };
                for d in 0..devices {
                    let Some((f, n)) = w.frame(d, k) else {
                        continue;
                    };
                    anyhow::ensure!(check(f), "ingest refused device {d} frame {k}");
                    let rec = encode_record(arrival.unwrap_or_else(now_us), f);
                    log.append(&rec)?;
                    stats.frames += 1;
                    stats.samples += n;
                    pending += 1;
                    if pending >= INGEST_BATCH {
                        publish(&mut log, &mut pending)?;
                    }
                }
                if pending > 0 {
                    publish(&mut log, &mut pending)?;
                }
            }
            Ok(())
        })();
        stats.ingest_cpu_s = thread_cpu_s() - cpu0;
        done.store(true, Ordering::Release);
        worker.thread().unpark();
        let joined = worker
            .join()
            .map_err(|_| anyhow::anyhow!("the worker thread panicked"))?;
        ingest?;
        let (ws, finished) = joined?;
        stats.seconds = finished.duration_since(t0).as_secs_f64();
        stats.final_lag_ms = match pace {
            Pace::Max => 0.0,
            Pace::RealTime(_) => {
                finished
                    .saturating_duration_since(last_release)
                    .as_secs_f64()
                    * 1e3
            }
        };
        stats.results = ws.results;
        stats.refused = ws.refused;
        stats.undecodable = ws.undecodable;
        stats.checkpoints = ws.checkpoints;
        stats.checkpoint_max_ms = ws.checkpoint_max_ms;
        stats.worker_cpu_s = ws.worker_cpu_s;
        stats.latencies_us = ws.latencies_us;
        stats.max_backlog_frames = ws.max_backlog_frames;
        anyhow::ensure!(
            ws.frames == stats.frames,
            "the worker processed {} records of {}",
            ws.frames,
            stats.frames
        );
        Ok(stats)
    })
}

/// The worker thread: batches from the published log until ingest is done
/// and everything published is processed.
#[allow(clippy::too_many_arguments)]
fn worker_loop<F, RS, SS>(
    view: PublishedLog,
    published: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    batch: usize,
    checkpoint_every: u64,
    frames: F,
    checkpoints: impl CheckpointStore,
    state: SS,
    results: impl ResultSink,
    sealer: RS,
) -> anyhow::Result<(RunStats, Instant)>
where
    F: FrameOpen,
    RS: ResultSealer,
    SS: StateSealer,
{
    let mut job = EcgJob::open(
        aorta_stream::ecg::EcgConfig::default(),
        aorta_stream::EngineConfig::default(),
        frames,
        checkpoints,
        state,
        results,
        sealer,
        u64::MAX,
    )?;
    let cpu0 = thread_cpu_s();
    let mut s = RunStats::default();
    let mut cp_records = 0u64;
    let mut last_durable = Instant::now();
    loop {
        let b = job.run_batch(&view, batch)?;
        if b.records > 0 {
            last_durable = Instant::now();
        }
        s.latencies_us.extend_from_slice(&b.latencies_us);
        let processed = job.stats().records;
        s.max_backlog_frames = s
            .max_backlog_frames
            .max(published.load(Ordering::Acquire).saturating_sub(processed));
        if processed - cp_records >= checkpoint_every {
            let t = Instant::now();
            job.checkpoint()?;
            s.checkpoint_max_ms = s.checkpoint_max_ms.max(t.elapsed().as_secs_f64() * 1e3);
            cp_records = processed;
        }
        if b.records == 0 {
            if done.load(Ordering::Acquire) && job.offset() == view.end() {
                break;
            }
            std::thread::park_timeout(Duration::from_millis(5));
        }
    }
    // The last result durable (a checkpoint after it delays no result).
    let finished = last_durable;
    s.worker_cpu_s = thread_cpu_s() - cpu0;
    let st = job.stats();
    s.frames = st.records;
    s.results = st.stored;
    s.undecodable = st.undecodable;
    s.checkpoints = st.checkpoints;
    s.refused = job.decoder().refused().values().sum();
    Ok((s, finished))
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
fn results_identical(
    secure: &Path,
    plain: &Path,
    identity: &ClinicianIdentity,
) -> anyhow::Result<(bool, usize)> {
    let sec = FileResultStore::open(secure)?.all()?;
    let pl = FileResultStore::open(plain)?.all()?;
    let mut sessions = std::collections::HashMap::new();
    let session_prefix = format!("{SUBSCRIBER}/@session/");
    for (id, env) in &sec {
        if id.starts_with(&session_prefix) {
            let s = aorta_crypto::results::open_envelope(identity, env)?;
            sessions.insert(s.session_id(), s);
        }
    }
    let mut opened = std::collections::HashMap::new();
    for (id, sealed) in &sec {
        if id.starts_with(&session_prefix) {
            continue;
        }
        let rid = id
            .strip_prefix(&format!("{SUBSCRIBER}/"))
            .context("a secure result is not stored under the subscriber")?;
        let sid = aorta_crypto::results::sealed_result_session_id(sealed)?;
        let s = sessions
            .get(&sid)
            .context("a sealed result names no stored session")?;
        opened.insert(rid.to_owned(), s.open(rid, sealed)?.to_vec());
    }
    let same = opened.len() == pl.len()
        && pl
            .iter()
            .all(|(id, json)| opened.get(id).is_some_and(|o| o == json));
    Ok((same, opened.len()))
}

/// The round with the median throughput.
fn median_round(rounds: &[RunStats]) -> Option<&RunStats> {
    let mut v: Vec<&RunStats> = rounds.iter().collect();
    v.sort_by(|a, b| (a.samples as f64 / a.seconds).total_cmp(&(b.samples as f64 / b.seconds)));
    v.get(v.len() / 2).copied()
}

fn pipeline_json(
    rounds: &[RunStats],
    paced: &RunStats,
    paced_s: f64,
    frame_s: f64,
) -> anyhow::Result<serde_json::Value> {
    let max = median_round(rounds).context("no full-speed round")?;
    let mut lat = paced.latencies_us.clone();
    lat.sort_unstable();
    let mut lat_max = max.latencies_us.clone();
    lat_max.sort_unstable();
    let p99 = percentile_ms(&lat, 99.0);
    let cpu = |r: &RunStats| r.worker_cpu_s + r.ingest_cpu_s;
    Ok(serde_json::json!({
        "samples_per_s": max.samples as f64 / max.seconds,
        "p50_ms": percentile_ms(&lat, 50.0),
        "p99_ms": p99,
        "seconds": max.seconds,
        "frames": max.frames,
        "samples": max.samples,
        "results": max.results,
        "refused": max.refused + max.undecodable,
        "checkpoints": max.checkpoints,
        "checkpoint_max_ms": max.checkpoint_max_ms,
        "worker_cpu_s": max.worker_cpu_s,
        "ingest_cpu_s": max.ingest_cpu_s,
        "cpu_samples_per_s": max.samples as f64 / cpu(max),
        "max_speed_p50_ms": percentile_ms(&lat_max, 50.0),
        "rounds": rounds.iter().map(|r| serde_json::json!({
            "samples_per_s": r.samples as f64 / r.seconds,
            "seconds": r.seconds,
            "worker_cpu_s": r.worker_cpu_s,
            "ingest_cpu_s": r.ingest_cpu_s,
        })).collect::<Vec<_>>(),
        "paced": {
            "signal_seconds": paced_s,
            "frames": paced.frames,
            "samples": paced.samples,
            "results": paced.results,
            "refused": paced.refused + paced.undecodable,
            "checkpoints": paced.checkpoints,
            "checkpoint_max_ms": paced.checkpoint_max_ms,
            "worker_cpu_s": paced.worker_cpu_s,
            "p50_ms": percentile_ms(&lat, 50.0),
            "p99_ms": p99,
            "max_ms": lat.last().map_or(f64::NAN, |&v| v as f64 / 1e3),
            "max_backlog_frames": paced.max_backlog_frames,
            "final_lag_ms": paced.final_lag_ms,
            "kept_up": paced.final_lag_ms < frame_s * 1e3 && p99 < 1000.0,
        },
    }))
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.devices > 0, "--devices must be at least 1");
    anyhow::ensure!(
        a.devices <= 16_000,
        "--devices at most 16000 (one key bundle holds at most 65,535 keys, {RELEASED_INDICES} per device)"
    );
    for (name, v) in [
        ("--seconds", a.seconds),
        ("--paced-seconds", a.paced_seconds),
        ("--frame-seconds", a.frame_seconds),
        ("--checkpoint-secs", a.checkpoint_secs),
    ] {
        anyhow::ensure!(v.is_finite() && v > 0.0, "{name} must be positive");
    }
    let frames_max = (a.seconds / a.frame_seconds).round().max(1.0) as usize;
    let frames_paced = (a.paced_seconds / a.frame_seconds).round().max(1.0) as usize;
    let frames_all = frames_max.max(frames_paced);
    let signal_s = frames_all as f64 * a.frame_seconds;

    // Signal.
    let (sources, data) = if a.db.is_dir() {
        (
            load_db(&a.db, a.devices.min(64), 300.0 + signal_s + 1.0)?,
            format!("{}", a.db.display()),
        )
    } else {
        eprintln!(
            "NOTE: {} not found: the devices replay a SYNTHETIC ECG (not real data)",
            a.db.display()
        );
        (
            synthetic(a.devices.clamp(1, 8), 300.0 + signal_s + 1.0),
            "synthetic".to_owned(),
        )
    };
    eprintln!(
        "sealing {} frames of {} devices ({} source records; devices' work, not timed)…",
        frames_all * a.devices,
        a.devices,
        sources.len()
    );
    let devices = make_devices(&sources, a.devices, frames_all, a.frame_seconds)?;
    drop(sources);

    // Broker, clinician, keys.
    let identity = ClinicianIdentity::generate()?;
    let clinician_pk = identity.public();
    let rng = ring::rand::SystemRandom::new();
    let keys = BenchKeys {
        groups: devices
            .iter()
            .map(|d| (d.serial.clone(), d.groups.clone()))
            .collect(),
        clinician: Secret32::from_bytes(*clinician_pk.as_bytes()),
        state_secret: Secret32::from_bytes(random::<32>(&rng)?),
    };
    let serials: Vec<String> = devices.iter().map(|d| d.serial.clone()).collect();
    let (broker, platform, measurement) = broker(keys, &serials)?;
    eprintln!("WARNING: {}", aorta_enclave::SIM_WARNING);

    let (work, temp) = match &a.keep {
        Some(d) => {
            anyhow::ensure!(
                !d.exists() || std::fs::read_dir(d)?.next().is_none(),
                "--keep {}: the directory is not empty",
                d.display()
            );
            (d.clone(), false)
        }
        None => (
            std::env::temp_dir().join(format!("aorta-bench-pipeline-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    if a.keep.is_some() {
        std::fs::write(
            work.join("clinician.key"),
            identity.to_file_text().as_bytes(),
        )?;
    }
    // Checkpoints every `checkpoint_secs` of signal: what the real worker's
    // timer gives while it keeps up in real time. Both pipelines then
    // checkpoint at the same points of the same workload (a wall-clock timer
    // would make the slower one checkpoint more often per frame).
    let checkpoint_every =
        ((a.devices as f64 * a.checkpoint_secs / a.frame_seconds).round() as u64).max(1);
    let batch = a.batch.clamp(1, 4096);

    let secure_run = |pace: Pace, frames: usize, dir: &Path| -> anyhow::Result<RunStats> {
        let ready = attest(&broker, &platform, measurement)?;
        let (results_sealer, state_sealer) = sealers(&ready, ASSIGNMENT)?;
        let w = Workload {
            devices: &devices,
            secure: true,
            frames,
        };
        run_pipeline(
            &w,
            pace,
            dir,
            batch,
            checkpoint_every,
            SecureFrames::new(ready),
            results_sealer,
            state_sealer,
        )
    };
    let plain_run = |pace: Pace, frames: usize, dir: &Path| -> anyhow::Result<RunStats> {
        let w = Workload {
            devices: &devices,
            secure: false,
            frames,
        };
        run_pipeline(
            &w,
            pace,
            dir,
            batch,
            checkpoint_every,
            PlainFrames,
            PlainResults,
            PlainState,
        )
    };

    let outcome = (|| -> anyhow::Result<_> {
        // Full speed: alternating rounds (plain, secure, plain, …) so that
        // load from elsewhere on the machine hits both alike; the median
        // round of each is reported. Round 1's stores are kept.
        let mut plain_max = Vec::new();
        let mut secure_max = Vec::new();
        for r in 1..=a.rounds.max(1) {
            let suffix = if r == 1 {
                String::new()
            } else {
                format!("-{r}")
            };
            eprintln!("round {r}: plain, full speed…");
            let dir = work.join(format!("plain-max{suffix}"));
            plain_max.push(plain_run(Pace::Max, frames_max, &dir)?);
            eprintln!("round {r}: secure, full speed…");
            let sdir = work.join(format!("secure-max{suffix}"));
            secure_max.push(secure_run(Pace::Max, frames_max, &sdir)?);
            if r > 1 {
                let _ = std::fs::remove_dir_all(&dir);
                let _ = std::fs::remove_dir_all(&sdir);
            }
        }
        eprintln!(
            "plain, paced in real time ({} s)…",
            frames_paced as f64 * a.frame_seconds
        );
        let plain_paced = plain_run(
            Pace::RealTime(a.frame_seconds),
            frames_paced,
            &work.join("plain-paced"),
        )?;
        eprintln!("secure, paced in real time…");
        let secure_paced = secure_run(
            Pace::RealTime(a.frame_seconds),
            frames_paced,
            &work.join("secure-paced"),
        )?;
        let (same, opened) = results_identical(
            &work.join("secure-max/results.log"),
            &work.join("plain-max/results.log"),
            &identity,
        )?;
        Ok((
            plain_max,
            secure_max,
            plain_paced,
            secure_paced,
            same,
            opened,
        ))
    })();
    if temp {
        let _ = std::fs::remove_dir_all(&work);
    }
    let (plain_max, secure_max, plain_paced, secure_paced, same, opened) = outcome?;

    let paced_s = frames_paced as f64 * a.frame_seconds;
    let secure = pipeline_json(&secure_max, &secure_paced, paced_s, a.frame_seconds)?;
    let plain = pipeline_json(&plain_max, &plain_paced, paced_s, a.frame_seconds)?;
    let num = |v: &serde_json::Value, path: &str| {
        v.pointer(path)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(f64::NAN)
    };
    let sps = |v: &serde_json::Value| num(v, "/samples_per_s");
    let overhead = sps(&plain) / sps(&secure);
    let realtime = a.devices as f64 * 720.0;
    let refused = secure_max
        .iter()
        .chain(&plain_max)
        .map(|r| r.refused + r.undecodable)
        .sum::<u64>()
        + secure_paced.refused
        + secure_paced.undecodable
        + plain_paced.refused
        + plain_paced.undecodable;
    let ok = same && refused == 0;
    let v = serde_json::json!({
        "secure": secure,
        "plain": plain,
        "overhead": overhead,
        "overhead_cpu": (secure_max.iter().map(|r| r.worker_cpu_s + r.ingest_cpu_s).sum::<f64>()
            / plain_max.iter().map(|r| r.worker_cpu_s + r.ingest_cpu_s).sum::<f64>()),
        "rounds": a.rounds.max(1),
        "devices": a.devices,
        "realtime_samples_per_s": realtime,
        "seconds": frames_max as f64 * a.frame_seconds,
        "paced_seconds": paced_s,
        "frame_seconds": a.frame_seconds,
        "data": data,
        "results_identical": same,
        "results_opened": opened,
        "attestation": "sim (NOT hardware-protected)",
        "threads": 2,
        "targets": {
            "overhead_max": 1.15,
            "overhead_met": overhead <= 1.15,
            "realtime_met": sps(&secure) >= realtime
                && secure
                    .pointer("/paced/kept_up")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false),
        },
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} devices, {} s of signal per device at full speed, {} s paced in real time (data: {data}; sim attestation, NOT hardware-protected)",
            a.devices,
            frames_max as f64 * a.frame_seconds,
            paced_s
        );
        println!(
            "{:<8} {:>14} {:>10} {:>10} {:>10} {:>12} {:>14} {:>8}",
            "pipeline",
            "samples/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "final lag ms",
            "max backlog",
            "results"
        );
        for (name, p) in [("secure", &secure), ("plain", &plain)] {
            println!(
                "{:<8} {:>14.0} {:>10.1} {:>10.1} {:>10.1} {:>12.1} {:>14.0} {:>8.0}",
                name,
                sps(p),
                num(p, "/p50_ms"),
                num(p, "/p99_ms"),
                num(p, "/paced/max_ms"),
                num(p, "/paced/final_lag_ms"),
                num(p, "/paced/max_backlog_frames"),
                num(p, "/results"),
            );
        }
        println!(
            "overhead (plain / secure throughput, median of {} rounds): {overhead:.3}× (target ≤ 1.15×); by CPU time: {:.3}×; real time needs {realtime:.0} samples/s",
            a.rounds.max(1),
            num(&v, "/overhead_cpu")
        );
        println!(
            "secure results opened with the clinician's identity and equal to the plain ones: {same} ({opened} results)"
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("check failed: results differ or frames were refused ({refused})");
        ExitCode::from(1)
    })
}
