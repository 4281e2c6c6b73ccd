//! The device's key store: the paper's tamper-resistant security module.
//!
//! [`SecureElement`] is what the rest of the device uses: the serial, the
//! slice length and the keyed PRF `HMAC-SHA256(K_j, msg)` from which every
//! key is derived (see `aorta_crypto::keys`). Two backends:
//! [`FileSecureElement`] (development: a 0600 file written atomically) and
//! [`crate::pkcs11::Pkcs11SecureElement`] (a PKCS#11 token; keys are
//! non-extractable).

use std::path::{Path, PathBuf};

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
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

/// The key store file's layout (see [`FileSecureElement`]); decoding checks
/// the magic, the version, the key count against the length and the
/// checksum.
pub(crate) struct KeyStoreFile<'a> {
    serial: &'a str,
    keys: &'a [u8],
}

impl KeyStoreFile<'_> {
    /// Everything the checksum covers.
    fn body(&self) -> Zeroizing<Vec<u8>> {
        let mut b = Zeroizing::new(Vec::with_capacity(8 + self.serial.len() + self.keys.len()));
        b.extend_from_slice(MAGIC);
        b.push(VERSION);
        // A KeySlice's serial is at most 64 bytes and its key count a u16
        // (aorta_crypto::keys::check_serial, KeySlice::new).
        let _ = aorta_base::codec::put_bytes_u8(&mut b, "serial", self.serial.as_bytes());
        b.extend_from_slice(&((self.keys.len() / KEY_LEN) as u16).to_be_bytes());
        b.extend_from_slice(self.keys);
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
        if r.u8("version")? != VERSION {
            return Err(r.invalid("version", 1, "unknown key store version; upgrade aorta"));
        }
        let serial = std::str::from_utf8(r.bytes_u8("serial")?)
            .map_err(|_| r.invalid("serial", 0, "serial not UTF-8"))?;
        let n = usize::from(r.u16("key count")?);
        let keys = r.take(n * KEY_LEN, "keys")?;
        let file = KeyStoreFile { serial, keys };
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
    /// Writes `slice` to `path` (atomic write-rename, fsync, 0600). Refuses
    /// to overwrite an existing key store.
    pub fn create(path: impl AsRef<Path>, slice: KeySlice) -> Result<Self, DeviceError> {
        let path = path.as_ref();
        if path.exists() {
            return Err(DeviceError::AlreadyExists {
                path: path.to_path_buf(),
            });
        }
        let file = KeyStoreFile {
            serial: slice.serial(),
            keys: slice.material(),
        };
        let b = Zeroizing::new(file.to_bytes());
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
        let file = KeyStoreFile::from_bytes(&b).map_err(|e| bad(why(&e)))?;
        let slice = KeySlice::new(file.serial, file.keys.to_vec()).map_err(DeviceError::Key)?;
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
