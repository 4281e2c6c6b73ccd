//! Result sessions: the worker's [`ResultSession`] seals results, the
//! clinician's [`OpenedSession`] opens them. A sealed result (`AORR`) is
//! `magic ‖ version ‖ session_id ‖ nonce ‖ AES-256-GCM(result) ‖ tag`, its
//! AAD binding session, subscriber and result id.

use std::fmt;

use aorta_base::codec::{Decode, Reader};
use aorta_base::hex;
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, OpModeS, Serializable};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::envelope::{envelope_min_len, hpke_info};
use super::keys::ClinicianPublic;
use super::primitives::{
    EphemeralIkm, SealedResult, aead_key, check_head, check_id, hkdf32, random_array,
    seal_after_header,
};
use super::{
    Container, MAX_RESULT_LEN, NONCE_LEN, RESULT_HEADER_LEN, RESULT_KEY_LABEL, RESULT_MAGIC,
    RESULT_VERSION, Result, ResultsError, SESSION_ID_LEN, SESSION_KEY_LEN, SESSION_MAGIC,
    SESSION_VERSION, TAG_LEN, decode_error,
};

/// The AEAD key of a session's results.
pub(super) fn result_aead_key(
    session_key: &[u8; SESSION_KEY_LEN],
    session_id: &[u8; SESSION_ID_LEN],
) -> Result<Zeroizing<[u8; 32]>> {
    hkdf32(session_id, session_key, &[RESULT_KEY_LABEL])
}

/// The AAD of a sealed result.
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
    pub(super) subscriber_id: String,
    pub(super) session_id: [u8; SESSION_ID_LEN],
    pub(super) session_key: Zeroizing<[u8; SESSION_KEY_LEN]>,
    pub(super) aead_key: Zeroizing<[u8; 32]>,
}

impl fmt::Debug for ResultSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ResultSession {{ subscriber: {:?}, session: {} }}",
            self.subscriber_id,
            hex::encode(&self.session_id)
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
            hex::encode(&self.session_id)
        )
    }
}

/// Reads the session id of a sealed result (to find the envelope it
/// needs), checking magic and version.
pub fn sealed_result_session_id(sealed: &[u8]) -> Result<[u8; SESSION_ID_LEN]> {
    let what = Container::SealedResult;
    let min = RESULT_HEADER_LEN + TAG_LEN;
    check_head(sealed, what, (&RESULT_MAGIC, "AORR"), RESULT_VERSION, min)?;
    let mut r = Reader::new(sealed.get(5..).unwrap_or_default());
    r.array("session_id")
        .map_err(|e| decode_error(what, sealed.len(), min, e))
}

impl OpenedSession {
    /// The session a clinician opened from an envelope.
    pub(super) fn new(
        subscriber_id: String,
        session_id: [u8; SESSION_ID_LEN],
        aead_key: Zeroizing<[u8; 32]>,
    ) -> Self {
        OpenedSession {
            subscriber_id,
            session_id,
            aead_key,
        }
    }

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
                expected: hex::encode(&self.session_id),
                found: hex::encode(&sid),
            });
        }
        let parsed = SealedResult::from_bytes(sealed)
            .map_err(|e| decode_error(what, sealed.len(), min, e))?;
        let aad = result_aad(&self.session_id, &self.subscriber_id, result_id)?;
        parsed.open(&self.aead_key, &aad, what)
    }
}
