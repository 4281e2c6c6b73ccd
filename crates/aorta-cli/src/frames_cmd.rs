//! `aorta frames …`: the server's side of upload frames.

use std::path::PathBuf;
use std::process::ExitCode;

use aorta_registry::Registry;
use aorta_registry::frames_dir::open_frames_dir;

/// `aorta frames` subcommands.
#[derive(clap::Subcommand)]
pub enum FramesCmd {
    /// Open every frame in a directory (oldest sequence first) through the
    /// registry's acceptance checks and write the samples back as a WFDB
    /// record with the original digital values, gains and baselines, in
    /// format 16, or 24/32 when the samples need it; the first sample's time
    /// is the record's base time (UTC). Exits 1 and names the frame on any
    /// refused frame.
    Open {
        /// Registry directory.
        #[arg(long)]
        registry: PathBuf,
        /// Directory of `.aof` frames (as written by `aorta device seal`).
        #[arg(long = "in")]
        input: PathBuf,
        /// Output directory for the WFDB record.
        #[arg(long)]
        out_wfdb: PathBuf,
        /// Record name (frames do not carry the source record's name; default:
        /// the device serial, characters other than letters and digits as `_`).
        #[arg(long)]
        name: Option<String>,
    },
}

pub fn run(cmd: FramesCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        FramesCmd::Open {
            registry,
            input,
            out_wfdb,
            name,
        } => {
            let reg = Registry::open(&registry)?;
            let opened = match open_frames_dir(&reg, &input) {
                Ok(o) => o,
                Err(e) if e.is_refusal() => {
                    eprintln!("{e}");
                    return Ok(ExitCode::from(1));
                }
                Err(e) => return Err(e.into()),
            };
            let (hea, format) = opened.write_wfdb(&out_wfdb, name.as_deref())?;
            outln!(
                "opened {} frames ({} already acknowledged) from device {}: {} samples × {} channels → {} (format {})",
                opened.frames,
                opened.duplicates,
                opened.serial,
                opened.samples.first().map_or(0, Vec::len),
                opened.samples.len(),
                hea.display(),
                format.code()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
