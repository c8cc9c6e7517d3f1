//! TLS: certificates from PEM files or a self-signed one for evaluation, and the rustls
//! server configuration (TLS 1.2 and 1.3 only, ALPN h2, http/1.1 and http/1.0, aws-lc-rs).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::ServerName;
use rustls::server::ParsedCertificate;
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
    #[error(
        "tls.self_signed: cannot look for the certificate in {dir}: {reason}; the directory \
         and its files must belong to the user running scimd (the package runs it as scimd: \
         `chown -R scimd:scimd {dir}`)"
    )]
    Unreadable { dir: PathBuf, reason: String },
}

/// Why certificate files were not put in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotUsed {
    pub reason: String,
    /// They hold a certificate that becomes valid later: worth trying again until it is.
    pub not_yet_valid: bool,
}

impl std::fmt::Display for NotUsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl From<String> for NotUsed {
    fn from(reason: String) -> NotUsed {
        NotUsed {
            reason,
            not_yet_valid: false,
        }
    }
}

pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// SHA-256 of the leaf certificate, colon-separated hex, for admins to pin or compare.
    pub fingerprint: String,
}

/// A PEM file's fault in words: the library shows a marker it did not find as a list of
/// byte values (`[67, 69, 82, ...]` for CERTIFICATE).
fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match e {
        Error::MissingSectionEnd { end_marker } => format!(
            "the file ends inside its {} block (no -----END line: cut short?)",
            text(end_marker)
        ),
        Error::IllegalSectionStart { line } => {
            format!("a -----BEGIN line cannot be read: {}", text(line))
        }
        e => e.to_string(),
    }
}

/// For a file in DER, which scimd does not read, the openssl command that writes it as PEM
/// (a certificate exported from Windows is often DER). DER starts with an ASN.1 SEQUENCE.
fn der_hint(path: &Path, openssl: &str) -> String {
    let mut head = [0u8; 2];
    let der = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok_and(|()| head[0] == 0x30 && (0x80..=0x84).contains(&head[1]));
    if der {
        format!(" (the file looks like DER; scimd reads PEM: openssl {openssl})")
    } else {
        String::new()
    }
}

/// The text of a small PEM file, for the hints below (empty when it cannot be read).
fn pem_text(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// A key under a passphrase, in either PEM form openssl writes: scimd starts unattended,
/// so nobody can type one.
fn under_passphrase(text: &str) -> bool {
    text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
}

const UNDER_PASSPHRASE: &str = "the key is under a passphrase, which scimd cannot be given: \
    write it without one, readable by the user that runs scimd alone \
    (openssl pkey -in FILE -out key.pem)";

/// For a PEM file holding the other file's content, that `tls.cert` and `tls.key` look
/// swapped.
fn swapped_hint(text: &str, for_key: bool) -> &'static str {
    let holds = |label: &str| text.contains(&format!("-----BEGIN {label}-----"));
    let holds_key = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"]
        .iter()
        .any(|k| holds(k));
    match (for_key, holds_key, holds("CERTIFICATE")) {
        (true, false, true) => {
            " (the file holds a certificate, not a key: are tls.cert and tls.key swapped?)"
        }
        (false, true, false) => {
            " (the file holds a private key, not a certificate: are tls.cert and tls.key \
             swapped?)"
        }
        _ => "",
    }
}

