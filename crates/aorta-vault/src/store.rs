//! Dispersion of a record's fragments over object stores.
//!
//! A vault is a directory. With no configuration file it uses local stores
//! under it: `cloud/` for the public fragment (standing in for the cloud),
//! `device/` for the private fragment (the patient's phone), the audit log
//! `audit.log` and revocations under `device/revoked/`. A `vault.json` in the
//! directory selects other stores (see `docs/vault-format.md`), e.g. several
//! S3 buckets with k-of-n dispersal:
//!
//! ```json
//! { "public": [ {"type": "local", "path": "cloud-a"},
//!               {"type": "s3", "bucket": "b", "endpoint": "http://127.0.0.1:9000",
//!                "region": "us-east-1", "allow_http": true} ],
//!   "private": {"type": "local", "path": "device"},
//!   "backup": {"type": "local", "path": "trusted-backup"},
//!   "dispersal": {"k": 1, "n": 2} }
//! ```
//!
//! Without dispersal every public store holds a full copy (replication); with
//! dispersal store i holds shard i. Every copy and every shard carries an
//! HMAC tag under the record's integrity key ([`crate::integrity`]), which
//! only the private fragment yields; [`Vault::get_public_verified`] tries
//! every store until a copy verifies and names the stores whose copy failed. S3 credentials come from the config's
//! `access_key_id`/`secret_access_key` or, when absent, from the usual
//! `AWS_*` environment variables.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aorta_crypto::selective::{Protected, RecordId, RecoveryMaterial};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::VaultError;
use crate::dispersal::{self, Dispersal, Rebuilt};
use crate::integrity::{self, IntegrityKey, StoreFailure, StoreFault};

/// Name of the optional configuration file inside a vault directory.
pub const CONFIG_FILE: &str = "vault.json";

/// One store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreSpec {
    /// A local directory (relative paths are relative to the vault directory).
    Local {
        /// Directory.
        path: PathBuf,
    },
    /// An S3 (or S3-compatible) bucket.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Endpoint URL (omit for AWS).
        #[serde(default)]
        endpoint: Option<String>,
        /// Region.
        #[serde(default)]
        region: Option<String>,
        /// Access key id (else from the environment).
        #[serde(default)]
        access_key_id: Option<String>,
        /// Secret access key (else from the environment).
        #[serde(default)]
        secret_access_key: Option<String>,
        /// Allow plain HTTP (local test servers only).
        #[serde(default)]
        allow_http: bool,
    },
}

impl StoreSpec {
    fn label(&self) -> String {
        match self {
            StoreSpec::Local { path } => format!("local:{}", path.display()),
            StoreSpec::S3 { bucket, .. } => format!("s3:{bucket}"),
        }
    }
}

/// A vault's configuration (`vault.json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Stores for the public fragment ("cloud").
    pub public: Vec<StoreSpec>,
    /// Store for the private fragment (the device).
    pub private: StoreSpec,
    /// Optional trusted backup store for the (encrypted) private fragment.
    #[serde(default)]
    pub backup: Option<StoreSpec>,
    /// Optional k-of-n dispersal of the public fragment; n must equal the
    /// number of public stores.
    #[serde(default)]
    pub dispersal: Option<Dispersal>,
}

impl Default for VaultConfig {
    fn default() -> Self {
        Self {
            public: vec![StoreSpec::Local {
                path: PathBuf::from("cloud"),
            }],
            private: StoreSpec::Local {
                path: PathBuf::from("device"),
            },
            backup: None,
            dispersal: None,
        }
    }
}

struct Store {
    label: String,
    inner: Arc<dyn ObjectStore>,
    /// The directory, for a local store.
    local: Option<PathBuf>,
}

/// The private (device) store as a small key-value area for what must never
/// reach a cloud store: the audit key and the audit anchor
/// ([`crate::audit`]). Cheap to clone.
#[derive(Clone)]
pub struct DeviceStore {
    label: String,
    inner: Arc<dyn ObjectStore>,
    local: Option<PathBuf>,
    rt: Arc<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for DeviceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceStore")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl DeviceStore {
    /// A local directory as the device store (tests, tools).
    pub fn local(dir: &Path) -> Result<Self, VaultError> {
        std::fs::create_dir_all(dir).map_err(|e| VaultError::io(dir, e))?;
        let label = format!("local:{}", dir.display());
        let inner =
            object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(obj_err(&label))?;
        Ok(Self {
            label,
            inner: Arc::new(inner),
            local: Some(dir.to_path_buf()),
            rt: Arc::new(runtime(dir)?),
        })
    }

