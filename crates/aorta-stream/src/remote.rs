//! Transports to an `aorta server` (`docs/server-api.md`): the log, the
//! results store and the checkpoint store of a worker, over HTTPS.
//!
//! These implement the same [`FrameLog`], [`ResultSink`] and
//! [`CheckpointStore`] traits as the embedded file stores, so the pipeline
//! and operators do not know whether they run against local files or a
//! server (and, next, a distributed log). Everything sent is already sealed
//! by the job ([`crate::job`]); the server's certificate is pinned.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::StreamError;
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::log::FrameLog;
use crate::results::ResultSink;

/// A rustls client configuration trusting only the certificate(s) in `ca`
/// (the server's development certificate, or a private CA).
pub fn tls_client_config(ca: &Path) -> Result<rustls::ClientConfig, StreamError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let bad = |what: String| StreamError::Config(format!("{}: {what}", ca.display()));
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).map_err(|e| bad(e.to_string()))? {
        roots
            .add(c.map_err(|e| bad(format!("not a PEM certificate: {e}")))?)
            .map_err(|e| bad(format!("certificate not usable as a root: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A connection to an `aorta server`.
#[derive(Clone)]
pub struct Server {
    http: reqwest::blocking::Client,
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Server {{ base: {:?} }}", self.base)
    }
}

fn net(what: &str) -> impl Fn(reqwest::Error) -> StreamError + '_ {
    move |e| StreamError::Config(format!("{what}: {e}"))
}

/// An error answer of the server, as text.
fn answer_error(what: &str, r: reqwest::blocking::Response) -> StreamError {
    let status = r.status();
    let body = r.text().unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    StreamError::Config(format!("{what}: server answered {status}: {body}"))
}

impl Server {
    /// Connects to `base` (e.g. `https://127.0.0.1:7443`) trusting `ca`;
    /// `token` authorizes worker routes.
    pub fn new(base: &str, ca: &Path, token: Option<String>) -> Result<Server, StreamError> {
        let tls = tls_client_config(ca)?;
        let http = reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(net("building the HTTPS client"))?;
        Ok(Server {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    fn auth(&self, r: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// `GET /v1/log`: up to `max` records from `offset`, waiting up to
    /// `wait_ms` for new ones; the records and the next offset.
    pub fn read_log(
        &self,
        offset: u64,
        max: usize,
        wait_ms: u64,
    ) -> Result<(Vec<Vec<u8>>, u64), StreamError> {
        let url = format!(
            "{}/v1/log?from={offset}&max={max}&wait_ms={wait_ms}",
            self.base
        );
        let r = self
            .auth(self.http.get(url))
            .send()
            .map_err(net("reading the log"))?;
        if !r.status().is_success() {
            return Err(answer_error("reading the log", r));
        }
        let next = r
            .headers()
            .get("x-aorta-next")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| StreamError::Config("log answer without x-aorta-next".into()))?;
        let body = r.bytes().map_err(net("reading the log"))?;
        let mut recs = Vec::new();
        let mut rest: &[u8] = &body;
        while !rest.is_empty() {
            let (len, tail) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| StreamError::Config("log answer: truncated length".into()))?;
            let len = u32::from_le_bytes(*len) as usize;
            let (rec, tail) = tail
                .split_at_checked(len)
                .ok_or_else(|| StreamError::Config("log answer: truncated record".into()))?;
            recs.push(rec.to_vec());
            rest = tail;
        }
        Ok((recs, next))
    }

    /// `POST /v1/results`.
    pub fn post_results(&self, batch: &WorkerBatch) -> Result<BatchAnswer, StreamError> {
        let body = serde_json::to_vec(batch).map_err(|e| StreamError::Config(e.to_string()))?;
        let r = self
            .auth(self.http.post(format!("{}/v1/results", self.base)))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .map_err(net("storing results"))?;
        if !r.status().is_success() {
            return Err(answer_error("storing results", r));
        }
        r.json().map_err(net("storing results"))
    }

    /// `GET /v1/results`: a page of (sealed) results after cursor `after`
    /// whose ids start with `prefix`.
    pub fn results(
        &self,
        after: u64,
        prefix: &str,
        limit: usize,
    ) -> Result<ResultsPage, StreamError> {
        let r = self
            .http
            .get(format!("{}/v1/results", self.base))
            .query(&[
                ("after", after.to_string()),
                ("prefix", prefix.to_owned()),
                ("limit", limit.to_string()),
            ])
            .send()
            .map_err(net("reading results"))?;
        if !r.status().is_success() {
            return Err(answer_error("reading results", r));
        }
        r.json().map_err(net("reading results"))
    }

    /// `GET /v1/stats` as JSON.
    pub fn stats(&self) -> Result<serde_json::Value, StreamError> {
        let r = self
            .http
            .get(format!("{}/v1/stats", self.base))
            .send()
            .map_err(net("reading stats"))?;
        if !r.status().is_success() {
            return Err(answer_error("reading stats", r));
        }
        r.json().map_err(net("reading stats"))
    }

    /// `GET /v1/checkpoint`.
    pub fn load_checkpoint(&self) -> Result<Option<Checkpoint>, StreamError> {
        let r = self
            .auth(self.http.get(format!("{}/v1/checkpoint", self.base)))
            .send()
            .map_err(net("reading the checkpoint"))?;
        if r.status().as_u16() == 204 {
            return Ok(None);
        }
        if !r.status().is_success() {
            return Err(answer_error("reading the checkpoint", r));
        }
        r.json().map(Some).map_err(net("reading the checkpoint"))
    }

    /// `PUT /v1/checkpoint`.
    pub fn save_checkpoint(&self, cp: &Checkpoint) -> Result<(), StreamError> {
        let body = serde_json::to_vec(cp).map_err(|e| StreamError::Config(e.to_string()))?;
        let r = self
            .auth(self.http.put(format!("{}/v1/checkpoint", self.base)))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .map_err(net("saving the checkpoint"))?;
        if !r.status().is_success() {
            return Err(answer_error("saving the checkpoint", r));
        }
        Ok(())
    }
}

/// One result in a worker batch or a read.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ResultItem {
    /// Deterministic id.
    pub id: String,
    /// Sealed payload, base64.
    pub body: String,
}

impl ResultItem {
    /// The payload bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, StreamError> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.body)
            .map_err(|e| {
                StreamError::Config(format!("result {}: body is not base64: {e}", self.id))
            })
    }
}

/// `POST /v1/results` body.
#[derive(Serialize, Deserialize, Debug, Default, Clone)]
pub struct WorkerBatch {
    /// Results to store (idempotent by id).
    pub results: Vec<ResultItem>,
    /// Frame arrival → results durable, µs.
    pub latencies_us: Vec<i64>,
    /// Frames opened.
    pub opened: u64,
    /// Frames refused, by code.
    pub refused: BTreeMap<u16, u64>,
}

/// `POST /v1/results` answer.
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
pub struct BatchAnswer {
    /// Newly stored.
    pub stored: u64,
    /// Already present.
    pub duplicates: u64,
}

/// `GET /v1/results` answer.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ResultsPage {
    /// Results.
    pub results: Vec<ResultItem>,
    /// Cursor for the next call.
    pub next: u64,
}

/// The server's log as a (read-only) [`FrameLog`].
#[derive(Debug)]
pub struct RemoteLog {
    server: Server,
    wait_ms: u64,
    end: std::cell::Cell<u64>,
}

impl RemoteLog {
    /// The log of `server`; reads wait up to `wait_ms` for new records.
    pub fn new(server: Server, wait_ms: u64) -> Self {
        RemoteLog {
            server,
            wait_ms,
            end: std::cell::Cell::new(0),
        }
    }
}

impl FrameLog for RemoteLog {
    fn append(&mut self, _payload: &[u8]) -> Result<u64, StreamError> {
        Err(StreamError::Config(
            "a worker's view of the server log is read-only (devices append through /v1/frames)"
                .into(),
        ))
    }
    fn sync(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn end(&self) -> u64 {
        self.end.get()
    }
    fn read_from(&self, offset: u64, max: usize) -> Result<(Vec<Vec<u8>>, u64), StreamError> {
        let (recs, next) = self.server.read_log(offset, max, self.wait_ms)?;
        self.end.set(next);
        Ok((recs, next))
    }
}

/// The server's results store as a [`ResultSink`]: results are buffered
/// and sent, durably, by [`ResultSink::sync`], together with the progress
/// report set by [`RemoteResults::report`].
#[derive(Debug)]
pub struct RemoteResults {
    server: Server,
    batch: RefCell<WorkerBatch>,
    stored: u64,
    duplicates: u64,
}

impl RemoteResults {
    /// The results store of `server`.
    pub fn new(server: Server) -> Self {
        RemoteResults {
            server,
            batch: RefCell::new(WorkerBatch::default()),
            stored: 0,
            duplicates: 0,
        }
    }

    /// Adds progress (frames opened, refusals, latencies) to the next sync.
    pub fn report(&self, opened: u64, refused: &BTreeMap<u16, u64>, latencies_us: &[i64]) {
        let mut b = self.batch.borrow_mut();
        b.opened += opened;
        for (c, n) in refused {
            *b.refused.entry(*c).or_default() += n;
        }
        b.latencies_us.extend_from_slice(latencies_us);
    }

    /// `(stored, duplicates)` as the server counted them.
    pub fn counts(&self) -> (u64, u64) {
        (self.stored, self.duplicates)
    }
}

impl ResultSink for RemoteResults {
    /// Always `true`: the server deduplicates by id and reports duplicates
    /// in [`RemoteResults::counts`].
    fn put(&mut self, id: &str, payload: &[u8]) -> Result<bool, StreamError> {
        self.batch.get_mut().results.push(ResultItem {
            id: id.to_owned(),
            body: base64::engine::general_purpose::STANDARD.encode(payload),
        });
        Ok(true)
    }
    fn sync(&mut self) -> Result<(), StreamError> {
        let b = self.batch.get_mut();
        if b.results.is_empty()
            && b.latencies_us.is_empty()
            && b.opened == 0
            && b.refused.is_empty()
        {
            return Ok(());
        }
        let a = self.server.post_results(b)?;
        *b = WorkerBatch::default();
        self.stored += a.stored;
        self.duplicates += a.duplicates;
        Ok(())
    }
}

/// The server's checkpoint store as a [`CheckpointStore`].
#[derive(Debug)]
pub struct RemoteCheckpoints {
    server: Server,
}

impl RemoteCheckpoints {
    /// The checkpoint store of `server`.
    pub fn new(server: Server) -> Self {
        RemoteCheckpoints { server }
    }
}

impl CheckpointStore for RemoteCheckpoints {
    fn save(&mut self, cp: &Checkpoint) -> Result<(), StreamError> {
        self.server.save_checkpoint(cp)
    }
    fn load(&self) -> Result<Option<Checkpoint>, StreamError> {
        self.server.load_checkpoint()
    }
}

/// A worker job whose stores are the server's.
pub type RemoteJob<F, RS, SS> = crate::job::EcgJob<F, RemoteCheckpoints, RemoteResults, RS, SS>;

/// Options of [`run_worker`].
#[derive(Debug, Clone, Copy)]
pub struct WorkerOptions {
    /// Records per batch.
    pub batch: usize,
    /// Checkpoint at least this often while input flows.
    pub checkpoint_every: Duration,
    /// Longest pause between retries after a failure.
    pub max_backoff: Duration,
    /// Stop after this many consecutive failures (0 = never).
    pub max_failures: u32,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            batch: 1024,
            checkpoint_every: Duration::from_secs(5),
            max_backoff: Duration::from_secs(5),
            max_failures: 0,
        }
    }
}

