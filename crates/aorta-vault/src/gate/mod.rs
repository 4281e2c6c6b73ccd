//! The patient-controlled release gate (paper 004 §3.1 step 5, §4.2, Fig. 5;
//! spec `docs/vault-sharing.md`).
//!
//! A grant (`AOSG` v2, [`seal_grant`] / [`open_grant`]) no longer carries what
//! recovers the record: it carries the grant id, record id, issue and expiry
//! times, the recipient's key and the patient vault's public key in its
//! header, and, sealed with HPKE **auth mode** by the patient vault's key, a
//! per-grant secret, the gate's URL and the audit anchor at issue time. The
//! recipient checks that the grant was sealed by the patient key they pinned.
//!
//! To recover, the recipient sends the gate a request (`AOGQ` v1,
//! [`Request`]): the grant secret sealed in auth mode from the recipient's
//! key to the patient vault's key. The gate ([`decide`], called by
//! [`crate::EhrVault::answer_release`]) checks — with its own clock — that
//! the grant exists, the request proves the grant secret and the recipient
//! key, is fresh and not replayed, the grant is not revoked, not before its
//! issue time and not expired; audits `use` or `refuse`; and answers
//! (`AOGR` v1, [`Response`]) with the record's recovery material sealed in
//! auth mode, fresh per answer, to the grant's recipient key.
//!
//! Request kinds 2 (the patient's responsible doctor, by certificate) and 3
//! (break-glass, an institution-signed emergency request) release without a
//! grant: [`roles`].
//!
//! Everything here is transport-free; [`http`] serves and calls it over
//! HTTP/1.1 with bounded size, time and connections.

pub mod http;
pub mod roles;
mod seal;
mod state;

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
use aorta_base::hex;
use aorta_crypto::selective::{RecordId, RecoveryMaterial};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::VaultError;
use crate::grant::{GRANT_MAGIC, GrantHeader, Identity, RecipientKey};

pub use seal::{open_auth, seal_auth, seal_auth_with_rng};
pub use state::{CertifiedTo, GateEntry, GateState, ReplayCache, RoleState};

/// `AOSG` version of gate grants.
pub const GRANT_V2: u8 = 2;
/// Length of the `AOSG` v2 header (the HPKE associated data).
pub const GRANT_HEADER_LEN: usize = 120;
const ENC_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// Longest gate URL a grant carries.
pub const MAX_URL_LEN: usize = 256;
/// Longest audit anchor a grant carries.
pub const MAX_ANCHOR_LEN: usize = 256;
const GRANT_INFO: &[u8] = b"aorta-ehr grant v2";
const REQUEST_INFO: &[u8] = b"aorta-ehr gate request v1";
const RELEASE_INFO: &[u8] = b"aorta-ehr gate release v1";

/// Request magic.
pub const REQUEST_MAGIC: &[u8; 4] = b"AOGQ";
/// Response magic.
pub const RESPONSE_MAGIC: &[u8; 4] = b"AOGR";
/// Request/response format version.
pub const GATE_VERSION: u8 = 1;
/// Request kind: release under a grant.
pub const KIND_GRANT: u8 = 1;
/// Request kind: the patient's responsible doctor, by certificate
/// ([`roles`]).
pub const KIND_RESPONSIBLE: u8 = 2;
/// Request kind: break-glass, an institution-signed emergency request
/// ([`roles`]).
pub const KIND_EMERGENCY: u8 = 3;
/// Length of a request header.
pub const REQUEST_HEADER_LEN: usize = 64;
/// Length of a whole grant request.
pub const REQUEST_LEN: usize = REQUEST_HEADER_LEN + ENC_LEN + 32 + TAG_LEN;
/// Largest request body the gate reads (anything longer is refused unread).
pub const MAX_REQUEST_LEN: usize = 4096;
/// Length of a response header.
pub const RESPONSE_HEADER_LEN: usize = 64;
/// Largest response the recipient reads (material for a 1 GiB record is
/// 1/8 of it plus the header; the recipient bounds it).
pub const MAX_RESPONSE_LEN: usize = 256 << 20;
/// How far a request's send time may be from the gate's clock (seconds).
pub const MAX_SKEW_S: u64 = 300;

