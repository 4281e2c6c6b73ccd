//! `aorta server` configuration: a TOML file whose every key has a
//! documented default (`docs/server.md`). Relative paths are resolved
//! against the directory of the configuration file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The server's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// HTTPS listen address (HTTP/2 and HTTP/1.1 over TLS).
    pub listen: SocketAddr,
    /// Where the log, results, checkpoints, certificate and secrets live.
    pub data_dir: PathBuf,
    /// The device key registry (`aorta factory init`): opened only by the
    /// in-process key broker (`policy` set). The documented deployment runs
    /// the broker on the data owner's side and leaves this unused.
    pub registry: PathBuf,
    /// The public device directory ingest authenticates devices with
    /// (`<registry>/directory.txt` when absent). No key material.
    pub directory: Option<PathBuf>,
    /// Clinicians who may read results: a TOML file with a `[clinicians]`
    /// table `subscriber = "authentication public key (64 hex digits, from
    /// aorta clinician public --auth)"`. Without it nobody can read results.
    pub clinicians: Option<PathBuf>,
    /// The key broker's certifying public key (64 hex digits): results are
    /// stored only when signed by a worker key it certified. With the
    /// in-process broker it is that broker's key.
    pub broker_key: Option<String>,
    /// Key broker policy (`docs/attestation.md`); no broker when absent.
    pub policy: Option<PathBuf>,
    /// Key broker listen address (worker protocol over TCP).
    pub broker_listen: SocketAddr,
    /// Subscribers (clinicians) and their public keys: a TOML file with a
    /// `[results]` table `id = "hex public key"`.
    pub subscribers: Option<PathBuf>,
    /// Largest accepted frame, bytes.
    pub max_frame_bytes: usize,
    /// Frames waiting for the log writer before ingest answers 503.
    pub ingest_queue_frames: usize,
    /// Bytes waiting for the log writer before ingest answers 503.
    pub ingest_queue_bytes: usize,
    /// Log bytes not yet covered by a worker checkpoint before ingest
    /// answers 503 (backpressure from the worker's progress); 0 = no limit.
    pub max_worker_lag_bytes: u64,
    /// Longest a worker's log read waits for new records, ms.
    pub log_poll_ms: u64,
    /// TLS certificate (PEM); a self-signed development certificate is
    /// generated in `data_dir` when absent.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM), with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Names the generated development certificate is valid for.
    pub tls_names: Vec<String>,
    /// Renegotiation of `max_key_uses` (one-machine mode, `policy` set):
    /// how long one key should last, seconds. A device whose keys last
    /// longer at its observed frame rate is offered a lower `max_key_uses`
    /// (paper 003). Default 30 days (120 keys over ten years).
    pub reneg_key_period_secs: u64,
    /// Observe a device this long (seconds) before judging its consumption.
    pub reneg_min_observe_secs: u64,
    /// Most connections open at once (also capped by the process's open
    /// file limit). At the limit the longest-idle connection is closed to
    /// admit a new one; with none idle, new connections wait in the
    /// kernel's backlog.
    pub max_connections: usize,
    /// Most connections open at once from one source address.
    pub max_connections_per_source: usize,
    /// Longest a TLS handshake may take, seconds.
    pub handshake_timeout_secs: u64,
    /// Longest a client may take to send a request's headers (HTTP/1.1),
    /// seconds; it also closes an idle HTTP/1.1 keep-alive connection.
    pub header_timeout_secs: u64,
    /// A connection with no request in flight for this long is closed,
    /// seconds (an idle HTTP/2 connection, or TLS without any request).
    pub idle_timeout_secs: u64,
    /// Longest one device or clinician request may take, headers to
    /// answer, seconds (a slow body is cut with 408).
    pub request_timeout_secs: u64,
    /// Longest one worker request (results, checkpoint) may take, seconds.
    pub worker_request_timeout_secs: u64,
    /// Concurrent HTTP/2 streams per connection.
    pub h2_max_streams: u32,
    /// HTTP/2 keep-alive: a PING after this long without traffic, and the
    /// connection closed when its answer takes as long, seconds.
    pub h2_keepalive_secs: u64,
    /// Device request bodies (frames) held in memory at once, all
    /// connections together, bytes; beyond it a frame gets 503.
    pub body_budget_bytes: usize,
    /// Device request bodies held in memory at once for one connection,
    /// bytes (at least `max_frame_bytes`).
    pub connection_body_bytes: usize,
    /// Frame body bytes one source address may send per second, on average
    /// (a burst of `max_frame_bytes` at once); beyond it the server reads
    /// that source's bodies more slowly. 0: no limit.
    pub source_frame_bytes_per_sec: usize,
    /// Largest `GET /v1/log` answer, bytes of records (one record more when
    /// a single record is larger).
    pub log_answer_bytes: usize,
    /// Size of one `frames.log` segment, bytes; absent: one file.
    pub log_segment_bytes: Option<u64>,
    /// Delete a frame-log segment once the worker's checkpoint has passed it
    /// and its last write is this many hours old; absent: keep everything.
    pub log_retention_hours: Option<u64>,
    /// Size of one `results.log` segment, bytes; absent: one file.
    pub results_segment_bytes: Option<u64>,
    /// Delete a results segment once its last write is this many hours
    /// old; absent: keep everything.
    pub results_retention_hours: Option<u64>,
    /// The operations port: plain HTTP (no TLS) serving `/metrics`,
    /// `/healthz` and `/readyz` (`docs/server.md`, "Operations port");
    /// absent: off. Bind it to loopback or a management network.
    pub metrics_listen: Option<SocketAddr>,
    /// Cluster mode (`docs/scale.md`): accepted frames go to a NATS
    /// JetStream stream instead of the local frame log; absent: the
    /// embedded file log.
    pub cluster: Option<ClusterConfig>,
    /// The MQTT front (`docs/mqtt.md`): devices publish frames with MQTT
    /// QoS 1; absent: off.
    pub mqtt: Option<MqttConfig>,
}

