//! The key broker: nonce issuance, evidence verification, key release.
//!
//! Keys come from a [`KeySource`]. [`RegistryKeySource`] serves device keys
//! from the device key registry (`aorta-registry`): each device's **group
//! keys** `G_0 … G_(N-1)`, one per key index, released to the worker as
//! bundle entries named `SERIAL/INDEX` (serials are `[A-Za-z0-9._-]`, so the
//! `/` cannot collide with a serial). With `G_i` and the epoch in a frame's
//! header the worker derives that frame's transport key; it never holds a
//! factory key. Subscribers' result keys come from a key file.
//! [`MemoryKeySource`] is the in-memory implementation used by tests and by
//! the development key file of `aorta broker serve --keys`.

use crate::log_throttle::LogThrottle;
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use aorta_base::hex::encode as hex;
use aorta_crypto::refusal;
use aorta_enclave::evidence::{Evidence, Nonce};
use aorta_enclave::keywrap::{KeyBundle, Secret32, seal_bundle};
use aorta_enclave::verify::{Refusal, verify};
use aorta_enclave::wire::{self, Message, Role, WireError};

pub mod policy;

use policy::Policy;

/// Most outstanding (issued, unexpired) nonces, all sources together.
pub const MAX_OUTSTANDING_NONCES: usize = 100_000;
/// Most outstanding (issued, unused, unexpired) nonces of one source.
pub const MAX_NONCES_PER_SOURCE: usize = 256;
/// Challenges one source may ask for at once (its token bucket's size).
pub const CHALLENGE_BURST: u32 = 32;
/// Challenges per second one source may ask for after its burst (the
/// bucket's refill rate).
pub const CHALLENGES_PER_SEC: u32 = 2;
/// Most sources whose challenge rate is tracked at once (only sources that
/// asked within the last `CHALLENGE_BURST / CHALLENGES_PER_SEC` seconds
/// are tracked).
pub const MAX_TRACKED_SOURCES: usize = 65_536;
/// Most messages on one broker connection.
pub const MAX_MESSAGES_PER_CONNECTION: usize = 16;
/// Most concurrent connections served.
pub const MAX_CONNECTIONS: usize = 64;
/// Most concurrent connections served from one source.
pub const MAX_CONNECTIONS_PER_SOURCE: usize = 8;
/// How long one connection may last in all, however its bytes arrive.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);

/// The broker's load limits (`docs/worker-protocol.md`, "Limits"). A
/// *source* is the peer's IP address (an IPv6 peer: its /64 prefix).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Limits {
    /// Whole-connection deadline (not per read): the connection is closed
    /// when it passes, whatever state the exchange is in.
    pub connection_deadline: Duration,
    /// Most concurrent connections; when all are taken, new connections
    /// wait in the listen queue (not accepted) until one ends.
    pub max_connections: usize,
    /// Most concurrent connections of one source; one more is answered
    /// `Hello` + `Refused` 308 and closed.
    pub max_connections_per_source: usize,
    /// Token-bucket size of one source's challenge rate.
    pub challenge_burst: u32,
    /// Token-bucket refill rate (challenges per second) of one source.
    pub challenges_per_sec: u32,
    /// Most outstanding nonces in all (beyond: refusal 306).
    pub max_outstanding_nonces: usize,
    /// Most outstanding unused nonces of one source (beyond: refusal 307).
    pub max_nonces_per_source: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connection_deadline: CONNECTION_DEADLINE,
            max_connections: MAX_CONNECTIONS,
            max_connections_per_source: MAX_CONNECTIONS_PER_SOURCE,
            challenge_burst: CHALLENGE_BURST,
            challenges_per_sec: CHALLENGES_PER_SEC,
            max_outstanding_nonces: MAX_OUTSTANDING_NONCES,
            max_nonces_per_source: MAX_NONCES_PER_SOURCE,
        }
    }
}

impl Limits {
    /// The default limits with a different whole-connection deadline.
    pub fn with_connection_deadline(mut self, d: Duration) -> Self {
        self.connection_deadline = d;
        self
    }
    /// The default limits with different connection counts.
    pub fn with_connections(mut self, total: usize, per_source: usize) -> Self {
        self.max_connections = total.max(1);
        self.max_connections_per_source = per_source.max(1);
        self
    }
    /// The default limits with a different per-source challenge rate.
    pub fn with_challenge_rate(mut self, burst: u32, per_sec: u32) -> Self {
        self.challenge_burst = burst;
        self.challenges_per_sec = per_sec;
        self
    }
    /// The default limits with a different nonce table size and per-source share.
    pub fn with_nonces(mut self, total: usize, per_source: usize) -> Self {
        self.max_outstanding_nonces = total;
        self.max_nonces_per_source = per_source;
        self
    }
}

/// Where a request comes from, for the per-source limits: an IPv4 address,
/// an IPv6 /64 prefix (one host usually holds a whole /64), or the process
/// itself ([`Source::Local`]: in-process callers, not limited per source).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// An in-process caller ([`Broker::issue_nonce`], [`Broker::respond`]).
    Local,
    /// A network peer: its IPv4 address, or its IPv6 address with the low
    /// 64 bits cleared (an IPv4-mapped IPv6 address counts as IPv4).
    Ip(IpAddr),
}

impl Source {
    /// The source of a peer at `ip`.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Source::Ip(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source::Ip(IpAddr::V4(v4)),
                None => Source::Ip(IpAddr::V6(std::net::Ipv6Addr::from_bits(
                    v6.to_bits() & !u128::from(u64::MAX),
                ))),
            },
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Local => f.write_str("local"),
            Source::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
            Source::Ip(IpAddr::V6(a)) => write!(f, "{a}/64"),
        }
    }
}

