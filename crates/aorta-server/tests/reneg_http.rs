//! `max_key_uses` renegotiation end to end over HTTPS, in process: the
//! server holds the registry (one-machine mode), observes slow key
//! consumption from the frames it stores, offers a lower value in a frame
//! acknowledgement; the device's agent code answers on
//! `POST /v1/devices/reneg`; ingest learns the new window from the
//! republished directory. Plus what a stranger and a keyless host get.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

mod http_common;
use http_common::{Running, serve_state};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aorta_crypto::frame::ChannelCalibration;
use aorta_crypto::keys;
use aorta_crypto::reneg::{Offer, RenegPolicy, Reply};
use aorta_device::agent::{self, AgentConfig, Backoff, FrameSource, SourceFrame, Speed};
use aorta_device::http::{HttpOptions, HttpsTransport};
use aorta_device::queue::{OfflineQueue, QueueLimits};
use aorta_device::queue::{Transport, UploadReply, sign_upload};
use aorta_device::rotation::Sealer;
use aorta_device::se::{FileSecureElement, SecureElement};
use aorta_registry::{PoolConfig, Registry};
use aorta_server::http::ingest::{DeviceDirectory, DirectoryFile};
use aorta_server::http::reneg::{RenegConfig, RenegService};
use aorta_server::http::{ServerConfig, api};

const SERIAL: &str = "SN-E2E";

struct Rig {
    _d: tempfile::TempDir,
    reg: Arc<Registry>,
    clock: Arc<AtomicU64>,
    server: Running,
    sealer: Sealer<FileSecureElement>,
    uplink: HttpsTransport,
}

fn rig() -> Rig {
    rig_with(false)
}

/// `tick`: the server's clock advances one second on every reading
/// (about one second per frame), for the agent's own loop.
fn rig_with(tick: bool) -> Rig {
    let d = tempfile::tempdir().unwrap();
    let reg = Registry::init(
        d.path().join("reg"),
        PoolConfig {
            pool_keys: 240,
            slice_len: 120,
        },
    )
    .unwrap();
    let ks = reg.provision(SERIAL).unwrap();
    reg.verify(SERIAL, &keys::commitment(&ks).unwrap()).unwrap();
    let se = FileSecureElement::create(d.path().join("se"), ks).unwrap();
    reg.register_key(SERIAL, &se.signing_public_key().unwrap())
        .unwrap();
    let reg = Arc::new(reg);
    let cfg = ServerConfig {
        data_dir: d.path().join("data"),
        ..ServerConfig::default()
    };
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let clock = Arc::new(AtomicU64::new(1_700_000_000));
    let c = clock.clone();
    let dir = Arc::new(DirectoryFile::open(&reg.directory_path()).unwrap());
    let d2 = dir.clone();
    let svc = RenegService::new(
        reg.clone(),
        RenegConfig {
            key_period_secs: 100,
            min_observe_secs: 10,
            check_every_secs: 0,
            ..RenegConfig::default()
        },
    )
    .with_clock(Arc::new(move || {
        if tick {
            c.fetch_add(1, Ordering::SeqCst)
        } else {
            c.load(Ordering::SeqCst)
        }
    }))
    .on_change(Arc::new(move || d2.invalidate()));
    let devices: Arc<dyn DeviceDirectory> = dir;
    let state = api::open_state_with_reneg(&cfg, devices, None, Some(Arc::new(svc))).unwrap();
    let server = serve_state(&cfg, state);
    let sealer = Sealer::new(
        FileSecureElement::open(d.path().join("se")).unwrap(),
        d.path().join("state"),
    )
    .unwrap();
    let uplink = HttpsTransport::new(&server.url, &server.cert, HttpOptions::default()).unwrap();
    Rig {
        _d: d,
        reg,
        clock,
        server,
        sealer,
        uplink,
    }
}

