//! The gate over HTTP/1.1: `POST /v1/release` with an `AOGQ` request body,
//! answered with an `AOGR` body (`docs/vault-sharing.md`).
//!
//! It lives here, in aorta-vault, rather than in the CLI so that every
//! front-end that serves a patient's vault (the phone app, a delegated
//! service) gets the same bounds: at most [`Limits::max_connections`] open
//! connections (more are closed at once), each closed after
//! [`Limits::connection_timeout`], one request per connection, request
//! bodies over [`super::MAX_REQUEST_LEN`] refused unread (413), anything but
//! `POST /v1/release` 404/405. No TLS: what the gate answers is sealed to
//! the recipient end to end, and what a request carries is sealed to the
//! patient; a network stranger sees grant ids and timing only.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::{GateTransport, MAX_REQUEST_LEN, MAX_RESPONSE_LEN};
use crate::{EhrVault, VaultError};

/// The path the gate serves.
pub const RELEASE_PATH: &str = "/v1/release";

/// The gate server's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// Whole-connection time limit (read, decide, write).
    pub connection_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            connection_timeout: Duration::from_secs(10),
        }
    }
}

fn reply(status: u16, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/octet-stream"),
    );
    r
}

async fn handle(
    req: Request<Incoming>,
    vault: Arc<EhrVault>,
    one_at_a_time: Arc<Mutex<()>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != RELEASE_PATH {
        return Ok(reply(404, b"not found\n".to_vec()));
    }
    if req.method() != Method::POST {
        return Ok(reply(405, b"POST only\n".to_vec()));
    }
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REQUEST_LEN as u64) {
        return Ok(reply(413, b"request too large\n".to_vec()));
    }
    let body = match Limited::new(req.into_body(), MAX_REQUEST_LEN)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(reply(413, b"request too large or cut off\n".to_vec())),
    };
    // The vault's stores and audit log are blocking; one decision at a time
    // keeps the audit log's appends in order.
    let answer = tokio::task::spawn_blocking(move || {
        let _one = one_at_a_time
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        vault.answer_release(&body)
    })
    .await;
    Ok(match answer {
        Ok((status, bytes)) => reply(status.http(), bytes),
        Err(_) => reply(500, b"gate error\n".to_vec()),
    })
}

/// Serves the gate of `vault` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    vault: Arc<EhrVault>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let one = Arc::new(Mutex::new(()));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            // Out of descriptors or similar: back off briefly.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let (vault, one) = (vault.clone(), one.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let svc =
                hyper::service::service_fn(move |req| handle(req, vault.clone(), one.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(limits.connection_timeout, conn).await;
        });
    }
}

/// Binds `addr` and serves until `shutdown` completes, on a runtime of its
/// own, blocking the calling thread until the server stops; `on_bound` is
/// told the bound address first.
pub fn run(
    addr: SocketAddr,
    vault: EhrVault,
    limits: Limits,
    on_bound: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()>,
) -> Result<(), VaultError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| VaultError::io(std::path::Path::new("gate runtime"), e))?;
    rt.block_on(async move {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| VaultError::GateUnreachable {
                url: addr.to_string(),
                reason: format!("cannot listen: {e}"),
            })?;
        let bound = listener
            .local_addr()
            .map_err(|e| VaultError::GateUnreachable {
                url: addr.to_string(),
                reason: e.to_string(),
            })?;
        on_bound(bound);
        serve(listener, Arc::new(vault), limits, shutdown).await;
        Ok(())
    })
}

/// The recipient's side: one `POST /v1/release` per exchange, plain HTTP,
/// connect + exchange bounded by `timeout`, answers over
/// [`super::MAX_RESPONSE_LEN`] refused.
#[derive(Debug, Clone, Copy)]
pub struct HttpGate {
    /// Time limit of one exchange.
    pub timeout: Duration,
}

impl Default for HttpGate {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
        }
    }
}

impl GateTransport for HttpGate {
    fn exchange(&self, gate_url: &str, request: &[u8]) -> Result<Vec<u8>, VaultError> {
        let fail = |reason: String| VaultError::GateUnreachable {
            url: gate_url.to_string(),
            reason,
        };
        let uri: hyper::Uri = gate_url.parse().map_err(|_| fail("not a URL".into()))?;
        if uri.scheme_str() != Some("http") {
            return Err(fail(
                "only http:// gates (the answer is sealed to you end to end)".into(),
            ));
        }
        let host = uri
            .host()
            .ok_or_else(|| fail("no host".into()))?
            .to_string();
        let port = uri.port_u16().unwrap_or(80);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let body = Bytes::copy_from_slice(request);
        let work = async {
            let host_port = format!(
                "{}:{port}",
                host.trim_start_matches('[').trim_end_matches(']')
            );
            let stream = TcpStream::connect(&host_port)
                .await
                .map_err(|e| fail(format!("cannot connect: {e}")))?;
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| fail(e.to_string()))?;
            tokio::spawn(conn);
            let req = Request::post(RELEASE_PATH)
                .header(hyper::header::HOST, host_port.as_str())
                .header(hyper::header::CONTENT_TYPE, "application/octet-stream")
                .body(Full::new(body))
                .map_err(|e| fail(e.to_string()))?;
            let resp = send
                .send_request(req)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_LEN)
                .collect()
                .await
                .map_err(|e| fail(format!("reading the answer: {e}")))?
                .to_bytes();
            // Refusals come with 4xx/5xx and an AOGR body; anything else
            // without one is out of protocol.
            if !bytes.starts_with(super::RESPONSE_MAGIC) {
                return Err(fail(format!("HTTP {status} without a gate answer")));
            }
            Ok(bytes.to_vec())
        };
        rt.block_on(async {
            tokio::time::timeout(self.timeout, work)
                .await
                .map_err(|_| fail(format!("no answer within {:?}", self.timeout)))?
        })
    }
}
