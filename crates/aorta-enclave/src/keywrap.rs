//! Key release: the key bundle a broker sends an attested worker, sealed
//! with HPKE (RFC 9180, base mode) to the worker's attested X25519 key.
//!
//! Suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305.
//! `info = "aorta key release v1"`, associated data = the 64-byte report
//! data of the evidence, so a sealed bundle only opens for the attestation it
//! answers. Wire form: `enc [32] ‖ ciphertext`.
//!
//! Plaintext bundle (big-endian; `docs/worker-protocol.md`):
//! `version u8 | assignment (u16 len, UTF-8) | n u16 | n × (name (u16 len, UTF-8) | key [32])
//!  | m u16 | m × (subscriber (u16 len, UTF-8) | key [32]) | c u16 | certificate [c]`,
//! and in version 3 (a bundle that releases key windows) also
//! `| s u16 | s × (serial (u16 len, UTF-8) | slice_len u16)`: the length of
//! each windowed device's key slice, which its released entries no longer
//! show. A bundle without windows is still written as version 2.

use std::fmt;

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::evidence::EvidenceClaims;
use crate::verify::AttestedWorker;
use crate::worker::WorkerKeypair;
use aorta_base::codec::{Decode, DecodeError, Encode, Reader};

/// HPKE `info` string for key release.
pub const KEY_RELEASE_INFO: &[u8] = b"aorta key release v1";
/// Bundle plaintext version of a bundle without key windows.
pub const BUNDLE_VERSION: u8 = 2;
/// Bundle plaintext version of a bundle that releases key windows (it
/// carries each windowed device's slice length, [`KeyBundle::slices`]).
pub const BUNDLE_VERSION_WINDOWED: u8 = 3;
/// Most keys of each kind in one bundle.
pub const MAX_KEYS_PER_KIND: usize = 65_535;
/// Longest identifier (serial, subscriber, assignment) in bytes: the results
/// format's limit, so that every subscriber a bundle names can be sealed to.
pub use aorta_crypto::results::MAX_ID_LEN;

/// A 32-byte secret key, zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Secret32([u8; 32]);

impl Secret32 {
    /// Wraps key bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }
    /// The key bytes (for handing to a cipher; never log them).
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret32(<redacted>)")
    }
}

/// The keys an assignment needs, as released to one worker.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct KeyBundle {
    /// The assignment name.
    pub assignment: String,
    /// Per-device transport keys, by device serial.
    pub transport_keys: Vec<(String, Secret32)>,
    /// Subscribers' result keys, by subscriber id.
    pub result_keys: Vec<(String, Secret32)>,
    /// The broker's certificate of the worker's result-signing key
    /// (`aorta_crypto::auth::WorkerCert`, whose seed is the entry
    /// [`crate::worker::RESULT_SIGNING_KEY_NAME`]); empty when the broker
    /// certifies none.
    pub certificate: Vec<u8>,
    /// Devices whose group keys are released as a window of key indices
    /// (not the whole slice), with the length of their key slice: the
    /// worker needs it to check a frame's key index, and the released
    /// entries no longer show it. Empty: every device's entries are its
    /// whole slice (a version-2 bundle).
    pub slices: Vec<(String, u16)>,
}

/// Why key wrapping or unwrapping failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyWrapError {
    /// The attested public key is not a valid X25519 key.
    #[error("the attested worker key is not a valid X25519 public key")]
    BadWorkerKey,
    /// The sealed bundle is too short to hold the encapsulated key.
    #[error("sealed bundle is {len} bytes, too short")]
    Truncated {
        /// Its length.
        len: usize,
    },
    /// HPKE refused (wrong key, wrong attestation, tampered ciphertext).
    #[error("sealed bundle does not open with this worker key and attestation")]
    OpenFailed,
    /// HPKE sealing failed.
    #[error("HPKE seal failed")]
    SealFailed,
    /// The plaintext bundle is malformed.
    #[error("malformed key bundle: {detail} (offset {offset})")]
    Malformed {
        /// What is wrong.
        detail: &'static str,
        /// Byte offset.
        offset: usize,
    },
    /// The bundle version is unknown.
    #[error(
        "unknown key bundle version {version} (this build reads {BUNDLE_VERSION} and {BUNDLE_VERSION_WINDOWED}); upgrade the worker"
    )]
    UnknownVersion {
        /// The version found.
        version: u8,
    },
    /// Too many keys or too long an identifier to encode.
    #[error("key bundle too large: {detail}")]
    TooLarge {
        /// What.
        detail: &'static str,
    },
}

