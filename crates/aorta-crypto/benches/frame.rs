//! Frame seal/open throughput on a real MIT-BIH record, and raw AEAD
//! throughput at 16 KiB (ring AES-256-GCM vs ChaCha20-Poly1305).
//!
//! `cargo bench -p aorta-crypto --bench frame` (reads `../shared/data/mitdb/100`;
//! the frame benches are skipped with a message if it is absent).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "bench harness: a failure is the report, and criterion's macros generate undocumented items"
)]

use std::time::Duration;

use aorta_crypto::frame::{self, ChannelCalibration, FrameHeader, TransportKey};
use aorta_crypto::keys::KeySlice;
use aorta_signal::wfdb::Record;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};

fn frames(c: &mut Criterion) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/mitdb/100"
    );
    let rec = match Record::read(path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("SKIP frame benches: cannot read {path}: {e}");
            return;
        }
    };
    let keys = KeySlice::new("SN-BENCH", vec![0x42; 120 * 32]).unwrap();
    let epoch = [7u8; 16];
    let key = TransportKey::derive(&keys, 0, &epoch).unwrap();
    let cal: Vec<ChannelCalibration> = rec
        .header
        .signals
        .iter()
        .map(|s| {
            ChannelCalibration::new(
                s.gain,
                s.baseline,
                s.adc_zero,
                s.adc_resolution as u16,
                &s.units,
                &s.description,
            )
        })
        .collect();
    let mut g = c.benchmark_group("frame");
    g.measurement_time(Duration::from_secs(3)).sample_size(20);
    for secs in [1usize, 10, 60] {
        let n = 360 * secs;
        // Start 5 minutes in, away from the record's first seconds.
        let start = 360 * 300;
        let chans: Vec<&[i32]> = rec.samples.iter().map(|s| &s[start..start + n]).collect();
        let raw = (n * chans.len() * 2) as u64;
        let h = FrameHeader::new(
            "SN-BENCH",
            0,
            1,
            0,
            360_000,
            chans.len() as u16,
            n as u32,
            epoch,
        )
        .unwrap();
        g.throughput(Throughput::Bytes(raw));
        g.bench_with_input(
            BenchmarkId::new("seal", format!("{secs}s")),
            &chans,
            |b, chans| b.iter(|| frame::seal(&key, &h, &cal, chans).unwrap()),
        );
        let sealed = frame::seal(&key, &h, &cal, &chans).unwrap();
        eprintln!(
            "{secs} s frame: {raw} raw bytes -> {} sealed bytes",
            sealed.len()
        );
        g.bench_with_input(
            BenchmarkId::new("open", format!("{secs}s")),
            &sealed,
            |b, sealed| b.iter(|| frame::parse(sealed).unwrap().open(&key).unwrap()),
        );
    }
    g.finish();
}

fn aead(c: &mut Criterion) {
    let mut g = c.benchmark_group("aead_16KiB");
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes(16 * 1024));
    for (name, alg) in [
        ("ring_aes256gcm", &AES_256_GCM),
        ("ring_chacha20poly1305", &CHACHA20_POLY1305),
    ] {
        let key = LessSafeKey::new(UnboundKey::new(alg, &[9u8; 32]).unwrap());
        let mut buf = vec![0u8; 16 * 1024];
        let mut ctr = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                ctr += 1;
                let mut n = [0u8; 12];
                n[4..].copy_from_slice(&ctr.to_be_bytes());
                key.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(n),
                    Aad::empty(),
                    &mut buf,
                )
                .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, aead, frames);
criterion_main!(benches);
