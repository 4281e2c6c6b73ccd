//! # aorta-registry — the server's side of device keys and upload frames
//!
//! This crate owns the factory's master key pool and the key registry
//! (serial → contiguous slice of the pool), key verification at assembly,
//! and the acceptance of upload frames: key lookup, key-index window, replay
//! and reorder refusal, acknowledgement and de-duplication by
//! `(serial, sequence)`, refusal counters. It also holds the server's side of
//! the `max_key_uses` renegotiation (rate limit, replay counter), and opens a
//! directory of upload frames into one stream written back as a WFDB record
//! ([`frames_dir`], `aorta frames open`).
//!
//! It must never log or print key bytes, never hand out a key of a device that
//! is not registered, and never change state for a frame that did not
//! authenticate.
//!
//! Storage: one `redb` file (`registry.redb`) that holds **only wrapped
//! keys**: the pool is stored in pages of [`PAGE_KEYS`] keys, each sealed with
//! AES-256-GCM under a key-encryption key (KEK) kept outside the database
//! (`kek`, mode 0600; in production an HSM-held key), with the page number as
//! associated data so pages cannot be swapped. See `docs/device-keys.md`.
//! Its records encode and decode through `aorta_base::codec` (one fuzz
//! entry point per record in the hidden `fuzzing` module).
//!
//! Main types: [`Registry`], [`DeviceInfo`], [`Accepted`], [`AcceptError`],
//! [`RefusalKind`], [`RefusalCounters`].
//!
//! ```no_run
//! use aorta_registry::{PoolConfig, Registry};
//! let reg = Registry::init("factory-registry", PoolConfig::default())?;
//! let keys = reg.provision("SN-0001")?; // written into the device's secure element
//! let commitment = aorta_crypto::keys::commitment(&keys)?; // computed by the device
//! reg.verify("SN-0001", &commitment)?;
//! // Issue 5's key broker: a device's group keys, one per key index.
//! let groups = reg.transport_group_keys("SN-0001")?;
//! assert_eq!(groups.len(), usize::from(reg.slice_len()?));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod frames_dir;
mod reneg;
mod store;

/// Fuzz entry points, one per record format of the registry's store: each
/// decodes arbitrary bytes and, when they decode, checks that re-encoding
/// gives them back exactly. None panics on any input except on a broken
/// round trip (the bug a fuzzer looks for). Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    aorta_base::fuzz_entry_points! {
        /// A device record (`devices` table).
        device_record: crate::store::DeviceRecord;

        /// A device's frame acceptance state (`frame_state` table).
        frame_state: crate::store::FrameState;

        /// An allocation-map value (`alloc` table).
        alloc_record: crate::store::AllocRecord;

        /// A device's renegotiation history (`reneg` table).
        reneg_history: crate::reneg::RenegHistory;
    }
}

pub use reneg::{Pending, RenegPolicy, RenegStep, propose_max_key_uses};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use aorta_crypto::frame::{self, FrameError, OpenedFrame, TransportKey};
use aorta_crypto::keys::{self, KEY_LEN, KeyError, KeySlice};
use redb::{Database, ReadableTable};
use ring::rand::SystemRandom;
use zeroize::Zeroizing;

use aorta_base::codec::{Decode, Encode};
use store::{
    ACKS, ALLOC, AllocRecord, DEVICES, DeviceRecord, FRAME_STATE, FrameState, Kek, META, POOL,
};

/// Keys per wrapped pool page.
pub const PAGE_KEYS: u64 = 256;
/// Default `max_key_uses` of a new device (the one definition, in
/// `aorta_crypto::keys`, shared with the device).
pub use aorta_crypto::keys::DEFAULT_MAX_KEY_USES;
/// Largest pool `init` creates (2^24 keys, 512 MiB of key material).
pub const MAX_POOL_KEYS: u64 = 1 << 24;

/// Size of a new key pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Keys in the pool.
    pub pool_keys: u64,
    /// Keys per device.
    pub slice_len: u16,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            pool_keys: 1024 * u64::from(keys::DEFAULT_SLICE_LEN),
            slice_len: keys::DEFAULT_SLICE_LEN,
        }
    }
}

