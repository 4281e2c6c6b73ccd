//! The clinician side of the results API: fetches the results sealed to one
//! subscriber and opens them, typed, with the clinician's identity; and the
//! clinician's identity file ([`read_identity`], [`write_identity`]).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use zeroize::Zeroizing;

use aorta_crypto::results::{ClinicianIdentity, OpenedSession};
use aorta_stream::ecg::EcgResult;
use serde::{Deserialize, Serialize};

use crate::WorkerError;
use crate::server::Server;

/// A clinician identity read from its file.
pub struct IdentityFile {
    /// The identity.
    pub identity: ClinicianIdentity,
    /// The file's permission bits when users other than its owner may read
    /// it (the front-end warns: the file holds the secret key).
    pub readable_by_others: Option<u32>,
}

/// Reads and parses a clinician identity file (`aorta clinician keygen`),
/// reading at most one byte more than
/// [`aorta_crypto::results::MAX_IDENTITY_FILE_LEN`].
pub fn read_identity(path: &Path) -> Result<IdentityFile, WorkerError> {
    let cfg = |what: &str, e: &dyn std::fmt::Display| {
        WorkerError::Config(format!("{what} {}: {e}", path.display()))
    };
    let f = std::fs::File::open(path).map_err(|e| cfg("opening", &e))?;
    let mut readable_by_others = None;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = f
            .metadata()
            .map_err(|e| cfg("reading", &e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            readable_by_others = Some(mode & 0o777);
        }
    }
    let mut text = Zeroizing::new(String::new());
    // One byte past the limit, so that an oversize file is refused by the
    // parser rather than read whole.
    f.take(aorta_crypto::results::MAX_IDENTITY_FILE_LEN as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| cfg("reading", &e))?;
    let identity = ClinicianIdentity::from_file_text(&text)
        .map_err(|e| cfg("not a clinician identity file:", &e))?;
    Ok(IdentityFile {
        identity,
        readable_by_others,
    })
}

/// Writes a new identity file (mode 0600, atomically), refusing to
/// overwrite one ([`aorta_base::fs::WriteError::Exists`]).
pub fn write_identity(
    path: &Path,
    id: &ClinicianIdentity,
) -> Result<(), aorta_base::fs::WriteError> {
    aorta_base::fs::write_private_new(path, id.to_file_text().as_bytes())
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
    /// The result the worker's ECG operator emitted.
    pub result: EcgResult,
}

/// Reads the results sealed to one subscriber, incrementally.
pub struct ResultReader {
    server: Server,
    identity: ClinicianIdentity,
    subscriber: String,
    patient: Option<String>,
    cursor: u64,
    sessions: HashMap<[u8; 16], OpenedSession>,
    /// Results whose session envelope has not been seen (yet).
    orphans: Vec<(String, Vec<u8>)>,
    refused: u64,
    /// The pinned broker certifying key.
    broker_key: [u8; 32],
    /// Verified worker certificates, by digest.
    certs: HashMap<[u8; 32], aorta_crypto::auth::WorkerCert>,
    /// Why the last refused record was refused.
    last_refusal: Option<String>,
    /// The clinician's authentication key (signs read requests).
    auth: aorta_crypto::auth::SigningKey,
    /// Accept certificates of `sim` (not hardware-protected) workers.
    allow_sim: bool,
    /// Stored ids already read: a record the host serves again is dropped.
    seen: std::collections::HashSet<String>,
    /// Why each worker certificate the server showed was refused.
    certificate_refusals: Vec<String>,
    /// Every patient (device serial) of a result opened, whether or not
    /// the patient filter kept it.
    patients_seen: std::collections::BTreeSet<String>,
}

/// Most pages one [`ResultReader::poll`] reads (a host that never ends a
/// listing cannot make the reader loop or grow without bound).
pub const MAX_PAGES_PER_POLL: usize = 64;

impl ResultReader {
    /// A reader for `subscriber` with `identity`, optionally only one
    /// patient's results.
    /// Only records signed by a worker key that `broker_key` certified
    /// are opened.
    pub fn new(
        server: Server,
        identity: ClinicianIdentity,
        subscriber: &str,
        patient: Option<&str>,
        broker_key: [u8; 32],
    ) -> Result<Self, WorkerError> {
        let auth = identity
            .auth_key()
            .map_err(|e| WorkerError::Internal(e.to_string()))?;
        Ok(ResultReader {
            allow_sim: false,
            seen: std::collections::HashSet::new(),
            certificate_refusals: Vec::new(),
            patients_seen: std::collections::BTreeSet::new(),
            auth,
            server,
            identity,
            subscriber: subscriber.to_owned(),
            patient: patient.map(str::to_owned),
            cursor: 0,
            sessions: HashMap::new(),
            orphans: Vec::new(),
            refused: 0,
            broker_key,
            certs: HashMap::new(),
            last_refusal: None,
        })
    }

