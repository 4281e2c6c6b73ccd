//! The ECG job a worker runs: log records of sealed device frames in,
//! protected results and checkpoints out.
//!
//! ```text
//!  log record ──► JobDecoder ──► Engine<EcgOperator> ──► ProtectedSink ──► ResultSink
//!  (arrival ‖ frame)  │ FrameOpen                         │ ResultSealer      (untrusted store)
//!                     └ refusals by code                  └ ids stay clear, payloads sealed
//!                               checkpoints ──► ProtectedCheckpoints ──► CheckpointStore
//!                                               │ StateSealer
//! ```
//!
//! Everything that decides *how* bytes are protected sits behind three small
//! traits, so the same engine and operators run in two configurations:
//!
//! - **secure** — frames are opened inside the attested worker with the keys
//!   the broker released, results are sealed to each subscriber and
//!   checkpoints under the state key (the `aorta-worker` crate implements
//!   these traits with `aorta_enclave` and `aorta_crypto::results`);
//! - **plain** — the same workload without encryption or boundary
//!   ([`PlainFrames`], [`PlainResults`], [`PlainState`]), the baseline of
//!   `aorta bench pipeline`.
//!
//! Log records are written by ingest as `arrival_us (i64 LE) ‖ frame` (see
//! [`encode_record`]); the arrival time gives the frame-to-result latency.

use std::collections::BTreeMap;

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
use aorta_crypto::refusal;

use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::ecg::{EcgChunk, EcgConfig, EcgEvent, EcgOperator, Gap, RrBeats};
use crate::log::FrameLog;
use crate::pipeline::{Decoder, Pipeline, PipelineStats};
use crate::results::ResultSink;
use crate::{EngineConfig, Micros, StreamError};
use serde::{Deserialize, Serialize};

/// Bytes of the arrival-time prefix of a log record.
pub const RECORD_PREFIX: usize = 8;

/// A log record: the ingest arrival time (µs since the Unix epoch, i64
/// little-endian) and the frame bytes (the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogRecord<'a> {
    /// When ingest accepted the frame.
    pub arrival_us: i64,
    /// The frame as the device sent it.
    pub frame: &'a [u8],
}

impl Encode for LogRecord<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(RECORD_PREFIX + self.frame.len());
        out.extend_from_slice(&self.arrival_us.to_le_bytes());
        out.extend_from_slice(self.frame);
    }
}

impl<'a> Decode<'a> for LogRecord<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(LogRecord {
            arrival_us: r.i64_le("arrival time")?,
            frame: r.rest(),
        })
    }
}

/// The bytes of a log record.
pub fn encode_record(arrival_us: i64, frame: &[u8]) -> Vec<u8> {
    LogRecord { arrival_us, frame }.to_bytes()
}

/// Splits a log record into arrival time and frame.
pub fn decode_record(record: &[u8]) -> Result<(i64, &[u8]), StreamError> {
    let r = LogRecord::from_bytes(record)
        .map_err(|e| StreamError::Malformed(format!("log record: {e}")))?;
    Ok((r.arrival_us, r.frame))
}

/// Erases every frame of device `serial` from the frame log at `log`, in
/// every segment, in place ([`crate::log::erase`]: fillers, zeros, fsync;
/// offline). The serial is the frame's cleartext header field, so the host
/// needs no key.
pub fn erase_device_frames(
    log: &std::path::Path,
    serial: &str,
) -> Result<crate::log::Erased, StreamError> {
    crate::log::erase_segments(log, |record| {
        decode_record(record)
            .ok()
            .and_then(|(_, f)| aorta_crypto::frame::parse(f).ok())
            .is_some_and(|p| p.header.serial == serial)
    })
}

/// A frame that could not be opened: a stable code and fixed text (never
/// plaintext or key bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Stable code: a `FRAME_*` constant of `aorta_crypto::refusal`.
    pub code: u16,
    /// Fixed description.
    pub reason: String,
}

/// Where a frame sits in its device's stream, from its authenticated
/// header: the worker analyses each device's frames once and in sequence
/// order (see [`JobDecoder`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The frame's sequence number.
    pub sequence: u64,
    /// Its key index.
    pub key_index: u16,
    /// The device's key-slice length (`N`).
    pub slice_len: u16,
}

