//! Checks every page header of a Parquet column chunk before the `parquet`
//! crate decodes it. That decoder trusts page headers: a dictionary page
//! claiming 2³¹ − 1 values makes it allocate 16 GiB, a data page claiming a
//! 2 GiB uncompressed size makes it allocate 2 GiB — an allocation failure
//! aborts the process, which no `catch_unwind` can turn into an error. The
//! `parquet` crate keeps its page header type private, so the headers are
//! read here, with a small reader of the Thrift compact protocol that only
//! keeps the sizes and counts and skips everything else (bounded nesting,
//! never allocating from a declared length).
//!
//! The bounds enforced, for each page of a chunk that lies inside the file:
//! the page (header and body) lies inside its chunk; its uncompressed size
//! is at most [`MAX_PAGE_BYTES`] and at most [`MAX_RATIO`] times its stored
//! size plus [`RATIO_SLACK`] (Snappy, the one codec built in, cannot do
//! better than about 21:1); a dictionary page holds no more values than its
//! uncompressed bytes can encode (plain fixed-width values); a data page
//! holds no more values than its chunk declares.
//!
//! The footer is walked first, too ([`check_footer`]): the `parquet` crate's
//! Thrift reader skips a list of booleans without reading a byte per element
//! and reserves a row-group vector as long as the list claims, so a footer
//! whose list claims 2^31 elements costs it 2^31 iterations (a 2.7 KB file
//! took 12 s in the fuzzer) or an aborting allocation. Every list, set and
//! map of the footer must claim no more elements than bytes remain (each
//! element takes at least a byte on the wire; booleans, which that reader
//! skips without a byte, are held to the same bound).

use std::io::Read;

/// Largest uncompressed page accepted (our writer's pages are about 1 MiB,
/// pyarrow's too).
pub const MAX_PAGE_BYTES: u64 = 64 << 20;
/// Largest uncompressed/stored ratio accepted for a page.
pub const MAX_RATIO: u64 = 32;
/// Bytes allowed beyond the ratio (tiny pages).
pub const RATIO_SLACK: u64 = 1024;
/// Deepest Thrift nesting accepted (a page header nests four levels).
const MAX_DEPTH: u32 = 16;

const PAGE_DATA: i32 = 0;
const PAGE_DICTIONARY: i32 = 2;
const PAGE_DATA_V2: i32 = 3;

/// What one column chunk is, from the footer.
#[derive(Debug, Clone, Copy)]
pub struct Chunk {
    /// Stored bytes of the chunk (all its pages with their headers).
    pub len: u64,
    /// Values the chunk declares.
    pub num_values: u64,
    /// Bytes of one plain-encoded value of the column's physical type.
    pub value_width: u64,
}

/// Walks the page headers of a chunk read from `input` (positioned at the
/// chunk's first page); an error says what is wrong and at which offset in
/// the chunk.
pub fn check_chunk(input: impl Read, chunk: Chunk) -> Result<(), String> {
    let mut r = Compact {
        input: input.take(chunk.len),
        pos: 0,
        remaining: 0,
    };
    while r.pos < chunk.len {
        let at = r.pos;
        let h = r.page_header().map_err(|e| format!("page at {at}: {e}"))?;
        let header_len = r.pos - at;
        let bad = |what: String| Err(format!("page at {at}: {what}"));
        let (Ok(stored), Ok(plain)) = (
            u64::try_from(h.compressed_page_size),
            u64::try_from(h.uncompressed_page_size),
        ) else {
            return bad("a negative page size".into());
        };
        if stored > chunk.len - at - header_len {
            return bad(format!("{stored} stored bytes run past the column chunk"));
        }
        if plain > MAX_PAGE_BYTES || plain > stored * MAX_RATIO + RATIO_SLACK {
            return bad(format!(
                "an uncompressed size of {plain} bytes for {stored} stored \
                 (at most {MAX_PAGE_BYTES}, and {MAX_RATIO}:1)"
            ));
        }
        let values = u64::try_from(h.num_values).unwrap_or(0);
        match h.page_type {
            PAGE_DICTIONARY if values.saturating_mul(chunk.value_width) > plain => {
                return bad(format!("a dictionary of {values} values in {plain} bytes"));
            }
            PAGE_DATA | PAGE_DATA_V2 if values > chunk.num_values => {
                return bad(format!(
                    "{values} values in a chunk of {}",
                    chunk.num_values
                ));
            }
            _ => {}
        }
        // Skip the page body.
        let skipped = std::io::copy(&mut (&mut r.input).take(stored), &mut std::io::sink())
            .map_err(|e| format!("page at {at}: {e}"))?;
        if skipped != stored {
            return bad("the file ends inside the page".into());
        }
        r.pos += stored;
    }
    Ok(())
}

