//! Authenticated renegotiation of `max_key_uses` (paper 003, "key
//! synchronization"): the paper's Diffie-Hellman exchange, made
//! authenticated with a pre-shared key derived from the device's factory
//! keys ([`crate::keys::renegotiation_psk`]), with X25519 instead of
//! finite-field DH.
//!
//! ```text
//! every message    "AORN" ‖ version (1) ‖ type ‖ body
//! server → device  Offer   = serial, counter, eS, HMAC(psk, "offer" ‖ header ‖ serial ‖ counter ‖ eS)
//! device → server  Reply   = status, eD, HMAC(psk, "reply" ‖ th)
//!                            status = max_key_uses ‖ applied_counter ‖ base_seq (the device's schedule)
//!                            th = SHA-256(Offer ‖ Reply without its MAC)
//!                  K       = HKDF(salt = psk, ikm = X25519(e, e'), info = "aorta/v1/reneg/k" ‖ th)
//! server → device  Value   = AES-256-GCM(K, nonce 0, aad th ‖ header, max_key_uses ‖ counter)
//! device → server  Confirm = AES-256-GCM(K, nonce 1, aad th ‖ header, base_seq ‖ counter)
//! ```
//!
//! The version byte is covered by every MAC and AEAD tag; a message with a
//! version other than [`VERSION`] MUST be refused ([`RenegError::UnknownVersion`]).
//! The Reply's status is the device's authenticated report of the schedule
//! it runs: it is how the server resolves a renegotiation left pending by a
//! crash (`docs/device-keys.md`, "Renegotiation").
//!
//! A man in the middle without the PSK can neither read nor change the new
//! value (it is encrypted and authenticated under `K`, which needs both the
//! PSK and an ephemeral secret); a replayed Offer is refused by its counter
//! (the device keeps the last accepted one); a Value or Confirm from another
//! session fails authentication because `th` differs; messages out of order
//! cannot be fed to the state machine (each state is a type, each transition
//! consumes it).

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::agreement::{self, EphemeralPrivateKey, UnparsedPublicKey, X25519};
use ring::digest;
use ring::hkdf;
use ring::hmac;
use ring::rand::SecureRandom;
use zeroize::Zeroizing;

use crate::keys::{self, KeyError};

/// Why a renegotiation message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenegError {
    /// The message does not parse.
    #[error("malformed renegotiation message: {0}")]
    Malformed(&'static str),
    /// The MAC does not verify (tampered, or a peer without the PSK).
    #[error("renegotiation message failed authentication")]
    BadMac,
    /// The offer's counter is not above the last accepted one (replay).
    #[error("replayed renegotiation offer: counter {counter}, last accepted {last}")]
    Replayed {
        /// Counter in the offer.
        counter: u64,
        /// Last accepted counter.
        last: u64,
    },
    /// The offer is for another device.
    #[error("offer is for device {0}")]
    WrongSerial(String),
    /// The new value is out of range.
    #[error("max_key_uses {0} out of range")]
    BadValue(u64),
    /// The peer's public key was rejected by X25519.
    #[error("key agreement failed")]
    KeyAgreement,
    /// The message has a version this code does not know (upgrade aorta).
    #[error(
        "renegotiation message version {version} is not supported (this build speaks version {VERSION}); upgrade aorta"
    )]
    UnknownVersion {
        /// The version byte received.
        version: u8,
    },
    /// The CSPRNG failed.
    #[error("random number generator failed")]
    Rng,
    /// Key derivation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
}

const MAGIC: &[u8; 4] = b"AORN";
/// The wire version of every renegotiation message (the byte after the magic).
pub const VERSION: u8 = 1;
const T_OFFER: u8 = 1;
const T_REPLY: u8 = 2;
const T_VALUE: u8 = 3;
const T_CONFIRM: u8 = 4;

/// How often `max_key_uses` may change (the paper: one to three times a
/// month). Both sides enforce it: the server before it sends a Value, the
/// device before it applies one, each counting the Values it sent/applied in
/// the last `window_secs` by its own clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenegPolicy {
    /// Most changes inside one window.
    pub max_changes: usize,
    /// Window length in seconds.
    pub window_secs: u64,
}

