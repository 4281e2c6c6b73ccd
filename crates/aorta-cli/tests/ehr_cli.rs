//! `aorta ehr …` end to end through the real binary: a real DICOM file goes
//! protect → disperse (3 local cloud stores, Reed-Solomon 2-of-3, one store
//! lost) → share → recover by the recipient; tampering, wrong identities,
//! expired and revoked grants are refused with exit 1 and nothing written;
//! the audit log verifies and detects tampering; `ehr entropy --json`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::ehr::{
    GateProc, keygen, ok_text, patient_key, protect, recover_cmd, s, share_cmd, text, vault_pw_note,
};
use common::{aorta, ok, shared_data};

/// `aorta ehr recover` of `rid` from `vault` with the passphrase in `pw` into `out`.
fn recover(vault: &Path, rid: &str, pw: &Path, out: &Path) -> Output {
    recover_cmd(vault, rid, &["--passphrase-file", s(pw), "--out", s(out)])
}

/// Asserts a refusal: exit 1, a message, and no output file.
fn refused(args: &[&str], out: &Path, expect: &str) {
    let o = aorta(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "aorta {args:?}: {err}");
    assert!(err.contains(expect), "expected {expect:?} in: {err}");
    assert!(
        !out.exists(),
        "{} was written despite the refusal",
        out.display()
    );
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/dicom/CT_small.dcm")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn dicom_roundtrip_protect_disperse_share_recover_and_refusals() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let vault = d.join("vault");
    std::fs::create_dir_all(&vault).unwrap();
    std::fs::write(
        vault.join("vault.json"),
        r#"{"public":[{"type":"local","path":"cloud-0"},{"type":"local","path":"cloud-1"},{"type":"local","path":"cloud-2"}],
            "private":{"type":"local","path":"phone"},
            "backup":{"type":"local","path":"trusted"},
            "dispersal":{"k":2,"n":3}}"#,
    )
    .unwrap();
    let pw = d.join("pw");
    std::fs::write(&pw, "correct horse battery staple\n").unwrap();
    let input = std::fs::read(fixture()).unwrap();
    assert!(contains(&input, b"CompressedSamples^CT1"));

    let rid = protect(&vault, &fixture(), &pw, &[]);
    assert_eq!(rid.len(), 32, "record id: {rid}");
    // Nothing identifying reaches the cloud stores (D_head stays private).
    for i in 0..3 {
        let shard = std::fs::read(
            vault
                .join(format!("cloud-{i}"))
                .join("records")
                .join(format!("{rid}.aosp.shard{i}")),
        )
        .unwrap();
        assert!(!contains(&shard, b"CompressedSamples^CT1"));
        assert!(!contains(&shard, b"JFK IMAGING CENTER"));
    }
    // Lose one cloud store entirely.
    std::fs::remove_dir_all(vault.join("cloud-1")).unwrap();

    let doc_id = d.join("doctor.identity");
    let doc_pk = keygen(&doc_id);
    assert!(doc_pk.starts_with("aorta-clinician-1"), "{doc_pk}");
    let other_id = d.join("other.identity");
    keygen(&other_id);

    let grant = d.join("doctor.grant");
    let share = |expires: &[&str], out: &Path| {
        let to = ["--uncertified", "--to", &doc_pk, "--out", s(out)];
        ok_text(share_cmd(&vault, &rid, &pw, &[&to, expires].concat()))
    };
    let gid = share(&["--expires", "1h"], &grant);
    assert_eq!(gid.len(), 32);
    let gate = GateProc::start(&vault);
    let patient = patient_key(&vault);

    // The recipient recovers: pixel data identical, header de-identified.
    let by_grant = |g: &Path, id: &Path, out: &Path| {
        recover_cmd(
            &vault,
            &rid,
            &[
                "--grant",
                s(g),
                "--identity",
                s(id),
                "--patient",
                &patient,
                "--gate",
                &gate.url,
                "--out",
                s(out),
            ],
        )
    };
    let out = d.join("shared.dcm");
    let o = by_grant(&grant, &doc_id, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = std::fs::read(&out).unwrap();
    let pixel_len = 128 * 128 * 2;
    assert_eq!(
        got[got.len() - pixel_len..],
        input[input.len() - pixel_len..]
    );
    assert!(!contains(&got, b"CompressedSamples^CT1"));
    assert!(!contains(&got, b"JFK IMAGING CENTER"));
    assert!(contains(&got, b"ANONYMOUS"));

    // The patient recovers the exact original with the passphrase.
    let own = d.join("own.dcm");
    ok(recover(&vault, &rid, &pw, &own));
    assert_eq!(std::fs::read(&own).unwrap(), input);

    // Refusals, each writing nothing.
    let no = d.join("refused.dcm");
    let check = |g: &Path, id: &Path, expect: &str| {
        let o = by_grant(g, id, &no);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(expect), "expected {expect:?} in: {err}");
        assert!(!no.exists());
    };
    check(&grant, &other_id, "does not open with this identity");
    let tg = d.join("tampered.grant");
    for at in [20usize, 50, 100, 200] {
        // grant id, expiry, encapsulated key, sealed material
        let mut tampered = std::fs::read(&grant).unwrap();
        tampered[at] ^= 1;
        std::fs::write(&tg, &tampered).unwrap();
        check(&tg, &doc_id, "refused");
    }
    // A grant valid for 1 s, used 2 s later (a grant must be valid for
    // longer than 0: `--expires 0s` is refused, `cli_keys_and_files.rs`).
    let expired = d.join("expired.grant");
    share(&["--expires", "1s"], &expired);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    check(&expired, &doc_id, "expired");
    let bad_pw = d.join("bad_pw");
    std::fs::write(&bad_pw, "wrong").unwrap();
    refused(
        &[
            "ehr",
            "recover",
            "--vault",
            s(&vault),
            "--record",
            &rid,
            "--passphrase-file",
            s(&bad_pw),
            "--out",
            s(&no),
        ],
        &no,
        "wrong passphrase",
    );
    // A missing grant is an input error (exit 2), still writing nothing.
    let o = by_grant(&d.join("nope"), &doc_id, &no);
    assert_eq!(o.status.code(), Some(2));
    assert!(!no.exists());

    // A standing emergency grant (no expiry) works; revocation stops it.
    let em = d.join("emergency.grant");
    share(&["--emergency"], &em);
    let out2 = d.join("em.dcm");
    assert!(by_grant(&em, &doc_id, &out2).status.success());
    text(&["ehr", "revoke", "--vault", s(&vault), "--grant", s(&em)]);
    check(&em, &doc_id, "revoked");

    // Audit: verified, records every step, detects tampering.
    let a = text(&["ehr", "audit", "--vault", s(&vault), "--verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
    let events: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    for e in [
        "protect",
        "grant",
        "use",
        "recover",
        "refuse",
        "emergency",
        "revoke",
    ] {
        assert!(events.contains(&e), "{e} missing from {events:?}");
    }
    let log = vault.join("audit.log");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(
        &log,
        text.replacen("\"event\":\"revoke\"", "\"event\":\"grant\"", 1),
    )
    .unwrap();
    let o = aorta(&["ehr", "audit", "--vault", s(&vault), "--verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("tampered"));
}

#[test]
fn tampered_fragments_are_refused_and_nothing_is_written() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let note = "blood pressure 120/80, no allergies\n".repeat(100);
    let (vault, pw, f) = vault_pw_note(d, note.as_bytes());
    let rid = protect(&vault, &f, &pw, &["--mode", "faithful"]);
    let no = d.join("out.txt");
    let recover = || recover(&vault, &rid, &pw, &no);
    for (file, at) in [
        (format!("cloud/records/{rid}.aosp"), 100usize),
        (format!("cloud/records/{rid}.aosp"), 5),
        (format!("device/records/{rid}.aosr"), 90),
        (format!("device/records/{rid}.aosr"), 30),
    ] {
        let p = vault.join(&file);
        let orig = std::fs::read(&p).unwrap();
        let mut b = orig.clone();
        b[at] ^= 0x10;
        std::fs::write(&p, &b).unwrap();
        let o = recover();
        assert_ne!(
            o.status.code(),
            Some(0),
            "tampering {file} at {at} undetected"
        );
        assert!(!no.exists());
        std::fs::write(&p, &orig).unwrap();
    }
    assert!(recover().status.success());
    assert_eq!(std::fs::read(&no).unwrap(), std::fs::read(&f).unwrap());
}

fn entropy(path: &Path) -> (f64, f64) {
    let out = text(&["ehr", "entropy", s(path), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    (
        v["input_entropy"].as_f64().unwrap(),
        v["public_entropy"].as_f64().unwrap(),
    )
}

#[test]
fn entropy_of_public_fragment_reaches_7_99_on_text_and_image_like_input() {
    let t = tempfile::tempdir().unwrap();
    // Always available: 1.2 MB of clinical-note-like text.
    let txt = t.path().join("notes.txt");
    let line = "2024-01-01 08:00 HR 72 bpm, BP 120/80 mmHg, SpO2 98 %, patient resting.\n";
    std::fs::write(&txt, line.repeat(1_200_000 / line.len() + 1)).unwrap();
    let (i, p) = entropy(&txt);
    assert!(i < 5.0 && p >= 7.99, "text: input {i}, public {p}");

    // Real ECG samples from MIT-BIH record 100 (skipped if the data set is
    // absent): both leads as a 16-bit little-endian raster (2.6 MB, an image
    // of the signal) and as CSV text.
    let Some(data) = shared_data("mitdb/100", "the MIT-BIH part of the entropy test") else {
        return;
    };
    let rec = aorta_signal::wfdb::Record::read(&data).unwrap();
    let mut raster = Vec::new();
    let mut csv = String::new();
    for (n, (a, b)) in rec.samples[0].iter().zip(&rec.samples[1]).enumerate() {
        raster.extend_from_slice(&(*a as i16).to_le_bytes());
        raster.extend_from_slice(&(*b as i16).to_le_bytes());
        if csv.len() < 1_500_000 {
            csv.push_str(&format!("{n},{a},{b}\n"));
        }
    }
    let r = t.path().join("ecg.raw");
    std::fs::write(&r, &raster).unwrap();
    let (i, p) = entropy(&r);
    assert!(
        raster.len() >= 1_000_000 && i < 7.0 && p >= 7.99,
        "ECG raster: input {i}, public {p}"
    );
    let c = t.path().join("ecg.csv");
    std::fs::write(&c, &csv).unwrap();
    let (i, p) = entropy(&c);
    assert!(i < 5.0 && p >= 7.99, "ECG CSV: input {i}, public {p}");
}
