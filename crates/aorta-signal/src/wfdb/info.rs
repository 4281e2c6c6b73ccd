//! What a WFDB record holds: its header, sample counts and (optionally) how
//! many annotations and beats an annotator's file lists. The JSON of
//! [`RecordInfo`] is what `aorta wfdb info --json` prints.

use std::path::{Path, PathBuf};

use super::{Header, ReadOptions, Record, WfdbError, read_annotations};

/// A record's header and counts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RecordInfo {
    /// The parsed header.
    pub header: Header,
    /// Samples read per signal, in header order.
    pub samples_per_signal: Vec<usize>,
    /// Annotations in the annotator's file (when one was asked for).
    pub annotations: Option<usize>,
    /// Beat annotations among them.
    pub beats: Option<usize>,
}

/// Reads the record at `record` (path without extension, or its `.hea`)
/// with `opts` and, when `annotator` is given (e.g. `atr`), its annotation
/// file `record.ANNOTATOR`.
pub fn record_info(
    record: &Path,
    opts: ReadOptions,
    annotator: Option<&str>,
) -> Result<RecordInfo, WfdbError> {
    let rec = Record::read_with(record, opts)?;
    let anns = match annotator {
        Some(a) => {
            let mut p = record.with_extension("").into_os_string();
            p.push(format!(".{a}"));
            Some(read_annotations(PathBuf::from(p))?)
        }
        None => None,
    };
    Ok(RecordInfo {
        samples_per_signal: rec.samples.iter().map(Vec::len).collect(),
        header: rec.header,
        annotations: anns.as_ref().map(Vec::len),
        beats: anns.map(|a| a.iter().filter(|x| x.is_beat()).count()),
    })
}