impl Default for RenegPolicy {
    /// Three changes per 30 days.
    fn default() -> Self {
        RenegPolicy {
            max_changes: 3,
            window_secs: 30 * 24 * 3600,
        }
    }
}

impl RenegPolicy {
    /// Changes among `times` (Unix seconds) inside the window ending at `now`.
    pub fn recent(&self, times: &[u64], now: u64) -> usize {
        times
            .iter()
            .filter(|&&t| now.saturating_sub(t) < self.window_secs)
            .count()
    }

    /// Whether one more change is allowed at `now`.
    pub fn allows(&self, times: &[u64], now: u64) -> bool {
        self.recent(times, now) < self.max_changes
    }
}

/// The pre-shared key (zeroized).
pub type Psk = Zeroizing<[u8; 32]>;

fn mac(psk: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, psk);
    let mut c = hmac::Context::with_key(&k);
    for p in parts {
        c.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(c.sign().as_ref());
    out
}

fn header(t: u8, body_len: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(6 + body_len);
    b.extend_from_slice(MAGIC);
    b.push(VERSION);
    b.push(t);
    b
}

/// A short read is `Malformed("short")`, trailing bytes `Malformed("length")`.
fn malformed(e: DecodeError) -> RenegError {
    match e {
        DecodeError::Trailing { .. } => RenegError::Malformed("length"),
        DecodeError::Invalid { reason, .. } => RenegError::Malformed(reason),
        _ => RenegError::Malformed("short"),
    }
}

/// Reads `magic ‖ version ‖ type`, refusing another magic, an unknown
/// version or another type.
fn head<'a>(bytes: &'a [u8], t: u8) -> Result<Reader<'a>, RenegError> {
    let mut r = Reader::new(bytes);
    if &r.array::<4>("magic").map_err(malformed)? != MAGIC {
        return Err(RenegError::Malformed("bad magic"));
    }
    let version = r.u8("version").map_err(malformed)?;
    if version != VERSION {
        return Err(RenegError::UnknownVersion { version });
    }
    if r.u8("type").map_err(malformed)? != t {
        return Err(RenegError::Malformed("unexpected message type"));
    }
    Ok(r)
}

fn body(bytes: &[u8], t: u8) -> Result<&[u8], RenegError> {
    Ok(head(bytes, t)?.rest())
}

/// Message 1 (server → device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Device serial.
    pub serial: String,
    /// Server's renegotiation counter for this device (strictly increasing).
    pub counter: u64,
    server_eph: [u8; 32],
    mac: [u8; 32],
}

impl Offer {
    fn signed_part(&self) -> Vec<u8> {
        let mut b = header(T_OFFER, 0);
        b.push(self.serial.len() as u8);
        b.extend_from_slice(self.serial.as_bytes());
        b.extend_from_slice(&self.counter.to_be_bytes());
        b.extend_from_slice(&self.server_eph);
        b
    }
    /// Wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = self.signed_part();
        b.extend_from_slice(&self.mac);
        b
    }
    /// Parses wire bytes (not yet authenticated).
    pub fn decode(bytes: &[u8]) -> Result<Self, RenegError> {
        let mut r = head(bytes, T_OFFER)?;
        let serial = r.bytes_u8("serial").map_err(malformed)?;
        let serial = std::str::from_utf8(serial)
            .map_err(|_| RenegError::Malformed("serial"))?
            .to_owned();
        keys::check_serial(&serial).map_err(|_| RenegError::Malformed("serial"))?;
        let counter = r.u64("counter").map_err(malformed)?;
        let server_eph = r.array("server_eph").map_err(malformed)?;
        if r.remaining() != 32 {
            return Err(RenegError::Malformed("length"));
        }
        let m = r.array("mac").map_err(malformed)?;
        Ok(Offer {
            serial,
            counter,
            server_eph,
            mac: m,
        })
    }
}

