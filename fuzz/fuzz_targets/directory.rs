//! The public device directory text (`aorta_crypto::directory`,
//! `docs/authentication.md`): any bytes give a directory or a typed error,
//! never a panic, and a parsed directory's text form parses back to the
//! same directory (the oracle panics otherwise).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    aorta_crypto::fuzzing::directory(data);
});
