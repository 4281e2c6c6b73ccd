//! `aorta eval …`: accuracy against annotated databases.

use std::path::PathBuf;
use std::process::ExitCode;

use aorta_signal::eval::{
    EvalOptions, check_beat_annotations, record_list, score_af_with, score_rpeaks,
};
use aorta_signal::rhythm::RhythmConfig;

/// `aorta eval` subcommands.
#[derive(clap::Subcommand)]
pub enum EvalCmd {
    /// Score the R-peak detector against reference beat annotations (ANSI/AAMI EC57).
    Rpeaks(RpeakArgs),
    /// Score the AF detector: 30-s segments of MIT-BIH-style records against
    /// their (AFIB rhythm annotations, or PhysioNet/CinC 2017 strips against REFERENCE.csv.
    Af(AfArgs),
    /// Score beat classification (AAMI classes N, S, V, F, Q) against reference
    /// beats, leave-one-record-out: each record with the model trained without it.
    Beats(BeatArgs),
    /// Score rhythm episodes (AF, VT, bigeminy, trigeminy; VFL reference only)
    /// against the rhythm annotations of MIT-BIH-style records (EC57 episode
    /// and duration Se and +P).
    Rhythm(RhythmArgs),
}

/// Arguments of `aorta eval rhythm`.
#[derive(clap::Args)]
pub struct RhythmArgs {
    /// Database directory with .atr rhythm annotations, e.g. ../shared/data/mitdb.
    #[arg(long)]
    db: PathBuf,
    /// Records to score (default: every record listed in DB/RECORDS).
    #[arg(long = "record")]
    records: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Read records without checking their checksums and initial values.
    #[arg(long)]
    no_verify: bool,
}

/// Arguments of `aorta eval beats`.
#[derive(clap::Args)]
pub struct BeatArgs {
    /// Database directory with .atr beat annotations, e.g. ../shared/data/mitdb.
    #[arg(long)]
    db: PathBuf,
    /// Records to score (default: every record listed in DB/RECORDS).
    #[arg(long = "record")]
    records: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Read records without checking their checksums and initial values.
    #[arg(long)]
    no_verify: bool,
    /// Seconds at the start of each record not scored (EC57 learning period).
    #[arg(long, default_value_t = 300.0, value_parser = crate::args::non_negative(crate::args::LONG))]
    start: f64,
    /// Instead of scoring, write every detected beat's features with the
    /// class of its matched reference beat as CSV to FILE (`-`: stdout), the
    /// input of tools/train_beats.py.
    #[arg(long, value_name = "FILE")]
    dump_features: Option<PathBuf>,
}

/// Arguments of `aorta eval af`.
#[derive(clap::Args)]
pub struct AfArgs {
    /// Database directory: one with .atr rhythm annotations (e.g. ../shared/data/mitdb) or
    /// one with REFERENCE.csv (e.g. ../shared/data/challenge-2017).
    #[arg(long)]
    db: PathBuf,
    /// Records to score (default: all).
    #[arg(long = "record")]
    records: Vec<String>,
    /// Read annotated records without checking their checksums and initial
    /// values (REFERENCE.csv recordings are never checked).
    #[arg(long)]
    no_verify: bool,
    /// Segment length in seconds for annotated records.
    #[arg(long, default_value_t = 30.0, value_parser = crate::args::secs(1.0, crate::args::DAY))]
    segment: f64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Run each annotated record through the live worker's ECG operator
    /// (`aorta_stream::ecg::EcgOperator`: signal quality, detector, beat
    /// classes, rhythm monitor, in 1-s frames) and score the AF events it
    /// emits; each record classified by the model trained without it.
    #[arg(long)]
    through_worker: bool,
}

