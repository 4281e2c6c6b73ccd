//! The HTTPS uplink: [`HttpsTransport`] posts sealed frames to an aorta
//! server.
//!
//! TLS is rustls with the `ring` provider, HTTP/2 or HTTP/1.1 by ALPN, and
//! the server is authenticated against the CA certificate(s) the device was
//! given (a PEM file; the dev server's self-signed `cert.pem` works as its own
//! CA). No system roots are consulted, no redirect is followed, no proxy is
//! used.
//!
//! Protocol (`POST {server}/v1/frames`, body = one sealed frame,
//! `application/octet-stream`):
//!
//! | reply | meaning | [`Transport::upload`] returns |
//! |---|---|---|
//! | 200 + `{"serial","sequence","offset","duplicate"}` | stored (or stored before) | `Ok(Ack)` after checking serial and sequence |
//! | 400, 403, 404, 409, 413, 422 + `{"error","detail"}` | refused for good | `Ok(Refused)` with the body as reason |
//! | 429, 503 (`Retry-After` honoured, capped), other 5xx, any other status | busy | `Err(ServerBusy)`: the frame stays queued |
//! | connection, TLS or timeout failure | network down | `Err(Network)`: the frame stays queued |
//!
//! A queued frame that does not even parse locally is refused locally
//! (never sent): the server could only refuse it with 400.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use aorta_api::{ErrorBody, FrameAck};

use crate::DeviceError;
use crate::queue::{Transport, UploadReply};

/// Statuses that refuse a frame for good.
pub const PERMANENT_REFUSALS: [u16; 6] = [400, 403, 404, 409, 413, 422];
/// At most this much of a reply body is read.
pub const MAX_REPLY_BODY: u64 = 64 * 1024;
/// At most this much of a reply is quoted in a reason or an error.
const MAX_QUOTE: usize = 300;

/// Timeouts and limits of the uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpOptions {
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Cap on a server's `Retry-After`.
    pub max_retry_after: Duration,
}

impl Default for HttpOptions {
    /// 5 s connect, 30 s per request, `Retry-After` capped at 60 s.
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// `{server}/v1/frames`, for an `https://` server URL (a path prefix is kept).
pub fn frames_url(server: &str) -> Result<reqwest::Url, DeviceError> {
    let bad = |why: &str| DeviceError::Config(format!("server URL {server:?}: {why}"));
    let base = reqwest::Url::parse(server).map_err(|e| bad(&e.to_string()))?;
    if base.scheme() != "https" {
        return Err(bad("must be https://"));
    }
    if base.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    let path = format!("{}/v1/frames", base.path().trim_end_matches('/'));
    let mut url = base;
    url.set_path(&path);
    Ok(url)
}

fn quote(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s = s.trim();
    if s.chars().count() > MAX_QUOTE {
        let mut q: String = s.chars().take(MAX_QUOTE).collect();
        q.push('…');
        q
    } else {
        s.to_owned()
    }
}

/// `Retry-After` as delta-seconds, capped (the HTTP-date form is ignored).
fn retry_after(value: Option<&str>, cap: Duration) -> Option<Duration> {
    let secs: u64 = value?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(cap))
}

/// Maps one HTTP reply to the frame `(serial, sequence)` onto the upload
/// result (see the module table). Pure, for tests and for other transports.
pub fn map_reply(
    serial: &str,
    sequence: u64,
    status: u16,
    retry_after_header: Option<&str>,
    body: &[u8],
    max_retry_after: Duration,
) -> Result<UploadReply, DeviceError> {
    let explain = |body: &[u8]| match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => format!("{}: {}", e.error, e.detail),
        Err(_) if body.is_empty() => "(no body)".to_owned(),
        Err(_) => quote(body),
    };
    match status {
        200 => {
            let a: FrameAck = serde_json::from_slice(body).map_err(|e| {
                DeviceError::Protocol(format!(
                    "frame {sequence}: HTTP 200 with a malformed body ({e}): {}",
                    quote(body)
                ))
            })?;
            if a.serial != serial || a.sequence != sequence {
                return Err(DeviceError::Protocol(format!(
                    "sent frame {serial}/{sequence}, server acknowledged {}/{}",
                    quote(a.serial.as_bytes()),
                    a.sequence
                )));
            }
            Ok(UploadReply::Ack { sequence })
        }
        s if PERMANENT_REFUSALS.contains(&s) => Ok(UploadReply::Refused {
            sequence,
            reason: format!("HTTP {s} {}", explain(body)),
        }),
        s => Err(DeviceError::ServerBusy {
            status: s,
            detail: explain(body),
            retry_after: retry_after(retry_after_header, max_retry_after),
        }),
    }
}

