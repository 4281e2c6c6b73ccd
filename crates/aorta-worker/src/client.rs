//! The worker's protocol states as types, the key-broker client and the
//! host-facing message loop (`docs/worker-protocol.md`).
//!
//! ```text
//! Unattested ──attest_to_broker──▶ Ready ──serve(host)──▶ (zeroized on drop)
//!      │                              ▲
//!      └─ attest(nonce) ▶ AwaitingKeys ┘ receive_keys(sealed)
//! ```
//! Each transition consumes the previous state, so a worker cannot serve
//! frames before it holds keys, nor attest twice with one key pair.
//!
//! Key bytes live in `Secret32` (zeroized on drop) and opened samples in
//! zeroizing buffers that are wiped as soon as the frame is analysed.
//! Nothing the worker writes to the host contains key bytes or samples:
//! `Status` carries counts, `FrameDone` carries the serial, sequence and
//! sample count, `FrameRefused` a code and a fixed text.

use std::io::{Read, Write};

use aorta_enclave::attest::{AttestError, Attester};
use aorta_enclave::evidence::{Backend, Evidence, EvidenceClaims, Measurement, Nonce};
use aorta_enclave::keywrap::{KeyBundle, KeyWrapError, open_bundle};
use aorta_enclave::wire::{self, Message, Role, WireError};
use aorta_enclave::worker::{FRAME_NO_KEY, FrameOpener, WorkerFrame, WorkerKeypair};

/// Hardens the worker process where the OS allows it without `unsafe` in
/// aorta: marks it non-dumpable (`prctl(PR_SET_DUMPABLE, 0)` on Linux), so
/// it writes no core dump holding keys or samples and other processes of the
/// same user cannot `ptrace` it or read its `/proc/PID/mem`. (Root still
/// can on a non-TEE host; see docs/trust-model.md.)
pub fn harden_process() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)?;
    }
    Ok(())
}

/// State 1: a worker with a fresh key pair and a measurement, not yet attested.
#[derive(Debug)]
pub struct Unattested {
    keypair: WorkerKeypair,
    app_measurement: Measurement,
}

/// State 2: evidence produced for a nonce; waiting for the sealed key bundle.
#[derive(Debug)]
pub struct AwaitingKeys {
    keypair: WorkerKeypair,
    evidence: Evidence,
}

/// State 3: the worker holds the keys of its assignment.
#[derive(Debug)]
pub struct Ready {
    keys: KeyBundle,
    /// Transport key name → position in `keys.transport_keys` (first
    /// occurrence), so a frame's key is found in O(1) however many devices ×
    /// key indices the assignment has. Names only, no key bytes.
    transport_index: std::collections::HashMap<String, usize>,
    backend: Backend,
    app_measurement: Measurement,
}

impl Unattested {
    /// A worker with a fresh key pair.
    pub fn new(app_measurement: Measurement) -> Result<Self, aorta_base::random::RandomError> {
        Ok(Self {
            keypair: WorkerKeypair::generate()?,
            app_measurement,
        })
    }

    /// A worker with a given key pair (tests, vectors).
    pub fn with_keypair(keypair: WorkerKeypair, app_measurement: Measurement) -> Self {
        Self {
            keypair,
            app_measurement,
        }
    }

    /// Produces evidence for `nonce` at time `now` with `attester`.
    pub fn attest(
        self,
        attester: &dyn Attester,
        nonce: Nonce,
        now: u64,
    ) -> Result<AwaitingKeys, AttestError> {
        let claims = EvidenceClaims {
            backend: attester.backend(),
            nonce,
            worker_public_key: self.keypair.public_bytes(),
            app_measurement: self.app_measurement,
            issued_at: now,
        };
        let evidence = attester.attest(claims)?;
        Ok(AwaitingKeys {
            keypair: self.keypair,
            evidence,
        })
    }
}

impl AwaitingKeys {
    /// The evidence to send to the broker.
    pub fn evidence(&self) -> &Evidence {
        &self.evidence
    }

    /// Opens the broker's sealed bundle. The key pair is dropped (zeroized)
    /// afterwards: it served this one release only.
    pub fn receive_keys(self, sealed: &[u8]) -> Result<Ready, KeyWrapError> {
        let keys = open_bundle(&self.keypair, &self.evidence.claims, sealed)?;
        let mut transport_index = std::collections::HashMap::new();
        for (i, (name, _)) in keys.transport_keys.iter().enumerate() {
            transport_index.entry(name.clone()).or_insert(i);
        }
        Ok(Ready {
            keys,
            transport_index,
            backend: self.evidence.claims.backend,
            app_measurement: self.evidence.claims.app_measurement,
        })
    }
}

