//! The hostile clients of `aorta bench ingest`: strangers on the network
//! with no token and no device key, each repeating one attack until the
//! phase ends, over real TLS (tokio-rustls), HTTP/1.1 written by hand (to
//! control every byte and its timing) or HTTP/2 (the `h2` crate).
//!
//! Each client connects from its own loopback address (`127.0.x.y`, as a
//! distributed attacker would; from `127.0.0.1` where binding it fails) and
//! counts what the server did to each attempt: answered it (by status),
//! closed the connection, refused the connection, or let it run until the
//! phase ended.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::pki_types::ServerName;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// One kind of hostile client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HostileKind {
    /// Unauthenticated `PUT /v1/checkpoint` claiming and sending 300 MiB.
    CheckpointPut,
    /// One HTTP/2 connection opening up to 200 `POST /v1/frames` streams
    /// that each claim 4 MiB, send 1 MiB and never finish (each with a
    /// well-formed signature header that signs nothing, as below).
    H2Streams,
    /// HTTP/1.1 request headers sent one byte per second, never finished.
    SlowLoris,
    /// An HTTP/2 connection (preface and settings) that sends nothing more.
    IdleH2,
    /// Unauthenticated `POST /v1/results` claiming and sending 300 MiB.
    ResultsPost,
    /// `POST /v1/frames` claiming 1 KiB, body sent four bytes every 5 s.
    SlowBody,
    /// `POST /v1/frames` claiming 1 GiB (`Content-Length`), sent at full speed.
    OversizeClaimed,
    /// 64 KiB of random bytes as a frame, with a random signature.
    Garbage,
    /// A TLS connection that sends nothing after the handshake.
    IdleTls,
    /// `POST /v1/frames` chunked (no length claimed), 64 MiB actually sent.
    OversizeActual,
}

impl HostileKind {
    /// Every kind, in the order clients are assigned (client i is
    /// `ALL[i mod 10]`): a few clients get the most damaging kinds first.
    pub const ALL: [HostileKind; 10] = [
        HostileKind::CheckpointPut,
        HostileKind::H2Streams,
        HostileKind::SlowLoris,
        HostileKind::IdleH2,
        HostileKind::ResultsPost,
        HostileKind::SlowBody,
        HostileKind::OversizeClaimed,
        HostileKind::Garbage,
        HostileKind::IdleTls,
        HostileKind::OversizeActual,
    ];

    /// The kind's name (its JSON key).
    pub fn name(self) -> &'static str {
        match self {
            HostileKind::CheckpointPut => "checkpoint_put",
            HostileKind::H2Streams => "h2_streams",
            HostileKind::SlowLoris => "slow_loris",
            HostileKind::IdleH2 => "idle_h2",
            HostileKind::ResultsPost => "results_post",
            HostileKind::SlowBody => "slow_body",
            HostileKind::OversizeClaimed => "oversize_claimed",
            HostileKind::Garbage => "garbage",
            HostileKind::IdleTls => "idle_tls",
            HostileKind::OversizeActual => "oversize_actual",
        }
    }

    /// Pause between one attempt's end and the next.
    fn pause(self) -> Duration {
        match self {
            HostileKind::Garbage | HostileKind::OversizeClaimed | HostileKind::OversizeActual => {
                Duration::from_millis(100)
            }
            HostileKind::CheckpointPut | HostileKind::ResultsPost => Duration::from_millis(250),
            _ => Duration::from_millis(500),
        }
    }
}

/// The signature header hostile frame requests carry: 128 hex digits that
/// sign nothing, so the server reads their bodies (a request without one
/// is refused before its body is read).
const FAKE_SIGNATURE: &str = "abababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababababab";

/// Streams one [`HostileKind::H2Streams`] connection opens.
pub const H2_STREAMS: usize = 200;
/// Bytes each of its streams sends.
pub const H2_STREAM_BYTES: usize = 1 << 20;
/// The body of [`HostileKind::CheckpointPut`] and [`HostileKind::ResultsPost`].
pub const BIG_BODY: u64 = 300 << 20;
/// TCP connect and TLS handshake limit: beyond it the client counts the
/// attempt as refused (locked out).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest reply head read.
const MAX_HEAD: usize = 16 * 1024;
/// Bytes per write of a bulk body.
const CHUNK: usize = 64 * 1024;
static ZEROS: [u8; CHUNK] = [0; CHUNK];

