//! aorta's distributed mode on NATS JetStream (`docs/scale.md`).
//!
//! **Owns** the JetStream side of the frame log, and only that:
//!
//! - the frame stream's layout ([`StreamSpec`]): one stream (`AORTA_FRAMES`
//!   by default) whose subjects are `<prefix>.<partition>`, P partitions,
//!   R replicas, and the stable partition hash of a device serial
//!   ([`partition_of`], FNV-1a 32 mod P, with test vectors);
//! - the ingest side's publisher ([`FramePublisher`]): an accepted frame's
//!   log record is published to its partition's subject with
//!   `Nats-Msg-Id = "<serial>/<sequence>"`, and counts as durable only
//!   once JetStream's publish acknowledgement came back (a failure or a
//!   timeout refuses the whole batch; JetStream's duplicate window then
//!   drops the retry of a frame that was in fact stored);
//! - the worker side's reader ([`PartitionReader`]): an
//!   [`aorta_stream::log::FrameLog`] over one or more partitions, whose
//!   offsets are JetStream stream sequences, so a checkpoint's offset says
//!   where to resume;
//! - partition ownership between workers ([`Leases`], module [`lease`]):
//!   leases and membership in a JetStream key-value bucket, written with
//!   compare-and-set, renewed well inside their TTL, claimed up to each
//!   live worker's fair share, handed back when a worker joins;
//! - each partition's checkpoint in a JetStream key-value bucket
//!   ([`KvCheckpoints`], module [`checkpoints`]), compare-and-set on the
//!   revision read at takeover so a fenced owner's late checkpoint is
//!   refused, chunked when larger than a value may be;
//! - with the `testing` feature, a harness that runs real `nats-server`
//!   processes (one node or a cluster with routes) for tests (module
//!   `testing`).
//!
//! **Never** does: frame acceptance (authentication, sequence and
//! key-index checks stay in `aorta-server`'s ingest, which calls this only
//! for frames that passed them), opening or analysing frames (the worker's
//! job), holding any key, or reading what a checkpoint holds (it stores
//! the bytes it is given: in the worker, already sealed). It depends only on `aorta-stream` (for
//! the `FrameLog` seam and its error type); the server and the worker
//! depend on it, never the other way round.
//!
//! The NATS client (`async-nats`) is asynchronous; aorta's log seams are
//! synchronous and called from plain threads (the server's log writer, the
//! worker loop). Each [`Nats`] connection therefore owns a small Tokio
//! runtime of its own, and the blocking methods run their futures on it.
//!
//! ```no_run
//! use aorta_cluster::{Nats, StreamSpec, partition_of};
//! use aorta_stream::log::FrameLog;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let spec = StreamSpec { partitions: 16, replicas: 1, ..StreamSpec::default() };
//! let nats = Nats::connect("nats://127.0.0.1:4222", std::time::Duration::from_secs(5))?;
//! nats.ensure_stream(&spec)?;
//! let mut publisher = nats.publisher(&spec);
//! publisher.append("dev-1", 0, b"record")?;
//! publisher.sync()?; // JetStream acknowledged it: durable
//! let reader = nats.reader(&spec, &[partition_of("dev-1", 16)], std::time::Duration::from_millis(200))?;
//! let (records, next) = reader.read_from(0, 100)?;
//! # let _ = (records, next);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use futures::StreamExt;

pub mod checkpoints;
pub mod lease;
mod reader;
#[cfg(feature = "testing")]
pub mod testing;

pub use checkpoints::{CheckpointConfig, KvCheckpoints, is_fenced};
pub use lease::{LeaseChanges, LeaseConfig, Leases};
pub use reader::PartitionReader;

