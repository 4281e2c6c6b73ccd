//! De-identification of a DICOM D_head before it is shared (paper §3.1:
//! "private fragment can be shared anonymously"), following the DICOM PS3.15
//! Annex E Basic Application Level Confidentiality Profile for the top-level
//! attributes listed below:
//!
//! * `X` (removed): institution, physicians, operators, other patient ids
//!   and names, age, size, weight, address, telephone, ethnic group,
//!   occupation, history, comments, device serial number, descriptions,
//!   series/acquisition/content dates and times, referenced and request
//!   sequences, and **every private (odd-group) attribute**; retired group
//!   length attributes are dropped too;
//! * `Z` (emptied): birth date, sex, study date/time, accession number,
//!   referring physician, study id;
//! * `D` (dummy): Patient's Name → `ANONYMOUS`, Patient ID → the record's
//!   pseudonymous id;
//! * `U` (new UIDs): study, series, SOP instance (and the file meta's Media
//!   Storage SOP Instance UID, consistently), frame of reference — replaced by
//!   `2.25.` UIDs of the same length derived from a per-share random salt, so
//!   two shares of one record are not linkable by UID;
//! * Patient Identity Removed (0012,0062) = `YES` and De-identification
//!   Method (0012,0063) are added.
//!
//! Limits (said plainly): explicit and implicit VR little endian data sets
//! are rewritten; the retired big-endian and the deflated syntaxes are
//! refused with a clear error (share with `--keep-identifying-header` to send
//! the header unchanged); attributes nested inside
//! sequences that are kept are not rewritten; burned-in annotations in the
//! pixel data are out of scope of the Basic Profile itself.
//! Non-DICOM headers (empty or `--header-bytes`) are shared unchanged.