impl KeyBundle {
    /// An empty bundle for `assignment`.
    pub fn new(assignment: &str) -> Self {
        Self {
            assignment: assignment.to_owned(),
            ..Self::default()
        }
    }

    /// Encodes the plaintext bundle (into zeroizing memory).
    pub fn encode(&self) -> Result<Zeroizing<Vec<u8>>, KeyWrapError> {
        fn id(out: &mut Vec<u8>, s: &str) -> Result<(), KeyWrapError> {
            if s.len() > MAX_ID_LEN {
                return Err(KeyWrapError::TooLarge {
                    detail: "identifier longer than 255 bytes",
                });
            }
            out.extend_from_slice(&(s.len() as u16).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
            Ok(())
        }
        let mut out = Zeroizing::new(Vec::with_capacity(
            64 + (self.transport_keys.len() + self.result_keys.len()) * 64,
        ));
        out.push(if self.slices.is_empty() {
            BUNDLE_VERSION
        } else {
            BUNDLE_VERSION_WINDOWED
        });
        id(&mut out, &self.assignment)?;
        for list in [&self.transport_keys, &self.result_keys] {
            let n = u16::try_from(list.len()).map_err(|_| KeyWrapError::TooLarge {
                detail: "more than 65535 keys of one kind",
            })?;
            out.extend_from_slice(&n.to_be_bytes());
            for (name, key) in list {
                id(&mut out, name)?;
                out.extend_from_slice(key.expose());
            }
        }
        let n = u16::try_from(self.certificate.len()).map_err(|_| KeyWrapError::TooLarge {
            detail: "certificate longer than 65535 bytes",
        })?;
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&self.certificate);
        if !self.slices.is_empty() {
            let n = u16::try_from(self.slices.len()).map_err(|_| KeyWrapError::TooLarge {
                detail: "more than 65535 windowed devices",
            })?;
            out.extend_from_slice(&n.to_be_bytes());
            for (serial, len) in &self.slices {
                id(&mut out, serial)?;
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        Ok(out)
    }

    /// Decodes a plaintext bundle.
    pub fn decode(buf: &[u8]) -> Result<Self, KeyWrapError> {
        let mut r = Reader::new(buf);
        let bad = |detail, r: &Reader<'_>| KeyWrapError::Malformed {
            detail,
            offset: r.position(),
        };
        let version = r.u8("version").map_err(|_| bad("empty", &r))?;
        if version != BUNDLE_VERSION && version != BUNDLE_VERSION_WINDOWED {
            return Err(KeyWrapError::UnknownVersion { version });
        }
        /// `Err(None)`: truncated; `Err(Some(()))`: too long or not UTF-8.
        fn id(r: &mut Reader<'_>) -> Result<String, Option<()>> {
            let n = usize::from(r.u16("id length").map_err(|_| None)?);
            if n > MAX_ID_LEN {
                return Err(Some(()));
            }
            let b = r.take(n, "id").map_err(|_| None)?;
            String::from_utf8(b.to_vec()).map_err(|_| Some(()))
        }
        let assignment = match id(&mut r) {
            Err(None) => return Err(bad("truncated assignment", &r)),
            Err(Some(())) => return Err(bad("bad assignment name", &r)),
            Ok(s) => s,
        };
        let mut lists: [Vec<(String, Secret32)>; 2] = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let n = r
                .u16("key count")
                .map_err(|_| bad("truncated key count", &r))?;
            for _ in 0..n {
                let name = match id(&mut r) {
                    Err(None) => return Err(bad("truncated identifier", &r)),
                    Err(Some(())) => return Err(bad("bad identifier", &r)),
                    Ok(s) => s,
                };
                let key = r.array::<32>("key").map_err(|_| bad("truncated key", &r))?;
                list.push((name, Secret32(key)));
            }
        }
        let n = r
            .u16("certificate length")
            .map_err(|_| bad("truncated certificate length", &r))?;
        let certificate = r
            .take(usize::from(n), "certificate")
            .map_err(|_| bad("truncated certificate", &r))?
            .to_vec();
        let mut slices = Vec::new();
        if version == BUNDLE_VERSION_WINDOWED {
            let n = r
                .u16("windowed device count")
                .map_err(|_| bad("truncated windowed device count", &r))?;
            if n == 0 {
                return Err(bad("a version-3 bundle without windowed devices", &r));
            }
            for _ in 0..n {
                let serial = match id(&mut r) {
                    Err(None) => return Err(bad("truncated identifier", &r)),
                    Err(Some(())) => return Err(bad("bad identifier", &r)),
                    Ok(s) => s,
                };
                let len = r
                    .u16("slice length")
                    .map_err(|_| bad("truncated slice length", &r))?;
                slices.push((serial, len));
            }
        }
        if r.remaining() != 0 {
            return Err(bad("trailing bytes", &r));
        }
        let [transport_keys, result_keys] = lists;
        Ok(Self {
            assignment,
            transport_keys,
            result_keys,
            certificate,
            slices,
        })
    }

