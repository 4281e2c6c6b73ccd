//! Algorithm 1, line 1: D_input = D_head + C.
//!
//! For DICOM Part 10 files D_head is the 128-byte preamble, the `DICM` magic,
//! the file meta group and every top-level attribute before Pixel Data
//! (7FE0,0010), up to and including that element's tag/VR/length header; C is
//! the Pixel Data value and whatever follows it. A DICOM file without Pixel
//! Data (an ECG waveform, a structured report) keeps only preamble + meta group
//! as D_head. Deflated transfer syntaxes cannot be walked without inflating, so
//! they too keep only preamble + meta group. Other files have no header unless
//! the caller overrides the split with an explicit byte count.

use super::SelectiveError;

/// How to split the input into D_head and C.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderRule {
    /// DICOM-aware detection; non-DICOM input has no header.
    #[default]
    Auto,
    /// The first N bytes are the header (`--header-bytes N`).
    Bytes(u64),
    /// No header: everything is content.
    None,
}

/// What [`split`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitKind {
    /// Not DICOM (or [`HeaderRule::None`]): no header.
    NoHeader,
    /// DICOM; `pixel_data` says whether the split is at the Pixel Data element.
    Dicom {
        /// True when D_head ends at the Pixel Data value.
        pixel_data: bool,
    },
    /// Explicit byte count.
    Override,
}

/// The split point of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// Length of D_head; C is `input[head_len..]`.
    pub head_len: usize,
    /// How the split was chosen.
    pub kind: SplitKind,
}

const MAX_DEPTH: usize = 32;
const TS_IMPLICIT_LE: &[u8] = b"1.2.840.10008.1.2";
const TS_EXPLICIT_BE: &[u8] = b"1.2.840.10008.1.2.2";
const TS_DEFLATED: &[u8] = b"1.2.840.10008.1.2.1.99";
const UNDEFINED: u32 = 0xFFFF_FFFF;

/// Splits `input` according to `rule`.
pub fn split(input: &[u8], rule: HeaderRule) -> Result<Split, SelectiveError> {
    match rule {
        HeaderRule::None => Ok(Split {
            head_len: 0,
            kind: SplitKind::NoHeader,
        }),
        HeaderRule::Bytes(n) => {
            let head_len = usize::try_from(n)
                .ok()
                .filter(|&h| h <= input.len())
                .ok_or(SelectiveError::HeaderBytesTooLarge {
                    requested: n,
                    input_len: input.len() as u64,
                })?;
            Ok(Split {
                head_len,
                kind: SplitKind::Override,
            })
        }
        HeaderRule::Auto => {
            if !is_dicom(input) {
                return Ok(Split {
                    head_len: 0,
                    kind: SplitKind::NoHeader,
                });
            }
            let (meta_end, ts) = read_meta(input)?;
            let syntax = Syntax::from_uid(&ts);
            if syntax == Syntax::Deflated {
                return Ok(Split {
                    head_len: meta_end,
                    kind: SplitKind::Dicom { pixel_data: false },
                });
            }
            match find_pixel_data(input, meta_end, syntax)? {
                Some(value_start) => Ok(Split {
                    head_len: value_start,
                    kind: SplitKind::Dicom { pixel_data: true },
                }),
                None => Ok(Split {
                    head_len: meta_end,
                    kind: SplitKind::Dicom { pixel_data: false },
                }),
            }
        }
    }
}

/// True when `input` has the DICOM Part 10 preamble and `DICM` magic.
pub fn is_dicom(input: &[u8]) -> bool {
    input.get(128..132) == Some(b"DICM".as_slice())
}

/// DICOM transfer syntax families this walker understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// Explicit VR little endian (and the compressed syntaxes built on it).
    ExplicitLe,
    /// Implicit VR little endian.
    ImplicitLe,
    /// Explicit VR big endian (retired).
    ExplicitBe,
    /// Deflated explicit VR little endian: not walkable without inflating.
    Deflated,
}

