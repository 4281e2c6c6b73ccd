//! The worker's opener for aorta device upload frames
//! (`docs/frame-format.md`, sealed by `aorta-device`).
//!
//! The key broker releases, per assigned device, the device's **group keys**
//! `G_i` (one per key index of its slice) as bundle entries named
//! `SERIAL/INDEX`. A frame's cleartext header names its serial, key index
//! and the device's per-run epoch; [`UploadFrames`] looks up `G_index` under
//! that name and derives the frame's transport key
//! `TK = HKDF(G_index, serial ‖ index ‖ epoch)` inside the worker
//! (`aorta_crypto::keys::transport_key_from_group`). The header is the AEAD's
//! associated data, so a frame whose header was changed to pick another key
//! does not authenticate.
//!
//! This module lives here, not in the CLI, because it is trusted code: it
//! runs inside the boundary, holds key bytes and sees plaintext, and is part
//! of what the worker's measurement covers. It depends on `aorta-crypto`
//! (pure, no I/O), never on the registry: the worker only ever holds what the
//! broker released.
//!
//! Refusal codes (sent to the host with a fixed text, never plaintext or key
//! bytes): see the `FRAME_*` constants; 200 ([`crate::worker::FRAME_NO_KEY`])
//! means no key was released for the frame's device and key index.

use aorta_crypto::frame::{self, FrameError as CryptoFrameError, TransportKey};
use zeroize::{Zeroize, Zeroizing};

use crate::keywrap::Secret32;
use crate::worker::{FrameOpener, FrameRefusal, WorkerFrame};

/// The frame refusal codes this opener sends, one per
/// [`aorta_crypto::frame::FrameError`] kind, from the one registry
/// ([`aorta_crypto::refusal`]).
pub use aorta_crypto::refusal::{
    FRAME_AUTHENTICATION_FAILED, FRAME_BAD_FIELD, FRAME_BAD_MAGIC, FRAME_DECOMPRESSION_BOMB,
    FRAME_KEY_DERIVATION, FRAME_MALFORMED_PAYLOAD, FRAME_OTHER, FRAME_OVERSIZE,
    FRAME_RR_CALIBRATION, FRAME_RR_OUT_OF_RANGE, FRAME_TRAILING_BYTES, FRAME_TRUNCATED,
    FRAME_UNKNOWN_CODEC, FRAME_UNSUPPORTED_VERSION,
};

/// Opens aorta device upload frames with released group keys.
#[derive(Clone, Copy, Debug, Default)]
pub struct UploadFrames;

fn refusal(e: &CryptoFrameError) -> FrameRefusal {
    let code = match e {
        CryptoFrameError::Truncated { .. } => FRAME_TRUNCATED,
        CryptoFrameError::TrailingBytes { .. } => FRAME_TRAILING_BYTES,
        CryptoFrameError::Oversize { .. } => FRAME_OVERSIZE,
        CryptoFrameError::BadMagic => FRAME_BAD_MAGIC,
        CryptoFrameError::UnsupportedVersion { .. } => FRAME_UNSUPPORTED_VERSION,
        CryptoFrameError::UnknownCodec { .. } => FRAME_UNKNOWN_CODEC,
        CryptoFrameError::BadField { .. } => FRAME_BAD_FIELD,
        CryptoFrameError::AuthenticationFailed => FRAME_AUTHENTICATION_FAILED,
        CryptoFrameError::DecompressionBomb { .. } => FRAME_DECOMPRESSION_BOMB,
        CryptoFrameError::MalformedPayload(_) => FRAME_MALFORMED_PAYLOAD,
        CryptoFrameError::RrOutOfRange { .. } => FRAME_RR_OUT_OF_RANGE,
        CryptoFrameError::RrCalibration { .. } => FRAME_RR_CALIBRATION,
        _ => FRAME_OTHER,
    };
    // The frame layer's messages hold only static text and sizes.
    FrameRefusal {
        code,
        reason: e.to_string(),
    }
}

/// The bundle name of the group key that opens frames of `serial` sealed
/// under key index `key_index`: `SERIAL/INDEX` (the broker's naming).
pub fn group_key_name(serial: &str, key_index: u16) -> String {
    format!("{serial}/{key_index}")
}

