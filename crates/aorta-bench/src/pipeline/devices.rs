//! The devices' work (done before timing) and the key broker the bench's
//! worker attests to.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use aorta_crypto::frame::{self, FrameHeader, TransportKey};
use aorta_crypto::keys::{self, KeySlice};
use aorta_enclave::attest::SimAttester;
use aorta_enclave::evidence::Measurement;
use aorta_enclave::keywrap::Secret32;
use aorta_server::broker::policy::Policy;
use aorta_server::broker::{Broker, KeySource, ReleaseRequest};
use aorta_stream::job::encode_plain_frame;
use aorta_worker::client::{Ready, Unattested};
use rayon::prelude::*;

use super::signal::Source;
use super::{ASSIGNMENT, SUBSCRIBER};

/// Keys in each simulated device's slice (the smallest slice the key scheme
/// allows, `aorta_crypto::keys::GROUP_LEN`).
pub(crate) const SLICE_KEYS: usize = keys::GROUP_LEN as usize;
/// Key indices whose group keys the broker releases per device (a bundle
/// holds at most 65,535 keys: 10,000 devices × 8 would not fit).
pub(crate) const RELEASED_INDICES: u16 = 4;
/// Event time of every device's first sample (µs; a multiple of 5 min).
const T_BASE_US: i64 = 1_700_000_100_000_000;

/// One device's frames in both forms, with what the broker must release.
pub(crate) struct DeviceFrames {
    pub(crate) serial: String,
    pub(crate) secure: Vec<Vec<u8>>,
    /// The device's signature of each secure frame (the `Aorta-Signature`
    /// header ingest verifies), hex.
    pub(crate) signatures: Vec<String>,
    /// The device's signing public key.
    pub(crate) public_key: [u8; 32],
    pub(crate) plain: Vec<Vec<u8>>,
    /// Samples (all channels) of each frame.
    pub(crate) samples: Vec<u64>,
    /// Group keys `G_0 … G_(RELEASED_INDICES-1)`.
    pub(crate) groups: Vec<Secret32>,
}

/// The devices' work, done before timing: each device gets a fresh key
/// slice and epoch, derives its transport key and seals `frames` frames of
/// its signal; the same samples are also encoded as plain frames.
pub(crate) fn make_devices(
    sources: &[Source],
    devices: usize,
    frames: usize,
    frame_s: f64,
) -> anyhow::Result<Vec<DeviceFrames>> {
    (0..devices)
        .into_par_iter()
        .map(|d| {
            let src = sources.get(d % sources.len()).context("no source signal")?;
            let per = ((frame_s * src.fs).round() as usize).max(1);
            let [c0, c1] = &src.channels;
            let len = c0.len().min(c1.len());
            let need = per * frames;
            let offset = if len > need {
                let want = ((d as u64).wrapping_mul(7919) % 300) as usize * src.fs as usize;
                want.min(len - need)
            } else {
                0
            };
            let serial = format!("BP-{d:05}");
            let slice = KeySlice::new(&serial, aorta_base::random::vec(SLICE_KEYS * 32)?)?;
            let epoch: [u8; keys::EPOCH_LEN] = aorta_base::random::array()?;
            // Every device on key index 0: a stream starts at sequence 0,
            // and the key-index window admits no other index there.
            let index = 0u16;
            let tk = TransportKey::derive(&slice, index, &epoch)?;
            let groups = (0..RELEASED_INDICES)
                .map(|i| keys::transport_group_key(&slice, i).map(|g| Secret32::from_bytes(*g)))
                .collect::<Result<Vec<_>, _>>()?;
            let rate_mhz = (src.fs * 1000.0).round() as u32;
            let cal_plain: Vec<(f64, i32)> = src
                .calibration
                .iter()
                .map(|c| (c.gain, c.baseline))
                .collect();
            let signer = aorta_crypto::auth::SigningKey::generate()?;
            let mut out = DeviceFrames {
                serial: serial.clone(),
                secure: Vec::with_capacity(frames),
                signatures: Vec::with_capacity(frames),
                public_key: signer.public(),
                plain: Vec::with_capacity(frames),
                samples: Vec::with_capacity(frames),
                groups,
            };
            for k in 0..frames {
                let a = offset + k * per;
                let b = (a + per).min(len);
                if a >= b {
                    break;
                }
                let chans: Vec<&[i32]> = src
                    .channels
                    .iter()
                    .map(|c| c.get(a..b).unwrap_or_default())
                    .collect();
                let t = T_BASE_US + (k as f64 * frame_s * 1e6).round() as i64;
                let seq = k as u64;
                let h =
                    FrameHeader::new(&serial, index, seq, t, rate_mhz, 2, (b - a) as u32, epoch)?;
                let sealed = frame::seal(&tk, &h, &src.calibration, &chans)?;
                out.signatures.push(aorta_base::hex::encode(
                    &signer.sign(&aorta_crypto::auth::frame_message(&sealed)),
                ));
                out.secure.push(sealed);
                out.plain.push(encode_plain_frame(
                    &serial, t, rate_mhz, &cal_plain, &chans,
                )?);
                out.samples.push(2 * (b - a) as u64);
            }
            Ok(out)
        })
        .collect()
}

