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

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aorta_base::hex::encode as hex;
use aorta_crypto::refusal;
use aorta_enclave::evidence::{Evidence, Nonce};
use aorta_enclave::keywrap::{KeyBundle, Secret32, seal_bundle};
use aorta_enclave::verify::{Refusal, verify};
use aorta_enclave::wire::{self, Message, Role, WireError};

pub mod policy;

use policy::Policy;

/// Most outstanding (issued, unused, unexpired) nonces.
pub const MAX_OUTSTANDING_NONCES: usize = 100_000;
/// Most messages on one broker connection.
pub const MAX_MESSAGES_PER_CONNECTION: usize = 16;
/// Most concurrent connections served.
pub const MAX_CONNECTIONS: usize = 64;

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

/// The key broker.
pub struct Broker {
    policy: Policy,
    keys: Arc<dyn KeySource>,
    nonces: Mutex<NonceStore>,
    clock: Box<Clock>,
    signer: Option<Arc<aorta_crypto::auth::SigningKey>>,
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
/// entries are pruned from the front in amortised O(1).
#[derive(Default)]
struct NonceStore {
    live: HashMap<[u8; 32], u64>,
    order: std::collections::VecDeque<([u8; 32], u64)>,
}

impl NonceStore {
    fn prune(&mut self, now: u64, ttl: u64) {
        while let Some(&(n, t)) = self.order.front() {
            if now.saturating_sub(t) <= ttl {
                break;
            }
            self.order.pop_front();
            self.live.remove(&n);
        }
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
        }
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

    /// Issues a fresh single-use nonce.
    pub fn issue_nonce(&self) -> Result<(Nonce, u64), BrokerRefusal> {
        let now = (self.clock)();
        let ttl = self.policy.verifier.freshness_secs;
        let nonce = Nonce::random().map_err(|e| BrokerRefusal::Internal {
            detail: format!("random generator: {e}"),
        })?;
        let mut store = self.lock_nonces();
        store.prune(now, ttl);
        if store.order.len() >= MAX_OUTSTANDING_NONCES {
            tracing::warn!(target: "aorta::broker", decision = "refuse", code = refusal::BROKER_BUSY, "too many outstanding challenges");
            return Err(BrokerRefusal::Busy);
        }
        store.live.insert(nonce.0, now);
        store.order.push_back((nonce.0, now));
        drop(store);
        tracing::debug!(target: "aorta::broker", nonce = %nonce.to_hex(), "challenge issued");
        Ok((nonce, now))
    }

    /// Verifies the evidence in `req` and releases the assignment's keys, or
    /// refuses. Logs the decision either way.
    pub fn release(&self, req: &ReleaseRequest) -> Result<Released, BrokerRefusal> {
        let res = self.release_inner(req);
        match &res {
            Ok(r) => tracing::info!(
                target: "aorta::broker",
                decision = "release",
                assignment = %req.assignment,
                devices = r.devices.len(),
                subscribers = r.subscribers.len(),
                "keys released to attested worker"
            ),
            Err(e) => tracing::warn!(
                target: "aorta::broker",
                decision = "refuse",
                code = e.code(),
                assignment = %req.assignment,
                reason = %e,
                "key request refused"
            ),
        }
        res
    }

    fn release_inner(&self, req: &ReleaseRequest) -> Result<Released, BrokerRefusal> {
        let evidence = Evidence::decode(&req.evidence).map_err(Refusal::from)?;
        let now = (self.clock)();
        // Single use: the nonce is consumed whatever the outcome.
        let issued_at = self
            .lock_nonces()
            .live
            .remove(&evidence.claims.nonce.0)
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
        let a = self.policy.assignment(&req.assignment).ok_or_else(|| {
            BrokerRefusal::UnknownAssignment {
                name: req.assignment.clone(),
            }
        })?;
        let devices: BTreeSet<String> = if req.devices.is_empty() {
            a.devices.clone()
        } else {
            req.devices.iter().cloned().collect()
        };
        let subscribers: BTreeSet<String> = if req.subscribers.is_empty() {
            a.subscribers.clone()
        } else {
            req.subscribers.iter().cloned().collect()
        };
        if let Some(d) = devices.iter().find(|d| !a.devices.contains(*d)) {
            return Err(BrokerRefusal::DeviceOutsideAssignment {
                serial: d.clone(),
                assignment: a.name.clone(),
            });
        }
        if let Some(s) = subscribers.iter().find(|s| !a.subscribers.contains(*s)) {
            return Err(BrokerRefusal::SubscriberOutsideAssignment {
                id: s.clone(),
                assignment: a.name.clone(),
            });
        }
        let mut bundle = KeyBundle::new(&a.name);
        for d in &devices {
            let unavailable = || BrokerRefusal::KeyUnavailable {
                what: "device",
                id: d.clone(),
            };
            match self.keys.transport_group_keys(d) {
                Some(groups) if groups.is_empty() => return Err(unavailable()),
                Some(groups) => {
                    for (i, g) in groups.into_iter().enumerate() {
                        let i = u16::try_from(i).map_err(|_| BrokerRefusal::Internal {
                            detail: format!("device {d} has more than 65535 group keys"),
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
        let sealed = seal_bundle(&worker, &bundle).map_err(|e| BrokerRefusal::Internal {
            detail: e.to_string(),
        })?;
        Ok(Released {
            sealed,
            devices: devices.into_iter().collect(),
            subscribers: subscribers.into_iter().collect(),
        })
    }

    /// Serves one worker connection: `Hello`, then `ChallengeRequest` and
    /// `KeyRequest` messages until the peer closes or sends
    /// [`MAX_MESSAGES_PER_CONNECTION`] messages.
    pub fn handle_connection<S: Read + Write>(&self, s: &mut S) -> Result<(), WireError> {
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
            let reply = self.respond(msg)?;
            wire::write_message(s, &reply)?;
        }
        Ok(())
    }

    /// Answers one worker message, independent of the transport (the TCP
    /// server above; an HTTP route can call it the same way after its own
    /// handshake): `ChallengeRequest` → `Challenge`, `KeyRequest` →
    /// `KeyRelease` or `Refused`; anything else is a protocol error.
    pub fn respond(&self, msg: Message) -> Result<Message, WireError> {
        Ok(match msg {
            Message::ChallengeRequest => match self.issue_nonce() {
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
            other => {
                return Err(WireError::Unexpected {
                    got: other.name(),
                    expected: "ChallengeRequest or KeyRequest",
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

/// Accepts connections on `listener` forever, one thread per connection (at
/// most [`MAX_CONNECTIONS`] at once; more are closed immediately).
pub fn serve(listener: TcpListener, broker: Arc<Broker>) -> std::io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let mut stream = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(target: "aorta::broker", error = %e, "accept failed");
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(target: "aorta::broker", "connection limit reached; closing new connection");
            continue;
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
        let b = Arc::clone(&broker);
        let act = Arc::clone(&active);
        std::thread::spawn(move || {
            let peer = stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            if let Err(e) = b.handle_connection(&mut stream) {
                tracing::warn!(target: "aorta::broker", peer = %peer, error = %e, "connection ended with an error");
            }
            act.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}
