//! The unit transform of Algorithm 1 (lines 2–12): content C is cut into
//! 256-bit units, each into eight 32-bit pieces; a keyed PRNG picks piece j;
//! a 224-bit mask M_i keyed by C_i^j and the counter i is XORed onto the other
//! seven pieces to form the public fragment, C_i^j goes to the private one.
//!
//! Two masks ([`UnitMask`]):
//! * [`UnitMask::Sha256`] (Algorithm 1 as published; faithful mode, and
//!   strong mode in format v1): M_i = the first 28 bytes of
//!   H_i = SHA-256(C_i^j ‖ key ‖ u64be(i)). Each H_i is one call of the
//!   SHA-256 compression function on a pre-padded 64-byte block
//!   (`sha2::block_api::compress256`, SHA-NI / ARMv8 SHA2 when the CPU has
//!   them, detected at run time); the block is exactly what the 44-byte
//!   message pads to, so H_i is the standard SHA-256 digest.
//! * [`UnitMask::Aes256`] (strong mode from format v2): M_i = the first 28
//!   bytes of AES-256_key(X_i,0) ‖ AES-256_key(X_i,1) with
//!   X_i,b = C_i^j ‖ u64be(i) ‖ b ‖ 0x4d ‖ 0x00 0x00. Units are taken 32 at a
//!   time so that 64 independent AES blocks are in flight (`aes` crate,
//!   AES-NI detected at run time, eight blocks per pipelined batch).
//!
//! Units are independent, and so is the PRNG: the piece indices of each
//! chunk of [`CHUNK_UNITS`] units are read from the ChaCha20 stream at that
//! chunk's offset, so both directions run in parallel with rayon and the
//! output does not depend on the number of threads.

use aes::Aes256;
use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;
use sha2::block_api::compress256;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

pub use super::UnitMask;
use super::keys::UnitKeys;

/// Bytes per unit (256 bits).
pub const UNIT_BYTES: usize = 32;
/// Bytes per piece (32 bits).
pub const PIECE_BYTES: usize = 4;
/// Public-fragment bytes per unit (224 bits).
pub const PUBLIC_UNIT_BYTES: usize = UNIT_BYTES - PIECE_BYTES;
/// Units handed to one rayon task (and covered by one checksum segment).
pub const CHUNK_UNITS: usize = 8192;
/// Bytes of public body per checksum segment (8192 units × 28 bytes); see
/// [`segment_digests`].
pub const SEGMENT_BYTES: usize = CHUNK_UNITS * PUBLIC_UNIT_BYTES;
/// Units whose masks are computed together: 64 AES blocks in one call, or
/// 32 SHA-256 compressions on blocks prepared beforehand.
const BATCH_UNITS: usize = 32;
/// The domain byte of the AES mask blocks (byte 13): `M` for mask. Other
/// uses of a key derived for this purpose would take another value.
pub const AES_MASK_DOMAIN: u8 = 0x4d;

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

/// BLAKE3 key-derivation context of a v2 checksum leaf.
pub const BLAKE3_LEAF_CONTEXT: &str = "aorta-se v2 public fragment checksum segment";

/// The hash of each checksum segment (the leaves of the public container's
/// checksum; see `docs/vault-format.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentHash {
    /// Format v1: SHA-256(segment).
    Sha256,
    /// Format v2: BLAKE3 in key-derivation mode with context
    /// [`BLAKE3_LEAF_CONTEXT`], 32-byte output.
    Blake3,
}

impl SegmentHash {
    /// The leaf hash of one segment.
    pub fn digest(self, segment: &[u8]) -> [u8; 32] {
        match self {
            SegmentHash::Sha256 => Sha256::digest(segment).into(),
            SegmentHash::Blake3 => {
                let mut h = blake3::Hasher::new_derive_key(BLAKE3_LEAF_CONTEXT);
                h.update(segment);
                *h.finalize().as_bytes()
            }
        }
    }
}

