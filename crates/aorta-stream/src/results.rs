//! The results store: idempotent by result id.
//!
//! A result's id is deterministic (`key/start/end/kind`), so a result
//! recomputed while replaying the log after a crash has the id of the one
//! already stored, and [`ResultSink::put`] ignores it. [`FileResultStore`]
//! keeps results in a [`FileLog`] of `id \0 payload` records and rebuilds
//! its id index when opened. It shares the log's guarantees: damage is
//! refused at open ([`StreamError::Damaged`]), and a failed `put` or `sync`
//! rolls the file back to its last durable end and forgets the ids stored
//! since then ([`StreamError::StorageFull`] on a full disk or quota), so a
//! retry after the error stores them again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::StreamError;
use crate::log::{FileLog, FrameLog, LogOptions};

/// A stored result: `(id, payload)`.
pub type StoredResult = (String, Vec<u8>);

/// A store of results keyed by id.
pub trait ResultSink {
    /// Stores `payload` under `id` unless `id` is already present; returns
    /// whether it was new. Durable after [`ResultSink::sync`].
    fn put(&mut self, id: &str, payload: &[u8]) -> Result<bool, StreamError>;
    /// Makes stored results durable.
    fn sync(&mut self) -> Result<(), StreamError>;
}

/// The file-backed [`ResultSink`].
#[derive(Debug)]
pub struct FileResultStore {
    log: FileLog,
    path: PathBuf,
    opts: LogOptions,
    ids: HashSet<String>,
    /// Ids stored since the last successful sync, with their offsets.
    pending: Vec<(u64, String)>,
}

impl FileResultStore {
    /// Opens (creating) the store at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StreamError> {
        FileResultStore::open_with(path, LogOptions::default())
    }

    /// [`FileResultStore::open`] with segments ([`LogOptions`]): retention
    /// deletes whole old segments ([`crate::log::retire_segments`] with
    /// `covered = u64::MAX` and the cutoff time); reads of a deleted offset
    /// are [`StreamError::Deleted`], which names the first offset kept.
    pub fn open_with(path: impl AsRef<Path>, opts: LogOptions) -> Result<Self, StreamError> {
        let path = path.as_ref().to_path_buf();
        let log = FileLog::open_with(&path, opts)?;
        let mut ids = HashSet::new();
        let mut offset = log.first_offset()?;
        loop {
            let (recs, next) = log.read_from(offset, 4096)?;
            if recs.is_empty() {
                break;
            }
            for r in recs {
                let id = r.split(|b| *b == 0).next().unwrap_or_default();
                ids.insert(String::from_utf8_lossy(id).into_owned());
            }
            offset = next;
        }
        Ok(FileResultStore {
            log,
            path,
            opts,
            ids,
            pending: Vec::new(),
        })
    }

    /// After a failed append or sync (the log rolled back to its durable
    /// end): forgets the ids whose records are gone.
    fn forget_rolled_back(&mut self) {
        let durable = self.log.durable_end();
        for (off, id) in self.pending.drain(..) {
            if off >= durable {
                self.ids.remove(&id);
            }
        }
    }

    /// Erases in place, in every segment, each stored result whose id
    /// `select` picks ([`crate::log::erase`]: fillers, zeros, fsync; every
    /// other result keeps its offset, so readers' cursors stay valid), then
    /// reopens the store (the erased ids are forgotten). Nobody else may
    /// write the file meanwhile: the caller holds the store exclusively.
    pub fn erase_where(
        &mut self,
        mut select: impl FnMut(&str) -> bool,
    ) -> Result<crate::log::Erased, StreamError> {
        self.sync()?;
        let erased = crate::log::erase_segments(&self.path, |record| {
            let id = record.split(|b| *b == 0).next().unwrap_or_default();
            std::str::from_utf8(id).is_ok_and(&mut select)
        })?;
        *self = FileResultStore::open_with(&self.path, self.opts)?;
        Ok(erased)
    }

    /// The log's durable end (see [`FileLog::durable_end`]).
    pub fn durable_end(&self) -> u64 {
        self.log.durable_end()
    }

    /// Number of results held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Up to `max` `(id, payload)` from store offset `offset` (0 = start),
    /// with the offset to continue from: a reader's cursor.
    pub fn read_from(
        &self,
        offset: u64,
        max: usize,
    ) -> Result<(Vec<StoredResult>, u64), StreamError> {
        let (recs, next) = self.log.read_from(offset, max)?;
        let out = recs
            .into_iter()
            .map(|r| {
                let mut parts = r.splitn(2, |b| *b == 0);
                let id = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                (id, parts.next().unwrap_or_default().to_vec())
            })
            .collect();
        Ok((out, next))
    }

    /// Offset one past the last stored result.
    pub fn end(&self) -> u64 {
        self.log.end()
    }

    /// Every `(id, payload)` in insertion order.
    pub fn all(&self) -> Result<Vec<(String, Vec<u8>)>, StreamError> {
        let mut out = Vec::new();
        let mut offset = self.log.first_offset()?;
        loop {
            let (recs, next) = self.log.read_from(offset, 4096)?;
            if recs.is_empty() {
                return Ok(out);
            }
            for r in recs {
                let mut parts = r.splitn(2, |b| *b == 0);
                let id = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
                out.push((id, parts.next().unwrap_or_default().to_vec()));
            }
            offset = next;
        }
    }
}

impl ResultSink for FileResultStore {
    fn put(&mut self, id: &str, payload: &[u8]) -> Result<bool, StreamError> {
        if id.as_bytes().contains(&0) {
            return Err(StreamError::Malformed("result id contains NUL".into()));
        }
        if self.ids.contains(id) {
            return Ok(false);
        }
        let mut rec = Vec::with_capacity(id.len() + 1 + payload.len());
        rec.extend_from_slice(id.as_bytes());
        rec.push(0);
        rec.extend_from_slice(payload);
        match self.log.append(&rec) {
            Ok(off) => {
                self.ids.insert(id.to_string());
                self.pending.push((off, id.to_string()));
                Ok(true)
            }
            Err(e) => {
                self.forget_rolled_back();
                Err(e)
            }
        }
    }

    fn sync(&mut self) -> Result<(), StreamError> {
        match self.log.sync() {
            Ok(()) => {
                self.pending.clear();
                Ok(())
            }
            Err(e) => {
                self.forget_rolled_back();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_ignored_across_reopen() {
        let p = std::env::temp_dir().join(format!("aorta-results-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let mut s = FileResultStore::open(&p).unwrap();
        assert!(s.put("k/0/10", b"a").unwrap());
        assert!(!s.put("k/0/10", b"a").unwrap());
        assert!(s.put("k/10/20", b"b").unwrap());
        s.sync().unwrap();
        drop(s);
        let mut s = FileResultStore::open(&p).unwrap();
        assert!(!s.put("k/0/10", b"a").unwrap());
        assert_eq!(s.len(), 2);
        assert_eq!(s.all().unwrap()[1], ("k/10/20".to_string(), b"b".to_vec()));
        assert!(s.put("bad\0id", b"").is_err());
        let _ = std::fs::remove_file(&p);
    }
}