impl UploadFrames {
    /// The codec byte of `frame`'s header: [`aorta_crypto::codec::CODEC_LPC_ZSTD`]
    /// (ECG samples) or [`aorta_crypto::codec::CODEC_RR`] (RR intervals, µs,
    /// one channel, `sample_rate_hz` = 1e6). The header is the AEAD's
    /// associated data, so once [`FrameOpener::open`] accepted the frame this
    /// value is authenticated: callers dispatch on it after a successful open.
    pub fn codec(&self, frame: &[u8]) -> Result<u8, FrameRefusal> {
        frame::parse(frame)
            .map(|p| p.header.codec)
            .map_err(|e| refusal(&e))
    }
}

impl FrameOpener for UploadFrames {
    fn serial(&self, frame: &[u8]) -> Result<String, FrameRefusal> {
        frame::parse(frame)
            .map(|p| p.header.serial)
            .map_err(|e| refusal(&e))
    }

    fn key_name(&self, frame: &[u8]) -> Result<String, FrameRefusal> {
        let p = frame::parse(frame).map_err(|e| refusal(&e))?;
        Ok(group_key_name(&p.header.serial, p.header.key_index))
    }

    fn open(&self, frame: &[u8], group_key: &Secret32) -> Result<WorkerFrame, FrameRefusal> {
        let parsed = frame::parse(frame).map_err(|e| refusal(&e))?;
        let h = &parsed.header;
        let tk = transport_key(group_key, h)?;
        open_parsed(parsed, &tk)
    }
}

/// The frame's transport key, derived from the group key its header names.
fn transport_key(
    group_key: &Secret32,
    h: &frame::FrameHeader,
) -> Result<TransportKey, FrameRefusal> {
    TransportKey::from_group(group_key.expose(), &h.serial, h.key_index, &h.epoch).map_err(|_| {
        FrameRefusal {
            code: FRAME_KEY_DERIVATION,
            reason: "transport key derivation failed".into(),
        }
    })
}

/// Authenticates, decrypts and decompresses `parsed` under `tk`; the samples
/// channel-interleaved in zeroizing memory.
fn open_parsed(
    parsed: frame::ParsedFrame<'_>,
    tk: &TransportKey,
) -> Result<WorkerFrame, FrameRefusal> {
    let mut opened = parsed.open(tk).map_err(|e| refusal(&e))?;
    // Channel-interleaved into zeroizing memory; the per-channel vectors
    // are wiped at once.
    let n = opened.header.samples_per_channel as usize;
    let mut samples = Zeroizing::new(Vec::with_capacity(n * opened.samples.len()));
    for t in 0..n {
        for ch in &opened.samples {
            samples.push(ch.get(t).copied().unwrap_or_default());
        }
    }
    opened.samples.zeroize();
    Ok(WorkerFrame {
        codec: opened.header.codec,
        serial: std::mem::take(&mut opened.header.serial),
        sequence: opened.header.sequence,
        first_sample_us: opened.header.first_sample_us,
        sample_rate_hz: opened.header.sample_rate_hz(),
        channels: opened.header.channels,
        calibration: opened
            .calibration
            .iter()
            .map(|c| (c.gain, c.baseline))
            .collect(),
        samples,
    })
}

/// Most transport keys [`CachedUploadFrames`] remembers; when full, it
/// forgets them all (zeroized) and starts again.
pub const MAX_CACHED_TRANSPORT_KEYS: usize = 1 << 18;

/// What a transport key is remembered by: `(serial, key index, epoch)`.
type CacheId = (String, u16, [u8; aorta_crypto::keys::EPOCH_LEN]);

/// A remembered derivation: the group key it came from and the transport key.
struct CachedKey {
    group: Zeroizing<[u8; 32]>,
    transport: Zeroizing<[u8; 32]>,
}

/// [`UploadFrames`] that remembers each transport key it derived, per
/// `(serial, key index, epoch)`, so a device's frames within one run (one
/// epoch) cost one HKDF derivation instead of one per frame.
///
/// Only keys that opened an authentic frame are remembered, so forged
/// headers cannot fill the cache; a remembered key is used only when the
/// group key offered for the frame is (constant-time) equal to the one it was
/// derived from. Key bytes live in zeroizing memory and are wiped when the
/// cache is dropped or cleared; the opener lives inside the worker like the
/// group keys themselves. `Debug` shows only the number of keys.
#[derive(Default)]
pub struct CachedUploadFrames {
    keys: std::cell::RefCell<std::collections::HashMap<CacheId, CachedKey>>,
}