/// Which grant format a byte string is (`None`: not a grant).
pub fn grant_version(d: &[u8]) -> Option<u8> {
    match (d.get(..4), d.get(4)) {
        (Some(m), Some(&v)) if m == GRANT_MAGIC => Some(v),
        _ => None,
    }
}

/// The public header of an `AOSG` v2 grant (HPKE associated data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantV2Header {
    /// Random grant id.
    pub grant_id: [u8; 16],
    /// Pseudonymous record id.
    pub record_id: RecordId,
    /// Issue time (unix seconds, the patient's clock): not valid before.
    pub issued_at: u64,
    /// Expiry (unix seconds; [`crate::grant::NEVER`] for none).
    pub expires_at: u64,
    /// Standing emergency grant (responsible doctor).
    pub emergency: bool,
    /// The recipient.
    pub recipient: RecipientKey,
    /// The patient vault's public key (the HPKE auth-mode sender).
    pub patient: RecipientKey,
}

impl GrantV2Header {
    /// Grant id in hex.
    pub fn grant_hex(&self) -> String {
        hex::encode(&self.grant_id)
    }
}

impl GrantV2Header {
    /// The fields v1 and v2 headers share (all but the patient key).
    fn v1_fields(&self) -> GrantHeader {
        GrantHeader {
            grant_id: self.grant_id,
            record_id: self.record_id,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            emergency: self.emergency,
            recipient: self.recipient,
        }
    }
}

impl Encode for GrantV2Header {
    fn encode(&self, out: &mut Vec<u8>) {
        self.v1_fields().encode_as(GRANT_V2, out);
        out.extend_from_slice(&self.patient.0);
    }
}

impl Decode<'_> for GrantV2Header {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let h = GrantHeader::decode_as(GRANT_V2, r)?;
        Ok(Self {
            grant_id: h.grant_id,
            record_id: h.record_id,
            issued_at: h.issued_at,
            expires_at: h.expires_at,
            emergency: h.emergency,
            recipient: h.recipient,
            patient: RecipientKey(r.array("patient key")?),
        })
    }
}

/// A whole `AOSG` v2 grant as stored (not opened).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantV2<'a> {
    /// The public header.
    pub header: GrantV2Header,
    /// The HPKE encapsulated key.
    pub enc: [u8; ENC_LEN],
    /// The sealed ticket body.
    pub sealed: &'a [u8],
}

impl Encode for GrantV2<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.header.encode(out);
        out.extend_from_slice(&self.enc);
        out.extend_from_slice(self.sealed);
    }
}

impl<'a> Decode<'a> for GrantV2<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let header = GrantV2Header::decode(r)?;
        let enc = r.array("encapsulated key")?;
        let sealed = r.rest();
        // Secret, two lengths, the tag; no more than the two fields' maxima.
        let max = 32 + 2 + MAX_URL_LEN + 2 + MAX_ANCHOR_LEN + TAG_LEN;
        if sealed.len() < 32 + 4 + TAG_LEN || sealed.len() > max {
            return Err(r.invalid("sealed ticket", sealed.len(), "length out of range"));
        }
        Ok(Self {
            header,
            enc,
            sealed,
        })
    }
}

impl<'a> GrantV2<'a> {
    /// Decodes an `AOSG` v2 grant.
    pub fn parse(d: &'a [u8]) -> Result<Self, VaultError> {
        match grant_version(d) {
            Some(GRANT_V2) | None => {}
            Some(v) => {
                return Err(VaultError::UnknownVersion {
                    what: "grant",
                    version: v,
                    supported: GRANT_V2,
                });
            }
        }
        Self::from_bytes(d).map_err(VaultError::decode("grant"))
    }
}

