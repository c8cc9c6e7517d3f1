//! The listener: TLS (or loopback-only plain HTTP), hyper connections with timeouts and a
//! connection cap, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::http::App;
use crate::http::backlog::{Backlog, Turn};
use crate::http::request_id::RequestId;
use crate::http::unread::{self, Slot};
use crate::http::vouch::Voucher;
use crate::scim::schema::Kind;
use crate::store::{Store, StoreError};
use crate::tls::{self, TlsError};

mod chatter;
mod frames;
mod handshake;
mod header_timer;
mod in_flight;
mod streams;
use handshake::Failure;
use in_flight::{Counted, InFlight, Timeouts, Watched};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Tls(#[from] TlsError),
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("storage.dir: cannot create {path}: {source}")]
    StateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "server.listen: cannot listen on {addr}: {source}{}",
        bind_hint(source)
    )]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// A bound, ready server; `serve` runs it.
pub struct Server {
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    app: Arc<App>,
    config: Config,
    /// SHA-256 fingerprint of the served certificate, if TLS.
    pub fingerprint: Option<String>,
    /// The database file did not exist before this start: an empty directory service, which
    /// the admin must hear about in case `storage.dir` names the wrong directory.
    pub new_database: bool,
    certs: Option<Arc<tls::CertResolver>>,
    admin: Option<tokio::task::JoinHandle<()>>,
}

/// The certificate and key files a configuration serves.
fn cert_paths(config: &Config) -> Result<(std::path::PathBuf, std::path::PathBuf), TlsError> {
    match (&config.tls.cert, &config.tls.key) {
        (Some(c), Some(k)) => Ok((c.clone(), k.clone())),
        _ => tls::ensure_self_signed(&config.storage.dir, config.server.public_url.as_deref()),
    }
}

/// Apply each tenant's plan settings against those last applied (`Store::plan_applied`),
/// as `who` in the change feed: what changed, for the log, and the tenants whose settings
/// could not be recorded (a full disk), each said.
async fn apply_plans(app: &App, who: &str) -> (Vec<String>, Vec<String>) {
    let now = app.runtime();
    // All at once: the tenants new to the database each need a commit, which the writer
    // then shares among them (3,000 new tenants were ready in 1.6 s one commit at a time,
    // in 0.17 s so).
    let mut each = tokio::task::JoinSet::new();
    for t in now.config.tenants.keys() {
        let (store, actor, t) = (app.store.clone(), now.actor(t, who), t.clone());
        each.spawn(async move { (t, store.plan_applied(actor).await) });
    }
    let mut outcomes = std::collections::BTreeMap::new();
    while let Some(done) = each.join_next().await {
        match done.map_err(tokio::task::JoinError::try_into_panic) {
            Ok((t, outcome)) => {
                outcomes.insert(t, outcome);
            }
            // A panic there panics here, as it did when each was awaited in turn.
            Err(Ok(panic)) => std::panic::resume_unwind(panic),
            // Cancelled: only as the runtime shuts down, when nothing waits for the notes.
            Err(Err(_)) => {}
        }
    }
    let (mut notes, mut failed) = (Vec::new(), Vec::new());
    for (t, outcome) in outcomes {
        match outcome {
            Ok(a) => {
                if !a.changed.is_empty() {
                    notes.push(format!(
                        "tenant {t}: plan settings changed: {}",
                        a.changed.join(", ")
                    ));
                }
                if let Some((m0, m1)) = a.modes {
                    notes.push(format!(
                        "tenant {t}: plan mode {} -> {} (new test_threshold)",
                        m0.name(),
                        m1.name()
                    ));
                }
            }
            Err(e) => failed.push(format!(
                "tenant {t}: the plan's new settings are in force but could not be recorded \
                 in the change feed ({e}); tried again every {} s until they are",
                PLAN_RETRY.as_secs()
            )),
        }
    }
    (notes, failed)
}

/// What to look for in a request hyper could not read, from its error's words (hyper 1's
/// `Display` of its parse errors).
fn unreadable_hint(why: &str) -> &'static str {
    if why.contains("too large") || why.contains("too long") {
        "its URL, or its URL and headers, are longer than the server reads (414 or 431)"
    } else if why.contains("HTTP2 preface") {
        "an HTTP/2 client that does not negotiate h2 by ALPN sent its preface to an HTTP/1.1 \
         connection"
    } else if why.contains("method") || why.contains("version") {
        "its request line is not METHOD PATH HTTP/1.1"
    } else if why.contains("content-length") || why.contains("transfer-encoding") {
        "its Content-Length or Transfer-Encoding header is not valid"
    } else if why.contains("header") {
        "a header or the request line holds a byte HTTP does not allow (a control character, a \
         line break in a value), or a header has no colon"
    } else {
        "a space, \" < > or another such character in a URL must be percent-encoded"
    }
}

/// What a tenant back in the configuration serves: the data kept under its name (its user
/// and group counts, when read), which may be another customer's.
fn served(t: &str, held: Option<(u64, u64)>) -> String {
    let what = match held {
        Some((u, g)) => format!(
            "the {} and {}",
            crate::counted(u, "user"),
            crate::counted(g, "group")
        ),
        None => "what".to_string(),
    };
    format!(
        "served {what} the database kept under its name from an earlier tenant (if this is \
         another customer: take the table out, reload, and `scimd tenant purge {t} --yes`)"
    )
}

/// The start's warning for a tenant whose table came back while scimd was stopped.
async fn back_with_data(app: &App, t: &str) -> String {
    let held = |kind| app.store.count(t.to_string(), kind);
    let counts = held(Kind::User)
        .await
        .ok()
        .zip(held(Kind::Group).await.ok());
    format!(
        "tenant {t} is back in the configuration since scimd last ran, and {}",
        served(t, counts)
    )
}