/// The `[mqtt]` table: the MQTT front of device ingest (`docs/mqtt.md`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Listen address (MQTT over TLS with the server's certificate).
    pub listen: SocketAddr,
    /// Plain TCP instead of TLS: only for a loopback `listen` (development).
    #[serde(default)]
    pub insecure_plain_tcp: bool,
    /// Connections at once.
    #[serde(default = "MqttConfig::default_max_connections")]
    pub max_connections: usize,
    /// Connections at once from one address.
    #[serde(default = "MqttConfig::default_max_connections_per_source")]
    pub max_connections_per_source: usize,
    /// Deadline for the TLS handshake and the CONNECT packet, seconds.
    #[serde(default = "MqttConfig::default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// Longest keep-alive granted, seconds; a connection with no packet for
    /// 1.5 × its keep-alive is closed.
    #[serde(default = "MqttConfig::default_max_keep_alive_secs")]
    pub max_keep_alive_secs: u16,
    /// Frames of one connection in ingest at once.
    #[serde(default = "MqttConfig::default_max_inflight")]
    pub max_inflight: usize,
}

impl MqttConfig {
    fn default_max_connections() -> usize {
        1024
    }
    fn default_max_connections_per_source() -> usize {
        16
    }
    fn default_connect_timeout_secs() -> u64 {
        10
    }
    fn default_max_keep_alive_secs() -> u16 {
        120
    }
    fn default_max_inflight() -> usize {
        16
    }

    /// The table with every default, listening on `listen`.
    pub fn new(listen: SocketAddr) -> MqttConfig {
        MqttConfig {
            listen,
            insecure_plain_tcp: false,
            max_connections: Self::default_max_connections(),
            max_connections_per_source: Self::default_max_connections_per_source(),
            connect_timeout_secs: Self::default_connect_timeout_secs(),
            max_keep_alive_secs: Self::default_max_keep_alive_secs(),
            max_inflight: Self::default_max_inflight(),
        }
    }
}