/// What an opened grant gives its recipient: the header, the per-grant
/// secret that proves the grant to the gate, where the gate is, and the
/// patient's audit anchor when the grant was issued.
pub struct Ticket {
    /// The grant's public header.
    pub header: GrantV2Header,
    /// The per-grant secret (zeroized on drop).
    pub secret: Zeroizing<[u8; 32]>,
    /// The gate's URL (`http://host:port`).
    pub gate_url: String,
    /// The patient's audit anchor at issue time.
    // MERGE: helper B's `AuditAnchor` replaces these bytes (today the
    // audit head file's text, `seq hash`).
    pub audit_anchor: Vec<u8>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("header", &self.header)
            .field("gate_url", &self.gate_url)
            .finish_non_exhaustive()
    }
}

fn ticket_body(
    secret: &[u8; 32],
    url: &str,
    anchor: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    if url.len() > MAX_URL_LEN || anchor.len() > MAX_ANCHOR_LEN {
        return Err(VaultError::BadInput {
            what: "gate URL or audit anchor".into(),
            reason: format!("longer than {MAX_URL_LEN} bytes"),
        });
    }
    let mut b = Zeroizing::new(Vec::with_capacity(36 + url.len() + anchor.len()));
    b.extend_from_slice(secret);
    b.extend_from_slice(&(url.len() as u16).to_be_bytes());
    b.extend_from_slice(url.as_bytes());
    b.extend_from_slice(&(anchor.len() as u16).to_be_bytes());
    b.extend_from_slice(anchor);
    Ok(b)
}

/// A ticket body: (grant secret, gate URL, audit anchor).
type TicketBody = (Zeroizing<[u8; 32]>, String, Vec<u8>);

fn parse_ticket_body(d: &[u8]) -> Result<TicketBody, DecodeError> {
    let mut r = Reader::new(d);
    let secret = Zeroizing::new(r.array::<32>("grant secret")?);
    let url = r.bytes_u16("gate url")?;
    if url.len() > MAX_URL_LEN {
        return Err(r.invalid("gate url", url.len(), "too long"));
    }
    let url = std::str::from_utf8(url)
        .map_err(|_| r.invalid("gate url", url.len(), "not UTF-8"))?
        .to_string();
    let anchor = r.bytes_u16("audit anchor")?;
    if anchor.len() > MAX_ANCHOR_LEN {
        return Err(r.invalid("audit anchor", anchor.len(), "too long"));
    }
    let anchor = anchor.to_vec();
    r.finish()?;
    Ok((secret, url, anchor))
}

/// Seals an `AOSG` v2 grant: `header` in the clear (associated data), the
/// ticket body sealed in HPKE auth mode from `patient` to the recipient.
pub fn seal_grant(
    patient: &Identity,
    header: &GrantV2Header,
    secret: &[u8; 32],
    gate_url: &str,
    audit_anchor: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let (aad, body) = grant_parts(patient, header, secret, gate_url, audit_anchor)?;
    let (enc, ct) = seal_auth(patient, &header.recipient, GRANT_INFO, &body, &aad)?;
    Ok([aad, enc.to_vec(), ct].concat())
}

/// [`seal_grant`] with a caller's generator: test vectors only.
pub fn seal_grant_with_rng<R: hpke::rand_core::CryptoRng>(
    patient: &Identity,
    header: &GrantV2Header,
    secret: &[u8; 32],
    gate_url: &str,
    audit_anchor: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, VaultError> {
    let (aad, body) = grant_parts(patient, header, secret, gate_url, audit_anchor)?;
    let (enc, ct) = seal_auth_with_rng(patient, &header.recipient, GRANT_INFO, &body, &aad, rng)?;
    Ok([aad, enc.to_vec(), ct].concat())
}

fn grant_parts(
    patient: &Identity,
    header: &GrantV2Header,
    secret: &[u8; 32],
    gate_url: &str,
    audit_anchor: &[u8],
) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), VaultError> {
    if header.patient != patient.public() {
        return Err(VaultError::Internal {
            what: "grant header names another patient key than the sealing one",
        });
    }
    Ok((
        header.to_bytes(),
        ticket_body(secret, gate_url, audit_anchor)?,
    ))
}

