//! A lossless ECG codec: per-channel fixed linear prediction, byte-packed
//! residuals, then zstd.
//!
//! For each channel the encoder picks the fixed predictor (order 1, 2 or 3:
//! `x[n-1]`, `2x[n-1]-x[n-2]`, `3x[n-1]-3x[n-2]+x[n-3]`, history before the
//! frame taken as 0) whose residuals have the smallest absolute sum.
//! Arithmetic wraps in `i32`, so every `i32` sample round-trips exactly.
//! Residuals are zig-zag mapped; one below 255 is one byte, anything else is
//! the byte 255 plus four bytes in an escape area. The block is compressed
//! with zstd (frame content size always written).
//!
//! Block before zstd (`C` channels, `n` samples each):
//!
//! | bytes | content |
//! |---|---|
//! | `C` | predictor order per channel (1, 2 or 3) |
//! | `C·n` | residual bytes, channel-major |
//! | `4·E` | `E` escaped residuals, u32 little-endian zig-zag, in order |
//!
//! The decoder never allocates more than the caller's declared
//! `channels × samples` allows: a zstd frame whose declared content size is
//! larger is refused as a [`CodecError::DecompressionBomb`] before
//! decompression.

use aorta_base::codec::Reader;

/// Codec identifier of this codec in frame headers.
pub const CODEC_LPC_ZSTD: u8 = 1;
/// Codec identifier of RR-interval frames: one channel of RR intervals in
/// microseconds, compressed with this same lossless block
/// (`docs/frame-format.md`, codec 2; rules in [`crate::frame`]).
pub const CODEC_RR: u8 = 2;
/// zstd level the encoder uses.
pub const ZSTD_LEVEL: i32 = 3;

