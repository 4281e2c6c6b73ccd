//! Key material for selective encryption: the user key K (from a passphrase
//! through Argon2id), the per-record secret S of strong mode, and the keys the
//! unit transform uses (the mask key, called hash key, and the PRNG seed).

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{FormatVersion, Mode, SelectiveError};

/// Length of every symmetric key in this module, in bytes.
pub const KEY_LEN: usize = 32;
/// Length of the Argon2id salt stored in the private container.
pub const SALT_LEN: usize = 16;

const INFO_FAITHFUL_PRNG: &[u8] = b"aorta-se v1 faithful prng seed";
const INFO_STRONG_HASH: &[u8] = b"aorta-se v1 strong hash key";
const INFO_STRONG_PRNG: &[u8] = b"aorta-se v1 strong prng seed";
const INFO_STRONG_V2_MASK: &[u8] = b"aorta-se v2 strong unit mask aes-256 key";
const INFO_STRONG_V2_PRNG: &[u8] = b"aorta-se v2 strong prng seed";
const INFO_PRIVATE_AEAD: &[u8] = b"aorta-se v1 private fragment aead key";

/// The paper's key K: 256 bits, normally derived from the user's passphrase
/// with [`MasterKey::derive`]. Zeroized on drop; `Debug` never prints it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; KEY_LEN]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// Wraps raw key bytes (tests, test vectors, or a key from a key manager).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// K = Argon2id(passphrase, salt) with the given cost parameters.
    pub fn derive(
        passphrase: &[u8],
        salt: &[u8; SALT_LEN],
        params: &KdfParams,
    ) -> Result<Self, SelectiveError> {
        params.check()?;
        let p = argon2::Params::new(
            params.m_cost_kib,
            params.t_cost,
            params.p_cost,
            Some(KEY_LEN),
        )
        .map_err(|e| SelectiveError::Kdf {
            reason: e.to_string(),
        })?;
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
        let mut out = [0u8; KEY_LEN];
        a.hash_password_into(passphrase, salt, &mut out)
            .map_err(|e| SelectiveError::Kdf {
                reason: e.to_string(),
            })?;
        Ok(Self(out))
    }
}

/// Argon2id cost parameters, recorded in the private container so that a
/// record stays recoverable when the defaults change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub m_cost_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Parallelism (lanes).
    pub p_cost: u32,
}

impl KdfParams {
    /// Largest memory cost accepted from a container: 256 MiB, four times
    /// the default and about what a phone can spare for one derivation (a
    /// hostile container cannot make recovery allocate more).
    pub const MAX_M_COST_KIB: u32 = 256 * 1024;
    /// Largest pass count accepted from a container.
    pub const MAX_T_COST: u32 = 8;
    /// Largest parallelism accepted from a container.
    pub const MAX_P_COST: u32 = 8;
    /// Largest total work `m × t` accepted from a container, in KiB-passes:
    /// 512 MiB-passes, under three times the default's 192 (so one recovery
    /// attempt costs at most a few seconds on a phone, about one on a PC).
    pub const MAX_WORK_KIB_PASSES: u64 = 512 * 1024;

    /// Defaults for new records: 64 MiB, 3 passes, 1 lane (the RFC 9106
    /// "second recommended" option is 64 MiB, t = 3).
    pub const DEFAULT: Self = Self {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };

    /// Cheap parameters for tests and test vectors only (Argon2id minimum
    /// memory). Never use for real records.
    pub const INSECURE_TEST: Self = Self {
        m_cost_kib: 8,
        t_cost: 1,
        p_cost: 1,
    };

    /// Rejects parameters outside the accepted range.
    pub fn check(&self) -> Result<(), SelectiveError> {
        let ok = self.t_cost >= 1
            && self.t_cost <= Self::MAX_T_COST
            && self.p_cost >= 1
            && self.p_cost <= Self::MAX_P_COST
            && self.m_cost_kib >= 8 * self.p_cost
            && self.m_cost_kib <= Self::MAX_M_COST_KIB
            && u64::from(self.m_cost_kib) * u64::from(self.t_cost) <= Self::MAX_WORK_KIB_PASSES;
        if ok {
            Ok(())
        } else {
            Err(SelectiveError::KdfParamsOutOfRange {
                m_cost_kib: self.m_cost_kib,
                t_cost: self.t_cost,
                p_cost: self.p_cost,
            })
        }
    }
}

/// Strong mode's random 256-bit per-record secret S. It lives only inside the
/// (encrypted) private fragment and is mixed into every H_i.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct RecordSecret([u8; KEY_LEN]);

impl std::fmt::Debug for RecordSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordSecret(<redacted>)")
    }
}

impl RecordSecret {
    /// Wraps raw bytes (test vectors).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }
    /// A fresh secret from the operating system's CSPRNG.
    pub fn random() -> Result<Self, SelectiveError> {
        let mut b = [0u8; KEY_LEN];
        fill_random(&mut b)?;
        Ok(Self(b))
    }
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// The two keys the unit transform needs: the key of every unit's mask (the
/// key hashed into every H_i, or the AES-256 key of strong mode in format v2;
/// see [`super::UnitMask`]) and the seed of the keyed PRNG that picks the
/// private piece of each unit. Both are secret 32-byte values in every mode
/// and version.
///
/// Whoever holds these plus both fragments can recover the record; they are
/// what a sharing grant hands a recipient (never the passphrase).
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct UnitKeys {
    pub(crate) hash_key: [u8; KEY_LEN],
    pub(crate) prng_seed: [u8; KEY_LEN],
}

impl std::fmt::Debug for UnitKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnitKeys(<redacted>)")
    }
}

