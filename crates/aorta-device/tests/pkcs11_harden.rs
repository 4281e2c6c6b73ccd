//! Attacks on the PKCS#11 secure element by a party holding the user PIN
//! (the device's own software stores it), played against SoftHSM2.
//!
//! Each outer test writes a SoftHSM2 configuration and a fresh token
//! directory in a temp dir and re-runs this test binary on one `inner_*`
//! test with `SOFTHSM2_CONF` set (the workspace forbids `unsafe`, so no
//! `set_var`). Each SKIPS (visibly) only if no SoftHSM2 module is installed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::path::PathBuf;
use std::process::Command;

use aorta_crypto::keys::{KeyPrf, KeySlice};
use aorta_device::DeviceError;
use aorta_device::pkcs11::{Pkcs11SecureElement, find_softhsm2, init};
use aorta_device::se::SecureElement;
use cryptoki::context::Pkcs11;
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

const TOKEN: &str = "aorta-harden";
const PIN: &str = "123456";
const SO_PIN: &str = "12345678";

/// Runs `inner` in a child process with its own SoftHSM2 token directory.
fn in_softhsm2_child(inner: &str) {
    let Some(module) = find_softhsm2() else {
        eprintln!("SKIP: SoftHSM2 module not found (apt-get install softhsm2); {inner} not run");
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
            inner,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .env("AORTA_SOFTHSM2_CHILD", &module)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
    assert!(text.contains(&format!("{inner} done")), "{text}");
}

/// The module, and a freshly initialized token with its user PIN.
fn fresh_token() -> (PathBuf, Pkcs11, Slot) {
    let module = std::env::var_os("AORTA_SOFTHSM2_CHILD")
        .expect("run through the outer test, which sets the environment");
    let module = PathBuf::from(module);
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
    let slot = ctx
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == TOKEN)
        .unwrap();
    (module, ctx, slot)
}

/// The attacker's own session, logged in with the user PIN (login is per
/// application, so "already logged in" means it is).
fn user_session(ctx: &Pkcs11, slot: Slot) -> Session {
    let s = ctx.open_rw_session(slot).unwrap();
    match s.login(UserType::User, Some(&AuthPin::new(PIN.into()))) {
        Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => s,
        Err(e) => panic!("user login: {e}"),
    }
}