/// Where the broker gets the keys it releases.
pub trait KeySource: Send + Sync {
    /// A single transport key of device `serial`, released under the name
    /// `SERIAL` (development key files; the registry has no such key).
    fn transport_key(&self, serial: &str) -> Option<Secret32>;
    /// The result key of subscriber `id`.
    fn result_key(&self, id: &str) -> Option<Secret32>;
    /// The group keys of device `serial`, index `i` at position `i`
    /// (`aorta_crypto::keys::transport_group_key`), released under the names
    /// `SERIAL/i`. When this returns `Some`, the broker releases these and
    /// not [`KeySource::transport_key`].
    fn transport_group_keys(&self, serial: &str) -> Option<Vec<Secret32>> {
        let _ = serial;
        None
    }
    /// The worker state key of `assignment` (sealing its checkpoints),
    /// released as the bundle entry [`STATE_KEY_NAME`]. Default: none.
    fn state_key(&self, assignment: &str) -> Option<Secret32> {
        let _ = assignment;
        None
    }
}

/// The bundle entry name of the worker state key (defined with the worker
/// protocol, which reads it).
pub use aorta_enclave::worker::STATE_KEY_NAME;

/// The bundle name of group key `index` of device `serial`: `SERIAL/INDEX`
/// (shared with the worker's opener).
pub use aorta_enclave::upload::group_key_name;

/// A [`KeySource`] backed by the device key registry for device keys and by
/// a [`MemoryKeySource`] (a result key file) for subscribers' result keys.
///
/// Device keys are released as group keys only, and only for registered
/// devices that passed key verification; refusals are logged (serial and
/// reason, never key bytes). The registry must not be opened by another
/// process (`aorta factory …`) while the broker runs: the store is locked.
pub struct RegistryKeySource {
    registry: Arc<aorta_registry::Registry>,
    results: MemoryKeySource,
    state_secret: Option<Secret32>,
}

impl std::fmt::Debug for RegistryKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryKeySource")
            .field("registry", &self.registry)
            .field("result_keys", &self.results.results.len())
            .finish()
    }
}

impl RegistryKeySource {
    /// Opens the registry in `dir`; result keys come from `results` (its
    /// transport table, if any, is not used).
    pub fn open(
        dir: &std::path::Path,
        results: MemoryKeySource,
    ) -> Result<Self, aorta_registry::RegistryError> {
        Ok(Self {
            registry: Arc::new(aorta_registry::Registry::open(dir)?),
            results,
            state_secret: None,
        })
    }

    /// A key source over an already open registry (shared with ingest,
    /// which reads only device records, never keys).
    pub fn from_registry(
        registry: Arc<aorta_registry::Registry>,
        results: MemoryKeySource,
    ) -> Self {
        Self {
            registry,
            results,
            state_secret: None,
        }
    }

    /// Also release worker state keys derived from `secret`
    /// (`aorta_crypto::keys::worker_state_key`).
    pub fn with_state_secret(mut self, secret: Secret32) -> Self {
        self.state_secret = Some(secret);
        self
    }
}

impl KeySource for RegistryKeySource {
    fn transport_key(&self, _serial: &str) -> Option<Secret32> {
        None
    }
    fn result_key(&self, id: &str) -> Option<Secret32> {
        self.results.result_key(id)
    }
    fn state_key(&self, assignment: &str) -> Option<Secret32> {
        let secret = self.state_secret.as_ref()?;
        match aorta_crypto::keys::worker_state_key(secret.expose(), assignment) {
            Ok(k) => Some(Secret32::from_bytes(*k)),
            Err(e) => {
                tracing::warn!(target: "aorta::broker", assignment = %assignment, reason = %e, "state key not derivable");
                None
            }
        }
    }
    fn transport_group_keys(&self, serial: &str) -> Option<Vec<Secret32>> {
        match self.registry.transport_group_keys(serial) {
            Ok(groups) => Some(groups.iter().map(|g| Secret32::from_bytes(**g)).collect()),
            Err(e) => {
                tracing::warn!(target: "aorta::broker", serial = %serial, reason = %e, "device keys not available from the registry");
                None
            }
        }
    }
}

/// The key source of a standalone broker (`aorta broker serve`): device
/// keys from the registry at `registry` (only the `[results]` table of the
/// key file `keys` is used then), or, without a registry, every key from the
/// development key file `keys` (clear keys on disk). Returns the source and
/// what the operator must be told.
pub fn standalone_key_source(
    registry: Option<&std::path::Path>,
    keys: Option<&std::path::Path>,
    state_secret: Option<Secret32>,
) -> anyhow::Result<(Arc<dyn KeySource>, Option<&'static str>)> {
    use anyhow::Context;
    let file_keys = match keys {
        Some(p) => MemoryKeySource::from_toml_file(p)?,
        None => MemoryKeySource::default(),
    };
    let Some(dir) = registry else {
        tracing::info!(target: "aorta::broker", source = ?file_keys, "device keys from a development key file");
        return Ok((
            Arc::new(file_keys),
            Some(
                "WARNING: device keys from a development key file (clear keys on disk); production uses --registry",
            ),
        ));
    };
    let note = (!file_keys.transport.is_empty()).then_some(
        "note: --registry given: the key file's [transport] table is ignored; device keys come from the registry",
    );
    let results = MemoryKeySource {
        results: file_keys.results,
        ..MemoryKeySource::default()
    };
    let mut src = RegistryKeySource::open(dir, results)
        .with_context(|| format!("cannot open the device key registry {}", dir.display()))?;
    if let Some(secret) = state_secret {
        src = src.with_state_secret(secret);
    }
    tracing::info!(target: "aorta::broker", source = ?src, "device keys from the registry");
    Ok((Arc::new(src), note))
}

/// An in-memory [`KeySource`].
#[derive(Default)]
pub struct MemoryKeySource {
    /// serial → transport key.
    pub transport: HashMap<String, Secret32>,
    /// subscriber → result key.
    pub results: HashMap<String, Secret32>,
}