/// Seals and uploads one frame, one second of device time later; returns
/// the Offer the acknowledgement carried, if any.
fn send(r: &mut Rig) -> Option<Vec<u8>> {
    r.clock.fetch_add(1, Ordering::SeqCst);
    let cal = [ChannelCalibration::new(200.0, 0, 0, 11, "mV", "x")];
    let f = r.sealer.seal(0, 360_000, &cal, &[&[1, 2, 3][..]]).unwrap();
    let sig = sign_upload(r.sealer.secure_element(), &f.bytes).unwrap();
    let reply = r.uplink.upload(&f.bytes, &sig).unwrap();
    assert_eq!(
        reply,
        UploadReply::Ack {
            sequence: f.sequence
        },
        "frame {} (key index {})",
        f.sequence,
        f.key_index
    );
    r.uplink.take_reneg_offer()
}

fn raw_post(r: &Rig, body: &[u8]) -> (u16, String) {
    let client = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(aorta_api::client_tls_config_file(&r.server.cert).unwrap())
        .build()
        .unwrap();
    let resp = client
        .post(format!(
            "{}{}?serial={SERIAL}",
            r.server.url,
            aorta_api::RENEG_PATH
        ))
        .body(body.to_vec())
        .send()
        .unwrap();
    let s = resp.status().as_u16();
    (s, resp.text().unwrap_or_default())
}

/// The paper's scenario over the real route: slow consumption → the server
/// offers a lower max_key_uses in an ack → the agent renegotiates → both
/// sides run it, the directory's window narrows to it, and frames under the
/// new (faster) schedule are accepted by ingest.
/// Captures every log line of the process (the server runs on its own threads).
#[derive(Clone, Default)]
struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn slow_consumption_lowers_max_key_uses_end_to_end() {
    let logs = Capture::default();
    let w = logs.clone();
    let sub = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || w.clone())
        .finish();
    tracing::subscriber::set_global_default(sub).unwrap();
    let mut r = rig();
    let mut offer = None;
    for _ in 0..30 {
        if let Some(o) = send(&mut r) {
            offer = Some(o);
            break;
        }
    }
    // 1 frame/s, one key per 100 s wanted: 100 frames per key.
    let offer = offer.expect("no offer after 30 frames at 1 frame/s");
    let now = r.clock.load(Ordering::SeqCst);
    let v = aorta_device::agent::renegotiate(
        &mut r.sealer,
        &mut r.uplink,
        &offer,
        now,
        RenegPolicy::default(),
    )
    .unwrap();
    assert_eq!(v, Some(100));
    let info = r.reg.device(SERIAL).unwrap();
    assert_eq!((info.max_key_uses, info.min_key_uses), (100, 100));
    assert_eq!(r.sealer.state().max_key_uses, 100);
    assert!(r.reg.reneg_pending(SERIAL).unwrap().is_none());
    // One audit line per change of the record: sent, then confirmed, with
    // serial, old, new and counter; no key bytes.
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let audit: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("aorta::audit") && l.contains(SERIAL))
        .collect();
    assert!(
        audit.iter().any(|l| l.contains("event=\"sent\"")
            && l.contains(&format!("old={}", keys::DEFAULT_MAX_KEY_USES))
            && l.contains("new=100")
            && l.contains("counter=1")),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|l| l.contains("event=\"confirmed\"") && l.contains("new=100")),
        "{audit:?}"
    );
    let slice = r.reg.device_keys(SERIAL).unwrap();
    let psk = keys::renegotiation_psk(&slice).unwrap();
    assert!(!text.contains(&aorta_base::hex::encode(psk.as_ref())));
    assert!(!text.contains(&aorta_base::hex::encode(&slice.material()[..8])));
    // Frames under the new schedule: the key index advances every 100 frames
    // and ingest accepts them all (no further offer: consumption fits).
    let mut indices = std::collections::BTreeSet::new();
    for _ in 0..250 {
        assert_eq!(send(&mut r), None);
        indices.insert(
            r.sealer
                .state()
                .key_index(r.sealer.next_sequence() - 1, 120),
        );
    }
    assert!(indices.len() >= 3, "{indices:?}");
    // A replayed Offer is refused by the device.
    assert!(
        aorta_device::agent::renegotiate(
            &mut r.sealer,
            &mut r.uplink,
            &offer,
            now,
            RenegPolicy::default()
        )
        .is_err()
    );
}

