//! Sealing what leaves the worker: results to each subscriber, checkpoint
//! state under the worker state key (`aorta_crypto::results`,
//! `docs/results-format.md`).

use aorta_stream::StreamError;
use aorta_stream::job::{Records, ResultSealer, StateSealer};

use aorta_crypto::auth::{SignedResult, SigningKey, WorkerCert};
use aorta_enclave::worker::{RESULT_SIGNING_KEY_NAME, STATE_KEY_NAME};

use crate::WorkerError;
use crate::client::Ready;

/// The sealers of an attested worker for `assignment`, from the keys the
/// broker released: results to every released subscriber, signed with the
/// result-signing key the broker certified; checkpoints under the worker
/// state key. Also the certificate (to send with the results). A bundle
/// without a state key or a certified signing key is the broker's fault.
pub fn sealers(
    ready: &Ready,
    assignment: &str,
) -> Result<(SubscriberSealer, StateKeySealer, Vec<u8>), WorkerError> {
    let keys = ready.keys();
    let entry = |name: &str| {
        keys.transport_keys
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, k)| zeroize::Zeroizing::new(*k.expose()))
    };
    let state_key = entry(STATE_KEY_NAME).ok_or_else(|| {
        WorkerError::Peer(
            "the broker released no worker state key (is the broker an `aorta server` with a registry?)"
                .into(),
        )
    })?;
    let signer = signer(keys, entry(RESULT_SIGNING_KEY_NAME))?;
    let subscribers: Vec<(String, aorta_crypto::results::ClinicianPublic)> = keys
        .result_keys
        .iter()
        .map(|(id, k)| {
            (
                id.clone(),
                aorta_crypto::results::ClinicianPublic::from_bytes(*k.expose()),
            )
        })
        .collect();
    let mut results = SubscriberSealer::new(&subscribers)?;
    results.signer = Some(signer);
    results.id_key = Some(zeroize::Zeroizing::new(*state_key));
    Ok((
        results,
        StateKeySealer::new(&state_key, assignment),
        keys.certificate.clone(),
    ))
}

/// The worker's result signer: the certified key, checked against the
/// certificate beside it.
fn signer(
    keys: &aorta_enclave::keywrap::KeyBundle,
    seed: Option<zeroize::Zeroizing<[u8; 32]>>,
) -> Result<(SigningKey, [u8; 32]), WorkerError> {
    let missing = || {
        WorkerError::Peer(
            "the broker certified no result-signing key (upgrade the broker): results could not be verified"
                .into(),
        )
    };
    let seed = seed.ok_or_else(missing)?;
    if keys.certificate.is_empty() {
        return Err(missing());
    }
    let cert = WorkerCert::parse(&keys.certificate)
        .map_err(|e| WorkerError::Peer(format!("the broker's worker certificate: {e}")))?;
    let key = SigningKey::from_seed(&seed).map_err(|e| WorkerError::Internal(e.to_string()))?;
    if key.public() != cert.worker_key || cert.assignment != keys.assignment {
        return Err(WorkerError::Peer(
            "the broker's worker certificate does not certify the released key for this assignment"
                .into(),
        ));
    }
    Ok((key, cert.digest()))
}

/// Seals each result to every subscriber of the worker's assignment. One
/// result session per subscriber per worker run: its envelope is stored
/// once, under [`session_id_key`], before the first result it seals; results
/// are stored under `SUBSCRIBER/ID`.
pub struct SubscriberSealer {
    sessions: Vec<(aorta_crypto::results::ResultSession, Option<Vec<u8>>)>,
    /// Signs every record (`aorta_crypto::auth::SignedResult`) with the
    /// certified key; `None` only in tests of sealing alone.
    signer: Option<(SigningKey, [u8; 32])>,
    /// Makes stored ids opaque ([`aorta_crypto::results::opaque_id`]): the
    /// worker state key.
    id_key: Option<zeroize::Zeroizing<[u8; 32]>>,
}

/// What a sealed result holds when its stored id is opaque: the result's
/// own id (`serial/start/end`) and the result.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifiedResult<R> {
    /// `serial/start/end`.
    pub id: String,
    /// The result.
    pub result: R,
}

impl SubscriberSealer {
    /// Sessions for `subscribers` (id, clinician public key).
    pub fn new(
        subscribers: &[(String, aorta_crypto::results::ClinicianPublic)],
    ) -> Result<Self, WorkerError> {
        let mut sessions = Vec::with_capacity(subscribers.len());
        for (id, pk) in subscribers {
            let (s, envelope) = aorta_crypto::results::ResultSession::open_new(id, pk)
                .map_err(|e| WorkerError::Internal(format!("result session for {id}: {e}")))?;
            sessions.push((s, Some(envelope)));
        }
        Ok(SubscriberSealer {
            sessions,
            signer: None,
            id_key: None,
        })
    }

