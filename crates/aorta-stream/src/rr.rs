//! The RR-interval job: chest straps and PPG wearables send RR intervals
//! rather than raw ECG, so they enter the engine at the RR stage.
//!
//! Per patient and tumbling 5-minute event-time window ([`RrWindowAgg`]):
//! count, mean RR, SDNN (ddof 1), RMSSD (successive intervals within the
//! window), and LF, HF, LF/HF from Welch's method on the RR series resampled
//! at 4 Hz exactly as NeuroKit2 does (`aorta_signal::hrv`).
//!
//! Input files (`patient_id` int32, `event_time` µs since the epoch UTC,
//! `rr_ms` float64; each file in event-time order, files in order) are
//! Parquet (`.parquet`, schema in [`crate::rr_parquet`]) or CSV (`.csv`, with
//! that header line and `event_time` as an integer); [`RrFormat`] picks the
//! reader from the extension. [`run`] parses them on up to `threads` parser
//! threads and processes on `threads` workers, each owning the keyed
//! state of the patients hashed to it (`patient_id mod threads`); batches
//! travel over bounded channels, so a slow worker holds the reader back
//! instead of letting memory grow.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use aorta_signal::hrv::{HrvEngine, NnSeries, SpectralMethod};
use serde::{Deserialize, Serialize};

use crate::window::{Aggregator, WindowAggregate, WindowSpec};
use crate::{Engine, EngineConfig, EngineStats, Micros, Output, StreamError};

/// Five minutes in µs: the Task Force short-term window.
pub const FIVE_MINUTES: Micros = 300_000_000;

/// The file formats of RR events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RrFormat {
    /// Apache Parquet (`.parquet`).
    Parquet,
    /// CSV with a `patient_id,event_time,rr_ms` header (`.csv`).
    Csv,
}

impl RrFormat {
    /// The file extension (without the dot).
    pub fn extension(self) -> &'static str {
        match self {
            RrFormat::Parquet => "parquet",
            RrFormat::Csv => "csv",
        }
    }

    /// The format of a file, from its extension.
    pub fn of_path(path: &Path) -> Option<RrFormat> {
        match path.extension()?.to_str()? {
            "parquet" => Some(RrFormat::Parquet),
            "csv" => Some(RrFormat::Csv),
            _ => None,
        }
    }
}

/// Reusable read buffers for [`read_rr_file_with`].
#[derive(Debug, Default)]
pub struct ReadBufs {
    csv: Vec<u8>,
    parquet: crate::rr_parquet::ParquetBufs,
    events: Vec<RrEvent>,
}

/// Reads a whole RR file, Parquet or CSV by its extension.
pub fn read_rr_file(path: &Path) -> Result<Vec<RrEvent>, StreamError> {
    let mut bufs = ReadBufs::default();
    read_rr_file_with(path, &mut bufs)?;
    Ok(std::mem::take(&mut bufs.events))
}

/// [`read_rr_file`] through reusable buffers; the events stay in `bufs`.
pub fn read_rr_file_with<'b>(
    path: &Path,
    bufs: &'b mut ReadBufs,
) -> Result<&'b [RrEvent], StreamError> {
    match RrFormat::of_path(path) {
        Some(RrFormat::Parquet) => {
            crate::rr_parquet::read_parquet_file_with(path, &mut bufs.parquet, &mut bufs.events)?;
        }
        Some(RrFormat::Csv) => bufs.events = read_csv_file_with(path, &mut bufs.csv)?,
        None => {
            return Err(StreamError::Config(format!(
                "{}: not an RR file (expected .parquet or .csv)",
                path.display()
            )));
        }
    }
    Ok(&bufs.events)
}

/// One RR interval event.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RrEvent {
    /// Patient.
    pub patient_id: i32,
    /// Time of the beat closing the interval, µs since the epoch (UTC).
    pub event_time: Micros,
    /// The interval, ms.
    pub rr_ms: f64,
}