/// A registry error that is not about one frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// `init` on a directory that already holds a registry.
    #[error("{}: a registry already exists here", path.display())]
    AlreadyExists {
        /// Registry directory.
        path: PathBuf,
    },
    /// `open` on a directory without a registry.
    #[error("{}: no registry here (run `aorta factory init`)", path.display())]
    NotFound {
        /// Registry directory.
        path: PathBuf,
    },
    /// The serial already has a key slice.
    #[error("device {serial} is already provisioned (offset {offset}); re-provisioning is refused")]
    AlreadyProvisioned {
        /// Serial.
        serial: String,
        /// Its existing slice offset.
        offset: u64,
    },
    /// The requested slice overlaps another device's.
    #[error("slice {offset}..{end} overlaps the slice of device {other}")]
    Overlap {
        /// Requested start.
        offset: u64,
        /// Requested end (exclusive).
        end: u64,
        /// The device that owns the overlapping slice.
        other: String,
    },
    /// Not enough keys left in the pool.
    #[error("key pool exhausted: {needed} keys needed at offset {offset}, pool holds {pool}")]
    PoolExhausted {
        /// Start of the requested slice.
        offset: u64,
        /// Keys needed.
        needed: u64,
        /// Pool size.
        pool: u64,
    },
    /// No such device.
    #[error("unknown device serial {serial}")]
    UnknownSerial {
        /// Serial.
        serial: String,
    },
    /// The device was provisioned but its key commitment was never verified.
    #[error("device {serial} has not passed key verification; its keys are not released")]
    NotVerified {
        /// Serial.
        serial: String,
    },
    /// The device was retired with `aorta factory revoke`.
    #[error("device {serial} is revoked")]
    Revoked {
        /// Serial.
        serial: String,
    },
    /// Another signing key is already registered for the device.
    #[error(
        "device {serial} already has another signing key; a replacement device gets a new serial"
    )]
    KeyAlreadyRegistered {
        /// Serial.
        serial: String,
    },
    /// The device's key commitment does not match the registry.
    #[error(
        "key verification failed for device {serial}: the commitment does not match its registered keys"
    )]
    CommitmentMismatch {
        /// Serial.
        serial: String,
    },
    /// `max_key_uses` changed too often.
    #[error(
        "device {serial}: {changes} max_key_uses changes in the last {window_secs} s; renegotiation refused (rate limit)"
    )]
    RateLimited {
        /// Serial.
        serial: String,
        /// Completed changes inside the window.
        changes: usize,
        /// Window length.
        window_secs: u64,
    },
    /// A renegotiation message was refused.
    #[error("renegotiation refused: {0}")]
    Reneg(#[from] aorta_crypto::reneg::RenegError),
    /// Bad configuration value.
    #[error("bad configuration: {0}")]
    Config(String),
    /// Key derivation or serial validation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A wrapped page or record failed to unwrap or parse (corrupt or tampered store).
    #[error("registry store is corrupt: {0}")]
    Corrupt(String),
    /// The CSPRNG failed.
    #[error("system random number generator failed")]
    Rng,
    /// The database failed.
    #[error("registry database: {0}")]
    Store(#[from] Box<redb::Error>),
    /// A file operation failed.
    #[error("{}: {error}", path.display())]
    Io {
        /// File.
        path: PathBuf,
        /// Error.
        error: std::io::Error,
    },
}

fn db_err<E: Into<redb::Error>>(e: E) -> RegistryError {
    RegistryError::Store(Box::new(e.into()))
}

/// What the registry knows about a device (no key bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Serial.
    pub serial: String,
    /// Offset of its slice in the pool.
    pub offset: u64,
    /// Keys in its slice.
    pub slice_len: u16,
    /// Whether key verification at assembly succeeded.
    pub verified: bool,
    /// Current `max_key_uses`.
    pub max_key_uses: u64,
    /// The `max_key_uses` of the key-index window (`max_key_uses`, or a
    /// smaller pending value while a renegotiation is unconfirmed).
    pub min_key_uses: u64,
    /// Highest accepted frame sequence.
    pub last_sequence: Option<u64>,
    /// Key index of that frame.
    pub last_key_index: u16,
    /// Its Ed25519 signing public key, once registered.
    pub public_key: Option<[u8; 32]>,
    /// Retired with `aorta factory revoke`.
    pub revoked: bool,
}

