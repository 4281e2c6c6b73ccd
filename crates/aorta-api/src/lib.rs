//! # aorta-api — the one HTTP API contract
//!
//! This crate owns the shape of every body that crosses `aorta server`'s
//! HTTPS API (`docs/server-api.md`), for both sides: the server serializes
//! what it answers and deserializes what it accepts with these types, and
//! the device uplink, the worker and the clinician's reader use the very same
//! types. Bodies the server reads refuse unknown fields.
//!
//! - `POST /v1/frames` → [`FrameAck`] (or an [`ErrorBody`]);
//! - `GET /v1/log` ([`LogQuery`]) → length-prefixed records
//!   ([`encode_log_records`], [`decode_log_records`]) with the
//!   [`NEXT_HEADER`] and [`END_HEADER`] headers;
//! - `POST /v1/results` [`WorkerBatch`] → [`BatchAnswer`];
//! - `GET /v1/results` ([`ResultsQuery`]) → [`ResultsPage`] of [`ResultItem`];
//! - `GET /v1/stats` → [`Stats`];
//! - `GET /v1/erasures` → [`ErasureList`]; `POST /v1/erasures` [`ErasureDone`]
//!   → [`ErasureAnswer`] (patient erasure, `docs/erasure.md`), announced
//!   on log answers by [`ERASURES_HEADER`];
//! - every refusal → [`ErrorBody`].
//!
//! The one body it does not define is the checkpoint document of `GET`/`PUT
//! /v1/checkpoint`: that is the engine's own storage format,
//! `aorta_stream::checkpoint::Checkpoint` (versioned, CRC-checked, state
//! sealed by the worker), which the server validates and stores as is.
//!
//! It also owns the one TLS client configuration every client uses:
//! [`client_tls_config`] trusts exactly the certificates of a CA file.
//!
//! It never does networking itself, never opens or seals a payload (result
//! bodies are opaque bytes here), and depends only on `aorta-base` (its
//! codec, for the log answer body).
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Errors of the contract's helpers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// A `GET /v1/log` body is not a sequence of length-prefixed records.
    #[error("log answer: {0}")]
    LogBody(&'static str),
    /// A result body is not base64.
    #[error("result {id}: body is not base64: {error}")]
    ResultBody {
        /// The result id.
        id: String,
        /// The decoding error.
        error: base64::DecodeError,
    },
    /// The CA file cannot be read.
    #[error("{}: {error}", path.display())]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The CA certificates are unusable (no PEM certificate, a bad one, or
    /// one rustls refuses as a root).
    #[error("CA certificate: {0}")]
    Ca(String),
    /// rustls refused the client configuration.
    #[error("TLS: {0}")]
    Tls(String),
}

/// A JSON error body, the answer of every refusal:
/// `{"error": name, "detail": text}`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    /// Stable snake_case name.
    pub error: String,
    /// Human-readable detail.
    pub detail: String,
}

/// `POST /v1/frames` answer: the frame is durable in the log.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FrameAck {
    /// Device serial of the stored frame.
    pub serial: String,
    /// Its sequence.
    pub sequence: u64,
    /// Log offset of the frame.
    pub offset: u64,
    /// True when this exact frame was already in the log (a retried upload).
    pub duplicate: bool,
    /// A `max_key_uses` renegotiation Offer for the device (lower-case hex
    /// of the `aorta_crypto::reneg::Offer` bytes), present when the server
    /// holds the registry and wants the device to renegotiate: the device
    /// answers it on `POST /v1/devices/reneg` (`docs/server-api.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reneg_offer: Option<String>,
}

/// Path of the renegotiation route (`POST`, query `serial=`, body one
/// `aorta_crypto::reneg` message, `application/octet-stream`).
pub const RENEG_PATH: &str = "/v1/devices/reneg";

