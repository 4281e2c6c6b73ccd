//! What one client, or all of them together, can hold: connections, time
//! and memory (`docs/server.md`, "Limits").
//!
//! - **Connections.** At most [`Limits::max_connections`] at once (capped
//!   by the open-file limit, which `aorta server` raises to its hard
//!   limit), at most [`Limits::max_per_source`] from one address. A
//!   connection over the per-source share is closed at once. At the global
//!   limit a newcomer makes the longest-idle connection (no request in
//!   flight) close for it, so idle connections never lock clients out;
//!   with none idle within 5 s the newcomer is closed. Nobody is closed
//!   while nobody waits.
//! - **Time.** The TLS handshake, HTTP/1.1 request headers, a connection
//!   without a request in flight, and each request (headers to answer) have
//!   deadlines; HTTP/2 keep-alive PINGs close dead peers. A slow body is cut
//!   with `408` when its request's deadline passes.
//! - **Memory.** Frame bodies are read chunk by chunk, each chunk charged
//!   as it arrives (a declared length reserves nothing) to the
//!   connection's share ([`Limits::connection_body_bytes`]), to its source
//!   address's share ([`Limits::source_body_bytes`], a quarter of the
//!   budget) and to the budget of all connections ([`Limits::body_budget`]);
//!   a chunk over any gets `503` and the body is dropped. Worker bodies are read only
//!   after the worker token checked, one per route at a time. What a
//!   connection buffers below the application is bounded by its HTTP/2
//!   flow-control windows, its header limits and the TLS buffers:
//!   [`Limits::memory_bound`] adds it all up.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::ServerConfig;

/// HTTP/2 flow-control window of one connection, bytes: what a client may
/// send before the server reads it.
pub const H2_CONNECTION_WINDOW: u32 = 256 << 10;
/// HTTP/2 flow-control window of one stream, bytes.
pub const H2_STREAM_WINDOW: u32 = 128 << 10;
/// Largest header list one HTTP/2 request may carry, bytes.
pub const H2_MAX_HEADER_LIST: u32 = 16 << 10;
/// Largest HTTP/1.1 read buffer (request line, headers, body chunks), bytes.
pub const H1_MAX_BUF: usize = 64 << 10;
/// What one open TLS connection holds besides the HTTP layer: rustls's
/// receive and send buffers and state, bytes (an upper estimate).
pub const TLS_CONNECTION_BYTES: u64 = 96 << 10;
/// A connection asked to close (idle, evicted, shutting down) gets this
/// long to finish what is in flight before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The limits of one server, from its configuration.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest frame body, bytes.
    pub max_frame_bytes: usize,
    /// Connections at once.
    pub max_connections: usize,
    /// Connections at once from one address.
    pub max_per_source: usize,
    /// TLS handshake deadline.
    pub handshake: Duration,
    /// HTTP/1.1 header deadline.
    pub header: Duration,
    /// Idle connection deadline.
    pub idle: Duration,
    /// Device and clinician request deadline.
    pub request: Duration,
    /// Worker request deadline.
    pub worker_request: Duration,
    /// HTTP/2 streams per connection.
    pub h2_max_streams: u32,
    /// HTTP/2 keep-alive interval and timeout.
    pub h2_keepalive: Duration,
    /// Frame bodies in memory, all connections.
    pub body_budget: usize,
    /// Frame bodies in memory, one connection.
    pub connection_body_bytes: usize,
    /// Largest `GET /v1/log` answer (plus one record).
    pub log_answer_bytes: usize,
}

impl Limits {
    /// Frame bodies in memory from one source address: a quarter of the
    /// budget, and at least one connection's share.
    pub fn source_body_bytes(&self) -> usize {
        (self.body_budget / 4).max(self.connection_body_bytes)
    }
}

