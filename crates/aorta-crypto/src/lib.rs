//! # aorta-crypto — cryptographic building blocks
//!
//! This crate owns the primitives the other aorta crates compose: frame AEAD
//! and key schedules for device uploads, selective encryption and dispersal
//! for the health-record vault. It performs **no I/O**: no files, no network,
//! no clocks (callers pass times in). It never implements a cipher, hash or
//! KDF itself; it composes audited crates. Secrets are zeroized on drop and
//! have no byte-printing `Debug`.
#![deny(missing_docs)]
//!
//! Device-key modules (issue 3): [`keys`] (the paper's multi-key-per-machine
//! schedule: transport keys, commitments, renegotiation PSK), [`codec`] (the
//! lossless ECG codec), [`frame`] (compress-then-encrypt upload frames) and
//! [`reneg`] (authenticated renegotiation of `max_key_uses`). Health-record
//! module (issue 4): [`selective`] (the paper's selective encryption with
//! fragmentation, faithful and strong modes). Streaming module (issue 6):
//! [`results`] (analysis results sealed to clinicians' X25519 keys with HPKE
//! session envelopes + AES-256-GCM, and worker checkpoint state sealing).

pub mod codec;
pub mod frame;
pub mod keys;
pub mod reneg;
pub mod results;
pub mod selective;
