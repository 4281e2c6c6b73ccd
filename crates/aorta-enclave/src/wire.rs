//! The worker protocol's framing and messages, version 1 (spec:
//! `docs/worker-protocol.md`). One framing for both channels:
//!
//! * worker ↔ key broker (TCP): `Hello`, `ChallengeRequest` → `Challenge`,
//!   `KeyRequest` or `KeyWindowRequest` → `KeyRelease` | `Refused`;
//! * untrusted host ↔ worker (stdin/stdout or a socket): `Hello`, `Status`,
//!   `SealedFrame` → `FrameDone` | `FrameRefused`, `Shutdown`.
//!
//! A message is `length u32 (big-endian, counts type + payload, 1..=MAX) |
//! type u8 | payload`. Strings are UTF-8 with a `u16` length; byte strings
//! have a `u32` length. Every message must be consumed exactly (no trailing
//! bytes). Each side's first message is `Hello`, whose `magic` and `version`
//! must match.

use std::io::{Read, Write};

use aorta_base::codec::{self, Decode, DecodeError, Encode, Reader};

use crate::evidence::Nonce;

/// Magic in `Hello`.
pub const PROTOCOL_MAGIC: [u8; 8] = *b"AORTA-WP";
/// Protocol version.
pub const PROTOCOL_VERSION: u16 = 1;
/// Largest message (type + payload) accepted: 16 MiB.
pub const MAX_MESSAGE_LEN: usize = 16 * 1024 * 1024;
/// Most identifiers in a `KeyRequest` list.
pub const MAX_IDS: usize = 65_535;

/// The devices of a [`Message::KeyWindowRequest`]. Encoded as `0x00 |
/// after (u16 str) | max u16` or `0x01 | n u16 | n × (serial (u16 str) |
/// from u16)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSelection {
    /// A page of the assignment's devices: those whose serial sorts after
    /// `after` (bytewise; `""` from the first), at most `max` of them
    /// (1..=65535), each from key index 0. A page with fewer than `max`
    /// devices is the last.
    Page {
        /// The last serial of the previous page (`""`: none).
        after: String,
        /// Most devices in this page.
        max: u16,
    },
    /// These devices (each in the assignment), each from its own key index.
    Listed(Vec<(String, u16)>),
}

/// Who speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// The untrusted host process.
    Host = 1,
    /// The worker (inside the TEE).
    Worker = 2,
    /// The key broker.
    Broker = 3,
}

impl Role {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Role::Host),
            2 => Some(Role::Worker),
            3 => Some(Role::Broker),
            _ => None,
        }
    }
}

/// One protocol message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// `0x01`: `magic [8] | version u16 | role u8`.
    Hello {
        /// Protocol version.
        version: u16,
        /// Sender's role.
        role: Role,
    },
    /// `0x10` worker → broker: empty.
    ChallengeRequest,
    /// `0x11` broker → worker: `nonce [32] | issued_at u64`.
    Challenge {
        /// The single-use nonce.
        nonce: Nonce,
        /// Broker time at issuance (unix s).
        issued_at: u64,
    },
    /// `0x12` worker → broker: `evidence (u32 len) | assignment (u16 str) |
    /// devices (u16 count × u16 str) | subscribers (u16 count × u16 str)`.
    KeyRequest {
        /// Encoded [`crate::Evidence`].
        evidence: Vec<u8>,
        /// Assignment name.
        assignment: String,
        /// Device serials whose transport keys are requested.
        devices: Vec<String>,
        /// Subscribers whose result keys are requested.
        subscribers: Vec<String>,
    },
    /// `0x15` worker → broker: `evidence (u32 len) | assignment (u16 str) |
    /// width u16 | devices | subscribers (u16 count × u16 str)`: like
    /// `KeyRequest`, but each device's group keys are released only for a
    /// window of `width` key indices (`docs/worker-protocol.md`, "Key
    /// windows"), and the devices are a [`DeviceSelection`].
    KeyWindowRequest {
        /// Encoded [`crate::Evidence`].
        evidence: Vec<u8>,
        /// Assignment name.
        assignment: String,
        /// Key indices released per device, from its first (1..=65535; a
        /// width at least the slice's length releases the whole slice).
        width: u16,
        /// Which devices, and from which key index.
        devices: DeviceSelection,
        /// Subscribers whose result keys are requested (empty: all).
        subscribers: Vec<String>,
    },
    /// `0x13` broker → worker: `sealed (u32 len)` — an HPKE-sealed key bundle.
    KeyRelease {
        /// See [`crate::keywrap`].
        sealed: Vec<u8>,
    },
    /// `0x14` broker → worker: `code u16 | reason (u16 str)`.
    Refused {
        /// Stable refusal code.
        code: u16,
        /// Human-readable reason.
        reason: String,
    },
    /// `0x20` worker → host: `backend u8 | hardware u8 | measurement (u32 len) |
    /// transport_keys u16 | result_keys u16`. Counts only, never key bytes.
    Status {
        /// Backend code.
        backend: u8,
        /// Whether TEE hardware protects the worker.
        hardware_protected: bool,
        /// The attested measurement.
        measurement: Vec<u8>,
        /// Number of transport keys held.
        transport_keys: u16,
        /// Number of result keys held.
        result_keys: u16,
    },
    /// `0x21` host → worker: `frame (u32 len)` — a sealed upload frame.
    SealedFrame {
        /// The sealed frame bytes.
        frame: Vec<u8>,
    },
    /// `0x22` worker → host: `serial (u16 str) | sequence u64 | samples u64`.
    FrameDone {
        /// Device serial.
        serial: String,
        /// Frame sequence number.
        sequence: u64,
        /// Number of samples analysed.
        samples: u64,
    },
    /// `0x23` worker → host: `code u16 | reason (u16 str)`.
    FrameRefused {
        /// Stable code.
        code: u16,
        /// Reason (never contains plaintext).
        reason: String,
    },
    /// `0x2f` host → worker: empty; the worker zeroizes and exits.
    Shutdown,
}

