//! Sample codecs for the WFDB signal formats (`signal(5)`).
//!
//! Every decoder works on a byte slice that was length-checked first with
//! [`bytes_needed`], so it never reads out of bounds; every encoder refuses
//! values outside the format's range instead of silently wrapping.

use super::SignalError;
use super::header::Format;

/// Bytes needed to hold `n` samples in `format` (a final partial group of a
/// packed format takes only the bytes its samples touch).
pub fn bytes_needed(format: Format, n: u64) -> Option<u64> {
    let (group_samples, group_bytes, partial): (u64, u64, &[u64]) = match format {
        Format::F80 => (1, 1, &[0]),
        Format::F16 | Format::F61 => (1, 2, &[0]),
        Format::F24 => (1, 3, &[0]),
        Format::F32 => (1, 4, &[0]),
        Format::F212 => (2, 3, &[0, 2]),
        Format::F310 => (3, 4, &[0, 2, 4]),
        Format::F311 => (3, 4, &[0, 2, 3]),
    };
    let full = (n / group_samples).checked_mul(group_bytes)?;
    let rem = usize::try_from(n % group_samples).ok()?;
    full.checked_add(*partial.get(rem)?)
}

/// Number of whole samples that fit in `len` bytes of `format`.
pub fn samples_in(format: Format, len: u64) -> u64 {
    match format {
        Format::F80 => len,
        Format::F16 | Format::F61 => len / 2,
        Format::F24 => len / 3,
        Format::F32 => len / 4,
        Format::F212 => len / 3 * 2 + u64::from(len % 3 >= 2),
        Format::F310 => len / 4 * 3 + u64::from(len % 4 >= 2),
        Format::F311 => len / 4 * 3 + (len % 4).saturating_sub(1).min(2),
    }
}

/// Copies up to `N` bytes of `c` into a zero-padded array.
pub(super) fn pad<const N: usize>(c: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    for (d, s) in a.iter_mut().zip(c) {
        *d = *s;
    }
    a
}

pub(super) fn sext(v: u32, bits: u32) -> i32 {
    let shift = 32 - bits;
    ((v << shift) as i32) >> shift
}

/// Decodes exactly `n` samples of `format` from the start of `bytes`.
pub fn decode(format: Format, bytes: &[u8], n: usize) -> Result<Vec<i32>, SignalError> {
    let mut out = Vec::new();
    decode_into(format, bytes, n, &mut out)?;
    Ok(out)
}

