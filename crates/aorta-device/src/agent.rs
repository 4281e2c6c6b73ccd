//! The live device agent: paced production of sealed frames, offline
//! buffering, upload with retry, clean shutdown.
//!
//! [`run`] is one synchronous loop, independent of where samples come from
//! (a [`FrameSource`]: a replayed record, a sensor, a growing file) and of
//! how frames travel (a [`Transport`]: HTTPS in [`crate::http`], a fake in
//! tests). For every frame it:
//!
//! 1. waits until the frame is *due* — with [`Speed::RealTime`] a frame is
//!    due when its last sample would have been captured (signal time from the
//!    first frame's start, divided by the speed-up); with [`Speed::Max`] at
//!    once — and meanwhile uploads queued frames, oldest first;
//! 2. seals it and pushes it to the [`OfflineQueue`] (durable) **before** any
//!    upload, so nothing sealed is lost while offline;
//! 3. uploads from the queue whenever the uplink is not backing off.
//!
//! **Retry.** A transport error (network down, HTTP 429/5xx, a peer that
//! acknowledges the wrong frame) leaves the frame queued and starts a backoff:
//! [`Backoff::delay`] doubles from `initial` to `max` with jitter, and the
//! server's `Retry-After` is honoured when longer. Production never waits for
//! the backoff: frames keep being sealed on schedule into the queue. The only
//! time production waits for the network is during one in-flight request
//! (bounded by the transport's timeout); frames carry signal timestamps, so
//! a late frame is late, never lost or shifted.
//!
//! **Shutdown.** When the `stop` flag is raised (SIGINT/SIGTERM in the CLI),
//! the agent stops producing (a frame not yet sealed is not sealed), lets
//! the in-flight upload finish and apply its reply, and returns; unsent
//! frames stay in the queue on disk. The next run uploads them first: the
//! queue is drained oldest (lowest sequence) first, and a new [`Sealer`]
//! always continues above the old sequences.
//!
//! A permanently refused frame (the server answered it will never accept
//! it) is removed from the queue and reported with the server's reason, so
//! it cannot block newer frames. Frames dropped by the queue's full-queue
//! policy are counted.
//!
//! ```no_run
//! use std::sync::{Arc, atomic::AtomicBool};
//! use aorta_device::DeviceError;
//! use aorta_device::agent::{self, AgentConfig, FrameSource, Speed};
//! use aorta_device::http::{HttpOptions, HttpsTransport};
//! use aorta_device::queue::{OfflineQueue, QueueLimits};
//! use aorta_device::rotation::Sealer;
//! use aorta_device::se::FileSecureElement;
//!
//! /// Streams `src` (a WFDB replay, a followed file, RR intervals...).
//! fn stream(src: &mut dyn FrameSource, stop: &AtomicBool) -> Result<(), DeviceError> {
//!     let dir = aorta_device::DeviceDir::new("dev");
//!     let mut sealer = Sealer::new(FileSecureElement::open(dir.se())?, dir.state())?;
//!     let mut queue = OfflineQueue::open(dir.queue(), QueueLimits::default())?;
//!     // One transport per process; clones share its connection pool.
//!     let uplink = HttpsTransport::new("https://127.0.0.1:8443", "cert.pem".as_ref(), HttpOptions::default())?;
//!     let config = AgentConfig { speed: Speed::RealTime(10.0), ..AgentConfig::default() };
//!     let report = agent::run(
//!         src, &mut sealer, &mut queue, &mut uplink.clone(), &config, stop,
//!         Some(&mut |event, report| eprintln!("{event:?} → {} acked", report.acked)),
//!     )?;
//!     println!("{} sealed, {} acked, {} left queued", report.frames_sealed, report.acked, report.queued_left);
//!     Ok(())
//! }
//! let stop = Arc::new(AtomicBool::new(false)); // raised by a signal handler
//! # let _ = (stream, stop);
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aorta_crypto::frame::ChannelCalibration;

use crate::DeviceError;
use crate::queue::{OfflineQueue, Outcome, Transport, apply_reply};
use crate::rotation::{SealedFrame, Sealer};
use crate::se::SecureElement;
use aorta_crypto::reneg::{Offer, RenegPolicy, Sealed};

/// One frame's worth of samples from a [`FrameSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFrame<'a> {
    /// Time of the first sample, microseconds since the Unix epoch.
    pub first_sample_us: i64,
    /// One slice per channel, all the same length.
    pub channels: Vec<&'a [i32]>,
}

impl SourceFrame<'_> {
    /// Samples per channel.
    pub fn samples(&self) -> usize {
        self.channels.first().map_or(0, |c| c.len())
    }
}

/// Where the samples come from.
pub trait FrameSource {
    /// Sampling rate in millihertz (constant for the source).
    fn sample_rate_mhz(&self) -> u32;
    /// Per-channel calibration (constant for the source).
    fn calibration(&self) -> &[ChannelCalibration];
    /// The next frame, or `None` at the end of the signal.
    fn next_frame(&mut self) -> Result<Option<SourceFrame<'_>>, DeviceError>;
    /// True for a source of RR intervals (chest strap, PPG wearable): each
    /// frame has one channel of RR intervals in µs, `first_sample_us` is the
    /// beat that starts the first interval, and frames are sealed as RR
    /// frames (codec 2, [`Sealer::seal_rr`]); [`FrameSource::sample_rate_mhz`]
    /// must then be [`aorta_crypto::frame::RR_SAMPLE_RATE_MHZ`] and the
    /// calibration one [`ChannelCalibration::rr`].
    fn is_rr(&self) -> bool {
        false
    }
}

/// Signal time a frame covers, µs: samples at `rate_mhz`, or for an RR
/// frame the sum of its intervals.
pub fn frame_span_us(frame: &SourceFrame<'_>, rate_mhz: u32, rr: bool) -> i64 {
    if rr {
        frame
            .channels
            .first()
            .map_or(0, |c| c.iter().map(|&v| i64::from(v.max(0))).sum())
    } else {
        span_us(frame.samples(), rate_mhz)
    }
}

