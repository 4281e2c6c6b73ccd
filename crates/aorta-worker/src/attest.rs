//! The attestation client: backend choice, evidence, and key release from
//! the key broker (`docs/worker-protocol.md`).

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::client::{
    ClientError, KeyRequest, Ready, Unattested, attest_to_broker, attest_to_broker_windowed,
};
use aorta_enclave::attest::{Attester, SimAttester, SystemRoots, detect, hardware_attester};
use aorta_enclave::evidence::{Backend, Measurement};
use aorta_enclave::wire::{DeviceSelection, WireError};

use crate::WorkerError;

/// How the worker attests and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestOptions {
    /// Evidence backend resolved by [`resolve_backend`].
    pub backend: Backend,
    /// Key broker address (host:port).
    pub broker: String,
    /// Assignment name in the broker's policy.
    pub assignment: String,
    /// Worker configuration file (measured together with the binary).
    pub config: Option<PathBuf>,
    /// sim backend: the platform key file (created if missing).
    pub sim_platform_key: PathBuf,
    /// tdx/sgx-gramine: Intel collateral JSON for the quote (from a PCCS).
    pub collateral: Option<PathBuf>,
    /// Ask for key windows of this many key indices per device instead of
    /// whole key slices ([`attest_windowed`]); `None`: whole slices.
    pub key_window: Option<u16>,
}

/// Most device key entries one windowed page asks for: a bundle holds at
/// most 65,535 transport entries, and the state and result-signing keys
/// need room too.
pub const MAX_WINDOW_KEYS_PER_PAGE: usize = 60_000;

/// Devices per page (or per refresh request) at key-window `width`.
pub fn window_page(width: u16) -> u16 {
    u16::try_from(MAX_WINDOW_KEYS_PER_PAGE / usize::from(width.max(1))).unwrap_or(u16::MAX)
}

/// The backend named `name`: `sim`, `tdx`, `sev-snp`, `sgx-gramine`, or
/// `auto` (a hardware backend whose device files exist). Never falls back
/// to `sim` silently.
pub fn resolve_backend(name: &str) -> Result<Backend, WorkerError> {
    if name == "auto" {
        detect(&SystemRoots::default()).map_err(|e| WorkerError::Config(e.to_string()))
    } else {
        name.parse::<Backend>()
            .map_err(|e| WorkerError::Config(e.to_string()))
    }
}

/// `aorta worker measure`'s report: the measurement a policy lists in
/// `allowed_measurements` for sim workers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MeasureReport {
    /// Hex of the measurement (binary and configuration).
    pub measurement: String,
}

/// `aorta worker sim-platform`'s report: what a policy lists in
/// `sim_platform_keys`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlatformReport {
    /// Hex of the sim platform's Ed25519 public key.
    pub platform_key: String,
}

/// A key broker's refusal as a worker reports it (`{"refused": {"code",
/// "reason"}}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RefusedReport {
    /// The refusal.
    pub refused: BrokerRefusal,
}

/// A refusal code from `aorta_crypto::refusal` and its reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BrokerRefusal {
    /// The code.
    pub code: u16,
    /// The reason.
    pub reason: String,
}

/// An attested worker with its keys, backend and measurement.
pub struct Attested {
    /// The worker holding the released keys.
    pub ready: Ready,
    /// The evidence backend used.
    pub backend: Backend,
    /// This binary's measurement with its configuration.
    pub measurement: Measurement,
}

/// The error of a key-release attempt, by blame.
fn client_error(e: ClientError) -> WorkerError {
    match e {
        ClientError::Refused { code, reason } => WorkerError::Refused { code, reason },
        ClientError::Wire(WireError::Io(io)) => WorkerError::Network {
            what: "talking to the key broker".into(),
            source: Box::new(io),
        },
        ClientError::Attest(a) => WorkerError::Attestation(a.to_string()),
        e => WorkerError::Peer(e.to_string()),
    }
}

/// Hardens the process (non-dumpable), produces evidence with `o.backend`
/// over this binary and `config` (the configuration bytes the worker runs
/// with), attests to the broker and receives the assignment's keys for `devices`
/// and `subscribers` (empty: all of the assignment's). A refusal is
/// [`WorkerError::Refused`].
pub fn attest(
    o: &AttestOptions,
    config: &[u8],
    devices: Vec<String>,
    subscribers: Vec<String>,
) -> Result<Attested, WorkerError> {
    let req = KeyRequest {
        assignment: o.assignment.clone(),
        devices,
        subscribers,
    };
    exchange(o, config, |stream, worker, attester| {
        attest_to_broker(stream, worker, attester, &req)
    })
}

