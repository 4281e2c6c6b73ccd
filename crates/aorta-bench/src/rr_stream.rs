//! `aorta bench rr-stream`: the RR-interval stream job over a directory of
//! RR files (per patient, tumbling 5-min windows of count, mean RR, SDNN,
//! RMSSD, LF, HF, LF/HF), optionally against the reference computation.

use std::path::{Path, PathBuf};

use anyhow::Context;
use aorta_stream::rr::{self, RrFormat};
use serde::Serialize;

/// What `aorta bench rr-stream` runs (its flags).
#[derive(Debug, Clone)]
pub struct RrStreamConfig {
    /// Directory of RR files.
    pub input: PathBuf,
    /// File format written by `patients` and read from `input` (default:
    /// the one format found there).
    pub format: Option<RrFormat>,
    /// First generate files for this many patients into `input`.
    pub patients: Option<u32>,
    /// Database the generator replays.
    pub db: PathBuf,
    /// Seed for the generator's offsets.
    pub seed: u64,
    /// Worker threads (default: all cores).
    pub threads: Option<usize>,
    /// Also run the reference computation and compare.
    pub verify: bool,
}

/// Why `aorta bench rr-stream` could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RrStreamError {
    /// The input holds both formats and none was chosen (a usage error).
    #[error("{} holds both .parquet and .csv RR files: choose one with --format", .dir.display())]
    BothFormats {
        /// The input directory.
        dir: PathBuf,
    },
    /// Generating, reading or running failed.
    #[error(transparent)]
    Run(#[from] anyhow::Error),
}

/// The largest relative difference from the reference that passes.
pub const MAX_REL_DIFF: f64 = 1e-9;

/// What `aorta bench rr-stream` measured (its `--json` output).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RrStreamReport {
    /// Events read.
    pub events: u64,
    /// Windows emitted.
    pub windows: u64,
    /// Events per second.
    pub events_per_s: f64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Worker threads.
    pub threads: usize,
    /// Events dropped as later than the watermark.
    pub late_dropped: u64,
    /// File extension of the format read.
    pub format: &'static str,
    /// Files read.
    pub files: usize,
    /// Largest relative difference from the reference (with `verify`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rel_diff: Option<f64>,
}

impl RrStreamReport {
    /// False when the engine differs from the reference by more than
    /// [`MAX_REL_DIFF`] (the CLI exits 1).
    pub fn ok(&self) -> bool {
        !self.max_rel_diff.is_some_and(|d| d > MAX_REL_DIFF)
    }
}

/// Runs the job (generating the input first when asked); `progress`
/// receives what to tell the user.
pub fn run(cfg: &RrStreamConfig, progress: &dyn Fn(&str)) -> Result<RrStreamReport, RrStreamError> {
    if let Some(n) = cfg.patients {
        let format = cfg.format.unwrap_or(RrFormat::Parquet);
        let files = rr::generate(&cfg.db, n, cfg.seed, &cfg.input, 2_000_000, format)
            .with_context(|| format!("generating {n} patients from {}", cfg.db.display()))?;
        progress(&format!(
            "generated {} file(s) for {n} patients in {}",
            files.len(),
            cfg.input.display()
        ));
    }
    let (files, format) = input_files(&cfg.input, cfg.format)?;
    let threads = cfg
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let (out, run) = rr::run(&files, threads, rr::FIVE_MINUTES).map_err(anyhow::Error::from)?;
    let max_rel_diff = if cfg.verify {
        let reference = rr::reference(&files, rr::FIVE_MINUTES).map_err(anyhow::Error::from)?;
        Some(
            rr::max_relative_difference(&out, &reference)
                .context("engine and reference disagree on the set of windows")?,
        )
    } else {
        None
    };
    Ok(RrStreamReport {
        events: run.events,
        windows: run.windows,
        events_per_s: run.events_per_s,
        seconds: run.seconds,
        threads,
        late_dropped: run.stats.late_dropped,
        format: format.extension(),
        files: files.len(),
        max_rel_diff,
    })
}

/// The RR files of `dir` in the chosen (or the only present) format, in
/// name order.
fn input_files(
    dir: &Path,
    format: Option<RrFormat>,
) -> Result<(Vec<PathBuf>, RrFormat), RrStreamError> {
    let all: Vec<(PathBuf, RrFormat)> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| RrFormat::of_path(&p).map(|f| (p, f)))
        .collect();
    let format = match format {
        Some(f) => f,
        None => {
            let has = |f| all.iter().any(|(_, g)| *g == f);
            match (has(RrFormat::Parquet), has(RrFormat::Csv)) {
                (true, true) => {
                    return Err(RrStreamError::BothFormats {
                        dir: dir.to_path_buf(),
                    });
                }
                (false, true) => RrFormat::Csv,
                _ => RrFormat::Parquet,
            }
        }
    };
    let mut files: Vec<PathBuf> = all
        .into_iter()
        .filter(|(_, f)| *f == format)
        .map(|(p, _)| p)
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(anyhow::anyhow!(
            "no .{} RR files in {} (use --patients N to generate some)",
            format.extension(),
            dir.display()
        )
        .into());
    }
    Ok((files, format))
}