    /// Accepts results of `sim` workers (development: they are not
    /// hardware-protected, and whoever controls their host can sign as them).
    pub fn allow_simulation(mut self, allow: bool) -> Self {
        self.allow_sim = allow;
        self
    }

    /// Results whose session envelope the host has not (yet) served: a
    /// host that withholds envelopes hides results, and this says so.
    pub fn withheld(&self) -> usize {
        self.orphans.len()
    }

    /// Records refused: not signed by a certified worker, altered by the
    /// host, or sealed to another identity.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Why each worker certificate the server showed was refused (their
    /// records are then refused as not certified).
    pub fn certificate_refusals(&self) -> &[String] {
        &self.certificate_refusals
    }

    /// Every patient (device serial) of the results opened so far,
    /// including those the patient filter left out: what the clinician
    /// can honestly call a known patient.
    pub fn patients_seen(&self) -> &std::collections::BTreeSet<String> {
        &self.patients_seen
    }

    /// Why the last refused record was refused.
    pub fn last_refusal(&self) -> Option<&str> {
        self.last_refusal.as_deref()
    }

    fn refuse(&mut self, why: String) {
        self.refused += 1;
        self.last_refusal = Some(why);
    }

    /// The payload of the signed record stored under `id`, or why not.
    fn verified(&mut self, id: &str, record: &[u8]) -> Result<Vec<u8>, String> {
        let sr = aorta_crypto::auth::SignedResult::parse(record)
            .map_err(|e| format!("{id}: not a signed result: {e}"))?;
        let cert = self.certs.get(&sr.cert_digest).ok_or_else(|| {
            format!(
                "{id}: signed by a worker certificate the server did not show or that the pinned broker key did not issue ({})",
                aorta_base::hex::encode(&sr.cert_digest)
            )
        })?;
        let payload = sr.verify(cert, id).map_err(|e| format!("{id}: {e}"))?;
        // Only a verified record marks its id as read: a forgery served
        // first under a genuine id cannot make the genuine record a
        // "repeat".
        if !self.seen.insert(id.to_owned()) {
            return Err(format!("{id}: served again (dropped)"));
        }
        Ok(payload.to_vec())
    }

    /// `None` while the result's session envelope is unseen; `Some(Err)`
    /// when it does not open or is not a result.
    fn open_one(&self, rest: &str, sealed: &[u8]) -> Option<Result<OpenedResult, ()>> {
        let Ok(sid) = aorta_crypto::results::sealed_result_session_id(sealed) else {
            return Some(Err(()));
        };
        let session = self.sessions.get(&sid)?;
        let Ok(plain) = session.open(rest, sealed) else {
            return Some(Err(()));
        };
        // The stored id is opaque; the result's own id is inside.
        let Ok(inner) = serde_json::from_slice::<crate::seal::IdentifiedResult<EcgResult>>(&plain)
        else {
            return Some(Err(()));
        };
        let mut parts = inner.id.rsplitn(3, '/');
        let (Some(end), Some(start), Some(patient)) = (parts.next(), parts.next(), parts.next())
        else {
            return Some(Err(()));
        };
        let (Ok(start), Ok(end)) = (start.parse(), end.parse()) else {
            return Some(Err(()));
        };
        let result = inner.result;
        Some(Ok(OpenedResult {
            patient: patient.to_owned(),
            start,
            end,
            result,
        }))
    }

    /// Fetches everything new and opens it.
    pub fn poll(&mut self) -> Result<Vec<OpenedResult>, WorkerError> {
        self.poll_inner(0)
    }

    /// [`ResultReader::poll`], long-polling: when nothing new is stored
    /// yet, the server holds the first request until a result for this
    /// subscriber arrives or `wait` passes (capped by the server at
    /// [`aorta_api::MAX_RESULTS_WAIT_S`] s; `docs/server-api.md`). Returns
    /// early, empty, when the server has too many waiting reads (after
    /// sleeping one second, so a loop around it does not spin). Results
    /// that arrive are returned as soon as they are stored; an empty answer
    /// means the wait ended with nothing new.
    pub fn poll_wait(
        &mut self,
        wait: std::time::Duration,
    ) -> Result<Vec<OpenedResult>, WorkerError> {
        let secs = wait.as_secs().clamp(1, aorta_api::MAX_RESULTS_WAIT_S);
        self.poll_inner(secs)
    }

