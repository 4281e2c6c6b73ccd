//! # aorta-bench — runs and measures aorta on one machine
//!
//! This crate owns the benchmarks and the demo: [`pipeline`] (the secure
//! pipeline against a plain one, through the server's own group-commit log
//! writer), [`se`] (selective encryption against AES), [`compress`] (the ECG
//! codec against gzip and zstd), [`rr_stream`] (the RR-interval stream job)
//! and [`demo`] (the whole system, with `aorta server` and `aorta worker
//! stream` launched as real child processes of the executable it is given).
//! Each returns a typed report (`#[derive(Serialize)]`) that the `aorta` CLI
//! prints as text or JSON: the CLI only parses flags and prints.
//!
//! It never defines a format, a key or a protocol of its own: it drives the
//! library crates exactly as the deployed processes do, and measures them.
#![deny(missing_docs)]

pub mod compress;
pub mod demo;
pub mod pipeline;
pub mod rr_stream;
pub mod se;