impl UnitKeys {
    /// Builds unit keys from raw parts (deserialising a grant).
    pub fn from_parts(hash_key: [u8; KEY_LEN], prng_seed: [u8; KEY_LEN]) -> Self {
        Self {
            hash_key,
            prng_seed,
        }
    }
    /// The key of every unit's mask: hashed into every H_i
    /// ([`super::UnitMask::Sha256`]) or the AES-256 key
    /// ([`super::UnitMask::Aes256`]). Secret.
    pub fn hash_key(&self) -> &[u8; KEY_LEN] {
        &self.hash_key
    }
    /// The PRNG seed. Secret.
    pub fn prng_seed(&self) -> &[u8; KEY_LEN] {
        &self.prng_seed
    }

    /// Faithful mode (the paper): H_i hashes K itself; the PRNG is keyed by K.
    pub fn faithful(k: &MasterKey) -> Result<Self, SelectiveError> {
        let mut prng_seed = [0u8; KEY_LEN];
        expand(None, k.as_bytes(), INFO_FAITHFUL_PRNG, &mut prng_seed)?;
        Ok(Self {
            hash_key: *k.as_bytes(),
            prng_seed,
        })
    }

    /// Strong mode in format v1: both keys come from HKDF(salt = S, ikm = K),
    /// so K alone determines neither.
    pub fn strong(k: &MasterKey, s: &RecordSecret) -> Result<Self, SelectiveError> {
        let mut hash_key = [0u8; KEY_LEN];
        let mut prng_seed = [0u8; KEY_LEN];
        expand(
            Some(s.as_bytes()),
            k.as_bytes(),
            INFO_STRONG_HASH,
            &mut hash_key,
        )?;
        expand(
            Some(s.as_bytes()),
            k.as_bytes(),
            INFO_STRONG_PRNG,
            &mut prng_seed,
        )?;
        Ok(Self {
            hash_key,
            prng_seed,
        })
    }

    /// Strong mode in format v2: the AES-256 mask key and the PRNG seed come
    /// from HKDF(salt = S, ikm = K) with their own v2 labels, so they are
    /// independent of each other, of the v1 keys and of K alone.
    pub fn strong_v2(k: &MasterKey, s: &RecordSecret) -> Result<Self, SelectiveError> {
        let mut hash_key = [0u8; KEY_LEN];
        let mut prng_seed = [0u8; KEY_LEN];
        expand(
            Some(s.as_bytes()),
            k.as_bytes(),
            INFO_STRONG_V2_MASK,
            &mut hash_key,
        )?;
        expand(
            Some(s.as_bytes()),
            k.as_bytes(),
            INFO_STRONG_V2_PRNG,
            &mut prng_seed,
        )?;
        Ok(Self {
            hash_key,
            prng_seed,
        })
    }

    /// The unit keys for `mode` in the latest format
    /// ([`FormatVersion::LATEST`]); `secret` is required in strong mode and
    /// ignored in faithful mode.
    pub fn for_mode(
        mode: Mode,
        k: &MasterKey,
        secret: Option<&RecordSecret>,
    ) -> Result<Self, SelectiveError> {
        Self::for_record(FormatVersion::LATEST, mode, k, secret)
    }

    /// The unit keys of a record of `mode` in format `version`; `secret` is
    /// required in strong mode and ignored in faithful mode (whose keys are
    /// the same in every version).
    pub fn for_record(
        version: FormatVersion,
        mode: Mode,
        k: &MasterKey,
        secret: Option<&RecordSecret>,
    ) -> Result<Self, SelectiveError> {
        match (mode, secret, version) {
            (Mode::Faithful, _, _) => Self::faithful(k),
            (Mode::Strong, Some(s), FormatVersion::V1) => Self::strong(k, s),
            (Mode::Strong, Some(s), FormatVersion::V2) => Self::strong_v2(k, s),
            (Mode::Strong, None, _) => Err(SelectiveError::Internal {
                what: "strong mode without a record secret",
            }),
        }
    }
}

/// The AEAD key protecting the private fragment: HKDF(K, info).
pub(crate) fn private_aead_key(
    k: &MasterKey,
) -> Result<zeroize::Zeroizing<[u8; KEY_LEN]>, SelectiveError> {
    let mut out = zeroize::Zeroizing::new([0u8; KEY_LEN]);
    expand(None, k.as_bytes(), INFO_PRIVATE_AEAD, &mut out)?;
    Ok(out)
}

fn expand(
    salt: Option<&[u8]>,
    ikm: &[u8],
    info: &[u8],
    out: &mut [u8; KEY_LEN],
) -> Result<(), SelectiveError> {
    let hk = Hkdf::<Sha256>::new(salt, ikm);
    // 32 bytes is far below HKDF-SHA256's 255 * 32 limit.
    hk.expand(info, out).map_err(|_| SelectiveError::Internal {
        what: "HKDF-SHA256 refused a 32-byte output",
    })
}

/// Fills `buf` from the operating system's CSPRNG
/// ([`aorta_base::random::fill`]), failing with this module's error.
pub fn fill_random(buf: &mut [u8]) -> Result<(), SelectiveError> {
    aorta_base::random::fill(buf).map_err(|e| SelectiveError::Rng {
        reason: e.to_string(),
    })
}
