//! The durable log of accepted input.
//!
//! [`FrameLog`] is what ingest appends to before it acknowledges, and what a
//! restarted worker replays from its last checkpoint. [`FileLog`] is the
//! embedded implementation: one append-only file of items, each a record or
//! a filler.
//!
//! | bytes | field |
//! |---|---|
//! | 4 | payload length `n`, u32 little-endian (1 ≤ `n` ≤ [`MAX_RECORD`]) |
//! | 4 | CRC-32 (IEEE) of the payload, u32 little-endian |
//! | n | payload |
//!
//! A **filler** keeps offsets where records are gone (a damaged range
//! replaced by `aorta log salvage`, an erased record): its length field is
//! [`FILLER_FLAG`]` | m`, its checksum field the CRC-32 of
//! `"aorta log filler" ‖ m` (u32 LE), and `m` ignored bytes (zeros) follow.
//! Readers skip fillers. A record's payload is never empty, so a run of zero
//! bytes (a hole a crash can leave) is never read as records.
//!
//! A record's offset is the byte position of its header; offsets never move.
//!
//! ## Segments and retention
//!
//! With [`LogOptions::segment_bytes`] the log is a chain of segment files:
//! `PATH` holds offsets from 0, `PATH.<base as 20 digits>` from `base`
//! ([`segment_path`]); a new segment starts when an append would make the
//! active one longer than `segment_bytes`. Offsets stay global.
//! [`retire_segments`] deletes the oldest segments that a checkpoint has
//! passed and whose last write is older than a cutoff; reading a deleted
//! offset is [`StreamError::Deleted`]. Opening checks that every segment
//! but the last is intact and ends where the next begins; only the last may
//! have a torn tail. `aorta log check`/`salvage` work on one segment file
//! (offsets in the file).
//!
//! ## Torn tail or damage
//!
//! [`FileLog`] writes at most [`MAX_UNSYNCED`] bytes between two syncs (an
//! append that would exceed it syncs first), and nothing is acknowledged
//! before its sync. A crash can therefore leave only the unsynced bytes
//! incomplete. Opening a log walks its items from byte 0 to the end of the
//! intact prefix; what follows it is
//!
//! - a **torn tail** when it is at most [`MAX_UNSYNCED`] bytes long and no
//!   intact item starts anywhere inside it (at least a header's length
//!   after its start): [`FileLog::open`] cuts it (truncate, fsync) and
//!   reports it in [`FileLog::torn_tail`];
//! - **damage** otherwise (an intact record after a bad one, or more bad
//!   bytes than one unsynced batch can leave): [`FileLog::open`] changes
//!   nothing and returns [`StreamError::Damaged`] naming the file, the
//!   offset and the commands to run — [`scan`] (`aorta log check FILE`)
//!   lists every damaged range, [`salvage`] (`aorta log salvage FILE --out
//!   NEW`) copies every intact record to a new file at its same offset,
//!   each damaged range replaced by fillers. Looking for an intact item
//!   inside a tail costs CRC work; when it would exceed
//!   [`OPEN_SCAN_BUDGET`] bytes of hashing, opening refuses as damaged too
//!   rather than guess (`aorta log check` has no budget).
//!
//! A bit flipped in the last record of a log cleanly closed is
//! indistinguishable from a torn write and is cut (the record is damaged
//! either way); a flip anywhere before it is damage and is never cut.
//!
//! ## Rollback
//!
//! [`FrameLog::sync`] returns once everything appended is on stable
//! storage: acknowledge only after it. When a write or a sync fails (a full
//! disk, an I/O error), the log truncates its file back to its last durable
//! end and fsyncs before it returns the error: everything appended since
//! the last successful sync is gone ([`FileLog::durable_end`] says where the
//! log stands), and the next append goes there. If the truncation fails
//! too, every later append and sync tries it again first and fails until it
//! succeeds, so nothing is ever written after partial bytes. A full disk
//! or quota is [`StreamError::StorageFull`]; appends succeed again once
//! space returns.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};

use crate::StreamError;

/// Largest payload one record may hold (16 MiB).
pub const MAX_RECORD: usize = 16 << 20;

/// Most bytes a [`FileLog`] holds appended but not synced (32 MiB): the
/// longest tail a crash can leave incomplete, hence the longest tail
/// opening a log may cut.
pub const MAX_UNSYNCED: u64 = 32 << 20;

/// Most payload bytes [`FileLog::open`] hashes while looking for an intact
/// item after a bad one in a tail (1 GiB); past it, it refuses as damaged.
pub const OPEN_SCAN_BUDGET: u64 = 1 << 30;

/// The length field's top bit: the item is a filler.
pub const FILLER_FLAG: u32 = 1 << 31;

/// Most ignored bytes one filler covers after its header.
pub const MAX_FILLER: u32 = FILLER_FLAG - 1;

