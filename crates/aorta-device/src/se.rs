//! The device's key store: the paper's tamper-resistant security module.
//!
//! [`SecureElement`] is what the rest of the device uses: the serial, the
//! slice length, the keyed PRF `HMAC-SHA256(K_j, msg)` from which every
//! key is derived (see `aorta_crypto::keys`), and the device's signing
//! identity: an Ed25519 key pair (RFC 8032) created at provisioning inside
//! the secure element, used through [`SecureElement::sign`] and
//! [`SecureElement::signing_public_key`]. Two backends:
//! [`FileSecureElement`] (development: a 0600 file written atomically,
//! format `AOSE` version 2) and [`crate::pkcs11::Pkcs11SecureElement`] (a
//! PKCS#11 token; keys are sensitive, non-extractable, non-modifiable and
//! pinned to one mechanism each, and opening checks that they still are).

use std::path::{Path, PathBuf};

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
use aorta_crypto::keys::{self, KEY_LEN, KeyError, KeyPrf, KeySlice, Prf32};
use ed25519_dalek::{Signer, SigningKey};
use ring::digest;
use zeroize::Zeroizing;

use crate::DeviceError;
use crate::fsutil::{io_err, write_new};

/// A device key store. Everything the device derives goes through [`KeyPrf::prf`].
pub trait SecureElement: KeyPrf + Send {
    /// Backend name, for messages.
    fn backend(&self) -> &'static str;
    /// The device's signing identity: its Ed25519 public key (RFC 8032),
    /// created at provisioning inside the secure element.
    fn signing_public_key(&self) -> Result<[u8; 32], DeviceError>;
    /// Signs `msg` with the device's Ed25519 key (pure Ed25519, RFC 8032).
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], DeviceError>;
}

const MAGIC: &[u8; 4] = b"AOSE";
const VERSION: u8 = 2;
/// Length of the Ed25519 seed (RFC 8032 private key).
const SEED_LEN: usize = 32;

/// A file-backed secure element for development and tests. The file holds
/// the raw keys and the signing seed (mode 0600), so it offers none of a
/// TRSM's tamper resistance: use PKCS#11 on real hardware.
///
/// File layout (version 2): `"AOSE"`, version 2 (u8), serial length (u8),
/// serial, key count (u16 BE), keys (32 bytes each), the Ed25519 signing
/// seed (32 bytes, RFC 8032 private key), SHA-256 of everything before it.
/// Version 1 (no seed) is refused with [`DeviceError::OldKeyStore`]:
/// re-provision the device.
pub struct FileSecureElement {
    slice: KeySlice,
    /// Zeroized on drop (`ed25519-dalek`'s `zeroize` feature).
    signing: SigningKey,
    path: PathBuf,
}

impl std::fmt::Debug for FileSecureElement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSecureElement")
            .field("serial", &self.slice.serial())
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The key store file's layout (see [`FileSecureElement`]); decoding checks
/// the magic, the version, the key count against the length and the
/// checksum.
pub(crate) struct KeyStoreFile<'a> {
    serial: &'a str,
    keys: &'a [u8],
    /// The Ed25519 seed, [`SEED_LEN`] bytes.
    seed: &'a [u8],
}

impl KeyStoreFile<'_> {
    /// Everything the checksum covers.
    fn body(&self) -> Zeroizing<Vec<u8>> {
        let mut b = Zeroizing::new(Vec::with_capacity(
            8 + self.serial.len() + self.keys.len() + self.seed.len(),
        ));
        b.extend_from_slice(MAGIC);
        b.push(VERSION);
        // A KeySlice's serial is at most 64 bytes and its key count a u16
        // (aorta_crypto::keys::check_serial, KeySlice::new).
        let _ = aorta_base::codec::put_bytes_u8(&mut b, "serial", self.serial.as_bytes());
        b.extend_from_slice(&((self.keys.len() / KEY_LEN) as u16).to_be_bytes());
        b.extend_from_slice(self.keys);
        b.extend_from_slice(self.seed);
        b
    }
}

