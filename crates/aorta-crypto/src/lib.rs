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

pub mod auth;
pub mod codec;
pub mod directory;
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
    aorta_base::fuzz_entry_points! {
        /// An upload frame's layout (`AOFR`, not opened).
        frame: crate::frame::ParsedFrame<'_>;

        /// One frame calibration entry (inside an opened frame's payload).
        calibration: crate::frame::ChannelCalibration;

        /// A renegotiation offer (message 1, not authenticated).
        reneg_offer: crate::reneg::Offer;

        /// A renegotiation reply (message 2, not authenticated).
        reneg_reply: crate::reneg::Reply;

        /// A vault public fragment (`.aosp`, checksum checked).
        vault_public: crate::selective::container::PublicFragment<'_>;

        /// A vault private fragment's header and sealed payload (`.aosr`, not
        /// opened).
        vault_private: crate::selective::container::PrivateFragment<'_>;

        /// Vault recovery material (`.aosm`).
        vault_material: crate::selective::container::RecoveryMaterial;

        /// A session envelope's layout (`AORS`, not opened).
        session_envelope: crate::results::SessionEnvelope<'_>;

        /// A sealed result's layout (`AORR`, not opened).
        sealed_result: crate::results::SealedResult<'_>;

        /// Sealed state's layout (`AOST`, not opened).
        sealed_state: crate::results::SealedState<'_>;

        /// A worker certificate (`AOWC`, signature not checked).
        worker_cert: crate::auth::WorkerCert;

        /// A signed result record (`AOSG`, signature not checked).
        signed_result: crate::auth::SignedResult<'_>;

        /// A result session checkpoint (the plaintext kept in sealed state).
        session_checkpoint: crate::results::SessionCheckpoint<'_>;
    }

    /// A frame's first bytes ([`crate::frame::parse_prefix`], what the
    /// server checks before reading a body): never panics, and agrees with
    /// [`crate::frame::parse`] on every frame that parses — same header,
    /// whole length — and on every prefix of it (no answer before the
    /// header is complete, the same answer after).
    #[allow(
        clippy::panic,
        reason = "a fuzz oracle reports a disagreement by panicking"
    )]
    pub fn frame_prefix(data: &[u8]) -> bool {
        let got = crate::frame::parse_prefix(data);
        let Ok(f) = crate::frame::parse(data) else {
            return false;
        };
        let header_len = f.header.encode_with_len(0).len();
        match got {
            Ok(Some(p)) if p.header == f.header && p.len == data.len() => {}
            other => panic!("parse_prefix disagrees with parse: {other:?}"),
        }
        for cut in [header_len.saturating_sub(1), header_len] {
            let want_some = cut == header_len;
            let p = crate::frame::parse_prefix(data.get(..cut).unwrap_or_default());
            if !matches!(p, Ok(ref o) if o.is_some() == want_some) {
                panic!("parse_prefix of {cut} bytes: {p:?}");
            }
        }
        true
    }

    /// The device directory text: parses, and when it does, its text form
    /// parses back to the same directory.
    #[allow(
        clippy::panic,
        reason = "a fuzz oracle reports a broken round trip by panicking"
    )]
    pub fn directory(data: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(data) else {
            return false;
        };
        let Ok(d) = crate::directory::Directory::parse(text) else {
            return false;
        };
        if crate::directory::Directory::parse(&d.to_text()).as_ref() != Ok(&d) {
            panic!("directory text does not round-trip");
        }
        true
    }
}
