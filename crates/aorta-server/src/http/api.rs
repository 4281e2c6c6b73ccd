//! The HTTP routes, their state and the serving loop.

use crate::log_throttle::{LogThrottle, REFUSALS_PER_SEC};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Extension, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use aorta_api::{
    BatchAnswer, END_HEADER, ErrorBody, LogQuery, NEXT_HEADER, ResultItem, ResultsPage,
    ResultsQuery, Stats, WorkerBatch,
};
use aorta_stream::checkpoint::{Checkpoint, CheckpointStore, FileCheckpointStore};
use aorta_stream::results::{FileResultStore, ResultSink};

use aorta_crypto::frame::FrameError;

use super::ingest::{DeviceDirectory, Ingest, IngestError};
use super::limits::{Budget, Charge, ConnState, ConnTable, Limits, RateTable, Waiters};
use super::{ServerConfig, tls};

/// Most records one `GET /v1/log` returns.
pub const MAX_LOG_RECORDS: usize = 4096;
/// Most results one `GET /v1/results` returns.
pub const MAX_RESULTS: usize = 10_000;
/// Largest `POST /v1/results` body.
pub const MAX_WORKER_BODY: usize = 64 << 20;
/// Largest `PUT /v1/checkpoint` body: a sealed state of up to 256 MiB
/// (`aorta_crypto::results::MAX_STATE_LEN`), base64 in JSON.
pub const MAX_CHECKPOINT_BODY: usize = 360 << 20;
/// Latency samples kept for percentiles (the most recent).
pub const LATENCY_SAMPLES: usize = 1 << 16;
/// How long a new connection waits for a slot at the connection limit
/// (while idle connections are closed for it) before it is closed.
const ADMIT_WAIT: Duration = Duration::from_secs(5);
/// How long a computed `/v1/stats` answer is reused.
const STATS_TTL: Duration = Duration::from_millis(200);

/// Latency histogram bucket bounds, ms.
const BUCKETS_MS: [f64; 14] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 30000.0,
];

/// What workers reported.
#[derive(Default)]
struct WorkerStats {
    opened: u64,
    refused: BTreeMap<u16, u64>,
    latencies_us: std::collections::VecDeque<i64>,
    buckets: [u64; BUCKETS_MS.len() + 1],
    latency_sum_us: f64,
    latency_count: u64,
    batches: u64,
}

/// Shared state of the routes.
pub struct AppState {
    ingest: Ingest,
    results: Mutex<FileResultStore>,
    results_end: AtomicU64,
    /// The results store's end, for long-polling readers.
    results_end_tx: tokio::sync::watch::Sender<u64>,
    /// Long-polling readers (`GET /v1/results?wait=S`).
    waiters: Waiters,
    /// Set once when the server stops: long-polls answer at once.
    stop_tx: tokio::sync::watch::Sender<bool>,
    checkpoints: Mutex<FileCheckpointStore>,
    worker_token: zeroize::Zeroizing<String>,
    stats: Mutex<WorkerStats>,
    poll: Duration,
    results_stored: AtomicU64,
    results_duplicate: AtomicU64,
    stopping: AtomicBool,
    /// The pinned broker certifying key: only results signed by a worker
    /// key it certified are stored.
    broker_key: Option<[u8; 32]>,
    /// Worker certificates seen (verified), by digest; kept in
    /// `data_dir/certs/`.
    certs: Mutex<BTreeMap<[u8; 32], Vec<u8>>>,
    certs_dir: std::path::PathBuf,
    /// Clinicians who may read, by subscriber id: their authentication
    /// public keys.
    clinicians: BTreeMap<String, [u8; 32]>,
    /// `max_key_uses` renegotiation, only when this process holds the
    /// registry (one-machine mode); `None` on a keyless host.
    reneg: Option<Arc<super::reneg::RenegService>>,
    /// What clients may hold (`limits`).
    limits: Limits,
    /// Frame bodies in memory, all connections.
    bodies: Arc<Budget>,
    /// Frame body bytes per second, per source.
    rates: RateTable,
    /// Open connections.
    conns: Arc<ConnTable>,
    /// One checkpoint body and one results body read at a time.
    checkpoint_gate: tokio::sync::Semaphore,
    results_gate: tokio::sync::Semaphore,
    /// The last `/v1/stats` answer and when it was computed.
    stats_cache: tokio::sync::Mutex<Option<(std::time::Instant, Arc<Stats>)>>,
    /// Patient erasures waiting for the worker (`crate::erasure`).
    erasures: Mutex<crate::erasure::ErasureBook>,
    /// Their number, for the log answer header.
    erasures_pending: AtomicU64,
    /// Per request handed to a worker: `checkpoint_seq` at that moment.
    erasures_handed: Mutex<BTreeMap<String, u64>>,
    /// Checkpoints saved since start.
    checkpoint_seq: AtomicU64,
    /// Results the store held at start (`/metrics` counts stored results
    /// durably: these plus the ones stored since).
    results_at_start: u64,
    /// One process per data directory.
    _lock: crate::erasure::DataDirLock,
}

#[path = "erasure_routes.rs"]
mod erasure_routes;
#[path = "ops.rs"]
pub mod ops;

fn err(status: StatusCode, name: &str, detail: impl Into<String>) -> Response {
    (
        status,
        axum::Json(ErrorBody {
            error: name.into(),
            detail: detail.into(),
        }),
    )
        .into_response()
}