/// An opened frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    /// The device serial.
    pub serial: String,
    /// Time of its first sample (or first beat), µs.
    pub t: Micros,
    /// Its event: the channels of an ECG frame, or the intervals of an RR
    /// frame.
    pub event: EcgEvent,
    /// Its position (sealed frames); `None` for formats without one (the
    /// plain baseline), which are analysed in log order.
    pub position: Option<Position>,
}

/// Turns frame bytes into a device's operator event.
pub trait FrameOpen {
    /// Opens one frame.
    fn open(&mut self, frame: &[u8]) -> Result<Opened, Refused>;
    /// Sees a batch's frames before any is opened (e.g. to fetch the keys
    /// they need in one go). An error fails the batch before anything
    /// moved, and the worker retries it ([`crate::pipeline::Decoder::prepare`]).
    /// Default: nothing.
    fn prepare(&mut self, frames: &[&[u8]]) -> Result<(), StreamError> {
        let _ = frames;
        Ok(())
    }
}

/// The event of an RR frame's samples (codec 2: one channel of intervals,
/// µs); refused ([`refusal::FRAME_UNUSABLE`]) with more than one channel.
pub fn rr_event(channels: u16, samples: &[i32]) -> Result<EcgEvent, Refused> {
    if channels != 1 {
        return Err(Refused {
            code: refusal::FRAME_UNUSABLE,
            reason: "RR frame must have one channel".into(),
        });
    }
    Ok(EcgEvent::Rr(RrBeats {
        rr_us: samples.to_vec(),
    }))
}

/// The ECG chunk of a frame's interleaved samples: the analysed lead
/// (channel 0) in mV and every channel, channel 0 included, in µV
/// ([`crate::ecg::micro_volts`], for event strips), each with its own
/// calibration `(gain, baseline)` (a missing or unusable gain is replaced by
/// the one rule, `aorta_crypto::frame::usable_gain`); refused
/// ([`refusal::FRAME_UNUSABLE`]) without a sampling rate.
pub fn ecg_chunk(
    sample_rate_hz: f64,
    channels: u16,
    calibration: &[(f64, i32)],
    samples: &[i32],
) -> Result<EcgChunk, Refused> {
    let ch = usize::from(channels.max(1));
    if !(sample_rate_hz.is_finite() && sample_rate_hz > 0.0) {
        return Err(Refused {
            code: refusal::FRAME_UNUSABLE,
            reason: "frame has no sampling rate".into(),
        });
    }
    let cal = |c: usize| {
        let (gain, base) = calibration
            .get(c)
            .copied()
            .unwrap_or((aorta_crypto::frame::DEFAULT_GAIN, 0));
        (aorta_crypto::frame::usable_gain(gain), base)
    };
    let (gain, base) = cal(0);
    let n = samples.len() / ch;
    let mut lead0 = Vec::with_capacity(n);
    let mut leads: Vec<(Uv, Vec<i32>)> = (0..ch)
        .map(|c| {
            let (g, b) = cal(c);
            (Uv::new(g, b), Vec::with_capacity(n))
        })
        .collect();
    for frame in samples.chunks_exact(ch) {
        if let Some(&v) = frame.first() {
            lead0.push((f64::from(v) - f64::from(base)) / gain);
        }
        for ((uv, out), &v) in leads.iter_mut().zip(frame) {
            out.push(uv.of(v));
        }
    }
    Ok(EcgChunk {
        fs: sample_rate_hz,
        samples: lead0,
        leads_uv: leads.into_iter().map(|(_, v)| v).collect(),
    })
}

/// [`crate::ecg::micro_volts`] for one channel, without floating point
/// when `1000 / gain` is a whole number (200 units/mV: 5 µV per unit),
/// which gives the same values.
#[derive(Debug, Clone, Copy)]
struct Uv {
    gain: f64,
    base: i32,
    step: Option<i64>,
}

impl Uv {
    fn new(gain: f64, base: i32) -> Uv {
        let k = 1000.0 / gain;
        let step = (k.fract() == 0.0 && k.abs() <= 1e6).then_some(k as i64);
        Uv { gain, base, step }
    }
    fn of(&self, v: i32) -> i32 {
        match self.step {
            Some(k) => ((i64::from(v) - i64::from(self.base)) * k)
                .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            None => crate::ecg::micro_volts(v, self.base, self.gain),
        }
    }
}

