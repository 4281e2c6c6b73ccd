//! Analysis results sealed to clinicians, and worker checkpoint state sealed
//! under a broker-released state key (issue 6, item 2). Spec:
//! `docs/results-format.md`; vectors: `docs/vectors/results/`.
//!
//! The design follows `age`: a clinician ("subscriber") holds an X25519
//! [`ClinicianIdentity`] and publishes its [`ClinicianPublic`] key. An
//! attested worker opens one [`ResultSession`] per subscriber and run: a
//! random 32-byte session key, HPKE-sealed (RFC 9180 base mode,
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305 — the suite of
//! `aorta_enclave::keywrap`) to the clinician's public key, travels as a
//! **session envelope** (`AORS`). Each result (JSON bytes) is then sealed
//! with AES-256-GCM under a key derived from the session key, as a **sealed
//! result** (`AORR`) whose associated data binds the session id, the
//! subscriber id and the result id: the untrusted host that stores results
//! cannot move one to another result id or another subscriber.
//!
//! ```text
//! worker:    ResultSession::open_new(sub, pk) ─▶ (session, envelope) ; session.seal(rid, json) ─▶ sealed
//! clinician: open_envelope(identity, envelope) ─▶ OpenedSession ; opened.open(rid, sealed) ─▶ json
//! ```
//!
//! Checkpoint state: [`seal_state`] / [`open_state`] (`AOST`) seal a worker's
//! operator state under the 32-byte state key the broker releases to attested
//! workers, bound to a context (e.g. the assignment name).
//!
//! All parsers take untrusted bytes and return [`ResultsError`]; none panics.
//! Secret material (identity, session keys, opened plaintext) lives in
//! zeroizing memory and has no byte-printing `Debug`. `ring`'s expanded
//! AES key schedule is not zeroized by `ring`, so it is built per call and
//! lives only for that call. This module does no I/O except drawing
//! randomness from the OS (`getrandom`).
//!
//! ```
//! use aorta_crypto::results::{ClinicianIdentity, ResultSession, open_envelope};
//! let alice = ClinicianIdentity::generate()?;
//! let (session, envelope) = ResultSession::open_new("dr-alice", &alice.public())?;
//! let sealed = session.seal("ECG-0001/hr/000042", br#"{"hr_bpm":72.5}"#)?;
//! let opened = open_envelope(&alice, &envelope)?;
//! let json = opened.open("ECG-0001/hr/000042", &sealed)?;
//! assert_eq!(&json[..], br#"{"hr_bpm":72.5}"#);
//! assert!(opened.open("ECG-0001/hr/000043", &sealed).is_err()); // moved: refused
//! # Ok::<(), aorta_crypto::results::ResultsError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::rand_core::{Infallible, TryCryptoRng, TryRng};
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hkdf;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Magic of a session envelope.
pub const SESSION_MAGIC: [u8; 4] = *b"AORS";
/// Magic of a sealed result.
pub const RESULT_MAGIC: [u8; 4] = *b"AORR";
/// Magic of sealed checkpoint state.
pub const STATE_MAGIC: [u8; 4] = *b"AOST";
/// The only session envelope version this build writes and reads.
pub const SESSION_VERSION: u8 = 1;
/// The only sealed result version this build writes and reads.
pub const RESULT_VERSION: u8 = 1;
/// The only sealed state version this build writes and reads.
pub const STATE_VERSION: u8 = 1;
/// The only session checkpoint version this build writes and reads.
pub const SESSION_CHECKPOINT_VERSION: u8 = 1;

/// Longest subscriber id or result id, in bytes (ids are non-empty UTF-8).
pub const MAX_ID_LEN: usize = 255;
/// Largest result plaintext (16 MiB).
pub const MAX_RESULT_LEN: usize = 16 << 20;
/// Largest checkpoint state plaintext (256 MiB).
pub const MAX_STATE_LEN: usize = 256 << 20;
/// Longest state context, in bytes.
pub const MAX_CONTEXT_LEN: usize = 65_535;

/// Session id length.
pub const SESSION_ID_LEN: usize = 16;
/// AEAD nonce length (AES-256-GCM).
pub const NONCE_LEN: usize = 12;
/// AEAD tag length (AES-256-GCM and ChaCha20-Poly1305).
pub const TAG_LEN: usize = 16;
/// HPKE encapsulated key length (X25519).
pub const ENC_LEN: usize = 32;
/// Session key length.
pub const SESSION_KEY_LEN: usize = 32;
/// Length of the HPKE ciphertext in an envelope (session key + tag).
pub const ENVELOPE_CT_LEN: usize = SESSION_KEY_LEN + TAG_LEN;
/// Sealed result header length: magic, version, session id, nonce.
pub const RESULT_HEADER_LEN: usize = 4 + 1 + SESSION_ID_LEN + NONCE_LEN;
/// Sealed state header length: magic, version, nonce.
pub const STATE_HEADER_LEN: usize = 4 + 1 + NONCE_LEN;

/// Prefix of a clinician secret key's text form (then 64 upper-case hex digits).
pub const SECRET_TEXT_PREFIX: &str = "AORTA-CLINICIAN-SECRET-1";
/// Prefix of a clinician public key's text form (then 64 lower-case hex digits).
pub const PUBLIC_TEXT_PREFIX: &str = "aorta-clinician-1";

/// Start of the HPKE `info` of a session envelope (then `len(sub) ‖ sub ‖ session_id`).
pub const SESSION_INFO_LABEL: &[u8] = b"aorta result session v1";
/// HKDF `info` deriving a session's AEAD key.
const RESULT_KEY_LABEL: &[u8] = b"aorta result key v1";
/// HKDF `info` deriving the AEAD key of sealed state.
const STATE_KEY_LABEL: &[u8] = b"aorta state key v1";
/// Longest identity file text [`ClinicianIdentity::from_file_text`] reads.
const MAX_IDENTITY_FILE_LEN: usize = 64 * 1024;

/// Which container (or text form) an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Container {
    /// A session envelope (`AORS`).
    SessionEnvelope,
    /// A sealed result (`AORR`).
    SealedResult,
    /// Sealed checkpoint state (`AOST`).
    SealedState,
    /// A clinician secret key in text form.
    SecretKeyText,
    /// A clinician public key in text form.
    PublicKeyText,
    /// A result session checkpoint ([`ResultSession::to_checkpoint`]).
    SessionCheckpoint,
    /// An argument given by the caller (ids, plaintext sizes).
    Argument,
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SessionEnvelope => "session envelope",
            Self::SealedResult => "sealed result",
            Self::SealedState => "sealed state",
            Self::SecretKeyText => "clinician secret key",
            Self::PublicKeyText => "clinician public key",
            Self::SessionCheckpoint => "result session checkpoint",
            Self::Argument => "argument",
        })
    }
}

