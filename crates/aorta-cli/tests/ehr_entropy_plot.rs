//! `aorta ehr entropy FILE --plot out.png` (the paper's Fig. 4) through the
//! real binary: the PNG is written, decodes at the figure's size, is not
//! overwritten without `--force`, and the command's entropies are the ones
//! the library draws.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use std::path::{Path, PathBuf};

use common::{aorta, ok};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dicom/CT_small.dcm")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// (width, height, RGB pixels) of a PNG file.
fn decode(p: &Path) -> (u32, u32, Vec<u8>) {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(p).unwrap()));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0u8; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn entropy_plot_is_written_decodes_and_is_not_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fig4.png");
    let o = ok(aorta(&[
        "ehr",
        "entropy",
        s(&fixture()),
        "--json",
        "--plot",
        s(&out),
    ]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let (w, h, px) = decode(&out);
    assert_eq!(
        (w, h),
        (aorta_vault::figure::WIDTH, aorta_vault::figure::HEIGHT)
    );
    // Both panels have bars: the input's colour and the public fragment's
    // colour each cover a fair share of the image.
    let count = |c: [u8; 3]| px.chunks_exact(3).filter(|p| *p == c).count();
    assert!(count([31, 119, 180]) > 1000, "no input bars");
    assert!(count([214, 39, 40]) > 10_000, "no public-fragment bars");
    // The figure the library draws for this file has the printed input
    // entropy (the public one differs per run: a fresh key each time).
    let data = std::fs::read(fixture()).unwrap();
    let input = aorta_vault::figure::Histogram::of("input", &data);
    let printed = v["input_entropy"].as_f64().unwrap();
    assert!(
        (input.entropy - printed).abs() < 1e-12,
        "{printed} vs {}",
        input.entropy
    );
    assert!(v["public_entropy"].as_f64().unwrap() > 7.99);

    // An existing file is refused (exit 2, untouched) unless --force.
    let before = std::fs::read(&out).unwrap();
    let o = aorta(&["ehr", "entropy", s(&fixture()), "--plot", s(&out)]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert_eq!(std::fs::read(&out).unwrap(), before);
    ok(aorta(&[
        "ehr",
        "entropy",
        s(&fixture()),
        "--plot",
        s(&out),
        "--force",
    ]));
    assert_eq!(decode(&out).0, aorta_vault::figure::WIDTH);
    // --force alone is a usage error.
    let o = aorta(&["ehr", "entropy", s(&fixture()), "--force"]);
    assert!(!o.status.success());
}