/// A record's header in the log file: the payload's length (at most
/// [`MAX_RECORD`]) and CRC-32, both u32 little-endian; or a filler's header
/// (length field [`FILLER_FLAG`]` | m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Payload length (or [`FILLER_FLAG`]` | m` for a filler).
    pub len: u32,
    /// CRC-32 (IEEE) of the payload (of the filler's label and `m`).
    pub crc: u32,
}

/// Bytes of a [`RecordHeader`].
pub const HEADER_LEN: usize = 8;

fn filler_crc(m: u32) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(b"aorta log filler");
    h.update(&m.to_le_bytes());
    h.finalize()
}

impl RecordHeader {
    /// The header of `payload` (whose length the caller checked against
    /// [`MAX_RECORD`]).
    pub fn of(payload: &[u8]) -> Self {
        RecordHeader {
            len: payload.len() as u32,
            crc: crc32fast::hash(payload),
        }
    }

    /// The header of a filler covering `m` (≤ [`MAX_FILLER`]) bytes after it.
    pub fn filler(m: u32) -> Self {
        let m = m & MAX_FILLER;
        RecordHeader {
            len: FILLER_FLAG | m,
            crc: filler_crc(m),
        }
    }

    /// True when this is a well-formed filler header.
    pub fn is_filler(&self) -> bool {
        self.len & FILLER_FLAG != 0 && self.crc == filler_crc(self.len & MAX_FILLER)
    }

    /// Bytes after the header: the payload's or the filler's.
    pub fn body_len(&self) -> u64 {
        u64::from(self.len & MAX_FILLER)
    }

    /// True when `payload` is the one this header describes.
    pub fn matches(&self, payload: &[u8]) -> bool {
        self.len & FILLER_FLAG == 0
            && payload.len() == self.len as usize
            && crc32fast::hash(payload) == self.crc
    }
}

impl Encode for RecordHeader {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.crc.to_le_bytes());
    }
}

impl Decode<'_> for RecordHeader {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = r.u32_le("record length")?;
        if len & FILLER_FLAG == 0 && len as usize > MAX_RECORD {
            return Err(r.invalid("record length", 4, "bad record length"));
        }
        Ok(RecordHeader {
            len,
            crc: r.u32_le("record checksum")?,
        })
    }
}

/// An append-only, replayable log.
pub trait FrameLog {
    /// Appends a record, returning its offset. Not durable until [`FrameLog::sync`].
    fn append(&mut self, payload: &[u8]) -> Result<u64, StreamError>;
    /// Makes every appended record durable.
    fn sync(&mut self) -> Result<(), StreamError>;
    /// Offset one past the last record (where the next append goes).
    fn end(&self) -> u64;
    /// Reads up to `max` records starting at `offset`, returning them with
    /// the offset after the last one read.
    fn read_from(&self, offset: u64, max: usize) -> Result<(Vec<Vec<u8>>, u64), StreamError>;
}

/// A record's payload with its offset.
pub type Located = (u64, Vec<u8>);

/// A tail [`FileLog::open`] cut: `len` bytes from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// Where the cut tail began (the log's end now).
    pub offset: u64,
    /// Bytes cut.
    pub len: u64,
}

/// How a [`FileLog`] is cut into segment files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// A new segment starts when an append would make the active one
    /// longer than this (a single record may exceed it). `u64::MAX` (the
    /// default): one file.
    pub segment_bytes: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes: u64::MAX,
        }
    }
}

/// The file of the segment that starts at global offset `base`: the log's
/// own path for 0, `PATH.<base, 20 digits>` after it.
pub fn segment_path(path: &Path, base: u64) -> PathBuf {
    if base == 0 {
        return path.to_path_buf();
    }
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{base:020}"));
    path.with_file_name(name)
}