pub fn load_pem(cert: &Path, key: &Path) -> Result<Loaded, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.into(),
            reason: pem_reason(&e),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Cert {
            path: cert.into(),
            reason: format!(
                "no CERTIFICATE block found{}{}",
                der_hint(cert, "x509 -inform der -in FILE -out cert.pem"),
                swapped_hint(&pem_text(cert), false)
            ),
        });
    }
    // A PEM block whose content is not a certificate would otherwise be reported as a key
    // that does not match it.
    if let Err(e) = ParsedCertificate::try_from(&chain[0]) {
        return Err(TlsError::Cert {
            path: cert.into(),
            // rustls words it for a peer's certificate ("invalid peer certificate: ..."):
            // here it is the server's own file.
            reason: format!(
                "the first certificate in the file cannot be parsed ({})",
                e.to_string()
                    .trim_start_matches("invalid peer certificate: ")
            ),
        });
    }
    let pk = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        let text = pem_text(key);
        let reason = if under_passphrase(&text) {
            UNDER_PASSPHRASE.into()
        } else {
            format!(
                "{}{}{}",
                match e {
                    // The library's words ("no items found") name no block.
                    rustls::pki_types::pem::Error::NoItemsFound => {
                        "no PRIVATE KEY block found".into()
                    }
                    e => pem_reason(&e),
                },
                der_hint(key, "pkey -inform der -in FILE -out key.pem"),
                swapped_hint(&text, true)
            )
        };
        TlsError::Key {
            path: key.into(),
            reason,
        }
    })?;
    let provider = aws_lc_rs::default_provider();
    let fingerprint = fingerprint(&chain[0]);
    // A key the provider cannot sign with (RSA under 2048 bits, an unsupported curve) is the
    // key's problem, not a mismatch with the certificate.
    let signer = provider
        .key_provider
        .load_private_key(pk)
        .map_err(|e| TlsError::Key {
            path: key.into(),
            reason: if under_passphrase(&pem_text(key)) {
                UNDER_PASSPHRASE.into()
            } else {
                format!(
                    "{e}: the key cannot be used (RSA of 2048 bits or more, ECDSA P-256 or \
                     P-384, or Ed25519 can)"
                )
            },
        })?;
    let ck = CertifiedKey::new(chain, signer);
    match ck.keys_match() {
        // Some keys cannot tell (rustls treats that as a match too).
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            let reason = match e {
                rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                    "the first certificate in the file must be the one issued for this key, \
                     its intermediates after it (`openssl x509 -noout -pubkey -in CERT` and \
                     `openssl pkey -pubout -in KEY` print the same key when they match)"
                        .to_string()
                }
                other => other.to_string(),
            };
            return Err(TlsError::Mismatch {
                cert: cert.into(),
                key: key.into(),
                reason,
            });
        }
    }
    Ok(Loaded {
        key: Arc::new(ck),
        fingerprint,
    })
}

impl Loaded {
    /// What an admin must hear about the certificate's names: whether IdPs given
    /// `public_url` would find its host in them.
    pub fn name_warning(&self, public_url: Option<&str>) -> Option<String> {
        name_warning(&self.key, public_url)
    }

    /// Everything an admin must hear about the certificate: its dates, its names, a chain
    /// without its intermediates, and, for the admin's own files (`tls.cert`), being
    /// self-signed.
    pub fn warnings(&self, public_url: Option<&str>, own_files: bool) -> Vec<String> {
        warnings(&self.key, public_url, own_files)
    }
}

fn warnings(key: &CertifiedKey, public_url: Option<&str>, own_files: bool) -> Vec<String> {
    let leaf = key.end_entity_cert().ok();
    let chain = leaf.and_then(|l| crate::x509::chain_warning(l.as_ref(), key.cert.len()));
    let own = leaf
        .filter(|_| own_files)
        .and_then(|l| crate::x509::self_signed_warning(l.as_ref()));
    date_warning(key)
        .into_iter()
        .chain(name_warning(key, public_url))
        .chain(chain)
        .chain(own)
        .collect()
}

/// What an admin must hear about the certificate's dates today: expired, not yet valid, or
/// ending within `x509::WARN_DAYS`.
fn date_warning(key: &CertifiedKey) -> Option<String> {
    let leaf = key.end_entity_cert().ok()?;
    crate::x509::warning(leaf.as_ref(), time::OffsetDateTime::now_utc())
}

fn name_warning(key: &CertifiedKey, public_url: Option<&str>) -> Option<String> {
    let host = public_url.and_then(public_host)?;
    (!names(key, &host)).then(|| {
        format!(
            "the certificate does not name {}, the host of server.public_url: IdPs given that \
             Base URL refuse the connection (`openssl x509 -noout -ext subjectAltName -in \
             CERT` lists the names it has)",
            host.to_str()
        )
    })
}

/// Where the self-signed certificate and its key are kept under the state directory `dir`.
pub fn self_signed_paths(dir: &Path) -> (PathBuf, PathBuf) {
    let tls_dir = dir.join("tls");
    (tls_dir.join("cert.pem"), tls_dir.join("key.pem"))
}

/// What `scimd status` says of the certificate files a restart would serve (the daemon may
/// serve one it loaded before they changed): their end, anything wrong with their dates, or
/// why they do not load. `None` when there is nothing to read (self-signed, not made yet)
/// or the key cannot be read by whoever asks (it is the service user's).
/// `own`: the admin's files (`tls.cert`); else the self-signed pair, which a start makes
/// anew when it cannot be served or is near its end.
pub fn files_status(
    cert: &Path,
    key: &Path,
    own: bool,
    now: time::OffsetDateTime,
) -> Option<String> {
    let remade = "a restart makes a new self-signed certificate (give it to the clients that \
                  trusted this one)";
    let unreadable = |p: &Path| {
        std::fs::File::open(p).is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
    };
    if !cert.exists() || unreadable(cert) || unreadable(key) {
        return None;
    }
    let loaded = match load_pem(cert, key) {
        Ok(l) => l,
        Err(e) if !own => return Some(format!("CERTIFICATE FILES DO NOT LOAD: {e}; {remade}")),
        Err(e) => {
            return Some(format!(
                "CERTIFICATE FILES DO NOT LOAD: {e}. A running daemon keeps serving the \
                 certificate it loaded, but the next start would fail: fix them first"
            ));
        }
    };
    let leaf = loaded.key.end_entity_cert().ok()?;
    let (_, not_after) = crate::x509::validity(leaf.as_ref())?;
    Some(match crate::x509::warning(leaf.as_ref(), now) {
        Some(w) if !own => format!("CERTIFICATE: {w} ({}); {remade}", cert.display()),
        Some(w) => format!("CERTIFICATE: {w} ({})", cert.display()),
        None => format!(
            "certificate: {}, valid until {} ({} days left)",
            cert.display(),
            crate::x509::day(not_after),
            (not_after - now).whole_days()
        ),
    })
}

pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The self-signed certificate in `dir/tls/`, made on first use and reused afterwards while
/// it loads and names the host of `public_url`. Returns the paths of the certificate and the key.
///
/// Only for the pair scimd makes itself: files an admin configured (`tls.cert`, `tls.key`)
/// never come here, so a broken one of those is an error, never replaced.
pub fn ensure_self_signed(
    dir: &Path,
    public_url: Option<&str>,
) -> Result<(PathBuf, PathBuf), TlsError> {
    let tls_dir = dir.join("tls");
    let (cert, key) = self_signed_paths(dir);
    let host = public_url.and_then(public_host);
    // A pair that may be there but cannot be seen (the directory another user's) is not
    // one to make anew over: say what stops the reading.
    let there = |p: &Path| {
        p.try_exists().map_err(|e| TlsError::Unreadable {
            dir: tls_dir.clone(),
            reason: e.to_string(),
        })
    };
    if there(&cert)? || there(&key)? {
        match load_pem(&cert, &key) {
            // A failed first start (full disk, I/O error, crash) can leave an empty, cut or
            // mismatched pair; the files are ours, so making a new pair is the fix.
            Err(e) => tracing::warn!(
                dir = %tls_dir.display(), error = %e,
                "the generated self-signed certificate cannot be used; making a new one"
            ),
            Ok(l) => match &host {
                Some(h) if !names(&l.key, h) => tracing::warn!(
                    host = %h.to_str(),
                    "the generated self-signed certificate does not name the host of \
                     server.public_url; making a new one (an IdP that trusted the old \
                     certificate must be given the new one)"
                ),
                _ if not_yet_valid(&l.key) => tracing::warn!(
                    "the generated self-signed certificate is not valid yet (made while the \
                     clock was ahead?); making a new one (an IdP that trusted the old \
                     certificate must be given the new one)"
                ),
                _ if ends_soon(&l.key) => tracing::warn!(
                    "the generated self-signed certificate ends within {RENEW_DAYS} days; \
                     making a new one (an IdP that trusted the old certificate must be given \
                     the new one)"
                ),
                _ => return Ok((cert, key)),
            },
        }
    }
    make_self_signed(&tls_dir, host.as_ref()).map_err(|reason| TlsError::SelfSigned {
        dir: tls_dir.clone(),
        reason,
    })?;
    Ok((cert, key))
}

/// How long a generated certificate is valid: like a public one, so that one trusted by
/// hand somewhere is not trusted for ever.
const SELF_SIGNED_DAYS: i64 = 365;

/// A generated certificate this close to its end is made anew at start.
const RENEW_DAYS: i64 = 30;

/// Whether the certificate's validity ends within `RENEW_DAYS` (or cannot be read).
fn ends_soon(key: &CertifiedKey) -> bool {
    let now = time::OffsetDateTime::now_utc();
    key.end_entity_cert()
        .ok()
        .and_then(|c| crate::x509::validity(c))
        .is_none_or(|(_, not_after)| not_after - now < time::Duration::days(RENEW_DAYS))
}

/// Whether the certificate's validity starts after now: clients refuse it until then.
fn not_yet_valid(key: &CertifiedKey) -> bool {
    let now = time::OffsetDateTime::now_utc();
    key.end_entity_cert()
        .ok()
        .and_then(|c| crate::x509::validity(c))
        .is_some_and(|(not_before, _)| not_before > now)
}

/// The host of `public_url` as a TLS server name (a DNS name or an IP address).
fn public_host(url: &str) -> Option<ServerName<'static>> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_ascii_lowercase()).ok()
}

/// Whether a client connecting to `host` would accept this certificate's names.
fn names(key: &CertifiedKey, host: &ServerName<'_>) -> bool {
    key.end_entity_cert()
        .and_then(ParsedCertificate::try_from)
        .and_then(|c| rustls::client::verify_server_name(&c, host))
        .is_ok()
}

