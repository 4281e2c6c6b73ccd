//! The two fragment containers and the recovery material (see
//! `docs/vault-format.md` for the byte layouts and MUST-reject rules).
//!
//! Binding (why recovery never returns wrong bytes):
//! * the private container is AES-256-GCM under HKDF(K); its whole header is
//!   the associated data, so record id, mode, salt, KDF costs, nonce and
//!   content length cannot be changed without failing authentication;
//! * the sealed payload carries the checksum of the public container (header
//!   and body; two-level SHA-256 in format v1, two-level BLAKE3 in v2), so any
//!   change to the public fragment is detected before decoding (compared in
//!   constant time), and the public header's version, record id, mode and
//!   length are checked against the authenticated private header;
//! * D_head and strong mode's secret S are inside the sealed payload.
//!
//! Given an authenticated private payload and a public fragment whose hash
//! matches, the decoding is a deterministic function, so the output is the
//! protected input.

use aorta_base::codec::{self, Decode, DecodeError, Encode};
use ring::aead;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::keys::{self, KEY_LEN, KdfParams, MasterKey, RecordSecret, SALT_LEN, UnitKeys};
use super::split::{self, HeaderRule, Split};
use super::units::{self, SegmentHash};
use super::{FormatVersion, Mode, SelectiveError, UnitMask};

/// Public container magic.
pub const PUBLIC_MAGIC: &[u8; 4] = b"AOSP";
/// Private container magic.
pub const PRIVATE_MAGIC: &[u8; 4] = b"AOSR";
/// Recovery material magic.
pub const MATERIAL_MAGIC: &[u8; 4] = b"AOSM";
/// The version new records are written in ([`FormatVersion::LATEST`]); all
/// three formats of a record carry the same version, and versions 1 and 2
/// are read.
pub const VERSION: u8 = 2;
/// BLAKE3 key-derivation context of the v2 public checksum (the root over
/// the header and the segment leaves).
pub const BLAKE3_ROOT_CONTEXT: &str = "aorta-se v2 public fragment checksum";
/// Public header length.
pub const PUBLIC_HEADER_LEN: usize = 32;
/// Private header length (the AEAD's associated data).
pub const PRIVATE_HEADER_LEN: usize = 72;
/// Recovery material fixed-part length.
pub const MATERIAL_FIXED_LEN: usize = 132;
const CHECKSUM_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Payload fixed part: public checksum, S, head length.
const PAYLOAD_FIXED_LEN: usize = 32 + 32 + 4;
const KDF_ARGON2ID: u8 = 1;
/// Largest content length accepted (2^40 bytes = 1 TiB).
pub const MAX_CONTENT_LEN: u64 = 1 << 40;

/// A record's identifier: 128 random bits, naming no patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordId(pub [u8; 16]);

impl RecordId {
    /// A fresh random id.
    pub fn random() -> Result<Self, SelectiveError> {
        let mut b = [0u8; 16];
        keys::fill_random(&mut b)?;
        Ok(Self(b))
    }
    /// Lower-case hex (32 characters).
    pub fn to_hex(&self) -> String {
        aorta_base::hex::encode(&self.0)
    }
    /// Parses 32 hex characters (either case; strict [`aorta_base::hex`]:
    /// no sign, no `0x`).
    pub fn from_hex(s: &str) -> Option<Self> {
        aorta_base::hex::decode_array::<16>(s, aorta_base::hex::Case::Any)
            .ok()
            .map(|b| Self(*b))
    }
}

impl std::fmt::Display for RecordId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Options for [`protect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProtectOptions {
    /// Faithful or strong (default).
    pub mode: Mode,
    /// Argon2id costs (default [`KdfParams::DEFAULT`]).
    pub kdf: KdfParams,
    /// How to find D_head.
    pub header: HeaderRule,
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The random values a protection draws; fixed in test vectors.
#[derive(Debug, Clone)]
pub struct Randomness {
    /// Argon2id salt.
    pub salt: [u8; SALT_LEN],
    /// Record id.
    pub record_id: RecordId,
    /// AEAD nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Strong mode's secret S (ignored in faithful mode).
    pub secret: RecordSecret,
}

impl Randomness {
    /// Fresh values from the OS CSPRNG.
    pub fn fresh() -> Result<Self, SelectiveError> {
        let mut salt = [0u8; SALT_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        keys::fill_random(&mut salt)?;
        keys::fill_random(&mut nonce)?;
        Ok(Self {
            salt,
            record_id: RecordId::random()?,
            nonce,
            secret: RecordSecret::random()?,
        })
    }
}

/// A protected record: the two container byte strings.
#[derive(Debug, Clone)]
pub struct Protected {
    /// The record's id.
    pub record_id: RecordId,
    /// The public-fragment container (goes to the cloud stores).
    pub public: Vec<u8>,
    /// The private-fragment container (stays on the patient's device).
    pub private: Vec<u8>,
    /// Where the input was split.
    pub split: Split,
}

/// Parsed public container header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicHeader {
    /// Format version.
    pub version: FormatVersion,
    /// Mode.
    pub mode: Mode,
    /// Record id.
    pub record_id: RecordId,
    /// Length of C.
    pub content_len: u64,
}

/// Parsed private container header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateHeader {
    /// Format version.
    pub version: FormatVersion,
    /// Mode.
    pub mode: Mode,
    /// Record id.
    pub record_id: RecordId,
    /// Argon2id salt.
    pub salt: [u8; SALT_LEN],
    /// Argon2id costs.
    pub kdf: KdfParams,
    /// AEAD nonce.
    pub nonce: [u8; NONCE_LEN],
    /// Length of C.
    pub content_len: u64,
}

/// Everything needed, with the public fragment, to rebuild a record: what an
/// opened private fragment yields and what a sharing grant carries. Holds
/// secrets: zeroized on drop, no byte-printing `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryMaterial {
    /// Record id.
    pub record_id: RecordId,
    /// Format version of the record (and of this material's `AOSM` bytes):
    /// with `mode` it says how the units are masked ([`UnitMask::for_record`])
    /// and how the public checksum is computed.
    pub version: FormatVersion,
    /// Mode.
    pub mode: Mode,
    /// Length of C.
    pub content_len: u64,
    /// The public container's checksum (its last 32 bytes).
    pub public_checksum: [u8; 32],
    /// Mask key ("hash key") and PRNG seed.
    pub unit_keys: UnitKeys,
    /// D_head (plaintext file header).
    pub head: Zeroizing<Vec<u8>>,
    /// The private pieces, 4 bytes per unit.
    pub pieces: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for RecoveryMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryMaterial")
            .field("record_id", &self.record_id)
            .field("version", &self.version)
            .field("mode", &self.mode)
            .field("content_len", &self.content_len)
            .field("head_len", &self.head.len())
            .field("pieces_len", &self.pieces.len())
            .finish_non_exhaustive()
    }
}