/// Arguments of `aorta eval rpeaks`.
#[derive(clap::Args)]
pub struct RpeakArgs {
    /// Database directory (holding RECORDS, *.hea, *.dat, *.atr), e.g. ../shared/data/mitdb.
    #[arg(long)]
    db: PathBuf,
    /// Records to score (default: every record listed in DB/RECORDS).
    #[arg(long = "record")]
    records: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Read records without checking their checksums and initial values.
    #[arg(long)]
    no_verify: bool,
    /// Seconds at the start of each record not scored (EC57 learning period).
    #[arg(long, default_value_t = 300.0, value_parser = crate::args::non_negative(crate::args::LONG))]
    start: f64,
    /// Matching window in seconds.
    #[arg(long, default_value_t = 0.150, value_parser = crate::args::secs(0.0, 10.0))]
    window: f64,
    /// Signal (lead) index to analyse (0: the first, e.g. MLII; 1: the
    /// second, e.g. V1).
    #[arg(long, default_value_t = 0, conflicts_with = "fuse")]
    lead: usize,
    /// Add the reproducible noise mix (baseline wander, mains, muscle,
    /// electrode motion; docs/signal.md) at this SNR in dB before detection.
    #[arg(long, value_parser = crate::args::secs(-30.0, 60.0))]
    snr: Option<f64>,
    /// Seed of the noise mix.
    #[arg(long, default_value_t = 1, requires = "snr")]
    seed: u64,
    /// Multi-lead fusion: use every lead, the one with the better signal
    /// quality second by second.
    #[arg(long)]
    fuse: bool,
    /// Score the bare detector, without the signal-quality gate.
    #[arg(long, conflicts_with = "fuse")]
    no_gate: bool,
}

pub fn run(cmd: EvalCmd) -> anyhow::Result<ExitCode> {
    crate::signals::abort_on_signals()?;
    match cmd {
        EvalCmd::Rpeaks(a) => rpeaks(a),
        EvalCmd::Af(a) => af(a),
        EvalCmd::Beats(a) => beats(a),
        EvalCmd::Rhythm(a) => rhythm(a),
    }
}

fn rhythm(a: RhythmArgs) -> anyhow::Result<ExitCode> {
    let names = record_list(&a.db, &a.records)?;
    crate::eval_report::check_records(&a.db, &names, 0, None)?;
    let opts = EvalOptions {
        read: crate::wfdb_cmd::read_options(a.no_verify),
        ..EvalOptions::default()
    };
    let report =
        aorta_signal::rhythm_eval::score_rhythm(&a.db, &names, &opts, &RhythmConfig::default());
    crate::eval_class_report::rhythm(&report, a.json)
}

fn beats(a: BeatArgs) -> anyhow::Result<ExitCode> {
    let names = record_list(&a.db, &a.records)?;
    let readable: Vec<String> = names
        .iter()
        .filter(|n| aorta_signal::wfdb::read_header(a.db.join(n)).is_ok())
        .cloned()
        .collect();
    if !readable.is_empty() {
        check_beat_annotations(&a.db, &readable)?;
    }
    crate::eval_report::check_records(&a.db, &names, 0, Some(a.start))?;
    let opts = EvalOptions {
        start: a.start,
        read: crate::wfdb_cmd::read_options(a.no_verify),
        ..EvalOptions::default()
    };
    if let Some(path) = a.dump_features {
        let failures = if path.as_os_str() == "-" {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            aorta_signal::beats::eval::dump_features(&a.db, &names, &opts, &mut out)?
        } else {
            let file = std::fs::File::create(&path)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", path.display()))?;
            let mut out = std::io::BufWriter::new(file);
            let f = aorta_signal::beats::eval::dump_features(&a.db, &names, &opts, &mut out)?;
            std::io::Write::flush(&mut out)?;
            f
        };
        for f in &failures {
            eprintln!("error: record {}: {}", f.record, f.error);
        }
        return Ok(if failures.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        });
    }
    let report = aorta_signal::beats::eval::score_beats(&a.db, &names, &opts);
    crate::eval_class_report::beats(&report, a.json)
}