/// Why the worker could not obtain its keys from the broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Protocol or transport failure.
    #[error("broker channel: {0}")]
    Wire(#[from] WireError),
    /// Evidence could not be produced.
    #[error("attestation: {0}")]
    Attest(#[from] AttestError),
    /// The broker refused.
    #[error("the key broker refused (code {code}): {reason}")]
    Refused {
        /// Refusal code.
        code: u16,
        /// Reason.
        reason: String,
    },
    /// The sealed bundle did not open.
    #[error("key bundle: {0}")]
    KeyWrap(#[from] KeyWrapError),
    /// The bundle is not what was asked for.
    #[error("the broker released keys for assignment {got:?}, not {asked:?}")]
    WrongAssignment {
        /// Asked for.
        asked: String,
        /// Received.
        got: String,
    },
}

/// What the worker asks the broker for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRequest {
    /// Assignment name.
    pub assignment: String,
    /// Device serials.
    pub devices: Vec<String>,
    /// Subscriber ids.
    pub subscribers: Vec<String>,
}

/// The full client exchange over one broker connection: handshake, get a
/// nonce, attest, request keys, open them. The evidence is dated with the
/// challenge's time: a worker's own clock is set by the untrusted host and
/// means nothing, so freshness rests on the broker's nonce and clock.
pub fn attest_to_broker<S: Read + Write>(
    stream: &mut S,
    worker: Unattested,
    attester: &dyn Attester,
    request: &KeyRequest,
) -> Result<Ready, ClientError> {
    exchange(stream, worker, attester, &request.assignment, |evidence| {
        Message::KeyRequest {
            evidence,
            assignment: request.assignment.clone(),
            devices: request.devices.clone(),
            subscribers: request.subscribers.clone(),
        }
    })
}

/// [`attest_to_broker`] asking for key windows (`KeyWindowRequest`,
/// `docs/worker-protocol.md`, "Key windows"): `width` key indices of each
/// selected device, and all of the assignment's subscribers.
pub fn attest_to_broker_windowed<S: Read + Write>(
    stream: &mut S,
    worker: Unattested,
    attester: &dyn Attester,
    assignment: &str,
    width: u16,
    devices: wire::DeviceSelection,
) -> Result<Ready, ClientError> {
    exchange(stream, worker, attester, assignment, |evidence| {
        Message::KeyWindowRequest {
            evidence,
            assignment: assignment.to_owned(),
            width,
            devices,
            subscribers: Vec::new(),
        }
    })
}

/// Handshake, nonce, evidence, then `request(evidence)`; opens the answer.
fn exchange<S: Read + Write>(
    stream: &mut S,
    worker: Unattested,
    attester: &dyn Attester,
    assignment: &str,
    request: impl FnOnce(Vec<u8>) -> Message,
) -> Result<Ready, ClientError> {
    wire::handshake(stream, Role::Worker)?;
    // A broker that will not serve this connection (too many from this
    // source) answers `Hello` + `Refused` and closes at once: our write may
    // then fail while its refusal waits to be read, so read before failing.
    let sent = wire::write_message(stream, &Message::ChallengeRequest);
    let (nonce, issued_at) = match (sent, wire::expect_message(stream)) {
        (_, Ok(Message::Refused { code, reason })) => {
            return Err(ClientError::Refused { code, reason });
        }
        (Err(e), _) | (Ok(()), Err(e)) => return Err(e.into()),
        (Ok(()), Ok(Message::Challenge { nonce, issued_at })) => (nonce, issued_at),
        (Ok(()), Ok(other)) => {
            return Err(WireError::Unexpected {
                got: other.name(),
                expected: "Challenge",
            }
            .into());
        }
    };
    let awaiting = worker.attest(attester, nonce, issued_at)?;
    wire::write_message(stream, &request(awaiting.evidence().encode()))?;
    match wire::expect_message(stream)? {
        Message::KeyRelease { sealed } => {
            let ready = awaiting.receive_keys(&sealed)?;
            if ready.keys.assignment != assignment {
                return Err(ClientError::WrongAssignment {
                    asked: assignment.to_owned(),
                    got: ready.keys.assignment.clone(),
                });
            }
            Ok(ready)
        }
        Message::Refused { code, reason } => Err(ClientError::Refused { code, reason }),
        other => Err(WireError::Unexpected {
            got: other.name(),
            expected: "KeyRelease or Refused",
        }
        .into()),
    }
}

/// What [`Ready::serve`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServeSummary {
    /// Frames opened.
    pub frames: u64,
    /// Frames refused.
    pub refused: u64,
    /// Samples analysed.
    pub samples: u64,
}

impl Ready {
    /// The released keys.
    pub fn keys(&self) -> &KeyBundle {
        &self.keys
    }

    /// Whether the transport key entry `name` (e.g. `SERIAL/INDEX`) is held.
    pub fn holds(&self, name: &str) -> bool {
        self.transport_index.contains_key(name)
    }

