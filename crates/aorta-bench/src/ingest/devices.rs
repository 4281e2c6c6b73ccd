//! The legitimate devices of `aorta bench ingest`: each seals one frame per
//! period with its own secure element ([`Sealer::seal`], the device's code),
//! signs it ([`sign_upload`]) and uploads it with [`HttpsTransport`]
//! ([`Transport::upload`], the device's HTTPS uplink), one thread per device.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aorta_device::dir::DeviceDir;
use aorta_device::http::{HttpOptions, HttpsTransport};
use aorta_device::queue::{Transport, UploadReply, sign_upload};
use aorta_device::rotation::Sealer;
use aorta_device::se::FileSecureElement;

use crate::pipeline::signal::{Source, synthetic};

/// Devices per HTTPS client (one connection, HTTP/2 streams multiplexed).
pub(crate) const DEVICES_PER_CONNECTION: usize = 20;
/// Seconds of signal per frame (and the pace: one frame per device per
/// period).
pub(crate) const FRAME_SECONDS: f64 = 1.0;
/// Wait before a device retries an upload that failed (network, busy).
const RETRY: Duration = Duration::from_millis(200);
/// Distinct synthetic signals the devices replay (device i plays i mod this).
const SIGNALS: usize = 8;
/// Seconds of each synthetic signal (replayed in a loop).
const SIGNAL_SECONDS: f64 = 60.0;
/// Refusal reasons kept for the report.
const KEPT_REASONS: usize = 5;

/// One provisioned device, ready to stream.
struct Device {
    sealer: Sealer<FileSecureElement>,
    transport: HttpsTransport,
    source: Arc<Source>,
    /// Next sample of the source to send.
    pos: usize,
    /// Where its sends fall within the period (spreads the devices).
    offset: Duration,
}

/// What the devices did in one phase.
#[derive(Debug, Default)]
pub(crate) struct PhaseCounts {
    /// Device latencies (ack − the moment the frame was due: the device
    /// thread's wake-up, sealing, signing and the upload), ms.
    pub(crate) latencies_ms: Vec<f64>,
    /// Acknowledgement latencies (ack − the moment the frame's first upload
    /// began: the server's part, with any retries), ms.
    pub(crate) ack_latencies_ms: Vec<f64>,
    /// Frames sealed and offered.
    pub(crate) offered: u64,
    /// Frames acknowledged.
    pub(crate) acked: u64,
    /// Frames refused for good (a genuine frame should never be).
    pub(crate) refused: u64,
    /// Uploads that failed (network, TLS, timeout, 5xx) and were retried.
    pub(crate) failed_uploads: u64,
    /// Frames not acknowledged when the phase ended (including frames that
    /// fell due but could not be sent).
    pub(crate) unacked: u64,
    /// Bytes of sealed frames offered.
    pub(crate) frame_bytes: u64,
    /// Wall time of the phase, s (its start to the last device's end, at
    /// least its nominal length).
    pub(crate) seconds: f64,
    /// A few refusal and failure reasons.
    pub(crate) reasons: Vec<String>,
}

impl PhaseCounts {
    fn merge(&mut self, o: PhaseCounts) {
        self.latencies_ms.extend(o.latencies_ms);
        self.ack_latencies_ms.extend(o.ack_latencies_ms);
        self.offered += o.offered;
        self.acked += o.acked;
        self.refused += o.refused;
        self.failed_uploads += o.failed_uploads;
        self.unacked += o.unacked;
        self.frame_bytes += o.frame_bytes;
        for r in o.reasons {
            if self.reasons.len() < KEPT_REASONS && !self.reasons.contains(&r) {
                self.reasons.push(r);
            }
        }
    }
}

/// The devices.
pub(crate) struct Fleet {
    devices: Vec<Device>,
    period: Duration,
}

impl Fleet {
    /// Opens the devices of `serials` (in `work/devices/`) and their
    /// uplinks to `url`, trusting `cert`.
    pub(crate) fn open(
        work: &Path,
        serials: &[String],
        url: &str,
        cert: &Path,
    ) -> anyhow::Result<Fleet> {
        let sources: Vec<Arc<Source>> = synthetic(SIGNALS, SIGNAL_SECONDS)
            .into_iter()
            .map(Arc::new)
            .collect();
        let period = Duration::from_secs_f64(FRAME_SECONDS);
        let opts = HttpOptions {
            request_timeout: Duration::from_secs(10),
            ..HttpOptions::default()
        };
        let mut devices = Vec::with_capacity(serials.len());
        let mut transport = None;
        for (i, serial) in serials.iter().enumerate() {
            if i % DEVICES_PER_CONNECTION == 0 {
                transport = Some(HttpsTransport::new(url, cert, opts)?);
            }
            let transport = transport
                .clone()
                .ok_or_else(|| anyhow::anyhow!("no uplink"))?;
            let source = sources
                .get(i % sources.len().max(1))
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no signal"))?;
            let sealer = DeviceDir::new(work.join("devices").join(serial)).open_sealer()?;
            devices.push(Device {
                sealer,
                transport,
                // Devices replaying the same signal start at different places.
                pos: (i / SIGNALS * 7 * 360) % source.channels[0].len().max(1),
                source,
                offset: period.mul_f64(i as f64 / serials.len().max(1) as f64),
            });
        }
        Ok(Fleet { devices, period })
    }

