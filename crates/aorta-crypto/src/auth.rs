//! Who sent what: Ed25519 signatures (RFC 8032, from `ring`) over aorta's
//! messages, and the formats that carry them (`docs/authentication.md`).
//!
//! - **Device frame signatures**: every upload frame is signed by the
//!   device's signing key, held in its secure element; ingest verifies the
//!   signature against the public device directory ([`crate::directory`])
//!   before the frame touches any state ([`frame_message`]).
//! - **Worker certificates** ([`WorkerCert`]): after attestation the key
//!   broker issues the worker a result-signing key and certifies it (key,
//!   backend, measurement, assignment, validity) with the broker's key,
//!   which clinicians and the server pin.
//! - **Signed results** ([`SignedResult`]): every stored result record is
//!   signed by a certified worker key, over its id and bytes.
//! - **Clinicians' read requests** ([`read_message`]): what a clinician
//!   signs with its authentication key ([`clinician_auth_key`], derived
//!   from the clinician's identity) to read results. Defined, but not yet
//!   required by the results API (`docs/authentication.md`).
//!
//! Every message is domain-separated by a label ending in a NUL byte, so a
//! signature made for one purpose never verifies for another.

use aorta_base::codec::{self as wire, Decode, DecodeError, Encode, Reader};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use zeroize::Zeroizing;

/// Bytes of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Label of a device frame signature.
pub const FRAME_LABEL: &[u8] = b"aorta/v1/device-frame\0";
/// Label of a worker certificate signature.
pub const CERT_LABEL: &[u8] = b"aorta/v1/worker-certificate\0";
/// Label of a result signature.
pub const RESULT_LABEL: &[u8] = b"aorta/v1/result\0";
/// Label of a clinician's read request signature.
pub const READ_LABEL: &[u8] = b"aorta/v1/results-read\0";
/// HKDF salt of a clinician's authentication key.
pub const CLINICIAN_AUTH_SALT: &[u8] = b"aorta/v1/clinician-auth";

/// Magic of a worker certificate.
pub const CERT_MAGIC: [u8; 4] = *b"AOWC";
/// Most subscribers one worker certificate lists.
pub const MAX_CERT_SUBSCRIBERS: usize = 4096;

/// Magic of a signed result.
pub const SIGNED_RESULT_MAGIC: [u8; 4] = *b"AOSG";
/// The version of both formats this build reads and writes.
pub const VERSION: u8 = 1;

/// Why a signature or a signed container is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The bytes do not parse (see the inner error).
    #[error("malformed: {0}")]
    Malformed(#[from] DecodeError),
    /// Not the expected container.
    #[error("not an aorta {what} (bad magic)")]
    BadMagic {
        /// Which container.
        what: &'static str,
    },
    /// A version this build does not read.
    #[error("unknown {what} version {found} (this build reads {VERSION}); upgrade aorta")]
    UnknownVersion {
        /// Which container.
        what: &'static str,
        /// The version byte.
        found: u8,
    },
    /// The signature does not verify with the key it must come from.
    #[error("{what}: the signature does not verify")]
    BadSignature {
        /// What was signed.
        what: &'static str,
    },
    /// The certificate was issued by another broker key than the pinned one.
    #[error("worker certificate issued by broker key {found}, not the pinned {pinned}")]
    WrongIssuer {
        /// Issuer key in the certificate, hex.
        found: String,
        /// Pinned key, hex.
        pinned: String,
    },
    /// Outside the certificate's validity.
    #[error("worker certificate valid from {not_before} to {not_after} (unix s), not at {now}")]
    NotValidNow {
        /// Start.
        not_before: u64,
        /// End.
        not_after: u64,
        /// The time checked.
        now: u64,
    },
    /// A signed result refers to another certificate than the one given.
    #[error("signed result names certificate {found}, not {expected}")]
    WrongCertificate {
        /// Digest in the result, hex.
        found: String,
        /// Digest of the certificate given, hex.
        expected: String,
    },
    /// The record's id names a subscriber the certificate does not list.
    #[error("result {id}: the worker's certificate does not cover this subscriber")]
    NotCovered {
        /// The record's id.
        id: String,
    },
    /// A key could not be made (bad seed or no randomness).
    #[error("signing key: {0}")]
    Key(&'static str),
}

/// Verifies an Ed25519 signature of `msg` by `public_key`.
pub fn verify(
    public_key: &[u8; PUBLIC_KEY_LEN],
    msg: &[u8],
    signature: &[u8; SIGNATURE_LEN],
    what: &'static str,
) -> Result<(), AuthError> {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(msg, signature)
        .map_err(|_| AuthError::BadSignature { what })
}

/// An Ed25519 signing key in memory (the broker's, a worker's result key, a
/// clinician's authentication key). The seed is zeroized on drop; `Debug`
/// shows only the public key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    seed: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &aorta_base::hex::encode(&self.public()))
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The key of a 32-byte seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, AuthError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| AuthError::Key("bad Ed25519 seed"))?;
        Ok(SigningKey {
            pair,
            seed: Zeroizing::new(*seed),
        })
    }

    /// A new key from the OS CSPRNG.
    pub fn generate() -> Result<Self, AuthError> {
        let seed = aorta_base::random::secret::<32>()
            .map_err(|_| AuthError::Key("no randomness from the OS"))?;
        Self::from_seed(&seed)
    }

    /// The seed (to store it sealed or in an owner-only file).
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// The public key.
    pub fn public(&self) -> [u8; PUBLIC_KEY_LEN] {
        let mut out = [0u8; PUBLIC_KEY_LEN];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    /// Signs `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(self.pair.sign(msg).as_ref());
        out
    }
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, b).as_ref());
    out
}

