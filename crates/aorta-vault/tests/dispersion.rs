//! Dispersion end to end through `object_store`: local stores with k-of-n
//! Reed-Solomon (stores deleted, record still recovered), backup of the
//! private fragment, and S3 against a local moto server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: a failing unwrap, expect, panic or index is the test failing"
)]

use aorta_crypto::selective::{
    KdfParams, ProtectOptions, RecoveryMaterial, container::open_private, protect, recover,
    recover_with_passphrase,
};
use aorta_vault::VaultError;
use aorta_vault::dispersal::Dispersal;
use aorta_vault::store::{StoreSpec, Vault, VaultConfig};

fn local(p: &str) -> StoreSpec {
    StoreSpec::Local { path: p.into() }
}

fn record() -> (
    Vec<u8>,
    aorta_crypto::selective::Protected,
    RecoveryMaterial,
) {
    let input: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let opts = ProtectOptions {
        kdf: KdfParams::INSECURE_TEST,
        ..Default::default()
    };
    let p = protect(&input, b"pw", &opts).unwrap();
    let m = open_private(&p.private, b"pw").unwrap();
    (input, p, m)
}

#[test]
fn default_layout_replicates_and_recovers() {
    let d = tempfile::tempdir().unwrap();
    let v = Vault::open(d.path()).unwrap();
    let (input, p, m) = record();
    v.put_record(&p, &m).unwrap();
    assert!(d.path().join("cloud/records").is_dir());
    assert!(d.path().join("device/records").is_dir());
    let pubc = v.get_public_verified(&p.record_id, &m).unwrap().0;
    let privc = v.get_private(&p.record_id).unwrap();
    assert_eq!(
        recover_with_passphrase(&pubc, &privc, b"pw").unwrap(),
        input
    );
    let (_, never_stored, m2) = record();
    assert!(matches!(
        v.get_public_verified(&never_stored.record_id, &m2),
        Err(VaultError::NotFound { .. })
    ));
}

#[test]
fn corrupted_replica_is_skipped() {
    let d = tempfile::tempdir().unwrap();
    let cfg = VaultConfig {
        public: vec![local("r0"), local("r1")],
        private: local("device"),
        backup: None,
        dispersal: None,
    };
    let v = Vault::with_config(d.path(), &cfg).unwrap();
    let (input, p, m) = record();
    v.put_record(&p, &m).unwrap();
    let f = d.path().join(format!("r0/records/{}.aosp", p.record_id));
    let mut b = std::fs::read(&f).unwrap();
    b[1000] ^= 1;
    std::fs::write(&f, &b).unwrap();
    let pubc = v.get_public_verified(&p.record_id, &m).unwrap().0;
    let privc = v.get_private(&p.record_id).unwrap();
    assert_eq!(
        recover_with_passphrase(&pubc, &privc, b"pw").unwrap(),
        input
    );
}

#[test]
fn reed_solomon_survives_deleted_stores_and_backup_survives_lost_device() {
    let d = tempfile::tempdir().unwrap();
    let cfg = VaultConfig {
        public: vec![
            local("c0"),
            local("c1"),
            local("c2"),
            local("c3"),
            local("c4"),
        ],
        private: local("device"),
        backup: Some(local("trusted")),
        dispersal: Some(Dispersal { k: 3, n: 5 }),
    };
    let v = Vault::with_config(d.path(), &cfg).unwrap();
    let (input, p, m) = record();
    v.put_record(&p, &m).unwrap();
    // Lose two whole cloud stores (n - k = 2).
    std::fs::remove_dir_all(d.path().join("c1")).unwrap();
    v.delete_public_from(3, &p.record_id).unwrap();
    // Lose the phone: the private fragment comes from the trusted backup.
    v.delete_private(&p.record_id).unwrap();
    let pubc = v.get_public_verified(&p.record_id, &m).unwrap().0;
    assert_eq!(pubc, p.public);
    let privc = v.get_private(&p.record_id).unwrap();
    let m = open_private(&privc, b"pw").unwrap();
    assert_eq!(recover(&pubc, &m).unwrap(), input);
    // A third lost store is one too many: a clear error, not wrong bytes.
    v.delete_public_from(0, &p.record_id).unwrap();
    assert!(matches!(
        v.get_public_verified(&p.record_id, &m),
        Err(VaultError::TooFewShards {
            available: 2,
            needed: 3,
            ..
        })
    ));
}

