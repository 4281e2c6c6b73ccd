//! `aorta bench ingest`: a load test of device ingest under hostile
//! clients, on loopback with real TLS.
//!
//! 1. **Setup**: a fresh registry with N provisioned devices (the demo's
//!    factory code) and `aorta server` started as a child process of the
//!    given executable (the demo's launcher), as a keyless host: no broker,
//!    only the public device directory, every other setting its default.
//!    Measured alone, its resident memory is read from `/proc/PID/status`.
//! 2. **Devices** ([`devices`]): each device seals one frame of synthetic
//!    two-lead ECG (360 Hz) per second with its own secure element and
//!    uploads it with the device's HTTPS uplink; 20 devices share one
//!    HTTP/2 connection from `127.0.0.1`. Latency = acknowledgement − the
//!    moment the frame was due (its samples complete).
//! 3. **Phases**: a warm-up second (not measured), then `seconds` of the
//!    devices alone (`clean`), then the hostile clients ([`hostile`])
//!    start, and a second later the devices stream `seconds` again
//!    (`hostile`) while the attacks go on; then the clients stop and report
//!    what they achieved.
//!
//! The server's peak memory per phase is `VmHWM`, reset at the phase's
//! start (`/proc/PID/clear_refs` ← `5`), or where that is refused the
//! largest `VmRSS` sampled every 50 ms. A guard stops the hostile clients
//! when the server's memory passes `rss_cap_bytes` (the bench must not take
//! the machine down with it), and says so.

pub(crate) mod devices;
mod hostile;
mod report;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};

pub use hostile::{BIG_BODY, H2_STREAM_BYTES, H2_STREAMS, HostileKind, KindOutcome};
pub use report::{IngestReport, PhaseFigures};

use crate::demo::procs;

/// Most devices (one thread each).
pub const MAX_DEVICES: usize = 2000;
/// Most hostile clients.
pub const MAX_HOSTILE: usize = 2000;

/// What `aorta bench ingest` runs (its flags, and the executable).
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// The `aorta` executable the server is launched from.
    pub exe: PathBuf,
    /// Legitimate devices (1..=[`MAX_DEVICES`]).
    pub devices: usize,
    /// Hostile clients (0..=[`MAX_HOSTILE`]), spread over
    /// [`HostileKind::ALL`] in turn.
    pub hostile: usize,
    /// Seconds each phase streams (0 < s ≤ 3600).
    pub seconds: f64,
    /// Hostile clients are stopped once the server's resident memory
    /// passes this, bytes.
    pub rss_cap_bytes: u64,
    /// OS priority (nice, 0..=19) of the hostile clients' threads: 19 by
    /// default, standing for attackers on machines of their own (on one
    /// machine their TLS work would otherwise be charged to the devices'
    /// latency); 0 puts them level with the devices and the server.
    pub hostile_nice: i32,
}

