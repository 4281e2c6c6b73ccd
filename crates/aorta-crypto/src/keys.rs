//! The device key schedule (paper 003, "multi-key-per-machine").
//!
//! A device holds a slice of `N` (default [`DEFAULT_SLICE_LEN`] = 120)
//! factory keys of 32 bytes. Every derivation goes through one primitive, the
//! keyed PRF `prf(j, msg) = HMAC-SHA256(K_j, msg)` ([`KeyPrf`]), so that a
//! PKCS#11 token can hold the factory keys as non-extractable HMAC keys and
//! still compute everything; the server computes the same values from the raw
//! keys in its registry ([`KeySlice`] implements [`KeyPrf`]).
//!
//! - **Transport key**, in two steps. First the **group key** of active index
//!   `i` (the paper's "compression key", made from 8 consecutive keys and a
//!   hash): `p_k = prf(i+k mod N, "aorta/v1/transport" ‖ serial ‖ i)` for
//!   `k = 0..8`, then `G_i = HKDF-SHA256(salt = "aorta/v1/transport-group",
//!   ikm = p_0‖…‖p_7, info = serial ‖ i)` ([`transport_group_key`]). Then
//!   `TK(i, epoch) = HKDF-SHA256(salt = "aorta/v1/transport-key", ikm = G_i,
//!   info = serial ‖ i ‖ epoch)` ([`transport_key_from_group`]). `epoch` is 16
//!   random bytes drawn afresh each time a device starts sealing (see
//!   `docs/device-keys.md` for why this makes (key, nonce) reuse impossible
//!   after a crash or the restore of an old state file). The split lets the
//!   key broker release a device's `N` group keys to an attested worker,
//!   which then derives every run's `TK` itself without ever holding the
//!   factory keys.
//! - **Commitment** (the paper's MD5 over the keys, used for key verification
//!   at assembly): `SHA-256("aorta/v1/commitment" ‖ serial ‖ N ‖
//!   prf(0, c) ‖ … ‖ prf(N-1, c))` with `c = "aorta/v1/commit" ‖ serial`.
//! - **Renegotiation PSK**: `HKDF(prf(j, "aorta/v1/reneg-psk" ‖ serial) for
//!   every j)`, used to authenticate the X25519 exchange that changes
//!   `max_key_uses`.

use ring::{digest, hkdf, hmac};
use zeroize::{Zeroize, Zeroizing};

/// Default `max_key_uses` of a device: one use is one sealed frame, and
/// 259,200 ten-second frames are 30 days, the paper's "a key a month". The
/// registry starts a new device with it and the device's rotation state
/// defaults to it.
pub const DEFAULT_MAX_KEY_USES: u64 = 259_200;
/// Length of one factory key in bytes.
pub const KEY_LEN: usize = 32;
/// Keys per device (the paper: one a month for a 10-year life).
pub const DEFAULT_SLICE_LEN: u16 = 120;
/// Consecutive keys combined into one transport key (the paper: 8).
pub const GROUP_LEN: u16 = 8;
/// Length of the per-run random epoch bound into every transport key.
pub const EPOCH_LEN: usize = 16;
/// Longest serial number accepted anywhere.
pub const MAX_SERIAL_LEN: usize = 64;

/// What can go wrong deriving keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key index is outside the device's slice.
    #[error("key index {index} outside a slice of {len} keys")]
    IndexOutOfRange {
        /// Requested index.
        index: u16,
        /// Slice length.
        len: u16,
    },
    /// The slice is shorter than a transport key group.
    #[error("a slice needs at least {GROUP_LEN} keys, this one has {len}")]
    SliceTooShort {
        /// Slice length.
        len: u16,
    },
    /// The serial number is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error("invalid serial number {serial:?}")]
    BadSerial {
        /// The offending serial (at most 64 characters kept).
        serial: String,
    },
    /// The key material has the wrong length.
    #[error("key material of {len} bytes is not a whole number of {KEY_LEN}-byte keys")]
    BadKeyMaterial {
        /// Length given.
        len: usize,
    },
    /// The secure element or token failed (its message, never key bytes).
    #[error("secure element: {0}")]
    SecureElement(String),
    /// HKDF refused the output length (our bug).
    #[error("HKDF expansion failed")]
    Hkdf,
}