    /// Device `serial`'s erase token (`docs/erasure.md`): what lets the
    /// host recognise the stored ids of that device's results. `None`
    /// without opaque ids (tests of sealing alone).
    pub fn erase_token(&self, serial: &str) -> Option<aorta_crypto::results::EraseToken> {
        self.id_key
            .as_ref()
            .map(|k| aorta_crypto::results::EraseToken::derive(k, serial))
    }

    /// Number of subscribers.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// True without subscribers.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}

/// The store id of a session envelope: `SUBSCRIBER/@session/SESSION_ID`.
pub fn session_id_key(subscriber: &str, session: &[u8]) -> String {
    format!("{subscriber}/@session/{}", aorta_base::hex::encode(session))
}

impl ResultSealer for SubscriberSealer {
    fn seal(&mut self, id: &str, json: &[u8], out: &mut Records) -> Result<(), StreamError> {
        let start = out.len();
        for (s, envelope) in &mut self.sessions {
            let sub = s.subscriber_id().to_owned();
            if let Some(env) = envelope.take() {
                out.push((session_id_key(&sub, &s.session_id()), env));
            }
            let sealed = match &self.id_key {
                Some(k) => {
                    let stored = aorta_crypto::results::opaque_id(k, id);
                    let result: serde_json::Value = serde_json::from_slice(json)
                        .map_err(|e| WorkerError::Internal(format!("result {id}: {e}")))?;
                    let body = serde_json::to_vec(&IdentifiedResult {
                        id: id.to_owned(),
                        result,
                    })
                    .map_err(|e| WorkerError::Internal(format!("result {id}: {e}")))?;
                    let sealed = s
                        .seal(&stored, &body)
                        .map_err(|e| WorkerError::Internal(format!("sealing result {id}: {e}")))?;
                    (stored, sealed)
                }
                None => (
                    id.to_owned(),
                    s.seal(id, json)
                        .map_err(|e| WorkerError::Internal(format!("sealing result {id}: {e}")))?,
                ),
            };
            out.push((format!("{sub}/{}", sealed.0), sealed.1));
        }
        if let Some((key, digest)) = &self.signer {
            for (id, payload) in out.iter_mut().skip(start) {
                *payload = SignedResult::sign(key, *digest, id, payload);
            }
        }
        Ok(())
    }
}

/// Seals checkpoint state under the worker state key the broker released,
/// bound to the assignment name.
pub struct StateKeySealer {
    key: zeroize::Zeroizing<[u8; 32]>,
    context: Vec<u8>,
}

impl StateKeySealer {
    /// A sealer with `key`, for `assignment`.
    pub fn new(key: &[u8; 32], assignment: &str) -> Self {
        StateKeySealer {
            key: zeroize::Zeroizing::new(*key),
            context: format!("aorta worker checkpoint/{assignment}").into_bytes(),
        }
    }
}

impl StateSealer for StateKeySealer {
    fn seal(&self, state: &[u8]) -> Result<Vec<u8>, StreamError> {
        aorta_crypto::results::seal_state(&self.key, &self.context, state)
            .map_err(|e| WorkerError::Internal(format!("sealing the checkpoint: {e}")).into())
    }
    fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, StreamError> {
        // The server holds the sealed state: one that does not open was
        // altered or is another assignment's.
        aorta_crypto::results::open_state(&self.key, &self.context, sealed)
            .map(|z| z.to_vec())
            .map_err(|e| WorkerError::Peer(format!("opening the checkpoint: {e}")).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aorta_stream::checkpoint::{Checkpoint, CheckpointStore, FileCheckpointStore};
    use aorta_stream::job::ProtectedCheckpoints;

    /// The host stores the checkpoint: it can hand back an older one whole,
    /// but it cannot move the log position of the one it holds (before:
    /// the clear `log_offset` was trusted, so the host could make the
    /// worker skip or re-analyse frames).
    #[test]
    fn the_host_cannot_move_the_checkpoint_in_the_log() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("checkpoint");
        let mut store = ProtectedCheckpoints::new(
            FileCheckpointStore::new(&path).unwrap(),
            StateKeySealer::new(&[7u8; 32], "ward-a"),
        );
        store
            .save(&Checkpoint::new(4096, b"{\"a\":1}".to_vec()).unwrap())
            .unwrap();
        let back = store.load().unwrap().unwrap();
        assert_eq!((back.log_offset, back.state.as_str()), (4096, "{\"a\":1}"));
        // The host rewrites the document with the same sealed state and
        // another offset.
        let mut host = FileCheckpointStore::new(&path).unwrap();
        let doc = host.load().unwrap().unwrap();
        for off in [0, 4095, 4097, u64::MAX] {
            host.save(&Checkpoint::new(off, doc.state.clone().into_bytes()).unwrap())
                .unwrap();
            assert!(store.load().is_err(), "offset {off} accepted");
        }
        // Another assignment's key does not open it either.
        host.save(&doc).unwrap();
        let other = ProtectedCheckpoints::new(
            FileCheckpointStore::new(&path).unwrap(),
            StateKeySealer::new(&[7u8; 32], "ward-b"),
        );
        assert!(other.load().is_err());
        assert_eq!(store.load().unwrap().unwrap().log_offset, 4096);
    }
}
