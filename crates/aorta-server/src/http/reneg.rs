//! Renegotiation of `max_key_uses` over HTTP (paper 003, "key
//! synchronization"): the trigger from observed key consumption and the
//! `POST /v1/devices/reneg` route.
//!
//! **Where it runs.** The renegotiation PSK derives from the device's
//! factory keys, which only the data owner's registry holds. This service
//! therefore exists only when `aorta server` opened the registry itself
//! (one-machine mode: `policy` set, in-process broker). On a keyless cloud
//! host the route answers `501 reneg_unavailable`: renegotiation runs on the
//! data owner's side, and the host never sees the PSK.
//!
//! **Trigger.** For each newly stored frame the service notes the device's
//! sequence number and the time. Sequence numbers count sealed frames, i.e.
//! key uses, including frames that never reached the server. Once a device
//! has been observed for `min_observe_secs`, a key lasting longer than
//! `key_period_secs` at the observed rate means consumption is too slow: the
//! service starts a renegotiation (rate limit permitting) and hands the
//! Offer to the device in that frame's acknowledgement
//! (`aorta_api::FrameAck::reneg_offer`). A change left pending by a crash is
//! resolved the same way: its Offer goes out with the next acknowledgement.
//!
//! **Sessions** are in memory, one per device, and expire after
//! `session_ttl_secs`; a server crash loses them, and the registry's pending
//! record (`aorta_registry::Pending`) carries the protocol to one agreed
//! value on the next round. A message that fails authentication does not
//! end the session (a stranger cannot squat it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aorta_crypto::reneg::{
    RenegError, RenegPolicy, Reply, Sealed, ServerAwaitingConfirm, ServerAwaitingReply,
};
use aorta_registry::{Registry, RegistryError, RenegStep};

/// Largest `POST /v1/devices/reneg` body.
pub const MAX_RENEG_BODY: usize = 4096;

/// When and how often to renegotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenegConfig {
    /// Rate limit (also enforced by the device on its own clock).
    pub policy: RenegPolicy,
    /// How long one key should last, seconds.
    pub key_period_secs: u64,
    /// Observe a device this long before judging its consumption.
    pub min_observe_secs: u64,
    /// An unanswered session is dropped after this long.
    pub session_ttl_secs: u64,
    /// A device's consumption is judged at most this often.
    pub check_every_secs: u64,
}

impl Default for RenegConfig {
    fn default() -> Self {
        RenegConfig {
            policy: RenegPolicy::default(),
            key_period_secs: 30 * 24 * 3600,
            min_observe_secs: 24 * 3600,
            session_ttl_secs: 300,
            check_every_secs: 60,
        }
    }
}

/// Why a renegotiation request was refused. Each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenegRouteError {
    /// No session is open for this device, or it expired (409).
    #[error("no renegotiation in progress for device {serial}")]
    NoSession {
        /// Serial.
        serial: String,
    },
    /// The message does not parse or has an unknown version (400).
    #[error("bad renegotiation message: {0}")]
    Malformed(RenegError),
    /// The message fails authentication (401).
    #[error("renegotiation message failed authentication")]
    Unauthenticated,
    /// The device changed too often (429).
    #[error("{0}")]
    RateLimited(String),
    /// The registry failed (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl RenegRouteError {
    /// HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            RenegRouteError::NoSession { .. } => 409,
            RenegRouteError::Malformed(_) => 400,
            RenegRouteError::Unauthenticated => 401,
            RenegRouteError::RateLimited(_) => 429,
            RenegRouteError::Internal(_) => 500,
        }
    }

    /// Stable snake_case name (the JSON `error` field).
    pub fn name(&self) -> &'static str {
        match self {
            RenegRouteError::NoSession { .. } => "reneg_no_session",
            RenegRouteError::Malformed(RenegError::UnknownVersion { .. }) => {
                "reneg_unknown_version"
            }
            RenegRouteError::Malformed(_) => "reneg_malformed",
            RenegRouteError::Unauthenticated => "reneg_unauthenticated",
            RenegRouteError::RateLimited(_) => "reneg_rate_limited",
            RenegRouteError::Internal(_) => "internal",
        }
    }
}

fn from_crypto(e: RenegError) -> RenegRouteError {
    match e {
        RenegError::Malformed(_) | RenegError::UnknownVersion { .. } => {
            RenegRouteError::Malformed(e)
        }
        _ => RenegRouteError::Unauthenticated,
    }
}

fn from_registry(e: RegistryError) -> RenegRouteError {
    match e {
        RegistryError::Reneg(e) => from_crypto(e),
        e @ RegistryError::RateLimited { .. } => RenegRouteError::RateLimited(e.to_string()),
        e => RenegRouteError::Internal(e.to_string()),
    }
}

enum Step {
    AwaitingReply(ServerAwaitingReply),
    AwaitingConfirm(Box<ServerAwaitingConfirm>),
}

struct Session {
    started: u64,
    want: Option<u64>,
    step: Step,
}

#[derive(Default)]
struct Track {
    /// First observation: (sequence, seconds).
    first: Option<(u64, u64)>,
    last_check: Option<u64>,
    session: Option<Session>,
}

/// A clock in Unix seconds.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Called after the registry changed a device's record (and rewrote the
/// directory), so ingest re-reads it at once.
pub type OnChange = Arc<dyn Fn() + Send + Sync>;

/// The renegotiation service of one `aorta server` that holds the registry.
pub struct RenegService {
    registry: Arc<Registry>,
    cfg: RenegConfig,
    clock: Clock,
    on_change: Option<OnChange>,
    devices: Mutex<HashMap<String, Track>>,
}