fn ingest_err(e: &IngestError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = err(status, e.name(), e.to_string());
    if let Some(secs) = e.retry_after() {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    r
}

impl AppState {
    fn authorized(&self, h: &HeaderMap) -> bool {
        let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let Some(t) = v.strip_prefix("Bearer ") else {
            return false;
        };
        aorta_crypto::keys::ct_eq(t.trim().as_bytes(), self.worker_token.as_bytes())
    }
}

fn unauthorized() -> Response {
    err(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "worker routes need `Authorization: Bearer <data_dir/worker.token>`",
    )
}

/// Reads a frame body chunk by chunk, each chunk charged to the
/// connection's share and the global body budget (`limits`); the answer
/// when the body is too large, over budget or broken.
#[allow(
    clippy::result_large_err,
    reason = "the error is the HTTP answer itself"
)]
async fn read_frame_body(
    s: &AppState,
    conn: Option<Arc<ConnState>>,
    h: &HeaderMap,
    body: Body,
) -> Result<(Vec<u8>, Charge), Response> {
    use http_body_util::BodyExt;
    let max = s.limits.max_frame_bytes;
    let too_large = || {
        err(
            StatusCode::PAYLOAD_TOO_LARGE,
            "frame_too_large",
            format!("a frame is at most {max} bytes"),
        )
    };
    let declared = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let busy = || {
        let mut r = err(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_busy",
            "too many frame bodies in flight (on this connection or in all); retry",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        r
    };
    // Bytes are charged as they arrive: a declared length reserves nothing,
    // so holding budget costs a client the bytes it sends.
    let peer = conn.as_ref().map(|c| c.peer);
    let mut charge = Charge::new(s.bodies.clone(), conn);
    // The declared length is allocated at once (virtual memory: pages are
    // touched only as bytes arrive); without one the buffer grows by
    // doubling, so it holds at most twice what was charged.
    let mut buf = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    let mut body = body;
    // The frame's length once its header has arrived: a body that cannot
    // be a listed device's frame is refused at its first bytes.
    let mut frame_len = None;
    let refuse = |e: IngestError| {
        s.ingest.counters.refuse(&e);
        ingest_err(&e)
    };
    while let Some(f) = body.frame().await {
        let f = f.map_err(|e| err(StatusCode::BAD_REQUEST, "bad_body", e.to_string()))?;
        let Ok(data) = f.into_data() else { continue };
        if buf.len().saturating_add(data.len()) > max {
            return Err(too_large());
        }
        if !charge.add(data.len()) {
            return Err(busy());
        }
        buf.extend_from_slice(&data);
        // Over its source's rate: read the rest of it more slowly.
        if let Some(p) = peer {
            let wait = s.rates.take(p, data.len(), std::time::Instant::now());
            if !wait.is_zero() {
                s.ingest.counters.throttled.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(wait).await;
            }
        }
        if frame_len.is_none() {
            frame_len = s.ingest.precheck(&buf).map_err(refuse)?;
            if let Some(n) = frame_len {
                if n > max {
                    return Err(too_large());
                }
                // A body of another length than its header declares is
                // refused as a whole one would be (`malformed_frame`).
                match declared.map(|d| d.cmp(&(n as u64))) {
                    Some(std::cmp::Ordering::Less) => {
                        return Err(refuse(IngestError::Malformed(FrameError::Truncated {
                            needed: n as u64,
                            available: declared.unwrap_or_default(),
                        })));
                    }
                    Some(std::cmp::Ordering::Greater) => {
                        return Err(refuse(IngestError::Malformed(FrameError::TrailingBytes {
                            extra: declared.unwrap_or_default() - n as u64,
                        })));
                    }
                    _ => {}
                }
            }
        }
        if let Some(n) = frame_len.filter(|n| buf.len() > *n) {
            return Err(refuse(IngestError::Malformed(FrameError::TrailingBytes {
                extra: (buf.len() - n) as u64,
            })));
        }
    }
    if declared.is_some_and(|n| n != buf.len() as u64) {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "bad_body",
            "body length differs from Content-Length",
        ));
    }
    Ok((buf, charge))
}

async fn post_frame(
    State(s): State<Arc<AppState>>,
    conn: Option<Extension<Arc<ConnState>>>,
    h: HeaderMap,
    body: Body,
) -> Response {
    let sig = h
        .get(aorta_api::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok());
    // A request that cannot be a device's (no well-formed signature) is
    // refused before its body is read.
    if sig.is_none_or(|v| v.trim().len() != 128) {
        let e = match sig {
            None => IngestError::SignatureMissing {
                serial: String::new(),
            },
            Some(_) => IngestError::SignatureInvalid {
                serial: String::new(),
            },
        };
        s.ingest.counters.refuse(&e);
        return err(
            StatusCode::UNAUTHORIZED,
            e.name(),
            "a frame needs the aorta-signature header: the device's Ed25519 signature, 128 lower-case hex digits (the body is not read without it)",
        );
    }
    let (body, _charge) = match read_frame_body(&s, conn.map(|c| c.0), &h, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let arrival = aorta_base::time::now_us();
    match s.ingest.submit(arrival, &body, sig).await {
        Ok(mut ack) => {
            if let (Some(r), false) = (s.reneg.clone(), ack.duplicate) {
                let (serial, seq) = (ack.serial.clone(), ack.sequence);
                let offer = tokio::task::spawn_blocking(move || r.observe(&serial, seq))
                    .await
                    .ok()
                    .flatten();
                ack.reneg_offer = offer.map(|o| aorta_base::hex::encode(&o));
            }
            tracing::debug!(target: "aorta::ingest", serial = %ack.serial, sequence = ack.sequence, offset = ack.offset, duplicate = ack.duplicate, "frame acknowledged");
            axum::Json(ack).into_response()
        }
        Err(e) => {
            // Any client can cause a refusal: the log keeps a sample, the
            // metrics count them all (`log_throttle`).
            static REFUSED: LogThrottle = LogThrottle::new(REFUSALS_PER_SEC);
            if let Some(suppressed) = REFUSED.allow() {
                tracing::info!(target: "aorta::ingest", error = e.name(), detail = %e, suppressed, "frame refused");
            }
            ingest_err(&e)
        }
    }
}

/// Worker routes: the token is checked before anything of the request is
/// read, and one checkpoint and one results body are read at a time.
async fn worker_gate(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    // `GET /v1/results` is the clinicians' (signed requests, no body).
    let clinician = req.method() == axum::http::Method::GET && req.uri().path() == "/v1/results";
    if clinician {
        return next.run(req).await;
    }
    if !s.authorized(req.headers()) {
        return unauthorized();
    }
    let gate = match (req.method(), req.uri().path()) {
        (&axum::http::Method::PUT, "/v1/checkpoint") => Some(&s.checkpoint_gate),
        (&axum::http::Method::POST, "/v1/results") => Some(&s.results_gate),
        _ => None,
    };
    let _permit = match gate {
        Some(g) => match g.acquire().await {
            Ok(p) => Some(p),
            Err(_) => return err(StatusCode::SERVICE_UNAVAILABLE, "stopping", "shutting down"),
        },
        None => None,
    };
    next.run(req).await
}

/// `POST /v1/devices/reneg?serial=…`: one renegotiation message of the
/// device's open session (`docs/server-api.md`).
async fn post_reneg(
    State(s): State<Arc<AppState>>,
    q: Query<aorta_api::RenegQuery>,
    body: Bytes,
) -> Response {
    let Some(r) = s.reneg.clone() else {
        return err(
            StatusCode::NOT_IMPLEMENTED,
            "reneg_unavailable",
            "max_key_uses renegotiation runs on the data owner's side: this host holds no key material (run `aorta server` with the registry, `policy` set, for one-machine mode)",
        );
    };
    let serial = q.0.serial;
    let out = tokio::task::spawn_blocking(move || {
        let res = r.handle(&serial, &body);
        (serial, res)
    })
    .await;
    match out {
        Ok((_, Ok(Some(msg)))) => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], msg).into_response()
        }
        Ok((_, Ok(None))) => StatusCode::NO_CONTENT.into_response(),
        Ok((serial, Err(e))) => {
            static REFUSED: LogThrottle = LogThrottle::new(REFUSALS_PER_SEC);
            if let Some(suppressed) = REFUSED.allow() {
                tracing::info!(target: "aorta::reneg", serial, error = e.name(), detail = %e, suppressed, "renegotiation message refused");
            }
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            err(status, e.name(), e.to_string())
        }
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

