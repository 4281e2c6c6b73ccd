//! Request kinds 2 and 3 of `AOGQ` v1 (spec `docs/vault-sharing.md`,
//! "Responsible doctor and break-glass requests"): access without a
//! per-record grant, for
//!
//! * kind 2, **the patient's responsible doctor** (paper 004 §4.2: "a higher
//!   access control role"): the request carries the doctor's `AODC`
//!   certificate; the gate releases any record of this patient when the
//!   certificate verifies now against the patient's pins, has the
//!   responsible role, and names the doctor (institution and key) the
//!   patient named with `aorta ehr responsible`;
//! * kind 3, **break-glass**: the request carries the institution-signed
//!   `AOER` emergency request (which embeds the doctor's certificate); the
//!   gate verifies it ([`crate::institution::verify_emergency`]: pinned,
//!   signed, allowed emergency access by the patient, time-boxed), checks it
//!   covers the record, admits it once per record in the persisted replay
//!   set **before** releasing, and audits `emergency-access`.
//!
//! In both, the requester proves holding the certificate's doctor key: the
//! request ends with an HPKE auth-mode seal (empty plaintext) from that key
//! to the patient key over every byte before it. What is released is sealed
//! to the certificate's doctor key, so whoever relays the request gets
//! nothing they can open.

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
use aorta_base::hex;
use aorta_crypto::selective::{RecordId, RecoveryMaterial};

use super::{
    Audited, Decision, ENC_LEN, GateState, MAX_REQUEST_LEN, RELEASE_INFO, REQUEST_HEADER_LEN,
    REQUEST_MAGIC, RequestHeader, Response, Status, TAG_LEN, open_auth, refusal, seal_auth,
};
use crate::VaultError;
use crate::audit::Event;
use crate::grant::{Identity, RecipientKey};
use crate::institution::{
    DoctorCertificate, EmergencyRequest, EmergencyScope, InstitutionError, Role, VerifiedEmergency,
    verify, verify_emergency,
};

pub use super::{KIND_EMERGENCY, KIND_RESPONSIBLE};

/// HPKE info of the requester's proof of its doctor key.
pub const ROLE_REQUEST_INFO: &[u8] = b"aorta-ehr gate role request v1";
/// Longest credential (certificate or emergency request) a request carries.
pub const MAX_CREDENTIAL_LEN: usize = MAX_REQUEST_LEN - REQUEST_HEADER_LEN - 2 - ENC_LEN - TAG_LEN;
const REPLAY_DOMAIN: &[u8] = b"aorta-ehr emergency use per record v1\0";

/// A responsible-doctor (kind 2) or break-glass (kind 3) request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleRequest<'a> {
    /// The clear header; its grant id field is the credential's id (first
    /// 16 bytes of SHA-256 of the credential).
    pub header: RequestHeader,
    /// The `AODC` certificate (kind 2) or the `AOER` request (kind 3).
    pub credential: &'a [u8],
    /// HPKE encapsulated key of the proof.
    pub enc: [u8; ENC_LEN],
    /// HPKE auth-mode tag (empty plaintext) from the doctor's key.
    pub proof: [u8; TAG_LEN],
}

impl Encode for RoleRequest<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.header.encode(out);
        // Bounded by the constructors and the decoder.
        out.extend_from_slice(&(self.credential.len().min(u16::MAX as usize) as u16).to_be_bytes());
        out.extend_from_slice(self.credential);
        out.extend_from_slice(&self.enc);
        out.extend_from_slice(&self.proof);
    }
}

impl<'a> Decode<'a> for RoleRequest<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let header = RequestHeader::decode(r)?;
        if header.kind != KIND_RESPONSIBLE && header.kind != KIND_EMERGENCY {
            return Err(r.invalid("kind", 1, "not a responsible or emergency request"));
        }
        let credential = r.bytes_u16("credential")?;
        if credential.is_empty() || credential.len() > MAX_CREDENTIAL_LEN {
            return Err(r.invalid("credential", credential.len(), "length out of range"));
        }
        if header.grant_id != crate::institution::short_id(credential) {
            return Err(r.invalid("grant id", 0, "not the credential's id"));
        }
        Ok(Self {
            header,
            credential,
            enc: r.array("encapsulated key")?,
            proof: r.array("proof")?,
        })
    }
}

