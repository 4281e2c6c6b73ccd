//! The session envelope (`AORS`): `magic ‖ version ‖ len(sub) ‖ sub ‖
//! session_id ‖ enc ‖ HPKE ciphertext of the session key`, and opening it
//! with a clinician's identity.

use std::fmt;

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, OpModeR};
use zeroize::Zeroizing;

use super::keys::ClinicianIdentity;
use super::primitives::{check_head, check_id};
use super::session::{OpenedSession, result_aead_key};
use super::{
    Container, ENC_LEN, ENVELOPE_CT_LEN, MAX_ID_LEN, Result, ResultsError, SESSION_ID_LEN,
    SESSION_INFO_LABEL, SESSION_KEY_LEN, SESSION_MAGIC, SESSION_VERSION, decode_error,
};

/// What an envelope's cleartext header says (readable without any key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeInfo {
    /// The subscriber the envelope is sealed to.
    pub subscriber_id: String,
    /// The session id.
    pub session_id: [u8; SESSION_ID_LEN],
}

/// A session envelope whose layout decoded, not yet opened.
pub(crate) struct SessionEnvelope<'a> {
    pub(crate) info: EnvelopeInfo,
    /// `magic ‖ version ‖ len(sub) ‖ sub ‖ session_id`: the HPKE AAD.
    header: &'a [u8],
    enc: &'a [u8],
    ct: &'a [u8],
}

impl fmt::Debug for SessionEnvelope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionEnvelope")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

pub(super) fn envelope_min_len(sub_len: usize) -> usize {
    6 + sub_len + SESSION_ID_LEN + ENC_LEN + ENVELOPE_CT_LEN
}

impl<'a> Decode<'a> for SessionEnvelope<'a> {
    fn decode(r: &mut Reader<'a>) -> std::result::Result<Self, DecodeError> {
        let start = r.clone();
        let at = r.position();
        if r.array::<4>("magic")? != SESSION_MAGIC {
            return Err(r.invalid("magic", 4, "not AORS"));
        }
        if r.u8("version")? != SESSION_VERSION {
            return Err(r.invalid("version", 1, "unsupported version"));
        }
        let n = usize::from(r.u8("subscriber_len")?);
        if n == 0 {
            return Err(r.invalid("subscriber_len", 1, "must be 1..=255"));
        }
        let sub = r.take(n, "subscriber")?;
        let subscriber_id = std::str::from_utf8(sub)
            .map_err(|_| r.invalid("subscriber", n, "not UTF-8"))?
            .to_owned();
        let session_id = r.array::<SESSION_ID_LEN>("session_id")?;
        let header = start.peek(r.position().saturating_sub(at));
        let enc = r.take(ENC_LEN, "enc")?;
        let ct = r.take(ENVELOPE_CT_LEN, "ciphertext")?;
        Ok(SessionEnvelope {
            info: EnvelopeInfo {
                subscriber_id,
                session_id,
            },
            header,
            enc,
            ct,
        })
    }
}

impl Encode for SessionEnvelope<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.header);
        out.extend_from_slice(self.enc);
        out.extend_from_slice(self.ct);
    }
}

/// Parses a whole envelope with the typed errors of [`ResultsError`]:
/// magic and version first, then the length the subscriber length implies,
/// then the fields.
pub(crate) fn parse_envelope(bytes: &[u8]) -> Result<SessionEnvelope<'_>> {
    let what = Container::SessionEnvelope;
    let min = envelope_min_len(1);
    check_head(bytes, what, (&SESSION_MAGIC, "AORS"), SESSION_VERSION, min)?;
    let n = usize::from(
        Reader::new(bytes.get(5..).unwrap_or_default())
            .u8("subscriber_len")
            .map_err(|e| decode_error(what, bytes.len(), min, e))?,
    );
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
    SessionEnvelope::from_bytes(bytes).map_err(|e| decode_error(what, bytes.len(), total, e))
}

/// Reads an envelope's cleartext header (subscriber id, session id) without
/// opening it — what the untrusted host (and a reader indexing envelopes)
/// sees. Validates the whole layout.
pub fn envelope_info(envelope: &[u8]) -> Result<EnvelopeInfo> {
    parse_envelope(envelope).map(|p| p.info)
}

/// The HPKE `info` of a session: `label ‖ len(sub) ‖ sub ‖ session_id`.
pub(super) fn hpke_info(subscriber_id: &str, session_id: &[u8; SESSION_ID_LEN]) -> Result<Vec<u8>> {
    let n = check_id("subscriber id", subscriber_id)?;
    let mut info = Vec::with_capacity(SESSION_INFO_LABEL.len() + 1 + MAX_ID_LEN + SESSION_ID_LEN);
    info.extend_from_slice(SESSION_INFO_LABEL);
    info.push(n);
    info.extend_from_slice(subscriber_id.as_bytes());
    info.extend_from_slice(session_id);
    Ok(info)
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

fn open_parsed(identity: &ClinicianIdentity, p: SessionEnvelope<'_>) -> Result<OpenedSession> {
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
    Ok(OpenedSession::new(
        p.info.subscriber_id,
        p.info.session_id,
        aead_key,
    ))
}
