//! The MQTT uplink: [`MqttTransport`] publishes sealed frames to an aorta
//! server's MQTT front (`docs/mqtt.md`) with MQTT 5, QoS 1.
//!
//! Each frame is one PUBLISH to `aorta/v1/frames/<serial>` whose payload is
//! the device's 64-byte Ed25519 signature followed by the frame. The frame
//! leaves the queue only on its PUBACK: the server sends it once the frame
//! is durable. TLS is rustls with the `ring` provider, ALPN `mqtt`, the
//! server authenticated against the device's CA file as over HTTPS.
//!
//! | server's answer | [`Transport::upload`] returns |
//! |---|---|
//! | PUBACK `Success` | `Ok(Ack)` |
//! | PUBACK failure, `status` 400, 403, 404, 409, 413, 422 | `Ok(Refused)` with the server's `{"error","detail"}` |
//! | PUBACK failure, any other `status` (503, 507, 500, 401) | `Err(ServerBusy)` (with `retry-after`): the frame stays queued |
//! | no PUBACK within the request timeout, a DISCONNECT, a connection or TLS failure | `Err(Network)`: the frame stays queued |
//!
//! The same mapping as the HTTPS uplink ([`crate::http::map_reply`]): the
//! server puts the HTTPS status of its refusal in the PUBACK's `status` user
//! property and the error body in its reason string. Renegotiation offers
//! travel over HTTPS only: this uplink never carries one.
//!
//! The client is small and blocking, like the uplink's queue: one TLS
//! connection (rustls over a `TcpStream`, the same configuration as HTTPS),
//! `rumqttc`'s MQTT 5 codec for the packets (its network client and TLS
//! helpers are not built: they pull an unmaintained `rustls-webpki` 0.102),
//! one frame in flight. A connection idle for half its keep-alive is
//! replaced before the next frame, so the server never closes one under it.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnectProperties, ConnectReturnCode, Packet, PubAck, PubAckReason, Publish,
};

/// Keep-alive asked for in CONNECT, seconds.
pub const KEEP_ALIVE_SECS: u16 = 30;
/// Largest packet either side may send (a frame, its signature and the
/// topic fit well inside).
pub const MAX_PACKET_BYTES: u32 = 16 << 20;

use crate::DeviceError;
use crate::http::HttpOptions;
use crate::queue::{Transport, UploadReply};

/// Topics frames are published to: this prefix, then the serial.
pub const TOPIC_PREFIX: &str = "aorta/v1/frames/";

/// `(host, port)` of an `mqtts://host:port` URL (port 8883 when absent).
pub fn parse_url(url: &str) -> Result<(String, u16), DeviceError> {
    let bad = |why: &str| DeviceError::Config(format!("MQTT URL {url:?}: {why}"));
    let u = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if u.scheme() != "mqtts" {
        return Err(bad("must be mqtts://host:port"));
    }
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("no host"))?;
    if !matches!(u.path(), "" | "/") || u.query().is_some() || u.fragment().is_some() {
        return Err(bad("must not have a path, query or fragment"));
    }
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok((host, u.port().unwrap_or(8883)))
}

/// The payload of a frame's PUBLISH: signature, then frame.
pub fn payload(signature: &[u8; 64], frame: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(64 + frame.len());
    p.extend_from_slice(signature);
    p.extend_from_slice(frame);
    p
}

/// Maps a PUBACK of the frame `(serial, sequence)` onto the upload result
/// (module table). Pure, for tests.
pub fn map_puback(
    serial: &str,
    sequence: u64,
    ack: &PubAck,
    max_retry_after: Duration,
) -> Result<UploadReply, DeviceError> {
    if matches!(ack.reason, PubAckReason::Success) {
        return Ok(UploadReply::Ack { sequence });
    }
    let props = ack.properties.as_ref();
    let prop = |k: &str| {
        props.and_then(|p| {
            p.user_properties
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        })
    };
    // Without a status the reason code decides: only QuotaExceeded is
    // retryable.
    let status = prop("status")
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| *s != 200)
        .unwrap_or(match ack.reason {
            PubAckReason::QuotaExceeded => 503,
            PubAckReason::UnspecifiedError | PubAckReason::ImplementationSpecificError => 500,
            _ => 400,
        });
    let body = props
        .and_then(|p| p.reason_string.clone())
        .unwrap_or_else(|| format!("{:?}", ack.reason));
    crate::http::map_reply(
        serial,
        sequence,
        status,
        prop("retry-after"),
        body.as_bytes(),
        max_retry_after,
    )
}

/// One MQTT connection: the TLS stream, bytes read but not yet decoded,
/// the next packet id, and when it last carried a packet.
struct Session {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: BytesMut,
    next_pkid: u16,
    last_io: Instant,
}

