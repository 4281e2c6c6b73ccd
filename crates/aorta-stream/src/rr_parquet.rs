//! Parquet files of RR events, read and written with the `parquet` crate's
//! low-level column API (no Arrow): each column of a row group is decoded in
//! batches straight into a reused typed buffer, then zipped into events.
//!
//! The schema is exactly (any column order on read, `required` or `optional`
//! columns; an optional column holding a null is rejected):
//!
//! | column       | physical | logical                              | Arrow type                |
//! |--------------|----------|--------------------------------------|---------------------------|
//! | `patient_id` | INT32    | none or INT(32, signed)              | `int32`                   |
//! | `event_time` | INT64    | TIMESTAMP(isAdjustedToUTC=true, MICROS) | `timestamp[us, tz=UTC]` |
//! | `rr_ms`      | DOUBLE   | none                                 | `double`                  |
//!
//! Any other schema, a truncated or garbled file, a null, a non-finite
//! `rr_ms` or an `event_time` beyond ±10¹⁸ µs is a [`StreamError::Corrupt`]
//! naming the file. The decoder runs under `catch_unwind`, so that should
//! the `parquet` crate panic on hostile bytes, the caller still gets a typed
//! error. An allocation failure aborts instead, so before decoding, every
//! column chunk must lie inside the file and every page header in it must
//! declare sizes and counts its stored bytes can hold (`parquet_pages`: a
//! page's uncompressed size at most 64 MiB and 32 times its stored size, a
//! dictionary no more values than its bytes), and every list in the footer
//! must claim no more elements than the footer has bytes: the decoder's
//! allocations and loops are then bounded by a small multiple of the file's
//! size.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::{Compression, LogicalType, TimeUnit, Type as PhysicalType};
use parquet::column::reader::{ColumnReaderImpl, get_typed_column_reader};
use parquet::data_type::{DataType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{ChunkReader, FileReader, RowGroupReader};
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnDescriptor;

use crate::StreamError;
use crate::rr::RrEvent;

/// The Parquet schema aorta writes.
pub const SCHEMA: &str = "message rr {
  required int32 patient_id;
  required int64 event_time (TIMESTAMP(MICROS,true));
  required double rr_ms;
}";

/// Largest |event_time| accepted, µs (as the CSV reader's 18 digits).
const MAX_TIME: i64 = 1_000_000_000_000_000_000;

/// Values decoded per `read_records` call.
const BATCH: usize = 1 << 16;

/// Rows per row group written.
const ROW_GROUP: usize = 1 << 20;

fn corrupt(path: &Path, what: impl std::fmt::Display) -> StreamError {
    StreamError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        what: format!("Parquet: {what}"),
    }
}

/// Reusable column buffers (they keep their capacity across row groups and files).
#[derive(Debug, Default)]
pub struct ParquetBufs {
    ids: Vec<i32>,
    times: Vec<i64>,
    rrs: Vec<f64>,
    def: Vec<i16>,
}

/// Reads a whole Parquet RR file.
pub fn read_parquet_file(path: &Path) -> Result<Vec<RrEvent>, StreamError> {
    let mut out = Vec::new();
    read_parquet_file_with(path, &mut ParquetBufs::default(), &mut out)?;
    Ok(out)
}

/// Reads a Parquet RR file, appending its events to `out` (cleared first)
/// through the reusable `bufs`.
pub fn read_parquet_file_with(
    path: &Path,
    bufs: &mut ParquetBufs,
    out: &mut Vec<RrEvent>,
) -> Result<(), StreamError> {
    out.clear();
    let file = File::open(path).map_err(|error| StreamError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let pages = file.try_clone().map_err(|error| StreamError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        read_inner(path, file, pages, bufs, out)
    }));
    finish(path, result, bufs, out)
}

/// Reads Parquet bytes held in memory (the fuzz target's entry point);
/// errors name `path`.
pub fn read_parquet_bytes(
    path: &Path,
    bytes: &[u8],
    bufs: &mut ParquetBufs,
    out: &mut Vec<RrEvent>,
) -> Result<(), StreamError> {
    out.clear();
    let bytes = bytes::Bytes::copy_from_slice(bytes);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        read_inner(path, bytes.clone(), bytes, bufs, out)
    }));
    finish(path, result, bufs, out)
}

