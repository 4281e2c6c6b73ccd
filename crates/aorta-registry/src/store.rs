//! The registry's redb tables and their record encodings, and the
//! key-encryption key that wraps every stored key.

use std::path::Path;

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
use redb::TableDefinition;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::digest;
use zeroize::Zeroizing;

use crate::RegistryError;

/// Registry metadata (format version, pool size, slice length, next offset).
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Pool page number → wrapped page (nonce ‖ AES-256-GCM ciphertext ‖ tag).
pub(crate) const POOL: TableDefinition<u64, &[u8]> = TableDefinition::new("pool");
/// Serial → device record.
pub(crate) const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("devices");
/// Slice offset → (serial, length): the allocation map used to refuse overlaps.
pub(crate) const ALLOC: TableDefinition<u64, &[u8]> = TableDefinition::new("alloc");
/// Serial → highest accepted sequence and its key index.
pub(crate) const FRAME_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("frame_state");
/// (serial, sequence) → SHA-256 of the accepted frame bytes.
pub(crate) const ACKS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("acks");

pub(crate) fn page_aad(page: u64) -> Vec<u8> {
    let mut a = b"aorta/v1/pool-page".to_vec();
    a.extend_from_slice(&page.to_be_bytes());
    a
}

pub(crate) fn frame_digest(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

/// The key-encryption key. Never printed.
pub(crate) struct Kek {
    key: LessSafeKey,
}

impl Kek {
    /// A fresh random KEK, written to the new owner-only file `path`.
    pub(crate) fn create(path: &Path) -> Result<Kek, RegistryError> {
        let raw = aorta_base::random::secret::<32>().map_err(|_| RegistryError::Rng)?;
        aorta_base::fs::write_private_new(path, raw.as_ref()).map_err(|e| RegistryError::Io {
            path: path.to_path_buf(),
            error: std::io::Error::other(e),
        })?;
        Self::from_raw(&raw)
    }

    pub(crate) fn load(path: &Path) -> Result<Kek, RegistryError> {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|error| RegistryError::Io {
            path: path.to_path_buf(),
            error,
        })?);
        let raw: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            RegistryError::Corrupt(format!("{} is not a 32-byte key", path.display()))
        })?;
        let raw = Zeroizing::new(raw);
        Self::from_raw(&raw)
    }

    fn from_raw(raw: &[u8; 32]) -> Result<Kek, RegistryError> {
        let k = UnboundKey::new(&AES_256_GCM, raw)
            .map_err(|_| RegistryError::Corrupt("KEK rejected".into()))?;
        Ok(Kek {
            key: LessSafeKey::new(k),
        })
    }

    /// nonce (random, 12) ‖ ciphertext ‖ tag.
    pub(crate) fn wrap(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, RegistryError> {
        let nonce = aorta_base::random::array::<NONCE_LEN>().map_err(|_| RegistryError::Rng)?;
        let mut buf = plain.to_vec();
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| RegistryError::Rng)?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len() + 16);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        out.extend_from_slice(tag.as_ref());
        use zeroize::Zeroize;
        buf.zeroize();
        Ok(out)
    }

    pub(crate) fn unwrap(
        &self,
        aad: &[u8],
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, RegistryError> {
        let (nonce, ct) = wrapped
            .split_first_chunk::<NONCE_LEN>()
            .ok_or_else(|| RegistryError::Corrupt("wrapped key too short".into()))?;
        let mut buf = Zeroizing::new(ct.to_vec());
        let len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| {
                RegistryError::Corrupt(
                    "a wrapped key failed to authenticate (wrong KEK or tampered store)".into(),
                )
            })?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// A stored record that does not decode: the store is corrupt.
pub(crate) fn corrupt(what: &'static str) -> impl FnOnce(DecodeError) -> RegistryError {
    move |e| RegistryError::Corrupt(format!("{what}: {e}"))
}

/// A device's registry record (no key bytes: those stay in the wrapped pool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceRecord {
    pub(crate) offset: u64,
    pub(crate) slice_len: u16,
    pub(crate) verified: bool,
    pub(crate) max_key_uses: u64,
    /// The `max_key_uses` the key-index window uses: `max_key_uses`, or the
    /// smaller pending value while a renegotiation is unconfirmed (so frames
    /// under either schedule stay inside the window); back to
    /// `max_key_uses` once the change is resolved.
    pub(crate) min_key_uses: u64,
    /// The device's Ed25519 signing public key, registered at assembly.
    pub(crate) public_key: Option<[u8; 32]>,
    /// Retired (`aorta factory revoke`).
    pub(crate) revoked: bool,
}

