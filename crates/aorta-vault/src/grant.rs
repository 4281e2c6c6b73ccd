//! Recipients' X25519 identities and keys, and the first grant format.
//!
//! Grant format `AOSG` v1 (`docs/vault-format.md`, retired): an 88-byte
//! header (magic, version, suite, flags, grant id, pseudonymous record id,
//! issue and expiry times, recipient key) used as HPKE associated data, the
//! 32-byte encapsulated key, and the recovery material (unit keys, private
//! pieces, D_head) sealed in HPKE base mode. It is kept to read old grants
//! and the vectors: the vault no longer issues v1 grants, and
//! [`crate::EhrVault::recover_with_grant`] refuses them. A v1 grant carried
//! what recovers the record forever and judged expiry by the recipient's
//! clock; grants are now `AOSG` v2 through the patient's release gate
//! ([`crate::gate`], `docs/vault-sharing.md`). Whoever holds a v1 grant can
//! still open it outside aorta; `EhrVault::rekey` makes its material useless
//! against the fragments stored after.

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
use aorta_base::hex::{self, Case};
use aorta_crypto::results::{ClinicianIdentity, ClinicianPublic};
use aorta_crypto::selective::{RecordId, RecoveryMaterial};
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as KemTrait, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

use crate::VaultError;

type Kem = X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;

/// Grant magic.
pub const GRANT_MAGIC: &[u8; 4] = b"AOSG";
/// Grant format version.
pub const GRANT_VERSION: u8 = 1;
const SUITE_X25519_SHA256_CHACHA: u8 = 1;
const FLAG_EMERGENCY: u8 = 1;
const HEADER_LEN: usize = 88;
const ENC_LEN: usize = 32;
const INFO: &[u8] = b"aorta-ehr grant v1";
const WHAT: &str = "grant";
/// Expiry value meaning "never" (standing emergency grants).
pub const NEVER: u64 = u64::MAX;

/// The key text of every aorta identity (`docs/keys.md`): a clinician's
/// and a grant recipient's keys are the same X25519 keys, written
/// `aorta-clinician-1<64 lower-case hex>` (public) and
/// `AORTA-CLINICIAN-SECRET-1<64 upper-case hex>` (secret), the forms of
/// [`aorta_crypto::results`]. The first vault keys were written
/// `aorta-ehr-pk1:<hex>` / `aorta-ehr-sk1:<hex>`: still read, no longer
/// written.
pub(crate) use aorta_crypto::results::{
    PUBLIC_TEXT_PREFIX as PK_PREFIX, SECRET_TEXT_PREFIX as SK_PREFIX,
};
/// The first vault public-key prefix (read, not written).
pub(crate) const OLD_PK_PREFIX: &str = "aorta-ehr-pk1:";
/// The first vault secret-key prefix (read, not written).
const OLD_SK_PREFIX: &str = "aorta-ehr-sk1:";

fn unhex32(s: &str) -> Option<[u8; 32]> {
    aorta_base::hex::decode_array::<32>(s, Case::Any)
        .ok()
        .map(|a| *a)
}

/// A recipient's public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecipientKey(pub [u8; 32]);

impl RecipientKey {
    /// `aorta-clinician-1<64 lower-case hex>`, as
    /// [`aorta_crypto::results::ClinicianPublic::to_text`].
    pub fn to_text(&self) -> String {
        ClinicianPublic::from_bytes(self.0).to_text()
    }
    /// Parses a public key's text (surrounding whitespace ignored):
    /// [`RecipientKey::to_text`]'s form, or the older `aorta-ehr-pk1:<hex>`.
    pub fn from_text(s: &str) -> Result<Self, VaultError> {
        let s = s.trim();
        let bad = VaultError::Malformed {
            what: "recipient public key",
            offset: 0,
            reason: "expected aorta-clinician-1 followed by 64 lower-case hex digits",
        };
        let bytes = if s.starts_with(PK_PREFIX) {
            *ClinicianPublic::from_text(s).map_err(|_| bad)?.as_bytes()
        } else {
            s.strip_prefix(OLD_PK_PREFIX).and_then(unhex32).ok_or(bad)?
        };
        <Kem as KemTrait>::PublicKey::from_bytes(&bytes).map_err(|_| VaultError::Malformed {
            what: "recipient public key",
            offset: 0,
            reason: "not a valid X25519 public key",
        })?;
        Ok(Self(bytes))
    }
}