/// Runs the bench; `say` receives progress (stderr in the CLI).
pub fn run(cfg: &IngestConfig, say: &dyn Fn(&str)) -> anyhow::Result<IngestReport> {
    if cfg.devices == 0 || cfg.devices > MAX_DEVICES {
        bail!("--devices must be in 1..={MAX_DEVICES}");
    }
    if cfg.hostile > MAX_HOSTILE {
        bail!("--hostile must be in 0..={MAX_HOSTILE}");
    }
    if !(cfg.seconds.is_finite() && cfg.seconds > 0.0 && cfg.seconds <= 3600.0) {
        bail!("--seconds must be in (0, 3600]");
    }
    if !(0..=19).contains(&cfg.hostile_nice) {
        bail!("--hostile-nice must be in 0..=19");
    }
    if cfg.rss_cap_bytes == 0 {
        bail!("--rss-cap-mib must be positive");
    }
    let tmp = tempfile::Builder::new()
        .prefix("aorta-bench-ingest-")
        .tempdir()?;
    let work = tmp.path();
    say(&format!("provisioning {} devices…", cfg.devices));
    let serials = crate::demo::setup::provision(work, cfg.devices, "LOAD")?;
    std::fs::write(
        work.join("server.toml"),
        "# aorta bench ingest: a keyless host, every other setting its default.\n\
         listen = \"127.0.0.1:0\"\ndata_dir = \"server\"\n\
         directory = \"registry/directory.txt\"\nregistry = \"no-registry-on-this-host\"\n",
    )?;
    let (mut server, addr, _) = procs::start_server(
        &cfg.exe,
        &work.join("server.toml"),
        &work.join("server.log"),
    )?;
    let pid = server.child.id();
    let url = format!("https://{addr}");
    let cert = work.join("server").join(aorta_server::http::tls::DEV_CERT);
    say(&format!("server: {url} (pid {pid})"));
    let mut fleet = devices::Fleet::open(work, &serials, &url, &cert)?;
    let warm = fleet.phase(devices::FRAME_SECONDS);
    if warm.acked == 0 {
        bail!(
            "no frame was acknowledged in the warm-up second ({}); see the server log {}",
            warm.reasons.join("; "),
            work.join("server.log").display()
        );
    }
    let rss = RssWatch::start(pid, cfg.rss_cap_bytes);
    let rss_idle_bytes = rss.current();

    say(&format!(
        "clean phase: {} devices for {} s…",
        cfg.devices, cfg.seconds
    ));
    rss.begin();
    let clean_counts = fleet.phase(cfg.seconds);
    let mut frame_bytes = clean_counts.frame_bytes;
    let clean = figures(clean_counts, &rss.end());

    say(&format!(
        "hostile phase: {} hostile clients, then the devices for {} s…",
        cfg.hostile, cfg.seconds
    ));
    rss.begin();
    let addr: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("the server's address {addr:?}"))?;
    // The attackers read the public directory: their frame bodies start
    // with a header of a listed device.
    let listed = serials.last().map_or("LOAD-0001", String::as_str);
    let attack = hostile::Hostile::start(addr, &cert, cfg.hostile, listed, cfg.hostile_nice)?;
    rss.guard(attack.stopper());
    std::thread::sleep(Duration::from_secs(1));
    let hostile_counts = fleet.phase(cfg.seconds);
    let hostile_rss = rss.end();
    frame_bytes += hostile_counts.frame_bytes;
    let distinct = attack.distinct_sources;
    let outcomes = attack.stop();
    let hostile = figures(hostile_counts, &hostile_rss);
    let rss_cap_hit = rss.cap_hit();
    let peak_rss_from = rss.peak_from();
    rss.stop();
    let server_survived = matches!(server.child.try_wait(), Ok(None));
    let _ = server.stop();

    let mut hostile_clients = std::collections::BTreeMap::new();
    for (k, o) in &outcomes {
        hostile_clients.insert(*k, o.clients);
    }
    let connections = fleet.len().div_ceil(devices::DEVICES_PER_CONNECTION);
    let offered = clean.frames_offered + hostile.frames_offered;
    let mean_frame_bytes = if offered > 0 {
        frame_bytes as f64 / offered as f64
    } else {
        f64::NAN
    };
    Ok(IngestReport {
        devices: fleet.len(),
        device_connections: connections,
        frame_seconds: devices::FRAME_SECONDS,
        offered_frames_per_s: fleet.offered_rate(),
        mean_frame_bytes,
        seconds: cfg.seconds,
        p99_ratio: hostile.p99_ms / clean.p99_ms,
        ack_p99_ratio: hostile.ack_p99_ms / clean.ack_p99_ms,
        clean,
        hostile,
        hostile_total: cfg.hostile,
        hostile_clients,
        hostile_nice: cfg.hostile_nice,
        hostile_outcomes: outcomes,
        hostile_distinct_sources: distinct,
        rss_idle_bytes,
        peak_rss_from,
        rss_cap_bytes: cfg.rss_cap_bytes,
        rss_cap_hit,
        server_survived,
    })
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted.get(rank - 1).copied().unwrap_or(f64::NAN)
}

fn figures(mut c: devices::PhaseCounts, rss: &PhaseRss) -> PhaseFigures {
    c.latencies_ms.sort_by(f64::total_cmp);
    c.ack_latencies_ms.sort_by(f64::total_cmp);
    let secs = c.seconds.max(1e-9);
    PhaseFigures {
        frames_per_s: c.acked as f64 / secs,
        p50_ms: percentile(&c.latencies_ms, 0.50),
        p99_ms: percentile(&c.latencies_ms, 0.99),
        max_ms: c.latencies_ms.last().copied().unwrap_or(f64::NAN),
        ack_p50_ms: percentile(&c.ack_latencies_ms, 0.50),
        ack_p99_ms: percentile(&c.ack_latencies_ms, 0.99),
        peak_rss_bytes: rss.peak,
        rss_end_bytes: rss.end,
        frames_offered: c.offered,
        frames_acked: c.acked,
        refused: c.refused,
        failed_uploads: c.failed_uploads,
        unacked: c.unacked,
        seconds: c.seconds,
        problems: c.reasons,
    }
}