/// [`decode`], appending the samples to `out` (so a caller can reuse its
/// buffer). On error `out` is unchanged.
///
/// Speed: the whole groups of every format are decoded from fixed-size
/// chunks (`chunks_exact`, so the compiler drops the bounds checks and
/// vectorises), only the final partial group goes through a zero-padded
/// copy; `benches/wfdb.rs` measures it on MIT-BIH files (`docs/signal.md`).
pub fn decode_into(
    format: Format,
    bytes: &[u8],
    n: usize,
    out: &mut Vec<i32>,
) -> Result<(), SignalError> {
    let need = bytes_needed(format, n as u64).ok_or(SignalError::TooLarge)?;
    if (bytes.len() as u64) < need {
        return Err(SignalError::Truncated {
            needed: need,
            available: bytes.len() as u64,
        });
    }
    // `need` ≤ bytes.len(), so it fits a usize.
    let body = bytes.get(..need as usize).unwrap_or_default();
    out.reserve(n);
    let start = out.len();
    match format {
        Format::F80 => out.extend(body.iter().map(|&b| i32::from(b) - 128)),
        Format::F16 => out.extend(
            body.chunks_exact(2)
                .map(|c| i32::from(i16::from_le_bytes(pad(c)))),
        ),
        Format::F61 => out.extend(
            body.chunks_exact(2)
                .map(|c| i32::from(i16::from_be_bytes(pad(c)))),
        ),
        Format::F24 => out.extend(
            body.chunks_exact(3)
                .map(|c| sext(u32::from_le_bytes(pad(c)), 24)),
        ),
        Format::F32 => out.extend(body.chunks_exact(4).map(|c| i32::from_le_bytes(pad(c)))),
        Format::F212 => {
            let groups = body.chunks_exact(3);
            let tail = groups.remainder();
            for g in groups {
                let [b0, b1, b2] = pad::<3>(g);
                out.push(sext(u32::from(b0) | (u32::from(b1 & 0x0F) << 8), 12));
                out.push(sext(u32::from(b2) | (u32::from(b1 & 0xF0) << 4), 12));
            }
            if !tail.is_empty() {
                let [b0, b1] = pad::<2>(tail);
                out.push(sext(u32::from(b0) | (u32::from(b1 & 0x0F) << 8), 12));
            }
        }
        Format::F310 => {
            let groups = body.chunks_exact(4);
            let tail = groups.remainder();
            let vals = |[g0, g1, g2, g3]: [u8; 4]| {
                let w0 = u32::from(u16::from_le_bytes([g0, g1]));
                let w1 = u32::from(u16::from_le_bytes([g2, g3]));
                [
                    sext((w0 >> 1) & 0x3FF, 10),
                    sext((w1 >> 1) & 0x3FF, 10),
                    sext(((w0 >> 11) & 0x1F) | (((w1 >> 11) & 0x1F) << 5), 10),
                ]
            };
            for g in groups {
                out.extend(vals(pad(g)));
            }
            let left = n.saturating_sub(out.len() - start).min(3);
            out.extend(vals(pad(tail)).iter().take(left));
        }
        Format::F311 => {
            let groups = body.chunks_exact(4);
            let tail = groups.remainder();
            let vals = |g: [u8; 4]| {
                let w = u32::from_le_bytes(g);
                [
                    sext(w & 0x3FF, 10),
                    sext((w >> 10) & 0x3FF, 10),
                    sext((w >> 20) & 0x3FF, 10),
                ]
            };
            for g in groups {
                out.extend(vals(pad(g)));
            }
            let left = n.saturating_sub(out.len() - start).min(3);
            out.extend(vals(pad(tail)).iter().take(left));
        }
    }
    // A packed format's whole groups may hold one or two samples past `n`
    // (e.g. n odd in 212 with an even byte count): keep exactly n.
    out.truncate(start + n);
    Ok(())
}

/// Encodes samples in `format`. Values outside the format's range are refused.
pub fn encode(format: Format, samples: &[i32]) -> Result<Vec<u8>, SignalError> {
    let (lo, hi) = format.range();
    if let Some((index, &value)) = samples
        .iter()
        .enumerate()
        .find(|(_, v)| **v < lo || **v > hi)
    {
        return Err(SignalError::OutOfRange {
            index,
            value,
            format: format.code(),
        });
    }
    let need = bytes_needed(format, samples.len() as u64).ok_or(SignalError::TooLarge)?;
    let mut out = Vec::with_capacity(usize::try_from(need).map_err(|_| SignalError::TooLarge)?);
    match format {
        Format::F80 => out.extend(samples.iter().map(|&v| (v + 128) as u8)),
        Format::F16 => samples
            .iter()
            .for_each(|&v| out.extend_from_slice(&(v as i16).to_le_bytes())),
        Format::F61 => samples
            .iter()
            .for_each(|&v| out.extend_from_slice(&(v as i16).to_be_bytes())),
        Format::F24 => samples
            .iter()
            .for_each(|&v| out.extend_from_slice(&v.to_le_bytes()[..3])),
        Format::F32 => samples
            .iter()
            .for_each(|&v| out.extend_from_slice(&v.to_le_bytes())),
        Format::F212 => {
            for pair in samples.chunks(2) {
                let a = (pair.first().copied().unwrap_or(0) as u32) & 0xFFF;
                match pair.get(1) {
                    Some(&b) => {
                        let b = (b as u32) & 0xFFF;
                        out.extend_from_slice(&[
                            (a & 0xFF) as u8,
                            ((a >> 8) | ((b >> 4) & 0xF0)) as u8,
                            (b & 0xFF) as u8,
                        ]);
                    }
                    None => out.extend_from_slice(&[(a & 0xFF) as u8, (a >> 8) as u8]),
                }
            }
        }
        Format::F310 => {
            for tri in samples.chunks(3) {
                let v = |k: usize| tri.get(k).map_or(0, |&x| (x as u32) & 0x3FF);
                let w0 = (v(0) << 1) | ((v(2) & 0x1F) << 11);
                let w1 = (v(1) << 1) | ((v(2) >> 5) << 11);
                let bytes = [
                    (w0 & 0xFF) as u8,
                    (w0 >> 8) as u8,
                    (w1 & 0xFF) as u8,
                    (w1 >> 8) as u8,
                ];
                out.extend_from_slice(
                    bytes
                        .get(..if tri.len() == 1 { 2 } else { 4 })
                        .unwrap_or_default(),
                );
            }
        }
        Format::F311 => {
            for tri in samples.chunks(3) {
                let v = |k: usize| tri.get(k).map_or(0, |&x| (x as u32) & 0x3FF);
                let w = v(0) | (v(1) << 10) | (v(2) << 20);
                out.extend_from_slice(w.to_le_bytes().get(..tri.len() + 1).unwrap_or_default());
            }
        }
    }
    Ok(out)
}