async fn get_log(State(s): State<Arc<AppState>>, h: HeaderMap, q: Query<LogQuery>) -> Response {
    if !s.authorized(&h) {
        return unauthorized();
    }
    let mut end_rx = s.ingest.end.clone();
    let mut end = *end_rx.borrow_and_update();
    if q.from > end {
        return err(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "offset_beyond_end",
            format!("offset {} is beyond the log end {end}", q.from),
        );
    }
    if q.from == end && q.wait_ms > 0 {
        let wait = Duration::from_millis(q.wait_ms).min(s.poll);
        if let Ok(Ok(())) = tokio::time::timeout(wait, end_rx.changed()).await {
            end = *end_rx.borrow();
        }
    }
    let Some(reader) = s.ingest.reader.clone() else {
        return err(
            StatusCode::CONFLICT,
            "frames_in_jetstream",
            "this server runs in cluster mode: its frames are in NATS JetStream (docs/scale.md)",
        );
    };
    let (from, max) = (q.from, q.max.clamp(1, MAX_LOG_RECORDS));
    let cap = s.limits.log_answer_bytes;
    let read = tokio::task::spawn_blocking(move || reader.read_capped(from, max, cap, end)).await;
    match read {
        Ok(Ok((recs, next))) => {
            let mut resp = aorta_api::encode_log_records(&recs).into_response();
            let hv = |v: u64| {
                HeaderValue::from_str(&v.to_string()).unwrap_or(HeaderValue::from_static("0"))
            };
            resp.headers_mut().insert(NEXT_HEADER, hv(next));
            resp.headers_mut().insert(END_HEADER, hv(end));
            let pending = s.erasures_pending.load(Ordering::Relaxed);
            if pending > 0 {
                resp.headers_mut()
                    .insert(aorta_api::ERASURES_HEADER, hv(pending));
            }
            resp
        }
        Ok(Err(aorta_stream::StreamError::Deleted { offset, first, .. })) => err(
            StatusCode::GONE,
            "offset_retired",
            format!("offset {offset} was deleted by retention; the first offset kept is {first}"),
        ),
        Ok(Err(e)) => {
            // A client offset inside a record lands here too.
            err(StatusCode::BAD_REQUEST, "bad_offset", e.to_string())
        }
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

async fn get_checkpoint(State(s): State<Arc<AppState>>, h: HeaderMap) -> Response {
    if !s.authorized(&h) {
        return unauthorized();
    }
    let r = s.checkpoints.lock().map(|c| c.load());
    match r {
        Ok(Ok(Some(cp))) => axum::Json(cp).into_response(),
        Ok(Ok(None)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e)) => err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "checkpoint_unreadable",
            e.to_string(),
        ),
        Err(_) => err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "lock poisoned",
        ),
    }
}

async fn put_checkpoint(State(s): State<Arc<AppState>>, h: HeaderMap, body: Bytes) -> Response {
    if !s.authorized(&h) {
        return unauthorized();
    }
    let cp: Checkpoint = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return err(StatusCode::BAD_REQUEST, "bad_checkpoint", e.to_string()),
    };
    if cp.version != 1 || crc32(&cp.state) != cp.crc {
        return err(
            StatusCode::BAD_REQUEST,
            "bad_checkpoint",
            "unknown version or checksum mismatch",
        );
    }
    // (In cluster mode the offset is a JetStream stream sequence, which
    // this ingest node's end does not bound.)
    if s.ingest.reader.is_some() && cp.log_offset > *s.ingest.end.borrow() {
        return err(
            StatusCode::BAD_REQUEST,
            "bad_checkpoint",
            "checkpoint offset beyond the log end",
        );
    }
    let st = s.clone();
    let off = cp.log_offset;
    let r = tokio::task::spawn_blocking(move || {
        st.checkpoints
            .lock()
            .map_err(|_| "lock poisoned".to_string())
            .and_then(|mut c| c.save(&cp).map_err(|e| e.to_string()))
    })
    .await;
    match r {
        Ok(Ok(())) => {
            s.ingest.worker_offset.store(off, Ordering::Relaxed);
            s.checkpoint_seq.fetch_add(1, Ordering::SeqCst);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Err(e)) => err(StatusCode::INTERNAL_SERVER_ERROR, "checkpoint_write", e),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// Why a result batch was not stored.
enum StoreFailure {
    Store(aorta_stream::StreamError),
    Poisoned,
}

fn crc32(s: &str) -> u32 {
    // Same CRC the checkpoint store checks.
    let mut h = crc32fast_hasher();
    h.update(s.as_bytes());
    h.finalize()
}

fn crc32fast_hasher() -> crc32fast::Hasher {
    crc32fast::Hasher::new()
}

async fn post_results(State(s): State<Arc<AppState>>, h: HeaderMap, body: Bytes) -> Response {
    if !s.authorized(&h) {
        return unauthorized();
    }
    let batch: WorkerBatch = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return err(StatusCode::BAD_REQUEST, "bad_batch", e.to_string()),
    };
    let cert = match s.batch_certificate(&batch) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut decoded = Vec::with_capacity(batch.results.len());
    for r in &batch.results {
        if r.id.is_empty() || r.id.len() > 1024 || r.id.contains('\0') {
            return err(
                StatusCode::BAD_REQUEST,
                "bad_batch",
                "result id empty, too long or with NUL",
            );
        }
        let b = match r.bytes() {
            Ok(b) => b,
            Err(e) => return err(StatusCode::BAD_REQUEST, "bad_batch", e.to_string()),
        };
        // Only a record signed under `id` by the certified worker key is
        // stored: nobody else can pre-empt a result id.
        let Some(cert) = &cert else {
            return err(
                StatusCode::FORBIDDEN,
                "result_not_certified",
                "results must come with the broker's worker certificate",
            );
        };
        let signed = aorta_crypto::auth::SignedResult::parse(&b)
            .and_then(|sr| sr.verify(cert, &r.id).map(|_| ()));
        if let Err(e) = signed {
            tracing::warn!(target: "aorta::results", id = %r.id, error = %e, "result refused");
            return err(
                StatusCode::FORBIDDEN,
                "result_signature_invalid",
                format!("result {}: {e}", r.id),
            );
        }
        decoded.push((r.id.clone(), b));
    }
    let st = s.clone();
    let stored = tokio::task::spawn_blocking(move || -> Result<(u64, u64, u64), StoreFailure> {
        let mut store = st.results.lock().map_err(|_| StoreFailure::Poisoned)?;
        let (mut new, mut dup) = (0, 0);
        for (id, b) in decoded {
            if store.put(&id, &b).map_err(StoreFailure::Store)? {
                new += 1;
            } else {
                dup += 1;
            }
        }
        store.sync().map_err(StoreFailure::Store)?;
        Ok((new, dup, store.end()))
    })
    .await;
    let (stored, duplicates) = match stored {
        Ok(Ok((n, d, end))) => {
            s.results_end.store(end, Ordering::Relaxed);
            s.results_end_tx.send_replace(end);
            (n, d)
        }
        Ok(Err(StoreFailure::Store(e))) => {
            // The store rolled back to its durable end and forgot the ids
            // of this batch: the worker retries it whole.
            tracing::warn!(target: "aorta::results", error = %e, "result batch not stored");
            let (status, name, secs) = match e {
                aorta_stream::StreamError::StorageFull { .. } => {
                    (StatusCode::INSUFFICIENT_STORAGE, "storage_full", "30")
                }
                _ => (StatusCode::SERVICE_UNAVAILABLE, "results_unavailable", "1"),
            };
            let mut r = err(
                status,
                name,
                "the results store could not be written; retry",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(secs));
            return r;
        }
        Ok(Err(StoreFailure::Poisoned)) => {
            return err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "lock poisoned",
            );
        }
        Err(e) => return err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    s.results_stored.fetch_add(stored, Ordering::Relaxed);
    s.results_duplicate.fetch_add(duplicates, Ordering::Relaxed);
    if let Ok(mut w) = s.stats.lock() {
        w.batches += 1;
        w.opened += batch.opened;
        for (c, n) in batch.refused {
            *w.refused.entry(c).or_default() += n;
        }
        for l in batch.latencies_us {
            let ms = l as f64 / 1000.0;
            let b = BUCKETS_MS
                .iter()
                .position(|&u| ms <= u)
                .unwrap_or(BUCKETS_MS.len());
            if let Some(c) = w.buckets.get_mut(b) {
                *c += 1;
            }
            w.latency_sum_us += l as f64;
            w.latency_count += 1;
            if w.latencies_us.len() >= LATENCY_SAMPLES {
                w.latencies_us.pop_front();
            }
            w.latencies_us.push_back(l);
        }
    }
    axum::Json(BatchAnswer { stored, duplicates }).into_response()
}