/// How fast frames are produced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// Signal time × this factor (1.0 = real time, 10.0 = ten times faster).
    RealTime(f64),
    /// As fast as the machine goes.
    Max,
}

impl std::str::FromStr for Speed {
    type Err = DeviceError;
    /// `max`, or a positive factor such as `1`, `2.5`, `10`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        let bad = || DeviceError::Config(format!("speed {s:?}: expected `max` or a factor > 0"));
        let x: f64 = s.trim().parse().map_err(|_| bad())?;
        if x.is_finite() && x > 0.0 {
            Ok(Speed::RealTime(x))
        } else {
            Err(bad())
        }
    }
}

impl Speed {
    /// Wall time from the start of the run until signal time
    /// `signal_elapsed_us` (since the first frame's first sample) is due.
    pub fn due_after(self, signal_elapsed_us: i64) -> Duration {
        match self {
            Speed::Max => Duration::ZERO,
            Speed::RealTime(x) => {
                let s = signal_elapsed_us.max(0) as f64 / 1e6 / x;
                Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
            }
        }
    }
}

/// Exponential backoff with jitter, capped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// The cap.
    pub max: Duration,
    /// Fraction of the delay randomised away, in `[0, 1]`: the delay is
    /// uniform in `[base × (1 − jitter), base]`.
    pub jitter: f64,
}

impl Default for Backoff {
    /// 100 ms doubling to 10 s, jitter 0.5.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            jitter: 0.5,
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (1 = the first),
    /// given a uniform draw `u` in `[0, 1)`: `base = min(max, initial ×
    /// 2^(failures−1))`, delay `= base × (1 − jitter × u)`. Never above `max`.
    pub fn delay(&self, failures: u32, u: f64) -> Duration {
        let exp = failures.saturating_sub(1).min(1000) as i32;
        let base = (self.initial.as_secs_f64() * 2f64.powi(exp)).min(self.max.as_secs_f64());
        let jitter = if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        };
        let u = if u.is_nan() { 0.0 } else { u.clamp(0.0, 1.0) };
        Duration::try_from_secs_f64(base * (1.0 - jitter * u))
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The wait before the next attempt: the backoff delay, or the server's
    /// `Retry-After` hint when that is longer.
    pub fn next_wait(&self, failures: u32, u: f64, retry_after: Option<Duration>) -> Duration {
        let d = self.delay(failures, u);
        retry_after.map_or(d, |r| r.max(d))
    }
}

/// Agent settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgentConfig {
    /// Production pace.
    pub speed: Speed,
    /// Retry schedule.
    pub backoff: Backoff,
    /// After the source ends, how long to keep trying to empty the queue
    /// (`None`: until it is empty or `stop` is raised).
    pub drain_timeout: Option<Duration>,
    /// Longest sleep between looks at the `stop` flag.
    pub poll: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            speed: Speed::RealTime(1.0),
            backoff: Backoff::default(),
            drain_timeout: None,
            poll: Duration::from_millis(50),
        }
    }
}

/// Something that happened, passed to the progress callback.
#[derive(Debug)]
#[non_exhaustive]
pub enum AgentEvent<'a> {
    /// A frame was sealed and queued.
    Sealed {
        /// Its sequence.
        sequence: u64,
        /// Its first sample's time (µs since the Unix epoch).
        first_sample_us: i64,
        /// Samples per channel.
        samples: usize,
        /// Sealed size.
        bytes: usize,
    },
    /// The full-queue policy dropped this (oldest) frame.
    Dropped {
        /// Its sequence.
        sequence: u64,
    },
    /// The server acknowledged a frame.
    Acked {
        /// Its sequence.
        sequence: u64,
    },
    /// The server refused a frame for good.
    Refused {
        /// Its sequence.
        sequence: u64,
        /// The server's reason.
        reason: &'a str,
    },
    /// A `max_key_uses` renegotiation ended: the value applied, or `None`
    /// when the server only resolved the device's status.
    Renegotiated {
        /// The new `max_key_uses`, if it changed.
        max_key_uses: Option<u64>,
    },
    /// A renegotiation the server offered failed or was refused by the
    /// device; frames keep flowing under the current schedule.
    RenegFailed {
        /// Why.
        error: &'a DeviceError,
    },
    /// An upload failed; the next attempt waits `wait`.
    Retry {
        /// What failed.
        error: &'a DeviceError,
        /// Wait before the next attempt.
        wait: Duration,
    },
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentReport {
    /// Frames sealed and queued by this run.
    pub frames_sealed: u64,
    /// Samples per channel in them.
    pub samples_sealed: u64,
    /// Their sealed size.
    pub bytes_sealed: u64,
    /// Frames acknowledged (including frames left queued by an earlier run).
    pub acked: u64,
    /// Sealed bytes acknowledged.
    pub bytes_acked: u64,
    /// Frames refused for good, with the server's reason.
    pub refused: Vec<(u64, String)>,
    /// Failed upload attempts (each followed by a backoff).
    pub retries: u64,
    /// Frames dropped by the full-queue policy.
    pub dropped: u64,
    /// Frames still queued (kept on disk for the next run).
    pub queued_left: usize,
    /// Whether the run ended because `stop` was raised.
    pub stopped: bool,
    /// Whether the run ended because `drain_timeout` passed with frames queued.
    pub drain_timed_out: bool,
    /// The last upload error, if any.
    pub last_error: Option<String>,
    /// `max_key_uses` renegotiations completed (changes and resolutions).
    pub renegotiations: u64,
}

/// The summary of a device run as a tool reports it (`aorta device run
/// --json`): the [`AgentReport`] counts, plus the device and what an earlier
/// run had left queued. Fields are in alphabetical order, as printed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunSummary {
    /// Frames acknowledged.
    pub acked: u64,
    /// Sealed bytes of this run.
    pub bytes: u64,
    /// Frames dropped by the full-queue policy.
    pub dropped: u64,
    /// Frames sealed by this run.
    pub frames: u64,
    /// Frames still queued.
    pub queued_left: usize,
    /// Frames refused for good.
    pub refused: usize,
    /// Frames an earlier run had left queued.
    pub resumed: usize,
    /// Failed upload attempts.
    pub retries: u64,
    /// Samples per channel sealed by this run.
    pub samples: u64,
    /// The device serial.
    pub serial: String,
    /// Whether the run was stopped (SIGINT/SIGTERM).
    pub stopped: bool,
}