fn finish(
    path: &Path,
    result: std::thread::Result<Result<(), StreamError>>,
    bufs: &mut ParquetBufs,
    out: &mut Vec<RrEvent>,
) -> Result<(), StreamError> {
    match result {
        Ok(r) => r.inspect_err(|_| out.clear()),
        Err(_) => {
            out.clear();
            *bufs = ParquetBufs::default();
            Err(corrupt(path, "the Parquet decoder failed on this file"))
        }
    }
}

/// Column indices of (patient_id, event_time, rr_ms), checked against the schema.
fn check_schema(path: &Path, cols: &[Arc<ColumnDescriptor>]) -> Result<[usize; 3], StreamError> {
    let want = "expected exactly the columns patient_id int32, \
                event_time timestamp[us, tz=UTC], rr_ms double";
    if cols.len() != 3 {
        return Err(corrupt(path, format!("{} column(s); {want}", cols.len())));
    }
    let mut idx = [usize::MAX; 3];
    for (i, c) in cols.iter().enumerate() {
        let name = c.path().parts().join(".");
        if c.max_rep_level() != 0 || c.max_def_level() > 1 {
            return Err(corrupt(path, format!("column {name} is nested; {want}")));
        }
        let logical = c.logical_type_ref();
        let (slot, ok) = match name.as_str() {
            "patient_id" => (
                0,
                c.physical_type() == PhysicalType::INT32
                    && match logical {
                        None => true,
                        Some(LogicalType::Integer(t)) => t.bit_width == 32 && t.is_signed,
                        Some(_) => false,
                    },
            ),
            "event_time" => (
                1,
                c.physical_type() == PhysicalType::INT64
                    && matches!(logical, Some(LogicalType::Timestamp(t))
                        if t.is_adjusted_to_u_t_c && t.unit == TimeUnit::MICROS),
            ),
            "rr_ms" => (
                2,
                c.physical_type() == PhysicalType::DOUBLE && logical.is_none(),
            ),
            other => {
                return Err(corrupt(
                    path,
                    format!("unexpected column {other:?}; {want}"),
                ));
            }
        };
        if !ok {
            return Err(corrupt(
                path,
                format!(
                    "column {name} has type {} {:?}; {want}",
                    c.physical_type(),
                    logical
                ),
            ));
        }
        match idx.get_mut(slot) {
            Some(s) if *s == usize::MAX => *s = i,
            _ => return Err(corrupt(path, format!("column {name} appears twice"))),
        }
    }
    Ok(idx)
}

/// Decodes one column of a row group into `values` (cleared first).
fn read_column<T: DataType>(
    path: &Path,
    rg: &dyn RowGroupReader,
    i: usize,
    name: &str,
    values: &mut Vec<T::T>,
    def: &mut Vec<i16>,
) -> Result<(), StreamError>
where
    T::T: Copy + Default,
{
    values.clear();
    let reader = rg
        .get_column_reader(i)
        .map_err(|e| corrupt(path, format!("column {name}: {e}")))?;
    let mut col: ColumnReaderImpl<T> = get_typed_column_reader(reader);
    loop {
        def.clear();
        let (records, vals, _) = col
            .read_records(BATCH, Some(def), None, values)
            .map_err(|e| corrupt(path, format!("column {name}: {e}")))?;
        if records == 0 {
            return Ok(());
        }
        if vals != records {
            return Err(corrupt(path, format!("column {name} holds a null")));
        }
    }
}