/// Checks that a serial number is 1..=64 characters of `[A-Za-z0-9._-]`.
pub fn check_serial(serial: &str) -> Result<(), KeyError> {
    let ok = !serial.is_empty()
        && serial.len() <= MAX_SERIAL_LEN
        && serial
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(KeyError::BadSerial {
            serial: serial.chars().take(MAX_SERIAL_LEN).collect(),
        })
    }
}

/// A 32-byte PRF output (zeroized on drop).
pub type Prf32 = Zeroizing<[u8; 32]>;

/// The one primitive every derivation uses: `HMAC-SHA256(K_index, msg)`.
///
/// Implemented by [`KeySlice`] (raw keys, server side and file-backed secure
/// element) and by the device crate's PKCS#11 secure element (keys never
/// leave the token).
pub trait KeyPrf {
    /// The device's serial number.
    fn serial(&self) -> &str;
    /// Number of keys in the slice.
    fn slice_len(&self) -> u16;
    /// `HMAC-SHA256(K_index, msg)`.
    fn prf(&self, index: u16, msg: &[u8]) -> Result<Prf32, KeyError>;
}

/// A device's factory key slice in memory. Zeroized on drop; `Debug` prints
/// only the serial and length.
pub struct KeySlice {
    serial: String,
    keys: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for KeySlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySlice")
            .field("serial", &self.serial)
            .field("keys", &self.keys.len().checked_div(KEY_LEN))
            .finish_non_exhaustive()
    }
}

impl KeySlice {
    /// Wraps raw key material (`N × 32` bytes) for `serial`. Takes ownership
    /// so the only copy is the zeroizing one.
    pub fn new(serial: &str, mut material: Vec<u8>) -> Result<Self, KeyError> {
        check_serial(serial)?;
        let n = material.len() / KEY_LEN;
        if material.is_empty()
            || !material.len().is_multiple_of(KEY_LEN)
            || n > usize::from(u16::MAX)
        {
            let len = material.len();
            material.zeroize();
            return Err(KeyError::BadKeyMaterial { len });
        }
        Ok(KeySlice {
            serial: serial.to_owned(),
            keys: Zeroizing::new(material),
        })
    }

    /// The raw key bytes (for the file-backed secure element and key wrapping only).
    pub fn material(&self) -> &[u8] {
        &self.keys
    }

    fn key(&self, index: u16) -> Result<&[u8], KeyError> {
        let start = usize::from(index) * KEY_LEN;
        self.keys
            .get(start..start + KEY_LEN)
            .ok_or(KeyError::IndexOutOfRange {
                index,
                len: self.slice_len(),
            })
    }
}

impl KeyPrf for KeySlice {
    fn serial(&self) -> &str {
        &self.serial
    }
    fn slice_len(&self) -> u16 {
        u16::try_from(self.keys.len() / KEY_LEN).unwrap_or(u16::MAX)
    }
    fn prf(&self, index: u16, msg: &[u8]) -> Result<Prf32, KeyError> {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.key(index)?);
        let tag = hmac::sign(&key, msg);
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }
}

fn labelled(label: &[u8], serial: &str, extra: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(label.len() + serial.len() + 1 + extra.len());
    m.extend_from_slice(label);
    m.push(serial.len() as u8); // serial ≤ 64 bytes, checked by check_serial
    m.extend_from_slice(serial.as_bytes());
    m.extend_from_slice(extra);
    m
}

struct Len32;
impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

fn hkdf32(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let okm = prk.expand(info, Len32).map_err(|_| KeyError::Hkdf)?;
    let mut out = Zeroizing::new([0u8; 32]);
    okm.fill(out.as_mut()).map_err(|_| KeyError::Hkdf)?;
    Ok(out)
}

/// Derives the **worker state key** of an assignment from the key broker's
/// state secret: `HKDF-SHA256(salt = "aorta worker state v1", ikm = secret,
/// info = assignment)`. The broker releases it only to attested workers of
/// that assignment, which seal their checkpoints under it; a restarted
/// worker (a new attested instance) gets the same key and can resume.
pub fn worker_state_key(
    secret: &[u8; 32],
    assignment: &str,
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    hkdf32(b"aorta worker state v1", secret, &[assignment.as_bytes()])
}

