//! The demo's devices: one agent thread per device replaying its record
//! through the cloud, and the clinician's view of their results.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use aorta_device::agent::{self, AgentConfig, AgentEvent, AgentReport};
use aorta_device::dir::DeviceDir;
use aorta_device::http::{HttpOptions, HttpsTransport};
use aorta_device::queue::QueueLimits;
use aorta_device::source::record::{RecordReplay, ReplayOptions};
use aorta_signal::wfdb::Record;
use aorta_worker::clinician::ResultReader;

use super::view::{self, Patient, Progress, Screen};
use super::{Cloud, DemoConfig, DemoReport, Latency, ReplaySpec};

type AgentResult = Result<AgentReport, aorta_device::DeviceError>;

/// Counters the device threads update.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    frames: AtomicU64,
}

/// The running devices and what the clinician has seen.
pub(crate) struct Fleet {
    threads: Vec<JoinHandle<AgentResult>>,
    counters: Arc<Counters>,
    total: u64,
    view: BTreeMap<String, Patient>,
    events: u64,
    /// Rhythm events received, by kind name.
    event_kinds: BTreeMap<String, u64>,
}

impl Fleet {
    /// Starts one agent thread per serial, replaying the records in turn.
    pub(crate) fn start(
        cfg: &DemoConfig,
        work: &Path,
        recs: &[PathBuf],
        serials: &[String],
        cloud: &Cloud,
        start_us: i64,
        stop: &Arc<AtomicBool>,
    ) -> anyhow::Result<Fleet> {
        let mut fleet = Fleet {
            threads: Vec::new(),
            counters: Arc::new(Counters::default()),
            total: 0,
            view: BTreeMap::new(),
            events: 0,
            event_kinds: BTreeMap::new(),
        };
        let mut loaded: BTreeMap<PathBuf, Arc<Record>> = BTreeMap::new();
        let uplink = HttpsTransport::new(&cloud.url, &cloud.cert, HttpOptions::default())?;
        let spec = ReplaySpec {
            frame_seconds: cfg.frame_seconds,
            duration_seconds: cfg.duration,
            start_us,
        };
        for (i, serial) in serials.iter().enumerate() {
            let path = recs.get(i % recs.len()).context("no records to replay")?;
            let rec = match loaded.get(path) {
                Some(r) => r.clone(),
                None => {
                    let r = Arc::new(
                        Record::read(path)
                            .with_context(|| format!("reading {}", path.display()))?,
                    );
                    loaded.insert(path.clone(), r.clone());
                    r
                }
            };
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            fleet.view.entry(serial.clone()).or_default().record = name;
            // One client for all devices (HTTP/2: one connection, many streams).
            fleet.spawn(
                cfg,
                &work.join("devices").join(serial),
                rec,
                &spec,
                uplink.clone(),
                stop.clone(),
            )?;
        }
        Ok(fleet)
    }

    /// Starts the agent of the device in `dir`.
    fn spawn(
        &mut self,
        cfg: &DemoConfig,
        dir: &Path,
        rec: Arc<Record>,
        spec: &ReplaySpec,
        mut transport: HttpsTransport,
        stop: Arc<AtomicBool>,
    ) -> anyhow::Result<()> {
        let mut replay = RecordReplay::new(
            rec,
            &ReplayOptions {
                frame_seconds: spec.frame_seconds,
                offset_seconds: 0.0,
                duration_seconds: Some(spec.duration_seconds),
                start_us: spec.start_us,
            },
        )?;
        let channels = replay.channels() as u64;
        self.total += replay.total_samples() * channels;
        let dir = DeviceDir::new(dir);
        let mut sealer = dir.open_sealer()?;
        let mut queue = dir.open_queue(QueueLimits::default())?;
        let counters = self.counters.clone();
        let acfg = AgentConfig {
            speed: cfg.speed,
            ..AgentConfig::default()
        };
        self.threads.push(std::thread::spawn(move || {
            let mut on = |e: &AgentEvent<'_>, _r: &AgentReport| match e {
                AgentEvent::Sealed { samples, .. } => {
                    counters.frames.fetch_add(1, Ordering::Relaxed);
                    counters
                        .sent
                        .fetch_add(*samples as u64 * channels, Ordering::Relaxed);
                }
                AgentEvent::Acked { .. } => {
                    counters.acked.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            };
            agent::run(
                &mut replay,
                &mut sealer,
                &mut queue,
                &mut transport,
                &acfg,
                &stop,
                Some(&mut on),
            )
        }));
        Ok(())
    }