/// Decodes `file`; `pages` is a second handle on the same bytes, through
/// which the page headers are checked first.
fn read_inner<R: ChunkReader + 'static>(
    path: &Path,
    file: R,
    pages: R,
    bufs: &mut ParquetBufs,
    out: &mut Vec<RrEvent>,
) -> Result<(), StreamError> {
    let file_len = file.len();
    // The footer is outside input: its lists must fit in it before the
    // decoder loops over or reserves what they claim.
    if let Some(footer_len) = file_len
        .checked_sub(8)
        .and_then(|at| pages.get_bytes(at, 8).ok())
        .filter(|tail| tail.get(4..) == Some(b"PAR1".as_slice()))
        .and_then(|tail| {
            Some(u64::from(u32::from_le_bytes(
                tail.get(..4)?.try_into().ok()?,
            )))
        })
    {
        let footer = file_len
            .checked_sub(8 + footer_len)
            .filter(|&at| at >= 4)
            .and_then(|at| pages.get_bytes(at, usize::try_from(footer_len).ok()?).ok())
            .ok_or_else(|| {
                corrupt(
                    path,
                    format!("a footer of {footer_len} bytes in a file of {file_len}"),
                )
            })?;
        crate::parquet_pages::check_footer(&footer).map_err(|e| corrupt(path, e))?;
    }
    let reader = SerializedFileReader::new(file).map_err(|e| corrupt(path, e))?;
    let meta = reader.metadata();
    let [ip, it, ir] = check_schema(path, meta.file_metadata().schema_descr().columns())?;
    // The footer is outside input: check every column chunk's byte range
    // before the decoder trusts it (parquet 59 asserts on negative ones).
    for (g, rg) in meta.row_groups().iter().enumerate() {
        for c in rg.columns() {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let in_file = u64::try_from(start)
                .ok()
                .zip(u64::try_from(c.compressed_size()).ok())
                .and_then(|(s, l)| s.checked_add(l))
                .is_some_and(|end| end <= file_len)
                && c.data_page_offset() >= 0;
            if !in_file {
                return Err(corrupt(
                    path,
                    format!("row group {g}: a column chunk lies outside the file"),
                ));
            }
        }
    }
    // The page headers are outside input too: check them before the decoder
    // allocates what they declare.
    for (g, rg) in meta.row_groups().iter().enumerate() {
        for c in rg.columns() {
            let name = c.column_descr().name();
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let chunk = crate::parquet_pages::Chunk {
                len: u64::try_from(c.compressed_size()).unwrap_or(0),
                num_values: u64::try_from(c.num_values()).map_err(|_| {
                    corrupt(
                        path,
                        format!("row group {g}, column {name}: a negative count"),
                    )
                })?,
                value_width: if c.column_type() == PhysicalType::INT32 {
                    4
                } else {
                    8
                },
            };
            let input = u64::try_from(start)
                .ok()
                .and_then(|s| pages.get_read(s).ok())
                .ok_or_else(|| {
                    corrupt(path, format!("row group {g}, column {name}: unreadable"))
                })?;
            crate::parquet_pages::check_chunk(input, chunk)
                .map_err(|e| corrupt(path, format!("row group {g}, column {name}: {e}")))?;
        }
    }
    for g in 0..reader.num_row_groups() {
        let rg = reader
            .get_row_group(g)
            .map_err(|e| corrupt(path, format!("row group {g}: {e}")))?;
        let ParquetBufs {
            ids,
            times,
            rrs,
            def,
        } = bufs;
        read_column::<Int32Type>(path, &*rg, ip, "patient_id", ids, def)?;
        read_column::<Int64Type>(path, &*rg, it, "event_time", times, def)?;
        read_column::<DoubleType>(path, &*rg, ir, "rr_ms", rrs, def)?;
        let rows = usize::try_from(rg.metadata().num_rows()).unwrap_or(usize::MAX);
        if ids.len() != rows || times.len() != rows || rrs.len() != rows {
            return Err(corrupt(
                path,
                format!(
                    "row group {g} declares {rows} rows but its columns hold {}, {} and {} values",
                    ids.len(),
                    times.len(),
                    rrs.len()
                ),
            ));
        }
        out.reserve(rows);
        for ((&patient_id, &event_time), &rr_ms) in ids.iter().zip(times.iter()).zip(rrs.iter()) {
            if !rr_ms.is_finite() || !(-MAX_TIME..MAX_TIME).contains(&event_time) {
                return Err(corrupt(
                    path,
                    format!(
                        "row group {g}: event ({patient_id}, {event_time}, {rr_ms}) \
                         needs a finite rr_ms and |event_time| < 10^18 µs"
                    ),
                ));
            }
            out.push(RrEvent {
                patient_id,
                event_time,
                rr_ms,
            });
        }
    }
    Ok(())
}