/// Why a JetStream operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// A configuration value is unusable (the operator's to fix).
    #[error("cluster configuration: {0}")]
    Config(String),
    /// NATS could not be reached or did not answer in time (retry later).
    #[error("NATS JetStream unavailable: {0}")]
    Unavailable(String),
    /// JetStream answered with an error.
    #[error("NATS JetStream refused: {0}")]
    Refused(String),
    /// This worker no longer owns what it tried to write: another worker
    /// took the partition over (stop that partition's job; write nothing
    /// more for it).
    #[error("fenced: {0}")]
    Fenced(String),
    /// A bug of ours or of the client library.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<ClusterError> for aorta_stream::StreamError {
    fn from(e: ClusterError) -> Self {
        match e {
            ClusterError::Config(s) => aorta_stream::StreamError::Config(s),
            other => aorta_stream::StreamError::Store(Box::new(other)),
        }
    }
}

/// Stable partition of a device: FNV-1a (32-bit) of the serial's UTF-8
/// bytes, modulo `partitions` (`docs/scale.md`, with test vectors). Zero
/// partitions count as one.
pub fn partition_of(serial: &str, partitions: u32) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in serial.as_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h % partitions.max(1)
}

/// The frame stream's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// JetStream stream name (default `AORTA_FRAMES`).
    pub stream: String,
    /// Subject prefix; partition `p` is `<prefix>.<p>` (default
    /// `aorta.frames`).
    pub subject_prefix: String,
    /// Number of partitions, 1–4096 (default 16).
    pub partitions: u32,
    /// Replicas of the stream, 1–5 (JetStream's limit); 3 on a 3-node
    /// cluster survives one node's loss (default 1: development).
    pub replicas: usize,
    /// JetStream's duplicate window: a `Nats-Msg-Id` seen within it is
    /// stored once (default 2 minutes).
    pub duplicate_window: Duration,
    /// Longest a batch waits for JetStream's publish acknowledgements
    /// before it is refused (default 5 s).
    pub ack_timeout: Duration,
}

impl Default for StreamSpec {
    fn default() -> Self {
        StreamSpec {
            stream: "AORTA_FRAMES".into(),
            subject_prefix: "aorta.frames".into(),
            partitions: 16,
            replicas: 1,
            duplicate_window: Duration::from_secs(120),
            ack_timeout: Duration::from_secs(5),
        }
    }
}

impl StreamSpec {
    /// Checks the values are in range.
    pub fn validate(&self) -> Result<(), ClusterError> {
        let token_ok = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !token_ok(&self.stream) {
            return Err(ClusterError::Config(
                "stream: letters, digits, '_' and '-' only".into(),
            ));
        }
        if !self.subject_prefix.split('.').all(token_ok) {
            return Err(ClusterError::Config(
                "subject_prefix: dot-separated tokens of letters, digits, '_' and '-'".into(),
            ));
        }
        if !(1..=4096).contains(&self.partitions) {
            return Err(ClusterError::Config(
                "partitions: must be in [1, 4096]".into(),
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(ClusterError::Config("replicas: must be in [1, 5]".into()));
        }
        if self.duplicate_window < Duration::from_secs(1) {
            return Err(ClusterError::Config(
                "duplicate_window: at least 1 s".into(),
            ));
        }
        if self.ack_timeout < Duration::from_millis(10)
            || self.ack_timeout > Duration::from_secs(60)
        {
            return Err(ClusterError::Config(
                "ack_timeout: must be in [10 ms, 60 s]".into(),
            ));
        }
        Ok(())
    }

    /// The subject of partition `p`.
    pub fn subject(&self, p: u32) -> String {
        format!("{}.{p}", self.subject_prefix)
    }

    /// The subject a device's frames go to.
    pub fn subject_of(&self, serial: &str) -> String {
        self.subject(partition_of(serial, self.partitions))
    }

    fn stream_config(&self) -> jetstream::stream::Config {
        jetstream::stream::Config {
            name: self.stream.clone(),
            subjects: vec![format!("{}.*", self.subject_prefix)],
            num_replicas: self.replicas,
            duplicate_window: self.duplicate_window,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        }
    }
}

/// The runtime the client's futures run on (dropped without blocking, so a
/// connection may be dropped anywhere, even inside another runtime).
struct Rt(Option<tokio::runtime::Runtime>);

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Rt {
    /// Drops `v` inside this runtime's context (a client object whose drop
    /// spawns a task).
    fn drop_inside<T>(&self, v: T) {
        match &self.0 {
            Some(rt) => {
                let _guard = rt.enter();
                drop(v);
            }
            None => drop(v),
        }
    }

    /// Runs `f` to completion on this runtime from synchronous code (from a
    /// thread of another runtime too: then on a scoped helper thread).
    fn block<T: Send, F: Future<Output = Result<T, ClusterError>> + Send>(
        &self,
        f: F,
    ) -> Result<T, ClusterError> {
        let rt = self
            .0
            .as_ref()
            .ok_or_else(|| ClusterError::Internal("runtime gone".into()))?;
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|s| {
                s.spawn(|| rt.block_on(f))
                    .join()
                    .unwrap_or_else(|_| Err(ClusterError::Internal("NATS call panicked".into())))
            })
        } else {
            rt.block_on(f)
        }
    }
}