/// Why sealing or opening results or state failed.
///
/// Blame: `Truncated`, `BadMagic`, `UnsupportedVersion`, `BadField` and
/// `Oversize` are malformed input (or, for [`Container::Argument`], a caller
/// bug); `WrongSubscriber`, `WrongSession` and `AuthenticationFailed` are a
/// wrong key / misfiled or tampered bytes (a misbehaving host); `BadRecipient`
/// is configuration (an unusable public key); `Random` is the environment;
/// `Internal` is our bug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResultsError {
    /// Fewer bytes than the container needs.
    #[error("{what} is {len} bytes, shorter than the {min} it needs")]
    Truncated {
        /// The container.
        what: Container,
        /// Its length.
        len: usize,
        /// The least length it needs.
        min: usize,
    },
    /// The magic (or text prefix) is not the container's.
    #[error("{what}: bad magic or prefix (expected {expected:?})")]
    BadMagic {
        /// The container.
        what: Container,
        /// The expected magic or prefix.
        expected: &'static str,
    },
    /// A version this build does not read.
    #[error(
        "{what} version {version} is not supported (this build reads version {supported}); \
         upgrade aorta to a release that reads version {version}"
    )]
    UnsupportedVersion {
        /// The container.
        what: Container,
        /// The version found.
        version: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// A field is malformed.
    #[error("{what}: bad {field} at offset {offset}: {reason}")]
    BadField {
        /// The container.
        what: Container,
        /// The field.
        field: &'static str,
        /// Byte offset of the field.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The envelope is addressed to another subscriber.
    #[error("session envelope is for subscriber {found:?}, not {expected:?}")]
    WrongSubscriber {
        /// The subscriber the caller expected.
        expected: String,
        /// The subscriber the envelope names.
        found: String,
    },
    /// The sealed result belongs to another session.
    #[error(
        "sealed result belongs to session {found}, this session is {expected}; open its own envelope"
    )]
    WrongSession {
        /// This session's id (hex).
        expected: String,
        /// The result's session id (hex).
        found: String,
    },
    /// The AEAD (or HPKE) refused: wrong key, wrong binding (result id,
    /// subscriber, context), or altered bytes.
    #[error(
        "{what} does not authenticate: wrong key, wrong result id/subscriber/context, or altered bytes"
    )]
    AuthenticationFailed {
        /// The container.
        what: Container,
    },
    /// A size limit is exceeded.
    #[error("{what}: {field} is {len} bytes, over the limit of {max}")]
    Oversize {
        /// The container.
        what: Container,
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The recipient public key cannot be used (an X25519 low-order point).
    #[error("clinician public key is unusable (X25519 low-order point); ask for a correct key")]
    BadRecipient,
    /// The OS random number generator failed.
    #[error("the OS random number generator failed: {reason}")]
    Random {
        /// The OS error.
        reason: String,
    },
    /// A primitive refused where it cannot (our bug).
    #[error("internal error: {what}")]
    Internal {
        /// What failed.
        what: &'static str,
    },
}

type Result<T> = std::result::Result<T, ResultsError>;

// ---------------------------------------------------------------- helpers

fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| ResultsError::Random {
        reason: e.to_string(),
    })
}

fn random_array<const N: usize>() -> Result<Zeroizing<[u8; N]>> {
    let mut a = Zeroizing::new([0u8; N]);
    fill_random(a.as_mut())?;
    Ok(a)
}

/// Lower-case hex of `b` (e.g. to name a session id).
pub fn to_hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    push_hex(&mut s, b, false);
    s
}

fn push_hex(s: &mut String, b: &[u8], upper: bool) {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    for &x in b {
        for nib in [x >> 4, x & 15] {
            if let Some(&d) = digits.get(usize::from(nib)) {
                s.push(char::from(d));
            }
        }
    }
}

/// Decodes exactly `N` bytes of hex in one letter case (`upper` or lower);
/// `None` on any other character or length.
/// The 32 key bytes of a key text: exactly `prefix`, then exactly 64 hex
/// digits of one case (upper for secrets, lower for public keys).
fn key_text(
    s: &str,
    what: Container,
    prefix: &'static str,
    upper: bool,
) -> Result<Zeroizing<[u8; 32]>> {
    let rest = s.strip_prefix(prefix).ok_or(ResultsError::BadMagic {
        what,
        expected: prefix,
    })?;
    hex_array::<32>(rest, upper).ok_or(ResultsError::BadField {
        what,
        field: "key",
        offset: prefix.len(),
        reason: if upper {
            "expected exactly 64 upper-case hex digits"
        } else {
            "expected exactly 64 lower-case hex digits"
        },
    })
}

fn hex_array<const N: usize>(s: &str, upper: bool) -> Option<Zeroizing<[u8; N]>> {
    fn nibble(c: u8, upper: bool) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' if !upper => Some(c - b'a' + 10),
            b'A'..=b'F' if upper => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = Zeroizing::new([0u8; N]);
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let (hi, lo) = match pair {
            [hi, lo] => (*hi, *lo),
            _ => return None,
        };
        *o = (nibble(hi, upper)? << 4) | nibble(lo, upper)?;
    }
    Some(out)
}

fn check_id(field: &'static str, id: &str) -> Result<u8> {
    if id.is_empty() {
        return Err(ResultsError::BadField {
            what: Container::Argument,
            field,
            offset: 0,
            reason: "empty",
        });
    }
    u8::try_from(id.len()).map_err(|_| ResultsError::Oversize {
        what: Container::Argument,
        field,
        len: id.len(),
        max: MAX_ID_LEN,
    })
}

struct Len32;
impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

fn hkdf32(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Result<Zeroizing<[u8; 32]>> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let okm = prk
        .expand(info, Len32)
        .map_err(|_| ResultsError::Internal {
            what: "HKDF-SHA256 refused a 32-byte output",
        })?;
    let mut out = Zeroizing::new([0u8; 32]);
    okm.fill(out.as_mut()).map_err(|_| ResultsError::Internal {
        what: "HKDF-SHA256 refused a 32-byte output",
    })?;
    Ok(out)
}

fn aead_key(raw: &[u8; 32]) -> Result<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, raw)
        .map(LessSafeKey::new)
        .map_err(|_| ResultsError::Internal {
            what: "AES-256-GCM refused a 32-byte key",
        })
}

/// `header ‖ AES-256-GCM(key, nonce, aad, plaintext) ‖ tag`: the body of
/// every sealed container here.
fn seal_after_header(
    key: &LessSafeKey,
    header: &[u8],
    plaintext: &[u8],
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(header.len() + plaintext.len() + TAG_LEN);
    out.extend_from_slice(header);
    out.extend_from_slice(plaintext);
    let body = out.get_mut(header.len()..).ok_or(ResultsError::Internal {
        what: "sealed header written",
    })?;
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), body)
        .map_err(|_| ResultsError::Internal {
            what: "AES-256-GCM seal failed",
        })?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Checks `magic ‖ version` at the start of `bytes`, returning typed errors.
