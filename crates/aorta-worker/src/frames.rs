//! Opening sealed device frames inside the attested worker.

use aorta_crypto::refusal;
use aorta_enclave::upload::CachedUploadFrames;
use aorta_enclave::wire::{self, Message};
use aorta_enclave::worker::WorkerFrame;

use crate::WorkerError;
use crate::client::Ready;
use aorta_enclave::upload::group_key_name;
use aorta_stream::StreamError;
use aorta_stream::ecg::EcgEvent;
use aorta_stream::job::{FrameOpen, Opened, Position, Refused, ecg_chunk, rr_event};

/// Fetches key windows: `(serial, first key index)` → the releases holding
/// them ([`crate::attest::fetch_windows`] with the worker's options).
pub type WindowFetch = dyn FnMut(&[(String, u16)]) -> Result<Vec<Ready>, WorkerError> + Send;

/// The worker's key windows: their width and how to fetch moved ones.
struct Windows {
    width: u16,
    /// Devices released as windows (not whole slices).
    devices: std::collections::HashSet<String>,
    fetch: Box<WindowFetch>,
    refreshes: u64,
}

/// Opens aorta upload frames inside the attested worker with the released
/// group keys. Each frame crosses the host↔worker boundary as a protocol
/// message (`SealedFrame`, answered by `FrameDone`/`FrameRefused`), exactly
/// the bytes a separate host process would exchange with the worker.
///
/// Inside the worker, each device's transport key is derived once per
/// `(serial, key index, epoch)` and remembered in zeroizing memory
/// ([`CachedUploadFrames`]).
///
/// With key windows ([`SecureFrames::with_key_windows`]) the worker holds a
/// few key indices per device; before a batch is opened
/// ([`FrameOpen::prepare`]) it fetches, in one attestation, the windows of
/// every device whose frames carry an index it does not hold, and a failed
/// fetch fails the batch, which the worker loop retries: no frame is
/// refused for a key the broker would release.
pub struct SecureFrames {
    ready: Ready,
    opener: CachedUploadFrames,
    /// Serial → key-slice length (the group keys released for it, or for a
    /// windowed device the length its release states).
    slices: std::collections::HashMap<String, u16>,
    windows: Option<Windows>,
}

impl SecureFrames {
    /// A frame opener over an attested worker holding its keys.
    pub fn new(ready: Ready) -> Self {
        let mut slices = std::collections::HashMap::new();
        for (name, _) in &ready.keys().transport_keys {
            if let Some((serial, i)) = name.split_once('/')
                && i.parse::<u16>().is_ok()
            {
                *slices.entry(serial.to_owned()).or_insert(0u16) += 1;
            }
        }
        for (serial, n) in &ready.keys().slices {
            slices.insert(serial.clone(), *n);
        }
        SecureFrames {
            ready,
            opener: CachedUploadFrames::new(),
            slices,
            windows: None,
        }
    }

    /// Key windows of `width` indices: a frame whose device is released as
    /// a window, with an index inside its slice that is not held, makes
    /// [`FrameOpen::prepare`] fetch that device's window again with
    /// `fetch`, from the frame's index, or from the one before it (for
    /// frames that arrive late) when `width` is at least 3.
    pub fn with_key_windows(mut self, width: u16, fetch: Box<WindowFetch>) -> Self {
        let devices = self
            .ready
            .keys()
            .slices
            .iter()
            .map(|(d, _)| d.clone())
            .collect();
        self.windows = Some(Windows {
            devices,
            width: width.max(1),
            fetch,
            refreshes: 0,
        });
        self
    }

    /// How many window fetches [`FrameOpen::prepare`] made.
    pub fn window_refreshes(&self) -> u64 {
        self.windows.as_ref().map_or(0, |w| w.refreshes)
    }

    /// The attested worker and its keys.
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// The position of a frame the worker authenticated (its header is the
    /// AEAD's associated data).
    fn position(&self, frame: &[u8], serial: &str, sequence: u64) -> Option<Position> {
        let h = aorta_crypto::frame::parse(frame).ok()?.header;
        (h.serial == serial && h.sequence == sequence).then(|| Position {
            sequence,
            key_index: h.key_index,
            slice_len: self.slices.get(serial).copied().unwrap_or(u16::MAX),
        })
    }
}

