//! WFDB record I/O: headers, signal files and MIT-format annotations.
//!
//! ```no_run
//! use aorta_signal::wfdb::{Record, read_annotations};
//! let rec = Record::read("../shared/data/mitdb/100")?;
//! let mlii = rec.physical(0).unwrap_or_default(); // millivolts
//! let atr = read_annotations("../shared/data/mitdb/100.atr")?;
//! let beats = atr.iter().filter(|a| a.is_beat()).count();
//! # Ok::<(), aorta_signal::wfdb::WfdbError>(())
//! ```
//!
//! Every failure is a [`WfdbError`] that names the file and what is wrong with
//! it. The header's checksums and initial values are verified by default
//! ([`ReadOptions`] can relax this for datasets known to carry placeholder
//! values, such as the PhysioNet/CinC 2017 challenge headers).
//! [`record_info`] summarises a record (header, sample and beat counts).

mod annotation;
mod export;
mod header;
mod info;
mod signal;

use std::path::{Path, PathBuf};

pub use annotation::{
    Annotation, RHYTHM, encode_annotations, is_beat_code, parse_annotations, symbol,
};
pub use export::{Separator, write_annotations, write_samples};
pub use header::{Format, Header, MAX_SIGNALS, SignalSpec, parse_header};
pub use info::{RecordInfo, describe, record_info, wfdb_time};
pub use signal::{bytes_needed, checksum, decode, decode_into, encode, samples_in};

/// What is wrong with a header.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// No record line.
    #[error("no record line (empty header)")]
    Empty,
    /// A required field is missing.
    #[error("line {line}: missing {field}")]
    MissingField {
        /// 1-based line number.
        line: usize,
        /// Which field.
        field: &'static str,
    },
    /// A field does not parse or is out of range.
    #[error("line {line}: bad {field} {value:?}")]
    BadField {
        /// 1-based line number.
        line: usize,
        /// Which field.
        field: &'static str,
        /// The offending text (at most 64 characters).
        value: String,
    },
    /// Fewer signal lines than the record line declares.
    #[error("record line declares {declared} signals but only {found} signal lines follow")]
    MissingSignalLines {
        /// Declared count.
        declared: usize,
        /// Lines found.
        found: usize,
    },
    /// More non-comment lines than the record line declares.
    #[error("line {line}: unexpected line after the {declared} declared signal lines")]
    TrailingLine {
        /// 1-based line number.
        line: usize,
        /// Declared count.
        declared: usize,
    },
    /// A signal format aorta does not read.
    #[error(
        "line {line}: unsupported signal format {format} (supported: 16, 24, 32, 61, 80, 212, 310, 311)"
    )]
    UnsupportedFormat {
        /// 1-based line number.
        line: usize,
        /// The format code.
        format: u32,
    },
    /// A valid WFDB feature aorta does not read.
    #[error("line {line}: {what} are not supported")]
    Unsupported {
        /// 1-based line number.
        line: usize,
        /// What.
        what: &'static str,
    },
}

/// What is wrong with signal data.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// The file ends before the samples the header declares.
    #[error("truncated: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        available: u64,
    },
    /// The declared size overflows.
    #[error("declared signal size is too large")]
    TooLarge,
    /// A value does not fit the format (encoding).
    #[error("sample {index} = {value} does not fit format {format}")]
    OutOfRange {
        /// Sample index.
        index: usize,
        /// Value.
        value: i32,
        /// Format code.
        format: u32,
    },
    /// The header's checksum disagrees with the data.
    #[error(
        "signal {signal} ({description}): checksum mismatch: header says {expected}, data sums to {actual} (the header or the signal file is damaged; --no-verify reads the record without this check)"
    )]
    Checksum {
        /// Signal index.
        signal: usize,
        /// Signal description.
        description: String,
        /// Header value.
        expected: i16,
        /// Computed value.
        actual: i16,
    },
    /// The header's initial value disagrees with the first sample.
    #[error(
        "signal {signal} ({description}): initial value mismatch: header says {expected}, first sample is {actual} (the header or the signal file is damaged; --no-verify reads the record without this check)"
    )]
    InitialValue {
        /// Signal index.
        signal: usize,
        /// Signal description.
        description: String,
        /// Header value.
        expected: i32,
        /// First sample.
        actual: i32,
    },
    /// Signals sharing one file disagree on format or offset.
    #[error("signals sharing one file must share format and byte offset: {0}")]
    Inconsistent(String),
}