/// The `[cluster]` table: NATS JetStream as the frame log.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// NATS server URLs, comma-separated (`nats://host:4222,…`).
    pub nats: String,
    /// Partitions of the frame stream (subjects `<subject_prefix>.<p>`).
    #[serde(default = "ClusterConfig::default_partitions")]
    pub partitions: u32,
    /// Replicas of the frame stream (3 on a 3-node cluster; 1: development).
    #[serde(default = "ClusterConfig::default_replicas")]
    pub replicas: usize,
    /// The JetStream stream's name.
    #[serde(default = "ClusterConfig::default_stream")]
    pub stream: String,
    /// The subjects' prefix.
    #[serde(default = "ClusterConfig::default_subject_prefix")]
    pub subject_prefix: String,
    /// Longest a batch waits for JetStream's publish acknowledgements
    /// before its frames get 503 (ms).
    #[serde(default = "ClusterConfig::default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// JetStream's duplicate window (s): a device's retry within it is
    /// stored once.
    #[serde(default = "ClusterConfig::default_duplicate_window_secs")]
    pub duplicate_window_secs: u64,
    /// File holding the NATS token (`docs/scale.md`, "Securing NATS").
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// NATS user name (with `password_file`).
    #[serde(default)]
    pub user: Option<String>,
    /// File holding the NATS user's password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM file of the CA that signs the NATS servers' certificates: set,
    /// TLS to NATS is required.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate for NATS servers that verify clients (with
    /// `tls_key`).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

impl ClusterConfig {
    fn default_partitions() -> u32 {
        aorta_cluster::StreamSpec::default().partitions
    }
    fn default_replicas() -> usize {
        aorta_cluster::StreamSpec::default().replicas
    }
    fn default_stream() -> String {
        aorta_cluster::StreamSpec::default().stream
    }
    fn default_subject_prefix() -> String {
        aorta_cluster::StreamSpec::default().subject_prefix
    }
    fn default_ack_timeout_ms() -> u64 {
        5000
    }
    fn default_duplicate_window_secs() -> u64 {
        120
    }

    /// A table for the NATS servers at `nats` with every other key at its
    /// default.
    pub fn new(nats: &str) -> ClusterConfig {
        ClusterConfig {
            nats: nats.to_owned(),
            partitions: Self::default_partitions(),
            replicas: Self::default_replicas(),
            stream: Self::default_stream(),
            subject_prefix: Self::default_subject_prefix(),
            ack_timeout_ms: Self::default_ack_timeout_ms(),
            duplicate_window_secs: Self::default_duplicate_window_secs(),
            token_file: None,
            user: None,
            password_file: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
        }
    }

