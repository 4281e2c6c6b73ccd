//! The public device directory: what the untrusted ingest host may know of
//! each device — serial, status, key-slice length, the smallest
//! `max_key_uses` it may run with (for the key-index window) and its
//! signing public key. No key material: the host authenticates devices with
//! it and never holds a key that opens or forges a frame. Written by the
//! data owner's registry, read by `aorta server`. Spec:
//! `docs/authentication.md`.
//!
//! ```text
//! aorta-device-directory-1
//! # comment
//! ECG-0001 verified 120 1000 3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c
//! ```

use std::collections::BTreeMap;

use crate::keys;

/// The first line of a directory.
pub const HEADER: &str = "aorta-device-directory-1";
/// Largest directory file accepted (64 MiB: about 500,000 devices).
pub const MAX_LEN: usize = 64 << 20;

/// A device's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Provisioned, key verification at assembly not passed: refused.
    Unverified,
    /// In service.
    Verified,
    /// Retired (`aorta factory revoke`): refused from then on.
    Revoked,
}

impl Status {
    /// The directory's word for it.
    pub fn name(self) -> &'static str {
        match self {
            Status::Unverified => "unverified",
            Status::Verified => "verified",
            Status::Revoked => "revoked",
        }
    }
}

/// One device of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Status.
    pub status: Status,
    /// Keys in its slice (`N`): a frame's key index must be below it.
    pub slice_len: u16,
    /// Smallest `max_key_uses` the device may be running with.
    pub min_key_uses: u64,
    /// Its Ed25519 signing public key, once registered.
    pub public_key: Option<[u8; 32]>,
}

/// The directory: serial → entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directory {
    /// Devices by serial.
    pub devices: BTreeMap<String, Entry>,
}

/// Why a directory file is refused (line numbers from 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// Larger than [`MAX_LEN`].
    #[error("device directory is {len} bytes, at most {MAX_LEN}")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The first line is not [`HEADER`].
    #[error("not a device directory: the first line must be `{HEADER}`")]
    BadHeader,
    /// A line that does not parse.
    #[error("device directory line {line}: {what}")]
    Line {
        /// Line number.
        line: usize,
        /// What is wrong.
        what: String,
    },
}

impl Directory {
    /// Parses a directory file (UTF-8 text, `\n` lines, a trailing `\r` is
    /// dropped). Strict: every field as specified, no duplicate serial.
    pub fn parse(text: &str) -> Result<Directory, DirectoryError> {
        if text.len() > MAX_LEN {
            return Err(DirectoryError::TooLarge { len: text.len() });
        }
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        if lines.next() != Some(HEADER) {
            return Err(DirectoryError::BadHeader);
        }
        let mut devices = BTreeMap::new();
        for (i, l) in lines.enumerate() {
            let line = i + 2;
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let bad = |what: &str| DirectoryError::Line {
                line,
                what: what.to_owned(),
            };
            let f: Vec<&str> = l.split(' ').collect();
            let [serial, status, slice, uses, key] = f.as_slice() else {
                return Err(bad(
                    "expected 5 fields separated by one space: serial status slice_len min_key_uses public_key",
                ));
            };
            keys::check_serial(serial).map_err(|e| bad(&e.to_string()))?;
            let status = match *status {
                "unverified" => Status::Unverified,
                "verified" => Status::Verified,
                "revoked" => Status::Revoked,
                _ => return Err(bad("status must be unverified, verified or revoked")),
            };
            let number = |s: &str, what: &str| -> Result<u64, DirectoryError> {
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 19 {
                    return Err(bad(&format!("{what} must be a decimal number")));
                }
                s.parse().map_err(|_| bad(&format!("{what} out of range")))
            };
            let slice_len = u16::try_from(number(slice, "slice_len")?)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad("slice_len must be 1..=65535"))?;
            let min_key_uses = number(uses, "min_key_uses")?;
            if min_key_uses == 0 {
                return Err(bad("min_key_uses must be at least 1"));
            }
            let public_key = match *key {
                "-" => None,
                k => Some(
                    aorta_base::hex::decode_array::<32>(k, aorta_base::hex::Case::Lower)
                        .map(|z| *z)
                        .map_err(|_| bad("public_key must be 64 lower-case hex digits or -"))?,
                ),
            };
            let e = Entry {
                status,
                slice_len,
                min_key_uses,
                public_key,
            };
            if devices.insert((*serial).to_owned(), e).is_some() {
                return Err(bad("serial listed twice"));
            }
        }
        Ok(Directory { devices })
    }

    /// The file text (parses back to `self`).
    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(64 + self.devices.len() * 110);
        s.push_str(HEADER);
        s.push('\n');
        s.push_str("# serial status slice_len min_key_uses ed25519_public_key\n");
        for (serial, e) in &self.devices {
            let key = e
                .public_key
                .map_or_else(|| "-".to_owned(), |k| aorta_base::hex::encode(&k));
            s.push_str(&format!(
                "{serial} {} {} {} {key}\n",
                e.status.name(),
                e.slice_len,
                e.min_key_uses
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_the_spec_refuses() {
        let mut d = Directory::default();
        d.devices.insert(
            "ECG-1".into(),
            Entry {
                status: Status::Verified,
                slice_len: 120,
                min_key_uses: 1000,
                public_key: Some([0xab; 32]),
            },
        );
        d.devices.insert(
            "ECG-2".into(),
            Entry {
                status: Status::Revoked,
                slice_len: 120,
                min_key_uses: 5,
                public_key: None,
            },
        );
        let t = d.to_text();
        assert_eq!(Directory::parse(&t).unwrap(), d);
        let key = "ab".repeat(32);
        for bad in [
            String::new(),
            "aorta-device-directory-2\n".into(),
            format!("{HEADER}\nECG-1 verified 120 1000\n"),
            format!("{HEADER}\nECG-1 ok 120 1000 {key}\n"),
            format!("{HEADER}\nECG-1 verified 0 1000 {key}\n"),
            format!("{HEADER}\nECG-1 verified 120 0 {key}\n"),
            format!("{HEADER}\nECG-1 verified +120 1000 {key}\n"),
            format!("{HEADER}\nECG-1 verified 120 1000 {}\n", key.to_uppercase()),
            format!("{HEADER}\nECG 1 verified 120 1000 {key}\n"),
            format!("{HEADER}\nECG-1  verified 120 1000 {key}\n"),
            format!("{HEADER}\nECG-1 verified 120 1000 {key}\nECG-1 revoked 120 1000 -\n"),
        ] {
            assert!(Directory::parse(&bad).is_err(), "{bad:?}");
        }
        // The size bound holds before anything is parsed.
        let huge = format!("{HEADER}\n{}", "#".repeat(MAX_LEN));
        assert!(matches!(
            Directory::parse(&huge),
            Err(DirectoryError::TooLarge { .. })
        ));
    }
}
