//! TLS: certificates from PEM files or a self-signed one for evaluation, and the rustls
//! server configuration (TLS 1.2 and 1.3 only, ALPN h2 and http/1.1, aws-lc-rs).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::aws_lc_rs;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.cert: cannot read certificates from {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("tls.key: cannot read a private key from {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("tls: the key in {key} does not match the certificate in {cert}: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("tls.self_signed: cannot create a certificate in {dir}: {reason}")]
    SelfSigned { dir: PathBuf, reason: String },
}

pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// SHA-256 of the leaf certificate, colon-separated hex, for admins to pin or compare.
    pub fingerprint: String,
}

pub fn load_pem(cert: &Path, key: &Path) -> Result<Loaded, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.into(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Cert {
            path: cert.into(),
            reason: "no CERTIFICATE block found".into(),
        });
    }
    let pk = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.into(),
        reason: e.to_string(),
    })?;
    let provider = aws_lc_rs::default_provider();
    let fingerprint = fingerprint(&chain[0]);
    let ck = CertifiedKey::from_der(chain, pk, &provider).map_err(|e| TlsError::Mismatch {
        cert: cert.into(),
        key: key.into(),
        reason: e.to_string(),
    })?;
    Ok(Loaded {
        key: Arc::new(ck),
        fingerprint,
    })
}

pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The self-signed certificate in `dir/tls/`, created on first use and reused afterwards.
/// Returns the paths of the certificate and the key.
pub fn ensure_self_signed(dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let tls_dir = dir.join("tls");
    let cert = tls_dir.join("cert.pem");
    let key = tls_dir.join("key.pem");
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let fail = |reason: String| TlsError::SelfSigned {
        dir: tls_dir.clone(),
        reason,
    };
    std::fs::create_dir_all(&tls_dir).map_err(|e| fail(e.to_string()))?;
    // Owner-only whatever the umask (the key inside is written owner-only too).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tls_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail(e.to_string()))?;
    }
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() && !names.iter().any(|n| n == h) {
            names.push(h.to_string());
        }
    }
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| fail(e.to_string()))?;
    write_private(&key, ck.signing_key.serialize_pem().as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    std::fs::write(&cert, ck.cert.pem()).map_err(|e| fail(e.to_string()))?;
    Ok((cert, key))
}

/// Write a file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The served certificate, swappable while running: new handshakes see the new one, open
/// connections keep theirs.
#[derive(Debug)]
pub struct CertResolver {
    current: std::sync::RwLock<Arc<CertifiedKey>>,
}

impl CertResolver {
    pub fn new(key: Arc<CertifiedKey>) -> CertResolver {
        CertResolver {
            current: std::sync::RwLock::new(key),
        }
    }

    pub fn set(&self, key: Arc<CertifiedKey>) {
        match self.current.write() {
            Ok(mut g) => *g = key,
            Err(p) => *p.into_inner() = key,
        }
    }

    fn get(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

impl rustls::server::ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

pub fn server_config(resolver: Arc<CertResolver>) -> Result<ServerConfig, rustls::Error> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}