/// Opens an `AOSG` v2 grant as its recipient. `patient` is the patient
/// vault key the recipient pinned: a grant naming another key, or that was
/// not sealed by `patient`'s secret key (a stranger's grant, a base-mode
/// grant, a modified one), is [`VaultError::GrantNotFromPatient`]. Expiry is
/// not judged here: the gate judges it with its own clock.
pub fn open_grant(
    grant: &[u8],
    identity: &Identity,
    patient: &RecipientKey,
) -> Result<Ticket, VaultError> {
    let g = GrantV2::parse(grant)?;
    let h = g.header;
    if h.recipient != identity.public() {
        return Err(VaultError::GrantNotForUs);
    }
    if h.patient != *patient {
        return Err(VaultError::GrantNotFromPatient {
            reason: "it names another patient key than the one given",
        });
    }
    let aad = h.to_bytes();
    let body = open_auth(identity, patient, &g.enc, GRANT_INFO, g.sealed, &aad).map_err(|_| {
        VaultError::GrantNotFromPatient {
            reason: "it was not sealed by the patient's key (forged, or modified)",
        }
    })?;
    let (secret, gate_url, audit_anchor) =
        parse_ticket_body(&body).map_err(VaultError::decode("grant ticket"))?;
    Ok(Ticket {
        header: h,
        secret,
        gate_url,
        audit_anchor,
    })
}

/// The clear header of a gate request (the HPKE associated data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    /// [`KIND_GRANT`].
    pub kind: u8,
    /// The grant asked under.
    pub grant_id: [u8; 16],
    /// The record asked for.
    pub record_id: RecordId,
    /// The requester's clock (unix seconds): bounds replay, never expiry.
    pub sent_at: u64,
    /// Random, echoed in the response.
    pub nonce: [u8; 16],
}

impl Encode for RequestHeader {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(REQUEST_MAGIC);
        out.extend_from_slice(&[GATE_VERSION, self.kind, 0, 0]);
        out.extend_from_slice(&self.grant_id);
        out.extend_from_slice(&self.record_id.0);
        out.extend_from_slice(&self.sent_at.to_be_bytes());
        out.extend_from_slice(&self.nonce);
    }
}

impl Decode<'_> for RequestHeader {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if &r.array::<4>("magic")? != REQUEST_MAGIC {
            return Err(r.invalid("magic", 4, "bad magic"));
        }
        if r.u8("version")? != GATE_VERSION {
            return Err(r.invalid("version", 1, "unknown format version"));
        }
        let kind = r.u8("kind")?;
        if !(KIND_GRANT..=KIND_EMERGENCY).contains(&kind) {
            return Err(r.invalid("kind", 1, "unknown request kind"));
        }
        if r.array::<2>("reserved")? != [0, 0] {
            return Err(r.invalid("reserved", 2, "must be zero"));
        }
        Ok(Self {
            kind,
            grant_id: r.array("grant id")?,
            record_id: RecordId(r.array("record id")?),
            sent_at: r.u64("sent at")?,
            nonce: r.array("nonce")?,
        })
    }
}

/// A whole gate request (`AOGQ` v1): header, encapsulated key, and the
/// grant secret sealed from the recipient's key to the patient's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The clear header.
    pub header: RequestHeader,
    /// HPKE encapsulated key.
    pub enc: [u8; ENC_LEN],
    /// The sealed grant secret (32 bytes and the 16-byte tag).
    pub sealed: [u8; 48],
}

impl Encode for Request {
    fn encode(&self, out: &mut Vec<u8>) {
        self.header.encode(out);
        out.extend_from_slice(&self.enc);
        out.extend_from_slice(&self.sealed);
    }
}

