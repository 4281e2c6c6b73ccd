//! Strict hexadecimal.
//!
//! Decoding accepts only the digits `0-9`, `a-f` and/or `A-F` (as the
//! [`Case`] asks), an even number of them, and nothing else: no `+`, no
//! `0x`, no whitespace. Secrets decode into [`Zeroizing`] buffers.

use zeroize::Zeroizing;

/// Which letter case a decoder accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// `a-f` only.
    Lower,
    /// `A-F` only.
    Upper,
    /// Either, even mixed.
    Any,
}

/// Why a hex text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HexError {
    /// A character that is not a hex digit of the accepted case.
    #[error("character {found:?} at offset {offset} is not a {case} hex digit")]
    BadDigit {
        /// Byte offset of the character.
        offset: usize,
        /// The character found.
        found: char,
        /// What was accepted ("lower-case", "upper-case", "").
        case: &'static str,
    },
    /// The text has an odd number of digits.
    #[error("odd number of hex digits ({0})")]
    OddLength(usize),
    /// The text decodes to the wrong number of bytes.
    #[error("expected {expected} bytes ({} hex digits), got {got} digits", expected * 2)]
    WrongLength {
        /// Bytes expected.
        expected: usize,
        /// Hex digits found.
        got: usize,
    },
}

const LOWER: &[u8; 16] = b"0123456789abcdef";
const UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Lower-case hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push(&mut s, bytes, LOWER);
    s
}

/// Lower-case hex of a secret, in a buffer that is wiped when dropped.
pub fn encode_secret(bytes: &[u8]) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::with_capacity(bytes.len() * 2));
    push(&mut s, bytes, LOWER);
    s
}

/// Upper-case hex of a secret (e.g. a secret key's text form), in a buffer
/// that is wiped when dropped.
pub fn encode_secret_upper(bytes: &[u8]) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::with_capacity(bytes.len() * 2));
    push(&mut s, bytes, UPPER);
    s
}

fn push(s: &mut String, bytes: &[u8], digits: &[u8; 16]) {
    for &b in bytes {
        for nib in [b >> 4, b & 15] {
            if let Some(&d) = digits.get(usize::from(nib)) {
                s.push(char::from(d));
            }
        }
    }
}

fn nibble(c: u8, case: Case) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' if case != Case::Upper => Some(c - b'a' + 10),
        b'A'..=b'F' if case != Case::Lower => Some(c - b'A' + 10),
        _ => None,
    }
}

fn case_name(case: Case) -> &'static str {
    match case {
        Case::Lower => "lower-case",
        Case::Upper => "upper-case",
        Case::Any => "",
    }
}

fn decode_into(text: &str, case: Case, out: &mut [u8]) -> Result<(), HexError> {
    let b = text.as_bytes();
    for (i, (o, pair)) in out.iter_mut().zip(b.chunks_exact(2)).enumerate() {
        let digit = |k: usize| -> Result<u8, HexError> {
            let c = pair.get(k).copied().unwrap_or(0);
            nibble(c, case).ok_or_else(|| HexError::BadDigit {
                offset: 2 * i + k,
                found: text
                    .get(2 * i + k..)
                    .and_then(|s| s.chars().next())
                    .unwrap_or(char::from(c)),
                case: case_name(case),
            })
        };
        *o = (digit(0)? << 4) | digit(1)?;
    }
    Ok(())
}

/// Decodes hex of any even length.
pub fn decode(text: &str, case: Case) -> Result<Vec<u8>, HexError> {
    if !text.len().is_multiple_of(2) {
        return Err(HexError::OddLength(text.len()));
    }
    let mut out = vec![0u8; text.len() / 2];
    decode_into(text, case, &mut out)?;
    Ok(out)
}

/// Decodes exactly `N` bytes (a key, a hash) into a zeroizing array.
pub fn decode_array<const N: usize>(
    text: &str,
    case: Case,
) -> Result<Zeroizing<[u8; N]>, HexError> {
    if text.len() != 2 * N {
        return Err(HexError::WrongLength {
            expected: N,
            got: text.len(),
        });
    }
    let mut out = Zeroizing::new([0u8; N]);
    decode_into(text, case, out.as_mut())?;
    Ok(out)
}

/// Decodes a secret of any even length into a zeroizing buffer.
pub fn decode_secret(text: &str, case: Case) -> Result<Zeroizing<Vec<u8>>, HexError> {
    if !text.len().is_multiple_of(2) {
        return Err(HexError::OddLength(text.len()));
    }
    let mut out = Zeroizing::new(vec![0u8; text.len() / 2]);
    decode_into(text, case, &mut out)?;
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_sign_prefix_and_space() {
        for bad in ["+1", "0x00", " 00", "0 ", "g0", "-1"] {
            assert!(decode(bad, Case::Any).is_err(), "{bad:?}");
        }
        assert_eq!(decode("1", Case::Any), Err(HexError::OddLength(1)));
    }

    #[test]
    fn case_is_enforced() {
        assert!(decode("ab", Case::Upper).is_err());
        assert!(decode("AB", Case::Lower).is_err());
        assert_eq!(decode("aB", Case::Any).unwrap(), vec![0xab]);
        assert_eq!(
            decode_array::<2>("abc", Case::Any).unwrap_err(),
            HexError::WrongLength {
                expected: 2,
                got: 3
            }
        );
    }

    #[test]
    fn multibyte_char_is_a_typed_error() {
        assert!(matches!(
            decode("é00", Case::Any),
            Err(HexError::BadDigit { offset: 0, .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trip(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(decode(&encode(&b), Case::Lower).unwrap(), b.clone());
            prop_assert_eq!(decode(&encode_secret_upper(&b), Case::Upper).unwrap(), b.clone());
            prop_assert_eq!(&decode_secret(&encode_secret(&b), Case::Any).unwrap()[..], &b[..]);
        }

        #[test]
        fn any_text_is_ok_or_typed(s in ".{0,12}") {
            let _ = decode(&s, Case::Any);
            let _ = decode_array::<4>(&s, Case::Lower);
        }
    }
}
