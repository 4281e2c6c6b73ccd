//! WFDB decoding throughput in bytes of signal file per second, on real
//! MIT-BIH files (issue 15, item 5: ≥ 1 GB/s of file).
//!
//! `cargo bench -p aorta-signal --bench wfdb`:
//! - `decode/212`, `decode/16`: [`decode`] of a whole signal file already in
//!   memory (record 100's `100.dat`, format 212; the same samples written in
//!   format 16);
//! - `read/212`, `read/16`: [`Record::read`] from the page cache — file read,
//!   decode, de-interleave and checksum/initial-value verification, what
//!   `aorta eval` and `aorta hrv --record` pay per record;
//! - `read+physical/212`: the above plus both signals in physical units.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "bench harness: a failure is the report, and criterion's macros generate undocumented items"
)]

use std::hint::black_box;
use std::path::PathBuf;

use aorta_signal::wfdb::{Format, Record, decode, encode, write_record_16};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn db() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mitdb");
    if p.join("100.hea").is_file() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} not found (the shared MIT-BIH data is absent)",
            p.display()
        );
        None
    }
}

fn bench(c: &mut Criterion) {
    let Some(db) = db() else { return };
    let rec = Record::read(db.join("100")).unwrap();
    let dat = std::fs::read(db.join("100.dat")).unwrap();
    // Frame-interleaved samples, as the file holds them.
    let n = rec.samples[0].len();
    let flat: Vec<i32> = (0..n)
        .flat_map(|i| rec.samples.iter().map(move |s| s[i]))
        .collect();
    let dat16 = encode(Format::F16, &flat).unwrap();
    assert_eq!(decode(Format::F212, &dat, flat.len()).unwrap(), flat);

    // The same record written in format 16 (real samples, real header).
    let tmp = tempfile::tempdir().unwrap();
    write_record_16(
        tmp.path(),
        "100",
        rec.fs(),
        &rec.header.signals,
        &rec.samples,
    )
    .unwrap();
    let rec16 = tmp.path().join("100");
    let len16 = std::fs::metadata(rec16.with_extension("dat"))
        .unwrap()
        .len();

    let mut g = c.benchmark_group("wfdb");
    g.throughput(Throughput::Bytes(dat.len() as u64));
    g.bench_function("decode/212", |b| {
        b.iter(|| decode(Format::F212, black_box(&dat), flat.len()).unwrap())
    });
    g.bench_function("read/212", |b| {
        b.iter(|| Record::read(black_box(db.join("100"))).unwrap())
    });
    g.bench_function("read+physical/212", |b| {
        b.iter(|| {
            let r = Record::read(black_box(db.join("100"))).unwrap();
            (r.physical(0).unwrap(), r.physical(1).unwrap())
        })
    });
    g.bench_function("physical-only/212", |b| {
        b.iter(|| (rec.physical(0).unwrap(), rec.physical(1).unwrap()))
    });
    g.throughput(Throughput::Bytes(dat16.len() as u64));
    g.bench_function("decode/16", |b| {
        b.iter(|| decode(Format::F16, black_box(&dat16), flat.len()).unwrap())
    });
    g.throughput(Throughput::Bytes(len16));
    g.bench_function("read/16", |b| {
        b.iter(|| Record::read(black_box(&rec16)).unwrap())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
