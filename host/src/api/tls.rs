//! TLS for the one HTTP server (rustls, with the ring provider the other
//! clients use): an API server calls an admission webhook over HTTPS only,
//! and an audit webhook should be.
//!
//! The certificate and key are files, read again when they change (a
//! mounted Secret that cert-manager renews changes under a running pod):
//! a new pair that does not load is said, and the old one serves on.
//!
//! Client certificates are checked against a CA when one is given, but
//! neither required by the handshake nor able to end it (see
//! [`super::client_auth`]): the kubelet's probes present none, and another
//! client may present one the CA did not sign. A route that must have one
//! (a webhook only the API server calls) asks [`Peer`], or is wrapped in
//! [`certified_only`].

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// What is known of the other end of a connection, for the routes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peer {
    /// It presented a client certificate the configured CA signed.
    pub client_certified: bool,
    /// Its address.
    pub address: Option<std::net::SocketAddr>,
}

/// Middleware: with `required`, a request from a client that presented no
/// certificate the client CA signed gets a 401 that says so; without, every
/// request passes.
pub async fn certified_only(
    axum::extract::State(required): axum::extract::State<bool>,
    peer: Option<axum::Extension<Peer>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if required && !peer.is_some_and(|axum::Extension(p)| p.client_certified) {
        tracing::debug!(
            path = request.uri().path(),
            "a webhook request without a client certificate refused"
        );
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            format!(
                "{} takes requests with a client certificate the configured CA signed\n",
                request.uri().path()
            ),
        )
            .into_response();
    }
    next.run(request).await
}

/// Why the server's TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no PEM of the kind needed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The certificate and the key do not belong together, or rustls
    /// refused them.
    #[error("{cert} with {key}: {source}")]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
    /// The client CA could not be used.
    #[error("client CA {path}: {message}")]
    ClientCa {
        /// The CA file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

/// Where the server's certificate, key and client CA are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain (PEM), the server's own first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) that sign acceptable client certificates.
    pub client_ca: Option<PathBuf>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server's TLS: its configuration, and with a client CA, the check of
/// a client's certificate against it.
#[derive(Clone)]
pub struct ServerTls {
    /// What the handshake uses.
    pub config: Arc<rustls::ServerConfig>,
    clients: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
}

impl ServerTls {
    /// Whether a client that presented `chain` presented a certificate
    /// the client CA signed (never without a client CA).
    pub fn certified(&self, chain: Option<&[CertificateDer<'_>]>) -> bool {
        self.clients
            .as_deref()
            .is_some_and(|strict| super::client_auth::certified(strict, chain))
    }
}

/// The server's TLS configuration from `files`, checked now: a pair that
/// does not load is this call's error, not the first client's.
pub fn server_config(files: &TlsFiles) -> Result<ServerTls, TlsError> {
    let provider = provider();
    let resolver = Reloading::new(files.cert.clone(), files.key.clone(), provider.clone())?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Pair {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        })?;
    let mut clients = None;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(path)? {
                roots.add(cert).map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            clients = Some(verifier.clone());
            builder.with_client_cert_verifier(Arc::new(super::client_auth::Lenient(verifier)))
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ServerTls {
        config: Arc::new(config),
        clients,
    })
}

/// A PEM error in words: the crate's own message prints markers as bytes.
fn pem_error(error: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match error {
        Error::MissingSectionEnd { end_marker } => format!(
            "no PEM certificate in it (a section does not end with `{}`)",
            String::from_utf8_lossy(end_marker)
        ),
        Error::IllegalSectionStart { line } => format!(
            "no PEM certificate in it (a malformed section start: `{}`)",
            String::from_utf8_lossy(line)
        ),
        Error::Io(error) => error.to_string(),
        other => format!("no PEM certificate in it ({other})"),
    }
}

/// The largest certificate, key or CA file read: a chain of a few
/// certificates is a few KiB.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// The bytes of `path`, if it is a regular file of at most
/// [`MAX_PEM_BYTES`]: a FIFO would block the handshake that reads it, and
/// `/dev/zero` never end.
fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read as _;
    let file = |message: String| TlsError::File {
        path: path.to_owned(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| file(e.to_string()))?;
    if !meta.is_file() {
        return Err(file("not a regular file".into()));
    }
    if meta.len() > MAX_PEM_BYTES {
        return Err(file(format!("larger than {} KiB", MAX_PEM_BYTES >> 10)));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PEM_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| file(e.to_string()))?;
    Ok(bytes)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = |message: String| TlsError::File {
        path: path.to_owned(),
        message,
    };
    let bytes = read_pem(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file(pem_error(&e)))?;
    if certs.is_empty() {
        return Err(file("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = read_certs(cert)?;
    let bytes = read_pem(key)?;
    let der = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::File {
        path: key.to_owned(),
        message: match e {
            rustls::pki_types::pem::Error::Io(error) => error.to_string(),
            _ => "no PEM private key in it (PKCS#8, PKCS#1 or SEC1)".into(),
        },
    })?;
    CertifiedKey::from_der(chain, der, provider).map_err(|source| TlsError::Pair {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    })
}

/// When a file last changed, to tell a renewed pair.
fn stamp(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The certificate and key, read again when either file changes.
#[derive(Debug)]
struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: Mutex<(Option<SystemTime>, Option<SystemTime>, Arc<CertifiedKey>)>,
}

impl Reloading {
    fn new(cert: PathBuf, key: PathBuf, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let stamps = (stamp(&cert), stamp(&key));
        let pair = Arc::new(load_pair(&cert, &key, &provider)?);
        Ok(Reloading {
            current: Mutex::new((stamps.0, stamps.1, pair)),
            cert,
            key,
            provider,
        })
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let stamps = (stamp(&self.cert), stamp(&self.key));
        if (stamps.0, stamps.1) != (current.0, current.1) {
            match load_pair(&self.cert, &self.key, &self.provider) {
                Ok(pair) => {
                    tracing::info!(cert = %self.cert.display(), "the TLS certificate changed; serving the new one");
                    *current = (stamps.0, stamps.1, Arc::new(pair));
                }
                Err(error) => {
                    // Said once per change; a pair half written (the
                    // certificate renewed, the key not yet) is tried again
                    // when the other file changes.
                    tracing::warn!(%error, "the TLS certificate changed but does not load; the old one serves on");
                    (current.0, current.1) = stamps;
                }
            }
        }
        Some(current.2.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A renewal that leaves a FIFO or a link to a device where the
    /// certificate was must not block or swell the handshake that reads it.
    #[test]
    fn only_regular_files_of_a_sane_size_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.pem");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let zero = dir.path().join("zero.pem");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let huge = dir.path().join("huge.pem");
        std::fs::write(&huge, vec![b'a'; (MAX_PEM_BYTES + 1) as usize]).unwrap();
        for (path, why) in [
            (&fifo, "not a regular file"),
            (&zero, "not a regular file"),
            (&huge, "larger than 1024 KiB"),
        ] {
            let error = read_certs(path).unwrap_err().to_string();
            assert!(error.contains(why), "{error}");
        }
    }
}
