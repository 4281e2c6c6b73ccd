//! The worker side: a [`FrameLog`] over partitions of the frame stream.

use std::sync::Mutex;
use std::time::Duration;

use aorta_stream::StreamError;
use aorta_stream::log::{FrameLog, Located};
use async_nats::jetstream;
use futures::StreamExt;

use crate::{ClusterError, Nats};

/// After the first record of a read, how long to wait for more before
/// answering with what arrived.
const MORE_WAIT: Duration = Duration::from_millis(20);

/// The live consumer: the stream sequence its next message has (at least).
struct Live {
    next: u64,
    messages: jetstream::consumer::pull::Ordered,
}

/// Reads the records of some partitions of the frame stream in stream
/// order, as a read-only [`FrameLog`] whose offsets are **stream
/// sequences**: `read_from(offset, max)` returns the records with sequence
/// ≥ `offset` on the reader's subjects and the sequence after the last one
/// returned, so a checkpoint that stores that offset resumes exactly after
/// what it covered — no gap, no repeat. Offset 0 is the stream's start.
///
/// It reads with a JetStream **ordered consumer** (ephemeral, pull,
/// no acknowledgements, in-memory on the server, re-created by the client
/// at the right sequence if it misses a message or its server goes away):
/// the position is the worker's, kept in its checkpoint, not the
/// consumer's. Consecutive reads reuse the consumer; a read at another
/// offset (a restart from a checkpoint) creates a new one starting there.
/// Partition ownership between workers (durable consumers, failover) is
/// not this type's business (`docs/scale.md`).
pub struct PartitionReader {
    nats: Nats,
    stream: String,
    subjects: Vec<String>,
    wait: Duration,
    live: Mutex<Option<Live>>,
    end: Mutex<u64>,
}

impl std::fmt::Debug for PartitionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PartitionReader {{ stream: {:?}, subjects: {:?} }}",
            self.stream, self.subjects
        )
    }
}

impl PartitionReader {
    pub(crate) fn new(
        nats: Nats,
        stream: String,
        subjects: Vec<String>,
        wait: Duration,
    ) -> PartitionReader {
        PartitionReader {
            nats,
            stream,
            subjects,
            wait,
            live: Mutex::new(None),
            end: Mutex::new(0),
        }
    }

    /// The subjects read.
    pub fn subjects(&self) -> &[String] {
        &self.subjects
    }

    /// Up to `max` records from stream sequence `offset` on, each with its
    /// sequence, and the offset to read next.
    pub fn read_located(
        &self,
        offset: u64,
        max: usize,
    ) -> Result<(Vec<Located>, u64), ClusterError> {
        let start = offset.max(1);
        let taken = self
            .live
            .lock()
            .map_err(|_| ClusterError::Internal("reader lock poisoned".into()))?
            .take();
        let js = self.nats.js.clone();
        let (stream, subjects, wait) = (self.stream.clone(), self.subjects.clone(), self.wait);
        let max = max.max(1);
        let (recs, live) = self.nats.rt.block(async move {
            // (A live consumer at another position is dropped here, on the
            // runtime: its subscription's drop spawns an unsubscribe.)
            let mut live = match taken.filter(|l| l.next == start) {
                Some(l) => l,
                None => {
                    let s = js
                        .get_stream(&stream)
                        .await
                        .map_err(|e| ClusterError::Unavailable(format!("stream {stream}: {e}")))?;
                    // One subject as `filter_subject`: nats-server before
                    // 2.10 (Debian's 2.9) knows no `filter_subjects`.
                    let (filter_subject, filter_subjects) = match subjects.as_slice() {
                        [one] => (one.clone(), Vec::new()),
                        _ => (String::new(), subjects),
                    };
                    let consumer = s
                        .create_consumer(jetstream::consumer::pull::OrderedConfig {
                            filter_subject,
                            filter_subjects,
                            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                                start_sequence: start,
                            },
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| ClusterError::Unavailable(format!("consumer: {e}")))?;
                    let messages = consumer
                        .messages()
                        .await
                        .map_err(|e| ClusterError::Unavailable(format!("consumer: {e}")))?;
                    Live {
                        next: start,
                        messages,
                    }
                }
            };
            let mut recs = Vec::new();
            while recs.len() < max {
                let w = if recs.is_empty() { wait } else { MORE_WAIT };
                match tokio::time::timeout(w, live.messages.next()).await {
                    Err(_) => break,
                    Ok(None) => {
                        return Err(ClusterError::Unavailable("the consumer ended".into()));
                    }
                    Ok(Some(Err(e))) => {
                        return Err(ClusterError::Unavailable(format!("reading: {e}")));
                    }
                    Ok(Some(Ok(m))) => {
                        let seq = m
                            .info()
                            .map_err(|e| ClusterError::Refused(format!("message info: {e}")))?
                            .stream_sequence;
                        if seq < live.next {
                            // Never expected of an ordered consumer; a repeat is skipped.
                            continue;
                        }
                        live.next = seq + 1;
                        recs.push((seq, m.payload.to_vec()));
                    }
                }
            }
            Ok((recs, live))
        })?;
        let next = live.next;
        if let Ok(mut l) = self.live.lock() {
            *l = Some(live);
        }
        if let Ok(mut e) = self.end.lock() {
            *e = (*e).max(next);
        }
        let next = if recs.is_empty() { offset } else { next };
        Ok((recs, next))
    }
}

impl Drop for PartitionReader {
    fn drop(&mut self) {
        // The consumer's subscription unsubscribes on drop by spawning a
        // task: drop it inside the connection's runtime.
        let live = self.live.get_mut().ok().and_then(Option::take);
        if let Some(live) = live {
            self.nats.rt.drop_inside(live);
        }
    }
}

impl FrameLog for PartitionReader {
    fn append(&mut self, _payload: &[u8]) -> Result<u64, StreamError> {
        Err(StreamError::Config(
            "a worker's view of the frame stream is read-only (ingest publishes)".into(),
        ))
    }

    fn sync(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn end(&self) -> u64 {
        self.end.lock().map_or(0, |e| *e)
    }

    fn read_from(&self, offset: u64, max: usize) -> Result<(Vec<Vec<u8>>, u64), StreamError> {
        let (recs, next) = self.read_located(offset, max)?;
        Ok((recs.into_iter().map(|(_, r)| r).collect(), next))
    }
}