fn make_self_signed(tls_dir: &Path, host: Option<&ServerName<'_>>) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    std::fs::create_dir_all(tls_dir).map_err(io)?;
    // Owner-only whatever the umask (the key inside is written owner-only too).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tls_dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
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
    let host = host.map(|h| h.to_str().into_owned());
    if let Some(h) = &host
        && !names.contains(h)
    {
        names.push(h.clone());
    }
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| e.to_string())?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(
        rcgen::DnType::CommonName,
        host.unwrap_or_else(|| "scimd self-signed".into()),
    );
    params.distinguished_name = dn;
    // A day back, for a client whose clock is a little behind.
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(SELF_SIGNED_DAYS);
    let signing_key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params
        .self_signed(&signing_key)
        .map_err(|e| e.to_string())?;
    // Both files are complete on disk under temporary names before either is renamed; then
    // the key goes first, the certificate last. A crash in between leaves a key that does not
    // match the certificate beside it (or has none), which the next start replaces.
    let key_new = tls_dir.join("key.pem.new");
    let cert_new = tls_dir.join("cert.pem.new");
    // A leftover keeps its old mode when truncated; a fresh file is owner-only from its
    // first byte.
    match std::fs::remove_file(&key_new) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    write_private(&key_new, signing_key.serialize_pem().as_bytes()).map_err(io)?;
    write_synced(&cert_new, cert.pem().as_bytes(), 0o644).map_err(io)?;
    for (from, to) in [(&key_new, "key.pem"), (&cert_new, "cert.pem")] {
        let to = tls_dir.join(to);
        std::fs::rename(from, &to).map_err(io)?;
        // The rename itself is durable only once the directory is (a pair lost to a power
        // cut is made again at the next start).
        crate::store::sync_parent_or_say(&to, "the new certificate");
    }
    Ok(())
}

/// Write a file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_synced(path, bytes, 0o600)
}