/// What a device signs for an upload frame: [`FRAME_LABEL`] ‖ SHA-256(frame).
pub fn frame_message(frame: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(FRAME_LABEL.len() + 32);
    m.extend_from_slice(FRAME_LABEL);
    m.extend_from_slice(&sha256(frame));
    m
}

/// Verifies a device's signature of `frame`.
pub fn verify_frame(
    device_key: &[u8; PUBLIC_KEY_LEN],
    frame: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> Result<(), AuthError> {
    verify(device_key, &frame_message(frame), signature, "device frame")
}

/// One device frame signature to check in a batch ([`verify_frames`]).
#[derive(Debug, Clone, Copy)]
pub struct FrameSignature<'a> {
    /// The device's public key (from the directory).
    pub key: &'a [u8; PUBLIC_KEY_LEN],
    /// [`frame_message`] of the frame.
    pub message: &'a [u8],
    /// The signature the request carried.
    pub signature: &'a [u8; SIGNATURE_LEN],
}

/// Verifies many device frame signatures at once: one result per item, in
/// order. Ed25519 batch verification (`ed25519-dalek`, random linear
/// combination) costs about a third of verifying one by one; a batch that
/// fails is checked item by item with [`verify`], so a forged frame gets
/// only its own refusal. (A batch accepts exactly the signatures valid
/// under the cofactored verification equation; one by one, `ring` uses the
/// cofactorless one. The two differ only for signatures built with
/// small-order components, which only the key's holder can make: no
/// forgery passes either.)
pub fn verify_frames(items: &[FrameSignature<'_>]) -> Vec<bool> {
    let one =
        |i: &FrameSignature<'_>| verify(i.key, i.message, i.signature, "device frame").is_ok();
    if items.len() < 4 {
        return items.iter().map(one).collect();
    }
    let keys: Option<Vec<ed25519_dalek::VerifyingKey>> = items
        .iter()
        .map(|i| ed25519_dalek::VerifyingKey::from_bytes(i.key).ok())
        .collect();
    let batch_ok = keys.is_some_and(|keys| {
        let msgs: Vec<&[u8]> = items.iter().map(|i| i.message).collect();
        let sigs: Vec<ed25519_dalek::Signature> = items
            .iter()
            .map(|i| ed25519_dalek::Signature::from_bytes(i.signature))
            .collect();
        ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok()
    });
    if batch_ok {
        vec![true; items.len()]
    } else {
        items.iter().map(one).collect()
    }
}

/// A clinician's authentication key: Ed25519 with seed
/// `HKDF-SHA256(salt = CLINICIAN_AUTH_SALT, ikm = identity secret, info = "")`.
/// It is derived from the clinician's X25519 identity, so one identity file
/// holds both.
pub fn clinician_auth_key(identity_secret: &[u8; 32]) -> Result<SigningKey, AuthError> {
    let hk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, CLINICIAN_AUTH_SALT);
    let prk = hk.extract(identity_secret);
    let okm = prk
        .expand(&[], ring::hkdf::HKDF_SHA256)
        .map_err(|_| AuthError::Key("HKDF expand"))?;
    let mut seed = Zeroizing::new([0u8; 32]);
    okm.fill(seed.as_mut())
        .map_err(|_| AuthError::Key("HKDF fill"))?;
    SigningKey::from_seed(&seed)
}

