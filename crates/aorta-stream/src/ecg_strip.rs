//! Event strips of the ECG operator: a bounded ring of the last seconds of
//! every channel of a device, and the strips still waiting for the 5 s that
//! follow their event (`docs/results-format.md`, "Event strips").
//!
//! Sample indices count from the detector's sample 0 (the start of the
//! current *run*: the samples since the detector last (re)started), so a
//! strip's times are the beat times' (`origin + round(k · 10⁶ / fs)`).
//!
//! Everything here is part of the checkpointed [`crate::ecg::EcgState`]. A
//! pending strip holds only its event: its samples are cut from the ring
//! when it completes, so the state grows by the ring alone. The ring is
//! serialised compactly (the frames' lossless codec, base64).
//!
//! Chunk invariance: after each chunk the ring keeps [`RING_HISTORY_US`]
//! back from the chunk's end. An event found while the next chunk is read
//! is dated at most the detector's latency (250 ms), the beat classifier's
//! (a beat is classified at most 2.25 s after its R peak, once the next beat
//! is in; rhythms from beat classes wait for it) plus its own lag (for AF
//! the 16 beats of evidence, for a pause its length) before that chunk's
//! start, so while that lag stays under `RING_HISTORY_US − 7.5 s` (25.5 s)
//! the strip never depends on how the samples were cut into frames. A
//! strip is complete when the ring reaches 5 s past its event, whatever the
//! chunk; at the end of a run (a gap, a restart, the end of input) every
//! pending strip is completed with what the run holds.

use std::collections::VecDeque;

use aorta_signal::rhythm::RhythmEvent;
use serde::{Deserialize, Serialize};

use crate::Micros;
use crate::ecg::{EcgResult, EcgStrip, StripLead};

/// Time shown before and after the event, µs.
pub const STRIP_HALF_US: Micros = 5_000_000;
/// How far back from the newest sample the ring reaches, µs.
pub const RING_HISTORY_US: Micros = 33_000_000;
/// Most samples the ring holds over all channels (the history is shortened
/// for a device whose `fs · channels · 33 s` exceeds it: 12 leads at 500 Hz
/// keep their 33 s, 32 channels at 10 kHz 0.8 s). A strip is cut from the
/// ring (2¹⁸ samples plus at most an eighth in its newest block), so its JSON
/// stays under 3.6 MB (12 bytes per sample at most), whose
/// sealed, base64 record fits one request to the server (8 MiB).
pub const MAX_RING_SAMPLES: usize = 1 << 18;
/// Most channels kept (the frame format's own limit).
pub const MAX_STRIP_CHANNELS: usize = 32;
/// Most strips granted to events dated within one strip span (10 s) of each
/// other; a further event in that span gets its rhythm result but no strip.
pub const MAX_STRIPS_PER_SPAN: usize = 4;
/// Most granted event times remembered.
const GRANTED_CAP: usize = 64;

/// One stretch of the ring: `chans[c][j]` is run sample `first + j` of
/// channel `c`, µV. Its checkpoint form (the frames' lossless codec,
/// base64) is computed once and kept until the block changes, so a
/// checkpoint does not re-encode the whole history every time.
#[derive(Debug, Clone, Default)]
struct Block {
    first: u64,
    chans: Vec<Vec<i32>>,
    encoded: std::sync::OnceLock<String>,
}

impl PartialEq for Block {
    fn eq(&self, o: &Block) -> bool {
        self.first == o.first && self.chans == o.chans
    }
}

impl Block {
    fn len(&self) -> u64 {
        self.chans.first().map_or(0, |c| c.len() as u64)
    }
    fn encode(&self) -> Result<&str, String> {
        use base64::Engine as _;
        if let Some(e) = self.encoded.get() {
            return Ok(e);
        }
        let refs: Vec<&[i32]> = self.chans.iter().map(Vec::as_slice).collect();
        let bytes = aorta_crypto::codec::encode(&refs).map_err(|e| e.to_string())?;
        Ok(self
            .encoded
            .get_or_init(|| base64::engine::general_purpose::STANDARD.encode(bytes)))
    }
}

