//! The DICOM-aware split lands exactly where pydicom finds the Pixel Data
//! value, on real files in five transfer syntaxes (explicit/implicit VR
//! little endian, explicit big endian, encapsulated JPEG 2000, deflated) and
//! on a file without Pixel Data. Reference offsets: tests/fixtures/dicom/
//! split_reference.json, written by tools/dicom_split_reference.py.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)] // test helpers

use std::path::PathBuf;

use aorta_crypto::selective::split::{HeaderRule, SplitKind, split};

#[test]
fn split_matches_pydicom_on_real_files() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dicom");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("split_reference.json")).unwrap())
            .unwrap();
    let files = reference.as_object().unwrap();
    assert!(files.len() >= 6);
    for (name, r) in files {
        let data = std::fs::read(dir.join(name)).unwrap();
        assert_eq!(data.len() as u64, r["size"].as_u64().unwrap(), "{name}");
        let s = split(&data, HeaderRule::Auto).unwrap();
        match r["pixel_data_value_offset"].as_u64() {
            Some(off) => {
                assert_eq!(s.head_len as u64, off, "{name}");
                assert_eq!(s.kind, SplitKind::Dicom { pixel_data: true }, "{name}");
            }
            None => {
                assert_eq!(s.head_len as u64, r["meta_end"].as_u64().unwrap(), "{name}");
                assert_eq!(s.kind, SplitKind::Dicom { pixel_data: false }, "{name}");
            }
        }
    }
}