impl Syntax {
    fn from_uid(ts: &[u8]) -> Self {
        if ts == TS_DEFLATED {
            Syntax::Deflated
        } else if ts == TS_IMPLICIT_LE {
            Syntax::ImplicitLe
        } else if ts == TS_EXPLICIT_BE {
            Syntax::ExplicitBe
        } else {
            Syntax::ExplicitLe
        }
    }
}

/// The structure of a DICOM Part 10 file (or of a D_head that ends at
/// Pixel Data): file meta elements and top-level data set elements up to,
/// and including, Pixel Data. Each element comes with the offset just past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DicomLayout {
    /// Transfer syntax family of the data set.
    pub syntax: Syntax,
    /// File meta group elements with their end offsets.
    pub meta: Vec<(Element, usize)>,
    /// Offset where the data set starts.
    pub dataset_start: usize,
    /// Top-level data set elements with their end offsets (empty for
    /// [`Syntax::Deflated`]); Pixel Data, if present, is last and its end
    /// offset is clamped to the input length.
    pub elements: Vec<(Element, usize)>,
}

/// Parses the layout of a DICOM Part 10 input.
pub fn dicom_layout(d: &[u8]) -> Result<DicomLayout, SelectiveError> {
    if !is_dicom(d) {
        return Err(malformed(128, "no DICM magic after the 128-byte preamble"));
    }
    let (meta_end, ts) = read_meta(d)?;
    let mut meta = Vec::new();
    let mut off = 132;
    while off < meta_end {
        let e = read_element(d, off, Syntax::ExplicitLe)?;
        let end = e.value_start + e.len.unwrap_or(0) as usize;
        meta.push((e, end));
        off = end;
    }
    let syntax = Syntax::from_uid(&ts);
    let mut elements = Vec::new();
    if syntax != Syntax::Deflated {
        let mut pending: Option<Element> = None;
        walk_top_level_ends(d, meta_end, syntax, |e, end| {
            if (e.group, e.element) == (0x7FE0, 0x0010) {
                pending = Some(*e);
                false
            } else {
                elements.push((*e, end));
                true
            }
        })?;
        if let Some(p) = pending {
            let end = match p.len {
                Some(l) => (p.value_start + l as usize).min(d.len()),
                None => d.len(),
            };
            elements.push((p, end));
        }
    }
    Ok(DicomLayout {
        syntax,
        meta,
        dataset_start: meta_end,
        elements,
    })
}

fn walk_top_level_ends(
    d: &[u8],
    start: usize,
    syntax: Syntax,
    mut visit: impl FnMut(&Element, usize) -> bool,
) -> Result<(), SelectiveError> {
    let mut off = start;
    while off < d.len() {
        let e = read_element(d, off, syntax)?;
        if (e.group, e.element) == (0x7FE0, 0x0010) {
            visit(&e, d.len());
            return Ok(());
        }
        let end = match e.len {
            Some(l) => e.value_start + l as usize,
            None => skip_undefined(d, e.value_start, syntax, 1, Undefined::Sequence)?,
        };
        if !visit(&e, end) {
            return Ok(());
        }
        off = end;
    }
    Ok(())
}

/// One element header as found in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Element {
    /// Tag group.
    pub group: u16,
    /// Tag element.
    pub element: u16,
    /// Value representation (explicit syntaxes).
    pub vr: Option<[u8; 2]>,
    /// Offset of the tag.
    pub header_start: usize,
    /// Offset of the value.
    pub value_start: usize,
    /// `None` for undefined length.
    pub len: Option<u32>,
}

fn malformed(offset: usize, reason: &'static str) -> SelectiveError {
    SelectiveError::MalformedDicom {
        offset: offset as u64,
        reason,
    }
}

fn u16_at(d: &[u8], off: usize, be: bool) -> Result<u16, SelectiveError> {
    let b: [u8; 2] = d
        .get(off..off + 2)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| malformed(off, "truncated element header"))?;
    Ok(if be {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    })
}

