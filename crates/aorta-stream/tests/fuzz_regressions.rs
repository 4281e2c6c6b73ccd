//! Findings of the coverage-guided fuzzing campaign (`docs/fuzzing.md`),
//! each a named regression test.
//!
//! RR Parquet: the `parquet` decoder allocates what a page header declares
//! (a dictionary page claiming 2^31 - 1 values: 16 GiB; a data page claiming
//! a 2 GiB uncompressed size: 2 GiB), and an allocation failure aborts the
//! process. The reader must refuse such a file before decoding. Each test
//! builds its hostile file from a valid one (the hostile column chunk is
//! appended after the others and the footer rewritten to point at it), then
//! reads it in a child process whose address space is capped at 1 GiB: with
//! the old reader the child aborts (or is refused the memory), with the new
//! one it gets a typed error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use aorta_stream::StreamError;
use aorta_stream::rr::RrEvent;
use aorta_stream::rr_parquet::{read_parquet_file, write_parquet_file};
use parquet::file::metadata::ParquetMetaDataWriter;
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;

/// Set in the child process: the hostile file it reads.
const CHILD: &str = "AORTA_FUZZ_REGRESSION_PARQUET";

fn events(n: usize) -> Vec<RrEvent> {
    (0..n)
        .map(|i| RrEvent {
            patient_id: (i % 5) as i32,
            event_time: 1_767_225_600_000_000 + 1000 * i as i64,
            rr_ms: 700.0 + (i as f64 * 0.37).sin() * 150.0,
        })
        .collect()
}

/// Thrift compact protocol, just enough for a page header.
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// An i32 field (`delta` from the previous field id).
fn field_i32(out: &mut Vec<u8>, delta: u8, v: i32) {
    out.push((delta << 4) | 5);
    varint(out, ((v << 1) ^ (v >> 31)) as u32 as u64);
}

/// A Snappy block holding 64 zero bytes (one literal: a tag saying its
/// length - 1 is in the next byte), 67 bytes long.
fn snappy_64_zeros() -> Vec<u8> {
    let mut b = vec![64, 60 << 2, 63];
    b.extend_from_slice(&[0u8; 64]);
    b
}

/// A page header: `kind` 0 = data page (field 5), 2 = dictionary (field 7).
fn page_header(kind: i32, uncompressed: i32, stored: i32, values: i32) -> Vec<u8> {
    let mut h = Vec::new();
    field_i32(&mut h, 1, kind);
    field_i32(&mut h, 1, uncompressed);
    field_i32(&mut h, 1, stored);
    if kind == 2 {
        h.push((4 << 4) | 12); // field 7: DictionaryPageHeader
        field_i32(&mut h, 1, values);
        field_i32(&mut h, 1, 0); // PLAIN
    } else {
        h.push((2 << 4) | 12); // field 5: DataPageHeader
        field_i32(&mut h, 1, values);
        field_i32(&mut h, 1, 0); // PLAIN
        field_i32(&mut h, 1, 3); // RLE levels
        field_i32(&mut h, 1, 3);
    }
    h.push(0);
    h.push(0);
    h
}

/// A valid RR Parquet file whose first column's chunk is replaced by
/// `chunk` (appended after the data; `dictionary` says whether it starts
/// with a dictionary page).
fn hostile_file(dir: &Path, name: &str, chunk: &[u8], dictionary: bool) -> PathBuf {
    let valid = dir.join("valid.parquet");
    write_parquet_file(&valid, &events(100)).unwrap();
    let bytes = std::fs::read(&valid).unwrap();
    let meta = SerializedFileReader::new(std::fs::File::open(&valid).unwrap())
        .unwrap()
        .metadata()
        .clone();
    let n = bytes.len();
    let footer_len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) as usize;
    let data_end = n - 8 - footer_len;
    let mut out = bytes[..data_end].to_vec();
    out.extend_from_slice(chunk);
    let at = data_end as i64;
    let mut b = meta.into_builder();
    let groups = b
        .take_row_groups()
        .into_iter()
        .map(|rg| {
            let mut cols = rg.columns().to_vec();
            cols[0] = cols[0]
                .clone()
                .into_builder()
                .set_dictionary_page_offset(dictionary.then_some(at))
                .set_data_page_offset(if dictionary {
                    at + chunk.len() as i64
                } else {
                    at
                })
                .set_total_compressed_size(chunk.len() as i64)
                .build()
                .unwrap();
            rg.into_builder().set_column_metadata(cols).build().unwrap()
        })
        .collect();
    let meta = b.set_row_groups(groups).build();
    ParquetMetaDataWriter::new(&mut out, &meta)
        .finish()
        .unwrap();
    let path = dir.join(name);
    std::fs::write(&path, out).unwrap();
    path
}

