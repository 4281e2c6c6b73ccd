//! The worker's side of the boundary: its key pair (the HPKE recipient of
//! key release), the frames it opens ([`WorkerFrame`], [`FrameOpener`],
//! [`FrameRefusal`]) and the name of the state-key bundle entry. The worker's
//! protocol states, the broker client and the host loop that use them are
//! the `aorta-worker` crate's (`aorta_worker::client`).
//!
//! Inside the worker, key bytes live in [`Secret32`] (zeroized on drop) and
//! opened samples in [`zeroize::Zeroizing`] buffers that are wiped as soon
//! as the frame is analysed.

use std::fmt;

use hpke::Kem as _;
use hpke::Serializable;
use hpke::kem::X25519HkdfSha256;
use zeroize::Zeroizing;

use crate::keywrap::Secret32;

/// The worker's fresh X25519 key pair (HPKE recipient). The private key is
/// zeroized on drop by `hpke`/`x25519-dalek`; `Debug` shows only the public key.
pub struct WorkerKeypair {
    sk: <X25519HkdfSha256 as hpke::Kem>::PrivateKey,
    pk: [u8; 32],
}

impl fmt::Debug for WorkerKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WorkerKeypair {{ public: {} }}",
            aorta_base::hex::encode(&self.pk)
        )
    }
}

impl WorkerKeypair {
    /// A fresh key pair from the OS CSPRNG.
    pub fn generate() -> Result<Self, aorta_base::random::RandomError> {
        let ikm = aorta_base::random::secret::<32>()?;
        Ok(Self::from_ikm(&ikm))
    }

    /// A key pair derived (HPKE `DeriveKeyPair`) from 32 bytes of input keying
    /// material — for test vectors; production uses [`WorkerKeypair::generate`].
    pub fn from_ikm(ikm: &[u8; 32]) -> Self {
        let (sk, pk) = X25519HkdfSha256::derive_keypair(ikm);
        let mut pkb = [0u8; 32];
        pkb.copy_from_slice(&pk.to_bytes());
        Self { sk, pk: pkb }
    }

    /// The public key bytes.
    pub fn public_bytes(&self) -> [u8; 32] {
        self.pk
    }

    pub(crate) fn private_key(&self) -> &<X25519HkdfSha256 as hpke::Kem>::PrivateKey {
        &self.sk
    }
}

/// The key-bundle entry under which a broker releases the worker's state key
/// (the key that seals the worker's checkpoints). `@` cannot start a serial,
/// so it cannot collide with a device's key.
pub const STATE_KEY_NAME: &str = "@state";
/// Bundle entry of the worker's result-signing key (an Ed25519 seed the
/// broker generated for this worker and certified in the bundle's
/// certificate).
pub const RESULT_SIGNING_KEY_NAME: &str = "@result-signing";

/// A frame the worker opened: plaintext samples in zeroizing memory.
pub struct WorkerFrame {
    /// The frame's codec (`aorta_crypto::codec::CODEC_*`; 0 when the format
    /// has none), authenticated with the frame.
    pub codec: u8,
    /// Device serial.
    pub serial: String,
    /// Frame sequence number.
    pub sequence: u64,
    /// Time of the first sample, µs since the Unix epoch (0 when the format
    /// carries no time).
    pub first_sample_us: i64,
    /// Sampling rate, Hz (0 when the format carries none).
    pub sample_rate_hz: f64,
    /// Number of interleaved channels (≥ 1).
    pub channels: u16,
    /// Per channel: ADC gain (units per mV) and baseline; empty when the
    /// format carries no calibration.
    pub calibration: Vec<(f64, i32)>,
    /// Samples (channel-interleaved), wiped on drop.
    pub samples: Zeroizing<Vec<i32>>,
}

impl fmt::Debug for WorkerFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WorkerFrame {{ serial: {:?}, sequence: {}, samples: <{} redacted> }}",
            self.serial,
            self.sequence,
            self.samples.len()
        )
    }
}

/// Why a frame was refused inside the worker. `reason` must never contain
/// plaintext or key bytes (it crosses to the host).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("frame refused (code {code}): {reason}")]
pub struct FrameRefusal {
    /// Stable code (2xx).
    pub code: u16,
    /// Fixed description.
    pub reason: String,
}

/// Frame code: no transport key was released for the frame's device (and,
/// for upload frames, key index); from the one registry.
pub use aorta_crypto::refusal::FRAME_NO_KEY;

/// A frame format the worker can open: tell which released key a sealed
/// frame needs (from its cleartext, authenticated header) and open it with
/// that key. [`crate::upload::UploadFrames`] implements it for aorta's
/// device upload frames (`docs/frame-format.md`); tests also implement it
/// with a small AEAD format of their own.
pub trait FrameOpener {
    /// The serial in the frame's header (not yet authenticated).
    fn serial(&self, frame: &[u8]) -> Result<String, FrameRefusal>;
    /// The name of the released transport key that opens the frame (a
    /// bundle entry name). Default: the serial, for formats with one key per
    /// device; upload frames use `SERIAL/KEY_INDEX` (a group key).
    fn key_name(&self, frame: &[u8]) -> Result<String, FrameRefusal> {
        self.serial(frame)
    }
    /// Authenticates and opens the frame with the key named by
    /// [`FrameOpener::key_name`].
    fn open(&self, frame: &[u8], transport_key: &Secret32) -> Result<WorkerFrame, FrameRefusal>;
}