/// What is wrong with an annotation file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AnnotationError {
    /// The file ends inside a word, a SKIP or an AUX string.
    #[error("truncated at byte {offset}")]
    Truncated {
        /// Byte offset.
        offset: u64,
    },
    /// A NUM/SUB/CHN/AUX word before any annotation.
    #[error("byte {offset}: modifier before any annotation")]
    ModifierWithoutAnnotation {
        /// Byte offset.
        offset: u64,
    },
    /// A reserved annotation code (50–58).
    #[error("byte {offset}: reserved annotation code {code}")]
    UnknownCode {
        /// Byte offset.
        offset: u64,
        /// The code.
        code: u16,
    },
    /// Time goes negative or overflows.
    #[error("byte {offset}: annotation time out of range")]
    BadTime {
        /// Byte offset (or index when encoding).
        offset: u64,
    },
    /// Aux string longer than 1023 bytes (encoding).
    #[error("annotation {offset}: aux string longer than 1023 bytes")]
    AuxTooLong {
        /// Annotation index.
        offset: u64,
    },
}

/// An error reading a WFDB file, naming the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WfdbError {
    /// The file could not be read.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The header is malformed.
    #[error("{}: {error}", path.display())]
    Header {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: HeaderError,
    },
    /// A signal file is malformed or disagrees with its header.
    #[error("{}: {error}", path.display())]
    Signal {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: SignalError,
    },
    /// A directory was given where a record was expected.
    #[error(
        "{} is a directory, not a record: give a record in it (e.g. {}){}",
        path.display(),
        path.join(example.as_deref().unwrap_or("NAME")).display(),
        if example.is_some() { "; commands that read a whole database take --db DIR" } else { "" }
    )]
    IsDirectory {
        /// The directory.
        path: PathBuf,
        /// A record in it, if it holds any.
        example: Option<String>,
    },
    /// No header file for the record given.
    #[error(
        "no WFDB record {}: {} not found (give a record as DIR/NAME, DIR/NAME.hea or DIR/NAME.dat)",
        given.display(),
        header.display()
    )]
    NoHeader {
        /// What was given.
        given: PathBuf,
        /// The header looked for.
        header: PathBuf,
    },
    /// An annotation file is malformed.
    #[error("{}: {error}", path.display())]
    Annotation {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: AnnotationError,
    },
}

/// Which header values to check against the data. A checksum field of 0 is
/// "not recorded" and never checked (PhysioNet/CinC 2017 headers write 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Verify each signal's checksum (default true).
    pub verify_checksum: bool,
    /// Verify each signal's initial value (default true).
    pub verify_initial_value: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            verify_checksum: true,
            verify_initial_value: true,
        }
    }
}

impl ReadOptions {
    /// Reads without verifying checksums or initial values: for datasets whose
    /// headers carry placeholders (PhysioNet/CinC 2017 writes checksum 0).
    pub fn unverified() -> Self {
        ReadOptions {
            verify_checksum: false,
            verify_initial_value: false,
        }
    }
}

/// Largest signal file aorta reads into memory (4 GiB).
pub const MAX_SIGNAL_FILE: u64 = 4 << 30;

/// A WFDB record: its header and its digital samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The parsed header.
    pub header: Header,
    /// Digital samples per signal (`frames × samples_per_frame` each).
    pub samples: Vec<Vec<i32>>,
}

/// Where a record's files are, resolved from what a user typed by the one
/// record-name rule every reader follows ([`RecordPath::resolve`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordPath {
    /// The header file (`DIR/NAME.hea`).
    pub header: PathBuf,
    /// The directory of the header; signal files are relative to it.
    pub dir: PathBuf,
    /// The record name (the header's file name without `.hea`).
    pub name: String,
}

