//! MIT-format annotation files (`.atr`, `.qrs`, …), after PhysioNet's `annot(5)`.
//!
//! The file is a sequence of 16-bit little-endian words. The top 6 bits are
//! the annotation code `A`, the low 10 bits `I`:
//!
//! | `A`   | meaning                                                        |
//! |-------|----------------------------------------------------------------|
//! | 0 (with `I` = 0) | end of file                                         |
//! | 1–49  | an annotation of code `A`, `I` samples after the previous one  |
//! | 59 SKIP | the next 4 bytes (PDP-11 order) are a 32-bit time increment  |
//! | 60 NUM | `num` of the preceding annotation (sticky)                    |
//! | 61 SUB | `subtype` of the preceding annotation                         |
//! | 62 CHN | `chan` of the preceding annotation (sticky)                   |
//! | 63 AUX | `I` bytes of aux text follow, padded to an even length        |

use super::AnnotationError;

/// One annotation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Annotation {
    /// Time in samples from the start of the record.
    pub sample: u64,
    /// Annotation code (1–49; see [`symbol`]).
    pub code: u8,
    /// Subtype (signed; noise annotations use −1…3).
    pub subtype: i16,
    /// Channel.
    pub chan: u16,
    /// Annotator number.
    pub num: i16,
    /// Aux text with trailing NULs removed, if any (rhythm changes: `(AFIB`, `(N`…).
    pub aux: Option<String>,
}

impl Annotation {
    /// The annotation's mnemonic (`N`, `V`, `+`, `~`…).
    pub fn symbol(&self) -> &'static str {
        symbol(self.code)
    }

    /// True for the 15 beat symbols counted by ANSI/AAMI EC57
    /// (`N L R e j A a J S V E F / f Q`).
    pub fn is_beat(&self) -> bool {
        is_beat_code(self.code)
    }

    /// The rhythm named by a rhythm-change (`+`) annotation, e.g. `AFIB`.
    pub fn rhythm(&self) -> Option<&str> {
        if self.code != RHYTHM {
            return None;
        }
        self.aux.as_deref().and_then(|a| a.strip_prefix('('))
    }
}

/// Code of the rhythm-change (`+`) annotation.
pub const RHYTHM: u8 = 28;

const SYMBOLS: [&str; 42] = [
    " ", "N", "L", "R", "a", "V", "F", "J", "A", "S", "E", "j", "/", "Q", "~", "[15]", "|", "[17]",
    "s", "T", "*", "D", "\"", "=", "p", "B", "^", "t", "+", "u", "?", "!", "[", "]", "e", "n", "@",
    "x", "f", "(", ")", "r",
];

/// The WFDB mnemonic of an annotation code (`"?"`-like placeholder `[n]` for unassigned codes).
pub fn symbol(code: u8) -> &'static str {
    SYMBOLS.get(usize::from(code)).copied().unwrap_or("[?]")
}

/// True if `code` is one of the 15 EC57 beat codes.
pub fn is_beat_code(code: u8) -> bool {
    // N L R a V F J A S E j / Q e f
    matches!(code, 1..=13 | 34 | 38)
}

/// Largest annotation code assignable in MIT format.
const ACMAX: u16 = 49;
const SKIP: u16 = 59;
const NUM: u16 = 60;
const SUB: u16 = 61;
const CHN: u16 = 62;
const AUX: u16 = 63;

/// Largest increment one SKIP can hold (its 32 bits are signed).
const MAX_SKIP: u64 = i32::MAX as u64;

/// Largest gap between two annotations the encoder writes (2^40 samples,
/// 35 years at 1 kHz, 512 SKIPs); a larger one is a `BadTime` error.
const MAX_GAP: u64 = 1 << 40;

fn sext10(v: u16) -> i16 {
    ((v << 6) as i16) >> 6
}

