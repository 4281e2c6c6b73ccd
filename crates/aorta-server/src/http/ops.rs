//! The operations port (`metrics_listen`, off by default): plain HTTP for
//! Prometheus and probes, apart from the TLS service port, so that a
//! scraper or an orchestrator needs no client certificate pinning.
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | the Prometheus text of the service port's `/metrics`: the counters, `aorta_build_info`, the process metrics |
//! | `GET /healthz` | `200 ok` while the process answers (liveness) |
//! | `GET /readyz` | `200 ready` when the frame log is open and its writer runs, the results store is usable and the server is not stopping; else `503` with a JSON reason (readiness) |
//!
//! It carries no data and takes no input: counters, sizes and the build;
//! nothing of a device, a patient or a secret. Bind it to loopback or a
//! management network (`docs/server.md`, "Operations port").

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use aorta_api::Stats;

use super::{AppState, err, json_errors, not_found};

/// The git commit the binary was built from (`build.rs`: `AORTA_GIT` when
/// set, else `git rev-parse`, else `unknown`).
pub const GIT_COMMIT: &str = env!("AORTA_GIT_COMMIT");

impl AppState {
    /// Why the server is not ready to take traffic, or `Ok` when it is.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err("stopping");
        }
        if !self.ingest.writer_running() {
            return Err("log_writer_stopped");
        }
        if self.results.is_poisoned() {
            return Err("results_store_unavailable");
        }
        Ok(())
    }

    /// The whole Prometheus exposition: the counters of `st` and the
    /// state, then `aorta_build_info` and the process metrics.
    pub(crate) fn exposition(&self, st: &Stats) -> String {
        let mut m = self.metrics(st);
        build_info(&mut m);
        process_metrics(&mut m);
        m
    }
}

/// The router of the operations port over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

/// Most connections the operations port holds at once; more are closed
/// at once (a scraper and a few probes need far fewer).
pub const MAX_CONNECTIONS: usize = 16;
/// Longest one operations-port connection lives, headers included.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);

/// Serves the operations port on `listener` until the task is dropped:
/// HTTP/1.1, at most [`MAX_CONNECTIONS`] connections, each closed after
/// [`CONNECTION_DEADLINE`] — a slow or idle client there cannot hold the
/// process's file descriptors or memory.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<AppState>) {
    let app = router(state);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!(target: "aorta::server", error = %e, "operations port: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // dropped: closed at once
        };
        let app = app.clone();
        tokio::spawn(async move {
            let svc = hyper_util::service::TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(CONNECTION_DEADLINE)
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc);
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, conn).await;
            drop(permit);
        });
    }
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    let st = s.cached_stats().await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.exposition(&st),
    )
        .into_response()
}

async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    match s.readiness() {
        Ok(()) => "ready".into_response(),
        Err(why) => err(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("not ready: {why}"),
        ),
    }
}

fn build_info(m: &mut String) {
    use std::fmt::Write as _;
    let _ = writeln!(
        m,
        "# HELP aorta_build_info The running build: crate version and git commit.\n# TYPE aorta_build_info gauge\naorta_build_info{{version=\"{}\",git=\"{}\"}} 1",
        label(env!("CARGO_PKG_VERSION")),
        label(GIT_COMMIT)
    );
}

/// `v` escaped as a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The standard `process_*` metrics, read from `/proc` (Linux); each one
/// that cannot be read is left out.
fn process_metrics(m: &mut String) {
    use std::fmt::Write as _;
    let mut gauge = |name: &str, kind: &str, help: &str, v: f64| {
        let _ = writeln!(m, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    };
    let p = ProcessStats::read();
    if let Some(v) = p.cpu_seconds {
        gauge(
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, seconds.",
            v,
        );
    }
    if let Some(v) = p.resident_bytes {
        gauge(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size, bytes.",
            v as f64,
        );
    }
    if let Some(v) = p.virtual_bytes {
        gauge(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size, bytes.",
            v as f64,
        );
    }
    if let Some(v) = p.open_fds {
        gauge(
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            v as f64,
        );
    }
    if let Some(v) = p.max_fds {
        gauge(
            "process_max_fds",
            "gauge",
            "Limit of open file descriptors.",
            v as f64,
        );
    }
    if let Some(v) = p.start_time {
        gauge(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process, seconds since the Unix epoch.",
            v,
        );
    }
}

/// What `/proc` says of this process.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ProcessStats {
    /// User + system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, bytes.
    pub resident_bytes: Option<u64>,
    /// Virtual memory size, bytes.
    pub virtual_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// The open-file limit (soft).
    pub max_fds: Option<u64>,
    /// Start time, seconds since the Unix epoch.
    pub start_time: Option<f64>,
}

impl ProcessStats {
    /// Reads them now (each `None` where `/proc` does not tell).
    pub fn read() -> ProcessStats {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |key: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(key))?;
            let n = line.get(key.len()..)?.split_whitespace().next()?;
            n.parse::<u64>().ok()?.checked_mul(1024)
        };
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Fields after the command name, which may hold spaces and ')':
        // field 3 (state) is [0]; utime (14), stime (15), starttime (22).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| -> Option<f64> {
            fields
                .get(n.checked_sub(3)?)?
                .parse::<u64>()
                .ok()
                .map(|v| v as f64)
        };
        let cpu_seconds = match (field(14), field(15)) {
            (Some(u), Some(s)) if ticks > 0.0 => Some((u + s) / ticks),
            _ => None,
        };
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())
        });
        let start_time = match (boot, field(22)) {
            (Some(b), Some(t)) if ticks > 0.0 => Some(b as f64 + t / ticks),
            _ => None,
        };
        let open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        let max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        ProcessStats {
            cpu_seconds,
            resident_bytes: kib("VmRSS:"),
            virtual_bytes: kib("VmSize:"),
            open_fds,
            max_fds,
            start_time,
        }
    }
}
