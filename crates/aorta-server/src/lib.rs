//! # aorta-server — the data owner's server side
//!
//! Owns the **key broker** ([`broker`]): it reads a TOML policy
//! ([`broker::policy::Policy`]), issues single-use attestation nonces,
//! verifies worker evidence with `aorta-enclave`, and releases exactly the
//! keys a worker's assignment needs, HPKE-wrapped to the worker's attested
//! key — or refuses with a typed reason ([`broker::BrokerRefusal`]). Device
//! keys come from the device key registry ([`broker::RegistryKeySource`]:
//! per-device group keys, named `SERIAL/INDEX`; a standalone broker's source
//! from [`broker::standalone_key_source`]). Every decision is logged with
//! `tracing`; key bytes never are.
//!
//! It must never: release a key to an unverified worker (the types forbid it:
//! wrapping needs an `AttestedWorker`), accept a nonce twice, or accept `sim`
//! evidence unless the policy says `allow_simulation = true`.
//!
//! It also owns the cloud host's HTTPS services ([`http`]): device ingest
//! through the one group-commit writer ([`http::ingest`], which `aorta bench
//! pipeline` times too), the frame log, the results and checkpoint API
//! (bodies from `aorta-api`; the checkpoint document is the engine's), and
//! metrics; and patient erasure on the host ([`erasure`]: the data
//! directory's lock, pending requests, the audit log, `aorta admin erase`).
//! The MQTT front ([`mqtt`], `docs/mqtt.md`) feeds the same ingest.
//! [`broker_report`] summarises a policy and inspects DCAP quotes offline
//! for the data owner (`aorta broker check` / `inspect-quote`).
//!
//! ## Example
//!
//! ```
//! use std::sync::Arc;
//! use aorta_server::broker::{Broker, MemoryKeySource, policy::Policy};
//!
//! let policy = Policy::from_toml_str(r#"
//!     allowed_backends = ["tdx"]
//!     allowed_measurements = ["00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"]
//!     [[assignments]]
//!     name = "ward-a"
//!     devices = ["ECG-0001"]
//!     subscribers = []
//! "#).unwrap();
//! let broker = Broker::new(policy, Arc::new(MemoryKeySource::default()));
//! let (nonce, _issued_at) = broker.issue_nonce().unwrap();
//! assert_eq!(nonce.0.len(), 32);
//! ```
#![deny(missing_docs)]

pub mod broker;
pub mod broker_report;
pub mod erasure;
pub mod http;
pub mod log_throttle;
pub mod mqtt;
