//! A [`SecureElement`] on a PKCS#11 token (a hardware security module, a
//! smart-card-class secure element, or SoftHSM2 in tests).
//!
//! **Keys.** Provisioning creates, as token objects:
//! - each factory key `K_j`, imported once: class `CKO_SECRET_KEY`, type
//!   `CKK_GENERIC_SECRET`, label `aorta:<serial>:<j>`, usable only for
//!   `C_Sign` with `CKM_SHA256_HMAC` (the PRF every aorta derivation is
//!   built on);
//! - the device's signing identity, generated on the token with
//!   `CKM_EC_EDWARDS_KEY_PAIR_GEN` (curve Ed25519, `CKA_EC_PARAMS` = the DER
//!   OID 1.3.101.112): a `CKO_PRIVATE_KEY`/`CKK_EC_EDWARDS` usable only for
//!   `C_Sign` with `CKM_EDDSA` (pure Ed25519, RFC 8032) and its
//!   `CKO_PUBLIC_KEY`, both labelled `aorta:<serial>:sign`.
//!
//! Every secret or private key gets the restrictive set: `CKA_TOKEN`,
//! `CKA_PRIVATE`, `CKA_SENSITIVE = true`, `CKA_EXTRACTABLE = false`,
//! `CKA_MODIFIABLE = false`, `CKA_COPYABLE = false`, `CKA_DERIVE = false`,
//! `CKA_SIGN = true`, `CKA_DECRYPT = CKA_UNWRAP = false` (and for the secret
//! keys `CKA_ENCRYPT = CKA_WRAP = CKA_VERIFY = false`; these do not exist on
//! a private key object), and `CKA_ALLOWED_MECHANISMS` pinned to its one
//! mechanism. With `CKA_MODIFIABLE = false` the token refuses every
//! `C_SetAttributeValue`, so a holder of the user PIN cannot relabel a key,
//! make it derivable or widen its mechanisms.
//!
//! **Opening checks the token.** Each label must name exactly the expected
//! objects (one secret key; one private and one public key for `:sign`),
//! and each must have the class, key type and every attribute above, and
//! the generated signing key also `CKA_ALWAYS_SENSITIVE` and
//! `CKA_NEVER_EXTRACTABLE` (an imported factory key cannot have those). A
//! probe signature must verify under the public key. Anything else is
//! [`DeviceError::TokenKeyRefused`], naming the label and the attribute.
//! This catches a key replaced by one with weaker attributes, or a planted
//! duplicate; it cannot catch a replacement HMAC key with the right
//! attributes and a value the attacker chose (the PIN holder can destroy
//! and create objects): the registry's commitment check is what does.
//!
//! **Login is per application.** A second [`Pkcs11SecureElement`] on the
//! same token in one process gets `CKR_USER_ALREADY_LOGGED_IN`, which is
//! accepted when its PIN is the one this process logged in with (a digest
//! of it is remembered, never the PIN).
//!
//! After provisioning the key bytes never leave the token. Derived transport
//! keys do live in host memory (AES-GCM at line rate is not a token
//! operation); they are zeroized on drop.

use std::path::Path;
use std::sync::Mutex;

use aorta_crypto::keys::{self, KeyError, KeyPrf, KeySlice, Prf32};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use ed25519_dalek::{Signature, VerifyingKey};
use ring::digest;
use zeroize::Zeroizing;

use crate::DeviceError;
use crate::se::SecureElement;

fn p11<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> DeviceError {
    move |e| DeviceError::Pkcs11(format!("{what}: {e}"))
}

/// Well-known places of the SoftHSM2 module on Debian/Ubuntu and from source.
pub const SOFTHSM2_PATHS: [&str; 3] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// The first SoftHSM2 module found (`AORTA_PKCS11_MODULE` first), if any.
pub fn find_softhsm2() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("AORTA_PKCS11_MODULE") {
        let p = std::path::PathBuf::from(p);
        return p.exists().then_some(p);
    }
    SOFTHSM2_PATHS
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

