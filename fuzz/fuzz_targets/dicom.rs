//! The DICOM walker of selective encryption: the layout of any bytes and
//! the header/body split (automatic rule) are a value or a typed error, and
//! a split covers the input exactly.
#![no_main]

use aorta_crypto::selective::HeaderRule;
use aorta_crypto::selective::split::{dicom_layout, split};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = dicom_layout(data);
    if let Ok(s) = split(data, HeaderRule::Auto) {
        assert!(s.head_len <= data.len());
    }
});
