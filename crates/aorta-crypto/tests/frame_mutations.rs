//! ≥ 100,000 random mutations of valid frames: every one is refused, none panics.
//!
//! The case count is `AORTA_FRAME_MUTATIONS` (default 100,000; it runs in a
//! few seconds in debug because the frames are small).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)]

use aorta_crypto::frame::{self, ChannelCalibration, FrameHeader, TransportKey};
use aorta_crypto::keys::KeySlice;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[derive(Debug, Clone)]
enum Mutation {
    FlipBits(Vec<(usize, u8)>),
    SetByte(usize, u8),
    Truncate(usize),
    Append(Vec<u8>),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Splice(usize, Vec<u8>),
}

fn apply(m: &Mutation, orig: &[u8]) -> Vec<u8> {
    let mut b = orig.to_vec();
    let n = b.len();
    match m {
        Mutation::FlipBits(bits) => {
            for &(pos, bit) in bits {
                b[pos % n] ^= 1 << (bit % 8);
            }
        }
        Mutation::SetByte(pos, v) => b[pos % n] = *v,
        Mutation::Truncate(len) => b.truncate(len % n),
        Mutation::Append(extra) => b.extend_from_slice(extra),
        Mutation::Insert(pos, extra) => {
            let p = pos % (n + 1);
            b.splice(p..p, extra.iter().copied());
        }
        Mutation::Delete(pos, len) => {
            let p = pos % n;
            let e = (p + 1 + len % 16).min(n);
            b.drain(p..e);
        }
        Mutation::Splice(pos, bytes) => {
            for (i, v) in bytes.iter().enumerate() {
                let p = (pos + i) % n;
                b[p] = *v;
            }
        }
    }
    b
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4).prop_map(Mutation::FlipBits),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(p, v)| Mutation::SetByte(p, v)),
        2 => any::<usize>().prop_map(Mutation::Truncate),
        1 => proptest::collection::vec(any::<u8>(), 1..32).prop_map(Mutation::Append),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8)).prop_map(|(p, v)| Mutation::Insert(p, v)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(p, l)| Mutation::Delete(p, l)),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..24)).prop_map(|(p, v)| Mutation::Splice(p, v)),
    ]
}

#[test]
fn random_mutations_of_valid_frames_are_all_refused() {
    let cases: u32 = std::env::var("AORTA_FRAME_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let keys = KeySlice::new("SN-MUT-1", (0..120 * 32).map(|i| (i * 31) as u8).collect()).unwrap();
    let epoch = [0x5a; 16];
    let key = TransportKey::derive(&keys, 7, &epoch).unwrap();
    let x: Vec<i32> = (0..24).map(|i| 1000 + (i * 13) % 29 - 14).collect();
    let y: Vec<i32> = (0..24).map(|i| -3 * i + 40).collect();
    let h = FrameHeader::new(
        "SN-MUT-1",
        7,
        1234,
        1_700_000_000_000_000,
        360_000,
        2,
        24,
        epoch,
    )
    .unwrap();
    let cal = vec![
        ChannelCalibration::new(200.0, 1024, 1024, 11, "mV", "MLII"),
        ChannelCalibration::new(200.0, 1024, 1024, 11, "mV", "V1"),
    ];
    let valid = frame::seal(&key, &h, &cal, &[&x, &y]).unwrap();
    // The unmutated frame opens.
    assert_eq!(
        frame::parse(&valid).unwrap().open(&key).unwrap().samples,
        vec![x, y]
    );

    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let tried = std::cell::Cell::new(0u64);
    let unchanged = std::cell::Cell::new(0u64);
    runner
        .run(&mutation(), |m| {
            let b = apply(&m, &valid);
            let b = if b == valid {
                // e.g. SetByte to the same value: make it a real mutation.
                unchanged.set(unchanged.get() + 1);
                apply(&Mutation::FlipBits(vec![(b.len() / 2, 0)]), &b)
            } else {
                b
            };
            prop_assert_ne!(&b, &valid);
            tried.set(tried.get() + 1);
            let result = frame::parse(&b).and_then(|p| p.open(&key));
            prop_assert!(result.is_err(), "mutation {:?} was accepted", m);
            Ok(())
        })
        .unwrap();
    let (tried, unchanged) = (tried.get(), unchanged.get());
    eprintln!("{tried} mutated frames refused ({unchanged} no-op draws turned into bit flips)");
    assert_eq!(tried, u64::from(cases));
}