/// Reads `path` in a child process (this test binary, this test) whose
/// address space is capped at 1 GiB, and checks it ended well.
fn read_in_capped_child(test: &str, path: &Path) {
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 1048576 && exec \"$0\" \"$@\"")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("child: {stdout}");
    assert!(
        out.status.success() && stdout.contains("refused before decoding"),
        "reading {} under a 1 GiB cap: {:?}\n{stdout}\n{}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// In the child: the read must be a typed `Corrupt` error.
fn child_reads() -> bool {
    let Some(path) = std::env::var_os(CHILD) else {
        return false;
    };
    match read_parquet_file(Path::new(&path)) {
        Err(StreamError::Corrupt { what, .. }) => println!("refused before decoding: {what}"),
        other => panic!("expected a typed Corrupt error, got {other:?}"),
    }
    true
}

#[cfg(target_os = "linux")]
#[test]
fn parquet_dictionary_page_claiming_2_pow_31_values_is_refused() {
    if child_reads() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A valid Snappy body of 64 bytes, whose 16 int32 values the header
    // says are 2^31 - 1 (the old decoder allocated 8 GiB for them).
    let body = snappy_64_zeros();
    let mut chunk = page_header(2, 64, body.len() as i32, i32::MAX);
    chunk.extend_from_slice(&body);
    let path = hostile_file(dir.path(), "dict.parquet", &chunk, true);
    read_in_capped_child(
        "parquet_dictionary_page_claiming_2_pow_31_values_is_refused",
        &path,
    );
}

#[cfg(target_os = "linux")]
#[test]
fn parquet_data_page_claiming_2_gib_uncompressed_is_refused() {
    if child_reads() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let body = snappy_64_zeros();
    let mut chunk = page_header(0, i32::MAX, body.len() as i32, 16);
    chunk.extend_from_slice(&body);
    let path = hostile_file(dir.path(), "data.parquet", &chunk, false);
    read_in_capped_child(
        "parquet_data_page_claiming_2_gib_uncompressed_is_refused",
        &path,
    );
}

/// The page checks accept what the writer and pyarrow write.
#[test]
fn parquet_page_checks_accept_valid_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ok.parquet");
    let ev = events(50_000);
    write_parquet_file(&p, &ev).unwrap();
    assert_eq!(read_parquet_file(&p).unwrap(), ev);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rr-pyarrow.parquet");
    assert!(!read_parquet_file(&fixture).unwrap().is_empty());
}

/// Found by the `rr_parquet` target (a 2.7 KB file, 12 s for one read): a
/// footer list of booleans claiming 2^31 - 1 elements, which the `parquet`
/// crate's Thrift reader skips one element per iteration without reading a
/// byte. The footer is now walked first and the list refused.
#[test]
fn parquet_footer_list_longer_than_the_footer_is_refused() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz/footer-bool-list-2-pow-31.parquet");
    match read_parquet_file(&path) {
        Err(StreamError::Corrupt { what, .. }) => {
            assert!(
                what.contains("footer byte") && what.contains("elements in"),
                "{what}"
            )
        }
        other => panic!("expected the footer check to refuse it, got {other:?}"),
    }
}