/// How often plan settings that could not be recorded are tried again.
const PLAN_RETRY: Duration = Duration::from_secs(5);

/// Apply the plans as `apply_plans` does, and when some could not be recorded, go on trying
/// in the background until they are: an application following the change feed must hear
/// of the settings in force, and nothing else would write them once the disk has room.
async fn apply_plans_until_recorded(
    app: &Arc<App>,
    who: &'static str,
) -> (Vec<String>, Vec<String>) {
    use std::sync::atomic::Ordering;
    let (notes, failed) = apply_plans(app, who).await;
    // One task at a time: it applies the settings in force when it tries, a later
    // reload's included.
    if !failed.is_empty() && !app.plans_pending.swap(true, Ordering::SeqCst) {
        let app = app.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PLAN_RETRY).await;
                let (notes, failed) = apply_plans(&app, who).await;
                for n in notes {
                    tracing::info!("plan settings recorded after all: {n}");
                }
                if failed.is_empty() {
                    app.plans_pending.store(false, Ordering::SeqCst);
                    // A reload whose settings failed while this try ran found a task going
                    // and started none: one more try, with the settings in force now.
                    let (notes, failed) = apply_plans(&app, who).await;
                    for n in notes {
                        tracing::info!("plan settings recorded after all: {n}");
                    }
                    if failed.is_empty() || app.plans_pending.swap(true, Ordering::SeqCst) {
                        break;
                    }
                }
            }
        });
    }
    (notes, failed)
}

/// The change feed's writer of what a reload changes.
const RELOAD_ACTOR: &str = "(configuration reload)";

/// The change feed's writer of what a start finds changed in the file since the last run.
const START_ACTOR: &str = "(configuration at start)";

/// Applies a reloaded configuration to a running server: tenants, tokens, plans, limits and
/// the certificate change live; the listen address, plain HTTP, the connection limits,
/// storage and logging need a restart.
#[derive(Clone)]
pub struct Reloader {
    app: Arc<App>,
    certs: Option<Arc<tls::CertResolver>>,
    running: Config,
}

/// What a reload says for the log: what check-config would warn about, and what changed.
#[derive(Debug, Default)]
pub struct Reloaded {
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
    /// The certificate files hold one not valid yet, and the one in use was kept: the
    /// watcher goes on looking at them.
    pub cert_not_yet_valid: bool,
}

/// Descriptors scimd holds besides its connections (database, listener, admin socket,
/// certificates, log), with room to spare.
const OWN_FILES: u64 = 64;

/// Each connection holds a descriptor. The soft limit is raised to the hard one, as any
/// server may; one still below `max_connections` is said at start, since connections past
/// it fail to be accepted (the packaged unit sets 65536; a login shell's default is 1024).
fn open_files_for(max_connections: usize) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    // `None` is no limit.
    let below_hard = match (lim.current, lim.maximum) {
        (Some(c), Some(m)) => c < m,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if below_hard {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::debug!(error = %e, "the open-file limit could not be raised to its hard limit");
        }
    }
    let want = max_connections as u64 + OWN_FILES;
    if let Some(have) = getrlimit(Resource::Nofile).current
        && have < want
    {
        tracing::warn!(
            open_files = have,
            max_connections,
            "the open-file limit leaves room for fewer connections than server.max_connections: \
             connections past it fail to be accepted; raise it (`ulimit -n 65536` before \
             starting, or LimitNOFILE= in the unit) or lower max_connections"
        );
    }
}

/// Bind `addr` with a listen queue as deep as the connection limit (at least 1,024; the
/// kernel caps it at `net.core.somaxconn`). The default of 128 overflows under a burst of
/// new clients, and each client whose connection the kernel drops waits a second for its
/// retry.
async fn listen(addr: &str, max_connections: usize) -> std::io::Result<TcpListener> {
    let backlog = u32::try_from(max_connections.max(1024)).unwrap_or(u32::MAX);
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }?;
        // As std and tokio's own bind: a restart need not wait out TIME_WAIT.
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(backlog)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

/// What to do about the two reasons a listen fails on a machine that is set up right.
fn bind_hint(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            " (another process holds the port: `ss -ltnp` shows which; stop it, or set another port in server.listen)"
        }
        std::io::ErrorKind::PermissionDenied => {
            " (ports below 1024 need CAP_NET_BIND_SERVICE, which the packaged unit grants; or listen on 8443)"
        }
        _ => "",
    }
}

