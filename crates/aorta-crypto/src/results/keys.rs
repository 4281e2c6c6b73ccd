//! Clinician keys ([`ClinicianPublic`], [`ClinicianIdentity`]) and their
//! text forms: a fixed prefix, then exactly 64 hex digits of one case
//! (strict [`aorta_base::hex`]: no sign, no whitespace, no `0x`).

use std::fmt;
use std::str::FromStr;

use aorta_base::hex::{self, Case};
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, Serializable};
use zeroize::Zeroizing;

use super::primitives::random_array;
use super::{
    Container, MAX_IDENTITY_FILE_LEN, PUBLIC_TEXT_PREFIX, Result, ResultsError, SECRET_TEXT_PREFIX,
};

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
        format!("{PUBLIC_TEXT_PREFIX}{}", hex::encode(&self.0))
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

    /// The clinician's authentication key (Ed25519), derived from this
    /// identity (`crate::auth::clinician_auth_key`): it signs the requests
    /// that read results; the server knows its public key.
    pub fn auth_key(&self) -> Result<crate::auth::SigningKey> {
        crate::auth::clinician_auth_key(&self.secret).map_err(|_| ResultsError::Internal {
            what: "deriving the clinician's authentication key",
        })
    }

    /// The secret key's text form (zeroizing; write it only to a 0600 file).
    pub fn to_text(&self) -> Zeroizing<String> {
        let digits = hex::encode_secret_upper(self.secret.as_ref());
        let mut s = Zeroizing::new(String::with_capacity(
            SECRET_TEXT_PREFIX.len() + digits.len(),
        ));
        s.push_str(SECRET_TEXT_PREFIX);
        s.push_str(&digits);
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
        if let Some(pk) = claimed_public
            && pk != id.public.to_text()
        {
            return Err(ResultsError::BadField {
                what,
                field: "public key comment",
                offset: 0,
                reason: "does not match the secret key",
            });
        }
        Ok(id)
    }

    pub(super) fn hpke_secret(&self) -> Result<<X25519HkdfSha256 as hpke::Kem>::PrivateKey> {
        <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(self.secret.as_ref()).map_err(
            |_| ResultsError::Internal {
                what: "X25519 refused a 32-byte secret key",
            },
        )
    }
}

// ---------------------------------------------------------------- sessions

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
    let case = if upper { Case::Upper } else { Case::Lower };
    hex::decode_array::<32>(rest, case).map_err(|_| ResultsError::BadField {
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