/// What the clients of one kind achieved (the report's `hostile_outcomes`).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct KindOutcome {
    /// Clients of this kind.
    pub clients: u64,
    /// Attempts (connections) made.
    pub attempts: u64,
    /// Requests started (HTTP/2: streams opened).
    pub requests: u64,
    /// Attempts (HTTP/2: streams) the server answered, by status.
    pub answered: BTreeMap<u16, u64>,
    /// Attempts whose connection the server closed or reset without an
    /// answer (HTTP/2: the connection ended).
    pub closed_by_server: u64,
    /// Attempts whose TCP connection or TLS handshake failed or took over
    /// 5 s (the server refused or could not accept them).
    pub connect_failed: u64,
    /// HTTP/2 streams the server reset.
    pub streams_reset: u64,
    /// Attempts still running when the phase ended (not cut).
    pub open_at_end: u64,
    /// Client-side errors that are none of the above.
    pub other_errors: u64,
    /// Bytes the server took (written to its socket; HTTP/2: granted by its
    /// flow control).
    pub bytes_sent: u64,
    /// The longest one attempt lasted, s.
    pub longest_s: f64,
    /// Attempts the server ended (answered, closed or refused).
    pub cut: u64,
    /// One error seen, for the curious.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example_error: Option<String>,
}

/// Live counters of one kind (atomics: an attempt cut short by the phase's
/// end loses nothing).
#[derive(Default)]
struct Tally {
    clients: AtomicU64,
    attempts: AtomicU64,
    requests: AtomicU64,
    answered: Mutex<BTreeMap<u16, u64>>,
    closed: AtomicU64,
    connect_failed: AtomicU64,
    streams_reset: AtomicU64,
    open_at_end: AtomicU64,
    other: AtomicU64,
    bytes: AtomicU64,
    longest_ms: AtomicU64,
    example: Mutex<Option<String>>,
}

impl Tally {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn status(&self, s: u16) {
        if let Ok(mut m) = self.answered.lock() {
            *m.entry(s).or_default() += 1;
        }
    }

    fn note(&self, e: String) {
        if let Ok(mut x) = self.example.lock() {
            x.get_or_insert(e);
        }
    }

    fn outcome(&self) -> KindOutcome {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let answered = self.answered.lock().map(|m| m.clone()).unwrap_or_default();
        let cut = answered.values().sum::<u64>() + get(&self.closed) + get(&self.connect_failed);
        KindOutcome {
            clients: get(&self.clients),
            attempts: get(&self.attempts),
            requests: get(&self.requests),
            answered,
            closed_by_server: get(&self.closed),
            connect_failed: get(&self.connect_failed),
            streams_reset: get(&self.streams_reset),
            open_at_end: get(&self.open_at_end),
            other_errors: get(&self.other),
            bytes_sent: get(&self.bytes),
            longest_s: get(&self.longest_ms) as f64 / 1e3,
            cut,
            example_error: self.example.lock().ok().and_then(|x| x.clone()),
        }
    }
}

/// How one attempt ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The server answered with this status.
    Status(u16),
    /// The server closed or reset the connection.
    Closed,
    /// Connecting failed.
    ConnectFailed(String),
    /// Something else went wrong.
    Other(String),
}

/// Where the clients connect and how.
struct Ctx {
    /// A device serial listed in the public directory: frame bodies start
    /// with a well-formed header of its ([`frame_head`]), as an attacker who
    /// read the directory sends, so that the server must read them up to
    /// the signature check.
    serial: String,
    addr: SocketAddr,
    name: ServerName<'static>,
    h1: TlsConnector,
    h2: TlsConnector,
    any: TlsConnector,
}

