//! The RR Parquet reader (`aorta_stream::rr_parquet`), over bytes held in
//! memory: any bytes give events or a typed error, never an abort. The
//! `parquet` decoder's own panics are caught by the reader (and reported as
//! a typed error), so the panic hook is silenced for them; a panic that
//! escapes the reader still aborts (libfuzzer-sys's wrapper). What this
//! target mainly guards is memory: an allocation failure aborts, and
//! libFuzzer's `-rss_limit_mb` (2 GiB by default) and `-malloc_limit_mb`
//! report any input that makes the reader allocate more.
#![no_main]

use std::path::Path;

use aorta_stream::rr_parquet::{ParquetBufs, read_parquet_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: std::panic::set_hook(Box::new(|_| {})),
    |data: &[u8]| {
        let mut bufs = ParquetBufs::default();
        let mut out = Vec::new();
        match read_parquet_bytes(Path::new("fuzz.parquet"), data, &mut bufs, &mut out) {
            Ok(()) => assert!(out.iter().all(|e| e.rr_ms.is_finite())),
            Err(_) => assert!(out.is_empty()),
        }
    }
);
