//! HPKE auth mode (RFC 9180 §5.1.3; DHKEM(X25519, HKDF-SHA256) /
//! HKDF-SHA256 / ChaCha20-Poly1305) between two aorta identities: the sender
//! proves holding its secret key, the receiver needs the sender's public key.

use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as KemTrait, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

use crate::VaultError;
use crate::grant::{Identity, RecipientKey};

type Kem = X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;

fn pk(k: &RecipientKey) -> Result<<Kem as KemTrait>::PublicKey, VaultError> {
    <Kem as KemTrait>::PublicKey::from_bytes(&k.0).map_err(|_| VaultError::Malformed {
        what: "public key",
        offset: 0,
        reason: "not a valid X25519 public key",
    })
}

fn sk(id: &Identity) -> Result<<Kem as KemTrait>::PrivateKey, VaultError> {
    <Kem as KemTrait>::PrivateKey::from_bytes(id.secret_bytes()).map_err(|_| VaultError::Internal {
        what: "identity secret is not an X25519 key",
    })
}

fn mode(from: &Identity) -> Result<OpModeS<'static, Kem>, VaultError> {
    Ok(OpModeS::Auth((sk(from)?, pk(&from.public())?)))
}

fn done(
    r: Result<(<Kem as KemTrait>::EncappedKey, Vec<u8>), hpke::HpkeError>,
) -> Result<([u8; 32], Vec<u8>), VaultError> {
    let (enc, ct) = r.map_err(|e| VaultError::Hpke {
        reason: e.to_string(),
    })?;
    let mut e = [0u8; 32];
    e.copy_from_slice(&enc.to_bytes());
    Ok((e, ct))
}

/// Seals `plain` from `from` to `to` in auth mode: `(encapsulated key,
/// ciphertext ‖ tag)`.
pub fn seal_auth(
    from: &Identity,
    to: &RecipientKey,
    info: &[u8],
    plain: &[u8],
    aad: &[u8],
) -> Result<([u8; 32], Vec<u8>), VaultError> {
    done(hpke::single_shot_seal::<Aead, Kdf, Kem>(
        &mode(from)?,
        &pk(to)?,
        info,
        plain,
        aad,
    ))
}

/// [`seal_auth`] with a caller's generator: test vectors only.
pub fn seal_auth_with_rng<R: hpke::rand_core::CryptoRng>(
    from: &Identity,
    to: &RecipientKey,
    info: &[u8],
    plain: &[u8],
    aad: &[u8],
    rng: &mut R,
) -> Result<([u8; 32], Vec<u8>), VaultError> {
    done(hpke::single_shot_seal_with_rng::<Aead, Kdf, Kem>(
        &mode(from)?,
        &pk(to)?,
        info,
        plain,
        aad,
        rng,
    ))
}

/// Opens what `from` sealed to `to` in auth mode; any failure (another
/// sender, another receiver, a changed byte, base mode) is `Err(())`.
#[allow(
    clippy::result_unit_err,
    reason = "callers map the one failure to their own refusal"
)]
pub fn open_auth(
    to: &Identity,
    from: &RecipientKey,
    enc: &[u8; 32],
    info: &[u8],
    ct: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, ()> {
    let sender = pk(from).map_err(|_| ())?;
    let enc = <Kem as KemTrait>::EncappedKey::from_bytes(enc).map_err(|_| ())?;
    let sk = sk(to).map_err(|_| ())?;
    hpke::single_shot_open::<Aead, Kdf, Kem>(&OpModeR::Auth(sender), &sk, &enc, info, ct, aad)
        .map(Zeroizing::new)
        .map_err(|_| ())
}