/// A recipient's identity (X25519 key pair). Zeroized on drop; `Debug` shows
/// only the public key.
pub struct Identity {
    sk: Zeroizing<[u8; 32]>,
    pk: RecipientKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("public", &self.pk.to_text())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A fresh identity from the OS CSPRNG.
    pub fn generate() -> Result<Self, VaultError> {
        let ikm = aorta_base::random::secret::<32>()?;
        let (sk, _) = Kem::derive_keypair(ikm.as_slice());
        let mut raw = Zeroizing::new([0u8; 32]);
        raw.copy_from_slice(&sk.to_bytes());
        Self::from_secret(*raw)
    }

    /// The identity derived from 32 bytes of input keying material
    /// (RFC 9180 DeriveKeyPair) — test vectors and deterministic set-ups.
    pub fn derive(ikm: &[u8; 32]) -> Result<Self, VaultError> {
        let (sk, _) = Kem::derive_keypair(ikm);
        let mut raw = Zeroizing::new([0u8; 32]);
        raw.copy_from_slice(&sk.to_bytes());
        Self::from_secret(*raw)
    }

    fn from_secret(raw: [u8; 32]) -> Result<Self, VaultError> {
        let raw = Zeroizing::new(raw);
        let sk = <Kem as KemTrait>::PrivateKey::from_bytes(raw.as_slice()).map_err(|_| {
            VaultError::Malformed {
                what: "identity",
                offset: 0,
                reason: "not a valid X25519 private key",
            }
        })?;
        let pk = Kem::sk_to_pk(&sk);
        let mut pkb = [0u8; 32];
        pkb.copy_from_slice(&pk.to_bytes());
        Ok(Self {
            sk: raw,
            pk: RecipientKey(pkb),
        })
    }

    /// The secret key bytes (HPKE auth mode in [`crate::gate`]).
    pub(crate) fn secret_bytes(&self) -> &[u8; 32] {
        &self.sk
    }

    /// The public key to give to patients.
    pub fn public(&self) -> RecipientKey {
        self.pk
    }

    /// The identity file, the same as a clinician's
    /// ([`ClinicianIdentity::to_file_text`]): two `#` comment lines (a
    /// note, the public key) and `AORTA-CLINICIAN-SECRET-1<64 HEX>`; keep
    /// this file secret.
    pub fn to_text(&self) -> Zeroizing<String> {
        let digits = hex::encode_secret_upper(self.sk.as_slice());
        let mut s = Zeroizing::new(String::with_capacity(200));
        s.push_str("# aorta identity (clinician, grant recipient): secret, keep this file private (mode 0600)\n");
        s.push_str("# public key: ");
        s.push_str(&self.pk.to_text());
        s.push('\n');
        s.push_str(SK_PREFIX);
        s.push_str(&digits);
        s.push('\n');
        s
    }

    /// Parses an identity file: [`Identity::to_text`]'s form (checked as
    /// [`ClinicianIdentity::from_file_text`] does: one key line, a `# public
    /// key:` comment that matches), or the older `aorta-ehr-sk1:<hex>` one
    /// (lines starting with `#` ignored).
    pub fn from_text(s: &str) -> Result<Self, VaultError> {
        let line = s
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or("");
        let bad = || VaultError::Malformed {
            what: "identity",
            offset: 0,
            reason: "expected AORTA-CLINICIAN-SECRET-1 followed by 64 upper-case hex digits",
        };
        let raw = if let Some(digits) = line.strip_prefix(SK_PREFIX) {
            // The strict parser checks the whole file (one key line, the
            // public key comment); the secret bytes come from its key line.
            ClinicianIdentity::from_file_text(s).map_err(|_| bad())?;
            *aorta_base::hex::decode_array::<32>(digits, Case::Upper).map_err(|_| bad())?
        } else {
            line.strip_prefix(OLD_SK_PREFIX)
                .and_then(unhex32)
                .ok_or_else(bad)?
        };
        Self::from_secret(raw)
    }
}