/// What is wrong with an encoded block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The zstd frame declares (or would produce) more bytes than the
    /// declared sample count allows.
    #[error("decompression bomb: block declares {declared} bytes, at most {limit} allowed")]
    DecompressionBomb {
        /// Declared decompressed size (u64::MAX when unknown).
        declared: u64,
        /// Limit derived from channels × samples.
        limit: u64,
    },
    /// The compressed bytes are not a valid zstd frame or the block does not parse.
    #[error("malformed codec block: {0}")]
    Malformed(&'static str),
    /// Channels have different lengths or there are too many samples.
    #[error("bad input shape: {0}")]
    Shape(&'static str),
    /// zstd failed while compressing (our bug or out of memory).
    #[error("zstd compression failed")]
    Compress,
}

fn zigzag(r: i32) -> u32 {
    ((r << 1) ^ (r >> 31)) as u32
}
fn unzigzag(z: u32) -> i32 {
    ((z >> 1) as i32) ^ -((z & 1) as i32)
}

fn predict(order: u8, h1: i32, h2: i32, h3: i32) -> i32 {
    match order {
        1 => h1,
        2 => h1.wrapping_mul(2).wrapping_sub(h2),
        _ => h1
            .wrapping_mul(3)
            .wrapping_sub(h2.wrapping_mul(3))
            .wrapping_add(h3),
    }
}

fn best_order(x: &[i32]) -> u8 {
    let (mut s1, mut s2, mut s3) = (0u64, 0u64, 0u64);
    let (mut h1, mut h2, mut h3) = (0i32, 0i32, 0i32);
    for &v in x {
        s1 += u64::from(v.wrapping_sub(predict(1, h1, h2, h3)).unsigned_abs());
        s2 += u64::from(v.wrapping_sub(predict(2, h1, h2, h3)).unsigned_abs());
        s3 += u64::from(v.wrapping_sub(predict(3, h1, h2, h3)).unsigned_abs());
        h3 = h2;
        h2 = h1;
        h1 = v;
    }
    if s1 <= s2 && s1 <= s3 {
        1
    } else if s2 <= s3 {
        2
    } else {
        3
    }
}

/// Upper bound of the block size for `channels × n` samples (before zstd).
pub fn max_block_len(channels: usize, n: usize) -> Option<usize> {
    let total = channels.checked_mul(n)?;
    channels.checked_add(total.checked_mul(5)?)
}

/// Encodes equal-length channels losslessly.
pub fn encode(channels: &[&[i32]]) -> Result<Vec<u8>, CodecError> {
    let n = channels.first().map_or(0, |c| c.len());
    if channels.iter().any(|c| c.len() != n) {
        return Err(CodecError::Shape("channels differ in length"));
    }
    let c = channels.len();
    let total = c
        .checked_mul(n)
        .ok_or(CodecError::Shape("too many samples"))?;
    let mut block = Vec::with_capacity(c + total + 64);
    let mut escapes = Vec::new();
    let orders: Vec<u8> = channels.iter().map(|x| best_order(x)).collect();
    block.extend_from_slice(&orders);
    for (x, &order) in channels.iter().zip(&orders) {
        let (mut h1, mut h2, mut h3) = (0i32, 0i32, 0i32);
        for &v in x.iter() {
            let z = zigzag(v.wrapping_sub(predict(order, h1, h2, h3)));
            if z < 255 {
                block.push(z as u8);
            } else {
                block.push(255);
                escapes.extend_from_slice(&z.to_le_bytes());
            }
            h3 = h2;
            h2 = h1;
            h1 = v;
        }
    }
    block.extend_from_slice(&escapes);
    // One zstd context per thread: creating it costs more than compressing
    // a 1-second frame.
    thread_local! {
        static CCTX: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    CCTX.with(|c| {
        let mut c = c.try_borrow_mut().map_err(|_| CodecError::Compress)?;
        if c.is_none() {
            *c = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(|_| CodecError::Compress)?);
        }
        match c.as_mut() {
            Some(z) => z.compress(&block).map_err(|_| CodecError::Compress),
            None => Err(CodecError::Compress),
        }
    })
}

/// Decodes a block produced by [`encode`] that must hold exactly `channels`
/// channels of `n` samples.
pub fn decode(bytes: &[u8], channels: usize, n: usize) -> Result<Vec<Vec<i32>>, CodecError> {
    let limit = max_block_len(channels, n).ok_or(CodecError::Shape("too many samples"))?;
    let declared = match zstd::zstd_safe::get_frame_content_size(bytes) {
        Ok(Some(d)) => d,
        Ok(None) => return Err(CodecError::Malformed("zstd frame without content size")),
        Err(_) => return Err(CodecError::Malformed("not a zstd frame")),
    };
    if declared > limit as u64 {
        return Err(CodecError::DecompressionBomb {
            declared,
            limit: limit as u64,
        });
    }
    let min = channels + channels * n; // cannot overflow: ≤ limit
    if declared < min as u64 {
        return Err(CodecError::Malformed(
            "block shorter than the declared samples",
        ));
    }
    thread_local! {
        static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    // The decompressed block is the samples in another form: wiped on drop,
    // as is every partly decoded channel on an error path.
    let block = zeroize::Zeroizing::new(DCTX.with(|d| {
        let mut d = d
            .try_borrow_mut()
            .map_err(|_| CodecError::Malformed("decoder busy"))?;
        if d.is_none() {
            *d = Some(
                zstd::bulk::Decompressor::new()
                    .map_err(|_| CodecError::Malformed("zstd context"))?,
            );
        }
        match d.as_mut() {
            Some(z) => z
                .decompress(bytes, declared as usize)
                .map_err(|_| CodecError::Malformed("zstd decompression failed")),
            None => Err(CodecError::Malformed("zstd context")),
        }
    })?);
    if block.len() as u64 != declared {
        return Err(CodecError::Malformed("zstd content size mismatch"));
    }
    let mut r = Reader::new(&block);
    let short = |_| CodecError::Malformed("residuals short");
    let orders = r.take(channels, "orders").map_err(short)?;
    let residuals = r.take(channels * n, "residuals").map_err(short)?;
    let mut esc = Reader::new(r.rest());
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(channels));
    for (ci, &order) in orders.iter().enumerate() {
        if !(1..=3).contains(&order) {
            return Err(CodecError::Malformed("unknown predictor order"));
        }
        let res = residuals
            .get(ci * n..(ci + 1) * n)
            .ok_or(CodecError::Malformed("residuals short"))?;
        let mut x = Vec::with_capacity(n);
        let (mut h1, mut h2, mut h3) = (0i32, 0i32, 0i32);
        for &b in res {
            let z = if b < 255 {
                u32::from(b)
            } else {
                let z = esc
                    .u32_le("escape")
                    .map_err(|_| CodecError::Malformed("escape area short"))?;
                if z < 255 {
                    return Err(CodecError::Malformed("escape holds a short residual"));
                }
                z
            };
            let v = unzigzag(z).wrapping_add(predict(order, h1, h2, h3));
            x.push(v);
            h3 = h2;
            h2 = h1;
            h1 = v;
        }
        out.push(x);
    }
    esc.finish()
        .map_err(|_| CodecError::Malformed("trailing bytes in escape area"))?;
    Ok(std::mem::take(&mut *out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_and_extremes_round_trip() {
        let e: Vec<&[i32]> = vec![];
        assert_eq!(
            decode(&encode(&e).unwrap(), 0, 0).unwrap(),
            Vec::<Vec<i32>>::new()
        );
        let x = vec![i32::MIN, i32::MAX, 0, -1, i32::MIN, i32::MAX, 1];
        let y = vec![5; 7];
        let enc = encode(&[&x, &y]).unwrap();
        assert_eq!(decode(&enc, 2, 7).unwrap(), vec![x, y]);
    }

    #[test]
    fn bomb_is_refused_before_decompression() {
        let big = vec![0u8; 1 << 20];
        let z = zstd::bulk::compress(&big, 3).unwrap();
        assert!(z.len() < 1000);
        assert!(matches!(
            decode(&z, 1, 10),
            Err(CodecError::DecompressionBomb { .. })
        ));
    }

    #[test]
    fn wrong_shape_and_garbage_are_refused() {
        let x = vec![1, 2, 3];
        let enc = encode(&[&x]).unwrap();
        assert!(decode(&enc, 1, 4).is_err());
        assert!(decode(&enc, 2, 3).is_err());
        assert!(decode(b"garbage", 1, 3).is_err());
        assert!(encode(&[&x, &x[..2]]).is_err());
    }

    proptest! {
        #[test]
        fn round_trips(chans in proptest::collection::vec(
            proptest::collection::vec(any::<i32>(), 50), 1..4)) {
            let refs: Vec<&[i32]> = chans.iter().map(Vec::as_slice).collect();
            let enc = encode(&refs).unwrap();
            prop_assert_eq!(decode(&enc, chans.len(), 50).unwrap(), chans);
        }

        #[test]
        fn smooth_round_trips(start in -2000i32..2000, steps in proptest::collection::vec(-40i32..40, 1..300)) {
            let mut x = vec![start];
            for s in steps { let l = *x.last().unwrap(); x.push(l + s); }
            let enc = encode(&[&x]).unwrap();
            prop_assert_eq!(decode(&enc, 1, x.len()).unwrap(), vec![x]);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), c in 0usize..4, n in 0usize..100) {
            let _ = decode(&bytes, c, n);
        }
    }
}