/// The one bounds-checked reader ([`aorta_base::codec::Reader`]), naming
/// the container in its typed errors.
struct Reader<'a> {
    r: codec::Reader<'a>,
    container: &'static str,
}

impl<'a> Reader<'a> {
    fn new(d: &'a [u8], container: &'static str) -> Self {
        Self {
            r: codec::Reader::new(d),
            container,
        }
    }
    /// Offset of the next byte.
    fn off(&self) -> usize {
        self.r.position()
    }
    fn short(&self, e: DecodeError) -> SelectiveError {
        match e {
            DecodeError::Short {
                field,
                offset,
                needed,
                available,
            } => SelectiveError::Truncated {
                container: self.container,
                field,
                offset: offset as u64,
                needed: needed as u64,
                available: available as u64,
            },
            DecodeError::Trailing { offset, .. } => {
                self.invalid("length", offset, "trailing bytes")
            }
            DecodeError::Invalid {
                field,
                offset,
                reason,
            } => self.invalid(field, offset, reason),
            _ => self.invalid("container", self.off(), "does not decode"),
        }
    }
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], SelectiveError> {
        self.r.take(n, field).map_err(|e| self.short(e))
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], SelectiveError> {
        self.r.array(field).map_err(|e| self.short(e))
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, SelectiveError> {
        self.r.u8(field).map_err(|e| self.short(e))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, SelectiveError> {
        self.r.u32(field).map_err(|e| self.short(e))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, SelectiveError> {
        self.r.u64(field).map_err(|e| self.short(e))
    }
    fn invalid(&self, field: &'static str, at: usize, reason: &'static str) -> SelectiveError {
        SelectiveError::InvalidField {
            container: self.container,
            field,
            offset: at as u64,
            reason,
        }
    }
    /// Magic, version, mode, and a reserved byte pair (checked by the caller).
    fn preamble(
        &mut self,
        magic: &'static [u8; 4],
    ) -> Result<(FormatVersion, Mode, [u8; 2]), SelectiveError> {
        let m: [u8; 4] = self.array("magic")?;
        if &m != magic {
            return Err(SelectiveError::BadMagic {
                container: self.container,
                found: m,
                expected: std::str::from_utf8(magic).unwrap_or("?"),
            });
        }
        let v = self.u8("version")?;
        let version = FormatVersion::from_byte(v).ok_or(SelectiveError::UnknownVersion {
            container: self.container,
            version: v,
            supported: VERSION,
        })?;
        let mode = Mode::from_byte(self.u8("mode")?)?;
        let rest: [u8; 2] = self.array("reserved")?;
        Ok((version, mode, rest))
    }
    fn content_len(&mut self) -> Result<u64, SelectiveError> {
        let at = self.off();
        let len = self.u64("content length")?;
        if len > MAX_CONTENT_LEN {
            return Err(self.invalid("content length", at, "exceeds 2^40 bytes"));
        }
        Ok(len)
    }
}

const PUB: &str = "public fragment";
const PRIV: &str = "private fragment";
const MAT: &str = "recovery material";

fn lengths(len: u64) -> Result<(usize, usize), SelectiveError> {
    units::expected_lengths(len).ok_or(SelectiveError::TooLarge { len })
}

/// Parses and checks a public container: magic, version, mode, reserved
/// bytes, exact body length, trailing checksum. Returns the header, the body
/// and the checksum.
pub fn parse_public(d: &[u8]) -> Result<(PublicHeader, &[u8], [u8; 32]), SelectiveError> {
    let mut r = Reader::new(d, PUB);
    let (version, mode, reserved) = r.preamble(PUBLIC_MAGIC)?;
    if reserved != [0, 0] {
        return Err(r.invalid("reserved", 6, "must be zero"));
    }
    let record_id = RecordId(r.array("record id")?);
    let content_len = r.content_len()?;
    let (pub_len, _) = lengths(content_len)?;
    let body = r.take(pub_len, "body")?;
    let stored: [u8; 32] = r.array("checksum")?;
    if r.off() != d.len() {
        return Err(r.invalid("length", r.off(), "trailing bytes after the checksum"));
    }
    let header = d.get(..PUBLIC_HEADER_LEN).unwrap_or(&[]);
    let leaves = units::segment_digests(body, segment_hash(version));
    let actual = public_checksum(version, header, &leaves);
    if !bool::from(actual.ct_eq(&stored)) {
        return Err(SelectiveError::PublicChecksum);
    }
    Ok((
        PublicHeader {
            version,
            mode,
            record_id,
            content_len,
        },
        body,
        stored,
    ))
}

/// The leaf hash of the public checksum in format `version`.
pub fn segment_hash(version: FormatVersion) -> SegmentHash {
    match version {
        FormatVersion::V1 => SegmentHash::Sha256,
        FormatVersion::V2 => SegmentHash::Blake3,
    }
}

/// The public container's checksum over its 32-byte header and the leaves of
/// the body's [`units::SEGMENT_BYTES`]-byte segments ([`segment_hash`]), so
/// that both writing and checking it run in parallel:
/// v1: SHA-256(header ‖ SHA-256(segment_0) ‖ …);
/// v2: BLAKE3-derive-key([`BLAKE3_ROOT_CONTEXT`], header ‖ leaf_0 ‖ …) with
/// leaf_c = BLAKE3-derive-key([`units::BLAKE3_LEAF_CONTEXT`], segment_c).
pub fn public_checksum(version: FormatVersion, header: &[u8], leaves: &[[u8; 32]]) -> [u8; 32] {
    match version {
        FormatVersion::V1 => {
            let mut h = Sha256::new();
            h.update(header);
            for l in leaves {
                h.update(l);
            }
            h.finalize().into()
        }
        FormatVersion::V2 => {
            let mut h = blake3::Hasher::new_derive_key(BLAKE3_ROOT_CONTEXT);
            h.update(header);
            for l in leaves {
                h.update(l);
            }
            *h.finalize().as_bytes()
        }
    }
}

fn write_public_header(h: &PublicHeader, out: &mut Vec<u8>) {
    out.extend_from_slice(PUBLIC_MAGIC);
    out.push(h.version.to_byte());
    out.push(h.mode.to_byte());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&h.record_id.0);
    out.extend_from_slice(&h.content_len.to_be_bytes());
}

fn write_private_header(h: &PrivateHeader) -> [u8; PRIVATE_HEADER_LEN] {
    let mut out = [0u8; PRIVATE_HEADER_LEN];
    out[0..4].copy_from_slice(PRIVATE_MAGIC);
    out[4] = h.version.to_byte();
    out[5] = h.mode.to_byte();
    out[6] = KDF_ARGON2ID;
    out[7] = 0;
    out[8..24].copy_from_slice(&h.record_id.0);
    out[24..40].copy_from_slice(&h.salt);
    out[40..44].copy_from_slice(&h.kdf.m_cost_kib.to_be_bytes());
    out[44..48].copy_from_slice(&h.kdf.t_cost.to_be_bytes());
    out[48..52].copy_from_slice(&h.kdf.p_cost.to_be_bytes());
    out[52..64].copy_from_slice(&h.nonce);
    out[64..72].copy_from_slice(&h.content_len.to_be_bytes());
    out
}

/// Parses a private container's header; returns it and the sealed bytes.
pub fn parse_private(d: &[u8]) -> Result<(PrivateHeader, &[u8]), SelectiveError> {
    let mut r = Reader::new(d, PRIV);
    let (version, mode, [kdf, reserved]) = r.preamble(PRIVATE_MAGIC)?;
    if kdf != KDF_ARGON2ID {
        return Err(r.invalid("kdf", 6, "unknown key-derivation function"));
    }
    if reserved != 0 {
        return Err(r.invalid("reserved", 7, "must be zero"));
    }
    let record_id = RecordId(r.array("record id")?);
    let salt = r.array("salt")?;
    let kdf = KdfParams {
        m_cost_kib: r.u32("argon2 m_cost")?,
        t_cost: r.u32("argon2 t_cost")?,
        p_cost: r.u32("argon2 p_cost")?,
    };
    kdf.check()?;
    let nonce = r.array("nonce")?;
    let content_len = r.content_len()?;
    let sealed = d.get(PRIVATE_HEADER_LEN..).unwrap_or(&[]);
    if sealed.len() < PAYLOAD_FIXED_LEN + TAG_LEN {
        return Err(SelectiveError::Truncated {
            container: PRIV,
            field: "sealed payload",
            offset: PRIVATE_HEADER_LEN as u64,
            needed: (PAYLOAD_FIXED_LEN + TAG_LEN) as u64,
            available: sealed.len() as u64,
        });
    }
    Ok((
        PrivateHeader {
            version,
            mode,
            record_id,
            salt,
            kdf,
            nonce,
            content_len,
        },
        sealed,
    ))
}

fn aead_key(k: &MasterKey) -> Result<aead::LessSafeKey, SelectiveError> {
    let raw = keys::private_aead_key(k)?;
    let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, raw.as_slice()).map_err(|_| {
        SelectiveError::Internal {
            what: "AES-256-GCM rejected a 32-byte key",
        }
    })?;
    Ok(aead::LessSafeKey::new(unbound))
}

