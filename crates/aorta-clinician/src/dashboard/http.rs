//! The dashboard's HTTP server: loopback by default, a per-run access
//! token, Host and CSRF checks, bounded connections, sizes and times
//! (`docs/dashboard.md`, "Security model").

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::audit::AuditLog;
use super::model::Ward;

/// The name of the access cookie.
pub const COOKIE: &str = "aorta_dashboard";
/// The header a state-changing request must carry, holding the page's CSRF
/// token (a cross-site form cannot set it, and a cross-site `fetch` with it
/// needs a CORS preflight this server never grants).
pub const CSRF_HEADER: &str = "x-aorta-csrf";

/// The server's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// Whole-connection time limit (one request per connection).
    pub connection_timeout: Duration,
    /// Largest request body (an acknowledgement is about 100 bytes).
    pub max_body: usize,
    /// Largest request head (request line and headers).
    pub max_head: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            connection_timeout: Duration::from_secs(10),
            max_body: 4096,
            max_head: 16 * 1024,
        }
    }
}

/// What a request handler needs.
pub(crate) struct App {
    pub(crate) ward: Arc<Mutex<Ward>>,
    pub(crate) token: String,
    pub(crate) csrf: String,
    /// Host header values accepted.
    pub(crate) hosts: Vec<String>,
    pub(crate) audit: Arc<Mutex<AuditLog>>,
    pub(crate) limits: Limits,
    pub(crate) index: String,
}

const APP_JS: &str = include_str!("../../assets/app.js");
const APP_CSS: &str = include_str!("../../assets/app.css");
const FAVICON: &str = include_str!("../../assets/favicon.svg");
/// The page; `{{CSRF}}` is replaced by the run's CSRF token.
pub(crate) const INDEX: &str = include_str!("../../assets/index.html");

type Resp = Response<Full<Bytes>>;

fn reply(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn text(status: StatusCode, msg: &str) -> Resp {
    reply(status, "text/plain; charset=utf-8", format!("{msg}\n"))
}

fn json<T: serde::Serialize>(v: &T) -> Resp {
    match serde_json::to_vec(v) {
        Ok(b) => reply(StatusCode::OK, "application/json", b),
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "could not encode"),
    }
}

fn ct_eq(a: &str, b: &str) -> bool {
    aorta_crypto::keys::ct_eq(a.as_bytes(), b.as_bytes())
}

fn cookie_token(h: &HeaderMap) -> Option<&str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