impl Reloader {
    /// Validate and apply `new`. On error nothing changes.
    pub async fn apply(&self, mut new: Config) -> Result<Reloaded, String> {
        let mut warnings = new.warnings();
        let mut notes = Vec::new();
        let r = &self.running;
        for (what, changed) in [
            ("server.listen", new.server.listen != r.server.listen),
            (
                "server.plain_http",
                new.server.plain_http != r.server.plain_http,
            ),
            ("storage", new.storage != r.storage),
            (
                "server.max_connections",
                new.server.max_connections != r.server.max_connections,
            ),
            (
                "server.header_timeout_secs",
                new.server.header_timeout_secs != r.server.header_timeout_secs,
            ),
            // The log is set up once per process (RUST_LOG may override it anyway).
            ("log", new.log != r.log),
        ] {
            if changed {
                // A warning: until the restart the file and the daemon disagree.
                warnings.push(format!("{what} changed: takes effect after a restart"));
            }
        }
        // Until then the running values stay in force, for everything that reads them: a
        // self-signed certificate stays the one in the open state directory, not a new one
        // made in a directory the database is not in.
        new.server.listen = r.server.listen.clone();
        new.server.plain_http = r.server.plain_http;
        new.storage = r.storage.clone();
        new.server.max_connections = r.server.max_connections;
        new.server.header_timeout_secs = r.server.header_timeout_secs;
        new.log = r.log.clone();
        let loaded = match &self.certs {
            Some(_) if !new.server.plain_http => {
                let (cert, key) = cert_paths(&new).map_err(|e| e.to_string())?;
                Some(tls::load_pem(&cert, &key).map_err(|e| e.to_string())?)
            }
            _ => None,
        };
        // Files that cannot be read refuse the reload above, as `check-config` (which the
        // unit's reload runs first) refuses them. A certificate that reads but cannot be
        // served (expired, not yet valid) leaves the one in use, and the rest of the reload
        // (a token revoked, say) still applies.
        let kept = match (&self.certs, &loaded) {
            (Some(resolver), Some(l)) => resolver.check_replacement(&l.key).err(),
            _ => None,
        };
        if let Some(e) = &kept {
            warnings.push(format!("tls: {e}"));
        }
        if let (Some(resolver), Some(l), None) = (&self.certs, loaded, &kept) {
            notes.push(format!("serving certificate {}", l.fingerprint));
            warnings.extend(
                l.warnings(new.server.public_url.as_deref(), new.tls.cert.is_some())
                    .into_iter()
                    .map(|w| format!("tls: {w}")),
            );
            resolver.set(l.key);
            self.app.served_certificate(resolver);
        }
        let old = self.app.runtime();
        for t in new
            .tenants
            .keys()
            .filter(|t| !old.config.tenants.contains_key(*t))
        {
            // The same customer back, or a new one given a departed one's name (whom
            // `tenant add` refuses without --keep-data; a hand edit is not asked).
            let held = |kind| self.app.store.count(t.clone(), kind);
            match (held(Kind::User).await, held(Kind::Group).await) {
                (Ok(u), Ok(g)) if u + g > 0 => {
                    warnings.push(format!("tenant {t} added, and {}", served(t, Some((u, g)))))
                }
                _ => notes.push(format!("tenant {t} added")),
            }
        }
        for (t, was) in (old.config.tenants.iter()).filter(|(t, _)| !new.tenants.contains_key(*t)) {
            let held = |kind| self.app.store.count(t.clone(), kind);
            let (u, g) = match (held(Kind::User).await, held(Kind::Group).await) {
                (Ok(u), Ok(g)) if u + g > 0 => (u, g),
                _ => {
                    notes.push(format!("tenant {t} removed"));
                    continue;
                }
            };
            let data = format!(
                "{} and {}",
                crate::counted(u, "user"),
                crate::counted(g, "group")
            );
            // A table renamed in the file keeps its tokens: its IdP goes on, into a tenant
            // with nothing in it, and creates every user again under new ids.
            let secret = |k: &crate::config::TokenConfig| k.sha256.to_ascii_lowercase();
            let renamed = new.tenants.iter().find(|(n, c)| {
                !old.config.tenants.contains_key(*n)
                    && c.tokens
                        .iter()
                        .any(|k| was.tokens.iter().any(|w| secret(w) == secret(k)))
            });
            warnings.push(match renamed {
                Some((n, _)) => format!(
                    "tenant {t} removed, and tenant {n} added with its token: a tenant renamed \
                     in the file does not take its data along. An IdP on the plain /scim/v2 \
                     URL now provisions into {n}, which starts empty, and creates every user \
                     again under new ids (one on /tenants/{t}/scim/v2 is refused, 401), while \
                     the {data} stay under {t}, served to no one. To keep them, name the table \
                     {t} again and reload"
                ),
                None => format!(
                    "tenant {t} removed: its {data} stay in the database, served to no one \
                     (put the table back and reload to serve them again, or delete them with \
                     `scimd tenant purge {t} --yes`)"
                ),
            });
        }
        // Token rotations, by name (never the digest), for the audit trail.
        for (t, was) in &old.config.tenants {
            let Some(now) = new.tenants.get(t) else {
                continue;
            };
            // Hashes in either case are one secret (authentication ignores their case).
            let key =
                |k: &crate::config::TokenConfig| (k.name.clone(), k.sha256.to_ascii_lowercase());
            let before: Vec<_> = was.tokens.iter().map(key).collect();
            let after: Vec<_> = now.tokens.iter().map(key).collect();
            let added: Vec<&String> = after
                .iter()
                .filter(|k| !before.contains(k))
                .map(|k| &k.0)
                .collect();
            let removed: Vec<&String> = before
                .iter()
                .filter(|k| !after.contains(k))
                .map(|k| &k.0)
                .collect();
            // A new secret under the same name is neither a token gained nor one lost.
            for name in &added {
                let what = if removed.contains(name) {
                    "replaced (a new secret; the old one is refused)"
                } else {
                    "added"
                };
                notes.push(format!("tenant {t}: token {name} {what}"));
            }
            for name in removed.iter().filter(|n| !added.contains(n)) {
                notes.push(format!("tenant {t}: token {name} removed"));
            }
            // The same secret given another scope: what it may do changed.
            for k in &now.tokens {
                if let Some(w) = was
                    .tokens
                    .iter()
                    .find(|w| w.name == k.name && w.sha256.eq_ignore_ascii_case(&k.sha256))
                    && w.scope != k.scope
                {
                    let scope = if k.scope == crate::config::Scope::Read {
                        "read"
                    } else {
                        "provision"
                    };
                    notes.push(format!(
                        "tenant {t}: token {} now has scope {scope}",
                        k.name
                    ));
                }
            }
        }
        // `/metrics` is turned on or off by its token alone: said, as a tenant's tokens are.
        let metrics = |c: &crate::config::Config| {
            c.server
                .metrics_token_sha256
                .as_deref()
                .map(str::to_ascii_lowercase)
        };
        match (metrics(&old.config), metrics(&new)) {
            (None, Some(_)) => {
                notes.push("/metrics turned on (server.metrics_token_sha256)".into())
            }
            (Some(_), None) => notes.push("/metrics turned off".into()),
            (Some(a), Some(b)) if a != b => {
                notes.push("/metrics token replaced (the old one is refused)".into())
            }
            _ => {}
        }
        // What the old retention no longer kept, readers were told is gone (410): taken out
        // before a retention raised by this reload could serve it again.
        let next = crate::http::Runtime::new(new.clone());
        for t in old.config.tenants.keys() {
            let (was, is) = (old.retention(t), next.retention(t));
            if (was.max_count, was.max_age_secs) != (is.max_count, is.max_age_secs)
                && let Err(e) = self.app.store.trim_events(t.clone(), was).await
            {
                notes.push(format!(
                    "tenant {t}: the change feed could not be trimmed: {e}"
                ));
            }
        }
        self.app.set_runtime(new);
        self.app.forget_said();
        // New settings can move people between the paid and free plans with no write to do
        // it (an entry added to `existing_members`, a plan table added): the feed says which
        // settings changed, so that an application reads the plan list again. A new
        // threshold can switch the mode, and new seats can seat users waiting on the free
        // plan: the feed says those too, after the settings that caused them.
        let (applied, failed) = apply_plans_until_recorded(&self.app, RELOAD_ACTOR).await;
        notes.extend(applied);
        warnings.extend(failed);
        // Noted for the next start (a tenant added back here was warned of above).
        let configured = self.app.runtime().config.tenants.keys().cloned().collect();
        if let Err(e) = self.app.store.tenants_back(configured).await {
            warnings.push(format!(
                "the tenants taken out of the configuration could not be noted: {e}"
            ));
        }
        let cert_not_yet_valid = kept.as_ref().is_some_and(|e| e.not_yet_valid);
        Ok(Reloaded {
            warnings,
            notes,
            cert_not_yet_valid,
        })
    }