/// Protects `input` under `passphrase` with fresh randomness.
pub fn protect(
    input: &[u8],
    passphrase: &[u8],
    opts: &ProtectOptions,
) -> Result<Protected, SelectiveError> {
    protect_deterministic(input, passphrase, opts, &Randomness::fresh()?)
}

/// [`protect`] with caller-supplied randomness (test vectors only: reusing a
/// salt/nonce pair across records breaks confidentiality of the private
/// fragment).
pub fn protect_deterministic(
    input: &[u8],
    passphrase: &[u8],
    opts: &ProtectOptions,
    rnd: &Randomness,
) -> Result<Protected, SelectiveError> {
    protect_deterministic_as(input, passphrase, opts, rnd, FormatVersion::LATEST)
}

/// [`protect_deterministic`] in a given format version (test vectors of
/// older versions).
pub fn protect_deterministic_as(
    input: &[u8],
    passphrase: &[u8],
    opts: &ProtectOptions,
    rnd: &Randomness,
    version: FormatVersion,
) -> Result<Protected, SelectiveError> {
    let k = MasterKey::derive(passphrase, &rnd.salt, &opts.kdf)?;
    protect_with_key_as(input, &k, opts, rnd, version)
}

/// [`protect`] with an already derived K (benchmarks, key managers). `opts.kdf`
/// is recorded in the header and must be the costs K was derived with.
pub fn protect_with_key(
    input: &[u8],
    k: &MasterKey,
    opts: &ProtectOptions,
    rnd: &Randomness,
) -> Result<Protected, SelectiveError> {
    protect_with_key_as(input, k, opts, rnd, FormatVersion::LATEST)
}

