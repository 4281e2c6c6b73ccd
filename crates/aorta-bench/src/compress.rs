//! `aorta bench compress --db DIR [--json]`.
//!
//! For each record: the raw size (every sample as a 16-bit little-endian
//! integer, channels interleaved — the bytes gzip and zstd see), and the
//! compressed size and compression speed (MB/s of raw bytes, one core) of:
//! `aorta` (the frame codec, applied to 10-second frames exactly as the
//! device seals them; every frame is decoded and checked to be lossless),
//! `gzip6` (flate2, pure-Rust backend, level 6, whole record), `zstd3`
//! (level 3, whole record) and `dedup_gzip` (the paper's scheme: 512-byte
//! chunks deduplicated, then gzip -6).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use aorta_signal::wfdb::{ReadOptions, Record};
use serde::Serialize;

/// What `aorta bench compress` measures (its flags).
#[derive(Debug, Clone)]
pub struct CompressConfig {
    /// WFDB database directory (with a RECORDS file, or any *.hea files).
    pub db: PathBuf,
    /// Seconds per aorta frame.
    pub frame_seconds: f64,
    /// What to verify when reading each record.
    pub read: ReadOptions,
}

/// What `aorta bench compress` measured (its `--json` output).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CompressReport {
    /// One row per record.
    pub records: Vec<RecordSizes>,
    /// All records together.
    pub total: CodecSizes,
    /// Records that could not be measured (the others are), in order.
    pub errors: Vec<RecordError>,
}

/// A record `aorta bench compress` could not measure.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RecordError {
    /// Record name.
    pub record: String,
    /// Why (the error and its causes).
    pub error: String,
}

/// The size target of aorta's ECG codec against gzip level 6 (issue 3).
pub const TARGET_RATIO_TO_GZIP: f64 = 0.60;

impl CompressReport {
    /// aorta's total size over gzip level 6's.
    pub fn ratio_to_gzip(&self) -> f64 {
        self.total.aorta.bytes as f64 / self.total.gzip6.bytes.max(1) as f64
    }
}

/// One record's sizes.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RecordSizes {
    /// Record name.
    pub record: String,
    /// Its sizes.
    #[serde(flatten)]
    pub sizes: CodecSizes,
}

/// Raw size and each codec's compressed size and speed.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CodecSizes {
    /// Every sample as a 16-bit integer, channels interleaved.
    pub raw_bytes: u64,
    /// aorta's frame codec.
    pub aorta: CodecFigures,
    /// gzip -6.
    pub gzip6: CodecFigures,
    /// zstd -3.
    pub zstd3: CodecFigures,
    /// The paper's 512-byte dedup, then gzip -6.
    pub dedup_gzip: CodecFigures,
}

impl CodecSizes {
    fn new(raw: u64, t: &[Tally; 4]) -> CodecSizes {
        let [a, g, z, d] = t.map(|t| t.figures(raw));
        CodecSizes {
            raw_bytes: raw,
            aorta: a,
            gzip6: g,
            zstd3: z,
            dedup_gzip: d,
        }
    }

    /// The codecs by name, in column order.
    pub fn codecs(&self) -> [(&'static str, &CodecFigures); 4] {
        [
            ("aorta", &self.aorta),
            ("gzip6", &self.gzip6),
            ("zstd3", &self.zstd3),
            ("dedup_gzip", &self.dedup_gzip),
        ]
    }
}

/// One codec on one input.
#[derive(Debug, Clone, Copy, Serialize)]
#[non_exhaustive]
pub struct CodecFigures {
    /// Compressed bytes.
    pub bytes: u64,
    /// Compression speed, 10^6 raw bytes per second (one decimal).
    pub mb_per_s: f64,
}

#[derive(Default, Clone, Copy)]
struct Tally {
    bytes: u64,
    secs: f64,
}

impl Tally {
    fn figures(&self, raw: u64) -> CodecFigures {
        CodecFigures {
            bytes: self.bytes,
            mb_per_s: mb_per_s(raw, self.secs),
        }
    }
    fn add(&mut self, o: Tally) {
        self.bytes += o.bytes;
        self.secs += o.secs;
    }
}

fn mb_per_s(raw: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        ((raw as f64 / 1e6 / secs) * 10.0).round() / 10.0
    } else {
        0.0
    }
}

fn record_names(db: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = aorta_signal::wfdb::database_records(db)
        .with_context(|| format!("reading the records of {}", db.display()))?;
    names.sort();
    if names.is_empty() {
        bail!("no records in {}", db.display());
    }
    Ok(names)
}

fn gzip6(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data)?;
    Ok(e.finish()?)
}