/// Derives the group key `G_index` of active key index `index` (the paper's
/// "compression key" of that group; see the module docs). One per key index:
/// with it and a frame header's epoch, [`transport_key_from_group`] gives the
/// frame's transport key.
pub fn transport_group_key(prf: &dyn KeyPrf, index: u16) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let serial = prf.serial();
    check_serial(serial)?;
    let n = prf.slice_len();
    if n < GROUP_LEN {
        return Err(KeyError::SliceTooShort { len: n });
    }
    if index >= n {
        return Err(KeyError::IndexOutOfRange { index, len: n });
    }
    let msg = labelled(b"aorta/v1/transport", serial, &index.to_be_bytes());
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * usize::from(GROUP_LEN)));
    for k in 0..GROUP_LEN {
        let j = ((u32::from(index) + u32::from(k)) % u32::from(n)) as u16;
        ikm.extend_from_slice(prf.prf(j, &msg)?.as_ref());
    }
    let info_serial = labelled(b"", serial, &[]);
    hkdf32(
        b"aorta/v1/transport-group",
        &ikm,
        &[&info_serial, &index.to_be_bytes()],
    )
}

/// Derives the transport key `TK(index, epoch)` from the group key of
/// `index` (see [`transport_group_key`]).
pub fn transport_key_from_group(
    group: &[u8; 32],
    serial: &str,
    index: u16,
    epoch: &[u8; EPOCH_LEN],
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    check_serial(serial)?;
    let info_serial = labelled(b"", serial, &[]);
    hkdf32(
        b"aorta/v1/transport-key",
        group,
        &[&info_serial, &index.to_be_bytes(), epoch],
    )
}

/// Derives the raw 32-byte transport key for active key index `index` and
/// run `epoch`: [`transport_group_key`] then [`transport_key_from_group`].
pub fn transport_key_bytes(
    prf: &dyn KeyPrf,
    index: u16,
    epoch: &[u8; EPOCH_LEN],
) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let group = transport_group_key(prf, index)?;
    transport_key_from_group(&group, prf.serial(), index, epoch)
}

/// The key-verification commitment over a device's whole key slice.
pub fn commitment(prf: &dyn KeyPrf) -> Result<[u8; 32], KeyError> {
    let serial = prf.serial();
    check_serial(serial)?;
    let n = prf.slice_len();
    let msg = labelled(b"aorta/v1/commit", serial, &[]);
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&labelled(b"aorta/v1/commitment", serial, &n.to_be_bytes()));
    for j in 0..n {
        ctx.update(prf.prf(j, &msg)?.as_ref());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(out)
}

/// The pre-shared key that authenticates renegotiation of `max_key_uses`.
pub fn renegotiation_psk(prf: &dyn KeyPrf) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let serial = prf.serial();
    check_serial(serial)?;
    let n = prf.slice_len();
    let msg = labelled(b"aorta/v1/reneg-psk", serial, &[]);
    let mut ikm = Zeroizing::new(Vec::with_capacity(32 * usize::from(n)));
    for j in 0..n {
        ikm.extend_from_slice(prf.prf(j, &msg)?.as_ref());
    }
    hkdf32(b"aorta/v1/reneg-psk", &ikm, &[serial.as_bytes()])
}

/// Constant-time equality of two byte strings (lengths are public).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The key-index window's largest forward step (mod `slice_len`) over
/// `gap` sequence numbers: a device rotates at most once per
/// `min_key_uses` frames, plus one rotation for where it started inside
/// its count; capped at `slice_len - 1`.
pub fn max_index_advance(slice_len: u16, min_key_uses: u64, gap: u64) -> u64 {
    (gap / min_key_uses.max(1))
        .saturating_add(1)
        .min(u64::from(slice_len.max(1)) - 1)
}