/// The segments of the log at `path` that exist, `(base, file)` by base.
pub fn segments(path: &Path) -> Result<Vec<(u64, PathBuf)>, StreamError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(&dir)(e)),
    };
    for e in entries {
        let e = e.map_err(io(&dir))?;
        let f = e.file_name();
        let f = f.to_string_lossy();
        if f == name {
            out.push((0, path.to_path_buf()));
        } else if let Some(rest) = f.strip_prefix(&*name).and_then(|r| r.strip_prefix('.'))
            && rest.len() == 20
            && rest.bytes().all(|b| b.is_ascii_digit())
            && let Ok(base) = rest.parse::<u64>()
        {
            out.push((base, e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Deletes the oldest segments of the log at `path` that are both
/// **covered** (the next segment starts at or before `covered`: every
/// checkpoint has passed them) and **expired** (last written at or before
/// `cutoff`), stopping at the first that is not; never the active (last)
/// segment. Returns the bases deleted. Safe while the log is open: the
/// writer only touches the last segment.
pub fn retire_segments(
    path: &Path,
    covered: u64,
    cutoff: std::time::SystemTime,
) -> Result<Vec<u64>, StreamError> {
    let segs = segments(path)?;
    let mut gone = Vec::new();
    for pair in segs.windows(2) {
        let [(base, file), (next, _)] = pair else {
            break;
        };
        if *next > covered {
            break;
        }
        let modified = std::fs::metadata(file)
            .and_then(|m| m.modified())
            .map_err(io(file))?;
        if modified > cutoff {
            break;
        }
        std::fs::remove_file(file).map_err(io(file))?;
        gone.push(*base);
    }
    if !gone.is_empty()
        && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(gone)
}

/// The file-backed [`FrameLog`].
#[derive(Debug)]
pub struct FileLog {
    path: PathBuf,
    /// The active (last) segment's file and its base offset.
    seg: PathBuf,
    base: u64,
    opts: LogOptions,
    file: File,
    /// Appended, not yet written to the file.
    buf: Vec<u8>,
    /// Logical end (everything appended, written or not).
    end: u64,
    /// End at the last successful sync.
    durable: u64,
    /// A failure left bytes past `durable` that are not truncated yet.
    dirty: bool,
    torn: Option<TornTail>,
}

/// Bytes buffered before a write.
const WRITE_CHUNK: usize = 1 << 16;

fn io(path: &Path) -> impl Fn(std::io::Error) -> StreamError + '_ {
    move |error| StreamError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// A write or sync error, typed: a full disk or quota is
/// [`StreamError::StorageFull`].
fn write_error(path: &Path, error: std::io::Error) -> StreamError {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => StreamError::StorageFull {
            path: path.to_path_buf(),
            error,
        },
        _ => StreamError::Io {
            path: path.to_path_buf(),
            error,
        },
    }
}

/// A cached window over a file for the scanners (positional reads).
struct Window<'f> {
    file: &'f File,
    len: u64,
    start: u64,
    buf: Vec<u8>,
}

/// Bytes a [`Window`] reads at once (at least).
const WINDOW_CHUNK: u64 = 4 << 20;
/// Bytes a [`Window`] keeps before the requested offset (a resync scan
/// steps back to the byte after a candidate's header).
const WINDOW_BEHIND: u64 = 64;

impl<'f> Window<'f> {
    fn new(file: &'f File, len: u64) -> Self {
        Window {
            file,
            len,
            start: 0,
            buf: Vec::new(),
        }
    }

    /// `n` bytes at `off`, or `None` past the end of the file.
    fn get(&mut self, off: u64, n: u64) -> std::io::Result<Option<&[u8]>> {
        let Some(end) = off.checked_add(n) else {
            return Ok(None);
        };
        if end > self.len {
            return Ok(None);
        }
        if off < self.start || end > self.start + self.buf.len() as u64 {
            let start = off.saturating_sub(WINDOW_BEHIND);
            let stop = (end.max(start + WINDOW_CHUNK)).min(self.len);
            self.buf.resize((stop - start) as usize, 0);
            self.file.read_exact_at(&mut self.buf, start)?;
            self.start = start;
        }
        let i = (off - self.start) as usize;
        Ok(self.buf.get(i..i + n as usize))
    }
}

/// One item of a log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    /// A record whose payload spans `payload..next`.
    Record { payload: u64, next: u64 },
    /// A filler ending at `next`.
    Filler { next: u64 },
}

impl Item {
    fn next(&self) -> u64 {
        match *self {
            Item::Record { next, .. } | Item::Filler { next } => next,
        }
    }
}

/// The intact item at `pos`, if any; `budget` is charged the payload bytes
/// hashed.
fn item_at(w: &mut Window<'_>, pos: u64, budget: &mut u64) -> std::io::Result<Option<Item>> {
    let Some(hdr) = w.get(pos, HEADER_LEN as u64)? else {
        return Ok(None);
    };
    let Ok(h) = RecordHeader::from_bytes(hdr) else {
        return Ok(None);
    };
    let start = pos + HEADER_LEN as u64;
    let next = start + h.body_len();
    if next > w.len {
        return Ok(None);
    }
    if h.len & FILLER_FLAG != 0 {
        return Ok(h.is_filler().then_some(Item::Filler { next }));
    }
    if h.len == 0 {
        return Ok(None);
    }
    *budget = budget.saturating_sub(h.body_len());
    let Some(payload) = w.get(start, h.body_len())? else {
        return Ok(None);
    };
    Ok(h.matches(payload).then_some(Item::Record {
        payload: start,
        next,
    }))
}

/// Where the next intact item after a bad one at `bad` starts (at least a
/// header's length after it), if any. `Err(())` inside: the budget ran out.
fn next_intact(
    w: &mut Window<'_>,
    bad: u64,
    budget: &mut u64,
) -> std::io::Result<Result<Option<u64>, ()>> {
    let mut q = bad + HEADER_LEN as u64;
    while q + HEADER_LEN as u64 <= w.len {
        if *budget == 0 {
            return Ok(Err(()));
        }
        if item_at(w, q, budget)?.is_some() {
            return Ok(Ok(Some(q)));
        }
        q += 1;
    }
    Ok(Ok(None))
}

/// The end of the intact prefix: items walked from byte 0.
fn intact_prefix(w: &mut Window<'_>) -> std::io::Result<u64> {
    let mut pos = 0;
    let mut unlimited = u64::MAX;
    while let Some(item) = item_at(w, pos, &mut unlimited)? {
        pos = item.next();
    }
    Ok(pos)
}

/// What a whole-file scan ([`scan`]) concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every byte belongs to an intact item.
    Intact,
    /// Only a torn tail (the last range) is bad: opening cuts it.
    TornTail,
    /// Damaged: opening refuses; salvage recovers the intact records.
    Damaged,
}