/// Error with its sources, for messages (reqwest's own Display is terse).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// The HTTPS uplink. Cheap to clone: clones share one connection pool (one
/// client per process is enough for many device threads).
#[derive(Debug, Clone)]
pub struct HttpsTransport {
    client: reqwest::blocking::Client,
    url: reqwest::Url,
    reneg_url: reqwest::Url,
    opts: HttpOptions,
    offer: Option<Vec<u8>>,
}

impl HttpsTransport {
    /// Connects to `server` (`https://host:port[/prefix]`), trusting the CA
    /// certificate(s) in the PEM file `ca_pem`.
    pub fn new(server: &str, ca_pem: &Path, opts: HttpOptions) -> Result<Self, DeviceError> {
        let tls = aorta_api::client_tls_config_file(ca_pem).map_err(|e| match e {
            aorta_api::ApiError::CaFile { path, error } => DeviceError::Io { path, error },
            e => DeviceError::Config(format!("{}: {e}", ca_pem.display())),
        })?;
        Self::with_tls(server, tls, opts)
    }

    /// As [`HttpsTransport::new`] with a ready rustls configuration.
    pub fn with_tls(
        server: &str,
        tls: rustls::ClientConfig,
        opts: HttpOptions,
    ) -> Result<Self, DeviceError> {
        let url = frames_url(server)?;
        let client = reqwest::blocking::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.request_timeout)
            .user_agent(concat!("aorta-device/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DeviceError::Config(format!("HTTPS client: {}", chain(&e))))?;
        let mut reneg_url = url.clone();
        let base = url.path().trim_end_matches("/v1/frames").to_owned();
        reneg_url.set_path(&format!("{base}{}", aorta_api::RENEG_PATH));
        Ok(HttpsTransport {
            client,
            url,
            reneg_url,
            opts,
            offer: None,
        })
    }

    /// The upload URL.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }
}

impl Transport for HttpsTransport {
    fn upload(&mut self, frame: &[u8], signature: &[u8; 64]) -> Result<UploadReply, DeviceError> {
        let header = match aorta_crypto::frame::parse(frame) {
            Ok(p) => p.header,
            Err(e) => {
                return Ok(UploadReply::Refused {
                    sequence: 0,
                    reason: format!("refused locally (not sent): the queued frame is damaged: {e}"),
                });
            }
        };
        // reqwest's message already names the URL.
        let net = |e: reqwest::Error| DeviceError::Network(chain(&e));
        let resp = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(
                aorta_api::SIGNATURE_HEADER,
                aorta_base::hex::encode(signature),
            )
            .body(frame.to_vec())
            .send()
            .map_err(net)?;
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        resp.take(MAX_REPLY_BODY)
            .read_to_end(&mut body)
            .map_err(|e| DeviceError::Network(format!("{}: reading the reply: {e}", self.url)))?;
        let r = map_reply(
            &header.serial,
            header.sequence,
            status,
            retry.as_deref(),
            &body,
            self.opts.max_retry_after,
        )?;
        if matches!(r, UploadReply::Ack { .. }) {
            self.offer = reneg_offer(&body);
        }
        Ok(r)
    }

    fn take_reneg_offer(&mut self) -> Option<Vec<u8>> {
        self.offer.take()
    }