/// [`protect_with_key`] in a given format version: [`FormatVersion::LATEST`]
/// for new records; older versions only to compare (benchmarks) or to write
/// test vectors.
pub fn protect_with_key_as(
    input: &[u8],
    k: &MasterKey,
    opts: &ProtectOptions,
    rnd: &Randomness,
    version: FormatVersion,
) -> Result<Protected, SelectiveError> {
    opts.kdf.check()?;
    let sp = split::split(input, opts.header)?;
    let (head, content) = input
        .split_at_checked(sp.head_len)
        .ok_or(SelectiveError::Internal {
            what: "split point beyond input",
        })?;
    let content_len = content.len() as u64;
    if content_len > MAX_CONTENT_LEN {
        return Err(SelectiveError::TooLarge { len: content_len });
    }
    let head_len = u32::try_from(head.len()).map_err(|_| SelectiveError::TooLarge {
        len: head.len() as u64,
    })?;
    let secret = match opts.mode {
        Mode::Strong => Some(&rnd.secret),
        Mode::Faithful => None,
    };
    let uk = UnitKeys::for_record(version, opts.mode, k, secret)?;
    let (pub_len, piece_len) = lengths(content_len)?;
    let ph = PublicHeader {
        version,
        mode: opts.mode,
        record_id: rnd.record_id,
        content_len,
    };
    let prh = PrivateHeader {
        version,
        mode: opts.mode,
        record_id: rnd.record_id,
        salt: rnd.salt,
        kdf: opts.kdf,
        nonce: rnd.nonce,
        content_len,
    };
    let header = write_private_header(&prh);

    // Both containers are laid out first and the transform writes straight
    // into them: public body into the public container, pieces into the
    // private payload, which is then sealed in place.
    // The public container is allocated zeroed at its final size (for a
    // large record that is fresh zero pages, not a pass of writes over
    // memory the transform then writes again).
    let mut public = vec![0u8; PUBLIC_HEADER_LEN + pub_len + CHECKSUM_LEN];
    let mut public_header = Vec::with_capacity(PUBLIC_HEADER_LEN);
    write_public_header(&ph, &mut public_header);
    public
        .get_mut(..PUBLIC_HEADER_LEN)
        .ok_or(SelectiveError::Internal {
            what: "public container shorter than its header",
        })?
        .copy_from_slice(&public_header);
    let mut private = Vec::with_capacity(
        PRIVATE_HEADER_LEN + PAYLOAD_FIXED_LEN + head.len() + piece_len + TAG_LEN,
    );
    private.extend_from_slice(&header);
    private.extend_from_slice(&[0u8; CHECKSUM_LEN]); // filled in below
    match secret {
        Some(s) => private.extend_from_slice(s.as_bytes()),
        None => private.extend_from_slice(&[0u8; KEY_LEN]),
    }
    private.extend_from_slice(&head_len.to_be_bytes());
    private.extend_from_slice(head);
    let pieces_at = private.len();
    private.resize(pieces_at + piece_len, 0);
    let leaves = {
        let pub_body = public
            .get_mut(PUBLIC_HEADER_LEN..PUBLIC_HEADER_LEN + pub_len)
            .ok_or(SelectiveError::Internal {
                what: "public container shorter than its header",
            })?;
        let pieces = private
            .get_mut(pieces_at..)
            .ok_or(SelectiveError::Internal {
                what: "private container shorter than its payload",
            })?;
        units::encode_into(
            &uk,
            UnitMask::for_record(version, opts.mode),
            content,
            pub_body,
            pieces,
            segment_hash(version),
        )
    };
    let sum = public_checksum(
        version,
        public.get(..PUBLIC_HEADER_LEN).unwrap_or(&[]),
        &leaves,
    );
    public
        .get_mut(PUBLIC_HEADER_LEN + pub_len..)
        .ok_or(SelectiveError::Internal {
            what: "public container shorter than its checksum",
        })?
        .copy_from_slice(&sum);
    private
        .get_mut(PRIVATE_HEADER_LEN..PRIVATE_HEADER_LEN + CHECKSUM_LEN)
        .ok_or(SelectiveError::Internal {
            what: "private container shorter than its payload",
        })?
        .copy_from_slice(&sum);
    let key = aead_key(k)?;
    let (aad, payload) = private.split_at_mut(PRIVATE_HEADER_LEN);
    let tag = key.seal_in_place_separate_tag(
        aead::Nonce::assume_unique_for_key(rnd.nonce),
        aead::Aad::from(&aad[..]),
        payload,
    );
    let tag = match tag {
        Ok(t) => t,
        Err(_) => {
            // Never leave plaintext pieces behind in a buffer we drop.
            zeroize::Zeroize::zeroize(&mut private);
            return Err(SelectiveError::Internal {
                what: "AES-256-GCM seal failed",
            });
        }
    };
    private.extend_from_slice(tag.as_ref());
    Ok(Protected {
        record_id: rnd.record_id,
        public,
        private,
        split: sp,
    })
}

