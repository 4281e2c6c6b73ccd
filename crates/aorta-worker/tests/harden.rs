//! `harden_process` really makes the process non-dumpable (its own test
//! binary, since it changes the whole process).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)]

#[cfg(target_os = "linux")]
#[test]
fn process_becomes_non_dumpable() {
    use rustix::process::{DumpableBehavior, dumpable_behavior};
    aorta_worker::client::harden_process().unwrap();
    assert_eq!(dumpable_behavior().unwrap(), DumpableBehavior::NotDumpable);
}
