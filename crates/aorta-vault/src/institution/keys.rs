//! An institution's Ed25519 key and its text forms, in the style of the
//! clinician keys ([`aorta_crypto::results`]): a fixed prefix and exactly
//! 64 hex digits, lower case for the public key, upper case for the secret.

use std::fmt;
use std::path::Path;

use aorta_base::hex::{self, Case};
use aorta_crypto::auth::SigningKey;
use zeroize::Zeroizing;

use crate::VaultError;

/// Prefix of an institution's public key text.
pub const PUBLIC_TEXT_PREFIX: &str = "aorta-institution-1";
/// Prefix of an institution's secret key text.
pub const SECRET_TEXT_PREFIX: &str = "AORTA-INSTITUTION-SECRET-1";
/// Longest key file read.
const MAX_KEY_FILE_LEN: usize = 4096;

fn malformed(what: &'static str, reason: &'static str) -> VaultError {
    VaultError::Malformed {
        what,
        offset: 0,
        reason,
    }
}

/// An institution's public key (Ed25519, 32 bytes). It is also the
/// institution's key id in certificates and requests. Text form:
/// `aorta-institution-1` followed by 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstitutionKey(pub [u8; 32]);

impl InstitutionKey {
    /// `aorta-institution-1<64 lower-case hex>`.
    pub fn to_text(&self) -> String {
        format!("{PUBLIC_TEXT_PREFIX}{}", hex::encode(&self.0))
    }

    /// Parses the text form (surrounding whitespace ignored): the prefix,
    /// then exactly 64 lower-case hex digits.
    pub fn from_text(s: &str) -> Result<Self, VaultError> {
        let bad = || {
            malformed(
                "institution public key",
                "expected aorta-institution-1 followed by 64 lower-case hex digits",
            )
        };
        let digits = s.trim().strip_prefix(PUBLIC_TEXT_PREFIX).ok_or_else(bad)?;
        let a = hex::decode_array::<32>(digits, Case::Lower).map_err(|_| bad())?;
        Ok(Self(*a))
    }
}

impl fmt::Debug for InstitutionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstitutionKey({})", self.to_text())
    }
}

impl fmt::Display for InstitutionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

/// An institution's signing key (Ed25519 seed; zeroized on drop; `Debug`
/// shows only the public key). It certifies doctors and signs emergency
/// requests; it never leaves the institution.
pub struct InstitutionSigningKey {
    key: SigningKey,
    public: InstitutionKey,
}

impl fmt::Debug for InstitutionSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstitutionSigningKey")
            .field("public", &self.public.to_text())
            .finish_non_exhaustive()
    }
}

fn auth_err(_: aorta_crypto::auth::AuthError) -> VaultError {
    VaultError::Internal {
        what: "Ed25519 refused a 32-byte seed",
    }
}

impl InstitutionSigningKey {
    /// A fresh key from the OS CSPRNG.
    pub fn generate() -> Result<Self, VaultError> {
        let seed = aorta_base::random::secret::<32>()?;
        Self::from_seed(&seed)
    }

    /// The key of a 32-byte RFC 8032 seed (test vectors, deterministic
    /// set-ups).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, VaultError> {
        let key = SigningKey::from_seed(seed).map_err(auth_err)?;
        let public = InstitutionKey(key.public());
        Ok(Self { key, public })
    }

    /// The public key to give to patients (they pin it).
    pub fn public(&self) -> InstitutionKey {
        self.public
    }

    /// Signs `msg` (already domain-separated by the caller).
    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg)
    }

    /// The key file: two `#` comment lines (a note, the public key) and
    /// `AORTA-INSTITUTION-SECRET-1<64 HEX>`; keep this file secret.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        let digits = hex::encode_secret_upper(self.key.seed());
        let mut s = Zeroizing::new(String::with_capacity(220));
        s.push_str("# aorta institution signing key: secret, keep this file private (mode 0600)\n");
        s.push_str("# public key: ");
        s.push_str(&self.public.to_text());
        s.push('\n');
        s.push_str(SECRET_TEXT_PREFIX);
        s.push_str(&digits);
        s.push('\n');
        s
    }

    /// Parses a key file: lines starting with `#` and empty lines skipped,
    /// exactly one key line (the prefix and exactly 64 upper-case hex
    /// digits); a `# public key:` comment, when present, must match.
    pub fn from_file_text(text: &str) -> Result<Self, VaultError> {
        const WHAT: &str = "institution key file";
        if text.len() > MAX_KEY_FILE_LEN {
            return Err(malformed(WHAT, "longer than 4096 bytes"));
        }
        let mut key_line = None;
        let mut comment_key = None;
        for line in text.lines().map(str::trim) {
            if line.is_empty() {
                continue;
            }
            if let Some(c) = line.strip_prefix('#') {
                if let Some(pk) = c.trim().strip_prefix("public key:") {
                    comment_key = Some(InstitutionKey::from_text(pk)?);
                }
                continue;
            }
            if key_line.replace(line).is_some() {
                return Err(malformed(WHAT, "more than one key line"));
            }
        }
        let bad = || {
            malformed(
                WHAT,
                "expected AORTA-INSTITUTION-SECRET-1 followed by 64 upper-case hex digits",
            )
        };
        let digits = key_line
            .and_then(|l| l.strip_prefix(SECRET_TEXT_PREFIX))
            .ok_or_else(bad)?;
        let seed = hex::decode_array::<32>(digits, Case::Upper).map_err(|_| bad())?;
        let k = Self::from_seed(&seed)?;
        if comment_key.is_some_and(|c| c != k.public) {
            return Err(malformed(
                WHAT,
                "the public key comment does not match the secret key",
            ));
        }
        Ok(k)
    }
}

/// Reads an institution's key file.
pub fn read_signing_key(path: &Path) -> Result<InstitutionSigningKey, VaultError> {
    let bytes = Zeroizing::new(crate::inputs::read(path)?);
    let text = std::str::from_utf8(&bytes).map_err(|_| VaultError::BadInput {
        what: path.display().to_string(),
        reason: "not an institution key file (not text)".into(),
    })?;
    InstitutionSigningKey::from_file_text(text)
}

/// Writes a new key file (mode 0600), refusing to overwrite any file.
pub fn write_signing_key(path: &Path, key: &InstitutionSigningKey) -> Result<(), VaultError> {
    if path.exists() {
        return Err(VaultError::BadInput {
            what: path.display().to_string(),
            reason: "exists; refusing to overwrite a key file".into(),
        });
    }
    Ok(aorta_base::fs::write_private_new(
        path,
        key.to_file_text().as_bytes(),
    )?)
}

impl serde::Serialize for InstitutionKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_text())
    }
}

impl<'de> serde::Deserialize<'de> for InstitutionKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::from_text(&s).map_err(serde::de::Error::custom)
    }
}
