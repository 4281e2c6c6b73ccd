//! Opening sealed device frames inside the attested worker.

use aorta_crypto::refusal;
use aorta_enclave::upload::CachedUploadFrames;
use aorta_enclave::wire::{self, Message};
use aorta_enclave::worker::WorkerFrame;

use crate::client::Ready;
use aorta_stream::ecg::EcgEvent;
use aorta_stream::job::{FrameOpen, Opened, Position, Refused, ecg_chunk, rr_event};

/// Opens aorta upload frames inside the attested worker with the released
/// group keys. Each frame crosses the host↔worker boundary as a protocol
/// message (`SealedFrame`, answered by `FrameDone`/`FrameRefused`), exactly
/// the bytes a separate host process would exchange with the worker.
///
/// Inside the worker, each device's transport key is derived once per
/// `(serial, key index, epoch)` and remembered in zeroizing memory
/// ([`CachedUploadFrames`]).
pub struct SecureFrames {
    ready: Ready,
    opener: CachedUploadFrames,
    /// Serial → key-slice length (the group keys released for it).
    slices: std::collections::HashMap<String, u16>,
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
        SecureFrames {
            ready,
            opener: CachedUploadFrames::new(),
            slices,
        }
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