/// The key-index window (`docs/frame-format.md`): whether a device at
/// `(sequence, key_index)` = `from` can have sealed a later frame `to`.
/// The index must be inside the slice and may only move forward, by at
/// most [`max_index_advance`] steps; `to` must come after `from` (a first
/// frame is checked from `(0, 0)` with its sequence plus one as the gap, as
/// the registry does).
pub fn index_window_ok(
    slice_len: u16,
    min_key_uses: u64,
    from: (u64, u16),
    to: (u64, u16),
) -> bool {
    let n = u64::from(slice_len);
    let (got, last) = (u64::from(to.1), u64::from(from.1));
    if got >= n || last >= n || to.0 < from.0 {
        return false;
    }
    (got + n - last) % n <= max_index_advance(slice_len, min_key_uses, to.0 - from.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(serial: &str, n: usize, seed: u8) -> KeySlice {
        let mat: Vec<u8> = (0..n * KEY_LEN).map(|i| (i as u8) ^ seed).collect();
        KeySlice::new(serial, mat).unwrap()
    }

    #[test]
    fn transport_keys_differ_by_index_epoch_serial_and_keys() {
        let a = slice("SN-1", 120, 1);
        let e0 = [0u8; 16];
        let e1 = [1u8; 16];
        let k00 = transport_key_bytes(&a, 0, &e0).unwrap();
        assert_ne!(*k00, *transport_key_bytes(&a, 1, &e0).unwrap());
        assert_ne!(*k00, *transport_key_bytes(&a, 0, &e1).unwrap());
        assert_ne!(
            *k00,
            *transport_key_bytes(&slice("SN-2", 120, 1), 0, &e0).unwrap()
        );
        assert_ne!(
            *k00,
            *transport_key_bytes(&slice("SN-1", 120, 2), 0, &e0).unwrap()
        );
        // Deterministic: the server recomputes the same key.
        assert_eq!(*k00, *transport_key_bytes(&a, 0, &e0).unwrap());
        // Wrap-around groups work at the end of the slice.
        assert!(transport_key_bytes(&a, 119, &e0).is_ok());
        assert_eq!(
            transport_key_bytes(&a, 120, &e0).unwrap_err(),
            KeyError::IndexOutOfRange {
                index: 120,
                len: 120
            }
        );
    }

    #[test]
    fn transport_key_is_the_composition_of_group_and_epoch_steps() {
        let a = slice("SN-1", 120, 1);
        let e = [9u8; 16];
        for i in [0u16, 1, 112, 119] {
            let g = transport_group_key(&a, i).unwrap();
            assert_eq!(
                *transport_key_bytes(&a, i, &e).unwrap(),
                *transport_key_from_group(&g, "SN-1", i, &e).unwrap()
            );
            // The group key is not the transport key, and binds the index and serial.
            assert_ne!(*g, *transport_key_bytes(&a, i, &e).unwrap());
            assert_ne!(
                *transport_key_from_group(&g, "SN-1", i, &e).unwrap(),
                *transport_key_from_group(&g, "SN-2", i, &e).unwrap()
            );
            assert_ne!(
                *transport_key_from_group(&g, "SN-1", i, &e).unwrap(),
                *transport_key_from_group(&g, "SN-1", i ^ 1, &e).unwrap()
            );
        }
        assert_ne!(
            *transport_group_key(&a, 0).unwrap(),
            *transport_group_key(&a, 1).unwrap()
        );
        assert_eq!(
            transport_group_key(&a, 120).unwrap_err(),
            KeyError::IndexOutOfRange {
                index: 120,
                len: 120
            }
        );
        assert!(matches!(
            transport_key_from_group(&[0; 32], "a/b", 0, &e),
            Err(KeyError::BadSerial { .. })
        ));
    }

    #[test]
    fn commitment_binds_every_key() {
        let a = slice("SN-1", 120, 1);
        let c = commitment(&a).unwrap();
        let mut mat = a.material().to_vec();
        mat[32 * 119 + 31] ^= 1;
        let b = KeySlice::new("SN-1", mat).unwrap();
        assert_ne!(c, commitment(&b).unwrap());
        assert_ne!(c, commitment(&slice("SN-X", 120, 1)).unwrap());
    }

    #[test]
    fn bad_serials_and_material_are_refused() {
        for s in ["", "a b", "x/y", &"a".repeat(65)] {
            assert!(matches!(check_serial(s), Err(KeyError::BadSerial { .. })));
        }
        assert!(KeySlice::new("ok", vec![0; 31]).is_err());
        assert!(KeySlice::new("ok", vec![]).is_err());
        let short = slice("s", 7, 0);
        assert_eq!(
            transport_key_bytes(&short, 0, &[0; 16]).unwrap_err(),
            KeyError::SliceTooShort { len: 7 }
        );
    }

    #[test]
    fn debug_does_not_print_key_bytes() {
        let a = KeySlice::new("SN", vec![0xAB; 64]).unwrap();
        let d = format!("{a:?}");
        assert!(
            !d.contains("171") && !d.to_lowercase().contains("ab,"),
            "{d}"
        );
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