    /// The credentials and TLS trust for NATS, with the secrets read from
    /// their files.
    pub fn auth(&self) -> Result<aorta_cluster::NatsAuth, aorta_cluster::ClusterError> {
        use aorta_cluster::{ClusterError, NatsAuth};
        let token = match &self.token_file {
            Some(f) => Some(NatsAuth::read_secret(f, "token")?),
            None => None,
        };
        let user = match (&self.user, &self.password_file) {
            (Some(u), Some(f)) => Some((u.clone(), NatsAuth::read_secret(f, "password")?)),
            (None, None) => None,
            _ => {
                return Err(ClusterError::Config(
                    "cluster.user and cluster.password_file go together".into(),
                ));
            }
        };
        let tls_client = match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => {
                return Err(ClusterError::Config(
                    "cluster.tls_cert and cluster.tls_key go together".into(),
                ));
            }
        };
        Ok(NatsAuth {
            token,
            user,
            tls_ca: self.tls_ca.clone(),
            tls_client,
        })
    }

    /// The stream layout these settings give.
    pub fn spec(&self) -> aorta_cluster::StreamSpec {
        aorta_cluster::StreamSpec {
            stream: self.stream.clone(),
            subject_prefix: self.subject_prefix.clone(),
            partitions: self.partitions,
            replicas: self.replicas,
            duplicate_window: std::time::Duration::from_secs(self.duplicate_window_secs),
            ack_timeout: std::time::Duration::from_millis(self.ack_timeout_ms),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7443)),
            data_dir: PathBuf::from("aorta-data"),
            registry: PathBuf::from("registry"),
            directory: None,
            clinicians: None,
            broker_key: None,
            policy: None,
            broker_listen: SocketAddr::from(([127, 0, 0, 1], 7450)),
            subscribers: None,
            max_frame_bytes: 4 << 20,
            ingest_queue_frames: 8192,
            ingest_queue_bytes: 256 << 20,
            max_worker_lag_bytes: 1 << 30,
            log_poll_ms: 1000,
            tls_cert: None,
            tls_key: None,
            tls_names: vec!["localhost".into(), "127.0.0.1".into()],
            reneg_key_period_secs: 30 * 24 * 3600,
            reneg_min_observe_secs: 24 * 3600,
            max_connections: 4096,
            max_connections_per_source: 256,
            handshake_timeout_secs: 10,
            header_timeout_secs: 10,
            idle_timeout_secs: 60,
            request_timeout_secs: 30,
            worker_request_timeout_secs: 300,
            h2_max_streams: 16,
            h2_keepalive_secs: 20,
            body_budget_bytes: 256 << 20,
            connection_body_bytes: 8 << 20,
            source_frame_bytes_per_sec: 8 << 20,
            log_answer_bytes: 16 << 20,
            log_segment_bytes: None,
            log_retention_hours: None,
            results_segment_bytes: None,
            results_retention_hours: None,
            metrics_listen: None,
            cluster: None,
            mqtt: None,
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key or a wrong type.
    #[error("{}: {detail}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Parser message (line and column).
        detail: String,
    },
    /// A value is out of range.
    #[error("{}: {field}: {detail}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
}

impl ServerConfig {
    /// Parses `text` (from `path`, used for messages and relative paths).
    pub fn from_toml_str(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut c: ServerConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let rel = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rel(&mut c.data_dir);
        rel(&mut c.registry);
        for p in [
            &mut c.directory,
            &mut c.clinicians,
            &mut c.policy,
            &mut c.subscribers,
            &mut c.tls_cert,
            &mut c.tls_key,
        ]
        .into_iter()
        .flatten()
        {
            rel(p);
        }
        if let Some(cl) = c.cluster.as_mut() {
            for p in [
                &mut cl.token_file,
                &mut cl.password_file,
                &mut cl.tls_ca,
                &mut cl.tls_cert,
                &mut cl.tls_key,
            ]
            .into_iter()
            .flatten()
            {
                rel(p);
            }
        }
        c.validate(path)?;
        Ok(c)
    }