/// What a clinician signs to read results: [`READ_LABEL`] ‖ len(subscriber)
/// u8 ‖ subscriber ‖ unix seconds u64 ‖ len(path and query) u16 ‖ path and
/// query (exactly as sent, e.g. `/v1/results?after=0&limit=100`).
pub fn read_message(subscriber: &str, unix_s: u64, path_and_query: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(READ_LABEL.len() + 16 + subscriber.len() + path_and_query.len());
    m.extend_from_slice(READ_LABEL);
    let s = subscriber.as_bytes();
    m.push(s.len().min(255) as u8);
    m.extend_from_slice(s.get(..s.len().min(255)).unwrap_or_default());
    m.extend_from_slice(&unix_s.to_be_bytes());
    let p = path_and_query.as_bytes();
    let n = p.len().min(u16::MAX.into());
    m.extend_from_slice(&(n as u16).to_be_bytes());
    m.extend_from_slice(p.get(..n).unwrap_or_default());
    m
}

/// The longest prefix of `s` of at most 255 bytes that ends on a character
/// boundary (cutting inside a character and repairing it with U+FFFD could
/// make the string longer than 255 bytes again).
fn cut_str(s: &str) -> &str {
    let mut n = s.len().min(255);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    s.get(..n).unwrap_or_default()
}

/// A worker certificate (`AOWC`): the broker's statement that `worker_key`
/// is held by a worker it attested, with what it ran and for what.
///
/// `magic ‖ version ‖ worker_key [32] ‖ broker_key [32] ‖ not_before u64 ‖
/// not_after u64 ‖ hardware u8 ‖ backend (u8 len) ‖ measurement (u8 len) ‖
/// assignment (u8 len) ‖ subscriber count u16 ‖ subscribers (u8 len each) ‖
/// signature [64]`; the signature is by `broker_key` over [`CERT_LABEL`] ‖
/// everything before it. The worker may sign results only for the
/// subscribers listed (`SUBSCRIBER/…` ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCert {
    /// The worker's result-signing public key.
    pub worker_key: [u8; PUBLIC_KEY_LEN],
    /// The issuing broker's public key.
    pub broker_key: [u8; PUBLIC_KEY_LEN],
    /// Valid from (unix s).
    pub not_before: u64,
    /// Valid until (unix s).
    pub not_after: u64,
    /// Whether a hardware TEE protected the worker (false for `sim`).
    pub hardware: bool,
    /// Evidence backend name.
    pub backend: String,
    /// The attested measurement.
    pub measurement: Vec<u8>,
    /// The assignment the worker serves.
    pub assignment: String,
    /// The subscribers whose results it may sign (at most
    /// [`MAX_CERT_SUBSCRIBERS`], each cut to 255 bytes).
    pub subscribers: Vec<String>,
    /// The broker's signature.
    pub signature: [u8; SIGNATURE_LEN],
}

