//! The JSON bodies and query strings of the HTTP API (`aorta_api`, and the
//! checkpoint document `aorta_stream::checkpoint::Checkpoint`), picked by the
//! first byte and parsed as the server and clients parse them (serde_json
//! bodies, serde_urlencoded queries as axum's `Query`). Any bytes give a
//! value or a typed error, never a panic; a value serialises and parses back
//! to itself (the oracle panics otherwise), and the base64 fields decode or
//! give a typed error.
#![no_main]

use aorta_api::{
    BatchAnswer, ErrorBody, FrameAck, LogQuery, RenegQuery, ResultsPage, ResultsQuery, Stats,
    WorkerBatch,
};
use aorta_stream::checkpoint::Checkpoint;
use libfuzzer_sys::fuzz_target;
use serde::{Serialize, de::DeserializeOwned};

/// Parses `data` as JSON; a value must survive a round trip.
fn json<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) -> Option<T> {
    let v: T = serde_json::from_slice(data).ok()?;
    let again: T = serde_json::from_slice(&serde_json::to_vec(&v).expect("serialises"))
        .expect("its own JSON parses");
    assert_eq!(v, again, "JSON round trip");
    Some(v)
}

/// Parses `data` as a query string; a value must survive a round trip.
fn query<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) -> Option<T> {
    let v: T = serde_urlencoded::from_bytes(data).ok()?;
    let again: T =
        serde_urlencoded::from_str(&serde_urlencoded::to_string(&v).expect("serialises"))
            .expect("its own query parses");
    assert_eq!(v, again, "query round trip");
    Some(v)
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    match pick % 12 {
        0 => {
            if let Some(b) = json::<WorkerBatch>(rest) {
                for r in &b.results {
                    let _ = r.bytes();
                }
                if let Some(c) = &b.certificate {
                    let _ = aorta_api::certificate_bytes(c);
                }
                let _ = b.is_empty();
            }
        }
        1 => {
            if let Some(p) = json::<ResultsPage>(rest) {
                for r in &p.results {
                    let _ = r.bytes();
                }
                for c in &p.certificates {
                    let _ = aorta_api::certificate_bytes(c);
                }
            }
        }
        2 => {
            let _ = json::<Checkpoint>(rest);
        }
        3 => {
            let _ = json::<LogQuery>(rest);
        }
        4 => {
            let _ = query::<LogQuery>(rest);
        }
        5 => {
            let _ = json::<ResultsQuery>(rest);
        }
        6 => {
            let _ = query::<ResultsQuery>(rest);
        }
        7 => {
            let _ = query::<RenegQuery>(rest);
        }
        8 => {
            if let Some(a) = json::<FrameAck>(rest) {
                if let Some(o) = &a.reneg_offer {
                    let _ = aorta_base::hex::decode(o, aorta_base::hex::Case::Lower);
                }
            }
        }
        9 => {
            let _ = json::<BatchAnswer>(rest);
            let _ = json::<ErrorBody>(rest);
        }
        10 => {
            // Floats: parsed, not compared (serde_json's float parsing is
            // not exact without its float_roundtrip feature).
            let _ = serde_json::from_slice::<Stats>(rest);
        }
        _ => {
            let _ = aorta_api::decode_log_records(rest);
        }
    }
});