/// Walks a file's footer (the Thrift `FileMetaData`, without its length
/// and magic) as the `parquet` crate will read it, refusing any list, set
/// or map that claims more elements than bytes remain.
pub fn check_footer(footer: &[u8]) -> Result<(), String> {
    let mut r = Compact {
        input: footer.take(footer.len() as u64),
        pos: 0,
        remaining: footer.len() as u64,
    };
    r.skip(T_STRUCT, 0)
        .map_err(|e| format!("footer byte {}: {e}", r.pos))
}

/// The fields of a page header that bound the decoder's allocations.
#[derive(Debug, Default)]
struct PageHeader {
    page_type: i32,
    uncompressed_page_size: i32,
    compressed_page_size: i32,
    /// Of the dictionary or data page header (0 if absent).
    num_values: i32,
}

/// Thrift compact protocol types.
const T_TRUE: u8 = 1;
const T_FALSE: u8 = 2;
const T_BYTE: u8 = 3;
const T_I16: u8 = 4;
const T_I32: u8 = 5;
const T_I64: u8 = 6;
const T_DOUBLE: u8 = 7;
const T_BINARY: u8 = 8;
const T_LIST: u8 = 9;
const T_SET: u8 = 10;
const T_MAP: u8 = 11;
const T_STRUCT: u8 = 12;
const T_UUID: u8 = 13;

struct Compact<R: Read> {
    input: std::io::Take<R>,
    pos: u64,
    /// Bytes left to read (list counts are checked against it), or 0 when
    /// unknown (page headers: their lists are skipped a byte at a time).
    remaining: u64,
}

impl<R: Read> Compact<R> {
    fn byte(&mut self) -> Result<u8, String> {
        let mut b = [0u8; 1];
        self.input
            .read_exact(&mut b)
            .map_err(|_| "the header runs past the column chunk".to_string())?;
        self.pos += 1;
        Ok(b[0])
    }

    /// Refuses a collection of `n` elements that cannot fit in what remains.
    fn fits(&self, n: u64) -> Result<(), String> {
        if self.remaining != 0 && n > self.remaining.saturating_sub(self.pos) {
            return Err(format!(
                "a list of {n} elements in {} bytes",
                self.remaining - self.pos.min(self.remaining)
            ));
        }
        Ok(())
    }

