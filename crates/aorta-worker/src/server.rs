//! The transport to an `aorta server` (`docs/server-api.md`): the log, the
//! results store and the checkpoint store of a worker, over HTTPS, with the
//! bodies of the one API contract (`aorta-api`).
//!
//! These implement the same `FrameLog`, `ResultSink` and `CheckpointStore`
//! traits as the engine's embedded file stores, so the pipeline and
//! operators do not know whether they run against local files or a server.
//! Everything sent is already sealed by the job; the server's certificate is
//! pinned ([`aorta_api::client_tls_config`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use aorta_api::{
    BatchAnswer, ErrorBody, LogQuery, NEXT_HEADER, ResultItem, ResultsPage, Stats, WorkerBatch,
};
use aorta_stream::StreamError;
use aorta_stream::checkpoint::{Checkpoint, CheckpointStore};
use aorta_stream::log::FrameLog;
use aorta_stream::results::ResultSink;

use crate::WorkerError;

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

fn net(what: &str) -> impl Fn(reqwest::Error) -> WorkerError + '_ {
    move |e| WorkerError::Network {
        what: what.to_owned(),
        source: Box::new(e),
    }
}

/// A body the server sent that does not parse.
fn malformed(what: &str) -> impl Fn(reqwest::Error) -> WorkerError + '_ {
    move |e| WorkerError::Peer(format!("{what}: malformed answer: {e}"))
}

/// An error answer of the server: its [`ErrorBody`], else the text.
fn answer_error(what: &str, r: reqwest::blocking::Response) -> WorkerError {
    let status = r.status();
    let body = r.text().unwrap_or_default();
    let detail = match serde_json::from_str::<ErrorBody>(&body) {
        Ok(e) => format!("{}: {}", e.error, e.detail),
        Err(_) => body,
    };
    let detail: String = detail.chars().take(300).collect();
    WorkerError::Peer(format!("{what}: server answered {status}: {detail}"))
}