fn check_head(
    bytes: &[u8],
    what: Container,
    (magic, expected): (&[u8; 4], &'static str),
    version: u8,
    min: usize,
) -> Result<()> {
    match bytes.get(..4) {
        Some(m) if m == magic => {}
        Some(_) => return Err(ResultsError::BadMagic { what, expected }),
        None => {
            return Err(ResultsError::Truncated {
                what,
                len: bytes.len(),
                min,
            });
        }
    }
    match bytes.get(4) {
        Some(&v) if v == version => Ok(()),
        Some(&v) => Err(ResultsError::UnsupportedVersion {
            what,
            version: v,
            supported: version,
        }),
        None => Err(ResultsError::Truncated {
            what,
            len: bytes.len(),
            min,
        }),
    }
}

/// An `hpke` RNG that hands out exactly the 32 bytes of ephemeral key
/// material it holds (the only randomness DHKEM(X25519) encapsulation
/// draws). Asking for more marks it overdrawn, which the caller turns into
/// [`ResultsError::Internal`] (its output is then discarded).
struct EphemeralIkm {
    ikm: Zeroizing<[u8; 32]>,
    used: usize,
    overdrawn: bool,
}

impl TryRng for EphemeralIkm {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> std::result::Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> std::result::Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> std::result::Result<(), Infallible> {
        match self.ikm.get(self.used..self.used.saturating_add(dst.len())) {
            Some(src) => {
                dst.copy_from_slice(src);
                self.used += dst.len();
            }
            None => {
                dst.fill(0);
                self.overdrawn = true;
            }
        }
        Ok(())
    }
}
impl TryCryptoRng for EphemeralIkm {}

// ---------------------------------------------------------------- keys

/// A clinician's public key (X25519, 32 bytes). Text form:
/// `aorta-clinician-1` followed by 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClinicianPublic([u8; 32]);

impl ClinicianPublic {
    /// Wraps 32 public key bytes (any value; a low-order point is refused
    /// when sealing, with [`ResultsError::BadRecipient`]).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// The text form `aorta-clinician-1<64 lower-case hex>`.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_TEXT_PREFIX}{}", to_hex(&self.0))
    }
    /// Parses the text form exactly: the prefix, then exactly 64 lower-case
    /// hex digits, nothing else (no whitespace).
    pub fn from_text(s: &str) -> Result<Self> {
        let bytes = key_text(s, Container::PublicKeyText, PUBLIC_TEXT_PREFIX, false)?;
        Ok(Self(*bytes))
    }
}

impl fmt::Debug for ClinicianPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClinicianPublic({})", self.to_text())
    }
}

impl fmt::Display for ClinicianPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl FromStr for ClinicianPublic {
    type Err = ResultsError;
    fn from_str(s: &str) -> Result<Self> {
        Self::from_text(s)
    }
}

/// A clinician's identity: an X25519 secret key (zeroized on drop; `Debug`
/// shows only the public key). Text form: `AORTA-CLINICIAN-SECRET-1`
/// followed by 64 upper-case hex digits.
pub struct ClinicianIdentity {
    secret: Zeroizing<[u8; 32]>,
    public: ClinicianPublic,
}

impl fmt::Debug for ClinicianIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ClinicianIdentity {{ public: {} }}",
            self.public.to_text()
        )
    }
}

impl ClinicianIdentity {
    /// A fresh identity from the OS CSPRNG.
    pub fn generate() -> Result<Self> {
        let sk = random_array::<32>()?;
        Self::from_secret_bytes(&sk)
    }

    /// The identity with these 32 secret key bytes (an X25519 scalar, clamped
    /// when used). For tests and vectors; keep the caller's copy zeroizing.
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Result<Self> {
        let sk = <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(secret).map_err(|_| {
            ResultsError::Internal {
                what: "X25519 refused a 32-byte secret key",
            }
        })?;
        let pk = X25519HkdfSha256::sk_to_pk(&sk).to_bytes();
        let mut public = [0u8; 32];
        public.copy_from_slice(&pk);
        Ok(Self {
            secret: Zeroizing::new(*secret),
            public: ClinicianPublic(public),
        })
    }

    /// The public key to give to the key broker / subscription.
    pub fn public(&self) -> ClinicianPublic {
        self.public
    }

    /// The secret key's text form (zeroizing; write it only to a 0600 file).
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(SECRET_TEXT_PREFIX.len() + 64));
        s.push_str(SECRET_TEXT_PREFIX);
        push_hex(&mut s, self.secret.as_ref(), true);
        s
    }

    /// Parses the secret key text exactly: the prefix, then exactly 64
    /// upper-case hex digits, nothing else.
    pub fn from_text(s: &str) -> Result<Self> {
        let bytes = key_text(s, Container::SecretKeyText, SECRET_TEXT_PREFIX, true)?;
        Self::from_secret_bytes(&bytes)
    }

    /// The identity file: two `#` comment lines (creation note, public key)
    /// and the secret key line, `\n`-terminated.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(200));
        s.push_str("# aorta clinician identity: secret, keep this file private (mode 0600)\n");
        s.push_str("# public key: ");
        s.push_str(&self.public.to_text());
        s.push('\n');
        s.push_str(&self.to_text());
        s.push('\n');
        s
    }

    /// Parses an identity file: lines split on `\n` (a trailing `\r` is
    /// dropped); empty lines and lines starting with `#` are skipped; exactly
    /// one remaining line, which [`ClinicianIdentity::from_text`] must accept.
    /// If a `# public key:` comment is present it must match the secret key.
    pub fn from_file_text(text: &str) -> Result<Self> {
        let what = Container::SecretKeyText;
        if text.len() > MAX_IDENTITY_FILE_LEN {
            return Err(ResultsError::Oversize {
                what,
                field: "identity file",
                len: text.len(),
                max: MAX_IDENTITY_FILE_LEN,
            });
        }
        let mut key_line: Option<(usize, &str)> = None;
        let mut claimed_public: Option<&str> = None;
        let mut offset = 0usize;
        for raw in text.split('\n') {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if let Some(comment) = line.strip_prefix('#') {
                if let Some(pk) = comment.trim_start().strip_prefix("public key:") {
                    claimed_public = Some(pk.trim());
                }
            } else if !line.is_empty() {
                if key_line.is_some() {
                    return Err(ResultsError::BadField {
                        what,
                        field: "identity file",
                        offset,
                        reason: "more than one key line",
                    });
                }
                key_line = Some((offset, line));
            }
            offset = offset.saturating_add(raw.len() + 1);
        }
        let (_, line) = key_line.ok_or(ResultsError::BadField {
            what,
            field: "identity file",
            offset: 0,
            reason: "no key line",
        })?;
        let id = Self::from_text(line)?;
        if let Some(pk) = claimed_public {
            if pk != id.public.to_text() {
                return Err(ResultsError::BadField {
                    what,
                    field: "public key comment",
                    offset: 0,
                    reason: "does not match the secret key",
                });
            }
        }
        Ok(id)
    }

    fn hpke_secret(&self) -> Result<<X25519HkdfSha256 as hpke::Kem>::PrivateKey> {
        <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(self.secret.as_ref()).map_err(
            |_| ResultsError::Internal {
                what: "X25519 refused a 32-byte secret key",
            },
        )
    }
}

// ---------------------------------------------------------------- sessions

/// What an envelope's cleartext header says (readable without any key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeInfo {
    /// The subscriber the envelope is sealed to.
    pub subscriber_id: String,
    /// The session id.
    pub session_id: [u8; SESSION_ID_LEN],
}

struct ParsedEnvelope<'a> {
    info: EnvelopeInfo,
    header: &'a [u8],
    enc: &'a [u8],
    ct: &'a [u8],
}