impl std::fmt::Debug for MemoryKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MemoryKeySource {{ {} transport keys, {} result keys }}",
            self.transport.len(),
            self.results.len()
        )
    }
}

/// A development key file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Reading failed.
    #[error("cannot read key file {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Not the expected TOML.
    #[error("key file {path}: {detail}")]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong (never includes key material).
        detail: String,
    },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeyFile {
    #[serde(default)]
    transport: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    results: std::collections::BTreeMap<String, String>,
}

impl MemoryKeySource {
    /// Loads a **development** key file: TOML tables `[transport]`
    /// (serial = "64 hex digits") and `[results]` (subscriber = "64 hex
    /// digits"). The keys sit in clear on disk; production serves device
    /// keys from the registry ([`RegistryKeySource`]) and uses only the
    /// `[results]` table of such a file.
    pub fn from_toml_file(path: &std::path::Path) -> Result<Self, KeyFileError> {
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
            KeyFileError::Io {
                path: path.to_owned(),
                source,
            }
        })?);
        let parse_err = |detail: String| KeyFileError::Parse {
            path: path.to_owned(),
            detail,
        };
        let mut raw: RawKeyFile = toml::from_str(&text).map_err(|e| {
            // toml's message may quote the offending line, which could hold a key.
            parse_err(format!(
                "not a valid key file (TOML with [transport] and [results] tables){}",
                e.span()
                    .map(|s| format!(" near byte {}", s.start))
                    .unwrap_or_default()
            ))
        })?;
        let mut me = Self::default();
        for (kind, table, out) in [
            ("transport", &mut raw.transport, &mut me.transport),
            ("results", &mut raw.results, &mut me.results),
        ] {
            for (id, hexkey) in table.iter_mut() {
                let b = zeroize::Zeroizing::new(
                    aorta_base::hex::decode(hexkey.trim(), aorta_base::hex::Case::Any)
                        .unwrap_or_default(),
                );
                zeroize::Zeroize::zeroize(hexkey);
                let k: [u8; 32] = b.as_slice().try_into().map_err(|_| {
                    parse_err(format!(
                        "[{kind}] {id:?}: a key is 64 hex digits (32 bytes)"
                    ))
                })?;
                out.insert(id.clone(), Secret32::from_bytes(k));
            }
        }
        Ok(me)
    }
}

impl KeySource for MemoryKeySource {
    fn transport_key(&self, serial: &str) -> Option<Secret32> {
        self.transport.get(serial).cloned()
    }
    fn result_key(&self, id: &str) -> Option<Secret32> {
        self.results.get(id).cloned()
    }
}

/// Why the broker refused a request. Codes: 1xx evidence/policy
/// ([`Refusal::code`]), 3xx broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerRefusal {
    /// The evidence failed verification.
    #[error(transparent)]
    Evidence(#[from] Refusal),
    /// The nonce was never issued, or was already used (replay).
    #[error("nonce {nonce} is unknown or already used (replay?)")]
    UnknownNonce {
        /// Nonce (hex).
        nonce: String,
    },
    /// The challenge was issued too long ago.
    #[error("challenge expired: issued at {issued_at}, now {now}")]
    ChallengeExpired {
        /// Issuance time.
        issued_at: u64,
        /// Now.
        now: u64,
    },
    /// No such assignment in the policy.
    #[error("unknown assignment {name:?}")]
    UnknownAssignment {
        /// Name asked for.
        name: String,
    },
    /// A device outside the worker's assignment was requested.
    #[error("device {serial:?} is not in assignment {assignment:?}")]
    DeviceOutsideAssignment {
        /// The serial.
        serial: String,
        /// The assignment.
        assignment: String,
    },
    /// A subscriber outside the worker's assignment was requested.
    #[error("subscriber {id:?} is not in assignment {assignment:?}")]
    SubscriberOutsideAssignment {
        /// The subscriber.
        id: String,
        /// The assignment.
        assignment: String,
    },
    /// The key source has no key for an assigned device or subscriber (configuration).
    #[error("no key registered for {what} {id:?}")]
    KeyUnavailable {
        /// "device" or "subscriber".
        what: &'static str,
        /// Its id.
        id: String,
    },
    /// Too many outstanding challenges.
    #[error("too many outstanding challenges; retry later")]
    Busy,
    /// This source asked for challenges faster than its rate.
    #[error(
        "too many challenges from this source (at most {burst} at once, then {per_sec} per second); retry later"
    )]
    RateLimited {
        /// Token-bucket size.
        burst: u32,
        /// Refill rate per second.
        per_sec: u32,
    },
    /// This source holds its whole share of outstanding challenges.
    #[error(
        "this source holds {held} unused challenges (its share of the nonce table); use them or retry after they expire"
    )]
    SourceShareFull {
        /// Outstanding unused nonces of the source.
        held: usize,
    },
    /// This source already has its most concurrent connections.
    #[error("too many concurrent connections from this source (at most {limit}); retry later")]
    TooManyConnections {
        /// The per-source limit.
        limit: usize,
    },
    /// A key window request is malformed.
    #[error("bad key window request: {detail}")]
    BadWindow {
        /// What is wrong.
        detail: String,
    },
    /// Sealing failed (our bug or a broken attested key).
    #[error("key wrapping failed: {detail}")]
    Internal {
        /// Detail.
        detail: String,
    },
}

