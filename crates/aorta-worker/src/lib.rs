//! # aorta-worker — the analysis worker step
//!
//! This crate owns everything one attested analysis worker does between the
//! server's frame log and the clinicians:
//!
//! - [`client`] — the worker's protocol states as types (`Unattested` →
//!   `AwaitingKeys` → `Ready`), the key-broker client
//!   ([`client::attest_to_broker`]) and the host-facing message loop
//!   ([`client::Ready::serve`]);
//! - [`attest`] — attesting this process: pick the evidence backend, measure
//!   this binary with its [`config::StreamConfig`], attest to the key broker
//!   and receive the assignment's keys ([`attest::attest`]);
//! - [`frames`] — [`frames::SecureFrames`], opening sealed device frames
//!   inside the worker with the released keys (the engine's `FrameOpen`);
//! - [`seal`] — sealing results to each subscriber
//!   ([`seal::SubscriberSealer`]) and checkpoints under the state key
//!   ([`seal::StateKeySealer`]);
//! - [`server`] — the transport to an `aorta server` over the one API
//!   contract (`aorta-api`): the log, results and checkpoint stores of a
//!   worker ([`server::RemoteLog`], [`server::RemoteResults`],
//!   [`server::RemoteCheckpoints`]);
//! - [`run`] — the worker loops as library functions: [`run::run_worker`]
//!   over a server's log, [`run::stream`] (attest, then run the ECG job until
//!   stopped) and the typed reports the CLI prints;
//! - [`cluster`] — the worker in cluster mode: partitions of the JetStream
//!   frame stream shared between workers by leases, one job per owned
//!   partition, checkpoints in JetStream KV ([`cluster::stream_cluster`]);
//! - [`clinician`] — fetching and opening the results sealed to one
//!   subscriber, typed ([`clinician::OpenedResult`]).
//!
//! The engine (windows, operators, pipeline, stores) is `aorta-stream`'s; the
//! cryptography is `aorta-crypto`'s and `aorta-enclave`'s. This crate never
//! logs key bytes or plaintext samples, never retries a broker refusal, and
//! never writes an unsealed result or checkpoint to the server.
#![deny(missing_docs)]

pub mod attest;
pub mod client;
pub mod clinician;
pub mod cluster;
pub mod config;
pub mod frames;
pub mod run;
pub mod seal;
pub mod server;

use aorta_stream::StreamError;

/// Errors of the worker, split by who is to blame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    /// Our configuration: a bad flag, configuration file, token, CA file or
    /// backend choice.
    #[error("configuration: {0}")]
    Config(String),
    /// The network: the server or broker could not be reached or the
    /// connection broke.
    #[error("network: {what}")]
    Network {
        /// What was being done.
        what: String,
        /// The transport's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The peer protocol: the server or the broker answered something wrong
    /// (an error status, a malformed body, a bundle for another assignment).
    #[error("peer: {0}")]
    Peer(String),
    /// The key broker refused to release keys (a policy decision).
    #[error("refused by the key broker (code {code}): {reason}")]
    Refused {
        /// Refusal code.
        code: u16,
        /// Reason.
        reason: String,
    },
    /// This platform could not produce attestation evidence.
    #[error("attestation: {0}")]
    Attestation(String),
    /// The engine or a local store failed (I/O, corrupt data).
    #[error(transparent)]
    Storage(StreamError),
    /// A bug of ours: an invariant broke.
    #[error("internal error: {0}")]
    Internal(String),
}

impl WorkerError {
    /// True for failures a retry may cure (network, peer answers, storage,
    /// and attestation: a TEE device file can be busy); never for
    /// configuration errors, refusals or our bugs.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            WorkerError::Network { .. }
                | WorkerError::Peer(_)
                | WorkerError::Storage(_)
                | WorkerError::Attestation(_)
        )
    }
}

impl From<StreamError> for WorkerError {
    /// Recovers a worker error a store reported through the engine.
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Store(inner) => match inner.downcast::<WorkerError>() {
                Ok(w) => *w,
                Err(other) => WorkerError::Storage(StreamError::Store(other)),
            },
            StreamError::Internal(m) => WorkerError::Internal(m),
            e => WorkerError::Storage(e),
        }
    }
}

impl From<WorkerError> for StreamError {
    /// Carries a worker error through the engine's store traits.
    fn from(e: WorkerError) -> Self {
        match e {
            WorkerError::Storage(s) => s,
            e => StreamError::Store(Box::new(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_errors_survive_the_engine() {
        let e: StreamError = WorkerError::Peer("bad answer".into()).into();
        assert!(matches!(e, StreamError::Store(_)));
        assert!(matches!(WorkerError::from(e), WorkerError::Peer(m) if m == "bad answer"));
        let e = WorkerError::from(StreamError::Malformed("x".into()));
        assert!(matches!(e, WorkerError::Storage(StreamError::Malformed(_))));
        assert!(e.is_transient());
        assert!(!WorkerError::Config("x".into()).is_transient());
        assert!(
            !WorkerError::Refused {
                code: 1,
                reason: String::new()
            }
            .is_transient()
        );
    }
}
