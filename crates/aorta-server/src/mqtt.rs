//! The MQTT front of device ingest (`docs/mqtt.md`): a device publishes
//! each sealed frame with QoS 1 to `aorta/v1/frames/<serial>`, the payload
//! being its 64-byte Ed25519 signature followed by the frame bytes, and
//! gets the PUBACK only once the frame is durable.
//!
//! It owns no acceptance rule of its own: every frame goes through
//! [`crate::http::ingest::Ingest::submit`], the same call `POST /v1/frames`
//! makes (directory, signature, key window, sequence, queue limits, group
//! commit), and a PUBACK is written only when that call returned `Ok` — after
//! the file log's fsync, or JetStream's acknowledgement in cluster mode.
//! A refused frame is never acknowledged: an MQTT 5 client gets a PUBACK
//! whose reason code is a failure (with the refusal's name, HTTP status and
//! `Retry-After` in its properties); an MQTT 3.1.1 client, whose PUBACK
//! cannot say no, is disconnected.
//!
//! It never: accepts QoS 0 or 2, subscriptions, topic aliases or any other
//! topic (the connection is closed, with a DISCONNECT reason for MQTT 5);
//! reads a packet larger than [`MqttLimits::max_packet`] (the remaining
//! length is checked before a byte of the body is read); reads the rest of
//! a PUBLISH whose frame header names no listed device
//! ([`crate::http::ingest::Ingest::precheck`]); keeps a connection that sent
//! no CONNECT within [`MqttLimits::connect_timeout`], or no packet within
//! 1.5 × its keep-alive; has more than [`MqttLimits::max_inflight`] frames
//! of one connection in ingest at once (it stops reading that connection).
//!
//! Packets are read and written with `rumqttc`'s codec
//! (`rumqttc::mqttbytes`, MQTT 3.1.1 and 5); [`decode`] is the one entry
//! point for outside bytes (fuzzed: `fuzz/fuzz_targets/mqtt.rs`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::http::api::AppState;
use crate::http::ingest::IngestError;
use crate::http::limits::{Budget, Charge, ConnState, ConnTable, Limits};
use crate::log_throttle::{LogThrottle, REFUSALS_PER_SEC};

/// Topics frames are published to: this prefix, then the frame's serial.
pub const TOPIC_PREFIX: &str = "aorta/v1/frames/";
/// Bytes of the device signature that opens every payload.
pub const SIGNATURE_LEN: usize = 64;
/// What a PUBLISH may carry besides its payload: fixed header (5), topic
/// (2 + [`MAX_TOPIC`]), packet id (2) and MQTT 5 properties (at most 256).
pub const PACKET_OVERHEAD: usize = 5 + 2 + MAX_TOPIC + 2 + 256;
/// Longest topic accepted, bytes.
pub const MAX_TOPIC: usize = 128;
/// Bytes read from a connection at once.
pub const READ_CHUNK: usize = 16 << 10;
/// Bytes of a PUBLISH read before its frame header is prechecked.
const PRECHECK_WINDOW: usize = 4096;

/// The MQTT protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V311,
    /// MQTT 5.
    V5,
}

/// A packet from a client, as far as ingest cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// CONNECT.
    Connect {
        /// Protocol.
        version: Version,
        /// Keep-alive the client asked for, seconds (0: none).
        keep_alive: u16,
    },
    /// PUBLISH with QoS 1.
    Publish {
        /// Packet identifier.
        pkid: u16,
        /// Topic.
        topic: String,
        /// Payload: signature then frame.
        payload: Bytes,
    },
    /// PINGREQ.
    PingReq,
    /// DISCONNECT.
    Disconnect,
    /// Anything else a device has no business sending (SUBSCRIBE, QoS 0
    /// or 2 PUBLISH, a topic alias, PUBREL, AUTH…): closes the connection.
    Unsupported(&'static str),
}

/// Why a connection is closed by the server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MqttRefusal {
    /// Bytes that are no valid MQTT packet.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// A packet over the size limit (refused from its fixed header).
    #[error("packet of {size} bytes over the limit of {max}")]
    TooLarge {
        /// Remaining length the packet claims.
        size: usize,
        /// Limit.
        max: usize,
    },
    /// Something a device may not do here.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// The packet's bytes would go over the connection's, its source's or
    /// the server's share of frame bytes in memory (retry later).
    #[error("too many frame bytes in memory (this connection, its source or all); retry later")]
    Busy,
    /// The peer closed or the read failed.
    #[error("connection closed: {0}")]
    Closed(String),
    /// No packet within the deadline.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// A frame refused (a 3.1.1 connection is closed after it; an MQTT 5
    /// one after a failure PUBACK when the refusal came before the whole
    /// payload was read).
    #[error("frame (packet id {pkid}) refused: {refusal}")]
    Frame {
        /// Packet identifier of the PUBLISH.
        pkid: u16,
        /// Why.
        refusal: FrameRefusal,
    },
}