/// Framing and decoding errors (malformed input or I/O).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Transport failure.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The stream ended inside a message.
    #[error("stream ended inside a message")]
    Truncated,
    /// A message length of 0 or over the limit.
    #[error("message length {len} outside 1..={max}")]
    BadLength {
        /// Declared length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Unknown message type.
    #[error("unknown message type 0x{ty:02x}")]
    UnknownType {
        /// The type byte.
        ty: u8,
    },
    /// A message body does not parse.
    #[error("malformed message 0x{ty:02x}: {detail}")]
    Malformed {
        /// The type byte.
        ty: u8,
        /// What is wrong.
        detail: &'static str,
    },
    /// `Hello` with wrong magic.
    #[error("peer does not speak the aorta worker protocol (bad magic)")]
    BadMagic,
    /// `Hello` with another version.
    #[error(
        "peer speaks worker protocol version {version}, this build speaks {PROTOCOL_VERSION}; run matching aorta versions"
    )]
    UnknownVersion {
        /// Peer's version.
        version: u16,
    },
    /// A field too large to encode (refused before sending; nothing is cut).
    #[error("{field} is {len} long, more than the protocol allows ({max})")]
    TooLarge {
        /// Field name.
        field: &'static str,
        /// Its length (bytes or items).
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A valid message that is not allowed at this point.
    #[error("unexpected message {got} (expected {expected})")]
    Unexpected {
        /// What arrived.
        got: &'static str,
        /// What was expected.
        expected: &'static str,
    },
}

