//! Cost of one boundary crossing between the untrusted host and the worker:
//! a `SealedFrame` message of N bytes written by the host into a Unix socket,
//! read and decoded by the worker thread, and a small `FrameDone` reply read
//! back by the host. Reported per message (µs) and as throughput (GB/s).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "bench harness: a failure is the report, and criterion's macros generate undocumented items"
)]

use std::io::Write;
use std::os::unix::net::UnixStream;

use aorta_enclave::wire::{self, Message};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn crossing(c: &mut Criterion) {
    let mut g = c.benchmark_group("boundary_crossing");
    for size in [64usize, 1024, 16 * 1024, 256 * 1024, 1024 * 1024] {
        let (mut host, mut worker) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            let mut out = worker.try_clone().unwrap();
            while let Ok(Some(m)) = wire::read_message(&mut worker) {
                let Message::SealedFrame { frame } = m else {
                    break;
                };
                let reply = Message::FrameDone {
                    serial: "ECG-1".into(),
                    sequence: 1,
                    samples: frame.len() as u64,
                };
                wire::write_message(&mut out, &reply).unwrap();
            }
        });
        let msg = Message::SealedFrame {
            frame: vec![0xa5; size],
        }
        .encode()
        .unwrap();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &msg, |b, msg| {
            b.iter(|| {
                host.write_all(msg).unwrap();
                host.flush().unwrap();
                let r = wire::read_message(&mut host).unwrap();
                assert!(matches!(r, Some(Message::FrameDone { .. })));
            })
        });
        wire::write_message(&mut host, &Message::Shutdown).unwrap();
        drop(host);
        t.join().unwrap();
    }
    g.finish();
}

criterion_group!(benches, crossing);
criterion_main!(benches);
