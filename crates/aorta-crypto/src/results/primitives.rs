//! The AEAD, HKDF and HPKE plumbing every results container shares: random
//! secrets, id checks, key derivation, `header ‖ AEAD` sealing, the
//! `magic ‖ version` check and the HPKE ephemeral-key RNG.

use std::marker::PhantomData;

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
use hpke::rand_core::{Infallible, TryCryptoRng, TryRng};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use zeroize::Zeroizing;

use super::{Container, MAX_ID_LEN, NONCE_LEN, Result, ResultsError, TAG_LEN};

/// What distinguishes one sealed container layout from another.
pub(crate) trait SealedKind {
    /// The magic.
    const MAGIC: [u8; 4];
    /// The only version read and written.
    const VERSION: u8;
    /// Length of the id after the version (0 for none).
    const ID_LEN: usize;
    /// Largest plaintext.
    const MAX_PLAINTEXT: usize;
}

/// A sealed result (`AORR`): the id is the session id.
#[derive(Debug)]
pub(crate) enum ResultKind {}

impl SealedKind for ResultKind {
    const MAGIC: [u8; 4] = super::RESULT_MAGIC;
    const VERSION: u8 = super::RESULT_VERSION;
    const ID_LEN: usize = super::SESSION_ID_LEN;
    const MAX_PLAINTEXT: usize = super::MAX_RESULT_LEN;
}

/// Sealed state (`AOST`): no id.
#[derive(Debug)]
pub(crate) enum StateKind {}

impl SealedKind for StateKind {
    const MAGIC: [u8; 4] = super::STATE_MAGIC;
    const VERSION: u8 = super::STATE_VERSION;
    const ID_LEN: usize = 0;
    const MAX_PLAINTEXT: usize = super::MAX_STATE_LEN;
}

/// The layout every sealed container here shares, not yet opened:
/// `magic ‖ version ‖ id ‖ nonce ‖ AES-256-GCM ciphertext ‖ tag`.
#[derive(Debug)]
pub(crate) struct Sealed<'a, K> {
    /// The id (the session id of a sealed result; empty for state).
    pub(crate) id: &'a [u8],
    pub(crate) nonce: [u8; NONCE_LEN],
    /// Ciphertext and tag.
    pub(crate) body: &'a [u8],
    kind: PhantomData<K>,
}

impl<'a, K: SealedKind> Decode<'a> for Sealed<'a, K> {
    fn decode(r: &mut Reader<'a>) -> std::result::Result<Self, DecodeError> {
        if r.array::<4>("magic")? != K::MAGIC {
            return Err(r.invalid("magic", 4, "bad magic"));
        }
        if r.u8("version")? != K::VERSION {
            return Err(r.invalid("version", 1, "unsupported version"));
        }
        let id = r.take(K::ID_LEN, "id")?;
        let nonce = r.array("nonce")?;
        if r.remaining() < TAG_LEN {
            return Err(DecodeError::Short {
                field: "tag",
                offset: r.position(),
                needed: TAG_LEN,
                available: r.remaining(),
            });
        }
        if r.remaining() > K::MAX_PLAINTEXT + TAG_LEN {
            return Err(r.invalid("ciphertext", 0, "over the size limit"));
        }
        Ok(Sealed {
            id,
            nonce,
            body: r.rest(),
            kind: PhantomData,
        })
    }
}

impl<K: SealedKind> Encode for Sealed<'_, K> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&K::MAGIC);
        out.push(K::VERSION);
        out.extend_from_slice(self.id);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(self.body);
    }
}

impl<K> Sealed<'_, K> {
    /// Authenticates and decrypts the body under the 32-byte AEAD key `raw`
    /// and `aad`; the plaintext is zeroizing.
    pub(crate) fn open(
        &self,
        raw: &[u8; 32],
        aad: &[u8],
        what: Container,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let mut buf = Zeroizing::new(self.body.to_vec());
        let n = aead_key(raw)?
            .open_in_place(
                Nonce::assume_unique_for_key(self.nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| ResultsError::AuthenticationFailed { what })?
            .len();
        buf.truncate(n);
        Ok(buf)
    }
}