impl Decode<'_> for Request {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let header = RequestHeader::decode(r)?;
        if header.kind != KIND_GRANT {
            return Err(r.invalid("kind", 1, "not a grant request"));
        }
        Ok(Self {
            header,
            enc: r.array("encapsulated key")?,
            sealed: r.array("sealed secret")?,
        })
    }
}

impl Request {
    /// Decodes a request (an unknown version is [`VaultError::UnknownVersion`]).
    pub fn parse(d: &[u8]) -> Result<Self, VaultError> {
        crate::format::check_version(d, REQUEST_MAGIC, GATE_VERSION, "gate request")?;
        Self::from_bytes(d).map_err(VaultError::decode("gate request"))
    }
}

/// Builds the request for `ticket`: the grant secret sealed in auth mode
/// from `identity` to the patient key, at the requester's time `now`.
pub fn build_request(
    ticket: &Ticket,
    identity: &Identity,
    now: u64,
) -> Result<Request, VaultError> {
    let header = request_header(ticket, now, aorta_base::random::array::<16>()?);
    let aad = header.to_bytes();
    let (enc, ct) = seal_auth(
        identity,
        &ticket.header.patient,
        REQUEST_INFO,
        ticket.secret.as_slice(),
        &aad,
    )?;
    assemble_request(header, enc, &ct)
}

/// [`build_request`] with a caller's nonce and generator: test vectors only.
pub fn build_request_with_rng<R: hpke::rand_core::CryptoRng>(
    ticket: &Ticket,
    identity: &Identity,
    now: u64,
    nonce: [u8; 16],
    rng: &mut R,
) -> Result<Request, VaultError> {
    let header = request_header(ticket, now, nonce);
    let aad = header.to_bytes();
    let (enc, ct) = seal_auth_with_rng(
        identity,
        &ticket.header.patient,
        REQUEST_INFO,
        ticket.secret.as_slice(),
        &aad,
        rng,
    )?;
    assemble_request(header, enc, &ct)
}

fn request_header(ticket: &Ticket, now: u64, nonce: [u8; 16]) -> RequestHeader {
    RequestHeader {
        kind: KIND_GRANT,
        grant_id: ticket.header.grant_id,
        record_id: ticket.header.record_id,
        sent_at: now,
        nonce,
    }
}

fn assemble_request(
    header: RequestHeader,
    enc: [u8; 32],
    ct: &[u8],
) -> Result<Request, VaultError> {
    let sealed: [u8; 48] = ct.try_into().map_err(|_| VaultError::Internal {
        what: "sealed grant secret is not 48 bytes",
    })?;
    Ok(Request {
        header,
        enc,
        sealed,
    })
}

/// What the gate answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum Status {
    /// The material is released (sealed to the recipient).
    Released = 0,
    /// No such grant, or the request does not prove its secret and
    /// recipient key (a stranger learns nothing more).
    Unauthorised = 1,
    /// The patient revoked the grant.
    Revoked = 2,
    /// The grant expired (the gate's clock).
    Expired = 3,
    /// Before the grant's issue time (the gate's clock).
    NotYetValid = 4,
    /// The request's send time is too far from the gate's clock.
    Stale = 5,
    /// This request was already answered.
    Replayed = 6,
    /// The request is malformed.
    Malformed = 7,
    /// The gate cannot read the record now.
    Unavailable = 8,
    /// A responsible-doctor or emergency request the patient's settings do
    /// not allow (the reason is in the patient's audit log, not told to the
    /// requester).
    Denied = 9,
}