    fn reneg(&mut self, serial: &str, msg: &[u8]) -> Result<Option<Vec<u8>>, DeviceError> {
        let net = |e: reqwest::Error| DeviceError::Network(chain(&e));
        let mut url = self.reneg_url.clone();
        url.query_pairs_mut().append_pair("serial", serial);
        let resp = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(msg.to_vec())
            .send()
            .map_err(net)?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        resp.take(MAX_REPLY_BODY)
            .read_to_end(&mut body)
            .map_err(|e| {
                DeviceError::Network(format!("{}: reading the reply: {e}", self.reneg_url))
            })?;
        match status {
            200 => Ok(Some(body)),
            204 => Ok(None),
            s => Err(DeviceError::Protocol(format!(
                "renegotiation: HTTP {s} {}",
                quote(&body)
            ))),
        }
    }
}

/// The renegotiation Offer in an acknowledgement body, if any (a malformed
/// one is ignored: the frame is acknowledged regardless).
fn reneg_offer(body: &[u8]) -> Option<Vec<u8>> {
    let a: FrameAck = serde_json::from_slice(body).ok()?;
    aorta_base::hex::decode(&a.reneg_offer?, aorta_base::hex::Case::Lower).ok()
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use aorta_crypto::frame::ChannelCalibration;
    use aorta_crypto::keys::KeySlice;
    use proptest::prelude::*;

    use super::*;
    use crate::agent::{self, AgentConfig, Backoff, FrameSource, SourceFrame, Speed};
    use crate::queue::{OfflineQueue, QueueLimits};
    use crate::rotation::Sealer;
    use crate::se::FileSecureElement;

    const CAP: Duration = Duration::from_secs(60);

    #[test]
    fn reply_mapping() {
        let ok = br#"{"serial":"SN-1","sequence":42,"offset":7,"duplicate":false}"#;
        assert_eq!(
            map_reply("SN-1", 42, 200, None, ok, CAP).unwrap(),
            UploadReply::Ack { sequence: 42 }
        );
        let dup = br#"{"serial":"SN-1","sequence":42,"offset":7,"duplicate":true,"extra":1}"#;
        assert!(map_reply("SN-1", 42, 200, None, dup, CAP).is_ok());
        // 200 for another frame, or with a broken body: the peer misbehaves.
        for bad in [
            &br#"{"serial":"SN-1","sequence":41,"offset":7,"duplicate":false}"#[..],
            br#"{"serial":"SN-2","sequence":42,"offset":7,"duplicate":false}"#,
            br#"{"serial":"SN-1","sequence":42}"#,
            b"OK",
            b"",
        ] {
            assert!(matches!(
                map_reply("SN-1", 42, 200, None, bad, CAP),
                Err(DeviceError::Protocol(_))
            ));
        }
        for s in PERMANENT_REFUSALS {
            let body = br#"{"error":"bad_frame","detail":"tag mismatch"}"#;
            assert_eq!(
                map_reply("SN-1", 9, s, None, body, CAP).unwrap(),
                UploadReply::Refused {
                    sequence: 9,
                    reason: format!("HTTP {s} bad_frame: tag mismatch")
                }
            );
        }
        // A non-JSON refusal body is quoted (bounded).
        let long = vec![b'x'; 5000];
        let UploadReply::Refused { reason, .. } =
            map_reply("SN-1", 9, 422, None, &long, CAP).unwrap()
        else {
            panic!()
        };
        assert!(reason.starts_with("HTTP 422 xxx") && reason.chars().count() < 320);
        // Transient: 429/503 with Retry-After (capped), other 5xx, odd statuses.
        let busy = |s, ra| map_reply("SN-1", 9, s, ra, b"", CAP);
        assert!(matches!(
            busy(503, Some("7")),
            Err(DeviceError::ServerBusy { status: 503, retry_after: Some(d), .. }) if d == Duration::from_secs(7)
        ));
        assert!(matches!(
            busy(429, Some("999999")),
            Err(DeviceError::ServerBusy { status: 429, retry_after: Some(d), .. }) if d == CAP
        ));
        assert!(matches!(
            busy(429, Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            Err(DeviceError::ServerBusy {
                retry_after: None,
                ..
            })
        ));
        for s in [500, 502, 504, 401, 408, 301, 204, 100] {
            assert!(
                matches!(busy(s, None), Err(DeviceError::ServerBusy { status, .. }) if status == s),
                "{s}"
            );
        }
    }

    proptest! {
        /// Hostile replies never panic, and only a well-formed 200 for the
        /// very frame acknowledges it.
        #[test]
        fn hostile_replies_are_mapped_without_panic(
            status in 0u16..1000,
            body in proptest::collection::vec(any::<u8>(), 0..300),
            ra in proptest::option::of("[ -~]{0,20}"),
        ) {
            match map_reply("SN-1", 42, status, ra.as_deref(), &body, CAP) {
                Ok(UploadReply::Ack { sequence }) => {
                    prop_assert_eq!(status, 200);
                    prop_assert_eq!(sequence, 42);
                    let a: FrameAck = serde_json::from_slice(&body).unwrap();
                    prop_assert_eq!((a.serial.as_str(), a.sequence), ("SN-1", 42));
                }
                Ok(UploadReply::Refused { .. }) => prop_assert!(PERMANENT_REFUSALS.contains(&status)),
                Err(DeviceError::ServerBusy { retry_after, .. }) => {
                    prop_assert!(retry_after.is_none_or(|d| d <= CAP));
                }
                Err(DeviceError::Protocol(_)) => prop_assert_eq!(status, 200),
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
    }

    #[test]
    fn the_transport_can_be_shared_by_device_threads() {
        fn send_sync_clone<T: Send + Sync + Clone>() {}
        send_sync_clone::<HttpsTransport>();
    }

    #[test]
    fn urls() {
        assert_eq!(
            frames_url("https://h:8443").unwrap().as_str(),
            "https://h:8443/v1/frames"
        );
        assert_eq!(
            frames_url("https://h/aorta/").unwrap().as_str(),
            "https://h/aorta/v1/frames"
        );
        for bad in [
            "http://h",
            "h:8443",
            "https://",
            "https://h/?x=1",
            "ftp://h",
        ] {
            assert!(
                matches!(frames_url(bad), Err(DeviceError::Config(_))),
                "{bad}"
            );
        }
    }

    struct TestCert {
        pem: String,
        der: rustls::pki_types::CertificateDer<'static>,
        key: rustls::pki_types::PrivateKeyDer<'static>,
    }

    fn cert() -> TestCert {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        TestCert {
            pem: c.cert.pem(),
            der: c.cert.der().clone(),
            key: rustls::pki_types::PrivatePkcs8KeyDer::from(c.signing_key.serialize_der()).into(),
        }
    }

    #[test]
    fn tls_config_from_pem() {
        // The configuration itself is tested with `aorta_api::client_tls_config`.
        let c = cert();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cert.pem");
        std::fs::write(&p, &c.pem).unwrap();
        assert!(HttpsTransport::new("https://127.0.0.1:1", &p, HttpOptions::default()).is_ok());
        assert!(matches!(
            HttpsTransport::new(
                "https://127.0.0.1:1",
                &dir.path().join("no.pem"),
                HttpOptions::default()
            ),
            Err(DeviceError::Io { .. })
        ));
        assert!(matches!(
            HttpsTransport::new("http://127.0.0.1:1", &p, HttpOptions::default()),
            Err(DeviceError::Config(_))
        ));
    }

    fn server_tls(c: &TestCert, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![c.der.clone()], c.key.clone_key())
            .unwrap();
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Arc::new(cfg)
    }

    /// A minimal HTTPS/1.1 server on 127.0.0.1 (keep-alive): `answer` maps
    /// each request body to (status, extra header lines, body). Runs until
    /// the test process ends.
    fn serve<F>(c: &TestCert, answer: F) -> u16
    where
        F: Fn(&[u8]) -> (u16, String, Vec<u8>) + Send + Sync + 'static,
    {
        let cfg = server_tls(c, &[b"http/1.1"]);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for sock in l.incoming() {
                let Ok(sock) = sock else { continue };
                let (cfg, answer) = (cfg.clone(), answer.clone());
                std::thread::spawn(move || {
                    let conn = rustls::ServerConnection::new(cfg).unwrap();
                    let mut r = BufReader::new(rustls::StreamOwned::new(conn, sock));
                    loop {
                        let mut len = 0usize;
                        loop {
                            let mut line = String::new();
                            if r.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            let l = line.trim_end().to_ascii_lowercase();
                            if l.is_empty() {
                                break;
                            }
                            if let Some(v) = l.strip_prefix("content-length:") {
                                len = v.trim().parse().unwrap();
                            }
                        }
                        let mut body = vec![0; len];
                        if r.read_exact(&mut body).is_err() {
                            return;
                        }
                        let (status, extra, out) = answer(&body);
                        let head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n",
                            out.len()
                        );
                        let w = r.get_mut();
                        if w.write_all(head.as_bytes()).is_err() || w.write_all(&out).is_err() {
                            return;
                        }
                        let _ = w.flush();
                    }
                });
            }
        });
        port
    }

