//! The hole Algorithm 1 leaves (docs/selective-encryption.md): with K known,
//! the public fragment of a faithful-mode record can be brute-forced one unit
//! at a time over the 2^32 values of its private piece. Here the search is
//! restricted to 2^18 candidates (the top 14 bits of the piece are given to
//! the attacker) so the test is fast; the attack is otherwise the real one.
//! Strong mode resists the identical attack.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)] // test helpers

use aorta_crypto::selective::container::{parse_private, parse_public};
use aorta_crypto::selective::units::{piece_indices, unit_count, unit_hash};
use aorta_crypto::selective::{
    HeaderRule, KdfParams, MasterKey, Mode, ProtectOptions, UnitKeys, protect,
};

const PASS: &[u8] = b"Summer2019!"; // the reused, leaked password of the paper's premise
const SEARCH_BITS: u32 = 18;

fn text() -> Vec<u8> {
    let line = "Patient reports chest pain since Monday; ECG shows ST elevation in V2-V4.\n";
    line.repeat(40).into_bytes()
}

/// Decodes one unit given a guessed piece, as the attacker does.
fn try_piece(hash_key: &[u8; 32], public_unit: &[u8], j: usize, piece: [u8; 4], i: u64) -> Vec<u8> {
    let h = unit_hash(hash_key, piece, i);
    let mut others = public_unit.iter().zip(&h[..28]).map(|(a, b)| a ^ b);
    let mut unit = Vec::with_capacity(32);
    for k in 0..8 {
        if k == j {
            unit.extend_from_slice(&piece);
        } else {
            unit.extend((0..4).map(|_| others.next().unwrap()));
        }
    }
    unit
}

fn plausible_text(unit: &[u8]) -> bool {
    unit.iter()
        .all(|&b| b == b'\n' || (0x20..0x7f).contains(&b))
}

/// Runs the attack on unit `i`; returns every candidate unit that passes the
/// plausibility test.
fn attack(
    public: &[u8],
    k: &MasterKey,
    i: usize,
    j: usize,
    true_piece: [u8; 4],
    bits: u32,
) -> Vec<Vec<u8>> {
    let (_, body, _) = parse_public(public).unwrap();
    // The attacker knows the published algorithm and K, so the faithful unit keys.
    let uk = UnitKeys::faithful(k).unwrap();
    let public_unit = &body[i * 28..i * 28 + 28];
    let known_high = u32::from_be_bytes(true_piece) >> bits;
    let mut hits = Vec::new();
    for low in 0..(1u32 << bits) {
        let cand = ((known_high << bits) | low).to_be_bytes();
        let unit = try_piece(uk.hash_key(), public_unit, j, cand, i as u64);
        if plausible_text(&unit) {
            hits.push(unit);
        }
    }
    hits
}

fn setup(mode: Mode) -> (Vec<u8>, Vec<u8>, MasterKey) {
    let opts = ProtectOptions {
        mode,
        kdf: KdfParams::INSECURE_TEST,
        header: HeaderRule::None,
    };
    let input = text();
    let p = protect(&input, PASS, &opts).unwrap();
    // K is leaked (the paper's premise). The attacker derives it from the leaked
    // passphrase and the record's salt.
    let (h, _) = parse_private(&p.private).unwrap();
    let k = MasterKey::derive(PASS, &h.salt, &h.kdf).unwrap();
    (input, p.public, k)
}

#[test]
fn faithful_mode_unit_recovered_by_brute_force_given_k() {
    let (input, public, k) = setup(Mode::Faithful);
    let i = 17;
    let uk = UnitKeys::faithful(&k).unwrap();
    let j = piece_indices(uk.prng_seed(), unit_count(input.len()))[i] as usize;
    let truth = &input[i * 32..i * 32 + 32];
    let true_piece: [u8; 4] = truth[j * 4..j * 4 + 4].try_into().unwrap();
    let hits = attack(&public, &k, i, j, true_piece, SEARCH_BITS);
    assert_eq!(hits.len(), 1, "expected exactly one plausible candidate");
    assert_eq!(hits[0], truth, "brute force recovered the plaintext unit");
}

#[test]
fn strong_mode_resists_the_same_attack() {
    let (input, public, k) = setup(Mode::Strong);
    let i = 17;
    // Without S the attacker cannot know j; try all eight positions, giving
    // the attacker the true high bits of the piece at each one.
    let truth = &input[i * 32..i * 32 + 32];
    for j in 0..8 {
        let true_piece: [u8; 4] = truth[j * 4..j * 4 + 4].try_into().unwrap();
        let hits = attack(&public, &k, i, j, true_piece, SEARCH_BITS - 2);
        assert!(
            hits.iter().all(|h| h != truth),
            "strong mode leaked unit {i} to an attacker holding K"
        );
        assert!(
            hits.is_empty(),
            "unexpected plausible candidates: {}",
            hits.len()
        );
    }
}
