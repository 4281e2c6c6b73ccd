//! # aorta-clinician — the clinician's station
//!
//! Everything here runs on the clinician's own machine, after the results
//! were fetched, verified and opened with the clinician's identity by
//! `aorta-worker`'s [`aorta_worker::clinician::ResultReader`]: the
//! clinician's key never leaves that machine and this crate never sees a
//! sealed byte.
//!
//! - [`export`] — opened results in the formats hospitals and
//!   physiologists exchange: FHIR R4 Bundles, CSV with ISO-8601 times and
//!   WFDB annotation files (`aorta results export`);
//! - [`dashboard`] — the live web app (`aorta clinician serve`): ward
//!   view, patient view, alarms with IEC 60601-1-8 priorities, ECG strips
//!   on standard paper, audited acknowledgement. Its assets are built into
//!   the binary; it serves on loopback and fetches nothing from the
//!   internet.
//!
//! This crate never opens, signs or seals anything, never talks to a key
//! broker, and never writes results back to the server.
#![deny(missing_docs)]

pub mod dashboard;
pub mod export;
