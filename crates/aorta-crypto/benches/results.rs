//! Results sealing costs: seal of a 200-byte result JSON (worker side, per
//! result), opening it (clinician side), session creation and envelope
//! opening (HPKE, once per subscriber and run), and checkpoint state sealing
//! and opening at 1 MiB.
//!
//! `cargo bench -p aorta-crypto --bench results`
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

use aorta_crypto::results::{
    ClinicianIdentity, ResultSession, open_envelope, open_state, seal_state,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A 200-byte heart-rate result, as the worker emits them.
fn result_json() -> Vec<u8> {
    let mut s = String::from(
        r#"{"patient":"ECG-0001","kind":"hr","window_start_us":1700000000000000,"window_end_us":1700000010000000,"hr_bpm":72.53,"beats":12,"quality":"good","pad":""#,
    );
    while s.len() < 198 {
        s.push('x');
    }
    s.push_str("\"}");
    assert_eq!(s.len(), 200);
    s.into_bytes()
}

fn results(c: &mut Criterion) {
    let alice = ClinicianIdentity::from_secret_bytes(&[0x11; 32]).unwrap();
    let (session, envelope) = ResultSession::open_new("dr-alice", &alice.public()).unwrap();
    let json = result_json();
    let sealed = session.seal("ECG-0001/hr/000042", &json).unwrap();
    let opened = open_envelope(&alice, &envelope).unwrap();

    let mut g = c.benchmark_group("results");
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));
    g.bench_function("seal_200B", |b| {
        b.iter(|| {
            session
                .seal("ECG-0001/hr/000042", black_box(&json))
                .unwrap()
        })
    });
    g.bench_function("open_200B", |b| {
        b.iter(|| {
            opened
                .open("ECG-0001/hr/000042", black_box(&sealed))
                .unwrap()
        })
    });
    g.bench_function("session_open_new", |b| {
        b.iter(|| ResultSession::open_new("dr-alice", black_box(&alice.public())).unwrap())
    });
    g.bench_function("open_envelope", |b| {
        b.iter(|| open_envelope(&alice, black_box(&envelope)).unwrap())
    });
    g.finish();

    let key = [0x42u8; 32];
    let state = vec![0x5au8; 1 << 20];
    let sealed_state = seal_state(&key, b"ward-a", &state).unwrap();
    let mut g = c.benchmark_group("state");
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Bytes(state.len() as u64));
    g.bench_function("seal_1MiB", |b| {
        b.iter(|| seal_state(&key, b"ward-a", black_box(&state)).unwrap())
    });
    g.bench_function("open_1MiB", |b| {
        b.iter(|| open_state(&key, b"ward-a", black_box(&sealed_state)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, results);
criterion_main!(benches);