/// Opens a private container with the user's passphrase.
pub fn open_private(private: &[u8], passphrase: &[u8]) -> Result<RecoveryMaterial, SelectiveError> {
    let (h, _) = parse_private(private)?;
    let k = MasterKey::derive(passphrase, &h.salt, &h.kdf)?;
    open_private_with_key(private, &k)
}

/// Opens a private container with K.
pub fn open_private_with_key(
    private: &[u8],
    k: &MasterKey,
) -> Result<RecoveryMaterial, SelectiveError> {
    let (h, sealed) = parse_private(private)?;
    let header = write_private_header(&h);
    let key = aead_key(k)?;
    let mut buf = Zeroizing::new(sealed.to_vec());
    let plain = key
        .open_in_place(
            aead::Nonce::assume_unique_for_key(h.nonce),
            aead::Aad::from(&header[..]),
            buf.as_mut_slice(),
        )
        .map_err(|_| SelectiveError::PrivateAuthFailed)?;
    // Authenticated from here on: a malformed payload means a bug in the writer.
    let mut r = Reader::new(plain, PRIV);
    let public_checksum = r.array("public checksum")?;
    let s: [u8; 32] = r.array("record secret")?;
    let head_len = r.u32("head length")? as usize;
    let head = Zeroizing::new(r.take(head_len, "head")?.to_vec());
    let (_, piece_len) = lengths(h.content_len)?;
    let pieces = Zeroizing::new(r.take(piece_len, "pieces")?.to_vec());
    if r.off() != plain.len() {
        return Err(r.invalid("payload", r.off(), "trailing bytes"));
    }
    let secret = RecordSecret::from_bytes(s);
    let unit_keys = UnitKeys::for_record(h.version, h.mode, k, Some(&secret))?;
    Ok(RecoveryMaterial {
        record_id: h.record_id,
        version: h.version,
        mode: h.mode,
        content_len: h.content_len,
        public_checksum,
        unit_keys,
        head,
        pieces,
    })
}

/// Rebuilds the protected input (D_head ‖ C) from the public container and
/// recovery material, after checking that the public fragment is exactly the
/// one the material was made with.
pub fn recover(public: &[u8], m: &RecoveryMaterial) -> Result<Vec<u8>, SelectiveError> {
    let (ph, body, checksum) = parse_public(public)?;
    if !bool::from(checksum.ct_eq(&m.public_checksum)) {
        return Err(SelectiveError::PublicMismatch {
            reason: "checksum differs",
        });
    }
    if ph.record_id != m.record_id {
        return Err(SelectiveError::PublicMismatch {
            reason: "record id differs",
        });
    }
    if ph.version != m.version || ph.mode != m.mode || ph.content_len != m.content_len {
        return Err(SelectiveError::PublicMismatch {
            reason: "version, mode or length differs",
        });
    }
    let (_, piece_len) = lengths(m.content_len)?;
    if m.pieces.len() != piece_len {
        return Err(SelectiveError::PublicMismatch {
            reason: "private piece count differs",
        });
    }
    let len = usize::try_from(m.content_len)
        .map_err(|_| SelectiveError::TooLarge { len: m.content_len })?;
    let mask = UnitMask::for_record(m.version, m.mode);
    let content = units::decode(&m.unit_keys, mask, body, &m.pieces, len);
    let mut out = Vec::with_capacity(m.head.len() + content.len());
    out.extend_from_slice(&m.head);
    out.extend_from_slice(&content);
    Ok(out)
}