impl RunSummary {
    /// The summary of `report` for device `serial`, which resumed `resumed`
    /// queued frames.
    pub fn new(serial: &str, resumed: usize, report: &AgentReport) -> Self {
        RunSummary {
            acked: report.acked,
            bytes: report.bytes_sealed,
            dropped: report.dropped,
            frames: report.frames_sealed,
            queued_left: report.queued_left,
            refused: report.refused.len(),
            resumed,
            retries: report.retries,
            samples: report.samples_sealed,
            serial: serial.to_owned(),
            stopped: report.stopped,
        }
    }
}

/// Seals one source frame and pushes it to the queue (durably) — the step
/// shared by the live agent and `aorta device seal`. Returns the frame and
/// the sequences the full-queue policy dropped to make room.
pub fn seal_and_queue<S: SecureElement>(
    sealer: &mut Sealer<S>,
    queue: &mut OfflineQueue,
    sample_rate_mhz: u32,
    calibration: &[ChannelCalibration],
    frame: &SourceFrame<'_>,
) -> Result<(SealedFrame, Vec<u64>), DeviceError> {
    let f = sealer.seal(
        frame.first_sample_us,
        sample_rate_mhz,
        calibration,
        &frame.channels,
    )?;
    let dropped = queue.push(f.sequence, &f.bytes)?;
    Ok((f, dropped))
}

/// [`seal_and_queue`] for an RR source frame (one channel of RR intervals,
/// µs): sealed as an RR frame (codec 2) with `description` as the sensor.
pub fn seal_and_queue_rr<S: SecureElement>(
    sealer: &mut Sealer<S>,
    queue: &mut OfflineQueue,
    description: &str,
    frame: &SourceFrame<'_>,
) -> Result<(SealedFrame, Vec<u64>), DeviceError> {
    let [rr] = frame.channels.as_slice() else {
        return Err(DeviceError::Config(
            "an RR frame has exactly one channel".into(),
        ));
    };
    let f = sealer.seal_rr(frame.first_sample_us, description, rr)?;
    let dropped = queue.push(f.sequence, &f.bytes)?;
    Ok((f, dropped))
}

/// Duration of `n` samples at `rate_mhz`, in µs.
fn span_us(n: usize, rate_mhz: u32) -> i64 {
    let us = (n as u128 * 1_000_000_000) / u128::from(rate_mhz.max(1));
    i64::try_from(us).unwrap_or(i64::MAX)
}

/// The progress callback: called after every event with the report so far.
pub type OnEvent<'a> = dyn FnMut(&AgentEvent<'_>, &AgentReport) + 'a;

type Progress<'p> = &'p mut OnEvent<'p>;

/// The upload side: consecutive failures and when the next try may go.
struct Uplink {
    backoff: Backoff,
    failures: u32,
    retry_at: Option<Instant>,
}

impl Uplink {
    fn ready(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| now >= t)
    }

    fn uniform(&self) -> f64 {
        match aorta_base::random::array::<4>() {
            Ok(b) => f64::from(u32::from_be_bytes(b)) / 4_294_967_296.0,
            Err(_) => 0.0, // no jitter rather than no retry
        }
    }

    fn fail(&mut self, error: DeviceError, report: &mut AgentReport, progress: Progress<'_>) {
        self.failures = self.failures.saturating_add(1);
        let hint = match &error {
            DeviceError::ServerBusy { retry_after, .. } => *retry_after,
            _ => None,
        };
        let wait = self.backoff.next_wait(self.failures, self.uniform(), hint);
        self.retry_at = Some(later(Instant::now(), wait));
        report.retries += 1;
        report.last_error = Some(error.to_string());
        progress(
            &AgentEvent::Retry {
                error: &error,
                wait,
            },
            report,
        );
    }

    /// Uploads the oldest queued frame once. Transport errors are transient
    /// (backoff); queue (disk) errors are returned.
    fn step(
        &mut self,
        queue: &mut OfflineQueue,
        transport: &mut dyn Transport,
        se: &dyn SecureElement,
        report: &mut AgentReport,
        progress: Progress<'_>,
    ) -> Result<(), DeviceError> {
        let Some((seq, bytes)) = queue.oldest()? else {
            return Ok(());
        };
        let signature = crate::queue::sign_upload(se, &bytes)?;
        let outcome = match transport.upload(&bytes, &signature) {
            Err(e) => {
                self.fail(e, report, progress);
                return Ok(());
            }
            Ok(reply) => match apply_reply(queue, seq, reply) {
                Ok(o) => o,
                Err(e @ DeviceError::Protocol(_)) => {
                    self.fail(e, report, progress);
                    return Ok(());
                }
                Err(e) => return Err(e),
            },
        };
        self.failures = 0;
        self.retry_at = None;
        report.queued_left = queue.len();
        match outcome {
            Outcome::Acked { sequence } => {
                report.acked += 1;
                report.bytes_acked += bytes.len() as u64;
                progress(&AgentEvent::Acked { sequence }, report);
            }
            Outcome::Refused { sequence, reason } => {
                report.refused.push((sequence, reason.clone()));
                progress(
                    &AgentEvent::Refused {
                        sequence,
                        reason: &reason,
                    },
                    report,
                );
            }
        }
        Ok(())
    }
}

/// One upload step, then the renegotiation the server may have offered in
/// its acknowledgement (failures are reported, never fatal: the device
/// keeps its schedule).
fn upload_step<S: SecureElement>(
    up: &mut Uplink,
    queue: &mut OfflineQueue,
    transport: &mut dyn Transport,
    sealer: &mut Sealer<S>,
    report: &mut AgentReport,
    progress: Progress<'_>,
) -> Result<(), DeviceError> {
    up.step(queue, transport, sealer.secure_element(), report, progress)?;
    if let Some(offer) = transport.take_reneg_offer() {
        let now = aorta_base::time::now_us().max(0).unsigned_abs() / 1_000_000;
        match renegotiate(sealer, transport, &offer, now, RenegPolicy::default()) {
            Ok(v) => {
                report.renegotiations += 1;
                progress(&AgentEvent::Renegotiated { max_key_uses: v }, report);
            }
            Err(e) => progress(&AgentEvent::RenegFailed { error: &e }, report),
        }
    }
    Ok(())
}