impl WorkerCert {
    /// Issues a certificate for `worker_key`, signed by `broker`; the
    /// strings and measurement are cut to 255 bytes.
    #[allow(
        clippy::too_many_arguments,
        reason = "each argument is one certified field"
    )]
    pub fn issue(
        broker: &SigningKey,
        worker_key: [u8; PUBLIC_KEY_LEN],
        not_before: u64,
        not_after: u64,
        hardware: bool,
        backend: &str,
        measurement: &[u8],
        assignment: &str,
        subscribers: &[String],
    ) -> WorkerCert {
        let cut = |b: &[u8]| b.get(..b.len().min(255)).unwrap_or_default().to_vec();
        let mut c = WorkerCert {
            worker_key,
            broker_key: broker.public(),
            not_before,
            not_after,
            hardware,
            backend: cut_str(backend).to_owned(),
            measurement: cut(measurement),
            assignment: cut_str(assignment).to_owned(),
            subscribers: subscribers
                .iter()
                .take(MAX_CERT_SUBSCRIBERS)
                .map(|x| cut_str(x).to_owned())
                .collect(),
            signature: [0u8; SIGNATURE_LEN],
        };
        c.signature = broker.sign(&c.signed_message());
        c
    }

    fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(128 + self.measurement.len());
        b.extend_from_slice(&CERT_MAGIC);
        b.push(VERSION);
        b.extend_from_slice(&self.worker_key);
        b.extend_from_slice(&self.broker_key);
        b.extend_from_slice(&self.not_before.to_be_bytes());
        b.extend_from_slice(&self.not_after.to_be_bytes());
        b.push(u8::from(self.hardware));
        // Lengths were cut to 255 at issue and checked at decode.
        let _ = wire::put_bytes_u8(&mut b, "backend", self.backend.as_bytes());
        let _ = wire::put_bytes_u8(&mut b, "measurement", &self.measurement);
        let _ = wire::put_bytes_u8(&mut b, "assignment", self.assignment.as_bytes());
        let n = self.subscribers.len().min(MAX_CERT_SUBSCRIBERS);
        b.extend_from_slice(&(n as u16).to_be_bytes());
        for sub in self.subscribers.iter().take(n) {
            let _ = wire::put_bytes_u8(&mut b, "subscriber", sub.as_bytes());
        }
        b
    }

    /// Whether the worker may sign results stored under `id`: its
    /// `SUBSCRIBER/` prefix names a subscriber this certificate lists.
    pub fn covers(&self, id: &str) -> bool {
        id.split_once('/')
            .is_some_and(|(sub, _)| self.subscribers.iter().any(|s| s == sub))
    }

    fn signed_message(&self) -> Vec<u8> {
        let mut m = CERT_LABEL.to_vec();
        m.extend_from_slice(&self.body());
        m
    }

    /// SHA-256 of the encoded certificate: how signed results name it.
    pub fn digest(&self) -> [u8; 32] {
        sha256(&self.to_bytes())
    }

    /// Checks the certificate: issued by `pinned_broker`, signature valid,
    /// `now` (unix s) inside its validity.
    pub fn verify(&self, pinned_broker: &[u8; PUBLIC_KEY_LEN], now: u64) -> Result<(), AuthError> {
        if &self.broker_key != pinned_broker {
            return Err(AuthError::WrongIssuer {
                found: aorta_base::hex::encode(&self.broker_key),
                pinned: aorta_base::hex::encode(pinned_broker),
            });
        }
        verify(
            &self.broker_key,
            &self.signed_message(),
            &self.signature,
            "worker certificate",
        )?;
        if now < self.not_before || now > self.not_after {
            return Err(AuthError::NotValidNow {
                not_before: self.not_before,
                not_after: self.not_after,
                now,
            });
        }
        Ok(())
    }

    /// Decodes a certificate (magic and version checked; the signature is
    /// not: see [`WorkerCert::verify`]).
    pub fn parse(bytes: &[u8]) -> Result<WorkerCert, AuthError> {
        let mut r = Reader::new(bytes);
        if r.array::<4>("magic")? != CERT_MAGIC {
            return Err(AuthError::BadMagic {
                what: "worker certificate",
            });
        }
        let v = r.u8("version")?;
        if v != VERSION {
            return Err(AuthError::UnknownVersion {
                what: "worker certificate",
                found: v,
            });
        }
        let c = WorkerCert::decode_rest(&mut r)?;
        r.finish()?;
        Ok(c)
    }

    fn decode_rest(r: &mut Reader<'_>) -> Result<WorkerCert, DecodeError> {
        let text = |r: &mut Reader<'_>, f: &'static str| -> Result<String, DecodeError> {
            let b = r.bytes_u8(f)?;
            std::str::from_utf8(b)
                .map(str::to_owned)
                .map_err(|_| r.invalid(f, b.len(), "not UTF-8"))
        };
        let worker_key = r.array("worker_key")?;
        let broker_key = r.array("broker_key")?;
        let not_before = r.u64("not_before")?;
        let not_after = r.u64("not_after")?;
        let hardware = match r.u8("hardware")? {
            0 => false,
            1 => true,
            _ => return Err(r.invalid("hardware", 1, "flag is neither 0 nor 1")),
        };
        let backend = text(r, "backend")?;
        let measurement = r.bytes_u8("measurement")?.to_vec();
        let assignment = text(r, "assignment")?;
        let n = usize::from(r.u16("subscriber count")?);
        if n > MAX_CERT_SUBSCRIBERS {
            return Err(r.invalid("subscriber count", 2, "more subscribers than allowed"));
        }
        let mut subscribers = Vec::with_capacity(n);
        for _ in 0..n {
            subscribers.push(text(r, "subscriber")?);
        }
        let signature = r.array("signature")?;
        Ok(WorkerCert {
            worker_key,
            broker_key,
            not_before,
            not_after,
            hardware,
            backend,
            measurement,
            assignment,
            subscribers,
            signature,
        })
    }
}