/// A range of bytes that belongs to no intact item: `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BadRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte (the next intact item, or the file's end).
    pub end: u64,
}

/// What [`scan`] found in a log file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Scan {
    /// The file's length.
    pub file_len: u64,
    /// Intact records.
    pub records: u64,
    /// Bytes of intact records (headers included).
    pub record_bytes: u64,
    /// Fillers.
    pub fillers: u64,
    /// Bytes of fillers (headers included).
    pub filler_bytes: u64,
    /// Every bad range, in order.
    pub bad: Vec<BadRange>,
    /// The conclusion.
    pub verdict: Verdict,
}

/// One item [`scan`] hands to its visitor.
#[derive(Debug)]
pub enum Entry<'a> {
    /// An intact record at `offset`.
    Record {
        /// Offset of its header.
        offset: u64,
        /// Its payload.
        payload: &'a [u8],
    },
    /// A filler at `offset`, `len` bytes long (header included).
    Filler {
        /// Offset of its header.
        offset: u64,
        /// Its length, header included.
        len: u64,
    },
    /// A bad range.
    Bad(BadRange),
}

/// Scans the log file at `path` whole (read-only): every intact record,
/// filler and bad range, in order, to `visit`, and the totals. A bad range
/// ends where the next intact item starts (searched byte by byte, without
/// a budget) or at the end of the file.
pub fn scan(
    path: &Path,
    mut visit: impl FnMut(Entry<'_>) -> Result<(), StreamError>,
) -> Result<Scan, StreamError> {
    let file = File::open(path).map_err(io(path))?;
    let len = file.metadata().map_err(io(path))?.len();
    let mut w = Window::new(&file, len);
    let mut s = Scan {
        file_len: len,
        records: 0,
        record_bytes: 0,
        fillers: 0,
        filler_bytes: 0,
        bad: Vec::new(),
        verdict: Verdict::Intact,
    };
    let mut pos = 0;
    let mut unlimited = u64::MAX;
    while pos < len {
        match item_at(&mut w, pos, &mut unlimited).map_err(io(path))? {
            Some(Item::Record { payload, next }) => {
                s.records += 1;
                s.record_bytes += next - pos;
                let bytes = w
                    .get(payload, next - payload)
                    .map_err(io(path))?
                    .unwrap_or_default();
                visit(Entry::Record {
                    offset: pos,
                    payload: bytes,
                })?;
                pos = next;
            }
            Some(Item::Filler { next }) => {
                s.fillers += 1;
                s.filler_bytes += next - pos;
                visit(Entry::Filler {
                    offset: pos,
                    len: next - pos,
                })?;
                pos = next;
            }
            None => {
                let end = match next_intact(&mut w, pos, &mut unlimited).map_err(io(path))? {
                    Ok(Some(q)) => q,
                    _ => len,
                };
                let r = BadRange { start: pos, end };
                s.bad.push(r);
                visit(Entry::Bad(r))?;
                pos = end;
            }
        }
    }
    s.verdict = match s.bad.as_slice() {
        [] => Verdict::Intact,
        [r] if r.end == len && r.end - r.start <= MAX_UNSYNCED => Verdict::TornTail,
        _ => Verdict::Damaged,
    };
    Ok(s)
}

/// Fillers covering `n` bytes (n ≥ [`HEADER_LEN`]), written to `out`.
fn write_fillers(out: &mut impl Write, mut n: u64) -> std::io::Result<()> {
    let zeros = [0u8; 1 << 16];
    while n > 0 {
        let mut take = n.min(HEADER_LEN as u64 + u64::from(MAX_FILLER));
        let rest = n - take;
        if rest > 0 && rest < HEADER_LEN as u64 {
            take -= HEADER_LEN as u64;
        }
        let m = take - HEADER_LEN as u64;
        out.write_all(&RecordHeader::filler(m as u32).to_bytes())?;
        let mut left = m;
        while left > 0 {
            let k = left.min(zeros.len() as u64) as usize;
            out.write_all(zeros.get(..k).unwrap_or_default())?;
            left -= k as u64;
        }
        n -= take;
    }
    Ok(())
}

/// Copies every intact record of the log at `from` to a new file `to`
/// (refused if it exists), each at its same offset: fillers and bad ranges
/// before the last intact item become fillers, a bad tail is left out.
/// Returns the scan of `from`. The new file is synced; on an error it is
/// removed.
pub fn salvage(from: &Path, to: &Path) -> Result<Scan, StreamError> {
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(io(to))?;
    let r = (|| {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &out);
        let mut written = 0u64;
        let s = scan(from, |e| {
            let r = match e {
                Entry::Record { offset, payload } => {
                    let gap = offset - written;
                    let r = if gap > 0 {
                        write_fillers(&mut w, gap)
                    } else {
                        Ok(())
                    };
                    written = offset + (HEADER_LEN + payload.len()) as u64;
                    r.and_then(|()| w.write_all(&RecordHeader::of(payload).to_bytes()))
                        .and_then(|()| w.write_all(payload))
                }
                // Fillers and bad ranges are written only when an intact
                // record follows them (a gap before it).
                Entry::Filler { .. } | Entry::Bad(_) => Ok(()),
            };
            r.map_err(io(to))
        })?;
        w.flush().map_err(io(to))?;
        drop(w);
        out.sync_all().map_err(io(to))?;
        Ok(s)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(to);
    }
    r
}

/// What [`erase`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Erased {
    /// Records overwritten with fillers.
    pub records: u64,
    /// Bytes of those records (headers included).
    pub bytes: u64,
    /// Fillers whose body still held bytes (an erase a crash interrupted)
    /// and was zeroed.
    pub fillers_zeroed: u64,
}