impl RecordPath {
    /// Resolves a record given as `DIR/NAME`, `DIR/NAME.hea`, or any of its
    /// files (`DIR/NAME.dat`, `DIR/NAME.atr`, `DIR/NAME.mat`, …):
    ///
    /// 1. a path ending in `.hea` is the header;
    /// 2. else `PATH.hea`, when it exists (record names may hold dots);
    /// 3. else, when `PATH` has an extension and `PATH` with it replaced by
    ///    `.hea` exists, that header (`100.dat` → `100.hea`).
    ///
    /// A directory is refused with an error that says what to give instead
    /// ([`WfdbError::IsDirectory`]); a record with no header is
    /// [`WfdbError::NoHeader`].
    pub fn resolve(given: impl AsRef<Path>) -> Result<RecordPath, WfdbError> {
        let given = given.as_ref();
        if given.is_dir() {
            let example = database_records(given)
                .ok()
                .and_then(|n| n.into_iter().next());
            return Err(WfdbError::IsDirectory {
                path: given.to_path_buf(),
                example,
            });
        }
        let plus_hea = {
            let mut s = given.as_os_str().to_os_string();
            s.push(".hea");
            PathBuf::from(s)
        };
        let header = if given.extension().is_some_and(|e| e == "hea") {
            given.to_path_buf()
        } else if plus_hea.is_file() {
            plus_hea
        } else if given.extension().is_some() && given.with_extension("hea").is_file() {
            given.with_extension("hea")
        } else {
            return Err(WfdbError::NoHeader {
                given: given.to_path_buf(),
                header: plus_hea,
            });
        };
        let name = header
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = header.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(RecordPath { header, dir, name })
    }

    /// The record without extension: `DIR/NAME`.
    pub fn base(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// The annotation file of `annotator` (e.g. `atr`): `DIR/NAME.ANNOTATOR`.
    pub fn annotations(&self, annotator: &str) -> PathBuf {
        self.dir.join(format!("{}.{annotator}", self.name))
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, WfdbError> {
    std::fs::read(path).map_err(|error| WfdbError::Io {
        path: path.to_path_buf(),
        error,
    })
}

/// The record names of a WFDB database directory: its `RECORDS` file (one
/// name a line, in its order; blank lines and `#` comments skipped), or,
/// without one, the stems of its `*.hea` files, sorted.
pub fn database_records(db: &Path) -> std::io::Result<Vec<String>> {
    match std::fs::read_to_string(db.join("RECORDS")) {
        Ok(text) => Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut names = Vec::new();
            for entry in std::fs::read_dir(db)? {
                let p = entry?.path();
                if p.extension().is_some_and(|x| x == "hea")
                    && let Some(stem) = p.file_stem().and_then(|s| s.to_str())
                {
                    names.push(stem.to_owned());
                }
            }
            names.sort();
            Ok(names)
        }
        Err(e) => Err(e),
    }
}

/// Reads and parses a header file.
///
/// `path` names the record by the rule of [`RecordPath::resolve`].
pub fn read_header(path: impl AsRef<Path>) -> Result<Header, WfdbError> {
    let hea = RecordPath::resolve(path)?.header;
    let bytes = read_file(&hea)?;
    let text = String::from_utf8_lossy(&bytes);
    parse_header(&text).map_err(|error| WfdbError::Header { path: hea, error })
}

/// Reads an annotation file.
pub fn read_annotations(path: impl AsRef<Path>) -> Result<Vec<Annotation>, WfdbError> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    parse_annotations(&bytes).map_err(|error| WfdbError::Annotation {
        path: path.to_path_buf(),
        error,
    })
}

impl Record {
    /// Reads a record named by the rule of [`RecordPath::resolve`]
    /// (`dir/100`, `dir/100.hea`, `dir/100.dat`, …), verifying checksums and
    /// initial values.
    pub fn read(path: impl AsRef<Path>) -> Result<Record, WfdbError> {
        Record::read_with(path, ReadOptions::default())
    }