/// The clinician a `GET /v1/results` request authenticates as, or the
/// refusal: `aorta-clinician: ID`, `aorta-time: UNIX_S` (within
/// [`aorta_api::MAX_CLOCK_SKEW_S`] of the server's clock) and
/// `aorta-signature: HEX`, the Ed25519 signature by the clinician's
/// authentication key of `aorta_crypto::auth::read_message(ID, UNIX_S,
/// path and query)`.
#[allow(
    clippy::result_large_err,
    reason = "the error is the HTTP answer itself"
)]
fn clinician(s: &AppState, h: &HeaderMap, uri: &axum::http::Uri) -> Result<String, Response> {
    let denied = |detail: &str| {
        err(
            StatusCode::UNAUTHORIZED,
            "clinician_unauthenticated",
            detail.to_owned(),
        )
    };
    let header = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(time), Some(sig)) = (
        header(aorta_api::CLINICIAN_HEADER),
        header(aorta_api::TIME_HEADER),
        header(aorta_api::SIGNATURE_HEADER),
    ) else {
        return Err(denied(
            "reading results needs a request signed with the clinician's key (aorta-clinician, aorta-time, aorta-signature)",
        ));
    };
    // The same answer for every failure below: a stranger learns nothing
    // about which clinician ids exist.
    const BAD: &str = "unknown clinician, stale time or bad signature";
    let fresh = time
        .parse::<u64>()
        .ok()
        .filter(|t| t.abs_diff(aorta_base::time::now_s()) <= aorta_api::MAX_CLOCK_SKEW_S);
    let sig = aorta_base::hex::decode_array::<64>(sig, aorta_base::hex::Case::Lower).ok();
    let (Some(t), Some(sig), Some(key)) = (fresh, sig, s.clinicians.get(id)) else {
        return Err(denied(BAD));
    };
    let pq = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let msg = aorta_crypto::auth::read_message(id, t, pq);
    aorta_crypto::auth::verify(key, &msg, &sig, "results read request").map_err(|_| denied(BAD))?;
    Ok(id.to_owned())
}

async fn get_results(
    State(s): State<Arc<AppState>>,
    h: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    // Only an authenticated clinician reads, and only their own results.
    // The query is parsed after authentication: a stranger gets 401
    // whatever it sends.
    let who = match clinician(&s, &h, &uri) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let q = match Query::<ResultsQuery>::try_from_uri(&uri) {
        Ok(q) => q,
        Err(e) => return err(StatusCode::BAD_REQUEST, "bad_request", e.body_text()),
    };
    let own = format!("{who}/");
    if !q.prefix.is_empty() && !q.prefix.starts_with(&own) {
        return err(
            StatusCode::FORBIDDEN,
            "not_your_results",
            format!("clinician {who} reads only ids under {own}"),
        );
    }
    let prefix = if q.prefix.is_empty() {
        own
    } else {
        q.prefix.clone()
    };
    let end = s.results_end.load(Ordering::Relaxed);
    if q.after > end {
        return err(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "cursor_beyond_end",
            "cursor beyond the end",
        );
    }
    let wait = Duration::from_secs(q.wait.min(aorta_api::MAX_RESULTS_WAIT_S))
        .min(s.limits.request.saturating_sub(Duration::from_secs(5)));
    // A waiter holds a slot (bounded per clinician and in all) for as long
    // as it waits; over the bound the request is refused before it waits.
    let _slot = if wait.is_zero() {
        None
    } else {
        match s.waiters.enter(&who) {
            Some(slot) => Some(slot),
            None => {
                let mut r = err(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_waiters",
                    format!(
                        "at most {} waiting reads per clinician, and a bounded number in all; retry",
                        Waiters::PER_CLINICIAN
                    ),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return r;
            }
        }
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut end_rx = s.results_end_tx.subscribe();
    let mut stop_rx = s.stop_tx.subscribe();
    let (mut after, limit) = (q.after, q.limit.clamp(1, MAX_RESULTS));
    loop {
        let st = s.clone();
        let r = tokio::task::spawn_blocking(move || {
            st.results
                .lock()
                .map_err(|_| "lock poisoned".to_string())
                .and_then(|r| r.read_from(after, limit).map_err(|e| e.to_string()))
        })
        .await;
        let (items, next) = match r {
            Ok(Ok(page)) => page,
            Ok(Err(e)) => return err(StatusCode::BAD_REQUEST, "bad_cursor", e),
            Err(e) => return err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        };
        let results: Vec<ResultItem> = items
            .into_iter()
            .filter(|(id, _)| id.starts_with(&prefix))
            .map(|(id, b)| ResultItem::new(&id, &b))
            .collect();
        if !results.is_empty() || tokio::time::Instant::now() >= deadline {
            let certificates = s.certificates_of(&results);
            return axum::Json(ResultsPage {
                results,
                certificates,
                next,
            })
            .into_response();
        }
        // Nothing of this clinician's after `next` yet: wait for the store
        // to grow past it, the deadline, or the server stopping. Other
        // clinicians' results move the cursor without answering, so the
        // answer's timing tells nothing about them.
        after = next;
        let grown = end_rx.wait_for(|&end| end > after);
        let stopped = stop_rx.wait_for(|&stop| stop);
        tokio::select! {
            r = tokio::time::timeout_at(deadline, grown) => {
                if !matches!(r, Ok(Ok(_))) {
                    // The deadline (or the store closing): answer empty.
                    return axum::Json(ResultsPage {
                        results: Vec::new(),
                        certificates: Vec::new(),
                        next: after,
                    })
                    .into_response();
                }
            }
            _ = stopped => {
                return axum::Json(ResultsPage {
                    results: Vec::new(),
                    certificates: Vec::new(),
                    next: after,
                })
                .into_response();
            }
        }
    }
}

impl AppState {
    /// Clinicians' long-polling result reads waiting now.
    pub fn results_waiting(&self) -> usize {
        self.waiters.waiting()
    }

    /// The batch's certificate, verified against the pinned broker key and
    /// kept; `Ok(None)` for a batch without one. A refusal is the answer.
    #[allow(
        clippy::result_large_err,
        reason = "the error is the HTTP answer itself, built once per refused batch"
    )]
    fn batch_certificate(
        &self,
        batch: &WorkerBatch,
    ) -> Result<Option<aorta_crypto::auth::WorkerCert>, Response> {
        let Some(text) = &batch.certificate else {
            return Ok(None);
        };
        let forbidden = |e: String| err(StatusCode::FORBIDDEN, "certificate_refused", e);
        let Some(pinned) = self.broker_key else {
            return Err(forbidden(
                "this server pins no broker key (`broker_key`): it stores no results".into(),
            ));
        };
        let bytes = aorta_api::certificate_bytes(text)
            .map_err(|e| err(StatusCode::BAD_REQUEST, "bad_batch", e.to_string()))?;
        let cert = aorta_crypto::auth::WorkerCert::parse(&bytes)
            .map_err(|e| err(StatusCode::BAD_REQUEST, "bad_batch", e.to_string()))?;
        cert.verify(&pinned, aorta_base::time::now_s())
            .map_err(|e| forbidden(e.to_string()))?;
        let d = cert.digest();
        let mut certs = self.certs.lock().map_err(|_| {
            err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "lock poisoned",
            )
        })?;
        if let std::collections::btree_map::Entry::Vacant(slot) = certs.entry(d) {
            let path = self
                .certs_dir
                .join(format!("{}.aowc", aorta_base::hex::encode(&d)));
            aorta_base::fs::write_private_atomic(&path, &bytes).map_err(|e| {
                err(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "results_write",
                    e.to_string(),
                )
            })?;
            slot.insert(bytes);
        }
        Ok(Some(cert))
    }

    /// The certificates `results` name (base64), each once.
    fn certificates_of(&self, results: &[ResultItem]) -> Vec<String> {
        let Ok(certs) = self.certs.lock() else {
            return Vec::new();
        };
        let mut seen = std::collections::BTreeSet::new();
        for r in results {
            if let Ok(b) = r.bytes()
                && let Ok(sr) = aorta_crypto::auth::SignedResult::parse(&b)
            {
                seen.insert(sr.cert_digest);
            }
        }
        seen.iter()
            .filter_map(|d| certs.get(d))
            .map(|c| aorta_api::certificate_text(c))
            .collect()
    }
}