/// Header of a `POST /v1/frames` request: the device's Ed25519 signature
/// of the frame (`aorta_crypto::auth::frame_message`), 128 lower-case hex
/// digits.
pub const SIGNATURE_HEADER: &str = "aorta-signature";
/// Header of a `GET /v1/results` request: the clinician (subscriber id)
/// reading.
pub const CLINICIAN_HEADER: &str = "aorta-clinician";
/// Header of a `GET /v1/results` request: the request time, unix seconds.
pub const TIME_HEADER: &str = "aorta-time";
/// Most a signed read request's time may differ from the server's clock.
pub const MAX_CLOCK_SKEW_S: u64 = 300;
/// Header of a `GET /v1/log` answer: the offset to read from next.
pub const NEXT_HEADER: &str = "x-aorta-next";
/// Header of a `GET /v1/log` answer: the durable end of the log.
pub const END_HEADER: &str = "x-aorta-end";

/// Query of `POST /v1/devices/reneg`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RenegQuery {
    /// The device's serial.
    pub serial: String,
}

/// Query of `GET /v1/log`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Offset to read from.
    pub from: u64,
    /// Most records (the server caps it).
    #[serde(default = "default_max")]
    pub max: usize,
    /// Longest wait for new records, ms (the server caps it).
    #[serde(default)]
    pub wait_ms: u64,
}

fn default_max() -> usize {
    1024
}

/// The body of a `GET /v1/log` answer: each record as `len u32 LE ‖ bytes`
/// (the server sends records of at most `aorta_stream::log::MAX_RECORD`
/// bytes; a reader is bounded by the body it received).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogRecords<'a>(pub Vec<&'a [u8]>);

impl Encode for LogRecords<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.0.iter().map(|r| r.len() + 4).sum());
        for r in &self.0 {
            let len = u32::try_from(r.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(r);
        }
    }
}

impl<'a> Decode<'a> for LogRecords<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let mut recs = Vec::new();
        while !r.is_empty() {
            let len = r.u32_le("record length")? as usize;
            recs.push(r.take(len, "record")?);
        }
        Ok(LogRecords(recs))
    }
}

/// The body of a `GET /v1/log` answer holding `records`.
pub fn encode_log_records(records: &[Vec<u8>]) -> Vec<u8> {
    LogRecords(records.iter().map(Vec::as_slice).collect()).to_bytes()
}

/// The records of a `GET /v1/log` answer body.
pub fn decode_log_records(body: &[u8]) -> Result<Vec<Vec<u8>>, ApiError> {
    match LogRecords::from_bytes(body) {
        Ok(LogRecords(recs)) => Ok(recs.into_iter().map(<[u8]>::to_vec).collect()),
        Err(DecodeError::Short {
            field: "record length",
            ..
        }) => Err(ApiError::LogBody("truncated length")),
        Err(_) => Err(ApiError::LogBody("truncated record")),
    }
}

/// Fuzzing entry point over the API's one binary body: decodes arbitrary
/// bytes and, when they decode, checks that encoding gives them back
/// exactly. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    aorta_base::fuzz_entry_points! {
        /// A `GET /v1/log` answer body.
        log_body: crate::LogRecords<'_>;
    }
}

/// One result in a worker batch or a read.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResultItem {
    /// Deterministic id (`subscriber/serial/start/end`, or a session
    /// envelope `subscriber/@session/ID`).
    pub id: String,
    /// Sealed payload, base64.
    pub body: String,
}

impl ResultItem {
    /// An item holding `payload`.
    pub fn new(id: &str, payload: &[u8]) -> Self {
        ResultItem {
            id: id.to_owned(),
            body: base64::engine::general_purpose::STANDARD.encode(payload),
        }
    }

    /// The payload bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, ApiError> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.body)
            .map_err(|error| ApiError::ResultBody {
                id: self.id.clone(),
                error,
            })
    }
}

/// A worker certificate as the API carries it (base64).
pub fn certificate_text(cert: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(cert)
}

/// The bytes of a certificate carried as [`certificate_text`].
pub fn certificate_bytes(text: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|error| ApiError::ResultBody {
            id: "certificate".into(),
            error,
        })
}