/// Opens the private container with `passphrase` and recovers the input.
pub fn recover_with_passphrase(
    public: &[u8],
    private: &[u8],
    passphrase: &[u8],
) -> Result<Vec<u8>, SelectiveError> {
    let m = open_private(private, passphrase)?;
    recover(public, &m)
}

impl RecoveryMaterial {
    /// Serializes (format `AOSM` in the record's version, see
    /// `docs/vault-format.md`).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(
            MATERIAL_FIXED_LEN + self.head.len() + self.pieces.len(),
        ));
        out.extend_from_slice(MATERIAL_MAGIC);
        out.push(self.version.to_byte());
        out.push(self.mode.to_byte());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.record_id.0);
        out.extend_from_slice(&self.content_len.to_be_bytes());
        out.extend_from_slice(&self.public_checksum);
        out.extend_from_slice(self.unit_keys.hash_key());
        out.extend_from_slice(self.unit_keys.prng_seed());
        out.extend_from_slice(&(self.head.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.pieces);
        out
    }

    /// Parses [`RecoveryMaterial::to_bytes`] output.
    pub fn from_bytes(d: &[u8]) -> Result<Self, SelectiveError> {
        let mut r = Reader::new(d, MAT);
        let (version, mode, reserved) = r.preamble(MATERIAL_MAGIC)?;
        if reserved != [0, 0] {
            return Err(r.invalid("reserved", 6, "must be zero"));
        }
        let record_id = RecordId(r.array("record id")?);
        let content_len = r.content_len()?;
        let public_checksum = r.array("public checksum")?;
        let hash_key = r.array("hash key")?;
        let prng_seed = r.array("prng seed")?;
        let head_len = r.u32("head length")? as usize;
        let head = Zeroizing::new(r.take(head_len, "head")?.to_vec());
        let (_, piece_len) = lengths(content_len)?;
        let pieces = Zeroizing::new(r.take(piece_len, "pieces")?.to_vec());
        if r.off() != d.len() {
            return Err(r.invalid("length", r.off(), "trailing bytes"));
        }
        Ok(Self {
            record_id,
            version,
            mode,
            content_len,
            public_checksum,
            unit_keys: UnitKeys::from_parts(hash_key, prng_seed),
            head,
            pieces,
        })
    }
}

/// A container that did not decode, as a [`DecodeError`] at `offset` (the
/// typed [`SelectiveError`] is what [`parse_public`], [`parse_private`] and
/// [`RecoveryMaterial::from_bytes`] return).
fn not_decoded(offset: usize, e: &SelectiveError) -> DecodeError {
    DecodeError::Invalid {
        field: "container",
        offset,
        reason: match e {
            SelectiveError::Truncated { .. } => "truncated",
            SelectiveError::BadMagic { .. } => "bad magic",
            SelectiveError::UnknownVersion { .. } => "unknown version",
            _ => "invalid",
        },
    }
}

/// A public fragment (`.aosp`) whose layout and checksum were checked.
#[derive(Debug)]
pub(crate) struct PublicFragment<'a> {
    header: PublicHeader,
    body: &'a [u8],
    checksum: [u8; 32],
}

impl<'a> Decode<'a> for PublicFragment<'a> {
    fn decode(r: &mut codec::Reader<'a>) -> Result<Self, DecodeError> {
        let at = r.position();
        let (header, body, checksum) = parse_public(r.rest()).map_err(|e| not_decoded(at, &e))?;
        Ok(PublicFragment {
            header,
            body,
            checksum,
        })
    }
}

impl Encode for PublicFragment<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        write_public_header(&self.header, out);
        out.extend_from_slice(self.body);
        out.extend_from_slice(&self.checksum);
    }
}

/// A private fragment (`.aosr`) whose header parsed, not yet opened.
#[derive(Debug)]
pub(crate) struct PrivateFragment<'a> {
    header: PrivateHeader,
    sealed: &'a [u8],
}

impl<'a> Decode<'a> for PrivateFragment<'a> {
    fn decode(r: &mut codec::Reader<'a>) -> Result<Self, DecodeError> {
        let at = r.position();
        let (header, sealed) = parse_private(r.rest()).map_err(|e| not_decoded(at, &e))?;
        Ok(PrivateFragment { header, sealed })
    }
}

impl Encode for PrivateFragment<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&write_private_header(&self.header));
        out.extend_from_slice(self.sealed);
    }
}

/// Recovery material (`.aosm`): [`RecoveryMaterial::to_bytes`].
impl Encode for RecoveryMaterial {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }
}