/// A sealed result's layout.
pub(crate) type SealedResult<'a> = Sealed<'a, ResultKind>;
/// Sealed state's layout.
pub(crate) type SealedState<'a> = Sealed<'a, StateKind>;

/// `N` secret random bytes from the OS ([`aorta_base::random::secret`]).
pub(super) fn random_array<const N: usize>() -> Result<Zeroizing<[u8; N]>> {
    aorta_base::random::secret::<N>().map_err(|e| ResultsError::Random {
        reason: e.to_string(),
    })
}

pub(super) fn check_id(field: &'static str, id: &str) -> Result<u8> {
    if id.is_empty() {
        return Err(ResultsError::BadField {
            what: Container::Argument,
            field,
            offset: 0,
            reason: "empty",
        });
    }
    u8::try_from(id.len()).map_err(|_| ResultsError::Oversize {
        what: Container::Argument,
        field,
        len: id.len(),
        max: MAX_ID_LEN,
    })
}

struct Len32;
impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

pub(super) fn hkdf32(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Result<Zeroizing<[u8; 32]>> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let okm = prk
        .expand(info, Len32)
        .map_err(|_| ResultsError::Internal {
            what: "HKDF-SHA256 refused a 32-byte output",
        })?;
    let mut out = Zeroizing::new([0u8; 32]);
    okm.fill(out.as_mut()).map_err(|_| ResultsError::Internal {
        what: "HKDF-SHA256 refused a 32-byte output",
    })?;
    Ok(out)
}

pub(super) fn aead_key(raw: &[u8; 32]) -> Result<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, raw)
        .map(LessSafeKey::new)
        .map_err(|_| ResultsError::Internal {
            what: "AES-256-GCM refused a 32-byte key",
        })
}

/// `header ‖ AES-256-GCM(key, nonce, aad, plaintext) ‖ tag`: the body of
/// every sealed container here.
pub(super) fn seal_after_header(
    key: &LessSafeKey,
    header: &[u8],
    plaintext: &[u8],
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(header.len() + plaintext.len() + TAG_LEN);
    out.extend_from_slice(header);
    out.extend_from_slice(plaintext);
    let body = out.get_mut(header.len()..).ok_or(ResultsError::Internal {
        what: "sealed header written",
    })?;
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), body)
        .map_err(|_| ResultsError::Internal {
            what: "AES-256-GCM seal failed",
        })?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Checks `magic ‖ version` at the start of `bytes`, returning typed errors.
pub(super) fn check_head(
    bytes: &[u8],
    what: Container,
    (magic, expected): (&[u8; 4], &'static str),
    version: u8,
    min: usize,
) -> Result<()> {
    match bytes.get(..4) {
        Some(m) if m == magic => {}
        Some(_) => return Err(ResultsError::BadMagic { what, expected }),
        None => {
            return Err(ResultsError::Truncated {
                what,
                len: bytes.len(),
                min,
            });
        }
    }
    match bytes.get(4) {
        Some(&v) if v == version => Ok(()),
        Some(&v) => Err(ResultsError::UnsupportedVersion {
            what,
            version: v,
            supported: version,
        }),
        None => Err(ResultsError::Truncated {
            what,
            len: bytes.len(),
            min,
        }),
    }
}

/// An `hpke` RNG that hands out exactly the 32 bytes of ephemeral key
/// material it holds (the only randomness DHKEM(X25519) encapsulation
/// draws). Asking for more marks it overdrawn, which the caller turns into
/// [`ResultsError::Internal`] (its output is then discarded).
pub(super) struct EphemeralIkm {
    pub(super) ikm: Zeroizing<[u8; 32]>,
    pub(super) used: usize,
    pub(super) overdrawn: bool,
}

impl TryRng for EphemeralIkm {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> std::result::Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> std::result::Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> std::result::Result<(), Infallible> {
        match self.ikm.get(self.used..self.used.saturating_add(dst.len())) {
            Some(src) => {
                dst.copy_from_slice(src);
                self.used += dst.len();
            }
            None => {
                dst.fill(0);
                self.overdrawn = true;
            }
        }
        Ok(())
    }
}
impl TryCryptoRng for EphemeralIkm {}
