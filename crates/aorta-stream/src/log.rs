//! The durable log of accepted input.
//!
//! [`FrameLog`] is what ingest appends to before it acknowledges, and what a
//! restarted worker replays from its last checkpoint. [`FileLog`] is the
//! embedded implementation: one append-only file of records
//!
//! | bytes | field |
//! |---|---|
//! | 4 | payload length `n`, u32 little-endian (≤ [`MAX_RECORD`]) |
//! | 4 | CRC-32 (IEEE) of the payload, u32 little-endian |
//! | n | payload |
//!
//! A record's offset is the byte position of its header. A crash can leave a
//! torn record at the end (short header, short payload or CRC mismatch);
//! opening the log cuts it off, so the log only ever holds whole records.
//! [`FrameLog::sync`] returns once everything appended is on stable storage:
//! acknowledge only after it.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};

use crate::StreamError;

/// Largest payload one record may hold (16 MiB).
pub const MAX_RECORD: usize = 16 << 20;

/// A record's header in the log file: the payload's length (at most
/// [`MAX_RECORD`]) and CRC-32, both u32 little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Payload length.
    pub len: u32,
    /// CRC-32 (IEEE) of the payload.
    pub crc: u32,
}

/// Bytes of a [`RecordHeader`].
pub const HEADER_LEN: usize = 8;

impl RecordHeader {
    /// The header of `payload` (whose length the caller checked against
    /// [`MAX_RECORD`]).
    pub fn of(payload: &[u8]) -> Self {
        RecordHeader {
            len: payload.len() as u32,
            crc: crc32fast::hash(payload),
        }
    }

    /// True when `payload` is the one this header describes.
    pub fn matches(&self, payload: &[u8]) -> bool {
        payload.len() == self.len as usize && crc32fast::hash(payload) == self.crc
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
        if len as usize > MAX_RECORD {
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

/// The file-backed [`FrameLog`].
#[derive(Debug)]
pub struct FileLog {
    path: PathBuf,
    writer: BufWriter<File>,
    end: u64,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StreamError + '_ {
    move |error| StreamError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Scans whole records from the start of `bytes`; returns the end of the last whole record.
fn valid_prefix(bytes: &[u8]) -> u64 {
    let mut pos = 0usize;
    while let Some((len, next)) = record_at(bytes, pos) {
        let _ = len;
        pos = next;
    }
    pos as u64
}

/// The payload range and next offset of the record at `pos`, if whole and intact.
fn record_at(bytes: &[u8], pos: usize) -> Option<(std::ops::Range<usize>, usize)> {
    let h = RecordHeader::from_bytes(bytes.get(pos..pos.checked_add(HEADER_LEN)?)?).ok()?;
    let start = pos + HEADER_LEN;
    let end = start.checked_add(h.len as usize)?;
    h.matches(bytes.get(start..end)?)
        .then_some((start..end, end))
}

impl FileLog {
    /// Opens (creating if needed) the log at `path`, cutting off a torn tail.
    pub fn open(path: impl AsRef<Path>) -> Result<FileLog, StreamError> {
        let path = path.as_ref().to_path_buf();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(&path))?;
        let end = valid_prefix(&bytes);
        if end != bytes.len() as u64 {
            file.set_len(end).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
        }
        file.seek(SeekFrom::End(0)).map_err(io(&path))?;
        Ok(FileLog {
            writer: BufWriter::with_capacity(1 << 16, file),
            path,
            end,
        })
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
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
        let offset = self.end;
        let path = &self.path;
        self.writer
            .write_all(&RecordHeader::of(payload).to_bytes())
            .map_err(io(path))?;
        self.writer.write_all(payload).map_err(io(path))?;
        self.end += (HEADER_LEN + payload.len()) as u64;
        Ok(offset)
    }

    fn sync(&mut self) -> Result<(), StreamError> {
        self.writer.flush().map_err(io(&self.path))?;
        self.writer.get_ref().sync_data().map_err(io(&self.path))
    }

    fn end(&self) -> u64 {
        self.end
    }

    fn read_from(&self, offset: u64, max: usize) -> Result<(Vec<Vec<u8>>, u64), StreamError> {
        read_records(&self.path, offset, max, usize::MAX, self.end)
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

    /// Reads up to `max` records from `offset`, never past `end`.
    pub fn read_from(
        &self,
        offset: u64,
        max: usize,
        end: u64,
    ) -> Result<(Vec<Vec<u8>>, u64), StreamError> {
        read_records(&self.path, offset, max, usize::MAX, end)
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
        read_records(&self.path, offset, max, max_bytes, end)
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
) -> Result<(Vec<Vec<u8>>, u64), StreamError> {
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
    let mut f = File::open(path).map_err(io(path))?;
    f.seek(SeekFrom::Start(offset)).map_err(io(path))?;
    let mut r = std::io::BufReader::with_capacity(1 << 16, f);
    let mut out = Vec::new();
    let mut pos = offset;
    let mut bytes = 0usize;
    while out.len() < max && pos < end && bytes < max_bytes {
        let mut hdr = [0u8; HEADER_LEN];
        r.read_exact(&mut hdr)
            .map_err(|_| corrupt(pos, "truncated record header"))?;
        let h = RecordHeader::from_bytes(&hdr).map_err(|_| corrupt(pos, "bad record length"))?;
        let next = pos + (HEADER_LEN as u64) + u64::from(h.len);
        if next > end {
            return Err(corrupt(pos, "bad record length"));
        }
        let mut payload = vec![0u8; h.len as usize];
        r.read_exact(&mut payload)
            .map_err(|_| corrupt(pos, "truncated record"))?;
        if !h.matches(&payload) {
            return Err(corrupt(pos, "record checksum mismatch"));
        }
        bytes = bytes.saturating_add(payload.len());
        out.push(payload);
        pos = next;
    }
    Ok((out, pos))
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
        let b = log.append(b"").unwrap();
        let c = log.append(&[7u8; 1000]).unwrap();
        log.sync().unwrap();
        assert_eq!((a, b, c), (0, 13, 21));
        let (recs, next) = log.read_from(0, 10).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(next, log.end());
        let (recs, _) = log.read_from(b, 1).unwrap();
        assert_eq!(recs, vec![Vec::<u8>::new()]);
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