/// The running hostile clients.
pub(crate) struct Hostile {
    rt: tokio::runtime::Runtime,
    stop: Arc<watch::Sender<bool>>,
    tallies: Vec<(HostileKind, Arc<Tally>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Each client connects from its own loopback address.
    pub(crate) distinct_sources: bool,
}

impl Hostile {
    /// Starts `count` clients against `addr`, trusting `cert`.
    pub(crate) fn start(
        addr: SocketAddr,
        cert: &Path,
        count: usize,
        serial: &str,
        nice: i32,
    ) -> anyhow::Result<Hostile> {
        let base = aorta_api::client_tls_config_file(cert)?;
        let with_alpn = |alpn: &[&[u8]]| {
            let mut c = base.clone();
            c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            TlsConnector::from(Arc::new(c))
        };
        let ctx = Arc::new(Ctx {
            serial: serial.to_owned(),
            addr,
            name: ServerName::try_from(addr.ip().to_string())?,
            h1: with_alpn(&[b"http/1.1"]),
            h2: with_alpn(&[b"h2"]),
            any: with_alpn(&[b"h2", b"http/1.1"]),
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bench-hostile")
            // Linux: the nice value of the calling thread only.
            .on_thread_start(move || {
                if let Err(e) = rustix::process::setpriority_process(None, nice) {
                    tracing::warn!(error = %e, "hostile client threads keep their priority");
                }
            })
            .enable_all()
            .build()?;
        let (tx, rx) = watch::channel(false);
        let tallies: Vec<(HostileKind, Arc<Tally>)> = HostileKind::ALL
            .iter()
            .map(|&k| (k, Arc::new(Tally::default())))
            .collect();
        let distinct_sources = addr.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut tasks = Vec::with_capacity(count);
        for i in 0..count {
            let Some((kind, tally)) = tallies.get(i % tallies.len()).cloned() else {
                continue;
            };
            Tally::add(&tally.clients, 1);
            let src = distinct_sources.then(|| source_addr(i));
            tasks.push(rt.spawn(client(kind, src, ctx.clone(), tally, rx.clone())));
        }
        Ok(Hostile {
            rt,
            stop: Arc::new(tx),
            tallies,
            tasks,
            distinct_sources,
        })
    }

    /// A handle that stops every client (for the RSS guard).
    pub(crate) fn stopper(&self) -> Arc<watch::Sender<bool>> {
        self.stop.clone()
    }

    /// Stops the clients; what each kind achieved (kinds with clients only).
    pub(crate) fn stop(self) -> BTreeMap<HostileKind, KindOutcome> {
        self.stop.send_replace(true);
        let tasks = self.tasks;
        self.rt.block_on(async {
            for t in tasks {
                let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
            }
        });
        self.rt.shutdown_timeout(Duration::from_secs(1));
        self.tallies
            .iter()
            .map(|(k, t)| (*k, t.outcome()))
            .filter(|(_, o)| o.clients > 0)
            .collect()
    }
}

/// The loopback address client `i` connects from (never 127.0.0.1, which
/// the legitimate devices use).
fn source_addr(i: usize) -> IpAddr {
    let (hi, lo) = (i / 250, i % 250);
    IpAddr::V4(Ipv4Addr::new(127, 0, 1 + (hi % 250) as u8, 2 + lo as u8))
}

/// One client: repeats its attempt until stopped.
async fn client(
    kind: HostileKind,
    src: Option<IpAddr>,
    ctx: Arc<Ctx>,
    tally: Arc<Tally>,
    mut stop: watch::Receiver<bool>,
) {
    let mut seed = match src {
        Some(IpAddr::V4(a)) => u64::from(u32::from(a)),
        _ => 1,
    } ^ 0x9E37_79B9_7F4A_7C15;
    while !*stop.borrow() {
        Tally::add(&tally.attempts, 1);
        let t = Instant::now();
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let end = tokio::select! {
            e = attempt(kind, src, &ctx, &tally, seed) => Some(e),
            _ = stop.wait_for(|s| *s) => None,
        };
        tally
            .longest_ms
            .fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
        match end {
            None => {
                Tally::add(&tally.open_at_end, 1);
                break;
            }
            Some(End::Status(s)) => tally.status(s),
            Some(End::Closed) => Tally::add(&tally.closed, 1),
            Some(End::ConnectFailed(e)) => {
                Tally::add(&tally.connect_failed, 1);
                tally.note(e);
            }
            Some(End::Other(e)) => {
                Tally::add(&tally.other, 1);
                tally.note(e);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(kind.pause()) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// What an HTTP/1.1 attempt writes.
enum Script {
    /// `head` at once, then `drip` (cycled, endless) one byte every `every`.
    Drip {
        head: Vec<u8>,
        drip: Vec<u8>,
        every: Duration,
    },
    /// `head`, then `len` bytes as fast as the server takes them (random
    /// when `random`), in chunked encoding when `chunked`.
    Bulk {
        head: Vec<u8>,
        len: u64,
        chunked: bool,
        random: bool,
    },
}

/// A well-formed frame header of device `serial` declaring a whole frame of
/// `total` bytes (what the server checks from a body's first bytes).
fn frame_head(serial: &str, total: u64) -> Vec<u8> {
    let h = aorta_crypto::frame::FrameHeader::new(serial, 0, 0, 0, 360_000, 2, 360, [7; 16]);
    let header_len = 55 + serial.len() as u64;
    match h {
        Ok(h) => h.encode_with_len(total.saturating_sub(header_len) as u32),
        Err(_) => Vec::new(),
    }
}

fn request(method: &str, path: &str, host: &SocketAddr, extra: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nhost: {host}\r\n{extra}\r\n").into_bytes()
}

async fn attempt(
    kind: HostileKind,
    src: Option<IpAddr>,
    ctx: &Ctx,
    tally: &Arc<Tally>,
    seed: u64,
) -> End {
    let a = &ctx.addr;
    let octets = "content-type: application/octet-stream\r\n";
    let json = "content-type: application/json\r\n";
    // A well-formed signature header that signs nothing: what a stranger
    // sends to get its frame body read at all.
    let signed = format!("{}: {}\r\n", aorta_api::SIGNATURE_HEADER, FAKE_SIGNATURE);
    let script = match kind {
        HostileKind::IdleTls => return idle_tls(src, ctx).await,
        HostileKind::IdleH2 => return idle_h2(src, ctx).await,
        HostileKind::H2Streams => return h2_streams(src, ctx, tally).await,
        HostileKind::SlowLoris => Script::Drip {
            head: Vec::new(),
            drip: format!("POST /v1/frames HTTP/1.1\r\nhost: {a}\r\n{octets}x-loris: 1\r\n")
                .into_bytes(),
            every: Duration::from_secs(1),
        },
        HostileKind::SlowBody => Script::Drip {
            head: [
                request(
                    "POST",
                    "/v1/frames",
                    a,
                    &format!("{octets}{signed}content-length: 1024\r\n"),
                ),
                frame_head(&ctx.serial, 1024),
            ]
            .concat(),
            drip: b"slow".to_vec(),
            every: Duration::from_secs(5),
        },
        HostileKind::OversizeClaimed => Script::Bulk {
            head: request(
                "POST",
                "/v1/frames",
                a,
                &format!("{octets}{signed}content-length: {}\r\n", 1u64 << 30),
            ),
            len: 1 << 30,
            chunked: false,
            random: false,
        },
        HostileKind::OversizeActual => Script::Bulk {
            // The first chunk: a header declaring a 4 MiB frame (the
            // default `max_frame_bytes`), so the server reads that much.
            head: {
                let fh = frame_head(&ctx.serial, 4 << 20);
                [
                    request(
                        "POST",
                        "/v1/frames",
                        a,
                        &format!("{octets}{signed}transfer-encoding: chunked\r\n"),
                    ),
                    format!("{:x}\r\n", fh.len()).into_bytes(),
                    fh,
                    b"\r\n".to_vec(),
                ]
                .concat()
            },
            len: 64 << 20,
            chunked: true,
            random: false,
        },
        HostileKind::Garbage => {
            let sig: String = (0..64)
                .map(|i| format!("{:02x}", (seed >> (i % 8 * 8)) as u8 ^ i as u8))
                .collect();
            Script::Bulk {
                head: request(
                    "POST",
                    "/v1/frames",
                    a,
                    &format!(
                        "{octets}{}: {sig}\r\ncontent-length: 65536\r\n",
                        aorta_api::SIGNATURE_HEADER
                    ),
                ),
                len: 65536,
                chunked: false,
                random: true,
            }
        }
        HostileKind::CheckpointPut => Script::Bulk {
            head: request(
                "PUT",
                "/v1/checkpoint",
                a,
                &format!("{json}content-length: {BIG_BODY}\r\n"),
            ),
            len: BIG_BODY,
            chunked: false,
            random: false,
        },
        HostileKind::ResultsPost => Script::Bulk {
            head: request(
                "POST",
                "/v1/results",
                a,
                &format!("{json}content-length: {BIG_BODY}\r\n"),
            ),
            len: BIG_BODY,
            chunked: false,
            random: false,
        },
    };
    let tls = match connect(src, ctx, &ctx.h1).await {
        Ok(t) => t,
        Err(e) => return e,
    };
    Tally::add(&tally.requests, 1);
    h1(tls, &script, tally, seed).await
}

/// TCP (from `src` when it can be bound) and TLS, within [`CONNECT_TIMEOUT`].
async fn connect(
    src: Option<IpAddr>,
    ctx: &Ctx,
    tls: &TlsConnector,
) -> Result<TlsStream<TcpStream>, End> {
    let tcp = async {
        if let Some(ip) = src {
            let s = TcpSocket::new_v4()?;
            if s.bind(SocketAddr::new(ip, 0)).is_ok() {
                return s.connect(ctx.addr).await;
            }
        }
        TcpStream::connect(ctx.addr).await
    };
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, tcp).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(End::ConnectFailed(format!("TCP connect: {e}"))),
        Err(_) => return Err(End::ConnectFailed("TCP connect: timed out".into())),
    };
    let _ = tcp.set_nodelay(true);
    match tokio::time::timeout(CONNECT_TIMEOUT, tls.connect(ctx.name.clone(), tcp)).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(End::ConnectFailed(format!("TLS handshake: {e}"))),
        Err(_) => Err(End::ConnectFailed("TLS handshake: timed out".into())),
    }
}

/// Writes `script` while reading the reply: the status ends the attempt,
/// as does the server closing the connection.
async fn h1(tls: TlsStream<TcpStream>, script: &Script, tally: &Tally, seed: u64) -> End {
    let (mut r, mut w) = tokio::io::split(tls);
    let reader = read_status(&mut r);
    let writer = write_script(&mut w, script, tally, seed);
    tokio::pin!(reader, writer);
    let mut writing = true;
    loop {
        tokio::select! {
            e = &mut reader => return e,
            res = &mut writer, if writing => match res {
                Ok(()) => writing = false,
                // The server stopped reading: its answer, if it sent one.
                Err(_) => {
                    return tokio::time::timeout(Duration::from_secs(2), &mut reader)
                        .await
                        .unwrap_or(End::Closed);
                }
            },
        }
    }
}

async fn write_script<W: AsyncWrite + Unpin>(
    w: &mut W,
    script: &Script,
    tally: &Tally,
    seed: u64,
) -> std::io::Result<()> {
    match script {
        Script::Drip { head, drip, every } => {
            if !head.is_empty() {
                w.write_all(head).await?;
                w.flush().await?;
                Tally::add(&tally.bytes, head.len() as u64);
            }
            for b in drip.iter().cycle() {
                w.write_all(std::slice::from_ref(b)).await?;
                w.flush().await?;
                Tally::add(&tally.bytes, 1);
                tokio::time::sleep(*every).await;
            }
            Ok(())
        }
        Script::Bulk {
            head,
            len,
            chunked,
            random,
        } => {
            w.write_all(head).await?;
            Tally::add(&tally.bytes, head.len() as u64);
            let mut rng = seed | 1;
            let mut buf = vec![0u8; CHUNK];
            let mut left = *len;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                let body: &[u8] = if *random {
                    for b in buf.iter_mut() {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        *b = rng as u8;
                    }
                    buf.get(..n).unwrap_or_default()
                } else {
                    ZEROS.get(..n).unwrap_or_default()
                };
                if *chunked {
                    w.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                    w.write_all(body).await?;
                    w.write_all(b"\r\n").await?;
                } else {
                    w.write_all(body).await?;
                }
                Tally::add(&tally.bytes, n as u64);
                left -= n as u64;
            }
            if *chunked {
                w.write_all(b"0\r\n\r\n").await?;
            }
            w.flush().await
        }
    }
}

/// Reads a reply's status line: its status, or [`End::Closed`] when the
/// connection ends first.
async fn read_status<R: AsyncRead + Unpin>(r: &mut R) -> End {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) if head.is_empty() => return End::Closed,
            Ok(0) | Err(_) => {
                return End::Other(format!(
                    "the connection ended inside a reply head ({} bytes)",
                    head.len()
                ));
            }
            Ok(n) => n,
        };
        head.extend_from_slice(buf.get(..n).unwrap_or_default());
        if let Some(line_end) = head.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(head.get(..line_end).unwrap_or_default());
            let status = line
                .strip_prefix("HTTP/1.")
                .and_then(|l| l.get(2..5))
                .and_then(|s| s.parse().ok());
            return match status {
                Some(s) => End::Status(s),
                None => End::Other(format!("not an HTTP reply: {line:?}")),
            };
        }
        if head.len() > MAX_HEAD {
            return End::Other("reply status line too long".into());
        }
    }
}