/// The public header of a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantHeader {
    /// Random grant id.
    pub grant_id: [u8; 16],
    /// Pseudonymous record id.
    pub record_id: RecordId,
    /// Issue time (unix seconds).
    pub issued_at: u64,
    /// Expiry (unix seconds, [`NEVER`] for none).
    pub expires_at: u64,
    /// Standing emergency grant (responsible doctor).
    pub emergency: bool,
    /// The recipient.
    pub recipient: RecipientKey,
}

impl GrantHeader {
    /// Grant id in hex.
    pub fn grant_hex(&self) -> String {
        hex::encode(&self.grant_id)
    }
}

impl GrantHeader {
    /// The `AOSG` header as version `version` writes it: magic, version,
    /// suite, flags, reserved, then the fields (v2 appends the patient key).
    pub(crate) fn encode_as(&self, version: u8, out: &mut Vec<u8>) {
        out.extend_from_slice(GRANT_MAGIC);
        out.push(version);
        out.push(SUITE_X25519_SHA256_CHACHA);
        out.push(if self.emergency { FLAG_EMERGENCY } else { 0 });
        out.push(0);
        out.extend_from_slice(&self.grant_id);
        out.extend_from_slice(&self.record_id.0);
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.extend_from_slice(&self.recipient.0);
    }

    /// Reads the header [`GrantHeader::encode_as`] writes for `version`,
    /// refusing another magic, version, suite or unknown flags.
    pub(crate) fn decode_as(version: u8, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if &r.array::<4>("magic")? != GRANT_MAGIC {
            return Err(r.invalid("magic", 4, "bad magic"));
        }
        if r.u8("version")? != version {
            return Err(r.invalid("version", 1, "unknown format version"));
        }
        if r.u8("suite")? != SUITE_X25519_SHA256_CHACHA {
            return Err(r.invalid("suite", 1, "unknown HPKE suite"));
        }
        let flags = r.u8("flags")?;
        if flags & !FLAG_EMERGENCY != 0 || r.u8("reserved")? != 0 {
            return Err(r.invalid("flags", 2, "unknown flags or non-zero reserved byte"));
        }
        Ok(Self {
            grant_id: r.array("grant id")?,
            record_id: RecordId(r.array("record id")?),
            issued_at: r.u64("issued at")?,
            expires_at: r.u64("expires at")?,
            emergency: flags & FLAG_EMERGENCY != 0,
            recipient: RecipientKey(r.array("recipient key")?),
        })
    }
}

impl Encode for GrantHeader {
    fn encode(&self, out: &mut Vec<u8>) {
        self.encode_as(GRANT_VERSION, out);
    }
}

impl Decode<'_> for GrantHeader {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Self::decode_as(GRANT_VERSION, r)
    }
}

/// A whole grant as stored: the public header (the HPKE associated data),
/// the encapsulated key, and the sealed recovery material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant<'a> {
    /// The public header.
    pub header: GrantHeader,
    /// The HPKE encapsulated key.
    pub enc: [u8; ENC_LEN],
    /// The sealed recovery material (ChaCha20-Poly1305 ciphertext and tag).
    pub sealed: &'a [u8],
}

impl Encode for Grant<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.header.encode(out);
        out.extend_from_slice(&self.enc);
        out.extend_from_slice(self.sealed);
    }
}

impl<'a> Decode<'a> for Grant<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        Ok(Self {
            header: GrantHeader::decode(r)?,
            enc: r.array("encapsulated key")?,
            sealed: r.rest(),
        })
    }
}

impl<'a> Grant<'a> {
    /// Decodes a grant (an unknown version is [`VaultError::UnknownVersion`]).
    pub fn parse(d: &'a [u8]) -> Result<Self, VaultError> {
        crate::format::check_version(d, GRANT_MAGIC, GRANT_VERSION, WHAT)?;
        Self::from_bytes(d).map_err(VaultError::decode(WHAT))
    }
}

/// Seals `material` to `recipient`. `now` and `expires_at` are unix seconds.
pub fn seal(
    material: &RecoveryMaterial,
    recipient: &RecipientKey,
    now: u64,
    expires_at: u64,
    emergency: bool,
) -> Result<(GrantHeader, Vec<u8>), VaultError> {
    let grant_id = aorta_base::random::array::<16>()?;
    let h = header(material, recipient, (now, expires_at, emergency), grant_id);
    let (pk, header, plain) = prepare(&h, material)?;
    let (enc, ct) =
        hpke::single_shot_seal::<Aead, Kdf, Kem>(&OpModeS::Base, &pk, INFO, &plain, &header)
            .map_err(hpke_failed)?;
    Ok((h, assemble(&header, &enc, &ct)))
}

