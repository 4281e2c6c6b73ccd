//! A recoverable pipeline: durable log → engine → idempotent results, with
//! periodic checkpoints.
//!
//! The order of writes is what makes a crash at any instant harmless:
//!
//! 1. input is appended to the log and synced **before** it is acknowledged;
//! 2. results are written and synced **before** the checkpoint that covers
//!    the input producing them;
//! 3. the checkpoint (state + log offset) is replaced atomically.
//!
//! A restart restores the checkpoint and replays the log from its offset.
//! Replay recomputes exactly the results produced after the checkpoint; those
//! already stored have the same ids and are ignored by the sink. So no
//! acknowledged input is lost and no result is stored twice.

use std::hash::Hash;

use serde::{Serialize, de::DeserializeOwned};

use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::log::FrameLog;
use crate::results::ResultSink;
use crate::{Engine, EngineConfig, KeyedOperator, Micros, Output, StreamError};

/// Turns a log record into an event (or a typed refusal). Any
/// `FnMut(&[u8]) -> Result<(K, Micros, E), StreamError>` is one; a decoder
/// with state (keys to open sealed frames, counters) implements it directly.
pub trait Decoder<K, E> {
    /// Decodes one record.
    fn decode(&mut self, record: &[u8]) -> Result<(K, Micros, E), StreamError>;
    /// State the decoder keeps across records (one line of text, no `\n`),
    /// checkpointed with the engine's. Default: none.
    fn snapshot(&self) -> Result<String, StreamError> {
        Ok(String::new())
    }
    /// Restores what [`Decoder::snapshot`] returned.
    fn restore(&mut self, _state: &str) -> Result<(), StreamError> {
        Ok(())
    }
    /// Called with a batch's records before any of them is decoded. An
    /// error fails the whole step before anything moved (no record
    /// decoded, the offset unchanged), so the caller retries the same
    /// records later: for what the decoder must fetch first and may fail
    /// to fetch for a while (the worker's key windows). Default: nothing.
    fn prepare(&mut self, _records: &[Vec<u8>]) -> Result<(), StreamError> {
        Ok(())
    }
}

impl<K, E, F> Decoder<K, E> for F
where
    F: FnMut(&[u8]) -> Result<(K, Micros, E), StreamError>,
{
    fn decode(&mut self, record: &[u8]) -> Result<(K, Micros, E), StreamError> {
        self(record)
    }
}

/// Counters of one pipeline run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// Records replayed or processed.
    pub records: u64,
    /// Records that failed to decode (counted and skipped).
    pub undecodable: u64,
    /// Results newly stored.
    pub stored: u64,
    /// Results recomputed during replay and ignored as duplicates.
    pub duplicates: u64,
    /// Checkpoints taken.
    pub checkpoints: u64,
}

/// Log-driven, checkpointed processing of one operator.
pub struct Pipeline<K, Op: KeyedOperator, C, R, D> {
    engine: Engine<K, Op>,
    decode: D,
    checkpoints: C,
    results: R,
    offset: u64,
    since_checkpoint: u64,
    checkpoint_every: u64,
    stats: PipelineStats,
}

impl<K, Op, C, R, D> Pipeline<K, Op, C, R, D>
where
    D: Decoder<K, Op::Event>,
    K: Hash + Eq + Clone + Serialize + DeserializeOwned + std::fmt::Display,
    Op: KeyedOperator,
    Op::Output: Serialize,
    C: CheckpointStore,
    R: ResultSink,
{
    /// Opens the pipeline, restoring the last checkpoint if there is one.
    pub fn open(
        op: Op,
        cfg: EngineConfig,
        decode: D,
        checkpoints: C,
        results: R,
        checkpoint_every: u64,
    ) -> Result<Self, StreamError> {
        let mut engine = Engine::new(op, cfg);
        let mut decode = decode;
        let mut offset = 0;
        if let Some(cp) = checkpoints.load()? {
            // `engine JSON ‖ \n ‖ decoder state` (engine JSON has no raw
            // newline).
            let (e, d) = cp.state.split_once('\n').unwrap_or((cp.state.as_str(), ""));
            engine.restore(e.as_bytes())?;
            decode.restore(d)?;
            offset = cp.log_offset;
        }
        Ok(Pipeline {
            engine,
            decode,
            checkpoints,
            results,
            offset,
            since_checkpoint: 0,
            checkpoint_every: checkpoint_every.max(1),
            stats: PipelineStats::default(),
        })
    }

    /// Log offset processed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Counters.
    pub fn stats(&self) -> PipelineStats {
        self.stats
    }

    /// The results sink.
    pub fn results(&self) -> &R {
        &self.results
    }

    /// The decoder (for its counters).
    pub fn decoder(&self) -> &D {
        &self.decode
    }

    /// The decoder, mutably.
    pub fn decoder_mut(&mut self) -> &mut D {
        &mut self.decode
    }

    /// The engine (for its counters).
    pub fn engine(&self) -> &Engine<K, Op> {
        &self.engine
    }

    /// The engine, to drop a key's state ([`Engine::forget`]).
    pub fn engine_mut(&mut self) -> &mut Engine<K, Op> {
        &mut self.engine
    }

    /// Makes the results stored so far durable (without a checkpoint): a
    /// worker calls it after each step so that results reach readers with
    /// low latency; the checkpoint interval only bounds replay work.
    pub fn sync_results(&mut self) -> Result<(), StreamError> {
        self.results.sync()
    }

    fn store(&mut self, out: Vec<Output<K, Op::Output>>) -> Result<(), StreamError> {
        for o in out {
            let id = format!("{}/{}/{}", o.key, o.start, o.end);
            let payload =
                serde_json::to_vec(&o.value).map_err(|e| StreamError::Internal(e.to_string()))?;
            if self.results.put(&id, &payload)? {
                self.stats.stored += 1;
            } else {
                self.stats.duplicates += 1;
            }
        }
        Ok(())
    }

    /// Processes up to `max` records from the log; returns how many.
    pub fn step(&mut self, log: &impl FrameLog, max: usize) -> Result<usize, StreamError> {
        let (records, next) = log.read_from(self.offset, max)?;
        self.decode.prepare(&records)?;
        let mut out = Vec::new();
        for r in &records {
            match self.decode.decode(r) {
                Ok((k, t, ev)) => self.engine.push(k, t, ev, &mut out),
                Err(_) => self.stats.undecodable += 1,
            }
        }
        self.store(out)?;
        self.offset = next;
        self.stats.records += records.len() as u64;
        self.since_checkpoint += records.len() as u64;
        if self.since_checkpoint >= self.checkpoint_every {
            self.checkpoint()?;
        }
        Ok(records.len())
    }

    /// Syncs results, then atomically saves state and offset.
    pub fn checkpoint(&mut self) -> Result<(), StreamError> {
        self.results.sync()?;
        let mut state = self.engine.snapshot()?;
        let d = self.decode.snapshot()?;
        if d.contains('\n') {
            return Err(StreamError::Internal(
                "decoder state holds a newline".into(),
            ));
        }
        state.push(b'\n');
        state.extend_from_slice(d.as_bytes());
        let cp = Checkpoint::new(self.offset, state)?;
        self.checkpoints.save(&cp)?;
        self.since_checkpoint = 0;
        self.stats.checkpoints += 1;
        Ok(())
    }

    /// End of input: flushes every open window and checkpoints.
    pub fn finish(&mut self) -> Result<(), StreamError> {
        let mut out = Vec::new();
        self.engine.finish(&mut out);
        self.store(out)?;
        self.checkpoint()
    }
}