/// Version of the device record layout.
const DEVICE_RECORD_VERSION: u8 = 2;

/// Reads a `0`/`1` flag.
fn flag(r: &mut Reader<'_>, field: &'static str) -> Result<bool, DecodeError> {
    match r.u8(field)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(r.invalid(field, 1, "flag is neither 0 nor 1")),
    }
}

/// `version(2) ‖ offset u64 ‖ slice_len u16 ‖ verified u8 ‖ max_key_uses
/// u64 ‖ min_key_uses u64 ‖ has_key u8 ‖ public_key [32] (zeros when none)
/// ‖ revoked u8`.
impl Encode for DeviceRecord {
    fn encode(&self, b: &mut Vec<u8>) {
        b.push(DEVICE_RECORD_VERSION);
        b.extend_from_slice(&self.offset.to_be_bytes());
        b.extend_from_slice(&self.slice_len.to_be_bytes());
        b.push(u8::from(self.verified));
        b.extend_from_slice(&self.max_key_uses.to_be_bytes());
        b.extend_from_slice(&self.min_key_uses.to_be_bytes());
        b.push(u8::from(self.public_key.is_some()));
        b.extend_from_slice(&self.public_key.unwrap_or([0u8; 32]));
        b.push(u8::from(self.revoked));
    }
}

impl Decode<'_> for DeviceRecord {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.u8("version")? != DEVICE_RECORD_VERSION {
            return Err(r.invalid(
                "version",
                1,
                "unknown device record version (a registry made before device signing keys: re-create it)",
            ));
        }
        let mut rec = DeviceRecord {
            offset: r.u64("offset")?,
            slice_len: r.u16("slice_len")?,
            verified: flag(r, "verified")?,
            max_key_uses: r.u64("max_key_uses")?,
            min_key_uses: r.u64("min_key_uses")?,
            public_key: None,
            revoked: false,
        };
        let has_key = flag(r, "has_key")?;
        let key: [u8; 32] = r.array("public_key")?;
        if !has_key && key != [0u8; 32] {
            return Err(r.invalid("public_key", 32, "set without has_key"));
        }
        rec.public_key = has_key.then_some(key);
        rec.revoked = flag(r, "revoked")?;
        Ok(rec)
    }
}

/// Per-device frame acceptance state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FrameState {
    pub(crate) last_sequence: Option<u64>,
    pub(crate) last_key_index: u16,
}

/// `has_sequence u8 ‖ last_sequence u64 (0 when none) ‖ last_key_index u16`.
impl Encode for FrameState {
    fn encode(&self, b: &mut Vec<u8>) {
        b.push(u8::from(self.last_sequence.is_some()));
        b.extend_from_slice(&self.last_sequence.unwrap_or(0).to_be_bytes());
        b.extend_from_slice(&self.last_key_index.to_be_bytes());
    }
}

impl Decode<'_> for FrameState {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let has = flag(r, "has_sequence")?;
        let seq = r.u64("last_sequence")?;
        if !has && seq != 0 {
            return Err(r.invalid("last_sequence", 8, "set without a sequence"));
        }
        Ok(FrameState {
            last_sequence: has.then_some(seq),
            last_key_index: r.u16("last_key_index")?,
        })
    }
}

/// An allocation-map value: `length u64 ‖ serial (UTF-8, the rest)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AllocRecord {
    pub(crate) serial: String,
    pub(crate) len: u64,
}

impl Encode for AllocRecord {
    fn encode(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(&self.len.to_be_bytes());
        b.extend_from_slice(self.serial.as_bytes());
    }
}

impl Decode<'_> for AllocRecord {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = r.u64("length")?;
        let rest = r.rest();
        let serial = std::str::from_utf8(rest)
            .map_err(|_| r.invalid("serial", rest.len(), "not UTF-8"))?
            .to_owned();
        Ok(AllocRecord { serial, len })
    }
}
