//! `aorta server`: the HTTPS services of the untrusted cloud host, plus the
//! data owner's key broker in the same process for single-machine use.
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /v1/frames` | devices | one sealed frame; `200` once durable in the log |
//! | `GET /v1/log` | workers (token) | log records from an offset (long poll) |
//! | `GET`/`PUT /v1/checkpoint` | workers (token) | the worker's sealed checkpoint |
//! | `POST /v1/results` | workers (token) | sealed results + progress counters |
//! | `GET`/`POST /v1/erasures` | workers (token) | patient erasures to carry out / their erase tokens |
//! | `GET /v1/results` | clinicians | sealed results from a cursor |
//! | `POST /v1/devices/reneg` | devices | `max_key_uses` renegotiation (only where the registry is; `501` on a keyless host) |
//! | `GET /v1/stats` | operators | JSON counters and latency percentiles |
//! | `GET /metrics` | Prometheus | the same, as text exposition |
//! | `GET /healthz` | probes | `ok` |
//!
//! With `metrics_listen` set, a plain-HTTP operations port also serves
//! `/metrics`, `/healthz` and `/readyz` ([`api::ops`]).
//!
//! The request and response bodies are specified in `docs/server-api.md`.
//! Everything the host stores — frames, results, checkpoints — is sealed;
//! the host sees serials, sequence numbers, result ids and sizes.

pub mod api;
pub mod config;
pub mod ingest;
pub mod limits;
pub mod reneg;
pub mod tls;

use std::path::Path;

pub use config::ServerConfig;

/// Reads a 32-byte secret from `path` (hex), creating a random one (0600,
/// [`aorta_base::fs::write_private_new`]) when the file does not exist.
pub fn load_or_create_secret(path: &Path) -> anyhow::Result<zeroize::Zeroizing<[u8; 32]>> {
    use anyhow::Context;
    if !path.exists() {
        let k = aorta_base::random::secret::<32>()?;
        let hex = aorta_base::hex::encode_secret(k.as_ref());
        aorta_base::fs::write_private_new(path, hex.as_bytes())?;
    }
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    let bytes = aorta_base::hex::decode_secret(text.trim(), aorta_base::hex::Case::Any)
        .with_context(|| format!("{}: not hex", path.display()))?;
    let mut k = zeroize::Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        anyhow::bail!("{}: expected 32 bytes of hex", path.display());
    }
    k.copy_from_slice(&bytes);
    Ok(k)
}
