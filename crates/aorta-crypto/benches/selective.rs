//! Selective encryption, one thread, per stage: the unit transform with
//! fresh output buffers (`encode`) and into reused ones (`encode_into`, with
//! the checksum leaves), for both masks; the per-unit SHA-256 ceiling; the
//! BLAKE3 leaves alone; and a whole protection in both modes (format v2).
//! `aorta bench se` is the comparison against AES-CBC/GCM; this one is for
//! finding where the time goes.
//!
//! `cargo bench -p aorta-crypto --bench selective`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "bench harness: a failure is the report, and criterion's macros generate undocumented items"
)]

use std::hint::black_box;
use std::time::Duration;

use aorta_crypto::selective::units::{self, SegmentHash};
use aorta_crypto::selective::{
    FormatVersion, HeaderRule, KdfParams, MasterKey, Mode, ProtectOptions, Randomness, UnitKeys,
    UnitMask, protect_with_key,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const LEN: usize = 16 << 20;

fn selective(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let data: Vec<u8> = (0..LEN as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let k = MasterKey::from_bytes([3; 32]);
    let rnd = Randomness::fresh().unwrap();
    let n = units::unit_count(LEN);
    let mut g = c.benchmark_group("selective-1-thread");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    for (name, mode) in [("faithful", Mode::Faithful), ("strong", Mode::Strong)] {
        let uk = UnitKeys::for_record(FormatVersion::V2, mode, &k, Some(&rnd.secret)).unwrap();
        let mask = UnitMask::for_record(FormatVersion::V2, mode);
        g.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| pool.install(|| black_box(units::encode(&uk, mask, &data))))
        });
        let mut public = vec![0u8; n * units::PUBLIC_UNIT_BYTES];
        let mut private = vec![0u8; n * units::PIECE_BYTES];
        g.bench_function(format!("encode_into+leaves/{name}"), |b| {
            b.iter(|| {
                pool.install(|| {
                    black_box(units::encode_into(
                        &uk,
                        mask,
                        &data,
                        &mut public,
                        &mut private,
                        SegmentHash::Blake3,
                    ))
                })
            })
        });
        let opts = ProtectOptions {
            mode,
            kdf: KdfParams::DEFAULT,
            header: HeaderRule::None,
        };
        g.bench_function(format!("protect/{name}"), |b| {
            b.iter(|| pool.install(|| black_box(protect_with_key(&data, &k, &opts, &rnd).unwrap())))
        });
    }
    let uk = UnitKeys::faithful(&k).unwrap();
    g.bench_function("sha256-block", |b| {
        b.iter(|| pool.install(|| black_box(units::hash_only(&uk, n))))
    });
    let body = vec![5u8; n * units::PUBLIC_UNIT_BYTES];
    g.bench_function("blake3-leaves", |b| {
        b.iter(|| pool.install(|| black_box(units::segment_digests(&body, SegmentHash::Blake3))))
    });
    g.finish();
}

criterion_group!(benches, selective);
criterion_main!(benches);