fn material(n: usize, seed: u8) -> Vec<u8> {
    (0..n * 32)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn by_label(s: &Session, label: &str) -> Vec<ObjectHandle> {
    s.find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
        .unwrap()
}

fn one(s: &Session, label: &str) -> ObjectHandle {
    let v = by_label(s, label);
    assert_eq!(v.len(), 1, "{label}");
    v[0]
}

fn one_of(s: &Session, label: &str, class: ObjectClass) -> ObjectHandle {
    let v = s
        .find_objects(&[
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Class(class),
        ])
        .unwrap();
    assert_eq!(v.len(), 1, "{label}");
    v[0]
}

/// The refusal must be typed and name the label and the attribute.
fn assert_refused(r: Result<Pkcs11SecureElement, DeviceError>, want_label: &str, want_attr: &str) {
    match r {
        Err(DeviceError::TokenKeyRefused {
            label, attribute, ..
        }) if label == want_label && attribute == want_attr => {}
        Err(e) => panic!("{want_label}: wrong refusal (want {want_attr}): {e}"),
        Ok(_) => panic!("{want_label}: a key weak in {want_attr} was accepted"),
    }
}

/// Attack: with the user PIN, rewrite a provisioned key's attributes
/// (relabel it to another serial, make it derivable, switch signing off).
#[test]
fn user_pin_cannot_relabel_or_make_a_key_derivable() {
    in_softhsm2_child("inner_modify_attributes");
}

#[test]
#[ignore = "helper: run by user_pin_cannot_relabel_or_make_a_key_derivable with SOFTHSM2_CONF"]
fn inner_modify_attributes() {
    let (module, ctx, slot) = fresh_token();
    let se = Pkcs11SecureElement::provision(
        &module,
        TOKEN,
        PIN,
        KeySlice::new("SN-M", material(8, 1)).unwrap(),
    )
    .unwrap();
    let s = user_session(&ctx, slot);
    let mut refused = Vec::new();
    let keys = [
        one(&s, "aorta:SN-M:0"),
        one(&s, "aorta:SN-M:7"),
        one_of(&s, "aorta:SN-M:sign", ObjectClass::PRIVATE_KEY),
    ];
    for (j, h) in keys.into_iter().enumerate() {
        for (what, attr) in [
            ("relabel", Attribute::Label(b"aorta:SN-EVIL:0".to_vec())),
            ("CKA_DERIVE=true", Attribute::Derive(true)),
            ("CKA_SIGN=false", Attribute::Sign(false)),
            ("CKA_DECRYPT=true", Attribute::Decrypt(true)),
            (
                "CKA_ALLOWED_MECHANISMS",
                Attribute::AllowedMechanisms(vec![]),
            ),
        ] {
            let e = s
                .update_attributes(h, &[attr])
                .err()
                .unwrap_or_else(|| panic!("key {j}: {what} was accepted by the token"));
            refused.push(format!("{what}: {e:?}"));
        }
    }
    // CKA_ALLOWED_MECHANISMS is enforced: a factory key signs with
    // CKM_SHA256_HMAC only.
    for m in [Mechanism::Sha1Hmac, Mechanism::Sha224Hmac] {
        let e = s
            .sign(&m, keys[0], b"m")
            .err()
            .unwrap_or_else(|| panic!("a factory key signed with {m:?}"));
        // Refused for the mechanism, not for anything else.
        assert!(
            matches!(e, Error::Pkcs11(RvError::MechanismInvalid, _)),
            "{e:?}"
        );
        refused.push(format!("C_Sign {m:?}: {e:?}"));
    }
    // Control: without the pin, the same token signs with those mechanisms
    // (a throwaway session key), so the refusal above is the pin's doing.
    let control = s
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Sign(true),
            Attribute::Value(vec![7; 32]),
        ])
        .unwrap();
    for m in [Mechanism::Sha1Hmac, Mechanism::Sha224Hmac] {
        s.sign(&m, control, b"m").unwrap();
    }
    // The keys still work and still carry their labels.
    drop(s);
    let before = se.prf(0, b"m").unwrap();
    let pk = se.signing_public_key().unwrap();
    drop(se);
    let se = Pkcs11SecureElement::open(&module, TOKEN, PIN, "SN-M", 8).unwrap();
    assert_eq!(se.prf(0, b"m").unwrap(), before);
    assert_eq!(se.signing_public_key().unwrap(), pk);
    for r in &refused {
        eprintln!("refused: {r}");
    }
    eprintln!("inner_modify_attributes done");
}

/// Attack: with the user PIN, replace one provisioned key with a key of the
/// attacker's choosing under the expected label, weak in one attribute;
/// or plant a second object under a key's label. Opening must refuse each,
/// naming the label and the attribute.
#[test]
fn planted_weak_or_duplicate_keys_are_refused_at_open() {
    in_softhsm2_child("inner_planted_keys");
}

/// Deletes `aorta:<serial>:<j>` and creates a known-value HMAC key in its
/// place with the attacker's `attrs` (on top of class, type, label, value).
fn plant(s: &Session, serial: &str, j: u16, attrs: &[Attribute]) {
    let label = format!("aorta:{serial}:{j}");
    s.destroy_object(one(s, &label)).unwrap();
    let mut t = vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::GENERIC_SECRET),
        Attribute::Token(true),
        Attribute::Label(label.into_bytes()),
        Attribute::Value(vec![0x42; 32]),
    ];
    t.extend_from_slice(attrs);
    s.create_object(&t).unwrap();
}