/// A refused frame as the device is told (`docs/mqtt.md`): the name and
/// HTTP status `POST /v1/frames` would give, and when to retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {detail}")]
pub struct FrameRefusal {
    /// Stable name (`IngestError::name`, or `topic_invalid`).
    pub name: &'static str,
    /// The HTTPS status of the same refusal.
    pub status: u16,
    /// Seconds to wait before a retry, for refusals a retry can cure.
    pub retry_after: Option<u32>,
    /// Human-readable detail.
    pub detail: String,
}

impl From<&IngestError> for FrameRefusal {
    fn from(e: &IngestError) -> Self {
        FrameRefusal {
            name: e.name(),
            status: e.status(),
            retry_after: e.retry_after(),
            detail: e.to_string(),
        }
    }
}

impl FrameRefusal {
    /// A PUBLISH to another topic than its frame's (`aorta/v1/frames/<serial>`).
    pub fn topic() -> Self {
        FrameRefusal {
            name: "topic_invalid",
            status: 400,
            retry_after: None,
            detail: "the topic is not aorta/v1/frames/<the frame's serial>".into(),
        }
    }

    /// The MQTT 5 PUBACK reason code: `QuotaExceeded` for what a retry can
    /// cure (503, 507), `UnspecifiedError` for 500, `TopicNameInvalid`,
    /// `PayloadFormatInvalid` (400, 413), `NotAuthorized` (401, 403, 409).
    pub fn reason(&self) -> v5::PubAckReason {
        use v5::PubAckReason as R;
        match (self.name, self.status) {
            ("topic_invalid", _) => R::TopicNameInvalid,
            (_, 503 | 507) => R::QuotaExceeded,
            (_, 400 | 413) => R::PayloadFormatInvalid,
            (_, 401 | 403 | 409) => R::NotAuthorized,
            _ => R::UnspecifiedError,
        }
    }
}

/// The limits of the MQTT front (`[mqtt]`, `docs/mqtt.md`).
#[derive(Debug, Clone)]
pub struct MqttLimits {
    /// Largest packet (remaining length), bytes.
    pub max_packet: usize,
    /// Deadline for the TLS handshake plus CONNECT.
    pub connect_timeout: Duration,
    /// Longest keep-alive granted, seconds (a client asking 0 or more gets this).
    pub max_keep_alive: u16,
    /// Frames of one connection in ingest at once.
    pub max_inflight: usize,
    /// Connections at once.
    pub max_connections: usize,
    /// Connections at once from one address.
    pub max_per_source: usize,
}

impl MqttLimits {
    /// The limits of `cfg` for frames of at most `max_frame_bytes`.
    pub fn from_config(cfg: &crate::http::config::MqttConfig, max_frame_bytes: usize) -> Self {
        MqttLimits {
            max_packet: max_frame_bytes + SIGNATURE_LEN + PACKET_OVERHEAD,
            connect_timeout: Duration::from_secs(cfg.connect_timeout_secs),
            max_keep_alive: cfg.max_keep_alive_secs,
            max_inflight: cfg.max_inflight,
            max_connections: cfg.max_connections,
            max_per_source: cfg.max_connections_per_source,
        }
    }

    /// What the MQTT front adds to the server's memory bound, bytes:
    /// `max_connections × (TLS_CONNECTION_BYTES + READ_CHUNK + 64 KiB)` (TLS
    /// buffers, a read chunk, the connection's task and channels). The
    /// packet bytes themselves are charged to the server's body budget, the
    /// one HTTPS frame bodies use (`Limits::memory_bound` counts it: each
    /// charged byte held at most twice).
    pub fn memory_bound(&self) -> u64 {
        self.max_connections as u64
            * (crate::http::limits::TLS_CONNECTION_BYTES + READ_CHUNK as u64 + (64 << 10))
    }

    /// Keep-alive granted for a client's request, seconds.
    pub fn keep_alive(&self, asked: u16) -> u16 {
        if asked == 0 {
            self.max_keep_alive
        } else {
            asked.min(self.max_keep_alive)
        }
    }
}

