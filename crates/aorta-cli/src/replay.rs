//! Transitional re-export for `demo_cmd.rs` (being moved by another branch):
//! the record replay lives in `aorta_device::source::record`. Remove this
//! file and its `mod` line once the demo imports it from there.

pub use aorta_device::source::record::{RecordReplay, ReplayOptions};