    fn ca_file(c: &TestCert) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cert.pem");
        std::fs::write(&p, &c.pem).unwrap();
        (dir, p)
    }

    fn sealed(seq_hint: u8) -> (Vec<u8>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let mat: Vec<u8> = (0..120 * 32)
            .map(|i| (i * 3 + usize::from(seq_hint)) as u8)
            .collect();
        let se = FileSecureElement::create(
            dir.path().join("se.key"),
            KeySlice::new("SN-HTTP", mat).unwrap(),
        )
        .unwrap();
        let mut s = Sealer::new(se, dir.path().join("state")).unwrap();
        let cal = [ChannelCalibration::new(200.0, 0, 0, 11, "mV", "MLII")];
        let f = s.seal(0, 360_000, &cal, &[&[1, 2, 3][..]]).unwrap();
        (f.bytes, f.sequence)
    }

    /// Echoes the frame's own (serial, sequence) as the server will.
    fn ack_body(frame: &[u8]) -> Vec<u8> {
        let h = aorta_crypto::frame::parse(frame).unwrap().header;
        format!(
            r#"{{"serial":"{}","sequence":{},"offset":0,"duplicate":false}}"#,
            h.serial, h.sequence
        )
        .into_bytes()
    }

    #[test]
    fn uploads_over_real_tls() {
        let c = cert();
        let calls = Arc::new(AtomicUsize::new(0));
        let n = calls.clone();
        let port = serve(&c, move |body| match n.fetch_add(1, Ordering::SeqCst) {
            0 => (200, String::new(), ack_body(body)),
            1 => (
                422,
                String::new(),
                br#"{"error":"bad_frame","detail":"authentication failed"}"#.to_vec(),
            ),
            2 => (503, "retry-after: 3\r\n".into(), b"{}".to_vec()),
            _ => (
                200,
                String::new(),
                br#"{"serial":"SN-HTTP","sequence":999,"offset":0,"duplicate":false}"#.to_vec(),
            ),
        });
        let (_d, ca) = ca_file(&c);
        let mut t = HttpsTransport::new(
            &format!("https://127.0.0.1:{port}"),
            &ca,
            HttpOptions::default(),
        )
        .unwrap();
        let (frame, seq) = sealed(1);
        assert_eq!(
            t.upload(&frame, &[0u8; 64]).unwrap(),
            UploadReply::Ack { sequence: seq }
        );
        assert_eq!(
            t.upload(&frame, &[0u8; 64]).unwrap(),
            UploadReply::Refused {
                sequence: seq,
                reason: "HTTP 422 bad_frame: authentication failed".into()
            }
        );
        assert!(matches!(
            t.upload(&frame, &[0u8; 64]),
            Err(DeviceError::ServerBusy { status: 503, retry_after: Some(d), .. }) if d == Duration::from_secs(3)
        ));
        assert!(matches!(
            t.upload(&frame, &[0u8; 64]),
            Err(DeviceError::Protocol(_))
        ));
        // A damaged queued frame is refused locally, never sent.
        let before = calls.load(Ordering::SeqCst);
        assert!(matches!(
            t.upload(b"garbage", &[0u8; 64]).unwrap(),
            UploadReply::Refused { .. }
        ));
        assert_eq!(calls.load(Ordering::SeqCst), before);
    }

    #[test]
    fn an_untrusted_server_certificate_is_a_network_error() {
        let c = cert();
        let port = serve(&c, |body| (200, String::new(), ack_body(body)));
        let (_d, other) = ca_file(&cert()); // a different CA
        let mut t = HttpsTransport::new(
            &format!("https://127.0.0.1:{port}"),
            &other,
            HttpOptions::default(),
        )
        .unwrap();
        let e = t.upload(&sealed(2).0, &[0u8; 64]).unwrap_err();
        assert!(matches!(e, DeviceError::Network(_)), "{e}");
        // Nobody listening: also transient.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = l.local_addr().unwrap().port();
        drop(l);
        let (_d2, ca) = ca_file(&c);
        let mut t = HttpsTransport::new(
            &format!("https://127.0.0.1:{dead}"),
            &ca,
            HttpOptions::default(),
        )
        .unwrap();
        assert!(matches!(
            t.upload(&sealed(3).0, &[0u8; 64]),
            Err(DeviceError::Network(_))
        ));
    }

    #[test]
    fn alpn_offers_h2_first() {
        let c = cert();
        let cfg = server_tls(&c, &[b"h2", b"http/1.1"]);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let srv = std::thread::spawn(move || {
            let (mut sock, _) = l.accept().unwrap();
            let mut conn = rustls::ServerConnection::new(cfg).unwrap();
            while conn.is_handshaking() {
                conn.complete_io(&mut sock).unwrap();
            }
            conn.alpn_protocol().map(<[u8]>::to_vec)
        });
        let client = Arc::new(aorta_api::client_tls_config(c.pem.as_bytes()).unwrap());
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(client, name).unwrap();
        let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut sock).unwrap();
        }
        assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(srv.join().unwrap().as_deref(), Some(&b"h2"[..]));
    }

    /// A replayed signal for the agent.
    struct Ramp {
        cal: Vec<ChannelCalibration>,
        buf: Vec<i32>,
        left: usize,
        t: i64,
    }
    impl FrameSource for Ramp {
        fn sample_rate_mhz(&self) -> u32 {
            360_000
        }
        fn calibration(&self) -> &[ChannelCalibration] {
            &self.cal
        }
        fn next_frame(&mut self) -> Result<Option<SourceFrame<'_>>, DeviceError> {
            if self.left == 0 {
                return Ok(None);
            }
            self.left -= 1;
            self.buf = (0..360).map(|i| (i + self.t as i32) % 1000).collect();
            self.t += 1_000_000;
            Ok(Some(SourceFrame {
                first_sample_us: self.t - 1_000_000,
                channels: vec![&self.buf],
            }))
        }
    }

    #[test]
    fn the_agent_streams_through_https_across_an_outage() {
        let c = cert();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (n, s) = (Arc::new(AtomicUsize::new(0)), seen.clone());
        // 503 for the first three requests, then store and acknowledge.
        let port = serve(&c, move |body| {
            if n.fetch_add(1, Ordering::SeqCst) < 3 {
                return (503, "retry-after: 0\r\n".into(), b"{}".to_vec());
            }
            let seq = aorta_crypto::frame::parse(body).unwrap().header.sequence;
            s.lock().unwrap().push(seq);
            (200, String::new(), ack_body(body))
        });
        let (d, ca) = ca_file(&c);
        let mut t = HttpsTransport::new(
            &format!("https://127.0.0.1:{port}"),
            &ca,
            HttpOptions::default(),
        )
        .unwrap();
        let mat: Vec<u8> = (0..120 * 32).map(|i| (i * 11) as u8).collect();
        let se = FileSecureElement::create(
            d.path().join("se.key"),
            KeySlice::new("SN-HTTP", mat).unwrap(),
        )
        .unwrap();
        let mut sealer = Sealer::new(se, d.path().join("state")).unwrap();
        let mut queue = OfflineQueue::open(d.path().join("queue"), QueueLimits::default()).unwrap();
        let cfg = AgentConfig {
            speed: Speed::Max,
            backoff: Backoff {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(5),
                jitter: 0.5,
            },
            drain_timeout: Some(Duration::from_secs(30)),
            poll: Duration::from_millis(5),
        };
        let mut src = Ramp {
            cal: vec![ChannelCalibration::new(200.0, 0, 0, 11, "mV", "MLII")],
            buf: Vec::new(),
            left: 12,
            t: 0,
        };
        let stop = AtomicBool::new(false);
        let r = agent::run(&mut src, &mut sealer, &mut queue, &mut t, &cfg, &stop, None).unwrap();
        assert_eq!(
            (r.frames_sealed, r.acked, r.retries, r.queued_left),
            (12, 12, 3, 0)
        );
        assert_eq!(*seen.lock().unwrap(), (0..12).collect::<Vec<u64>>());
    }
}