impl std::ops::AddAssign for Erased {
    fn add_assign(&mut self, o: Erased) {
        self.records += o.records;
        self.bytes += o.bytes;
        self.fillers_zeroed += o.fillers_zeroed;
    }
}

/// [`erase`] over every segment of the log at `path` (every segment is
/// checked first: a damaged one is refused before anything is changed).
pub fn erase_segments(
    path: &Path,
    mut select: impl FnMut(&[u8]) -> bool,
) -> Result<Erased, StreamError> {
    let files = segments(path)?;
    for (_, file) in &files {
        drop(FileLog::open(file)?);
    }
    let mut total = Erased::default();
    for (_, file) in files {
        total += erase(&file, &mut select)?;
    }
    Ok(total)
}

/// Erases in place every intact record of the log at `path` that `select`
/// picks (given its payload): its header becomes a filler's, then its
/// payload zeros, so every other record keeps its offset and readers skip
/// it. Two phases, each fsynced (all headers, then all zeros), so a crash
/// leaves only fillers whose bodies may still hold bytes; those are zeroed
/// by any later `erase` (they are counted in [`Erased::fillers_zeroed`]).
/// A torn tail is cut first (it may hold the selected bytes too); a
/// damaged log is refused ([`StreamError::Damaged`]: salvage it first).
///
/// Offline: no other process may have the log open for writing (stop the
/// server). Erasure is at the file level: a copy-on-write file system,
/// snapshots or backups keep their own copies.
pub fn erase(path: &Path, mut select: impl FnMut(&[u8]) -> bool) -> Result<Erased, StreamError> {
    drop(FileLog::open(path)?);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io(path))?;
    let len = file.metadata().map_err(io(path))?.len();
    let mut w = Window::new(&file, len);
    let mut records = Vec::new();
    let mut fillers = Vec::new();
    let mut pos = 0;
    let mut unlimited = u64::MAX;
    while let Some(item) = item_at(&mut w, pos, &mut unlimited).map_err(io(path))? {
        let next = item.next();
        let body = pos + HEADER_LEN as u64..next;
        let bytes = w
            .get(body.start, body.end - body.start)
            .map_err(io(path))?
            .unwrap_or_default();
        match item {
            Item::Record { .. } if select(bytes) => records.push((pos, body)),
            Item::Filler { .. } if bytes.iter().any(|b| *b != 0) => fillers.push(body),
            _ => {}
        }
        pos = next;
    }
    drop(w);
    let mut done = Erased::default();
    for (at, body) in &records {
        let m = (body.end - body.start) as u32;
        file.write_all_at(&RecordHeader::filler(m).to_bytes(), *at)
            .map_err(io(path))?;
        done.records += 1;
        done.bytes += body.end - at;
    }
    file.sync_data().map_err(io(path))?;
    let zeros = vec![0u8; 1 << 16];
    for body in records.iter().map(|(_, b)| b).chain(&fillers) {
        let mut at = body.start;
        while at < body.end {
            let k = (body.end - at).min(zeros.len() as u64);
            file.write_all_at(zeros.get(..k as usize).unwrap_or_default(), at)
                .map_err(io(path))?;
            at += k;
        }
    }
    done.fillers_zeroed = fillers.len() as u64;
    file.sync_data().map_err(io(path))?;
    Ok(done)
}

impl FileLog {
    /// Opens (creating if needed) the log at `path`. A torn tail (see the
    /// module documentation) is cut and reported by
    /// [`FileLog::torn_tail`]; damage is [`StreamError::Damaged`] and
    /// nothing is changed.
    pub fn open(path: impl AsRef<Path>) -> Result<FileLog, StreamError> {
        FileLog::open_with(path, LogOptions::default())
    }