/// Number of units for `len` content bytes (the last partial unit counts).
pub fn unit_count(len: usize) -> usize {
    len.div_ceil(UNIT_BYTES)
}

/// The private piece index j ∈ 0..8 of each of `n` units: the low three bits
/// of successive bytes of the ChaCha20 stream seeded with `seed`
/// (`rand_chacha::ChaCha20Rng`, the original 20-round ChaCha with a 64-bit
/// block counter and stream 0, starting at block 0).
pub fn piece_indices(seed: &[u8; 32], n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    piece_indices_at(seed, 0, &mut out);
    out
}

/// The piece indices of units `first ..` into `out` (the same values as
/// [`piece_indices`] at those positions). `first` must be a multiple of 4
/// (the stream is addressed in 32-bit words); chunk starts are.
fn piece_indices_at(seed: &[u8; 32], first: u64, out: &mut [u8]) {
    let mut rng = ChaCha20Rng::from_seed(*seed);
    rng.set_word_pos(u128::from(first / 4));
    rng.fill_bytes(out);
    for b in out.iter_mut() {
        *b &= 7;
    }
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

    /// H_i as eight big-endian state words; `self` is the template with the
    /// previous unit's piece and counter, overwritten here.
    #[inline(always)]
    fn hash(&mut self, piece: [u8; 4], counter: u64) -> [u32; 8] {
        self.0[0..4].copy_from_slice(&piece);
        self.0[36..44].copy_from_slice(&counter.to_be_bytes());
        let mut st = SHA256_IV;
        compress256(&mut st, core::slice::from_ref(&self.0));
        st
    }
}