/// `POST /v1/results` body.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WorkerBatch {
    /// Results to store (idempotent by id).
    pub results: Vec<ResultItem>,
    /// Frame arrival → results durable, µs, for frames of this batch.
    #[serde(default)]
    pub latencies_us: Vec<i64>,
    /// Frames opened in this batch.
    #[serde(default)]
    pub opened: u64,
    /// Frames refused in this batch, by code.
    #[serde(default)]
    pub refused: BTreeMap<u16, u64>,
    /// The broker's certificate of the key that signed `results`
    /// (`aorta_crypto::auth::WorkerCert`), base64; required with results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
}

impl WorkerBatch {
    /// True when the batch carries nothing (no result, no progress).
    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
            && self.latencies_us.is_empty()
            && self.opened == 0
            && self.refused.is_empty()
    }
}

/// `POST /v1/results` answer.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchAnswer {
    /// Results newly stored.
    pub stored: u64,
    /// Results already present (replays after a restart).
    pub duplicates: u64,
}

/// Header of `GET /v1/log` answers: how many patient erasures wait for
/// the worker (absent when none).
pub const ERASURES_HEADER: &str = "x-aorta-erasures";

/// One patient erasure the worker has to carry out.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ErasureItem {
    /// The request's id (32 hex digits).
    pub id: String,
    /// The device serial whose patient is erased.
    pub serial: String,
}

/// `GET /v1/erasures` answer.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ErasureList {
    /// Pending requests, oldest first.
    pub erasures: Vec<ErasureItem>,
}

/// `POST /v1/erasures` body: the worker has dropped the device's state and
/// checkpointed; here is the device's erase token.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ErasureDone {
    /// The request's id.
    pub id: String,
    /// The device's erase token (`aorta_crypto::results::EraseToken`, 64
    /// hex digits).
    pub token: String,
}

/// `POST /v1/erasures` answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ErasureAnswer {
    /// The request's id.
    pub id: String,
    /// Stored results erased.
    pub results_erased: u64,
}

/// Query of `GET /v1/results`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ResultsQuery {
    /// Cursor: the `next` of the previous answer (0 = from the start).
    #[serde(default)]
    pub after: u64,
    /// Most results scanned (the server caps it).
    #[serde(default = "default_limit")]
    pub limit: usize,
    /// Only ids starting with this (e.g. `dr-a/` or `dr-a/SN-1/`).
    #[serde(default)]
    pub prefix: String,
    /// Long-poll: with nothing to answer, wait up to this many seconds for
    /// a result after the cursor (the server caps it at
    /// [`MAX_RESULTS_WAIT_S`]; 0 = answer at once).
    #[serde(default)]
    pub wait: u64,
}

/// Longest wait of one `GET /v1/results?wait=S` (the server also keeps it
/// 5 s under its request deadline).
pub const MAX_RESULTS_WAIT_S: u64 = 25;

fn default_limit() -> usize {
    1000
}

/// `GET /v1/results` answer.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ResultsPage {
    /// Matching results, in storage order: signed records
    /// (`aorta_crypto::auth::SignedResult`).
    pub results: Vec<ResultItem>,
    /// The worker certificates the page's results name, base64.
    #[serde(default)]
    pub certificates: Vec<String>,
    /// Cursor for the next call.
    pub next: u64,
}

/// `GET /v1/stats` answer.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
pub struct Stats {
    /// Frames appended to the log.
    pub frames_accepted: u64,
    /// Exact re-sends acknowledged again.
    pub frames_duplicate: u64,
    /// Ingest refusals by name.
    pub frames_refused: BTreeMap<String, u64>,
    /// Bytes in the log.
    pub log_end: u64,
    /// Log offset of the worker's last checkpoint.
    pub worker_offset: u64,
    /// Frames the workers opened.
    pub frames_opened: u64,
    /// Frames the workers refused, by code.
    pub frames_refused_by_worker: BTreeMap<u16, u64>,
    /// Results stored.
    pub results: u64,
    /// Results recomputed after a restart and ignored.
    pub results_duplicate: u64,
    /// Frames with a latency measurement.
    pub latency_count: u64,
    /// Median frame-arrival → results-durable latency, ms (`null` before
    /// any measurement).
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile of the same, ms (`null` before any measurement).
    pub latency_p99_ms: Option<f64>,
}