/// The serial of a frame topic (`aorta/v1/frames/<serial>`), if it is one:
/// no wildcard, no further level.
pub fn topic_serial(topic: &str) -> Option<&str> {
    let s = topic.strip_prefix(TOPIC_PREFIX)?;
    (!s.is_empty() && !s.contains(['/', '+', '#'])).then_some(s)
}

/// Splits a payload into the signature (hex, as `Aorta-Signature` carries
/// it over HTTPS) and the frame.
pub fn split_payload(payload: &[u8]) -> Option<(String, &[u8])> {
    if payload.len() <= SIGNATURE_LEN {
        return None;
    }
    let (sig, frame) = payload.split_at(SIGNATURE_LEN);
    Some((aorta_base::hex::encode(sig), frame))
}

/// The payload a device publishes: signature then frame.
pub fn payload(signature: &[u8; 64], frame: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(SIGNATURE_LEN + frame.len());
    p.extend_from_slice(signature);
    p.extend_from_slice(frame);
    p
}

fn malformed(e: impl std::fmt::Display) -> MqttRefusal {
    MqttRefusal::Malformed(e.to_string())
}

/// Decodes one whole packet (`buf` holds exactly it) of a connection that
/// speaks `version` (`None`: before CONNECT, when only CONNECT is
/// accepted). The one parser of outside MQTT bytes.
pub fn decode(
    buf: &[u8],
    version: Option<Version>,
    max_packet: usize,
) -> Result<Inbound, MqttRefusal> {
    match version {
        None => {
            // The protocol level decides the codec: 3.1.1's reader parses
            // a CONNECT's name and level the same for both.
            let mut b = BytesMut::from(buf);
            match v4::Packet::read(&mut b, max_packet) {
                Ok(v4::Packet::Connect(c)) if c.protocol == rumqttc::mqttbytes::Protocol::V4 => {
                    Ok(Inbound::Connect {
                        version: Version::V311,
                        keep_alive: c.keep_alive,
                    })
                }
                Ok(v4::Packet::Connect(_)) | Err(_) => {
                    let mut b = BytesMut::from(buf);
                    match v5::Packet::read(&mut b, u32::try_from(max_packet).ok()) {
                        Ok(v5::Packet::Connect(c, _, _)) => Ok(Inbound::Connect {
                            version: Version::V5,
                            keep_alive: c.keep_alive,
                        }),
                        Ok(_) => Err(MqttRefusal::Unsupported("the first packet must be CONNECT")),
                        Err(e) => Err(malformed(e)),
                    }
                }
                Ok(_) => Err(MqttRefusal::Unsupported("the first packet must be CONNECT")),
            }
        }
        Some(Version::V311) => {
            let mut b = BytesMut::from(buf);
            Ok(
                match v4::Packet::read(&mut b, max_packet).map_err(malformed)? {
                    v4::Packet::Publish(p) => match p.qos {
                        rumqttc::QoS::AtLeastOnce => Inbound::Publish {
                            pkid: p.pkid,
                            topic: p.topic,
                            payload: p.payload,
                        },
                        _ => Inbound::Unsupported("only QoS 1 PUBLISH is accepted"),
                    },
                    v4::Packet::PingReq => Inbound::PingReq,
                    v4::Packet::Disconnect => Inbound::Disconnect,
                    v4::Packet::Connect(_) => Inbound::Unsupported("a second CONNECT"),
                    v4::Packet::Subscribe(_) | v4::Packet::Unsubscribe(_) => {
                        Inbound::Unsupported("subscriptions are not served")
                    }
                    _ => Inbound::Unsupported("a packet a device does not send"),
                },
            )
        }
        Some(Version::V5) => {
            let mut b = BytesMut::from(buf);
            Ok(
                match v5::Packet::read(&mut b, u32::try_from(max_packet).ok()).map_err(malformed)? {
                    v5::Packet::Publish(p) => {
                        if p.qos != rumqttc::v5::mqttbytes::QoS::AtLeastOnce {
                            Inbound::Unsupported("only QoS 1 PUBLISH is accepted")
                        } else if p
                            .properties
                            .as_ref()
                            .is_some_and(|q| q.topic_alias.is_some())
                        {
                            Inbound::Unsupported("topic aliases are not accepted")
                        } else {
                            match String::from_utf8(p.topic.to_vec()) {
                                Ok(topic) => Inbound::Publish {
                                    pkid: p.pkid,
                                    topic,
                                    payload: p.payload,
                                },
                                Err(_) => return Err(malformed("topic is not UTF-8")),
                            }
                        }
                    }
                    v5::Packet::PingReq(_) => Inbound::PingReq,
                    v5::Packet::Disconnect(_) => Inbound::Disconnect,
                    v5::Packet::Connect(..) => Inbound::Unsupported("a second CONNECT"),
                    v5::Packet::Subscribe(_) | v5::Packet::Unsubscribe(_) => {
                        Inbound::Unsupported("subscriptions are not served")
                    }
                    _ => Inbound::Unsupported("a packet a device does not send"),
                },
            )
        }
    }
}