    /// [`FileLog::open`] with segments ([`LogOptions`]). Every segment
    /// before the last must be intact and end where the next begins
    /// ([`StreamError::Damaged`] otherwise); only the last may have a torn
    /// tail. Errors name the segment file and offsets in it.
    pub fn open_with(path: impl AsRef<Path>, opts: LogOptions) -> Result<FileLog, StreamError> {
        let path = path.as_ref().to_path_buf();
        let segs = segments(&path)?;
        for pair in segs.windows(2) {
            let [(b0, p0), (b1, _)] = pair else {
                break;
            };
            let f = File::open(p0).map_err(io(p0))?;
            let len = f.metadata().map_err(io(p0))?.len();
            let intact = intact_prefix(&mut Window::new(&f, len)).map_err(io(p0))?;
            let damaged = |offset: u64, what: String| StreamError::Damaged {
                path: p0.clone(),
                offset,
                what,
            };
            if intact < len {
                return Err(damaged(
                    intact,
                    "the record there is not intact, in a segment closed before the last".into(),
                ));
            }
            if b0 + len != *b1 {
                return Err(damaged(
                    len,
                    format!(
                        "the segment ends at log offset {} but the next begins at {b1}",
                        b0 + len
                    ),
                ));
            }
        }
        let (base, seg) = segs.last().cloned().unwrap_or((0, path.clone()));
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&seg)
            .map_err(io(&seg))?;
        let len = file.metadata().map_err(io(&seg))?.len();
        let mut w = Window::new(&file, len);
        let end = intact_prefix(&mut w).map_err(io(&seg))?;
        let mut torn = None;
        if end < len {
            let tail = len - end;
            let damaged = |what: String| StreamError::Damaged {
                path: seg.clone(),
                offset: end,
                what,
            };
            if tail > MAX_UNSYNCED {
                return Err(damaged(format!(
                    "{tail} bytes after the last intact record, more than a crash can leave ({MAX_UNSYNCED} unsynced at most)"
                )));
            }
            let mut budget = OPEN_SCAN_BUDGET;
            match next_intact(&mut w, end, &mut budget).map_err(io(&seg))? {
                Ok(Some(q)) => {
                    return Err(damaged(format!(
                        "the record there is not intact, and an intact one follows at byte {q}"
                    )));
                }
                Err(()) => {
                    return Err(damaged(format!(
                        "the {tail} bytes from there are not intact, and no intact record after them could be ruled out within {OPEN_SCAN_BUDGET} bytes of checksumming"
                    )));
                }
                Ok(None) => {
                    file.set_len(end).map_err(io(&seg))?;
                    file.sync_all().map_err(io(&seg))?;
                    torn = Some(TornTail {
                        offset: base + end,
                        len: tail,
                    });
                }
            }
        }
        drop(w);
        file.seek(SeekFrom::End(0)).map_err(io(&seg))?;
        Ok(FileLog {
            file,
            buf: Vec::with_capacity(WRITE_CHUNK),
            path,
            seg,
            base,
            opts,
            end: base + end,
            durable: base + end,
            dirty: false,
            torn,
        })
    }

    /// The first offset the log still holds (0 unless retention deleted
    /// segments).
    pub fn first_offset(&self) -> Result<u64, StreamError> {
        Ok(segments(&self.path)?.first().map_or(self.base, |s| s.0))
    }

    /// Starts a new segment at the current end (after a sync).
    fn roll(&mut self) -> Result<(), StreamError> {
        self.sync()?;
        let seg = segment_path(&self.path, self.end);
        // `create`, not `create_new`: an empty file a failed roll left is
        // reused; a non-empty one is refused.
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&seg)
            .map_err(|e| write_error(&seg, e))?;
        let len = file.metadata().map_err(io(&seg))?.len();
        if len != 0 {
            return Err(StreamError::Damaged {
                path: seg,
                offset: 0,
                what: format!("a new segment must start empty, this one holds {len} bytes"),
            });
        }
        if let Some(dir) = seg.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| write_error(dir, e))?;
        }
        self.file = file;
        self.base = self.end;
        self.seg = seg;
        Ok(())
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The torn tail [`FileLog::open`] cut, if it cut one.
    pub fn torn_tail(&self) -> Option<TornTail> {
        self.torn
    }

    /// The end as of the last successful sync: every record before it is
    /// on stable storage. After a failed append or sync the log stands here.
    pub fn durable_end(&self) -> u64 {
        self.durable
    }

    /// Up to `max` records from `offset`, each with its offset.
    pub fn read_entries(
        &self,
        offset: u64,
        max: usize,
    ) -> Result<(Vec<Located>, u64), StreamError> {
        read_records(&self.path, offset, max, usize::MAX, self.written_end())
    }

    /// End of what is written to the file (appends may wait in the buffer).
    fn written_end(&self) -> u64 {
        self.end - self.buf.len() as u64
    }

    /// Truncates to the durable end if a failure left bytes past it.
    fn recover(&mut self) -> Result<(), StreamError> {
        if self.dirty {
            self.file
                .set_len(self.durable - self.base)
                .and_then(|()| self.file.sync_all())
                .map_err(|e| write_error(&self.seg, e))?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Rolls back to the durable end after `error`; returns it typed.
    fn fail(&mut self, error: std::io::Error) -> StreamError {
        self.buf.clear();
        self.end = self.durable;
        self.dirty = true;
        // Best effort now; if it fails, the next append or sync retries.
        let _ = self.recover();
        write_error(&self.seg, error)
    }

    fn write_buf(&mut self) -> Result<(), StreamError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(&self.buf) {
            return Err(self.fail(e));
        }
        self.buf.clear();
        Ok(())
    }
}