/// [`seal`] with a caller-chosen grant id and random number generator: for
/// test vectors only (a predictable generator makes the grant predictable).
pub fn seal_with_rng(
    material: &RecoveryMaterial,
    recipient: &RecipientKey,
    now: u64,
    expires_at: u64,
    emergency: bool,
    grant_id: [u8; 16],
    rng: &mut impl hpke::rand_core::CryptoRng,
) -> Result<(GrantHeader, Vec<u8>), VaultError> {
    let h = header(material, recipient, (now, expires_at, emergency), grant_id);
    let (pk, header, plain) = prepare(&h, material)?;
    let (enc, ct) = hpke::single_shot_seal_with_rng::<Aead, Kdf, Kem>(
        &OpModeS::Base,
        &pk,
        INFO,
        &plain,
        &header,
        rng,
    )
    .map_err(hpke_failed)?;
    Ok((h, assemble(&header, &enc, &ct)))
}

/// The header of grant `grant_id`; `terms` are (issued at, expires at,
/// emergency).
fn header(
    material: &RecoveryMaterial,
    recipient: &RecipientKey,
    (now, expires_at, emergency): (u64, u64, bool),
    grant_id: [u8; 16],
) -> GrantHeader {
    GrantHeader {
        grant_id,
        record_id: material.record_id,
        issued_at: now,
        expires_at,
        emergency,
        recipient: *recipient,
    }
}

type Prepared = (<Kem as KemTrait>::PublicKey, Vec<u8>, Zeroizing<Vec<u8>>);

fn prepare(h: &GrantHeader, material: &RecoveryMaterial) -> Result<Prepared, VaultError> {
    let pk = <Kem as KemTrait>::PublicKey::from_bytes(&h.recipient.0).map_err(|_| {
        VaultError::Malformed {
            what: "recipient public key",
            offset: 0,
            reason: "not a valid X25519 public key",
        }
    })?;
    Ok((pk, h.to_bytes(), material.to_bytes()))
}

fn hpke_failed(e: hpke::HpkeError) -> VaultError {
    VaultError::Hpke {
        reason: e.to_string(),
    }
}

fn assemble(header: &[u8], enc: &<Kem as KemTrait>::EncappedKey, ct: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + ENC_LEN + ct.len());
    out.extend_from_slice(header);
    out.extend_from_slice(&enc.to_bytes());
    out.extend_from_slice(ct);
    out
}

/// Reads a grant's header without opening it.
pub fn peek(grant: &[u8]) -> Result<GrantHeader, VaultError> {
    Grant::parse(grant).map(|g| g.header)
}