/// The topic and the first payload bytes of a PUBLISH of which only
/// `prefix` (fixed header `header_len` bytes long, then part of the rest)
/// has arrived; `None` until its topic and packet id are complete.
fn publish_prefix(
    prefix: &[u8],
    header_len: usize,
    version: Version,
) -> Option<(u16, String, Bytes)> {
    let byte1 = *prefix.first()?;
    let avail = prefix.len().checked_sub(header_len)?;
    let bytes = Bytes::copy_from_slice(prefix);
    match version {
        Version::V311 => {
            let fh = rumqttc::mqttbytes::FixedHeader::new(byte1, header_len - 1, avail);
            let p = v4::Publish::read(fh, bytes).ok()?;
            Some((p.pkid, p.topic, p.payload))
        }
        Version::V5 => {
            let fh = v5::FixedHeader::new(byte1, header_len - 1, avail);
            let p = v5::Publish::read(fh, bytes).ok()?;
            Some((p.pkid, String::from_utf8(p.topic.to_vec()).ok()?, p.payload))
        }
    }
}

/// Reads one packet: its fixed header first (its remaining length is
/// checked against `max_packet` before anything else is read), then the
/// rest, each chunk charged to `charge` as it arrives (over it:
/// [`MqttRefusal::Busy`]). A PUBLISH's frame header is handed to `precheck`
/// as soon as it has arrived, before the rest of the payload is read.
/// Returns the packet and its charge (held while the frame is in ingest).
pub async fn read_packet<R: AsyncRead + Unpin>(
    r: &mut R,
    version: Option<Version>,
    max_packet: usize,
    mut charge: Charge,
    mut precheck: impl FnMut(&str, &[u8]) -> Result<bool, FrameRefusal>,
) -> Result<(Inbound, Charge), MqttRefusal> {
    let closed = |e: std::io::Error| MqttRefusal::Closed(e.to_string());
    // Fixed header: one type byte, then 1 to 4 bytes of remaining length.
    let mut header = [0u8; 5];
    let mut n = 0;
    loop {
        let b = r.read_u8().await.map_err(closed)?;
        if let Some(slot) = header.get_mut(n) {
            *slot = b;
        }
        n += 1;
        if n >= 2 && b & 0x80 == 0 {
            break;
        }
        if n >= 5 {
            return Err(malformed("remaining length longer than 4 bytes"));
        }
    }
    let head = header.get(..n).unwrap_or_default();
    // The codec tells the remaining length: a header alone is "short by
    // exactly the remaining length".
    let remaining = match rumqttc::mqttbytes::check(head.iter(), max_packet) {
        Ok(_) => 0,
        Err(rumqttc::mqttbytes::Error::InsufficientBytes(k)) => k,
        Err(rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(size)) => {
            return Err(MqttRefusal::TooLarge {
                size,
                max: max_packet,
            });
        }
        Err(e) => return Err(malformed(e)),
    };
    let mut buf = Vec::with_capacity(n + remaining);
    buf.extend_from_slice(head);
    let publish = header[0] >> 4 == 3;
    let mut prechecked = !publish || version.is_none();
    let mut chunk = vec![0u8; READ_CHUNK];
    while buf.len() < n + remaining {
        let want = (n + remaining - buf.len()).min(chunk.len());
        let got = r
            .read(chunk.get_mut(..want).unwrap_or_default())
            .await
            .map_err(closed)?;
        if got == 0 {
            return Err(MqttRefusal::Closed("end of stream inside a packet".into()));
        }
        if !charge.add(got) {
            return Err(MqttRefusal::Busy);
        }
        buf.extend_from_slice(chunk.get(..got).unwrap_or_default());
        if !prechecked && let Some(v) = version {
            let window = buf
                .get(..buf.len().min(n + PRECHECK_WINDOW))
                .unwrap_or_default();
            if let Some((pkid, topic, payload)) = publish_prefix(window, n, v) {
                let refused = |refusal| MqttRefusal::Frame { pkid, refusal };
                if topic.len() > MAX_TOPIC || topic_serial(&topic).is_none() {
                    return Err(refused(FrameRefusal::topic()));
                }
                if let Some(frame) = payload.get(SIGNATURE_LEN..) {
                    prechecked = precheck(&topic, frame).map_err(refused)?;
                }
            } else if buf.len() >= n + PRECHECK_WINDOW {
                return Err(malformed("no topic within the first bytes"));
            }
        }
    }
    Ok((decode(&buf, version, max_packet)?, charge))
}