    /// Reads a record with explicit verification options.
    pub fn read_with(path: impl AsRef<Path>, opts: ReadOptions) -> Result<Record, WfdbError> {
        let at = RecordPath::resolve(path)?;
        let header = read_header(&at.header)?;
        let samples = read_signals(&header, &at.dir, opts)?;
        Ok(Record { header, samples })
    }

    /// Sampling frequency in Hz.
    pub fn fs(&self) -> f64 {
        self.header.sampling_frequency
    }

    /// Samples of `signal` in physical units, or `None` if there is no such signal.
    pub fn physical(&self, signal: usize) -> Option<Vec<f64>> {
        let spec = self.header.signals.get(signal)?;
        Some(
            self.samples
                .get(signal)?
                .iter()
                .map(|&d| spec.to_physical(d))
                .collect(),
        )
    }

    /// The record cut into consecutive blocks of `per` samples per signal (the
    /// last one may be shorter): `(first sample index, one slice per signal)`.
    /// Upload frames and codec benchmarks are cut this way.
    pub fn blocks(&self, per: usize) -> impl Iterator<Item = (usize, Vec<&[i32]>)> + '_ {
        let n = self.samples.first().map_or(0, Vec::len);
        let per = per.max(1);
        (0..n).step_by(per).map(move |start| {
            let end = (start + per).min(n);
            (
                start,
                self.samples
                    .iter()
                    .map(|s| s.get(start..end).unwrap_or_default())
                    .collect(),
            )
        })
    }

    /// Index of the first signal whose description matches `name` (case-insensitive).
    pub fn signal_index(&self, name: &str) -> Option<usize> {
        self.header
            .signals
            .iter()
            .position(|s| s.description.eq_ignore_ascii_case(name))
    }
}

