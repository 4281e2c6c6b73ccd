//! `aorta device …`: what the ECG device does, run from the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use aorta_crypto::frame::ChannelCalibration;
use aorta_device::queue::{OfflineQueue, QueueLimits};
use aorta_device::rotation::Sealer;
use aorta_device::se::FileSecureElement;
use aorta_signal::wfdb::Record;

use crate::factory_cmd::SE_FILE;

/// The rotation state file inside a device directory.
pub const STATE_FILE: &str = "rotation.state";

/// `aorta device` subcommands.
#[derive(clap::Subcommand)]
pub enum DeviceCmd {
    /// Cut a WFDB record into frames and seal them exactly as the live
    /// uploader does (sealer + offline queue); the frames land in FRAMES_DIR.
    Seal {
        /// Device directory made by `aorta factory provision`.
        #[arg(long)]
        device: PathBuf,
        /// WFDB record (path without extension, or its .hea).
        #[arg(long)]
        record: PathBuf,
        /// Seconds of samples per frame.
        #[arg(long, default_value_t = 10.0)]
        frame_seconds: f64,
        /// Time of the first sample, microseconds since the Unix epoch.
        #[arg(long, default_value_t = 0)]
        start_us: i64,
        /// Output directory (an offline queue: one `<sequence>.aof` per frame).
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn run(cmd: DeviceCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        DeviceCmd::Seal {
            device,
            record,
            frame_seconds,
            start_us,
            out,
        } => {
            if frame_seconds.is_nan() || frame_seconds <= 0.0 || frame_seconds > 3600.0 {
                bail!("--frame-seconds must be in (0, 3600]");
            }
            let se = FileSecureElement::open(device.join(SE_FILE))?;
            let mut sealer = Sealer::new(se, device.join(STATE_FILE))?;
            let rec = Record::read(&record)?;
            let h = &rec.header;
            let fs = h.sampling_frequency;
            let rate_mhz = (fs * 1000.0).round();
            if !(1.0..=f64::from(u32::MAX)).contains(&rate_mhz) {
                bail!("sampling frequency {fs} Hz is out of range");
            }
            let rate_mhz = rate_mhz as u32;
            let n = rec.samples.first().map_or(0, Vec::len);
            if rec.samples.iter().any(|s| s.len() != n) {
                bail!("multi-frequency records are not supported (signals differ in length)");
            }
            let cal: Vec<ChannelCalibration> = h
                .signals
                .iter()
                .map(|s| {
                    Ok(ChannelCalibration {
                        gain: s.gain,
                        baseline: s.baseline,
                        adc_zero: s.adc_zero,
                        adc_resolution: u16::try_from(s.adc_resolution)
                            .context("ADC resolution out of range")?,
                        units: s.units.clone(),
                        description: s.description.clone(),
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            let per = (fs * frame_seconds).round().max(1.0) as usize;
            let mut queue = OfflineQueue::open(
                &out,
                QueueLimits {
                    max_bytes: u64::MAX,
                    max_frames: usize::MAX,
                },
            )?;
            let (mut frames, mut bytes, mut first_seq) = (0u64, 0u64, None);
            for (start, chans) in rec.blocks(per) {
                let t = start_us
                    .checked_add((start as f64 * 1e6 / fs).round() as i64)
                    .context("timestamp overflow")?;
                let f = sealer.seal(t, rate_mhz, &cal, &chans)?;
                queue.push(f.sequence, &f.bytes)?;
                first_seq.get_or_insert(f.sequence);
                frames += 1;
                bytes += f.bytes.len() as u64;
            }
            let raw = (n * rec.samples.len() * 2) as u64;
            println!(
                "sealed {frames} frames (sequences {}..{}) of {} samples × {} channels into {}: {bytes} bytes ({:.1}% of 16-bit samples)",
                first_seq.unwrap_or(0),
                sealer.next_sequence(),
                n,
                rec.samples.len(),
                out.display(),
                100.0 * bytes as f64 / raw.max(1) as f64
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