impl Status {
    /// From the wire byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Released,
            1 => Self::Unauthorised,
            2 => Self::Revoked,
            3 => Self::Expired,
            4 => Self::NotYetValid,
            5 => Self::Stale,
            6 => Self::Replayed,
            7 => Self::Malformed,
            8 => Self::Unavailable,
            9 => Self::Denied,
            _ => return None,
        })
    }
    /// The name printed and audited.
    pub fn name(self) -> &'static str {
        match self {
            Self::Released => "released",
            Self::Unauthorised => "unauthorised",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::NotYetValid => "not yet valid",
            Self::Stale => "request time too far from the gate's clock",
            Self::Replayed => "replayed request",
            Self::Malformed => "malformed request",
            Self::Unavailable => "record unavailable at the gate",
            Self::Denied => "denied by the patient's settings",
        }
    }
    /// The HTTP status the gate answers with.
    pub fn http(self) -> u16 {
        match self {
            Self::Released => 200,
            Self::Malformed => 400,
            Self::Unauthorised
            | Self::Revoked
            | Self::Expired
            | Self::NotYetValid
            | Self::Denied => 403,
            Self::Stale | Self::Replayed => 409,
            Self::Unavailable => 503,
        }
    }
}

/// The clear header of a gate response (with the request header, the
/// associated data of the sealed material).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeader {
    /// What the gate decided.
    pub status: Status,
    /// The grant (zero when the request did not parse).
    pub grant_id: [u8; 16],
    /// The request's nonce.
    pub nonce: [u8; 16],
    /// The record (zero unless released).
    pub record_id: RecordId,
    /// The gate's clock when it decided.
    pub gate_time: u64,
}

impl Encode for ResponseHeader {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(RESPONSE_MAGIC);
        out.extend_from_slice(&[GATE_VERSION, self.status as u8, 0, 0]);
        out.extend_from_slice(&self.grant_id);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.record_id.0);
        out.extend_from_slice(&self.gate_time.to_be_bytes());
    }
}

impl Decode<'_> for ResponseHeader {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if &r.array::<4>("magic")? != RESPONSE_MAGIC {
            return Err(r.invalid("magic", 4, "bad magic"));
        }
        if r.u8("version")? != GATE_VERSION {
            return Err(r.invalid("version", 1, "unknown format version"));
        }
        let status = Status::from_byte(r.u8("status")?)
            .ok_or_else(|| r.invalid("status", 1, "unknown status"))?;
        if r.array::<2>("reserved")? != [0, 0] {
            return Err(r.invalid("reserved", 2, "must be zero"));
        }
        Ok(Self {
            status,
            grant_id: r.array("grant id")?,
            nonce: r.array("nonce")?,
            record_id: RecordId(r.array("record id")?),
            gate_time: r.u64("gate time")?,
        })
    }
}

/// A whole gate response (`AOGR` v1): the header and, when released, the
/// encapsulated key and the sealed recovery material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    /// The clear header.
    pub header: ResponseHeader,
    /// `(encapsulated key, sealed AOSM)` when released.
    pub sealed: Option<([u8; ENC_LEN], &'a [u8])>,
}

impl Encode for Response<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.header.encode(out);
        if let Some((enc, ct)) = &self.sealed {
            out.extend_from_slice(enc);
            out.extend_from_slice(ct);
        }
    }
}

impl<'a> Decode<'a> for Response<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let header = ResponseHeader::decode(r)?;
        let sealed = if header.status == Status::Released {
            let enc = r.array("encapsulated key")?;
            let ct = r.rest();
            if ct.len() < TAG_LEN {
                return Err(r.invalid("sealed material", ct.len(), "shorter than the tag"));
            }
            Some((enc, ct))
        } else {
            None
        };
        Ok(Self { header, sealed })
    }
}

impl<'a> Response<'a> {
    /// Decodes a response.
    pub fn parse(d: &'a [u8]) -> Result<Self, VaultError> {
        crate::format::check_version(d, RESPONSE_MAGIC, GATE_VERSION, "gate response")?;
        Self::from_bytes(d).map_err(VaultError::decode("gate response"))
    }
}

/// A refusal answer (no material) for `grant_id`/`nonce`.
pub fn refusal(status: Status, grant_id: [u8; 16], nonce: [u8; 16], gate_time: u64) -> Vec<u8> {
    Response {
        header: ResponseHeader {
            status,
            grant_id,
            nonce,
            record_id: RecordId([0; 16]),
            gate_time,
        },
        sealed: None,
    }
    .to_bytes()
}