/// The schedule a device runs, as it reports it in its Reply
/// (authenticated by the Reply's MAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceStatus {
    /// Its current `max_key_uses`.
    pub max_key_uses: u64,
    /// Counter of the last renegotiation it applied (0: none).
    pub applied_counter: u64,
    /// First sequence number of its current schedule segment.
    pub base_seq: u64,
}

/// Message 2 (device → server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    status: DeviceStatus,
    device_eph: [u8; 32],
    mac: [u8; 32],
}

impl Reply {
    fn signed_part(&self) -> Vec<u8> {
        let mut b = header(T_REPLY, 88);
        b.extend_from_slice(&self.status.max_key_uses.to_be_bytes());
        b.extend_from_slice(&self.status.applied_counter.to_be_bytes());
        b.extend_from_slice(&self.status.base_seq.to_be_bytes());
        b.extend_from_slice(&self.device_eph);
        b
    }
    /// Wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = self.signed_part();
        b.extend_from_slice(&self.mac);
        b
    }
    /// Parses wire bytes (not yet authenticated).
    pub fn decode(bytes: &[u8]) -> Result<Self, RenegError> {
        let mut r = head(bytes, T_REPLY)?;
        let status = DeviceStatus {
            max_key_uses: r.u64("max_key_uses").map_err(malformed)?,
            applied_counter: r.u64("applied_counter").map_err(malformed)?,
            base_seq: r.u64("base_seq").map_err(malformed)?,
        };
        let device_eph = r.array("device_eph").map_err(malformed)?;
        if r.remaining() != 32 {
            return Err(RenegError::Malformed("length"));
        }
        let mac = r.array("mac").map_err(malformed)?;
        Ok(Reply {
            status,
            device_eph,
            mac,
        })
    }
}

/// Implements [`Encode`] and [`Decode`] (all the remaining bytes as one
/// message) for a renegotiation message with inherent `encode`/`decode`.
macro_rules! codec_traits {
    ($t:ty) => {
        impl Encode for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&<$t>::encode(self));
            }
        }

        impl Decode<'_> for $t {
            fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                let at = r.position();
                <$t>::decode(r.rest()).map_err(|e| DecodeError::Invalid {
                    field: "renegotiation message",
                    offset: at,
                    reason: match e {
                        RenegError::Malformed(m) => m,
                        _ => "invalid",
                    },
                })
            }
        }
    };
}
codec_traits!(Offer);
codec_traits!(Reply);

/// Messages 3 and 4: AEAD-sealed under the session key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    t: u8,
    ct: Vec<u8>,
}

impl Sealed {
    /// Wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = header(self.t, self.ct.len());
        b.extend_from_slice(&self.ct);
        b
    }
    /// Parses a Value message (3).
    pub fn decode_value(bytes: &[u8]) -> Result<Self, RenegError> {
        Ok(Sealed {
            t: T_VALUE,
            ct: body(bytes, T_VALUE)?.to_vec(),
        })
    }
    /// Parses a Confirm message (4).
    pub fn decode_confirm(bytes: &[u8]) -> Result<Self, RenegError> {
        Ok(Sealed {
            t: T_CONFIRM,
            ct: body(bytes, T_CONFIRM)?.to_vec(),
        })
    }
}

struct SessionKey {
    key: LessSafeKey,
    th: [u8; 32],
}