// ---------------------------------------------------------------- broker

/// The broker's key source for the bench: the devices' group keys, the
/// clinician's public key as the subscriber's result key, and worker state
/// keys derived from a state secret.
pub(crate) struct BenchKeys {
    pub(crate) groups: HashMap<String, Vec<Secret32>>,
    pub(crate) clinician: Secret32,
    pub(crate) state_secret: Secret32,
}

impl KeySource for BenchKeys {
    fn transport_key(&self, _serial: &str) -> Option<Secret32> {
        None
    }
    fn result_key(&self, id: &str) -> Option<Secret32> {
        (id == SUBSCRIBER).then(|| self.clinician.clone())
    }
    fn transport_group_keys(&self, serial: &str) -> Option<Vec<Secret32>> {
        self.groups.get(serial).cloned()
    }
    fn state_key(&self, assignment: &str) -> Option<Secret32> {
        keys::worker_state_key(self.state_secret.expose(), assignment)
            .ok()
            .map(|k| Secret32::from_bytes(*k))
    }
}

/// A broker with a sim-attestation policy for the assignment, and the
/// platform and measurement a worker attests with.
pub(crate) fn broker(
    keys: BenchKeys,
    serials: &[String],
) -> anyhow::Result<(Broker, SimAttester, Measurement)> {
    let platform = SimAttester::from_seed(&aorta_base::random::array::<32>()?);
    let m = Measurement::of_worker(b"aorta bench pipeline", b"");
    let devs: Vec<String> = serials.iter().map(|s| format!("\"{s}\"")).collect();
    let policy = Policy::from_toml_str(&format!(
        "allowed_backends = [\"sim\"]\nallow_simulation = true\nallowed_measurements = [\"{}\"]\nsim_platform_keys = [\"{}\"]\n[[assignments]]\nname = \"{ASSIGNMENT}\"\ndevices = [{}]\nsubscribers = [\"{SUBSCRIBER}\"]\n",
        m.to_hex(),
        aorta_base::hex::encode(&platform.platform_public_key()),
        devs.join(",")
    ))?;
    let signer = aorta_crypto::auth::SigningKey::generate()?;
    Ok((
        Broker::new(policy, Arc::new(keys)).with_signer(signer),
        platform,
        m,
    ))
}

/// A worker attested in process: nonce → sim evidence → broker verification
/// and HPKE key release → the worker opens its bundle.
pub(crate) fn attest(
    broker: &Broker,
    platform: &SimAttester,
    m: Measurement,
) -> anyhow::Result<Ready> {
    let w = Unattested::new(m).map_err(|e| anyhow::anyhow!("random generator: {e}"))?;
    let (nonce, issued_at) = broker
        .issue_nonce()
        .map_err(|e| anyhow::anyhow!("broker: {e}"))?;
    let awaiting = w.attest(platform, nonce, issued_at)?;
    let rel = broker
        .release(&ReleaseRequest {
            evidence: awaiting.evidence().encode(),
            assignment: ASSIGNMENT.into(),
            devices: Vec::new(),
            subscribers: Vec::new(),
        })
        .map_err(|e| anyhow::anyhow!("the broker refused (code {}): {e}", e.code()))?;
    Ok(awaiting.receive_keys(&rel.sealed)?)
}
