//! TLS for the `tls` and `wss` listeners: the server configuration from PEM files (and, with
//! a client CA, the verifier that requires a client certificate chaining to it), the
//! handshake, bounded in time so that a silent peer cannot hold a task, and the subject CN
//! of a verified client certificate (`tls.cn_as_username`).

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate file {path}: {message}")]
    Cert { path: String, message: String },
    #[error("cannot read the private key file {path}: {message}")]
    Key { path: String, message: String },
    #[error("cannot use the client CA file {path}: {message}")]
    Ca { path: String, message: String },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The PEM files of a TLS listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TlsFiles<'a> {
    pub(crate) cert: &'a Path,
    pub(crate) key: &'a Path,
    /// Set: every client must present a certificate that chains to one of these CAs.
    pub(crate) client_ca: Option<&'a Path>,
}

/// A TLS acceptor for the certificate chain and key in PEM files; with a client CA, one
/// that refuses a handshake without a client certificate that chains to it.
pub(crate) fn acceptor(files: TlsFiles<'_>) -> Result<TlsAcceptor, TlsError> {
    let certs = read_certs(files.cert).map_err(|message| TlsError::Cert {
        path: files.cert.display().to_string(),
        message,
    })?;
    // The key's contents never reach an error message: only its path and the reason.
    let key = PrivateKeyDer::from_pem_file(files.key).map_err(|e| TlsError::Key {
        path: files.key.display().to_string(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let ca_error = |message: String| TlsError::Ca {
                path: ca.display().to_string(),
                message,
            };
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca).map_err(ca_error)? {
                roots.add(c).map_err(|e| ca_error(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ca_error(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = config.with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The certificates of a PEM file; an error if there are none.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no certificate in it".into());
    }
    Ok(certs)
}

/// The server side of the TLS handshake, within 10 s.
pub(crate) async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> io::Result<TlsStream<TcpStream>> {
    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "TLS handshake timed out",
        )),
    }
}

/// The first subject CN of the client's certificate (verified by the handshake), if it
/// sent one and it has a CN.
pub(crate) fn peer_common_name(stream: &TlsStream<TcpStream>) -> Option<Arc<str>> {
    let leaf = stream.get_ref().1.peer_certificates()?.first()?;
    common_name(leaf.as_ref())
}

/// The first CN of a DER certificate's subject, as UTF-8 (or ASCII) text.
fn common_name(der: &[u8]) -> Option<Arc<str>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(Arc::from(cn))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate with subject `CN=alice, O=dynamq`, made by
    /// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes
    /// -subj /CN=alice/O=dynamq -days 1`.
    const ALICE_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBljCCAT2gAwIBAgIUVUQFK5cLZ5ThnrdvFdOGVy6TInwwCgYIKoZIzj0EAwIw
ITEOMAwGA1UEAwwFYWxpY2UxDzANBgNVBAoMBmR5bmFtcTAeFw0yNjEyMDEwNzQ0
NTFaFw0yNjEyMDIwNzQ0NTFaMCExDjAMBgNVBAMMBWFsaWNlMQ8wDQYDVQQKDAZk
eW5hbXEwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAQTBBWwQfuTDx7kjj9ao9MT
fN1Gs7EvbeNG4F7T+ze+4+8iMWHSxrLW6F2HJPPibRdzMvOaF0WUGm4B7pTwekIz
o1MwUTAdBgNVHQ4EFgQUwX2LYNtMlCJHIRBKMsISMLfyFHAwHwYDVR0jBBgwFoAU
wX2LYNtMlCJHIRBKMsISMLfyFHAwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQD
AgNHADBEAiAGdl2tQ1bMVpx12Sxt1wQjqF443FjHEeQ0Vd/fzVYB0gIgOc28A7ij
DOQoZDcpAusas0Ke4gjER/sAgOYFYIqfKTc=
-----END CERTIFICATE-----
";

    #[test]
    fn common_name_of_a_certificate() {
        let der = CertificateDer::from_pem_slice(ALICE_PEM.as_bytes()).expect("PEM");
        assert_eq!(common_name(der.as_ref()).as_deref(), Some("alice"));
        assert_eq!(common_name(b"not a certificate"), None);
    }
}