/// Why a frame is refused at the server. Each refusal has its own [`RefusalKind`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The frame itself is malformed, forged or tampered (see the inner kind).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// No device has this serial.
    #[error("unknown device serial {serial}")]
    UnknownSerial {
        /// Serial from the (unauthenticated) header.
        serial: String,
    },
    /// The device never passed key verification.
    #[error("device {serial} has not passed key verification")]
    NotVerified {
        /// Serial.
        serial: String,
    },
    /// The key index is outside the device's slice or outside the window.
    #[error(
        "device {serial}: key index {got} outside the window (last {last}, may advance by at most {max_advance})"
    )]
    KeyIndexOutOfWindow {
        /// Serial.
        serial: String,
        /// Index in the frame.
        got: u16,
        /// Index of the last accepted frame.
        last: u16,
        /// Largest forward step allowed for this sequence gap.
        max_advance: u64,
    },
    /// A sequence number that was already accepted, with different bytes.
    #[error("device {serial}: sequence {sequence} replayed")]
    Replayed {
        /// Serial.
        serial: String,
        /// Sequence.
        sequence: u64,
    },
    /// A sequence number below the highest accepted one that was never accepted.
    #[error("device {serial}: sequence {sequence} arrives after {last} (reordered)")]
    Reordered {
        /// Serial.
        serial: String,
        /// Sequence.
        sequence: u64,
        /// Highest accepted.
        last: u64,
    },
    /// The registry failed (our side, not the frame's fault).
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// The distinct kinds of refusal, each counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalKind {
    /// Unknown serial.
    UnknownSerial,
    /// Device not verified.
    NotVerified,
    /// Key index outside the window.
    KeyIndexOutOfWindow,
    /// Replayed sequence.
    Replayed,
    /// Reordered sequence.
    Reordered,
    /// Authentication failed (any flipped bit, wrong key).
    AuthenticationFailed,
    /// Truncated or trailing bytes.
    Truncated,
    /// Oversize.
    Oversize,
    /// Decompression bomb.
    DecompressionBomb,
    /// Unknown version, magic or codec.
    UnknownFormat,
    /// Other malformed header or payload.
    Malformed,
    /// Internal failure (not the sender's fault).
    Internal,
}

impl RefusalKind {
    /// Every kind, in counter order.
    pub const ALL: [RefusalKind; 12] = [
        RefusalKind::UnknownSerial,
        RefusalKind::NotVerified,
        RefusalKind::KeyIndexOutOfWindow,
        RefusalKind::Replayed,
        RefusalKind::Reordered,
        RefusalKind::AuthenticationFailed,
        RefusalKind::Truncated,
        RefusalKind::Oversize,
        RefusalKind::DecompressionBomb,
        RefusalKind::UnknownFormat,
        RefusalKind::Malformed,
        RefusalKind::Internal,
    ];
    /// Stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            RefusalKind::UnknownSerial => "unknown_serial",
            RefusalKind::NotVerified => "not_verified",
            RefusalKind::KeyIndexOutOfWindow => "key_index_out_of_window",
            RefusalKind::Replayed => "replayed",
            RefusalKind::Reordered => "reordered",
            RefusalKind::AuthenticationFailed => "authentication_failed",
            RefusalKind::Truncated => "truncated",
            RefusalKind::Oversize => "oversize",
            RefusalKind::DecompressionBomb => "decompression_bomb",
            RefusalKind::UnknownFormat => "unknown_format",
            RefusalKind::Malformed => "malformed",
            RefusalKind::Internal => "internal",
        }
    }
}

impl AcceptError {
    /// The refusal kind this error is counted under.
    pub fn kind(&self) -> RefusalKind {
        match self {
            AcceptError::UnknownSerial { .. } => RefusalKind::UnknownSerial,
            AcceptError::NotVerified { .. } => RefusalKind::NotVerified,
            AcceptError::KeyIndexOutOfWindow { .. } => RefusalKind::KeyIndexOutOfWindow,
            AcceptError::Replayed { .. } => RefusalKind::Replayed,
            AcceptError::Reordered { .. } => RefusalKind::Reordered,
            AcceptError::Registry(_) => RefusalKind::Internal,
            AcceptError::Frame(f) => match f {
                FrameError::AuthenticationFailed => RefusalKind::AuthenticationFailed,
                FrameError::Truncated { .. } | FrameError::TrailingBytes { .. } => {
                    RefusalKind::Truncated
                }
                FrameError::Oversize { .. } => RefusalKind::Oversize,
                FrameError::DecompressionBomb { .. } => RefusalKind::DecompressionBomb,
                FrameError::BadMagic
                | FrameError::UnsupportedVersion { .. }
                | FrameError::UnknownCodec { .. } => RefusalKind::UnknownFormat,
                _ => RefusalKind::Malformed,
            },
        }
    }
}