fn u32_at(d: &[u8], off: usize, be: bool) -> Result<u32, SelectiveError> {
    let b: [u8; 4] = d
        .get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| malformed(off, "truncated element header"))?;
    Ok(if be {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

/// True for the DICOM value representations whose explicit-VR element header
/// has two reserved bytes and a 32-bit length (PS3.5 §7.1.2).
pub fn long_vr(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"SV"
            | b"UC"
            | b"UN"
            | b"UR"
            | b"UT"
            | b"UV"
    )
}

/// Reads the element header at `off`.
fn read_element(d: &[u8], off: usize, syntax: Syntax) -> Result<Element, SelectiveError> {
    let be = syntax == Syntax::ExplicitBe;
    let group = u16_at(d, off, be)?;
    let element = u16_at(d, off + 2, be)?;
    // Item and delimitation tags are always in implicit form.
    let implicit = syntax == Syntax::ImplicitLe || group == 0xFFFE;
    let (vr, len, value_start) = if implicit {
        (None, u32_at(d, off + 4, be)?, off + 8)
    } else {
        let vr: [u8; 2] = d
            .get(off + 4..off + 6)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| malformed(off, "truncated element header"))?;
        if !vr.iter().all(u8::is_ascii_uppercase) {
            return Err(malformed(off + 4, "invalid value representation"));
        }
        if long_vr(vr) {
            (Some(vr), u32_at(d, off + 8, be)?, off + 12)
        } else {
            (Some(vr), u32::from(u16_at(d, off + 6, be)?), off + 8)
        }
    };
    let len = (len != UNDEFINED).then_some(len);
    // Pixel Data's value may lie beyond a D_head that ends at it.
    let pixel_data = (group, element) == (0x7FE0, 0x0010);
    if let (Some(l), false) = (len, pixel_data) {
        let end = value_start
            .checked_add(l as usize)
            .ok_or_else(|| malformed(off, "element length overflows"))?;
        if end > d.len() {
            return Err(malformed(off, "element value runs past end of file"));
        }
    }
    Ok(Element {
        group,
        element,
        vr,
        header_start: off,
        value_start,
        len,
    })
}

/// Reads the file meta group; returns (offset after it, transfer syntax UID).
fn read_meta(d: &[u8]) -> Result<(usize, Vec<u8>), SelectiveError> {
    let mut off = 132;
    let mut ts = None;
    while off < d.len() {
        if u16_at(d, off, false)? != 0x0002 {
            break;
        }
        let e = read_element(d, off, Syntax::ExplicitLe)?;
        let len = e
            .len
            .ok_or_else(|| malformed(off, "undefined length in file meta group"))?
            as usize;
        if e.element == 0x0010 {
            let v = d.get(e.value_start..e.value_start + len).unwrap_or(&[]);
            let trimmed: Vec<u8> = v
                .iter()
                .copied()
                .take_while(|&b| b != 0 && b != b' ')
                .collect();
            ts = Some(trimmed);
        }
        off = e.value_start + len;
    }
    let ts = ts.ok_or_else(|| malformed(132, "file meta group has no transfer syntax"))?;
    Ok((off, ts))
}

/// What an undefined-length value holds: a sequence holds items and ends at
/// its sequence delimitation item; an item holds elements and ends at its
/// item delimitation item.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Undefined {
    Sequence,
    Item,
}

/// Skips the content of an undefined-length sequence or item starting at
/// `off`; returns the offset after its delimitation item.
fn skip_undefined(
    d: &[u8],
    mut off: usize,
    syntax: Syntax,
    depth: usize,
    what: Undefined,
) -> Result<usize, SelectiveError> {
    if depth > MAX_DEPTH {
        return Err(malformed(off, "sequences nested too deeply"));
    }
    let (end, inner) = match what {
        Undefined::Sequence => ((0xFFFE, 0xE0DD), Undefined::Item),
        Undefined::Item => ((0xFFFE, 0xE00D), Undefined::Sequence),
    };
    loop {
        let e = read_element(d, off, syntax)?;
        let tag = (e.group, e.element);
        if tag == end {
            return Ok(e.value_start);
        }
        if what == Undefined::Sequence && tag != (0xFFFE, 0xE000) {
            return Err(malformed(off, "unexpected element inside a sequence"));
        }
        off = match e.len {
            Some(l) => e.value_start + l as usize,
            None => skip_undefined(d, e.value_start, syntax, depth + 1, inner)?,
        };
    }
}

