//! `harden_process` really makes the process non-dumpable (its own test
//! binary, since it changes the whole process).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[cfg(target_os = "linux")]
#[test]
fn process_becomes_non_dumpable() {
    use rustix::process::{DumpableBehavior, dumpable_behavior};
    aorta_worker::client::harden_process().unwrap();
    assert_eq!(dumpable_behavior().unwrap(), DumpableBehavior::NotDumpable);
}