/// The `[clinicians]` table of `path`: subscriber id → authentication key.
pub fn load_clinicians(path: &std::path::Path) -> anyhow::Result<BTreeMap<String, [u8; 32]>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        clinicians: BTreeMap<String, String>,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let f: File = toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
    f.clinicians
        .into_iter()
        .map(|(id, k)| {
            let key = aorta_base::hex::decode_array::<32>(k.trim(), aorta_base::hex::Case::Lower)
                .with_context(|| {
                format!("{}: clinician {id}: not 64 hex digits", path.display())
            })?;
            Ok((id, *key))
        })
        .collect()
}

fn load_certs(dir: &std::path::Path) -> anyhow::Result<BTreeMap<[u8; 32], Vec<u8>>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.extension().is_none_or(|x| x != "aowc") {
            continue;
        }
        let b = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        match aorta_crypto::auth::WorkerCert::parse(&b) {
            Ok(c) => {
                out.insert(c.digest(), b);
            }
            Err(e) => {
                tracing::warn!(target: "aorta::results", file = %p.display(), error = %e, "unreadable worker certificate ignored");
            }
        }
    }
    Ok(out)
}

/// The `p` percentile of `sorted` latencies (µs), ms; `None` without any.
fn percentile(sorted: &[i64], p: f64) -> Option<f64> {
    let i = (sorted.len().checked_sub(1)? as f64 * p).round() as usize;
    sorted.get(i).map(|v| *v as f64 / 1000.0)
}

impl AppState {
    /// Current counters.
    pub fn stats(&self) -> Stats {
        let c = &self.ingest.counters;
        let mut st = Stats {
            frames_accepted: c.accepted.load(Ordering::Relaxed),
            frames_duplicate: c.duplicates.load(Ordering::Relaxed),
            frames_refused: c
                .refused
                .lock()
                .map(|m| m.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect())
                .unwrap_or_default(),
            log_end: *self.ingest.end.borrow(),
            worker_offset: self.ingest.worker_offset.load(Ordering::Relaxed),
            results: self.results_stored.load(Ordering::Relaxed),
            results_duplicate: self.results_duplicate.load(Ordering::Relaxed),
            ..Stats::default()
        };
        // Copy the samples under the lock; sort outside it.
        let mut v: Vec<i64> = Vec::new();
        if let Ok(w) = self.stats.lock() {
            st.frames_opened = w.opened;
            st.frames_refused_by_worker = w.refused.clone();
            st.latency_count = w.latency_count;
            v.extend(w.latencies_us.iter().copied());
        }
        v.sort_unstable();
        st.latency_p50_ms = percentile(&v, 0.50);
        st.latency_p99_ms = percentile(&v, 0.99);
        st
    }

    /// [`AppState::stats`], computed off the async threads at most once per
    /// [`STATS_TTL`] however many clients ask.
    async fn cached_stats(self: &Arc<Self>) -> Arc<Stats> {
        let mut cache = self.stats_cache.lock().await;
        if let Some((at, st)) = cache.as_ref()
            && at.elapsed() < STATS_TTL
        {
            return st.clone();
        }
        let me = self.clone();
        let st = match tokio::task::spawn_blocking(move || me.stats()).await {
            Ok(st) => Arc::new(st),
            Err(_) => Arc::new(Stats::default()),
        };
        *cache = Some((std::time::Instant::now(), st.clone()));
        st
    }

    fn metrics(&self, st: &Stats) -> String {
        use std::fmt::Write as _;
        let mut m = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        // Durable counts: what the stores held at start plus what this
        // process added (docs/server.md, "Operations port").
        let at_start = |c: &AtomicU64| c.load(Ordering::Relaxed);
        counter(
            "aorta_ingest_frames_accepted_total",
            "Frames appended to the durable log (the frames the log holds at start, plus those appended since).",
            st.frames_accepted + at_start(&self.ingest.counters.frames_at_start),
        );
        counter(
            "aorta_ingest_frames_duplicate_total",
            "Exact re-sends acknowledged again.",
            st.frames_duplicate,
        );
        counter(
            "aorta_ingest_log_syncs_total",
            "Group commits of the log.",
            self.ingest.counters.syncs.load(Ordering::Relaxed),
        );
        counter(
            "aorta_ingest_bytes_total",
            "Frame bytes appended to the log (those the log holds at start, plus those appended since).",
            self.ingest.counters.bytes.load(Ordering::Relaxed)
                + at_start(&self.ingest.counters.bytes_at_start),
        );
        counter(
            "aorta_ingest_body_chunks_throttled_total",
            "Frame body chunks read later because their source address was over source_frame_bytes_per_sec.",
            self.ingest.counters.throttled.load(Ordering::Relaxed),
        );
        counter(
            "aorta_worker_frames_opened_total",
            "Frames opened by attested workers.",
            st.frames_opened,
        );
        counter(
            "aorta_results_stored_total",
            "Sealed results stored (those the store holds at start, plus those stored since).",
            st.results + self.results_at_start,
        );
        counter(
            "aorta_results_duplicate_total",
            "Results recomputed after a restart and ignored.",
            st.results_duplicate,
        );
        let _ = writeln!(
            m,
            "# HELP aorta_results_waiting Clinicians' long-polling result reads waiting now.\n# TYPE aorta_results_waiting gauge\naorta_results_waiting {}",
            self.waiters.waiting()
        );
        let _ = writeln!(
            m,
            "# HELP aorta_ingest_frames_refused_total Frames refused by ingest.\n# TYPE aorta_ingest_frames_refused_total counter"
        );
        for (k, v) in &st.frames_refused {
            let _ = writeln!(m, "aorta_ingest_frames_refused_total{{reason=\"{k}\"}} {v}");
        }
        let _ = writeln!(
            m,
            "# HELP aorta_worker_frames_refused_total Frames refused inside workers, by code.\n# TYPE aorta_worker_frames_refused_total counter"
        );
        for (k, v) in &st.frames_refused_by_worker {
            let _ = writeln!(m, "aorta_worker_frames_refused_total{{code=\"{k}\"}} {v}");
        }
        let _ = writeln!(
            m,
            "# HELP aorta_log_end_bytes Durable end of the frame log.\n# TYPE aorta_log_end_bytes gauge\naorta_log_end_bytes {}",
            st.log_end
        );
        let _ = writeln!(
            m,
            "# HELP aorta_worker_lag_bytes Log bytes not yet covered by a worker checkpoint.\n# TYPE aorta_worker_lag_bytes gauge\naorta_worker_lag_bytes {}",
            st.log_end.saturating_sub(st.worker_offset)
        );
        if let Ok(w) = self.stats.lock() {
            let name = "aorta_frame_to_result_seconds";
            let _ = writeln!(
                m,
                "# HELP {name} Frame arrival at ingest to its results durable.\n# TYPE {name} histogram"
            );
            let mut cum = 0;
            for (i, le) in BUCKETS_MS.iter().enumerate() {
                cum += w.buckets.get(i).copied().unwrap_or(0);
                let _ = writeln!(m, "{name}_bucket{{le=\"{}\"}} {cum}", le / 1000.0);
            }
            let _ = writeln!(m, "{name}_bucket{{le=\"+Inf\"}} {}", w.latency_count);
            let _ = writeln!(m, "{name}_sum {}", w.latency_sum_us / 1e6);
            let _ = writeln!(m, "{name}_count {}", w.latency_count);
        }
        m
    }
}