/// A stranger posting forged or unknown-version messages gets 401/400 and
/// cannot end the device's session; with no session it gets 409.
#[test]
fn strangers_cannot_squat_a_session_and_unknown_versions_are_refused() {
    let mut r = rig();
    let (s, _) = raw_post(&r, b"AORN\x01\x02");
    assert_eq!(s, 409);
    let mut offer = None;
    for _ in 0..30 {
        if let Some(o) = send(&mut r) {
            offer = Some(o);
            break;
        }
    }
    let offer = Offer::decode(&offer.unwrap()).unwrap();
    let (_st, reply) = r.sealer.reneg_on_offer(&offer).unwrap();
    let good = reply.encode();
    // Unknown version: 400, named.
    let mut v2 = good.clone();
    v2[4] = 2;
    let (s, body) = raw_post(&r, &v2);
    assert_eq!(
        (s, body.contains("reneg_unknown_version")),
        (400, true),
        "{body}"
    );
    // Forged (a flipped bit in the status): 401.
    let mut forged = good.clone();
    forged[10] ^= 1;
    assert!(Reply::decode(&forged).is_ok());
    let (s, body) = raw_post(&r, &forged);
    assert_eq!(s, 401, "{body}");
    // The genuine Reply still works: the session survived.
    let (s, body) = raw_post(&r, &good);
    assert_eq!(s, 200, "{body}");
}

/// A keyless host (no registry in the process) has no renegotiation: 501
/// with the reason, never a PSK.
#[test]
fn a_keyless_host_answers_501() {
    let d = tempfile::tempdir().unwrap();
    let cfg = ServerConfig {
        data_dir: d.path().join("data"),
        ..ServerConfig::default()
    };
    std::fs::create_dir_all(&cfg.data_dir).unwrap();
    let devices: Arc<dyn DeviceDirectory> = Arc::new(aorta_crypto::directory::Directory::default());
    let state = api::open_state(&cfg, devices, None).unwrap();
    let server = serve_state(&cfg, state);
    let client = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(aorta_api::client_tls_config_file(&server.cert).unwrap())
        .build()
        .unwrap();
    let resp = client
        .post(format!(
            "{}{}?serial=SN-1",
            server.url,
            aorta_api::RENEG_PATH
        ))
        .body(b"AORN".to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 501);
    assert!(resp.text().unwrap().contains("data owner"));
}

/// A one-lead ramp, one frame per second of signal.
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
    fn next_frame(&mut self) -> Result<Option<SourceFrame<'_>>, aorta_device::DeviceError> {
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

/// The agent's own loop (`agent::run`) takes the Offer from an ack,
/// renegotiates and keeps streaming: every frame acknowledged, none
/// refused, both sides on one lower value.
#[test]
fn the_agent_loop_renegotiates_while_streaming() {
    let mut r = rig_with(true);
    let d = tempfile::tempdir().unwrap();
    let mut queue = OfflineQueue::open(d.path().join("queue"), QueueLimits::default()).unwrap();
    let cfg = AgentConfig {
        speed: Speed::Max,
        backoff: Backoff {
            initial: std::time::Duration::from_millis(1),
            max: std::time::Duration::from_millis(5),
            jitter: 0.5,
        },
        drain_timeout: Some(std::time::Duration::from_secs(60)),
        poll: std::time::Duration::from_millis(5),
    };
    let mut src = Ramp {
        cal: vec![ChannelCalibration::new(200.0, 0, 0, 11, "mV", "MLII")],
        buf: Vec::new(),
        left: 400,
        t: 0,
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let rep = agent::run(
        &mut src,
        &mut r.sealer,
        &mut queue,
        &mut r.uplink,
        &cfg,
        &stop,
        None,
    )
    .unwrap();
    assert_eq!(
        (rep.frames_sealed, rep.acked, rep.refused.len()),
        (400, 400, 0),
        "{rep:?}"
    );
    assert!(rep.renegotiations >= 1, "{rep:?}");
    let info = r.reg.device(SERIAL).unwrap();
    assert!(info.max_key_uses < keys::DEFAULT_MAX_KEY_USES, "{info:?}");
    assert_eq!(info.max_key_uses, r.sealer.state().max_key_uses);
    assert_eq!(info.min_key_uses, info.max_key_uses);
}