    /// Reload only the certificate (files renewed on disk); returns its fingerprint.
    pub fn reload_cert(&self) -> Result<String, tls::NotUsed> {
        let Some(resolver) = &self.certs else {
            return Ok("plain HTTP: no certificate".into());
        };
        let cfg = self.app.runtime().config.clone();
        let (cert, key) = cert_paths(&cfg).map_err(|e| e.to_string())?;
        let l = tls::load_pem(&cert, &key).map_err(|e| e.to_string())?;
        resolver.check_replacement(&l.key)?;
        resolver.set(l.key);
        self.app.served_certificate(resolver);
        self.app.forget_said();
        Ok(l.fingerprint)
    }

    /// What the admin must hear about the served certificate's dates and names.
    pub fn cert_warnings(&self) -> Vec<String> {
        let Some(certs) = &self.certs else {
            return Vec::new();
        };
        let config = &self.app.runtime().config;
        certs.warnings(
            config.server.public_url.as_deref(),
            config.tls.cert.is_some(),
        )
    }

    /// The room on the database's disk (`Store::room`).
    pub fn room(&self) -> Option<crate::store::Room> {
        self.app.store.room()
    }

    /// Why the IdPs' writes are refused now, if they are (`Store::writes_refused`), after
    /// looking whether space was freed on a full disk (`Store::look_for_room`).
    pub fn writes_refused(&self) -> Option<crate::store::Refused> {
        self.app.store.look_for_room();
        self.app.store.writes_refused()
    }

    /// How often to look for renewed certificate files (0: never).
    pub fn watch_secs(&self) -> u64 {
        self.app.runtime().config.tls.watch_secs
    }

    /// Modification times of the served certificate files, to notice renewals.
    pub fn cert_stamp(&self) -> Option<(std::time::SystemTime, std::time::SystemTime)> {
        self.certs.as_ref()?;
        let cfg = self.app.runtime().config.clone();
        let (c, k) = (cfg.tls.cert.as_ref()?, cfg.tls.key.as_ref()?);
        let m = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((m(c)?, m(k)?))
    }
}