/// Parses the bytes of an MIT-format annotation file.
pub fn parse_annotations(bytes: &[u8]) -> Result<Vec<Annotation>, AnnotationError> {
    let mut out: Vec<Annotation> = Vec::new();
    let mut pos = 0usize;
    let mut time: u64 = 0;
    let mut pending_skip: i64 = 0;
    let mut chan: u16 = 0;
    let mut num: i16 = 0;
    let word_at = |p: usize| -> Option<u16> {
        Some(u16::from_le_bytes([*bytes.get(p)?, *bytes.get(p + 1)?]))
    };
    loop {
        let Some(w) = word_at(pos) else {
            if pos == bytes.len() {
                // A file without the terminating zero word: accept what was read.
                return Ok(out);
            }
            return Err(AnnotationError::Truncated { offset: pos as u64 });
        };
        let a = w >> 10;
        let i = w & 0x3FF;
        let at = pos;
        pos += 2;
        match a {
            0 if i == 0 => return Ok(out),
            0..=ACMAX => {
                let inc = i64::from(i) + pending_skip;
                pending_skip = 0;
                let t = i64::try_from(time)
                    .ok()
                    .and_then(|t| t.checked_add(inc))
                    .filter(|t| *t >= 0);
                let Some(t) = t else {
                    return Err(AnnotationError::BadTime { offset: at as u64 });
                };
                time = t as u64;
                out.push(Annotation {
                    sample: time,
                    code: a as u8,
                    subtype: 0,
                    chan,
                    num,
                    aux: None,
                });
            }
            SKIP => {
                let hi = word_at(pos).ok_or(AnnotationError::Truncated { offset: pos as u64 })?;
                let lo = word_at(pos + 2).ok_or(AnnotationError::Truncated {
                    offset: pos as u64 + 2,
                })?;
                pos += 4;
                // Consecutive SKIPs add up (as in the WFDB library), which is
                // how a gap over 2^31 - 1 samples is written.
                let skip = i64::from(((u32::from(hi) << 16) | u32::from(lo)) as i32);
                pending_skip = pending_skip
                    .checked_add(skip)
                    .ok_or(AnnotationError::BadTime { offset: at as u64 })?;
            }
            NUM | SUB | CHN | AUX => {
                let Some(last) = out.last_mut() else {
                    return Err(AnnotationError::ModifierWithoutAnnotation { offset: at as u64 });
                };
                match a {
                    NUM => {
                        num = sext10(i);
                        last.num = num;
                    }
                    SUB => last.subtype = sext10(i),
                    CHN => {
                        chan = i;
                        last.chan = chan;
                    }
                    _ => {
                        let len = usize::from(i);
                        let text = bytes
                            .get(pos..pos + len)
                            .ok_or(AnnotationError::Truncated { offset: pos as u64 })?;
                        pos += len + (len & 1);
                        let text = String::from_utf8_lossy(text)
                            .trim_end_matches('\0')
                            .to_string();
                        last.aux = Some(text);
                    }
                }
            }
            _ => {
                return Err(AnnotationError::UnknownCode {
                    offset: at as u64,
                    code: a,
                });
            }
        }
    }
}