impl std::fmt::Debug for CachedUploadFrames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CachedUploadFrames {{ {} key(s) }}",
            self.keys.borrow().len()
        )
    }
}

impl CachedUploadFrames {
    /// An opener with an empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Transport keys remembered.
    pub fn cached(&self) -> usize {
        self.keys.borrow().len()
    }
}

impl FrameOpener for CachedUploadFrames {
    fn serial(&self, frame: &[u8]) -> Result<String, FrameRefusal> {
        UploadFrames.serial(frame)
    }

    fn key_name(&self, frame: &[u8]) -> Result<String, FrameRefusal> {
        UploadFrames.key_name(frame)
    }

    fn open(&self, frame: &[u8], group_key: &Secret32) -> Result<WorkerFrame, FrameRefusal> {
        let parsed = frame::parse(frame).map_err(|e| refusal(&e))?;
        let h = &parsed.header;
        let id = (h.serial.clone(), h.key_index, h.epoch);
        let hit = self.keys.borrow().get(&id).and_then(|c| {
            aorta_crypto::keys::ct_eq(c.group.as_ref(), group_key.expose())
                .then(|| TransportKey::from_bytes(&c.transport).ok())
                .flatten()
        });
        if let Some(tk) = hit {
            return open_parsed(parsed, &tk);
        }
        let raw = aorta_crypto::keys::transport_key_from_group(
            group_key.expose(),
            &h.serial,
            h.key_index,
            &h.epoch,
        )
        .map_err(|_| FrameRefusal {
            code: FRAME_KEY_DERIVATION,
            reason: "transport key derivation failed".into(),
        })?;
        let tk = TransportKey::from_bytes(&raw).map_err(|_| FrameRefusal {
            code: FRAME_KEY_DERIVATION,
            reason: "transport key derivation failed".into(),
        })?;
        let opened = open_parsed(parsed, &tk)?;
        let mut keys = self.keys.borrow_mut();
        if keys.len() >= MAX_CACHED_TRANSPORT_KEYS {
            keys.clear();
        }
        keys.insert(
            id,
            CachedKey {
                group: Zeroizing::new(*group_key.expose()),
                transport: raw,
            },
        );
        Ok(opened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aorta_crypto::frame::{ChannelCalibration, FrameHeader};
    use aorta_crypto::keys::{self, KeySlice};

    fn slice() -> KeySlice {
        KeySlice::new("SN-U", (0..16 * 32).map(|i| (i * 7) as u8).collect()).unwrap()
    }

    fn sealed(index: u16, seq: u64) -> Vec<u8> {
        let epoch = [3u8; 16];
        let k = TransportKey::derive(&slice(), index, &epoch).unwrap();
        let h = FrameHeader::new("SN-U", index, seq, 0, 360_000, 2, 3, epoch).unwrap();
        let cal = vec![ChannelCalibration::new(200.0, 0, 0, 11, "mV", "I"); 2];
        frame::seal(&k, &h, &cal, &[&[1, 2, 3][..], &[-4, -5, -6][..]]).unwrap()
    }

    fn group(index: u16) -> Secret32 {
        Secret32::from_bytes(*keys::transport_group_key(&slice(), index).unwrap())
    }

    #[test]
    fn opens_with_the_group_key_and_interleaves() {
        let f = sealed(4, 9);
        assert_eq!(UploadFrames.key_name(&f).unwrap(), "SN-U/4");
        assert_eq!(UploadFrames.serial(&f).unwrap(), "SN-U");
        let o = UploadFrames.open(&f, &group(4)).unwrap();
        assert_eq!(o.serial, "SN-U");
        assert_eq!(o.sequence, 9);
        assert_eq!(o.samples.as_slice(), &[1, -4, 2, -5, 3, -6]);
    }

    #[test]
    fn rr_frames_open_as_one_channel_of_microseconds() {
        let epoch = [3u8; 16];
        let k = TransportKey::derive(&slice(), 4, &epoch).unwrap();
        let h = FrameHeader::new_rr("SN-U", 4, 10, 1_000_000, 3, epoch).unwrap();
        let f = frame::seal_rr(&k, &h, "strap", &[800_000, 790_000, 1_100_000]).unwrap();
        assert_eq!(
            UploadFrames.codec(&f).unwrap(),
            aorta_crypto::codec::CODEC_RR
        );
        assert_eq!(
            UploadFrames.codec(&sealed(4, 9)).unwrap(),
            aorta_crypto::codec::CODEC_LPC_ZSTD
        );
        let o = UploadFrames.open(&f, &group(4)).unwrap();
        assert_eq!(o.channels, 1);
        assert_eq!(o.sample_rate_hz, 1e6);
        assert_eq!(o.first_sample_us, 1_000_000);
        assert_eq!(o.calibration, vec![(1.0, 0)]);
        assert_eq!(o.samples.as_slice(), &[800_000, 790_000, 1_100_000]);
        let mut t = f;
        t[29] = 2; // channels
        assert_eq!(UploadFrames.codec(&t).unwrap_err().code, FRAME_BAD_FIELD);
    }

    #[test]
    fn refusals_have_distinct_codes() {
        let f = sealed(4, 9);
        // Another index's group key.
        assert_eq!(
            UploadFrames.open(&f, &group(5)).unwrap_err().code,
            FRAME_AUTHENTICATION_FAILED
        );
        // A flipped ciphertext bit.
        let mut t = f.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert_eq!(
            UploadFrames.open(&t, &group(4)).unwrap_err().code,
            FRAME_AUTHENTICATION_FAILED
        );
        // Header changed to name another key index: refused (AAD).
        let mut t = f.clone();
        t[7] ^= 1; // low byte of key_index (offset 6..8)
        assert_eq!(UploadFrames.key_name(&t).unwrap(), "SN-U/5");
        assert_eq!(
            UploadFrames.open(&t, &group(5)).unwrap_err().code,
            FRAME_AUTHENTICATION_FAILED
        );
        assert_eq!(
            UploadFrames.key_name(&f[..20]).unwrap_err().code,
            FRAME_TRUNCATED
        );
        let mut t = f.clone();
        t.push(0);
        assert_eq!(
            UploadFrames.key_name(&t).unwrap_err().code,
            FRAME_TRAILING_BYTES
        );
        let mut t = f.clone();
        t[0] = b'X';
        assert_eq!(UploadFrames.key_name(&t).unwrap_err().code, FRAME_BAD_MAGIC);
        let mut t = f.clone();
        t[4] = 9;
        assert_eq!(
            UploadFrames.key_name(&t).unwrap_err().code,
            FRAME_UNSUPPORTED_VERSION
        );
        let mut t = f;
        t[5] = 9;
        assert_eq!(
            UploadFrames.key_name(&t).unwrap_err().code,
            FRAME_UNKNOWN_CODEC
        );
    }

    #[test]
    fn cached_opener_equals_the_plain_one_and_never_mixes_keys() {
        let c = CachedUploadFrames::new();
        for seq in 0..3 {
            let f = sealed(4, seq);
            let a = UploadFrames.open(&f, &group(4)).unwrap();
            let b = c.open(&f, &group(4)).unwrap();
            assert_eq!(
                (a.serial, a.sequence, a.samples.to_vec()),
                (b.serial, b.sequence, b.samples.to_vec())
            );
        }
        assert_eq!(c.cached(), 1, "one (serial, index, epoch)");
        // A remembered key is not used for another group key: refused.
        assert_eq!(
            c.open(&sealed(4, 7), &group(5)).unwrap_err().code,
            FRAME_AUTHENTICATION_FAILED
        );
        // Forged frames are not remembered.
        let mut t = sealed(2, 1);
        let last = t.len() - 1;
        t[last] ^= 1;
        assert!(c.open(&t, &group(2)).is_err());
        assert_eq!(c.cached(), 1);
        assert_eq!(format!("{c:?}"), "CachedUploadFrames { 1 key(s) }");
    }

    proptest::proptest! {
        #[test]
        fn hostile_bytes_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = UploadFrames.key_name(&b);
            let _ = UploadFrames.open(&b, &group(0));
            let c = CachedUploadFrames::new();
            let _ = c.open(&b, &group(0));
            proptest::prop_assert_eq!(c.cached(), 0);
        }

        #[test]
        fn any_single_bit_flip_is_refused(pos in 0usize..10_000, bit in 0u8..8) {
            let mut f = sealed(2, 1);
            let i = pos % f.len();
            f[i] ^= 1 << bit;
            proptest::prop_assert!(UploadFrames.open(&f, &group(2)).is_err());
        }
    }
}
