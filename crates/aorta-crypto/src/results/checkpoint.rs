//! A result session's checkpoint bytes: `version(1) ‖ session_id(16) ‖
//! session_key(32) ‖ len(sub)(1) ‖ sub`, kept only inside sealed state.

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
use zeroize::Zeroizing;

use super::session::{ResultSession, result_aead_key};
use super::{
    Container, Result, ResultsError, SESSION_CHECKPOINT_VERSION, SESSION_ID_LEN, SESSION_KEY_LEN,
    decode_error,
};

impl ResultSession {
    /// The session's secret state, for the worker to keep in its sealed
    /// checkpoint (see [`seal_state`]) and resume the same session after a
    /// restart with [`ResultSession::from_checkpoint`]. Zeroizing; never
    /// store it unsealed. Layout: `version(1) ‖ session_id(16) ‖
    /// session_key(32) ‖ len(sub)(1) ‖ sub`.
    pub fn to_checkpoint(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(Vec::with_capacity(
            1 + SESSION_ID_LEN + SESSION_KEY_LEN + 1 + self.subscriber_id.len(),
        ));
        SessionCheckpoint {
            session_id: self.session_id,
            session_key: self.session_key.clone(),
            subscriber: self.subscriber_id.as_bytes(),
        }
        .encode(&mut v);
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
        let c = SessionCheckpoint::from_bytes(bytes)
            .map_err(|e| decode_error(what, bytes.len(), min, e))?;
        let subscriber_id = std::str::from_utf8(c.subscriber)
            .map_err(|_| ResultsError::BadField {
                what,
                field: "subscriber",
                offset: SUBSCRIBER_AT,
                reason: "not UTF-8",
            })?
            .to_owned();
        let aead_key = result_aead_key(&c.session_key, &c.session_id)?;
        Ok(Self {
            subscriber_id,
            session_id: c.session_id,
            session_key: c.session_key,
            aead_key,
        })
    }
}

/// Offset of the subscriber id in a checkpoint.
const SUBSCRIBER_AT: usize = 1 + SESSION_ID_LEN + SESSION_KEY_LEN + 1;

/// A session checkpoint's fields (the subscriber id not yet checked as UTF-8).
pub(crate) struct SessionCheckpoint<'a> {
    session_id: [u8; SESSION_ID_LEN],
    session_key: Zeroizing<[u8; SESSION_KEY_LEN]>,
    subscriber: &'a [u8],
}

impl<'a> Decode<'a> for SessionCheckpoint<'a> {
    fn decode(r: &mut Reader<'a>) -> std::result::Result<Self, DecodeError> {
        if r.u8("version")? != SESSION_CHECKPOINT_VERSION {
            return Err(r.invalid("version", 1, "unsupported version"));
        }
        let session_id = r.array("session_id")?;
        let session_key = Zeroizing::new(r.array("session_key")?);
        let n = usize::from(r.u8("subscriber_len")?);
        if n == 0 {
            return Err(r.invalid("subscriber_len", 1, "must be 1..=255"));
        }
        let subscriber = r.take(n, "subscriber")?;
        Ok(SessionCheckpoint {
            session_id,
            session_key,
            subscriber,
        })
    }
}

impl Encode for SessionCheckpoint<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(SESSION_CHECKPOINT_VERSION);
        out.extend_from_slice(&self.session_id);
        out.extend_from_slice(self.session_key.as_ref());
        // Decoding checked the length (1..=255).
        let _ = aorta_base::codec::put_bytes_u8(out, "subscriber", self.subscriber);
    }
}
