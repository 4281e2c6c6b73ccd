//! # aorta-crypto — cryptographic building blocks
//!
//! This crate owns the primitives the other aorta crates compose: frame AEAD
//! and key schedules for device uploads, selective encryption with
//! fragmentation for the health-record vault (dispersal is `aorta-vault`'s),
//! results sealed to clinicians, and the one refusal-code registry. It performs **no I/O**: no files, no network,
//! no clocks (callers pass times in). It never implements a cipher, hash or
//! KDF itself; it composes audited crates. Secrets are zeroized on drop and
//! have no byte-printing `Debug`.
#![deny(missing_docs)]
//!
//! Device-key modules (issue 3): [`keys`] (the paper's multi-key-per-machine
//! schedule: transport keys, commitments, renegotiation PSK), [`codec`] (the
//! lossless ECG codec), [`frame`] (compress-then-encrypt upload frames) and
//! [`reneg`] (authenticated renegotiation of `max_key_uses`). Health-record
//! module (issue 4): [`selective`] (the paper's selective encryption with
//! fragmentation, faithful and strong modes). Streaming module (issue 6):
//! [`results`] (analysis results sealed to clinicians' X25519 keys with HPKE
//! session envelopes + AES-256-GCM, and worker checkpoint state sealing).
//! Worker protocol: [`refusal`], the one registry of refusal codes.
//!
//! Every byte format here decodes with `aorta_base::codec`'s bounds-checked
//! reader (`Encode`/`Decode`); the hidden `fuzzing` module has one entry
//! point per format.

pub mod codec;
pub mod frame;
pub mod keys;
pub mod refusal;
pub mod reneg;
pub mod results;
pub mod selective;

/// Fuzz entry points, one per byte format this crate decodes: each decodes
/// arbitrary bytes and, when they decode, checks that re-encoding gives them
/// back exactly. None panics on any input except on a broken round trip
/// (the bug a fuzzer looks for). Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use aorta_base::codec::fuzz_exact;

    /// An upload frame's layout (`AOFR`, not opened).
    pub fn frame(data: &[u8]) -> bool {
        fuzz_exact::<crate::frame::ParsedFrame<'_>>(data)
    }

    /// One frame calibration entry (inside an opened frame's payload).
    pub fn calibration(data: &[u8]) -> bool {
        fuzz_exact::<crate::frame::ChannelCalibration>(data)
    }

    /// A renegotiation offer (message 1, not authenticated).
    pub fn reneg_offer(data: &[u8]) -> bool {
        fuzz_exact::<crate::reneg::Offer>(data)
    }

    /// A renegotiation reply (message 2, not authenticated).
    pub fn reneg_reply(data: &[u8]) -> bool {
        fuzz_exact::<crate::reneg::Reply>(data)
    }

    /// A vault public fragment (`.aosp`, checksum checked).
    pub fn vault_public(data: &[u8]) -> bool {
        fuzz_exact::<crate::selective::container::PublicFragment<'_>>(data)
    }

    /// A vault private fragment's header and sealed payload (`.aosr`, not
    /// opened).
    pub fn vault_private(data: &[u8]) -> bool {
        fuzz_exact::<crate::selective::container::PrivateFragment<'_>>(data)
    }

    /// Vault recovery material (`.aosm`).
    pub fn vault_material(data: &[u8]) -> bool {
        fuzz_exact::<crate::selective::container::RecoveryMaterial>(data)
    }

    /// A session envelope's layout (`AORS`, not opened).
    pub fn session_envelope(data: &[u8]) -> bool {
        fuzz_exact::<crate::results::SessionEnvelope<'_>>(data)
    }

    /// A sealed result's layout (`AORR`, not opened).
    pub fn sealed_result(data: &[u8]) -> bool {
        fuzz_exact::<crate::results::SealedResult<'_>>(data)
    }

    /// Sealed state's layout (`AOST`, not opened).
    pub fn sealed_state(data: &[u8]) -> bool {
        fuzz_exact::<crate::results::SealedState<'_>>(data)
    }

    /// A result session checkpoint (the plaintext kept in sealed state).
    pub fn session_checkpoint(data: &[u8]) -> bool {
        fuzz_exact::<crate::results::SessionCheckpoint<'_>>(data)
    }
}