/// `CKA_EC_PARAMS` for Ed25519 as written at provisioning: the DER OID
/// 1.3.101.112 (RFC 8410), which SoftHSM2 2.6 requires.
const ED25519_OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];
/// `CKA_EC_PARAMS` for Ed25519 as PKCS#11 3.0 also allows it: the curve
/// name `edwards25519` as a DER PrintableString (accepted when opening).
const ED25519_NAME: [u8; 14] = *b"\x13\x0cedwards25519";

/// What the probe signature at open signs (domain-separated, never sent).
const PROBE: &[u8] = b"aorta/v1/pkcs11-sign-probe";

/// A device key store on a PKCS#11 token.
pub struct Pkcs11SecureElement {
    serial: String,
    handles: Vec<ObjectHandle>,
    sign_key: ObjectHandle,
    public: [u8; 32],
    session: Mutex<Session>,
    _ctx: Pkcs11,
}

impl std::fmt::Debug for Pkcs11SecureElement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11SecureElement")
            .field("serial", &self.serial)
            .field("keys", &self.handles.len())
            .finish_non_exhaustive()
    }
}

fn label(serial: &str, j: u16) -> String {
    format!("aorta:{serial}:{j}")
}

fn sign_label(serial: &str) -> String {
    format!("aorta:{serial}:sign")
}

/// Digests of the (module, token, PIN) this process logged in with: login
/// is per application, so a second login answers "already logged in"
/// whatever the PIN, and this is how a wrong PIN is still refused.
static LOGINS: Mutex<Vec<[u8; 32]>> = Mutex::new(Vec::new());

fn login_digest(module: &Path, token_label: &str, pin: &str) -> [u8; 32] {
    let mut b = Zeroizing::new(Vec::new());
    for part in [
        b"aorta/v1/pkcs11-login".as_slice(),
        module.as_os_str().as_encoded_bytes(),
        token_label.as_bytes(),
        pin.as_bytes(),
    ] {
        b.extend_from_slice(&(part.len() as u64).to_be_bytes());
        b.extend_from_slice(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, &b).as_ref());
    out
}

fn connect(module: &Path, token_label: &str, pin: &str) -> Result<(Pkcs11, Session), DeviceError> {
    let ctx = Pkcs11::new(module).map_err(p11("loading module"))?;
    init(&ctx)?;
    let slot = find_slot(&ctx, token_label)?;
    let session = ctx.open_rw_session(slot).map_err(p11("C_OpenSession"))?;
    let d = login_digest(module, token_label, pin);
    let mut logins = LOGINS
        .lock()
        .map_err(|_| DeviceError::Pkcs11("login record lock poisoned".into()))?;
    match session.login(UserType::User, Some(&AuthPin::new(pin.into()))) {
        Ok(()) => {
            if !logins.contains(&d) {
                logins.push(d);
            }
        }
        Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {
            if !logins.iter().any(|l| keys::ct_eq(l, &d)) {
                return Err(DeviceError::Pkcs11(
                    "C_Login: the token is already logged in by this process with another \
                     PIN (or not by aorta); refusing"
                        .into(),
                ));
            }
        }
        Err(e) => return Err(p11("C_Login")(e)),
    }
    Ok((ctx, session))
}

/// `C_Initialize`, tolerating a library this process already initialized.
pub fn init(ctx: &Pkcs11) -> Result<(), DeviceError> {
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(())
        | Err(cryptoki::error::Error::Pkcs11(
            cryptoki::error::RvError::CryptokiAlreadyInitialized,
            _,
        )) => Ok(()),
        Err(e) => Err(p11("C_Initialize")(e)),
    }
}

fn find_slot(ctx: &Pkcs11, token_label: &str) -> Result<Slot, DeviceError> {
    for slot in ctx
        .get_slots_with_initialized_token()
        .map_err(p11("C_GetSlotList"))?
    {
        let info = ctx.get_token_info(slot).map_err(p11("C_GetTokenInfo"))?;
        if info.label().trim_end() == token_label {
            return Ok(slot);
        }
    }
    Err(DeviceError::Pkcs11(format!(
        "no token labelled {token_label:?}"
    )))
}