fn read_signals(
    header: &Header,
    dir: &Path,
    opts: ReadOptions,
) -> Result<Vec<Vec<i32>>, WfdbError> {
    let mut samples: Vec<Vec<i32>> = vec![Vec::new(); header.signals.len()];
    // Group signals by file, in order of first appearance.
    let mut files: Vec<(&str, Vec<usize>)> = Vec::new();
    for (i, s) in header.signals.iter().enumerate() {
        match files.iter_mut().find(|(f, _)| *f == s.file_name) {
            Some((_, v)) => v.push(i),
            None => files.push((&s.file_name, vec![i])),
        }
    }
    for (file, members) in files {
        let path = dir.join(file);
        let sig_err = |error| WfdbError::Signal {
            path: path.clone(),
            error,
        };
        if file == "-" || file.contains('/') || file.contains('\\') || file == ".." {
            return Err(sig_err(SignalError::Inconsistent(format!(
                "signal file name {file:?} is not a plain file name"
            ))));
        }
        let specs: Vec<&SignalSpec> = members
            .iter()
            .filter_map(|&i| header.signals.get(i))
            .collect();
        let Some(first) = specs.first() else { continue };
        if specs
            .iter()
            .any(|s| s.format != first.format || s.byte_offset != first.byte_offset)
        {
            return Err(sig_err(SignalError::Inconsistent(format!(
                "{file} mixes formats or offsets"
            ))));
        }
        let spf_total: u64 = specs.iter().map(|s| u64::from(s.samples_per_frame)).sum();
        let meta = std::fs::metadata(&path).map_err(|error| WfdbError::Io {
            path: path.clone(),
            error,
        })?;
        let available = meta.len().saturating_sub(first.byte_offset);
        if meta.len() > MAX_SIGNAL_FILE {
            return Err(sig_err(SignalError::TooLarge));
        }
        let frames = match header.samples_per_signal {
            Some(n) => n,
            None => samples_in(first.format, available) / spf_total.max(1),
        };
        let total = frames
            .checked_mul(spf_total)
            .ok_or_else(|| sig_err(SignalError::TooLarge))?;
        let needed =
            bytes_needed(first.format, total).ok_or_else(|| sig_err(SignalError::TooLarge))?;
        if needed > available {
            return Err(sig_err(SignalError::Truncated {
                needed: needed + first.byte_offset,
                available: meta.len(),
            }));
        }
        let bytes = read_file(&path)?;
        let body = bytes
            .get(usize::try_from(first.byte_offset).unwrap_or(usize::MAX)..)
            .unwrap_or_default();
        let n = usize::try_from(total).map_err(|_| sig_err(SignalError::TooLarge))?;
        let nframes = usize::try_from(frames).map_err(|_| sig_err(SignalError::TooLarge))?;
        let spf: Vec<usize> = members
            .iter()
            .map(|&i| {
                header
                    .signals
                    .get(i)
                    .map_or(1, |s| s.samples_per_frame as usize)
            })
            .collect();
        let one_per_frame = spf.iter().all(|&k| k == 1);
        let mut cols: Vec<Vec<i32>> = members
            .iter()
            .map(|&i| samples.get_mut(i).map(std::mem::take).unwrap_or_default())
            .collect();
        match (cols.as_mut_slice(), first.format, one_per_frame) {
            // One signal: the file's samples are its samples.
            ([only], _, _) => decode_into(first.format, body, n, only).map_err(sig_err)?,
            // Two signals, one sample per frame (MIT-BIH): de-interleave
            // while decoding, each 212 group or pair of 16-bit words a frame.
            ([a, b], Format::F212 | Format::F16, true) => {
                let width = if first.format == Format::F16 { 4 } else { 3 };
                let whole = body.get(..nframes * width).unwrap_or_default();
                if whole.len() != nframes * width {
                    return Err(sig_err(SignalError::Truncated {
                        needed: needed + first.byte_offset,
                        available: meta.len(),
                    }));
                }
                a.resize(nframes, 0);
                b.resize(nframes, 0);
                let frames_of = whole
                    .chunks_exact(width)
                    .zip(a.iter_mut().zip(b.iter_mut()));
                if width == 4 {
                    for (f, (x, y)) in frames_of {
                        let [b0, b1, b2, b3] = signal::pad::<4>(f);
                        *x = i32::from(i16::from_le_bytes([b0, b1]));
                        *y = i32::from(i16::from_le_bytes([b2, b3]));
                    }
                } else {
                    for (f, (x, y)) in frames_of {
                        let [b0, b1, b2] = signal::pad::<3>(f);
                        *x = signal::sext(u32::from(b0) | (u32::from(b1 & 0x0F) << 8), 12);
                        *y = signal::sext(u32::from(b2) | (u32::from(b1 & 0xF0) << 4), 12);
                    }
                }
            }
            (cols, format, true) => {
                let flat = decode(format, body, n).map_err(sig_err)?;
                let m = cols.len();
                for (k, col) in cols.iter_mut().enumerate() {
                    col.reserve(nframes);
                    col.extend(flat.iter().skip(k).step_by(m.max(1)).copied());
                }
            }
            (cols, format, false) => {
                // De-interleave: each frame holds spf_i samples of each
                // member signal in turn.
                let flat = decode(format, body, n).map_err(sig_err)?;
                let mut it = flat.into_iter();
                for _ in 0..frames {
                    for (col, &k) in cols.iter_mut().zip(&spf) {
                        col.extend(it.by_ref().take(k));
                    }
                }
            }
        }
        for (&i, col) in members.iter().zip(cols) {
            if let Some(v) = samples.get_mut(i) {
                *v = col;
            }
        }
        for &i in &members {
            let (Some(spec), Some(data)) = (header.signals.get(i), samples.get(i)) else {
                continue;
            };
            if opts.verify_checksum {
                // 0 means "not recorded" (PhysioNet/CinC 2017 headers).
                if let Some(expected) = spec.checksum.filter(|&c| c != 0) {
                    let actual = checksum(data);
                    if actual != expected {
                        return Err(sig_err(SignalError::Checksum {
                            signal: i,
                            description: spec.description.clone(),
                            expected,
                            actual,
                        }));
                    }
                }
            }
            if opts.verify_initial_value
                && let (Some(expected), Some(&actual)) = (spec.initial_value, data.first())
                && actual != expected
            {
                return Err(sig_err(SignalError::InitialValue {
                    signal: i,
                    description: spec.description.clone(),
                    expected,
                    actual,
                }));
            }
        }
    }
    Ok(samples)
}