impl Message {
    /// The message type byte.
    pub fn type_byte(&self) -> u8 {
        match self {
            Message::Hello { .. } => 0x01,
            Message::ChallengeRequest => 0x10,
            Message::Challenge { .. } => 0x11,
            Message::KeyRequest { .. } => 0x12,
            Message::KeyRelease { .. } => 0x13,
            Message::KeyWindowRequest { .. } => 0x15,
            Message::Refused { .. } => 0x14,
            Message::Status { .. } => 0x20,
            Message::SealedFrame { .. } => 0x21,
            Message::FrameDone { .. } => 0x22,
            Message::FrameRefused { .. } => 0x23,
            Message::Shutdown => 0x2f,
        }
    }

    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "Hello",
            Message::ChallengeRequest => "ChallengeRequest",
            Message::Challenge { .. } => "Challenge",
            Message::KeyRequest { .. } => "KeyRequest",
            Message::KeyWindowRequest { .. } => "KeyWindowRequest",
            Message::KeyRelease { .. } => "KeyRelease",
            Message::Refused { .. } => "Refused",
            Message::Status { .. } => "Status",
            Message::SealedFrame { .. } => "SealedFrame",
            Message::FrameDone { .. } => "FrameDone",
            Message::FrameRefused { .. } => "FrameRefused",
            Message::Shutdown => "Shutdown",
        }
    }

    /// Encodes the message including its length prefix. Fields over the
    /// protocol's limits are refused with [`WireError::TooLarge`], never cut.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        fn s16(p: &mut Vec<u8>, field: &'static str, s: &str) -> Result<(), WireError> {
            let n = u16::try_from(s.len()).map_err(|_| WireError::TooLarge {
                field,
                len: s.len(),
                max: usize::from(u16::MAX),
            })?;
            p.extend_from_slice(&n.to_be_bytes());
            p.extend_from_slice(s.as_bytes());
            Ok(())
        }
        fn b32(p: &mut Vec<u8>, field: &'static str, b: &[u8]) -> Result<(), WireError> {
            if b.len() > MAX_MESSAGE_LEN {
                return Err(WireError::TooLarge {
                    field,
                    len: b.len(),
                    max: MAX_MESSAGE_LEN,
                });
            }
            codec::put_bytes_u32(p, field, b).map_err(|e| WireError::TooLarge {
                field,
                len: e.len,
                max: MAX_MESSAGE_LEN,
            })
        }
        let mut p = vec![0, 0, 0, 0, self.type_byte()];
        match self {
            Message::Hello { version, role } => {
                p.extend_from_slice(&PROTOCOL_MAGIC);
                p.extend_from_slice(&version.to_be_bytes());
                p.push(*role as u8);
            }
            Message::ChallengeRequest | Message::Shutdown => {}
            Message::Challenge { nonce, issued_at } => {
                p.extend_from_slice(&nonce.0);
                p.extend_from_slice(&issued_at.to_be_bytes());
            }
            Message::KeyRequest {
                evidence,
                assignment,
                devices,
                subscribers,
            } => {
                b32(&mut p, "evidence", evidence)?;
                s16(&mut p, "assignment", assignment)?;
                for (field, list) in [("devices", devices), ("subscribers", subscribers)] {
                    let n = u16::try_from(list.len()).map_err(|_| WireError::TooLarge {
                        field,
                        len: list.len(),
                        max: MAX_IDS,
                    })?;
                    p.extend_from_slice(&n.to_be_bytes());
                    for s in list {
                        s16(&mut p, field, s)?;
                    }
                }
            }
            Message::KeyWindowRequest {
                evidence,
                assignment,
                width,
                devices,
                subscribers,
            } => {
                b32(&mut p, "evidence", evidence)?;
                s16(&mut p, "assignment", assignment)?;
                p.extend_from_slice(&width.to_be_bytes());
                match devices {
                    DeviceSelection::Page { after, max } => {
                        p.push(0);
                        s16(&mut p, "after", after)?;
                        p.extend_from_slice(&max.to_be_bytes());
                    }
                    DeviceSelection::Listed(list) => {
                        p.push(1);
                        let n = u16::try_from(list.len()).map_err(|_| WireError::TooLarge {
                            field: "devices",
                            len: list.len(),
                            max: MAX_IDS,
                        })?;
                        p.extend_from_slice(&n.to_be_bytes());
                        for (serial, from) in list {
                            s16(&mut p, "devices", serial)?;
                            p.extend_from_slice(&from.to_be_bytes());
                        }
                    }
                }
                let n = u16::try_from(subscribers.len()).map_err(|_| WireError::TooLarge {
                    field: "subscribers",
                    len: subscribers.len(),
                    max: MAX_IDS,
                })?;
                p.extend_from_slice(&n.to_be_bytes());
                for s in subscribers {
                    s16(&mut p, "subscribers", s)?;
                }
            }
            Message::KeyRelease { sealed } => b32(&mut p, "sealed", sealed)?,
            Message::Refused { code, reason } | Message::FrameRefused { code, reason } => {
                p.extend_from_slice(&code.to_be_bytes());
                s16(&mut p, "reason", reason)?;
            }
            Message::Status {
                backend,
                hardware_protected,
                measurement,
                transport_keys,
                result_keys,
            } => {
                p.push(*backend);
                p.push(u8::from(*hardware_protected));
                b32(&mut p, "measurement", measurement)?;
                p.extend_from_slice(&transport_keys.to_be_bytes());
                p.extend_from_slice(&result_keys.to_be_bytes());
            }
            Message::SealedFrame { frame } => b32(&mut p, "frame", frame)?,
            Message::FrameDone {
                serial,
                sequence,
                samples,
            } => {
                s16(&mut p, "serial", serial)?;
                p.extend_from_slice(&sequence.to_be_bytes());
                p.extend_from_slice(&samples.to_be_bytes());
            }
        }
        let body = p.len() - 4;
        if body > MAX_MESSAGE_LEN {
            return Err(WireError::TooLarge {
                field: "message",
                len: body,
                max: MAX_MESSAGE_LEN,
            });
        }
        let len = (body as u32).to_be_bytes();
        if let Some(h) = p.get_mut(..4) {
            h.copy_from_slice(&len);
        }
        Ok(p)
    }

    /// Decodes one message body (`type u8 | payload`, without the length).
    pub fn decode_body(body: &[u8]) -> Result<Self, WireError> {
        let (&ty, payload) = body.split_first().ok_or(WireError::BadLength {
            len: 0,
            max: MAX_MESSAGE_LEN,
        })?;
        let mut r = Reader::new(payload);
        let m = |detail| WireError::Malformed { ty, detail };
        let t = |_: DecodeError| m("truncated");
        let str16 = |r: &mut Reader<'_>| {
            let b = r.bytes_u16("string").map_err(|_| m("truncated string"))?;
            String::from_utf8(b.to_vec()).map_err(|_| m("string is not UTF-8"))
        };
        let blob = |r: &mut Reader<'_>| match r.bytes_u32("byte string", MAX_MESSAGE_LEN) {
            Ok(b) => Ok(b.to_vec()),
            Err(DecodeError::Invalid { .. }) => Err(m("byte string too long")),
            Err(_) => Err(m("truncated byte string")),
        };
        let msg = match ty {
            0x01 => {
                let magic: [u8; 8] = r.array("magic").map_err(t)?;
                if magic != PROTOCOL_MAGIC {
                    return Err(WireError::BadMagic);
                }
                let version = r.u16("version").map_err(t)?;
                if version != PROTOCOL_VERSION {
                    return Err(WireError::UnknownVersion { version });
                }
                let role = r
                    .u8("role")
                    .ok()
                    .and_then(Role::from_u8)
                    .ok_or_else(|| m("bad role"))?;
                Message::Hello { version, role }
            }
            0x10 => Message::ChallengeRequest,
            0x11 => Message::Challenge {
                nonce: Nonce(r.array("nonce").map_err(t)?),
                issued_at: r.u64("issued_at").map_err(t)?,
            },
            0x12 => {
                let evidence = blob(&mut r)?;
                let assignment = str16(&mut r)?;
                let mut lists = [Vec::new(), Vec::new()];
                for list in &mut lists {
                    let n = r.u16("count").map_err(t)?;
                    for _ in 0..n {
                        list.push(str16(&mut r)?);
                    }
                }
                let [devices, subscribers] = lists;
                Message::KeyRequest {
                    evidence,
                    assignment,
                    devices,
                    subscribers,
                }
            }
            0x13 => Message::KeyRelease {
                sealed: blob(&mut r)?,
            },
            0x15 => {
                let evidence = blob(&mut r)?;
                let assignment = str16(&mut r)?;
                let width = r.u16("width").map_err(t)?;
                let devices = match r.u8("selection").map_err(t)? {
                    0 => DeviceSelection::Page {
                        after: str16(&mut r)?,
                        max: r.u16("max").map_err(t)?,
                    },
                    1 => {
                        let n = r.u16("count").map_err(t)?;
                        let mut list = Vec::new();
                        for _ in 0..n {
                            let serial = str16(&mut r)?;
                            list.push((serial, r.u16("from").map_err(t)?));
                        }
                        DeviceSelection::Listed(list)
                    }
                    _ => return Err(m("bad device selection")),
                };
                let n = r.u16("count").map_err(t)?;
                let mut subscribers = Vec::new();
                for _ in 0..n {
                    subscribers.push(str16(&mut r)?);
                }
                Message::KeyWindowRequest {
                    evidence,
                    assignment,
                    width,
                    devices,
                    subscribers,
                }
            }
            0x14 | 0x23 => {
                let code = r.u16("code").map_err(t)?;
                let reason = str16(&mut r)?;
                if ty == 0x14 {
                    Message::Refused { code, reason }
                } else {
                    Message::FrameRefused { code, reason }
                }
            }
            0x20 => {
                let backend = r.u8("backend").map_err(t)?;
                let hardware_protected = match r.u8("hardware_protected") {
                    Ok(0) => false,
                    Ok(1) => true,
                    _ => return Err(m("bad hardware flag")),
                };
                let measurement = blob(&mut r)?;
                Message::Status {
                    backend,
                    hardware_protected,
                    measurement,
                    transport_keys: r.u16("transport_keys").map_err(t)?,
                    result_keys: r.u16("result_keys").map_err(t)?,
                }
            }
            0x21 => Message::SealedFrame {
                frame: blob(&mut r)?,
            },
            0x22 => Message::FrameDone {
                serial: str16(&mut r)?,
                sequence: r.u64("sequence").map_err(t)?,
                samples: r.u64("samples").map_err(t)?,
            },
            0x2f => Message::Shutdown,
            _ => return Err(WireError::UnknownType { ty }),
        };
        if r.remaining() != 0 {
            return Err(m("trailing bytes"));
        }
        Ok(msg)
    }
}

