//! The PKCS#11 secure element against SoftHSM2.
//!
//! SoftHSM2 reads its configuration from `SOFTHSM2_CONF` when the library
//! initializes, and this workspace forbids `unsafe` (so no `set_var`): the
//! outer test writes a configuration and a token directory in a temp dir and
//! re-runs this test binary with that environment; the inner test does the
//! work. It SKIPS (visibly) only if no SoftHSM2 module is installed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::process::Command;

use aorta_crypto::frame::{self, ChannelCalibration, FrameHeader, TransportKey};
use aorta_crypto::keys::{self, KeyPrf, KeySlice};
use aorta_device::pkcs11::{Pkcs11SecureElement, find_softhsm2, init};
use aorta_device::rotation::Sealer;
use aorta_device::se::SecureElement;
use cryptoki::context::Pkcs11;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use ed25519_dalek::{Signature, VerifyingKey};

const TOKEN: &str = "aorta-test";
const PIN: &str = "123456";
const SO_PIN: &str = "12345678";

#[test]
fn pkcs11_secure_element_on_softhsm2() {
    let Some(module) = find_softhsm2() else {
        eprintln!(
            "SKIP: SoftHSM2 module not found (apt-get install softhsm2); PKCS#11 backend not tested"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "inner_softhsm2_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .env("AORTA_SOFTHSM2_CHILD", &module)
        .env("AORTA_SOFTHSM2_STATE", dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
    assert!(text.contains("softhsm2 checks done"), "{text}");
}

#[test]
#[ignore = "helper: run by pkcs11_secure_element_on_softhsm2 in a child process with SOFTHSM2_CONF"]
fn inner_softhsm2_child() {
    let module = std::env::var_os("AORTA_SOFTHSM2_CHILD")
        .expect("run through pkcs11_secure_element_on_softhsm2, which sets the environment");
    let module = std::path::PathBuf::from(module);
    let state_dir = std::path::PathBuf::from(std::env::var_os("AORTA_SOFTHSM2_STATE").unwrap());

    // Initialize a token and its user PIN.
    let ctx = Pkcs11::new(&module).unwrap();
    init(&ctx).unwrap();
    let slot = ctx.get_slots_with_token().unwrap()[0];
    let so = AuthPin::new(SO_PIN.into());
    ctx.init_token(slot, &so, TOKEN).unwrap();
    {
        let s = ctx.open_rw_session(slot).unwrap();
        s.login(UserType::So, Some(&so)).unwrap();
        s.init_pin(&AuthPin::new(PIN.into())).unwrap();
    }

    let material: Vec<u8> = (0..120 * 32).map(|i| (i * 29 + 3) as u8).collect();
    let reference = KeySlice::new("SN-HSM-1", material.clone()).unwrap();
    let se = Pkcs11SecureElement::provision(
        &module,
        TOKEN,
        PIN,
        KeySlice::new("SN-HSM-1", material.clone()).unwrap(),
    )
    .unwrap();

    // The signing identity: generated on the token, pure Ed25519 that
    // ed25519-dalek verifies.
    let pk = se.signing_public_key().unwrap();
    let vk = VerifyingKey::from_bytes(&pk).unwrap();
    let sig = se.sign(b"device statement").unwrap();
    vk.verify_strict(b"device statement", &Signature::from_bytes(&sig))
        .unwrap();
    assert!(
        vk.verify_strict(b"device statemenT", &Signature::from_bytes(&sig))
            .is_err()
    );

    // Non-extractable: attributes say so and reading the value fails.
    assert!(se.keys_are_non_extractable().unwrap());
    assert!(se.try_export(0).is_err(), "the token exported a key");
    // Provisioning the same serial twice is refused.
    assert!(
        Pkcs11SecureElement::provision(
            &module,
            TOKEN,
            PIN,
            KeySlice::new("SN-HSM-1", material).unwrap()
        )
        .is_err()
    );

    // The token computes exactly what the registry computes from the raw keys.
    assert_eq!(
        se.prf(7, b"msg").unwrap(),
        reference.prf(7, b"msg").unwrap()
    );
    assert_eq!(
        keys::commitment(&se).unwrap(),
        keys::commitment(&reference).unwrap()
    );
    let epoch = [4u8; 16];
    assert_eq!(
        keys::transport_key_bytes(&se, 119, &epoch).unwrap(),
        keys::transport_key_bytes(&reference, 119, &epoch).unwrap()
    );
    assert!(se.prf(120, b"x").is_err());

    // Reopen by serial (as after a reboot) and seal a frame the server can open.
    drop(se);
    let se = Pkcs11SecureElement::open(&module, TOKEN, PIN, "SN-HSM-1", 120).unwrap();
    // Same identity after reopening; Ed25519 is deterministic.
    assert_eq!(se.signing_public_key().unwrap(), pk);
    assert_eq!(se.sign(b"device statement").unwrap(), sig);
    assert!(Pkcs11SecureElement::open(&module, TOKEN, PIN, "SN-OTHER", 120).is_err());
    assert!(Pkcs11SecureElement::open(&module, TOKEN, "000000", "SN-HSM-1", 120).is_err());
    let mut sealer = Sealer::new(se, state_dir.join("rotation.state")).unwrap();
    let cal = [ChannelCalibration::new(200.0, 1024, 1024, 11, "mV", "MLII")];
    let x = [1000, 1002, 1010, 1003];
    let f = sealer.seal(0, 360_000, &cal, &[&x[..]]).unwrap();
    let h: FrameHeader = frame::parse(&f.bytes).unwrap().header;
    let server_key = TransportKey::derive(&reference, h.key_index, &h.epoch).unwrap();
    let opened = frame::parse(&f.bytes).unwrap().open(&server_key).unwrap();
    assert_eq!(opened.samples, vec![x.to_vec()]);
    eprintln!("softhsm2 checks done");
}