fn connack(version: Version, ok: bool, keep_alive: Option<u16>, max_packet: usize) -> BytesMut {
    let mut out = BytesMut::new();
    match version {
        Version::V311 => {
            let code = if ok {
                v4::ConnectReturnCode::Success
            } else {
                v4::ConnectReturnCode::ServiceUnavailable
            };
            let _ = v4::ConnAck::new(code, false).write(&mut out);
        }
        Version::V5 => {
            let props = v5::ConnAckProperties {
                session_expiry_interval: None,
                receive_max: None,
                max_qos: Some(1),
                retain_available: Some(0),
                max_packet_size: u32::try_from(max_packet).ok(),
                assigned_client_identifier: None,
                topic_alias_max: Some(0),
                reason_string: None,
                user_properties: Vec::new(),
                wildcard_subscription_available: Some(0),
                subscription_identifiers_available: Some(0),
                shared_subscription_available: Some(0),
                server_keep_alive: keep_alive,
                response_information: None,
                server_reference: None,
                authentication_method: None,
                authentication_data: None,
            };
            let code = if ok {
                v5::ConnectReturnCode::Success
            } else {
                v5::ConnectReturnCode::ServerBusy
            };
            let _ = v5::ConnAck {
                session_present: false,
                code,
                properties: Some(props),
            }
            .write(&mut out);
        }
    }
    out
}

/// The PUBACK of a frame (MQTT 5 with the refusal in its properties:
/// reason string = the `{"error","detail"}` body HTTPS would send, user
/// properties `status` and, when retryable, `retry-after`).
fn puback(version: Version, pkid: u16, r: &Result<(), FrameRefusal>) -> Option<BytesMut> {
    let mut out = BytesMut::new();
    match (version, r) {
        (Version::V311, Ok(())) => {
            let _ = v4::PubAck::new(pkid).write(&mut out);
        }
        (Version::V311, Err(_)) => return None,
        (Version::V5, Ok(())) => {
            let _ = v5::PubAck::new(pkid, None).write(&mut out);
        }
        (Version::V5, Err(e)) => {
            let body = serde_json::json!({"error": e.name, "detail": e.detail}).to_string();
            let mut user_properties = vec![("status".to_owned(), e.status.to_string())];
            if let Some(s) = e.retry_after {
                user_properties.push(("retry-after".to_owned(), s.to_string()));
            }
            let _ = v5::PubAck {
                pkid,
                reason: e.reason(),
                properties: Some(v5::PubAckProperties {
                    reason_string: Some(body),
                    user_properties,
                }),
            }
            .write(&mut out);
        }
    }
    Some(out)
}

fn disconnect(version: Version, why: &MqttRefusal) -> Option<BytesMut> {
    use v5::DisconnectReasonCode as D;
    if version == Version::V311 {
        return None;
    }
    let code = match why {
        MqttRefusal::Malformed(_) => D::MalformedPacket,
        MqttRefusal::TooLarge { .. } => D::PacketTooLarge,
        MqttRefusal::Busy => D::ServerBusy,
        MqttRefusal::Unsupported(_) => D::ImplementationSpecificError,
        MqttRefusal::Timeout(_) => D::KeepAliveTimeout,
        MqttRefusal::Frame { .. } => D::NotAuthorized,
        MqttRefusal::Closed(_) => return None,
    };
    let mut out = BytesMut::new();
    // A frame refused before its whole payload was read gets its failure
    // PUBACK first.
    if let MqttRefusal::Frame { pkid, refusal } = why
        && let Some(b) = puback(version, *pkid, &Err(refusal.clone()))
    {
        out.extend_from_slice(&b);
    }
    let _ = v5::Disconnect {
        reason_code: code,
        properties: None,
    }
    .write(&mut out);
    Some(out)
}

