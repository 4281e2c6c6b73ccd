//! # aorta-crypto — cryptographic building blocks
//!
//! This crate owns the primitives the other aorta crates compose: frame AEAD
//! and key schedules for device uploads, selective encryption and dispersal
//! for the health-record vault. It performs **no I/O**: no files, no network,
//! no clocks (callers pass times in). It never implements a cipher, hash or
//! KDF itself; it composes audited crates. Secrets are zeroized on drop and
//! have no byte-printing `Debug`.
#![deny(missing_docs)]

pub mod selective;
