//! Cost of opening a device upload frame inside the worker with a released
//! group key ([`UploadFrames::open`]: parse, derive the frame's transport key
//! from `G_i` and the header's epoch, authenticate, decrypt, decompress,
//! interleave into zeroizing memory), against opening the same frame with an
//! already derived transport key (`frame::parse(..).open(..)`). The frame is
//! 10 s of both leads of MIT-BIH 100 (synthetic ECG-like samples if the data
//! set is absent). Throughput counts raw 16-bit samples.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "bench harness: a failure is the report, and criterion's macros generate undocumented items"
)]

use aorta_crypto::frame::{self, ChannelCalibration, FrameHeader, TransportKey};
use aorta_crypto::keys::{self, KeySlice};
use aorta_enclave::keywrap::Secret32;
use aorta_enclave::upload::UploadFrames;
use aorta_enclave::worker::FrameOpener;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const N: usize = 3600;

fn samples() -> Vec<Vec<i32>> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/mitdb/100"
    );
    match aorta_signal::wfdb::Record::read(dir) {
        Ok(r) => r.samples.iter().map(|s| s[..N].to_vec()).collect(),
        Err(e) => {
            eprintln!("SKIP real data ({e}); synthetic samples");
            (0..2)
                .map(|k| {
                    (0..N as i32)
                        .map(|i| 1000 + ((i * 7919 * (k + 1)) % 613) - ((i * 104_729) % 211))
                        .collect()
                })
                .collect()
        }
    }
}

fn open(c: &mut Criterion) {
    let slice =
        KeySlice::new("ECG-BENCH", (0..120 * 32).map(|i| (i * 13) as u8).collect()).unwrap();
    let epoch = [7u8; 16];
    let tk = TransportKey::derive(&slice, 42, &epoch).unwrap();
    let x = samples();
    let h = FrameHeader::new("ECG-BENCH", 42, 1, 0, 360_000, 2, N as u32, epoch).unwrap();
    let cal = vec![ChannelCalibration::new(200.0, 1024, 1024, 11, "mV", "MLII"); 2];
    let sealed = frame::seal(&tk, &h, &cal, &[&x[0], &x[1]]).unwrap();
    let group = Secret32::from_bytes(*keys::transport_group_key(&slice, 42).unwrap());

    let mut g = c.benchmark_group("worker_open_10s_frame");
    g.throughput(Throughput::Bytes((2 * N * 2) as u64));
    g.bench_function("pre_derived_transport_key", |b| {
        b.iter(|| frame::parse(&sealed).unwrap().open(&tk).unwrap())
    });
    g.bench_function("upload_frames_from_group_key", |b| {
        b.iter(|| UploadFrames.open(&sealed, &group).unwrap())
    });
    g.finish();
    c.bench_function("derive_transport_key_from_group", |b| {
        b.iter(|| TransportKey::from_group(group.expose(), "ECG-BENCH", 42, &epoch).unwrap())
    });
}

criterion_group!(benches, open);
criterion_main!(benches);