/// The server's memory over one phase.
struct PhaseRss {
    peak: u64,
    end: u64,
}

/// `VmRSS` and `VmHWM` of `pid`, bytes.
fn proc_status(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line
            .trim_start_matches(name)
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Samples the server's memory every 50 ms and stops the hostile clients
/// when it passes the cap.
struct RssWatch {
    pid: u32,
    shared: Arc<RssShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct RssShared {
    stop: AtomicBool,
    /// Largest VmRSS sampled since the phase began.
    sampled_peak: AtomicU64,
    last: AtomicU64,
    cap: AtomicU64,
    cap_hit: AtomicBool,
    /// The kernel let us reset VmHWM at every phase start so far.
    hwm_reset: AtomicBool,
    guard: Mutex<Option<Arc<tokio::sync::watch::Sender<bool>>>>,
}

impl RssWatch {
    fn start(pid: u32, cap: u64) -> RssWatch {
        let shared = Arc::new(RssShared::default());
        shared.cap.store(cap, Ordering::Relaxed);
        shared.hwm_reset.store(true, Ordering::Relaxed);
        if let Some((rss, _)) = proc_status(pid) {
            shared.last.store(rss, Ordering::Relaxed);
        }
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("bench-rss".into())
            .spawn(move || {
                while !s.stop.load(Ordering::Relaxed) {
                    if let Some((rss, _)) = proc_status(pid) {
                        s.last.store(rss, Ordering::Relaxed);
                        s.sampled_peak.fetch_max(rss, Ordering::Relaxed);
                        if rss > s.cap.load(Ordering::Relaxed)
                            && !s.cap_hit.swap(true, Ordering::Relaxed)
                            && let Some(g) = s.guard.lock().ok().and_then(|g| g.clone())
                        {
                            g.send_replace(true);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
            .ok();
        RssWatch {
            pid,
            shared,
            thread,
        }
    }

    fn current(&self) -> u64 {
        proc_status(self.pid).map_or(self.shared.last.load(Ordering::Relaxed), |(r, _)| r)
    }

    /// A phase begins: reset the peaks.
    fn begin(&self) {
        let ok = std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5").is_ok();
        if !ok {
            self.shared.hwm_reset.store(false, Ordering::Relaxed);
        }
        self.shared
            .sampled_peak
            .store(self.current(), Ordering::Relaxed);
    }

    /// Stop these clients when the cap is passed.
    fn guard(&self, stop: Arc<tokio::sync::watch::Sender<bool>>) {
        if self.shared.cap_hit.load(Ordering::Relaxed) {
            stop.send_replace(true);
        }
        if let Ok(mut g) = self.shared.guard.lock() {
            *g = Some(stop);
        }
    }

    /// A phase ends: its peak and final memory.
    fn end(&self) -> PhaseRss {
        let sampled = self.shared.sampled_peak.load(Ordering::Relaxed);
        let (end, hwm) = proc_status(self.pid).unwrap_or((sampled, 0));
        let peak = if self.shared.hwm_reset.load(Ordering::Relaxed) {
            hwm.max(sampled)
        } else {
            sampled
        };
        PhaseRss {
            peak: peak.max(end),
            end,
        }
    }

    fn cap_hit(&self) -> bool {
        self.shared.cap_hit.load(Ordering::Relaxed)
    }

    fn peak_from(&self) -> String {
        if self.shared.hwm_reset.load(Ordering::Relaxed) {
            "VmHWM".into()
        } else {
            "VmRSS samples".into()
        }
    }

    fn stop(mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn the_memory_of_a_process_is_read() {
        if !std::path::Path::new("/proc/self/status").exists() {
            eprintln!("no /proc: skipped");
            return;
        }
        let (rss, hwm) = proc_status(std::process::id()).unwrap();
        assert!(rss > 0 && hwm >= rss, "{rss} {hwm}");
        assert!(proc_status(u32::MAX).is_none());
    }
}
