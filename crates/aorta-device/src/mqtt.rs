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

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAck, PubAckReason};
use rumqttc::v5::{Client, Connection, Event, MqttOptions};

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

/// The MQTT uplink (one connection, one frame in flight; reconnects on the
/// next upload after a failure).
pub struct MqttTransport {
    host: String,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    opts: HttpOptions,
    conn: Option<(Client, Connection)>,
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
            conn: None,
            client_id: format!("aorta-device-{id}"),
        })
    }

    fn connect(&mut self) -> (Client, Connection) {
        let mut o = MqttOptions::new(self.client_id.clone(), self.host.clone(), self.port);
        o.set_keep_alive(Duration::from_secs(30))
            .set_clean_start(true)
            .set_connection_timeout(self.opts.connect_timeout.as_secs().max(1))
            .set_max_packet_size(Some(16 << 20))
            .set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(self.tls.clone()),
            ));
        Client::new(o, 4)
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
        let where_ = format!("mqtts://{}:{}", self.host, self.port);
        let (client, mut conn) = match self.conn.take() {
            Some(c) => c,
            None => self.connect(),
        };
        let topic = format!("{TOPIC_PREFIX}{}", header.serial);
        if let Err(e) = client.publish(topic, QoS::AtLeastOnce, false, payload(signature, frame)) {
            return Err(DeviceError::Network(format!("{where_}: {e}")));
        }
        let deadline = Instant::now() + self.opts.request_timeout;
        let mut pkid = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                // The connection is dropped: a late PUBACK cannot be
                // matched to this frame any more; the retry is
                // deduplicated by the server.
                return Err(DeviceError::Network(format!(
                    "{where_}: no PUBACK within {} s",
                    self.opts.request_timeout.as_secs()
                )));
            }
            match conn.recv_timeout(left) {
                Ok(Ok(Event::Outgoing(rumqttc::Outgoing::Publish(id)))) => pkid = Some(id),
                Ok(Ok(Event::Incoming(Packet::PubAck(a)))) if Some(a.pkid) == pkid => {
                    let r = map_puback(
                        &header.serial,
                        header.sequence,
                        &a,
                        self.opts.max_retry_after,
                    );
                    self.conn = Some((client, conn));
                    return r;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(DeviceError::Network(format!("{where_}: {e}")));
                }
                Err(_) => {}
            }
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