    /// Reads and validates a configuration file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_str(&text, path)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |field, detail: &str| {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                field,
                detail: detail.into(),
            })
        };
        if self.max_frame_bytes < 64 || self.max_frame_bytes > aorta_stream::log::MAX_RECORD - 64 {
            return bad("max_frame_bytes", "must be in [64, 16 MiB - 64]");
        }
        if self.ingest_queue_frames == 0 || self.ingest_queue_frames > 1 << 20 {
            return bad("ingest_queue_frames", "must be in [1, 1048576]");
        }
        if self.ingest_queue_bytes < self.max_frame_bytes {
            return bad("ingest_queue_bytes", "must be at least max_frame_bytes");
        }
        if self.log_poll_ms > 60_000 {
            return bad("log_poll_ms", "must be at most 60000");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("tls_cert", "tls_cert and tls_key go together");
        }
        if let Some(k) = &self.broker_key
            && aorta_base::hex::decode_array::<32>(k, aorta_base::hex::Case::Lower).is_err()
        {
            return bad("broker_key", "must be 64 lower-case hex digits");
        }
        if self.tls_names.is_empty() {
            return bad("tls_names", "needs at least one name");
        }
        if self.max_connections == 0 || self.max_connections > 1 << 20 {
            return bad("max_connections", "must be in [1, 1048576]");
        }
        if self.max_connections_per_source == 0 {
            return bad("max_connections_per_source", "must be at least 1");
        }
        for (field, v) in [
            ("handshake_timeout_secs", self.handshake_timeout_secs),
            ("header_timeout_secs", self.header_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
            (
                "worker_request_timeout_secs",
                self.worker_request_timeout_secs,
            ),
            ("h2_keepalive_secs", self.h2_keepalive_secs),
        ] {
            if v == 0 || v > 24 * 3600 {
                return bad(field, "must be in [1, 86400] seconds");
            }
        }
        if self.h2_max_streams == 0 || self.h2_max_streams > 1024 {
            return bad("h2_max_streams", "must be in [1, 1024]");
        }
        if self.connection_body_bytes < self.max_frame_bytes {
            return bad("connection_body_bytes", "must be at least max_frame_bytes");
        }
        if self.source_frame_bytes_per_sec != 0 && self.source_frame_bytes_per_sec < 1024 {
            return bad(
                "source_frame_bytes_per_sec",
                "must be 0 (no limit) or at least 1024",
            );
        }
        if self.log_answer_bytes < self.max_frame_bytes || self.log_answer_bytes > 1 << 30 {
            return bad("log_answer_bytes", "must be in [max_frame_bytes, 1 GiB]");
        }
        for (field, seg, keep) in [
            (
                "log_retention_hours",
                self.log_segment_bytes,
                self.log_retention_hours,
            ),
            (
                "results_retention_hours",
                self.results_segment_bytes,
                self.results_retention_hours,
            ),
        ] {
            if seg.is_some_and(|b| b < 1 << 20) {
                return bad(field, "its segment size must be at least 1 MiB");
            }
            if keep.is_some() && seg.is_none() {
                return bad(
                    field,
                    "retention needs a segment size (log_segment_bytes / results_segment_bytes)",
                );
            }
            if keep.is_some_and(|h| h == 0 || h > 24 * 365 * 100) {
                return bad(field, "must be in [1, 876000] hours");
            }
        }
        if let Some(c) = &self.cluster {
            if c.nats.trim().is_empty() {
                return bad("cluster.nats", "needs at least one nats:// URL");
            }
            if let Err(e) = c.spec().validate() {
                return bad("cluster", &e.to_string());
            }
            if let Err(e) = c.auth() {
                return bad("cluster", &e.to_string());
            }
        }
        if let Some(m) = &self.mqtt {
            if m.insecure_plain_tcp && !m.listen.ip().is_loopback() {
                return bad(
                    "mqtt.insecure_plain_tcp",
                    "plain TCP is allowed only on a loopback listen address",
                );
            }
            if m.max_connections == 0 || m.max_connections_per_source == 0 || m.max_inflight == 0 {
                return bad(
                    "mqtt",
                    "max_connections, max_connections_per_source and max_inflight must be at least 1",
                );
            }
            if m.connect_timeout_secs == 0 || m.max_keep_alive_secs == 0 {
                return bad(
                    "mqtt",
                    "connect_timeout_secs and max_keep_alive_secs must be at least 1",
                );
            }
        }
        if self.body_budget_bytes < self.connection_body_bytes {
            return bad(
                "body_budget_bytes",
                "must be at least connection_body_bytes",
            );
        }
        Ok(())
    }

    /// The configuration as TOML with every default written out (for
    /// `aorta server --print-default-config`).
    pub fn default_toml() -> &'static str {
        DEFAULT_TOML
    }
}

const DEFAULT_TOML: &str = r#"# aorta server configuration. Every key is optional; these are the defaults.
# Relative paths are relative to this file.

