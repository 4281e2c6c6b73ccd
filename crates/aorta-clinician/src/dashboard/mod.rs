//! The clinician's live web dashboard (`aorta clinician serve`).
//!
//! A [`model::Ward`] holds, bounded, what the opened results say of each
//! patient (latest heart rate, rhythm state, HRV, signal status, alarms,
//! trends, the event timeline and its ECG strips); [`start`] serves it as a
//! web app built into the binary (`assets/`: plain HTML, CSS and JavaScript,
//! nothing fetched from elsewhere) on loopback, behind a per-run access
//! token. Acknowledging an alarm appends an fsynced line to the
//! [`audit::AuditLog`] first. What it shows, the alarm priorities, the
//! paper scale and the security model: `docs/dashboard.md`.

pub mod audit;
mod http;
pub mod model;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use http::{COOKIE, CSRF_HEADER, Limits, default_audit_path};

use model::Ward;

/// ISO-8601 UTC time (microseconds) of `us` µs since the Unix epoch.
pub fn iso(us: i64) -> String {
    let t = if us >= 0 {
        std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_micros(us.unsigned_abs()))
    } else {
        std::time::UNIX_EPOCH.checked_sub(std::time::Duration::from_micros(us.unsigned_abs()))
    };
    match t {
        Some(t) => humantime::format_rfc3339_micros(t).to_string(),
        None => format!("{us} µs"),
    }
}

/// What [`start`] serves, and where.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Allow a non-loopback `listen` (anyone who can reach it and holds the
    /// token sees the patients; there is no TLS).
    pub allow_remote: bool,
    /// The audit file acknowledgements are appended to.
    pub audit: PathBuf,
    /// Who acknowledges: the clinician identity's public key.
    pub clinician: String,
    /// Bounds.
    pub limits: Limits,
}

/// Why the dashboard did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DashboardError {
    /// A non-loopback address without `allow_remote`.
    #[error(
        "refusing to listen on {0}: not a loopback address (the dashboard shows patient data over plain HTTP; pass --allow-remote to accept that)"
    )]
    NotLoopback(SocketAddr),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The audit file could not be opened.
    #[error("cannot open the audit file {path}: {source}")]
    Audit {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No random bytes for the token, or no runtime.
    #[error("cannot start the dashboard: {0}")]
    Internal(String),
}

/// A running dashboard; dropping it stops the server.
pub struct Running {
    addr: SocketAddr,
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to open, with this run's access token (a secret: whoever
    /// holds it sees the ward).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops the server and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts serving `ward` as configured, on a thread of its own.
pub fn start(cfg: Config, ward: Arc<Mutex<Ward>>) -> Result<Running, DashboardError> {
    if !cfg.listen.ip().is_loopback() && !cfg.allow_remote {
        return Err(DashboardError::NotLoopback(cfg.listen));
    }
    let audit = audit::AuditLog::open(&cfg.audit, &cfg.clinician).map_err(|source| {
        DashboardError::Audit {
            path: cfg.audit.clone(),
            source,
        }
    })?;
    let random = |n| {
        aorta_base::random::vec(n)
            .map(|b| aorta_base::hex::encode(&b))
            .map_err(|e| DashboardError::Internal(e.to_string()))
    };
    let token = random(32)?;
    let csrf = random(32)?;
    let std_listener =
        std::net::TcpListener::bind(cfg.listen).map_err(|source| DashboardError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let bind_err = |source| DashboardError::Bind {
        addr: cfg.listen,
        source,
    };
    let addr = std_listener.local_addr().map_err(bind_err)?;
    std_listener.set_nonblocking(true).map_err(bind_err)?;
    let app = Arc::new(http::App {
        ward,
        index: http::INDEX.replace("{{CSRF}}", &csrf),
        token: token.clone(),
        csrf,
        hosts: http::allowed_hosts(addr),
        audit: Arc::new(Mutex::new(audit)),
        limits: cfg.limits,
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DashboardError::Internal(e.to_string()))?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("dashboard".into())
        .spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                    return;
                };
                http::serve(listener, app, async move {
                    let _ = stopped.await;
                })
                .await;
            });
        })
        .map_err(|e| DashboardError::Internal(e.to_string()))?;
    Ok(Running {
        addr,
        url: format!("http://{addr}/?token={token}"),
        stop: Some(stop),
        thread: Some(thread),
    })
}