/// The plain baseline's frame: the same compressed samples with no
/// encryption. `serial_len u8 ‖ serial ‖ first_sample_us i64 ‖ rate_mhz u32 ‖
/// channels u16 ‖ samples_per_channel u32 ‖ channels × (gain f64, baseline
/// i32) ‖ codec payload` (little-endian). Used by the benchmark's plain
/// pipeline and by tests.
pub fn encode_plain_frame(
    serial: &str,
    first_sample_us: i64,
    rate_mhz: u32,
    calibration: &[(f64, i32)],
    samples: &[&[i32]],
) -> Result<Vec<u8>, StreamError> {
    let n = samples.first().map_or(0, |s| s.len());
    let payload = aorta_crypto::codec::encode(samples)
        .map_err(|e| StreamError::Malformed(format!("codec: {e}")))?;
    let serial_len = u8::try_from(serial.len())
        .map_err(|_| StreamError::Malformed("serial longer than 255 bytes".into()))?;
    let mut b = Vec::with_capacity(64 + payload.len());
    b.push(serial_len);
    b.extend_from_slice(serial.as_bytes());
    b.extend_from_slice(&first_sample_us.to_le_bytes());
    b.extend_from_slice(&rate_mhz.to_le_bytes());
    let ch = u16::try_from(samples.len())
        .map_err(|_| StreamError::Malformed("too many channels".into()))?;
    b.extend_from_slice(&ch.to_le_bytes());
    b.extend_from_slice(
        &u32::try_from(n)
            .map_err(|_| StreamError::Malformed("frame too long".into()))?
            .to_le_bytes(),
    );
    for i in 0..samples.len() {
        let (g, base) = calibration
            .get(i)
            .copied()
            .unwrap_or((aorta_crypto::frame::DEFAULT_GAIN, 0));
        b.extend_from_slice(&g.to_le_bytes());
        b.extend_from_slice(&base.to_le_bytes());
    }
    b.extend_from_slice(&payload);
    Ok(b)
}

/// The plain baseline's RR frame: [`encode_plain_frame`] with one channel,
/// rate [`aorta_crypto::frame::RR_SAMPLE_RATE_MHZ`] and calibration `(1, 0)`
/// — the same conventions as an RR upload frame (codec 2). Values are checked
/// against the RR range. Used by benchmarks and tests.
pub fn encode_plain_rr_frame(
    serial: &str,
    first_beat_us: i64,
    rr_us: &[i32],
) -> Result<Vec<u8>, StreamError> {
    aorta_crypto::frame::check_rr(rr_us).map_err(|e| StreamError::Malformed(e.to_string()))?;
    encode_plain_frame(
        serial,
        first_beat_us,
        aorta_crypto::frame::RR_SAMPLE_RATE_MHZ,
        &[(1.0, 0)],
        &[rr_us],
    )
}

/// Opens [`encode_plain_frame`] frames (no keys, no boundary); a frame with
/// one channel at [`aorta_crypto::frame::RR_SAMPLE_RATE_MHZ`] is an RR frame
/// ([`encode_plain_rr_frame`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainFrames;

impl FrameOpen for PlainFrames {
    fn open(&mut self, frame: &[u8]) -> Result<Opened, Refused> {
        let bad = |reason: &str| Refused {
            code: refusal::FRAME_PLAIN_MALFORMED,
            reason: reason.into(),
        };
        let truncated = |_| bad("truncated");
        let mut c = aorta_base::codec::Reader::new(frame);
        let sl = c.u8("serial length").map_err(truncated)?;
        let serial = c
            .take(usize::from(sl), "serial")
            .ok()
            .and_then(|s| std::str::from_utf8(s).ok())
            .ok_or_else(|| bad("bad serial"))?
            .to_owned();
        let t = c.i64_le("first sample").map_err(truncated)?;
        let rate = c.u32_le("rate").map_err(truncated)?;
        let ch = c.u16_le("channels").map_err(truncated)?;
        let n = c.u32_le("samples per channel").map_err(truncated)?;
        let mut calibration = Vec::with_capacity(usize::from(ch));
        for _ in 0..ch {
            let g = f64::from_le_bytes(c.array("gain").map_err(truncated)?);
            let b = i32::from_le_bytes(c.array("baseline").map_err(truncated)?);
            calibration.push((g, b));
        }
        let chans = aorta_crypto::codec::decode(c.rest(), usize::from(ch), n as usize)
            .map_err(|_| bad("payload does not decode"))?;
        let n = n as usize;
        let mut samples = Vec::with_capacity(n * chans.len());
        for i in 0..n {
            for c in &chans {
                samples.push(c.get(i).copied().unwrap_or_default());
            }
        }
        if rate == aorta_crypto::frame::RR_SAMPLE_RATE_MHZ && ch == 1 {
            aorta_crypto::frame::check_rr(&samples).map_err(|_| bad("RR interval out of range"))?;
            return Ok(Opened {
                serial,
                t,
                event: rr_event(ch, &samples)?,
                position: None,
            });
        }
        let chunk = ecg_chunk(f64::from(rate) / 1000.0, ch, &calibration, &samples)?;
        Ok(Opened {
            serial,
            t,
            event: EcgEvent::Samples(chunk),
            position: None,
        })
    }
}

