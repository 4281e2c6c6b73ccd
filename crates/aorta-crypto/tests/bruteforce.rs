//! The hole Algorithm 1 leaves (docs/selective-encryption.md): with K known,
//! the public fragment of a faithful-mode record can be brute-forced one unit
//! at a time over the 2^32 values of its private piece. Here the search is
//! restricted to 2^18 candidates (the top 14 bits of the piece are given to
//! the attacker) so the test is fast; the attack is otherwise the real one.
//! Strong mode resists the identical attack, in format v1 (SHA-256 mask) and
//! v2 (AES-256 mask). In v2 even the record's mask key, without the private
//! piece, leaves the same 2^32 search per unit as Algorithm 1 with K.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)] // test helpers

use aorta_crypto::selective::container::{
    open_private_with_key, parse_private, parse_public, protect_deterministic_as,
};
use aorta_crypto::selective::units::{piece_indices, unit_count, unit_hash, unit_mask_aes};
use aorta_crypto::selective::{
    FormatVersion, HeaderRule, KdfParams, MasterKey, Mode, ProtectOptions, Randomness, UnitKeys,
};

const PASS: &[u8] = b"Summer2019!"; // the reused, leaked password of the paper's premise
const SEARCH_BITS: u32 = 18;

fn text() -> Vec<u8> {
    let line = "Patient reports chest pain since Monday; ECG shows ST elevation in V2-V4.\n";
    line.repeat(40).into_bytes()
}

/// Decodes one unit given a guessed piece, as the attacker does.
fn try_piece(hash_key: &[u8; 32], public_unit: &[u8], j: usize, piece: [u8; 4], i: u64) -> Vec<u8> {
    try_piece_with(unit_hash(hash_key, piece, i), public_unit, j, piece)
}

/// Decodes one unit with the 32-byte mask source `h` and a guessed piece.
fn try_piece_with(h: [u8; 32], public_unit: &[u8], j: usize, piece: [u8; 4]) -> Vec<u8> {
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

fn setup(mode: Mode, version: FormatVersion) -> (Vec<u8>, Vec<u8>, MasterKey) {
    let (input, public, private) = protected(mode, version);
    // K is leaked (the paper's premise). The attacker derives it from the leaked
    // passphrase and the record's salt.
    let (h, _) = parse_private(&private).unwrap();
    let k = MasterKey::derive(PASS, &h.salt, &h.kdf).unwrap();
    (input, public, k)
}

fn protected(mode: Mode, version: FormatVersion) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let opts = ProtectOptions {
        mode,
        kdf: KdfParams::INSECURE_TEST,
        header: HeaderRule::None,
    };
    let input = text();
    let rnd = Randomness::fresh().unwrap();
    let p = protect_deterministic_as(&input, PASS, &opts, &rnd, version).unwrap();
    assert_eq!(p.public[4], version.to_byte());
    (input, p.public, p.private)
}

#[test]
fn faithful_mode_unit_recovered_by_brute_force_given_k() {
    // Format v2 keeps Algorithm 1 as published, and so its hole.
    for version in [FormatVersion::V1, FormatVersion::V2] {
        let (input, public, k) = setup(Mode::Faithful, version);
        let i = 17;
        let uk = UnitKeys::faithful(&k).unwrap();
        let j = piece_indices(uk.prng_seed(), unit_count(input.len()))[i] as usize;
        let truth = &input[i * 32..i * 32 + 32];
        let true_piece: [u8; 4] = truth[j * 4..j * 4 + 4].try_into().unwrap();
        let hits = attack(&public, &k, i, j, true_piece, SEARCH_BITS);
        assert_eq!(hits.len(), 1, "expected exactly one plausible candidate");
        assert_eq!(hits[0], truth, "brute force recovered the plaintext unit");
    }
}