/// What the gate decided for one request: the bytes to answer and, for the
/// patient's audit log, what to write (`None`: a stranger's or malformed
/// request, not audited so strangers cannot fill the log).
#[derive(Debug)]
pub struct Decision {
    /// The response bytes.
    pub response: Vec<u8>,
    /// The status.
    pub status: Status,
    /// The audit entry to write before answering.
    pub audited: Option<Audited>,
}

/// The audit entry a decision asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audited {
    /// `use`, `refuse` or `emergency-access`.
    pub event: crate::audit::Event,
    /// The grant id (kind 1), certificate id (kind 2) or emergency request
    /// id (kind 3), hex.
    pub grant: String,
    /// The record asked for.
    pub record: RecordId,
    /// What the patient reads.
    pub detail: String,
}

impl Audited {
    fn grant(status: Status, gid: String, record: RecordId) -> Self {
        let (event, detail) = if status == Status::Released {
            (crate::audit::Event::Use, "released by the gate".to_string())
        } else {
            (
                crate::audit::Event::Refuse,
                format!("gate: {}", status.name()),
            )
        };
        Self {
            event,
            grant: gid,
            record,
            detail,
        }
    }
}

/// The gate's release decision — one function of the request, the gate's
/// state and its clock, so that other request kinds (an institution-signed
/// emergency request, the responsible doctor's standing grant) are added
/// here. `material` fetches a record's current recovery material (the
/// gate's copy, refreshed by a rekey).
pub fn decide(
    request: &[u8],
    state: &GateState,
    now: u64,
    material: &dyn Fn(&RecordId) -> Result<RecoveryMaterial, VaultError>,
) -> Decision {
    match request.get(5) {
        Some(&KIND_RESPONSIBLE) | Some(&KIND_EMERGENCY)
            if request.get(..4) == Some(REQUEST_MAGIC.as_slice()) =>
        {
            return roles::decide(request, state, now, material);
        }
        _ => {}
    }
    let refuse = |status, gid: [u8; 16], nonce, audited: Option<(String, RecordId)>| Decision {
        response: refusal(status, gid, nonce, now),
        status,
        audited: audited.map(|(g, r)| Audited::grant(status, g, r)),
    };
    let req = match Request::parse(request) {
        Ok(r) => r,
        Err(_) => return refuse(Status::Malformed, [0; 16], [0; 16], None),
    };
    let h = req.header;
    let gid_hex = hex::encode(&h.grant_id);
    // Unknown grant and failed proof answer alike.
    let unauthorised = || refuse(Status::Unauthorised, h.grant_id, h.nonce, None);
    let Ok(Some(entry)) = state.entry(&gid_hex) else {
        return unauthorised();
    };
    let aad = h.to_bytes();
    let Ok(secret) = open_auth(
        state.identity(),
        &entry.recipient,
        &req.enc,
        REQUEST_INFO,
        &req.sealed,
        &aad,
    ) else {
        return unauthorised();
    };
    if !bool::from(secret.as_slice().ct_eq(entry.secret.as_slice())) || entry.record != h.record_id
    {
        return unauthorised();
    }
    let audited = Some((gid_hex, entry.record));
    if now.abs_diff(h.sent_at) > MAX_SKEW_S {
        return refuse(Status::Stale, h.grant_id, h.nonce, audited);
    }
    if !state.replays().first_use(&h.nonce, h.sent_at, now) {
        return refuse(Status::Replayed, h.grant_id, h.nonce, audited);
    }
    if entry.revoked {
        return refuse(Status::Revoked, h.grant_id, h.nonce, audited);
    }
    if now < entry.issued_at {
        return refuse(Status::NotYetValid, h.grant_id, h.nonce, audited);
    }
    if now >= entry.expires_at {
        return refuse(Status::Expired, h.grant_id, h.nonce, audited);
    }
    let released = (|| -> Result<Vec<u8>, VaultError> {
        let mut m = material(&entry.record)?;
        if !entry.keep_identifying_header {
            m.head = crate::deid::deidentify_head(&m.head, &entry.record)?.0;
        }
        seal_release(state, &entry.recipient, &h, entry.record, now, &m)
    })();
    match released {
        Ok(response) => Decision {
            response,
            status: Status::Released,
            audited: audited.map(|(g, r)| Audited::grant(Status::Released, g, r)),
        },
        Err(_) => refuse(Status::Unavailable, h.grant_id, h.nonce, audited),
    }
}