impl Encode for KeyStoreFile<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        let body = self.body();
        out.extend_from_slice(&body);
        out.extend_from_slice(digest::digest(&digest::SHA256, &body).as_ref());
    }
}

impl<'a> Decode<'a> for KeyStoreFile<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        if r.array::<4>("magic")? != *MAGIC {
            return Err(r.invalid("magic", 4, "not an aorta key store"));
        }
        match r.u8("version")? {
            VERSION => {}
            1 => {
                return Err(r.invalid(
                    "version",
                    1,
                    "key store version 1 has no signing key; re-provision the device",
                ));
            }
            _ => return Err(r.invalid("version", 1, "unknown key store version; upgrade aorta")),
        }
        let serial = std::str::from_utf8(r.bytes_u8("serial")?)
            .map_err(|_| r.invalid("serial", 0, "serial not UTF-8"))?;
        let n = usize::from(r.u16("key count")?);
        let keys = r.take(n * KEY_LEN, "keys")?;
        let seed = r.take(SEED_LEN, "signing seed")?;
        let file = KeyStoreFile { serial, keys, seed };
        let sum = r.array::<32>("checksum")?;
        if !keys::ct_eq(digest::digest(&digest::SHA256, &file.body()).as_ref(), &sum) {
            return Err(r.invalid("checksum", 32, "checksum mismatch (corrupt key store)"));
        }
        Ok(file)
    }
}

/// The `why` of a layout error in a device file.
pub(crate) fn why(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::Short { .. } => "truncated",
        DecodeError::Trailing { .. } => "trailing bytes after the end",
        DecodeError::Invalid { reason, .. } => reason,
        _ => "malformed",
    }
}

impl FileSecureElement {
    /// Writes `slice` and a fresh Ed25519 signing key (seed from the OS
    /// CSPRNG) to `path` (atomic write-rename, fsync, 0600). Refuses to
    /// overwrite an existing key store.
    pub fn create(path: impl AsRef<Path>, slice: KeySlice) -> Result<Self, DeviceError> {
        let path = path.as_ref();
        if path.exists() {
            return Err(DeviceError::AlreadyExists {
                path: path.to_path_buf(),
            });
        }
        let seed = aorta_base::random::secret::<SEED_LEN>().map_err(|_| DeviceError::Rng)?;
        let signing = SigningKey::from_bytes(&seed);
        let file = KeyStoreFile {
            serial: slice.serial(),
            keys: slice.material(),
            seed: seed.as_slice(),
        };
        let b = Zeroizing::new(file.to_bytes());
        write_new(path, &b)?;
        Ok(FileSecureElement {
            slice,
            signing,
            path: path.to_path_buf(),
        })
    }

    /// Loads a key store, checking its layout and checksum. A version 1
    /// store (no signing key) is [`DeviceError::OldKeyStore`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DeviceError> {
        let path = path.as_ref();
        let b = Zeroizing::new(std::fs::read(path).map_err(io_err(path))?);
        let bad = |why: &'static str| DeviceError::BadKeyStore {
            path: path.to_path_buf(),
            why,
        };
        if let Some([m0, m1, m2, m3, version @ 1]) = b.get(..5)
            && [*m0, *m1, *m2, *m3] == *MAGIC
        {
            return Err(DeviceError::OldKeyStore {
                path: path.to_path_buf(),
                version: *version,
            });
        }
        let file = KeyStoreFile::from_bytes(&b).map_err(|e| bad(why(&e)))?;
        let seed =
            Zeroizing::new(<[u8; SEED_LEN]>::try_from(file.seed).map_err(|_| bad("truncated"))?);
        let signing = SigningKey::from_bytes(&seed);
        let slice = KeySlice::new(file.serial, file.keys.to_vec()).map_err(DeviceError::Key)?;
        Ok(FileSecureElement {
            slice,
            signing,
            path: path.to_path_buf(),
        })
    }

    /// Where the key store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl KeyPrf for FileSecureElement {
    fn serial(&self) -> &str {
        self.slice.serial()
    }
    fn slice_len(&self) -> u16 {
        self.slice.slice_len()
    }
    fn prf(&self, index: u16, msg: &[u8]) -> Result<Prf32, KeyError> {
        self.slice.prf(index, msg)
    }
}

