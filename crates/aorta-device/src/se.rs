//! The device's key store: the paper's tamper-resistant security module.
//!
//! [`SecureElement`] is what the rest of the device uses: the serial, the
//! slice length and the keyed PRF `HMAC-SHA256(K_j, msg)` from which every
//! key is derived (see `aorta_crypto::keys`). Two backends:
//! [`FileSecureElement`] (development: a 0600 file written atomically) and
//! [`crate::pkcs11::Pkcs11SecureElement`] (a PKCS#11 token; keys are
//! non-extractable).

use std::path::{Path, PathBuf};

use aorta_crypto::keys::{self, KEY_LEN, KeyError, KeyPrf, KeySlice, Prf32};
use ring::digest;
use zeroize::Zeroizing;

use crate::DeviceError;
use crate::fsutil::{io_err, write_new};

/// A device key store. Everything the device derives goes through [`KeyPrf::prf`].
pub trait SecureElement: KeyPrf + Send {
    /// Backend name, for messages.
    fn backend(&self) -> &'static str;
}

const MAGIC: &[u8; 4] = b"AOSE";
const VERSION: u8 = 1;

/// A file-backed secure element for development and tests. The file holds
/// the raw keys (mode 0600), so it offers none of a TRSM's tamper
/// resistance: use PKCS#11 on real hardware.
///
/// File layout: `"AOSE"`, version 1, serial length (u8), serial, key count
/// (u16 BE), keys (32 bytes each), SHA-256 of everything before it.
pub struct FileSecureElement {
    slice: KeySlice,
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

impl FileSecureElement {
    /// Writes `slice` to `path` (atomic write-rename, fsync, 0600). Refuses
    /// to overwrite an existing key store.
    pub fn create(path: impl AsRef<Path>, slice: KeySlice) -> Result<Self, DeviceError> {
        let path = path.as_ref();
        if path.exists() {
            return Err(DeviceError::AlreadyExists {
                path: path.to_path_buf(),
            });
        }
        let serial = slice.serial().to_owned();
        let n = slice.slice_len();
        let mut b = Zeroizing::new(Vec::with_capacity(64 + slice.material().len()));
        b.extend_from_slice(MAGIC);
        b.push(VERSION);
        b.push(serial.len() as u8);
        b.extend_from_slice(serial.as_bytes());
        b.extend_from_slice(&n.to_be_bytes());
        b.extend_from_slice(slice.material());
        let sum = digest::digest(&digest::SHA256, &b);
        b.extend_from_slice(sum.as_ref());
        write_new(path, &b)?;
        Ok(FileSecureElement {
            slice,
            path: path.to_path_buf(),
        })
    }

    /// Loads a key store, checking its layout and checksum.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DeviceError> {
        let path = path.as_ref();
        let b = Zeroizing::new(std::fs::read(path).map_err(io_err(path))?);
        let bad = |why: &'static str| DeviceError::BadKeyStore {
            path: path.to_path_buf(),
            why,
        };
        let (body, sum) = b.split_last_chunk::<32>().ok_or_else(|| bad("truncated"))?;
        let (magic, rest) = body
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("truncated"))?;
        if magic != MAGIC {
            return Err(bad("not an aorta key store"));
        }
        let (&[version, slen], rest) = rest
            .split_first_chunk::<2>()
            .ok_or_else(|| bad("truncated"))?;
        if version != VERSION {
            return Err(bad("unknown key store version; upgrade aorta"));
        }
        if !keys::ct_eq(digest::digest(&digest::SHA256, body).as_ref(), sum) {
            return Err(bad("checksum mismatch (corrupt key store)"));
        }
        let (serial, rest) = rest
            .split_at_checked(usize::from(slen))
            .ok_or_else(|| bad("truncated"))?;
        let serial = std::str::from_utf8(serial).map_err(|_| bad("serial not UTF-8"))?;
        let (n, keys) = rest
            .split_first_chunk::<2>()
            .ok_or_else(|| bad("truncated"))?;
        if keys.len() != usize::from(u16::from_be_bytes(*n)) * KEY_LEN {
            return Err(bad("key count does not match the file"));
        }
        let slice = KeySlice::new(serial, keys.to_vec()).map_err(DeviceError::Key)?;
        Ok(FileSecureElement {
            slice,
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
        for i in [0, 5, 40, good.len() - 1] {
            let mut b = good.clone();
            b[i] ^= 1;
            std::fs::write(&p, &b).unwrap();
            assert!(FileSecureElement::open(&p).is_err(), "flip at {i}");
        }
        for len in [0, 10, good.len() - 1] {
            std::fs::write(&p, &good[..len]).unwrap();
            assert!(FileSecureElement::open(&p).is_err());
        }
        // No temp files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