#[test]
fn strong_mode_resists_the_same_attack() {
    for version in [FormatVersion::V1, FormatVersion::V2] {
        let (input, public, k) = setup(Mode::Strong, version);
        let i = 17;
        // Without S the attacker cannot know j; try all eight positions, giving
        // the attacker the true high bits of the piece at each one.
        let truth = &input[i * 32..i * 32 + 32];
        for j in 0..8 {
            let true_piece: [u8; 4] = truth[j * 4..j * 4 + 4].try_into().unwrap();
            let hits = attack(&public, &k, i, j, true_piece, SEARCH_BITS - 2);
            assert!(
                hits.iter().all(|h| h != truth),
                "strong mode ({version:?}) leaked unit {i} to an attacker holding K"
            );
            assert!(
                hits.is_empty(),
                "unexpected plausible candidates: {}",
                hits.len()
            );
        }
    }
}

#[test]
fn strong_v2_attacker_with_k_tries_the_aes_mask_keyed_by_k_and_fails() {
    // The attacker knows the v2 specification and K but not S: the best
    // they can do is key the AES mask with something derived from K alone
    // (here K itself, and the v2 derivation with an all-zero S).
    let (input, public, k) = setup(Mode::Strong, FormatVersion::V2);
    let (_, body, _) = parse_public(&public).unwrap();
    let i = 17;
    let truth = &input[i * 32..i * 32 + 32];
    let guesses = [
        *k.as_bytes(),
        *UnitKeys::strong_v2(
            &k,
            &aorta_crypto::selective::RecordSecret::from_bytes([0; 32]),
        )
        .unwrap()
        .hash_key(),
    ];
    for key in guesses {
        for j in 0..8 {
            let high = u32::from_be_bytes(truth[j * 4..j * 4 + 4].try_into().unwrap()) >> 16;
            for low in 0..(1u32 << 16) {
                let cand = ((high << 16) | low).to_be_bytes();
                let mask = unit_mask_aes(&key, cand, i as u64);
                let unit = try_piece_with(mask, &body[i * 28..i * 28 + 28], j, cand);
                assert!(!plausible_text(&unit), "candidate decoded to text");
            }
        }
    }
}

#[test]
fn strong_v2_mask_key_without_the_private_piece_still_needs_the_search() {
    // What binding the private piece into the AES input buys: someone who
    // obtained the record's mask key and PRNG seed (say, unit keys that
    // leaked without the pieces) still has to search each unit's 2^32 piece
    // values, as with Algorithm 1 and K. Without the piece in the input the
    // mask would follow from the key alone and decode every unit at once.
    let (input, public, private) = protected(Mode::Strong, FormatVersion::V2);
    let (h, _) = parse_private(&private).unwrap();
    let k = MasterKey::derive(PASS, &h.salt, &h.kdf).unwrap();
    let m = open_private_with_key(&private, &k).unwrap();
    let (key, seed) = (*m.unit_keys.hash_key(), *m.unit_keys.prng_seed());
    let (_, body, _) = parse_public(&public).unwrap();
    let i = 17;
    let j = piece_indices(&seed, unit_count(input.len()))[i] as usize;
    let truth = &input[i * 32..i * 32 + 32];
    let public_unit = &body[i * 28..i * 28 + 28];
    // No search: a fixed guess of the piece decodes to garbage.
    let zero = try_piece_with(
        unit_mask_aes(&key, [0; 4], i as u64),
        public_unit,
        j,
        [0; 4],
    );
    assert!(!plausible_text(&zero));
    // The search (top 14 bits given, as above) finds exactly the true unit.
    let high = u32::from_be_bytes(truth[j * 4..j * 4 + 4].try_into().unwrap()) >> SEARCH_BITS;
    let hits: Vec<Vec<u8>> = (0..(1u32 << SEARCH_BITS))
        .map(|low| ((high << SEARCH_BITS) | low).to_be_bytes())
        .map(|cand| try_piece_with(unit_mask_aes(&key, cand, i as u64), public_unit, j, cand))
        .filter(|u| plausible_text(u))
        .collect();
    assert_eq!(hits, vec![truth.to_vec()]);
}