# HTTPS (HTTP/2 and HTTP/1.1 over TLS) listen address.
listen = "127.0.0.1:7443"
# Log of accepted frames, results, checkpoints, TLS certificate, secrets.
data_dir = "aorta-data"
# Device key registry made by `aorta factory init`: opened only by the
# in-process key broker (when `policy` is set). Keep it off the cloud host.
registry = "registry"
# Public device directory (serial, status, signing public key; no keys).
# Default: <registry>/directory.txt. Re-read when it changes.
# directory = "directory.txt"
# Clinicians who may read results: [clinicians] id = "auth key (hex)"
# (`aorta clinician public --auth`). Without it nobody can read results.
# clinicians = "clinicians.toml"
# The key broker's certifying public key (hex): only results signed by a
# worker it certified are stored. Default: the in-process broker's key.
# broker_key = "<64 hex digits>"
# Key broker policy; the broker is off when this is absent.
# policy = "policy.toml"
# Key broker (worker protocol, TCP).
broker_listen = "127.0.0.1:7450"
# Subscribers: [results] id = "clinician public key (hex)".
# subscribers = "subscribers.toml"
# Largest frame accepted (bytes); larger bodies get 413.
max_frame_bytes = 4194304
# Frames / bytes queued for the log writer before ingest answers 503.
ingest_queue_frames = 8192
ingest_queue_bytes = 268435456
# Log bytes not yet checkpointed by the worker before ingest answers 503.
max_worker_lag_bytes = 1073741824
# Longest a worker's log read waits for new frames (ms).
log_poll_ms = 1000
# TLS certificate and key (PEM); generated (self-signed) in data_dir if absent.
# tls_cert = "cert.pem"
# tls_key = "key.pem"
tls_names = ["localhost", "127.0.0.1"]

# --- limits (docs/server.md, "Limits"): what one client, or all of them,
# can hold. Memory stays under the bound `aorta server` logs at start.
# Connections open at once (also capped by the open-file limit); at the
# limit the longest-idle connection is closed to admit a new one.
max_connections = 4096
max_connections_per_source = 256
# Seconds: TLS handshake; HTTP/1.1 request headers (also idle keep-alive);
# no request in flight; one device/clinician request; one worker request.
handshake_timeout_secs = 10
header_timeout_secs = 10
idle_timeout_secs = 60
request_timeout_secs = 30
worker_request_timeout_secs = 300
# HTTP/2: concurrent streams per connection; keep-alive PING interval (s).
h2_max_streams = 16
h2_keepalive_secs = 20
# Frame bodies held in memory at once: all connections; one connection.
body_budget_bytes = 268435456
connection_body_bytes = 8388608
# Frame body bytes per second from one address (a burst of max_frame_bytes);
# beyond it that address's bodies are read more slowly. 0: no limit.
source_frame_bytes_per_sec = 8388608
# Largest answer to a worker's log read (bytes of records).
log_answer_bytes = 16777216

# --- retention (docs/server.md, "Retention"): off by default.
# frames.log in segments of this size; a segment is deleted once the
# worker's checkpoint passed it and its last write is this many hours old.
# log_segment_bytes = 268435456
# log_retention_hours = 720
# results.log in segments, deleted by age alone.
# results_segment_bytes = 268435456
# results_retention_hours = 2160

# --- operations port (docs/server.md, "Operations port"): off by default.
# Plain HTTP (no TLS): /metrics (Prometheus), /healthz, /readyz. Bind it to
# loopback or a management network only.
# metrics_listen = "127.0.0.1:9464"

# --- cluster mode (docs/scale.md): off by default (the embedded file log).
# Accepted frames go to a NATS JetStream stream; a device is acknowledged
# only after JetStream's publish acknowledgement.
# [cluster]
# nats = "nats://127.0.0.1:4222"     # several: comma-separated
# partitions = 16                     # subjects aorta.frames.<p>
# replicas = 1                        # 3 on a 3-node cluster
# stream = "AORTA_FRAMES"
# subject_prefix = "aorta.frames"
# ack_timeout_ms = 5000
# duplicate_window_secs = 120
# Securing NATS (docs/scale.md): credentials and TLS trust, secrets in files.
# token_file = "nats.token"           # or: user + password_file
# user = "aorta-ingest"
# password_file = "nats-ingest.password"
# tls_ca = "nats-ca.pem"              # set: TLS to NATS is required
# tls_cert = "nats-client.pem"        # for servers that verify clients
# tls_key = "nats-client-key.pem"