/// Write a file with this mode (when created) and wait until its bytes are on disk.
fn write_synced(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The served certificate, swappable while running: new handshakes see the new one, open
/// connections keep theirs.
#[derive(Debug)]
pub struct CertResolver {
    current: std::sync::RwLock<Arc<CertifiedKey>>,
    /// Host names clients asked for that the certificate lacks, and when that was said.
    said: crate::http::limit::Limiter,
}

impl CertResolver {
    pub fn new(key: Arc<CertifiedKey>) -> CertResolver {
        CertResolver {
            current: std::sync::RwLock::new(key),
            said: crate::http::limit::Limiter::default(),
        }
    }

    pub fn set(&self, key: Arc<CertifiedKey>) {
        match self.current.write() {
            Ok(mut g) => *g = key,
            Err(p) => *p.into_inner() = key,
        }
        // A new certificate: what was said of the old one may not hold.
        self.said.clear();
    }

    /// Refuse to replace a certificate that can be served with one that cannot (expired,
    /// or not yet valid): a renewal gone wrong would otherwise cut off every IdP while the
    /// one in use had months to run. At start, or when the one in use cannot be served
    /// either, the new one is taken with a warning.
    pub fn check_replacement(&self, new: &CertifiedKey) -> Result<(), NotUsed> {
        let now = time::OffsetDateTime::now_utc();
        let unusable = |k: &CertifiedKey| {
            k.cert
                .first()
                .and_then(|c| crate::x509::outside_dates(c.as_ref(), now))
        };
        match unusable(new) {
            Some((why, later)) if unusable(&self.get()).is_none() => Err(NotUsed {
                reason: format!(
                    "the new certificate {why}; the certificate in use can still be served \
                     and stays until files that can be are in place"
                ),
                not_yet_valid: later,
            }),
            _ => Ok(()),
        }
    }

    /// When the served certificate ends, in seconds since 1970.
    pub fn not_after(&self) -> Option<i64> {
        let key = self.get();
        let leaf = key.end_entity_cert().ok()?;
        crate::x509::validity(leaf.as_ref()).map(|(_, end)| end.unix_timestamp())
    }

    /// `Loaded::warnings` for the certificate being served.
    pub fn warnings(&self, public_url: Option<&str>, own_files: bool) -> Vec<String> {
        warnings(&self.get(), public_url, own_files)
    }

    /// Whether to say that a client asked for `host`, which `key` does not name: once an
    /// hour per name, and `LINES_PER_HOUR` times an hour in all (a scanner may try many).
    fn unnamed(&self, key: &CertifiedKey, host: &str) -> bool {
        let Ok(name) = ServerName::try_from(host) else {
            return false;
        };
        let budgets = [(host, 1), ("", crate::http::limit::LINES_PER_HOUR)];
        !names(key, &name) && self.said.within_hour(&budgets, std::time::Instant::now())
    }

    fn get(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// The handshake running in a connection's task, as the certificate resolver sees it.
pub struct Handshaking {
    /// The client, for the resolver's warning: rustls' ClientHello does not carry the
    /// address, and the admin needs it to tell which IdP was refused.
    pub peer: std::net::SocketAddr,
    /// Set once a certificate was chosen for the client, which then has it in the server's
    /// next flight: a client that closes after that without an alert has most likely
    /// refused it (Java's HttpClient says nothing).
    pub certificate_sent: Arc<std::sync::atomic::AtomicBool>,
}

tokio::task_local! {
    pub static HANDSHAKE: Handshaking;
}

impl rustls::server::ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let key = self.get();
        // The host the client will check the certificate against (SNI; a client connecting
        // by IP address sends none). A Base URL whose host the certificate lacks is a common
        // reason an IdP cannot connect, and some clients (curl) refuse such a certificate
        // without an alert, so the failed handshake alone would not say it.
        if let Some(host) = hello.server_name()
            && self.unnamed(&key, host)
        {
            // Absent only outside a connection's handshake (tests calling the resolver).
            let peer = HANDSHAKE
                .try_with(|h| h.peer)
                .ok()
                .map(tracing::field::display);
            tracing::warn!(
                host,
                peer,
                "a client asked for a host name the certificate does not name: it refuses the \
                 connection if it checks names (an IdP's Base URL must use a host the \
                 certificate names) (said once an hour per name, and 20 times an hour at most)"
            );
        }
        let _ = HANDSHAKE.try_with(|h| {
            h.certificate_sent
                .store(true, std::sync::atomic::Ordering::Relaxed)
        });
        Some(key)
    }
}

pub fn server_config(resolver: Arc<CertResolver>) -> Result<ServerConfig, rustls::Error> {
    let mut provider = aws_lc_rs::default_provider();
    // AES-128-GCM before the AES-256 most clients list first: as strong for this purpose
    // (Mozilla's order too), and its SHA-256 key schedule makes a handshake cheaper than
    // SHA-384's, which clients that open a connection per request pay each time.
    provider.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    let mut cfg = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    // `http/1.0` too: a client that offers only it (`curl --http1.0`) is otherwise refused
    // in the handshake, where the admin sees no reason.
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), b"http/1.0".to_vec()];
    cfg.ignore_client_order = true;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn host(s: &str) -> ServerName<'static> {
        ServerName::try_from(s.to_string()).unwrap()
    }

    fn loaded(dir: &Path, url: Option<&str>) -> (Loaded, Vec<u8>) {
        let (cert, key) = ensure_self_signed(dir, url).unwrap();
        (load_pem(&cert, &key).unwrap(), std::fs::read(cert).unwrap())
    }

    #[test]
    fn public_host_is_the_host_of_the_url() {
        for (url, want) in [
            ("https://Scim.Corp.Example:8443/", Some("scim.corp.example")),
            ("https://scim.corp.example", Some("scim.corp.example")),
            ("https://192.0.2.10:8443", Some("192.0.2.10")),
            ("https://[2001:db8::5]:8443/scim", Some("2001:db8::5")),
            ("not a url", None),
        ] {
            assert_eq!(
                public_host(url).map(|h| h.to_str().into_owned()).as_deref(),
                want,
                "{url}"
            );
        }
    }

    #[test]
    fn a_public_host_the_certificate_lacks_is_warned_of() {
        let dir = tempfile::tempdir().unwrap();
        let (l, _) = loaded(dir.path(), Some("https://scim.corp.example:8443"));
        assert_eq!(
            l.name_warning(Some("https://scim.corp.example:8443/")),
            None
        );
        assert_eq!(l.name_warning(None), None);
        let w = l
            .name_warning(Some("https://other.corp.example"))
            .unwrap_or_default();
        assert!(w.contains("does not name other.corp.example"), "{w}");
    }

    #[test]
    fn the_certificate_names_the_public_host_and_is_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let url = Some("https://scim.corp.example:8443");
        let (l, pem) = loaded(dir.path(), url);
        assert!(names(&l.key, &host("scim.corp.example")));
        assert!(names(&l.key, &host("localhost")));
        assert!(!names(&l.key, &host("other.corp.example")));
        let der = l.key.end_entity_cert().unwrap().to_vec();
        assert!(
            !der.windows(6).any(|w| w == b"rcgen "),
            "rcgen's default CN"
        );
        let (_, again) = loaded(dir.path(), url);
        assert_eq!(pem, again, "a certificate that names the host is kept");
        // An IP address goes in as an IP name, not a DNS name.
        let (l, ip_pem) = loaded(dir.path(), Some("https://[2001:db8::5]:8443"));
        assert_ne!(pem, ip_pem, "the new host is not in the old certificate");
        assert!(names(&l.key, &host("2001:db8::5")));
        assert_eq!(loaded(dir.path(), Some("https://[2001:db8::5]")).1, ip_pem);
    }

    /// A certificate or key in DER is told how to become PEM; a PEM file without a
    /// certificate is not said to be DER.
    #[test]
    fn a_der_file_is_told_how_to_become_pem() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ensure_self_signed(dir.path(), None).unwrap();
        let cert_der = dir.path().join("cert.der");
        let key_der = dir.path().join("key.der");
        std::fs::write(&cert_der, CertificateDer::from_pem_file(&cert).unwrap()).unwrap();
        let k = PrivateKeyDer::from_pem_file(&key).unwrap();
        std::fs::write(&key_der, k.secret_der()).unwrap();
        let e = load_pem(&cert_der, &key)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.contains(
                "no CERTIFICATE block found (the file looks like DER; scimd reads PEM: \
                 openssl x509 -inform der"
            ),
            "{e}"
        );
        let e = load_pem(&cert, &key_der)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            e.starts_with("tls.key:") && e.contains("openssl pkey -inform der"),
            "{e}"
        );
        let e = load_pem(&key, &key).err().expect("refused").to_string();
        assert!(
            e.contains("no CERTIFICATE block found") && !e.contains("DER"),
            "{e}"
        );
    }

    /// A key under a passphrase (either PEM form openssl writes) is said to be so, with
    /// the command that writes it without one; files given the other's place are said to
    /// look swapped.
    #[test]
    fn a_key_under_a_passphrase_and_swapped_files_are_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ensure_self_signed(dir.path(), None).unwrap();
        let pkcs8 = dir.path().join("pkcs8.pem");
        std::fs::write(
            &pkcs8,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap();
        let traditional = dir.path().join("traditional.pem");
        std::fs::write(
            &traditional,
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\n\
             AAAA\n-----END RSA PRIVATE KEY-----\n",
        )
        .unwrap();
        for k in [&pkcs8, &traditional] {
            let e = load_pem(&cert, k).err().expect("refused").to_string();
            assert!(
                e.starts_with("tls.key:")
                    && e.ends_with(
                        "the key is under a passphrase, which scimd cannot be given: write it \
                         without one, readable by the user that runs scimd alone (openssl \
                         pkey -in FILE -out key.pem)"
                    ),
                "{e}"
            );
        }
        let e = load_pem(&key, &cert).err().expect("refused").to_string();
        assert!(
            e.starts_with("tls.cert:")
                && e.ends_with(
                    "no CERTIFICATE block found (the file holds a private key, not a \
                     certificate: are tls.cert and tls.key swapped?)"
                ),
            "{e}"
        );
        let e = load_pem(&cert, &cert).err().expect("refused").to_string();
        assert!(
            e.starts_with("tls.key:")
                && e.ends_with(
                    "no PRIVATE KEY block found (the file holds a certificate, not a key: are \
                     tls.cert and tls.key swapped?)"
                ),
            "{e}"
        );
    }

    #[test]
    fn a_certificate_block_that_is_not_a_certificate_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let (_, key) = ensure_self_signed(dir.path(), None).unwrap();
        let cert = dir.path().join("garbage.pem");
        std::fs::write(
            &cert,
            "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = load_pem(&cert, &key).err().expect("refused").to_string();
        assert!(
            e.starts_with("tls.cert: cannot read certificates from")
                && e.contains("the first certificate in the file cannot be parsed (")
                && !e.contains("peer"),
            "{e}"
        );
    }

    /// A file cut short (a copy interrupted) is said so in words.
    #[test]
    fn a_certificate_file_cut_short_is_said_so() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ensure_self_signed(dir.path(), None).unwrap();
        let text = std::fs::read_to_string(&cert).unwrap();
        let cut = dir.path().join("cut.pem");
        std::fs::write(&cut, &text[..text.len() / 2]).unwrap();
        let e = load_pem(&cut, &key).err().expect("refused").to_string();
        assert!(
            e.ends_with(
                "the file ends inside its CERTIFICATE block (no -----END line: cut short?)"
            ),
            "{e}"
        );
    }

    /// A key too weak to sign with is named as the key's problem, not as a mismatch.
    #[test]
    fn a_weak_key_is_named_as_such() {
        // An RSA-1024 key made for this test alone (it guards nothing), as its base64 lines.
        const RSA_1024: [&str; 14] = [
            "MIICdQIBADANBgkqhkiG9w0BAQEFAASCAl8wggJbAgEAAoGBANJLiOcf8b6AsA37",
            "Gob1nmnpKfcpfdiJWIm52jiFPkNi7gVA2Z5SGl8blEEXXHepZu2Hg0UXRdfUqvdj",
            "r2krNgsKdTm16Y/U6EVQE2yFgjUy1+Ga3ZzyFoN8SnS6Nk5a8nJI7SN1dvXzh7pf",
            "qKqMpKe9KwpwVMVkQFPjxq7PvEmNAgMBAAECgYAVow3v8dp2plj250ogbq8g6IuX",
            "0Z4QJHmGmie4vwTb/BbPVY/OeVYbSQQk+llaOoTLlbDM8AsQnOIGWCxZHsgNhQId",
            "wi9aX0SKbbUpN1gKaiER58/4eXpd+6RTQmqm/1OcbnLkrx3Qn0iwn4lQwgPhBF3z",
            "wWG3sawUuCKLFY3kBQJBAOwSQwMk4tr15Os0sC/8mgNAv8X0Bk1ePRduYRlnKU04",
            "cxk1DrPEBJjXxsfnHbMkb3ihSd98M5y9F1/7Zc1sLxMCQQDkDDjI0mXhum1eZMGN",
            "2kcpiRVr57eeRZB2xIEEF32qWSgSoBT76zefz22kg8T83D8Xlp4oFO5wFkyQ4dQI",
            "xJjfAkACqXYN/AV+2JT7Pf3anKuT68/9yHGlv7FKqVj481vY3hEWMK34wvYWTyCT",
            "snx4P6nuH0t49KqUUuGHmIseVOD3AkBrDIGrY3iH2ad1Y/6nxAsbqEnx+Tfsh+Mk",
            "nWGithQ7Xta8x4CSMPxPfGOPkntp50mGnSFo10qGOzF94URTSVYpAkBJrgWLdb7G",
            "m0P6fdbsaSK7egJen7JybXdT75Xh57/Pt1vSkdvEPhiIZkMk9a995T8LZolqADeh",
            "7L/7KvfYr63i",
        ];
        let pem = format!(
            "-----BEGIN {kind}-----\n{}\n-----END {kind}-----\n",
            RSA_1024.join("\n"),
            kind = "PRIVATE KEY"
        );
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = ensure_self_signed(dir.path(), None).unwrap();
        let key = dir.path().join("weak.pem");
        std::fs::write(&key, pem).unwrap();
        let e = load_pem(&cert, &key).err().expect("refused").to_string();
        assert!(
            e.starts_with("tls.key: cannot read a private key from")
                && e.contains("RSA of 2048 bits or more")
                && !e.contains("does not match"),
            "{e}"
        );
    }

    /// Valid for a year, and made anew at start once it ends within a month.
    #[test]
    fn a_generated_certificate_is_valid_for_a_year_and_renewed_before_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let (l, pem) = loaded(dir.path(), None);
        let der = l.key.end_entity_cert().unwrap().to_vec();
        let (from, to) = crate::x509::validity(&der).unwrap();
        let now = time::OffsetDateTime::now_utc();
        assert!(from < now && (to - now).whole_days() >= SELF_SIGNED_DAYS - 1);
        assert_eq!(
            loaded(dir.path(), None).1,
            pem,
            "kept while far from its end"
        );
        // A pair of ours in the files, valid over `days` from now (rcgen's default: until
        // 4096); its certificate's text.
        let ours = |days: Option<(i64, i64)>| {
            let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
            if let Some((from, to)) = days {
                params.not_before = now + time::Duration::days(from);
                params.not_after = now + time::Duration::days(to);
            }
            let k = rcgen::KeyPair::generate().unwrap();
            let pem = params.self_signed(&k).unwrap().pem();
            std::fs::write(dir.path().join("tls/cert.pem"), &pem).unwrap();
            std::fs::write(dir.path().join("tls/key.pem"), k.serialize_pem()).unwrap();
            pem.into_bytes()
        };
        // One that ends in 10 days, as a year-old one would.
        let old = ours(Some((-355, 10)));
        let (l, renewed) = loaded(dir.path(), None);
        assert_ne!(renewed, old);
        assert!(!ends_soon(&l.key));
        // One made while the clock was a year ahead: clients refuse it until then.
        let ahead = ours(Some((364, 729)));
        let (l, renewed) = loaded(dir.path(), None);
        assert_ne!(renewed, ahead);
        assert!(!not_yet_valid(&l.key));
        // One made by an earlier version (valid until 4096) is kept.
        let earlier = ours(None);
        assert_eq!(loaded(dir.path(), None).1, earlier);
    }

    /// `scimd status` on the admin's files and on the self-signed pair: a restart fails on
    /// the admin's broken files, and makes a new self-signed pair.
    #[test]
    fn the_status_of_certificate_files_says_what_a_restart_would_do() {
        let dir = tempfile::tempdir().unwrap();
        let now = time::OffsetDateTime::now_utc();
        let (c, k) = self_signed_paths(dir.path());
        std::fs::create_dir_all(c.parent().unwrap()).unwrap();
        let write = |to: i64| {
            let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
            params.not_before = now - time::Duration::days(10);
            params.not_after = now + time::Duration::days(to);
            let key = rcgen::KeyPair::generate().unwrap();
            std::fs::write(&c, params.self_signed(&key).unwrap().pem()).unwrap();
            std::fs::write(&k, key.serialize_pem()).unwrap();
        };
        let status = |own| files_status(&c, &k, own, now).unwrap();
        write(90);
        let fine = status(true);
        assert!(
            fine.starts_with("certificate: ") && fine.contains(" days left)"),
            "{fine}"
        );
        write(-1);
        assert!(status(true).starts_with("CERTIFICATE: the certificate expired on"));
        assert!(status(false).ends_with("a restart makes a new self-signed certificate (give it to the clients that trusted this one)"));
        std::fs::write(&c, "-----BEGIN CERTIFICATE-----\nMIIB").unwrap();
        assert!(status(true).contains("the next start would fail"));
        let own = status(false);
        assert!(
            own.starts_with("CERTIFICATE FILES DO NOT LOAD")
                && own.contains("a restart makes a new"),
            "{own}"
        );
        // Nothing to say before the first start made the pair.
        std::fs::remove_file(&c).unwrap();
        assert_eq!(files_status(&c, &k, false, now), None);
    }

    /// A renewal that brings an expired or not yet valid certificate does not replace one
    /// that can be served; when the one in use cannot be served either, it does.
    #[test]
    fn a_certificate_that_cannot_be_served_replaces_only_one_that_cannot_either() {
        let dir = tempfile::tempdir().unwrap();
        let now = time::OffsetDateTime::now_utc();
        let pair = |from: i64, to: i64| {
            let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
            params.not_before = now + time::Duration::days(from);
            params.not_after = now + time::Duration::days(to);
            let k = rcgen::KeyPair::generate().unwrap();
            let (c, kp) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
            std::fs::write(&c, params.self_signed(&k).unwrap().pem()).unwrap();
            std::fs::write(&kp, k.serialize_pem()).unwrap();
            load_pem(&c, &kp).unwrap().key
        };
        let (valid, expired, early) = (pair(-10, 90), pair(-100, -1), pair(5, 100));
        let resolver = CertResolver::new(valid.clone());
        let e = resolver.check_replacement(&expired).unwrap_err();
        assert!(
            e.reason.starts_with("the new certificate expired on"),
            "{e}"
        );
        assert!(!e.not_yet_valid);
        let e = resolver.check_replacement(&early).unwrap_err();
        assert!(
            e.reason
                .starts_with("the new certificate is not valid before"),
            "{e}"
        );
        assert!(e.not_yet_valid, "worth trying again once valid");
        assert_eq!(resolver.check_replacement(&pair(-1, 400)), Ok(()));
        let resolver = CertResolver::new(expired.clone());
        assert_eq!(resolver.check_replacement(&early), Ok(()));
        assert_eq!(resolver.check_replacement(&valid), Ok(()));
    }

    #[test]
    fn without_public_url_the_subject_says_scimd() {
        let dir = tempfile::tempdir().unwrap();
        let (l, _) = loaded(dir.path(), None);
        let der = l.key.end_entity_cert().unwrap().to_vec();
        assert!(der.windows(17).any(|w| w == b"scimd self-signed"));
    }

    #[test]
    fn a_half_pair_is_replaced_and_nothing_temporary_stays() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ensure_self_signed(dir.path(), None).unwrap();
        let old_key = std::fs::read(&key).unwrap();
        // A crash between the two renames: the key without its certificate.
        std::fs::remove_file(&cert).unwrap();
        let (l, _) = loaded(dir.path(), None);
        assert!(names(&l.key, &host("localhost")));
        assert_ne!(std::fs::read(&key).unwrap(), old_key, "a new pair");
        let mut left: Vec<String> = std::fs::read_dir(dir.path().join("tls"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["cert.pem", "key.pem"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    /// A pair that cannot be looked for (here `tls` is a file; in the field, a directory
    /// another user owns) is reported as such, not as a failure to make a new one.
    #[test]
    fn a_pair_that_cannot_be_looked_for_is_named_so() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tls"), b"not a directory").unwrap();
        match ensure_self_signed(dir.path(), None) {
            Err(e @ TlsError::Unreadable { .. }) => {
                let said = e.to_string();
                assert!(said.contains("cannot look for the certificate"), "{said}");
                assert!(said.contains("chown -R scimd:scimd"), "{said}");
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a certificate made where none can be looked for"),
        }
    }
}