impl Encode for WorkerCert {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.body());
        out.extend_from_slice(&self.signature);
    }
}

impl Decode<'_> for WorkerCert {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.array::<4>("magic")? != CERT_MAGIC {
            return Err(r.invalid("magic", 4, "not a worker certificate"));
        }
        if r.u8("version")? != VERSION {
            return Err(r.invalid("version", 1, "unknown worker certificate version"));
        }
        WorkerCert::decode_rest(r)
    }
}

/// A signed result record (`AOSG`): `magic ‖ version ‖ cert_digest [32] ‖
/// signature [64] ‖ payload (the rest)`. The signature is by the certified
/// worker key over [`RESULT_LABEL`] ‖ cert_digest ‖ len(id) u16 ‖ id ‖
/// SHA-256(payload): the id is bound, so a record cannot be stored under
/// another id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedResult<'a> {
    /// [`WorkerCert::digest`] of the signer's certificate.
    pub cert_digest: [u8; 32],
    /// The signature.
    pub signature: [u8; SIGNATURE_LEN],
    /// The record as the worker made it (a sealed result or envelope).
    pub payload: &'a [u8],
}

fn result_message(cert_digest: &[u8; 32], id: &str, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(RESULT_LABEL.len() + 100 + id.len());
    m.extend_from_slice(RESULT_LABEL);
    m.extend_from_slice(cert_digest);
    let id = id.as_bytes();
    let n = id.len().min(u16::MAX.into());
    m.extend_from_slice(&(n as u16).to_be_bytes());
    m.extend_from_slice(id.get(..n).unwrap_or_default());
    m.extend_from_slice(&sha256(payload));
    m
}

impl<'a> SignedResult<'a> {
    /// Signs `payload` stored under `id` with `key`, certified by the
    /// certificate whose digest is `cert_digest`; the record's bytes.
    pub fn sign(key: &SigningKey, cert_digest: [u8; 32], id: &str, payload: &[u8]) -> Vec<u8> {
        SignedResult {
            cert_digest,
            signature: key.sign(&result_message(&cert_digest, id, payload)),
            payload,
        }
        .to_bytes()
    }