/// A connection to NATS with JetStream (one or more servers of a cluster).
#[derive(Clone)]
pub struct Nats {
    rt: Arc<Rt>,
    js: jetstream::Context,
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nats { .. }")
    }
}

/// How aorta authenticates to NATS and which TLS it trusts
/// (`docs/scale.md`, "Securing NATS"). Every field is optional; the
/// default is an anonymous plain connection, for development on loopback.
/// Secrets are held in zeroizing memory and never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NatsAuth {
    /// A token (nats-server `authorization { token: … }`).
    pub token: Option<zeroize::Zeroizing<String>>,
    /// A user and password (nats-server `authorization { users: […] }`,
    /// where each user's permissions say what it may publish and read).
    pub user: Option<(String, zeroize::Zeroizing<String>)>,
    /// PEM file of the CA that signs the NATS servers' certificates. Set,
    /// TLS is required: the connection fails rather than fall back to
    /// plain text.
    pub tls_ca: Option<PathBuf>,
    /// PEM files of a client certificate and its key, for servers that
    /// verify clients (`tls { verify: true }`); TLS is then required too.
    pub tls_client: Option<(PathBuf, PathBuf)>,
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsAuth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("tls_ca", &self.tls_ca)
            .field("tls_client", &self.tls_client)
            .finish()
    }
}

impl NatsAuth {
    /// Reads a secret (a token or password) from `path`: its first line,
    /// trimmed; an empty one is refused.
    pub fn read_secret(
        path: &Path,
        what: &str,
    ) -> Result<zeroize::Zeroizing<String>, ClusterError> {
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
            ClusterError::Config(format!(
                "cannot read the NATS {what} file {}: {e}",
                path.display()
            ))
        })?);
        let line = text.lines().next().unwrap_or("").trim();
        if line.is_empty() {
            return Err(ClusterError::Config(format!(
                "the NATS {what} file {} is empty",
                path.display()
            )));
        }
        Ok(zeroize::Zeroizing::new(line.to_owned()))
    }

    /// Whether TLS must be used.
    pub fn requires_tls(&self) -> bool {
        self.tls_ca.is_some() || self.tls_client.is_some()
    }

    fn options(&self) -> async_nats::ConnectOptions {
        let mut o = async_nats::ConnectOptions::new();
        if let Some(t) = &self.token {
            o = o.token(t.to_string());
        }
        if let Some((u, p)) = &self.user {
            o = o.user_and_password(u.clone(), p.to_string());
        }
        if let Some(ca) = &self.tls_ca {
            o = o.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.tls_client {
            o = o.add_client_certificate(cert.clone(), key.clone());
        }
        o.require_tls(self.requires_tls())
    }
}

impl Nats {
    /// Connects to `urls` (`nats://host:port`, several separated by commas:
    /// the client fails over between them), waiting at most `timeout` for
    /// the first connection. JetStream API calls time out after `timeout`
    /// too. Anonymous and in plain text unless the server asks for TLS:
    /// [`Nats::connect_with`] authenticates.
    pub fn connect(urls: &str, timeout: Duration) -> Result<Nats, ClusterError> {
        Self::connect_with(urls, &NatsAuth::default(), timeout)
    }