    /// The store's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Reads object `name`; `Ok(None)` when absent.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, VaultError> {
        let p = ObjPath::from(name);
        let r = self.rt.block_on(async {
            let g = self.inner.get(&p).await?;
            g.bytes().await
        });
        match r {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(obj_err(&self.label)(e)),
        }
    }

    /// Writes a secret object `name`: in a local store, a file only its
    /// owner can read (mode 0600), written atomically.
    pub fn put_secret(&self, name: &str, bytes: &[u8]) -> Result<(), VaultError> {
        let Some(root) = &self.local else {
            return self.put(name, bytes);
        };
        let path = root.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| VaultError::io(parent, e))?;
        }
        aorta_base::fs::write_private_atomic(&path, bytes)?;
        Ok(())
    }

    /// Writes object `name`.
    pub fn put(&self, name: &str, bytes: &[u8]) -> Result<(), VaultError> {
        self.rt
            .block_on(
                self.inner
                    .put(&ObjPath::from(name), PutPayload::from(bytes.to_vec())),
            )
            .map(|_| ())
            .map_err(obj_err(&self.label))
    }
}

fn runtime(dir: &Path) -> Result<tokio::runtime::Runtime, VaultError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| VaultError::io(dir, e))
}

/// An opened vault.
pub struct Vault {
    dir: PathBuf,
    rt: Arc<tokio::runtime::Runtime>,
    public: Vec<Store>,
    private: Store,
    backup: Option<Store>,
    dispersal: Option<Dispersal>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("dir", &self.dir)
            .field(
                "public",
                &self.public.iter().map(|s| &s.label).collect::<Vec<_>>(),
            )
            .field("private", &self.private.label)
            .field("dispersal", &self.dispersal)
            .finish_non_exhaustive()
    }
}

fn obj_err(label: &str) -> impl FnOnce(object_store::Error) -> VaultError + '_ {
    move |source| VaultError::Store {
        store: label.to_string(),
        source,
    }
}

fn build(dir: &Path, spec: &StoreSpec) -> Result<Store, VaultError> {
    let label = spec.label();
    let mut local = None;
    let inner: Arc<dyn ObjectStore> = match spec {
        StoreSpec::Local { path } => {
            let p = if path.is_absolute() {
                path.clone()
            } else {
                dir.join(path)
            };
            std::fs::create_dir_all(&p).map_err(|e| VaultError::io(&p, e))?;
            local = Some(p.clone());
            Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(&p)
                    .map_err(obj_err(&label))?,
            )
        }
        StoreSpec::S3 {
            bucket,
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            allow_http,
        } => {
            // reqwest is built without a bundled TLS provider; use ring's. An
            // error only means a provider is already installed.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut b = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_allow_http(*allow_http);
            if let Some(e) = endpoint {
                b = b.with_endpoint(e);
            }
            if let Some(r) = region {
                b = b.with_region(r);
            }
            if let Some(a) = access_key_id {
                b = b.with_access_key_id(a);
            }
            if let Some(s) = secret_access_key {
                b = b.with_secret_access_key(s);
            }
            Arc::new(b.build().map_err(obj_err(&label))?)
        }
    };
    Ok(Store {
        label,
        inner,
        local,
    })
}

fn public_path(id: &RecordId) -> ObjPath {
    ObjPath::from(format!("records/{}.aosp", id.to_hex()))
}
fn shard_path(id: &RecordId, i: usize) -> ObjPath {
    ObjPath::from(format!("records/{}.aosp.shard{i}", id.to_hex()))
}
fn private_path(id: &RecordId) -> ObjPath {
    ObjPath::from(format!("records/{}.aosr", id.to_hex()))
}
fn revoked_path(grant_hex: &str) -> ObjPath {
    ObjPath::from(format!("revoked/{grant_hex}"))
}