impl SessionKey {
    fn derive(psk: &[u8; 32], shared: &[u8], th: [u8; 32]) -> Result<Self, RenegError> {
        struct L;
        impl hkdf::KeyType for L {
            fn len(&self) -> usize {
                32
            }
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, psk).extract(shared);
        let info: [&[u8]; 2] = [b"aorta/v1/reneg/k", &th];
        let okm = prk.expand(&info, L).map_err(|_| RenegError::KeyAgreement)?;
        let mut raw = Zeroizing::new([0u8; 32]);
        okm.fill(raw.as_mut())
            .map_err(|_| RenegError::KeyAgreement)?;
        let k =
            UnboundKey::new(&AES_256_GCM, raw.as_ref()).map_err(|_| RenegError::KeyAgreement)?;
        Ok(SessionKey {
            key: LessSafeKey::new(k),
            th,
        })
    }
    fn aad(&self, t: u8) -> Vec<u8> {
        let mut aad = self.th.to_vec();
        aad.extend_from_slice(&header(t, 0));
        aad
    }
    fn seal(&self, t: u8, n: u8, a: u64, b: u64) -> Result<Sealed, RenegError> {
        let mut buf = a.to_be_bytes().to_vec();
        buf.extend_from_slice(&b.to_be_bytes());
        let mut nonce = [0u8; 12];
        if let Some(last) = nonce.last_mut() {
            *last = n;
        }
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad(t)),
                &mut buf,
            )
            .map_err(|_| RenegError::KeyAgreement)?;
        Ok(Sealed { t, ct: buf })
    }
    fn open(&self, m: &Sealed, n: u8) -> Result<(u64, u64), RenegError> {
        let mut buf = m.ct.clone();
        let mut nonce = [0u8; 12];
        if let Some(last) = nonce.last_mut() {
            *last = n;
        }
        let p = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.aad(m.t)),
                &mut buf,
            )
            .map_err(|_| RenegError::BadMac)?;
        let mut r = Reader::new(p);
        let a = r.u64("a").map_err(malformed)?;
        if r.remaining() != 8 {
            return Err(RenegError::Malformed("length"));
        }
        let b = r.u64("b").map_err(malformed)?;
        Ok((a, b))
    }
}

fn transcript(offer: &Offer, reply: &Reply) -> [u8; 32] {
    let mut c = digest::Context::new(&digest::SHA256);
    c.update(&offer.encode());
    c.update(&reply.signed_part());
    let mut th = [0u8; 32];
    th.copy_from_slice(c.finish().as_ref());
    th
}

fn ephemeral(rng: &dyn SecureRandom) -> Result<(EphemeralPrivateKey, [u8; 32]), RenegError> {
    let k = EphemeralPrivateKey::generate(&X25519, rng).map_err(|_| RenegError::Rng)?;
    let p = k.compute_public_key().map_err(|_| RenegError::Rng)?;
    let pk: [u8; 32] = p.as_ref().try_into().map_err(|_| RenegError::Rng)?;
    Ok((k, pk))
}

/// Server state after sending the Offer.
pub struct ServerAwaitingReply {
    psk: Psk,
    offer: Offer,
    eph: EphemeralPrivateKey,
}

/// Server state after sending the Value.
pub struct ServerAwaitingConfirm {
    session: SessionKey,
    counter: u64,
    max_key_uses: u64,
}

/// The outcome the server records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The new `max_key_uses`.
    pub max_key_uses: u64,
    /// First sequence number sealed under it.
    pub base_seq: u64,
    /// Renegotiation counter.
    pub counter: u64,
}

impl ServerAwaitingReply {
    /// Starts a renegotiation for `serial` with the next `counter`.
    pub fn start(
        psk: Psk,
        serial: &str,
        counter: u64,
        rng: &dyn SecureRandom,
    ) -> Result<(Self, Offer), RenegError> {
        keys::check_serial(serial)?;
        let (eph, pk) = ephemeral(rng)?;
        let mut offer = Offer {
            serial: serial.to_owned(),
            counter,
            server_eph: pk,
            mac: [0; 32],
        };
        offer.mac = mac(&psk, &[b"aorta/v1/reneg/offer", &offer.signed_part()]);
        Ok((
            ServerAwaitingReply {
                psk,
                offer: offer.clone(),
                eph,
            },
            offer,
        ))
    }

    /// The Offer this session sent.
    pub fn offer(&self) -> &Offer {
        &self.offer
    }

    /// Checks the Reply's MAC without consuming the state: a forged Reply
    /// (a stranger squatting the session) leaves the session intact.
    pub fn check_reply(&self, reply: &Reply) -> Result<(), RenegError> {
        let th = transcript(&self.offer, reply);
        let want = mac(&self.psk, &[b"aorta/v1/reneg/reply", &th]);
        if keys::ct_eq(&want, &reply.mac) {
            Ok(())
        } else {
            Err(RenegError::BadMac)
        }
    }