/// TLS, then silence: ends when the server closes.
async fn idle_tls(src: Option<IpAddr>, ctx: &Ctx) -> End {
    let mut tls = match connect(src, ctx, &ctx.any).await {
        Ok(t) => t,
        Err(e) => return e,
    };
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => return End::Closed,
            Ok(_) => {}
        }
    }
}

/// Aborts a task when dropped (an attempt cut short leaves nothing behind).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// TLS and the HTTP/2 handshake, then silence (the client still answers
/// the server's pings): ends when the server closes.
async fn idle_h2(src: Option<IpAddr>, ctx: &Ctx) -> End {
    let tls = match connect(src, ctx, &ctx.h2).await {
        Ok(t) => t,
        Err(e) => return e,
    };
    let (client, conn) = match h2::client::handshake(tls).await {
        Ok(x) => x,
        Err(e) => return h2_end(&e),
    };
    let r = conn.await;
    drop(client);
    match r {
        Ok(()) => End::Closed,
        Err(e) => h2_end(&e),
    }
}

fn h2_end(e: &h2::Error) -> End {
    if e.is_io() || e.is_go_away() || e.is_reset() || e.is_remote() {
        End::Closed
    } else {
        End::Other(format!("HTTP/2: {e}"))
    }
}

/// Opens [`H2_STREAMS`] streams that each claim 4 MiB and send
/// [`H2_STREAM_BYTES`] (as fast as the server's flow control grants), then
/// hold them open: ends when the server closes the connection.
async fn h2_streams(src: Option<IpAddr>, ctx: &Ctx, tally: &Arc<Tally>) -> End {
    let tls = match connect(src, ctx, &ctx.h2).await {
        Ok(t) => t,
        Err(e) => return e,
    };
    let (client, conn) = match h2::client::handshake(tls).await {
        Ok(x) => x,
        Err(e) => return h2_end(&e),
    };
    let mut conn = AbortOnDrop(tokio::spawn(conn));
    let mut streams = tokio::task::JoinSet::new();
    let uri = format!("https://{}/v1/frames", ctx.addr);
    let opening = async {
        for _ in 0..H2_STREAMS {
            let mut c = match client.clone().ready().await {
                Ok(c) => c,
                Err(e) => return Some(h2_end(&e)),
            };
            let req = match http::Request::post(uri.as_str())
                .header("content-type", "application/octet-stream")
                .header(aorta_api::SIGNATURE_HEADER, FAKE_SIGNATURE)
                .header("content-length", (4u64 << 20).to_string())
                .body(())
            {
                Ok(r) => r,
                Err(e) => return Some(End::Other(format!("request: {e}"))),
            };
            let (resp, send) = match c.send_request(req, false) {
                Ok(x) => x,
                Err(e) => return Some(h2_end(&e)),
            };
            Tally::add(&tally.requests, 1);
            let head = frame_head(&ctx.serial, 4 << 20);
            streams.spawn(feed(send, resp, tally.clone(), head));
        }
        None
    };
    if let Some(e) = opening.await {
        collect(&mut streams, tally);
        return e;
    }
    // Hold: count what becomes of the streams until the connection ends.
    loop {
        tokio::select! {
            r = &mut conn.0 => {
                collect(&mut streams, tally);
                return match r {
                    Ok(Ok(())) => End::Closed,
                    Ok(Err(e)) => h2_end(&e),
                    Err(e) => End::Other(format!("connection task: {e}")),
                };
            }
            Some(r) = streams.join_next() => {
                if let Ok(s) = r {
                    s.record(tally);
                }
            }
        }
    }
}