/// Where the worker is in one device's stream: the next sequence number it
/// expects and the key index of the last frame it analysed. Part of the
/// sealed checkpoint state, so the host cannot rewind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct DeviceOrder {
    next: u64,
    key_index: u16,
}

/// Log records → events, with per-batch arrival times and refusal counts.
///
/// The log is the host's: it may hold a frame twice, drop one, reorder
/// them or be rolled back. The decoder analyses each device's frames once
/// and in sequence order: a frame whose sequence is below the next one
/// expected (a duplicate, a replay, a late reordered frame) is refused
/// ([`refusal::FRAME_SEQUENCE_PASSED`]), as is a key index outside the
/// device's key-index window ([`refusal::FRAME_KEY_INDEX_WINDOW`], from the
/// last frame analysed, counting one rotation per frame at most since the
/// worker does not know the device's `max_key_uses`); a frame after a gap
/// carries the gap ([`EcgEvent::AfterGap`]), which the operator reports to
/// the clinician as a `gap` result. This order state is checkpointed with
/// the engine ([`Decoder::snapshot`]), inside the sealed state.
pub struct JobDecoder<F> {
    frames: F,
    arrivals: Vec<i64>,
    refused: BTreeMap<u16, u64>,
    opened: u64,
    order: BTreeMap<String, DeviceOrder>,
    gaps: u64,
}

impl<F: FrameOpen> JobDecoder<F> {
    /// A decoder over `frames`.
    pub fn new(frames: F) -> Self {
        JobDecoder {
            frames,
            arrivals: Vec::new(),
            refused: BTreeMap::new(),
            opened: 0,
            order: BTreeMap::new(),
            gaps: 0,
        }
    }
    /// Refusals so far, by code.
    pub fn refused(&self) -> &BTreeMap<u16, u64> {
        &self.refused
    }
    /// Frames opened (and analysed) so far.
    pub fn opened(&self) -> u64 {
        self.opened
    }
    /// Gaps in devices' sequences reported so far.
    pub fn gaps(&self) -> u64 {
        self.gaps
    }
    /// True if the decoder has seen device `serial`. All it keeps of a
    /// device is its position (next sequence number, key index), which an
    /// erasure keeps on purpose: it is no patient data, and it stops a host
    /// from replaying the device's old frames afterwards.
    pub fn knows(&self, serial: &str) -> bool {
        self.order.contains_key(serial)
    }

    /// The frame opener.
    pub fn frames(&self) -> &F {
        &self.frames
    }

