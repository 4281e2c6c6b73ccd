//! The engine's byte formats through `aorta_stream::fuzzing`: what the log
//! writes decodes and round-trips exactly; no truncation, bit flip or extra
//! byte panics; an oversized length is refused before anything is read.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use aorta_base::codec::{Decode, Encode, mutations};
use aorta_stream::fuzzing;
use aorta_stream::job::{LogRecord, decode_record, encode_record};
use aorta_stream::log::{FileLog, FrameLog, HEADER_LEN, MAX_RECORD, RecordHeader};

#[test]
fn the_log_file_is_headers_and_payloads() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("log");
    let mut log = FileLog::open(&p).unwrap();
    let rec = encode_record(1_700_000_000_000_000, b"frame bytes");
    log.append(&rec).unwrap();
    log.sync().unwrap();
    let file = std::fs::read(&p).unwrap();
    let (hdr, payload) = file.split_at(HEADER_LEN);
    assert!(fuzzing::record_header(hdr));
    assert!(RecordHeader::from_bytes(hdr).unwrap().matches(payload));
    assert!(fuzzing::log_record(payload));
    assert_eq!(
        decode_record(payload).unwrap(),
        (1_700_000_000_000_000, &b"frame bytes"[..])
    );
    for m in mutations(hdr, HEADER_LEN) {
        fuzzing::record_header(&m);
    }
    for m in mutations(payload, payload.len()) {
        fuzzing::log_record(&m);
    }
}

#[test]
fn oversized_lengths_and_short_records_are_typed_errors() {
    let big = RecordHeader {
        len: MAX_RECORD as u32 + 1,
        crc: 0,
    };
    assert!(RecordHeader::from_bytes(&big.to_bytes()).is_err());
    assert!(!fuzzing::record_header(&big.to_bytes()));
    assert!(decode_record(&[0; 7]).is_err());
    let r = LogRecord {
        arrival_us: -1,
        frame: &[],
    };
    assert_eq!(LogRecord::from_bytes(&r.to_bytes()).unwrap(), r);
}
