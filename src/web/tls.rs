//! rustls server configuration: TLS 1.2 and 1.3 only, ring's cipher suites (all AEAD, forward
//! secret), certificate chain and key from PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::ring;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate file {path}: {message}")]
    Certificate { path: PathBuf, message: String },
    #[error("TLS key file {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("TLS certificate and key do not work together: {0}")]
    Mismatch(String),
}

fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let problem = |message: String| TlsError::Certificate {
        path: path.to_path_buf(),
        message,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| problem(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| problem(error.to_string()))?;
    if certificates.is_empty() {
        return Err(problem("no PEM certificate found".to_owned()));
    }
    Ok(certificates)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| TlsError::Key {
        path: path.to_path_buf(),
        message: error.to_string(),
    })
}

/// The server configuration for `files`, or a message naming the file at fault.
pub fn server_config(files: &TlsConfig) -> Result<ServerConfig, TlsError> {
    let certificates = load_certificates(&files.cert)?;
    let key = load_key(&files.key)?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| TlsError::Mismatch(error.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|error| TlsError::Mismatch(error.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Writes a self-signed certificate for first boot, valid for `localhost`, the machine's name and
/// the loopback addresses. Operators replace it with one from their own CA.
pub fn write_self_signed(
    cert_path: &Path,
    key_path: &Path,
    extra_names: &[String],
) -> Result<(), String> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    names.extend(extra_names.iter().cloned());
    let certified = rcgen::generate_simple_self_signed(names).map_err(|error| error.to_string())?;
    crate::init::write_private_file(cert_path, certified.cert.pem().as_bytes())
        .map_err(|error| error.to_string())?;
    crate::init::write_private_file(key_path, certified.key_pair.serialize_pem().as_bytes())
        .map_err(|error| error.to_string())?;
    Ok(())
}