fn query(req: &Request<Incoming>, key: &str) -> Option<String> {
    form_urlencoded::parse(req.uri().query()?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

impl App {
    fn host_ok(&self, h: &HeaderMap) -> bool {
        header_str(h, "host").is_some_and(|v| self.hosts.iter().any(|a| a == v))
    }

    fn authed(&self, h: &HeaderMap) -> bool {
        cookie_token(h).is_some_and(|t| ct_eq(t, &self.token))
    }

    /// A state-changing request comes from this app's own page: CSRF header,
    /// JSON body, and no cross-site Origin or Sec-Fetch-Site.
    fn same_origin_post(&self, h: &HeaderMap) -> Result<(), &'static str> {
        if !header_str(h, CSRF_HEADER).is_some_and(|t| ct_eq(t, &self.csrf)) {
            return Err("missing or wrong CSRF token");
        }
        if !header_str(h, "content-type").is_some_and(|c| c.starts_with("application/json")) {
            return Err("the body must be application/json");
        }
        if let Some(o) = header_str(h, "origin")
            && !self.hosts.iter().any(|a| o == format!("http://{a}"))
        {
            return Err("cross-origin request");
        }
        if header_str(h, "sec-fetch-site").is_some_and(|s| s != "same-origin") {
            return Err("cross-site request");
        }
        Ok(())
    }

    fn now() -> i64 {
        aorta_base::time::now_us()
    }

    fn ward(&self) -> std::sync::MutexGuard<'_, Ward> {
        self.ward.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Resp, Infallible> {
        // DNS rebinding: a page of another site whose name resolves to this
        // address still sends its own name as Host.
        if !self.host_ok(req.headers()) {
            return Ok(text(StatusCode::MISDIRECTED_REQUEST, "host not allowed"));
        }
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        if path == "/"
            && method == Method::GET
            && let Some(t) = query(&req, "token")
        {
            {
                if !ct_eq(&t, &self.token) {
                    return Ok(text(StatusCode::UNAUTHORIZED, "wrong access token"));
                }
                // The token moves from the address bar to a cookie that
                // scripts cannot read and other sites never send.
                let mut r = text(StatusCode::SEE_OTHER, "signed in");
                let cookie = format!("{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", self.token);
                if let Ok(v) = HeaderValue::from_str(&cookie) {
                    r.headers_mut().insert(header::SET_COOKIE, v);
                }
                r.headers_mut()
                    .insert(header::LOCATION, HeaderValue::from_static("/"));
                return Ok(r);
            }
        }
        if !self.authed(req.headers()) {
            return Ok(text(
                StatusCode::UNAUTHORIZED,
                "open the URL that `aorta clinician serve` printed (it carries this run's access token)",
            ));
        }
        let now = Self::now();
        let r = match (method, path.as_str()) {
            (Method::GET, "/") => reply(
                StatusCode::OK,
                "text/html; charset=utf-8",
                self.index.clone(),
            ),
            (Method::GET, "/app.js") => {
                reply(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS)
            }
            (Method::GET, "/app.css") => reply(StatusCode::OK, "text/css; charset=utf-8", APP_CSS),
            (Method::GET, "/favicon.svg") => reply(StatusCode::OK, "image/svg+xml", FAVICON),
            (Method::GET, "/api/state") => json(&self.ward().view(now)),
            (Method::GET, "/api/patient") => {
                let id = query(&req, "id").unwrap_or_default();
                match self.ward().patient(&id, now) {
                    Some(v) => json(&v),
                    None => text(StatusCode::NOT_FOUND, "no such patient"),
                }
            }
            (Method::GET, "/api/strip") => {
                let id = query(&req, "id").unwrap_or_default();
                let n = query(&req, "n").and_then(|n| n.parse().ok());
                let w = self.ward();
                match n.and_then(|n| w.strip(&id, n)) {
                    Some(v) => json(&v),
                    None => text(StatusCode::NOT_FOUND, "no such strip"),
                }
            }
            (Method::POST, "/api/ack") => return Ok(self.clone().ack(req).await),
            (
                _,
                "/" | "/app.js" | "/app.css" | "/favicon.svg" | "/api/state" | "/api/patient"
                | "/api/strip",
            ) => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            _ => text(StatusCode::NOT_FOUND, "not found"),
        };
        Ok(r)
    }

    async fn ack(self: Arc<Self>, req: Request<Incoming>) -> Resp {
        if let Err(why) = self.same_origin_post(req.headers()) {
            return text(StatusCode::FORBIDDEN, why);
        }
        let declared =
            header_str(req.headers(), "content-length").and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.limits.max_body as u64) {
            return text(StatusCode::PAYLOAD_TOO_LARGE, "request too large");
        }
        let body = match Limited::new(req.into_body(), self.limits.max_body)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request too large or cut off",
                );
            }
        };
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Ack {
            alarm: String,
        }
        let Ok(ack) = serde_json::from_slice::<Ack>(&body) else {
            return text(StatusCode::BAD_REQUEST, "expected {\"alarm\": ID}");
        };
        let app = self.clone();
        let done = tokio::task::spawn_blocking(move || app.acknowledge(&ack.alarm)).await;
        match done {
            Ok(Ok(alarm)) => json(&alarm),
            Ok(Err(AckFailure::Unknown)) => text(StatusCode::NOT_FOUND, "no such alarm"),
            Ok(Err(AckFailure::Audit(e))) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("not acknowledged: the audit line could not be written ({e})"),
            ),
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        }
    }

    /// Audit first (fsynced), then acknowledge: an acknowledgement that
    /// could not be audited does not happen.
    fn acknowledge(&self, id: &str) -> Result<super::model::Alarm, AckFailure> {
        let mut audit = self.audit.lock().unwrap_or_else(PoisonError::into_inner);
        let alarm = self.ward().alarm(id).ok_or(AckFailure::Unknown)?;
        audit
            .append(&alarm, Self::now())
            .map_err(|e| AckFailure::Audit(e.to_string()))?;
        self.ward().acknowledge(id).map_err(|_| AckFailure::Unknown)
    }
}

enum AckFailure {
    Unknown,
    Audit(String),
}

/// Serves `app` on `listener` until `shutdown` completes.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = app.limits;
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| app.clone().handle(req));
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .max_buf_size(limits.max_head.max(8192))
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(limits.connection_timeout, conn).await;
        });
    }
}

/// The Host header values a server bound to `addr` accepts.
pub(crate) fn allowed_hosts(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    let mut hosts = vec![addr.to_string()];
    if addr.ip().is_loopback() {
        hosts.extend([
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ]);
    }
    hosts.dedup();
    hosts
}

/// Where the audit file goes by default: next to the identity.
pub fn default_audit_path(identity: &std::path::Path) -> PathBuf {
    let name = identity
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "clinician".to_owned());
    identity.with_file_name(format!("{name}.dashboard-audit.jsonl"))
}