impl SecureElement for FileSecureElement {
    fn backend(&self) -> &'static str {
        "file"
    }
    fn signing_public_key(&self) -> Result<[u8; 32], DeviceError> {
        Ok(self.signing.verifying_key().to_bytes())
    }
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], DeviceError> {
        Ok(self.signing.sign(msg).to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_se_round_trips_with_0600_and_refuses_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("se.key");
        let mat: Vec<u8> = (0..120 * 32).map(|i| (i * 7) as u8).collect();
        let s = FileSecureElement::create(&p, KeySlice::new("SN-F", mat.clone()).unwrap()).unwrap();
        let c = keys::commitment(&s).unwrap();
        let s2 = FileSecureElement::open(&p).unwrap();
        assert_eq!(keys::commitment(&s2).unwrap(), c);
        assert_eq!(s2.serial(), "SN-F");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        assert!(matches!(
            FileSecureElement::create(&p, KeySlice::new("SN-F", mat).unwrap()),
            Err(DeviceError::AlreadyExists { .. })
        ));
        assert!(!format!("{s2:?}").contains("7, 14"));
        let good = std::fs::read(&p).unwrap();
        // Every bit of every byte (header, keys, signing seed, checksum).
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut b = good.clone();
                b[i] ^= 1 << bit;
                std::fs::write(&p, &b).unwrap();
                assert!(FileSecureElement::open(&p).is_err(), "flip at {i}.{bit}");
            }
        }
        for len in [0, 10, good.len() - 1] {
            std::fs::write(&p, &good[..len]).unwrap();
            assert!(FileSecureElement::open(&p).is_err());
        }
        // No temp files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn file_se_signs_with_a_key_that_survives_reopening() {
        use ed25519_dalek::{Signature, VerifyingKey};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("se.key");
        let s =
            FileSecureElement::create(&p, KeySlice::new("SN-S", vec![9; 8 * 32]).unwrap()).unwrap();
        let pk = s.signing_public_key().unwrap();
        let sig = s.sign(b"hello").unwrap();
        let vk = VerifyingKey::from_bytes(&pk).unwrap();
        vk.verify_strict(b"hello", &Signature::from_bytes(&sig))
            .unwrap();
        assert!(
            vk.verify_strict(b"hellO", &Signature::from_bytes(&sig))
                .is_err()
        );
        // The seed is in the file: reopening gives the same identity, and
        // Ed25519 is deterministic, so the same signature.
        let s2 = FileSecureElement::open(&p).unwrap();
        assert_eq!(s2.signing_public_key().unwrap(), pk);
        assert_eq!(s2.sign(b"hello").unwrap(), sig);
        // Two devices get two identities.
        let q = dir.path().join("se2.key");
        let t =
            FileSecureElement::create(&q, KeySlice::new("SN-S", vec![9; 8 * 32]).unwrap()).unwrap();
        assert_ne!(t.signing_public_key().unwrap(), pk);
        // The seed never shows in Debug.
        let seed = s2.signing.to_bytes();
        assert!(!format!("{s2:?}").contains(&format!("{:?}", &seed[..4])));
    }

    #[test]
    fn a_version_1_key_store_is_refused_with_re_provision_advice() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("se.key");
        // A well-formed version 1 file: no signing seed, valid checksum.
        let mut b = b"AOSE\x01".to_vec();
        b.push(4);
        b.extend_from_slice(b"SN-1");
        b.extend_from_slice(&8u16.to_be_bytes());
        b.extend_from_slice(&[3; 8 * 32]);
        let sum = digest::digest(&digest::SHA256, &b);
        b.extend_from_slice(sum.as_ref());
        std::fs::write(&p, &b).unwrap();
        let e = FileSecureElement::open(&p).unwrap_err();
        assert!(
            matches!(&e, DeviceError::OldKeyStore { version: 1, .. }),
            "{e:?}"
        );
        assert!(e.to_string().contains("re-provision"), "{e}");
        // The decoder alone (the fuzz entry point) refuses it too.
        assert!(KeyStoreFile::from_bytes(&b).is_err());
    }
}