    fn skip_bytes(&mut self, n: u64) -> Result<(), String> {
        let got = std::io::copy(&mut (&mut self.input).take(n), &mut std::io::sink())
            .map_err(|e| e.to_string())?;
        self.pos += got;
        if got == n {
            Ok(())
        } else {
            Err("the header runs past the column chunk".into())
        }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                break;
            }
            v |= u64::from(b & 0x7F) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint longer than 64 bits".into())
    }

    fn zigzag(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn i32(&mut self) -> Result<i32, String> {
        i32::try_from(self.zigzag()?).map_err(|_| "an i32 out of range".to_string())
    }

    /// Reads a field header: `None` at the struct's end, else (id, type).
    fn field(&mut self, last: i16) -> Result<Option<(i16, u8)>, String> {
        let b = self.byte()?;
        if b == 0 {
            return Ok(None);
        }
        let delta = b >> 4;
        let id = if delta == 0 {
            i16::try_from(self.zigzag()?).map_err(|_| "a field id out of range")?
        } else {
            last.checked_add(i16::from(delta))
                .ok_or("a field id out of range")?
        };
        Ok(Some((id, b & 0x0F)))
    }

    fn skip(&mut self, ty: u8, depth: u32) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("nested too deep".into());
        }
        match ty {
            T_TRUE | T_FALSE => Ok(()),
            T_BYTE => self.byte().map(drop),
            T_I16 | T_I32 | T_I64 => self.varint().map(drop),
            T_DOUBLE => self.skip_bytes(8),
            T_UUID => self.skip_bytes(16),
            T_BINARY => {
                let n = self.varint()?;
                self.skip_bytes(n)
            }
            T_LIST | T_SET => {
                let b = self.byte()?;
                let n = match b >> 4 {
                    15 => self.varint()?,
                    n => u64::from(n),
                };
                let elem = b & 0x0F;
                self.fits(n)?;
                for _ in 0..n {
                    // Booleans in a list take a byte each; in a footer they
                    // are skipped as the `parquet` crate skips them (no
                    // byte), so that both read the same fields after them
                    // (no footer field is a list of booleans).
                    if elem == T_TRUE || elem == T_FALSE {
                        if self.remaining == 0 {
                            self.byte()?;
                        }
                    } else {
                        self.skip(elem, depth + 1)?;
                    }
                }
                Ok(())
            }
            T_MAP => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                self.fits(n)?;
                let kv = self.byte()?;
                for _ in 0..n {
                    for t in [kv >> 4, kv & 0x0F] {
                        if t == T_TRUE || t == T_FALSE {
                            if self.remaining == 0 {
                                self.byte()?;
                            }
                        } else {
                            self.skip(t, depth + 1)?;
                        }
                    }
                }
                Ok(())
            }
            T_STRUCT => {
                let mut last = 0;
                while let Some((id, t)) = self.field(last)? {
                    self.skip(t, depth + 1)?;
                    last = id;
                }
                Ok(())
            }
            other => Err(format!("unknown Thrift type {other}")),
        }
    }

    /// Reads the `num_values` (field 1) of a dictionary or data page header.
    fn sub_header(&mut self, depth: u32) -> Result<i32, String> {
        let mut last = 0;
        let mut num_values = 0;
        while let Some((id, t)) = self.field(last)? {
            if id == 1 && t == T_I32 {
                num_values = self.i32()?;
            } else {
                self.skip(t, depth + 1)?;
            }
            last = id;
        }
        Ok(num_values)
    }

    fn page_header(&mut self) -> Result<PageHeader, String> {
        let mut h = PageHeader::default();
        let mut seen = [false; 3];
        let mut last = 0;
        while let Some((id, t)) = self.field(last)? {
            match (id, t) {
                (1, T_I32) => (h.page_type, seen[0]) = (self.i32()?, true),
                (2, T_I32) => (h.uncompressed_page_size, seen[1]) = (self.i32()?, true),
                (3, T_I32) => (h.compressed_page_size, seen[2]) = (self.i32()?, true),
                (5 | 7 | 8, T_STRUCT) => {
                    // The largest count of any sub-header (a valid page has one).
                    let n = self.sub_header(1)?;
                    if n < 0 {
                        return Err("a negative value count".into());
                    }
                    h.num_values = h.num_values.max(n);
                }
                _ => self.skip(t, 1)?,
            }
            last = id;
        }
        if seen != [true; 3] {
            return Err("a page header without its type and sizes".into());
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_zigzag() {
        let mut c = Compact {
            input: (&[0x96u8, 0x01, 0x03][..]).take(3),
            pos: 0,
            remaining: 0,
        };
        assert_eq!(c.varint().unwrap(), 150);
        assert_eq!(c.zigzag().unwrap(), -2);
        assert!(c.byte().is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        let bytes = [0x1Cu8; 100];
        let mut c = Compact {
            input: (&bytes[..]).take(100),
            pos: 0,
            remaining: 0,
        };
        assert!(c.skip(T_STRUCT, 0).unwrap_err().contains("deep"));
    }

    #[test]
    fn footer_lists_longer_than_the_footer_are_refused() {
        // Field 1: list<bool> claiming 2^31 - 1 elements (size 15 = varint).
        let mut f = vec![0x19, 0xF1, 0xFF, 0xFF, 0xFF, 0xFF, 0x07];
        f.extend_from_slice(&[1; 16]);
        f.push(0);
        assert!(
            check_footer(&f)
                .unwrap_err()
                .contains("2147483647 elements")
        );
        // Map of 2^20 (bool, bool) pairs.
        let f = [0x1B, 0x80, 0x80, 0x40, 0x11, 0x00];
        assert!(check_footer(&f).unwrap_err().contains("elements"));
        // A short list is fine.
        check_footer(&[0x19, 0x35, 2, 4, 6, 0x00]).unwrap();
    }
}
