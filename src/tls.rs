//! TLS for the server port (rustls): a certificate chain and key from PEM files (config
//! `tls_cert`, `tls_key`), or a local certificate authority and server certificate that
//! `sluice serve --tls-self-signed` makes with rcgen. ALPN offers `h2` then `http/1.1`, so
//! HTTP/2 clients (the JavaScript SDK, the KPL) get HTTP/2 over TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file holds no certificate or key, or one rustls refuses.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the certificate and key together.
    #[error("the TLS certificate and key do not fit together: {0}")]
    Config(#[from] rustls::Error),
    /// rcgen could not make a certificate.
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.to_owned(), source }
}

/// A TLS acceptor for the certificate chain in `cert` (PEM, leaf first) and the private key
/// in `key` (PEM: PKCS#8, PKCS#1 or SEC1), with ALPN `h2`, `http/1.1`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let chain_pem = std::fs::read(cert).map_err(io_error(cert))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem { path: cert.to_owned(), message: e.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::Pem { path: cert.to_owned(), message: "no CERTIFICATE block".into() });
    }
    let key_pem = std::fs::read(key).map_err(io_error(key))?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError::Pem { path: key.to_owned(), message: e.to_string() })?;
    let mut config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key_der)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The files `--tls-self-signed` uses, under `<data_dir>/tls/`.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    /// The local certificate authority clients trust (`aws --ca-bundle`, `AWS_CA_BUNDLE`).
    pub ca: PathBuf,
    /// The server's certificate chain (server certificate, then the authority).
    pub cert: PathBuf,
    /// The server certificate's private key.
    pub key: PathBuf,
}

/// Makes a local certificate authority and a server certificate it signs for `localhost`,
/// `127.0.0.1`, `::1` and `names`, valid for 10 years, under `dir`; files already there are
/// kept, so clients that trust the authority keep trusting restarts. The key files are
/// written mode 0600.
pub fn self_signed(dir: &Path, names: &[String]) -> Result<SelfSigned, TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let files = SelfSigned { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") };
    if files.ca.exists() && files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let now = rcgen::date_time_ymd(2020, 1, 1);
    let ten_years = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400 / 365 + 1970 + 10)
        .unwrap_or(2036);
    let not_after = rcgen::date_time_ymd(i32::try_from(ten_years).unwrap_or(2036), 1, 1);

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Sluice local certificate authority");
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca_params.not_before = now;
    ca_params.not_after = not_after;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut subject_names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    subject_names.extend(names.iter().filter(|n| !subject_names.contains(n)).cloned().collect::<Vec<_>>());
    let server_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(subject_names)?;
    params.distinguished_name.push(DnType::CommonName, "sluice");
    params.not_before = now;
    params.not_after = not_after;
    let server_cert = params.signed_by(&server_key, &issuer)?;

    write_private(&files.key, server_key.serialize_pem().as_bytes())?;
    std::fs::write(&files.cert, format!("{}{}", server_cert.pem(), ca_cert.pem())).map_err(io_error(&files.cert))?;
    std::fs::write(&files.ca, ca_cert.pem()).map_err(io_error(&files.ca))?;
    Ok(files)
}

/// Writes a secret file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))?;
    f.write_all(bytes).map_err(io_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_authority_and_certificate_load_and_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let files = self_signed(dir.path(), &["sluice.internal".into()]).unwrap();
        acceptor(&files.cert, &files.key).unwrap();
        let first = std::fs::read(&files.ca).unwrap();
        self_signed(dir.path(), &[]).unwrap();
        assert_eq!(std::fs::read(&files.ca).unwrap(), first, "an existing authority is kept");
        let bad = dir.path().join("empty.pem");
        std::fs::write(&bad, "").unwrap();
        assert!(matches!(acceptor(&bad, &files.key), Err(TlsError::Pem { .. })));
    }
}