fn rpeaks(a: RpeakArgs) -> anyhow::Result<ExitCode> {
    let names = record_list(&a.db, &a.records)?;
    // A database without reference beats is refused first; records that do
    // not load are reported by the scorer (its `errors`), not here.
    let readable: Vec<String> = names
        .iter()
        .filter(|n| aorta_signal::wfdb::read_header(a.db.join(n)).is_ok())
        .cloned()
        .collect();
    if !readable.is_empty() {
        check_beat_annotations(&a.db, &readable)?;
    }
    crate::eval_report::check_records(&a.db, &names, a.lead, Some(a.start))?;
    let opts = EvalOptions {
        window: a.window,
        start: a.start,
        lead: a.lead,
        read: crate::wfdb_cmd::read_options(a.no_verify),
        snr_db: a.snr,
        noise_seed: a.seed,
        fuse: a.fuse,
        gate: !a.no_gate,
    };
    let report = score_rpeaks(&a.db, &names, &opts);
    crate::eval_report::rpeaks(&report, a.json)
}

fn af(a: AfArgs) -> anyhow::Result<ExitCode> {
    let read = crate::wfdb_cmd::read_options(a.no_verify);
    if !a.db.join("REFERENCE.csv").is_file() {
        let names = record_list(&a.db, &a.records)?;
        crate::eval_report::check_records(&a.db, &names, 0, None)?;
    }
    let report = if a.through_worker {
        if a.db.join("REFERENCE.csv").is_file() {
            anyhow::bail!(
                "--through-worker scores annotated records (a database with .atr rhythm annotations), not REFERENCE.csv strips"
            );
        }
        aorta_signal::eval::score_af_records_from(&a.db, &a.records, a.segment, |name| {
            worker_events(&a.db, name, read)
        })?
    } else {
        score_af_with(&a.db, &a.records, a.segment, &RhythmConfig::default(), read)?
    };
    crate::eval_report::af(&report, a.json)
}

/// The rhythm events the worker's ECG operator emits over a record's first
/// lead, sent in 1-s frames (times in seconds from the record's start), with
/// the record's rate and duration.
fn worker_events(
    db: &std::path::Path,
    name: &str,
    read: aorta_signal::wfdb::ReadOptions,
) -> Result<aorta_signal::eval::RecordEvents, aorta_signal::wfdb::WfdbError> {
    use aorta_stream::ecg::{EcgChunk, EcgConfig, EcgOperator, EcgResult};
    use aorta_stream::{Engine, EngineConfig};
    let rec = aorta_signal::wfdb::Record::read_with(db.join(name), read)?;
    let fs = rec.fs();
    let signal = rec
        .physical(0)
        .ok_or_else(|| aorta_signal::wfdb::WfdbError::Signal {
            path: db.join(name),
            error: aorta_signal::wfdb::SignalError::Inconsistent("no signal 0".into()),
        })?;
    // Any fixed epoch: results carry wall-clock µs.
    const T0: i64 = 1_767_225_600_000_000;
    let op = EcgOperator::new(EcgConfig::default())
        .with_beat_model(aorta_signal::beats::model::held_out(name));
    let mut engine = Engine::<String, EcgOperator>::new(op, EngineConfig::default());
    let mut out = Vec::new();
    let mut events = Vec::new();
    let frame = (fs.round() as usize).max(1);
    let mut take = |out: &mut Vec<aorta_stream::Output<String, EcgResult>>| {
        for o in out.drain(..) {
            if let EcgResult::Rhythm(e) = o.value {
                events.push(aorta_signal::rhythm::RhythmEvent {
                    time_s: (o.start - T0) as f64 / 1e6,
                    kind: e.kind,
                });
            }
        }
    };
    for (i, c) in signal.chunks(frame).enumerate() {
        let t = T0 + ((i * frame) as f64 * 1e6 / fs).round() as i64;
        let chunk = EcgChunk {
            fs,
            samples: c.to_vec(),
            leads_uv: Vec::new(),
        };
        engine.push(name.to_string(), t, chunk.into(), &mut out);
        take(&mut out);
    }
    engine.finish(&mut out);
    take(&mut out);
    events.sort_by(|a, b| a.time_s.total_cmp(&b.time_s));
    Ok((events, fs, signal.len() as f64 / fs))
}