impl BrokerRefusal {
    /// Stable wire code (3xx, or the verifier's 1xx), from the one
    /// registry ([`refusal`]).
    pub fn code(&self) -> u16 {
        match self {
            BrokerRefusal::Evidence(r) => r.code(),
            BrokerRefusal::UnknownNonce { .. } => refusal::BROKER_UNKNOWN_NONCE,
            BrokerRefusal::ChallengeExpired { .. } => refusal::BROKER_CHALLENGE_EXPIRED,
            BrokerRefusal::UnknownAssignment { .. } => refusal::BROKER_UNKNOWN_ASSIGNMENT,
            BrokerRefusal::DeviceOutsideAssignment { .. } => {
                refusal::BROKER_DEVICE_OUTSIDE_ASSIGNMENT
            }
            BrokerRefusal::SubscriberOutsideAssignment { .. } => {
                refusal::BROKER_SUBSCRIBER_OUTSIDE_ASSIGNMENT
            }
            BrokerRefusal::KeyUnavailable { .. } => refusal::BROKER_KEY_UNAVAILABLE,
            BrokerRefusal::Busy => refusal::BROKER_BUSY,
            BrokerRefusal::RateLimited { .. } | BrokerRefusal::SourceShareFull { .. } => {
                refusal::BROKER_RATE_LIMITED
            }
            BrokerRefusal::TooManyConnections { .. } => refusal::BROKER_TOO_MANY_CONNECTIONS,
            BrokerRefusal::BadWindow { .. } => refusal::BROKER_BAD_WINDOW,
            BrokerRefusal::Internal { .. } => refusal::BROKER_INTERNAL,
        }
    }
}

/// A key request as the broker sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseRequest {
    /// Encoded evidence.
    pub evidence: Vec<u8>,
    /// Assignment name.
    pub assignment: String,
    /// Devices requested (empty: all of the assignment's).
    pub devices: Vec<String>,
    /// Subscribers requested (empty: all of the assignment's).
    pub subscribers: Vec<String>,
}

/// A key window request as the broker sees it (`KeyWindowRequest`,
/// `docs/worker-protocol.md`, "Key windows"): each device's group keys are
/// released only for `width` key indices from its first, wrapping around
/// its slice as the device's own rotation does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowRequest {
    /// Encoded evidence.
    pub evidence: Vec<u8>,
    /// Assignment name.
    pub assignment: String,
    /// Key indices per device (≥ 1; at least the slice's length: all).
    pub width: u16,
    /// Which devices, from which index.
    pub devices: wire::DeviceSelection,
    /// Subscribers requested (empty: all of the assignment's).
    pub subscribers: Vec<String>,
}

/// What a successful release contained (for the caller's logs and tests; no key bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Released {
    /// The HPKE-sealed bundle for the worker.
    pub sealed: Vec<u8>,
    /// Devices whose transport keys were released.
    pub devices: Vec<String>,
    /// Subscribers whose result keys were released.
    pub subscribers: Vec<String>,
}

type Clock = dyn Fn() -> u64 + Send + Sync;

/// Logs a key-release decision (counts and the refusal, never key bytes)
/// and passes it on; `key_window`: the width of a windowed release.
fn log_decision(
    assignment: &str,
    key_window: Option<u16>,
    res: Result<Released, BrokerRefusal>,
) -> Result<Released, BrokerRefusal> {
    match &res {
        Ok(r) => tracing::info!(
            target: "aorta::broker",
            decision = "release",
            assignment = %assignment,
            devices = r.devices.len(),
            key_window,
            subscribers = r.subscribers.len(),
            "keys released to attested worker"
        ),
        Err(e) => tracing::warn!(
            target: "aorta::broker",
            decision = "refuse",
            code = e.code(),
            assignment = %assignment,
            key_window,
            reason = %e,
            "key request refused"
        ),
    }
    res
}

/// The key broker.
pub struct Broker {
    policy: Policy,
    keys: Arc<dyn KeySource>,
    nonces: Mutex<NonceStore>,
    clock: Box<Clock>,
    signer: Option<Arc<aorta_crypto::auth::SigningKey>>,
    limits: Limits,
    rate_log: LogThrottle,
}

/// How long a worker certificate is valid: a worker re-attests (restarts)
/// within this time to keep its results accepted.
pub const CERT_VALIDITY_SECS: u64 = 30 * 24 * 3600;

/// Reads the broker's certifying key (an Ed25519 seed, 64 hex digits, mode
/// 0600) from `path`, creating it when the file does not exist.
pub fn load_or_create_signing_key(
    path: &std::path::Path,
) -> anyhow::Result<aorta_crypto::auth::SigningKey> {
    let seed = crate::http::load_or_create_secret(path)?;
    Ok(aorta_crypto::auth::SigningKey::from_seed(&seed)?)
}

/// Outstanding nonces: a map for lookup plus the issuance order, so expired
/// entries are pruned from the front in amortised O(1); the unused nonces
/// each source holds; each source's challenge token bucket.
#[derive(Default)]
struct NonceStore {
    live: HashMap<[u8; 32], (u64, Source)>,
    order: std::collections::VecDeque<([u8; 32], u64)>,
    held: HashMap<Source, usize>,
    buckets: HashMap<Source, Bucket>,
    last_sweep: Option<Instant>,
}

impl NonceStore {
    fn prune(&mut self, now: u64, ttl: u64) {
        while let Some(&(n, t)) = self.order.front() {
            if now.saturating_sub(t) <= ttl {
                break;
            }
            self.order.pop_front();
            self.take(&n);
        }
    }

    /// Removes `nonce` from the live set: its issuance time, if it was live.
    fn take(&mut self, nonce: &[u8; 32]) -> Option<u64> {
        let (issued_at, src) = self.live.remove(nonce)?;
        if let Some(c) = self.held.get_mut(&src) {
            *c = c.saturating_sub(1);
            if *c == 0 {
                self.held.remove(&src);
            }
        }
        Some(issued_at)
    }