    /// Verifies the device's Reply; returns the device's authenticated
    /// status and the state from which the new value can be sent.
    pub fn verify_reply(self, reply: &Reply) -> Result<(ServerReplied, DeviceStatus), RenegError> {
        let th = transcript(&self.offer, reply);
        let want = mac(&self.psk, &[b"aorta/v1/reneg/reply", &th]);
        if !keys::ct_eq(&want, &reply.mac) {
            return Err(RenegError::BadMac);
        }
        let peer = UnparsedPublicKey::new(&X25519, reply.device_eph);
        let psk = self.psk;
        let session = agreement::agree_ephemeral(self.eph, &peer, |shared| {
            SessionKey::derive(&psk, shared, th)
        })
        .map_err(|_| RenegError::KeyAgreement)??;
        Ok((
            ServerReplied {
                session,
                counter: self.offer.counter,
            },
            reply.status,
        ))
    }

    /// Verifies the device's Reply and sends the new value, encrypted.
    pub fn on_reply(
        self,
        reply: &Reply,
        max_key_uses: u64,
    ) -> Result<(ServerAwaitingConfirm, Sealed), RenegError> {
        if max_key_uses == 0 {
            return Err(RenegError::BadValue(0));
        }
        self.verify_reply(reply)?.0.send_value(max_key_uses)
    }
}

/// Server state after a verified Reply, before the Value is sent.
pub struct ServerReplied {
    session: SessionKey,
    counter: u64,
}

impl ServerReplied {
    /// The session's counter.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// Seals the new value.
    pub fn send_value(
        self,
        max_key_uses: u64,
    ) -> Result<(ServerAwaitingConfirm, Sealed), RenegError> {
        if max_key_uses == 0 {
            return Err(RenegError::BadValue(0));
        }
        let msg = self.session.seal(T_VALUE, 0, max_key_uses, self.counter)?;
        Ok((
            ServerAwaitingConfirm {
                session: self.session,
                counter: self.counter,
                max_key_uses,
            },
            msg,
        ))
    }
}

impl ServerAwaitingConfirm {
    /// The session's counter.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// The value sent.
    pub fn max_key_uses(&self) -> u64 {
        self.max_key_uses
    }

    /// Verifies the device's Confirm.
    pub fn on_confirm(self, msg: &Sealed) -> Result<Applied, RenegError> {
        self.check_confirm(msg)
    }

    /// Verifies the device's Confirm without consuming the state.
    pub fn check_confirm(&self, msg: &Sealed) -> Result<Applied, RenegError> {
        let (base_seq, counter) = self.session.open(msg, 1)?;
        if counter != self.counter {
            return Err(RenegError::BadMac);
        }
        Ok(Applied {
            max_key_uses: self.max_key_uses,
            base_seq,
            counter,
        })
    }
}

/// Device state after replying, waiting for the Value.
pub struct DeviceAwaitingValue {
    session: SessionKey,
    counter: u64,
}

impl DeviceAwaitingValue {
    /// Checks the server's Offer (MAC, serial, counter above `last_counter`)
    /// and answers it, reporting `status` (the schedule the device runs).
    pub fn on_offer(
        psk: Psk,
        serial: &str,
        last_counter: u64,
        status: DeviceStatus,
        offer: &Offer,
        rng: &dyn SecureRandom,
    ) -> Result<(Self, Reply), RenegError> {
        let want = mac(&psk, &[b"aorta/v1/reneg/offer", &offer.signed_part()]);
        if !keys::ct_eq(&want, &offer.mac) {
            return Err(RenegError::BadMac);
        }
        if offer.serial != serial {
            return Err(RenegError::WrongSerial(offer.serial.clone()));
        }
        if offer.counter <= last_counter {
            return Err(RenegError::Replayed {
                counter: offer.counter,
                last: last_counter,
            });
        }
        let (eph, pk) = ephemeral(rng)?;
        let mut reply = Reply {
            status,
            device_eph: pk,
            mac: [0; 32],
        };
        let th = transcript(offer, &reply);
        reply.mac = mac(&psk, &[b"aorta/v1/reneg/reply", &th]);
        let peer = UnparsedPublicKey::new(&X25519, offer.server_eph);
        let session =
            agreement::agree_ephemeral(eph, &peer, |shared| SessionKey::derive(&psk, shared, th))
                .map_err(|_| RenegError::KeyAgreement)??;
        Ok((
            DeviceAwaitingValue {
                session,
                counter: offer.counter,
            },
            reply,
        ))
    }

