//! TLS material: a self-signed certificate made on first start, or the
//! operator's own PEM files placed at `DATA/tls/cert.pem` and `DATA/tls/key.pem`.

use std::fs;
use std::io::BufReader;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::data::{write_private, DataDir};
use crate::ServeError;

/// Load the certificate and key from the data directory, making a
/// self-signed pair for `domain` (plus `localhost` and loopback) if absent.
pub fn load_or_create(
    data: &DataDir,
    domain: &str,
) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    let (cert, key) = (data.cert(), data.key());
    if !cert.exists() || !key.exists() {
        create_self_signed(data, domain)?;
        tracing::info!(path = %cert.display(), "made a self-signed TLS certificate; replace cert.pem and key.pem with your own to be trusted by clients");
    }
    let certs = read_certs(&cert)?;
    let key = read_key(&key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ServeError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ServeError::Tls(format!("{} does not match its key: {e}", cert.display())))?;
    Ok(Arc::new(config))
}

/// The SHA-256 fingerprint of the first certificate (colon-separated hex,
/// as browsers show it), for operators to pin or compare.
pub fn fingerprint(data: &DataDir) -> Result<String, ServeError> {
    use sha2::Digest as _;
    let certs = read_certs(&data.cert())?;
    // read_certs never returns an empty list.
    let first = certs
        .first()
        .ok_or_else(|| ServeError::Tls("no certificate".into()))?;
    let digest = sha2::Sha256::digest(first.as_ref());
    Ok(digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

fn create_self_signed(data: &DataDir, domain: &str) -> Result<(), ServeError> {
    let mut names = vec![domain.to_owned()];
    for extra in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == extra) {
            names.push(extra.to_owned());
        }
    }
    let certified = rcgen::generate_simple_self_signed(names)
        .map_err(|e| ServeError::Tls(format!("cannot make a self-signed certificate: {e}")))?;
    let io = |path: &std::path::Path, e: std::io::Error| ServeError::DataDir {
        path: path.to_owned(),
        reason: format!("cannot write it ({e})"),
    };
    fs::write(data.cert(), certified.cert.pem()).map_err(|e| io(&data.cert(), e))?;
    write_private(
        &data.key(),
        certified.signing_key.serialize_pem().as_bytes(),
    )
    .map_err(|e| io(&data.key(), e))?;
    Ok(())
}

fn read_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, ServeError> {
    let f = fs::File::open(path)
        .map_err(|e| ServeError::Tls(format!("cannot read {}: {e}", path.display())))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(f))
        .collect::<Result<_, _>>()
        .map_err(|e| ServeError::Tls(format!("{} is not PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!("{} holds no certificate; put a PEM chain there or delete it to have a self-signed one made", path.display())));
    }
    Ok(certs)
}

fn read_key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>, ServeError> {
    let f = fs::File::open(path)
        .map_err(|e| ServeError::Tls(format!("cannot read {}: {e}", path.display())))?;
    rustls_pemfile::private_key(&mut BufReader::new(f))
        .map_err(|e| ServeError::Tls(format!("{} is not PEM: {e}", path.display())))?
        .ok_or_else(|| ServeError::Tls(format!("{} holds no private key", path.display())))
}