    /// The event to analyse for `o`, or why it is refused; updates the
    /// device's order only for a frame it accepts.
    fn in_order(&mut self, o: Opened) -> Result<(String, Micros, EcgEvent), Refused> {
        let Some(p) = o.position else {
            return Ok((o.serial, o.t, o.event));
        };
        // A device's stream starts at sequence 0: a first frame at k > 0
        // reports the gap [0, k) too (a host cannot hide a device's first
        // frames by starting the log later).
        let prev = Some(self.order.get(&o.serial).copied().unwrap_or(DeviceOrder {
            next: 0,
            key_index: 0,
        }));
        if p.sequence == u64::MAX {
            return Err(Refused {
                code: refusal::FRAME_SEQUENCE_PASSED,
                reason: format!(
                    "device {}: sequence {} is the last possible",
                    o.serial,
                    u64::MAX
                ),
            });
        }
        if let Some(d) = prev {
            if p.sequence < d.next {
                return Err(Refused {
                    code: refusal::FRAME_SEQUENCE_PASSED,
                    reason: format!(
                        "device {}: sequence {} already passed (next expected {})",
                        o.serial, p.sequence, d.next
                    ),
                });
            }
            let from = (d.next.saturating_sub(1), d.key_index);
            if !aorta_crypto::keys::index_window_ok(p.slice_len, 1, from, (p.sequence, p.key_index))
            {
                return Err(Refused {
                    code: refusal::FRAME_KEY_INDEX_WINDOW,
                    reason: format!(
                        "device {}: key index {} at sequence {} outside the window from index {} at {}",
                        o.serial, p.key_index, p.sequence, d.key_index, from.0
                    ),
                });
            }
        }
        self.order.insert(
            o.serial.clone(),
            DeviceOrder {
                next: p.sequence.saturating_add(1),
                key_index: p.key_index,
            },
        );
        let event = match prev {
            Some(d) if p.sequence > d.next => {
                self.gaps += 1;
                EcgEvent::AfterGap(
                    Gap {
                        first_missing: d.next,
                        missing: p.sequence - d.next,
                    },
                    Box::new(o.event),
                )
            }
            _ => o.event,
        };
        Ok((o.serial, o.t, event))
    }
}

impl<F: FrameOpen> Decoder<String, EcgEvent> for JobDecoder<F> {
    fn decode(&mut self, record: &[u8]) -> Result<(String, Micros, EcgEvent), StreamError> {
        let (arrival, frame) = decode_record(record)?;
        self.arrivals.push(arrival);
        match self.frames.open(frame).and_then(|o| self.in_order(o)) {
            Ok(v) => {
                self.opened += 1;
                Ok(v)
            }
            Err(r) => {
                *self.refused.entry(r.code).or_default() += 1;
                Err(StreamError::Refused {
                    code: r.code,
                    reason: r.reason,
                })
            }
        }
    }

    fn prepare(&mut self, records: &[Vec<u8>]) -> Result<(), StreamError> {
        // Records that do not decode are refused later, one by one.
        let frames: Vec<&[u8]> = records
            .iter()
            .filter_map(|r| decode_record(r).ok().map(|(_, f)| f))
            .collect();
        self.frames.prepare(&frames)
    }

    fn snapshot(&self) -> Result<String, StreamError> {
        serde_json::to_string(&self.order).map_err(|e| StreamError::Internal(e.to_string()))
    }

    fn restore(&mut self, state: &str) -> Result<(), StreamError> {
        self.order = if state.is_empty() {
            BTreeMap::new()
        } else {
            serde_json::from_str(state).map_err(|e| StreamError::Corrupt {
                path: "<checkpoint: decoder>".into(),
                offset: e.column() as u64,
                what: e.to_string(),
            })?
        };
        Ok(())
    }
}

/// Records to store: `(id, payload)` pairs.
pub type Records = Vec<(String, Vec<u8>)>;

/// How results leave the worker.
pub trait ResultSealer {
    /// Turns one result (`id`, JSON) into the records to store: `(id,
    /// payload)` pairs whose ids are deterministic (so replays deduplicate).
    fn seal(&mut self, id: &str, json: &[u8], out: &mut Records) -> Result<(), StreamError>;
}

/// How checkpoint state leaves the worker.
pub trait StateSealer {
    /// Protects engine state.
    fn seal(&self, state: &[u8]) -> Result<Vec<u8>, StreamError>;
    /// Recovers engine state.
    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, StreamError>;
}

/// Results stored as they are (the plain baseline).
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainResults;

impl ResultSealer for PlainResults {
    fn seal(&mut self, id: &str, json: &[u8], out: &mut Records) -> Result<(), StreamError> {
        out.push((id.to_owned(), json.to_vec()));
        Ok(())
    }
}

/// State stored as it is (the plain baseline).
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainState;

impl StateSealer for PlainState {
    fn seal(&self, state: &[u8]) -> Result<Vec<u8>, StreamError> {
        Ok(state.to_vec())
    }
    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, StreamError> {
        Ok(sealed.to_vec())
    }
}

