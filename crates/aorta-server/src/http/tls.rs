//! TLS for the server: the configured certificate, or a self-signed
//! development certificate generated on first run (`data_dir/cert.pem`,
//! `data_dir/key.pem` mode 0600). Devices and clients pin that certificate
//! (`--ca data_dir/cert.pem`). rustls with the `ring` provider; ALPN offers
//! `h2` then `http/1.1`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// File name of the generated certificate in the data directory.
pub const DEV_CERT: &str = "cert.pem";
/// File name of the generated key in the data directory.
pub const DEV_KEY: &str = "key.pem";

/// Makes sure a development certificate exists in `dir`, generating one
/// for `names` if not; returns (certificate, key) paths and whether it was
/// generated now.
pub fn ensure_dev_cert(dir: &Path, names: &[String]) -> anyhow::Result<(PathBuf, PathBuf, bool)> {
    let cert = dir.join(DEV_CERT);
    let key = dir.join(DEV_KEY);
    if cert.exists() && key.exists() {
        return Ok((cert, key, false));
    }
    let ck = rcgen::generate_simple_self_signed(names.to_vec())
        .context("generating the development certificate")?;
    aorta_base::fs::write_private_new(&key, ck.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert, ck.cert.pem()).with_context(|| format!("writing {}", cert.display()))?;
    Ok((cert, key, true))
}

/// A rustls server configuration from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: not a PEM certificate chain", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{}: no certificate in the file", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{}: not a PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not match")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