/// Attests and receives key windows of `width` key indices (from index 0)
/// for every device of the assignment, one page of [`window_page`] devices
/// per attestation (the broker's bundles are bounded, the assignment is
/// not), with the first page's state key, result-signing key and
/// certificate.
pub fn attest_windowed(
    o: &AttestOptions,
    config: &[u8],
    width: u16,
) -> Result<Attested, WorkerError> {
    let page = window_page(width);
    let mut after = String::new();
    let mut first: Option<Attested> = None;
    loop {
        let a = exchange(o, config, |stream, worker, attester| {
            let selection = DeviceSelection::Page {
                after: after.clone(),
                max: page,
            };
            attest_to_broker_windowed(stream, worker, attester, &o.assignment, width, selection)
        })?;
        let devices =
            released_devices(a.ready.keys().transport_keys.iter().map(|(n, _)| n.clone()));
        let last = devices.last().cloned();
        match first.as_mut() {
            None => first = Some(a),
            Some(f) => f.ready.take_device_keys(a.ready).map_err(client_error)?,
        }
        match last {
            Some(last) if devices.len() >= usize::from(page) => after = last,
            _ => break,
        }
    }
    first.ok_or_else(|| WorkerError::Internal("no key release".into()))
}

/// Attests again and receives key windows of `width` indices for
/// `devices`, each from its own first index (a refresh while running),
/// in pages of [`window_page`] devices.
pub fn fetch_windows(
    o: &AttestOptions,
    config: &[u8],
    width: u16,
    devices: &[(String, u16)],
) -> Result<Vec<Ready>, WorkerError> {
    devices
        .chunks(usize::from(window_page(width)))
        .map(|chunk| {
            exchange(o, config, |stream, worker, attester| {
                let selection = DeviceSelection::Listed(chunk.to_vec());
                attest_to_broker_windowed(stream, worker, attester, &o.assignment, width, selection)
            })
            .map(|a| a.ready)
        })
        .collect()
}

/// One attestation: evidence for a fresh nonce over a new connection, and
/// `request`'s key release.
fn exchange(
    o: &AttestOptions,
    config: &[u8],
    request: impl FnOnce(&mut TcpStream, Unattested, &dyn Attester) -> Result<Ready, ClientError>,
) -> Result<Attested, WorkerError> {
    if let Err(e) = crate::client::harden_process() {
        tracing::warn!(target: "aorta::worker", error = %e, "could not mark the worker non-dumpable");
    }
    let backend = o.backend;
    let attester: Box<dyn Attester + Send + Sync> = if backend == Backend::Sim {
        Box::new(
            SimAttester::load_or_create(&o.sim_platform_key)
                .map_err(|e| WorkerError::Config(e.to_string()))?,
        )
    } else {
        let coll = match &o.collateral {
            Some(p) => std::fs::read(p).map_err(|e| {
                WorkerError::Config(format!("cannot read collateral {}: {e}", p.display()))
            })?,
            None => Vec::new(),
        };
        hardware_attester(backend, &SystemRoots::default(), coll)
            .ok_or_else(|| WorkerError::Config(format!("no producer for backend {backend}")))?
    };
    let measurement = crate::config::measure_bytes(config)?;
    let worker = Unattested::new(measurement)
        .map_err(|e| WorkerError::Internal(format!("random generator failed: {e}")))?;
    let net = |what: String| {
        move |e: std::io::Error| WorkerError::Network {
            what,
            source: Box::new(e),
        }
    };
    let mut stream = TcpStream::connect(&o.broker).map_err(net(format!(
        "cannot connect to the key broker at {}",
        o.broker
    )))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(net("setting the broker timeout".into()))?;
    let ready = request(&mut stream, worker, attester.as_ref()).map_err(client_error)?;
    Ok(Attested {
        ready,
        backend,
        measurement,
    })
}

/// The devices whose keys a bundle holds: entry names are `SERIAL` (a
/// development key file) or `SERIAL/INDEX` (group keys from the registry);
/// names starting with `@` (the worker state key) are not devices.
pub fn released_devices(names: impl Iterator<Item = String>) -> Vec<String> {
    let set: std::collections::BTreeSet<String> = names
        .filter(|n| !n.starts_with('@'))
        .map(|n| match n.split_once('/') {
            Some((serial, _)) => serial.to_owned(),
            None => n,
        })
        .collect();
    set.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::released_devices;

    #[test]
    fn released_devices_are_serials_without_the_state_key() {
        let names = ["ECG-2/0", "ECG-1/3", "ECG-1/4", "@state", "DEV-FILE"].map(String::from);
        assert_eq!(
            released_devices(names.into_iter()),
            vec!["DEV-FILE", "ECG-1", "ECG-2"]
        );
    }
}