impl Drop for BlockTemplate {
    fn drop(&mut self) {
        self.0.zeroize();
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

/// The AES mask input block X_i,b = piece ‖ u64be(counter) ‖ b ‖ 0x4d ‖ 0 0.
#[inline(always)]
fn aes_block(piece: [u8; 4], counter: u64, b: u8) -> [u8; 16] {
    let mut x = [0u8; 16];
    x[0..4].copy_from_slice(&piece);
    x[4..12].copy_from_slice(&counter.to_be_bytes());
    x[12] = b;
    x[13] = AES_MASK_DOMAIN;
    x
}

/// AES-256_key(X_i,0) ‖ AES-256_key(X_i,1): the 32 bytes whose first 28 are
/// unit i's mask under [`UnitMask::Aes256`], exposed for the attack tests and
/// the specification's worked example.
pub fn unit_mask_aes(key: &[u8; 32], piece: [u8; 4], counter: u64) -> [u8; 32] {
    let c = Aes256::new(GenericArray::from_slice(key));
    let mut out = [0u8; 32];
    for (b, half) in (0u8..).zip(out.chunks_exact_mut(16)) {
        let mut blk = GenericArray::from(aes_block(piece, counter, b));
        c.encrypt_block(&mut blk);
        half.copy_from_slice(&blk);
    }
    out
}

/// Word `k` (0..8, in range by construction) of a unit, native-endian.
#[inline(always)]
fn word(unit: &[u8; UNIT_BYTES], k: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(src) = unit.get(k * PIECE_BYTES..k * PIECE_BYTES + PIECE_BYTES) {
        b.copy_from_slice(src);
    }
    u32::from_ne_bytes(b)
}

/// The private piece: word `j` of the unit, read by index straight from the
/// content (j is random per unit, so a branch or a jump table on it would
/// mispredict; `j & 7` keeps it in range).
#[inline(always)]
fn pick(unit: &[u8; UNIT_BYTES], j: u8) -> u32 {
    word(unit, usize::from(j & 7))
}

/// The seven words other than `j`, in order: word k is word `k + (k >= j)`
/// of the unit, read by index without branches.
#[inline(always)]
fn others(unit: &[u8; UNIT_BYTES], j: u8) -> [u32; 7] {
    let j = usize::from(j & 7);
    let mut o = [0u32; 7];
    for (k, dst) in o.iter_mut().enumerate() {
        *dst = word(unit, k + usize::from(k >= j));
    }
    o
}

/// Calls `f` with the unit as a 32-byte array, zero-padding a short final
/// unit (the padding rule).
#[inline(always)]
fn with_unit<R>(unit: &[u8], f: impl FnOnce(&[u8; UNIT_BYTES]) -> R) -> R {
    match <&[u8; UNIT_BYTES]>::try_from(unit) {
        Ok(full) => f(full),
        Err(_) => {
            let mut padded = [0u8; UNIT_BYTES];
            for (d, s) in padded.iter_mut().zip(unit) {
                *d = *s;
            }
            f(&padded)
        }
    }
}

/// Writes `others XOR mask` (mask as native-endian words of its bytes).
#[inline(always)]
fn xor_out(out: &mut [u8], others: [u32; 7], mask: &[u32; 7]) {
    for ((dst, o), m) in out.chunks_exact_mut(PIECE_BYTES).zip(others).zip(mask) {
        dst.copy_from_slice(&(o ^ m).to_ne_bytes());
    }
}

/// The seven public words of a unit XOR the mask.
#[inline(always)]
fn unmask(pub_u: &[u8], m: &[u32; 7]) -> [u32; 7] {
    let mut o = [0u32; 7];
    for ((dst, p), mw) in o.iter_mut().zip(pub_u.chunks_exact(PIECE_BYTES)).zip(m) {
        let mut b = [0u8; 4];
        b.copy_from_slice(p);
        *dst = u32::from_ne_bytes(b) ^ mw;
    }
    o
}

/// Rebuilds a unit from the seven unmasked words and the piece at `j`:
/// word k is `o[k]` before j, the piece at j, `o[k - 1]` after, taken by
/// index from `o ‖ piece` without branches.
#[inline(always)]
fn rebuild(out: &mut [u8], o: &[u32; 7], piece: u32, j: u8) {
    let j = usize::from(j & 7);
    let mut all = [0u32; 8];
    for (d, x) in all.iter_mut().zip(o.iter().chain(core::iter::once(&piece))) {
        *d = *x;
    }
    for (k, dst) in out.chunks_exact_mut(PIECE_BYTES).enumerate() {
        let idx = if k == j { 7 } else { k - usize::from(k > j) };
        dst.copy_from_slice(&all.get(idx).copied().unwrap_or(0).to_ne_bytes());
    }
}

/// A 16-byte AES block.
type AesBlock = GenericArray<u8, aes::cipher::consts::U16>;

/// The per-task working memory of one batch of [`BATCH_UNITS`] units. The
/// work is done in passes over the batch — pieces, then every mask input
/// written in place (only the piece and counter bytes change), then every
/// mask, then the public parts — so that no pass reads what the previous few
/// instructions stored (a read straddling recent narrower stores makes the
/// CPU wait for them) and the units' independent SHA-256 compressions or AES
/// blocks overlap in the CPU. Holds key bytes, pieces and masks: wiped on
/// drop.
struct Scratch {
    sha_blocks: [[u8; 64]; BATCH_UNITS],
    sha_states: [[u32; 8]; BATCH_UNITS],
    aes_blocks: [AesBlock; 2 * BATCH_UNITS],
    pieces: [[u8; 4]; BATCH_UNITS],
}

impl Scratch {
    fn new(masker: &Masker) -> Box<Self> {
        let sha_blocks = match masker {
            Masker::Sha(t) => [t.0; BATCH_UNITS],
            Masker::Aes(_) => [[0u8; 64]; BATCH_UNITS],
        };
        Box::new(Self {
            sha_blocks,
            sha_states: [SHA256_IV; BATCH_UNITS],
            aes_blocks: [GenericArray::from([0u8; 16]); 2 * BATCH_UNITS],
            pieces: [[0; 4]; BATCH_UNITS],
        })
    }

    /// Computes the masks of `pieces[..m]` for the units numbered `first ..`
    /// (read them with [`Scratch::mask`]).
    #[inline(always)]
    fn fill_masks(&mut self, masker: &Masker, first: u64, m: usize) {
        match masker {
            Masker::Sha(_) => {
                for ((blk, piece), i) in self.sha_blocks.iter_mut().zip(&self.pieces).zip(first..) {
                    blk[0..4].copy_from_slice(piece);
                    blk[36..44].copy_from_slice(&i.to_be_bytes());
                }
                for st in self.sha_states.iter_mut() {
                    *st = SHA256_IV;
                }
                for (blk, st) in self
                    .sha_blocks
                    .iter()
                    .zip(self.sha_states.iter_mut())
                    .take(m)
                {
                    compress256(st, core::slice::from_ref(blk));
                }
            }
            Masker::Aes(cipher) => {
                for ((pair, piece), i) in self
                    .aes_blocks
                    .chunks_exact_mut(2)
                    .zip(&self.pieces)
                    .zip(first..)
                {
                    // Written in place, byte ranges only (the previous
                    // batch's encryption overwrote every byte).
                    for (b, blk) in (0u8..).zip(pair) {
                        if let Ok(x) = <&mut [u8; 16]>::try_from(blk.as_mut_slice()) {
                            x[0..4].copy_from_slice(piece);
                            x[4..12].copy_from_slice(&i.to_be_bytes());
                            x[12..16].copy_from_slice(&[b, AES_MASK_DOMAIN, 0, 0]);
                        }
                    }
                }
                if let Some(bs) = self.aes_blocks.get_mut(..2 * m) {
                    cipher.encrypt_blocks(bs);
                }
            }
        }
    }

    /// Unit `u`'s mask (the first 28 bytes of H_i, or of the two AES output
    /// blocks) as native-endian words of its bytes.
    #[inline(always)]
    fn mask(&self, masker: &Masker, u: usize) -> [u32; 7] {
        let mut m = [0u32; 7];
        match masker {
            Masker::Sha(_) => {
                if let Some(st) = self.sha_states.get(u) {
                    for (d, hw) in m.iter_mut().zip(st) {
                        *d = hw.to_be();
                    }
                }
            }
            Masker::Aes(_) => {
                if let (Some(b0), Some(b1)) =
                    (self.aes_blocks.get(2 * u), self.aes_blocks.get(2 * u + 1))
                {
                    let (m0, m1) = m.split_at_mut(4);
                    for (d, c) in m0.iter_mut().zip(b0.chunks_exact(4)) {
                        let mut w = [0u8; 4];
                        w.copy_from_slice(c);
                        *d = u32::from_ne_bytes(w);
                    }
                    for (d, c) in m1.iter_mut().zip(b1.chunks_exact(4)) {
                        let mut w = [0u8; 4];
                        w.copy_from_slice(c);
                        *d = u32::from_ne_bytes(w);
                    }
                }
            }
        }
        m
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.sha_blocks.as_flattened_mut().zeroize();
        self.sha_states.as_flattened_mut().zeroize();
        for blk in self.aes_blocks.iter_mut() {
            blk.as_mut_slice().zeroize();
        }
        self.pieces.as_flattened_mut().zeroize();
    }
}

/// The mask function of one transform, built once per call.
enum Masker {
    Sha(BlockTemplate),
    Aes(Box<Aes256>),
}

impl Masker {
    fn new(keys: &UnitKeys, mask: UnitMask) -> Self {
        match mask {
            UnitMask::Sha256 => Masker::Sha(BlockTemplate::new(&keys.hash_key)),
            UnitMask::Aes256 => Masker::Aes(Box::new(Aes256::new(GenericArray::from_slice(
                &keys.hash_key,
            )))),
        }
    }

    /// Encodes one chunk: `c` content (the last unit may be short), `js`
    /// piece indices, into `pu` (28 bytes per unit) and `pr` (4 per unit).
    fn encode_chunk(&self, base: u64, c: &[u8], js: &[u8], pu: &mut [u8], pr: &mut [u8]) {
        let mut s = Scratch::new(self);
        for (((cb, pb), prb), (jb, first)) in c
            .chunks(UNIT_BYTES * BATCH_UNITS)
            .zip(pu.chunks_mut(PUBLIC_UNIT_BYTES * BATCH_UNITS))
            .zip(pr.chunks_mut(PIECE_BYTES * BATCH_UNITS))
            .zip(js.chunks(BATCH_UNITS).zip((base..).step_by(BATCH_UNITS)))
        {
            let mut m = 0;
            for (((unit, priv_u), j), piece) in cb
                .chunks(UNIT_BYTES)
                .zip(prb.chunks_exact_mut(PIECE_BYTES))
                .zip(jb)
                .zip(s.pieces.iter_mut())
            {
                *piece = with_unit(unit, |u| pick(u, *j)).to_ne_bytes();
                priv_u.copy_from_slice(piece);
                m += 1;
            }
            s.fill_masks(self, first, m);
            for (u, ((pub_u, unit), j)) in pb
                .chunks_exact_mut(PUBLIC_UNIT_BYTES)
                .zip(cb.chunks(UNIT_BYTES))
                .zip(jb)
                .enumerate()
            {
                let o = with_unit(unit, |w| others(w, *j));
                xor_out(pub_u, o, &s.mask(self, u));
            }
        }
    }

    /// Decodes one chunk: the inverse of [`Masker::encode_chunk`] into `o`
    /// (32 bytes per unit).
    fn decode_chunk(&self, base: u64, pu: &[u8], pr: &[u8], js: &[u8], o: &mut [u8]) {
        let mut s = Scratch::new(self);
        for (((ob, pb), prb), (jb, first)) in o
            .chunks_mut(UNIT_BYTES * BATCH_UNITS)
            .zip(pu.chunks(PUBLIC_UNIT_BYTES * BATCH_UNITS))
            .zip(pr.chunks(PIECE_BYTES * BATCH_UNITS))
            .zip(js.chunks(BATCH_UNITS).zip((base..).step_by(BATCH_UNITS)))
        {
            let mut m = 0;
            for (priv_u, piece) in prb.chunks_exact(PIECE_BYTES).zip(s.pieces.iter_mut()) {
                piece.copy_from_slice(priv_u);
                m += 1;
            }
            s.fill_masks(self, first, m);
            for (u, (((dst, pub_u), priv_u), j)) in ob
                .chunks_exact_mut(UNIT_BYTES)
                .zip(pb.chunks_exact(PUBLIC_UNIT_BYTES))
                .zip(prb.chunks_exact(PIECE_BYTES))
                .zip(jb)
                .enumerate()
            {
                let mut piece = [0u8; 4];
                piece.copy_from_slice(priv_u);
                let plain = unmask(pub_u, &s.mask(self, u));
                rebuild(dst, &plain, u32::from_ne_bytes(piece), *j);
            }
        }
    }
}

/// Algorithm 1, lines 2–12, on `content` with the given mask: returns
/// (PUF_c body, PRF_c pieces) of lengths 28·N and 4·N, N = ⌈len/32⌉. A final
/// partial unit is zero-padded to 32 bytes before the transform; the true
/// length is recorded by the container and the padding is dropped on
/// recovery.
///
/// Runs on the current rayon pool (use `ThreadPool::install` to bound it).
pub fn encode(keys: &UnitKeys, mask: UnitMask, content: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let n = unit_count(content.len());
    let mut public = vec![0u8; n * PUBLIC_UNIT_BYTES];
    let mut private = vec![0u8; n * PIECE_BYTES];
    transform(keys, mask, content, &mut public, &mut private, None);
    (public, private)
}

/// The leaf hashes of each [`SEGMENT_BYTES`]-byte segment of a public body
/// (the last one may be shorter), computed in parallel: the leaves of the
/// public container's checksum.
pub fn segment_digests(public: &[u8], leaf: SegmentHash) -> Vec<[u8; 32]> {
    public
        .par_chunks(SEGMENT_BYTES)
        .map(|seg| leaf.digest(seg))
        .collect()
}

/// [`encode`] into caller-provided buffers (no copies), which must be exactly
/// 28·N and 4·N bytes long; with other lengths only the units that fit
/// all three buffers are written. Returns [`segment_digests`] of the public
/// body, each computed by the task that wrote the segment while it is in cache.
pub fn encode_into(
    keys: &UnitKeys,
    mask: UnitMask,
    content: &[u8],
    public: &mut [u8],
    private: &mut [u8],
    leaf: SegmentHash,
) -> Vec<[u8; 32]> {
    transform(keys, mask, content, public, private, Some(leaf))
}

fn transform(
    keys: &UnitKeys,
    mask: UnitMask,
    content: &[u8],
    public: &mut [u8],
    private: &mut [u8],
    leaf: Option<SegmentHash>,
) -> Vec<[u8; 32]> {
    let masker = Masker::new(keys, mask);
    let seed = &keys.prng_seed;
    content
        .par_chunks(CHUNK_UNITS * UNIT_BYTES)
        .zip(public.par_chunks_mut(SEGMENT_BYTES))
        .zip(private.par_chunks_mut(CHUNK_UNITS * PIECE_BYTES))
        .enumerate()
        .filter_map(|(ci, ((c, pu), pr))| {
            let base = (ci * CHUNK_UNITS) as u64;
            let mut js = [0u8; CHUNK_UNITS];
            let js = js.get_mut(..unit_count(c.len())).unwrap_or_default();
            piece_indices_at(seed, base, js);
            masker.encode_chunk(base, c, js, pu, pr);
            leaf.map(|l| l.digest(pu))
        })
        .collect()
}

/// Inverse of [`encode`]: rebuilds `len` content bytes from the public body
/// and the private pieces. The caller has checked that the lengths match
/// `len` (see [`expected_lengths`]); on a mismatch the output is shorter.
pub fn decode(
    keys: &UnitKeys,
    mask: UnitMask,
    public: &[u8],
    private: &[u8],
    len: usize,
) -> Vec<u8> {
    let n = unit_count(len);
    let mut out = vec![0u8; n * UNIT_BYTES];
    let masker = Masker::new(keys, mask);
    let seed = &keys.prng_seed;
    out.par_chunks_mut(CHUNK_UNITS * UNIT_BYTES)
        .zip(public.par_chunks(SEGMENT_BYTES))
        .zip(private.par_chunks(CHUNK_UNITS * PIECE_BYTES))
        .enumerate()
        .for_each(|(ci, ((o, pu), pr))| {
            let base = (ci * CHUNK_UNITS) as u64;
            let mut js = [0u8; CHUNK_UNITS];
            let js = js.get_mut(..o.len() / UNIT_BYTES).unwrap_or_default();
            piece_indices_at(seed, base, js);
            masker.decode_chunk(base, pu, pr, js, o);
        });
    out.truncate(len);
    out
}

/// The hash work alone of the SHA-256 transform for `n` units (one pre-padded
/// compression per unit, batched and split over threads as in [`encode`]),
/// for benchmarks: the ceiling [`UnitMask::Sha256`] can reach. Returns a
/// value that depends on every hash.
pub fn hash_only(keys: &UnitKeys, n: usize) -> u32 {
    let masker = Masker::new(keys, UnitMask::Sha256);
    let chunks = n.div_ceil(CHUNK_UNITS);
    (0..chunks)
        .into_par_iter()
        .map(|ci| {
            let mut s = Scratch::new(&masker);
            let start = ci * CHUNK_UNITS;
            let end = (start + CHUNK_UNITS).min(n);
            let mut acc = 0u32;
            for first in (start..end).step_by(BATCH_UNITS) {
                let m = (end - first).min(BATCH_UNITS);
                for (piece, i) in s.pieces.iter_mut().zip(first..) {
                    *piece = (i as u32).to_ne_bytes();
                }
                s.fill_masks(&masker, first as u64, m);
                for u in 0..m {
                    acc ^= s.mask(&masker, u)[0];
                }
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
    fn unit_mask_aes_is_aes256_of_the_two_specified_blocks() {
        let key = [0x42u8; 32];
        let c = Aes256::new(GenericArray::from_slice(&key));
        let piece = [1, 2, 3, 4];
        let ctr = 0x0102_0304_0506_0708u64;
        let got = unit_mask_aes(&key, piece, ctr);
        for b in 0..2u8 {
            let mut x = [1, 2, 3, 4, 1, 2, 3, 4, 5, 6, 7, 8, b, 0x4d, 0, 0];
            let blk = GenericArray::from_mut_slice(&mut x);
            c.encrypt_block(blk);
            assert_eq!(&got[16 * b as usize..16 * b as usize + 16], &x[..]);
        }
        // FIPS-197 C.3 (AES-256) checks that the key schedule is AES-256's.
        let k: Vec<u8> = (0u8..32).collect();
        let c = Aes256::new(GenericArray::from_slice(&k));
        let mut x: [u8; 16] = core::array::from_fn(|i| (i as u8) * 0x11);
        c.encrypt_block(GenericArray::from_mut_slice(&mut x));
        assert_eq!(
            x,
            [
                0x8e, 0xa2, 0xb7, 0xca, 0x51, 0x67, 0x45, 0xbf, 0xea, 0xfc, 0x49, 0x90, 0x4b, 0x49,
                0x60, 0x89
            ]
        );
    }

    /// Algorithm 1 transcribed sequentially, unit by unit, with `mask(piece,
    /// i)` the unit's 32-byte mask source.
    fn sequential(
        k: &UnitKeys,
        content: &[u8],
        mask: impl Fn([u8; 4], u64) -> [u8; 32],
    ) -> (Vec<u8>, Vec<u8>) {
        let n = unit_count(content.len());
        let js = piece_indices(k.prng_seed(), n);
        let mut padded = content.to_vec();
        padded.resize(n * 32, 0);
        let (mut pubf, mut privf) = (Vec::new(), Vec::new());
        for i in 0..n {
            let unit = &padded[i * 32..i * 32 + 32];
            let j = js[i] as usize;
            let piece: [u8; 4] = unit[j * 4..j * 4 + 4].try_into().unwrap();
            privf.extend_from_slice(&piece);
            let h = mask(piece, i as u64);
            let rest: Vec<u8> = (0..8)
                .filter(|&q| q != j)
                .flat_map(|q| unit[q * 4..q * 4 + 4].to_vec())
                .collect();
            pubf.extend(rest.iter().zip(&h[..28]).map(|(a, b)| a ^ b));
        }
        (pubf, privf)
    }

    #[test]
    fn encode_matches_algorithm_1_written_out_sequentially() {
        let content: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        let k = keys();
        let got = encode(&k, UnitMask::Sha256, &content);
        let want = sequential(&k, &content, |p, i| unit_hash(k.hash_key(), p, i));
        assert_eq!(got, want);
    }

    #[test]
    fn aes_encode_matches_the_specification_written_out_sequentially() {
        // Three chunks and a partial unit, so batches, chunk starts and the
        // PRNG offsets are all crossed.
        let content: Vec<u8> = (0..CHUNK_UNITS * 32 * 2 + 1000)
            .map(|i| (i * 7 + 3) as u8)
            .collect();
        let k = keys();
        let got = encode(&k, UnitMask::Aes256, &content);
        let want = sequential(&k, &content, |p, i| unit_mask_aes(k.hash_key(), p, i));
        assert!(got == want, "AES transform differs from the specification");
        // And it is not the SHA-256 transform.
        assert_ne!(got.0, encode(&k, UnitMask::Sha256, &content).0);
    }

    #[test]
    fn roundtrip_various_lengths_including_partial_units_and_many_chunks() {
        let k = keys();
        for mask in [UnitMask::Sha256, UnitMask::Aes256] {
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
                32 * BATCH_UNITS + 5,
                CHUNK_UNITS * 32 * 2 + 17,
            ] {
                let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
                let (p, q) = encode(&k, mask, &content);
                assert_eq!(Some((p.len(), q.len())), expected_lengths(len as u64));
                assert_eq!(decode(&k, mask, &p, &q, len), content, "len {len}");
                for leaf in [SegmentHash::Sha256, SegmentHash::Blake3] {
                    let mut p2 = vec![0u8; p.len()];
                    let mut q2 = vec![0u8; q.len()];
                    let leaves = encode_into(&k, mask, &content, &mut p2, &mut q2, leaf);
                    assert_eq!((&p2, &q2), (&p, &q));
                    assert_eq!(leaves, segment_digests(&p, leaf), "len {len}");
                    assert_eq!(leaves.len(), p.len().div_ceil(SEGMENT_BYTES));
                }
            }
        }
    }

    #[test]
    fn output_does_not_depend_on_the_number_of_threads() {
        let content: Vec<u8> = (0..CHUNK_UNITS * 32 * 5 + 77)
            .map(|i| (i * 13 % 256) as u8)
            .collect();
        let k = keys();
        for mask in [UnitMask::Sha256, UnitMask::Aes256] {
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let (p, q) = encode(&k, mask, &content);
                    let mut p2 = vec![0u8; p.len()];
                    let mut q2 = vec![0u8; q.len()];
                    let leaves =
                        encode_into(&k, mask, &content, &mut p2, &mut q2, SegmentHash::Blake3);
                    let back = decode(&k, mask, &p, &q, content.len());
                    (p, q, leaves, back)
                })
            };
            let one = run(1);
            assert_eq!(one.3, content);
            for t in [2, 3, 4] {
                assert!(run(t) == one, "{mask:?}: {t} threads differ from 1");
            }
        }
    }

    #[test]
    fn chunk_piece_indices_are_the_sequential_stream() {
        let seed = [3u8; 32];
        let all = piece_indices(&seed, 3 * CHUNK_UNITS + 10);
        for first in [0usize, CHUNK_UNITS, 2 * CHUNK_UNITS, 3 * CHUNK_UNITS] {
            let mut part = vec![0u8; all.len() - first];
            piece_indices_at(&seed, first as u64, &mut part);
            assert_eq!(part, all[first..], "offset {first}");
        }
    }

    #[test]
    fn blake3_leaf_is_derive_key_mode_with_its_context() {
        let seg = b"some public body bytes";
        let want = blake3::derive_key(BLAKE3_LEAF_CONTEXT, seg);
        assert_eq!(SegmentHash::Blake3.digest(seg), want);
        assert_ne!(
            SegmentHash::Blake3.digest(seg),
            *blake3::hash(seg).as_bytes()
        );
    }

    #[test]
    fn aes_mask_depends_on_the_private_piece() {
        // The key alone does not give the mask: every other piece value
        // gives another mask (sampled), so decoding with the key and a
        // guessed piece yields a different unit unless the guess is right.
        let key = [0x24u8; 32];
        let truth = unit_mask_aes(&key, [9, 9, 9, 9], 5);
        for x in 0u32..4096 {
            let p = x.wrapping_mul(0x9e37_79b9).to_be_bytes();
            if p != [9, 9, 9, 9] {
                assert_ne!(unit_mask_aes(&key, p, 5)[..28], truth[..28]);
            }
        }
        assert_ne!(unit_mask_aes(&key, [9, 9, 9, 9], 6), truth);
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
