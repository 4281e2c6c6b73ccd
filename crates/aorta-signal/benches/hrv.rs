//! HRV throughput on one real 5-minute window: MIT-BIH record 100, 300–600 s,
//! NN = intervals between two N/L/R reference beats of `100.atr` (384 NN; the
//! same window as the NeuroKit2 fixture and `tools/bench_hrv_neurokit.py`).
//!
//! Target (issue 2, item 7): the full set (time, frequency, non-linear with
//! sample entropy and DFA) in ≤ 0.5 ms. Also measured in the same run:
//! each family alone, and the Rust crate `cardio-rs` (its `standard_analysis!`
//! on the same NN intervals). Run with `cargo bench -p aorta-signal --bench hrv`.
//! Skips with a message when `../shared/data/mitdb/100.atr` is absent.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "bench harness: a failure is the report, and criterion's macros generate undocumented items"
)]

use std::hint::black_box;

use aorta_signal::hrv::{
    ArtefactRule, HrvEngine, HrvOptions, NnSeries, SpectralMethod, sample_entropy,
};
use cardio_rs::HrvMetrics;
use criterion::Criterion;

const ATR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/mitdb/100.atr"
);

fn window() -> Option<(Vec<u64>, Vec<bool>, f64)> {
    if !std::path::Path::new(ATR).exists() {
        return None;
    }
    let anns = aorta_signal::wfdb::read_annotations(ATR).ok()?;
    let fs = 360.0;
    let (lo, hi) = (300.0 * fs, 600.0 * fs);
    let beats: Vec<_> = anns
        .iter()
        .filter(|a| a.is_beat() && (a.sample as f64) >= lo && (a.sample as f64) < hi)
        .collect();
    let samples = beats.iter().map(|a| a.sample).collect();
    let normal = beats
        .iter()
        .map(|a| matches!(a.symbol(), "N" | "L" | "R"))
        .collect();
    Some((samples, normal, fs))
}

fn main() {
    let Some((samples, normal, fs)) = window() else {
        eprintln!("SKIP hrv bench: {ATR} not found (shared MIT-BIH data absent)");
        return;
    };
    let nn = NnSeries::from_beats(&samples, fs, Some(&normal), &ArtefactRule::none()).unwrap();
    eprintln!(
        "record 100, 300-600 s: {} beats, {} NN intervals",
        samples.len(),
        nn.len()
    );
    let mut c = Criterion::default().configure_from_args();
    let mut engine = HrvEngine::new();
    let welch = HrvOptions::default();
    let lomb = HrvOptions {
        spectral: SpectralMethod::LombScargle,
    };

    let mut g = c.benchmark_group("hrv_5min_window");
    g.bench_function("full_report_welch", |b| {
        b.iter(|| engine.report(black_box(&nn), &welch).unwrap())
    });
    g.bench_function("full_report_fresh_engine", |b| {
        b.iter(|| HrvEngine::new().report(black_box(&nn), &welch).unwrap())
    });
    g.bench_function("nn_from_beats_default_rule", |b| {
        b.iter(|| {
            NnSeries::from_beats(
                black_box(&samples),
                fs,
                Some(&normal),
                &ArtefactRule::default(),
            )
            .unwrap()
        })
    });
    g.bench_function("time_domain", |b| {
        b.iter(|| engine.time_domain(black_box(&nn)).unwrap())
    });
    g.bench_function("frequency_welch_4hz", |b| {
        b.iter(|| {
            engine
                .frequency_domain(black_box(&nn), SpectralMethod::Welch)
                .unwrap()
        })
    });
    g.bench_function("frequency_lomb_scargle", |b| {
        b.iter(|| {
            engine
                .frequency_domain(black_box(&nn), SpectralMethod::LombScargle)
                .unwrap()
        })
    });
    g.bench_function("full_report_lomb", |b| {
        b.iter(|| engine.report(black_box(&nn), &lomb).unwrap())
    });
    g.bench_function("nonlinear", |b| {
        b.iter(|| engine.nonlinear(black_box(&nn)).unwrap())
    });
    let r = 0.2 * engine.time_domain(&nn).unwrap().sdnn;
    g.bench_function("sample_entropy_only", |b| {
        b.iter(|| sample_entropy(black_box(nn.nn_ms()), r))
    });

    // Same-run baseline: cardio-rs 0.2 standard analysis (its own ectopic/outlier
    // removal, time, 4 Hz Welch frequency, geometric and non-linear metrics).
    let rr: Vec<f64> = nn.nn_ms().to_vec();
    g.bench_function("cardio_rs_standard_analysis", |b| {
        b.iter(|| {
            let m: HrvMetrics<f64> = cardio_rs::standard_analysis!(black_box(rr.clone()));
            black_box(m)
        })
    });
    g.finish();
    c.final_summary();
}