/// The device's side of one `max_key_uses` renegotiation, from the Offer
/// the server attached to an acknowledgement: answers it (reporting the
/// schedule the device runs), and when the server sends a new value, checks
/// it against the device's own rules (only lower, at most
/// `policy.max_changes` per `policy.window_secs` by the device clock
/// `now_secs`), applies it durably and confirms it. Returns the new value,
/// or `None` when the server sent none.
pub fn renegotiate<S: SecureElement>(
    sealer: &mut Sealer<S>,
    transport: &mut dyn Transport,
    offer: &[u8],
    now_secs: u64,
    policy: RenegPolicy,
) -> Result<Option<u64>, DeviceError> {
    let offer = Offer::decode(offer)?;
    let (st, reply) = sealer.reneg_on_offer(&offer)?;
    let serial = sealer.secure_element().serial().to_owned();
    let Some(value) = transport.reneg(&serial, &reply.encode())? else {
        return Ok(None);
    };
    let value = Sealed::decode_value(&value)?;
    let confirm = sealer.reneg_on_value(st, &value, now_secs, policy)?;
    // The device runs the new value from here on. If the Confirm is lost,
    // the server keeps both schedules in its window and learns the value
    // from the status in the next Reply, so a failed send is not an error.
    let _ = transport.reneg(&serial, &confirm.encode());
    Ok(Some(sealer.state().max_key_uses))
}

/// `now + d`, or (for a duration beyond what the clock can represent, e.g.
/// a hostile `Retry-After` from a custom transport) a year from now.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

/// Sleeps until `until`, at most `poll`.
fn nap(until: Instant, poll: Duration) {
    let now = Instant::now();
    if until > now {
        std::thread::sleep((until - now).min(poll));
    }
}