    /// [`Nats::connect`] with credentials and TLS trust. A server that
    /// refuses the credentials is [`ClusterError::Config`] (the operator's
    /// to fix, not retried as an outage).
    pub fn connect_with(
        urls: &str,
        auth: &NatsAuth,
        timeout: Duration,
    ) -> Result<Nats, ClusterError> {
        let addrs = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| {
                u.parse::<async_nats::ServerAddr>()
                    .map_err(|e| ClusterError::Config(format!("NATS address {u:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if addrs.is_empty() {
            return Err(ClusterError::Config("no NATS address".into()));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("aorta-nats")
            .enable_all()
            .build()
            .map_err(|e| ClusterError::Internal(format!("starting the NATS runtime: {e}")))?;
        let rt = Rt(Some(rt));
        let options = auth.options();
        let js = rt.block(async move {
            let client = options
                .connection_timeout(timeout)
                .request_timeout(Some(timeout))
                .connect(addrs)
                .await
                .map_err(|e| match e.kind() {
                    async_nats::ConnectErrorKind::AuthorizationViolation => {
                        ClusterError::Config(format!("NATS refused aorta's credentials: {e}"))
                    }
                    async_nats::ConnectErrorKind::Tls => {
                        ClusterError::Config(format!("TLS to NATS failed: {e}"))
                    }
                    _ => ClusterError::Unavailable(format!("connecting: {e}")),
                })?;
            Ok(jetstream::ContextBuilder::new()
                .timeout(timeout)
                .build(client))
        })?;
        Ok(Nats {
            rt: Arc::new(rt),
            js,
        })
    }

    /// Creates the frame stream if it does not exist; an existing one must
    /// have the spec's subjects and replicas (a mismatch is
    /// [`ClusterError::Config`]: changing partitions moves devices, see
    /// `docs/scale.md`).
    pub fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), ClusterError> {
        spec.validate()?;
        let want = spec.stream_config();
        let js = self.js.clone();
        self.rt.block(async move {
            let mut stream = js
                .get_or_create_stream(want.clone())
                .await
                .map_err(|e| ClusterError::Unavailable(format!("creating the stream: {e}")))?;
            let info = stream
                .info()
                .await
                .map_err(|e| ClusterError::Unavailable(format!("stream info: {e}")))?;
            let have = &info.config;
            if have.subjects != want.subjects || have.num_replicas != want.num_replicas {
                return Err(ClusterError::Config(format!(
                    "stream {} exists with subjects {:?} and {} replicas; this configuration wants {:?} and {}",
                    want.name, have.subjects, have.num_replicas, want.subjects, want.num_replicas
                )));
            }
            Ok(())
        })
    }

    /// The number of messages in the frame stream and its last sequence.
    pub fn stream_state(&self, spec: &StreamSpec) -> Result<(u64, u64), ClusterError> {
        let info = self.stream_info(spec)?;
        Ok((info.state.messages, info.state.last_sequence))
    }

    /// The name of the server that leads the frame stream's replicas
    /// (`None` on a single server without clustering).
    pub fn stream_leader(&self, spec: &StreamSpec) -> Result<Option<String>, ClusterError> {
        let info = self.stream_info(spec)?;
        Ok(info.cluster.and_then(|c| c.leader))
    }

    /// The stream sequence of partition `p`'s last record (`None`: the
    /// partition is empty).
    pub fn last_sequence_of(&self, spec: &StreamSpec, p: u32) -> Result<Option<u64>, ClusterError> {
        let js = self.js.clone();
        let name = spec.stream.clone();
        let subject = spec.subject(p);
        self.rt.block(async move {
            let s = js
                .get_stream(&name)
                .await
                .map_err(|e| ClusterError::Unavailable(format!("stream {name}: {e}")))?;
            match s.get_last_raw_message_by_subject(&subject).await {
                Ok(m) => Ok(Some(m.sequence)),
                Err(e)
                    if e.kind()
                        == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
                {
                    Ok(None)
                }
                Err(e) => Err(ClusterError::Unavailable(format!("last of {subject}: {e}"))),
            }
        })
    }

    fn stream_info(
        &self,
        spec: &StreamSpec,
    ) -> Result<async_nats::jetstream::stream::Info, ClusterError> {
        let js = self.js.clone();
        let name = spec.stream.clone();
        self.rt.block(async move {
            let mut s = js
                .get_stream(&name)
                .await
                .map_err(|e| ClusterError::Unavailable(format!("stream {name}: {e}")))?;
            let info = s
                .info()
                .await
                .map_err(|e| ClusterError::Unavailable(format!("stream info: {e}")))?;
            Ok(info.clone())
        })
    }

    /// A publisher of accepted frames (the server's log writer uses one).
    pub fn publisher(&self, spec: &StreamSpec) -> FramePublisher {
        FramePublisher {
            nats: self.clone(),
            spec: spec.clone(),
            pending: Vec::new(),
            settled: HashMap::new(),
            end: 0,
            durable_end: 0,
        }
    }

    /// A reader of `partitions` of the frame stream; a read with nothing
    /// new waits up to `wait` (long poll).
    pub fn reader(
        &self,
        spec: &StreamSpec,
        partitions: &[u32],
        wait: Duration,
    ) -> Result<PartitionReader, ClusterError> {
        if partitions.is_empty() || partitions.iter().any(|p| *p >= spec.partitions) {
            return Err(ClusterError::Config(format!(
                "partitions {partitions:?}: each must be below {}",
                spec.partitions
            )));
        }
        Ok(PartitionReader::new(
            self.clone(),
            spec.stream.clone(),
            partitions.iter().map(|p| spec.subject(*p)).collect(),
            wait,
        ))
    }
}

/// One record waiting for [`FramePublisher::sync`].
struct Pending {
    position: u64,
    subject: String,
    msg_id: String,
    record: bytes::Bytes,
}

/// Publishes accepted frames' log records to the frame stream, batch by
/// batch, as a log: [`FramePublisher::append`] gives each record a
/// position in this publisher's own sequence (provisional),
/// [`FramePublisher::sync`] publishes the batch and waits for every
/// publish acknowledgement; then [`FramePublisher::settled`] gives each
/// record's JetStream stream sequence and whether JetStream found it a
/// duplicate.
///
/// A failed or timed-out acknowledgement fails the whole batch: its
/// positions roll back ([`FramePublisher::durable_end`] stays), and the
/// caller refuses every frame of it as retryable, though some may be
/// stored: their retries carry the same `Nats-Msg-Id` and are dropped by
/// JetStream's duplicate window (acknowledged with their first sequence).
pub struct FramePublisher {
    nats: Nats,
    spec: StreamSpec,
    pending: Vec<Pending>,
    settled: HashMap<u64, (u64, bool)>,
    end: u64,
    durable_end: u64,
}

impl std::fmt::Debug for FramePublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FramePublisher {{ stream: {:?}, end: {}, durable_end: {} }}",
            self.spec.stream, self.end, self.durable_end
        )
    }
}