/// The last seconds of every channel, µV, as consecutive blocks.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Ring {
    /// Channels (each block has this many).
    ch: usize,
    /// Run sample index just after the newest sample (of the first sample
    /// to come when `blocks` is empty).
    end: u64,
    blocks: VecDeque<Block>,
}

impl Ring {
    fn new(first: u64, ch: usize) -> Ring {
        Ring {
            ch,
            end: first,
            blocks: VecDeque::new(),
        }
    }
    fn first(&self) -> u64 {
        self.blocks.front().map_or(self.end, |b| b.first)
    }
    fn len(&self) -> u64 {
        self.end - self.first()
    }
    fn end(&self) -> u64 {
        self.end
    }
    /// Appends `n` samples of each channel of `leads` (each channel as long
    /// as the analysed lead: cut, or padded with 0), in blocks of at most
    /// `block` samples per channel.
    fn push(&mut self, n: usize, block: usize, leads: &[Vec<i32>]) {
        let block = block.max(1);
        let mut j = 0;
        while j < n {
            let open = self
                .blocks
                .back()
                .is_some_and(|b| (b.len() as usize) < block);
            if !open {
                self.blocks.push_back(Block {
                    first: self.end,
                    chans: vec![Vec::new(); self.ch],
                    encoded: std::sync::OnceLock::new(),
                });
            }
            let Some(b) = self.blocks.back_mut() else {
                return;
            };
            let take = (block - b.len() as usize).min(n - j);
            for (c, v) in b.chans.iter_mut().enumerate() {
                let src = leads.get(c).map_or(&[][..], Vec::as_slice);
                let part = src.get(j..(j + take).min(src.len())).unwrap_or_default();
                v.extend_from_slice(part);
                v.resize(v.len() + take - part.len(), 0);
            }
            b.encoded = std::sync::OnceLock::new();
            j += take;
            self.end += take as u64;
        }
    }
    /// Drops whole blocks while at least `keep` samples remain.
    fn trim(&mut self, keep: u64) {
        while let Some(b) = self.blocks.front() {
            if self.len() - b.len() < keep {
                break;
            }
            self.blocks.pop_front();
        }
    }
    /// Channel `c`'s samples `[lo, hi)` (within the ring).
    fn range(&self, c: usize, lo: u64, hi: u64) -> Vec<i32> {
        let mut out = Vec::with_capacity(hi.saturating_sub(lo) as usize);
        for b in &self.blocks {
            let (s, e) = (b.first.max(lo), (b.first + b.len()).min(hi));
            if s < e
                && let Some(v) = b.chans.get(c)
            {
                let (a, z) = ((s - b.first) as usize, (e - b.first) as usize);
                out.extend_from_slice(v.get(a..z).unwrap_or_default());
            }
        }
        out
    }
}

/// How a ring is checkpointed: its channel count, its end, and its blocks
/// (`len` samples per channel from `first` on, each a block of
/// `aorta_crypto::codec`, lossless, base64).
#[derive(Serialize, Deserialize)]
struct RingWire {
    channels: u16,
    end: u64,
    blocks: Vec<BlockWire>,
}

#[derive(Serialize, Deserialize)]
struct BlockWire {
    first: u64,
    len: u32,
    codec: String,
}

impl Serialize for Ring {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            blocks.push(BlockWire {
                first: b.first,
                len: u32::try_from(b.len()).map_err(S::Error::custom)?,
                codec: b.encode().map_err(S::Error::custom)?.to_owned(),
            });
        }
        RingWire {
            channels: u16::try_from(self.ch).map_err(S::Error::custom)?,
            end: self.end,
            blocks,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Ring {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        use serde::de::Error;
        let w = RingWire::deserialize(d)?;
        let ch = usize::from(w.channels);
        let total: u64 = w.blocks.iter().map(|b| u64::from(b.len)).sum();
        if ch == 0 || ch > MAX_STRIP_CHANNELS || total > 2 * (MAX_RING_SAMPLES / ch) as u64 {
            return Err(D::Error::custom(format!(
                "strip ring of {ch} channels × {total} samples is outside the limits"
            )));
        }
        let mut ring = Ring::new(w.end, ch);
        let mut at = None;
        for b in w.blocks {
            if b.len == 0 || at.is_some_and(|a| a != b.first) {
                return Err(D::Error::custom("strip ring blocks are not consecutive"));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b.codec.as_bytes())
                .map_err(D::Error::custom)?;
            let chans = aorta_crypto::codec::decode(&bytes, ch, b.len as usize)
                .map_err(D::Error::custom)?;
            at = Some(b.first.saturating_add(u64::from(b.len)));
            ring.blocks.push_back(Block {
                first: b.first,
                chans,
                encoded: std::sync::OnceLock::from(b.codec),
            });
        }
        if at.is_some_and(|a| a != w.end) {
            return Err(D::Error::custom("strip ring blocks do not end at its end"));
        }
        Ok(ring)
    }
}

