//! `aorta frames …`: the server's side of upload frames.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use aorta_crypto::frame::ChannelCalibration;
use aorta_registry::Registry;
use aorta_signal::wfdb::{Format, SignalSpec, write_record_16};

/// `aorta frames` subcommands.
#[derive(clap::Subcommand)]
pub enum FramesCmd {
    /// Open every frame in a directory (oldest sequence first) through the
    /// registry's acceptance checks and write the samples back as a WFDB
    /// record (format 16) with the original digital values, gains and
    /// baselines. Exits 1 and names the frame on any refused frame.
    Open {
        /// Registry directory.
        #[arg(long)]
        registry: PathBuf,
        /// Directory of `.aof` frames (as written by `aorta device seal`).
        #[arg(long = "in")]
        input: PathBuf,
        /// Output directory for the WFDB record (named after the device serial).
        #[arg(long)]
        out_wfdb: PathBuf,
    },
}

fn frame_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "aof"))
        .collect();
    v.sort();
    Ok(v)
}

pub fn run(cmd: FramesCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        FramesCmd::Open {
            registry,
            input,
            out_wfdb,
        } => {
            let reg = Registry::open(&registry)?;
            let files = frame_files(&input)?;
            if files.is_empty() {
                bail!("no .aof frames in {}", input.display());
            }
            let mut samples: Vec<Vec<i32>> = Vec::new();
            let mut meta: Option<(String, u32, Vec<ChannelCalibration>)> = None;
            let mut duplicates = 0usize;
            let mut stream_start_us: Option<i64> = None;
            for path in &files {
                let name = path.display();
                let bytes = std::fs::read(path).with_context(|| format!("reading {name}"))?;
                let acc = match reg.accept_frame(&bytes) {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("frame {name}: refused ({}): {e}", e.kind().name());
                        return Ok(ExitCode::from(1));
                    }
                };
                duplicates += usize::from(acc.duplicate);
                let f = acc.frame;
                let h = &f.header;
                match &meta {
                    None => {
                        meta = Some((h.serial.clone(), h.sample_rate_mhz, f.calibration.clone()));
                        samples = vec![Vec::new(); usize::from(h.channels)];
                    }
                    Some((serial, rate, cal)) => {
                        if *serial != h.serial
                            || *rate != h.sample_rate_mhz
                            || *cal != f.calibration
                        {
                            eprintln!(
                                "frame {name}: refused: serial, sample rate or calibration differs from the first frame"
                            );
                            return Ok(ExitCode::from(1));
                        }
                    }
                }
                // The first sample's index, recovered from its timestamp, must
                // continue the samples so far: no gap, no overlap.
                let t0 = *stream_start_us.get_or_insert(h.first_sample_us);
                let start_us =
                    sample_index(h.first_sample_us.saturating_sub(t0), h.sample_rate_hz());
                let expected = samples.first().map_or(0, Vec::len) as i64;
                if start_us != expected {
                    eprintln!(
                        "frame {name}: refused: its first sample is number {start_us} of the stream, expected {expected} (gap or overlap)"
                    );
                    return Ok(ExitCode::from(1));
                }
                for (dst, src) in samples.iter_mut().zip(f.samples) {
                    dst.extend(src);
                }
            }
            let Some((serial, rate, cal)) = meta else {
                bail!("no frames");
            };
            let fs = f64::from(rate) / 1000.0;
            let specs: Vec<SignalSpec> = cal
                .iter()
                .map(|c| SignalSpec {
                    file_name: String::new(),
                    format: Format::F16,
                    samples_per_frame: 1,
                    skew: 0,
                    byte_offset: 0,
                    gain: c.gain,
                    baseline: c.baseline,
                    units: c.units.clone(),
                    adc_resolution: u32::from(c.adc_resolution),
                    adc_zero: c.adc_zero,
                    initial_value: None,
                    checksum: None,
                    block_size: 0,
                    description: c.description.clone(),
                })
                .collect();
            let record_name: String = serial
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            std::fs::create_dir_all(&out_wfdb)
                .with_context(|| format!("creating {}", out_wfdb.display()))?;
            write_record_16(&out_wfdb, &record_name, fs, &specs, &samples)?;
            println!(
                "opened {} frames ({duplicates} already acknowledged) from device {serial}: {} samples × {} channels → {}",
                files.len(),
                samples.first().map_or(0, Vec::len),
                samples.len(),
                out_wfdb.join(format!("{record_name}.hea")).display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Index of a sample `offset_us` after the stream's first sample. The device
/// rounds each frame's timestamp to the microsecond, so this recovers the
/// exact index for any rate below 1 MHz.
fn sample_index(offset_us: i64, fs: f64) -> i64 {
    (offset_us as f64 * fs / 1e6).round() as i64
}
