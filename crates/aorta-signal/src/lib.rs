//! # aorta-signal — the ECG signal core
//!
//! This crate owns everything aorta knows about the ECG itself:
//!
//! - [`wfdb`]: reading PhysioNet WFDB records (`.hea` headers, signal files in
//!   formats 212, 16, 80, 61, 310 and 311, MIT-format annotation files) into
//!   digital and physical samples, with typed errors for every malformed input.
//! - [`rpeak`]: a causal, online, chunk-independent R-peak detector with a
//!   bounded report latency.
//! - [`eval`]: ANSI/AAMI EC57 beat-by-beat scoring and AF-detector scoring,
//!   per record and over a database (typed reports and their text tables,
//!   as `aorta eval` prints them); records are scored in parallel on scoped
//!   threads ([`eval::parallel_map`]), reported in list order.
//! - [`sqi`]: signal quality per second and the signal states (too noisy,
//!   signal lost, ventricular fibrillation/flutter, asystole) read from the signal.
//! - [`monitor`]: the R-peak detector gated by signal quality, on one lead
//!   or fused over several (the lead with the better quality, second by second).
//! - [`noise`]: a reproducible noise mix (baseline wander, mains, muscle,
//!   electrode motion) at a given SNR, for robustness evaluation.
//! - [`beats`]: online beat classification into the AAMI classes N, S, V,
//!   F, Q (patient-relative RR and morphology features, a committed
//!   logistic-regression model) and its leave-one-record-out scoring.
//! - [`rhythm`]: real-time AF episodes, brady-/tachycardia and pauses from beat times.
//! - [`hrv`]: heart-rate variability per the 1996 Task Force standard (NN
//!   series with artefact handling; time, frequency and non-linear metrics in
//!   an [`hrv::HrvReport`]), matched to NeuroKit2's definitions; of an RR
//!   text file (the one RR format, [`hrv::rrtext`]) or per window of a record
//!   in an [`hrv::RecordHrvReport`], with their text tables.
//!
//! It is **pure**: no network, no clocks, no global state. Parsers of outside
//! bytes return typed errors and never panic.
#![deny(missing_docs)]

pub mod beats;
pub mod compact;
pub mod eval;
mod filter;
pub mod hrv;
pub mod monitor;
pub mod noise;
pub mod rhythm;
pub mod rhythm_eval;
pub mod rpeak;
pub mod sqi;
pub mod wfdb;