/// Encodes annotations in MIT format (used by tests and tools; times must be
/// non-decreasing, gaps at most 2^40 samples: a gap over 2^31 - 1 samples is
/// written as several SKIPs).
pub fn encode_annotations(anns: &[Annotation]) -> Result<Vec<u8>, AnnotationError> {
    let mut out = Vec::new();
    let mut time = 0u64;
    let mut chan = 0u16;
    let mut num = 0i16;
    let push = |out: &mut Vec<u8>, a: u16, i: u16| {
        out.extend_from_slice(&((a << 10) | (i & 0x3FF)).to_le_bytes())
    };
    for (k, ann) in anns.iter().enumerate() {
        let delta = ann
            .sample
            .checked_sub(time)
            .ok_or(AnnotationError::BadTime { offset: k as u64 })?;
        if ann.code == 0 || u16::from(ann.code) > ACMAX {
            return Err(AnnotationError::UnknownCode {
                offset: k as u64,
                code: u16::from(ann.code),
            });
        }
        if delta > MAX_GAP {
            return Err(AnnotationError::BadTime { offset: k as u64 });
        }
        if delta > 1023 {
            // A SKIP holds a signed 32-bit increment: a longer gap is written
            // as several SKIPs, which the parser adds up.
            let mut rest = delta;
            while rest > 0 {
                let d = rest.min(MAX_SKIP);
                push(&mut out, SKIP, 0);
                out.extend_from_slice(&((d >> 16) as u16).to_le_bytes());
                out.extend_from_slice(&((d & 0xFFFF) as u16).to_le_bytes());
                rest -= d;
            }
            push(&mut out, u16::from(ann.code), 0);
        } else {
            push(&mut out, u16::from(ann.code), delta as u16);
        }
        time = ann.sample;
        if ann.subtype != 0 {
            push(&mut out, SUB, ann.subtype as u16);
        }
        if ann.chan != chan {
            push(&mut out, CHN, ann.chan);
            chan = ann.chan;
        }
        if ann.num != num {
            push(&mut out, NUM, ann.num as u16);
            num = ann.num;
        }
        if let Some(aux) = &ann.aux {
            let b = aux.as_bytes();
            if b.len() > 1023 {
                return Err(AnnotationError::AuxTooLong { offset: k as u64 });
            }
            push(&mut out, AUX, b.len() as u16);
            out.extend_from_slice(b);
            if b.len() & 1 == 1 {
                out.push(0);
            }
        }
    }
    out.extend_from_slice(&[0, 0]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ann(sample: u64, code: u8) -> Annotation {
        Annotation {
            sample,
            code,
            subtype: 0,
            chan: 0,
            num: 0,
            aux: None,
        }
    }

    #[test]
    fn parses_rhythm_and_skip() {
        let mut a = vec![
            ann(18, RHYTHM),
            ann(77, 1),
            ann(200_000, 5),
            ann(200_010, 14),
        ];
        a[0].aux = Some("(AFIB".into());
        a[3].subtype = -1;
        let bytes = encode_annotations(&a).unwrap();
        let back = parse_annotations(&bytes).unwrap();
        assert_eq!(back, a);
        assert_eq!(back[0].rhythm(), Some("AFIB"));
        assert_eq!(back[1].symbol(), "N");
        assert!(back[2].is_beat());
        assert!(!back[3].is_beat());
    }

    #[test]
    fn hostile_inputs_are_errors() {
        // AUX claiming more bytes than exist.
        let mut b = encode_annotations(&[ann(1, 1)]).unwrap();
        b.truncate(b.len() - 2);
        b.extend_from_slice(&((AUX << 10) | 100).to_le_bytes());
        b.extend_from_slice(b"(N");
        assert!(matches!(
            parse_annotations(&b),
            Err(AnnotationError::Truncated { .. })
        ));
        // Modifier before any annotation.
        assert!(matches!(
            parse_annotations(&((SUB << 10) | 1).to_le_bytes()),
            Err(AnnotationError::ModifierWithoutAnnotation { .. })
        ));
        // Unknown code 55.
        assert!(matches!(
            parse_annotations(&((55u16 << 10) | 1).to_le_bytes()),
            Err(AnnotationError::UnknownCode { code: 55, .. })
        ));
        // Odd trailing byte.
        assert!(matches!(
            parse_annotations(&[0x01, 0x04, 0x07]),
            Err(AnnotationError::Truncated { .. })
        ));
        // SKIP going negative.
        let mut b = Vec::new();
        b.extend_from_slice(&(SKIP << 10).to_le_bytes());
        b.extend_from_slice(&0xFFFFu16.to_le_bytes());
        b.extend_from_slice(&0xFFF0u16.to_le_bytes());
        b.extend_from_slice(&((1u16 << 10) | 1).to_le_bytes());
        assert!(matches!(
            parse_annotations(&b),
            Err(AnnotationError::BadTime { .. })
        ));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_annotations(&bytes);
        }

        #[test]
        fn roundtrip(deltas in proptest::collection::vec((0u64..100_000, 1u8..=49, -3i16..4, proptest::option::of("[(A-Z]{0,9}")), 0..50)) {
            let mut t = 0;
            let anns: Vec<Annotation> = deltas.into_iter().map(|(d, code, sub, aux)| {
                t += d;
                Annotation { sample: t, code, subtype: sub, chan: 0, num: 0, aux }
            }).collect();
            let bytes = encode_annotations(&anns).unwrap();
            prop_assert_eq!(parse_annotations(&bytes).unwrap(), anns);
        }
    }
}