impl Limits {
    /// The limits `cfg` sets.
    pub fn from_config(cfg: &ServerConfig) -> Limits {
        let s = Duration::from_secs;
        Limits {
            max_frame_bytes: cfg.max_frame_bytes,
            max_connections: cfg.max_connections,
            max_per_source: cfg.max_connections_per_source,
            handshake: s(cfg.handshake_timeout_secs),
            header: s(cfg.header_timeout_secs),
            idle: s(cfg.idle_timeout_secs),
            request: s(cfg.request_timeout_secs),
            worker_request: s(cfg.worker_request_timeout_secs),
            h2_max_streams: cfg.h2_max_streams,
            h2_keepalive: s(cfg.h2_keepalive_secs),
            body_budget: cfg.body_budget_bytes,
            connection_body_bytes: cfg.connection_body_bytes,
            log_answer_bytes: cfg.log_answer_bytes,
        }
    }

    /// What one connection may hold below the application, bytes: the
    /// larger of HTTP/2 (connection window, every stream's header list) and
    /// HTTP/1.1 (read buffer), plus TLS.
    pub fn per_connection_bytes(&self) -> u64 {
        let h2 = u64::from(H2_CONNECTION_WINDOW)
            + u64::from(self.h2_max_streams) * u64::from(H2_MAX_HEADER_LIST);
        h2.max(H1_MAX_BUF as u64) + TLS_CONNECTION_BYTES
    }

    /// The memory bound of the HTTP side, bytes, for an ingest queue of
    /// `ingest_queue_bytes`:
    ///
    /// `max_connections × per_connection_bytes + 2 × body_budget +
    /// ingest_queue_bytes + verify queue + worker bodies`, where a frame
    /// body is held once (its signature message is a digest) in a buffer at
    /// most twice its size (one without `Content-Length` grows by doubling), the verify
    /// queue holds [`super::ingest::VERIFY_QUEUE`] digests of 64 bytes, and
    /// the worker bodies are one checkpoint and one results batch, each held
    /// about three times while decoded (JSON, base64, binary), and one log
    /// answer.
    pub fn memory_bound(&self, ingest_queue_bytes: usize) -> u64 {
        let worker = 3 * (super::api::MAX_CHECKPOINT_BODY + super::api::MAX_WORKER_BODY) as u64
            + (self.log_answer_bytes + self.max_frame_bytes) as u64;
        let verify = (super::ingest::VERIFY_QUEUE * 256) as u64;
        self.max_connections as u64 * self.per_connection_bytes()
            + 2 * self.body_budget as u64
            + ingest_queue_bytes as u64
            + verify
            + worker
    }

    /// [`Limits::memory_bound`] without what only an authenticated worker
    /// can make the server hold (its bodies and log answers): the bound for
    /// strangers and devices.
    pub fn unauthenticated_bound(&self, ingest_queue_bytes: usize) -> u64 {
        let worker = 3 * (super::api::MAX_CHECKPOINT_BODY + super::api::MAX_WORKER_BODY) as u64
            + (self.log_answer_bytes + self.max_frame_bytes) as u64;
        self.memory_bound(ingest_queue_bytes) - worker
    }

    /// The deadline of a request to `path` with `method`.
    pub fn deadline_for(&self, method: &axum::http::Method, path: &str) -> Duration {
        use axum::http::Method;
        let worker = matches!(
            (method, path),
            (&Method::PUT | &Method::GET, "/v1/checkpoint") | (&Method::POST, "/v1/results")
        );
        if worker {
            self.worker_request
        } else {
            self.request
        }
    }
}

/// A byte budget shared by many holders (see [`Charge`]).
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    max: usize,
}

impl Budget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Budget {
        Budget {
            used: AtomicUsize::new(0),
            max,
        }
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, n: usize) -> bool {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = cur.checked_add(n).filter(|&v| v <= self.max) else {
                return false;
            };
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(v) => cur = v,
            }
        }
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Bytes one request holds of its connection's, its source's and the
/// global budget; given back when dropped.
#[derive(Debug)]
pub struct Charge {
    budgets: Vec<Arc<Budget>>,
    n: usize,
}

impl Charge {
    /// An empty charge against `global` and, when known, the connection's
    /// and its source's shares.
    pub fn new(global: Arc<Budget>, conn: Option<Arc<ConnState>>) -> Charge {
        let mut budgets = Vec::with_capacity(3);
        if let Some(c) = conn {
            budgets.push(c.body.clone());
            budgets.push(c.source_body.clone());
        }
        budgets.push(global);
        Charge { budgets, n: 0 }
    }