/// Refusal counters since the registry was opened.
#[derive(Debug, Default)]
pub struct RefusalCounters {
    counts: [AtomicU64; 12],
    accepted: AtomicU64,
    duplicates: AtomicU64,
}

impl RefusalCounters {
    fn bump(&self, k: RefusalKind) {
        if let Some(i) = RefusalKind::ALL.iter().position(|x| *x == k)
            && let Some(c) = self.counts.get(i)
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
    /// Frames refused with `kind`.
    pub fn get(&self, kind: RefusalKind) -> u64 {
        RefusalKind::ALL
            .iter()
            .position(|x| *x == kind)
            .and_then(|i| self.counts.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
    /// Frames accepted and stored.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
    /// Exact re-sends acknowledged again without storing.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
}

/// An accepted frame.
#[derive(Debug)]
pub struct Accepted {
    /// The opened frame.
    pub frame: OpenedFrame,
    /// True when this exact frame was accepted before: it is acknowledged
    /// again and must not be stored twice.
    pub duplicate: bool,
}

impl Accepted {
    /// The acknowledgement the device waits for.
    pub fn ack(&self) -> (String, u64) {
        (self.frame.header.serial.clone(), self.frame.header.sequence)
    }
}

/// The key registry.
pub struct Registry {
    db: Database,
    kek: Kek,
    rng: SystemRandom,
    counters: RefusalCounters,
    dir: PathBuf,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

const DB_FILE: &str = "registry.redb";
const KEK_FILE: &str = "kek";
const DIRECTORY_FILE: &str = "directory.txt";

fn meta_get(db: &Database, key: &str) -> Result<u64, RegistryError> {
    let r = db.begin_read().map_err(db_err)?;
    let t = r.open_table(META).map_err(db_err)?;
    t.get(key)
        .map_err(db_err)?
        .map(|v| v.value())
        .ok_or_else(|| RegistryError::Corrupt(format!("meta {key} missing")))
}

impl Registry {
    /// Creates a new registry in `dir`: a KEK and a pool of
    /// `cfg.pool_keys` keys from the system CSPRNG, wrapped page by page.
    pub fn init(dir: impl AsRef<Path>, cfg: PoolConfig) -> Result<Registry, RegistryError> {
        let dir = dir.as_ref();
        if cfg.slice_len < keys::GROUP_LEN {
            return Err(RegistryError::Config(format!(
                "slice length must be at least {}",
                keys::GROUP_LEN
            )));
        }
        if cfg.pool_keys < u64::from(cfg.slice_len) || cfg.pool_keys > MAX_POOL_KEYS {
            return Err(RegistryError::Config(format!(
                "pool size must be between one slice and {MAX_POOL_KEYS} keys"
            )));
        }
        std::fs::create_dir_all(dir).map_err(|error| RegistryError::Io {
            path: dir.to_path_buf(),
            error,
        })?;
        if dir.join(DB_FILE).exists() || dir.join(KEK_FILE).exists() {
            return Err(RegistryError::AlreadyExists {
                path: dir.to_path_buf(),
            });
        }
        let rng = SystemRandom::new();
        let kek = Kek::create(&dir.join(KEK_FILE))?;
        let db = Database::create(dir.join(DB_FILE)).map_err(db_err)?;
        let w = db.begin_write().map_err(db_err)?;
        {
            let mut pool = w.open_table(POOL).map_err(db_err)?;
            let pages = cfg.pool_keys.div_ceil(PAGE_KEYS);
            for p in 0..pages {
                let n = (cfg.pool_keys - p * PAGE_KEYS).min(PAGE_KEYS) as usize;
                let mut page = Zeroizing::new(vec![0u8; n * KEY_LEN]);
                aorta_base::random::fill(&mut page).map_err(|_| RegistryError::Rng)?;
                let wrapped = kek.wrap(&store::page_aad(p), &page)?;
                pool.insert(p, wrapped.as_slice()).map_err(db_err)?;
            }
            let mut meta = w.open_table(META).map_err(db_err)?;
            meta.insert("format_version", 1).map_err(db_err)?;
            meta.insert("pool_keys", cfg.pool_keys).map_err(db_err)?;
            meta.insert("slice_len", u64::from(cfg.slice_len))
                .map_err(db_err)?;
            meta.insert("next_offset", 0).map_err(db_err)?;
            w.open_table(DEVICES).map_err(db_err)?;
            w.open_table(ALLOC).map_err(db_err)?;
            w.open_table(FRAME_STATE).map_err(db_err)?;
            w.open_table(ACKS).map_err(db_err)?;
            w.open_table(reneg::RENEG).map_err(db_err)?;
            w.open_table(reneg::RENEG_PENDING).map_err(db_err)?;
        }
        w.commit().map_err(db_err)?;
        let reg = Registry {
            db,
            kek,
            rng,
            counters: RefusalCounters::default(),
            dir: dir.to_path_buf(),
        };
        reg.publish_directory()?;
        Ok(reg)
    }

    /// Opens an existing registry.
    pub fn open(dir: impl AsRef<Path>) -> Result<Registry, RegistryError> {
        let dir = dir.as_ref();
        if !dir.join(DB_FILE).exists() {
            return Err(RegistryError::NotFound {
                path: dir.to_path_buf(),
            });
        }
        let kek = Kek::load(&dir.join(KEK_FILE))?;
        let db = Database::open(dir.join(DB_FILE)).map_err(db_err)?;
        let v = meta_get(&db, "format_version")?;
        if v != 1 {
            return Err(RegistryError::Corrupt(format!(
                "registry format version {v} is not supported by this build; upgrade aorta"
            )));
        }
        Ok(Registry {
            db,
            kek,
            rng: SystemRandom::new(),
            counters: RefusalCounters::default(),
            dir: dir.to_path_buf(),
        })
    }

    /// Refusal and acceptance counters.
    pub fn counters(&self) -> &RefusalCounters {
        &self.counters
    }

    /// Keys per device.
    pub fn slice_len(&self) -> Result<u16, RegistryError> {
        u16::try_from(meta_get(&self.db, "slice_len")?)
            .map_err(|_| RegistryError::Corrupt("slice_len".into()))
    }

    /// Pool size in keys.
    pub fn pool_keys(&self) -> Result<u64, RegistryError> {
        meta_get(&self.db, "pool_keys")
    }

    /// Gives `serial` the next free contiguous slice and records it
    /// (unverified). Returns the keys to load into the device's secure element.
    pub fn provision(&self, serial: &str) -> Result<KeySlice, RegistryError> {
        let offset = meta_get(&self.db, "next_offset")?;
        self.provision_at(serial, offset)
    }

    /// Gives `serial` the slice starting at `offset` (refusing overlaps,
    /// exhaustion and re-provisioning).
    pub fn provision_at(&self, serial: &str, offset: u64) -> Result<KeySlice, RegistryError> {
        keys::check_serial(serial)?;
        let n = u64::from(self.slice_len()?);
        let pool = self.pool_keys()?;
        let end = offset.checked_add(n).ok_or(RegistryError::PoolExhausted {
            offset,
            needed: n,
            pool,
        })?;
        if end > pool {
            return Err(RegistryError::PoolExhausted {
                offset,
                needed: n,
                pool,
            });
        }
        let w = self.db.begin_write().map_err(db_err)?;
        {
            let mut devices = w.open_table(DEVICES).map_err(db_err)?;
            if let Some(existing) = devices.get(serial).map_err(db_err)? {
                let rec = DeviceRecord::from_bytes(existing.value())
                    .map_err(store::corrupt("device record"))?;
                return Err(RegistryError::AlreadyProvisioned {
                    serial: serial.to_owned(),
                    offset: rec.offset,
                });
            }
            let mut alloc = w.open_table(ALLOC).map_err(db_err)?;
            // The allocation below `end` with the greatest start must end at or before `offset`.
            let below = match alloc.range(..end).map_err(db_err)?.next_back() {
                Some(entry) => {
                    let (start, value) = entry.map_err(db_err)?;
                    let a = AllocRecord::from_bytes(value.value())
                        .map_err(store::corrupt("allocation record"))?;
                    Some((start.value(), (a.serial, a.len)))
                }
                None => None,
            };
            if let Some((start, (other, other_len))) = below
                && start + other_len > offset
            {
                return Err(RegistryError::Overlap { offset, end, other });
            }
            let rec = DeviceRecord {
                offset,
                slice_len: n as u16,
                verified: false,
                max_key_uses: DEFAULT_MAX_KEY_USES,
                min_key_uses: DEFAULT_MAX_KEY_USES,
                public_key: None,
                revoked: false,
            };
            devices
                .insert(serial, rec.to_bytes().as_slice())
                .map_err(db_err)?;
            alloc
                .insert(
                    offset,
                    AllocRecord {
                        serial: serial.to_owned(),
                        len: n,
                    }
                    .to_bytes()
                    .as_slice(),
                )
                .map_err(db_err)?;
            let mut meta = w.open_table(META).map_err(db_err)?;
            let next = meta
                .get("next_offset")
                .map_err(db_err)?
                .map_or(0, |v| v.value());
            meta.insert("next_offset", next.max(end)).map_err(db_err)?;
        }
        w.commit().map_err(db_err)?;
        self.publish_directory()?;
        self.device_keys_unchecked(serial, offset, n as u16)
    }

    fn record(&self, serial: &str) -> Result<DeviceRecord, RegistryError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(DEVICES).map_err(db_err)?;
        let v = t
            .get(serial)
            .map_err(db_err)?
            .ok_or_else(|| RegistryError::UnknownSerial {
                serial: serial.to_owned(),
            })?;
        DeviceRecord::from_bytes(v.value()).map_err(store::corrupt("device record"))
    }

    fn device_keys_unchecked(
        &self,
        serial: &str,
        offset: u64,
        n: u16,
    ) -> Result<KeySlice, RegistryError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let pool = r.open_table(POOL).map_err(db_err)?;
        let mut out = Vec::with_capacity(usize::from(n) * KEY_LEN);
        let end = offset + u64::from(n);
        let mut k = offset;
        while k < end {
            let page_no = k / PAGE_KEYS;
            let wrapped = pool
                .get(page_no)
                .map_err(db_err)?
                .ok_or_else(|| RegistryError::Corrupt(format!("pool page {page_no} missing")))?;
            let page = self
                .kek
                .unwrap(&store::page_aad(page_no), wrapped.value())?;
            let from = (k - page_no * PAGE_KEYS) as usize;
            let to = ((end - page_no * PAGE_KEYS).min(PAGE_KEYS)) as usize;
            let bytes = page
                .get(from * KEY_LEN..to * KEY_LEN)
                .ok_or_else(|| RegistryError::Corrupt(format!("pool page {page_no} short")))?;
            out.extend_from_slice(bytes);
            k = page_no * PAGE_KEYS + to as u64;
        }
        Ok(KeySlice::new(serial, out)?)
    }

    /// A registered device's key slice (public API for the key broker).
    pub fn device_keys(&self, serial: &str) -> Result<KeySlice, RegistryError> {
        let rec = self.record(serial)?;
        self.device_keys_unchecked(serial, rec.offset, rec.slice_len)
    }

    /// The transport key of `serial` for `key_index` and `epoch` — what the
    /// server (or issue 5's key broker) needs to open that device's frames.
    pub fn transport_key(
        &self,
        serial: &str,
        key_index: u16,
        epoch: &[u8; keys::EPOCH_LEN],
    ) -> Result<TransportKey, RegistryError> {
        let slice = self.device_keys(serial)?;
        Ok(TransportKey::derive(&slice, key_index, epoch)?)
    }

    /// The group keys `G_0 … G_(N-1)` of a registered, verified device
    /// (`aorta_crypto::keys::transport_group_key`, one per key index of its
    /// slice, in index order) — what the key broker releases to an attested
    /// worker so it can open every frame of that device, whatever the key
    /// index and run epoch. Refuses unknown and unverified devices.
    pub fn transport_group_keys(
        &self,
        serial: &str,
    ) -> Result<Vec<Zeroizing<[u8; 32]>>, RegistryError> {
        let rec = self.record(serial)?;
        if rec.revoked {
            return Err(RegistryError::Revoked {
                serial: serial.to_owned(),
            });
        }
        if !rec.verified {
            return Err(RegistryError::NotVerified {
                serial: serial.to_owned(),
            });
        }
        let slice = self.device_keys_unchecked(serial, rec.offset, rec.slice_len)?;
        (0..rec.slice_len)
            .map(|i| Ok(keys::transport_group_key(&slice, i)?))
            .collect()
    }

    /// What the registry knows about `serial`.
    pub fn device(&self, serial: &str) -> Result<DeviceInfo, RegistryError> {
        let rec = self.record(serial)?;
        let st = self.frame_state(serial)?;
        Ok(DeviceInfo {
            serial: serial.to_owned(),
            offset: rec.offset,
            slice_len: rec.slice_len,
            verified: rec.verified,
            max_key_uses: rec.max_key_uses,
            min_key_uses: rec.min_key_uses,
            last_sequence: st.last_sequence,
            last_key_index: st.last_key_index,
            public_key: rec.public_key,
            revoked: rec.revoked,
        })
    }

    /// Registers the device's Ed25519 signing public key (read from its
    /// secure element at assembly). Registering the same key again is a
    /// no-op; another key is refused.
    pub fn register_key(&self, serial: &str, public_key: &[u8; 32]) -> Result<(), RegistryError> {
        let mut rec = self.record(serial)?;
        match rec.public_key {
            Some(k) if &k == public_key => Ok(()),
            Some(_) => Err(RegistryError::KeyAlreadyRegistered {
                serial: serial.to_owned(),
            }),
            None => {
                rec.public_key = Some(*public_key);
                self.put_record(serial, &rec)
            }
        }
    }

    /// Retires a device: its frames are refused at ingest (through the
    /// directory) and here, and the broker releases none of its keys.
    pub fn revoke(&self, serial: &str) -> Result<(), RegistryError> {
        let mut rec = self.record(serial)?;
        rec.revoked = true;
        self.put_record(serial, &rec)
    }

    /// The public device directory (no key material).
    pub fn directory(&self) -> Result<aorta_crypto::directory::Directory, RegistryError> {
        use aorta_crypto::directory::{Directory, Entry, Status};
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(DEVICES).map_err(db_err)?;
        let mut d = Directory::default();
        for e in t.iter().map_err(db_err)? {
            let (k, v) = e.map_err(db_err)?;
            let rec =
                DeviceRecord::from_bytes(v.value()).map_err(store::corrupt("device record"))?;
            let status = if rec.revoked {
                Status::Revoked
            } else if rec.verified {
                Status::Verified
            } else {
                Status::Unverified
            };
            d.devices.insert(
                k.value().to_owned(),
                Entry {
                    status,
                    slice_len: rec.slice_len,
                    min_key_uses: rec.min_key_uses.max(1),
                    public_key: rec.public_key,
                },
            );
        }
        Ok(d)
    }

    /// Where the registry keeps its public device directory
    /// (`directory.txt`, rewritten after every change of a device).
    pub fn directory_path(&self) -> PathBuf {
        self.dir.join(DIRECTORY_FILE)
    }

    fn publish_directory(&self) -> Result<(), RegistryError> {
        let path = self.directory_path();
        let text = self.directory()?.to_text();
        aorta_base::fs::write_private_atomic(&path, text.as_bytes()).map_err(|e| {
            RegistryError::Io {
                path,
                error: std::io::Error::other(e.to_string()),
            }
        })
    }

    /// Key verification at assembly: checks the device's commitment over
    /// its key slice; a mismatch names the serial.
    pub fn verify(&self, serial: &str, commitment: &[u8; 32]) -> Result<(), RegistryError> {
        let mut rec = self.record(serial)?;
        let slice = self.device_keys_unchecked(serial, rec.offset, rec.slice_len)?;
        let expected = keys::commitment(&slice)?;
        if !keys::ct_eq(&expected, commitment) {
            return Err(RegistryError::CommitmentMismatch {
                serial: serial.to_owned(),
            });
        }
        rec.verified = true;
        self.put_record(serial, &rec)
    }

    fn put_record(&self, serial: &str, rec: &DeviceRecord) -> Result<(), RegistryError> {
        let w = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = w.open_table(DEVICES).map_err(db_err)?;
            t.insert(serial, rec.to_bytes().as_slice())
                .map_err(db_err)?;
        }
        w.commit().map_err(db_err)?;
        self.publish_directory()
    }

    fn frame_state(&self, serial: &str) -> Result<FrameState, RegistryError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(FRAME_STATE).map_err(db_err)?;
        match t.get(serial).map_err(db_err)? {
            Some(v) => FrameState::from_bytes(v.value()).map_err(store::corrupt("frame state")),
            None => Ok(FrameState::default()),
        }
    }

