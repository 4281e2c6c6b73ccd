//! The unit transform of Algorithm 1 (lines 2–12): content C is cut into
//! 256-bit units, each into eight 32-bit pieces; a keyed PRNG picks piece j;
//! H_i = SHA-256(C_i^j ‖ key ‖ counter); the other 224 bits XOR the first 224
//! bits of H_i form the public fragment, C_i^j goes to the private fragment.
//!
//! Once the piece indices are drawn (sequentially, from the PRNG) the units are
//! independent, so both directions run in parallel with rayon. Each H_i is one
//! call of the SHA-256 compression function on a pre-padded 64-byte block
//! (`sha2::block_api::compress256`, which uses SHA-NI / ARMv8 SHA2 when the CPU
//! has them); the block is exactly what `SHA-256(piece ‖ key ‖ counter)` pads
//! to, so H_i is the standard SHA-256 digest.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;
use sha2::block_api::compress256;
use sha2::{Digest, Sha256};

use super::keys::UnitKeys;

/// Bytes per unit (256 bits).
pub const UNIT_BYTES: usize = 32;
/// Bytes per piece (32 bits).
pub const PIECE_BYTES: usize = 4;
/// Public-fragment bytes per unit (224 bits).
pub const PUBLIC_UNIT_BYTES: usize = UNIT_BYTES - PIECE_BYTES;
/// Units handed to one rayon task.
const CHUNK_UNITS: usize = 8192;
/// Bytes of public body per checksum segment (8192 units × 28 bytes); see
/// [`segment_digests`].
pub const SEGMENT_BYTES: usize = CHUNK_UNITS * PUBLIC_UNIT_BYTES;

const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Message length hashed per unit: piece (4) + key (32) + counter (8).
const MSG_BYTES: usize = PIECE_BYTES + 32 + 8;

/// Number of units for `len` content bytes (the last partial unit counts).
pub fn unit_count(len: usize) -> usize {
    len.div_ceil(UNIT_BYTES)
}

/// The private piece index j ∈ 0..8 of each of `n` units: the low three bits
/// of successive bytes of the ChaCha20 stream seeded with `seed`
/// (`rand_chacha::ChaCha20Rng`, the original 20-round ChaCha with a 64-bit
/// block counter and stream 0, starting at block 0).
pub fn piece_indices(seed: &[u8; 32], n: usize) -> Vec<u8> {
    let mut rng = ChaCha20Rng::from_seed(*seed);
    let mut out = vec![0u8; n];
    rng.fill_bytes(&mut out);
    for b in &mut out {
        *b &= 7;
    }
    out
}

/// A pre-padded SHA-256 block holding `piece ‖ key ‖ counter` with the
/// standard padding for a 44-byte message.
#[derive(Clone)]
struct BlockTemplate([u8; 64]);

impl BlockTemplate {
    fn new(key: &[u8; 32]) -> Self {
        let mut b = [0u8; 64];
        b[4..36].copy_from_slice(key);
        b[MSG_BYTES] = 0x80;
        b[56..64].copy_from_slice(&((MSG_BYTES as u64) * 8).to_be_bytes());
        Self(b)
    }

    /// H_i as eight big-endian state words.
    #[inline]
    fn hash(&self, piece: [u8; 4], counter: u64) -> [u32; 8] {
        let mut block = self.0;
        block[0..4].copy_from_slice(&piece);
        block[36..44].copy_from_slice(&counter.to_be_bytes());
        let mut st = SHA256_IV;
        compress256(&mut st, &[block]);
        st
    }
}