/// The framed message (`length u32 | type u8 | payload`). A message over
/// the protocol's limits encodes as nothing: [`Message::encode`] refuses it
/// with a typed error, and every decoded message fits.
impl Encode for Message {
    fn encode(&self, out: &mut Vec<u8>) {
        if let Ok(b) = Message::encode(self) {
            out.extend_from_slice(&b);
        }
    }
}

/// One framed message; its [`WireError`] becomes [`DecodeError::Invalid`]
/// (use [`Message::decode_body`] or [`read_message`] for the typed error).
impl<'a> Decode<'a> for Message {
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let at = r.position();
        let len = usize::try_from(r.u32("length")?).unwrap_or(usize::MAX);
        if len == 0 || len > MAX_MESSAGE_LEN {
            return Err(r.invalid("length", 4, "outside 1..=MAX_MESSAGE_LEN"));
        }
        let body = r.take(len, "message")?;
        Message::decode_body(body).map_err(|e| DecodeError::Invalid {
            field: "message",
            offset: at,
            reason: match e {
                WireError::Malformed { detail, .. } => detail,
                WireError::BadMagic => "bad magic",
                WireError::UnknownVersion { .. } => "unknown version",
                WireError::UnknownType { .. } => "unknown message type",
                _ => "invalid",
            },
        })
    }
}