impl Session {
    fn send(&mut self, p: &Packet) -> Result<(), String> {
        let mut out = BytesMut::new();
        p.write(&mut out, Some(MAX_PACKET_BYTES))
            .map_err(|e| format!("encoding {p:?}: {e:?}"))?;
        self.stream
            .write_all(&out)
            .and_then(|()| self.stream.flush())
            .map_err(|e| e.to_string())?;
        self.last_io = Instant::now();
        Ok(())
    }

    /// The next packet, read by `deadline`.
    fn recv(&mut self, deadline: Instant) -> Result<Packet, String> {
        use rumqttc::v5::mqttbytes::Error;
        let mut chunk = [0u8; 16 << 10];
        loop {
            match Packet::read(&mut self.buf, Some(MAX_PACKET_BYTES)) {
                Ok(p) => {
                    self.last_io = Instant::now();
                    return Ok(p);
                }
                Err(Error::InsufficientBytes(_)) => {}
                Err(e) => return Err(format!("malformed packet from the server: {e:?}")),
            }
            if Instant::now() >= deadline {
                return Err("no answer in time".into());
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(n) => self
                    .buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn pkid(&mut self) -> u16 {
        let id = self.next_pkid;
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        id
    }
}

/// The MQTT uplink (one connection, one frame in flight; reconnects on the
/// next upload after a failure).
pub struct MqttTransport {
    host: String,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    opts: HttpOptions,
    session: Option<Session>,
    client_id: String,
}

impl std::fmt::Debug for MqttTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MqttTransport(mqtts://{}:{})", self.host, self.port)
    }
}

impl MqttTransport {
    /// An uplink to `url` (`mqtts://host:port`), trusting the CA
    /// certificate(s) in the PEM file `ca_pem`.
    pub fn new(url: &str, ca_pem: &Path, opts: HttpOptions) -> Result<Self, DeviceError> {
        let tls = aorta_api::client_tls_config_file(ca_pem).map_err(|e| match e {
            aorta_api::ApiError::CaFile { path, error } => DeviceError::Io { path, error },
            e => DeviceError::Config(format!("{}: {e}", ca_pem.display())),
        })?;
        Self::with_tls(url, tls, opts)
    }

    /// As [`MqttTransport::new`] with a ready rustls configuration (its
    /// ALPN is set to `mqtt`).
    pub fn with_tls(
        url: &str,
        mut tls: rustls::ClientConfig,
        opts: HttpOptions,
    ) -> Result<Self, DeviceError> {
        let (host, port) = parse_url(url)?;
        tls.alpn_protocols = vec![b"mqtt".to_vec()];
        let id = aorta_base::random::secret::<8>()
            .map(|b| aorta_base::hex::encode(b.as_ref()))
            .unwrap_or_else(|_| std::process::id().to_string());
        Ok(MqttTransport {
            host,
            port,
            tls: Arc::new(tls),
            opts,
            session: None,
            client_id: format!("aorta-device-{id}"),
        })
    }

    fn where_(&self) -> String {
        format!("mqtts://{}:{}", self.host, self.port)
    }

    /// TCP, TLS, then CONNECT answered by a successful CONNACK.
    fn connect(&self) -> Result<Session, DeviceError> {
        let net = |e: String| DeviceError::Network(format!("{}: {e}", self.where_()));
        let addrs = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| net(e.to_string()))?;
        let mut last = String::from("no address");
        let mut tcp = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, self.opts.connect_timeout) {
                Ok(t) => {
                    tcp = Some(t);
                    break;
                }
                Err(e) => last = e.to_string(),
            }
        }
        let tcp = tcp.ok_or_else(|| net(last))?;
        let io = |e: std::io::Error| net(e.to_string());
        tcp.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(io)?;
        tcp.set_write_timeout(Some(self.opts.request_timeout))
            .map_err(io)?;
        tcp.set_nodelay(true).map_err(io)?;
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| DeviceError::Config(format!("{}: {e}", self.where_())))?;
        let conn = rustls::ClientConnection::new(self.tls.clone(), name)
            .map_err(|e| net(format!("TLS: {e}")))?;
        let mut s = Session {
            stream: rustls::StreamOwned::new(conn, tcp),
            buf: BytesMut::new(),
            next_pkid: 1,
            last_io: Instant::now(),
        };
        let mut properties = ConnectProperties::new();
        properties.max_packet_size = Some(MAX_PACKET_BYTES);
        let connect = rumqttc::v5::mqttbytes::v5::Connect {
            keep_alive: KEEP_ALIVE_SECS,
            client_id: self.client_id.clone(),
            clean_start: true,
            properties: Some(properties),
        };
        s.send(&Packet::Connect(connect, None, None)).map_err(net)?;
        let deadline = Instant::now() + self.opts.connect_timeout.max(self.opts.request_timeout);
        match s.recv(deadline).map_err(net)? {
            Packet::ConnAck(a) if a.code == ConnectReturnCode::Success => Ok(s),
            Packet::ConnAck(a) => Err(net(format!("the server refused CONNECT: {:?}", a.code))),
            other => Err(net(format!("expected CONNACK, got {other:?}"))),
        }
    }
}

