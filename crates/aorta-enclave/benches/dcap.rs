//! Broker-side cost of verifying a real Intel DCAP quote (SGX and TDX
//! samples from dcap-qvl, offline, fixed time): what a hardware-backed key
//! release adds over `sim`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "bench harness: a failure is the report, and criterion's macros generate undocumented items"
)]

use aorta_enclave::Backend;
use aorta_enclave::verify::verify_dcap_quote;
use criterion::{Criterion, criterion_group, criterion_main};

const NOW: u64 = 1_750_377_600;

fn dcap(c: &mut Criterion) {
    let mut g = c.benchmark_group("dcap_verify");
    g.bench_function("sgx_quote", |b| {
        b.iter(|| {
            verify_dcap_quote(
                Backend::SgxGramine,
                include_bytes!("../tests/fixtures/dcap/sgx_quote"),
                include_bytes!("../tests/fixtures/dcap/sgx_quote_collateral.json"),
                NOW,
            )
            .unwrap()
        })
    });
    g.bench_function("tdx_quote", |b| {
        b.iter(|| {
            verify_dcap_quote(
                Backend::Tdx,
                include_bytes!("../tests/fixtures/dcap/tdx_quote"),
                include_bytes!("../tests/fixtures/dcap/tdx_quote_collateral.json"),
                NOW,
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, dcap);
criterion_main!(benches);