#[test]
fn config_file_is_read_and_checked() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("vault.json"),
        r#"{"public":[{"type":"local","path":"a"},{"type":"local","path":"b"}],
            "private":{"type":"local","path":"dev"},"dispersal":{"k":1,"n":2}}"#,
    )
    .unwrap();
    let v = Vault::open(d.path()).unwrap();
    let (_, p, m) = record();
    v.put_record(&p, &m).unwrap();
    assert!(d.path().join("a/records").is_dir() && d.path().join("b/records").is_dir());
    std::fs::write(
        d.path().join("vault.json"),
        r#"{"public":[{"type":"local","path":"a"}],"private":{"type":"local","path":"dev"},"dispersal":{"k":1,"n":2}}"#,
    )
    .unwrap();
    assert!(matches!(
        Vault::open(d.path()),
        Err(VaultError::Config { .. })
    ));
    std::fs::write(d.path().join("vault.json"), "{nonsense").unwrap();
    assert!(matches!(
        Vault::open(d.path()),
        Err(VaultError::Config { .. })
    ));
}

/// Finds the S3 endpoint: `AORTA_TEST_S3_ENDPOINT` (set by tools/test.sh,
/// which starts moto), else starts `moto_server` itself on a free loopback
/// port. Returns None (and the test skips visibly) only if moto is absent.
fn moto() -> Option<(String, Option<std::process::Child>)> {
    if let Ok(e) = std::env::var("AORTA_TEST_S3_ENDPOINT") {
        return Some((e, None));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = std::process::Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let endpoint = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((endpoint, Some(child)));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut child = child;
    let _ = child.kill();
    None
}

fn create_bucket(endpoint: &str, bucket: &str) {
    // moto accepts an unsigned CreateBucket; a bare HTTP/1.1 PUT is enough.
    use std::io::{Read, Write};
    let hostport = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(hostport).unwrap();
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(
        resp.starts_with("HTTP/1.1 200") || resp.contains("BucketAlready"),
        "{resp}"
    );
}

#[test]
fn s3_dispersal_against_moto() {
    let Some((endpoint, child)) = moto() else {
        eprintln!(
            "SKIPPED s3_dispersal_against_moto: moto_server not available (pip install 'moto[server]')"
        );
        return;
    };
    struct Kill(Option<std::process::Child>);
    impl Drop for Kill {
        fn drop(&mut self) {
            if let Some(c) = &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let _guard = Kill(child);
    let s3 = |bucket: &str| StoreSpec::S3 {
        bucket: bucket.into(),
        endpoint: Some(endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
        allow_http: true,
    };
    for b in ["aorta-a", "aorta-b", "aorta-c"] {
        create_bucket(&endpoint, b);
    }
    let d = tempfile::tempdir().unwrap();
    let cfg = VaultConfig {
        public: vec![s3("aorta-a"), s3("aorta-b"), s3("aorta-c")],
        private: local("device"),
        backup: Some(s3("aorta-c")),
        dispersal: Some(Dispersal { k: 2, n: 3 }),
    };
    let v = Vault::with_config(d.path(), &cfg).unwrap();
    let (input, p, m) = record();
    v.put_record(&p, &m).unwrap();
    v.delete_public_from(1, &p.record_id).unwrap();
    v.delete_private(&p.record_id).unwrap();
    let pubc = v.get_public_verified(&p.record_id, &m).unwrap().0;
    let privc = v.get_private(&p.record_id).unwrap();
    assert_eq!(
        recover_with_passphrase(&pubc, &privc, b"pw").unwrap(),
        input
    );
}