impl Server {
    /// Bind the listener, open the database and load (or make) the certificate. When this
    /// returns, the server can accept connections.
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        // The port first: a start refused for it (the commonest failure, a second scimd on
        // another directory) must not leave a new database and certificate behind. Nothing
        // is accepted before `serve`; a client meanwhile waits in the backlog.
        open_files_for(config.server.max_connections);
        let listener = listen(&config.server.listen, config.server.max_connections)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.server.listen.clone(),
                source,
            })?;
        let dir = &config.storage.dir;
        std::fs::create_dir_all(dir).map_err(|source| StartError::StateDir {
            path: dir.display().to_string(),
            source,
        })?;
        restrict_dir(dir);
        // Then the database, before the certificate: it is what says whether another scimd
        // serves this directory, and that one's self-signed certificate must not be remade
        // under it.
        let new_database = !config.storage.db_path().exists();
        let store = Store::open(
            &config.storage.db_path(),
            config.storage.cache_mb * 1024 * 1024,
        )?;
        let tls = || -> Result<_, StartError> {
            if config.server.plain_http {
                return Ok((None, None, None));
            }
            let (cert, key) = cert_paths(&config)?;
            let loaded = tls::load_pem(&cert, &key)?;
            let resolver = Arc::new(tls::CertResolver::new(loaded.key));
            let sc = tls::server_config(resolver.clone())?;
            Ok((
                Some(TlsAcceptor::from(Arc::new(sc))),
                Some(loaded.fingerprint),
                Some(resolver),
            ))
        };
        let (acceptor, fingerprint, certs) = match tls() {
            Ok(t) => t,
            Err(e) => {
                // Closed, so that the next start needs no repair.
                store.close();
                // A database this start made is empty; left behind, the next start would not
                // warn that `storage.dir` may name the wrong directory.
                if new_database {
                    let _ = std::fs::remove_file(config.storage.db_path());
                }
                return Err(e);
            }
        };
        // With the database held, no backup copy is being made: those in the state directory
        // were left by a `scimd backup` killed or outlived by its server. They hold everything.
        let stale = crate::store::remove_staged_backups(dir);
        if stale > 0 {
            tracing::warn!(dir = %dir.display(), count = stale, "removed backup copies left in the state directory by an interrupted `scimd backup` or `scimd restore`");
        }
        let spools = crate::store::remove_import_spools(dir);
        if spools > 0 {
            tracing::warn!(dir = %dir.display(), count = spools, "removed the copies of import files left in the state directory by an import that did not finish (running it again finishes the job)");
        }
        // A restore killed between naming the database to keep and putting the backup in
        // its place leaves that name on the live file: not a copy of the old state.
        for alias in crate::store::remove_restore_aliases(&config.storage.db_path()) {
            tracing::warn!(path = %alias.display(), "removed a second name of the database that an interrupted `scimd restore` left (it was the live database, not the old one)");
        }
        // After everything that can refuse the start, so that a refused start reads nothing.
        if config.storage.warm_page_cache {
            crate::store::warm_page_cache(config.storage.db_path());
        }
        if config.storage.scrub_hours > 0 {
            let hours = config.storage.scrub_hours.min(u64::MAX / 3600);
            store.spawn_scrub(Duration::from_secs(hours * 3600));
        }
        let checkpoint = store.checkpoint_at_start();
        tokio::spawn(async move {
            if let Err(e) = checkpoint.await {
                tracing::debug!(error = %e, "no checkpoint at start");
            }
        });
        let app = Arc::new(App::new(store, config.clone()));
        if let Some(resolver) = &certs {
            app.served_certificate(resolver);
        }
        // Plan settings edited while scimd was stopped take effect now, as a reload's would.
        let (applied, failed) = apply_plans_until_recorded(&app, START_ACTOR).await;
        for note in applied {
            tracing::info!("at start: {note}");
        }
        for w in failed {
            tracing::warn!("at start: {w}");
        }
        // A reload warns of a tenant added with data under its name; a table put back while
        // scimd was stopped is noticed here, against what the last run noted.
        match app
            .store
            .tenants_back(config.tenants.keys().cloned().collect())
            .await
        {
            Ok(back) => {
                for t in back {
                    tracing::warn!("at start: {}", back_with_data(&app, &t).await);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "at start: could not note the tenants taken out of the configuration")
            }
        }
        let sock = crate::admin::socket_path(&config);
        let bound = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.server.listen.clone(),
            source,
        })?;
        let admin = crate::admin::listen(app.clone(), &sock, bound);
        if let Err(e) = &admin {
            tracing::warn!(path = %sock.display(), error = %e, "admin socket unavailable; console commands need the daemon stopped");
        }
        Ok(Server {
            listener,
            acceptor,
            app,
            config,
            fingerprint,
            new_database,
            certs,
            admin: admin.ok(),
        })
    }

    /// What SIGHUP and the certificate watcher use to apply a new configuration.
    pub fn reloader(&self) -> Reloader {
        Reloader {
            app: self.app.clone(),
            certs: self.certs.clone(),
            running: self.config.clone(),
        }
    }

    /// The storage fault switch (for tests that play a failing disk).
    pub fn storage_faults(&self) -> crate::store::Faults {
        self.app.store.faults()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accept connections until `shutdown` resolves, then let open requests finish (bounded).
    /// What disconnects once the database is closed, after `serve` has returned and every
    /// task holding the store has been dropped (see `Store::closed_signal`).
    pub fn store_closed(&self) -> Option<std::sync::mpsc::Receiver<()>> {
        self.app.store.closed_signal()
    }

    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        let Server {
            listener,
            acceptor,
            app,
            config,
            admin,
            ..
        } = self;
        let header_timeout = Duration::from_secs(config.server.header_timeout_secs);
        // Told to HTTP/1 clients (RFC 9112 §9.3 leaves it to them; Java's and Apache's
        // clients read it) a second short of the truth, so that a pooled connection is
        // dropped by the client before the server closes it under a request.
        let keep_alive = hyper::header::HeaderValue::from_str(&format!(
            "timeout={}",
            config.server.header_timeout_secs.saturating_sub(1).max(1)
        ))
        .ok();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            // One buffer per response: with vectored writes rustls seals the head and the
            // body as two TLS records, each with its own encryption pass.
            .writev(false)
            .timer(header_timer::HeaderTimer)
            .header_read_timeout(header_timeout)
            .max_buf_size(64 * 1024);
        builder
            .http2()
            .timer(TokioTimer::new())
            // RFC 9113 §6.5.2 recommends no fewer than 100; some clients (Java's HttpClient)
            // fail requests past the limit rather than wait.
            .max_concurrent_streams(100)
            // Rapid reset (CVE-2023-44487): a client is sent GOAWAY once 20 streams it reset
            // before they were taken up wait, or once the server has had to reset 1,024 of
            // its streams. h2's defaults today, set here so that an update cannot take them
            // away.
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(1024)
            .max_header_list_size(64 * 1024)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        let builder = Arc::new(builder);
        let limit = Arc::new(Semaphore::new(config.server.max_connections));
        let in_flight = InFlight::new();
        // Set when the stop begins (connections finish their requests and take no more),
        // and when it is over (connections still open are dropped, and with them their
        // hold on the store).
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let (closing, closed) = tokio::sync::watch::channel(false);
        tokio::pin!(shutdown);
        let mut said_full: Option<std::time::Instant> = None;
        // Accept failures (out of descriptors, most often) come every 50 ms while they last:
        // said once a minute, with how many there were.
        let (mut said_failed, mut failed): (Option<std::time::Instant>, u64) = (None, 0);
        'accepting: loop {
            // Take a connection slot before accepting: under overload the kernel backlog
            // queues new connections instead of our memory. When every slot is taken and a
            // client arrives, it is accepted, and a connection that has never shown a valid
            // token, and has had its time to show one, is closed to give it a slot.
            let mut arrived = None;
            let permit = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                r = listener.accept(), if limit.available_permits() == 0 => {
                    let came = r.is_ok();
                    let evict = || {
                        let done = in_flight.evict_a_stranger();
                        if done {
                            app.metrics.closed_for_room.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        done
                    };
                    let mut evicted = came && evict();
                    arrived = Some(r);
                    if came && said_full.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                        said_full = Some(std::time::Instant::now());
                        if evicted {
                            tracing::warn!(max_connections = config.server.max_connections, "every connection slot is taken; closing connections that have shown no valid token to make room (said once a minute)");
                        } else {
                            tracing::warn!(max_connections = config.server.max_connections, "every connection slot is taken by clients with valid tokens or connected in the last second; new connections wait (said once a minute)");
                        }
                    }
                    // The strangers too young to close now may come of age while it waits.
                    loop {
                        tokio::select! {
                            p = limit.clone().acquire_owned() => match p { Ok(p) => break p, Err(_) => break 'accepting },
                            _ = &mut shutdown => break 'accepting,
                            _ = tokio::time::sleep(in_flight::STRANGER_GRACE / 4), if came && !evicted => {
                                evicted = evict();
                            }
                        }
                    }
                }
            };
            let accepted = match arrived {
                Some(r) => r,
                None => tokio::select! {
                    r = listener.accept() => r,
                    _ = &mut shutdown => break,
                },
            };
            let (tcp, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    failed += 1;
                    // Out of descriptors below `max_connections`: the slots are not all
                    // taken, so no stranger was closed for the newcomer. Close one now (a
                    // connection that has shown no valid token, and had its time to) so that
                    // the next try finds a descriptor, as a full set of slots would.
                    let out_of_fds = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                    if out_of_fds && in_flight.evict_a_stranger() {
                        app.metrics
                            .closed_for_room
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    if said_failed.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                        said_failed = Some(std::time::Instant::now());
                        tracing::warn!(error = %e, failures = failed, "accept failed (said once a minute; `failures` counts them since the last time)");
                        failed = 0;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let app = app.clone();
            let builder = builder.clone();
            let acceptor = acceptor.clone();
            let flight = in_flight.child();
            // The limits a reload may change are read for each new connection.
            let (body_secs, max_body) = {
                let rt = app.runtime();
                // With more than one tenant, one tenant's connections may hold at most half
                // the slots safe from closing (the tenants added by a reload count at once).
                in_flight.cap_vouched_per_tenant(if rt.config.tenants.len() > 1 {
                    (config.server.max_connections / 2).max(1)
                } else {
                    0
                });
                (
                    rt.config.server.request_timeout_secs,
                    rt.config.server.max_body_bytes,
                )
            };
            let body_timeout = Duration::from_secs(body_secs);
            let timeouts = Timeouts {
                idle: header_timeout,
                // A request may read its body for up to the request timeout, and drain what
                // the handler left unread for as long again, before its answer starts: the
                // connection gives it both, so that the 408 or 413 is still sent.
                stalled: body_timeout * 2,
                unread: body_timeout * 10,
            };
            let backlog = Backlog::new(flight.clone(), max_body);
            let voucher = Voucher(flight.clone());
            let (stopping, closed) = (stopping.clone(), closed.clone());
            let said = app.clone();
            let keep_alive = keep_alive.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let counter = flight.clone();
                let svc = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    let app = app.clone();
                    let keep_alive = keep_alive.clone();
                    let mut guard = counter.start();
                    req.extensions_mut().insert(backlog.clone());
                    req.extensions_mut().insert(voucher.clone());
                    async move {
                        let expects_continue = req
                            .headers()
                            .get(hyper::header::EXPECT)
                            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
                        let http1 = req.version() < hyper::Version::HTTP_2;
                        let http10 = req.version() < hyper::Version::HTTP_11;
                        let closing = req
                            .headers()
                            .get(hyper::header::CONNECTION)
                            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
                            // Both framings: hyper closes after the answer (RFC 9112 §6.3).
                            || (req.headers().contains_key(hyper::header::CONTENT_LENGTH)
                                && req.headers().contains_key(hyper::header::TRANSFER_ENCODING));
                        let (parts, body) = req.into_parts();
                        let (slot, body) = Slot::hold(body);
                        let req = hyper::Request::from_parts(parts, body);
                        // Made out here so that a panic's 500 carries it too.
                        let id = RequestId::of(req.headers());
                        // A panic in a handler becomes a 500 for that request instead of a
                        // dropped connection.
                        let mut resp = match CatchPanic(Box::pin(app.handle(req, peer, &id))).await
                        {
                            Ok(r) => r,
                            Err(what) => internal_error(&what, &id),
                        };
                        guard.answered();
                        // A client that asked to be told before sending (`Expect:
                        // 100-continue`) and was never told to go on sends nothing more.
                        // After a 408 the client has had its time; waiting for the rest
                        // again would double the timeout it was promised.
                        // A body left unread (unsent, too long to drain, broken, or too
                        // slow) means this HTTP/1.1 connection cannot carry another request:
                        // the client is told it closes (RFC 9112 §9.6).
                        match slot.take() {
                            Some((rest, polled))
                                if (polled || !expects_continue)
                                    && resp.status() != hyper::StatusCode::REQUEST_TIMEOUT =>
                            {
                                let drained =
                                    unread::drain(rest, unread::DRAIN_LIMIT, body_timeout).await;
                                if !drained && http1 {
                                    resp.headers_mut().insert(
                                        hyper::header::CONNECTION,
                                        hyper::header::HeaderValue::from_static("close"),
                                    );
                                }
                            }
                            Some(_) if http1 => {
                                resp.headers_mut().insert(
                                    hyper::header::CONNECTION,
                                    hyper::header::HeaderValue::from_static("close"),
                                );
                            }
                            _ => {}
                        }
                        // HTTP/1.0 has no chunks: an answer of unknown length ends when the
                        // connection does, so a client asking to keep it alive would wait
                        // for an end that never comes.
                        if http10 && hyper::body::Body::size_hint(resp.body()).exact().is_none() {
                            resp.headers_mut().insert(
                                hyper::header::CONNECTION,
                                hyper::header::HeaderValue::from_static("close"),
                            );
                            // Answered as HTTP/1.0, or hyper adds `keep-alive` to the close
                            // for the client that asked for it (`ab -k` then waits on).
                            *resp.version_mut() = hyper::Version::HTTP_10;
                        }
                        if http1
                            && !http10
                            && !closing
                            && let Some(k) = keep_alive
                            && !resp.headers().contains_key(hyper::header::CONNECTION)
                        {
                            resp.headers_mut()
                                .insert(hyper::header::HeaderName::from_static("keep-alive"), k);
                        }
                        // The page's turn ends once its bytes count as unread.
                        let turn = resp.extensions_mut().remove::<Turn>();
                        let resp = resp.map(|body| Counted::new(body, guard));
                        drop(turn);
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let ending = match acceptor {
                    Some(acc) => {
                        // The handshake runs in the connection's task under a deadline, so a
                        // silent client holds only its own slot.
                        // A client still in its handshake has shown no token either: it makes
                        // room for a newcomer like any other stranger.
                        // Until its first bytes, a connection may be closed for a newcomer at
                        // once (`evict_a_stranger`).
                        let certificate_sent = Arc::new(std::sync::atomic::AtomicBool::new(false));
                        let handshake = tokio::time::timeout(header_timeout, async {
                            // `peek`, not `readable`, which wakes early on a new socket.
                            let mut first = [0u8; 1];
                            if matches!(tcp.peek(&mut first).await, Ok(n) if n > 0) {
                                flight.spoke();
                            }
                            let h = tls::Handshaking {
                                peer,
                                certificate_sent: certificate_sent.clone(),
                            };
                            tls::HANDSHAKE.scope(h, acc.accept(tcp)).await
                        });
                        let tls = match tokio::select! {
                            r = handshake => r,
                            _ = flight.evicted() => {
                                tracing::debug!(%peer, "closing a connection still in its TLS handshake: every connection slot is taken and a client is waiting");
                                return;
                            }
                        } {
                            Ok(Ok(s)) => s,
                            failed => {
                                let (failure, error) = match failed {
                                    Ok(Err(e)) => {
                                        let sent = certificate_sent
                                            .load(std::sync::atomic::Ordering::Relaxed);
                                        (Failure::of(&e).after(sent), Some(e))
                                    }
                                    _ => (Failure::TimedOut, None),
                                };
                                said.metrics.handshake_failures.add(failure.label());
                                failure.log(peer, error.as_ref(), |b| said.within_this_hour(b));
                                return;
                            }
                        };
                        let conn = builder
                            .serve_connection(TokioIo::new(Watched::new(tls, flight.clone())), svc)
                            .into_owned();
                        in_flight::drive(conn, flight, timeouts, peer, stopping, closed).await
                    }
                    None => {
                        // Behind a proxy (plain HTTP), whose connections speak at once: the
                        // grace applies from the start.
                        flight.spoke();
                        let conn = builder
                            .serve_connection(TokioIo::new(Watched::new(tcp, flight.clone())), svc)
                            .into_owned();
                        in_flight::drive(conn, flight, timeouts, peer, stopping, closed).await
                    }
                };
                if matches!(
                    ending,
                    in_flight::Ending::Hushed | in_flight::Ending::Calmed
                ) {
                    said.metrics
                        .closed_for_chatter
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let first = |what: &str| said.first_from_this_minute(what, peer.ip());
                match ending {
                    in_flight::Ending::Unreadable(why) if first("unreadable") => {
                        let hint = unreadable_hint(&why);
                        tracing::info!(%peer, error = %why, "answered a request that is not valid HTTP/1.1 with a bare 400, 414 or 431, no SCIM body: {hint} (said once a minute per address)");
                    }
                    in_flight::Ending::NoWindow(quiet) if first("no window") => {
                        tracing::warn!(%peer, secs = quiet.as_secs(), "closed a connection whose answers had not moved: the client gives no flow-control window (said once a minute per address)");
                    }
                    in_flight::Ending::Unanswered(quiet) if first("unanswered") => {
                        tracing::warn!(%peer, secs = quiet.as_secs(), "closed a connection whose request had had no answer for that long (said once a minute per address)");
                    }
                    in_flight::Ending::Hushed if first("chatter") => {
                        tracing::warn!(%peer, "closed an HTTP/2 connection sending control frames (PING, SETTINGS, WINDOW_UPDATE, PRIORITY, RST_STREAM) beyond what its requests account for (said once a minute per address)");
                    }
                    in_flight::Ending::Calmed if first("calm") => {
                        tracing::warn!(%peer, "sent an HTTP/2 client GOAWAY ENHANCE_YOUR_CALM: it reset streams as soon as it opened them (rapid reset, CVE-2023-44487), or had the server reset too many (said once a minute per address)");
                    }
                    in_flight::Ending::Unread(quiet) if first("unread") => {
                        tracing::warn!(%peer, secs = quiet.as_secs(), "closed a connection whose client had read nothing of its answer (said once a minute per address)");
                    }
                    _ => {}
                }
            });
        }
        drop(listener);
        if let Some(a) = admin {
            a.abort();
            let _ = std::fs::remove_file(crate::admin::socket_path(&config));
        }
        tracing::info!("shutting down: no new connections, finishing open requests");
        let _ = stop.send(true);
        // As the configuration reads now: a reload may have changed it.
        let grace = app.runtime().config.server.shutdown_grace_secs;
        // Every connection task holds a slot: all of them back means all connections ended.
        let all_slots = u32::try_from(config.server.max_connections).unwrap_or(u32::MAX);
        tokio::select! {
            _ = limit.acquire_many(all_slots) => {}
            // Connections left are idle: an HTTP/2 client that does not read its idle
            // connection would hold the stop for the whole grace period.
            _ = in_flight.settled(SHUTDOWN_SETTLE) => {
                tracing::debug!("no request open; closing idle connections");
            }
            _ = tokio::time::sleep(Duration::from_secs(grace)) => {
                let open = (all_slots as usize).saturating_sub(limit.available_permits());
                tracing::warn!(grace_secs = grace, connections = open, "open connections did not finish in time; closing them (their unfinished requests get no answer)");
            }
        }
        let _ = closing.send(true);
        // Batches commit without redb's allocator record; writing it now makes the next
        // start quick even if the machine goes down before the process has fully exited.
        match app.store.checkpoint().await {
            Ok(_) => {}
            // Said at ERROR when it went; the next start opens whatever is there now.
            Err(crate::store::Error::FileGone) => {
                tracing::warn!(
                    "no checkpoint at shutdown: the database file was removed or replaced while scimd ran"
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, "no checkpoint at shutdown; the next start repairs the file")
            }
        }
    }
}