/// Results of one window. Spectral values are NaN (JSON `null`) when the
/// window is too short for them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RrWindowStats {
    /// Intervals in the window.
    pub count: u64,
    /// Mean RR, ms.
    pub mean_rr: f64,
    /// SD of RR, ddof 1, ms.
    pub sdnn: f64,
    /// RMS of successive differences, ms.
    pub rmssd: f64,
    /// LF power 0.04–0.15 Hz, ms².
    pub lf: f64,
    /// HF power 0.15–0.4 Hz, ms².
    pub hf: f64,
    /// LF / HF.
    pub lf_hf: f64,
}

/// Computes the window statistics of `(event_time, rr_ms)` pairs in time order.
pub fn window_stats(events: &[(Micros, f64)], hrv: &mut HrvEngine) -> RrWindowStats {
    let n = events.len();
    let nan = f64::NAN;
    if n == 0 {
        return RrWindowStats {
            count: 0,
            mean_rr: nan,
            sdnn: nan,
            rmssd: nan,
            lf: nan,
            hf: nan,
            lf_hf: nan,
        };
    }
    let mean = events.iter().map(|e| e.1).sum::<f64>() / n as f64;
    let sdnn = if n > 1 {
        (events.iter().map(|e| (e.1 - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
    } else {
        nan
    };
    let rmssd = if n > 1 {
        let s: f64 = events
            .iter()
            .zip(events.iter().skip(1))
            .map(|(a, b)| (b.1 - a.1).powi(2))
            .sum();
        (s / (n - 1) as f64).sqrt()
    } else {
        nan
    };
    let t0 = events.first().map_or(0, |e| e.0);
    let nn: Vec<f64> = events.iter().map(|e| e.1).collect();
    let t: Vec<f64> = events.iter().map(|e| (e.0 - t0) as f64 / 1e6).collect();
    let (lf, hf, lf_hf) = NnSeries::new(nn, t)
        .and_then(|s| hrv.frequency_domain(&s, SpectralMethod::Welch))
        .map_or((nan, nan, nan), |f| (f.lf, f.hf, f.lf_hf));
    RrWindowStats {
        count: n as u64,
        mean_rr: mean,
        sdnn,
        rmssd,
        lf,
        hf,
        lf_hf,
    }
}

/// The windowed RR aggregator (one per worker: it reuses HRV buffers).
#[derive(Debug, Default)]
pub struct RrWindowAgg {
    hrv: RefCell<HrvEngine>,
}

impl Aggregator for RrWindowAgg {
    type In = f64;
    type Acc = Vec<(Micros, f64)>;
    type Out = RrWindowStats;

    #[inline]
    fn add(&self, acc: &mut Self::Acc, t: Micros, rr: &f64) {
        if acc.capacity() == 0 {
            // A 5-minute window holds a few hundred intervals: skip the regrowths.
            acc.reserve(512);
        }
        acc.push((t, *rr));
    }

    fn finish(&self, mut acc: Self::Acc, _start: Micros, _end: Micros) -> Option<RrWindowStats> {
        // Out-of-order arrivals within the bound are put back in time order.
        if acc
            .windows(2)
            .any(|w| w.first().map(|a| a.0) > w.get(1).map(|b| b.0))
        {
            acc.sort_by_key(|e| e.0);
        }
        Some(window_stats(&acc, &mut self.hrv.borrow_mut()))
    }
}

/// A window result of the RR job.
pub type RrOutput = Output<i32, RrWindowStats>;

/// What a run of the job measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RrRun {
    /// Events read.
    pub events: u64,
    /// Windows emitted.
    pub windows: u64,
    /// Wall-clock seconds (read, parse, process, flush).
    pub seconds: f64,
    /// Events per second.
    pub events_per_s: f64,
    /// Engine counters summed over workers.
    #[serde(skip)]
    pub stats: EngineStats,
}

/// Errors reading RR files.
fn bad(path: &Path, line: usize, what: &str) -> StreamError {
    StreamError::Corrupt {
        path: path.to_path_buf(),
        offset: line as u64,
        what: format!("line {line}: {what}"),
    }
}

/// Parses a float. Plain decimals with at most 15 significant digits take
/// an exact fast path: mantissa and power of ten are both exact in f64, so
/// one IEEE division gives the correctly rounded value, bit-identical to
/// `str::parse` (Clinger's fast path). Anything else goes to `str::parse`.
fn parse_decimal(field: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (neg, body) = match field.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, field),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut frac: Option<usize> = None;
    let mut simple = !body.is_empty();
    for &c in body {
        match c {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(c - b'0');
                digits += 1;
                if let Some(f) = frac.as_mut() {
                    *f += 1;
                }
                if digits > 15 {
                    simple = false;
                    break;
                }
            }
            b'.' if frac.is_none() => frac = Some(0),
            _ => {
                simple = false;
                break;
            }
        }
    }
    if simple && digits > 0 {
        let v = mantissa as f64 / POW10.get(frac.unwrap_or(0)).copied()?;
        return Some(if neg { -v } else { v });
    }
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// Parses digits (with an optional leading `-`) from `pos` up to the byte
/// `delim`, in one pass; returns the value and the position after `delim`.
#[inline]
fn int_until(b: &[u8], mut pos: usize, delim: u8) -> Option<(i64, usize)> {
    let neg = b.get(pos) == Some(&b'-');
    if neg {
        pos += 1;
    }
    let start = pos;
    let mut v: i64 = 0;
    loop {
        let c = *b.get(pos)?;
        if c == delim {
            break;
        }
        let d = c.wrapping_sub(b'0');
        if d > 9 || pos - start >= 18 {
            return None;
        }
        v = v * 10 + i64::from(d);
        pos += 1;
    }
    if pos == start {
        return None;
    }
    Some((if neg { -v } else { v }, pos + 1))
}

/// Parses the record starting at `pos` in one pass over its bytes; an empty
/// line gives `None`. Returns the position after the line's `\n` (or the end).
#[inline]
fn parse_record(b: &[u8], pos: usize) -> Option<(Option<RrEvent>, usize)> {
    let end = memchr::memchr(b'\n', b.get(pos..)?).map_or(b.len(), |i| pos + i);
    let line = b.get(pos..end)?;
    let next = end + 1;
    if line.is_empty() || line == b"\r" {
        return Some((None, next));
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let (patient_id, p) = int_until(line, 0, b',')?;
    let (event_time, p) = int_until(line, p, b',')?;
    let rr_ms = parse_decimal(line.get(p..)?)?;
    if !rr_ms.is_finite() {
        return None;
    }
    Some((
        Some(RrEvent {
            patient_id: i32::try_from(patient_id).ok()?,
            event_time,
            rr_ms,
        }),
        next,
    ))
}

/// Reads a whole CSV RR file.
pub fn read_csv_file(path: &Path) -> Result<Vec<RrEvent>, StreamError> {
    read_csv_file_with(path, &mut Vec::new())
}

/// [`read_csv_file`] reading through `buf`, which keeps its capacity from
/// one file to the next (no fresh pages to fault in for every file).
pub fn read_csv_file_with(path: &Path, buf: &mut Vec<u8>) -> Result<Vec<RrEvent>, StreamError> {
    use std::io::Read;
    buf.clear();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(buf))
        .map_err(|error| StreamError::Io {
            path: path.to_path_buf(),
            error,
        })?;
    let bytes: &[u8] = buf;
    let mut lines = bytes.split(|&b| b == b'\n');
    let header = lines.next().unwrap_or_default();
    if header.strip_suffix(b"\r").unwrap_or(header) != b"patient_id,event_time,rr_ms" {
        return Err(bad(
            path,
            1,
            "expected the header `patient_id,event_time,rr_ms`",
        ));
    }
    let body_start = header.len() + 1;
    let body = bytes.get(body_start..).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() / 32);
    let mut pos = 0usize;
    let mut lno = 2usize;
    while pos < body.len() {
        let (ev, next) = parse_record(body, pos)
            .ok_or_else(|| bad(path, lno, "expected `int32,int64 µs,finite float`"))?;
        if let Some(ev) = ev {
            out.push(ev);
        }
        pos = next;
        lno += 1;
    }
    Ok(out)
}