impl<'a> RoleRequest<'a> {
    /// Decodes a kind 2 or 3 request.
    pub fn parse(d: &'a [u8]) -> Result<Self, VaultError> {
        crate::format::check_version(d, REQUEST_MAGIC, super::GATE_VERSION, "gate request")?;
        Self::from_bytes(d).map_err(VaultError::decode("gate request"))
    }

    /// The bytes the proof covers: everything before the encapsulated key.
    fn proof_aad(&self) -> Vec<u8> {
        let mut b = self.to_bytes();
        b.truncate(b.len() - ENC_LEN - TAG_LEN);
        b
    }

    /// The doctor key the credential certifies (the proof's sender, the
    /// release's receiver).
    pub fn doctor_key(&self) -> Result<RecipientKey, VaultError> {
        Ok(match self.header.kind {
            KIND_RESPONSIBLE => DoctorCertificate::parse(self.credential)?.doctor,
            _ => EmergencyRequest::parse(self.credential)?.certificate.doctor,
        })
    }
}

/// Builds a kind 2 (`credential` = the doctor's `AODC`) or kind 3
/// (`credential` = the institution's `AOER`) request for `record`, proving
/// `identity` (the certified doctor's key) to `patient`, at the requester's
/// time `now`. Returns the request bytes and its header.
pub fn build_role_request(
    kind: u8,
    credential: &[u8],
    record: &RecordId,
    identity: &Identity,
    patient: &RecipientKey,
    now: u64,
) -> Result<(Vec<u8>, RequestHeader), VaultError> {
    build_role_request_with(
        kind,
        credential,
        record,
        identity,
        patient,
        now,
        aorta_base::random::array::<16>()?,
        &mut |id, to, aad| seal_auth(id, to, ROLE_REQUEST_INFO, &[], aad),
    )
}

/// [`build_role_request`] with a caller's nonce and generator: test vectors.
#[allow(clippy::too_many_arguments)]
pub fn build_role_request_with_rng<R: hpke::rand_core::CryptoRng>(
    kind: u8,
    credential: &[u8],
    record: &RecordId,
    identity: &Identity,
    patient: &RecipientKey,
    now: u64,
    nonce: [u8; 16],
    rng: &mut R,
) -> Result<(Vec<u8>, RequestHeader), VaultError> {
    build_role_request_with(
        kind,
        credential,
        record,
        identity,
        patient,
        now,
        nonce,
        &mut |id, to, aad| super::seal_auth_with_rng(id, to, ROLE_REQUEST_INFO, &[], aad, rng),
    )
}

type Sealer<'s> =
    dyn FnMut(&Identity, &RecipientKey, &[u8]) -> Result<([u8; 32], Vec<u8>), VaultError> + 's;

#[allow(clippy::too_many_arguments)]
fn build_role_request_with(
    kind: u8,
    credential: &[u8],
    record: &RecordId,
    identity: &Identity,
    patient: &RecipientKey,
    now: u64,
    nonce: [u8; 16],
    seal: &mut Sealer<'_>,
) -> Result<(Vec<u8>, RequestHeader), VaultError> {
    if kind != KIND_RESPONSIBLE && kind != KIND_EMERGENCY {
        return Err(VaultError::Internal {
            what: "role request of another kind",
        });
    }
    if credential.is_empty() || credential.len() > MAX_CREDENTIAL_LEN {
        return Err(VaultError::BadInput {
            what: "certificate or emergency request".into(),
            reason: format!("must be 1 to {MAX_CREDENTIAL_LEN} bytes"),
        });
    }
    let header = RequestHeader {
        kind,
        grant_id: crate::institution::short_id(credential),
        record_id: *record,
        sent_at: now,
        nonce,
    };
    let mut req = RoleRequest {
        header,
        credential,
        enc: [0; ENC_LEN],
        proof: [0; TAG_LEN],
    };
    // The credential must name this identity, else the gate could not
    // check the proof (and would seal to someone else).
    if req.doctor_key()? != identity.public() {
        return Err(VaultError::BadInput {
            what: "certificate".into(),
            reason: "it certifies another doctor key than this identity's".into(),
        });
    }
    let (enc, tag) = seal(identity, patient, &req.proof_aad())?;
    req.enc = enc;
    req.proof = tag
        .as_slice()
        .try_into()
        .map_err(|_| VaultError::Internal {
            what: "proof is not one tag",
        })?;
    Ok((req.to_bytes(), header))
}