/// A rustls client configuration (ring provider, TLS 1.2/1.3, ALPN h2 then
/// http/1.1) trusting exactly the certificates in `ca_pem` (the server's
/// development certificate, or a private CA). No system roots.
pub fn client_tls_config(ca_pem: &[u8]) -> Result<rustls::ClientConfig, ApiError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| ApiError::Ca(format!("not a PEM certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ApiError::Ca(format!("certificate not usable as a root: {e}")))?;
    }
    if roots.is_empty() {
        return Err(ApiError::Ca("the CA file holds no PEM certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// [`client_tls_config`] over the PEM file `ca`.
pub fn client_tls_config_file(ca: &Path) -> Result<rustls::ClientConfig, ApiError> {
    let pem = std::fs::read(ca).map_err(|error| ApiError::CaFile {
        path: ca.to_path_buf(),
        error,
    })?;
    client_tls_config(&pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem() -> String {
        rcgen::generate_simple_self_signed(vec!["localhost".into()])
            .unwrap()
            .cert
            .pem()
    }

    #[test]
    fn tls_config_from_pem() {
        let c = pem();
        let cfg = client_tls_config(c.as_bytes()).unwrap();
        assert_eq!(
            cfg.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        // Two certificates in one file are both trusted.
        let both = format!("{c}{}", pem());
        assert!(client_tls_config(both.as_bytes()).is_ok());
        for bad in [
            &b""[..],
            b"not a certificate",
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            assert!(matches!(client_tls_config(bad), Err(ApiError::Ca(_))));
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cert.pem");
        assert!(matches!(
            client_tls_config_file(&p),
            Err(ApiError::CaFile { .. })
        ));
        std::fs::write(&p, &c).unwrap();
        assert!(client_tls_config_file(&p).is_ok());
    }

    #[test]
    fn log_records_round_trip_and_truncation() {
        let recs = vec![b"a".to_vec(), Vec::new(), vec![7; 300]];
        let body = encode_log_records(&recs);
        assert_eq!(decode_log_records(&body).unwrap(), recs);
        for cut in 1..body.len() {
            let ok = decode_log_records(&body[..cut]);
            // Only cuts at record boundaries decode.
            assert_eq!(ok.is_ok(), cut == 5 || cut == 9, "cut {cut}");
        }
        assert!(matches!(
            decode_log_records(&body[..2]),
            Err(ApiError::LogBody("truncated length"))
        ));
        assert!(matches!(
            decode_log_records(&body[..20]),
            Err(ApiError::LogBody("truncated record"))
        ));
        assert!(fuzzing::log_body(&body));
        for m in aorta_base::codec::mutations(&body, body.len()) {
            fuzzing::log_body(&m);
        }
    }

    #[test]
    fn server_read_bodies_refuse_unknown_fields() {
        let b: WorkerBatch =
            serde_json::from_str(r#"{"results":[{"id":"a","body":"AA=="}]}"#).unwrap();
        assert_eq!(b.results[0].bytes().unwrap(), vec![0]);
        assert!(serde_json::from_str::<WorkerBatch>(r#"{"results":[],"x":1}"#).is_err());
        assert!(
            serde_json::from_str::<WorkerBatch>(r#"{"results":[{"id":"a","body":"","x":1}]}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<LogQuery>(r#"{"from":0,"x":1}"#).is_err());
        assert!(serde_json::from_str::<ResultsQuery>(r#"{"after":0}"#).is_ok());
        assert!(serde_json::from_str::<ResultsQuery>(r#"{"after":0,"x":1}"#).is_err());
        let bad = ResultItem {
            id: "a".into(),
            body: "!".into(),
        };
        assert!(matches!(bad.bytes(), Err(ApiError::ResultBody { .. })));
    }

    #[test]
    fn stats_round_trip() {
        let mut s = Stats::default();
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"latency_p50_ms\":null"));
        assert_eq!(serde_json::from_str::<Stats>(&json).unwrap(), s);
        s.latency_p99_ms = Some(12.5);
        s.frames_refused_by_worker.insert(200, 3);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Stats>(&json).unwrap(), s);
    }
}