impl Vault {
    /// Opens (creating if needed) the vault in `dir`, reading `vault.json`
    /// when present.
    pub fn open(dir: &Path) -> Result<Self, VaultError> {
        std::fs::create_dir_all(dir).map_err(|e| VaultError::io(dir, e))?;
        let cfg_path = dir.join(CONFIG_FILE);
        let cfg = match std::fs::read(&cfg_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| VaultError::Config {
                reason: format!("{}: {e}", cfg_path.display()),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => VaultConfig::default(),
            Err(e) => return Err(VaultError::io(&cfg_path, e)),
        };
        Self::with_config(dir, &cfg)
    }

    /// Opens an existing vault (for reading, sharing, revoking, auditing): a
    /// mistyped path is an error instead of a new, empty vault.
    pub fn open_existing(dir: &Path) -> Result<Self, VaultError> {
        if !dir.is_dir() {
            return Err(VaultError::Config {
                reason: format!("{} is not a vault directory", dir.display()),
            });
        }
        Self::open(dir)
    }

    /// Opens the vault in `dir` with an explicit configuration.
    pub fn with_config(dir: &Path, cfg: &VaultConfig) -> Result<Self, VaultError> {
        if cfg.public.is_empty() {
            return Err(VaultError::Config {
                reason: "at least one public store is needed".into(),
            });
        }
        if let Some(d) = cfg.dispersal {
            d.check()?;
            if usize::from(d.n) != cfg.public.len() {
                return Err(VaultError::Config {
                    reason: format!(
                        "dispersal n = {} but {} public stores are configured",
                        d.n,
                        cfg.public.len()
                    ),
                });
            }
        }
        let rt = Arc::new(runtime(dir)?);
        let public = cfg
            .public
            .iter()
            .map(|s| build(dir, s))
            .collect::<Result<Vec<_>, _>>()?;
        let private = build(dir, &cfg.private)?;
        let backup = cfg.backup.as_ref().map(|s| build(dir, s)).transpose()?;
        Ok(Self {
            dir: dir.to_path_buf(),
            rt,
            public,
            private,
            backup,
            dispersal: cfg.dispersal,
        })
    }

    /// The vault directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The device store as the audit log's key-value area.
    pub fn device(&self) -> DeviceStore {
        DeviceStore {
            label: self.private.label.clone(),
            inner: Arc::clone(&self.private.inner),
            local: self.private.local.clone(),
            rt: Arc::clone(&self.rt),
        }
    }

    /// Path of the audit log.
    pub fn audit_path(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    fn put(&self, s: &Store, p: &ObjPath, bytes: Vec<u8>) -> Result<(), VaultError> {
        self.rt
            .block_on(s.inner.put(p, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(obj_err(&s.label))
    }

    /// `Ok(None)` when the object does not exist.
    fn get(&self, s: &Store, p: &ObjPath) -> Result<Option<Vec<u8>>, VaultError> {
        let r = self.rt.block_on(async {
            let g = s.inner.get(p).await?;
            g.bytes().await
        });
        match r {
            Ok(b) => Ok(Some(b.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(obj_err(&s.label)(e)),
        }
    }

    /// Disperses a protected record: public fragment to the public store(s)
    /// (replicated as `AOSI` objects, or as `AOSD` v2 Reed-Solomon shards),
    /// each tagged under the integrity key of `material` (the record's
    /// opened private fragment); private fragment to the device store and,
    /// if configured, to the backup store.
    pub fn put_record(&self, p: &Protected, material: &RecoveryMaterial) -> Result<(), VaultError> {
        if material.record_id != p.record_id {
            return Err(VaultError::Internal {
                what: "put_record given another record's material",
            });
        }
        let key = IntegrityKey::for_material(material)?;
        match self.dispersal {
            None => {
                let replica = integrity::seal_replica(&p.public, p.record_id, &key)?;
                for s in &self.public {
                    self.put(s, &public_path(&p.record_id), replica.clone())?;
                }
            }
            Some(d) => {
                let shards = dispersal::encode(&p.public, p.record_id, d, &key)?;
                for (i, (s, shard)) in self.public.iter().zip(shards).enumerate() {
                    self.put(s, &shard_path(&p.record_id, i), shard)?;
                }
            }
        }
        self.put(
            &self.private,
            &private_path(&p.record_id),
            p.private.clone(),
        )?;
        if let Some(b) = &self.backup {
            self.put(b, &private_path(&p.record_id), p.private.clone())?;
        }
        Ok(())
    }

    /// Reads the public fragment of the record `material` recovers (the
    /// opened private fragment or a grant's material) and returns it with
    /// the stores whose copy was not used and why.
    ///
    /// Without dispersal every replica is tried in store order until one
    /// passes its tag (`AOSI`) and matches the checksum sealed in the
    /// private fragment; a bare `AOSP` object (written before tags) is
    /// accepted on that checksum alone. With dispersal every store's shard
    /// is read and checked ([`dispersal::check`]), and k-subsets of the
    /// good ones are decoded until one matches ([`dispersal::decode_verified`]).
    ///
    /// Errors: [`VaultError::NotFound`] when no store holds the object,
    /// [`VaultError::TooFewShards`] when fewer than k shards could be read
    /// and none was altered, else [`VaultError::PublicUnavailable`] naming
    /// every store and its fault (blamed on the stores).
    pub fn get_public_verified(
        &self,
        id: &RecordId,
        material: &RecoveryMaterial,
    ) -> Result<(Vec<u8>, Vec<StoreFailure>), VaultError> {
        if material.record_id != *id {
            return Err(VaultError::GrantForOtherRecord {
                grant_record: material.record_id.to_hex(),
                record: id.to_hex(),
            });
        }
        let key = IntegrityKey::for_material(material)?;
        let fail = |index: usize, fault: StoreFault| StoreFailure {
            store: self
                .public
                .get(index)
                .map_or_else(String::new, |s| s.label.clone()),
            index,
            fault,
        };
        let mut failures = Vec::new();
        let Some(d) = self.dispersal else {
            for (i, s) in self.public.iter().enumerate() {
                let bytes = match self.get(s, &public_path(id)) {
                    Ok(Some(b)) => b,
                    Ok(None) => {
                        failures.push(fail(i, StoreFault::Missing));
                        continue;
                    }
                    Err(e) => {
                        failures.push(fail(
                            i,
                            StoreFault::Unreadable {
                                reason: e.to_string(),
                            },
                        ));
                        continue;
                    }
                };
                let checked = if bytes.starts_with(aorta_crypto::selective::container::PUBLIC_MAGIC)
                {
                    // A replica written before tags: only the binding vouches.
                    integrity::binds(&bytes, material).map(|()| bytes.clone())
                } else {
                    integrity::open_replica(&bytes, id, &key).and_then(|c| {
                        integrity::binds(c, material)?;
                        Ok(c.to_vec())
                    })
                };
                match checked {
                    Ok(c) => return Ok((c, failures)),
                    Err(f) => failures.push(fail(i, f)),
                }
            }
            return Err(self.unavailable(id, failures, None));
        };
        let raw: Vec<Option<Vec<u8>>> = self
            .public
            .iter()
            .enumerate()
            .map(|(i, s)| match self.get(s, &shard_path(id, i)) {
                Ok(Some(b)) => Some(b),
                Ok(None) => {
                    failures.push(fail(i, StoreFault::Missing));
                    None
                }
                Err(e) => {
                    failures.push(fail(
                        i,
                        StoreFault::Unreadable {
                            reason: e.to_string(),
                        },
                    ));
                    None
                }
            })
            .collect();
        let mut good = Vec::new();
        for (i, b) in raw.iter().enumerate() {
            if let Some(b) = b {
                match dispersal::check(b, i, id, d, &key) {
                    Ok(s) => good.push((i, s)),
                    Err(f) => failures.push(fail(i, f)),
                }
            }
        }
        let outcome = dispersal::decode_verified(good, d, |c| integrity::binds(c, material))?;
        match outcome {
            Rebuilt::Ok(c, faults) => {
                failures.extend(faults.into_iter().map(|(i, f)| fail(i, f)));
                failures.sort_by_key(|f| f.index);
                Ok((c, failures))
            }
            Rebuilt::Failed(faults, readable) => {
                failures.extend(faults.into_iter().map(|(i, f)| fail(i, f)));
                failures.sort_by_key(|f| f.index);
                Err(self.unavailable(id, failures, Some((readable, usize::from(d.k)))))
            }
        }
    }

    /// The error when no store gave a usable public fragment.
    fn unavailable(
        &self,
        id: &RecordId,
        failures: Vec<StoreFailure>,
        shards: Option<(usize, usize)>,
    ) -> VaultError {
        let all_missing = failures.iter().all(|f| f.fault == StoreFault::Missing);
        match shards {
            Some((0, _)) | None if all_missing => {
                return VaultError::NotFound {
                    record_id: id.to_hex(),
                    store: "any public store".into(),
                };
            }
            Some((available, needed)) if !failures.iter().any(|f| f.fault.is_integrity()) => {
                return VaultError::TooFewShards {
                    record_id: id.to_hex(),
                    available,
                    needed,
                };
            }
            _ => {}
        }
        VaultError::PublicUnavailable {
            record_id: id.to_hex(),
            failures,
        }
    }

    /// Reads the private fragment from the device store, falling back to the
    /// backup store.
    pub fn get_private(&self, id: &RecordId) -> Result<Vec<u8>, VaultError> {
        if let Some(b) = self.get(&self.private, &private_path(id))? {
            return Ok(b);
        }
        if let Some(bk) = &self.backup
            && let Some(b) = self.get(bk, &private_path(id))?
        {
            return Ok(b);
        }
        Err(VaultError::NotFound {
            record_id: id.to_hex(),
            store: self.private.label.clone(),
        })
    }

    /// Deletes the record's public objects from public store `index`
    /// (tests and store migration).
    pub fn delete_public_from(&self, index: usize, id: &RecordId) -> Result<(), VaultError> {
        let s = self.public.get(index).ok_or(VaultError::Config {
            reason: format!("no public store {index}"),
        })?;
        let p = match self.dispersal {
            None => public_path(id),
            Some(_) => shard_path(id, index),
        };
        self.rt
            .block_on(s.inner.delete(&p))
            .map_err(obj_err(&s.label))
    }

    /// Deletes the private fragment from the device store (a lost phone).
    pub fn delete_private(&self, id: &RecordId) -> Result<(), VaultError> {
        self.rt
            .block_on(self.private.inner.delete(&private_path(id)))
            .map_err(obj_err(&self.private.label))
    }

    /// Writes the patient's object `gate/<key>` (the release gate's state:
    /// grant table, gate material, vault identity) to the private store.
    pub fn put_gate_object(&self, key: &str, bytes: Vec<u8>) -> Result<(), VaultError> {
        self.put(&self.private, &ObjPath::from(format!("gate/{key}")), bytes)
    }

    /// Reads the patient's object `gate/<key>` from the private store.
    pub fn get_gate_object(&self, key: &str) -> Result<Option<Vec<u8>>, VaultError> {
        self.get(&self.private, &ObjPath::from(format!("gate/{key}")))
    }

    /// Records that a grant is revoked.
    pub fn revoke(&self, grant_hex: &str) -> Result<(), VaultError> {
        self.put(
            &self.private,
            &revoked_path(grant_hex),
            b"revoked\n".to_vec(),
        )
    }

    /// True when the grant was revoked.
    pub fn is_revoked(&self, grant_hex: &str) -> Result<bool, VaultError> {
        Ok(self.get(&self.private, &revoked_path(grant_hex))?.is_some())
    }
}

/// The patient's own small settings (institution pins and the emergency
/// replay set of [`crate::institution`]), kept in the private (device)
/// store as `settings/<name>` next to the private fragments, never in a
/// public store.
impl Vault {
    /// Reads setting `name` (`Ok(None)` when it was never written), or
    /// with `Some(bytes)` replaces it (the local store writes through a
    /// temporary file and a rename).
    pub fn device_setting(
        &self,
        name: &str,
        replace_with: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, VaultError> {
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !name.starts_with('.');
        if !ok {
            return Err(VaultError::Internal {
                what: "device setting names are [A-Za-z0-9.-], not starting with a dot",
            });
        }
        let p = ObjPath::from(format!("settings/{name}"));
        match replace_with {
            Some(bytes) => self.put(&self.private, &p, bytes).map(|()| None),
            None => self.get(&self.private, &p),
        }
    }
}