async fn get_stats(State(s): State<Arc<AppState>>) -> Response {
    let st = s.cached_stats().await;
    axum::Json(&*st).into_response()
}

async fn get_metrics(State(s): State<Arc<AppState>>) -> Response {
    let st = s.cached_stats().await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.exposition(&st),
    )
        .into_response()
}

async fn healthz(State(s): State<Arc<AppState>>) -> Response {
    if s.stopping.load(Ordering::Relaxed) {
        return err(StatusCode::SERVICE_UNAVAILABLE, "stopping", "shutting down");
    }
    "ok".into_response()
}

/// The router over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let gate = axum::middleware::from_fn_with_state(state.clone(), worker_gate);
    // Frame bodies are read by `post_frame` itself, under the body budget.
    let frames = Router::new().route("/v1/frames", post(post_frame));
    let worker = Router::new()
        .route("/v1/log", get(get_log))
        .route("/v1/results", post(post_results).get(get_results))
        .route(
            "/v1/erasures",
            get(erasure_routes::get_erasures).post(erasure_routes::post_erasures),
        )
        .layer(DefaultBodyLimit::max(MAX_WORKER_BODY))
        .route_layer(gate.clone());
    let checkpoint = Router::new()
        .route("/v1/checkpoint", get(get_checkpoint).put(put_checkpoint))
        .layer(DefaultBodyLimit::max(MAX_CHECKPOINT_BODY))
        .route_layer(gate);
    let reneg = Router::new()
        .route(aorta_api::RENEG_PATH, post(post_reneg))
        .layer(DefaultBodyLimit::max(super::reneg::MAX_RENEG_BODY));
    Router::new()
        .merge(frames)
        .merge(worker)
        .merge(checkpoint)
        .merge(reneg)
        .route("/v1/stats", get(get_stats))
        .route("/metrics", get(get_metrics))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> Response {
    err(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {} (docs/server-api.md)", uri.path()),
    )
}