/// Reads one message; `Ok(None)` on a clean end of stream between messages.
pub fn read_message<R: Read>(r: &mut R) -> Result<Option<Message>, WireError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let buf = len.get_mut(got..).ok_or(WireError::Truncated)?;
        match r.read(buf) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(WireError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_MESSAGE_LEN {
        return Err(WireError::BadLength {
            len,
            max: MAX_MESSAGE_LEN,
        });
    }
    // Memory grows with the bytes that actually arrive, not with the
    // announced length: a peer announcing 16 MiB and sending nothing costs
    // 64 KiB, not 16 MiB.
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    let got = Read::take(&mut *r, len as u64).read_to_end(&mut body)?;
    if got < len {
        return Err(WireError::Truncated);
    }
    Message::decode_body(&body).map(Some)
}

/// Writes one message and flushes.
pub fn write_message<W: Write>(w: &mut W, msg: &Message) -> Result<(), WireError> {
    w.write_all(&msg.encode()?)?;
    w.flush()?;
    Ok(())
}

/// Reads the next message, treating end of stream as [`WireError::Truncated`].
pub fn expect_message<R: Read>(r: &mut R) -> Result<Message, WireError> {
    read_message(r)?.ok_or(WireError::Truncated)
}

/// Sends our `Hello` and checks the peer's.
pub fn handshake<S: Read + Write>(s: &mut S, me: Role) -> Result<Role, WireError> {
    write_message(
        s,
        &Message::Hello {
            version: PROTOCOL_VERSION,
            role: me,
        },
    )?;
    match expect_message(s)? {
        Message::Hello { role, .. } => Ok(role),
        other => Err(WireError::Unexpected {
            got: other.name(),
            expected: "Hello",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn samples() -> Vec<Message> {
        vec![
            Message::Hello {
                version: PROTOCOL_VERSION,
                role: Role::Worker,
            },
            Message::ChallengeRequest,
            Message::Challenge {
                nonce: Nonce([7; 32]),
                issued_at: 1_700_000_000,
            },
            Message::KeyRequest {
                evidence: vec![1, 2, 3],
                assignment: "ward-a".into(),
                devices: vec!["ECG-1".into(), "ECG-2".into()],
                subscribers: vec!["dr-a".into()],
            },
            Message::KeyRelease {
                sealed: vec![9; 80],
            },
            Message::KeyWindowRequest {
                evidence: vec![1, 2, 3],
                assignment: "ward-a".into(),
                width: 4,
                devices: DeviceSelection::Page {
                    after: "ECG-1".into(),
                    max: 500,
                },
                subscribers: vec![],
            },
            Message::KeyWindowRequest {
                evidence: vec![1, 2, 3],
                assignment: "ward-a".into(),
                width: 2,
                devices: DeviceSelection::Listed(vec![("ECG-1".into(), 119), ("ECG-2".into(), 7)]),
                subscribers: vec!["dr-a".into()],
            },
            Message::Refused {
                code: aorta_crypto::refusal::ATTEST_MEASUREMENT_NOT_ALLOWED,
                reason: "no".into(),
            },
            Message::Status {
                backend: 1,
                hardware_protected: false,
                measurement: vec![5; 32],
                transport_keys: 2,
                result_keys: 1,
            },
            Message::SealedFrame { frame: vec![4; 10] },
            Message::FrameDone {
                serial: "ECG-1".into(),
                sequence: 3,
                samples: 720,
            },
            Message::FrameRefused {
                code: aorta_crypto::refusal::FRAME_TRUNCATED,
                reason: "bad tag".into(),
            },
            Message::Shutdown,
        ]
    }

    #[test]
    fn every_message_round_trips_and_truncation_is_typed() {
        for m in samples() {
            let enc = m.encode().unwrap();
            let mut c = std::io::Cursor::new(&enc);
            assert_eq!(read_message(&mut c).unwrap().unwrap(), m);
            assert!(read_message(&mut c).unwrap().is_none());
            for n in 1..enc.len() {
                let mut c = std::io::Cursor::new(&enc[..n]);
                assert!(read_message(&mut c).is_err(), "{} prefix {n}", m.name());
            }
            // A trailing byte inside the frame is refused.
            let mut body = enc[4..].to_vec();
            body.push(0);
            assert!(Message::decode_body(&body).is_err(), "{}", m.name());
        }
    }

    #[test]
    fn hostile_lengths_and_versions() {
        let mut c = std::io::Cursor::new(u32::MAX.to_be_bytes().to_vec());
        assert!(matches!(
            read_message(&mut c),
            Err(WireError::BadLength { .. })
        ));
        let mut c = std::io::Cursor::new(vec![0, 0, 0, 0]);
        assert!(matches!(
            read_message(&mut c),
            Err(WireError::BadLength { len: 0, .. })
        ));
        let mut enc = Message::Hello {
            version: 1,
            role: Role::Host,
        }
        .encode()
        .unwrap();
        enc[14] = 2;
        assert!(matches!(
            Message::decode_body(&enc[4..]),
            Err(WireError::UnknownVersion { version: 2 })
        ));
        enc[5] = b'X';
        assert!(matches!(
            Message::decode_body(&enc[4..]),
            Err(WireError::BadMagic)
        ));
        assert!(matches!(
            Message::decode_body(&[0x99]),
            Err(WireError::UnknownType { ty: 0x99 })
        ));
    }

    #[test]
    fn oversized_fields_are_refused_not_cut() {
        let long = "x".repeat(70_000);
        let m = Message::Refused {
            code: 1,
            reason: long.clone(),
        };
        assert!(matches!(
            m.encode(),
            Err(WireError::TooLarge {
                field: "reason",
                ..
            })
        ));
        let m = Message::KeyRequest {
            evidence: vec![],
            assignment: "a".into(),
            devices: vec![String::new(); 70_000],
            subscribers: vec![],
        };
        assert!(matches!(
            m.encode(),
            Err(WireError::TooLarge {
                field: "devices",
                ..
            })
        ));
        let m = Message::SealedFrame {
            frame: vec![0; MAX_MESSAGE_LEN],
        };
        assert!(matches!(
            m.encode(),
            Err(WireError::TooLarge {
                field: "message",
                ..
            })
        ));
        let mut sink = Vec::new();
        assert!(write_message(&mut sink, &m).is_err());
        assert!(sink.is_empty());
    }

    proptest! {
        #[test]
        fn hostile_bodies_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Message::decode_body(&b);
            let _ = read_message(&mut std::io::Cursor::new(&b));
        }
    }
}
