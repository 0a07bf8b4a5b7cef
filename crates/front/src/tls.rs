//! TLS configuration for the front: a rustls `ServerConfig` from PEM files.
//!
//! The crypto provider is always `ring`, named here rather than taken from the process
//! default, so that no other crate's choice (or lack of one) changes what we run.
//! No ALPN is configured: Tailscale clients offer none on `/ts2021` and `/derp`, and
//! everything is served as HTTP/1.1.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{0}: no certificate found")]
    NoCertificate(String),
    #[error("{0}: no private key found")]
    NoKey(String),
    #[error("rustls: {0}")]
    Rustls(#[from] tokio_rustls::rustls::Error),
}

/// Loads a certificate chain (leaf first) and a private key (PKCS#8, PKCS#1 or SEC1) from
/// PEM files into a server config using the ring provider.
pub fn load_server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let certs = read_certs(cert_path)?;
    let key = read_key(key_path)?;
    server_config(certs, key)
}

/// A server config for an already-parsed chain and key, using the ring provider.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

fn open(path: &Path) -> Result<BufReader<File>, TlsConfigError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsConfigError::Read { path: path.display().to_string(), source })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let certs = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsConfigError::Read { path: path.display().to_string(), source })?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate(path.display().to_string()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|source| TlsConfigError::Read { path: path.display().to_string(), source })?
        .ok_or_else(|| TlsConfigError::NoKey(path.display().to_string()))
}