/// Every error answer has a JSON body (`docs/server-api.md`): the ones the
/// HTTP layer writes in plain text (a wrong method, a worker body over its
/// limit, a bad query string) are rewritten with a stable name by status.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let name = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::NOT_FOUND => "not_found",
        s if s.is_client_error() => "bad_request",
        _ => "internal",
    };
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let mut out = err(
        status,
        name,
        String::from_utf8_lossy(&text).trim().to_owned(),
    );
    for (k, v) in &parts.headers {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

/// Opens the stores in `cfg.data_dir` and builds the state (keyless host:
/// no renegotiation).
pub fn open_state(
    cfg: &ServerConfig,
    devices: Arc<dyn DeviceDirectory>,
    broker_key: Option<[u8; 32]>,
) -> anyhow::Result<Arc<AppState>> {
    open_state_with_reneg(cfg, devices, broker_key, None)
}

/// [`open_state`] with the renegotiation service of a process that holds
/// the registry.
pub fn open_state_with_reneg(
    cfg: &ServerConfig,
    devices: Arc<dyn DeviceDirectory>,
    broker_key: Option<[u8; 32]>,
    reneg: Option<Arc<super::reneg::RenegService>>,
) -> anyhow::Result<Arc<AppState>> {
    let clinicians = match &cfg.clinicians {
        Some(p) => load_clinicians(p)?,
        None => BTreeMap::new(),
    };
    let dir = &cfg.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let lock = crate::erasure::lock_data_dir(dir)?;
    let erasures = crate::erasure::ErasureBook::open(dir)?;
    if !erasures.pending().is_empty() {
        tracing::info!(target: "aorta::server", pending = erasures.pending().len(), "patient erasures wait for the worker");
    }
    let token_path = dir.join("worker.token");
    if !token_path.exists() {
        let t = aorta_base::random::secret::<24>()?;
        aorta_base::fs::write_private_new(
            &token_path,
            aorta_base::hex::encode_secret(t.as_ref()).as_bytes(),
        )?;
    }
    let worker_token = zeroize::Zeroizing::new(
        std::fs::read_to_string(&token_path)
            .with_context(|| format!("reading {}", token_path.display()))?
            .trim()
            .to_owned(),
    );
    let hours = |h: u64| Duration::from_secs(h.saturating_mul(3600));
    let ingest = match &cfg.cluster {
        // Cluster mode: accepted frames go to NATS JetStream (docs/scale.md).
        Some(c) => {
            let spec = c.spec();
            let auth = c.auth().context("the [cluster] credentials")?;
            let nats = aorta_cluster::Nats::connect_with(&c.nats, &auth, spec.ack_timeout)
                .with_context(|| format!("connecting to NATS at {}", c.nats))?;
            nats.ensure_stream(&spec)
                .with_context(|| format!("the JetStream stream {}", spec.stream))?;
            tracing::info!(target: "aorta::server", stream = %spec.stream, partitions = spec.partitions, replicas = spec.replicas, "cluster mode: frames go to NATS JetStream");
            Ingest::start_cluster(
                nats.publisher(&spec),
                devices,
                cfg.ingest_queue_frames,
                cfg.ingest_queue_bytes,
            )
            .context("starting ingest")?
        }
        None => Ingest::start_with(
            dir,
            devices,
            cfg.ingest_queue_frames,
            cfg.ingest_queue_bytes,
            cfg.max_worker_lag_bytes,
            super::ingest::Retention {
                segment_bytes: cfg.log_segment_bytes.unwrap_or(u64::MAX),
                keep: cfg.log_retention_hours.map(hours),
                ..Default::default()
            },
        )
        .context("opening the frame log")?,
    };
    let checkpoints = FileCheckpointStore::new(dir.join("checkpoint"))?;
    if let Some(cp) = checkpoints
        .load()
        .context("reading the worker checkpoint")?
    {
        ingest.worker_offset.store(cp.log_offset, Ordering::Relaxed);
    }
    let results = FileResultStore::open_with(
        dir.join("results.log"),
        aorta_stream::log::LogOptions {
            segment_bytes: cfg.results_segment_bytes.unwrap_or(u64::MAX),
        },
    )
    .context("opening the results store")?;
    let results_end_now = results.end();
    let results_end = AtomicU64::new(results_end_now);
    let results_at_start = results.len() as u64;
    let mut limits = Limits::from_config(cfg);
    limits.max_connections = super::limits::fit_to_open_files(limits.max_connections);
    if limits.max_connections < cfg.max_connections {
        tracing::warn!(target: "aorta::server", wanted = cfg.max_connections, allowed = limits.max_connections, "the open-file limit caps max_connections");
    }
    let state = Arc::new(AppState {
        ingest,
        results: Mutex::new(results),
        results_end,
        results_end_tx: tokio::sync::watch::Sender::new(results_end_now),
        waiters: Waiters::new(limits.max_connections / 4),
        stop_tx: tokio::sync::watch::Sender::new(false),
        checkpoints: Mutex::new(checkpoints),
        worker_token,
        stats: Mutex::new(WorkerStats::default()),
        poll: Duration::from_millis(cfg.log_poll_ms),
        results_stored: AtomicU64::new(0),
        results_duplicate: AtomicU64::new(0),
        stopping: AtomicBool::new(false),
        broker_key,
        certs: Mutex::new(load_certs(&dir.join("certs"))?),
        certs_dir: dir.join("certs"),
        clinicians,
        reneg,
        bodies: Arc::new(Budget::new(limits.body_budget)),
        rates: RateTable::new(limits.source_rate, limits.max_frame_bytes),
        limits,
        conns: Arc::new(ConnTable::default()),
        checkpoint_gate: tokio::sync::Semaphore::new(1),
        results_gate: tokio::sync::Semaphore::new(1),
        stats_cache: tokio::sync::Mutex::new(None),
        erasures_pending: AtomicU64::new(erasures.pending().len() as u64),
        erasures: Mutex::new(erasures),
        erasures_handed: Mutex::new(BTreeMap::new()),
        checkpoint_seq: AtomicU64::new(0),
        results_at_start,
        _lock: lock,
    });
    if let Some(h) = cfg.results_retention_hours {
        retire_results(&state, dir.join("results.log"), hours(h))?;
    }
    Ok(state)
}

/// Deletes, once a minute, the results segments whose last write is older
/// than `keep` (never the active one), under the store's lock so that no
/// read is in the middle of one.
fn retire_results(
    state: &Arc<AppState>,
    path: std::path::PathBuf,
    keep: Duration,
) -> anyhow::Result<()> {
    let weak = Arc::downgrade(state);
    std::thread::Builder::new()
        .name("aorta-results-retention".into())
        .spawn(move || {
            loop {
                let Some(st) = weak.upgrade() else { return };
                if let Some(cutoff) = std::time::SystemTime::now().checked_sub(keep)
                    && let Ok(_store) = st.results.lock()
                {
                    match aorta_stream::log::retire_segments(&path, u64::MAX, cutoff) {
                        Ok(gone) if !gone.is_empty() => {
                            tracing::info!(target: "aorta::results", segments = gone.len(), "results retention: segments deleted");
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(target: "aorta::results", error = %e, "results retention failed");
                        }
                    }
                }
                drop(st);
                std::thread::sleep(Duration::from_secs(60));
            }
        })
        .context("starting the results retention thread")?;
    Ok(())
}

impl AppState {
    /// Device ingest (the MQTT front submits through it too).
    pub fn ingest(&self) -> &Ingest {
        &self.ingest
    }

    /// The budget of frame bytes in memory, all connections (the MQTT
    /// front charges its packets to it too).
    pub fn body_budget(&self) -> Arc<Budget> {
        self.bodies.clone()
    }

    /// The limits this state serves under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Frame body bytes held in memory now, all connections.
    pub fn body_bytes_in_use(&self) -> usize {
        self.bodies.used()
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.conns.len()
    }
}

/// Serves HTTPS on `listener` until `shutdown` resolves, within the
/// state's [`Limits`] (`limits` module doc).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let app = router(state.clone());
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let limits = state.limits.clone();
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(target: "aorta::server", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let admitted = match state.conns.admit(peer.ip(), &limits) {
            Ok(a) => a,
            Err(_) => {
                tracing::debug!(target: "aorta::server", %peer, "connection refused: its source holds its share");
                continue;
            }
        };
        // At the limit, the longest-idle connection is asked to close to
        // admit this one, so idle clients never lock others out; with none
        // idle for ADMIT_WAIT, this one is closed (the others wait in the
        // kernel's backlog meanwhile).
        let slot = match slots.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(tokio::sync::TryAcquireError::Closed) => break,
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                let deadline = tokio::time::Instant::now() + ADMIT_WAIT;
                loop {
                    state.conns.evict_idlest(&admitted.state);
                    tokio::select! {
                        p = slots.clone().acquire_owned() => break p.ok(),
                        () = tokio::time::sleep(Duration::from_millis(100)) => {
                            if tokio::time::Instant::now() >= deadline {
                                break None;
                            }
                        }
                    }
                }
            }
        };
        let Some(slot) = slot else {
            tracing::debug!(target: "aorta::server", %peer, "connection refused: every connection is busy");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let conn = admitted.state.clone();
            let handshake = tokio::time::timeout(limits.handshake, acceptor.accept(tcp));
            let tls = tokio::select! {
                r = handshake => match r {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        tracing::debug!(target: "aorta::server", %peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                },
                () = conn.close_requested() => return,
            };
            serve_connection(tls, app, conn, &limits).await;
            drop(admitted);
        });
    }
    state.stopping.store(true, Ordering::Relaxed);
    state.stop_tx.send_replace(true);
    state.conns.close_all();
    Ok(())
}

/// One connection: HTTP/1.1 or HTTP/2 with the deadlines of `limits`;
/// closed (gracefully, then dropped after [`super::limits::CLOSE_GRACE`])
/// when idle for `limits.idle` or when the server asks.
async fn serve_connection(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    app: Router,
    conn: Arc<ConnState>,
    limits: &Limits,
) {
    use tower::ServiceExt as _;
    let peer = conn.peer;
    let svc_conn = conn.clone();
    let deadlines = limits.clone();
    let svc = tower::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
        let app = app.clone();
        let conn = svc_conn.clone();
        let deadline = deadlines.deadline_for(req.method(), req.uri().path());
        async move {
            let _inflight = conn.begin();
            req.extensions_mut().insert(conn);
            let req = req.map(Body::new);
            match tokio::time::timeout(deadline, app.oneshot(req)).await {
                Ok(r) => r,
                Err(_) => Ok(err(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!(
                        "the request took longer than {} s (headers to answer)",
                        deadline.as_secs()
                    ),
                )),
            }
        }
    });
    let svc = hyper_util::service::TowerToHyperService::new(svc);
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header)
        .max_buf_size(super::limits::H1_MAX_BUF);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        .initial_connection_window_size(super::limits::H2_CONNECTION_WINDOW)
        .initial_stream_window_size(super::limits::H2_STREAM_WINDOW)
        .max_header_list_size(super::limits::H2_MAX_HEADER_LIST)
        .keep_alive_interval(limits.h2_keepalive)
        .keep_alive_timeout(limits.h2_keepalive);
    let c = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), svc);
    tokio::pin!(c);
    let mut tick = tokio::time::interval(Duration::from_millis(
        (limits.idle.as_millis() / 4).clamp(50, 1000) as u64,
    ));
    let why = loop {
        tokio::select! {
            r = c.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(target: "aorta::server", %peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = tick.tick() => {
                if conn.idle_for() >= limits.idle {
                    break "idle";
                }
            }
            () = conn.close_requested() => break "asked to close",
        }
    };
    tracing::debug!(target: "aorta::server", %peer, why, "closing connection");
    c.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(super::limits::CLOSE_GRACE, c.as_mut()).await;
}