    fn poll_inner(&mut self, wait_s: u64) -> Result<Vec<OpenedResult>, WorkerError> {
        let prefix = format!("{}/", self.subscriber);
        let mut items = Vec::new();
        for page_no in 0..MAX_PAGES_PER_POLL {
            // Only the first page waits: later ones drain what is there.
            let wait = if page_no == 0 { wait_s } else { 0 };
            let Some(page) =
                self.server
                    .results_wait(&self.subscriber, &self.auth, self.cursor, 5000, wait)?
            else {
                std::thread::sleep(std::time::Duration::from_secs(1));
                break;
            };
            let done = page.next == self.cursor;
            self.cursor = page.next;
            for c in &page.certificates {
                let cert = aorta_api::certificate_bytes(c)
                    .map_err(|e| e.to_string())
                    .and_then(|b| {
                        aorta_crypto::auth::WorkerCert::parse(&b).map_err(|e| e.to_string())
                    })
                    .and_then(|cert| {
                        // Issued by the pinned broker and intact. Its
                        // expiry bounds what the server accepts (and each
                        // result's window is checked against it below); a
                        // result stored while it was valid stays readable.
                        cert.verify(&self.broker_key, cert.not_before)
                            .map_err(|e| e.to_string())?;
                        if !cert.hardware && !self.allow_sim {
                            return Err(format!(
                                "certificate of a `{}` worker (NOT hardware-protected): refused without --allow-sim",
                                cert.backend
                            ));
                        }
                        Ok(cert)
                    });
                match cert {
                    Ok(cert) => {
                        self.certs.insert(cert.digest(), cert);
                    }
                    Err(e) => {
                        let why = format!("worker certificate refused: {e}");
                        if !self.certificate_refusals.contains(&why) {
                            self.certificate_refusals.push(why);
                        }
                    }
                }
            }
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
            let record = it.bytes().map_err(|e| WorkerError::Peer(e.to_string()))?;
            let body = match self.verified(&it.id, &record) {
                Ok(b) => b,
                Err(why) => {
                    self.refuse(why);
                    continue;
                }
            };
            if rest.starts_with("@session/") {
                match aorta_crypto::results::open_envelope(&self.identity, &body) {
                    Ok(s) => {
                        self.sessions.insert(s.session_id(), s);
                    }
                    Err(e) => self.refuse(format!("{}: session envelope: {e}", it.id)),
                }
                continue;
            }
            results.push((rest.to_owned(), body));
        }
        for (rest, body) in results {
            let opened = self.open_one(&rest, &body);
            if let Some(Ok(r)) = &opened
                && !self.patients_seen.contains(&r.patient)
            {
                self.patients_seen.insert(r.patient.clone());
            }
            match opened {
                Some(Ok(r)) if self.patient.as_ref().is_some_and(|p| *p != r.patient) => {}
                Some(Ok(r)) => out.push(r),
                Some(Err(())) => {
                    self.refuse(format!("{prefix}{rest}: does not open with this identity"));
                }
                None => self.orphans.push((rest, body)),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_files_round_trip_never_overwrite_and_are_bounded() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("clinician.key");
        let id = ClinicianIdentity::generate().unwrap();
        write_identity(&p, &id).unwrap();
        let again = write_identity(&p, &ClinicianIdentity::generate().unwrap());
        assert!(matches!(again, Err(aorta_base::fs::WriteError::Exists(_))));
        let f = read_identity(&p).unwrap();
        assert_eq!(f.identity.public(), id.public());
        assert_eq!(f.readable_by_others, None, "written 0600");

        // A huge file is refused after reading at most 64 KiB + 1 bytes.
        let big = d.path().join("big.key");
        let mut text = id.to_file_text().to_string();
        text.push_str(&"#".repeat(2 << 20));
        std::fs::write(&big, text).unwrap();
        assert!(matches!(read_identity(&big), Err(WorkerError::Config(_))));
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_can_read_is_reported() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("clinician.key");
        write_identity(&p, &ClinicianIdentity::generate().unwrap()).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_identity(&p).unwrap().readable_by_others, Some(0o644));
    }
}