fn envelope_min_len(sub_len: usize) -> usize {
    6 + sub_len + SESSION_ID_LEN + ENC_LEN + ENVELOPE_CT_LEN
}

fn parse_envelope(bytes: &[u8]) -> Result<ParsedEnvelope<'_>> {
    let what = Container::SessionEnvelope;
    check_head(
        bytes,
        what,
        (&SESSION_MAGIC, "AORS"),
        SESSION_VERSION,
        envelope_min_len(1),
    )?;
    let n = usize::from(*bytes.get(5).ok_or(ResultsError::Truncated {
        what,
        len: bytes.len(),
        min: envelope_min_len(1),
    })?);
    if n == 0 {
        return Err(ResultsError::BadField {
            what,
            field: "subscriber_len",
            offset: 5,
            reason: "must be 1..=255",
        });
    }
    let total = envelope_min_len(n);
    if bytes.len() < total {
        return Err(ResultsError::Truncated {
            what,
            len: bytes.len(),
            min: total,
        });
    }
    if bytes.len() > total {
        return Err(ResultsError::BadField {
            what,
            field: "length",
            offset: total,
            reason: "trailing bytes after the ciphertext",
        });
    }
    let (header, rest) =
        bytes
            .split_at_checked(6 + n + SESSION_ID_LEN)
            .ok_or(ResultsError::Internal {
                what: "envelope length checked",
            })?;
    let (enc, ct) = rest
        .split_at_checked(ENC_LEN)
        .ok_or(ResultsError::Internal {
            what: "envelope length checked",
        })?;
    let sub = header.get(6..6 + n).ok_or(ResultsError::Internal {
        what: "envelope length checked",
    })?;
    let subscriber_id = std::str::from_utf8(sub)
        .map_err(|_| ResultsError::BadField {
            what,
            field: "subscriber",
            offset: 6,
            reason: "not UTF-8",
        })?
        .to_owned();
    let mut session_id = [0u8; SESSION_ID_LEN];
    session_id.copy_from_slice(header.get(6 + n..).ok_or(ResultsError::Internal {
        what: "envelope length checked",
    })?);
    Ok(ParsedEnvelope {
        info: EnvelopeInfo {
            subscriber_id,
            session_id,
        },
        header,
        enc,
        ct,
    })
}

/// Reads an envelope's cleartext header (subscriber id, session id) without
/// opening it — what the untrusted host (and a reader indexing envelopes)
/// sees. Validates the whole layout.
pub fn envelope_info(envelope: &[u8]) -> Result<EnvelopeInfo> {
    parse_envelope(envelope).map(|p| p.info)
}

fn hpke_info(subscriber_id: &str, session_id: &[u8; SESSION_ID_LEN]) -> Result<Vec<u8>> {
    let n = check_id("subscriber id", subscriber_id)?;
    let mut info = Vec::with_capacity(SESSION_INFO_LABEL.len() + 1 + MAX_ID_LEN + SESSION_ID_LEN);
    info.extend_from_slice(SESSION_INFO_LABEL);
    info.push(n);
    info.extend_from_slice(subscriber_id.as_bytes());
    info.extend_from_slice(session_id);
    Ok(info)
}

fn result_aead_key(
    session_key: &[u8; SESSION_KEY_LEN],
    session_id: &[u8; SESSION_ID_LEN],
) -> Result<Zeroizing<[u8; 32]>> {
    hkdf32(session_id, session_key, &[RESULT_KEY_LABEL])
}

fn result_aad(
    session_id: &[u8; SESSION_ID_LEN],
    subscriber_id: &str,
    result_id: &str,
) -> Result<Vec<u8>> {
    let sn = check_id("subscriber id", subscriber_id)?;
    let rn = check_id("result id", result_id)?;
    let mut aad =
        Vec::with_capacity(5 + SESSION_ID_LEN + 2 + subscriber_id.len() + result_id.len());
    aad.extend_from_slice(&RESULT_MAGIC);
    aad.push(RESULT_VERSION);
    aad.extend_from_slice(session_id);
    aad.push(sn);
    aad.extend_from_slice(subscriber_id.as_bytes());
    aad.push(rn);
    aad.extend_from_slice(result_id.as_bytes());
    Ok(aad)
}

/// The worker side of one subscriber's result session: seals results that
/// only that subscriber's identity opens. The session key is zeroized on
/// drop; `Debug` shows the subscriber and session id only.
pub struct ResultSession {
    subscriber_id: String,
    session_id: [u8; SESSION_ID_LEN],
    session_key: Zeroizing<[u8; SESSION_KEY_LEN]>,
    aead_key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for ResultSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ResultSession {{ subscriber: {:?}, session: {} }}",
            self.subscriber_id,
            to_hex(&self.session_id)
        )
    }
}

impl ResultSession {
    /// Opens a new session for `subscriber_id` (1..=255 bytes of UTF-8):
    /// a random session key and id, the key HPKE-sealed to `recipient`.
    /// Returns the session and its envelope (to store beside the results).
    pub fn open_new(subscriber_id: &str, recipient: &ClinicianPublic) -> Result<(Self, Vec<u8>)> {
        let session_key = random_array::<SESSION_KEY_LEN>()?;
        let session_id = random_array::<SESSION_ID_LEN>()?;
        let eph = random_array::<32>()?;
        Self::open_new_with_randomness(subscriber_id, recipient, &session_key, *session_id, &eph)
    }

    /// [`ResultSession::open_new`] with explicit randomness: the session key,
    /// the session id and the 32 bytes of HPKE ephemeral key material. For
    /// test vectors only: reusing any of these values breaks confidentiality.
    #[doc(hidden)]
    pub fn open_new_with_randomness(
        subscriber_id: &str,
        recipient: &ClinicianPublic,
        session_key: &[u8; SESSION_KEY_LEN],
        session_id: [u8; SESSION_ID_LEN],
        ephemeral_ikm: &[u8; 32],
    ) -> Result<(Self, Vec<u8>)> {
        let n = check_id("subscriber id", subscriber_id)?;
        let info = hpke_info(subscriber_id, &session_id)?;
        let pk = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(recipient.as_bytes())
            .map_err(|_| ResultsError::BadRecipient)?;
        let mut header = Vec::with_capacity(envelope_min_len(usize::from(n)));
        header.extend_from_slice(&SESSION_MAGIC);
        header.push(SESSION_VERSION);
        header.push(n);
        header.extend_from_slice(subscriber_id.as_bytes());
        header.extend_from_slice(&session_id);
        let mut rng = EphemeralIkm {
            ikm: Zeroizing::new(*ephemeral_ikm),
            used: 0,
            overdrawn: false,
        };
        let sealed = hpke::single_shot_seal_with_rng::<
            ChaCha20Poly1305,
            HkdfSha256,
            X25519HkdfSha256,
        >(&OpModeS::Base, &pk, &info, session_key, &header, &mut rng);
        if rng.overdrawn {
            return Err(ResultsError::Internal {
                what: "HPKE drew more ephemeral randomness than X25519 needs",
            });
        }
        let (enc, ct) = sealed.map_err(|e| match e {
            hpke::HpkeError::EncapError => ResultsError::BadRecipient,
            _ => ResultsError::Internal {
                what: "HPKE seal failed",
            },
        })?;
        let mut envelope = header;
        envelope.extend_from_slice(&enc.to_bytes());
        envelope.extend_from_slice(&ct);
        if envelope.len() != envelope_min_len(usize::from(n)) {
            return Err(ResultsError::Internal {
                what: "HPKE produced an unexpected length",
            });
        }
        let aead_key = result_aead_key(session_key, &session_id)?;
        Ok((
            Self {
                subscriber_id: subscriber_id.to_owned(),
                session_id,
                session_key: Zeroizing::new(*session_key),
                aead_key,
            },
            envelope,
        ))
    }