/// Progress of [`run_worker`].
#[derive(Debug, Clone, Copy, Default)]
pub struct WorkerProgress {
    /// Log records processed.
    pub records: u64,
    /// Frames opened.
    pub opened: u64,
    /// Frames refused.
    pub refused: u64,
    /// Log offset processed.
    pub offset: u64,
    /// Checkpoints taken.
    pub checkpoints: u64,
    /// Failures retried.
    pub retries: u64,
}

/// Runs `job` against the server's log until `stop` is set: read a batch,
/// open and analyse it, send the sealed results (durably) with the batch's
/// latencies, checkpoint periodically. Failures (server restarting, network)
/// are retried with backoff; the pipeline's write order keeps retries
/// exactly-once (unsent results stay buffered and precede any checkpoint).
/// A final checkpoint is taken on a clean stop.
pub fn run_worker<F, RS, SS>(
    job: &mut RemoteJob<F, RS, SS>,
    log: &RemoteLog,
    opts: WorkerOptions,
    stop: &std::sync::atomic::AtomicBool,
    mut progress: impl FnMut(&WorkerProgress),
) -> Result<WorkerProgress, StreamError>
where
    F: crate::job::FrameOpen,
    RS: crate::job::ResultSealer,
    SS: crate::job::StateSealer,
{
    use std::sync::atomic::Ordering;
    let mut p = WorkerProgress {
        offset: job.offset(),
        ..WorkerProgress::default()
    };
    let mut last_cp = std::time::Instant::now();
    let mut cp_offset = job.offset();
    let mut failures = 0u32;
    let mut reported_opened = job.decoder().opened();
    let mut reported_refused = job.decoder().refused().clone();
    while !stop.load(Ordering::Relaxed) {
        let r = job.run_batch(log, opts.batch).and_then(|b| {
            let d = job.decoder();
            let refused_delta: BTreeMap<u16, u64> = d
                .refused()
                .iter()
                .map(|(c, n)| (*c, n - reported_refused.get(c).copied().unwrap_or(0)))
                .filter(|(_, n)| *n > 0)
                .collect();
            let opened = d.opened() - reported_opened;
            reported_opened = d.opened();
            reported_refused = d.refused().clone();
            job.pipeline()
                .results()
                .inner()
                .report(opened, &refused_delta, &b.latencies_us);
            if b.records == 0 {
                // Idle: deliver the progress report now.
                job.pipeline_mut().sync_results()?;
            }
            if job.offset() != cp_offset && last_cp.elapsed() >= opts.checkpoint_every {
                job.checkpoint()?;
                cp_offset = job.offset();
                last_cp = std::time::Instant::now();
                p.checkpoints += 1;
            }
            Ok(b.records)
        });
        match r {
            Ok(n) => {
                failures = 0;
                p.records += n as u64;
                p.offset = job.offset();
                p.opened = job.decoder().opened();
                p.refused = job.decoder().refused().values().sum();
                progress(&p);
            }
            Err(e) => {
                failures += 1;
                p.retries += 1;
                if opts.max_failures > 0 && failures >= opts.max_failures {
                    return Err(e);
                }
                let pause = Duration::from_millis(100u64 << failures.min(6)).min(opts.max_backoff);
                tracing::warn!(target: "aorta::worker", error = %e, retry_in_ms = pause.as_millis() as u64, "batch failed; retrying");
                std::thread::sleep(pause);
            }
        }
    }
    if job.offset() != cp_offset {
        job.checkpoint()?;
        p.checkpoints += 1;
    }
    Ok(p)
}