use aorta_crypto::selective::RecordId;
use aorta_crypto::selective::split::{
    DicomLayout, Element, Syntax, dicom_layout, is_dicom, long_vr,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::VaultError;

type Tag = (u16, u16);

const REMOVE: &[Tag] = &[
    (0x0008, 0x0021), // Series Date
    (0x0008, 0x0022), // Acquisition Date
    (0x0008, 0x0023), // Content Date
    (0x0008, 0x002A), // Acquisition DateTime
    (0x0008, 0x0031), // Series Time
    (0x0008, 0x0032), // Acquisition Time
    (0x0008, 0x0033), // Content Time
    (0x0008, 0x0080), // Institution Name
    (0x0008, 0x0081), // Institution Address
    (0x0008, 0x0092), // Referring Physician's Address
    (0x0008, 0x0094), // Referring Physician's Telephone Numbers
    (0x0008, 0x1010), // Station Name
    (0x0008, 0x1030), // Study Description
    (0x0008, 0x103E), // Series Description
    (0x0008, 0x1040), // Institutional Department Name
    (0x0008, 0x1048), // Physician(s) of Record
    (0x0008, 0x1050), // Performing Physician's Name
    (0x0008, 0x1060), // Name of Physician(s) Reading Study
    (0x0008, 0x1070), // Operators' Name
    (0x0008, 0x1080), // Admitting Diagnoses Description
    (0x0008, 0x1110), // Referenced Study Sequence
    (0x0008, 0x1111), // Referenced Performed Procedure Step Sequence
    (0x0008, 0x1120), // Referenced Patient Sequence
    (0x0008, 0x1140), // Referenced Image Sequence
    (0x0010, 0x0021), // Issuer of Patient ID
    (0x0010, 0x0032), // Patient's Birth Time
    (0x0010, 0x1000), // Other Patient IDs
    (0x0010, 0x1001), // Other Patient Names
    (0x0010, 0x1010), // Patient's Age
    (0x0010, 0x1020), // Patient's Size
    (0x0010, 0x1030), // Patient's Weight
    (0x0010, 0x1040), // Patient's Address
    (0x0010, 0x1060), // Patient's Mother's Birth Name
    (0x0010, 0x1080), // Military Rank
    (0x0010, 0x1081), // Branch of Service
    (0x0010, 0x1090), // Medical Record Locator
    (0x0010, 0x2154), // Patient's Telephone Numbers
    (0x0010, 0x2160), // Ethnic Group
    (0x0010, 0x2180), // Occupation
    (0x0010, 0x21B0), // Additional Patient History
    (0x0010, 0x4000), // Patient Comments
    (0x0018, 0x1000), // Device Serial Number
    (0x0018, 0x1030), // Protocol Name
    (0x0020, 0x4000), // Image Comments
    (0x0032, 0x1032), // Requesting Physician
    (0x0040, 0x0006), // Scheduled Performing Physician's Name
    (0x0040, 0x0244), // Performed Procedure Step Start Date
    (0x0040, 0x0245), // Performed Procedure Step Start Time
    (0x0040, 0x0253), // Performed Procedure Step ID
    (0x0040, 0x0275), // Request Attributes Sequence
];

const EMPTY: &[Tag] = &[
    (0x0008, 0x0020), // Study Date
    (0x0008, 0x0030), // Study Time
    (0x0008, 0x0050), // Accession Number
    (0x0008, 0x0090), // Referring Physician's Name
    (0x0010, 0x0030), // Patient's Birth Date
    (0x0010, 0x0040), // Patient's Sex
    (0x0020, 0x0010), // Study ID
];

const UIDS: &[Tag] = &[
    (0x0002, 0x0003), // Media Storage SOP Instance UID
    (0x0008, 0x0018), // SOP Instance UID
    (0x0020, 0x000D), // Study Instance UID
    (0x0020, 0x000E), // Series Instance UID
    (0x0020, 0x0052), // Frame of Reference UID
];

const PATIENT_NAME: Tag = (0x0010, 0x0010);
const PATIENT_ID: Tag = (0x0010, 0x0020);
const IDENTITY_REMOVED: Tag = (0x0012, 0x0062);
const DEID_METHOD: Tag = (0x0012, 0x0063);
const METHOD: &[u8] = b"aorta PS3.15 Basic Profile";

fn tag(e: &Element) -> Tag {
    (e.group, e.element)
}

fn malformed(reason: &'static str) -> VaultError {
    VaultError::Malformed {
        what: "DICOM header",
        offset: 0,
        reason,
    }
}

/// Writes a little-endian element: explicit VR when `vr` is given, implicit
/// VR otherwise.
fn put_elem(out: &mut Vec<u8>, t: Tag, vr: Option<[u8; 2]>, value: &[u8]) {
    out.extend_from_slice(&t.0.to_le_bytes());
    out.extend_from_slice(&t.1.to_le_bytes());
    let Some(vr) = vr else {
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
        return;
    };
    out.extend_from_slice(&vr);
    let long = long_vr(vr);
    if long {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(value);
}

fn pad_even(v: &[u8], pad: u8) -> Vec<u8> {
    let mut v = v.to_vec();
    if v.len() % 2 == 1 {
        v.push(pad);
    }
    v
}

/// A `2.25.` UID of exactly `len` bytes derived from `salt` and the old UID.
fn new_uid(salt: &[u8; 32], old: &[u8], len: usize) -> Vec<u8> {
    let mut digits = Vec::new();
    let mut counter = 0u32;
    while digits.len() < len {
        let h = Sha256::new()
            .chain_update(salt)
            .chain_update(counter.to_be_bytes())
            .chain_update(old)
            .finalize();
        digits.extend(h.iter().map(|b| b'0' + b % 10));
        counter += 1;
    }
    let mut uid = b"2.25.".to_vec();
    let first = digits.first().copied().unwrap_or(b'1');
    // A UID component must not start with 0.
    uid.push(if first == b'0' { b'1' } else { first });
    uid.extend(digits.iter().skip(1));
    // An odd-length UID carries a trailing NUL pad in its value.
    if old.last() == Some(&0) {
        uid.truncate(len.saturating_sub(1));
        uid.push(0);
    } else {
        uid.truncate(len);
    }
    uid
}

fn value<'a>(d: &'a [u8], e: &Element, end: usize) -> &'a [u8] {
    d.get(e.value_start..end).unwrap_or(&[])
}

