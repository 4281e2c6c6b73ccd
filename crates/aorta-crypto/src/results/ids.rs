//! Opaque result ids and erase tokens (`docs/results-format.md`, "Result
//! ids"; `docs/erasure.md`).
//!
//! The worker stores each result under an id the host cannot link to a
//! device, a window or another result, yet that the worker can later let
//! the host recognise for one device only — to erase that patient's
//! results — by handing it the device's erase token:
//!
//! ```text
//! K_id  = HKDF-SHA256(salt = "", ikm = STK, info = "aorta/v1/result-id")
//! K_S   = HKDF-SHA256(salt = "", ikm = STK, info = "aorta/v1/erase-token/" ‖ SERIAL)   (the erase token)
//! A     = HMAC-SHA256(K_id, "SERIAL/START_US/END_US")[0..16]
//! B     = HMAC-SHA256(K_S, A)[0..8]
//! id    = hex(A ‖ B)                                                            (48 hex digits)
//! ```
//!
//! Deterministic for one assignment (a replay deduplicates); without `STK`
//! neither half says anything of the device (B is a PRF of a fresh value
//! under a key per device). With `K_S` the host tests every stored id
//! (`B == HMAC(K_S, A)[0..8]`, a false match with probability 2^-64 per
//! id) and learns which results were that device's — and nothing of the
//! others'.

use zeroize::Zeroizing;

/// HKDF info of the key that makes result ids opaque.
pub const RESULT_ID_INFO: &[u8] = b"aorta/v1/result-id";

/// HKDF info prefix of a device's erase token (the serial follows).
pub const ERASE_TOKEN_INFO: &[u8] = b"aorta/v1/erase-token/";

/// Bytes of the id's first half (`A`).
const A_LEN: usize = 16;
/// Bytes of the id's second half (`B`).
const B_LEN: usize = 8;

fn hkdf(state_key: &[u8; 32], info: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[]).extract(state_key);
    let mut k = Zeroizing::new([0u8; 32]);
    let filled = prk
        .expand(info, ring::hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(k.as_mut()));
    if filled.is_err() {
        // HKDF-SHA256 always yields 32 bytes; an all-zero key would still
        // give deterministic (if guessable) ids, never a wrong result.
        k.fill(0);
    }
    k
}

fn hmac(key: &[u8], msg: &[u8]) -> ring::hmac::Tag {
    ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), msg)
}

/// The device part of a result id `SERIAL/START_US/END_US` (everything
/// before the last two `/`; the whole id if it has fewer).
fn device_of(id: &str) -> &str {
    let mut parts = id.rsplitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(_), Some(serial)) => serial,
        _ => id,
    }
}

/// The key that lets a host recognise the stored ids of one device's
/// results, and nothing else. Zeroized on drop; shown as 64 hex digits.
#[derive(Clone, PartialEq, Eq)]
pub struct EraseToken(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for EraseToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EraseToken(..)")
    }
}

impl EraseToken {
    /// Device `serial`'s token under the assignment's state key.
    pub fn derive(state_key: &[u8; 32], serial: &str) -> EraseToken {
        EraseToken(hkdf(state_key, &[ERASE_TOKEN_INFO, serial.as_bytes()]))
    }

    /// The token as 64 lower-case hex digits (what the worker sends).
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(aorta_base::hex::encode(self.0.as_ref()))
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<EraseToken> {
        aorta_base::hex::decode_array::<32>(text, aorta_base::hex::Case::Lower)
            .ok()
            .map(EraseToken)
    }

    /// True if `opaque` (the part of a stored id after `SUBSCRIBER/`) is
    /// the id of one of this device's results.
    pub fn matches(&self, opaque: &str) -> bool {
        let Ok(raw) = aorta_base::hex::decode(opaque, aorta_base::hex::Case::Lower) else {
            return false;
        };
        let (Some(a), Some(b)) = (raw.get(..A_LEN), raw.get(A_LEN..)) else {
            return false;
        };
        if b.len() != B_LEN {
            return false;
        }
        let want = hmac(self.0.as_ref(), a);
        // The host holds the token: nothing secret to hide in the timing.
        want.as_ref().get(..B_LEN) == Some(b)
    }
}

/// The opaque store id of result `id` (`SERIAL/START_US/END_US`): 48
/// lower-case hex digits, `A ‖ B` as the module documentation says.
pub fn opaque_id(state_key: &[u8; 32], id: &str) -> String {
    let k_id = hkdf(state_key, &[RESULT_ID_INFO]);
    let a = hmac(k_id.as_ref(), id.as_bytes());
    let a = a.as_ref().get(..A_LEN).unwrap_or_default();
    let token = EraseToken::derive(state_key, device_of(id));
    let b = hmac(token.0.as_ref(), a);
    let mut out = Vec::with_capacity(A_LEN + B_LEN);
    out.extend_from_slice(a);
    out.extend_from_slice(b.as_ref().get(..B_LEN).unwrap_or_default());
    aorta_base::hex::encode(&out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn a_token_recognises_its_devices_ids_and_no_other() {
        let stk = [7u8; 32];
        let mine: Vec<String> = (0..200)
            .map(|i| opaque_id(&stk, &format!("SN-A/{}/{}", i * 10, i * 10 + 10)))
            .collect();
        let other: Vec<String> = (0..200)
            .map(|i| opaque_id(&stk, &format!("SN-B/{}/{}", i * 10, i * 10 + 10)))
            .collect();
        let t = EraseToken::derive(&stk, "SN-A");
        assert!(mine.iter().all(|id| id.len() == 48 && t.matches(id)));
        assert!(other.iter().all(|id| !t.matches(id)));
        // Another assignment's key: no match.
        let t2 = EraseToken::derive(&[8u8; 32], "SN-A");
        assert!(mine.iter().all(|id| !t2.matches(id)));
        // Deterministic; hex round trip; malformed ids never match.
        assert_eq!(mine[3], opaque_id(&stk, "SN-A/30/40"));
        assert_eq!(EraseToken::from_hex(&t.to_hex()).unwrap(), t);
        for bad in [
            "",
            "zz",
            &mine[0][..32],
            &format!("{}00", mine[0]),
            "@session/00",
        ] {
            assert!(!t.matches(bad), "{bad}");
        }
        assert!(EraseToken::from_hex("00").is_none());
        assert_eq!(format!("{t:?}"), "EraseToken(..)");
    }

    #[test]
    fn the_device_is_everything_before_the_window() {
        assert_eq!(device_of("SN-1/10/20"), "SN-1");
        assert_eq!(device_of("a/b/c/10/20"), "a/b/c");
        assert_eq!(device_of("x"), "x");
    }
}