static REFUSED: LogThrottle = LogThrottle::new(REFUSALS_PER_SEC);

fn log_refusal(peer: SocketAddr, what: &str, detail: &dyn std::fmt::Display) {
    if let Some(suppressed) = REFUSED.allow() {
        tracing::info!(target: "aorta::mqtt", %peer, what, %detail, suppressed, "mqtt refusal");
    }
}

/// Serves MQTT on `listener` (TLS with `tls`, or plain TCP when `None`)
/// until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: Arc<AppState>,
    limits: MqttLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = tls.map(|mut t| {
        let cfg = Arc::make_mut(&mut t);
        cfg.alpn_protocols = vec![b"mqtt".to_vec()];
        tokio_rustls::TlsAcceptor::from(t)
    });
    let table = Arc::new(ConnTable::default());
    let mut conn_limits: Limits = state.limits().clone();
    conn_limits.max_per_source = limits.max_per_source;
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let limits = Arc::new(limits);
    let budget = state.body_budget();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(target: "aorta::mqtt", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(admitted) = table.admit(peer.ip(), &conn_limits) else {
            log_refusal(
                peer,
                "connection",
                &"its source holds its share of connections",
            );
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            log_refusal(peer, "connection", &"every connection is taken");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, state, limits) = (acceptor.clone(), state.clone(), limits.clone());
        let budget = budget.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let conn = admitted.state.clone();
            let deadline = tokio::time::Instant::now() + limits.connect_timeout;
            let why = match acceptor {
                Some(a) => match tokio::time::timeout_at(deadline, a.accept(tcp)).await {
                    Ok(Ok(t)) => {
                        tokio::select! {
                            r = connection(t, peer, &state, &limits, deadline, (&budget, &conn)) => r,
                            () = conn.close_requested() => Err(MqttRefusal::Closed("server stopping".into())),
                        }
                    }
                    Ok(Err(e)) => Err(MqttRefusal::Closed(format!("TLS handshake: {e}"))),
                    Err(_) => Err(MqttRefusal::Timeout("TLS handshake")),
                },
                None => tokio::select! {
                    r = connection(tcp, peer, &state, &limits, deadline, (&budget, &conn)) => r,
                    () = conn.close_requested() => Err(MqttRefusal::Closed("server stopping".into())),
                },
            };
            if let Err(e) = why
                && !matches!(e, MqttRefusal::Closed(_))
            {
                log_refusal(peer, "connection closed", &e);
            }
            drop(admitted);
        });
    }
    table.close_all();
}

type Pending = (u16, tokio::task::JoinHandle<Result<(), FrameRefusal>>);

fn settle(r: Result<Result<(), FrameRefusal>, tokio::task::JoinError>) -> Result<(), FrameRefusal> {
    r.unwrap_or_else(|_| {
        Err(FrameRefusal::from(&IngestError::Internal(
            "ingest task failed".into(),
        )))
    })
}