/// A strip granted to an event, waiting for the samples after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PendingStrip {
    /// The event time, µs.
    t: Micros,
    /// The event's kind code (as in its result id).
    code: Micros,
    event: RhythmEvent,
    /// The earliest time the strip shows, µs (absent: 5 s before the
    /// event). Set for events found late (from classified beats), so that
    /// what the strip holds never depends on how far the ring reached when
    /// the event was found, i.e. on how the samples were cut into frames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<Micros>,
}

/// The strip state of one device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct StripBook {
    /// The current run's recent samples (`None` without a sample run: before
    /// any sample, for RR input, after the end of a run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ring: Option<Ring>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pending: Vec<PendingStrip>,
    /// Times of the latest events granted a strip.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    granted: VecDeque<Micros>,
}

/// Samples per channel the ring keeps back from its newest one: 33 s, or
/// fewer so that all channels hold at most `MAX_RING_SAMPLES`.
fn history(fs: f64, ch: usize) -> u64 {
    ((RING_HISTORY_US as f64 * fs / 1e6).ceil() as u64).min((MAX_RING_SAMPLES / ch.max(1)) as u64)
}

/// The run sample index nearest to time `t` (sample `k` is at
/// `origin + round(k · 10⁶ / fs)`, as beats are).
fn index_at(origin: Micros, fs: f64, t: Micros) -> i64 {
    (t.saturating_sub(origin) as f64 * fs / 1e6).round() as i64
}

/// The result window of the strip of an event at `t` with kind code `code`:
/// `[t − 5 s, t + 5 s + 1 + code)`, never the window of another result.
pub(crate) fn strip_window(t: Micros, code: Micros) -> (Micros, Micros) {
    (
        t.saturating_sub(STRIP_HALF_US),
        t.saturating_add(STRIP_HALF_US + 1 + code),
    )
}

impl StripBook {
    /// Appends a chunk that starts at run sample `start`: every channel in
    /// µV (`leads_uv`), or when there is none the analysed lead from its mV.
    /// A chunk that does not continue the ring (another channel count) ends
    /// the run first.
    pub(crate) fn append(
        &mut self,
        start: u64,
        lead0_mv: &[f64],
        leads_uv: &[Vec<i32>],
        origin: Micros,
        fs: f64,
        out: &mut Vec<(Micros, Micros, EcgResult)>,
    ) {
        let ch = leads_uv.len().clamp(1, MAX_STRIP_CHANNELS);
        if self
            .ring
            .as_ref()
            .is_some_and(|r| r.ch != ch || r.end() != start)
        {
            self.close(origin, fs, out);
        }
        let ring = self.ring.get_or_insert_with(|| Ring::new(start, ch));
        // Blocks of about a second (fewer samples where the history is short).
        let block = (fs.ceil() as usize).min(history(fs, ch) as usize / 8);
        let derived;
        let leads = if leads_uv.is_empty() {
            derived = [lead0_mv.iter().map(|&v| crate::ecg::mv_to_uv(v)).collect()];
            &derived[..]
        } else {
            leads_uv
        };
        ring.push(lead0_mv.len(), block, leads);
    }