# --- MQTT front (docs/mqtt.md): off by default. Devices publish frames
# with QoS 1 to aorta/v1/frames/<serial>; same checks as HTTPS, PUBACK once
# durable. TLS with the server's certificate.
# [mqtt]
# listen = "127.0.0.1:8883"
# insecure_plain_tcp = false          # true only on a loopback address
# max_connections = 1024
# max_connections_per_source = 16
# connect_timeout_secs = 10           # TLS handshake + CONNECT
# max_keep_alive_secs = 120           # closed after 1.5 x keep-alive silent
# max_inflight = 16                   # frames of one connection in ingest
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_text_is_the_default() {
        let p = Path::new("/etc/aorta/server.toml");
        let mut c = ServerConfig::from_toml_str(DEFAULT_TOML, p).unwrap();
        assert_eq!(c.data_dir, Path::new("/etc/aorta/aorta-data"));
        c.data_dir = "aorta-data".into();
        c.registry = "registry".into();
        assert_eq!(c, ServerConfig::default());
    }

    #[test]
    fn hostile_configs_are_typed_errors() {
        let p = Path::new("x.toml");
        for bad in [
            "listen = 5",
            "nope = 1",
            "max_frame_bytes = 1",
            "ingest_queue_frames = 0",
            "tls_cert = \"a\"",
            "tls_names = []",
            "log_poll_ms = 99999999",
            "[[[",
            "max_frame_bytes = -1",
            "max_connections = 0",
            "max_connections_per_source = 0",
            "idle_timeout_secs = 0",
            "request_timeout_secs = 0",
            "h2_max_streams = 0",
            "connection_body_bytes = 100",
            "body_budget_bytes = 1000",
            "log_retention_hours = 5",
            "log_segment_bytes = 10\nlog_retention_hours = 5",
            "results_segment_bytes = 1048576\nresults_retention_hours = 0",
            "metrics_listen = \"localhost\"",
            "metrics_listen = 9464",
            "[cluster]",
            "[cluster]\nnats = \"\"",
            "[cluster]\nnats = \"nats://a\"\npartitions = 0",
            "[cluster]\nnats = \"nats://a\"\nreplicas = 7",
            "[cluster]\nnats = \"nats://a\"\nack_timeout_ms = 0",
            "[cluster]\nnats = \"nats://a\"\nstream = \"a.b\"",
            "[cluster]\nnats = \"nats://a\"\nnope = 1",
            "[mqtt]",
            "[mqtt]\nlisten = \"0.0.0.0:1883\"\ninsecure_plain_tcp = true",
            "[mqtt]\nlisten = \"127.0.0.1:1883\"\nmax_inflight = 0",
            "[mqtt]\nlisten = \"127.0.0.1:1883\"\nmax_connections = 0",
            "[mqtt]\nlisten = \"127.0.0.1:1883\"\nconnect_timeout_secs = 0",
            "[mqtt]\nlisten = \"127.0.0.1:1883\"\nmax_keep_alive_secs = 70000",
            "[mqtt]\nlisten = \"127.0.0.1:1883\"\nnope = 1",
        ] {
            assert!(ServerConfig::from_toml_str(bad, p).is_err(), "{bad}");
        }
    }

    #[test]
    fn mqtt_table() {
        let p = Path::new("/etc/aorta/server.toml");
        let c = ServerConfig::from_toml_str("[mqtt]\nlisten = \"0.0.0.0:8883\"\n", p).unwrap();
        assert_eq!(
            c.mqtt,
            Some(MqttConfig::new("0.0.0.0:8883".parse().unwrap()))
        );
        let c = ServerConfig::from_toml_str(
            "[mqtt]\nlisten = \"127.0.0.1:1883\"\ninsecure_plain_tcp = true\n",
            p,
        )
        .unwrap();
        assert!(c.mqtt.unwrap().insecure_plain_tcp);
        assert_eq!(ServerConfig::default().mqtt, None);
    }
}
