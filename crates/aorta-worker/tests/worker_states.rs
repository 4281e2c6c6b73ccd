//! The worker's states and its host loop: a key bundle only opens for the
//! attestation it answers; the host loop refuses protocol abuse and never
//! panics on hostile bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed unwrap, panic or out-of-range index is the failure report"
)]

use aorta_enclave::attest::SimAttester;
use aorta_enclave::evidence::{Backend, Measurement, Nonce};
use aorta_enclave::keywrap::{KeyBundle, KeyWrapError, Secret32, seal_bundle};
use aorta_enclave::verify::{VerifierPolicy, verify};
use aorta_enclave::wire::{self, Message, PROTOCOL_VERSION, Role, WireError};
use aorta_enclave::worker::{FrameOpener, FrameRefusal, WorkerFrame, WorkerKeypair};
use aorta_worker::client::{Ready, Unattested};
use proptest::prelude::*;

const NOW: u64 = 1_800_000_000;

fn policy(p: &SimAttester, m: Measurement) -> VerifierPolicy {
    VerifierPolicy {
        allowed_backends: vec![Backend::Sim],
        allow_simulation: true,
        allowed_measurements: vec![m.0.to_vec()],
        sim_platform_keys: vec![p.platform_public_key()],
        ..VerifierPolicy::default()
    }
}

fn ready() -> Ready {
    let p = SimAttester::from_seed(&[1; 32]);
    let m = Measurement([2; 32]);
    let nonce = Nonce([3; 32]);
    let w = Unattested::new(m).unwrap().attest(&p, nonce, NOW).unwrap();
    let att = verify(w.evidence(), &nonce, NOW, &policy(&p, m)).unwrap();
    let mut b = KeyBundle::new("a");
    b.transport_keys
        .push(("ECG-1".into(), Secret32::from_bytes([9; 32])));
    let sealed = seal_bundle(&att, &b).unwrap();
    w.receive_keys(&sealed).unwrap()
}

#[test]
fn a_bundle_opens_only_for_its_own_attestation() {
    let p = SimAttester::from_seed(&[1; 32]);
    let m = Measurement([2; 32]);
    // Two workers attest; the bundle sealed for the first does not open in the second.
    let n1 = Nonce([3; 32]);
    let n2 = Nonce([4; 32]);
    let w1 = Unattested::new(m).unwrap().attest(&p, n1, NOW).unwrap();
    let w2 = Unattested::new(m).unwrap().attest(&p, n2, NOW).unwrap();
    let a1 = verify(w1.evidence(), &n1, NOW, &policy(&p, m)).unwrap();
    let sealed = seal_bundle(&a1, &KeyBundle::new("a")).unwrap();
    assert_eq!(
        w2.receive_keys(&sealed).unwrap_err(),
        KeyWrapError::OpenFailed
    );
    // Same key pair, other attestation (nonce): the associated data differs.
    let kp = WorkerKeypair::from_ikm(&[5; 32]);
    let w3 = Unattested::with_keypair(kp, m).attest(&p, n2, NOW).unwrap();
    let kp = WorkerKeypair::from_ikm(&[5; 32]);
    let w4 = Unattested::with_keypair(kp, m).attest(&p, n1, NOW).unwrap();
    let a3 = verify(w3.evidence(), &n2, NOW, &policy(&p, m)).unwrap();
    let sealed = seal_bundle(&a3, &KeyBundle::new("a")).unwrap();
    assert_eq!(
        w4.receive_keys(&sealed).unwrap_err(),
        KeyWrapError::OpenFailed
    );
    // Truncated and flipped bundles.
    let mut flipped = sealed.clone();
    flipped[40] ^= 1;
    assert!(w3.evidence().claims.backend == Backend::Sim);
    assert_eq!(
        w1.receive_keys(&sealed[..10]).unwrap_err(),
        KeyWrapError::Truncated { len: 10 }
    );
    assert_eq!(
        w3.receive_keys(&flipped).unwrap_err(),
        KeyWrapError::OpenFailed
    );
}

struct NeverOpens;
impl FrameOpener for NeverOpens {
    fn serial(&self, _f: &[u8]) -> Result<String, FrameRefusal> {
        Ok("ECG-1".into())
    }
    fn open(&self, _f: &[u8], _k: &Secret32) -> Result<WorkerFrame, FrameRefusal> {
        Err(FrameRefusal {
            code: 202,
            reason: "bad tag".into(),
        })
    }
}

fn serve(
    input: Vec<u8>,
) -> (
    Result<aorta_worker::client::ServeSummary, WireError>,
    Vec<u8>,
) {
    static READY: std::sync::OnceLock<Ready> = std::sync::OnceLock::new();
    let r = READY.get_or_init(ready);
    let mut out = Vec::new();
    let res = r.serve(
        &NeverOpens,
        &mut std::io::Cursor::new(input),
        &mut out,
        &mut |_| {},
    );
    (res, out)
}

fn hello() -> Vec<u8> {
    Message::Hello {
        version: PROTOCOL_VERSION,
        role: Role::Host,
    }
    .encode()
    .unwrap()
}

#[test]
fn host_loop_refuses_protocol_abuse() {
    // No Hello first.
    let (r, _) = serve(Message::Shutdown.encode().unwrap());
    assert!(matches!(r, Err(WireError::Unexpected { .. })));
    // A broker message on the host channel.
    let mut i = hello();
    i.extend(Message::ChallengeRequest.encode().unwrap());
    let (r, _) = serve(i);
    assert!(matches!(r, Err(WireError::Unexpected { .. })));
    // Truncated frame message.
    let mut i = hello();
    let f = Message::SealedFrame { frame: vec![1; 50] }
        .encode()
        .unwrap();
    i.extend_from_slice(&f[..20]);
    let (r, _) = serve(i);
    assert!(matches!(r, Err(WireError::Truncated)));
    // A refused frame is answered and counted, then a clean end.
    let mut i = hello();
    i.extend(
        Message::SealedFrame { frame: vec![1; 50] }
            .encode()
            .unwrap(),
    );
    let (r, out) = serve(i);
    assert_eq!(r.unwrap().refused, 1);
    let mut c = std::io::Cursor::new(out);
    let msgs: Vec<_> = std::iter::from_fn(|| wire::read_message(&mut c).unwrap()).collect();
    assert!(matches!(msgs[2], Message::FrameRefused { code: 202, .. }));
}

proptest! {
    #[test]
    fn hostile_host_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut i = hello();
        i.extend(b);
        let _ = serve(i);
    }
}