/// The engine event of an opened frame: its intervals for an RR frame (the
/// codec is part of the authenticated header), else its channels.
fn event(f: &WorkerFrame) -> Result<EcgEvent, Refused> {
    if f.codec == aorta_crypto::codec::CODEC_RR {
        rr_event(f.channels, &f.samples)
    } else {
        ecg_chunk(f.sample_rate_hz, f.channels, &f.calibration, &f.samples).map(EcgEvent::Samples)
    }
}

impl FrameOpen for SecureFrames {
    fn prepare(&mut self, frames: &[&[u8]]) -> Result<(), StreamError> {
        let Some(w) = self.windows.as_mut() else {
            return Ok(());
        };
        // The cleartext headers say which device and key index each frame
        // needs; only devices released as windows, and indices inside their
        // slice, are fetched (anything else is refused when opened).
        let mut wants: std::collections::BTreeMap<String, u16> = Default::default();
        for f in frames {
            let Ok(p) = aorta_crypto::frame::parse_prefix(f) else {
                continue;
            };
            let Some(h) = p.map(|p| p.header) else {
                continue;
            };
            let Some(&n) = self.slices.get(&h.serial) else {
                continue;
            };
            if !w.devices.contains(&h.serial)
                || h.key_index >= n
                || self.ready.holds(&group_key_name(&h.serial, h.key_index))
                || wants.contains_key(&h.serial)
            {
                continue;
            }
            // Devices rotate forward: the window starts at the frame's
            // index, or one before it (for frames a device stored offline
            // and uploads late) once it is at least 3 wide.
            let from = if w.width >= 3 {
                ((u32::from(h.key_index) + u32::from(n) - 1) % u32::from(n)) as u16
            } else {
                h.key_index
            };
            wants.insert(h.serial, from);
        }
        if wants.is_empty() {
            return Ok(());
        }
        let list: Vec<(String, u16)> = wants.into_iter().collect();
        tracing::info!(target: "aorta::worker", devices = list.len(), width = w.width, "key windows moved; fetching them from the broker");
        let releases = (w.fetch)(&list)?;
        w.refreshes += 1;
        for r in releases {
            for (serial, n) in &r.keys().slices {
                self.slices.insert(serial.clone(), *n);
                w.devices.insert(serial.clone());
            }
            self.ready
                .take_device_keys(r)
                .map_err(|e| StreamError::from(WorkerError::Peer(e.to_string())))?;
        }
        Ok(())
    }

    fn open(&mut self, frame: &[u8]) -> Result<Opened, Refused> {
        // Host side: the frame is handed over as a protocol message.
        let crossing = Message::SealedFrame {
            frame: frame.to_vec(),
        };
        let mut bytes = Vec::with_capacity(frame.len() + 16);
        wire::write_message(&mut bytes, &crossing).map_err(|e| Refused {
            code: refusal::FRAME_BOUNDARY,
            reason: format!("boundary: {e}"),
        })?;
        // Worker side: decode, open, analyse.
        let inside = wire::read_message(&mut bytes.as_slice())
            .ok()
            .flatten()
            .ok_or_else(|| Refused {
                code: refusal::FRAME_BOUNDARY,
                reason: "boundary: message did not decode".into(),
            })?;
        let Message::SealedFrame { frame } = inside else {
            return Err(Refused {
                code: refusal::FRAME_BOUNDARY,
                reason: "boundary: unexpected message".into(),
            });
        };
        let mut got = None;
        let reply = self
            .ready
            .process_frame(&self.opener, &frame, &mut |f: &WorkerFrame| {
                got = Some((f.serial.clone(), f.sequence, f.first_sample_us, event(f)));
            });
        match (reply, got) {
            (Message::FrameDone { .. }, Some((serial, sequence, t, ev))) => {
                // Every sealed frame has a position: without one the
                // worker could not keep the device's order, so refuse.
                let position = self
                    .position(&frame, &serial, sequence)
                    .ok_or_else(|| Refused {
                        code: refusal::FRAME_OTHER,
                        reason: "opened frame has no readable position".into(),
                    })?;
                Ok(Opened {
                    position: Some(position),
                    serial,
                    t,
                    event: ev?,
                })
            }
            (Message::FrameRefused { code, reason }, _) => Err(Refused { code, reason }),
            _ => Err(Refused {
                code: refusal::FRAME_OTHER,
                reason: "worker gave no result for the frame".into(),
            }),
        }
    }
}