    /// Takes one challenge token of `src`: `Ok(())`, or why not.
    fn take_token(&mut self, src: Source, limits: &Limits) -> Result<(), BrokerRefusal> {
        let now = Instant::now();
        let (burst, rate) = (limits.challenge_burst, limits.challenges_per_sec);
        if !self.buckets.contains_key(&src) && self.buckets.len() >= MAX_TRACKED_SOURCES {
            // Forget sources whose bucket has refilled (the same as never
            // seen), at most once a second.
            if self
                .last_sweep
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                self.last_sweep = Some(now);
                self.buckets.retain(|_, b| !b.refill(now, burst, rate));
            }
            if self.buckets.len() >= MAX_TRACKED_SOURCES {
                return Err(BrokerRefusal::Busy);
            }
        }
        let b = self.buckets.entry(src).or_insert(Bucket {
            tokens: f64::from(burst),
            at: now,
        });
        b.refill(now, burst, rate);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(BrokerRefusal::RateLimited {
                burst,
                per_sec: rate,
            })
        }
    }
}

/// A token bucket: `tokens` as of `at`.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Adds the tokens earned since `at`; true when the bucket is full.
    fn refill(&mut self, now: Instant, burst: u32, per_sec: u32) -> bool {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * f64::from(per_sec);
        self.tokens = (self.tokens + earned).min(f64::from(burst));
        self.at = now;
        self.tokens >= f64::from(burst)
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker with the system clock.
    pub fn new(policy: Policy, keys: Arc<dyn KeySource>) -> Self {
        Self::with_clock(policy, keys, Box::new(aorta_base::time::now_s))
    }

    /// A broker with a given clock (tests).
    pub fn with_clock(policy: Policy, keys: Arc<dyn KeySource>, clock: Box<Clock>) -> Self {
        if policy.verifier.allow_simulation {
            tracing::warn!(target: "aorta::broker", "policy sets allow_simulation = true: {}", aorta_enclave::SIM_WARNING);
        }
        Self {
            policy,
            keys,
            nonces: Mutex::new(NonceStore::default()),
            clock,
            signer: None,
            limits: Limits::default(),
            rate_log: LogThrottle::default(),
        }
    }

    /// Uses `limits` instead of the defaults ([`Limits::default`]).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The load limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Certifies a fresh result-signing key for every worker it releases
    /// keys to, with `key` (`docs/authentication.md`): the seed goes into
    /// the sealed bundle, the certificate beside it.
    pub fn with_signer(mut self, key: aorta_crypto::auth::SigningKey) -> Self {
        self.signer = Some(Arc::new(key));
        self
    }

    /// The certifying public key clinicians and the server pin, if any.
    pub fn signer_public(&self) -> Option<[u8; 32]> {
        self.signer.as_ref().map(|k| k.public())
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn lock_nonces(&self) -> std::sync::MutexGuard<'_, NonceStore> {
        // A poisoned lock only means another thread panicked mid-update of a
        // plain map; its content is still a valid map.
        self.nonces.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a fresh single-use nonce to an in-process caller
    /// ([`Source::Local`]: only the table's total bound applies).
    pub fn issue_nonce(&self) -> Result<(Nonce, u64), BrokerRefusal> {
        self.issue_nonce_to(Source::Local)
    }

    /// Issues a fresh single-use nonce to `source`, within its challenge
    /// rate and its share of the nonce table, and the table's total bound.
    pub fn issue_nonce_to(&self, source: Source) -> Result<(Nonce, u64), BrokerRefusal> {
        let res = self.issue_nonce_inner(source);
        if let Err(e) = &res
            && let Some(suppressed) = self.rate_log.allow()
        {
            tracing::warn!(target: "aorta::broker", decision = "refuse", code = e.code(), source = %source, suppressed, reason = %e, "challenge refused");
        }
        res
    }

    fn issue_nonce_inner(&self, source: Source) -> Result<(Nonce, u64), BrokerRefusal> {
        let now = (self.clock)();
        let ttl = self.policy.verifier.freshness_secs;
        let nonce = Nonce::random().map_err(|e| BrokerRefusal::Internal {
            detail: format!("random generator: {e}"),
        })?;
        let lim = &self.limits;
        let mut store = self.lock_nonces();
        store.prune(now, ttl);
        if source != Source::Local {
            let held = store.held.get(&source).copied().unwrap_or(0);
            if held >= lim.max_nonces_per_source {
                return Err(BrokerRefusal::SourceShareFull { held });
            }
        }
        if store.order.len() >= lim.max_outstanding_nonces {
            return Err(BrokerRefusal::Busy);
        }
        if source != Source::Local {
            store.take_token(source, lim)?;
            *store.held.entry(source).or_insert(0) += 1;
        }
        store.live.insert(nonce.0, (now, source));
        store.order.push_back((nonce.0, now));
        drop(store);
        tracing::debug!(target: "aorta::broker", nonce = %nonce.to_hex(), source = %source, "challenge issued");
        Ok((nonce, now))
    }

    /// Verifies the evidence in `req` and releases the assignment's keys, or
    /// refuses. Logs the decision either way.
    pub fn release(&self, req: &ReleaseRequest) -> Result<Released, BrokerRefusal> {
        log_decision(&req.assignment, None, self.release_inner(req))
    }

    /// Verifies the evidence in `req` and releases a window of each
    /// requested device's group keys (with the subscribers' result keys, the
    /// state key and a certificate, as [`Broker::release`]), or refuses.
    /// Logs the decision either way.
    pub fn release_windowed(&self, req: &WindowRequest) -> Result<Released, BrokerRefusal> {
        log_decision(
            &req.assignment,
            Some(req.width),
            self.release_windowed_inner(req),
        )
    }

    fn release_windowed_inner(&self, req: &WindowRequest) -> Result<Released, BrokerRefusal> {
        let bad = |detail: &str| BrokerRefusal::BadWindow {
            detail: detail.to_owned(),
        };
        // The request's own form first: a malformed one costs no nonce.
        if req.width == 0 {
            return Err(bad("width 0"));
        }
        if matches!(req.devices, wire::DeviceSelection::Page { max: 0, .. }) {
            return Err(bad("page size 0"));
        }
        let (worker, a, now) = self.verified(&req.evidence, &req.assignment)?;
        let plan: Vec<(String, Option<u16>)> = match &req.devices {
            wire::DeviceSelection::Page { after, max } => {
                use std::ops::Bound::{Excluded, Unbounded};
                a.devices
                    .range::<str, _>((Excluded(after.as_str()), Unbounded))
                    .take(usize::from(*max))
                    .map(|d| (d.clone(), Some(0)))
                    .collect()
            }
            wire::DeviceSelection::Listed(list) => {
                let mut seen = BTreeSet::new();
                for (d, _) in list {
                    if !a.devices.contains(d) {
                        return Err(BrokerRefusal::DeviceOutsideAssignment {
                            serial: d.clone(),
                            assignment: a.name.clone(),
                        });
                    }
                    if !seen.insert(d.as_str()) {
                        return Err(bad(&format!("device {d:?} listed twice")));
                    }
                }
                list.iter()
                    .map(|(d, from)| (d.clone(), Some(*from)))
                    .collect()
            }
        };
        self.seal_release(&worker, a, now, &plan, Some(req.width), &req.subscribers)
    }

    /// The evidence verified against a fresh nonce, and the assignment.
    fn verified(
        &self,
        evidence: &[u8],
        assignment: &str,
    ) -> Result<
        (
            aorta_enclave::verify::AttestedWorker,
            &policy::Assignment,
            u64,
        ),
        BrokerRefusal,
    > {
        let evidence = Evidence::decode(evidence).map_err(Refusal::from)?;
        let now = (self.clock)();
        // Single use: the nonce is consumed whatever the outcome.
        let issued_at = self
            .lock_nonces()
            .take(&evidence.claims.nonce.0)
            .ok_or_else(|| BrokerRefusal::UnknownNonce {
                nonce: evidence.claims.nonce.to_hex(),
            })?;
        let worker = verify(
            &evidence,
            &evidence.claims.nonce,
            now,
            &self.policy.verifier,
        )?;
        if now.saturating_sub(issued_at) > self.policy.verifier.freshness_secs {
            return Err(BrokerRefusal::ChallengeExpired { issued_at, now });
        }
        tracing::info!(
            target: "aorta::broker",
            backend = %worker.backend(),
            hardware_protected = worker.hardware_protected(),
            measurement = %hex(worker.measurement()),
            tcb = worker.tcb_status().unwrap_or("n/a"),
            "evidence verified"
        );
        if !worker.hardware_protected() {
            tracing::warn!(target: "aorta::broker", "{}", aorta_enclave::SIM_WARNING);
        }
        let a =
            self.policy
                .assignment(assignment)
                .ok_or_else(|| BrokerRefusal::UnknownAssignment {
                    name: assignment.to_owned(),
                })?;
        Ok((worker, a, now))
    }

    fn release_inner(&self, req: &ReleaseRequest) -> Result<Released, BrokerRefusal> {
        let (worker, a, now) = self.verified(&req.evidence, &req.assignment)?;
        let devices: BTreeSet<String> = if req.devices.is_empty() {
            a.devices.clone()
        } else {
            req.devices.iter().cloned().collect()
        };
        if let Some(d) = devices.iter().find(|d| !a.devices.contains(*d)) {
            return Err(BrokerRefusal::DeviceOutsideAssignment {
                serial: d.clone(),
                assignment: a.name.clone(),
            });
        }
        let plan: Vec<(String, Option<u16>)> = devices.into_iter().map(|d| (d, None)).collect();
        self.seal_release(&worker, a, now, &plan, None, &req.subscribers)
    }

    /// The sealed bundle of `plan`'s devices (each with the first key index
    /// of its window, or `None`: its whole slice), `width` indices per
    /// window, and the requested subscribers (empty: all of `a`'s).
    fn seal_release(
        &self,
        worker: &aorta_enclave::verify::AttestedWorker,
        a: &policy::Assignment,
        now: u64,
        plan: &[(String, Option<u16>)],
        width: Option<u16>,
        requested_subscribers: &[String],
    ) -> Result<Released, BrokerRefusal> {
        let subscribers: BTreeSet<String> = if requested_subscribers.is_empty() {
            a.subscribers.clone()
        } else {
            requested_subscribers.iter().cloned().collect()
        };
        if let Some(s) = subscribers.iter().find(|s| !a.subscribers.contains(*s)) {
            return Err(BrokerRefusal::SubscriberOutsideAssignment {
                id: s.clone(),
                assignment: a.name.clone(),
            });
        }
        let mut bundle = KeyBundle::new(&a.name);
        for (d, from) in plan {
            let unavailable = || BrokerRefusal::KeyUnavailable {
                what: "device",
                id: d.clone(),
            };
            match self.keys.transport_group_keys(d) {
                Some(groups) if groups.is_empty() => return Err(unavailable()),
                Some(groups) => {
                    let n = u16::try_from(groups.len()).map_err(|_| BrokerRefusal::Internal {
                        detail: format!("device {d} has more than 65535 group keys"),
                    })?;
                    let indices: Vec<u16> = match (from, width) {
                        (Some(from), Some(w)) if w < n => {
                            if *from >= n {
                                return Err(BrokerRefusal::BadWindow {
                                    detail: format!(
                                        "key index {from} is outside device {d}'s slice of {n}"
                                    ),
                                });
                            }
                            bundle.slices.push((d.clone(), n));
                            (0..w)
                                .map(|k| ((u32::from(*from) + u32::from(k)) % u32::from(n)) as u16)
                                .collect()
                        }
                        (Some(from), _) if *from >= n => {
                            return Err(BrokerRefusal::BadWindow {
                                detail: format!(
                                    "key index {from} is outside device {d}'s slice of {n}"
                                ),
                            });
                        }
                        _ => (0..n).collect(),
                    };
                    for i in indices {
                        let g = groups.get(usize::from(i)).cloned().ok_or_else(|| {
                            BrokerRefusal::Internal {
                                detail: format!("device {d} has no group key {i}"),
                            }
                        })?;
                        bundle.transport_keys.push((group_key_name(d, i), g));
                    }
                }
                None => {
                    let k = self.keys.transport_key(d).ok_or_else(unavailable)?;
                    bundle.transport_keys.push((d.clone(), k));
                }
            }
        }
        for s in &subscribers {
            let k = self
                .keys
                .result_key(s)
                .ok_or_else(|| BrokerRefusal::KeyUnavailable {
                    what: "subscriber",
                    id: s.clone(),
                })?;
            bundle.result_keys.push((s.clone(), k));
        }
        if let Some(k) = self.keys.state_key(&a.name) {
            bundle.transport_keys.push((STATE_KEY_NAME.to_owned(), k));
        }
        if let Some(signer) = &self.signer {
            let key = aorta_crypto::auth::SigningKey::generate().map_err(|e| {
                BrokerRefusal::Internal {
                    detail: e.to_string(),
                }
            })?;
            let cert = aorta_crypto::auth::WorkerCert::issue(
                signer,
                key.public(),
                now,
                now.saturating_add(CERT_VALIDITY_SECS),
                worker.hardware_protected(),
                worker.backend().name(),
                worker.measurement(),
                &a.name,
                &subscribers.iter().cloned().collect::<Vec<_>>(),
            );
            bundle.transport_keys.push((
                aorta_enclave::worker::RESULT_SIGNING_KEY_NAME.to_owned(),
                Secret32::from_bytes(*key.seed()),
            ));
            bundle.certificate = aorta_base::codec::Encode::to_bytes(&cert);
        }
        let sealed = seal_bundle(worker, &bundle).map_err(|e| BrokerRefusal::Internal {
            detail: e.to_string(),
        })?;
        Ok(Released {
            sealed,
            devices: plan.iter().map(|(d, _)| d.clone()).collect(),
            subscribers: subscribers.into_iter().collect(),
        })
    }

    /// Serves one in-process worker connection ([`Source::Local`]): see
    /// [`Broker::handle_connection_from`].
    pub fn handle_connection<S: Read + Write>(&self, s: &mut S) -> Result<(), WireError> {
        self.handle_connection_from(Source::Local, s)
    }

    /// Serves one worker connection from `source`: `Hello`, then
    /// `ChallengeRequest` and `KeyRequest` messages until the peer closes
    /// or sends [`MAX_MESSAGES_PER_CONNECTION`] messages. Deadlines are the
    /// stream's ([`serve`] gives each TCP connection its whole-connection
    /// deadline).
    pub fn handle_connection_from<S: Read + Write>(
        &self,
        source: Source,
        s: &mut S,
    ) -> Result<(), WireError> {
        let peer = wire::handshake(s, Role::Broker)?;
        if peer != Role::Worker {
            return Err(WireError::Unexpected {
                got: "Hello from a non-worker",
                expected: "Hello from a worker",
            });
        }
        for _ in 0..MAX_MESSAGES_PER_CONNECTION {
            let Some(msg) = wire::read_message(s)? else {
                return Ok(());
            };
            let reply = self.respond_to(source, msg)?;
            wire::write_message(s, &reply)?;
        }
        Ok(())
    }

    /// Answers one message of an in-process caller ([`Source::Local`]).
    pub fn respond(&self, msg: Message) -> Result<Message, WireError> {
        self.respond_to(Source::Local, msg)
    }

    /// Answers one worker message from `source`, independent of the
    /// transport (the TCP server above; an HTTP route can call it the same
    /// way after its own handshake): `ChallengeRequest` → `Challenge`,
    /// `KeyRequest` → `KeyRelease` or `Refused`; anything else is a
    /// protocol error.
    pub fn respond_to(&self, source: Source, msg: Message) -> Result<Message, WireError> {
        Ok(match msg {
            Message::ChallengeRequest => match self.issue_nonce_to(source) {
                Ok((nonce, issued_at)) => Message::Challenge { nonce, issued_at },
                Err(e) => refused(&e),
            },
            Message::KeyRequest {
                evidence,
                assignment,
                devices,
                subscribers,
            } => match self.release(&ReleaseRequest {
                evidence,
                assignment,
                devices,
                subscribers,
            }) {
                Ok(r) => Message::KeyRelease { sealed: r.sealed },
                Err(e) => refused(&e),
            },
            Message::KeyWindowRequest {
                evidence,
                assignment,
                width,
                devices,
                subscribers,
            } => match self.release_windowed(&WindowRequest {
                evidence,
                assignment,
                width,
                devices,
                subscribers,
            }) {
                Ok(r) => Message::KeyRelease { sealed: r.sealed },
                Err(e) => refused(&e),
            },
            other => {
                return Err(WireError::Unexpected {
                    got: other.name(),
                    expected: "ChallengeRequest, KeyRequest or KeyWindowRequest",
                });
            }
        })
    }
}

/// Longest human-readable refusal text sent (the code carries the meaning;
/// a hostile 60 KiB device name must not make the refusal unsendable).
const MAX_REASON_LEN: usize = 1024;

fn refused(e: &BrokerRefusal) -> Message {
    let mut reason = e.to_string();
    if reason.len() > MAX_REASON_LEN {
        let mut cut = MAX_REASON_LEN;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        reason.push('…');
    }
    Message::Refused {
        code: e.code(),
        reason,
    }
}

/// Accepts connections on `listener` forever, one thread per connection,
/// within the broker's [`Limits`]:
///
/// * each connection is closed at its whole-connection deadline, however
///   slowly its bytes arrive;
/// * one more connection than a source's limit is answered `Hello` +
///   `Refused` 308 at once and closed (no thread, no slot);
/// * when every slot is taken, the broker stops accepting: new connections
///   wait in the kernel's listen queue, in arrival order, and are served
///   when a slot frees (at the latest one deadline later).
pub fn serve(listener: TcpListener, broker: Arc<Broker>) -> std::io::Result<()> {
    let limits = broker.limits().clone();
    let slots = Arc::new(Slots {
        state: Mutex::new(SlotState::default()),
        freed: Condvar::new(),
        total: limits.max_connections.max(1),
        per_source: limits.max_connections_per_source.max(1),
    });
    let full_log = LogThrottle::default();
    let refused_log = LogThrottle::default();
    let ended_log = Arc::new(LogThrottle::default());
    loop {
        if slots.wait_free()
            && let Some(suppressed) = full_log.allow()
        {
            tracing::warn!(target: "aorta::broker", limit = slots.total, suppressed, "every broker connection slot was taken; new connections waited in the listen queue");
        }
        let (stream, addr) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(target: "aorta::broker", error = %e, "accept failed");
                // Out of descriptors, say: do not spin.
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let source = Source::of(addr.ip());
        let Some(slot) = Slots::take(&slots, source) else {
            if let Some(suppressed) = refused_log.allow() {
                tracing::warn!(target: "aorta::broker", source = %source, limit = slots.per_source, suppressed, code = refusal::BROKER_TOO_MANY_CONNECTIONS, "too many connections from one source; refused");
            }
            refuse_connection(
                &stream,
                &BrokerRefusal::TooManyConnections {
                    limit: slots.per_source,
                },
            );
            continue;
        };
        let b = Arc::clone(&broker);
        let deadline = limits.connection_deadline;
        let ended = Arc::clone(&ended_log);
        let spawned = std::thread::Builder::new()
            .name("aorta-broker-conn".into())
            .spawn(move || {
                let _slot = slot;
                let mut s = DeadlineStream {
                    s: &stream,
                    until: Instant::now() + deadline,
                };
                if let Err(e) = b.handle_connection_from(source, &mut s)
                    && let Some(suppressed) = ended.allow() {
                        tracing::warn!(target: "aorta::broker", peer = %addr, error = %e, suppressed, "connection ended with an error");
                    }
            });
        if let Err(e) = spawned {
            tracing::warn!(target: "aorta::broker", error = %e, "cannot start a connection thread");
        }
    }
}

/// Answers a connection the broker will not serve with `Hello` + `Refused`
/// and closes it, without blocking the accept loop: the peer's bytes that
/// already arrived are read first (so the close is a FIN, not a reset that
/// could discard the refusal before the peer reads it).
fn refuse_connection(stream: &TcpStream, why: &BrokerRefusal) {
    let mut out = Vec::new();
    for m in [
        Message::Hello {
            version: wire::PROTOCOL_VERSION,
            role: Role::Broker,
        },
        refused(why),
    ] {
        if let Ok(b) = m.encode() {
            out.extend(b);
        }
    }
    let _ = stream.set_nonblocking(true);
    let mut sink = [0u8; 1024];
    for _ in 0..8 {
        match (&*stream).read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    // A fresh socket's send buffer takes these ~100 bytes at once.
    let _ = (&*stream).write_all(&out);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// The connection slots: how many are taken, in all and per source.
struct Slots {
    state: Mutex<SlotState>,
    freed: Condvar,
    total: usize,
    per_source: usize,
}

#[derive(Default)]
struct SlotState {
    taken: usize,
    by_source: HashMap<Source, usize>,
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks until a slot is free; true if it had to wait.
    fn wait_free(&self) -> bool {
        let mut g = self.lock();
        let waited = g.taken >= self.total;
        while g.taken >= self.total {
            g = self.freed.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        waited
    }

    /// A slot for `source`, unless the source holds its limit already.
    fn take(me: &Arc<Self>, source: Source) -> Option<Slot> {
        let mut g = me.lock();
        let n = g.by_source.entry(source).or_insert(0);
        if *n >= me.per_source {
            return None;
        }
        *n += 1;
        g.taken += 1;
        Some(Slot {
            slots: Arc::clone(me),
            source,
        })
    }
}

/// A taken slot, given back when dropped (also if its thread panics).
struct Slot {
    slots: Arc<Slots>,
    source: Source,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut g = self.slots.lock();
        g.taken = g.taken.saturating_sub(1);
        if let Some(n) = g.by_source.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                g.by_source.remove(&self.source);
            }
        }
        drop(g);
        self.slots.freed.notify_one();
    }
}

/// A TCP stream with one deadline for the whole connection: every read and
/// write waits at most until `until`, and fails with `TimedOut` after it.
struct DeadlineStream<'a> {
    s: &'a TcpStream,
    until: Instant,
}

impl DeadlineStream<'_> {
    fn left(&self) -> std::io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection deadline passed",
            ));
        }
        Ok(left)
    }
}

/// A timed-out socket call reports `WouldBlock` on Unix: say `TimedOut`.
fn timed_out(e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::WouldBlock {
        std::io::Error::new(std::io::ErrorKind::TimedOut, "connection deadline passed")
    } else {
        e
    }
}

impl Read for DeadlineStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.s.set_read_timeout(Some(self.left()?))?;
        self.s.read(buf).map_err(timed_out)
    }
}

impl Write for DeadlineStream<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.s.set_write_timeout(Some(self.left()?))?;
        self.s.write(buf).map_err(timed_out)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.s.flush()
    }
}
