//! Sealed checkpoint state (`AOST`): `magic ‖ version ‖ nonce ‖
//! AES-256-GCM(state) ‖ tag` under a key derived from the broker-released
//! state key, bound to a context.

use aorta_base::codec::Decode;
use zeroize::Zeroizing;

use super::primitives::{
    SealedState, aead_key, check_head, hkdf32, random_array, seal_after_header,
};
use super::{
    Container, MAX_CONTEXT_LEN, MAX_STATE_LEN, NONCE_LEN, Result, ResultsError, STATE_HEADER_LEN,
    STATE_KEY_LABEL, STATE_MAGIC, STATE_VERSION, TAG_LEN, decode_error,
};

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
    let parsed =
        SealedState::from_bytes(sealed).map_err(|e| decode_error(what, sealed.len(), min, e))?;
    let aad = state_aad(context)?;
    let k = hkdf32(&[], key, &[STATE_KEY_LABEL])?;
    parsed.open(&k, &aad, what)
}