    /// The subscriber this session seals to.
    pub fn subscriber_id(&self) -> &str {
        &self.subscriber_id
    }

    /// The session id (also in the envelope and every sealed result).
    pub fn session_id(&self) -> [u8; SESSION_ID_LEN] {
        self.session_id
    }

    /// Seals one result (`plaintext` ≤ 16 MiB) under `result_id` (1..=255
    /// bytes of UTF-8, e.g. `ECG-0001/hr/000042`), with a random nonce.
    pub fn seal(&self, result_id: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
        let nonce = random_array::<NONCE_LEN>()?;
        self.seal_with_nonce(result_id, plaintext, *nonce)
    }

    /// [`ResultSession::seal`] with an explicit nonce. For test vectors only:
    /// a nonce used twice under one session breaks AES-GCM.
    #[doc(hidden)]
    pub fn seal_with_nonce(
        &self,
        result_id: &str,
        plaintext: &[u8],
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>> {
        if plaintext.len() > MAX_RESULT_LEN {
            return Err(ResultsError::Oversize {
                what: Container::Argument,
                field: "result plaintext",
                len: plaintext.len(),
                max: MAX_RESULT_LEN,
            });
        }
        let aad = result_aad(&self.session_id, &self.subscriber_id, result_id)?;
        let mut header = [0u8; RESULT_HEADER_LEN];
        let (head, rest) = header.split_at_mut(RESULT_MAGIC.len() + 1);
        head.copy_from_slice(&[RESULT_MAGIC.as_slice(), &[RESULT_VERSION]].concat());
        let (sid, n) = rest.split_at_mut(self.session_id.len());
        sid.copy_from_slice(&self.session_id);
        n.copy_from_slice(&nonce);
        seal_after_header(&aead_key(&self.aead_key)?, &header, plaintext, nonce, &aad)
    }

    /// The session's secret state, for the worker to keep in its sealed
    /// checkpoint (see [`seal_state`]) and resume the same session after a
    /// restart with [`ResultSession::from_checkpoint`]. Zeroizing; never
    /// store it unsealed. Layout: `version(1) ‖ session_id(16) ‖
    /// session_key(32) ‖ len(sub)(1) ‖ sub`.
    pub fn to_checkpoint(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(Vec::with_capacity(
            1 + SESSION_ID_LEN + SESSION_KEY_LEN + 1 + self.subscriber_id.len(),
        ));
        v.push(SESSION_CHECKPOINT_VERSION);
        v.extend_from_slice(&self.session_id);
        v.extend_from_slice(self.session_key.as_ref());
        // The id length was checked (1..=255) when the session was created.
        v.push(u8::try_from(self.subscriber_id.len()).unwrap_or(u8::MAX));
        v.extend_from_slice(self.subscriber_id.as_bytes());
        v
    }

    /// Restores a session from [`ResultSession::to_checkpoint`] bytes.
    pub fn from_checkpoint(bytes: &[u8]) -> Result<Self> {
        let what = Container::SessionCheckpoint;
        let min = 1 + SESSION_ID_LEN + SESSION_KEY_LEN + 2;
        let version = *bytes
            .first()
            .ok_or(ResultsError::Truncated { what, len: 0, min })?;
        if version != SESSION_CHECKPOINT_VERSION {
            return Err(ResultsError::UnsupportedVersion {
                what,
                version,
                supported: SESSION_CHECKPOINT_VERSION,
            });
        }
        let truncated = ResultsError::Truncated {
            what,
            len: bytes.len(),
            min,
        };
        let sid = bytes.get(1..1 + SESSION_ID_LEN).ok_or(truncated.clone())?;
        let key = bytes
            .get(1 + SESSION_ID_LEN..1 + SESSION_ID_LEN + SESSION_KEY_LEN)
            .ok_or(truncated.clone())?;
        let n_at = 1 + SESSION_ID_LEN + SESSION_KEY_LEN;
        let n = usize::from(*bytes.get(n_at).ok_or(truncated)?);
        if n == 0 {
            return Err(ResultsError::BadField {
                what,
                field: "subscriber_len",
                offset: n_at,
                reason: "must be 1..=255",
            });
        }
        let sub = bytes.get(n_at + 1..).ok_or(ResultsError::Truncated {
            what,
            len: bytes.len(),
            min: n_at + 1 + n,
        })?;
        if sub.len() != n {
            return Err(if sub.len() < n {
                ResultsError::Truncated {
                    what,
                    len: bytes.len(),
                    min: n_at + 1 + n,
                }
            } else {
                ResultsError::BadField {
                    what,
                    field: "length",
                    offset: n_at + 1 + n,
                    reason: "trailing bytes",
                }
            });
        }
        let subscriber_id = std::str::from_utf8(sub)
            .map_err(|_| ResultsError::BadField {
                what,
                field: "subscriber",
                offset: n_at + 1,
                reason: "not UTF-8",
            })?
            .to_owned();
        let mut session_id = [0u8; SESSION_ID_LEN];
        session_id.copy_from_slice(sid);
        let mut session_key = Zeroizing::new([0u8; SESSION_KEY_LEN]);
        session_key.copy_from_slice(key);
        let aead_key = result_aead_key(&session_key, &session_id)?;
        Ok(Self {
            subscriber_id,
            session_id,
            session_key,
            aead_key,
        })
    }
}

/// The clinician side of a session: opens the session's sealed results.
/// Its key is zeroized on drop; `Debug` shows the subscriber and session id.
pub struct OpenedSession {
    subscriber_id: String,
    session_id: [u8; SESSION_ID_LEN],
    aead_key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for OpenedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OpenedSession {{ subscriber: {:?}, session: {} }}",
            self.subscriber_id,
            to_hex(&self.session_id)
        )
    }
}

/// Opens a session envelope with the clinician's identity.
pub fn open_envelope(identity: &ClinicianIdentity, envelope: &[u8]) -> Result<OpenedSession> {
    let p = parse_envelope(envelope)?;
    open_parsed(identity, p)
}

/// [`open_envelope`], refusing first (with [`ResultsError::WrongSubscriber`])
/// an envelope addressed to another subscriber id than `subscriber_id`.
pub fn open_envelope_as(
    identity: &ClinicianIdentity,
    subscriber_id: &str,
    envelope: &[u8],
) -> Result<OpenedSession> {
    let p = parse_envelope(envelope)?;
    if p.info.subscriber_id != subscriber_id {
        return Err(ResultsError::WrongSubscriber {
            expected: subscriber_id.to_owned(),
            found: p.info.subscriber_id,
        });
    }
    open_parsed(identity, p)
}