/// The attributes every secret or private key is created with, and checked
/// for at open, with their PKCS#11 names.
fn restrictive(mechanism: MechanismType) -> Vec<(Attribute, &'static str)> {
    vec![
        (Attribute::Token(true), "CKA_TOKEN"),
        (Attribute::Private(true), "CKA_PRIVATE"),
        (Attribute::Sensitive(true), "CKA_SENSITIVE"),
        (Attribute::Extractable(false), "CKA_EXTRACTABLE"),
        (Attribute::Modifiable(false), "CKA_MODIFIABLE"),
        (Attribute::Copyable(false), "CKA_COPYABLE"),
        (Attribute::Derive(false), "CKA_DERIVE"),
        (Attribute::Sign(true), "CKA_SIGN"),
        (Attribute::Decrypt(false), "CKA_DECRYPT"),
        (Attribute::Unwrap(false), "CKA_UNWRAP"),
        (
            Attribute::AllowedMechanisms(vec![mechanism]),
            "CKA_ALLOWED_MECHANISMS",
        ),
    ]
}

/// What a factory (HMAC) key must be.
fn prf_key_rules() -> Vec<(Attribute, &'static str)> {
    let mut r = vec![
        (Attribute::Class(ObjectClass::SECRET_KEY), "CKA_CLASS"),
        (Attribute::KeyType(KeyType::GENERIC_SECRET), "CKA_KEY_TYPE"),
    ];
    r.extend(restrictive(MechanismType::SHA256_HMAC));
    r.extend([
        (Attribute::Encrypt(false), "CKA_ENCRYPT"),
        (Attribute::Wrap(false), "CKA_WRAP"),
        (Attribute::Verify(false), "CKA_VERIFY"),
    ]);
    r
}

/// What the signing (EdDSA private) key must be. Generated on the token, so
/// it must also never have been extractable or non-sensitive.
fn sign_key_rules() -> Vec<(Attribute, &'static str)> {
    let mut r = vec![
        (Attribute::Class(ObjectClass::PRIVATE_KEY), "CKA_CLASS"),
        (Attribute::KeyType(KeyType::EC_EDWARDS), "CKA_KEY_TYPE"),
    ];
    r.extend(restrictive(MechanismType::EDDSA));
    r.extend([
        (Attribute::AlwaysSensitive(true), "CKA_ALWAYS_SENSITIVE"),
        (Attribute::NeverExtractable(true), "CKA_NEVER_EXTRACTABLE"),
    ]);
    r
}

/// What the signing public key must be (its `CKA_EC_PARAMS` and point are
/// checked apart).
fn public_key_rules() -> Vec<(Attribute, &'static str)> {
    vec![
        (Attribute::Class(ObjectClass::PUBLIC_KEY), "CKA_CLASS"),
        (Attribute::KeyType(KeyType::EC_EDWARDS), "CKA_KEY_TYPE"),
        (Attribute::Token(true), "CKA_TOKEN"),
        (Attribute::Modifiable(false), "CKA_MODIFIABLE"),
        (Attribute::Copyable(false), "CKA_COPYABLE"),
        (Attribute::Derive(false), "CKA_DERIVE"),
        (Attribute::Verify(true), "CKA_VERIFY"),
        (Attribute::Encrypt(false), "CKA_ENCRYPT"),
        (Attribute::Wrap(false), "CKA_WRAP"),
    ]
}

fn refused(label: &str, attribute: &'static str, problem: String) -> DeviceError {
    DeviceError::TokenKeyRefused {
        label: label.to_owned(),
        attribute,
        problem,
    }
}

/// An attribute for a message; never a key value (none is ever read here).
fn show(a: &Attribute) -> String {
    match a {
        Attribute::AllowedMechanisms(m) => {
            let names: Vec<String> = m.iter().map(|m| m.to_string()).collect();
            format!("[{}]", names.join(", "))
        }
        Attribute::Class(c) => c.to_string(),
        Attribute::KeyType(t) => t.to_string(),
        other => format!("{other:?}"),
    }
}