    /// The transport key of device `serial`, if released.
    pub fn transport_key(&self, serial: &str) -> Option<&Secret32> {
        self.transport_keys
            .iter()
            .find(|(s, _)| s == serial)
            .map(|(_, k)| k)
    }

    /// The result key of `subscriber`, if released.
    pub fn result_key(&self, subscriber: &str) -> Option<&Secret32> {
        self.result_keys
            .iter()
            .find(|(s, _)| s == subscriber)
            .map(|(_, k)| k)
    }
}

/// The plaintext bundle. A bundle over the format's limits encodes as
/// nothing: [`KeyBundle::encode`] refuses it with a typed error, and every
/// decoded bundle fits.
impl Encode for KeyBundle {
    fn encode(&self, out: &mut Vec<u8>) {
        if let Ok(b) = KeyBundle::encode(self) {
            out.extend_from_slice(&b);
        }
    }
}

/// All the remaining bytes as one bundle; its [`KeyWrapError`] becomes
/// [`DecodeError::Invalid`] (use [`KeyBundle::decode`] for the typed error).
impl<'a> Decode<'a> for KeyBundle {
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let at = r.position();
        KeyBundle::decode(r.rest()).map_err(|e| DecodeError::Invalid {
            field: "key bundle",
            offset: match &e {
                KeyWrapError::Malformed { offset, .. } => at.saturating_add(*offset),
                _ => at,
            },
            reason: match e {
                KeyWrapError::Malformed { detail, .. } => detail,
                KeyWrapError::UnknownVersion { .. } => "unknown version",
                _ => "invalid",
            },
        })
    }
}