fn open_parsed(identity: &ClinicianIdentity, p: ParsedEnvelope<'_>) -> Result<OpenedSession> {
    let what = Container::SessionEnvelope;
    let info = hpke_info(&p.info.subscriber_id, &p.info.session_id)?;
    let enc = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(p.enc)
        .map_err(|_| ResultsError::AuthenticationFailed { what })?;
    let sk = identity.hpke_secret()?;
    let pt = Zeroizing::new(
        hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &sk,
            &enc,
            &info,
            p.ct,
            p.header,
        )
        .map_err(|_| ResultsError::AuthenticationFailed { what })?,
    );
    let mut session_key = Zeroizing::new([0u8; SESSION_KEY_LEN]);
    if pt.len() != SESSION_KEY_LEN {
        return Err(ResultsError::BadField {
            what,
            field: "session key",
            offset: 0,
            reason: "authenticated plaintext is not 32 bytes",
        });
    }
    session_key.copy_from_slice(&pt);
    let aead_key = result_aead_key(&session_key, &p.info.session_id)?;
    Ok(OpenedSession {
        subscriber_id: p.info.subscriber_id,
        session_id: p.info.session_id,
        aead_key,
    })
}

/// Reads the session id of a sealed result (to find the envelope it
/// needs), checking magic and version.
pub fn sealed_result_session_id(sealed: &[u8]) -> Result<[u8; SESSION_ID_LEN]> {
    let what = Container::SealedResult;
    let min = RESULT_HEADER_LEN + TAG_LEN;
    check_head(sealed, what, (&RESULT_MAGIC, "AORR"), RESULT_VERSION, min)?;
    let mut sid = [0u8; SESSION_ID_LEN];
    sid.copy_from_slice(
        sealed
            .get(5..5 + SESSION_ID_LEN)
            .ok_or(ResultsError::Truncated {
                what,
                len: sealed.len(),
                min,
            })?,
    );
    Ok(sid)
}

impl OpenedSession {
    /// The subscriber id the envelope named.
    pub fn subscriber_id(&self) -> &str {
        &self.subscriber_id
    }

    /// The session id.
    pub fn session_id(&self) -> [u8; SESSION_ID_LEN] {
        self.session_id
    }

    /// Opens the sealed result stored under `result_id`. Refuses a result of
    /// another session, one moved from another result id or subscriber, and
    /// any altered byte.
    pub fn open(&self, result_id: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let what = Container::SealedResult;
        let sid = sealed_result_session_id(sealed)?;
        let max = RESULT_HEADER_LEN + MAX_RESULT_LEN + TAG_LEN;
        if sealed.len() > max {
            return Err(ResultsError::Oversize {
                what,
                field: "sealed result",
                len: sealed.len(),
                max,
            });
        }
        let min = RESULT_HEADER_LEN + TAG_LEN;
        if sealed.len() < min {
            return Err(ResultsError::Truncated {
                what,
                len: sealed.len(),
                min,
            });
        }
        if !bool::from(sid.ct_eq(&self.session_id)) {
            return Err(ResultsError::WrongSession {
                expected: to_hex(&self.session_id),
                found: to_hex(&sid),
            });
        }
        let aad = result_aad(&self.session_id, &self.subscriber_id, result_id)?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(sealed.get(5 + SESSION_ID_LEN..RESULT_HEADER_LEN).ok_or(
            ResultsError::Internal {
                what: "sealed result length checked",
            },
        )?);
        let mut buf = Zeroizing::new(
            sealed
                .get(RESULT_HEADER_LEN..)
                .ok_or(ResultsError::Internal {
                    what: "sealed result length checked",
                })?
                .to_vec(),
        );
        let key = aead_key(&self.aead_key)?;
        let n = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                &mut buf,
            )
            .map_err(|_| ResultsError::AuthenticationFailed { what })?
            .len();
        buf.truncate(n);
        Ok(buf)
    }
}

// ---------------------------------------------------------------- state

fn state_aad(context: &[u8]) -> Result<Vec<u8>> {
    if context.len() > MAX_CONTEXT_LEN {
        return Err(ResultsError::Oversize {
            what: Container::Argument,
            field: "state context",
            len: context.len(),
            max: MAX_CONTEXT_LEN,
        });
    }
    let mut aad = Vec::with_capacity(5 + context.len());
    aad.extend_from_slice(&STATE_MAGIC);
    aad.push(STATE_VERSION);
    aad.extend_from_slice(context);
    Ok(aad)
}

/// Seals checkpoint `state` (≤ 256 MiB) under the broker-released 32-byte
/// state key, bound to `context` (≤ 65,535 bytes, e.g. the assignment
/// name): it opens only with the same key and context.
pub fn seal_state(key: &[u8; 32], context: &[u8], state: &[u8]) -> Result<Vec<u8>> {
    let nonce = random_array::<NONCE_LEN>()?;
    seal_state_with_nonce(key, context, state, *nonce)
}