/// Checks object `h` (labelled `label`) against `rules`; returns the
/// attributes read (for the caller's own checks).
fn check_object(
    s: &Session,
    h: ObjectHandle,
    label: &str,
    rules: &[(Attribute, &'static str)],
    extra: &[AttributeType],
) -> Result<Vec<Attribute>, DeviceError> {
    let mut types: Vec<AttributeType> = rules.iter().map(|(a, _)| a.attribute_type()).collect();
    types.extend_from_slice(extra);
    let got = s
        .get_attributes(h, &types)
        .map_err(p11("C_GetAttributeValue"))?;
    for (want, name) in rules {
        let t = want.attribute_type();
        match got.iter().find(|a| a.attribute_type() == t) {
            Some(a) if a == want => {}
            Some(a) => {
                return Err(refused(
                    label,
                    name,
                    format!("is {}, must be {}", show(a), show(want)),
                ));
            }
            None => {
                return Err(refused(
                    label,
                    name,
                    format!("is not reported by the token, must be {}", show(want)),
                ));
            }
        }
    }
    Ok(got)
}

/// Every object labelled `label`, whatever its class, with its class.
fn labelled(s: &Session, label: &str) -> Result<Vec<(ObjectHandle, ObjectClass)>, DeviceError> {
    let found = s
        .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
        .map_err(p11("C_FindObjects"))?;
    let mut out = Vec::with_capacity(found.len());
    for h in found {
        let class = s
            .get_attributes(h, &[AttributeType::Class])
            .map_err(p11("C_GetAttributeValue"))?
            .into_iter()
            .find_map(|a| match a {
                Attribute::Class(c) => Some(c),
                _ => None,
            })
            .ok_or_else(|| refused(label, "CKA_CLASS", "is not reported by the token".into()))?;
        out.push((h, class));
    }
    Ok(out)
}

/// The one object of `class` among `found` (the objects labelled
/// `label`): none, or more than one, is refused.
fn the_one(
    found: &[(ObjectHandle, ObjectClass)],
    label: &str,
    class: ObjectClass,
) -> Result<ObjectHandle, DeviceError> {
    let of_class: Vec<ObjectHandle> = found
        .iter()
        .filter(|(_, c)| *c == class)
        .map(|(h, _)| *h)
        .collect();
    match of_class.as_slice() {
        [h] => Ok(*h),
        [] => Err(refused(
            label,
            "CKA_LABEL",
            format!("names no {class} object on the token (missing key)"),
        )),
        more => Err(refused(
            label,
            "CKA_LABEL",
            format!(
                "names {} {class} objects, one expected (a duplicate or planted key)",
                more.len()
            ),
        )),
    }
}

/// The Ed25519 public key in a `CKA_EC_POINT`: raw 32 bytes, or (as
/// SoftHSM2 returns it) wrapped in a DER OCTET STRING `04 20 ‖ key`.
fn ed25519_point(p: &[u8]) -> Option<[u8; 32]> {
    match p {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest.try_into().ok(),
        _ => p.try_into().ok(),
    }
}

fn eddsa() -> Mechanism<'static> {
    Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure))
}

fn sign_with(s: &Session, key: ObjectHandle, msg: &[u8]) -> Result<[u8; 64], DeviceError> {
    let sig = s
        .sign(&eddsa(), key, msg)
        .map_err(p11("C_Sign (CKM_EDDSA)"))?;
    <[u8; 64]>::try_from(sig.as_slice())
        .map_err(|_| DeviceError::Pkcs11("EdDSA signature is not 64 bytes".into()))
}