/// Everything `aorta server` runs, started: TLS, stores, broker.
pub struct Running {
    /// The HTTPS address bound.
    pub addr: SocketAddr,
    /// The broker address bound, if the broker runs.
    pub broker: Option<SocketAddr>,
    /// The certificate clients should trust.
    pub cert: std::path::PathBuf,
    /// The plain-HTTP operations port bound (`metrics_listen`), if any.
    pub metrics: Option<SocketAddr>,
    /// The MQTT front bound (`[mqtt]`), if any.
    pub mqtt: Option<SocketAddr>,
}

/// Runs `aorta server` with `cfg` until SIGINT/SIGTERM; `ready` is called
/// once listening.
pub fn run(cfg: &ServerConfig, ready: impl FnOnce(&Running)) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("creating {}", cfg.data_dir.display()))?;
    let (cert, key) = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let (c, k, made) = tls::ensure_dev_cert(&cfg.data_dir, &cfg.tls_names)?;
            if made {
                tracing::warn!(target: "aorta::server", cert = %c.display(), "generated a self-signed development certificate; clients must pin it (--ca)");
            }
            (c, k)
        }
    };
    let tls_cfg = tls::server_config(&cert, &key)?;
    // The host's services hold no key: devices are authenticated with the
    // public directory. Only the optional in-process broker opens the
    // registry (one-machine use).
    let directory = cfg
        .directory
        .clone()
        .unwrap_or_else(|| cfg.registry.join("directory.txt"));
    let devices =
        Arc::new(super::ingest::DirectoryFile::open(&directory).map_err(|e| anyhow::anyhow!(e))?);
    let mut broker_key = match &cfg.broker_key {
        Some(k) => Some(*aorta_base::hex::decode_array::<32>(
            k,
            aorta_base::hex::Case::Lower,
        )?),
        None => None,
    };
    let mut reneg = None;
    let broker_addr = match &cfg.policy {
        Some(p) => {
            let policy = crate::broker::policy::Policy::from_file(p)?;
            let registry = Arc::new(aorta_registry::Registry::open(&cfg.registry).with_context(
                || format!("opening the device registry {}", cfg.registry.display()),
            )?);
            // One-machine mode: this process holds the registry, so it can
            // renegotiate max_key_uses (the PSK never leaves the registry).
            let dir = devices.clone();
            reneg = Some(Arc::new(
                super::reneg::RenegService::new(
                    registry.clone(),
                    super::reneg::RenegConfig {
                        key_period_secs: cfg.reneg_key_period_secs,
                        min_observe_secs: cfg.reneg_min_observe_secs,
                        ..Default::default()
                    },
                )
                .on_change(Arc::new(move || dir.invalidate())),
            ));
            let results = match &cfg.subscribers {
                Some(f) => crate::broker::MemoryKeySource::from_toml_file(f)?,
                None => crate::broker::MemoryKeySource::default(),
            };
            let secret = super::load_or_create_secret(&cfg.data_dir.join("broker-state.key"))?;
            let signer = crate::broker::load_or_create_signing_key(
                &cfg.data_dir.join("broker-signing.key"),
            )?;
            if broker_key.is_some_and(|k| k != signer.public()) {
                anyhow::bail!(
                    "broker_key does not match the in-process broker's key {}",
                    aorta_base::hex::encode(&signer.public())
                );
            }
            broker_key = Some(signer.public());
            let keys = crate::broker::RegistryKeySource::from_registry(registry, results)
                .with_state_secret(aorta_enclave::keywrap::Secret32::from_bytes(*secret));
            let broker =
                Arc::new(crate::broker::Broker::new(policy, Arc::new(keys)).with_signer(signer));
            let l = std::net::TcpListener::bind(cfg.broker_listen)
                .with_context(|| format!("binding the broker to {}", cfg.broker_listen))?;
            let addr = l.local_addr()?;
            std::thread::Builder::new()
                .name("aorta-broker".into())
                .spawn(move || {
                    if let Err(e) = crate::broker::serve(l, broker) {
                        tracing::error!(target: "aorta::broker", error = %e, "broker stopped");
                    }
                })?;
            Some(addr)
        }
        None => None,
    };
    if broker_key.is_none() {
        tracing::warn!(target: "aorta::server", "no broker_key configured: results cannot be verified and none will be stored");
    }
    let state = open_state_with_reneg(cfg, devices, broker_key, reneg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("aorta-http")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .with_context(|| format!("binding {}", cfg.listen))?;
        let metrics = match cfg.metrics_listen {
            Some(a) => {
                let l = tokio::net::TcpListener::bind(a)
                    .await
                    .with_context(|| format!("binding the operations port (metrics_listen) {a}"))?;
                let bound = l.local_addr()?;
                let st = state.clone();
                tokio::spawn(ops::serve(l, st));
                Some(bound)
            }
            None => None,
        };
        let mqtt = match &cfg.mqtt {
            Some(m) => {
                let l = tokio::net::TcpListener::bind(m.listen)
                    .await
                    .with_context(|| format!("binding the MQTT front (mqtt.listen) {}", m.listen))?;
                let bound = l.local_addr()?;
                let limits = crate::mqtt::MqttLimits::from_config(m, cfg.max_frame_bytes);
                tracing::info!(target: "aorta::mqtt", addr = %bound, tls = !m.insecure_plain_tcp, memory_bound_mib = limits.memory_bound() >> 20, "MQTT front listening (docs/mqtt.md)");
                let tls = (!m.insecure_plain_tcp).then(|| tls_cfg.clone());
                tokio::spawn(crate::mqtt::serve(l, tls, state.clone(), limits, std::future::pending()));
                Some(bound)
            }
            None => None,
        };
        let running = Running {
            addr: listener.local_addr()?,
            broker: broker_addr,
            cert: cert.clone(),
            metrics,
            mqtt,
        };
        let shutdown = shutdown_signal();
        let off = |a: Option<SocketAddr>| a.map_or_else(|| "off".to_owned(), |a| a.to_string());
        tracing::info!(target: "aorta::server", addr = %running.addr, broker = %off(running.broker), metrics = %off(running.metrics), cert = %running.cert.display(), "listening (HTTP/2 and HTTP/1.1 over TLS)");
        ready(&running);
        tracing::info!(
            target: "aorta::server",
            max_connections = state.limits().max_connections,
            memory_bound_mib = state.limits().memory_bound(cfg.ingest_queue_bytes) >> 20,
            "limits (docs/server.md, \"Limits\")"
        );
        serve(listener, tls_cfg, state, shutdown).await
    })?;
    tracing::info!(target: "aorta::server", "stopped");
    Ok(())
}

/// SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is
/// called, not when the future is first polled: a signal that arrives right
/// after the server says it is listening stops it cleanly instead of
/// killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut t), Ok(mut i)) => {
                    tokio::select! { _ = t.recv() => {}, _ = i.recv() => {} }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