impl Server {
    /// Connects to `base` (e.g. `https://127.0.0.1:7443`) trusting the
    /// certificates in the PEM file `ca`; `token` authorizes worker routes.
    pub fn new(base: &str, ca: &Path, token: Option<String>) -> Result<Server, WorkerError> {
        let tls = aorta_api::client_tls_config_file(ca)
            .map_err(|e| WorkerError::Config(format!("{}: {e}", ca.display())))?;
        let http = reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| WorkerError::Config(format!("building the HTTPS client: {e}")))?;
        Ok(Server {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// Sends `r`; an error status is the server's [`answer_error`].
    fn send(
        what: &str,
        r: reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::Response, WorkerError> {
        let r = r.send().map_err(net(what))?;
        if !r.status().is_success() {
            return Err(answer_error(what, r));
        }
        Ok(r)
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
    ) -> Result<(Vec<Vec<u8>>, u64), WorkerError> {
        self.read_log_full(offset, max, wait_ms)
            .map(|(recs, next, _)| (recs, next))
    }

    /// [`Server::read_log`], with the number of patient erasures waiting
    /// ([`aorta_api::ERASURES_HEADER`]).
    pub fn read_log_full(
        &self,
        offset: u64,
        max: usize,
        wait_ms: u64,
    ) -> Result<(Vec<Vec<u8>>, u64, u64), WorkerError> {
        const WHAT: &str = "reading the log";
        let q = LogQuery {
            from: offset,
            max,
            wait_ms,
        };
        let r = Self::send(
            WHAT,
            self.auth(self.http.get(format!("{}/v1/log", self.base)).query(&q)),
        )?;
        let next = r
            .headers()
            .get(NEXT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| WorkerError::Peer(format!("log answer without {NEXT_HEADER}")))?;
        let erasures = r
            .headers()
            .get(aorta_api::ERASURES_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let body = r.bytes().map_err(net(WHAT))?;
        let recs =
            aorta_api::decode_log_records(&body).map_err(|e| WorkerError::Peer(e.to_string()))?;
        Ok((recs, next, erasures))
    }

    /// `GET /v1/erasures`: the patient erasures waiting for the worker.
    pub fn erasures(&self) -> Result<aorta_api::ErasureList, WorkerError> {
        const WHAT: &str = "reading the pending erasures";
        Self::send(
            WHAT,
            self.auth(self.http.get(format!("{}/v1/erasures", self.base))),
        )?
        .json()
        .map_err(malformed(WHAT))
    }

    /// `POST /v1/erasures`: the device's state is dropped and checkpointed;
    /// the host may erase its results with `done.token`.
    pub fn erasure_done(
        &self,
        done: &aorta_api::ErasureDone,
    ) -> Result<aorta_api::ErasureAnswer, WorkerError> {
        const WHAT: &str = "completing an erasure";
        Self::send(
            WHAT,
            self.auth(self.http.post(format!("{}/v1/erasures", self.base)))
                .json(done),
        )?
        .json()
        .map_err(malformed(WHAT))
    }

    /// `POST /v1/results`.
    pub fn post_results(&self, batch: &WorkerBatch) -> Result<BatchAnswer, WorkerError> {
        const WHAT: &str = "storing results";
        let r = Self::send(
            WHAT,
            self.auth(self.http.post(format!("{}/v1/results", self.base)))
                .json(batch),
        )?;
        r.json().map_err(malformed(WHAT))
    }

    /// `GET /v1/results` as clinician `subscriber`: a page of the (signed,
    /// sealed) results stored for them after cursor `after`; the request is
    /// signed with the clinician's authentication key `auth`
    /// (`aorta_crypto::auth::read_message`).
    pub fn results(
        &self,
        subscriber: &str,
        auth: &aorta_crypto::auth::SigningKey,
        after: u64,
        limit: usize,
    ) -> Result<ResultsPage, WorkerError> {
        self.results_wait(subscriber, auth, after, limit, 0)?
            .ok_or_else(|| WorkerError::Peer("reading results: 429 without a wait".into()))
    }

    /// [`Server::results`], long-polling: with nothing new, the server
    /// answers when a result after `after` is stored or after `wait_s`
    /// seconds (it caps the wait at [`aorta_api::MAX_RESULTS_WAIT_S`]).
    /// `None` when the server has too many waiting reads (429): the caller
    /// retries later.
    pub fn results_wait(
        &self,
        subscriber: &str,
        auth: &aorta_crypto::auth::SigningKey,
        after: u64,
        limit: usize,
        wait_s: u64,
    ) -> Result<Option<ResultsPage>, WorkerError> {
        const WHAT: &str = "reading results";
        let wait = if wait_s > 0 {
            format!("&wait={wait_s}")
        } else {
            String::new()
        };
        let url = reqwest::Url::parse(&format!(
            "{}/v1/results?after={after}&limit={limit}{wait}",
            self.base
        ))
        .map_err(|e| WorkerError::Config(format!("server URL {}: {e}", self.base)))?;
        let pq = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let now = aorta_base::time::now_s();
        let sig = auth.sign(&aorta_crypto::auth::read_message(subscriber, now, &pq));
        let r = self
            .http
            .get(url)
            .header(aorta_api::CLINICIAN_HEADER, subscriber)
            .header(aorta_api::TIME_HEADER, now.to_string())
            .header(aorta_api::SIGNATURE_HEADER, aorta_base::hex::encode(&sig))
            .send()
            .map_err(net(WHAT))?;
        if wait_s > 0 && r.status().as_u16() == 429 {
            return Ok(None);
        }
        if !r.status().is_success() {
            return Err(answer_error(WHAT, r));
        }
        r.json().map(Some).map_err(malformed(WHAT))
    }

    /// `GET /v1/stats`.
    pub fn stats(&self) -> Result<Stats, WorkerError> {
        const WHAT: &str = "reading stats";
        let r = Self::send(WHAT, self.http.get(format!("{}/v1/stats", self.base)))?;
        r.json().map_err(malformed(WHAT))
    }

    /// `GET /v1/checkpoint`.
    pub fn load_checkpoint(&self) -> Result<Option<Checkpoint>, WorkerError> {
        const WHAT: &str = "reading the checkpoint";
        let r = Self::send(
            WHAT,
            self.auth(self.http.get(format!("{}/v1/checkpoint", self.base))),
        )?;
        if r.status().as_u16() == 204 {
            return Ok(None);
        }
        r.json().map(Some).map_err(malformed(WHAT))
    }

    /// `PUT /v1/checkpoint`.
    pub fn save_checkpoint(&self, cp: &Checkpoint) -> Result<(), WorkerError> {
        Self::send(
            "saving the checkpoint",
            self.auth(self.http.put(format!("{}/v1/checkpoint", self.base)))
                .json(cp),
        )?;
        Ok(())
    }
}

/// The server's log as a (read-only) `FrameLog`.
#[derive(Debug)]
pub struct RemoteLog {
    server: Server,
    wait_ms: u64,
    end: std::cell::Cell<u64>,
    erasures: std::cell::Cell<u64>,
}

impl RemoteLog {
    /// The log of `server`; reads wait up to `wait_ms` for new records.
    pub fn new(server: Server, wait_ms: u64) -> Self {
        RemoteLog {
            server,
            wait_ms,
            end: std::cell::Cell::new(0),
            erasures: std::cell::Cell::new(0),
        }
    }

    /// Patient erasures the server said were waiting, at the last read.
    pub fn erasures_pending(&self) -> u64 {
        self.erasures.get()
    }

    /// The server.
    pub fn server(&self) -> &Server {
        &self.server
    }
}

impl FrameLog for RemoteLog {
    fn append(&mut self, _payload: &[u8]) -> Result<u64, StreamError> {
        Err(WorkerError::Internal(
            "a worker's view of the server log is read-only (devices append through /v1/frames)"
                .into(),
        )
        .into())
    }
    fn sync(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn end(&self) -> u64 {
        self.end.get()
    }
    fn read_from(&self, offset: u64, max: usize) -> Result<(Vec<Vec<u8>>, u64), StreamError> {
        let (recs, next, erasures) = self.server.read_log_full(offset, max, self.wait_ms)?;
        self.end.set(next);
        self.erasures.set(erasures);
        Ok((recs, next))
    }
}

/// Most bytes of results one `POST /v1/results` carries (the server's
/// default per-connection body limit is 8 MiB).
pub const MAX_POST_BYTES: usize = 4 << 20;

/// How many of `results`, from the front, the next request carries: as
/// many as fit in `max` bytes of ids and bodies (plus 16 bytes of JSON each),
/// at least one.
fn next_part(results: &[ResultItem], max: usize) -> usize {
    let mut bytes = 0usize;
    results
        .iter()
        .take_while(|r| {
            bytes = bytes.saturating_add(r.id.len() + r.body.len() + 16);
            bytes <= max
        })
        .count()
        .max(1)
}

/// The server's results store as a `ResultSink`: results are buffered and
/// sent, durably, by `ResultSink::sync`, together with the progress report
/// set by [`RemoteResults::report`].
#[derive(Debug)]
pub struct RemoteResults {
    server: Server,
    batch: RefCell<WorkerBatch>,
    stored: u64,
    duplicates: u64,
    certificate: Option<String>,
}

impl RemoteResults {
    /// The results store of `server`.
    pub fn new(server: Server) -> Self {
        RemoteResults {
            server,
            batch: RefCell::new(WorkerBatch::default()),
            stored: 0,
            duplicates: 0,
            certificate: None,
        }
    }

    /// Sends `cert` (the broker's certificate of the key that signs the
    /// results) with every batch of results.
    pub fn with_certificate(mut self, cert: &[u8]) -> Self {
        self.certificate = Some(aorta_api::certificate_text(cert));
        self
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
        self.batch
            .get_mut()
            .results
            .push(ResultItem::new(id, payload));
        Ok(true)
    }
    /// Results that would make one request larger than
    /// [`MAX_POST_BYTES`] (event strips are tens of KB each) go first, in
    /// parts; the progress report goes with the last part. A part that
    /// fails stays buffered with everything after it; parts stored are not
    /// sent again.
    fn sync(&mut self) -> Result<(), StreamError> {
        let b = self.batch.get_mut();
        if b.is_empty() {
            return Ok(());
        }
        loop {
            let n = next_part(&b.results, MAX_POST_BYTES);
            if n >= b.results.len() {
                break;
            }
            let part = WorkerBatch {
                results: b.results.iter().take(n).cloned().collect(),
                certificate: self.certificate.clone(),
                ..WorkerBatch::default()
            };
            let a = self.server.post_results(&part)?;
            b.results.drain(..n);
            self.stored += a.stored;
            self.duplicates += a.duplicates;
        }
        if !b.results.is_empty() {
            b.certificate.clone_from(&self.certificate);
        }
        let a = self.server.post_results(b)?;
        *b = WorkerBatch::default();
        self.stored += a.stored;
        self.duplicates += a.duplicates;
        Ok(())
    }
}

/// The server's checkpoint store as a `CheckpointStore`.
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
        Ok(self.server.save_checkpoint(cp)?)
    }
    fn load(&self) -> Result<Option<Checkpoint>, StreamError> {
        Ok(self.server.load_checkpoint()?)
    }
}

/// A worker job whose stores are the server's.
pub type RemoteJob<F, RS, SS> =
    aorta_stream::job::EcgJob<F, RemoteCheckpoints, RemoteResults, RS, SS>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_posted_in_parts_under_the_limit() {
        let item = |n: usize| ResultItem {
            id: "s/x".into(),
            body: "A".repeat(n),
        };
        let mb = 1 << 20;
        // Four 1-MiB strips: three fit in 4 MiB with their ids, the fourth waits.
        let four: Vec<ResultItem> = (0..4).map(|_| item(mb)).collect();
        assert_eq!(next_part(&four, MAX_POST_BYTES), 3);
        assert_eq!(next_part(&four[3..], MAX_POST_BYTES), 1);
        // Small results all go at once; one larger than the limit goes alone.
        let small: Vec<ResultItem> = (0..1000).map(|_| item(100)).collect();
        assert_eq!(next_part(&small, MAX_POST_BYTES), 1000);
        assert_eq!(next_part(&[item(5 * mb), item(1)], MAX_POST_BYTES), 1);
        assert_eq!(next_part(&[], MAX_POST_BYTES), 1);
    }
}
