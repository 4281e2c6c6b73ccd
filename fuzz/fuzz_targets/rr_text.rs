//! The one RR text format (`aorta_signal::hrv::rrtext`): any bytes give
//! lines or a typed line error, and the intervals `parse_rr_text` accepts
//! are exactly the parsed lines, each a usable RR interval.
#![no_main]

use aorta_signal::hrv::{parse_rr_lines, parse_rr_text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let lines = parse_rr_lines(data);
    if let Ok(rr) = parse_rr_text(data) {
        let lines = lines.expect("parse_rr_text accepted what parse_rr_lines refused");
        assert_eq!(rr.len(), lines.len());
        assert!(rr.iter().all(|&v| v > 0.0 && v <= 60_000.0));
    }
});