/// Writes a record as `<dir>/<name>.hea` plus `<dir>/<name>.dat` in format 16
/// (all signals interleaved in one file), with correct checksums and initial
/// values. `signals` gives each signal's calibration; its `file_name`,
/// `format`, offset, checksum and initial value are replaced. A sample
/// outside 16 bits is refused ([`SignalError::OutOfRange`]); [`write_record`]
/// picks a wider format instead.
pub fn write_record_16(
    dir: impl AsRef<Path>,
    name: &str,
    fs: f64,
    signals: &[SignalSpec],
    samples: &[Vec<i32>],
) -> Result<(), WfdbError> {
    let out = RecordOut {
        name,
        fs,
        signals,
        samples,
        base: None,
        comments: &[],
    };
    write_record_as(dir.as_ref(), &out, Format::F16)
}

/// A record to write with [`write_record`].
#[derive(Debug, Clone, Copy)]
pub struct RecordOut<'a> {
    /// Record name (the files are `NAME.hea` and `NAME.dat`).
    pub name: &'a str,
    /// Sampling frequency, Hz.
    pub fs: f64,
    /// Each signal's calibration (file name, format, offset, checksum and
    /// initial value are replaced).
    pub signals: &'a [SignalSpec],
    /// Digital samples per signal, all of one length.
    pub samples: &'a [Vec<i32>],
    /// Base time and date of the first sample (`HH:MM:SS`, `DD/MM/YYYY`).
    pub base: Option<(&'a str, &'a str)>,
    /// Header comment lines (without `#`).
    pub comments: &'a [String],
}