#[test]
#[ignore = "helper: run by planted_weak_or_duplicate_keys_are_refused_at_open with SOFTHSM2_CONF"]
fn inner_planted_keys() {
    let (module, ctx, slot) = fresh_token();
    let strong = [
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
    ];
    // (serial, attacker's attributes, the attribute the refusal must name)
    let cases: Vec<(&str, Vec<Attribute>, &str)> = vec![
        (
            "SN-P1",
            vec![
                Attribute::Private(true),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
                Attribute::Sign(true),
            ],
            "CKA_SENSITIVE",
        ),
        (
            "SN-P2",
            vec![
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(true),
                Attribute::Sign(true),
            ],
            "CKA_EXTRACTABLE",
        ),
        // Sensitive and non-extractable, but modifiable (the default).
        ("SN-P3", strong.to_vec(), "CKA_MODIFIABLE"),
        (
            "SN-P4",
            [
                &strong[..],
                &[
                    Attribute::Modifiable(false),
                    Attribute::Copyable(false),
                    Attribute::Derive(true),
                ],
            ]
            .concat(),
            "CKA_DERIVE",
        ),
    ];
    for (serial, attrs, named) in &cases {
        let se = Pkcs11SecureElement::provision(
            &module,
            TOKEN,
            PIN,
            KeySlice::new(serial, material(8, 9)).unwrap(),
        )
        .unwrap();
        drop(se);
        let s = user_session(&ctx, slot);
        plant(&s, serial, 5, attrs);
        drop(s);
        let r = Pkcs11SecureElement::open(&module, TOKEN, PIN, serial, 8);
        if let Err(e) = &r {
            eprintln!("{serial}: refused: {e}");
        }
        assert_refused(r, &format!("aorta:{serial}:5"), named);
    }

    // The signing key replaced by an extractable, non-sensitive Ed25519 key
    // pair under the expected label.
    let se = Pkcs11SecureElement::provision(
        &module,
        TOKEN,
        PIN,
        KeySlice::new("SN-PS", material(8, 7)).unwrap(),
    )
    .unwrap();
    drop(se);
    let s = user_session(&ctx, slot);
    for h in by_label(&s, "aorta:SN-PS:sign") {
        s.destroy_object(h).unwrap();
    }
    let l = b"aorta:SN-PS:sign".to_vec();
    s.generate_key_pair(
        &Mechanism::EccEdwardsKeyPairGen,
        &[
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::EcParams(vec![0x06, 0x03, 0x2b, 0x65, 0x70]),
            Attribute::Label(l.clone()),
        ],
        &[
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::Sign(true),
            Attribute::Label(l),
        ],
    )
    .unwrap();
    drop(s);
    let r = Pkcs11SecureElement::open(&module, TOKEN, PIN, "SN-PS", 8);
    if let Err(e) = &r {
        eprintln!("SN-PS: refused: {e}");
    }
    assert_refused(r, "aorta:SN-PS:sign", "CKA_SENSITIVE");

    // A second object (of another class) under a key's label.
    let se = Pkcs11SecureElement::provision(
        &module,
        TOKEN,
        PIN,
        KeySlice::new("SN-D", material(8, 3)).unwrap(),
    )
    .unwrap();
    drop(se);
    let s = user_session(&ctx, slot);
    s.create_object(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Label(b"aorta:SN-D:2".to_vec()),
        Attribute::Value(vec![1, 2, 3]),
    ])
    .unwrap();
    drop(s);
    let r = Pkcs11SecureElement::open(&module, TOKEN, PIN, "SN-D", 8);
    if let Err(e) = &r {
        eprintln!("SN-D: refused: {e}");
    }
    assert_refused(r, "aorta:SN-D:2", "CKA_LABEL");
    eprintln!("inner_planted_keys done");
}

/// Two handles on one token in one process (two device agents, or a
/// reopen while the first is still alive): the second login is "already
/// logged in", which is not an error; dropping one leaves the other working.
#[test]
fn one_token_opens_twice_in_one_process() {
    in_softhsm2_child("inner_open_twice");
}

#[test]
#[ignore = "helper: run by one_token_opens_twice_in_one_process with SOFTHSM2_CONF"]
fn inner_open_twice() {
    let (module, _ctx, _slot) = fresh_token();
    let reference = KeySlice::new("SN-T", material(8, 5)).unwrap();
    let se = Pkcs11SecureElement::provision(
        &module,
        TOKEN,
        PIN,
        KeySlice::new("SN-T", material(8, 5)).unwrap(),
    )
    .unwrap();
    let a = Pkcs11SecureElement::open(&module, TOKEN, PIN, "SN-T", 8).unwrap();
    let b = Pkcs11SecureElement::open(&module, TOKEN, PIN, "SN-T", 8).unwrap();
    let want = reference.prf(3, b"x").unwrap();
    assert_eq!(se.prf(3, b"x").unwrap(), want);
    assert_eq!(a.prf(3, b"x").unwrap(), want);
    assert_eq!(b.prf(3, b"x").unwrap(), want);
    drop(se);
    drop(a);
    assert_eq!(b.prf(3, b"x").unwrap(), want);
    assert!(b.sign(b"x").is_ok());
    // The PIN is still checked on a second open in the same process.
    assert!(Pkcs11SecureElement::open(&module, TOKEN, "000000", "SN-T", 8).is_err());
    eprintln!("inner_open_twice done");
}
