//! # aorta-bench — runs and measures aorta on one machine
//!
//! This crate owns the benchmarks and the demo: [`pipeline`] (the secure
//! pipeline against a plain one, through the server's own group-commit log
//! writer), [`se`] (selective encryption against AES), [`compress`] (the ECG
//! codec against gzip and zstd), [`rr_stream`] (the RR-interval stream job),
//! [`ingest`] (device ingest under hostile clients, against `aorta server`
//! as a child process) and [`demo`] (the whole system, with `aorta server`
//! and `aorta worker stream` launched as real child processes of the
//! executable it is given).
//! Each returns a typed report (`#[derive(Serialize)]`) that the `aorta` CLI
//! prints as text or JSON: the CLI only parses flags and prints.
//!
//! It never defines a format, a key or a protocol of its own: frames, keys,
//! calibration, the log writer, the worker's opening and sealing and the
//! results are the library crates' own. Where a benchmark stands in for a
//! part it does not measure, it says so: `bench pipeline`'s simulated
//! devices seal with `aorta_crypto::frame::seal` under keys from one test
//! slice (the device's rotation and secure element are not on the measured
//! path), and the demo writes its policy and server configuration as the
//! documented TOML files an operator would.
#![deny(missing_docs)]

pub mod cluster;
pub mod compress;
pub mod demo;
pub mod ingest;
pub mod pipeline;
pub mod rr_stream;
pub mod se;