/// A [`ResultSink`] that seals each result before the inner sink stores it.
pub struct ProtectedSink<R, S> {
    inner: R,
    sealer: S,
    buf: Records,
}

impl<R: ResultSink, S: ResultSealer> ProtectedSink<R, S> {
    /// Wraps `inner`.
    pub fn new(inner: R, sealer: S) -> Self {
        ProtectedSink {
            inner,
            sealer,
            buf: Vec::new(),
        }
    }
    /// The inner sink.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// The sealer.
    pub fn sealer(&self) -> &S {
        &self.sealer
    }
}

impl<R: ResultSink, S: ResultSealer> ResultSink for ProtectedSink<R, S> {
    fn put(&mut self, id: &str, payload: &[u8]) -> Result<bool, StreamError> {
        self.buf.clear();
        self.sealer.seal(id, payload, &mut self.buf)?;
        let mut new = false;
        for (i, p) in self.buf.drain(..) {
            new |= self.inner.put(&i, &p)?;
        }
        Ok(new)
    }
    fn sync(&mut self) -> Result<(), StreamError> {
        self.inner.sync()
    }
}

/// A [`CheckpointStore`] that seals engine state before the inner store
/// keeps it (the sealed bytes travel base64-encoded in the state field).
pub struct ProtectedCheckpoints<C, S> {
    inner: C,
    sealer: S,
}

impl<C, S> ProtectedCheckpoints<C, S> {
    /// Wraps `inner`.
    pub fn new(inner: C, sealer: S) -> Self {
        ProtectedCheckpoints { inner, sealer }
    }
}

impl<C: CheckpointStore, S: StateSealer> CheckpointStore for ProtectedCheckpoints<C, S> {
    /// Seals `log_offset (u64 BE) ‖ state`: the position in the log is
    /// inside the sealed, authenticated state, so whoever stores the
    /// checkpoint cannot move it (the clear `log_offset` of the stored
    /// document is only a copy for the host's lag metric).
    fn save(&mut self, cp: &Checkpoint) -> Result<(), StreamError> {
        use base64::Engine as _;
        let mut plain = Vec::with_capacity(8 + cp.state.len());
        plain.extend_from_slice(&cp.log_offset.to_be_bytes());
        plain.extend_from_slice(cp.state.as_bytes());
        let sealed = self.sealer.seal(&plain)?;
        let text = base64::engine::general_purpose::STANDARD.encode(sealed);
        self.inner
            .save(&Checkpoint::new(cp.log_offset, text.into_bytes())?)
    }
    /// Opens the sealed state; the log offset is the sealed one. A stored
    /// document whose clear offset differs was altered: refused.
    fn load(&self) -> Result<Option<Checkpoint>, StreamError> {
        use base64::Engine as _;
        let Some(cp) = self.inner.load()? else {
            return Ok(None);
        };
        let corrupt = |what: String| StreamError::Corrupt {
            path: "checkpoint".into(),
            offset: 0,
            what,
        };
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(cp.state.as_bytes())
            .map_err(|e| corrupt(format!("state is not base64: {e}")))?;
        let plain = self.sealer.open(&sealed)?;
        let (off, state) = plain
            .split_first_chunk::<8>()
            .ok_or_else(|| corrupt("sealed state without its log offset".into()))?;
        let log_offset = u64::from_be_bytes(*off);
        if log_offset != cp.log_offset {
            return Err(corrupt(format!(
                "the stored log offset {} is not the sealed one {log_offset} (altered by the store)",
                cp.log_offset
            )));
        }
        Ok(Some(Checkpoint::new(log_offset, state.to_vec())?))
    }
}

/// What one [`EcgJob::run_batch`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchReport {
    /// Log records processed.
    pub records: usize,
    /// Per record: microseconds from its arrival at ingest to its results
    /// being durable.
    pub latencies_us: Vec<i64>,
}

/// The ECG job: the checkpointed pipeline with protected results and state.
pub type EcgPipeline<F, C, R, RS, SS> =
    Pipeline<String, EcgOperator, ProtectedCheckpoints<C, SS>, ProtectedSink<R, RS>, JobDecoder<F>>;

/// A worker's ECG job over one log.
pub struct EcgJob<F: FrameOpen, C, R, RS, SS> {
    pipe: EcgPipeline<F, C, R, RS, SS>,
}

