//! The values aorta reads from JetStream KV (`aorta_cluster`, docs/scale.md):
//! a partition lease or membership value (`1;<owner>;<expires ms>`) and a
//! checkpoint head (`E`, `I…`, `C<owner>;<slot>;<chunks>;<bytes>`), picked
//! by the first byte. Any bytes give a value or a typed error, never a
//! panic; a value encodes and decodes back to itself.
#![no_main]

use aorta_cluster::checkpoints::Head;
use aorta_cluster::lease::LeaseValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    if pick % 2 == 0 {
        if let Ok(v) = LeaseValue::decode(rest) {
            assert_eq!(LeaseValue::decode(&v.encode()).ok(), Some(v), "lease round trip");
        }
    } else if let Ok(h) = Head::decode(rest) {
        assert_eq!(Head::decode(&h.encode()).ok(), Some(h), "head round trip");
    }
});