/// The paper's dedup+gzip: fixed 512-byte chunks, each distinct chunk kept
/// once, a u32 index per chunk, then gzip -6 over index and chunks.
fn dedup_gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut seen: HashMap<&[u8], u32> = HashMap::new();
    let mut unique = Vec::new();
    let mut index = Vec::new();
    for chunk in data.chunks(512) {
        let next = u32::try_from(seen.len())?;
        let id = *seen.entry(chunk).or_insert_with(|| {
            unique.extend_from_slice(chunk);
            next
        });
        index.extend_from_slice(&id.to_le_bytes());
    }
    let mut all = Vec::with_capacity(8 + index.len() + unique.len());
    all.extend_from_slice(&(index.len() as u64).to_le_bytes());
    all.extend_from_slice(&index);
    all.extend_from_slice(&unique);
    gzip6(&all)
}

fn timed<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, f64)> {
    let t = Instant::now();
    let v = f()?;
    Ok((v, t.elapsed().as_secs_f64()))
}

fn aorta_codec(rec: &Record, frame_seconds: f64) -> anyhow::Result<Tally> {
    let per = ((rec.fs() * frame_seconds).round() as usize).max(1);
    let mut total = Tally::default();
    for (start, chans) in rec.blocks(per) {
        let len = chans.first().map_or(0, |c| c.len());
        let (enc, secs) = timed(|| Ok(aorta_crypto::codec::encode(&chans)?))?;
        let dec = aorta_crypto::codec::decode(&enc, chans.len(), len)?;
        if dec.iter().zip(&chans).any(|(d, c)| d.as_slice() != *c) {
            bail!(
                "aorta codec is not lossless on samples {start}..{}",
                start + len
            );
        }
        total.add(Tally {
            bytes: enc.len() as u64,
            secs,
        });
    }
    Ok(total)
}

/// Measures every record of the database; a record that cannot be read or
/// measured (e.g. samples wider than 16 bits) is listed in
/// [`CompressReport::errors`] and the others are measured.
pub fn run(cfg: &CompressConfig) -> anyhow::Result<CompressReport> {
    if cfg.frame_seconds.is_nan() || cfg.frame_seconds <= 0.0 {
        bail!("--frame-seconds must be positive");
    }
    let names = record_names(&cfg.db)?;
    let mut records = Vec::new();
    let mut total_raw = 0u64;
    let mut totals = [Tally::default(); 4];
    let mut errors = Vec::new();
    for name in &names {
        let (raw_len, row) = match measure_record(&cfg.db, name, cfg.frame_seconds, cfg.read) {
            Ok(m) => m,
            Err(e) => {
                errors.push(RecordError {
                    record: name.clone(),
                    error: format!("{e:#}"),
                });
                continue;
            }
        };
        total_raw += raw_len;
        for (t, r) in totals.iter_mut().zip(row) {
            t.add(r);
        }
        records.push(RecordSizes {
            record: name.clone(),
            sizes: CodecSizes::new(raw_len, &row),
        });
    }
    Ok(CompressReport {
        records,
        total: CodecSizes::new(total_raw, &totals),
        errors,
    })
}

/// One record: its raw size and each codec's tally.
fn measure_record(
    db: &Path,
    name: &str,
    frame_seconds: f64,
    read: ReadOptions,
) -> anyhow::Result<(u64, [Tally; 4])> {
    let rec = Record::read_with(db.join(name), read)?;
    let n = rec.samples.first().map_or(0, Vec::len);
    let mut raw = Vec::with_capacity(n * rec.samples.len() * 2);
    for t in 0..n {
        for s in &rec.samples {
            let v = s.get(t).copied().unwrap_or(0);
            let Ok(v) = i16::try_from(v) else {
                bail!("sample {v} does not fit 16 bits (raw size is 16-bit samples)");
            };
            raw.extend_from_slice(&v.to_le_bytes());
        }
    }
    let raw_len = raw.len() as u64;
    let t_aorta = aorta_codec(&rec, frame_seconds)?;
    let (g, gs) = timed(|| gzip6(&raw))?;
    let (z, zs) = timed(|| Ok(zstd::bulk::compress(&raw, 3)?))?;
    let (d, ds) = timed(|| dedup_gzip(&raw))?;
    let row = [
        t_aorta,
        Tally {
            bytes: g.len() as u64,
            secs: gs,
        },
        Tally {
            bytes: z.len() as u64,
            secs: zs,
        },
        Tally {
            bytes: d.len() as u64,
            secs: ds,
        },
    ];
    Ok((raw_len, row))
}
