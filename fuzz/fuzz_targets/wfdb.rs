//! WFDB input: header text, annotation files and signal files in every
//! supported format. Any input must give a value or a typed error.
#![no_main]

use aorta_signal::wfdb::{Format, decode, parse_annotations, parse_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 3 {
        0 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = parse_header(text);
            }
        }
        1 => {
            let _ = parse_annotations(rest);
        }
        _ => {
            let format = Format::ALL[usize::from(pick / 3) % Format::ALL.len()];
            // At most as many samples as the bytes could hold, and a few more
            // to reach the "too short" paths.
            let _ = decode(format, rest, rest.len() * 2 + 3);
        }
    }
});
