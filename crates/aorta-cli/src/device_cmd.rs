//! `aorta device …`: what the ECG device does, run from the command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use aorta_device::DeviceDir;
use aorta_device::agent::{self, AgentConfig, AgentEvent, AgentReport, RunSummary, Speed};
use aorta_device::http::{HttpOptions, HttpsTransport};
use aorta_device::mqtt::MqttTransport;

/// Where `aorta device run` uploads.
enum Uplink {
    /// `--server https://…`.
    Https(String),
    /// `--mqtt mqtts://…`.
    Mqtt(String),
}
use aorta_device::progress::ProgressLine;
use aorta_device::queue::{OfflineQueue, QueueLimits};
use aorta_device::source::record::{RecordReplay, ReplayOptions, seal_record};
use aorta_device::source::{Input, Opened};
use aorta_signal::wfdb::Record;

/// `aorta device` subcommands.
#[derive(clap::Subcommand)]
pub enum DeviceCmd {
    /// Cut a WFDB record into frames and seal them exactly as the live
    /// uploader does (sealer + offline queue); the frames land in FRAMES_DIR.
    Seal {
        /// Device directory made by `aorta factory provision`.
        #[arg(long)]
        device: PathBuf,
        /// WFDB record (DIR/NAME, DIR/NAME.hea or DIR/NAME.dat).
        #[arg(long)]
        record: PathBuf,
        /// Read the record without checking its checksums and initial values.
        #[arg(long)]
        no_verify: bool,
        /// Seconds of samples per frame.
        #[arg(long, default_value_t = 10.0, value_parser = crate::args::secs(0.0, crate::args::MAX_FRAME_SECONDS))]
        frame_seconds: f64,
        /// Time of the first sample, microseconds since the Unix epoch.
        #[arg(long, default_value_t = 0)]
        start_us: i64,
        /// Output directory (an offline queue: one `<sequence>.aof` per frame).
        #[arg(long)]
        out: PathBuf,
    },
    /// Stream a WFDB record to an aorta server as a live device: frames are
    /// sealed on schedule (real time × SPEED, or as fast as possible),
    /// buffered in DEVICE/queue, uploaded over HTTPS with retry (capped
    /// exponential backoff with jitter). SIGINT/SIGTERM stops cleanly: the
    /// in-flight upload finishes, unsent frames stay queued, exit 0; the next
    /// run sends them first. A second SIGINT/SIGTERM exits at once (130).
    Run {
        /// Device directory made by `aorta factory provision`.
        #[arg(long)]
        device: PathBuf,
        /// WFDB record (DIR/NAME, DIR/NAME.hea or DIR/NAME.dat).
        #[arg(long, required_unless_present_any = ["rr", "rr_from_annotations"], conflicts_with_all = ["rr", "rr_from_annotations"])]
        record: Option<PathBuf>,
        /// Read --record without checking its checksums and initial values.
        #[arg(long, conflicts_with_all = ["rr", "rr_from_annotations"])]
        no_verify: bool,
        /// Stream RR intervals instead of ECG (a chest strap or PPG
        /// wearable): a text file with one interval in ms per line, or
        /// `time_s,rr_ms` lines (time of the beat ending the interval); a
        /// header line, blank lines and `#` comments are skipped. Sent as RR
        /// frames (codec 2) of about --frame-seconds of beats each.
        #[arg(long, conflicts_with = "rr_from_annotations")]
        rr: Option<PathBuf>,
        /// Stream the normal-to-normal RR intervals of a WFDB record's beat
        /// annotations (RECORD.atr) as RR frames.
        #[arg(long)]
        rr_from_annotations: Option<PathBuf>,
        /// Server base URL (https://host:port).
        #[arg(long, required_unless_present = "mqtt", conflicts_with = "mqtt")]
        server: Option<String>,
        /// Upload over MQTT 5 QoS 1 instead of HTTPS: the server's MQTT
        /// front (mqtts://host:port, `[mqtt]` in the server config,
        /// docs/mqtt.md); the same --ca, queue and retries.
        #[arg(long)]
        mqtt: Option<String>,
        /// PEM file with the CA certificate(s) to trust for the server (the
        /// dev server's `cert.pem`).
        #[arg(long)]
        ca: PathBuf,
        /// × real time (e.g. 1, 10), or `max`.
        #[arg(long, default_value = "1")]
        speed: Speed,
        /// Seconds of samples per frame.
        #[arg(long, default_value_t = 1.0, value_parser = crate::args::secs(0.0, crate::args::MAX_FRAME_SECONDS))]
        frame_seconds: f64,
        /// Seconds of signal to stream (default: the rest of the record;
        /// longer wraps around to its start).
        #[arg(long, value_parser = crate::args::secs(0.0, crate::args::LONG))]
        duration: Option<f64>,
        /// Where in the record to start, in seconds.
        #[arg(long, default_value_t = 0.0, value_parser = crate::args::non_negative(crate::args::LONG))]
        offset: f64,
        /// Time of the first sample, µs since the Unix epoch (default: now).
        #[arg(long)]
        start_us: Option<i64>,
        /// After the record ends, give up emptying the queue after this many
        /// seconds (frames stay queued; default: keep trying until stopped).
        #[arg(long, value_parser = crate::args::non_negative(crate::args::LONG))]
        drain_timeout: Option<f64>,
        /// Follow a record that is still being written (its signal file
        /// grows): frames go out as the samples arrive; ends when the file
        /// has not grown for `--idle-timeout` seconds, or on SIGINT/SIGTERM.
        #[arg(long, conflicts_with_all = ["duration", "offset"])]
        follow: bool,
        /// With `--follow`: seconds without growth that end the stream.
        #[arg(long, default_value_t = 10.0, requires = "follow", value_parser = crate::args::secs(0.0, crate::args::LONG))]
        idle_timeout: f64,
        /// Print the summary as JSON (`frames`, `acked`, `refused`,
        /// `retries`, `queued_left`, `samples`, ...).
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: DeviceCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        DeviceCmd::Seal {
            device,
            record,
            no_verify,
            frame_seconds,
            start_us,
            out,
        } => seal(
            device,
            Record::read_with(&record, crate::wfdb_cmd::read_options(no_verify))?,
            frame_seconds,
            start_us,
            out,
        ),
        DeviceCmd::Run {
            device,
            record,
            no_verify,
            rr,
            rr_from_annotations,
            server,
            mqtt,
            ca,
            speed,
            frame_seconds,
            duration,
            offset,
            start_us,
            drain_timeout,
            follow,
            idle_timeout,
            json,
        } => {
            let follow = if follow {
                Some(
                    Duration::try_from_secs_f64(idle_timeout)
                        .context("--idle-timeout must be seconds ≥ 0")?,
                )
            } else {
                None
            };
            let drain_timeout = drain_timeout
                .map(|s| {
                    Duration::try_from_secs_f64(s).context("--drain-timeout must be seconds ≥ 0")
                })
                .transpose()?;
            let start_us = start_us.unwrap_or_else(aorta_base::time::now_us);
            let opts = ReplayOptions {
                frame_seconds,
                offset_seconds: offset,
                duration_seconds: duration,
                start_us,
            };
            let config = AgentConfig {
                // A followed file paces itself: send as the samples arrive.
                speed: if follow.is_some() { Speed::Max } else { speed },
                drain_timeout,
                ..AgentConfig::default()
            };
            let input = match (record, rr, rr_from_annotations) {
                (Some(record), None, None) => match follow {
                    Some(idle) => Input::Follow { record, idle },
                    None => Input::Record(record, crate::wfdb_cmd::read_options(no_verify)),
                },
                (None, Some(f), None) => Input::RrFile(f),
                (None, None, Some(r)) => Input::RrAnnotations(r),
                _ => anyhow::bail!("give exactly one of --record, --rr, --rr-from-annotations"),
            };
            let uplink = match (server, mqtt) {
                (Some(s), None) => Uplink::Https(s),
                (None, Some(m)) => Uplink::Mqtt(m),
                _ => anyhow::bail!("give exactly one of --server, --mqtt"),
            };
            stream(&device, &input, &uplink, &ca, &opts, &config, json)
        }
    }
}