/// One result a clinician opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenedResult {
    /// Device serial (the patient's device).
    pub patient: String,
    /// Window start (or event time), µs since the Unix epoch.
    pub start: i64,
    /// Window end, µs.
    pub end: i64,
    /// The result (`aorta_stream::ecg::EcgResult` as JSON).
    pub result: serde_json::Value,
}

/// The clinician side of the results API: fetches the results sealed to
/// one subscriber and opens them with the clinician's identity.
pub struct ResultReader {
    server: Server,
    identity: aorta_crypto::results::ClinicianIdentity,
    subscriber: String,
    patient: Option<String>,
    cursor: u64,
    sessions: std::collections::HashMap<[u8; 16], aorta_crypto::results::OpenedSession>,
    /// Results whose session envelope has not been seen (yet).
    orphans: Vec<(String, Vec<u8>)>,
    refused: u64,
}

impl ResultReader {
    /// A reader for `subscriber` with `identity`, optionally only one
    /// patient's results.
    pub fn new(
        server: Server,
        identity: aorta_crypto::results::ClinicianIdentity,
        subscriber: &str,
        patient: Option<&str>,
    ) -> Self {
        ResultReader {
            server,
            identity,
            subscriber: subscriber.to_owned(),
            patient: patient.map(str::to_owned),
            cursor: 0,
            sessions: std::collections::HashMap::new(),
            orphans: Vec::new(),
            refused: 0,
        }
    }