/// The release answering request `h` at `now`: `m`, the material of
/// `record`, sealed from the gate's identity to `to`, bound to the response
/// and request headers.
fn seal_release(
    state: &GateState<'_>,
    to: &RecipientKey,
    h: &RequestHeader,
    record: RecordId,
    now: u64,
    m: &RecoveryMaterial,
) -> Result<Vec<u8>, VaultError> {
    let rh = ResponseHeader {
        status: Status::Released,
        grant_id: h.grant_id,
        nonce: h.nonce,
        record_id: record,
        gate_time: now,
    };
    let mut aad = rh.to_bytes();
    aad.extend_from_slice(&h.to_bytes());
    let (enc, ct) = seal_auth(state.identity(), to, RELEASE_INFO, &m.to_bytes(), &aad)?;
    Ok(Response {
        header: rh,
        sealed: Some((enc, &ct)),
    }
    .to_bytes())
}

/// Opens the gate's answer to `request` as the recipient: a refusal is
/// [`VaultError::Revoked`], [`VaultError::Expired`] (by the gate's clock) or
/// [`VaultError::GateRefused`]; a release must be sealed by the patient key
/// to `identity`, bound to this request, and its material must name the
/// grant's record.
pub fn open_response(
    response: &[u8],
    request: &Request,
    ticket: &Ticket,
    identity: &Identity,
) -> Result<RecoveryMaterial, VaultError> {
    let r = Response::parse(response)?;
    if r.header.nonce != request.header.nonce || r.header.grant_id != request.header.grant_id {
        // Not the answer to this request (a stranger's or a replayed one).
        return Err(VaultError::GateAnswer {
            reason: "the response answers another request",
        });
    }
    let Some((enc, ct)) = r.sealed else {
        // Revocation and expiry keep their own errors (the expiry is the
        // grant's, "now" the gate's clock).
        return Err(match r.header.status {
            Status::Revoked => VaultError::Revoked {
                grant_id: ticket.header.grant_hex(),
            },
            Status::Expired => VaultError::Expired {
                expires_at: ticket.header.expires_at,
                now: r.header.gate_time,
            },
            s => VaultError::GateRefused {
                status: s.name(),
                gate_time: r.header.gate_time,
            },
        });
    };
    let mut aad = r.header.to_bytes();
    aad.extend_from_slice(&request.header.to_bytes());
    let plain = open_auth(
        identity,
        &ticket.header.patient,
        &enc,
        RELEASE_INFO,
        ct,
        &aad,
    )
    .map_err(|_| VaultError::GateAnswer {
        reason: "the released material was not sealed by the patient's key to us",
    })?;
    let m = RecoveryMaterial::from_bytes(&plain)?;
    if m.record_id != ticket.header.record_id || r.header.record_id != ticket.header.record_id {
        return Err(VaultError::GateAnswer {
            reason: "the released material is for another record",
        });
    }
    Ok(m)
}

/// Sends a request to a gate and returns its answer (HTTP in
/// [`http::HttpGate`]; a direct call into [`crate::EhrVault::answer_release`]
/// in tests).
pub trait GateTransport {
    /// Exchanges one request for one response.
    fn exchange(&self, gate_url: &str, request: &[u8]) -> Result<Vec<u8>, VaultError>;
}
