//! R-peak detection throughput on a real 30-minute MIT-BIH record.
//!
//! `cargo bench -p aorta-signal --bench rpeak` — also times NeuroKit2's
//! `ecg_peaks` on the same record in the same run when `python3` can import
//! `neurokit2` and `wfdb` (tools/bench_rpeaks_neurokit.py), and prints the ratio.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "bench harness: a failure is the report, and criterion's macros generate undocumented items"
)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use aorta_signal::rpeak::detect;
use aorta_signal::wfdb::Record;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn record_path() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mitdb/100");
    if p.with_extension("hea").is_file() {
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
    let Some(path) = record_path() else { return };
    let rec = Record::read(&path).unwrap();
    let fs = rec.fs();
    let x = rec.physical(0).unwrap();
    let mut g = c.benchmark_group("rpeak");
    g.throughput(Throughput::Elements(x.len() as u64));
    g.sample_size(20);
    g.bench_function("detect_mitdb_100_30min", |b| {
        b.iter(|| detect(black_box(&x), fs).unwrap())
    });
    g.finish();

    // Same-run comparison with NeuroKit2 (best of 5 for aorta, best of 3 for NeuroKit2).
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        black_box(detect(&x, fs).unwrap());
        best = best.min(t.elapsed().as_secs_f64());
    }
    let ours = x.len() as f64 / best;
    println!(
        "aorta rpeak::detect: {:.1} M samples/s/core on mitdb 100 ({} samples)",
        ours / 1e6,
        x.len()
    );
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/bench_rpeaks_neurokit.py");
    match std::process::Command::new("python3")
        .arg(&script)
        .arg(&path)
        .output()
    {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            println!("NeuroKit2: {}", text.trim());
            if let Some(nk) = text
                .split("\"samples_per_s\": ")
                .nth(1)
                .and_then(|s| s.split([',', '}']).next())
                .and_then(|s| s.trim().parse::<f64>().ok())
            {
                println!(
                    "speed-up over NeuroKit2 ecg_clean+ecg_peaks: {:.1}x",
                    ours / nk
                );
            }
        }
        _ => {
            println!("NeuroKit2 comparison skipped: python3 with neurokit2 and wfdb not available")
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
