//! TLS client settings for SIP over TLS and TURN over TLS: trust the CA file
//! given (`--ca`), or nothing at all (`--insecure`: encryption without
//! authentication, for self-signed test servers).

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::driver::Tls;
use crate::PhoneError;

/// TLS towards `host`, trusting the PEM certificates in `ca` (or anything with `insecure`).
/// With neither, no certificate is trusted and the handshake fails with a clear message.
pub fn client(host: &str, ca: Option<&Path>, insecure: bool) -> Result<Tls, PhoneError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| PhoneError::Tls(e.to_string()))?;
    let config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(path) = ca {
            let file = std::fs::File::open(path).map_err(|e| {
                PhoneError::Tls(format!("cannot read --ca {}: {e}", path.display()))
            })?;
            for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
                let cert =
                    cert.map_err(|e| PhoneError::Tls(format!("--ca {}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| PhoneError::Tls(format!("--ca {}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(PhoneError::Tls(format!(
                    "--ca {} holds no PEM certificate",
                    path.display()
                )));
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    let server_name = ServerName::try_from(host.to_owned())
        .map_err(|e| PhoneError::Tls(format!("{host} is not a valid TLS server name: {e}")))?;
    Ok(Tls {
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        server_name,
    })
}

/// `--insecure`: any certificate is accepted; signatures are still checked so the
/// session keys belong to whoever holds the presented key.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
