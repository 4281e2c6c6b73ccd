//! The device directory: where a provisioned device keeps its state.
//!
//! One directory per device (made by `aorta factory provision`) holds:
//!
//! | path              | what                                             |
//! |-------------------|--------------------------------------------------|
//! | `se.key`          | the file-backed secure element ([`FileSecureElement`]) |
//! | `rotation.state`  | the key-rotation state ([`Sealer`])              |
//! | `queue/`          | the offline queue of sealed frames ([`OfflineQueue`]) |
//!
//! Every user of a device directory goes through [`DeviceDir`]; nothing else
//! spells these names.

use std::path::PathBuf;

use crate::DeviceError;
use crate::queue::{OfflineQueue, QueueLimits};
use crate::rotation::Sealer;
use crate::se::{FileSecureElement, SecureElement};

/// The key store file inside a device directory.
pub const SE_FILE: &str = "se.key";
/// The rotation state file inside a device directory.
pub const STATE_FILE: &str = "rotation.state";
/// The offline queue directory inside a device directory.
pub const QUEUE_DIR: &str = "queue";

/// A device directory (see the module doc for its layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceDir {
    root: PathBuf,
}

impl DeviceDir {
    /// The device directory at `root` (nothing is read or created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DeviceDir { root: root.into() }
    }

    /// The key store file.
    pub fn se(&self) -> PathBuf {
        self.root.join(SE_FILE)
    }

    /// The rotation state file.
    pub fn state(&self) -> PathBuf {
        self.root.join(STATE_FILE)
    }

    /// The offline queue directory.
    pub fn queue(&self) -> PathBuf {
        self.root.join(QUEUE_DIR)
    }

    /// Opens the key store.
    pub fn open_se(&self) -> Result<FileSecureElement, DeviceError> {
        FileSecureElement::open(self.se())
    }

    /// Opens the key store and the rotation state: the device's sealer.
    pub fn open_sealer(&self) -> Result<Sealer<FileSecureElement>, DeviceError> {
        Sealer::new(self.open_se()?, self.state())
    }

    /// Opens (creating if needed) the device's offline queue.
    pub fn open_queue(&self, limits: QueueLimits) -> Result<OfflineQueue, DeviceError> {
        OfflineQueue::open(self.queue(), limits)
    }

    /// Refuses if the directory already holds a key store (checked before
    /// the registry gives out a slice, so a refusal wastes none).
    pub fn ensure_no_key_store(&self) -> Result<(), DeviceError> {
        let se = self.se();
        if se.exists() {
            return Err(DeviceError::AlreadyExists { path: se });
        }
        Ok(())
    }

    /// Provisioning's device step: creates the directory and writes `keys`
    /// into a new key store (refusing to overwrite one), then reads them back
    /// as the assembled device would and returns the commitment the registry
    /// verifies (`aorta_crypto::keys::commitment`).
    pub fn install_keys(
        &self,
        keys: aorta_crypto::keys::KeySlice,
    ) -> Result<Installed, DeviceError> {
        self.ensure_no_key_store()?;
        std::fs::create_dir_all(&self.root).map_err(|error| DeviceError::Io {
            path: self.root.clone(),
            error,
        })?;
        FileSecureElement::create(self.se(), keys)?;
        let se = self.open_se()?;
        Ok(Installed {
            commitment: aorta_crypto::keys::commitment(&se)?,
            signing_public_key: se.signing_public_key()?,
        })
    }
}

/// What the assembled device reports to the registry: its key commitment
/// (key verification) and its signing identity (registered in the public
/// device directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Installed {
    /// `aorta_crypto::keys::commitment` over the installed slice.
    pub commitment: [u8; 32],
    /// The Ed25519 public key its secure element generated.
    pub signing_public_key: [u8; 32],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let d = DeviceDir::new("/dev0");
        assert_eq!(d.se(), std::path::Path::new("/dev0/se.key"));
        assert_eq!(d.state(), std::path::Path::new("/dev0/rotation.state"));
        assert_eq!(d.queue(), std::path::Path::new("/dev0/queue"));
    }
}