/// Seals `bundle` to the attested worker. Only an [`AttestedWorker`] — which
/// only [`crate::verify::verify`] creates — can be a recipient.
pub fn seal_bundle(worker: &AttestedWorker, bundle: &KeyBundle) -> Result<Vec<u8>, KeyWrapError> {
    let _proof = worker.proof();
    let pk = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(worker.public_key())
        .map_err(|_| KeyWrapError::BadWorkerKey)?;
    let pt = bundle.encode()?;
    let (enc, ct) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
        &OpModeS::Base,
        &pk,
        KEY_RELEASE_INFO,
        &pt,
        worker.report_data(),
    )
    .map_err(|_| KeyWrapError::SealFailed)?;
    let mut out = enc.to_bytes().to_vec();
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens a sealed bundle inside the worker, with the worker's private key and
/// the claims of the evidence it sent.
pub fn open_bundle(
    keypair: &WorkerKeypair,
    claims: &EvidenceClaims,
    sealed: &[u8],
) -> Result<KeyBundle, KeyWrapError> {
    let (enc, ct) = sealed
        .split_at_checked(32)
        .ok_or(KeyWrapError::Truncated { len: sealed.len() })?;
    let enc = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(enc)
        .map_err(|_| KeyWrapError::OpenFailed)?;
    let pt = Zeroizing::new(
        hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            keypair.private_key(),
            &enc,
            KEY_RELEASE_INFO,
            ct,
            &claims.report_data(),
        )
        .map_err(|_| KeyWrapError::OpenFailed)?,
    );
    KeyBundle::decode(&pt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bundle() -> KeyBundle {
        let mut b = KeyBundle::new("ward-a");
        b.transport_keys
            .push(("ECG-1".into(), Secret32::from_bytes([1; 32])));
        b.transport_keys
            .push(("ECG-2".into(), Secret32::from_bytes([2; 32])));
        b.result_keys
            .push(("dr-who".into(), Secret32::from_bytes([3; 32])));
        b
    }

    /// The broker must never release a subscriber the worker cannot seal
    /// results to: every identifier a bundle carries fits the results
    /// format, and one byte more is refused on both sides.
    #[test]
    fn every_subscriber_a_bundle_names_can_be_sealed_to() {
        use aorta_crypto::results::{ClinicianIdentity, ResultSession};
        let pk = ClinicianIdentity::generate().unwrap().public();
        let longest = "s".repeat(MAX_ID_LEN);
        let mut b = bundle();
        b.result_keys
            .push((longest.clone(), Secret32::from_bytes([4; 32])));
        let decoded = KeyBundle::decode(&b.encode().unwrap()).unwrap();
        assert!(decoded.result_keys.iter().any(|(id, _)| *id == longest));
        assert!(ResultSession::open_new(&longest, &pk).is_ok());

        let too_long = "s".repeat(MAX_ID_LEN + 1);
        let mut b = bundle();
        b.result_keys
            .push((too_long.clone(), Secret32::from_bytes([4; 32])));
        assert!(matches!(b.encode(), Err(KeyWrapError::TooLarge { .. })));
        assert!(ResultSession::open_new(&too_long, &pk).is_err());
    }

    #[test]
    fn bundle_round_trip_and_truncations() {
        let b = bundle();
        let enc = b.encode().unwrap();
        assert_eq!(KeyBundle::decode(&enc).unwrap(), b);
        for n in 0..enc.len() {
            assert!(KeyBundle::decode(&enc[..n]).is_err(), "prefix {n}");
        }
        let mut v = enc.to_vec();
        v[0] = 9;
        assert_eq!(
            KeyBundle::decode(&v),
            Err(KeyWrapError::UnknownVersion { version: 9 })
        );
        assert_eq!(b.transport_key("ECG-2").unwrap().expose(), &[2; 32]);
        assert!(b.transport_key("ECG-3").is_none());
    }

    /// A bundle that releases key windows says so (version 3) and carries
    /// each windowed device's slice length; one without is byte for byte a
    /// version-2 bundle, so older workers still read it.
    #[test]
    fn windowed_bundles_are_version_3_and_round_trip() {
        let plain = bundle().encode().unwrap();
        assert_eq!(plain[0], BUNDLE_VERSION);
        let mut b = bundle();
        b.transport_keys.clear();
        for i in [118u16, 119, 0] {
            b.transport_keys
                .push((format!("ECG-1/{i}"), Secret32::from_bytes([i as u8; 32])));
        }
        b.slices.push(("ECG-1".into(), 120));
        let enc = b.encode().unwrap();
        assert_eq!(enc[0], BUNDLE_VERSION_WINDOWED);
        assert_eq!(&enc[enc.len() - 11..], b"\x00\x01\x00\x05ECG-1\x00\x78");
        assert_eq!(KeyBundle::decode(&enc).unwrap(), b);
        for n in 0..enc.len() {
            assert!(KeyBundle::decode(&enc[..n]).is_err(), "prefix {n}");
        }
        // A version-3 bundle must name at least one windowed device.
        let mut v = plain.to_vec();
        v[0] = BUNDLE_VERSION_WINDOWED;
        v.extend_from_slice(&[0, 0]);
        assert!(matches!(
            KeyBundle::decode(&v),
            Err(KeyWrapError::Malformed { .. })
        ));
    }

    #[test]
    fn secret_debug_is_redacted() {
        let s = format!("{:?}", bundle());
        assert!(!s.contains("[1, 1"), "{s}");
        assert!(s.contains("redacted"));
    }

    proptest! {
        #[test]
        fn hostile_bundle_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = KeyBundle::decode(&b);
        }
    }
}
