//! A [`SecureElement`] on a PKCS#11 token (a hardware security module, a
//! smart-card-class secure element, or SoftHSM2 in tests).
//!
//! Each factory key is imported once, at provisioning, as a token object of
//! class `CKO_SECRET_KEY`, type `CKK_GENERIC_SECRET`, with `CKA_SENSITIVE =
//! true`, `CKA_EXTRACTABLE = false`, `CKA_SIGN = true`, `CKA_PRIVATE = true`,
//! labelled `aorta:<serial>:<index>`. After that the key bytes never leave
//! the token: the only operation is `C_Sign` with `CKM_SHA256_HMAC`, which is
//! the PRF every aorta derivation is built on. Derived transport keys do live
//! in host memory (AES-GCM at line rate is not a token operation); they are
//! zeroized on drop.

use std::path::Path;
use std::sync::Mutex;

use aorta_crypto::keys::{self, KeyError, KeyPrf, KeySlice, Prf32};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
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

/// A device key store on a PKCS#11 token.
pub struct Pkcs11SecureElement {
    serial: String,
    handles: Vec<ObjectHandle>,
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

fn label(serial: &str, j: u16) -> Vec<u8> {
    format!("aorta:{serial}:{j}").into_bytes()
}

fn connect(module: &Path, token_label: &str, pin: &str) -> Result<(Pkcs11, Session), DeviceError> {
    let ctx = Pkcs11::new(module).map_err(p11("loading module"))?;
    init(&ctx)?;
    let slot = find_slot(&ctx, token_label)?;
    let session = ctx.open_rw_session(slot).map_err(p11("C_OpenSession"))?;
    session
        .login(UserType::User, Some(&AuthPin::new(pin.into())))
        .map_err(p11("C_Login"))?;
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

impl Pkcs11SecureElement {
    /// Factory provisioning: imports `slice` into the token as
    /// non-extractable HMAC keys. Refuses if the token already holds keys
    /// for this serial.
    pub fn provision(
        module: &Path,
        token_label: &str,
        pin: &str,
        slice: KeySlice,
    ) -> Result<Self, DeviceError> {
        let (ctx, session) = connect(module, token_label, pin)?;
        let serial = slice.serial().to_owned();
        let existing = session
            .find_objects(&[Attribute::Label(label(&serial, 0))])
            .map_err(p11("C_FindObjects"))?;
        if !existing.is_empty() {
            return Err(DeviceError::Pkcs11(format!(
                "token already holds keys for {serial}; refusing to provision twice"
            )));
        }
        let mut handles = Vec::with_capacity(usize::from(slice.slice_len()));
        for (j, key) in slice.material().chunks_exact(keys::KEY_LEN).enumerate() {
            let j = u16::try_from(j).map_err(|_| DeviceError::Config("slice too long".into()))?;
            let value = Zeroizing::new(key.to_vec());
            let h = session
                .create_object(&[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::GENERIC_SECRET),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Sign(true),
                    Attribute::Label(label(&serial, j)),
                    Attribute::Id(j.to_be_bytes().to_vec()),
                    Attribute::Value(value.to_vec()),
                ])
                .map_err(p11("C_CreateObject"))?;
            handles.push(h);
        }
        drop(slice);
        Ok(Pkcs11SecureElement {
            serial,
            handles,
            session: Mutex::new(session),
            _ctx: ctx,
        })
    }

    /// Opens the keys of `serial` on the token labelled `token_label`.
    pub fn open(
        module: &Path,
        token_label: &str,
        pin: &str,
        serial: &str,
        slice_len: u16,
    ) -> Result<Self, DeviceError> {
        keys::check_serial(serial)?;
        let (ctx, session) = connect(module, token_label, pin)?;
        let mut handles = Vec::with_capacity(usize::from(slice_len));
        for j in 0..slice_len {
            let found = session
                .find_objects(&[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::Label(label(serial, j)),
                ])
                .map_err(p11("C_FindObjects"))?;
            match found.as_slice() {
                [h] => handles.push(*h),
                [] => {
                    return Err(DeviceError::Pkcs11(format!(
                        "key {j} of {serial} missing on the token"
                    )));
                }
                _ => {
                    return Err(DeviceError::Pkcs11(format!(
                        "key {j} of {serial} present more than once"
                    )));
                }
            }
        }
        Ok(Pkcs11SecureElement {
            serial: serial.to_owned(),
            handles,
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
}