    /// Results that failed to open (wrong identity, tampered by the host).
    pub fn refused(&self) -> u64 {
        self.refused
    }

    fn open_one(&mut self, rest: &str, sealed: &[u8]) -> Option<Result<OpenedResult, ()>> {
        let sid = match aorta_crypto::results::sealed_result_session_id(sealed) {
            Ok(s) => s,
            Err(_) => return Some(Err(())),
        };
        let session = self.sessions.get(&sid)?;
        let Ok(plain) = session.open(rest, sealed) else {
            return Some(Err(()));
        };
        let mut parts = rest.rsplitn(3, '/');
        let (Some(end), Some(start), Some(patient)) = (parts.next(), parts.next(), parts.next())
        else {
            return Some(Err(()));
        };
        let (Ok(start), Ok(end)) = (start.parse(), end.parse()) else {
            return Some(Err(()));
        };
        let Ok(result) = serde_json::from_slice(&plain) else {
            return Some(Err(()));
        };
        Some(Ok(OpenedResult {
            patient: patient.to_owned(),
            start,
            end,
            result,
        }))
    }

    /// Fetches everything new and opens it.
    pub fn poll(&mut self) -> Result<Vec<OpenedResult>, StreamError> {
        let prefix = format!("{}/", self.subscriber);
        let mut items = Vec::new();
        loop {
            let page = self.server.results(self.cursor, &prefix, 5000)?;
            let done = page.next == self.cursor;
            self.cursor = page.next;
            items.extend(page.results);
            if done {
                break;
            }
        }
        let mut out = Vec::new();
        let mut results = std::mem::take(&mut self.orphans);
        for it in items {
            let Some(rest) = it.id.strip_prefix(&prefix) else {
                continue;
            };
            let body = it.bytes()?;
            if rest.starts_with("@session/") {
                match aorta_crypto::results::open_envelope(&self.identity, &body) {
                    Ok(s) => {
                        self.sessions.insert(s.session_id(), s);
                    }
                    Err(_) => self.refused += 1,
                }
                continue;
            }
            if let Some(p) = &self.patient {
                if !rest.starts_with(&format!("{p}/")) {
                    continue;
                }
            }
            results.push((rest.to_owned(), body));
        }
        for (rest, body) in results {
            match self.open_one(&rest, &body) {
                Some(Ok(r)) => out.push(r),
                Some(Err(())) => self.refused += 1,
                None => self.orphans.push((rest, body)),
            }
        }
        Ok(out)
    }
}