fn emergency_detail(e: &VerifiedEmergency) -> String {
    format!(
        "break-glass request {} by {}, reason {:?}, issued {} expires {} nonce {}",
        hex::encode(&e.request_id),
        e.doctor.audit_detail(),
        e.reason,
        e.issued_at,
        e.expires_at,
        hex::encode(&e.nonce)
    )
}

/// The gate's decision for a kind 2 or 3 request (called by
/// [`super::decide`]). Audited from the moment the requester proved the
/// credential's doctor key — and, for kind 3, from the moment the emergency
/// request parsed (break-glass is always audited, a relayed request
/// included).
pub fn decide(
    request: &[u8],
    state: &GateState<'_>,
    now: u64,
    material: &dyn Fn(&RecordId) -> Result<RecoveryMaterial, VaultError>,
) -> Decision {
    let req = match RoleRequest::parse(request).and_then(|r| r.doctor_key().map(|k| (r, k))) {
        Ok(r) => r,
        Err(_) => {
            return Decision {
                response: refusal(Status::Malformed, [0; 16], [0; 16], now),
                status: Status::Malformed,
                audited: None,
            };
        }
    };
    let (req, doctor_key) = req;
    let h = req.header;
    let emergency = h.kind == KIND_EMERGENCY;
    let what = if emergency {
        "emergency request"
    } else {
        "responsible-doctor request"
    };
    let cred_id = hex::encode(&h.grant_id);
    let refuse = |status: Status, why: Option<String>| Decision {
        response: refusal(status, h.grant_id, h.nonce, now),
        status,
        audited: why.map(|w| Audited {
            event: Event::Refuse,
            grant: cred_id.clone(),
            record: h.record_id,
            detail: format!("{what} refused: {w}"),
        }),
    };
    let proved = open_auth(
        state.identity(),
        &doctor_key,
        &req.enc,
        ROLE_REQUEST_INFO,
        &req.proof,
        &req.proof_aad(),
    )
    .is_ok();
    if !proved {
        // A stranger presenting someone's certificate: not audited (the
        // certificate is no secret). A relayed emergency request: audited.
        let why = emergency.then(|| {
            format!(
                "not presented by the certified doctor's key {} (relayed or copied)",
                doctor_key.to_text()
            )
        });
        return refuse(Status::Unauthorised, why);
    }
    let Some(roles) = state.roles() else {
        return refuse(Status::Unavailable, Some("the gate has no pins".into()));
    };
    if now.abs_diff(h.sent_at) > super::MAX_SKEW_S {
        return refuse(Status::Stale, Some(Status::Stale.name().into()));
    }
    if !state.replays().first_use(&h.nonce, h.sent_at, now) {
        return refuse(Status::Replayed, Some(Status::Replayed.name().into()));
    }
    let patient = state.identity().public();
    let (event, detail) = if emergency {
        let v = match verify_emergency(req.credential, roles.pins, now) {
            Ok(v) => v,
            Err(e) => {
                let status = match e {
                    VaultError::Institution(InstitutionError::EmergencyExpired { .. }) => {
                        Status::Expired
                    }
                    VaultError::Institution(InstitutionError::EmergencyNotYetValid { .. }) => {
                        Status::NotYetValid
                    }
                    _ => Status::Denied,
                };
                return refuse(status, Some(e.to_string()));
            }
        };
        if !v.covers(&h.record_id, Some(&patient.0)) {
            let scope = match &v.scope {
                EmergencyScope::Records(_) => "it names other records",
                EmergencyScope::Patient(_) => "it names another patient",
            };
            return refuse(
                Status::Denied,
                Some(format!(
                    "record not covered ({scope}); {}",
                    emergency_detail(&v)
                )),
            );
        }
        // Used once per record: admitted and persisted before releasing.
        let mut once = v.clone();
        once.nonce = per_record_nonce(&v.nonce, &h.record_id);
        if let Err(e) = (roles.admit)(&once, now) {
            let status = match e {
                VaultError::Institution(InstitutionError::Replayed { .. }) => Status::Replayed,
                _ => Status::Unavailable,
            };
            return refuse(
                status,
                Some(format!("{e} for this record; {}", emergency_detail(&v))),
            );
        }
        (Event::EmergencyAccess, emergency_detail(&v))
    } else {
        let d = match verify(req.credential, roles.pins, now) {
            Ok(d) => d,
            Err(e) => return refuse(Status::Denied, Some(e.to_string())),
        };
        if d.role != Role::Responsible {
            return refuse(
                Status::Denied,
                Some(format!(
                    "the certificate's role is {}, not responsible; {}",
                    d.role.name(),
                    d.audit_detail()
                )),
            );
        }
        let named = roles
            .pins
            .responsible()
            .is_some_and(|r| r.institution == d.institution && r.doctor == d.doctor);
        if !named {
            return refuse(
                Status::Denied,
                Some(format!(
                    "not the responsible doctor the patient named; {}",
                    d.audit_detail()
                )),
            );
        }
        (
            Event::Use,
            format!("released to the responsible doctor: {}", d.audit_detail()),
        )
    };
    let released = (|| -> Result<Vec<u8>, VaultError> {
        // The responsible doctor and emergency care are in the patient's
        // trust area (paper 004 Fig. 2): the header is released as is.
        let m = material(&h.record_id)?;
        super::seal_release(state, &doctor_key, &h, h.record_id, now, &m)
    })();
    match released {
        Ok(response) => Decision {
            response,
            status: Status::Released,
            audited: Some(Audited {
                event,
                grant: cred_id.clone(),
                record: h.record_id,
                detail,
            }),
        },
        Err(e) => refuse(
            Status::Unavailable,
            Some(format!("{e}; admitted: {detail}")),
        ),
    }
}

