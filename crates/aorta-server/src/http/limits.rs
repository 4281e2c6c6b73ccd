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
//!   a chunk over any gets `503` and the body is dropped.
//! - **Waiting reads.** A clinician's long-polling `GET /v1/results?wait=S`
//!   waits only after its signature checked, at most
//!   [`Waiters::PER_CLINICIAN`] per clinician and a quarter of the
//!   connection limit in all ([`Waiters`]); beyond, `429`.
//! - **Bandwidth.** Frame body bytes are also taken from their source
//!   address's token bucket ([`RateTable`]: [`Limits::source_rate`] bytes
//!   a second, a burst of one largest frame): a source over its rate is
//!   read more slowly (TCP backpressure), so one address cannot make the
//!   server decrypt and check more than its rate of bytes that turn out to
//!   be no device's. Worker bodies are read only
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
    /// Frame body bytes per second from one address (0: no limit).
    pub source_rate: usize,
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
            source_rate: cfg.source_frame_bytes_per_sec,
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

/// Token buckets of frame body bytes, one per source address: `rate`
/// bytes a second, holding at most `burst`. A source is tracked while its
/// bucket is below full (a full bucket is the same as none), so the table
/// holds at most the sources that sent more than their burst lately (IPv6
/// sources by /64). Past [`RateTable::MAX_SOURCES`] such sources the
/// refilled ones are dropped, and if that is not enough the whole table
/// (about 3 MiB at most): an attacker with that many addresses gets fresh
/// bursts, and only the body budgets still bound it.
#[derive(Debug)]
pub struct RateTable {
    rate: f64,
    burst: f64,
    inner: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateTable {
    /// Sources tracked at most.
    pub const MAX_SOURCES: usize = 65_536;

    /// `rate` bytes a second (0: unlimited) with bursts of `burst`.
    pub fn new(rate: usize, burst: usize) -> RateTable {
        RateTable {
            rate: rate as f64,
            burst: burst.max(1) as f64,
            inner: Mutex::new(HashMap::new()),
        }
    }

    /// The bucket of `peer`: IPv4 addresses one by one, IPv6 by /64 (what
    /// one host is usually given).
    fn key(peer: IpAddr) -> IpAddr {
        match peer {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            v4 => v4,
        }
    }

    /// Takes `n` bytes from `peer`'s bucket; how long the reader should
    /// wait before reading more of it (zero within the rate).
    pub fn take(&self, peer: IpAddr, n: usize, now: Instant) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        let mut t = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() >= Self::MAX_SOURCES {
            let (rate, burst) = (self.rate, self.burst);
            t.retain(|_, (tokens, at)| {
                *tokens + rate * now.saturating_duration_since(*at).as_secs_f64() < burst
            });
            if t.len() >= Self::MAX_SOURCES {
                t.clear();
            }
        }
        let (tokens, at) = t.entry(Self::key(peer)).or_insert((self.burst, now));
        let refilled = *tokens + self.rate * now.saturating_duration_since(*at).as_secs_f64();
        *tokens = refilled.min(self.burst) - n as f64;
        *at = now;
        if *tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-*tokens / self.rate)
        }
    }
}

/// Long-polling result readers (`GET /v1/results?wait=S`): at most
/// [`Waiters::PER_CLINICIAN`] per authenticated clinician and `max` in
/// all. Only a clinician whose request signature checked can wait, so a
/// stranger holds no waiter at all; a waiter is one small future and one
/// connection with a request in flight, and `max` (a quarter of the
/// connection limit) keeps waiters from taking the slots devices need.
#[derive(Debug)]
pub struct Waiters {
    max: usize,
    inner: Mutex<(usize, HashMap<String, usize>)>,
}

/// One waiting request's place in [`Waiters`], given back when dropped.
#[derive(Debug)]
pub struct WaiterSlot<'a> {
    table: &'a Waiters,
    who: String,
}

impl Waiters {
    /// Waiting requests of one clinician at once.
    pub const PER_CLINICIAN: usize = 4;

    /// A table of at most `max` waiters (at least one).
    pub fn new(max: usize) -> Waiters {
        Waiters {
            max: max.max(1),
            inner: Mutex::new((0, HashMap::new())),
        }
    }

    /// A slot for clinician `who`, or `None` when `who` or everyone
    /// together already wait as much as allowed.
    pub fn enter(&self, who: &str) -> Option<WaiterSlot<'_>> {
        let mut t = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mine = t.1.get(who).copied().unwrap_or(0);
        if t.0 >= self.max || mine >= Self::PER_CLINICIAN {
            return None;
        }
        t.0 += 1;
        t.1.insert(who.to_owned(), mine + 1);
        Some(WaiterSlot {
            table: self,
            who: who.to_owned(),
        })
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

impl Drop for WaiterSlot<'_> {
    fn drop(&mut self) {
        let mut t = self.table.inner.lock().unwrap_or_else(|p| p.into_inner());
        t.0 = t.0.saturating_sub(1);
        if let Some(n) = t.1.get_mut(&self.who) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.1.remove(&self.who);
            }
        }
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

    #[test]
    fn a_source_over_its_rate_waits_and_others_do_not() {
        let r = RateTable::new(1000, 4000);
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        // The burst is free; beyond it, the wait is the deficit at the rate.
        assert_eq!(r.take(a, 4000, t0), Duration::ZERO);
        assert_eq!(r.take(a, 500, t0), Duration::from_millis(500));
        // Refilled by time: 1.5 s later 1,000 bytes are free again.
        assert_eq!(
            r.take(a, 1000, t0 + Duration::from_millis(1500)),
            Duration::ZERO
        );
        // Another address has its own bucket; an IPv6 /64 shares one.
        assert_eq!(
            r.take("10.0.0.2".parse().unwrap(), 4000, t0),
            Duration::ZERO
        );
        let v6 = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert_eq!(r.take(v6("2001:db8::1"), 4000, t0), Duration::ZERO);
        assert_eq!(
            r.take(v6("2001:db8::2:3"), 1000, t0),
            Duration::from_secs(1)
        );
        assert_eq!(r.take(v6("2001:db8:0:1::1"), 4000, t0), Duration::ZERO);
        // Unlimited: never a wait.
        let off = RateTable::new(0, 4000);
        assert_eq!(off.take(a, usize::MAX, t0), Duration::ZERO);
    }

    #[test]
    fn the_rate_table_stays_bounded() {
        let r = RateTable::new(1000, 1000);
        let t0 = Instant::now();
        for i in 0..(RateTable::MAX_SOURCES as u32 + 10) {
            r.take(IpAddr::V4(std::net::Ipv4Addr::from(i)), 2000, t0);
        }
        assert!(r.inner.lock().unwrap().len() <= RateTable::MAX_SOURCES);
    }

    #[test]
    fn waiters_are_bounded_per_clinician_and_in_all() {
        let w = Waiters::new(6);
        let a: Vec<_> = (0..Waiters::PER_CLINICIAN)
            .map(|_| w.enter("dr-a").unwrap())
            .collect();
        assert!(w.enter("dr-a").is_none(), "over dr-a's share");
        let b1 = w.enter("dr-b").unwrap();
        let b2 = w.enter("dr-b").unwrap();
        assert!(w.enter("dr-c").is_none(), "over the global bound");
        assert_eq!(w.waiting(), 6);
        drop(b1);
        let c = w.enter("dr-c").unwrap();
        drop((a, b2, c));
        assert_eq!(w.waiting(), 0);
        assert!(w.inner.lock().unwrap().1.is_empty(), "no entry left behind");
    }
}