impl MqttTransport {
    /// Publishes one frame on `s` and waits for its PUBACK. The session is
    /// kept only after a success PUBACK: after a refusal the server may
    /// close the connection (MQTT 3.1.1 has no other way to refuse).
    fn publish(
        &mut self,
        mut s: Session,
        header: &aorta_crypto::frame::FrameHeader,
        frame: &[u8],
        signature: &[u8; 64],
    ) -> Result<UploadReply, DeviceError> {
        let where_ = self.where_();
        let net = |e: String| DeviceError::Network(format!("{where_}: {e}"));
        let pkid = s.pkid();
        let mut publish = Publish::new(
            format!("{TOPIC_PREFIX}{}", header.serial),
            QoS::AtLeastOnce,
            payload(signature, frame),
            None,
        );
        publish.pkid = pkid;
        s.send(&Packet::Publish(publish)).map_err(net)?;
        // On any failure below the session is dropped: a late PUBACK cannot
        // be matched to this frame any more; its retry is deduplicated by
        // the server.
        let deadline = Instant::now() + self.opts.request_timeout;
        loop {
            match s.recv(deadline).map_err(net)? {
                Packet::PubAck(a) if a.pkid == pkid => {
                    if matches!(a.reason, PubAckReason::Success) {
                        self.session = Some(s);
                    }
                    return map_puback(
                        &header.serial,
                        header.sequence,
                        &a,
                        self.opts.max_retry_after,
                    );
                }
                Packet::Disconnect(d) => {
                    return Err(net(format!(
                        "the server disconnected: {:?}{}",
                        d.reason_code,
                        d.properties
                            .and_then(|p| p.reason_string)
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    )));
                }
                _ => {}
            }
        }
    }
}

impl Transport for MqttTransport {
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
        let idle = Duration::from_secs(u64::from(KEEP_ALIVE_SECS / 2));
        let reused = self.session.take().filter(|s| s.last_io.elapsed() < idle);
        let was_reused = reused.is_some();
        let s = match reused {
            Some(s) => s,
            None => self.connect()?,
        };
        match self.publish(s, &header, frame, signature) {
            // A kept connection the server has meanwhile closed: once more
            // on a fresh one (a frame that did arrive is stored once).
            Err(DeviceError::Network(_)) if was_reused => {
                let s = self.connect()?;
                self.publish(s, &header, frame, signature)
            }
            r => r,
        }
    }

    fn take_reneg_offer(&mut self) -> Option<Vec<u8>> {
        None
    }

    fn reneg(&mut self, _serial: &str, _msg: &[u8]) -> Result<Option<Vec<u8>>, DeviceError> {
        Err(DeviceError::Protocol(
            "renegotiation goes over HTTPS; the MQTT uplink carries no offer".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::PubAckProperties;

    fn refused(status: &str, retry: Option<&str>) -> PubAck {
        let mut user_properties = vec![("status".to_owned(), status.to_owned())];
        if let Some(r) = retry {
            user_properties.push(("retry-after".to_owned(), r.to_owned()));
        }
        PubAck {
            pkid: 1,
            reason: PubAckReason::NotAuthorized,
            properties: Some(PubAckProperties {
                reason_string: Some(r#"{"error":"sequence_replayed","detail":"x"}"#.into()),
                user_properties,
            }),
        }
    }

    #[test]
    fn pubacks_map_like_https_replies() {
        let cap = Duration::from_secs(60);
        let ok = PubAck::new(1, None);
        assert!(matches!(
            map_puback("S", 7, &ok, cap),
            Ok(UploadReply::Ack { sequence: 7 })
        ));
        match map_puback("S", 7, &refused("409", None), cap) {
            Ok(UploadReply::Refused {
                sequence: 7,
                reason,
            }) => {
                assert!(reason.contains("sequence_replayed"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        match map_puback("S", 7, &refused("503", Some("1")), cap) {
            Err(DeviceError::ServerBusy {
                status: 503,
                retry_after,
                ..
            }) => assert_eq!(retry_after, Some(Duration::from_secs(1))),
            other => panic!("{other:?}"),
        }
        let bare = PubAck {
            pkid: 1,
            reason: PubAckReason::QuotaExceeded,
            properties: None,
        };
        assert!(matches!(
            map_puback("S", 7, &bare, cap),
            Err(DeviceError::ServerBusy { status: 503, .. })
        ));
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("mqtts://127.0.0.1:9").unwrap(),
            ("127.0.0.1".into(), 9)
        );
        assert_eq!(parse_url("mqtts://h").unwrap(), ("h".into(), 8883));
        for bad in [
            "mqtt://h:1",
            "https://h",
            "mqtts://h:1/x",
            "mqtts://",
            "nope",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