impl RenegService {
    /// A service over `registry` with the system clock.
    pub fn new(registry: Arc<Registry>, cfg: RenegConfig) -> RenegService {
        RenegService {
            registry,
            cfg,
            clock: Arc::new(|| aorta_base::time::now_us().max(0).unsigned_abs() / 1_000_000),
            on_change: None,
            devices: Mutex::new(HashMap::new()),
        }
    }

    /// Calls `f` after every change of a device's `max_key_uses` or window.
    pub fn on_change(mut self, f: OnChange) -> RenegService {
        self.on_change = Some(f);
        self
    }

    fn changed(&self) {
        if let Some(f) = &self.on_change {
            f();
        }
    }

    /// The same with another clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> RenegService {
        self.clock = clock;
        self
    }

    /// Notes a newly stored frame of `serial` with `sequence` and returns an
    /// Offer (wire bytes) for its acknowledgement when the device should
    /// renegotiate: its consumption is too slow, or a change is pending.
    pub fn observe(&self, serial: &str, sequence: u64) -> Option<Vec<u8>> {
        let now = (self.clock)();
        let Ok(mut devices) = self.devices.lock() else {
            return None;
        };
        let t = devices.entry(serial.to_owned()).or_default();
        let (first_seq, first_at) = *t.first.get_or_insert((sequence, now));
        if let Some(s) = &t.session {
            if now.saturating_sub(s.started) < self.cfg.session_ttl_secs {
                return None;
            }
            t.session = None;
        }
        if t.last_check
            .is_some_and(|c| now.saturating_sub(c) < self.cfg.check_every_secs)
        {
            return None;
        }
        t.last_check = Some(now);
        let pending = match self.registry.reneg_pending(serial) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(target: "aorta::reneg", serial, error = %e, "reading the pending renegotiation failed");
                return None;
            }
        };
        let elapsed = now.saturating_sub(first_at);
        let want = if elapsed >= self.cfg.min_observe_secs.max(1) {
            let current = self.registry.device(serial).ok()?.max_key_uses;
            aorta_registry::propose_max_key_uses(
                current,
                self.cfg.key_period_secs,
                sequence.saturating_sub(first_seq),
                elapsed,
            )
        } else {
            None
        };
        if want.is_none() && pending.is_none() {
            return None;
        }
        match self.registry.reneg_begin(serial, now, self.cfg.policy) {
            Ok((st, offer)) => {
                tracing::info!(target: "aorta::reneg", serial, counter = offer.counter, want, pending = pending.is_some(), "renegotiation offered");
                t.session = Some(Session {
                    started: now,
                    want,
                    step: Step::AwaitingReply(st),
                });
                Some(offer.encode())
            }
            Err(e @ RegistryError::RateLimited { .. }) => {
                tracing::debug!(target: "aorta::reneg", serial, error = %e, "renegotiation wanted but rate limited");
                None
            }
            Err(e) => {
                tracing::warn!(target: "aorta::reneg", serial, error = %e, "renegotiation could not start");
                None
            }
        }
    }

    /// Handles one device message of `serial`'s session: a Reply is answered
    /// with the Value (`Some`) or nothing (`None`: no change, session over);
    /// a Confirm completes the change (`None`).
    pub fn handle(&self, serial: &str, body: &[u8]) -> Result<Option<Vec<u8>>, RenegRouteError> {
        let now = (self.clock)();
        let mut devices = self
            .devices
            .lock()
            .map_err(|_| RenegRouteError::Internal("lock poisoned".into()))?;
        let no_session = || RenegRouteError::NoSession {
            serial: serial.to_owned(),
        };
        let t = devices.get_mut(serial).ok_or_else(no_session)?;
        let session = t.session.take().ok_or_else(no_session)?;
        if now.saturating_sub(session.started) >= self.cfg.session_ttl_secs {
            return Err(no_session());
        }
        match session.step {
            Step::AwaitingReply(st) => {
                let reply = match Reply::decode(body).map_err(from_crypto).and_then(|r| {
                    st.check_reply(&r).map_err(from_crypto)?;
                    Ok(r)
                }) {
                    Ok(r) => r,
                    Err(e) => {
                        // Keep the session: a forged message must not end it.
                        t.session = Some(Session {
                            step: Step::AwaitingReply(st),
                            ..session
                        });
                        return Err(e);
                    }
                };
                match self.registry.reneg_reply(
                    serial,
                    st,
                    &reply,
                    session.want,
                    now,
                    self.cfg.policy,
                ) {
                    Ok(RenegStep::Value(c, msg)) => {
                        self.changed();
                        t.session = Some(Session {
                            step: Step::AwaitingConfirm(c),
                            ..session
                        });
                        Ok(Some(msg.encode()))
                    }
                    Ok(RenegStep::NoChange) => {
                        self.changed();
                        Ok(None)
                    }
                    Err(e) => {
                        self.changed();
                        Err(from_registry(e))
                    }
                }
            }
            Step::AwaitingConfirm(c) => {
                let checked = Sealed::decode_confirm(body)
                    .map_err(from_crypto)
                    .and_then(|m| {
                        c.check_confirm(&m).map_err(from_crypto)?;
                        Ok(m)
                    });
                let confirm = match checked {
                    Ok(m) => m,
                    Err(e) => {
                        t.session = Some(Session {
                            step: Step::AwaitingConfirm(c),
                            ..session
                        });
                        return Err(e);
                    }
                };
                let r = self.registry.reneg_finish(serial, c, &confirm);
                self.changed();
                r.map_err(from_registry)?;
                Ok(None)
            }
        }
    }
}