/// The narrowest of formats 16, 24 and 32 that holds every sample.
pub fn format_for(samples: &[Vec<i32>]) -> Format {
    let (lo, hi) = samples
        .iter()
        .flatten()
        .fold((0i32, 0i32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    [Format::F16, Format::F24]
        .into_iter()
        .find(|f| {
            let (a, b) = f.range();
            a <= lo && hi <= b
        })
        .unwrap_or(Format::F32)
}

/// Writes `rec` into `dir` in the narrowest of formats 16, 24 and 32 that
/// holds its samples ([`format_for`]), with correct checksums and initial
/// values, its base time and its comments; returns the format written.
pub fn write_record(dir: impl AsRef<Path>, rec: &RecordOut<'_>) -> Result<Format, WfdbError> {
    let format = format_for(rec.samples);
    write_record_as(dir.as_ref(), rec, format)?;
    Ok(format)
}

fn write_record_as(dir: &Path, rec: &RecordOut<'_>, format: Format) -> Result<(), WfdbError> {
    let RecordOut {
        name,
        fs,
        signals,
        samples,
        base,
        comments,
    } = *rec;
    let dat_name = format!("{name}.dat");
    let dat_path = dir.join(&dat_name);
    let sig_err = |error| WfdbError::Signal {
        path: dat_path.clone(),
        error,
    };
    if name.is_empty() || name.contains(['/', '\\', ' ', '\n']) || name.starts_with('.') {
        return Err(sig_err(SignalError::Inconsistent(format!(
            "record name {name:?} is not a plain file name"
        ))));
    }
    let n = samples.first().map_or(0, Vec::len);
    if samples.len() != signals.len() || samples.iter().any(|s| s.len() != n) {
        return Err(sig_err(SignalError::Inconsistent(
            "every signal needs the same number of samples".into(),
        )));
    }
    let mut flat = Vec::with_capacity(n * samples.len());
    for t in 0..n {
        flat.extend(samples.iter().filter_map(|s| s.get(t).copied()));
    }
    let bytes = encode(format, &flat).map_err(sig_err)?;
    let mut text = format!("{name} {} {} {n}", signals.len(), fs);
    if let Some((time, date)) = base {
        text.push_str(&format!(" {time} {date}"));
    }
    text.push('\n');
    for (spec, data) in signals.iter().zip(samples) {
        text.push_str(&format!(
            "{dat_name} {} {}({})/{} {} {} {} {} 0 {}\n",
            format.code(),
            spec.gain,
            spec.baseline,
            spec.units,
            spec.adc_resolution,
            spec.adc_zero,
            data.first().copied().unwrap_or(0),
            checksum(data),
            spec.description
        ));
    }
    for c in comments {
        for line in c.lines() {
            text.push_str(&format!("# {line}\n"));
        }
    }
    std::fs::write(&dat_path, bytes).map_err(|error| WfdbError::Io {
        path: dat_path.clone(),
        error,
    })?;
    let hea = dir.join(format!("{name}.hea"));
    std::fs::write(&hea, text).map_err(|error| WfdbError::Io { path: hea, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_records_from_records_file_or_headers() {
        let d = std::env::temp_dir().join(format!("aorta-db-records-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for n in ["201", "100", "x"] {
            std::fs::write(d.join(format!("{n}.hea")), "").unwrap();
        }
        std::fs::write(d.join("100.dat"), "").unwrap();
        assert_eq!(database_records(&d).unwrap(), vec!["100", "201", "x"]);
        std::fs::write(d.join("RECORDS"), "# ward\n203\n\n 100 \n").unwrap();
        assert_eq!(database_records(&d).unwrap(), vec!["203", "100"]);
        assert!(database_records(&d.join("missing")).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("aorta-wfdb-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn one_record_name_rule() {
        let d = tmp("resolve");
        for f in [
            "100.hea", "100.dat", "100.atr", "a.b.hea", "A1.hea", "A1.mat",
        ] {
            std::fs::write(d.join(f), "").unwrap();
        }
        for given in ["100", "100.hea", "100.dat", "100.atr", "100.qrs"] {
            let at = RecordPath::resolve(d.join(given)).unwrap();
            assert_eq!(
                (at.header.clone(), at.name.as_str()),
                (d.join("100.hea"), "100"),
                "{given}"
            );
            assert_eq!(at.annotations("atr"), d.join("100.atr"));
            assert_eq!(at.base(), d.join("100"));
        }
        // A name with a dot is found by its full name first.
        assert_eq!(RecordPath::resolve(d.join("a.b")).unwrap().name, "a.b");
        assert_eq!(RecordPath::resolve(d.join("A1.mat")).unwrap().name, "A1");
        match RecordPath::resolve(&d) {
            Err(e @ WfdbError::IsDirectory { .. }) => {
                let text = e.to_string();
                assert!(text.contains("is a directory, not a record"), "{text}");
                assert!(
                    text.contains(&d.join("100").display().to_string()),
                    "{text}"
                );
            }
            other => panic!("{other:?}"),
        }
        match RecordPath::resolve(d.join("999.dat")) {
            Err(WfdbError::NoHeader { header, .. }) => assert_eq!(header, d.join("999.dat.hea")),
            other => panic!("{other:?}"),
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn write_record_picks_the_narrowest_format_and_reads_back() {
        let d = tmp("write");
        let spec = parse_header("s 1 360\ns.dat 16 1000(3)/uV 24 3 0 0 0 lead I\n")
            .unwrap()
            .signals
            .remove(0);
        let comments = ["age 50".to_owned(), "two\nlines".to_owned()];
        for (peak, want) in [
            (32767, Format::F16),
            (32768, Format::F24),
            ((1 << 23) - 1, Format::F24),
            (-(1 << 23) - 1, Format::F32),
            (i32::MIN, Format::F32),
        ] {
            let samples = vec![vec![0, peak, -5, 7], vec![1, 2, 3, 4]];
            let out = RecordOut {
                name: "r",
                fs: 250.0,
                signals: &[spec.clone(), spec.clone()],
                samples: &samples,
                base: Some(("08:00:01.500", "29/02/2024")),
                comments: &comments,
            };
            assert_eq!(write_record(&d, &out).unwrap(), want, "{peak}");
            let back = Record::read(d.join("r")).unwrap();
            assert_eq!(back.samples, samples);
            assert_eq!(back.header.signals[0].format, want);
            assert_eq!(back.header.signals[0].description, "lead I");
            assert_eq!(back.header.signals[0].baseline, 3);
            assert_eq!(back.header.base_time.as_deref(), Some("08:00:01.500"));
            assert_eq!(back.header.base_date.as_deref(), Some("29/02/2024"));
            assert_eq!(back.header.comments, ["age 50", "two", "lines"]);
        }
        let bad = RecordOut {
            name: "../r",
            fs: 250.0,
            signals: &[],
            samples: &[],
            base: None,
            comments: &[],
        };
        assert!(write_record(&d, &bad).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn checksum_zero_is_not_recorded() {
        let d = tmp("cksum");
        let spec = parse_header("s 1 360\ns.dat 16\n")
            .unwrap()
            .signals
            .remove(0);
        write_record_16(&d, "r", 360.0, &[spec], &[vec![5, 6, 7]]).unwrap();
        let hea = d.join("r.hea");
        let text = std::fs::read_to_string(&hea).unwrap();
        std::fs::write(&hea, text.replace(" 18 0 ", " 0 0 ")).unwrap();
        assert_eq!(
            Record::read(d.join("r")).unwrap().header.signals[0].checksum,
            Some(0)
        );
        std::fs::write(&hea, text.replace(" 18 0 ", " 19 0 ")).unwrap();
        let err = Record::read(d.join("r")).unwrap_err().to_string();
        assert!(
            err.ends_with("--no-verify reads the record without this check)"),
            "{err}"
        );
        assert!(Record::read_with(d.join("r"), ReadOptions::unverified()).is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn every_layout_reads_back_its_samples() {
        // Signals per file × samples per frame × format × frame count (odd
        // and even, so packed formats end in partial groups): the fused
        // two-signal paths and the generic ones give the written samples.
        let d = tmp("layouts");
        for format in [
            Format::F212,
            Format::F16,
            Format::F310,
            Format::F311,
            Format::F80,
        ] {
            for spf in [vec![1], vec![1, 1], vec![1, 1, 1], vec![2, 1], vec![1, 3]] {
                for frames in [0usize, 1, 2, 5, 8] {
                    let (lo, hi) = format.range();
                    let cols: Vec<Vec<i32>> = spf
                        .iter()
                        .enumerate()
                        .map(|(k, &m)| {
                            (0..frames * m)
                                .map(|i| lo + ((i * 37 + k * 101) as i32).rem_euclid(hi - lo + 1))
                                .collect()
                        })
                        .collect();
                    let mut flat = Vec::new();
                    for f in 0..frames {
                        for (col, &m) in cols.iter().zip(&spf) {
                            flat.extend_from_slice(&col[f * m..(f + 1) * m]);
                        }
                    }
                    std::fs::write(d.join("r.dat"), encode(format, &flat).unwrap()).unwrap();
                    let mut hea = format!("r {} 100 {frames}\n", spf.len());
                    for &m in &spf {
                        let fmt = format.code();
                        let x = if m > 1 {
                            format!("x{m}")
                        } else {
                            String::new()
                        };
                        hea.push_str(&format!("r.dat {fmt}{x} 200 12 0\n"));
                    }
                    std::fs::write(d.join("r.hea"), hea).unwrap();
                    let rec = Record::read_with(d.join("r"), ReadOptions::unverified()).unwrap();
                    assert_eq!(rec.samples, cols, "{format:?} spf {spf:?} frames {frames}");
                }
            }
        }
    }

    #[test]
    fn blocks_cover_every_sample_once() {
        let header = parse_header("r 2 360 7\nr.dat 16\nr.dat 16\n").unwrap();
        let rec = Record {
            header,
            samples: vec![(0..7).collect(), (10..17).collect()],
        };
        let blocks: Vec<(usize, Vec<&[i32]>)> = rec.blocks(3).collect();
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[2], (6, vec![&[6][..], &[16][..]]));
        let joined: Vec<i32> = blocks
            .iter()
            .flat_map(|(_, c)| c[0].iter().copied())
            .collect();
        assert_eq!(joined, rec.samples[0]);
        assert_eq!(
            rec.blocks(0).count(),
            7,
            "a zero block size means one sample per block"
        );
    }
}