/// Opens a grant with `identity` and checks its expiry against `now`.
/// Revocation is checked against the vault by
/// [`crate::EhrVault::recover_with_grant`], which front-ends call instead.
pub fn open(
    grant: &[u8],
    identity: &Identity,
    now: u64,
) -> Result<(GrantHeader, RecoveryMaterial), VaultError> {
    let g = Grant::parse(grant)?;
    let h = g.header;
    let header = h.to_bytes();
    let ct = g.sealed;
    if h.recipient != identity.public() {
        return Err(VaultError::GrantNotForUs);
    }
    let enc = <Kem as KemTrait>::EncappedKey::from_bytes(&g.enc)
        .map_err(|_| VaultError::GrantNotForUs)?;
    let sk = <Kem as KemTrait>::PrivateKey::from_bytes(identity.sk.as_slice()).map_err(|_| {
        VaultError::Internal {
            what: "identity secret no longer parses",
        }
    })?;
    let plain = Zeroizing::new(
        hpke::single_shot_open::<Aead, Kdf, Kem>(&OpModeR::Base, &sk, &enc, INFO, ct, &header)
            .map_err(|_| VaultError::GrantNotForUs)?,
    );
    let m = RecoveryMaterial::from_bytes(&plain)?;
    if m.record_id != h.record_id {
        return Err(VaultError::Malformed {
            what: WHAT,
            offset: 24,
            reason: "record id differs from the sealed material",
        });
    }
    if now >= h.expires_at {
        return Err(VaultError::Expired {
            expires_at: h.expires_at,
            now,
        });
    }
    Ok((h, m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aorta_crypto::selective::{KdfParams, ProtectOptions, container::open_private, protect};

    fn material() -> RecoveryMaterial {
        let opts = ProtectOptions {
            kdf: KdfParams::INSECURE_TEST,
            ..Default::default()
        };
        let p = protect(b"a record to share", b"pw", &opts).unwrap();
        open_private(&p.private, b"pw").unwrap()
    }

    #[test]
    fn seal_open_expiry_and_wrong_recipient() {
        let alice = Identity::generate().unwrap();
        let mallory = Identity::generate().unwrap();
        let m = material();
        let (h, g) = seal(&m, &alice.public(), 1000, 2000, false).unwrap();
        let (h2, m2) = open(&g, &alice, 1500).unwrap();
        assert_eq!(h, h2);
        assert_eq!(m, m2);
        assert!(matches!(
            open(&g, &alice, 2000),
            Err(VaultError::Expired { .. })
        ));
        assert!(matches!(
            open(&g, &mallory, 1500),
            Err(VaultError::GrantNotForUs)
        ));
    }

    #[test]
    fn every_byte_of_a_grant_is_protected() {
        let alice = Identity::generate().unwrap();
        let (_, g) = seal(&material(), &alice.public(), 1000, 2000, false).unwrap();
        for i in 0..g.len() {
            let mut t = g.clone();
            t[i] ^= 0x40;
            assert!(open(&t, &alice, 1500).is_err(), "byte {i}");
        }
    }

    #[test]
    fn identity_text_roundtrip() {
        let a = Identity::generate().unwrap();
        let b = Identity::from_text(&a.to_text()).unwrap();
        assert_eq!(a.public(), b.public());
        assert_eq!(
            RecipientKey::from_text(&a.public().to_text()).unwrap(),
            a.public()
        );
        assert!(RecipientKey::from_text("aorta-ehr-pk1:zz").is_err());
        assert!(!format!("{a:?}").contains(&hex::encode(a.sk.as_slice())));
    }

    /// One key text for every identity: a vault identity is a clinician
    /// identity (and back), and the first vault forms are still read.
    #[test]
    fn one_key_text_with_clinicians_and_the_old_forms_read() {
        let a = Identity::generate().unwrap();
        assert!(a.public().to_text().starts_with("aorta-clinician-1"));
        let c = ClinicianIdentity::from_file_text(&a.to_text()).unwrap();
        assert_eq!(c.public().as_bytes(), &a.public().0);
        let c = ClinicianIdentity::generate().unwrap();
        let b = Identity::from_text(&c.to_file_text()).unwrap();
        assert_eq!(&b.public().0, c.public().as_bytes());
        assert_eq!(
            RecipientKey::from_text(&c.public().to_text()).unwrap(),
            b.public()
        );
        // The old forms.
        let old_pk = format!("aorta-ehr-pk1:{}", hex::encode(&a.public().0));
        assert_eq!(RecipientKey::from_text(&old_pk).unwrap(), a.public());
        let old_sk = format!(
            "# aorta ehr identity; public key: {old_pk}\naorta-ehr-sk1:{}\n",
            hex::encode(a.sk.as_slice())
        );
        assert_eq!(Identity::from_text(&old_sk).unwrap().public(), a.public());
        // A secret whose public key comment does not match is refused.
        let other = Identity::generate().unwrap();
        let mut mixed = other
            .to_text()
            .lines()
            .take(2)
            .collect::<Vec<_>>()
            .join("\n");
        mixed.push('\n');
        mixed.push_str(a.to_text().lines().last().unwrap());
        assert!(Identity::from_text(&mixed).is_err());
    }

    proptest::proptest! {
        #[test]
        fn open_never_panics(d in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            static ALICE: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
            let alice = ALICE.get_or_init(|| Identity::generate().unwrap());
            let _ = open(&d, alice, 0);
            let _ = peek(&d);
        }
    }
}