/// One connection: CONNECT by `deadline`, then PUBLISHes until the client
/// leaves or is refused.
async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    peer: SocketAddr,
    state: &Arc<AppState>,
    limits: &MqttLimits,
    deadline: tokio::time::Instant,
    (budget, conn): (&Arc<Budget>, &Arc<ConnState>),
) -> Result<(), MqttRefusal> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let charge = || Charge::new(budget.clone(), Some(conn.clone()));
    let (first, _) = tokio::time::timeout_at(
        deadline,
        read_packet(&mut rd, None, limits.max_packet, charge(), |_, _| Ok(true)),
    )
    .await
    .map_err(|_| MqttRefusal::Timeout("no CONNECT"))??;
    let Inbound::Connect {
        version,
        keep_alive,
    } = first
    else {
        return Err(MqttRefusal::Unsupported("the first packet must be CONNECT"));
    };
    let granted = limits.keep_alive(keep_alive);
    let ok = state.ingest().writer_running();
    let told = (granted != keep_alive).then_some(granted);
    write_all(&mut wr, &connack(version, ok, told, limits.max_packet)).await?;
    if !ok {
        return Err(MqttRefusal::Closed("ingest is not running".into()));
    }
    // A reader task, so that a packet half read is never dropped by the
    // select below; the channel of one packet stops reading while the
    // connection has `max_inflight` frames in ingest.
    let idle = Duration::from_millis(u64::from(granted) * 1500);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(Inbound, Charge), MqttRefusal>>(1);
    let ingest_state = state.clone();
    let max_packet = limits.max_packet;
    let (budget, conn) = (budget.clone(), conn.clone());
    let reader = tokio::spawn(async move {
        loop {
            let charge = Charge::new(budget.clone(), Some(conn.clone()));
            let st = ingest_state.clone();
            let pre = move |topic: &str, frame: &[u8]| match st.ingest().precheck(frame) {
                Ok(None) => Ok(false),
                Ok(Some(_)) => match aorta_crypto::frame::parse_prefix(frame) {
                    Ok(Some(p)) if topic_serial(topic) == Some(p.header.serial.as_str()) => {
                        Ok(true)
                    }
                    _ => Err(FrameRefusal::topic()),
                },
                Err(e) => {
                    st.ingest().counters.refuse(&e);
                    Err(FrameRefusal::from(&e))
                }
            };
            let r = match tokio::time::timeout(
                idle,
                read_packet(&mut rd, Some(version), max_packet, charge, pre),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(MqttRefusal::Timeout("no packet within 1.5 × keep-alive")),
            };
            let end = r.is_err();
            if tx.send(r).await.is_err() || end {
                return;
            }
        }
    });
    let _reader = AbortOnDrop(reader);
    let mut inflight: VecDeque<Pending> = VecDeque::new();
    loop {
        tokio::select! {
            biased;
            done = async { match inflight.front_mut() { Some((_, h)) => h.await, None => std::future::pending().await } } => {
                let Some((pkid, _)) = inflight.pop_front() else { continue };
                let r = settle(done);
                if let Err(e) = &r {
                    log_refusal(peer, e.name, e);
                }
                match (puback(version, pkid, &r), r) {
                    (Some(b), _) => write_all(&mut wr, &b).await?,
                    // MQTT 3.1.1 cannot refuse in a PUBACK: disconnect.
                    (None, Err(refusal)) => return Err(MqttRefusal::Frame { pkid, refusal }),
                    (None, Ok(())) => {}
                }
            }
            m = rx.recv(), if inflight.len() < limits.max_inflight => {
                let m = m.unwrap_or(Err(MqttRefusal::Closed("reader ended".into())));
                match m {
                    Ok((Inbound::Publish { pkid, topic, payload }, charge)) => {
                        let st = state.clone();
                        let h = tokio::spawn(async move {
                            // The payload's bytes stay charged until ingest answered.
                            let _charge = charge;
                            let arrival = aorta_base::time::now_us();
                            let Some((sig, frame)) = split_payload(&payload) else {
                                let e = IngestError::Malformed(aorta_crypto::frame::FrameError::Truncated { needed: (SIGNATURE_LEN + 1) as u64, available: payload.len() as u64 });
                                st.ingest().counters.refuse(&e);
                                return Err(FrameRefusal::from(&e));
                            };
                            match aorta_crypto::frame::parse_prefix(frame) {
                                Ok(Some(p)) if topic_serial(&topic) == Some(p.header.serial.as_str()) => {}
                                Ok(Some(_)) => return Err(FrameRefusal::topic()),
                                Ok(None) => {}
                                Err(e) => {
                                    let e = IngestError::Malformed(e);
                                    st.ingest().counters.refuse(&e);
                                    return Err(FrameRefusal::from(&e));
                                }
                            }
                            st.ingest().submit(arrival, frame, Some(&sig)).await.map(|_| ()).map_err(|e| FrameRefusal::from(&e))
                        });
                        inflight.push_back((pkid, h));
                    }
                    Ok((Inbound::PingReq, _)) => {
                        let mut b = BytesMut::new();
                        match version {
                            Version::V311 => { let _ = v4::PingResp.write(&mut b); }
                            Version::V5 => { let _ = v5::PingResp::write(&mut b); }
                        }
                        write_all(&mut wr, &b).await?;
                    }
                    Ok((Inbound::Disconnect, _)) => {
                        // Answer what is in flight, then close.
                        answer_inflight(&mut inflight, &mut wr, version).await?;
                        return Ok(());
                    }
                    Ok((Inbound::Connect { .. }, _)) => {
                        let e = MqttRefusal::Unsupported("a second CONNECT");
                        return refuse(&mut wr, version, e).await;
                    }
                    Ok((Inbound::Unsupported(why), _)) => {
                        return refuse(&mut wr, version, MqttRefusal::Unsupported(why)).await;
                    }
                    Err(e) => {
                        // PUBACKs go in order: what came before the refused
                        // packet is answered first.
                        if matches!(e, MqttRefusal::Frame { .. }) {
                            answer_inflight(&mut inflight, &mut wr, version).await?;
                        }
                        return refuse(&mut wr, version, e).await;
                    }
                }
            }
        }
    }
}

