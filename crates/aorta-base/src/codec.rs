//! One bounds-checked reader and one pair of codec traits for every format.
//!
//! Every wire and disk format aorta defines (frames, result envelopes, vault
//! containers, broker messages, log records, checkpoints) encodes with
//! [`Encode`] and decodes with [`Decode`] over a [`Reader`]. The reader never
//! indexes out of bounds: running short is [`DecodeError::Short`], bytes left
//! after a whole value is [`DecodeError::Trailing`], and a field that parses
//! but is not allowed is [`DecodeError::Invalid`]. Integers are big-endian
//! unless a method says `_le`.
//!
//! ```
//! use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
//!
//! #[derive(Debug, PartialEq)]
//! struct Pair { a: u16, b: Vec<u8> }
//!
//! impl Encode for Pair {
//!     fn encode(&self, out: &mut Vec<u8>) {
//!         out.extend_from_slice(&self.a.to_be_bytes());
//!         // Pair's constructor keeps `b` under 64 KiB.
//!         let _ = aorta_base::codec::put_bytes_u16(out, "b", &self.b);
//!     }
//! }
//! impl<'a> Decode<'a> for Pair {
//!     fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
//!         Ok(Pair { a: r.u16("a")?, b: r.bytes_u16("b")?.to_vec() })
//!     }
//! }
//!
//! let p = Pair { a: 7, b: b"hi".to_vec() };
//! let bytes = p.to_bytes();
//! assert_eq!(Pair::from_bytes(&bytes)?, p);
//! assert!(matches!(Pair::from_bytes(&bytes[..3]), Err(DecodeError::Short { .. })));
//! let mut longer = bytes.clone();
//! longer.push(0);
//! assert!(matches!(Pair::from_bytes(&longer), Err(DecodeError::Trailing { .. })));
//! # Ok::<(), DecodeError>(())
//! ```

/// Why bytes did not decode. Offsets are from the start of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside `field`.
    #[error(
        "input ends inside {field} at offset {offset}: {needed} more bytes needed, {available} left"
    )]
    Short {
        /// The field being read.
        field: &'static str,
        /// Where it starts.
        offset: usize,
        /// Bytes it needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// Bytes remain after a whole value.
    #[error("{extra} unexpected bytes after the value at offset {offset}")]
    Trailing {
        /// Where the extra bytes start.
        offset: usize,
        /// How many there are.
        extra: usize,
    },
    /// A field holds a value the format does not allow.
    #[error("{field} at offset {offset}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Where it starts.
        offset: usize,
        /// What is wrong, in words.
        reason: &'static str,
    },
}

/// A cursor over borrowed bytes that never reads past their end.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Offset of the next byte.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// True when every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let short = DecodeError::Short {
            field,
            offset: self.pos,
            needed: n,
            available: self.remaining(),
        };
        let end = self.pos.checked_add(n).ok_or(short.clone())?;
        let s = self.buf.get(self.pos..end).ok_or(short)?;
        self.pos = end;
        Ok(s)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let s = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Everything not yet read.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = self.buf.get(self.pos..).unwrap_or(&[]);
        self.pos = self.buf.len();
        s
    }

    /// The next bytes without consuming them (at most `n`).
    pub fn peek(&self, n: usize) -> &'a [u8] {
        let end = self.pos.saturating_add(n).min(self.buf.len());
        self.buf.get(self.pos..end).unwrap_or(&[])
    }

    /// One byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(u8::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `i64`.
    pub fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    /// A little-endian `u16`.
    pub fn u16_le(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    /// A little-endian `u32`.
    pub fn u32_le(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    /// A little-endian `i64`.
    pub fn i64_le(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array(field)?))
    }

    /// Bytes prefixed by a one-byte length.
    pub fn bytes_u8(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.u8(field)?;
        self.take(usize::from(n), field)
    }

    /// Bytes prefixed by a big-endian `u16` length.
    pub fn bytes_u16(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.u16(field)?;
        self.take(usize::from(n), field)
    }

    /// Bytes prefixed by a big-endian `u32` length, refused above `max`.
    pub fn bytes_u32(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let n = usize::try_from(self.u32(field)?).unwrap_or(usize::MAX);
        if n > max {
            return Err(DecodeError::Invalid {
                field,
                offset: at,
                reason: "length above the format's limit",
            });
        }
        self.take(n, field)
    }

    /// A typed [`DecodeError::Invalid`] at the current offset minus `back`
    /// bytes (the start of the field just read).
    pub fn invalid(&self, field: &'static str, back: usize, reason: &'static str) -> DecodeError {
        DecodeError::Invalid {
            field,
            offset: self.pos.saturating_sub(back),
            reason,
        }
    }

    /// Succeeds only when every byte has been read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::Trailing {
                offset: self.pos,
                extra,
            }),
        }
    }
}

/// A field too long for its length prefix (a caller's bug or a value that
/// was not checked against the format's limits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {len} bytes do not fit its {bits}-bit length prefix")]
pub struct TooLong {
    /// The field.
    pub field: &'static str,
    /// Its length.
    pub len: usize,
    /// Width of the prefix.
    pub bits: u32,
}