    /// Takes `n` more bytes from every budget; false (taking nothing) when
    /// any would go over.
    pub fn add(&mut self, n: usize) -> bool {
        for (i, b) in self.budgets.iter().enumerate() {
            if !b.take(n) {
                for taken in self.budgets.iter().take(i) {
                    taken.give(n);
                }
                return false;
            }
        }
        self.n += n;
        true
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        for b in &self.budgets {
            b.give(self.n);
        }
    }
}

/// One open connection: its source, requests in flight, last activity and
/// share of the body budget.
#[derive(Debug)]
pub struct ConnState {
    /// The client's address.
    pub peer: IpAddr,
    inflight: AtomicUsize,
    /// Milliseconds since `epoch` at the last request start or end.
    last_ms: AtomicU64,
    epoch: Instant,
    body: Arc<Budget>,
    source_body: Arc<Budget>,
    close: tokio::sync::Notify,
    closing: std::sync::atomic::AtomicBool,
}

impl ConnState {
    fn new(peer: IpAddr, body_bytes: usize, source_body: Arc<Budget>) -> ConnState {
        ConnState {
            peer,
            inflight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            body: Arc::new(Budget::new(body_bytes)),
            source_body,
            close: tokio::sync::Notify::new(),
            closing: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Marks a request in flight until the guard drops.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(self.clone())
    }

    /// How long the connection has had no request in flight; zero while
    /// one is.
    pub fn idle_for(&self) -> Duration {
        if self.inflight.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    /// Resolves when the server asks this connection to close.
    pub async fn close_requested(&self) {
        self.close.notified().await;
    }

    fn ask_to_close(&self) {
        self.closing.store(true, Ordering::Release);
        self.close.notify_one();
    }

    /// Frame body bytes this connection holds now.
    pub fn body_bytes(&self) -> usize {
        self.body.used()
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its source already holds its share of connections.
    SourceFull,
}

/// The open connections: counts per source and the handles to close the
/// idlest.
#[derive(Debug, Default)]
pub struct ConnTable {
    inner: Mutex<TableInner>,
}

#[derive(Debug, Default)]
struct TableInner {
    /// Connections and the body share of each source.
    per_source: HashMap<IpAddr, (usize, Arc<Budget>)>,
    open: Vec<Weak<ConnState>>,
}

/// A connection's place in the [`ConnTable`], given back when dropped.
#[derive(Debug)]
pub struct Admitted {
    table: Arc<ConnTable>,
    /// The connection.
    pub state: Arc<ConnState>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut t) = self.table.inner.lock() {
            let peer = self.state.peer;
            if let Some((n, _)) = t.per_source.get_mut(&peer) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    t.per_source.remove(&peer);
                }
            }
            let me = Arc::as_ptr(&self.state);
            t.open.retain(|w| w.strong_count() > 0 && w.as_ptr() != me);
        }
    }
}

impl ConnTable {
    /// Admits a connection from `peer` unless its source is full.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, limits: &Limits) -> Result<Admitted, Refused> {
        let mut t = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (n, share) = t
            .per_source
            .entry(peer)
            .or_insert_with(|| (0, Arc::new(Budget::new(limits.source_body_bytes()))));
        if *n >= limits.max_per_source {
            return Err(Refused::SourceFull);
        }
        *n += 1;
        let state = Arc::new(ConnState::new(
            peer,
            limits.connection_body_bytes,
            share.clone(),
        ));
        t.open.push(Arc::downgrade(&state));
        Ok(Admitted {
            table: self.clone(),
            state,
        })
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .map(|t| t.open.iter().filter(|w| w.strong_count() > 0).count())
            .unwrap_or(0)
    }

    /// True when no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks the longest-idle connection (none in flight) other than
    /// `spare` to close; false when every connection has a request in
    /// flight.
    pub fn evict_idlest(&self, spare: &Arc<ConnState>) -> bool {
        let victim = {
            let Ok(t) = self.inner.lock() else {
                return false;
            };
            t.open
                .iter()
                .filter_map(Weak::upgrade)
                .filter(|c| !Arc::ptr_eq(c, spare) && !c.closing.load(Ordering::Acquire))
                .map(|c| (c.idle_for(), c))
                .filter(|(idle, _)| !idle.is_zero())
                .max_by_key(|(idle, _)| *idle)
                .map(|(_, c)| c)
        };
        match victim {
            Some(c) => {
                c.ask_to_close();
                true
            }
            None => false,
        }
    }

    /// Asks every connection to close (shutdown).
    pub fn close_all(&self) {
        if let Ok(t) = self.inner.lock() {
            for c in t.open.iter().filter_map(Weak::upgrade) {
                c.ask_to_close();
            }
        }
    }
}