/// Waits for every frame in flight and writes its PUBACK, in order (stops
/// at a 3.1.1 refusal, which cannot be answered).
async fn answer_inflight<W: AsyncWrite + Unpin>(
    inflight: &mut VecDeque<Pending>,
    wr: &mut W,
    version: Version,
) -> Result<(), MqttRefusal> {
    while let Some((pkid, h)) = inflight.pop_front() {
        match puback(version, pkid, &settle(h.await)) {
            Some(b) => write_all(wr, &b).await?,
            None => break,
        }
    }
    Ok(())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, b: &[u8]) -> Result<(), MqttRefusal> {
    w.write_all(b)
        .await
        .map_err(|e| MqttRefusal::Closed(e.to_string()))?;
    w.flush()
        .await
        .map_err(|e| MqttRefusal::Closed(e.to_string()))
}

async fn refuse<W: AsyncWrite + Unpin>(
    w: &mut W,
    version: Version,
    why: MqttRefusal,
) -> Result<(), MqttRefusal> {
    if let Some(b) = disconnect(version, &why) {
        let _ = tokio::time::timeout(Duration::from_secs(1), write_all(w, &b)).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), w.shutdown()).await;
    Err(why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics() {
        assert_eq!(topic_serial("aorta/v1/frames/ECG-1"), Some("ECG-1"));
        for t in [
            "aorta/v1/frames/",
            "aorta/v1/frames/a/b",
            "aorta/v1/frames/+",
            "aorta/v1/frames/#",
            "other/ECG-1",
            "aorta/v1/frames",
        ] {
            assert_eq!(topic_serial(t), None, "{t}");
        }
    }

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        aorta_base::hex::decode(&s, aorta_base::hex::Case::Any).unwrap()
    }

    /// The test vectors of docs/mqtt.md.
    #[test]
    fn docs_vectors() {
        let sig = "11".repeat(64);
        let topic = "0014 616f7274612f76312f6672616d65732f534e2d31";
        let v311 = unhex(&format!("32 5c {topic} 0001 {sig} 414f4652"));
        let v5 = unhex(&format!("32 5d {topic} 0001 00 {sig} 414f4652"));
        for (bytes, v) in [(v311, Version::V311), (v5, Version::V5)] {
            match decode(&bytes, Some(v), 1 << 20).unwrap() {
                Inbound::Publish {
                    pkid,
                    topic,
                    payload,
                } => {
                    assert_eq!(pkid, 1);
                    assert_eq!(topic_serial(&topic), Some("SN-1"));
                    let (s, frame) = split_payload(&payload).unwrap();
                    assert_eq!(s, "11".repeat(64));
                    assert_eq!(frame, b"AOFR");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            puback(Version::V311, 1, &Ok(())).unwrap().to_vec(),
            unhex("40 02 0001")
        );
        let v5ok = puback(Version::V5, 1, &Ok(())).unwrap().to_vec();
        assert_eq!(v5ok[..4], unhex("40 02 0001")[..], "{v5ok:02x?}");
        let refused = puback(Version::V5, 1, &Err(FrameRefusal::topic())).unwrap();
        assert_eq!(refused[0], 0x40);
        assert_eq!(refused[4], 0x90, "TopicNameInvalid");
        assert!(puback(Version::V311, 1, &Err(FrameRefusal::topic())).is_none());
        // CONNECT, 3.1.1 and 5 (client id "d", keep-alive 30).
        let c311 = unhex("10 0d 0004 4d515454 04 02 001e 0001 64");
        assert_eq!(
            decode(&c311, None, 1 << 20).unwrap(),
            Inbound::Connect {
                version: Version::V311,
                keep_alive: 30
            }
        );
        let c5 = unhex("10 0e 0004 4d515454 05 02 001e 00 0001 64");
        assert_eq!(
            decode(&c5, None, 1 << 20).unwrap(),
            Inbound::Connect {
                version: Version::V5,
                keep_alive: 30
            }
        );
    }

    #[test]
    fn decode_never_panics_on_short_or_garbage_input() {
        for v in [None, Some(Version::V311), Some(Version::V5)] {
            for len in 0..64 {
                let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
                let _ = decode(&junk, v, 1 << 20);
            }
        }
    }
}