/// De-identifies a D_head. Returns the new head and, when nothing was done,
/// a note saying why (non-DICOM header).
pub fn deidentify_head(
    head: &[u8],
    record: &RecordId,
) -> Result<(Zeroizing<Vec<u8>>, Option<String>), VaultError> {
    if !is_dicom(head) {
        return Ok((
            Zeroizing::new(head.to_vec()),
            (!head.is_empty())
                .then(|| "note: the header is not DICOM; shared unchanged".to_string()),
        ));
    }
    let layout: DicomLayout = dicom_layout(head)?;
    let implicit = match layout.syntax {
        Syntax::ExplicitLe => false,
        Syntax::ImplicitLe => true,
        _ => {
            return Err(VaultError::Config {
                reason: format!(
                    "cannot de-identify a {:?} DICOM header; share with --keep-identifying-header to send it unchanged",
                    layout.syntax
                ),
            });
        }
    };
    let salt = aorta_base::random::secret::<32>()?;
    let mut out = Zeroizing::new(head.get(..132).ok_or(malformed("truncated"))?.to_vec());
    for (e, end) in &layout.meta {
        let raw = head
            .get(e.header_start..*end)
            .ok_or(malformed("truncated"))?;
        if UIDS.contains(&tag(e)) {
            let v = value(head, e, *end);
            let mut copy = raw.to_vec();
            let nu = new_uid(&salt, v, v.len());
            if let Some(dst) = copy.get_mut(e.value_start.saturating_sub(e.header_start)..) {
                for (d, n) in dst.iter_mut().zip(&nu) {
                    *d = *n;
                }
            }
            out.extend_from_slice(&copy);
        } else {
            out.extend_from_slice(raw);
        }
    }
    let mut marks_done = false;
    let vr = |v: &[u8; 2]| (!implicit).then_some(*v);
    let emit_marks = |out: &mut Vec<u8>| {
        put_elem(out, IDENTITY_REMOVED, vr(b"CS"), b"YES ");
        put_elem(out, DEID_METHOD, vr(b"LO"), &pad_even(METHOD, b' '));
    };
    for (e, end) in &layout.elements {
        let t = tag(e);
        let vr = e.vr;
        if !marks_done && t > DEID_METHOD {
            emit_marks(&mut out);
            marks_done = true;
        }
        if t == (0x7FE0, 0x0010) {
            // Pixel Data header (and whatever of its value the head holds).
            out.extend_from_slice(head.get(e.header_start..).unwrap_or(&[]));
            break;
        }
        let private = e.group % 2 == 1;
        if private
            || e.element == 0x0000
            || REMOVE.contains(&t)
            || t == IDENTITY_REMOVED
            || t == DEID_METHOD
        {
            continue;
        }
        if EMPTY.contains(&t) {
            put_elem(&mut out, t, vr, &[]);
        } else if t == PATIENT_NAME {
            put_elem(&mut out, t, vr, b"ANONYMOUS ");
        } else if t == PATIENT_ID {
            put_elem(&mut out, t, vr, record.to_hex().as_bytes());
        } else if UIDS.contains(&t) {
            let v = value(head, e, *end);
            put_elem(&mut out, t, vr, &new_uid(&salt, v, v.len()));
        } else {
            out.extend_from_slice(
                head.get(e.header_start..*end)
                    .ok_or(malformed("truncated"))?,
            );
        }
    }
    if !marks_done {
        emit_marks(&mut out);
    }
    Ok((out, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(out: &mut Vec<u8>, g: u16, e: u16, vr: &[u8; 2], v: &[u8]) {
        put_elem(out, (g, e), Some(*vr), &pad_even(v, b' '));
    }

    fn sample() -> Vec<u8> {
        let mut d = vec![0u8; 128];
        d.extend_from_slice(b"DICM");
        el(&mut d, 0x0002, 0x0003, b"UI", b"1.2.3.4.5\0");
        el(&mut d, 0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1\0");
        el(&mut d, 0x0008, 0x0018, b"UI", b"1.2.3.4.5\0");
        el(&mut d, 0x0008, 0x0020, b"DA", b"20240101");
        el(&mut d, 0x0008, 0x0080, b"LO", b"St. Example Hospital");
        el(&mut d, 0x0009, 0x0010, b"LO", b"PRIVATE CREATOR");
        el(&mut d, 0x0010, 0x0010, b"PN", b"Doe^Jane");
        el(&mut d, 0x0010, 0x0020, b"LO", b"MRN-123456");
        el(&mut d, 0x0010, 0x0030, b"DA", b"19700101");
        el(&mut d, 0x0028, 0x0010, b"US", &[64, 0]);
        d.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00]);
        d.extend_from_slice(b"OW\0\0");
        d.extend_from_slice(&8u32.to_le_bytes());
        d
    }

    #[test]
    fn identifying_attributes_are_gone_and_structure_is_valid() {
        let head = sample();
        let rid = RecordId([0xab; 16]);
        let (out, note) = deidentify_head(&head, &rid).unwrap();
        assert!(note.is_none());
        let text = String::from_utf8_lossy(&out);
        for needle in [
            "Doe^Jane",
            "MRN-123456",
            "Example Hospital",
            "PRIVATE CREATOR",
            "19700101",
            "20240101",
            "1.2.3.4.5",
        ] {
            assert!(!text.contains(needle), "{needle} survived");
        }
        assert!(text.contains("ANONYMOUS"));
        assert!(text.contains(&rid.to_hex()));
        assert!(text.contains("YES"));
        // Still a walkable DICOM head ending at Pixel Data, with consistent UIDs.
        let l = dicom_layout(&out).unwrap();
        let last = l.elements.last().unwrap().0;
        assert_eq!((last.group, last.element), (0x7FE0, 0x0010));
        assert_eq!(last.value_start, out.len());
        let media = &l.meta[0];
        let sop = l
            .elements
            .iter()
            .find(|(e, _)| tag(e) == (0x0008, 0x0018))
            .unwrap();
        assert_eq!(value(&out, &media.0, media.1), value(&out, &sop.0, sop.1));
        assert!(value(&out, &sop.0, sop.1).starts_with(b"2.25."));
    }

    #[test]
    fn real_fixtures_in_both_little_endian_syntaxes() {
        let dir =
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dicom");
        for name in [
            "CT_small.dcm",
            "MR_small.dcm",
            "MR_small_implicit.dcm",
            "JPEG2000.dcm",
        ] {
            let data = std::fs::read(dir.join(name)).unwrap();
            let sp = aorta_crypto::selective::split::split(&data, Default::default()).unwrap();
            let head = &data[..sp.head_len];
            let before = dicom_layout(head).unwrap();
            let name_before = before
                .elements
                .iter()
                .find(|(e, _)| tag(e) == PATIENT_NAME)
                .unwrap();
            assert!(!value(head, &name_before.0, name_before.1).starts_with(b"ANONYMOUS"));
            let (out, _) = deidentify_head(head, &RecordId([7; 16])).unwrap();
            let l = dicom_layout(&out).unwrap();
            assert_eq!(l.syntax, before.syntax, "{name}");
            let last = l.elements.last().unwrap().0;
            assert_eq!((last.group, last.element), (0x7FE0, 0x0010), "{name}");
            let pn = l
                .elements
                .iter()
                .find(|(e, _)| tag(e) == PATIENT_NAME)
                .unwrap();
            assert_eq!(value(&out, &pn.0, pn.1), b"ANONYMOUS ", "{name}");
            assert!(
                l.elements.iter().all(|(e, _)| e.group % 2 == 0),
                "{name}: private attribute left"
            );
            assert!(
                l.elements.iter().any(|(e, _)| tag(e) == IDENTITY_REMOVED),
                "{name}"
            );
            for (e, _) in &l.elements {
                assert!(
                    !REMOVE.contains(&tag(e)),
                    "{name}: {:04x},{:04x} left",
                    e.group,
                    e.element
                );
            }
        }
        let be = std::fs::read(dir.join("MR_small_bigendian.dcm")).unwrap();
        let sp = aorta_crypto::selective::split::split(&be, Default::default()).unwrap();
        assert!(matches!(
            deidentify_head(&be[..sp.head_len], &RecordId([7; 16])),
            Err(VaultError::Config { .. })
        ));
    }

    #[test]
    fn non_dicom_head_passes_through() {
        let (out, note) = deidentify_head(b"plain header", &RecordId([0; 16])).unwrap();
        assert_eq!(&out[..], b"plain header");
        assert!(note.is_some());
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_mutated_heads(idx in 0usize..400, v in proptest::num::u8::ANY, cut in 0usize..400) {
            let mut h = sample();
            let i = idx % h.len();
            h[i] = v;
            h.truncate(cut.max(1));
            let _ = deidentify_head(&h, &RecordId([1; 16]));
        }
    }
}
