//! # aorta-enclave — the trusted boundary
//!
//! This crate owns everything that decides *who may hold a stream key*:
//!
//! * the **evidence format** ([`evidence`]): a versioned binary container that
//!   binds a fresh worker X25519 public key and a verifier-chosen nonce
//!   (through the 64-byte *report data*, [`evidence::EvidenceClaims::report_data`])
//!   to a measurement of the worker;
//! * the **producers** of evidence ([`attest`]): `sim` (a local Ed25519
//!   platform key — **not hardware-protected**, for development and CI), Intel
//!   TDX and AMD SEV-SNP through Linux `configfs-tsm` ([`attest::tsm`]), and
//!   Intel SGX through Gramine's `/dev/attestation` ([`attest::gramine`]);
//! * the **verifier** ([`verify`]): policy checks plus Intel DCAP quote
//!   verification (SGX and TDX) with `dcap-qvl` and AMD SEV-SNP report
//!   verification (VCEK/VLEK chain to AMD roots pinned in aorta) with `ring`, offline
//!   at a given time. Its
//!   only success value is an [`verify::AttestedWorker`] carrying the
//!   zero-sized proof [`verify::AttestationVerified`], which no other module
//!   can construct;
//! * **key release** ([`keywrap`]): HPKE (RFC 9180, DHKEM(X25519, HKDF-SHA256),
//!   HKDF-SHA256, ChaCha20-Poly1305) sealing of a [`keywrap::KeyBundle`] to an
//!   [`verify::AttestedWorker`] — there is no way to wrap keys to a public key
//!   that has not been attested;
//! * the **worker protocol** ([`wire`], [`worker`]): the narrow,
//!   length-prefixed, versioned messages between the untrusted host and the
//!   worker, and between the worker and the key broker, the worker's key
//!   pair and the frame-opening interface (the worker's protocol states and
//!   broker client are `aorta-worker`'s);
//! * the **upload frame opener** ([`upload`]): opens aorta device upload
//!   frames inside the worker with the group keys the broker released.
//!
//! Every byte format here (evidence, worker-protocol messages, key bundles)
//! decodes through the one bounds-checked reader, `aorta_base::codec`, and
//! has a fuzz entry point in the hidden `fuzzing` module. Refusal codes come
//! from the one registry, `aorta_crypto::refusal`.
//!
//! It must never: log or `Debug`-print key bytes or plaintext samples, accept
//! evidence without checking the nonce, or fall back silently from a hardware
//! backend to `sim`. It implements no cipher, hash or KDF itself.
//!
//! ## Example: sim attestation and key release
//!
//! ```
//! use aorta_enclave::attest::{Attester, SimAttester};
//! use aorta_enclave::evidence::{Backend, EvidenceClaims, Measurement, Nonce};
//! use aorta_enclave::keywrap::{KeyBundle, Secret32, open_bundle, seal_bundle};
//! use aorta_enclave::verify::{VerifierPolicy, verify};
//! use aorta_enclave::worker::WorkerKeypair;
//!
//! let platform = SimAttester::generate().unwrap();
//! let worker_key = WorkerKeypair::generate().unwrap();
//! let nonce = Nonce::random().unwrap();
//! let measurement = Measurement::of_worker(b"worker binary bytes", b"config");
//! let claims = EvidenceClaims {
//!     backend: Backend::Sim,
//!     nonce,
//!     worker_public_key: worker_key.public_bytes(),
//!     app_measurement: measurement,
//!     issued_at: 1_700_000_000,
//! };
//! let evidence = platform.attest(claims).unwrap();
//!
//! let mut policy = VerifierPolicy::default();
//! policy.allow_simulation = true;
//! policy.allowed_backends = vec![Backend::Sim];
//! policy.allowed_measurements = vec![measurement.as_bytes().to_vec()];
//! policy.sim_platform_keys = vec![platform.platform_public_key()];
//! let worker = verify(&evidence, &nonce, 1_700_000_010, &policy).unwrap();
//!
//! let mut bundle = KeyBundle::new("ward-a");
//! bundle.transport_keys.push(("ECG-0001".into(), Secret32::from_bytes([7; 32])));
//! let sealed = seal_bundle(&worker, &bundle).unwrap();
//! let opened = open_bundle(&worker_key, &evidence.claims, &sealed).unwrap();
//! assert_eq!(opened.transport_keys.len(), 1);
//! ```
#![deny(missing_docs)]

pub mod attest;
pub mod evidence;
pub mod keywrap;
pub mod upload;
pub mod verify;
pub mod wire;
pub mod worker;

/// Fuzz entry points, one per byte format this crate decodes: each decodes
/// arbitrary bytes and, when they decode, checks that re-encoding gives them
/// back exactly. None panics on any input except on a broken round trip
/// (the bug a fuzzer looks for). Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    aorta_base::fuzz_entry_points! {
        /// Attestation evidence ([`crate::evidence::Evidence`]).
        evidence: crate::evidence::Evidence;

        /// One framed worker-protocol message ([`crate::wire::Message`]).
        message: crate::wire::Message;

        /// A plaintext key bundle ([`crate::keywrap::KeyBundle`]).
        key_bundle: crate::keywrap::KeyBundle;
    }
}

pub use evidence::{Backend, Evidence, EvidenceClaims, Measurement, Nonce};
pub use verify::{AttestationVerified, AttestedWorker, Refusal, VerifierPolicy};

/// The plain warning every surface (CLI, logs, worker status) prints for the
/// `sim` backend.
pub const SIM_WARNING: &str = "SIMULATION: the `sim` backend is NOT hardware-protected; \
the host owner can read every key and sample in this worker. Development and CI only.";