    /// An event was found: grants it a strip unless the device has no
    /// samples or [`MAX_STRIPS_PER_SPAN`] strips were granted within 10 s
    /// of it. The strip starts no earlier than `from` (when given: a time
    /// the ring is known to hold, whatever the chunking).
    pub(crate) fn on_event(
        &mut self,
        t: Micros,
        code: Micros,
        event: RhythmEvent,
        from: Option<Micros>,
    ) {
        if self.ring.is_none() {
            return;
        }
        let span = (2 * STRIP_HALF_US).unsigned_abs();
        let near = self.granted.iter().filter(|g| g.abs_diff(t) < span).count();
        if near >= MAX_STRIPS_PER_SPAN {
            return;
        }
        self.granted.push_back(t);
        let newest = self.granted.iter().copied().max().unwrap_or(t);
        let horizon = newest.saturating_sub(RING_HISTORY_US + 2 * STRIP_HALF_US);
        self.granted.retain(|&g| g >= horizon);
        while self.granted.len() > GRANTED_CAP {
            self.granted.pop_front();
        }
        self.pending.push(PendingStrip {
            t,
            code,
            event,
            from,
        });
    }

    /// Completes the pending strips whose 5 s after the event are in the
    /// ring, into `out`; then drops what the ring no longer needs.
    pub(crate) fn complete(
        &mut self,
        origin: Micros,
        fs: f64,
        out: &mut Vec<(Micros, Micros, EcgResult)>,
    ) {
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        let end = ring.end();
        let ready = |p: &PendingStrip| {
            let k1 = index_at(origin, fs, p.t.saturating_add(STRIP_HALF_US));
            u64::try_from(k1).is_ok_and(|k1| k1 <= end) || k1 < 0
        };
        if self.pending.iter().any(ready) {
            let (done, keep): (Vec<_>, Vec<_>) = self.pending.drain(..).partition(ready);
            self.pending = keep;
            for p in done {
                cut(ring, origin, fs, &p, out);
            }
        }
        // Keep RING_HISTORY_US back from the newest sample (fewer samples
        // for a device with very many channels or a very high rate).
        ring.trim(history(fs, ring.ch));
    }

    /// The run ends (a gap, a restart, a switch to RR input, the end of
    /// input): every pending strip is completed with what the ring holds,
    /// and the ring is dropped.
    pub(crate) fn close(
        &mut self,
        origin: Micros,
        fs: f64,
        out: &mut Vec<(Micros, Micros, EcgResult)>,
    ) {
        if let Some(ring) = self.ring.take() {
            for p in self.pending.drain(..) {
                cut(&ring, origin, fs, &p, out);
            }
        }
        self.pending.clear();
    }
}