    /// Takes over the device group keys of `other` (a later release to this
    /// worker, of the same assignment): each device `other` holds group
    /// keys of loses the ones held so far (its window moved) and gets
    /// `other`'s, with its slice length. Everything else of `other` (its
    /// state key, result-signing key, certificate and result keys) is
    /// dropped, zeroized: this worker keeps its first release's.
    pub fn take_device_keys(&mut self, other: Ready) -> Result<(), ClientError> {
        let mut other = other;
        if other.keys.assignment != self.keys.assignment {
            return Err(ClientError::WrongAssignment {
                asked: self.keys.assignment.clone(),
                got: other.keys.assignment.clone(),
            });
        }
        let device = |name: &str| name.split_once('/').map(|(d, _)| d.to_owned());
        let moved: std::collections::BTreeSet<String> = other
            .keys
            .transport_keys
            .iter()
            .filter_map(|(n, _)| device(n))
            .collect();
        self.keys
            .transport_keys
            .retain(|(n, _)| device(n).is_none_or(|d| !moved.contains(&d)));
        self.keys.transport_keys.extend(
            std::mem::take(&mut other.keys.transport_keys)
                .into_iter()
                .filter(|(n, _)| device(n).is_some()),
        );
        self.keys.slices.retain(|(d, _)| !moved.contains(d));
        self.keys
            .slices
            .extend(std::mem::take(&mut other.keys.slices));
        self.transport_index.clear();
        for (i, (name, _)) in self.keys.transport_keys.iter().enumerate() {
            self.transport_index.entry(name.clone()).or_insert(i);
        }
        Ok(())
    }

    /// The `Status` message for the host (counts only).
    pub fn status(&self) -> Message {
        Message::Status {
            backend: self.backend.code(),
            hardware_protected: self.backend.is_hardware(),
            measurement: self.app_measurement.0.to_vec(),
            transport_keys: u16::try_from(self.keys.transport_keys.len()).unwrap_or(u16::MAX),
            result_keys: u16::try_from(self.keys.result_keys.len()).unwrap_or(u16::MAX),
        }
    }

    /// Opens one sealed frame and analyses it with `analyse` (which sees the
    /// plaintext inside the worker only).
    pub fn process_frame(
        &self,
        opener: &dyn FrameOpener,
        frame: &[u8],
        analyse: &mut dyn FnMut(&WorkerFrame),
    ) -> Message {
        let name = match opener.key_name(frame) {
            Ok(s) => s,
            Err(e) => {
                return Message::FrameRefused {
                    code: e.code,
                    reason: e.reason,
                };
            }
        };
        let key = self
            .transport_index
            .get(&name)
            .and_then(|&i| self.keys.transport_keys.get(i))
            .map(|(_, k)| k);
        let Some(key) = key else {
            return Message::FrameRefused {
                code: FRAME_NO_KEY,
                reason: "no transport key released for this frame's device and key index".into(),
            };
        };
        match opener.open(frame, key) {
            Ok(opened) => {
                analyse(&opened);
                Message::FrameDone {
                    serial: opened.serial.clone(),
                    sequence: opened.sequence,
                    samples: opened.samples.len() as u64,
                }
                // `opened` drops here: samples zeroized.
            }
            Err(e) => Message::FrameRefused {
                code: e.code,
                reason: e.reason,
            },
        }
    }

    /// The host-facing loop: `Hello` both ways, our `Status`, then
    /// `SealedFrame` → `FrameDone`/`FrameRefused` until `Shutdown` or end of
    /// stream. Keys are zeroized when `self` drops after this returns.
    pub fn serve<R: Read, W: Write>(
        &self,
        opener: &dyn FrameOpener,
        input: &mut R,
        output: &mut W,
        analyse: &mut dyn FnMut(&WorkerFrame),
    ) -> Result<ServeSummary, WireError> {
        wire::write_message(
            output,
            &Message::Hello {
                version: wire::PROTOCOL_VERSION,
                role: Role::Worker,
            },
        )?;
        match wire::expect_message(input)? {
            Message::Hello { .. } => {}
            other => {
                return Err(WireError::Unexpected {
                    got: other.name(),
                    expected: "Hello",
                });
            }
        }
        wire::write_message(output, &self.status())?;
        let mut sum = ServeSummary::default();
        loop {
            match wire::read_message(input)? {
                None | Some(Message::Shutdown) => return Ok(sum),
                Some(Message::SealedFrame { frame }) => {
                    let reply = self.process_frame(opener, &frame, analyse);
                    match &reply {
                        Message::FrameDone { samples, .. } => {
                            sum.frames += 1;
                            sum.samples += samples;
                        }
                        _ => sum.refused += 1,
                    }
                    wire::write_message(output, &reply)?;
                }
                Some(other) => {
                    return Err(WireError::Unexpected {
                        got: other.name(),
                        expected: "SealedFrame or Shutdown",
                    });
                }
            }
        }
    }
}
