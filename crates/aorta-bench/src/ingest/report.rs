//! The typed report of `aorta bench ingest` and its text table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::hostile::{HostileKind, KindOutcome};

/// What the legitimate devices saw in one phase, and the server's memory.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PhaseFigures {
    /// Frames acknowledged per second of the phase.
    pub frames_per_s: f64,
    /// Median acknowledgement latency (ack − the moment the frame was due),
    /// ms.
    pub p50_ms: f64,
    /// 99th percentile of the same, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// Median acknowledgement latency (ack − the moment the upload began:
    /// the server's part, without the device's sealing and its thread's
    /// wake-up, which share this machine's cores with the attackers), ms.
    pub ack_p50_ms: f64,
    /// 99th percentile of the same, ms.
    pub ack_p99_ms: f64,
    /// The server's peak resident memory during the phase, bytes.
    pub peak_rss_bytes: u64,
    /// Its resident memory when the phase ended, bytes.
    pub rss_end_bytes: u64,
    /// Frames sealed and offered.
    pub frames_offered: u64,
    /// Frames acknowledged.
    pub frames_acked: u64,
    /// Genuine frames refused for good (should be 0).
    pub refused: u64,
    /// Uploads that failed (network, TLS, timeout, busy) and were retried.
    pub failed_uploads: u64,
    /// Frames not acknowledged by the phase's end (including frames that
    /// fell due but could not be sent).
    pub unacked: u64,
    /// Wall time of the phase, s.
    pub seconds: f64,
    /// A few refusal and failure reasons.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// The report of `aorta bench ingest` (its `--json` output).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct IngestReport {
    /// Legitimate devices.
    pub devices: usize,
    /// HTTPS connections they share (HTTP/2).
    pub device_connections: usize,
    /// Seconds of signal per frame; each device sends one frame this often.
    pub frame_seconds: f64,
    /// Frames per second the devices offer.
    pub offered_frames_per_s: f64,
    /// Mean sealed frame size, bytes.
    pub mean_frame_bytes: f64,
    /// Seconds each phase streams.
    pub seconds: f64,
    /// Legitimate devices alone.
    pub clean: PhaseFigures,
    /// The same load with the hostile clients.
    pub hostile: PhaseFigures,
    /// `hostile.p99_ms / clean.p99_ms`.
    pub p99_ratio: f64,
    /// `hostile.ack_p99_ms / clean.ack_p99_ms`.
    pub ack_p99_ratio: f64,
    /// Hostile clients, in all.
    pub hostile_total: usize,
    /// Hostile clients by kind.
    pub hostile_clients: BTreeMap<HostileKind, u64>,
    /// The nice value the hostile clients ran at.
    pub hostile_nice: i32,
    /// What the hostile clients achieved, by kind.
    pub hostile_outcomes: BTreeMap<HostileKind, KindOutcome>,
    /// Each hostile client connected from its own loopback address.
    pub hostile_distinct_sources: bool,
    /// The server's resident memory once started, before any load, bytes.
    pub rss_idle_bytes: u64,
    /// Where the peaks come from: `VmHWM` (reset at each phase's start) or
    /// `VmRSS samples` (every 50 ms, where the reset is not allowed).
    pub peak_rss_from: String,
    /// The guard: hostile clients are stopped when the server's memory
    /// passes this, bytes.
    pub rss_cap_bytes: u64,
    /// The guard fired.
    pub rss_cap_hit: bool,
    /// The server was still running at the end.
    pub server_survived: bool,
}

impl IngestReport {
    /// True when the bench itself worked: frames were acknowledged in the
    /// clean phase, no genuine frame was refused and the server survived.
    pub fn ok(&self) -> bool {
        self.clean.frames_acked > 0
            && self.clean.refused == 0
            && self.hostile.refused == 0
            && self.server_survived
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "aorta bench ingest: {} devices ({} frames/s offered, {} HTTP/2 connection(s), {:.0} B/frame), {} hostile clients, {:.0} s per phase",
            self.devices,
            self.offered_frames_per_s,
            self.device_connections,
            self.mean_frame_bytes,
            self.hostile_total,
            self.seconds
        );
        let _ = writeln!(
            s,
            "\n{:<8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10} {:>7} {:>7} {:>7}",
            "phase",
            "frames/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "ack p50",
            "ack p99",
            "peak RSS",
            "end RSS",
            "refused",
            "failed",
            "unacked"
        );
        for (name, p) in [("clean", &self.clean), ("hostile", &self.hostile)] {
            let _ = writeln!(
                s,
                "{:<8} {:>9.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>10} {:>10} {:>7} {:>7} {:>7}",
                name,
                p.frames_per_s,
                p.p50_ms,
                p.p99_ms,
                p.max_ms,
                p.ack_p50_ms,
                p.ack_p99_ms,
                mib(p.peak_rss_bytes),
                mib(p.rss_end_bytes),
                p.refused,
                p.failed_uploads,
                p.unacked
            );
        }
        let _ = writeln!(
            s,
            "\np99 hostile/clean: {:.2}x (ack p99 {:.2}x)   server RSS idle {}, peaks from {}{}{}",
            self.p99_ratio,
            self.ack_p99_ratio,
            mib(self.rss_idle_bytes),
            self.peak_rss_from,
            if self.rss_cap_hit {
                format!(
                    "; the RSS guard ({}) stopped the hostile clients",
                    mib(self.rss_cap_bytes)
                )
            } else {
                String::new()
            },
            if self.server_survived {
                ""
            } else {
                "; THE SERVER DIED"
            }
        );
        if self.hostile_outcomes.is_empty() {
            return s;
        }
        let _ = writeln!(
            s,
            "\nhostile clients (each repeats its attack until the phase ends{}):",
            if self.hostile_distinct_sources {
                ", each from its own loopback address"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "{:<17} {:>7} {:>8} {:>8} {:<22} {:>6} {:>8} {:>6} {:>9} {:>10}",
            "kind",
            "clients",
            "attempts",
            "requests",
            "answered",
            "closed",
            "no-conn",
            "open",
            "longest s",
            "sent"
        );
        for (k, o) in &self.hostile_outcomes {
            let mut answered: String = o
                .answered
                .iter()
                .map(|(st, n)| format!("{st}x{n}"))
                .collect::<Vec<_>>()
                .join(" ");
            if o.streams_reset > 0 {
                answered.push_str(&format!(" reset x{}", o.streams_reset));
            }
            if answered.is_empty() {
                answered.push('-');
            }
            let _ = writeln!(
                s,
                "{:<17} {:>7} {:>8} {:>8} {:<22} {:>6} {:>8} {:>6} {:>9.1} {:>10}",
                k.name(),
                o.clients,
                o.attempts,
                o.requests,
                answered.trim(),
                o.closed_by_server,
                o.connect_failed,
                o.open_at_end,
                o.longest_s,
                mib(o.bytes_sent)
            );
        }
        let _ = writeln!(
            s,
            "(closed: the server closed the connection without an answer; no-conn: TCP/TLS refused or over 5 s; open: still running at the phase's end, never cut)"
        );
        s
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20))
}