/// WFDB checksum: the sum of all samples, modulo 2^16, as a signed 16-bit value.
pub fn checksum(samples: &[i32]) -> i16 {
    samples
        .iter()
        .fold(0i16, |acc, &v| acc.wrapping_add(v as i16))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_212_bytes() {
        // 0x123 and 0x456 → 0x23, 0x41, 0x56 (second sample's high nibble in the top of byte 1).
        assert_eq!(
            encode(Format::F212, &[0x123, 0x456]).unwrap(),
            vec![0x23, 0x41, 0x56]
        );
        assert_eq!(
            decode(Format::F212, &[0x23, 0x41, 0x56], 2).unwrap(),
            vec![0x123, 0x456]
        );
        assert_eq!(
            decode(Format::F212, &[0xFF, 0xFF, 0xFF], 2).unwrap(),
            vec![-1, -1]
        );
    }

    #[test]
    fn truncated_is_error_not_panic() {
        for f in Format::ALL {
            for n in 1..10usize {
                let need = bytes_needed(f, n as u64).unwrap() as usize;
                let buf = vec![0u8; need - 1];
                assert!(
                    matches!(decode(f, &buf, n), Err(SignalError::Truncated { .. })),
                    "{f:?} {n}"
                );
                assert_eq!(
                    samples_in(f, need as u64) as usize,
                    n.max(samples_in(f, need as u64) as usize)
                );
            }
        }
    }

    #[test]
    fn out_of_range_refused() {
        assert!(matches!(
            encode(Format::F212, &[2048]),
            Err(SignalError::OutOfRange { .. })
        ));
        assert!(matches!(
            encode(Format::F80, &[-129]),
            Err(SignalError::OutOfRange { .. })
        ));
    }

    proptest! {
        #[test]
        fn roundtrip_every_format(fi in 0usize..8, raw in proptest::collection::vec(any::<i32>(), 0..200)) {
            let f = Format::ALL[fi];
            let (lo, hi) = f.range();
            let vals: Vec<i32> = raw.iter().map(|&v| (lo as i64 + (v as i64 - i32::MIN as i64).rem_euclid(hi as i64 - lo as i64 + 1)) as i32).collect();
            let bytes = encode(f, &vals).unwrap();
            prop_assert_eq!(bytes.len() as u64, bytes_needed(f, vals.len() as u64).unwrap());
            prop_assert_eq!(decode(f, &bytes, vals.len()).unwrap(), vals);
        }

        #[test]
        fn decode_never_panics(fi in 0usize..8, bytes in proptest::collection::vec(any::<u8>(), 0..64), n in 0usize..100) {
            let _ = decode(Format::ALL[fi], &bytes, n);
        }
    }
}