/// Raises the open-file soft limit to the hard limit and returns the
/// connections it allows (`wanted`, or fewer when file descriptors are
/// short: 64 are kept for files and the broker).
pub fn fit_to_open_files(wanted: usize) -> usize {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let mut r = getrlimit(Resource::Nofile);
        if let (Some(cur), Some(max)) = (r.current, r.maximum)
            && cur < max
            && setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(max),
                    maximum: Some(max),
                },
            )
            .is_ok()
        {
            r.current = Some(max);
        }
        match r.current {
            // None is "unlimited".
            None => wanted,
            Some(cur) => {
                let usable = usize::try_from(cur)
                    .unwrap_or(usize::MAX)
                    .saturating_sub(64)
                    .max(1);
                wanted.min(usable)
            }
        }
    }
    #[cfg(not(unix))]
    {
        wanted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::from_config(&ServerConfig {
            max_connections_per_source: 2,
            connection_body_bytes: 4 << 20,
            body_budget_bytes: 6 << 20,
            ..ServerConfig::default()
        })
    }

    #[test]
    fn charges_stay_within_both_budgets_and_are_given_back() {
        let l = limits();
        let table = Arc::new(ConnTable::default());
        let a = table.admit("127.0.0.1".parse().unwrap(), &l).unwrap();
        let b = table.admit("127.0.0.2".parse().unwrap(), &l).unwrap();
        let global = Arc::new(Budget::new(l.body_budget));
        let mut ca = Charge::new(global.clone(), Some(a.state.clone()));
        assert!(ca.add(3 << 20));
        assert!(!ca.add(2 << 20), "over the connection's share");
        assert!(ca.add(1 << 20));
        let mut cb = Charge::new(global.clone(), Some(b.state.clone()));
        assert!(cb.add(2 << 20));
        assert!(!cb.add(1), "over the global budget");
        // A second connection from `a`'s source shares its source's 4 MiB.
        let a2 = table.admit("127.0.0.1".parse().unwrap(), &l).unwrap();
        let mut ca2 = Charge::new(Arc::new(Budget::new(64 << 20)), Some(a2.state.clone()));
        assert!(!ca2.add(1), "over the source's share");
        drop(ca2);
        assert_eq!(b.state.body_bytes(), 2 << 20, "a refused add takes nothing");
        drop(ca);
        assert_eq!(a.state.body_bytes(), 0);
        assert_eq!(global.used(), 2 << 20);
        drop(cb);
        assert_eq!(global.used(), 0);
    }

    #[test]
    fn a_source_gets_its_share_and_the_idlest_is_evicted() {
        let l = limits();
        let table = Arc::new(ConnTable::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = table.admit(ip, &l).unwrap();
        let b = table.admit(ip, &l).unwrap();
        assert_eq!(table.admit(ip, &l).unwrap_err(), Refused::SourceFull);
        assert!(table.admit("10.0.0.2".parse().unwrap(), &l).is_ok());
        let _busy = b.state.begin();
        std::thread::sleep(Duration::from_millis(5));
        let newcomer = table.admit("10.0.0.3".parse().unwrap(), &l).unwrap();
        assert!(table.evict_idlest(&newcomer.state));
        // `a` is the idle one: it was notified (a stored permit resolves).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), a.state.close_requested())
                .await
                .unwrap();
        });
        drop(a);
        assert!(table.admit(ip, &l).is_ok(), "the slot was given back");
    }
}