/// Appends `b` with a one-byte length prefix; nothing is written when it
/// does not fit.
pub fn put_bytes_u8(out: &mut Vec<u8>, field: &'static str, b: &[u8]) -> Result<(), TooLong> {
    let n = u8::try_from(b.len()).map_err(|_| TooLong {
        field,
        len: b.len(),
        bits: 8,
    })?;
    out.push(n);
    out.extend_from_slice(b);
    Ok(())
}

/// Appends `b` with a big-endian `u16` length prefix; nothing is written
/// when it does not fit.
pub fn put_bytes_u16(out: &mut Vec<u8>, field: &'static str, b: &[u8]) -> Result<(), TooLong> {
    let n = u16::try_from(b.len()).map_err(|_| TooLong {
        field,
        len: b.len(),
        bits: 16,
    })?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

/// Appends `b` with a big-endian `u32` length prefix; nothing is written
/// when it does not fit.
pub fn put_bytes_u32(out: &mut Vec<u8>, field: &'static str, b: &[u8]) -> Result<(), TooLong> {
    let n = u32::try_from(b.len()).map_err(|_| TooLong {
        field,
        len: b.len(),
        bits: 32,
    })?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(b);
    Ok(())
}

/// A value with one byte encoding.
pub trait Encode {
    /// Appends the encoding to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// The encoding as a new vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }
}

/// A value decoded from bytes, possibly borrowing them.
pub trait Decode<'a>: Sized {
    /// Reads one value, leaving the reader after it.
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError>;

    /// Decodes exactly one value from all of `bytes`; trailing bytes are an
    /// error.
    fn from_bytes(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = Self::decode(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

/// For a format's hidden `fuzzing` module, for a format with exactly one
/// encoding of each value (a borrowing type included): decodes `data`; when
/// it decodes, checks that re-encoding gives back exactly `data`. Returns
/// whether `data` decoded.
///
/// # Panics
/// When the re-encoding differs — that is the bug a fuzzer looks for.
#[allow(
    clippy::panic,
    reason = "a fuzz oracle reports a broken round trip by panicking"
)]
pub fn fuzz_exact<'a, T: Decode<'a> + Encode>(data: &'a [u8]) -> bool {
    let Ok(v) = T::from_bytes(data) else {
        return false;
    };
    if v.to_bytes() != data {
        panic!("encode(decode(x)) differs from x");
    }
    true
}

/// Declares a format crate's fuzzing entry points: for each `name: Type;`
/// (with its doc comment), `pub fn name(data: &[u8]) -> bool` running
/// [`fuzz_exact`] over `Type`. The fuzz targets in `fuzz/` and the crates'
/// mutation tests call them.
#[macro_export]
macro_rules! fuzz_entry_points {
    ($($(#[$attr:meta])* $name:ident: $ty:ty;)*) => {
        $(
            $(#[$attr])*
            pub fn $name(data: &[u8]) -> bool {
                $crate::codec::fuzz_exact::<$ty>(data)
            }
        )*
    };
}

/// For fuzz tests: the committed test vectors of one format, the files of
/// `dir` whose extension is `ext`, sorted by path.
pub fn vector_files(
    dir: &std::path::Path,
    ext: &str,
) -> std::io::Result<Vec<(std::path::PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let p = entry?.path();
        if p.extension().is_some_and(|e| e == ext) {
            let b = std::fs::read(&p)?;
            out.push((p, b));
        }
    }
    out.sort();
    Ok(out)
}

/// For fuzz tests: every truncation of `b`, every single-bit flip of its
/// first `flip_limit` bytes, and `b` with one zero byte appended.
pub fn mutations(b: &[u8], flip_limit: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..b.len())
        .map(|cut| b.get(..cut).unwrap_or_default().to_vec())
        .collect();
    for i in 0..b.len().min(flip_limit) {
        for bit in 0..8 {
            let mut m = b.to_vec();
            if let Some(x) = m.get_mut(i) {
                *x ^= 1 << bit;
            }
            out.push(m);
        }
    }
    let mut longer = b.to_vec();
    longer.push(0);
    out.push(longer);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_and_trailing_are_typed() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16("x").unwrap(), 0x0102);
        assert_eq!(
            r.u16("y"),
            Err(DecodeError::Short {
                field: "y",
                offset: 2,
                needed: 2,
                available: 1
            })
        );
        assert_eq!(
            r.finish(),
            Err(DecodeError::Trailing {
                offset: 2,
                extra: 1
            })
        );
        assert_eq!(r.rest(), &[3]);
        r.finish().unwrap();
    }

    #[test]
    fn huge_lengths_do_not_overflow() {
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0]);
        assert!(matches!(
            r.bytes_u32("b", usize::MAX),
            Err(DecodeError::Short { .. })
        ));
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0]);
        assert!(matches!(
            r.bytes_u32("b", 16),
            Err(DecodeError::Invalid { .. })
        ));
        let mut r = Reader::new(&[]);
        assert!(r.take(usize::MAX, "t").is_err());
    }

    proptest! {
        #[test]
        fn reader_never_panics(b in proptest::collection::vec(any::<u8>(), 0..40), n in 0usize..50) {
            let mut r = Reader::new(&b);
            let _ = r.take(n, "t");
            let _ = r.u64("u");
            let _ = r.bytes_u16("b");
            let _ = r.bytes_u32("c", 8);
            let _ = r.peek(n);
            prop_assert!(r.position() <= b.len());
        }
    }
}