/// The replay-set nonce of one record's use of an emergency request.
fn per_record_nonce(nonce: &[u8; 16], record: &RecordId) -> [u8; 16] {
    let mut b = REPLAY_DOMAIN.to_vec();
    b.extend_from_slice(nonce);
    b.extend_from_slice(&record.0);
    crate::institution::short_id(&b)
}

/// Opens the gate's answer to a kind 2 or 3 request as the certified
/// doctor: the release must answer this request, be sealed by the pinned
/// patient key to `identity`, and hold `record`'s material.
pub fn open_role_response(
    response: &[u8],
    request: &RequestHeader,
    patient: &RecipientKey,
    identity: &Identity,
) -> Result<RecoveryMaterial, VaultError> {
    let r = Response::parse(response)?;
    if r.header.nonce != request.nonce || r.header.grant_id != request.grant_id {
        return Err(VaultError::GateAnswer {
            reason: "the response answers another request",
        });
    }
    let Some((enc, ct)) = r.sealed else {
        return Err(VaultError::GateRefused {
            status: r.header.status.name(),
            gate_time: r.header.gate_time,
        });
    };
    let mut aad = r.header.to_bytes();
    aad.extend_from_slice(&request.to_bytes());
    let plain = open_auth(identity, patient, &enc, RELEASE_INFO, ct, &aad).map_err(|_| {
        VaultError::GateAnswer {
            reason: "the released material was not sealed by the patient's key to us",
        }
    })?;
    let m = RecoveryMaterial::from_bytes(&plain)?;
    if m.record_id != request.record_id || r.header.record_id != request.record_id {
        return Err(VaultError::GateAnswer {
            reason: "the released material is for another record",
        });
    }
    Ok(m)
}