/// The strip of `p` from what `ring` holds (nothing when it holds none of
/// the strip's samples).
fn cut(
    ring: &Ring,
    origin: Micros,
    fs: f64,
    p: &PendingStrip,
    out: &mut Vec<(Micros, Micros, EcgResult)>,
) {
    let start =
        p.t.saturating_sub(STRIP_HALF_US)
            .max(p.from.unwrap_or(Micros::MIN));
    let k0 = index_at(origin, fs, start).max(0) as u64;
    let k1 = index_at(origin, fs, p.t.saturating_add(STRIP_HALF_US)).max(0) as u64;
    let lo = k0.max(ring.first());
    let hi = k1.min(ring.end());
    if hi <= lo {
        return;
    }
    let leads = (0..ring.ch)
        .map(|c| StripLead {
            channel: c as u16,
            samples_uv: ring.range(c, lo, hi),
        })
        .collect();
    let (s, e) = strip_window(p.t, p.code);
    out.push((
        s,
        e,
        EcgResult::Strip(EcgStrip {
            event: p.event,
            fs,
            first_sample_us: origin.saturating_add((lo as f64 * 1e6 / fs).round() as Micros),
            leads,
        }),
    ));
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::panic,
        reason = "test code"
    )]
    use super::*;
    use aorta_signal::rhythm::RhythmEventKind;

    fn ev(t: Micros) -> RhythmEvent {
        RhythmEvent {
            time_s: t as f64 / 1e6,
            kind: RhythmEventKind::TachyOnset,
        }
    }

    fn strips(out: &[(Micros, Micros, EcgResult)]) -> Vec<&EcgStrip> {
        out.iter()
            .filter_map(|(_, _, r)| match r {
                EcgResult::Strip(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    /// At most `MAX_STRIPS_PER_SPAN` strips for events within 10 s of each
    /// other, whatever their number; events further apart get theirs.
    #[test]
    fn strips_per_span_are_bounded() {
        let mut b = StripBook::default();
        let mut out = Vec::new();
        b.append(0, &[0.0; 360], &[], 0, 360.0, &mut out);
        assert_eq!(b.ring.as_ref().map(|r| r.ch), Some(1));
        for i in 0..100 {
            b.on_event(100_000 * i, 4, ev(100_000 * i), None);
        }
        assert_eq!(b.pending.len(), MAX_STRIPS_PER_SPAN);
        // 10 s after the last granted one: granted again.
        b.on_event(10_300_000, 4, ev(10_300_000), None);
        assert_eq!(b.pending.len(), MAX_STRIPS_PER_SPAN + 1);
        // The remembered times stay bounded.
        for i in 0..10_000 {
            b.on_event(20_000_000 + 3_000_000 * i, 4, ev(0), None);
        }
        assert!(b.granted.len() <= GRANTED_CAP);
        // No ring (RR input, no samples): no strip.
        let mut none = StripBook::default();
        none.on_event(0, 0, ev(0), None);
        assert!(none.pending.is_empty());
    }

    /// The ring keeps 33 s, at most `MAX_RING_SAMPLES` over its channels
    /// (32 channels at 10 kHz: 3.2 s), and reads back what it wrote.
    #[test]
    fn the_ring_is_bounded_and_round_trips() {
        for (fs, ch, keep) in [
            (360.0, 2usize, 11_880u64),
            (10_000.0, 32, (MAX_RING_SAMPLES / 32) as u64),
        ] {
            let mut b = StripBook::default();
            let mut out = Vec::new();
            let n = fs as usize;
            for s in 0..40u64 {
                let lead0: Vec<f64> = (0..n).map(|i| (i % 97) as f64 / 100.0).collect();
                let others = vec![(0..n as i32).map(|i| -i).collect(); ch];
                b.append(s * n as u64, &lead0, &others, 0, fs, &mut out);
                b.complete(0, fs, &mut out);
            }
            let r = b.ring.as_ref().unwrap();
            // Whole blocks (at most an eighth of the history) are dropped.
            assert!(r.len() >= keep && r.len() <= keep + keep / 8, "{}", r.len());
            assert_eq!(r.ch, ch);
            let json = serde_json::to_string(&b).unwrap();
            let back: StripBook = serde_json::from_str(&json).unwrap();
            assert_eq!(back, b);
        }
    }

    #[test]
    fn a_hostile_ring_in_state_is_an_error_not_a_panic() {
        for bad in [
            r#"{"ring":{"channels":0,"end":0,"blocks":[]}}"#,
            r#"{"ring":{"channels":33,"end":0,"blocks":[]}}"#,
            r#"{"ring":{"channels":1,"end":5,"blocks":[{"first":0,"len":4294967295,"codec":""}]}}"#,
            r#"{"ring":{"channels":2,"end":5,"blocks":[{"first":0,"len":5,"codec":"!!"}]}}"#,
            r#"{"ring":{"channels":2,"end":5,"blocks":[{"first":0,"len":5,"codec":"AAAA"}]}}"#,
            r#"{"ring":{"channels":1,"end":5,"blocks":[{"first":0,"len":0,"codec":""}]}}"#,
        ] {
            assert!(serde_json::from_str::<StripBook>(bad).is_err(), "{bad}");
        }
    }

    /// A run that ends cuts the pending strips to what it holds; an event
    /// whose strip lies wholly before the ring gets none.
    #[test]
    fn closing_a_run_cuts_pending_strips() {
        let mut b = StripBook::default();
        let mut out = Vec::new();
        let fs = 100.0;
        b.append(
            0,
            &[0.5; 800],
            &[vec![500; 800], vec![7; 800]],
            0,
            fs,
            &mut out,
        );
        b.on_event(6_000_000, 0, ev(6_000_000), None);
        b.complete(0, fs, &mut out);
        assert!(out.is_empty(), "waits for 5 s after the event");
        b.close(0, fs, &mut out);
        let s = strips(&out);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].first_sample_us, 1_000_000);
        assert_eq!(s[0].leads[0].samples_uv, vec![500; 700]);
        assert_eq!(s[0].leads[1].samples_uv, vec![7; 700]);
        assert_eq!(out[0].0, 1_000_000);
        assert_eq!(out[0].1, 11_000_001);
        assert!(b.ring.is_none() && b.pending.is_empty());
    }
}
