//! # aorta-base — the pieces every aorta crate shares
//!
//! This crate owns the few helpers that would otherwise be written once per
//! crate, each in one place with one behaviour:
//!
//! - [`hex`] — strict hexadecimal (no sign, no whitespace, even length; an
//!   optional letter case), into zeroizing buffers for secrets;
//! - [`random`] — bytes from the operating system's CSPRNG;
//! - [`time`] — the wall clock in microseconds and seconds since the Unix
//!   epoch;
//! - [`fs`] — owner-only (0600) file writes that are atomic (temporary file,
//!   fsync, rename, fsync of the directory) or refuse to overwrite;
//! - [`codec`] — the bounds-checked [`codec::Reader`] and the
//!   [`codec::Encode`] / [`codec::Decode`] traits that every wire and disk
//!   format of aorta implements: short input and trailing bytes are typed
//!   errors, never a panic.
//!
//! It never does networking, never holds a key beyond the call that returns
//! it, and depends on nothing of aorta's.
#![deny(missing_docs)]

pub mod codec;
pub mod fs;
pub mod hex;
pub mod random;
#[doc(hidden)]
pub mod testing;
pub mod time;