/// What became of one HTTP/2 stream.
struct StreamEnd {
    status: Option<u16>,
    reset: bool,
}

impl StreamEnd {
    fn record(&self, tally: &Tally) {
        match self.status {
            Some(s) => tally.status(s),
            None if self.reset => Tally::add(&tally.streams_reset, 1),
            None => {}
        }
    }
}

fn collect(streams: &mut tokio::task::JoinSet<StreamEnd>, tally: &Tally) {
    while let Some(r) = streams.try_join_next() {
        if let Ok(s) = r {
            s.record(tally);
        }
    }
}

/// Sends [`H2_STREAM_BYTES`] on a stream as its flow control allows, never
/// ends it, and waits for the server's answer or reset.
async fn feed(
    mut send: h2::SendStream<Bytes>,
    resp: h2::client::ResponseFuture,
    tally: Arc<Tally>,
    head: Vec<u8>,
) -> StreamEnd {
    let mut left = H2_STREAM_BYTES;
    let mut head = Some(Bytes::from(head));
    let sending = async {
        while left > 0 {
            send.reserve_capacity(left);
            let mut cap = send.capacity();
            // The frame header goes out whole, in the first chunk.
            let need = head.as_ref().map_or(1, Bytes::len);
            while cap < need {
                match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                    Some(Ok(c)) => cap = c,
                    _ => return,
                }
            }
            // Send all the capacity granted (h2 signals only increases).
            let mut give = cap.min(left);
            while give > 0 {
                let n = give.min(CHUNK);
                let chunk = match head.take() {
                    Some(h) if h.len() <= n => {
                        let mut c = h.to_vec();
                        c.extend_from_slice(ZEROS.get(..n - h.len()).unwrap_or_default());
                        Bytes::from(c)
                    }
                    _ => Bytes::from_static(ZEROS.get(..n).unwrap_or_default()),
                };
                if send.send_data(chunk, false).is_err() {
                    return;
                }
                Tally::add(&tally.bytes, n as u64);
                give -= n;
                left -= n;
            }
        }
        // Never end the stream: hold it open.
        std::future::pending::<()>().await;
    };
    let answer = tokio::select! {
        r = resp => Some(r),
        () = sending => None,
    };
    match answer {
        Some(Ok(r)) => StreamEnd {
            status: Some(r.status().as_u16()),
            reset: false,
        },
        Some(Err(e)) => StreamEnd {
            status: None,
            reset: e.is_reset() || e.is_go_away() || e.is_io(),
        },
        None => StreamEnd {
            status: None,
            reset: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn status(reply: &[u8]) -> End {
        block_on(read_status(&mut &reply[..]))
    }

    #[test]
    fn a_reply_is_its_status_and_silence_is_a_close() {
        assert_eq!(
            status(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n"),
            End::Status(401)
        );
        assert_eq!(
            status(b"HTTP/1.0 413 Payload Too Large\r\n"),
            End::Status(413)
        );
        assert_eq!(status(b""), End::Closed);
        // Cut inside the status line, or not HTTP at all: neither an answer
        // nor a clean close.
        assert!(matches!(status(b"HTTP/1.1 4"), End::Other(_)));
        assert!(matches!(status(b"SSH-2.0-x\r\n"), End::Other(_)));
        assert!(matches!(status(&vec![b'a'; MAX_HEAD + 10]), End::Other(_)));
    }

    #[test]
    fn every_client_has_its_own_loopback_source() {
        let all: std::collections::BTreeSet<IpAddr> = (0..2000).map(source_addr).collect();
        assert_eq!(all.len(), 2000);
        assert!(all.iter().all(|a| a.is_loopback()));
        assert!(!all.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }

    #[test]
    fn a_chunked_bulk_body_is_framed_and_counted() {
        let tally = Tally::default();
        let head = b"POST /v1/frames HTTP/1.1\r\n\r\n".to_vec();
        let len = 3 * CHUNK as u64 + 5;
        let script = Script::Bulk {
            head: head.clone(),
            len,
            chunked: true,
            random: true,
        };
        let mut out = Vec::new();
        block_on(write_script(&mut out, &script, &tally, 7)).unwrap();
        assert_eq!(tally.bytes.load(Ordering::Relaxed), head.len() as u64 + len);
        // Decode the chunks back.
        let mut rest = &out[head.len()..];
        let mut body = 0u64;
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap(), 16).unwrap();
            rest = &rest[nl + 2..];
            if n == 0 {
                assert_eq!(rest, b"\r\n");
                break;
            }
            assert_eq!(&rest[n..n + 2], b"\r\n");
            rest = &rest[n + 2..];
            body += n as u64;
        }
        assert_eq!(body, len);
    }

    #[test]
    fn cut_counts_what_the_server_ended() {
        let t = Tally::default();
        t.status(401);
        t.status(401);
        t.status(413);
        Tally::add(&t.closed, 2);
        Tally::add(&t.connect_failed, 1);
        Tally::add(&t.open_at_end, 4);
        Tally::add(&t.other, 1);
        let o = t.outcome();
        assert_eq!(o.answered.get(&401), Some(&2));
        assert_eq!(o.cut, 6);
        assert_eq!(o.open_at_end, 4);
    }
}