    fn ack_digest(&self, serial: &str, seq: u64) -> Result<Option<[u8; 32]>, RegistryError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(ACKS).map_err(db_err)?;
        let v = t.get((serial, seq)).map_err(db_err)?;
        Ok(v.and_then(|v| <[u8; 32]>::try_from(v.value()).ok()))
    }

    /// Whether `(serial, sequence)` has been acknowledged.
    pub fn is_acknowledged(&self, serial: &str, sequence: u64) -> Result<bool, RegistryError> {
        Ok(self.ack_digest(serial, sequence)?.is_some())
    }

    /// Opens an upload frame and, if it is new, records its acknowledgement
    /// atomically. Every refusal is counted under its [`RefusalKind`].
    pub fn accept_frame(&self, bytes: &[u8]) -> Result<Accepted, AcceptError> {
        let r = self.accept_inner(bytes);
        match &r {
            Ok(a) if a.duplicate => {
                self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.counters.bump(e.kind()),
        }
        r
    }

    fn accept_inner(&self, bytes: &[u8]) -> Result<Accepted, AcceptError> {
        let parsed = frame::parse(bytes)?;
        let h = parsed.header.clone();
        let serial = h.serial.as_str();
        let rec = match self.record(serial) {
            Ok(r) => r,
            Err(RegistryError::UnknownSerial { .. }) => {
                return Err(AcceptError::UnknownSerial {
                    serial: serial.to_owned(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        if !rec.verified || rec.revoked {
            return Err(AcceptError::NotVerified {
                serial: serial.to_owned(),
            });
        }
        let digest = store::frame_digest(bytes);
        // Exact re-send of an acknowledged frame: acknowledge again, store nothing.
        if let Some(stored) = self.ack_digest(serial, h.sequence)? {
            if !keys::ct_eq(&stored, &digest) {
                return Err(AcceptError::Replayed {
                    serial: serial.to_owned(),
                    sequence: h.sequence,
                });
            }
            let key = self.transport_key(serial, h.key_index, &h.epoch)?;
            let frame = parsed.open(&key)?;
            return Ok(Accepted {
                frame,
                duplicate: true,
            });
        }
        let st = self.frame_state(serial)?;
        if let Some(last) = st.last_sequence
            && h.sequence <= last
        {
            return Err(AcceptError::Reordered {
                serial: serial.to_owned(),
                sequence: h.sequence,
                last,
            });
        }
        // Key-index window: the index may only move forward, by at most
        // one step per max_key_uses sequence numbers since the last frame, plus one.
        let (from_seq, gap) = match st.last_sequence {
            Some(last) => (last, h.sequence - last),
            None => (0, h.sequence.saturating_add(1)),
        };
        let max_advance = keys::max_index_advance(rec.slice_len, rec.min_key_uses, gap);
        if !keys::index_window_ok(
            rec.slice_len,
            rec.min_key_uses,
            (from_seq, st.last_key_index),
            (from_seq.saturating_add(gap), h.key_index),
        ) {
            return Err(AcceptError::KeyIndexOutOfWindow {
                serial: serial.to_owned(),
                got: h.key_index,
                last: st.last_key_index,
                max_advance,
            });
        }
        let key = self.transport_key(serial, h.key_index, &h.epoch)?;
        let frame = parsed.open(&key)?;
        // Authenticated: record the acknowledgement and the new window
        // atomically. redb serializes write transactions, and the state read
        // above may be stale if another thread accepted a frame of this
        // device meanwhile, so the decisive checks are repeated here.
        let w = self.db.begin_write().map_err(db_err)?;
        let mut duplicate = false;
        {
            let mut acks = w.open_table(ACKS).map_err(db_err)?;
            let mut fs = w.open_table(FRAME_STATE).map_err(db_err)?;
            let existing = acks
                .get((serial, h.sequence))
                .map_err(db_err)?
                .map(|v| v.value().to_vec());
            let now = match fs.get(serial).map_err(db_err)? {
                Some(v) => {
                    FrameState::from_bytes(v.value()).map_err(store::corrupt("frame state"))?
                }
                None => FrameState::default(),
            };
            if let Some(stored) = existing {
                if !keys::ct_eq(&stored, &digest) {
                    return Err(AcceptError::Replayed {
                        serial: serial.to_owned(),
                        sequence: h.sequence,
                    });
                }
                duplicate = true;
            } else if let Some(last) = now.last_sequence.filter(|&l| h.sequence <= l) {
                return Err(AcceptError::Reordered {
                    serial: serial.to_owned(),
                    sequence: h.sequence,
                    last,
                });
            } else {
                acks.insert((serial, h.sequence), digest.as_slice())
                    .map_err(db_err)?;
                let new = FrameState {
                    last_sequence: Some(h.sequence),
                    last_key_index: h.key_index,
                };
                fs.insert(serial, new.to_bytes().as_slice())
                    .map_err(db_err)?;
            }
        }
        w.commit().map_err(db_err)?;
        Ok(Accepted { frame, duplicate })
    }
}