impl FrameLog for FileLog {
    fn append(&mut self, payload: &[u8]) -> Result<u64, StreamError> {
        if payload.len() > MAX_RECORD {
            return Err(StreamError::TooLarge {
                len: payload.len(),
                max: MAX_RECORD,
            });
        }
        if payload.is_empty() {
            return Err(StreamError::Malformed(
                "a log record cannot be empty".into(),
            ));
        }
        self.recover()?;
        let len = (HEADER_LEN + payload.len()) as u64;
        if self.end > self.base
            && (self.end - self.base).saturating_add(len) > self.opts.segment_bytes
        {
            self.roll()?;
        }
        if self.end > self.durable && self.end - self.durable + len > MAX_UNSYNCED {
            self.sync()?;
        }
        let offset = self.end;
        self.buf
            .extend_from_slice(&RecordHeader::of(payload).to_bytes());
        self.buf.extend_from_slice(payload);
        self.end += len;
        if self.buf.len() >= WRITE_CHUNK {
            self.write_buf()?;
        }
        Ok(offset)
    }

    fn sync(&mut self) -> Result<(), StreamError> {
        self.recover()?;
        if self.end == self.durable {
            return Ok(());
        }
        self.write_buf()?;
        if let Err(e) = self.file.sync_data() {
            return Err(self.fail(e));
        }
        self.durable = self.end;
        Ok(())
    }

    fn end(&self) -> u64 {
        self.end
    }

    fn read_from(&self, offset: u64, max: usize) -> Result<(Vec<Vec<u8>>, u64), StreamError> {
        let (recs, next) = read_records(&self.path, offset, max, usize::MAX, self.written_end())?;
        Ok((recs.into_iter().map(|(_, r)| r).collect(), next))
    }
}

impl Drop for FileLog {
    fn drop(&mut self) {
        // Unsynced appends were never acknowledged; writing them is only a
        // courtesy to callers that drop without a sync.
        if !self.dirty {
            let _ = self.write_buf();
        }
    }
}

/// A read-only view of a [`FileLog`] for other threads: reads whole records
/// up to an end offset the writer has published (after its sync).
#[derive(Debug, Clone)]
pub struct LogReader {
    path: PathBuf,
}

impl LogReader {
    /// A reader of the log file at `path`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        LogReader {
            path: path.as_ref().to_path_buf(),
        }
    }

    /// Reads up to `max` records from `offset`, never past `end`
    /// (fillers are skipped).
    pub fn read_from(
        &self,
        offset: u64,
        max: usize,
        end: u64,
    ) -> Result<(Vec<Vec<u8>>, u64), StreamError> {
        let (recs, next) = read_records(&self.path, offset, max, usize::MAX, end)?;
        Ok((recs.into_iter().map(|(_, r)| r).collect(), next))
    }

    /// [`LogReader::read_from`], stopping once the payloads read add up to
    /// `max_bytes` (so at most `max_bytes` plus one record).
    pub fn read_capped(
        &self,
        offset: u64,
        max: usize,
        max_bytes: usize,
        end: u64,
    ) -> Result<(Vec<Vec<u8>>, u64), StreamError> {
        let (recs, next) = read_records(&self.path, offset, max, max_bytes, end)?;
        Ok((recs.into_iter().map(|(_, r)| r).collect(), next))
    }
}

impl FileLog {
    /// A reader of this log for other threads.
    pub fn reader(&self) -> LogReader {
        LogReader::new(&self.path)
    }
}