/// All the remaining bytes as recovery material
/// ([`RecoveryMaterial::from_bytes`]).
impl Decode<'_> for RecoveryMaterial {
    fn decode(r: &mut codec::Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        RecoveryMaterial::from_bytes(r.rest()).map_err(|e| not_decoded(at, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(mode: Mode) -> ProtectOptions {
        ProtectOptions {
            mode,
            kdf: KdfParams::INSECURE_TEST,
            header: HeaderRule::Auto,
        }
    }

    fn protect_v(input: &[u8], mode: Mode, version: FormatVersion) -> Protected {
        protect_deterministic_as(
            input,
            b"pw",
            &opts(mode),
            &Randomness::fresh().unwrap(),
            version,
        )
        .unwrap()
    }

    #[test]
    fn roundtrip_both_modes_and_versions() {
        let input: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 256) as u8).collect();
        for version in [FormatVersion::V1, FormatVersion::V2] {
            for mode in [Mode::Faithful, Mode::Strong] {
                let p = protect_v(&input, mode, version);
                assert_eq!(p.public[4], version.to_byte());
                assert_eq!(p.private[4], version.to_byte());
                assert_eq!(
                    recover_with_passphrase(&p.public, &p.private, b"pw").unwrap(),
                    input
                );
                let m = open_private(&p.private, b"pw").unwrap();
                assert_eq!((m.version, m.mode), (version, mode));
                let bytes = m.to_bytes();
                assert_eq!(bytes[4], version.to_byte());
                let m2 = RecoveryMaterial::from_bytes(&bytes).unwrap();
                assert_eq!(m, m2);
                assert_eq!(recover(&p.public, &m2).unwrap(), input);
            }
        }
    }

    #[test]
    fn new_records_are_written_in_version_2() {
        for mode in [Mode::Faithful, Mode::Strong] {
            let p = protect(b"new record", b"pw", &opts(mode)).unwrap();
            assert_eq!((p.public[4], p.private[4]), (2, 2));
            assert_eq!(
                parse_public(&p.public).unwrap().0.version,
                FormatVersion::V2
            );
            let m = open_private(&p.private, b"pw").unwrap();
            assert_eq!(m.version, FormatVersion::V2);
            assert_eq!(m.to_bytes()[4], 2);
        }
    }

    #[test]
    fn strong_v2_masks_units_with_aes_and_v1_with_sha256() {
        // Same K, S and input: the two versions' public bodies differ, and
        // each equals the unit transform with its own mask and keys.
        let input: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
        let rnd = Randomness::fresh().unwrap();
        let k = MasterKey::from_bytes([4u8; 32]);
        let o = ProtectOptions {
            header: HeaderRule::None,
            ..opts(Mode::Strong)
        };
        for (version, mask) in [
            (FormatVersion::V1, UnitMask::Sha256),
            (FormatVersion::V2, UnitMask::Aes256),
        ] {
            let p = protect_with_key_as(&input, &k, &o, &rnd, version).unwrap();
            let uk = UnitKeys::for_record(version, Mode::Strong, &k, Some(&rnd.secret)).unwrap();
            let (body, _) = units::encode(&uk, mask, &input);
            assert_eq!(&p.public[32..p.public.len() - 32], &body[..], "{version:?}");
        }
        let v1 = UnitKeys::for_record(FormatVersion::V1, Mode::Strong, &k, Some(&rnd.secret));
        let v2 = UnitKeys::for_record(FormatVersion::V2, Mode::Strong, &k, Some(&rnd.secret));
        let (v1, v2) = (v1.unwrap(), v2.unwrap());
        assert_ne!(v1.hash_key(), v2.hash_key());
        assert_ne!(v1.prng_seed(), v2.prng_seed());
        assert_ne!(v2.hash_key(), k.as_bytes());
    }

    #[test]
    fn material_of_one_version_does_not_recover_a_public_fragment_of_the_other() {
        let input = b"cross-version record".repeat(10);
        let rnd = Randomness::fresh().unwrap();
        let k = MasterKey::from_bytes([5u8; 32]);
        let o = opts(Mode::Strong);
        let p1 = protect_with_key_as(&input, &k, &o, &rnd, FormatVersion::V1).unwrap();
        let p2 = protect_with_key_as(&input, &k, &o, &rnd, FormatVersion::V2).unwrap();
        let m1 = open_private_with_key(&p1.private, &k).unwrap();
        let m2 = open_private_with_key(&p2.private, &k).unwrap();
        assert!(matches!(
            recover(&p2.public, &m1),
            Err(SelectiveError::PublicMismatch { .. })
        ));
        assert!(matches!(
            recover(&p1.public, &m2),
            Err(SelectiveError::PublicMismatch { .. })
        ));
        // Relabelling the material's version byte does not help either.
        let mut b = m1.to_bytes().to_vec();
        b[4] = 2;
        let relabelled = RecoveryMaterial::from_bytes(&b).unwrap();
        assert!(recover(&p1.public, &relabelled).is_err());
        assert!(recover(&p2.public, &relabelled).is_err());
    }

    #[test]
    fn checksum_is_two_level_over_segments() {
        // 600 kB of content: 3 segments of the public body (2 full, 1 short).
        let input: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
        for version in [FormatVersion::V1, FormatVersion::V2] {
            let p = protect_v(&input, Mode::Strong, version);
            let body = &p.public[32..p.public.len() - 32];
            let want: [u8; 32] = match version {
                FormatVersion::V1 => {
                    let mut h = Sha256::new();
                    h.update(&p.public[..32]);
                    for c in body.chunks(units::SEGMENT_BYTES) {
                        h.update(Sha256::digest(c));
                    }
                    h.finalize().into()
                }
                FormatVersion::V2 => {
                    let mut m = p.public[..32].to_vec();
                    for c in body.chunks(units::SEGMENT_BYTES) {
                        m.extend_from_slice(&blake3::derive_key(
                            "aorta-se v2 public fragment checksum segment",
                            c,
                        ));
                    }
                    blake3::derive_key("aorta-se v2 public fragment checksum", &m)
                }
            };
            assert_eq!(body.chunks(units::SEGMENT_BYTES).count(), 3);
            assert_eq!(&p.public[p.public.len() - 32..], &want, "{version:?}");
            assert_eq!(
                recover_with_passphrase(&p.public, &p.private, b"pw").unwrap(),
                input
            );
        }
    }

    #[test]
    fn wrong_passphrase_is_refused() {
        let p = protect(b"abc", b"pw", &opts(Mode::Strong)).unwrap();
        assert!(matches!(
            recover_with_passphrase(&p.public, &p.private, b"nope"),
            Err(SelectiveError::PrivateAuthFailed)
        ));
    }

    #[test]
    fn every_single_bit_flip_in_either_fragment_is_detected() {
        let input: Vec<u8> = (0..150u32).map(|i| i as u8).collect();
        for version in [FormatVersion::V1, FormatVersion::V2] {
            every_bit_flip_detected(&protect_v(&input, Mode::Strong, version));
        }
    }

    fn every_bit_flip_detected(p: &Protected) {
        for i in 0..p.public.len() {
            for bit in [0u8, 3, 7] {
                let mut t = p.public.clone();
                t[i] ^= 1 << bit;
                let r = recover_with_passphrase(&t, &p.private, b"pw");
                assert!(r.is_err(), "public byte {i} bit {bit} undetected");
            }
        }
        // The private container's Argon2 is cheap here, so flip every byte.
        for i in 0..p.private.len() {
            let mut t = p.private.clone();
            t[i] ^= 0x01;
            let r = recover_with_passphrase(&p.public, &t, b"pw");
            assert!(r.is_err(), "private byte {i} undetected");
        }
    }

    #[test]
    fn swapped_public_fragment_of_another_record_is_refused() {
        let a = protect(b"record A contents", b"pw", &opts(Mode::Faithful)).unwrap();
        let b = protect(b"record B contents", b"pw", &opts(Mode::Faithful)).unwrap();
        assert!(matches!(
            recover_with_passphrase(&b.public, &a.private, b"pw"),
            Err(SelectiveError::PublicMismatch { .. })
        ));
    }

    #[test]
    fn unknown_version_and_magic_are_typed() {
        let p = protect(b"x", b"pw", &opts(Mode::Strong)).unwrap();
        for v in [0u8, 3, 9, 255] {
            let mut t = p.public.clone();
            t[4] = v;
            assert!(matches!(
                parse_public(&t),
                Err(SelectiveError::UnknownVersion { version, supported: 2, .. }) if version == v
            ));
            let mut t = p.private.clone();
            t[4] = v;
            assert!(matches!(
                parse_private(&t),
                Err(SelectiveError::UnknownVersion { version, .. }) if version == v
            ));
            let mut t = open_private(&p.private, b"pw").unwrap().to_bytes().to_vec();
            t[4] = v;
            assert!(matches!(
                RecoveryMaterial::from_bytes(&t),
                Err(SelectiveError::UnknownVersion { version, .. }) if version == v
            ));
        }
        let mut t = p.private.clone();
        t[0] = b'X';
        assert!(matches!(
            parse_private(&t),
            Err(SelectiveError::BadMagic { .. })
        ));
    }

    #[test]
    fn hostile_kdf_costs_are_refused_before_deriving() {
        let p = protect(b"x", b"pw", &opts(Mode::Strong)).unwrap();
        let mut t = p.private.clone();
        t[40..44].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            open_private(&t, b"pw"),
            Err(SelectiveError::KdfParamsOutOfRange { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic_on_arbitrary_bytes(d in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse_public(&d);
            let _ = parse_private(&d);
            let _ = RecoveryMaterial::from_bytes(&d);
        }

        #[test]
        fn parsers_never_panic_on_mutated_containers(
            idx in 0usize..400, val in proptest::num::u8::ANY, cut in 0usize..400
        ) {
            let p = protect(b"proptest payload bytes, a few units long.....", b"pw", &opts(Mode::Strong)).unwrap();
            let mut pubc = p.public.clone();
            let i = idx % pubc.len();
            pubc[i] = val;
            pubc.truncate(cut.max(1));
            let _ = parse_public(&pubc);
            let mut privc = p.private.clone();
            let i = idx % privc.len();
            privc[i] = val;
            let _ = parse_private(&privc);
            privc.truncate(cut.max(1));
            let _ = parse_private(&privc);
            let m = open_private(&p.private, b"pw").unwrap();
            let mut mb = m.to_bytes().to_vec();
            let i = idx % mb.len();
            mb[i] = val;
            let _ = RecoveryMaterial::from_bytes(&mb);
        }

        #[test]
        fn roundtrip_arbitrary_input(d in proptest::collection::vec(proptest::num::u8::ANY, 0..400), strong in proptest::bool::ANY) {
            let mode = if strong { Mode::Strong } else { Mode::Faithful };
            let p = protect(&d, b"pw", &opts(mode)).unwrap();
            proptest::prop_assert_eq!(recover_with_passphrase(&p.public, &p.private, b"pw").unwrap(), d);
        }
    }
}