    /// Decodes a record (magic and version checked, the signature not).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, AuthError> {
        let mut r = Reader::new(bytes);
        if r.array::<4>("magic")? != SIGNED_RESULT_MAGIC {
            return Err(AuthError::BadMagic {
                what: "signed result",
            });
        }
        let v = r.u8("version")?;
        if v != VERSION {
            return Err(AuthError::UnknownVersion {
                what: "signed result",
                found: v,
            });
        }
        Ok(SignedResult {
            cert_digest: r.array("cert_digest")?,
            signature: r.array("signature")?,
            payload: r.rest(),
        })
    }

    /// Checks that the record stored under `id` was signed by `cert`'s
    /// worker key (the certificate itself is checked by
    /// [`WorkerCert::verify`]); its payload.
    pub fn verify(&self, cert: &WorkerCert, id: &str) -> Result<&'a [u8], AuthError> {
        if !cert.covers(id) {
            return Err(AuthError::NotCovered { id: id.to_owned() });
        }
        let expected = cert.digest();
        if self.cert_digest != expected {
            return Err(AuthError::WrongCertificate {
                found: aorta_base::hex::encode(&self.cert_digest),
                expected: aorta_base::hex::encode(&expected),
            });
        }
        verify(
            &cert.worker_key,
            &result_message(&self.cert_digest, id, self.payload),
            &self.signature,
            "result",
        )?;
        Ok(self.payload)
    }
}

impl Encode for SignedResult<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&SIGNED_RESULT_MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.cert_digest);
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(self.payload);
    }
}

