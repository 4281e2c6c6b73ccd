//! Securing NATS (`docs/scale.md`, "Securing NATS"), tried as the parties
//! would against real `nats-server` processes (`SKIPPED` without one):
//!
//! - a stranger on the network with no credentials, or a wrong password,
//!   is refused at connect — it cannot append to the frame stream, which
//!   would bypass ingest's acceptance checks;
//! - a credential whose permissions deny publishing frames (a read-only
//!   role) cannot append one either, and nothing of its attempt is stored;
//! - with `tls_ca` set, TLS is required and only that CA's servers are
//!   trusted: a client without it, or with another CA, is refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::time::{Duration, Instant};

use aorta_cluster::testing::{NatsCluster, nats_server_or_skip};
use aorta_cluster::{ClusterError, Nats, NatsAuth, StreamSpec};
use aorta_stream::log::FrameLog;
use zeroize::Zeroizing;

fn spec() -> StreamSpec {
    StreamSpec {
        partitions: 2,
        replicas: 1,
        ack_timeout: Duration::from_secs(2),
        ..StreamSpec::default()
    }
}

fn user(name: &str, password: &str) -> NatsAuth {
    NatsAuth {
        user: Some((name.to_owned(), Zeroizing::new(password.to_owned()))),
        ..NatsAuth::default()
    }
}

/// Connects with `auth` and creates the stream, retrying while the fresh
/// server starts JetStream.
fn ready(urls: &str, auth: &NatsAuth) -> Nats {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = Nats::connect_with(urls, auth, Duration::from_secs(2)).and_then(|n| {
            n.ensure_stream(&spec())?;
            Ok(n)
        });
        match r {
            Ok(n) => return n,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("JetStream not ready: {e}"),
        }
    }
}

fn stored(nats: &Nats) -> usize {
    let r = nats
        .reader(&spec(), &[0, 1], Duration::from_millis(300))
        .unwrap();
    r.read_from(0, 100).unwrap().0.len()
}

#[test]
fn strangers_and_read_only_credentials_cannot_append_frames() {
    let Some(bin) = nats_server_or_skip("strangers_and_read_only_credentials_cannot_append_frames")
    else {
        return;
    };
    let conf = r#"authorization {
  users: [
    { user: ingest, password: "ingest-secret-7f3a" }
    { user: reader, password: "reader-secret-91c2", permissions: { publish: { deny: ["aorta.frames.>"] } } }
  ]
}"#;
    let proc = NatsCluster::start_with(&bin, 1, conf).unwrap();
    let urls = proc.urls();
    let ingest = ready(&urls, &user("ingest", "ingest-secret-7f3a"));

    // A stranger: no credentials, then a guessed password.
    for auth in [NatsAuth::default(), user("ingest", "guess")] {
        match Nats::connect_with(&urls, &auth, Duration::from_secs(2)) {
            Err(ClusterError::Config(m)) => assert!(m.contains("credentials"), "{m}"),
            Err(e) => panic!("expected a credentials refusal, got {e}"),
            Ok(_) => panic!("{auth:?} connected"),
        }
    }

    // The ingest role appends; the read-only role cannot.
    let mut p = ingest.publisher(&spec());
    p.append("dev-1", 0, b"accepted by ingest").unwrap();
    p.sync().unwrap();
    let reader = ready(&urls, &user("reader", "reader-secret-91c2"));
    let mut forged = reader.publisher(&spec());
    let tried = forged
        .append("dev-1", 1, b"forged")
        .and_then(|_| forged.sync());
    assert!(tried.is_err(), "a read-only credential appended a frame");
    assert_eq!(stored(&ingest), 1);
    // It still reads (its role).
    assert_eq!(stored(&reader), 1);
}

/// A CA, a server certificate for 127.0.0.1 signed by it, and another CA.
fn certificates(dir: &std::path::Path) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        Issuer::new(params, key)
    };
    let issuer = ca("ca");
    let _ = ca("other-ca");
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server-key.pem"), key.serialize_pem()).unwrap();
}

#[test]
fn tls_is_required_and_only_the_configured_ca_is_trusted() {
    let Some(bin) = nats_server_or_skip("tls_is_required_and_only_the_configured_ca_is_trusted")
    else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    certificates(t.path());
    let conf = format!(
        "tls {{ cert_file: \"{}\", key_file: \"{}\", timeout: 2 }}",
        t.path().join("server.pem").display(),
        t.path().join("server-key.pem").display()
    );
    let proc = NatsCluster::start_with(&bin, 1, &conf).unwrap();
    let urls = proc.urls();
    let trusted = NatsAuth {
        tls_ca: Some(t.path().join("ca.pem")),
        ..NatsAuth::default()
    };
    let nats = ready(&urls, &trusted);
    let mut p = nats.publisher(&spec());
    p.append("dev-1", 0, b"over TLS").unwrap();
    p.sync().unwrap();
    assert_eq!(stored(&nats), 1);

    let other = NatsAuth {
        tls_ca: Some(t.path().join("other-ca.pem")),
        ..NatsAuth::default()
    };
    for auth in [NatsAuth::default(), other] {
        assert!(
            Nats::connect_with(&urls, &auth, Duration::from_secs(2)).is_err(),
            "{auth:?} connected to a server its CA did not sign"
        );
    }
}

#[test]
fn secrets_are_read_from_their_first_line_and_never_printed() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("token");
    std::fs::write(&f, "  s3cret-token \nsecond line\n").unwrap();
    let token = NatsAuth::read_secret(&f, "token").unwrap();
    assert_eq!(token.as_str(), "s3cret-token");
    let auth = NatsAuth {
        token: Some(token),
        user: Some(("ingest".into(), Zeroizing::new("pw-123".into()))),
        ..NatsAuth::default()
    };
    let shown = format!("{auth:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("pw-123"),
        "{shown}"
    );
    std::fs::write(&f, "\n").unwrap();
    assert!(matches!(
        NatsAuth::read_secret(&f, "token"),
        Err(ClusterError::Config(_))
    ));
    assert!(matches!(
        NatsAuth::read_secret(&t.path().join("missing"), "token"),
        Err(ClusterError::Config(_))
    ));
}