/// How long shutdown waits with no request open before it closes the connections left.
const SHUTDOWN_SETTLE: Duration = Duration::from_secs(1);

/// The state directory holds the database and possibly a private key: owner only.
fn restrict_dir(dir: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot restrict the state directory to its owner");
        }
    }
}

/// Polls a request's future and turns a panic into `Err`: the isolation of a task per request
/// without a spawn and a join for each one.
struct CatchPanic<F>(std::pin::Pin<Box<F>>);

impl<F: std::future::Future> std::future::Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(std::task::Poll::Ready(v)) => std::task::Poll::Ready(Ok(v)),
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Err(p) => {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                std::task::Poll::Ready(Err(what))
            }
        }
    }
}

fn internal_error(what: &str, id: &RequestId) -> crate::http::response::Resp {
    use crate::http::response;
    let error_id = uuid::Uuid::new_v4().simple().to_string();
    tracing::error!(%error_id, error = %what, request_id = id.0, "request handler panicked");
    let resp = response::error(&crate::scim::error::ScimError::internal(&error_id));
    response::with_header(resp, crate::http::request_id::HEADER, &id.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hyper's words for what it could not read lead to the part of the request at fault: a
    /// bad header was blamed on the URL.
    #[test]
    fn an_unreadable_request_is_pointed_at_the_part_at_fault() {
        for (hyper_says, hint) in [
            (
                "invalid HTTP header parsed",
                "a header or the request line holds",
            ),
            ("message head is too large", "longer than the server reads"),
            ("URI too long", "longer than the server reads"),
            ("invalid URI", "must be percent-encoded"),
            ("invalid HTTP method parsed", "not METHOD PATH HTTP/1.1"),
            ("invalid HTTP version parsed", "not METHOD PATH HTTP/1.1"),
            (
                "invalid HTTP version parsed (found HTTP2 preface)",
                "HTTP/2 client",
            ),
            (
                "invalid content-length parsed",
                "Content-Length or Transfer-Encoding",
            ),
            (
                "invalid transfer-encoding parsed",
                "Content-Length or Transfer-Encoding",
            ),
        ] {
            let said = unreadable_hint(hyper_says);
            assert!(said.contains(hint), "{hyper_says}: {said}");
        }
    }

    /// A handler that panics is answered 500 with its request's id, like any other answer,
    /// and the same id is what its log line carries.
    #[tokio::test]
    async fn a_panic_is_a_500_that_carries_the_request_id() {
        let empty: Vec<u8> = Vec::new();
        let caught = CatchPanic(Box::pin(async move { empty[1] })).await;
        let what = caught.expect_err("the panic was caught");
        assert!(what.starts_with("index out of bounds"), "{what}");
        let resp = internal_error(&what, &RequestId("req-42".into()));
        assert_eq!(resp.status(), hyper::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            resp.headers()
                .get(crate::http::request_id::HEADER)
                .map(|v| v.as_bytes()),
            Some(&b"req-42"[..])
        );
    }
}