    /// Applies the results opened since the last poll.
    pub(crate) fn poll(
        &mut self,
        reader: &mut ResultReader,
    ) -> Result<(), aorta_stream::StreamError> {
        for r in reader.poll()? {
            if let aorta_stream::ecg::EcgResult::Rhythm(ev) = &r.result {
                *self
                    .event_kinds
                    .entry(view::kind_name(&ev.kind))
                    .or_default() += 1;
            }
            view::apply(&mut self.view, &r, &mut self.events);
        }
        Ok(())
    }

    /// Draws the clinician's view.
    pub(crate) fn draw(&self, screen: &mut Screen, final_: bool) {
        let p = Progress {
            sent: self.counters.sent.load(Ordering::Relaxed),
            total: self.total,
            acked: self.counters.acked.load(Ordering::Relaxed),
            frames: self.counters.frames.load(Ordering::Relaxed),
        };
        screen.draw(&self.view, &p, final_);
    }

    /// Shows results live until every device is done; why the demo
    /// failed, when the worker exits meanwhile (the devices are stopped).
    pub(crate) fn watch(
        &mut self,
        worker: &mut super::Proc,
        reader: &mut ResultReader,
        screen: &mut Screen,
        stop: &AtomicBool,
    ) -> Option<String> {
        let mut failed = None;
        while self.threads.iter().any(|t| !t.is_finished()) {
            std::thread::sleep(Duration::from_millis(500));
            if let Err(e) = self.poll(reader) {
                tracing::debug!(error = %e, "results poll failed");
            }
            self.draw(screen, false);
            if failed.is_none()
                && let Ok(Some(s)) = worker.child.try_wait()
            {
                // After a signal the worker stopping is expected (a
                // terminal's Ctrl-C reaches it too), not a failure.
                if !stop.load(Ordering::Relaxed) {
                    failed = Some(format!("the worker exited ({s}); see worker.log"));
                }
                stop.store(true, Ordering::Relaxed);
            }
        }
        failed
    }

    /// Joins the device threads; their problems.
    pub(crate) fn join(&mut self) -> Vec<String> {
        let mut device_errors = Vec::new();
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(Ok(r)) if r.refused.is_empty() && r.queued_left == 0 => {}
                Ok(Ok(r)) => device_errors.push(format!(
                    "{} refused, {} left queued",
                    r.refused.len(),
                    r.queued_left
                )),
                Ok(Err(e)) => device_errors.push(e.to_string()),
                Err(_) => device_errors.push("device thread panicked".into()),
            }
        }
        device_errors
    }

    /// The summary from the server's last counters.
    pub(crate) fn report(
        &self,
        stats: &aorta_api::Stats,
        streaming: f64,
        unopenable: u64,
    ) -> DemoReport {
        let lat = |v: Option<f64>| v.unwrap_or(f64::NAN);
        let samples = self.counters.sent.load(Ordering::Relaxed);
        DemoReport {
            devices: self.view.len(),
            samples,
            // Acknowledged frames were accepted: the devices' count stands
            // in when the server's counters are gone (an interrupted run).
            frames: stats
                .frames_accepted
                .max(self.counters.acked.load(Ordering::Relaxed)),
            events: self.events,
            events_by_kind: self.event_kinds.clone(),
            results: self.view.values().map(|p| p.results).sum(),
            samples_per_s: samples as f64 / streaming.max(1e-9),
            seconds: streaming,
            latency_ms: Latency {
                p50: lat(stats.latency_p50_ms),
                p99: lat(stats.latency_p99_ms),
            },
            frames_refused_by_worker: stats.frames_refused_by_worker.clone(),
            results_unopenable: unopenable,
            sample_data: false,
            hardware_protected: false,
            failed: None,
            device_errors: Vec::new(),
            worker_clean: true,
            kept_dir: None,
            interrupted: false,
        }
    }
}
