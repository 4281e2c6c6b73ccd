//! The MQTT front's parser of outside bytes (`aorta_server::mqtt`): the
//! first byte picks the protocol state (before CONNECT, MQTT 3.1.1, MQTT 5);
//! the rest is decoded as one whole packet ([`aorta_server::mqtt::decode`])
//! and read as a stream ([`aorta_server::mqtt::read_packet`]: fixed header,
//! size check, the PUBLISH precheck window). Any bytes give a packet or a
//! typed refusal, never a panic.
#![no_main]

use aorta_server::mqtt::{self, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let version = match pick % 3 {
        0 => None,
        1 => Some(Version::V311),
        _ => Some(Version::V5),
    };
    let max = 1 << 16;
    let _ = mqtt::decode(rest, version, max);
    let rt = tokio::runtime::Builder::new_current_thread().build();
    if let Ok(rt) = rt {
        let mut r = rest;
        let budget = std::sync::Arc::new(aorta_server::http::limits::Budget::new(max));
        let charge = aorta_server::http::limits::Charge::new(budget, None);
        let _ = rt.block_on(mqtt::read_packet(&mut r, version, max, charge, |_, frame| {
            Ok(frame.len() > 8)
        }));
    }
});