/// [`seal_state`] with an explicit nonce. For test vectors only: a nonce
/// used twice under one state key breaks AES-GCM.
#[doc(hidden)]
pub fn seal_state_with_nonce(
    key: &[u8; 32],
    context: &[u8],
    state: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Result<Vec<u8>> {
    if state.len() > MAX_STATE_LEN {
        return Err(ResultsError::Oversize {
            what: Container::Argument,
            field: "state plaintext",
            len: state.len(),
            max: MAX_STATE_LEN,
        });
    }
    let aad = state_aad(context)?;
    let k = hkdf32(&[], key, &[STATE_KEY_LABEL])?;
    let mut header = [0u8; STATE_HEADER_LEN];
    let (head, n) = header.split_at_mut(STATE_MAGIC.len() + 1);
    head.copy_from_slice(&[STATE_MAGIC.as_slice(), &[STATE_VERSION]].concat());
    n.copy_from_slice(&nonce);
    seal_after_header(&aead_key(&k)?, &header, state, nonce, &aad)
}

/// Opens state sealed by [`seal_state`] with the same key and context.
pub fn open_state(key: &[u8; 32], context: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let what = Container::SealedState;
    let min = STATE_HEADER_LEN + TAG_LEN;
    check_head(sealed, what, (&STATE_MAGIC, "AOST"), STATE_VERSION, min)?;
    if sealed.len() < min {
        return Err(ResultsError::Truncated {
            what,
            len: sealed.len(),
            min,
        });
    }
    let max = STATE_HEADER_LEN + MAX_STATE_LEN + TAG_LEN;
    if sealed.len() > max {
        return Err(ResultsError::Oversize {
            what,
            field: "sealed state",
            len: sealed.len(),
            max,
        });
    }
    let aad = state_aad(context)?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(
        sealed
            .get(5..STATE_HEADER_LEN)
            .ok_or(ResultsError::Internal {
                what: "sealed state length checked",
            })?,
    );
    let mut buf = Zeroizing::new(
        sealed
            .get(STATE_HEADER_LEN..)
            .ok_or(ResultsError::Internal {
                what: "sealed state length checked",
            })?
            .to_vec(),
    );
    let k = hkdf32(&[], key, &[STATE_KEY_LABEL])?;
    let key = aead_key(&k)?;
    let n = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad),
            &mut buf,
        )
        .map_err(|_| ResultsError::AuthenticationFailed { what })?
        .len();
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn alice() -> ClinicianIdentity {
        ClinicianIdentity::from_secret_bytes(&[0x11; 32]).unwrap()
    }
    fn bob() -> ClinicianIdentity {
        ClinicianIdentity::from_secret_bytes(&[0x22; 32]).unwrap()
    }

    #[test]
    fn round_trip_and_bindings() {
        let a = alice();
        let (s, env) = ResultSession::open_new("dr-alice", &a.public()).unwrap();
        let sealed = s.seal("ECG-1/hr/1", b"{\"hr\":70}").unwrap();
        assert_eq!(sealed.len(), RESULT_HEADER_LEN + 9 + TAG_LEN);
        assert_eq!(sealed_result_session_id(&sealed).unwrap(), s.session_id());
        let info = envelope_info(&env).unwrap();
        assert_eq!(info.subscriber_id, "dr-alice");
        assert_eq!(info.session_id, s.session_id());
        let o = open_envelope(&a, &env).unwrap();
        assert_eq!(o.subscriber_id(), "dr-alice");
        assert_eq!(&o.open("ECG-1/hr/1", &sealed).unwrap()[..], b"{\"hr\":70}");
        // Moved to another result id: refused.
        assert_eq!(
            o.open("ECG-1/hr/2", &sealed),
            Err(ResultsError::AuthenticationFailed {
                what: Container::SealedResult
            })
        );
        // Empty plaintext is allowed.
        let e = s.seal("r", b"").unwrap();
        assert!(o.open("r", &e).unwrap().is_empty());
        // Two seals of the same result differ (random nonce).
        assert_ne!(s.seal("r", b"x").unwrap(), s.seal("r", b"x").unwrap());
    }

    #[test]
    fn wrong_identity_subscriber_and_session_are_refused() {
        let a = alice();
        let (s, env) = ResultSession::open_new("dr-alice", &a.public()).unwrap();
        assert_eq!(
            open_envelope(&bob(), &env).unwrap_err(),
            ResultsError::AuthenticationFailed {
                what: Container::SessionEnvelope
            }
        );
        assert!(matches!(
            open_envelope_as(&a, "dr-bob", &env),
            Err(ResultsError::WrongSubscriber { .. })
        ));
        assert!(open_envelope_as(&a, "dr-alice", &env).is_ok());
        // A result of another session (same clinician): WrongSession.
        let (s2, env2) = ResultSession::open_new("dr-alice", &a.public()).unwrap();
        let o2 = open_envelope(&a, &env2).unwrap();
        let sealed = s.seal("r1", b"data").unwrap();
        assert!(matches!(
            o2.open("r1", &sealed),
            Err(ResultsError::WrongSession { .. })
        ));
        // The host rewrites the session id of a result to the other session:
        // the AAD binds it, so the other session's key refuses it.
        let mut moved = sealed.clone();
        moved[5..21].copy_from_slice(&s2.session_id());
        assert_eq!(
            o2.open("r1", &moved),
            Err(ResultsError::AuthenticationFailed {
                what: Container::SealedResult
            })
        );
        // Rewriting the subscriber id in the envelope header breaks HPKE.
        let mut env_b = env.clone();
        env_b[6..14].copy_from_slice(b"dr-alicf");
        assert!(matches!(
            open_envelope(&a, &env_b),
            Err(ResultsError::AuthenticationFailed { .. })
        ));
    }

    #[test]
    fn a_result_cannot_move_to_another_subscriber_with_the_same_session_key() {
        // Even if two subscribers' sessions shared a session key and id (a
        // worker bug the API prevents), the subscriber id in the AAD keeps
        // results apart.
        let a = alice();
        let key = [7u8; 32];
        let sid = [9u8; 16];
        let (sa, _) =
            ResultSession::open_new_with_randomness("dr-alice", &a.public(), &key, sid, &[1; 32])
                .unwrap();
        let (_, env_b) =
            ResultSession::open_new_with_randomness("dr-bob", &a.public(), &key, sid, &[2; 32])
                .unwrap();
        let ob = open_envelope(&a, &env_b).unwrap();
        let sealed = sa.seal("r", b"secret").unwrap();
        assert!(matches!(
            ob.open("r", &sealed),
            Err(ResultsError::AuthenticationFailed { .. })
        ));
    }

    #[test]
    fn id_limits() {
        let a = alice();
        let long = "x".repeat(256);
        assert!(matches!(
            ResultSession::open_new(&long, &a.public()),
            Err(ResultsError::Oversize { .. })
        ));
        assert!(matches!(
            ResultSession::open_new("", &a.public()),
            Err(ResultsError::BadField { .. })
        ));
        let max = "y".repeat(255);
        let (s, env) = ResultSession::open_new(&max, &a.public()).unwrap();
        let o = open_envelope(&a, &env).unwrap();
        let sealed = s.seal(&max, b"1").unwrap();
        assert_eq!(&o.open(&max, &sealed).unwrap()[..], b"1");
        assert!(matches!(
            s.seal(&long, b"1"),
            Err(ResultsError::Oversize { .. })
        ));
        assert!(matches!(
            s.seal("", b"1"),
            Err(ResultsError::BadField { .. })
        ));
        let big = vec![0u8; MAX_RESULT_LEN + 1];
        assert!(matches!(
            s.seal("r", &big),
            Err(ResultsError::Oversize { .. })
        ));
    }

    #[test]
    fn public_key_is_standard_x25519() {
        // RFC 7748 section 6.1, Alice's key pair.
        let sk: [u8; 32] = *hex_array::<32>(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
            false,
        )
        .unwrap();
        let id = ClinicianIdentity::from_secret_bytes(&sk).unwrap();
        assert_eq!(
            to_hex(id.public().as_bytes()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
    }

    #[test]
    fn low_order_recipient_is_refused() {
        // The all-zero point and 1 are low-order: DH gives all zeros.
        for pk in [[0u8; 32], {
            let mut b = [0u8; 32];
            b[0] = 1;
            b
        }] {
            assert_eq!(
                ResultSession::open_new("s", &ClinicianPublic::from_bytes(pk)).unwrap_err(),
                ResultsError::BadRecipient
            );
        }
    }

    #[test]
    fn text_forms() {
        let a = alice();
        let t = a.to_text();
        assert!(t.starts_with(SECRET_TEXT_PREFIX));
        assert_eq!(t.len(), SECRET_TEXT_PREFIX.len() + 64);
        let back = ClinicianIdentity::from_text(&t).unwrap();
        assert_eq!(back.public(), a.public());
        let p = a.public().to_text();
        assert!(p.starts_with(PUBLIC_TEXT_PREFIX));
        assert_eq!(ClinicianPublic::from_text(&p).unwrap(), a.public());
        assert_eq!(p.parse::<ClinicianPublic>().unwrap(), a.public());
        // Strict: wrong case, whitespace, length, prefix.
        for bad in [
            t.to_lowercase(),
            format!("{}\n", &*t),
            format!(" {}", &*t),
            t[..t.len() - 1].to_string(),
            format!("{}0", &*t),
            t.replacen("SECRET-1", "SECRET-2", 1),
            p.clone(),
        ] {
            assert!(ClinicianIdentity::from_text(&bad).is_err(), "{bad}");
        }
        for bad in [
            p.to_uppercase(),
            format!("{p}\n"),
            p[..p.len() - 2].to_string(),
            p.replacen("-1", "-2", 1),
            t.to_string(),
        ] {
            assert!(ClinicianPublic::from_text(&bad).is_err(), "{bad}");
        }
        // Identity file round trip; tampered public comment refused.
        let f = a.to_file_text();
        assert_eq!(
            ClinicianIdentity::from_file_text(&f).unwrap().public(),
            a.public()
        );
        assert_eq!(
            ClinicianIdentity::from_file_text(&f.replace('\n', "\r\n"))
                .unwrap()
                .public(),
            a.public()
        );
        let other = bob().public().to_text();
        assert!(ClinicianIdentity::from_file_text(&f.replace(&p, &other)).is_err());
        let twice = format!("{}{}\n", &*f, &*t);
        assert!(ClinicianIdentity::from_file_text(&twice).is_err());
        assert!(ClinicianIdentity::from_file_text("# nothing\n").is_err());
    }

    #[test]
    fn debug_prints_no_secret() {
        let a = alice();
        let (s, env) = ResultSession::open_new("dr-alice", &a.public()).unwrap();
        let o = open_envelope(&a, &env).unwrap();
        let secret_hex = to_hex(&[0x11; 32]);
        for d in [format!("{a:?}"), format!("{s:?}"), format!("{o:?}")] {
            assert!(!d.contains(&secret_hex), "{d}");
            assert!(!d.contains("17, 17"), "{d}");
            assert!(!d.to_lowercase().contains(&to_hex(&*s.session_key)), "{d}");
        }
    }

    #[test]
    fn session_checkpoint_round_trip() {
        let a = alice();
        let (s, env) = ResultSession::open_new("dr-alice", &a.public()).unwrap();
        let cp = s.to_checkpoint();
        let s2 = ResultSession::from_checkpoint(&cp).unwrap();
        assert_eq!(s2.session_id(), s.session_id());
        assert_eq!(s2.subscriber_id(), "dr-alice");
        let o = open_envelope(&a, &env).unwrap();
        let sealed = s2.seal("after-restart", b"42").unwrap();
        assert_eq!(&o.open("after-restart", &sealed).unwrap()[..], b"42");
        for n in 0..cp.len() {
            assert!(ResultSession::from_checkpoint(&cp[..n]).is_err(), "{n}");
        }
        let mut long = cp.to_vec();
        long.push(b'x');
        assert!(ResultSession::from_checkpoint(&long).is_err());
        let mut v = cp.to_vec();
        v[0] = 2;
        assert!(matches!(
            ResultSession::from_checkpoint(&v),
            Err(ResultsError::UnsupportedVersion { version: 2, .. })
        ));
    }

    #[test]
    fn state_round_trip_and_context_binding() {
        let k = [0x42; 32];
        let sealed = seal_state(&k, b"ward-a", b"operator state").unwrap();
        assert_eq!(
            &open_state(&k, b"ward-a", &sealed).unwrap()[..],
            b"operator state"
        );
        assert_eq!(
            open_state(&k, b"ward-b", &sealed),
            Err(ResultsError::AuthenticationFailed {
                what: Container::SealedState
            })
        );
        assert!(open_state(&[0x43; 32], b"ward-a", &sealed).is_err());
        let empty = seal_state(&k, b"", b"").unwrap();
        assert!(open_state(&k, b"", &empty).unwrap().is_empty());
        let big_ctx = vec![0u8; MAX_CONTEXT_LEN + 1];
        assert!(matches!(
            seal_state(&k, &big_ctx, b"x"),
            Err(ResultsError::Oversize { .. })
        ));
    }

    #[test]
    fn versions_and_magics_are_typed() {
        let a = alice();
        let (s, mut env) = ResultSession::open_new("d", &a.public()).unwrap();
        let mut r = s.seal("r", b"x").unwrap();
        let mut st = seal_state(&[1; 32], b"c", b"x").unwrap();
        for (buf, what) in [
            (&mut env, Container::SessionEnvelope),
            (&mut r, Container::SealedResult),
            (&mut st, Container::SealedState),
        ] {
            buf[4] = 2;
            let e = match what {
                Container::SessionEnvelope => envelope_info(buf).unwrap_err(),
                Container::SealedResult => sealed_result_session_id(buf).unwrap_err(),
                _ => open_state(&[1; 32], b"c", buf).unwrap_err(),
            };
            assert_eq!(
                e,
                ResultsError::UnsupportedVersion {
                    what,
                    version: 2,
                    supported: 1
                }
            );
            assert!(e.to_string().contains("upgrade aorta"));
            buf[0] = b'X';
            let e = match what {
                Container::SessionEnvelope => envelope_info(buf).unwrap_err(),
                Container::SealedResult => sealed_result_session_id(buf).unwrap_err(),
                _ => open_state(&[1; 32], b"c", buf).unwrap_err(),
            };
            assert!(matches!(e, ResultsError::BadMagic { .. }), "{e:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            let a = alice();
            let (s, env) = ResultSession::open_new_with_randomness(
                "dr-alice", &a.public(), &[3; 32], [4; 16], &[5; 32]).unwrap();
            let o = open_envelope(&a, &env).unwrap();
            let _ = envelope_info(&b);
            let _ = open_envelope(&a, &b);
            let _ = sealed_result_session_id(&b);
            prop_assert!(o.open("r", &b).is_err());
            prop_assert!(open_state(&[1; 32], b"c", &b).is_err());
            let _ = ResultSession::from_checkpoint(&b);
            let _ = s.seal("r", &b);
            if let Ok(t) = std::str::from_utf8(&b) {
                let _ = ClinicianIdentity::from_text(t);
                let _ = ClinicianIdentity::from_file_text(t);
                let _ = ClinicianPublic::from_text(t);
            }
        }

        #[test]
        fn arbitrary_headers_with_valid_magic_never_panic(
            which in 0u8..3,
            tail in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let a = alice();
            let (_, env) = ResultSession::open_new_with_randomness(
                "dr-alice", &a.public(), &[3; 32], [4; 16], &[5; 32]).unwrap();
            let o = open_envelope(&a, &env).unwrap();
            let magic: &[u8] = match which { 0 => b"AORS\x01", 1 => b"AORR\x01", _ => b"AOST\x01" };
            let mut b = magic.to_vec();
            b.extend_from_slice(&tail);
            prop_assert!(open_envelope(&a, &b).is_err());
            prop_assert!(o.open("r", &b).is_err());
            prop_assert!(open_state(&[1; 32], b"c", &b).is_err());
        }

        #[test]
        fn text_strings_never_panic(s in "\\PC{0,120}") {
            let _ = ClinicianIdentity::from_text(&s);
            let _ = ClinicianIdentity::from_file_text(&s);
            let _ = ClinicianPublic::from_text(&s);
        }
    }
}