impl Drop for BlockTemplate {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// H_i = SHA-256(piece ‖ key ‖ counter_be64), exposed for the brute-force
/// demonstration and tests.
pub fn unit_hash(key: &[u8; 32], piece: [u8; 4], counter: u64) -> [u8; 32] {
    let st = BlockTemplate::new(key).hash(piece, counter);
    let mut out = [0u8; 32];
    for (o, w) in out.chunks_exact_mut(4).zip(st) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// The unit's eight pieces as native-endian words; a short final unit is
/// zero-padded (the padding rule).
#[inline(always)]
fn words_of(unit: &[u8]) -> [u32; 8] {
    let mut w = [0u32; 8];
    if unit.len() == UNIT_BYTES {
        for (dst, src) in w.iter_mut().zip(unit.chunks_exact(PIECE_BYTES)) {
            let mut b = [0u8; 4];
            b.copy_from_slice(src);
            *dst = u32::from_ne_bytes(b);
        }
    } else {
        let mut padded = [0u8; UNIT_BYTES];
        if let Some(d) = padded.get_mut(..unit.len()) {
            d.copy_from_slice(unit);
        }
        for (dst, src) in w.iter_mut().zip(padded.chunks_exact(PIECE_BYTES)) {
            let mut b = [0u8; 4];
            b.copy_from_slice(src);
            *dst = u32::from_ne_bytes(b);
        }
    }
    w
}

/// The seven words other than `j`, in order, selected without branches
/// (j is random per unit, so a branch would mispredict).
#[inline(always)]
fn others(w: &[u32; 8], j: usize) -> [u32; 7] {
    let mut o = [0u32; 7];
    for (k, dst) in o.iter_mut().enumerate() {
        let a = w.get(k).copied().unwrap_or(0);
        let b = w.get(k + 1).copied().unwrap_or(0);
        *dst = if k < j { a } else { b };
    }
    o
}

#[inline(always)]
fn encode_unit(
    t: &BlockTemplate,
    unit: &[u8],
    j: u8,
    counter: u64,
    public: &mut [u8],
    private: &mut [u8],
) {
    let w = words_of(unit);
    let j = usize::from(j & 7);
    let sel = w.get(j).copied().unwrap_or(0).to_ne_bytes();
    private.copy_from_slice(&sel);
    let h = t.hash(sel, counter);
    for ((out, p), hw) in public
        .chunks_exact_mut(PIECE_BYTES)
        .zip(others(&w, j))
        .zip(h)
    {
        out.copy_from_slice(&(p ^ hw.to_be()).to_ne_bytes());
    }
}

#[inline(always)]
fn decode_unit(
    t: &BlockTemplate,
    public: &[u8],
    private: &[u8],
    j: u8,
    counter: u64,
    out: &mut [u8],
) {
    let mut sel = [0u8; 4];
    sel.copy_from_slice(private);
    let h = t.hash(sel, counter);
    let j = usize::from(j & 7);
    let mut o = [0u32; 7];
    for ((dst, p), hw) in o.iter_mut().zip(public.chunks_exact(PIECE_BYTES)).zip(h) {
        let mut b = [0u8; 4];
        b.copy_from_slice(p);
        *dst = u32::from_ne_bytes(b) ^ hw.to_be();
    }
    let s = u32::from_ne_bytes(sel);
    for (k, dst) in out.chunks_exact_mut(PIECE_BYTES).enumerate() {
        let before = o.get(k).copied().unwrap_or(0);
        let after = o.get(k.wrapping_sub(1)).copied().unwrap_or(0);
        let v = if k < j {
            before
        } else if k == j {
            s
        } else {
            after
        };
        dst.copy_from_slice(&v.to_ne_bytes());
    }
}

/// Algorithm 1, lines 2–12, on `content`: returns (PUF_c body, PRF_c pieces)
/// of lengths 28·N and 4·N, N = ⌈len/32⌉. A final partial unit is zero-padded
/// to 32 bytes before the transform; the true length is recorded by the
/// container and the padding is dropped on recovery.
///
/// Runs on the current rayon pool (use `ThreadPool::install` to bound it).
pub fn encode(keys: &UnitKeys, content: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let n = unit_count(content.len());
    let mut public = vec![0u8; n * PUBLIC_UNIT_BYTES];
    let mut private = vec![0u8; n * PIECE_BYTES];
    encode_into(keys, content, &mut public, &mut private);
    (public, private)
}

/// SHA-256 of each [`SEGMENT_BYTES`]-byte segment of a public body (the last
/// one may be shorter), computed in parallel: the leaves of the public
/// container's checksum.
pub fn segment_digests(public: &[u8]) -> Vec<[u8; 32]> {
    public
        .par_chunks(SEGMENT_BYTES)
        .map(|seg| Sha256::digest(seg).into())
        .collect()
}

/// [`encode`] into caller-provided buffers (no copies), which must be exactly
/// 28·N and 4·N bytes long; with other lengths only the units that fit
/// all three buffers are written. Returns [`segment_digests`] of the public
/// body, each computed by the task that wrote the segment while it is in cache.
pub fn encode_into(
    keys: &UnitKeys,
    content: &[u8],
    public: &mut [u8],
    private: &mut [u8],
) -> Vec<[u8; 32]> {
    let n = unit_count(content.len());
    let js = piece_indices(&keys.prng_seed, n);
    let t = BlockTemplate::new(&keys.hash_key);
    content
        .par_chunks(CHUNK_UNITS * UNIT_BYTES)
        .zip(public.par_chunks_mut(CHUNK_UNITS * PUBLIC_UNIT_BYTES))
        .zip(private.par_chunks_mut(CHUNK_UNITS * PIECE_BYTES))
        .zip(js.par_chunks(CHUNK_UNITS))
        .enumerate()
        .map(|(ci, (((c, pu), pr), jc))| {
            let base = (ci * CHUNK_UNITS) as u64;
            for (k, (((unit, pub_u), priv_u), j)) in c
                .chunks(UNIT_BYTES)
                .zip(pu.chunks_exact_mut(PUBLIC_UNIT_BYTES))
                .zip(pr.chunks_exact_mut(PIECE_BYTES))
                .zip(jc)
                .enumerate()
            {
                encode_unit(&t, unit, *j, base + k as u64, pub_u, priv_u);
            }
            Sha256::digest(&*pu).into()
        })
        .collect()
}

/// Inverse of [`encode`]: rebuilds `len` content bytes from the public body
/// and the private pieces. The caller has checked that the lengths match
/// `len` (see [`expected_lengths`]); on a mismatch the output is shorter.
pub fn decode(keys: &UnitKeys, public: &[u8], private: &[u8], len: usize) -> Vec<u8> {
    let n = unit_count(len);
    let js = piece_indices(&keys.prng_seed, n);
    let mut out = vec![0u8; n * UNIT_BYTES];
    let t = BlockTemplate::new(&keys.hash_key);
    out.par_chunks_mut(CHUNK_UNITS * UNIT_BYTES)
        .zip(public.par_chunks(CHUNK_UNITS * PUBLIC_UNIT_BYTES))
        .zip(private.par_chunks(CHUNK_UNITS * PIECE_BYTES))
        .zip(js.par_chunks(CHUNK_UNITS))
        .enumerate()
        .for_each(|(ci, (((o, pu), pr), jc))| {
            let base = (ci * CHUNK_UNITS) as u64;
            for (k, (((dst, pub_u), priv_u), j)) in o
                .chunks_exact_mut(UNIT_BYTES)
                .zip(pu.chunks_exact(PUBLIC_UNIT_BYTES))
                .zip(pr.chunks_exact(PIECE_BYTES))
                .zip(jc)
                .enumerate()
            {
                decode_unit(&t, pub_u, priv_u, *j, base + k as u64, dst);
            }
        });
    out.truncate(len);
    out
}

/// The hash work alone of [`encode`] for `n` units (one pre-padded
/// compression per unit, same parallel split), for benchmarks: the ceiling
/// the unit transform can reach. Returns a value that depends on every hash.
pub fn hash_only(keys: &UnitKeys, n: usize) -> u32 {
    let t = BlockTemplate::new(&keys.hash_key);
    let chunks = n.div_ceil(CHUNK_UNITS);
    (0..chunks)
        .into_par_iter()
        .map(|ci| {
            let start = ci * CHUNK_UNITS;
            let end = (start + CHUNK_UNITS).min(n);
            let mut acc = 0u32;
            for i in start..end {
                let piece = (i as u32).to_ne_bytes();
                acc ^= t.hash(piece, i as u64)[0];
            }
            acc
        })
        .reduce(|| 0, |a, b| a ^ b)
}

/// (public body length, private pieces length) for `len` content bytes, or
/// `None` on overflow.
pub fn expected_lengths(len: u64) -> Option<(usize, usize)> {
    let len = usize::try_from(len).ok()?;
    let n = unit_count(len);
    Some((
        n.checked_mul(PUBLIC_UNIT_BYTES)?,
        n.checked_mul(PIECE_BYTES)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> UnitKeys {
        UnitKeys::from_parts([7u8; 32], [9u8; 32])
    }

    #[test]
    fn unit_hash_is_standard_sha256_of_piece_key_counter() {
        let key = [0x42u8; 32];
        let piece = [1, 2, 3, 4];
        let ctr = 0x0102_0304_0506_0708u64;
        let mut msg = Vec::new();
        msg.extend_from_slice(&piece);
        msg.extend_from_slice(&key);
        msg.extend_from_slice(&ctr.to_be_bytes());
        let want: [u8; 32] = Sha256::digest(&msg).into();
        assert_eq!(unit_hash(&key, piece, ctr), want);
    }

    #[test]
    fn encode_matches_algorithm_1_written_out_sequentially() {
        let content: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        let k = keys();
        let (pubf, privf) = encode(&k, &content);
        let n = unit_count(content.len());
        let js = piece_indices(k.prng_seed(), n);
        let mut padded = content.clone();
        padded.resize(n * 32, 0);
        for i in 0..n {
            let unit = &padded[i * 32..i * 32 + 32];
            let j = js[i] as usize;
            let piece: [u8; 4] = unit[j * 4..j * 4 + 4].try_into().unwrap();
            assert_eq!(&privf[i * 4..i * 4 + 4], &piece);
            let h = unit_hash(k.hash_key(), piece, i as u64);
            let rest: Vec<u8> = (0..8)
                .filter(|&q| q != j)
                .flat_map(|q| unit[q * 4..q * 4 + 4].to_vec())
                .collect();
            let want: Vec<u8> = rest.iter().zip(&h[..28]).map(|(a, b)| a ^ b).collect();
            assert_eq!(&pubf[i * 28..i * 28 + 28], &want[..], "unit {i}");
        }
    }

    #[test]
    fn roundtrip_various_lengths_including_partial_units_and_many_chunks() {
        let k = keys();
        for len in [
            0usize,
            1,
            3,
            4,
            31,
            32,
            33,
            64,
            1000,
            CHUNK_UNITS * 32 * 2 + 17,
        ] {
            let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (p, q) = encode(&k, &content);
            assert_eq!(Some((p.len(), q.len())), expected_lengths(len as u64));
            assert_eq!(decode(&k, &p, &q, len), content, "len {len}");
            let mut p2 = vec![0u8; p.len()];
            let mut q2 = vec![0u8; q.len()];
            let leaves = encode_into(&k, &content, &mut p2, &mut q2);
            assert_eq!(leaves, segment_digests(&p), "len {len}");
            assert_eq!(leaves.len(), p.len().div_ceil(SEGMENT_BYTES));
        }
    }

    #[test]
    fn piece_indices_are_roughly_uniform() {
        let js = piece_indices(&[1u8; 32], 80_000);
        let mut counts = [0usize; 8];
        for j in js {
            counts[j as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }
}