/// `aorta device seal`: the agent's seal-and-queue step over a whole record,
/// without an uplink.
fn seal(
    device: PathBuf,
    record: Record,
    frame_seconds: f64,
    start_us: i64,
    out: PathBuf,
) -> anyhow::Result<ExitCode> {
    let mut sealer = DeviceDir::new(device).open_sealer()?;
    let mut src = RecordReplay::new(
        Arc::new(record),
        &ReplayOptions {
            frame_seconds,
            offset_seconds: 0.0,
            duration_seconds: None,
            start_us,
        },
    )?;
    let mut queue = OfflineQueue::open(
        &out,
        QueueLimits {
            max_bytes: u64::MAX,
            max_frames: usize::MAX,
        },
    )?;
    let s = seal_record(&mut src, &mut sealer, &mut queue)?;
    outln!(
        "sealed {} frames (sequences {}..{}) of {} samples × {} channels into {}: {} bytes ({:.1}% of 16-bit samples)",
        s.frames,
        s.first_sequence.unwrap_or(0),
        s.next_sequence,
        s.samples,
        s.channels,
        out.display(),
        s.bytes,
        s.percent_of_16_bit()
    );
    Ok(ExitCode::SUCCESS)
}

/// `aorta device run`.
#[allow(
    clippy::too_many_arguments,
    reason = "each argument is an independent setting of the run; a struct would only rename them"
)]
fn stream(
    device: &std::path::Path,
    input: &Input,
    uplink: &Uplink,
    ca: &std::path::Path,
    opts: &ReplayOptions,
    config: &AgentConfig,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (mut transport, url): (Box<dyn aorta_device::queue::Transport>, String) = match uplink {
        Uplink::Https(server) => {
            let t = HttpsTransport::new(server, ca, HttpOptions::default())?;
            let url = t.url().to_owned();
            (Box::new(t), url)
        }
        Uplink::Mqtt(url) => (
            Box::new(MqttTransport::new(url, ca, HttpOptions::default())?),
            format!("{url} (MQTT 5, QoS 1)"),
        ),
    };
    let dir = DeviceDir::new(device);
    let mut sealer = dir.open_sealer()?;
    let serial = aorta_crypto::keys::KeyPrf::serial(sealer.secure_element()).to_owned();
    let mut queue = dir.open_queue(QueueLimits::default())?;
    let resumed = queue.len();
    let stop = Arc::new(AtomicBool::new(false));
    crate::stop_on_signals(&stop)?;
    let pace = match config.speed {
        Speed::Max if matches!(input, Input::Follow { .. }) => "as the samples arrive".to_owned(),
        Speed::Max => "as fast as possible".to_owned(),
        Speed::RealTime(x) => format!("{x}× real time"),
    };
    let Opened {
        source: mut src,
        what,
    } = input.open(opts, stop.clone())?;
    eprintln!("{serial}: streaming {what} to {url} ({pace})");
    if resumed > 0 {
        eprintln!("{serial}: {resumed} frames queued by an earlier run go first");
    }
    let mut line = ProgressLine::new();
    let mut cb = |e: &AgentEvent<'_>, r: &AgentReport| line.on_event(e, r);
    let r = agent::run(
        src.as_mut(),
        &mut sealer,
        &mut queue,
        transport.as_mut(),
        config,
        &stop,
        Some(&mut cb),
    )?;
    line.clear();
    if json {
        outln!(
            "{}",
            serde_json::to_string(&RunSummary::new(&serial, resumed, &r))?
        );
    } else {
        outln!(
            "{serial}: sealed {} frames ({} samples/channel, {} bytes), acked {}, refused {}, retries {}, dropped {}, left queued {}{}",
            r.frames_sealed,
            r.samples_sealed,
            r.bytes_sealed,
            r.acked,
            r.refused.len(),
            r.retries,
            r.dropped,
            r.queued_left,
            if r.stopped {
                " (stopped; queued frames go first next run)"
            } else if r.drain_timed_out {
                " (drain timeout; queued frames go first next run)"
            } else {
                ""
            }
        );
    }
    Ok(if r.refused.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