/// Writes `events` as a Parquet file with [`SCHEMA`] (Snappy-compressed
/// pages, row groups of 2²⁰ rows).
pub fn write_parquet_file(path: &Path, events: &[RrEvent]) -> Result<(), StreamError> {
    let err = |e: parquet::errors::ParquetError| corrupt(path, format!("writing: {e}"));
    let schema = Arc::new(parse_message_type(SCHEMA).map_err(err)?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by("aorta".into())
            .build(),
    );
    let file = File::create(path).map_err(|error| StreamError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let mut w = SerializedFileWriter::new(file, schema, props).map_err(err)?;
    let missing = || corrupt(path, "writing: the schema lost a column");
    for chunk in events.chunks(ROW_GROUP) {
        let mut rg = w.next_row_group().map_err(err)?;
        let ids: Vec<i32> = chunk.iter().map(|e| e.patient_id).collect();
        let mut c = rg.next_column().map_err(err)?.ok_or_else(missing)?;
        c.typed::<Int32Type>()
            .write_batch(&ids, None, None)
            .map_err(err)?;
        c.close().map_err(err)?;
        let times: Vec<i64> = chunk.iter().map(|e| e.event_time).collect();
        let mut c = rg.next_column().map_err(err)?.ok_or_else(missing)?;
        c.typed::<Int64Type>()
            .write_batch(&times, None, None)
            .map_err(err)?;
        c.close().map_err(err)?;
        let rrs: Vec<f64> = chunk.iter().map(|e| e.rr_ms).collect();
        let mut c = rg.next_column().map_err(err)?.ok_or_else(missing)?;
        c.typed::<DoubleType>()
            .write_batch(&rrs, None, None)
            .map_err(err)?;
        c.close().map_err(err)?;
        rg.close().map_err(err)?;
    }
    w.close().map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::column::writer::ColumnWriter;

    /// A fresh directory per test, removed when dropped.
    fn tmpdir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("aorta-rrpq-")
            .tempdir()
            .unwrap()
    }

    fn events(n: usize) -> Vec<RrEvent> {
        (0..n)
            .map(|i| RrEvent {
                patient_id: (i % 5) as i32 - 1,
                event_time: 1_767_225_600_000_000 + 1000 * i as i64,
                rr_ms: 700.0 + (i as f64 * 0.37).sin() * 150.0,
            })
            .collect()
    }

    /// Writes `rows` rows under any flat schema of INT32/INT64/DOUBLE/FLOAT
    /// columns; optional columns get a null in row 0 when `null` is set.
    fn write_schema(path: &Path, schema: &str, rows: usize, null: bool) {
        let schema = Arc::new(parse_message_type(schema).unwrap());
        let props = Arc::new(WriterProperties::builder().build());
        let mut w =
            SerializedFileWriter::new(File::create(path).unwrap(), schema.clone(), props).unwrap();
        let mut rg = w.next_row_group().unwrap();
        let descr = parquet::schema::types::SchemaDescriptor::new(schema.clone());
        let mut k = 0;
        while let Some(mut c) = rg.next_column().unwrap() {
            let col = descr.column(k);
            k += 1;
            let optional = col.max_def_level() > 0;
            let defs: Vec<i16> = (0..rows)
                .map(|i| {
                    if null && i == 0 {
                        0
                    } else {
                        col.max_def_level()
                    }
                })
                .collect();
            let reps = vec![0i16; rows];
            let n = if null && optional { rows - 1 } else { rows };
            let defs = optional.then_some(&defs[..]);
            let reps = (col.max_rep_level() > 0).then_some(&reps[..]);
            match c.untyped() {
                ColumnWriter::Int32ColumnWriter(w) => {
                    w.write_batch(&vec![1i32; n], defs, reps).unwrap();
                }
                ColumnWriter::Int64ColumnWriter(w) => {
                    let v: Vec<i64> = (0..n as i64).map(|i| 1_767_225_600_000_000 + i).collect();
                    w.write_batch(&v, defs, reps).unwrap();
                }
                ColumnWriter::DoubleColumnWriter(w) => {
                    w.write_batch(&vec![800.0f64; n], defs, reps).unwrap();
                }
                ColumnWriter::FloatColumnWriter(w) => {
                    w.write_batch(&vec![800.0f32; n], defs, reps).unwrap();
                }
                _ => unreachable!("test schemas use int32/int64/double/float"),
            }
            c.close().unwrap();
        }
        rg.close().unwrap();
        w.close().unwrap();
    }

    fn assert_corrupt(path: &Path, label: &str) -> String {
        match read_parquet_file(path) {
            Err(e @ StreamError::Corrupt { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains(&path.display().to_string()), "{label}: {msg}");
                msg
            }
            other => panic!("{label}: expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn round_trip_is_exact() {
        let d = tmpdir();
        let p = d.path().join("rt.parquet");
        let evs = events(3000);
        write_parquet_file(&p, &evs).unwrap();
        assert_eq!(read_parquet_file(&p).unwrap(), evs);
        write_parquet_file(&p, &[]).unwrap();
        assert_eq!(read_parquet_file(&p).unwrap(), vec![]);
    }

    /// A file written by pyarrow (tools/rr_parquet_pyarrow.py fixture):
    /// nullable columns, Snappy, dictionary pages, four row groups, columns
    /// in another order; every value equals the CSV twin bit for bit.
    #[test]
    fn pyarrow_written_fixture_reads_exactly() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"));
        let got = read_parquet_file(&dir.join("rr-pyarrow.parquet")).unwrap();
        let want = crate::rr::read_csv_file(&dir.join("rr-pyarrow.expected.csv")).unwrap();
        assert_eq!(got.len(), 1500);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(
                (g.patient_id, g.event_time, g.rr_ms.to_bits()),
                (w.patient_id, w.event_time, w.rr_ms.to_bits())
            );
        }
        assert!(got.iter().any(|e| e.patient_id < 0));
    }

    /// Files aorta writes have exactly the schema in pyarrow's eyes.
    #[test]
    fn pyarrow_sees_the_schema() {
        let ok = std::process::Command::new("python3")
            .args(["-c", "import pyarrow"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("SKIPPED pyarrow_sees_the_schema: python3 with pyarrow not available");
            return;
        }
        let d = tmpdir();
        let p = d.path().join("schema.parquet");
        write_parquet_file(&p, &events(100)).unwrap();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tools/rr_parquet_pyarrow.py"
        );
        let out = std::process::Command::new("python3")
            .arg(script)
            .arg("check")
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn wrong_schemas_are_typed_errors() {
        let d = tmpdir();
        for (i, schema) in [
            // event_time in milliseconds, nanoseconds, not UTC, plain int64
            "message m { required int32 patient_id; required int64 event_time (TIMESTAMP(MILLIS,true)); required double rr_ms; }",
            "message m { required int32 patient_id; required int64 event_time (TIMESTAMP(NANOS,true)); required double rr_ms; }",
            "message m { required int32 patient_id; required int64 event_time (TIMESTAMP(MICROS,false)); required double rr_ms; }",
            "message m { required int32 patient_id; required int64 event_time; required double rr_ms; }",
            // patient_id int64 / int16 / uint32
            "message m { required int64 patient_id; required int64 event_time (TIMESTAMP(MICROS,true)); required double rr_ms; }",
            "message m { required int32 patient_id (INTEGER(16,true)); required int64 event_time (TIMESTAMP(MICROS,true)); required double rr_ms; }",
            "message m { required int32 patient_id (INTEGER(32,false)); required int64 event_time (TIMESTAMP(MICROS,true)); required double rr_ms; }",
            // rr_ms float
            "message m { required int32 patient_id; required int64 event_time (TIMESTAMP(MICROS,true)); required float rr_ms; }",
            // missing, extra, renamed, duplicated columns
            "message m { required int32 patient_id; required int64 event_time (TIMESTAMP(MICROS,true)); }",
            "message m { required int32 patient_id; required int64 event_time (TIMESTAMP(MICROS,true)); required double rr_ms; required double x; }",
            "message m { required int32 patient; required int64 event_time (TIMESTAMP(MICROS,true)); required double rr_ms; }",
            "message m { required int32 patient_id; required int32 patient_id; required double rr_ms; }",
            // nested
            "message m { required group g { required int32 patient_id; } required int64 event_time (TIMESTAMP(MICROS,true)); required double rr_ms; }",
            "message m { repeated int32 patient_id; required int64 event_time (TIMESTAMP(MICROS,true)); required double rr_ms; }",
        ]
        .iter()
        .enumerate()
        {
            let p = d.path().join(format!("schema-{i}.parquet"));
            write_schema(&p, schema, 10, false);
            assert_corrupt(&p, schema);
        }
    }

    #[test]
    fn optional_columns_read_and_nulls_are_rejected() {
        let d = tmpdir();
        let schema = "message m { optional int32 patient_id; optional int64 event_time (TIMESTAMP(MICROS,true)); optional double rr_ms; }";
        let p = d.path().join("opt.parquet");
        write_schema(&p, schema, 10, false);
        assert_eq!(read_parquet_file(&p).unwrap().len(), 10);
        write_schema(&p, schema, 10, true);
        assert!(assert_corrupt(&p, "null").contains("null"));
    }

    #[test]
    fn non_finite_and_far_times_are_rejected() {
        let d = tmpdir();
        let p = d.path().join("nan.parquet");
        for bad in [
            RrEvent {
                patient_id: 1,
                event_time: 0,
                rr_ms: f64::NAN,
            },
            RrEvent {
                patient_id: 1,
                event_time: 0,
                rr_ms: f64::INFINITY,
            },
            RrEvent {
                patient_id: 1,
                event_time: i64::MAX,
                rr_ms: 800.0,
            },
            RrEvent {
                patient_id: 1,
                event_time: i64::MIN,
                rr_ms: 800.0,
            },
        ] {
            let mut evs = events(50);
            evs.push(bad);
            write_parquet_file(&p, &evs).unwrap();
            assert_corrupt(&p, "bad value");
        }
    }

    #[test]
    fn truncated_files_are_typed_errors() {
        let d = tmpdir();
        let p = d.path().join("full.parquet");
        write_parquet_file(&p, &events(200)).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let q = d.path().join("trunc.parquet");
        for len in 0..bytes.len() {
            std::fs::write(&q, &bytes[..len]).unwrap();
            assert_corrupt(&q, &format!("truncated at {len}"));
        }
        assert!(matches!(
            read_parquet_file(&d.path().join("absent.parquet")),
            Err(StreamError::Io { .. })
        ));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Garbage, and valid files with bytes overwritten: Ok or a typed
        /// error through the public reader, never a panic that escapes it.
        /// (The `parquet` crate itself still panics on some hostile pages —
        /// e.g. a data page switched to dictionary encoding with no
        /// dictionary page, `decoder.rs` "Decoder for dict should have been
        /// set" — which the reader's `catch_unwind` turns into a typed
        /// error; the saved regressions replay such cases.)
        #[test]
        fn hostile_bytes_never_panic(
            garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            edits in proptest::collection::vec((proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 1..8),
        ) {
            let d = tmpdir();
            let p = d.path().join("hostile.parquet");
            std::fs::write(&p, &garbage).unwrap();
            let mut out = Vec::new();
            let mut bufs = ParquetBufs::default();
            let r = read_parquet_file_with(&p, &mut bufs, &mut out);
            proptest::prop_assert!(r.is_err(), "garbage read as a file");
            let mut body = garbage.clone();
            body.extend_from_slice(b"PAR1");
            std::fs::write(&p, &body).unwrap();
            let r = read_parquet_file_with(&p, &mut bufs, &mut out);
            proptest::prop_assert!(r.is_err(), "garbage with a trailer read as a file");
            write_parquet_file(&p, &events(64)).unwrap();
            let mut bytes = std::fs::read(&p).unwrap();
            for (at, b) in &edits {
                let n = bytes.len();
                bytes[at % n] = *b;
            }
            std::fs::write(&p, &bytes).unwrap();
            if let Err(e) = read_parquet_file_with(&p, &mut bufs, &mut out) {
                proptest::prop_assert!(e.to_string().contains("hostile.parquet"), "{}", e);
            }
        }
    }
}
