//! HTTPS on the listener: rustls with a certificate that can be replaced while serving.
//!
//! Certificates are renewed every few weeks (ACME) and a key server must not restart for it:
//! every TLS handshake asks [`ReloadableCertificate`] for the current certificate, and
//! [`ReloadableCertificate::reload`] swaps in the files' new contents. A renewal that cannot
//! be loaded (half-written file, key that does not match the certificate) leaves the old
//! certificate in place and is reported, so a broken renewal never takes the service down.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::TlsConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate file {path}: {message}")]
    Certificate { path: PathBuf, message: String },
    /// The message never includes the key: rustls and the PEM parser name only what failed.
    #[error("cannot read the TLS private key file {path}: {message}")]
    PrivateKey { path: PathBuf, message: String },
    #[error("the TLS private key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The provider for the listener. `ring` because the HTTP client (reqwest) and the database
/// driver (sqlx) already bring rustls with ring: one TLS implementation in the binary.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The files' identity as far as a reload cares: a renewal changes the modification time
/// or the size.
type FileStamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> FileStamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The certificate served to every handshake, replaceable at run time.
#[derive(Debug)]
pub struct ReloadableCertificate {
    files: TlsConfig,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    stamps: Mutex<(FileStamp, FileStamp)>,
}

impl ReloadableCertificate {
    /// Loads the files once; an error here stops the server from starting.
    pub fn load(files: &TlsConfig) -> Result<Arc<Self>, TlsError> {
        let provider = provider();
        let stamps = (stamp(&files.cert_file), stamp(&files.key_file));
        let certified = load_certified_key(files, &provider)?;
        Ok(Arc::new(Self {
            files: files.clone(),
            provider,
            current: RwLock::new(Arc::new(certified)),
            stamps: Mutex::new(stamps),
        }))
    }

    /// Re-reads both files and serves them from the next handshake on. On error the
    /// previous certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamps = (stamp(&self.files.cert_file), stamp(&self.files.key_file));
        let certified = load_certified_key(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(certified);
        *self.stamps.lock().unwrap_or_else(|e| e.into_inner()) = stamps;
        Ok(())
    }

    /// Reloads when either file changed since the last load; `Ok(true)` when it did.
    /// A failed attempt is retried at the next check only if the files change again, so a
    /// broken renewal is reported once, not every few seconds.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = (stamp(&self.files.cert_file), stamp(&self.files.key_file));
        {
            let mut seen = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == now {
                return Ok(false);
            }
            *seen = now;
        }
        self.reload().map(|()| true)
    }

    /// The rustls configuration for the listener: TLS 1.2 and 1.3, HTTP/1.1 by ALPN.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The certificate chain currently served (tests compare it with the files).
    pub fn current_chain(&self) -> Vec<CertificateDer<'static>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .cert
            .clone()
    }
}

impl ResolvesServerCert for ReloadableCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn load_certified_key(
    files: &TlsConfig,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let cert_err = |message: String| TlsError::Certificate {
        path: files.cert_file.clone(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(&files.cert_file)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no CERTIFICATE block".into()));
    }
    let key_err = |message: String| TlsError::PrivateKey {
        path: files.key_file.clone(),
        message,
    };
    let key = PrivateKeyDer::from_pem_file(&files.key_file).map_err(|e| key_err(e.to_string()))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_err(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // Ring's signing keys all report their public key; `Unknown` would mean one that
        // cannot be compared, which rustls itself then accepts.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: files.cert_file.clone(),
            key: files.key_file.clone(),
        }),
        Err(e) => Err(cert_err(e.to_string())),
    }
}