/// `Nats-Msg-Id` of a device's frame: `<serial>/<sequence>`.
pub fn msg_id(serial: &str, sequence: u64) -> String {
    format!("{serial}/{sequence}")
}

impl FramePublisher {
    /// Queues `record` (the frame's log record) of `serial`'s frame
    /// `sequence`; its provisional position.
    pub fn append(
        &mut self,
        serial: &str,
        sequence: u64,
        record: &[u8],
    ) -> Result<u64, ClusterError> {
        if self.pending.is_empty() {
            self.settled.clear();
        }
        let position = self.end;
        self.pending.push(Pending {
            position,
            subject: self.spec.subject_of(serial),
            msg_id: msg_id(serial, sequence),
            record: bytes::Bytes::copy_from_slice(record),
        });
        self.end += 1;
        Ok(position)
    }

    /// Publishes every queued record and waits (at most the spec's
    /// `ack_timeout` for all) for their acknowledgements. On any failure
    /// the batch's positions roll back and nothing of it is settled.
    pub fn sync(&mut self) -> Result<(), ClusterError> {
        let batch = std::mem::take(&mut self.pending);
        self.settled.clear();
        if batch.is_empty() {
            return Ok(());
        }
        let js = self.nats.js.clone();
        let timeout = self.spec.ack_timeout;
        let positions: Vec<u64> = batch.iter().map(|p| p.position).collect();
        let r = self.nats.rt.block(async move {
            let work = async {
                let mut futs = Vec::with_capacity(batch.len());
                for p in batch {
                    let msg = jetstream::message::PublishMessage::build()
                        .payload(p.record)
                        .message_id(p.msg_id);
                    let f = js
                        .send_publish(p.subject, msg)
                        .await
                        .map_err(|e| ClusterError::Unavailable(format!("publishing: {e}")))?;
                    futs.push(f.into_future());
                }
                let acks = futures::stream::iter(futs)
                    .buffered(usize::MAX)
                    .collect::<Vec<_>>()
                    .await;
                acks.into_iter()
                    .map(|a| {
                        a.map(|a| (a.sequence, a.duplicate)).map_err(|e| {
                            ClusterError::Unavailable(format!("publish acknowledgement: {e}"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            tokio::time::timeout(timeout, work).await.map_err(|_| {
                ClusterError::Unavailable(format!(
                    "no publish acknowledgement within {} ms",
                    timeout.as_millis()
                ))
            })?
        });
        match r {
            Ok(acks) => {
                self.settled = positions.into_iter().zip(acks).collect();
                self.durable_end = self.end;
                Ok(())
            }
            Err(e) => {
                self.end = self.durable_end;
                Err(e)
            }
        }
    }

    /// Positions handed out so far (where the next append goes).
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Positions acknowledged by JetStream (everything before it is
    /// durable in the stream).
    pub fn durable_end(&self) -> u64 {
        self.durable_end
    }

    /// After a successful [`FramePublisher::sync`], the stream sequence of
    /// the record appended at `position` in that batch and whether
    /// JetStream dropped it as a duplicate (its first copy's sequence).
    pub fn settled(&self, position: u64) -> Option<(u64, bool)> {
        self.settled.get(&position).copied()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]
    use super::*;

    #[test]
    fn partition_hash_vectors() {
        // FNV-1a 32 (the empty string and "a" are the published FNV
        // vectors); docs/scale.md lists the same table.
        for (serial, hash, p16) in [
            ("", 0x811c_9dc5_u32, 5),
            ("a", 0xe40c_292c, 12),
            ("SN-OK", 0x0f0a_6645, 5),
            ("dev-000001", 0x4c98_cb18, 8),
            ("AORTA-0042", 0x437d_b7fb, 11),
        ] {
            assert_eq!(partition_of(serial, u32::MAX), hash % u32::MAX, "{serial}");
            assert_eq!(partition_of(serial, 16), p16, "{serial}");
            assert_eq!(hash % 16, p16);
        }
        assert_eq!(partition_of("x", 0), 0);
        assert_eq!(msg_id("SN-OK", 42), "SN-OK/42");
        let spec = StreamSpec::default();
        assert_eq!(spec.subject_of("a"), "aorta.frames.12");
    }

    #[test]
    fn bad_specs_are_config_errors() {
        let ok = StreamSpec::default();
        assert!(ok.validate().is_ok());
        for bad in [
            StreamSpec {
                partitions: 0,
                ..ok.clone()
            },
            StreamSpec {
                partitions: 5000,
                ..ok.clone()
            },
            StreamSpec {
                replicas: 0,
                ..ok.clone()
            },
            StreamSpec {
                replicas: 6,
                ..ok.clone()
            },
            StreamSpec {
                stream: "A.B".into(),
                ..ok.clone()
            },
            StreamSpec {
                stream: String::new(),
                ..ok.clone()
            },
            StreamSpec {
                subject_prefix: "a.*".into(),
                ..ok.clone()
            },
            StreamSpec {
                subject_prefix: "a..b".into(),
                ..ok.clone()
            },
            StreamSpec {
                ack_timeout: Duration::ZERO,
                ..ok.clone()
            },
            StreamSpec {
                duplicate_window: Duration::ZERO,
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(ClusterError::Config(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            Nats::connect(" , ", Duration::from_secs(1)),
            Err(ClusterError::Config(_))
        ));
    }
}