    /// Devices.
    pub(crate) fn len(&self) -> usize {
        self.devices.len()
    }

    /// Offered frames per second (every device, one frame per period).
    pub(crate) fn offered_rate(&self) -> f64 {
        self.devices.len() as f64 / self.period.as_secs_f64()
    }

    /// Streams for `seconds`: every device sends frame k when it is due at
    /// `start + offset + k·period` (late frames are sent at once, none
    /// skipped), waits for its acknowledgement and retries failures.
    pub(crate) fn phase(&mut self, seconds: f64) -> PhaseCounts {
        let period = self.period;
        let t0 = Instant::now() + Duration::from_millis(20);
        let end = t0 + Duration::from_secs_f64(seconds);
        let mut total = PhaseCounts::default();
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .devices
                .iter_mut()
                .map(|d| s.spawn(move || d.stream(t0, end, period)))
                .collect();
            for h in handles {
                match h.join() {
                    Ok(c) => total.merge(c),
                    Err(_) => total.merge(PhaseCounts {
                        reasons: vec!["a device thread panicked".into()],
                        unacked: 1,
                        ..PhaseCounts::default()
                    }),
                }
            }
        });
        // The phase lasts at least its nominal length (the last frames are
        // due just before its end).
        total.seconds = t0.elapsed().as_secs_f64().max(seconds);
        total
    }
}

impl Device {
    /// Where the next `n` samples start in the source (looping over it).
    fn next_pos(&mut self, n: usize) -> usize {
        if self.pos + n > self.source.channels[0].len() {
            self.pos = 0;
        }
        let at = self.pos;
        self.pos += n;
        at
    }

    fn stream(&mut self, t0: Instant, end: Instant, period: Duration) -> PhaseCounts {
        let mut c = PhaseCounts::default();
        let fs = self.source.fs;
        let n = (fs * period.as_secs_f64()).round() as usize;
        let rate_mhz = (fs * 1000.0).round() as u32;
        let mut due = t0 + self.offset;
        while due < end && Instant::now() < end {
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            // The frame holds the period that just ended.
            let first_us = aorta_base::time::now_us() - period.as_micros() as i64;
            let at = self.next_pos(n);
            let src = self.source.clone();
            let [a, b] = &src.channels;
            let channels = [
                a.get(at..at + n).unwrap_or_default(),
                b.get(at..at + n).unwrap_or_default(),
            ];
            let sealed = match self
                .sealer
                .seal(first_us, rate_mhz, &src.calibration, &channels)
            {
                Ok(f) => f,
                Err(e) => {
                    c.reasons.push(format!("sealing: {e}"));
                    c.unacked += 1;
                    return c;
                }
            };
            let sig = match sign_upload(self.sealer.secure_element(), &sealed.bytes) {
                Ok(s) => s,
                Err(e) => {
                    c.reasons.push(format!("signing: {e}"));
                    c.unacked += 1;
                    return c;
                }
            };
            c.offered += 1;
            c.frame_bytes += sealed.bytes.len() as u64;
            let sent = Instant::now();
            loop {
                match self.transport.upload(&sealed.bytes, &sig) {
                    Ok(UploadReply::Ack { .. }) => {
                        c.acked += 1;
                        let now = Instant::now();
                        c.latencies_ms
                            .push(now.duration_since(due).as_secs_f64() * 1e3);
                        c.ack_latencies_ms
                            .push(now.duration_since(sent).as_secs_f64() * 1e3);
                        break;
                    }
                    Ok(UploadReply::Refused { reason, .. }) => {
                        c.refused += 1;
                        if c.reasons.len() < KEPT_REASONS {
                            c.reasons.push(format!("refused: {reason}"));
                        }
                        break;
                    }
                    Err(e) => {
                        c.failed_uploads += 1;
                        if c.reasons.len() < KEPT_REASONS {
                            c.reasons.push(format!("upload failed: {e}"));
                        }
                        if Instant::now() + RETRY >= end {
                            c.unacked += 1;
                            break;
                        }
                        std::thread::sleep(RETRY);
                    }
                }
            }
            due += period;
        }
        // Frames that fell due but could not even be sent before the end.
        while due < end {
            c.unacked += 1;
            due += period;
        }
        c
    }
}