/// Visits the top-level elements of the data set from `start`; the visitor
/// returns `false` to stop. Returns the offset where walking stopped.
fn walk_top_level(
    d: &[u8],
    start: usize,
    syntax: Syntax,
    mut visit: impl FnMut(&Element) -> bool,
) -> Result<usize, SelectiveError> {
    let mut off = start;
    while off < d.len() {
        let e = read_element(d, off, syntax)?;
        if !visit(&e) {
            return Ok(off);
        }
        off = match e.len {
            Some(l) => e.value_start + l as usize,
            None => skip_undefined(d, e.value_start, syntax, 1, Undefined::Sequence)?,
        };
    }
    Ok(off)
}

fn find_pixel_data(
    d: &[u8],
    start: usize,
    syntax: Syntax,
) -> Result<Option<usize>, SelectiveError> {
    let mut found = None;
    walk_top_level(d, start, syntax, |e| {
        if (e.group, e.element) == (0x7FE0, 0x0010) {
            found = Some(e.value_start);
            false
        } else {
            true
        }
    })?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elem_le(group: u16, element: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&group.to_le_bytes());
        v.extend_from_slice(&element.to_le_bytes());
        v.extend_from_slice(vr);
        if long_vr(*vr) {
            v.extend_from_slice(&[0, 0]);
            v.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            v.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        v.extend_from_slice(value);
        v
    }

    pub(crate) fn tiny_dicom(ts: &[u8], pixels: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; 128];
        d.extend_from_slice(b"DICM");
        let mut ts = ts.to_vec();
        if ts.len() % 2 == 1 {
            ts.push(0);
        }
        d.extend(elem_le(0x0002, 0x0010, b"UI", &ts));
        d.extend(elem_le(0x0010, 0x0010, b"PN", b"Doe^Jane"));
        // an undefined-length sequence with one undefined-length item
        d.extend_from_slice(&0x0008u16.to_le_bytes());
        d.extend_from_slice(&0x1115u16.to_le_bytes());
        d.extend_from_slice(b"SQ\0\0");
        d.extend_from_slice(&UNDEFINED.to_le_bytes());
        d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        d.extend_from_slice(&UNDEFINED.to_le_bytes());
        d.extend(elem_le(0x0008, 0x1150, b"UI", b"1.2.3\0"));
        d.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        d.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        d.extend(elem_le(0x7FE0, 0x0010, b"OW", pixels));
        d
    }

    #[test]
    fn dicom_split_lands_on_pixel_data_value() {
        let px = [5u8; 64];
        let d = tiny_dicom(b"1.2.840.10008.1.2.1", &px);
        let s = split(&d, HeaderRule::Auto).unwrap();
        assert_eq!(s.kind, SplitKind::Dicom { pixel_data: true });
        assert_eq!(&d[s.head_len..], &px);
    }

    #[test]
    fn non_dicom_has_no_header_and_override_works() {
        let d = b"hello world".to_vec();
        assert_eq!(split(&d, HeaderRule::Auto).unwrap().head_len, 0);
        assert_eq!(split(&d, HeaderRule::Bytes(5)).unwrap().head_len, 5);
        assert!(matches!(
            split(&d, HeaderRule::Bytes(99)),
            Err(SelectiveError::HeaderBytesTooLarge { .. })
        ));
    }

    #[test]
    fn truncated_dicom_is_a_typed_error() {
        let d = tiny_dicom(b"1.2.840.10008.1.2.1", &[1u8; 16]);
        for cut in 133..d.len() - 16 {
            let r = split(&d[..cut], HeaderRule::Auto);
            assert!(
                matches!(r, Err(SelectiveError::MalformedDicom { .. }) | Ok(_)),
                "cut {cut}: {r:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn split_never_panics(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let mut d = vec![0u8; 128];
            d.extend_from_slice(b"DICM");
            d.extend_from_slice(&tail);
            if let Ok(s) = split(&d, HeaderRule::Auto) {
                proptest::prop_assert!(s.head_len <= d.len());
            }
        }
    }
}