    /// The counter of the Offer this session answers.
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// Opens the Value without confirming it: (new max_key_uses, counter).
    /// The device checks its own limits on the value before applying it.
    pub fn peek_value(&self, msg: &Sealed) -> Result<(u64, u64), RenegError> {
        let (v, counter) = self.session.open(msg, 0)?;
        if counter != self.counter {
            return Err(RenegError::BadMac);
        }
        if v == 0 {
            return Err(RenegError::BadValue(v));
        }
        Ok((v, counter))
    }

    /// Opens the Value; returns (new max_key_uses, counter) and the Confirm
    /// to send once the device has applied it from `base_seq` on.
    pub fn on_value(self, msg: &Sealed, base_seq: u64) -> Result<(u64, u64, Sealed), RenegError> {
        let (v, counter) = self.session.open(msg, 0)?;
        if counter != self.counter {
            return Err(RenegError::BadMac);
        }
        if v == 0 {
            return Err(RenegError::BadValue(v));
        }
        let confirm = self.session.seal(T_CONFIRM, 1, base_seq, counter)?;
        Ok((v, counter, confirm))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    fn psk(b: u8) -> Psk {
        Zeroizing::new([b; 32])
    }

    const STATUS: DeviceStatus = DeviceStatus {
        max_key_uses: 2000,
        applied_counter: 0,
        base_seq: 0,
    };

    fn run(counter: u64, last: u64) -> Result<(Applied, u64), RenegError> {
        let rng = SystemRandom::new();
        let (srv, offer) = ServerAwaitingReply::start(psk(1), "SN-R", counter, &rng)?;
        let offer = Offer::decode(&offer.encode())?;
        let (dev, reply) =
            DeviceAwaitingValue::on_offer(psk(1), "SN-R", last, STATUS, &offer, &rng)?;
        let (srv, value) = srv.on_reply(&Reply::decode(&reply.encode())?, 1000)?;
        let (v, _, confirm) = dev.on_value(&Sealed::decode_value(&value.encode())?, 77)?;
        let applied = srv.on_confirm(&Sealed::decode_confirm(&confirm.encode())?)?;
        Ok((applied, v))
    }

    #[test]
    fn honest_run() {
        let (a, v) = run(5, 4).unwrap();
        assert_eq!(v, 1000);
        assert_eq!(
            a,
            Applied {
                max_key_uses: 1000,
                base_seq: 77,
                counter: 5
            }
        );
    }

    #[test]
    fn replayed_offer_is_refused() {
        assert_eq!(
            run(4, 4).unwrap_err(),
            RenegError::Replayed {
                counter: 4,
                last: 4
            }
        );
    }

    #[test]
    fn wrong_psk_and_tampering_are_refused() {
        let rng = SystemRandom::new();
        let (srv, offer) = ServerAwaitingReply::start(psk(1), "SN-R", 9, &rng).unwrap();
        // A device with another PSK (or a MITM forging offers) refuses.
        assert_eq!(
            DeviceAwaitingValue::on_offer(psk(2), "SN-R", 0, STATUS, &offer, &rng).err(),
            Some(RenegError::BadMac)
        );
        // Any flipped bit of the offer is refused.
        let enc = offer.encode();
        for i in 0..enc.len() {
            let mut b = enc.clone();
            b[i] ^= 0x40;
            let r = Offer::decode(&b).and_then(|o| {
                DeviceAwaitingValue::on_offer(psk(1), "SN-R", 0, STATUS, &o, &rng).map(|_| ())
            });
            assert!(r.is_err(), "bit flip at {i} accepted");
        }
        let (dev, reply) =
            DeviceAwaitingValue::on_offer(psk(1), "SN-R", 0, STATUS, &offer, &rng).unwrap();
        // A MITM substituting its own ephemeral key in the reply is refused.
        let mut forged = reply.clone();
        forged.device_eph[0] ^= 1;
        let (srv2, offer2) = ServerAwaitingReply::start(psk(1), "SN-R", 10, &rng).unwrap();
        assert!(matches!(srv2.on_reply(&forged, 5), Err(RenegError::BadMac)));
        let (srv, value) = srv.on_reply(&reply, 500).unwrap();
        // A tampered value is refused.
        let mut bad = value.clone();
        bad.ct[0] ^= 1;
        let (dev_b, _) =
            DeviceAwaitingValue::on_offer(psk(1), "SN-R", 0, STATUS, &offer, &rng).unwrap();
        assert_eq!(dev_b.on_value(&bad, 0).err(), Some(RenegError::BadMac));
        // A value from another session (replayed into this one) is refused.
        let (dev2, reply2) =
            DeviceAwaitingValue::on_offer(psk(1), "SN-R", 0, STATUS, &offer2, &rng).unwrap();
        let _ = reply2;
        assert_eq!(dev2.on_value(&value, 0).err(), Some(RenegError::BadMac));
        // Reordered: a Value sent where a Confirm is expected does not parse as one.
        assert!(Sealed::decode_confirm(&value.encode()).is_err());
        let (v, _, confirm) = dev.on_value(&value, 3).unwrap();
        assert_eq!(v, 500);
        assert_eq!(srv.on_confirm(&confirm).unwrap().base_seq, 3);
    }

    /// Every message carries version byte 1 right after the magic; any
    /// other version is refused as `UnknownVersion`, for every type.
    #[test]
    fn unknown_version_is_refused_for_every_message() {
        let rng = SystemRandom::new();
        let (srv, offer) = ServerAwaitingReply::start(psk(1), "SN-R", 3, &rng).unwrap();
        let (dev, reply) =
            DeviceAwaitingValue::on_offer(psk(1), "SN-R", 0, STATUS, &offer, &rng).unwrap();
        let (srv, value) = srv.on_reply(&reply, 900).unwrap();
        let (_, _, confirm) = dev.on_value(&value, 10).unwrap();
        let msgs = [
            offer.encode(),
            reply.encode(),
            value.encode(),
            confirm.encode(),
        ];
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(m[4], VERSION, "message {i}: version byte after the magic");
            for v in [0u8, 2, 0xff] {
                let mut b = m.clone();
                b[4] = v;
                let e = match i {
                    0 => Offer::decode(&b).err(),
                    1 => Reply::decode(&b).err(),
                    2 => Sealed::decode_value(&b).err(),
                    _ => Sealed::decode_confirm(&b).err(),
                };
                assert_eq!(
                    e,
                    Some(RenegError::UnknownVersion { version: v }),
                    "message {i}"
                );
            }
        }
        assert_eq!(srv.on_confirm(&confirm).unwrap().base_seq, 10);
    }

    /// The device's status in the Reply is authenticated: a host changing
    /// it (to make the server believe another schedule) is refused.
    #[test]
    fn reply_status_is_authenticated() {
        let rng = SystemRandom::new();
        let (srv, offer) = ServerAwaitingReply::start(psk(1), "SN-R", 3, &rng).unwrap();
        let (_dev, reply) =
            DeviceAwaitingValue::on_offer(psk(1), "SN-R", 0, STATUS, &offer, &rng).unwrap();
        let enc = reply.encode();
        for i in 6..30 {
            let mut b = enc.clone();
            b[i] ^= 1;
            let r = Reply::decode(&b).unwrap();
            assert_ne!(r.status, STATUS);
        }
        let mut b = enc.clone();
        b[13] ^= 1; // inside max_key_uses
        let forged = Reply::decode(&b).unwrap();
        assert_eq!(
            srv.verify_reply(&forged).err().map(|e| e.to_string()),
            Some(RenegError::BadMac.to_string())
        );
    }
}