fn read_records(
    path: &Path,
    offset: u64,
    max: usize,
    max_bytes: usize,
    end: u64,
) -> Result<(Vec<Located>, u64), StreamError> {
    let corrupt = |at: u64, what: &str| StreamError::Corrupt {
        path: path.to_path_buf(),
        offset: at,
        what: what.into(),
    };
    if offset > end {
        return Err(corrupt(offset, "offset beyond the end of the log"));
    }
    if offset == end || max == 0 {
        return Ok((Vec::new(), offset));
    }
    let segs = segments(path)?;
    let first = segs.first().map_or(0, |s| s.0);
    let deleted = || StreamError::Deleted {
        path: path.to_path_buf(),
        offset,
        first,
    };
    let Some(mut i) = segs.iter().rposition(|s| s.0 <= offset) else {
        return Err(deleted());
    };
    let mut out = Vec::new();
    let mut pos = offset;
    let mut bytes = 0usize;
    while let Some((base, file)) = segs.get(i) {
        let stop = segs.get(i + 1).map_or(end, |n| n.0.min(end));
        let cap = (max, max_bytes);
        pos = match read_segment(file, *base, pos, cap, stop, &mut out, &mut bytes) {
            Err(StreamError::Io { error, .. })
                if error.kind() == std::io::ErrorKind::NotFound && out.is_empty() =>
            {
                return Err(deleted());
            }
            r => r?,
        };
        if out.len() >= max || bytes >= max_bytes || pos >= end || pos < stop {
            break;
        }
        i += 1;
    }
    Ok((out, pos))
}

/// Reads records of the segment `file` (starting at log offset `base`)
/// from log offset `offset` into `out` until `max` records, `max_bytes` of
/// payload (counted in `bytes`) or `stop`.
fn read_segment(
    file: &Path,
    base: u64,
    offset: u64,
    (max, max_bytes): (usize, usize),
    stop: u64,
    out: &mut Vec<Located>,
    bytes: &mut usize,
) -> Result<u64, StreamError> {
    let corrupt = |at: u64, what: &str| StreamError::Corrupt {
        path: file.to_path_buf(),
        offset: at,
        what: what.into(),
    };
    let mut f = File::open(file).map_err(io(file))?;
    f.seek(SeekFrom::Start(offset - base)).map_err(io(file))?;
    let mut r = std::io::BufReader::with_capacity(1 << 16, f);
    let mut pos = offset;
    while out.len() < max && pos < stop && *bytes < max_bytes {
        let mut hdr = [0u8; HEADER_LEN];
        r.read_exact(&mut hdr)
            .map_err(|_| corrupt(pos, "truncated record header"))?;
        let h = RecordHeader::from_bytes(&hdr).map_err(|_| corrupt(pos, "bad record length"))?;
        let next = pos + (HEADER_LEN as u64) + h.body_len();
        if next > stop || h.len == 0 {
            return Err(corrupt(pos, "bad record length"));
        }
        if h.len & FILLER_FLAG != 0 {
            if !h.is_filler() {
                return Err(corrupt(pos, "bad filler header"));
            }
            r.seek_relative(h.body_len() as i64).map_err(io(file))?;
            pos = next;
            continue;
        }
        let mut payload = vec![0u8; h.len as usize];
        r.read_exact(&mut payload)
            .map_err(|_| corrupt(pos, "truncated record"))?;
        if !h.matches(&payload) {
            return Err(corrupt(pos, "record checksum mismatch"));
        }
        *bytes = bytes.saturating_add(payload.len());
        out.push((pos, payload));
        pos = next;
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("aorta-log-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&d);
        d
    }

    #[test]
    fn append_read_and_torn_tail() {
        let p = tmp("torn");
        let mut log = FileLog::open(&p).unwrap();
        let a = log.append(b"alpha").unwrap();
        let b = log.append(b"e").unwrap();
        let c = log.append(&[7u8; 1000]).unwrap();
        log.sync().unwrap();
        assert_eq!((a, b, c), (0, 13, 22));
        let (recs, next) = log.read_from(0, 10).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(next, log.end());
        let (recs, _) = log.read_from(b, 1).unwrap();
        assert_eq!(recs, vec![b"e".to_vec()]);
        drop(log);
        // Every possible torn tail is cut back to the last whole record.
        let full = std::fs::read(&p).unwrap();
        let c0 = c as usize;
        let cuts = (c0..c0 + 9)
            .chain((c0 + 9..full.len()).step_by(97))
            .chain([full.len() - 1]);
        for cut in cuts {
            std::fs::write(&p, &full[..cut]).unwrap();
            let log = FileLog::open(&p).unwrap();
            assert_eq!(log.end(), c, "cut {cut}");
            assert_eq!(std::fs::metadata(&p).unwrap().len(), c);
        }
        // A flipped bit in the last record also cuts it.
        let mut bad = full.clone();
        *bad.last_mut().unwrap() ^= 1;
        std::fs::write(&p, &bad).unwrap();
        assert_eq!(FileLog::open(&p).unwrap().end(), c);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn refuses_oversize_and_bad_offsets() {
        let p = tmp("oversize");
        let mut log = FileLog::open(&p).unwrap();
        assert!(matches!(
            log.append(&vec![0; MAX_RECORD + 1]),
            Err(StreamError::TooLarge { .. })
        ));
        log.append(b"x").unwrap();
        log.sync().unwrap();
        assert!(log.read_from(3, 1).is_err(), "offset inside a record");
        assert!(log.read_from(100, 1).is_err());
        let _ = std::fs::remove_file(&p);
    }
}
