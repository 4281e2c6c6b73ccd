//! The registry's redb tables and their record encodings, and the
//! key-encryption key that wraps every stored key.

use std::io::Write;
use std::path::Path;

use redb::TableDefinition;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
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
    pub(crate) fn create(path: &Path, rng: &SystemRandom) -> Result<Kek, RegistryError> {
        let mut raw = Zeroizing::new([0u8; 32]);
        rng.fill(raw.as_mut()).map_err(|_| RegistryError::Rng)?;
        let io = |error| RegistryError::Io {
            path: path.to_path_buf(),
            error,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(io)?;
        f.write_all(raw.as_ref()).map_err(io)?;
        f.sync_all().map_err(io)?;
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
    pub(crate) fn wrap(
        &self,
        rng: &SystemRandom,
        aad: &[u8],
        plain: &[u8],
    ) -> Result<Vec<u8>, RegistryError> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce).map_err(|_| RegistryError::Rng)?;
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

fn take<const N: usize>(b: &[u8], pos: &mut usize) -> Result<[u8; N], RegistryError> {
    let s = b
        .get(*pos..*pos + N)
        .ok_or_else(|| RegistryError::Corrupt("record truncated".into()))?;
    *pos += N;
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    Ok(a)
}

/// A device's registry record (no key bytes: those stay in the wrapped pool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceRecord {
    pub(crate) offset: u64,
    pub(crate) slice_len: u16,
    pub(crate) verified: bool,
    pub(crate) max_key_uses: u64,
    /// Smallest `max_key_uses` ever offered or applied: the key-index window
    /// uses it, so frames sealed under any schedule the device may be on
    /// (including one whose Confirm was lost) stay inside the window.
    pub(crate) min_key_uses: u64,
}

impl DeviceRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = vec![1u8];
        b.extend_from_slice(&self.offset.to_be_bytes());
        b.extend_from_slice(&self.slice_len.to_be_bytes());
        b.push(u8::from(self.verified));
        b.extend_from_slice(&self.max_key_uses.to_be_bytes());
        b.extend_from_slice(&self.min_key_uses.to_be_bytes());
        b
    }
    pub(crate) fn decode(b: &[u8]) -> Result<Self, RegistryError> {
        let mut p = 0;
        let [v] = take::<1>(b, &mut p)?;
        if v != 1 {
            return Err(RegistryError::Corrupt(format!("device record version {v}")));
        }
        Ok(DeviceRecord {
            offset: u64::from_be_bytes(take(b, &mut p)?),
            slice_len: u16::from_be_bytes(take(b, &mut p)?),
            verified: take::<1>(b, &mut p)? == [1],
            max_key_uses: u64::from_be_bytes(take(b, &mut p)?),
            min_key_uses: u64::from_be_bytes(take(b, &mut p)?),
        })
    }
}

/// Per-device frame acceptance state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FrameState {
    pub(crate) last_sequence: Option<u64>,
    pub(crate) last_key_index: u16,
}

impl FrameState {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = vec![u8::from(self.last_sequence.is_some())];
        b.extend_from_slice(&self.last_sequence.unwrap_or(0).to_be_bytes());
        b.extend_from_slice(&self.last_key_index.to_be_bytes());
        b
    }
    pub(crate) fn decode(b: &[u8]) -> Result<Self, RegistryError> {
        let mut p = 0;
        let [has] = take::<1>(b, &mut p)?;
        let seq = u64::from_be_bytes(take(b, &mut p)?);
        Ok(FrameState {
            last_sequence: (has == 1).then_some(seq),
            last_key_index: u16::from_be_bytes(take(b, &mut p)?),
        })
    }
}

pub(crate) fn encode_alloc(serial: &str, len: u64) -> Vec<u8> {
    let mut b = len.to_be_bytes().to_vec();
    b.extend_from_slice(serial.as_bytes());
    b
}

pub(crate) fn decode_alloc(b: &[u8]) -> Result<(String, u64), RegistryError> {
    let (len, serial) = b
        .split_first_chunk::<8>()
        .ok_or_else(|| RegistryError::Corrupt("allocation record".into()))?;
    Ok((
        String::from_utf8_lossy(serial).into_owned(),
        u64::from_be_bytes(*len),
    ))
}