/// Runs the agent until the source ends and the queue is empty (or
/// `drain_timeout` passes), or until `stop` is raised. See the module docs.
///
/// Errors are returned only for what retrying cannot fix: the source, the
/// sealer (secure element, state file) or the queue's disk failed, or the
/// configuration is invalid. Network and server trouble is retried.
pub fn run<S: SecureElement>(
    source: &mut dyn FrameSource,
    sealer: &mut Sealer<S>,
    queue: &mut OfflineQueue,
    transport: &mut dyn Transport,
    config: &AgentConfig,
    stop: &AtomicBool,
    progress: Option<&mut OnEvent<'_>>,
) -> Result<AgentReport, DeviceError> {
    let mut noop = |_: &AgentEvent<'_>, _: &AgentReport| {};
    let progress: Progress<'_> = match progress {
        Some(p) => p,
        None => &mut noop,
    };
    if let Speed::RealTime(x) = config.speed
        && !(x.is_finite() && x > 0.0)
    {
        return Err(DeviceError::Config(format!("speed {x} must be > 0")));
    }
    let b = config.backoff;
    if b.initial.is_zero() || b.max < b.initial {
        // A zero delay would hammer a failing server in a tight loop.
        return Err(DeviceError::Config(format!(
            "backoff must have 0 < initial ≤ max (got {:?}, {:?})",
            b.initial, b.max
        )));
    }
    let rate = source.sample_rate_mhz();
    if rate == 0 {
        return Err(DeviceError::Config("sample rate must be positive".into()));
    }
    let cal = source.calibration().to_vec();
    let rr = source.is_rr();
    let rr_description = cal
        .first()
        .map_or_else(String::new, |c| c.description.clone());
    let poll = config.poll.max(Duration::from_millis(1));
    let mut up = Uplink {
        backoff: config.backoff,
        failures: 0,
        retry_at: None,
    };
    let mut report = AgentReport {
        queued_left: queue.len(),
        ..AgentReport::default()
    };
    let t0 = Instant::now();
    let mut signal_start: Option<i64> = None;

    'produce: loop {
        if stop.load(Ordering::SeqCst) {
            report.stopped = true;
            break;
        }
        let Some(frame) = source.next_frame()? else {
            break;
        };
        let start = *signal_start.get_or_insert(frame.first_sample_us);
        let end = frame
            .first_sample_us
            .saturating_add(frame_span_us(&frame, rate, rr));
        let due = later(t0, config.speed.due_after(end.saturating_sub(start)));
        // Serve the uplink until the frame is due.
        loop {
            if stop.load(Ordering::SeqCst) {
                report.stopped = true;
                break 'produce;
            }
            let now = Instant::now();
            if now >= due {
                break;
            }
            if !queue.is_empty() && up.ready(now) {
                upload_step(&mut up, queue, transport, sealer, &mut report, progress)?;
                continue;
            }
            let wake = match up.retry_at {
                Some(t) if !queue.is_empty() => t.min(due),
                _ => due,
            };
            nap(wake, poll);
        }
        let (f, dropped) = if rr {
            seal_and_queue_rr(sealer, queue, &rr_description, &frame)?
        } else {
            seal_and_queue(sealer, queue, rate, &cal, &frame)?
        };
        report.frames_sealed += 1;
        report.samples_sealed += frame.samples() as u64;
        report.bytes_sealed += f.bytes.len() as u64;
        report.dropped += dropped.len() as u64;
        report.queued_left = queue.len();
        for sequence in dropped {
            progress(&AgentEvent::Dropped { sequence }, &report);
        }
        progress(
            &AgentEvent::Sealed {
                sequence: f.sequence,
                first_sample_us: frame.first_sample_us,
                samples: frame.samples(),
                bytes: f.bytes.len(),
            },
            &report,
        );
        if !queue.is_empty() && up.ready(Instant::now()) {
            upload_step(&mut up, queue, transport, sealer, &mut report, progress)?;
        }
    }

    // The source has ended (or stop was raised): drain the queue.
    let deadline = config.drain_timeout.map(|d| later(Instant::now(), d));
    while !report.stopped && !queue.is_empty() {
        if stop.load(Ordering::SeqCst) {
            report.stopped = true;
            break;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            report.drain_timed_out = true;
            break;
        }
        if up.ready(now) {
            upload_step(&mut up, queue, transport, sealer, &mut report, progress)?;
        } else {
            let wake = match (up.retry_at, deadline) {
                (Some(r), Some(d)) => r.min(d),
                (Some(r), None) => r,
                (None, Some(d)) => d,
                (None, None) => now,
            };
            nap(wake, poll);
        }
    }
    report.queued_left = queue.len();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use aorta_crypto::frame::{self, TransportKey};
    use aorta_crypto::keys::KeySlice;

    use super::*;
    use crate::queue::{QueueLimits, UploadReply};
    use crate::se::FileSecureElement;

    const L: usize = 36;
    /// 1 kHz: one sample per millisecond, so timestamps are easy to check
    /// (µs = 1000 × sample index).
    const RATE_MHZ: u32 = 1_000_000;

    fn material() -> Vec<u8> {
        (0..120 * 32).map(|i| (i * 13 + 5) as u8).collect()
    }

    /// `frames` frames of L samples, one channel; sample t = f(t).
    struct Synth {
        cal: Vec<ChannelCalibration>,
        buf: Vec<i32>,
        next: usize,
        frames: usize,
        origin: usize,
        /// Raise this flag when asked for frame number `stop_at.1`.
        stop_at: Option<(Arc<AtomicBool>, usize)>,
    }

    fn sample(t: usize) -> i32 {
        ((t * 7919) % 2003) as i32 - 1000
    }

    impl Synth {
        fn new(origin: usize, frames: usize) -> Self {
            Synth {
                cal: vec![ChannelCalibration::new(200.0, 0, 0, 11, "mV", "MLII")],
                buf: Vec::new(),
                next: 0,
                frames,
                origin,
                stop_at: None,
            }
        }
    }

    impl FrameSource for Synth {
        fn sample_rate_mhz(&self) -> u32 {
            RATE_MHZ
        }
        fn calibration(&self) -> &[ChannelCalibration] {
            &self.cal
        }
        fn next_frame(&mut self) -> Result<Option<SourceFrame<'_>>, DeviceError> {
            if let Some((flag, at)) = &self.stop_at
                && self.next == *at
            {
                flag.store(true, Ordering::SeqCst);
            }
            if self.next == self.frames {
                return Ok(None);
            }
            let t0 = self.origin + self.next * L;
            self.buf = (t0..t0 + L).map(sample).collect();
            self.next += 1;
            Ok(Some(SourceFrame {
                first_sample_us: t0 as i64 * 1000,
                channels: vec![&self.buf],
            }))
        }
    }

    /// A server that opens every frame (so content is checked) and stores
    /// (sequence, first sample index, samples); down for its first `down`
    /// upload attempts; refuses the sequences in `refuse`.
    struct FakeServer {
        slice: KeySlice,
        stored: Vec<(u64, usize, Vec<i32>)>,
        attempts: usize,
        down: usize,
        refuse: HashSet<u64>,
        busy_hint: Option<Duration>,
        /// Raise this flag during upload attempt number `.1` (0-based), then ack it.
        stop_during: Option<(Arc<AtomicBool>, usize)>,
    }

    impl FakeServer {
        fn new(down: usize) -> Self {
            FakeServer {
                slice: KeySlice::new("SN-AGENT", material()).unwrap(),
                stored: Vec::new(),
                attempts: 0,
                down,
                refuse: HashSet::new(),
                busy_hint: None,
                stop_during: None,
            }
        }
        fn sequences(&self) -> Vec<u64> {
            self.stored.iter().map(|s| s.0).collect()
        }
    }

    impl Transport for FakeServer {
        fn upload(
            &mut self,
            bytes: &[u8],
            _signature: &[u8; 64],
        ) -> Result<UploadReply, DeviceError> {
            let attempt = self.attempts;
            self.attempts += 1;
            if attempt < self.down {
                return Err(match self.busy_hint {
                    Some(h) => DeviceError::ServerBusy {
                        status: 503,
                        detail: "overloaded".into(),
                        retry_after: Some(h),
                    },
                    None => DeviceError::Network("down".into()),
                });
            }
            if let Some((flag, at)) = &self.stop_during
                && attempt == *at
            {
                flag.store(true, Ordering::SeqCst);
            }
            let p = frame::parse(bytes).unwrap();
            let h = p.header.clone();
            if self.refuse.contains(&h.sequence) {
                return Ok(UploadReply::Refused {
                    sequence: h.sequence,
                    reason: format!("sequence {} is not welcome", h.sequence),
                });
            }
            let key = TransportKey::derive(&self.slice, h.key_index, &h.epoch).unwrap();
            let f = p.open(&key).unwrap();
            assert!(
                !self.stored.iter().any(|s| s.0 == h.sequence),
                "sequence {} stored twice",
                h.sequence
            );
            self.stored.push((
                h.sequence,
                (h.first_sample_us / 1000) as usize,
                f.samples[0].clone(),
            ));
            Ok(UploadReply::Ack {
                sequence: h.sequence,
            })
        }
    }

    struct Device {
        _dir: tempfile::TempDir,
        se: std::path::PathBuf,
        state: std::path::PathBuf,
        queue: std::path::PathBuf,
    }

    fn device() -> Device {
        let dir = tempfile::tempdir().unwrap();
        let d = crate::DeviceDir::new(dir.path());
        let se = d.se();
        FileSecureElement::create(&se, KeySlice::new("SN-AGENT", material()).unwrap()).unwrap();
        Device {
            se,
            state: d.state(),
            queue: d.queue(),
            _dir: dir,
        }
    }

    fn fast() -> AgentConfig {
        AgentConfig {
            speed: Speed::Max,
            backoff: Backoff {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(4),
                jitter: 0.5,
            },
            drain_timeout: Some(Duration::from_secs(20)),
            poll: Duration::from_millis(5),
        }
    }

    fn go(
        d: &Device,
        src: &mut Synth,
        server: &mut FakeServer,
        cfg: &AgentConfig,
        stop: &AtomicBool,
        limits: QueueLimits,
    ) -> AgentReport {
        let mut sealer = Sealer::new(FileSecureElement::open(&d.se).unwrap(), &d.state).unwrap();
        let mut queue = OfflineQueue::open(&d.queue, limits).unwrap();
        let mut events = Vec::new();
        let mut cb = |e: &AgentEvent<'_>, r: &AgentReport| {
            events.push(format!("{e:?}"));
            assert!(r.acked <= r.frames_sealed + 100);
        };
        let r = run(
            src,
            &mut sealer,
            &mut queue,
            server,
            cfg,
            stop,
            Some(&mut cb),
        )
        .unwrap();
        assert_eq!(r.queued_left, queue.len());
        assert_eq!(
            events.iter().filter(|e| e.starts_with("Sealed")).count() as u64,
            r.frames_sealed
        );
        r
    }

    /// RR intervals, `per` per frame, frames contiguous (each starts at the
    /// previous frame's last beat).
    struct RrSynth {
        cal: Vec<ChannelCalibration>,
        rr: Vec<i32>,
        per: usize,
        next: usize,
        t: i64,
    }

    impl FrameSource for RrSynth {
        fn sample_rate_mhz(&self) -> u32 {
            frame::RR_SAMPLE_RATE_MHZ
        }
        fn calibration(&self) -> &[ChannelCalibration] {
            &self.cal
        }
        fn is_rr(&self) -> bool {
            true
        }
        fn next_frame(&mut self) -> Result<Option<SourceFrame<'_>>, DeviceError> {
            let Some(chunk) = self
                .rr
                .get(self.next..(self.next + self.per).min(self.rr.len()))
            else {
                return Ok(None);
            };
            if chunk.is_empty() {
                return Ok(None);
            }
            let t = self.t;
            self.t += chunk.iter().map(|&v| i64::from(v)).sum::<i64>();
            self.next += chunk.len();
            Ok(Some(SourceFrame {
                first_sample_us: t,
                channels: vec![chunk],
            }))
        }
    }

    #[test]
    fn an_rr_source_is_sealed_as_rr_frames_through_the_same_queue() {
        let d = device();
        let rr: Vec<i32> = (0..50).map(|i| 700_000 + (i * 37_000) % 300_000).collect();
        let mut src = RrSynth {
            cal: vec![ChannelCalibration::rr("strap")],
            rr: rr.clone(),
            per: 8,
            next: 0,
            t: 1_000_000,
        };
        let mut server = FakeServer::new(2);
        let mut sealer = Sealer::new(FileSecureElement::open(&d.se).unwrap(), &d.state).unwrap();
        let mut queue = OfflineQueue::open(&d.queue, QueueLimits::default()).unwrap();
        let stop = AtomicBool::new(false);
        let r = run(
            &mut src,
            &mut sealer,
            &mut queue,
            &mut server,
            &fast(),
            &stop,
            None,
        )
        .unwrap();
        assert_eq!(r.frames_sealed, 7);
        assert_eq!(r.acked, 7);
        assert_eq!(server.sequences(), (0..7).collect::<Vec<u64>>());
        let got: Vec<i32> = server.stored.iter().flat_map(|s| s.2.clone()).collect();
        assert_eq!(got, rr);
        // Frame k starts at the beat ending frame k - 1.
        let mut t = 1_000_000i64;
        for (k, s) in server.stored.iter().enumerate() {
            assert_eq!(s.1 as i64, t / 1000, "frame {k}");
            t += s.2.iter().map(|&v| i64::from(v)).sum::<i64>();
        }
        // Out-of-range intervals are refused without using a sequence number.
        let before = sealer.next_sequence();
        assert!(sealer.seal_rr(0, "x", &[800_000, 100]).is_err());
        assert!(sealer.seal_rr(0, "x", &[]).is_err());
        assert_eq!(sealer.next_sequence(), before);
        let f = sealer.seal_rr(0, "x", &[800_000]).unwrap();
        assert_eq!(f.sequence, before);
        assert!(frame::parse(&f.bytes).unwrap().header.is_rr());
    }

    /// Every frame the source produced is stored exactly once, in sequence
    /// order, with its own samples at its own time.
    fn assert_complete(server: &FakeServer, origin: usize, frames: usize) {
        let seqs = server.sequences();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "out of order: {seqs:?}"
        );
        let mut by_start: Vec<_> = server.stored.iter().map(|s| (s.1, &s.2)).collect();
        by_start.sort();
        assert_eq!(by_start.len(), frames);
        for (i, (start, samples)) in by_start.into_iter().enumerate() {
            assert_eq!(start, origin + i * L);
            let want: Vec<i32> = (start..start + L).map(sample).collect();
            assert_eq!(samples, &want);
        }
    }

    #[test]
    fn network_down_then_up_acks_every_frame_once_in_order() {
        let d = device();
        let mut src = Synth::new(0, 20);
        let mut server = FakeServer::new(7);
        let stop = AtomicBool::new(false);
        let r = go(
            &d,
            &mut src,
            &mut server,
            &fast(),
            &stop,
            QueueLimits::default(),
        );
        assert_eq!(r.frames_sealed, 20);
        assert_eq!(r.samples_sealed, 20 * L as u64);
        assert_eq!(r.acked, 20);
        assert_eq!(r.bytes_acked, r.bytes_sealed);
        assert_eq!(r.retries, 7);
        assert_eq!(r.queued_left, 0);
        assert!(r.refused.is_empty() && !r.stopped && !r.drain_timed_out);
        assert_eq!(r.last_error.as_deref(), Some("network unavailable: down"));
        assert_complete(&server, 0, 20);
    }

    #[test]
    fn production_goes_on_while_the_uplink_backs_off() {
        // The server is down for 3 attempts and says "retry after 300 ms"
        // each time: production must not wait for it. (Checked on the order
        // of events, not on wall time: frames are sealed between a failure
        // and the next successful upload.)
        let d = device();
        let mut src = Synth::new(0, 30);
        let mut server = FakeServer::new(3);
        server.busy_hint = Some(Duration::from_millis(300));
        let stop = AtomicBool::new(false);
        let mut sealer = Sealer::new(FileSecureElement::open(&d.se).unwrap(), &d.state).unwrap();
        let mut queue = OfflineQueue::open(&d.queue, QueueLimits::default()).unwrap();
        let mut events = Vec::new();
        let mut waits = Vec::new();
        let mut cb = |e: &AgentEvent<'_>, _: &AgentReport| {
            if let AgentEvent::Retry { wait, .. } = e {
                waits.push(*wait);
            }
            events.push(match e {
                AgentEvent::Sealed { .. } => 'S',
                AgentEvent::Retry { .. } => 'R',
                AgentEvent::Acked { .. } => 'A',
                _ => '?',
            });
        };
        let r = run(
            &mut src,
            &mut sealer,
            &mut queue,
            &mut server,
            &fast(),
            &stop,
            Some(&mut cb),
        )
        .unwrap();
        let events: String = events.into_iter().collect();
        // Frame 0 is sealed, its upload fails; frame 1 is sealed at once,
        // without waiting out the 300 ms.
        assert!(events.starts_with("SRS"), "{events}");
        let first_ack = events.find('A').unwrap();
        assert!(events[..first_ack].matches('S').count() >= 2, "{events}");
        // The server's hint (300 ms) outranks the 1-4 ms backoff.
        assert_eq!(waits, vec![Duration::from_millis(300); 3]);
        assert_eq!((r.acked, r.retries, r.queued_left), (30, 3, 0));
        assert_complete(&server, 0, 30);
    }

    #[test]
    fn an_absurd_retry_after_neither_panics_nor_blocks_production() {
        let d = device();
        let stop = Arc::new(AtomicBool::new(false));
        let mut src = Synth::new(0, 100);
        src.stop_at = Some((stop.clone(), 5));
        let mut server = FakeServer::new(usize::MAX);
        server.busy_hint = Some(Duration::MAX);
        let r = go(
            &d,
            &mut src,
            &mut server,
            &fast(),
            &stop,
            QueueLimits::default(),
        );
        assert!(r.stopped);
        assert_eq!((r.frames_sealed, r.retries, r.queued_left), (5, 1, 5));
    }

    #[test]
    fn permanent_refusals_are_removed_and_reported() {
        let d = device();
        let mut src = Synth::new(0, 10);
        let mut server = FakeServer::new(2);
        // The sealer starts at sequence 0 on a fresh device.
        server.refuse = [3u64, 7].into_iter().collect();
        let stop = AtomicBool::new(false);
        let r = go(
            &d,
            &mut src,
            &mut server,
            &fast(),
            &stop,
            QueueLimits::default(),
        );
        assert_eq!(r.acked, 8);
        assert_eq!(
            r.refused,
            vec![
                (3, "sequence 3 is not welcome".to_owned()),
                (7, "sequence 7 is not welcome".to_owned())
            ]
        );
        assert_eq!(r.queued_left, 0);
        assert_eq!(server.sequences(), vec![0, 1, 2, 4, 5, 6, 8, 9]);
    }

    #[test]
    fn stop_keeps_unsent_frames_and_the_next_run_sends_them_first() {
        let d = device();
        let stop = Arc::new(AtomicBool::new(false));
        // Run 1: network down throughout; stop is raised when the source is
        // asked for its 7th frame, which is therefore never sealed.
        let mut src = Synth::new(0, 100);
        src.stop_at = Some((stop.clone(), 6));
        let mut server = FakeServer::new(usize::MAX);
        let r1 = go(
            &d,
            &mut src,
            &mut server,
            &fast(),
            &stop,
            QueueLimits::default(),
        );
        assert!(r1.stopped);
        assert_eq!((r1.frames_sealed, r1.acked, r1.queued_left), (6, 0, 6));
        assert!(server.stored.is_empty());
        let left = OfflineQueue::open(&d.queue, QueueLimits::default())
            .unwrap()
            .sequences();
        assert_eq!(left.len(), 6);

        // Run 2 (a restart): new sealer, network up, a new source.
        stop.store(false, Ordering::SeqCst);
        let mut src2 = Synth::new(6 * L, 4);
        let mut server2 = FakeServer::new(0);
        let r2 = go(
            &d,
            &mut src2,
            &mut server2,
            &fast(),
            &stop,
            QueueLimits::default(),
        );
        assert_eq!((r2.frames_sealed, r2.acked, r2.queued_left), (4, 10, 0));
        let seqs = server2.sequences();
        assert_eq!(&seqs[..6], &left[..], "queued frames go first");
        assert_complete(&server2, 0, 10);
    }

    #[test]
    fn stop_during_an_upload_finishes_that_upload_then_exits() {
        let d = device();
        let stop = Arc::new(AtomicBool::new(false));
        let mut src = Synth::new(0, 50);
        let mut server = FakeServer::new(0);
        // Attempt index 2 is the third frame's upload: it is acked, then the
        // agent must stop without sealing or sending anything else.
        server.stop_during = Some((stop.clone(), 2));
        let r = go(
            &d,
            &mut src,
            &mut server,
            &fast(),
            &stop,
            QueueLimits::default(),
        );
        assert!(r.stopped);
        assert_eq!((r.frames_sealed, r.acked, r.queued_left), (3, 3, 0));
        assert_eq!(server.attempts, 3);
    }

    #[test]
    fn full_queue_policy_drops_oldest_and_counts_them() {
        let d = device();
        let mut src = Synth::new(0, 10);
        let mut server = FakeServer::new(usize::MAX);
        let stop = AtomicBool::new(false);
        let mut cfg = fast();
        cfg.drain_timeout = Some(Duration::from_millis(30));
        let lim = QueueLimits {
            max_bytes: 1 << 20,
            max_frames: 3,
        };
        let r = go(&d, &mut src, &mut server, &cfg, &stop, lim);
        assert!(r.drain_timed_out && !r.stopped);
        assert_eq!((r.frames_sealed, r.dropped, r.queued_left), (10, 7, 3));
        assert_eq!(
            OfflineQueue::open(&d.queue, lim).unwrap().sequences(),
            vec![7, 8, 9]
        );
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter_and_is_capped() {
        let b = Backoff::default();
        let ms = |d: Duration| d.as_millis();
        // No jitter draw (u = 0): 100, 200, 400, ... capped at 10 s.
        let plain: Vec<u128> = (1..=10).map(|n| ms(b.delay(n, 0.0))).collect();
        assert_eq!(
            plain,
            vec![100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]
        );
        // Jitter keeps each delay within [base/2, base].
        for n in 1..=12 {
            let hi = b.delay(n, 0.0);
            for u in [0.1, 0.5, 0.999] {
                let d = b.delay(n, u);
                assert!(d <= hi && d >= hi / 2, "n={n} u={u}: {d:?} vs {hi:?}");
            }
        }
        assert_eq!(ms(b.delay(1, 0.999_999)), 50);
        // Never above the cap, whatever the count or a hostile draw.
        for n in [0, 1, 30, 64, 1000, u32::MAX] {
            for u in [f64::NAN, -1.0, 0.0, 2.0, f64::INFINITY] {
                assert!(b.delay(n, u) <= b.max);
            }
        }
        // A longer Retry-After wins; a shorter one does not shorten the backoff.
        assert_eq!(
            b.next_wait(1, 0.0, Some(Duration::from_secs(30))),
            Duration::from_secs(30)
        );
        assert_eq!(
            b.next_wait(3, 0.0, Some(Duration::from_millis(1))),
            Duration::from_millis(400)
        );
    }

    #[test]
    fn pacing_schedule_and_speed_parsing() {
        assert_eq!(Speed::Max.due_after(3_600_000_000), Duration::ZERO);
        assert_eq!(
            Speed::RealTime(1.0).due_after(2_500_000),
            Duration::from_millis(2500)
        );
        assert_eq!(
            Speed::RealTime(10.0).due_after(2_500_000),
            Duration::from_millis(250)
        );
        assert_eq!(Speed::RealTime(1.0).due_after(-5), Duration::ZERO);
        assert_eq!(span_us(360, 360_000), 1_000_000);
        assert_eq!(span_us(36, RATE_MHZ), 36_000);
        let now = Instant::now();
        assert_eq!(
            later(now, Duration::from_secs(2)),
            now + Duration::from_secs(2)
        );
        assert!(later(now, Duration::MAX) > now);
        assert_eq!("max".parse::<Speed>().unwrap(), Speed::Max);
        assert_eq!("2.5".parse::<Speed>().unwrap(), Speed::RealTime(2.5));
        for bad in ["0", "-1", "nan", "inf", "fast", ""] {
            assert!(bad.parse::<Speed>().is_err(), "{bad}");
        }
    }

    #[test]
    fn real_time_pacing_waits_for_signal_time() {
        // 5 frames of 36 ms of signal at ×2: the last frame is due 90 ms
        // after the start (a lower bound, which a slow machine cannot break).
        let d = device();
        let mut src = Synth::new(0, 5);
        let mut server = FakeServer::new(0);
        let stop = AtomicBool::new(false);
        let mut cfg = fast();
        cfg.speed = Speed::RealTime(2.0);
        let t = Instant::now();
        let r = go(
            &d,
            &mut src,
            &mut server,
            &cfg,
            &stop,
            QueueLimits::default(),
        );
        assert!(t.elapsed() >= Duration::from_millis(90));
        assert_eq!(r.acked, 5);
    }

    /// Fails on its third frame.
    struct Broken(Synth);
    impl FrameSource for Broken {
        fn sample_rate_mhz(&self) -> u32 {
            self.0.sample_rate_mhz()
        }
        fn calibration(&self) -> &[ChannelCalibration] {
            self.0.calibration()
        }
        fn next_frame(&mut self) -> Result<Option<SourceFrame<'_>>, DeviceError> {
            if self.0.next == 2 {
                return Err(DeviceError::Source("sensor unplugged".into()));
            }
            self.0.next_frame()
        }
    }

    #[test]
    fn a_failing_source_stops_the_run_and_keeps_what_was_sealed() {
        let d = device();
        let stop = AtomicBool::new(false);
        let mut sealer = Sealer::new(FileSecureElement::open(&d.se).unwrap(), &d.state).unwrap();
        let mut queue = OfflineQueue::open(&d.queue, QueueLimits::default()).unwrap();
        let e = run(
            &mut Broken(Synth::new(0, 10)),
            &mut sealer,
            &mut queue,
            &mut FakeServer::new(usize::MAX),
            &fast(),
            &stop,
            None,
        );
        assert!(matches!(e, Err(DeviceError::Source(_))));
        assert_eq!(queue.sequences(), vec![0, 1]);
    }

    #[test]
    fn bad_configuration_is_refused() {
        let d = device();
        let stop = AtomicBool::new(false);
        let mut sealer = Sealer::new(FileSecureElement::open(&d.se).unwrap(), &d.state).unwrap();
        let mut queue = OfflineQueue::open(&d.queue, QueueLimits::default()).unwrap();
        let mut cfg = fast();
        cfg.speed = Speed::RealTime(0.0);
        let e = run(
            &mut Synth::new(0, 1),
            &mut sealer,
            &mut queue,
            &mut FakeServer::new(0),
            &cfg,
            &stop,
            None,
        );
        assert!(matches!(e, Err(DeviceError::Config(_))));
        for (initial, max) in [(0, 10), (20, 10)] {
            let mut cfg = fast();
            cfg.backoff.initial = Duration::from_millis(initial);
            cfg.backoff.max = Duration::from_millis(max);
            let e = run(
                &mut Synth::new(0, 1),
                &mut sealer,
                &mut queue,
                &mut FakeServer::new(0),
                &cfg,
                &stop,
                None,
            );
            assert!(matches!(e, Err(DeviceError::Config(_))), "{initial} {max}");
        }
        assert!(
            queue.is_empty(),
            "nothing sealed under a refused configuration"
        );
    }
}