impl Pkcs11SecureElement {
    /// Factory provisioning: imports `slice` into the token as
    /// non-extractable, non-modifiable HMAC keys and generates the device's
    /// Ed25519 signing key pair on the token, then checks them as
    /// [`Pkcs11SecureElement::open`] does. Refuses if the token already
    /// holds keys for this serial.
    pub fn provision(
        module: &Path,
        token_label: &str,
        pin: &str,
        slice: KeySlice,
    ) -> Result<Self, DeviceError> {
        let (ctx, session) = connect(module, token_label, pin)?;
        let serial = slice.serial().to_owned();
        for l in [label(&serial, 0), sign_label(&serial)] {
            if !labelled(&session, &l)?.is_empty() {
                return Err(DeviceError::Pkcs11(format!(
                    "token already holds keys for {serial}; refusing to provision twice"
                )));
            }
        }
        for (j, key) in slice.material().chunks_exact(keys::KEY_LEN).enumerate() {
            let j = u16::try_from(j).map_err(|_| DeviceError::Config("slice too long".into()))?;
            let mut t: Vec<Attribute> = prf_key_rules().into_iter().map(|(a, _)| a).collect();
            t.push(Attribute::Label(label(&serial, j).into_bytes()));
            t.push(Attribute::Id(j.to_be_bytes().to_vec()));
            t.push(Attribute::Value(key.to_vec()));
            let created = session.create_object(&t);
            // Wipe the template's copy of the key, whatever happened.
            if let Some(Attribute::Value(v)) = t.last_mut() {
                zeroize::Zeroize::zeroize(v);
            }
            created.map_err(p11("C_CreateObject (HMAC key)"))?;
        }
        let slice_len = slice.slice_len();
        drop(slice);
        let sl = sign_label(&serial).into_bytes();
        let mut public: Vec<Attribute> = public_key_rules()
            .into_iter()
            .map(|(a, _)| a)
            .filter(|a| !matches!(a, Attribute::Class(_) | Attribute::KeyType(_)))
            .collect();
        public.extend([
            Attribute::Private(false),
            Attribute::EcParams(ED25519_OID.to_vec()),
            Attribute::Label(sl.clone()),
            Attribute::Id(b"sign".to_vec()),
        ]);
        let mut private: Vec<Attribute> = sign_key_rules()
            .into_iter()
            .map(|(a, _)| a)
            .filter(|a| {
                // Set by the token, not by the template.
                !matches!(
                    a,
                    Attribute::Class(_)
                        | Attribute::KeyType(_)
                        | Attribute::AlwaysSensitive(_)
                        | Attribute::NeverExtractable(_)
                )
            })
            .collect();
        private.extend([Attribute::Label(sl), Attribute::Id(b"sign".to_vec())]);
        session
            .generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public, &private)
            .map_err(p11("C_GenerateKeyPair (Ed25519)"))?;
        Self::checked(ctx, session, &serial, slice_len)
    }

    /// Opens the keys of `serial` on the token labelled `token_label`,
    /// checking every key's class, type and attributes (see the module
    /// docs); a key that is not as provisioning made it is
    /// [`DeviceError::TokenKeyRefused`].
    pub fn open(
        module: &Path,
        token_label: &str,
        pin: &str,
        serial: &str,
        slice_len: u16,
    ) -> Result<Self, DeviceError> {
        keys::check_serial(serial)?;
        let (ctx, session) = connect(module, token_label, pin)?;
        Self::checked(ctx, session, serial, slice_len)
    }

    /// Finds and checks every key of `serial`.
    fn checked(
        ctx: Pkcs11,
        session: Session,
        serial: &str,
        slice_len: u16,
    ) -> Result<Self, DeviceError> {
        let prf_rules = prf_key_rules();
        let mut handles = Vec::with_capacity(usize::from(slice_len));
        for j in 0..slice_len {
            let l = label(serial, j);
            let found = labelled(&session, &l)?;
            let h = the_one(&found, &l, ObjectClass::SECRET_KEY)?;
            if found.len() != 1 {
                return Err(refused(
                    &l,
                    "CKA_LABEL",
                    format!(
                        "names {} objects, one expected (a duplicate or planted object)",
                        found.len()
                    ),
                ));
            }
            check_object(&session, h, &l, &prf_rules, &[])?;
            handles.push(h);
        }
        let l = sign_label(serial);
        let found = labelled(&session, &l)?;
        let sign_key = the_one(&found, &l, ObjectClass::PRIVATE_KEY)?;
        let public_h = the_one(&found, &l, ObjectClass::PUBLIC_KEY)?;
        if found.len() != 2 {
            return Err(refused(
                &l,
                "CKA_LABEL",
                format!(
                    "names {} objects, a private and a public key expected",
                    found.len()
                ),
            ));
        }
        check_object(&session, sign_key, &l, &sign_key_rules(), &[])?;
        let got = check_object(
            &session,
            public_h,
            &l,
            &public_key_rules(),
            &[AttributeType::EcParams, AttributeType::EcPoint],
        )?;
        let mut params = None;
        let mut point = None;
        for a in &got {
            match a {
                Attribute::EcParams(p) => params = Some(p.as_slice()),
                Attribute::EcPoint(p) => point = Some(p.as_slice()),
                _ => {}
            }
        }
        if !matches!(params, Some(p) if p == ED25519_OID || p == ED25519_NAME) {
            return Err(refused(
                &l,
                "CKA_EC_PARAMS",
                "is not the Ed25519 curve".into(),
            ));
        }
        let public = point.and_then(ed25519_point).ok_or_else(|| {
            refused(
                &l,
                "CKA_EC_POINT",
                "is not a 32-byte Ed25519 public key".into(),
            )
        })?;
        // The public key must be the private key's: a probe signature
        // verifies under it.
        let vk = VerifyingKey::from_bytes(&public)
            .map_err(|_| refused(&l, "CKA_EC_POINT", "is not a valid Ed25519 point".into()))?;
        let probe = sign_with(&session, sign_key, PROBE)?;
        vk.verify_strict(PROBE, &Signature::from_bytes(&probe))
            .map_err(|_| {
                refused(
                    &l,
                    "CKA_EC_POINT",
                    "does not verify the private key's signature (mismatched key pair)".into(),
                )
            })?;
        Ok(Pkcs11SecureElement {
            serial: serial.to_owned(),
            handles,
            sign_key,
            public,
            session: Mutex::new(session),
            _ctx: ctx,
        })
    }

    /// Whether every key is marked sensitive and non-extractable on the token.
    pub fn keys_are_non_extractable(&self) -> Result<bool, DeviceError> {
        use cryptoki::object::AttributeType;
        let s = self
            .session
            .lock()
            .map_err(|_| DeviceError::Pkcs11("session lock poisoned".into()))?;
        for h in &self.handles {
            let attrs = s
                .get_attributes(*h, &[AttributeType::Sensitive, AttributeType::Extractable])
                .map_err(p11("C_GetAttributeValue"))?;
            let ok = attrs.contains(&Attribute::Sensitive(true))
                && attrs.contains(&Attribute::Extractable(false));
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Tries to read key `index`'s value (must fail on a correct token).
    pub fn try_export(&self, index: u16) -> Result<Vec<u8>, DeviceError> {
        use cryptoki::object::AttributeType;
        let h = self
            .handles
            .get(usize::from(index))
            .ok_or(DeviceError::Config("no such key".into()))?;
        let s = self
            .session
            .lock()
            .map_err(|_| DeviceError::Pkcs11("session lock poisoned".into()))?;
        let attrs = s
            .get_attributes(*h, &[AttributeType::Value])
            .map_err(p11("C_GetAttributeValue"))?;
        attrs
            .into_iter()
            .find_map(|a| match a {
                Attribute::Value(v) => Some(v),
                _ => None,
            })
            .ok_or_else(|| DeviceError::Pkcs11("value not readable".into()))
    }
}

impl KeyPrf for Pkcs11SecureElement {
    fn serial(&self) -> &str {
        &self.serial
    }
    fn slice_len(&self) -> u16 {
        u16::try_from(self.handles.len()).unwrap_or(u16::MAX)
    }
    fn prf(&self, index: u16, msg: &[u8]) -> Result<Prf32, KeyError> {
        let h = self
            .handles
            .get(usize::from(index))
            .ok_or(KeyError::IndexOutOfRange {
                index,
                len: self.slice_len(),
            })?;
        let s = self
            .session
            .lock()
            .map_err(|_| KeyError::SecureElement("session lock poisoned".into()))?;
        let tag = Zeroizing::new(
            s.sign(&Mechanism::Sha256Hmac, *h, msg)
                .map_err(|e| KeyError::SecureElement(format!("C_Sign: {e}")))?,
        );
        let arr: [u8; 32] = tag
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::SecureElement("HMAC output is not 32 bytes".into()))?;
        Ok(Zeroizing::new(arr))
    }
}

impl SecureElement for Pkcs11SecureElement {
    fn backend(&self) -> &'static str {
        "pkcs11"
    }
    fn signing_public_key(&self) -> Result<[u8; 32], DeviceError> {
        Ok(self.public)
    }
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], DeviceError> {
        let s = self
            .session
            .lock()
            .map_err(|_| DeviceError::Pkcs11("session lock poisoned".into()))?;
        sign_with(&s, self.sign_key, msg)
    }
}