impl<'a> Decode<'a> for SignedResult<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        if r.array::<4>("magic")? != SIGNED_RESULT_MAGIC {
            return Err(r.invalid("magic", 4, "not a signed result"));
        }
        if r.u8("version")? != VERSION {
            return Err(r.invalid("version", 1, "unknown signed result version"));
        }
        Ok(SignedResult {
            cert_digest: r.array("cert_digest")?,
            signature: r.array("signature")?,
            payload: r.rest(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(broker: &SigningKey, worker: &SigningKey) -> WorkerCert {
        WorkerCert::issue(
            broker,
            worker.public(),
            100,
            200,
            false,
            "sim",
            &[7u8; 32],
            "ward-a",
            &["dr-a".to_owned()],
        )
    }

    #[test]
    fn certificates_and_results_verify_and_every_flipped_bit_is_refused() {
        let broker = SigningKey::generate().unwrap();
        let worker = SigningKey::generate().unwrap();
        let c = cert(&broker, &worker);
        let bytes = c.to_bytes();
        assert_eq!(WorkerCert::parse(&bytes).unwrap(), c);
        c.verify(&broker.public(), 150).unwrap();
        assert!(matches!(
            c.verify(&broker.public(), 201),
            Err(AuthError::NotValidNow { .. })
        ));
        let other = SigningKey::generate().unwrap();
        assert!(matches!(
            c.verify(&other.public(), 150),
            Err(AuthError::WrongIssuer { .. })
        ));
        for m in aorta_base::codec::mutations(&bytes, usize::MAX) {
            if let Ok(c2) = WorkerCert::parse(&m) {
                assert!(c2.verify(&broker.public(), 150).is_err());
            }
        }
        let rec = SignedResult::sign(&worker, c.digest(), "dr-a/x", b"sealed");
        let p = SignedResult::parse(&rec).unwrap();
        assert_eq!(p.verify(&c, "dr-a/x").unwrap(), b"sealed");
        // Bound to its id: not valid under another.
        assert!(p.verify(&c, "dr-a/y").is_err());
        for m in aorta_base::codec::mutations(&rec, usize::MAX) {
            if let Ok(p) = SignedResult::parse(&m) {
                assert!(p.verify(&c, "dr-a/x").is_err());
            }
        }
        // A key the broker never certified cannot sign for the certificate.
        let forged = SignedResult::sign(&other, c.digest(), "dr-a/x", b"sealed");
        assert!(
            SignedResult::parse(&forged)
                .unwrap()
                .verify(&c, "dr-a/x")
                .is_err()
        );
    }

    /// A backend or assignment over 255 bytes whose 255th byte falls inside
    /// a multi-byte character was cut there and repaired with U+FFFD, which
    /// made it 257 bytes: the length prefix was then silently not written
    /// and the certificate did not parse back.
    #[test]
    fn regression_cert_text_cut_inside_a_character_still_encodes() {
        let broker = SigningKey::from_seed(&[1u8; 32]).unwrap();
        let long = "é".repeat(128); // 256 bytes; byte 255 is inside the last é
        let c = WorkerCert::issue(
            &broker,
            [2u8; 32],
            0,
            10,
            true,
            &long,
            &[3u8; 300],
            &long,
            std::slice::from_ref(&long),
        );
        assert_eq!(c.backend.len(), 254);
        assert_eq!(c.assignment.len(), 254);
        assert_eq!(c.measurement.len(), 255);
        let parsed = WorkerCert::parse(&c.to_bytes()).unwrap();
        assert_eq!(parsed, c);
        parsed.verify(&broker.public(), 5).unwrap();
    }

    #[test]
    fn a_certificate_lists_at_most_the_bound_of_subscribers() {
        let broker = SigningKey::generate().unwrap();
        let many: Vec<String> = (0..MAX_CERT_SUBSCRIBERS + 10)
            .map(|i| format!("s{i}"))
            .collect();
        let c = WorkerCert::issue(&broker, [1; 32], 0, 10, true, "tdx", &[], "a", &many);
        assert_eq!(c.subscribers.len(), MAX_CERT_SUBSCRIBERS);
        assert_eq!(WorkerCert::parse(&c.to_bytes()).unwrap(), c);
        // A count above the bound is refused at decoding.
        let mut b = c.to_bytes();
        let at = 4 + 1 + 32 + 32 + 8 + 8 + 1 + 1 + 3 + 1 + 1 + 1;
        b[at..at + 2].copy_from_slice(&((MAX_CERT_SUBSCRIBERS + 1) as u16).to_be_bytes());
        assert!(matches!(
            WorkerCert::parse(&b),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn batches_verify_like_single_signatures() {
        let keys: Vec<SigningKey> = (0..3u8)
            .map(|i| SigningKey::from_seed(&[i + 1; 32]).unwrap())
            .collect();
        let frames: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 100]).collect();
        let msgs: Vec<Vec<u8>> = frames.iter().map(|f| frame_message(f)).collect();
        let pubs: Vec<[u8; 32]> = keys.iter().map(SigningKey::public).collect();
        let mut sigs: Vec<[u8; 64]> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| keys[i % 3].sign(m))
            .collect();
        let items = |sigs: &[[u8; 64]]| -> Vec<bool> {
            let v: Vec<FrameSignature<'_>> = msgs
                .iter()
                .enumerate()
                .map(|(i, m)| FrameSignature {
                    key: &pubs[i % 3],
                    message: m,
                    signature: &sigs[i],
                })
                .collect();
            verify_frames(&v)
        };
        assert!(items(&sigs).iter().all(|ok| *ok));
        // One forged signature (another device's key): only it is refused.
        sigs[7] = keys[0].sign(&msgs[7]);
        let got = items(&sigs);
        assert_eq!(got.iter().filter(|ok| !**ok).count(), 1);
        assert!(!got[7]);
        // A flipped bit anywhere in one signature.
        let mut bad = sigs.clone();
        bad[7] = keys[1].sign(&msgs[7]);
        bad[3][10] ^= 1;
        let got = items(&bad);
        assert_eq!(
            got.iter()
                .enumerate()
                .filter(|(_, ok)| !**ok)
                .map(|(i, _)| i)
                .collect::<Vec<_>>(),
            vec![3]
        );
    }

    #[test]
    fn frame_and_read_signatures_are_domain_separated() {
        let k = SigningKey::generate().unwrap();
        let sig = k.sign(&frame_message(b"frame"));
        verify_frame(&k.public(), b"frame", &sig).unwrap();
        assert!(verify_frame(&k.public(), b"framf", &sig).is_err());
        let read = read_message("dr-a", 5, "/v1/results?after=0");
        assert!(verify(&k.public(), &read, &sig, "read").is_err());
        let a = clinician_auth_key(&[1u8; 32]).unwrap();
        let b = clinician_auth_key(&[1u8; 32]).unwrap();
        assert_eq!(a.public(), b.public());
        assert_ne!(a.public(), clinician_auth_key(&[2u8; 32]).unwrap().public());
    }
}