/// Reads a CSV RR file, calling `f` with batches of events.
pub fn read_csv(
    path: &Path,
    batch: usize,
    mut f: impl FnMut(Vec<RrEvent>),
) -> Result<u64, StreamError> {
    let events = read_csv_file(path)?;
    let n = events.len() as u64;
    for chunk in events.chunks(batch.max(1)) {
        f(chunk.to_vec());
    }
    Ok(n)
}

/// Runs the job over `files` on `threads` workers; returns the windows
/// (sorted by patient, then window start) and the measurements.
pub fn run(
    files: &[PathBuf],
    threads: usize,
    window: Micros,
) -> Result<(Vec<RrOutput>, RrRun), StreamError> {
    let threads = threads.max(1);
    let spec = WindowSpec::tumbling(window)?;
    let start = std::time::Instant::now();
    let (outputs, stats, events) = std::thread::scope(|s| -> Result<_, StreamError> {
        let mut senders = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (tx, rx) = sync_channel::<Vec<RrEvent>>(2);
            senders.push(tx);
            handles.push(s.spawn(move || {
                let mut engine = Engine::new(
                    WindowAggregate::new(RrWindowAgg::default(), spec),
                    EngineConfig::default(),
                );
                let mut out = Vec::new();
                for batch in rx {
                    for ev in batch {
                        engine.push(ev.patient_id, ev.event_time, ev.rr_ms, &mut out);
                    }
                }
                engine.finish(&mut out);
                (out, engine.stats())
            }));
        }
        // Parsers take files round-robin; each hands its file's events to
        // the workers only after the previous file's, so every worker sees
        // its keys in file (event-time) order. Bounded channels and at most
        // one parsed file per parser in flight bound memory.
        let parsers = threads.clamp(1, files.len().max(1));
        let turn = std::sync::Mutex::new(0usize);
        let turn_cv = std::sync::Condvar::new();
        let failed = std::sync::atomic::AtomicBool::new(false);
        let parsed: Result<Vec<u64>, StreamError> = std::thread::scope(|ps| {
            let handles: Vec<_> = (0..parsers)
                .map(|p| {
                    let (senders, turn, turn_cv, failed) = (&senders, &turn, &turn_cv, &failed);
                    ps.spawn(move || -> Result<u64, StreamError> {
                        let mut n = 0u64;
                        let mut bufs = ReadBufs::default();
                        for (k, path) in files.iter().enumerate().skip(p).step_by(parsers) {
                            let parsed = read_rr_file_with(path, &mut bufs).map(<[_]>::len);
                            let mut parts: Vec<Vec<RrEvent>> =
                                (0..threads).map(|_| Vec::new()).collect();
                            if parsed.is_ok() {
                                for ev in &bufs.events {
                                    if let Some(part) = parts
                                        .get_mut(ev.patient_id.unsigned_abs() as usize % threads)
                                    {
                                        part.push(*ev);
                                    }
                                }
                            }
                            let mut t = turn.lock().map_err(|_| {
                                StreamError::Internal("parser lock poisoned".into())
                            })?;
                            while *t != k && !failed.load(std::sync::atomic::Ordering::SeqCst) {
                                t = turn_cv.wait(t).map_err(|_| {
                                    StreamError::Internal("parser lock poisoned".into())
                                })?;
                            }
                            let result = match parsed {
                                Ok(len) if !failed.load(std::sync::atomic::Ordering::SeqCst) => {
                                    n += len as u64;
                                    for (part, tx) in parts.into_iter().zip(senders) {
                                        // A worker that died drops its receiver; its panic surfaces at join.
                                        let _ = tx.send(part);
                                    }
                                    Ok(())
                                }
                                Ok(_) => Ok(()),
                                Err(e) => {
                                    failed.store(true, std::sync::atomic::Ordering::SeqCst);
                                    Err(e)
                                }
                            };
                            *t += 1;
                            turn_cv.notify_all();
                            drop(t);
                            result?;
                        }
                        Ok(n)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .map_err(|_| StreamError::Internal("a parser thread panicked".into()))?
                })
                .collect()
        });
        let events: u64 = match parsed {
            Ok(v) => v.iter().sum(),
            Err(e) => {
                drop(senders);
                for h in handles {
                    let _ = h.join();
                }
                return Err(e);
            }
        };
        drop(senders);
        let mut outputs = Vec::new();
        let mut stats = EngineStats::default();
        for h in handles {
            let (out, st) = h
                .join()
                .map_err(|_| StreamError::Internal("a worker thread panicked".into()))?;
            outputs.extend(out);
            stats.events += st.events;
            stats.late_dropped += st.late_dropped;
            stats.outputs += st.outputs;
        }
        Ok((outputs, stats, events))
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let mut outputs = outputs;
    outputs.sort_by_key(|o| (o.key, o.start));
    let run = RrRun {
        events,
        windows: outputs.len() as u64,
        seconds,
        events_per_s: events as f64 / seconds.max(1e-9),
        stats,
    };
    Ok((outputs, run))
}

/// The straightforward reference: read everything, group by (patient,
/// window), sort each group by time, compute. No engine involved.
pub fn reference(files: &[PathBuf], window: Micros) -> Result<Vec<RrOutput>, StreamError> {
    let mut groups: BTreeMap<(i32, Micros), Vec<(Micros, f64)>> = BTreeMap::new();
    for path in files {
        for ev in read_rr_file(path)? {
            let start = ev.event_time.div_euclid(window) * window;
            groups
                .entry((ev.patient_id, start))
                .or_default()
                .push((ev.event_time, ev.rr_ms));
        }
    }
    let mut hrv = HrvEngine::new();
    Ok(groups
        .into_iter()
        .map(|((key, start), mut evs)| {
            evs.sort_by_key(|e| e.0);
            Output {
                key,
                start,
                end: start + window,
                value: window_stats(&evs, &mut hrv),
            }
        })
        .collect())
}

/// Largest relative difference between two result sets (NaN equals NaN);
/// `None` if they do not hold the same windows.
pub fn max_relative_difference(a: &[RrOutput], b: &[RrOutput]) -> Option<f64> {
    if a.len() != b.len() {
        return None;
    }
    let mut worst = 0.0f64;
    for (x, y) in a.iter().zip(b) {
        if (x.key, x.start, x.end, x.value.count) != (y.key, y.start, y.end, y.value.count) {
            return None;
        }
        let (u, v) = (&x.value, &y.value);
        for (p, q) in [
            (u.mean_rr, v.mean_rr),
            (u.sdnn, v.sdnn),
            (u.rmssd, v.rmssd),
            (u.lf, v.lf),
            (u.hf, v.hf),
            (u.lf_hf, v.lf_hf),
        ] {
            if p.is_nan() && q.is_nan() {
                continue;
            }
            if p.is_nan() != q.is_nan() {
                return None;
            }
            let d = (p - q).abs() / p.abs().max(q.abs()).max(f64::MIN_POSITIVE);
            worst = worst.max(d);
        }
    }
    Some(worst)
}

/// Writes RR files for `patients` simulated patients from a WFDB database's
/// reference beat annotations: patient `p` replays record `p mod R` from an
/// offset in `[0, 300)` s drawn from a seeded generator. Events are merged
/// in event-time order and cut into files of at most `per_file` events,
/// `rr-NNNN.parquet` or `rr-NNNN.csv`. RR values are rounded to the
/// microsecond, as devices report them, so both formats hold the same
/// doubles.
pub fn generate(
    db: &Path,
    patients: u32,
    seed: u64,
    out_dir: &Path,
    per_file: usize,
    format: RrFormat,
) -> Result<Vec<PathBuf>, StreamError> {
    use aorta_signal::wfdb::{read_annotations, read_header};
    let names = aorta_signal::wfdb::database_records(db).map_err(|error| StreamError::Io {
        path: db.join("RECORDS"),
        error,
    })?;
    if names.is_empty() {
        return Err(StreamError::Config(format!(
            "{}: RECORDS lists no record",
            db.display()
        )));
    }
    // Beat times (s) per record.
    let mut beats: Vec<Vec<f64>> = Vec::with_capacity(names.len());
    for name in &names {
        let wf = |e: aorta_signal::wfdb::WfdbError| StreamError::Store(Box::new(e));
        let fs = read_header(db.join(name)).map_err(wf)?.sampling_frequency;
        let anns = read_annotations(db.join(format!("{name}.atr"))).map_err(wf)?;
        beats.push(
            anns.iter()
                .filter(|a| a.is_beat())
                .map(|a| a.sample as f64 / fs)
                .collect(),
        );
    }
    const EPOCH_2026: Micros = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        // SplitMix64: a deterministic spread of offsets, not a secret.
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut events: Vec<RrEvent> = Vec::new();
    for p in 0..patients {
        let Some(b) = beats.get(p as usize % beats.len()) else {
            continue;
        };
        let offset = (next() >> 11) as f64 / (1u64 << 53) as f64 * 300.0;
        for (a, c) in b.iter().zip(b.iter().skip(1)) {
            if *a < offset {
                continue;
            }
            let t = EPOCH_2026 + ((c - offset) * 1e6).round() as Micros;
            events.push(RrEvent {
                patient_id: p as i32,
                event_time: t,
                // k / 1000 with k an integer: the double nearest to the
                // decimal `{:.3}` prints, so CSV and Parquet agree bit for bit.
                rr_ms: ((c - a) * 1e6).round() / 1000.0,
            });
        }
    }
    events.sort_by_key(|e| (e.event_time, e.patient_id));
    std::fs::create_dir_all(out_dir).map_err(|error| StreamError::Io {
        path: out_dir.to_path_buf(),
        error,
    })?;
    let mut files = Vec::new();
    for (i, chunk) in events.chunks(per_file.max(1)).enumerate() {
        let path = out_dir.join(format!("rr-{i:04}.{}", format.extension()));
        if format == RrFormat::Parquet {
            crate::rr_parquet::write_parquet_file(&path, chunk)?;
            files.push(path);
            continue;
        }
        let io = |error| StreamError::Io {
            path: path.clone(),
            error,
        };
        let mut w =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&path).map_err(io)?);
        writeln!(w, "patient_id,event_time,rr_ms").map_err(io)?;
        for e in chunk {
            writeln!(w, "{},{},{:.3}", e.patient_id, e.event_time, e.rr_ms).map_err(io)?;
        }
        w.flush().map_err(io)?;
        files.push(path);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn engine_equals_reference_on_synthetic_stream() {
        let dir = std::env::temp_dir().join(format!("aorta-rr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut body = String::from("patient_id,event_time,rr_ms\n");
        let mut t = [0i64; 5];
        for i in 0..20_000u64 {
            let p = (i * 7 % 5) as usize;
            let rr = 700.0 + 150.0 * ((i as f64) * 0.37).sin() + (i % 13) as f64;
            t[p] += (rr * 1000.0) as i64;
            body.push_str(&format!("{p},{},{rr}\n", t[p]));
        }
        let f = write(&dir, "a.csv", &body);
        let (out, run) = run(std::slice::from_ref(&f), 2, FIVE_MINUTES).unwrap();
        let reference = reference(std::slice::from_ref(&f), FIVE_MINUTES).unwrap();
        assert_eq!(run.events, 20_000);
        assert!(out.len() > 20);
        assert_eq!(max_relative_difference(&out, &reference), Some(0.0));
        assert!(out.iter().all(|o| o.value.lf > 0.0 && o.value.hf > 0.0));
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest::proptest! {
        #[test]
        fn hostile_csv_bodies_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            for (pos, _) in body.iter().enumerate() {
                let _ = parse_record(&body, pos);
            }
            let mut line = b"patient_id,event_time,rr_ms\n".to_vec();
            line.extend_from_slice(&body);
            let p = std::env::temp_dir().join(format!("aorta-rr-prop-{}.csv", std::process::id()));
            std::fs::write(&p, &line).unwrap();
            let _ = read_csv_file(&p);
            let _ = std::fs::remove_file(&p);
        }
    }

    #[test]
    fn decimal_fast_path_is_bit_identical_to_std() {
        for s in [
            "813.889",
            "0.001",
            "-2.5",
            "1000",
            "123456789012345",
            "0.000000000000001",
            "7.",
            ".5",
            "1e3",
            "1234567890123456.7",
            "NaN",
            "inf",
            "",
            "-",
            "1.2.3",
            "+4",
        ] {
            let ours = parse_decimal(s.as_bytes());
            let std = s.parse::<f64>().ok();
            assert_eq!(ours.map(f64::to_bits), std.map(f64::to_bits), "{s:?}");
        }
        let mut x = 0x1234_5678_9abc_def0_u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = (x % 10_000_000) as f64 / 1000.0;
            let s = format!("{v:.3}");
            assert_eq!(
                parse_decimal(s.as_bytes()).map(f64::to_bits),
                s.parse::<f64>().ok().map(f64::to_bits),
                "{s}"
            );
        }
    }

    /// The generator writes the same events in both formats, and the job
    /// gives bit-identical windows from either (and equals the reference).
    #[test]
    fn parquet_and_csv_inputs_agree() {
        let db = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/data/mitdb"
        ));
        if !db.join("RECORDS").exists() {
            eprintln!(
                "SKIPPED parquet_and_csv_inputs_agree: {} absent",
                db.display()
            );
            return;
        }
        let dir = std::env::temp_dir().join(format!("aorta-rr-fmt-{}", std::process::id()));
        let pq = generate(db, 6, 7, &dir.join("pq"), 5000, RrFormat::Parquet).unwrap();
        let csv = generate(db, 6, 7, &dir.join("csv"), 5000, RrFormat::Csv).unwrap();
        assert!(pq.len() > 1 && pq.len() == csv.len());
        for (a, b) in pq.iter().zip(&csv) {
            assert_eq!(read_rr_file(a).unwrap(), read_rr_file(b).unwrap());
        }
        let (out_pq, run_pq) = run(&pq, 2, FIVE_MINUTES).unwrap();
        let (out_csv, run_csv) = run(&csv, 2, FIVE_MINUTES).unwrap();
        assert_eq!(run_pq.events, run_csv.events);
        assert_eq!(max_relative_difference(&out_pq, &out_csv), Some(0.0));
        let reference = reference(&pq, FIVE_MINUTES).unwrap();
        assert_eq!(max_relative_difference(&out_pq, &reference), Some(0.0));
        // A broken Parquet file among good ones stops the run with a typed error.
        let broken = dir.join("pq").join("rr-0001.parquet");
        let bytes = std::fs::read(&broken).unwrap();
        std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
        match run(&pq, 2, FIVE_MINUTES) {
            Err(StreamError::Corrupt { path, .. }) => assert_eq!(path, broken),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn malformed_files_are_typed_errors() {
        let dir = std::env::temp_dir().join(format!("aorta-rr-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, body) in [
            ("nohdr.csv", "1,2,3\n"),
            ("text.csv", "patient_id,event_time,rr_ms\n1,2,abc\n"),
            ("nan.csv", "patient_id,event_time,rr_ms\n1,2,NaN\n"),
            ("short.csv", "patient_id,event_time,rr_ms\n1,2\n"),
            ("big.csv", "patient_id,event_time,rr_ms\n99999999999,2,3\n"),
        ] {
            let f = write(&dir, name, body);
            assert!(
                matches!(run(&[f], 2, FIVE_MINUTES), Err(StreamError::Corrupt { .. })),
                "{name}"
            );
        }
        assert!(run(&[dir.join("missing.csv")], 1, FIVE_MINUTES).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