impl<F, C, R, RS, SS> EcgJob<F, C, R, RS, SS>
where
    F: FrameOpen,
    C: CheckpointStore,
    R: ResultSink,
    RS: ResultSealer,
    SS: StateSealer,
{
    /// Opens the job, restoring the last checkpoint if there is one.
    #[allow(
        clippy::too_many_arguments,
        reason = "each argument is an independent setting of the run; a struct would only rename them"
    )]
    pub fn open(
        cfg: EcgConfig,
        engine: EngineConfig,
        frames: F,
        checkpoints: C,
        state: SS,
        results: R,
        sealer: RS,
        checkpoint_every: u64,
    ) -> Result<Self, StreamError> {
        cfg.check()?;
        Ok(EcgJob {
            pipe: Pipeline::open(
                EcgOperator::new(cfg),
                engine,
                JobDecoder::new(frames),
                ProtectedCheckpoints::new(checkpoints, state),
                ProtectedSink::new(results, sealer),
                checkpoint_every,
            )?,
        })
    }

    /// Processes up to `max` records and makes their results durable;
    /// returns the latency of each record.
    pub fn run_batch(
        &mut self,
        log: &impl FrameLog,
        max: usize,
    ) -> Result<BatchReport, StreamError> {
        let records = self.pipe.step(log, max)?;
        self.pipe.sync_results()?;
        let now = aorta_base::time::now_us();
        let latencies_us = self
            .pipe
            .decoder_mut()
            .arrivals
            .drain(..)
            .map(|a| now.saturating_sub(a))
            .collect();
        Ok(BatchReport {
            records,
            latencies_us,
        })
    }

    /// Takes a checkpoint now.
    pub fn checkpoint(&mut self) -> Result<(), StreamError> {
        self.pipe.checkpoint()
    }

    /// Erases device `serial` from the job's state: its operator state
    /// (windows, samples, rhythm state) is dropped; the decoder keeps only
    /// the device's position ([`JobDecoder::knows`]). Results already
    /// computed stay in the sink until the next sync; take a checkpoint
    /// after this so that no stored state holds the device any more.
    /// True if the job held state of the device.
    pub fn erase_device(&mut self, serial: &str) -> bool {
        let dropped = self.pipe.engine_mut().forget(&serial.to_owned());
        dropped || self.pipe.decoder().knows(serial)
    }

    /// Log offset processed so far.
    pub fn offset(&self) -> u64 {
        self.pipe.offset()
    }

    /// Pipeline counters.
    pub fn stats(&self) -> PipelineStats {
        self.pipe.stats()
    }

    /// The decoder: frames opened and refusals by code.
    pub fn decoder(&self) -> &JobDecoder<F> {
        self.pipe.decoder()
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &EcgPipeline<F, C, R, RS, SS> {
        &self.pipe
    }

    /// The pipeline, mutably.
    pub fn pipeline_mut(&mut self) -> &mut EcgPipeline<F, C, R, RS, SS> {
        &mut self.pipe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The integer path gives exactly the floating-point values.
    #[test]
    fn micro_volts_fast_path_is_exact() {
        for gain in [200.0, 100.0, 1000.0, 1.0, 0.5, 400.0, 204.8, 3.0] {
            for base in [0, 1024, -7, i32::MAX, i32::MIN] {
                let uv = Uv::new(gain, base);
                for v in
                    (-70_000..70_000)
                        .step_by(7)
                        .chain([i32::MIN, i32::MAX, i32::MIN + 1, 0, 1, -1])
                {
                    assert_eq!(
                        uv.of(v),
                        crate::ecg::micro_volts(v, base, gain),
                        "{v} at gain {gain} baseline {base}"
                    );
                }
            }
        }
    }

    #[test]
    fn lead0_applies_the_one_gain_rule() {
        let mv = |cal: &[(f64, i32)]| match ecg_chunk(360.0, 1, cal, &[400, 0]) {
            Ok(c) => c.samples,
            Err(e) => panic!("{}", e.reason),
        };
        assert_eq!(mv(&[(100.0, 0)]), vec![4.0, 0.0]);
        // A negative, zero or missing gain is the default 200, never an
        // inverted or infinite signal.
        for cal in [&[(-100.0, 0)][..], &[(0.0, 0)], &[]] {
            assert_eq!(mv(cal), vec![2.0, 0.0]);
        }
    }
}
