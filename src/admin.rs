//! The local admin channel: a Unix socket in the state directory, readable only by the
//! service's user (and root), so console commands work while the daemon holds the database.
//! One JSON request per line, one JSON answer per line.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::config::Config;
use crate::http::{App, plan_rules};
use crate::scim::schema::Kind;
use crate::store::Store;

/// The most lines `users list` and `groups list` ask for.
pub const LIST_MAX: u64 = 10_000;

pub fn socket_path(cfg: &Config) -> PathBuf {
    cfg.storage.dir.join("admin.sock")
}

/// A tenant name that is not configured: a typo, or a tenant taken out of the file.
fn no_tenant(cfg: &Config, tenant: &str) -> String {
    let names: Vec<&str> = cfg.tenants.keys().map(String::as_str).collect();
    format!(
        "no tenant {tenant} in the configuration (configured: {}); one just added to the file \
         is there once the daemon reloads it (`systemctl reload scimd`), and one taken out of \
         the file keeps its data, read again once its [tenants.{tenant}] table is back",
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    )
}

/// Refuses a tenant that neither the file nor the database has. One only in the database
/// (taken out of the file, its data kept until `tenant purge`) can still be listed and
/// exported: an export is how its data leaves before the purge.
async fn readable(store: &Store, cfg: &Config, tenant: &str) -> Result<(), String> {
    if cfg.tenants.contains_key(tenant) {
        return Ok(());
    }
    match store.stored_tenants().await {
        Ok(stored) if stored.iter().any(|t| t == tenant) => Ok(()),
        Ok(_) => Err(no_tenant(cfg, tenant)),
        Err(e) => Err(format!("the database cannot be read: {e}")),
    }
}

/// Users and groups of one tenant.
async fn counts(store: &Store, tenant: &str) -> Result<Value, String> {
    let users = store.count(tenant.to_string(), Kind::User).await;
    let groups = store.count(tenant.to_string(), Kind::Group).await;
    match (users, groups) {
        (Ok(u), Ok(g)) => Ok(json!({"users": u, "groups": g})),
        (Err(e), _) | (_, Err(e)) => Err(format!("the database cannot be read: {e}")),
    }
}

/// Answer one admin request from the store and the running configuration.
pub async fn answer(store: &Store, cfg: &Config, req: &Value) -> Value {
    match req["cmd"].as_str() {
        Some("status") => {
            // A count the database cannot give is an error, never a zero.
            let mut tenants = serde_json::Map::new();
            for (name, t) in &cfg.tenants {
                let mut c = match counts(store, name).await {
                    Ok(c) => c,
                    Err(e) => return json!({"ok": false, "error": e}),
                };
                c["display_name"] = json!(t.display_name);
                c["log_bodies"] = json!(t.log_bodies);
                // Names and scopes only: who may provision is what an audit asks.
                let tokens: Vec<Value> = t
                    .tokens
                    .iter()
                    .map(|k| json!({"name": k.name, "scope": k.scope}))
                    .collect();
                c["tokens"] = json!(tokens);
                tenants.insert(name.clone(), c);
            }
            // A tenant taken out of the file keeps its data, and gets it back if put back:
            // say so, or it would be invisible.
            let stored = match store.stored_tenants().await {
                Ok(s) => s,
                Err(e) => {
                    return json!({"ok": false, "error": format!("the database cannot be read: {e}")});
                }
            };
            let mut unconfigured = serde_json::Map::new();
            for name in stored {
                if !cfg.tenants.contains_key(&name) {
                    match counts(store, &name).await {
                        Ok(c) => unconfigured.insert(name, c),
                        Err(e) => return json!({"ok": false, "error": e}),
                    };
                }
            }
            // Why IdPs' writes are refused, as `/healthz` says it.
            let refusing = store.writes_refused().map(|r| match r {
                crate::store::Refused::Damaged(what) => what,
                crate::store::Refused::DiskFull { free } => format!(
                    "the disk holding the database is full ({:.1} MiB free): writes are refused \
                     until space is freed on it",
                    free as f64 / 1048576.0
                ),
            });
            json!({"ok": true, "version": env!("CARGO_PKG_VERSION"), "commit": env!("SCIMD_COMMIT"),
                "writes_refused": refusing,
                "listen": cfg.server.listen, "pid": std::process::id(), "tenants": tenants,
                "database": cfg.storage.db_path(),
                "database_bytes": std::fs::metadata(cfg.storage.db_path()).map(|m| m.len()).ok(),
                "unconfigured": unconfigured, "config_digest": cfg.file_digest,
                "config_path": cfg.file_path})
        }
        Some("plan") => {
            let tenant = req["tenant"].as_str().unwrap_or_default().to_string();
            if !cfg.tenants.contains_key(&tenant) {
                return json!({"ok": false, "not_configured": true, "error": no_tenant(cfg, &tenant)});
            }
            let Some(plan) = cfg.tenants.get(&tenant).and_then(|t| t.plan.as_ref()) else {
                return json!({"ok": false, "not_configured": true, "error": format!("tenant {tenant} has no [tenants.{tenant}.plan] in the configuration")});
            };
            let rules = Arc::new(plan_rules(plan));
            // A daemon applied its settings at its start or reload; a file read with the
            // daemon stopped may hold settings the next start applies.
            let pending = match store.plan_pending(&tenant, Some(&rules)) {
                Ok(p) => p,
                Err(e) => return json!({"ok": false, "error": e.to_string()}),
            };
            match store.plan_summary(tenant.clone(), rules.clone()).await {
                Ok(s) => json!({"ok": true, "tenant": tenant, "plan": rules.name, "mode": s.mode,
                    "test_threshold": rules.test_threshold, "seats": rules.seats,
                    "on_seat_limit": rules.on_seat_limit, "active_provisioned": s.active_provisioned,
                    "paid": s.paid, "free": s.free, "deactivated": s.deactivated,
                    "pending": pending}),
                Err(e) => json!({"ok": false, "error": e.to_string()}),
            }
        }
        Some("backup") => {
            // Written inside the state directory, the one place a sandboxed service may write;
            // the command line moves it where the admin asked.
            let stamp = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
            let to = cfg.storage.dir.join(format!("backup-{stamp}.redb"));
            match store.backup(to.clone()).await {
                Ok(rows) => json!({"ok": true, "backup": to, "rows": rows}),
                Err(e) => {
                    let e = e.to_string();
                    // ENOSPC: the copy is made in storage.dir first, whatever --to says.
                    let room = if e.contains("(os error 28)") {
                        "; a backup first writes a whole copy (about the size of scimd.redb) \
                         in storage.dir, which has no room for it: free space there"
                    } else {
                        ""
                    };
                    json!({"ok": false, "error": format!("backup failed: {e}{room}")})
                }
            }
        }
        Some("verify") => {
            let types = crate::http::Runtime::new(cfg.clone()).types;
            match store.verify(types).await {
                Ok(problems) => {
                    json!({"ok": problems.is_empty(), "verify": true, "problems": problems,
                    "error": "the database has inconsistencies (listed above)"})
                }
                Err(e) => {
                    tracing::error!(error = %e, "verify failed");
                    json!({"ok": false, "error": format!("verify failed: {e}")})
                }
            }
        }
        Some("list") => {
            let tenant = req["tenant"].as_str().unwrap_or_default().to_string();
            if let Err(e) = readable(store, cfg, &tenant).await {
                return json!({"ok": false, "not_configured": true, "error": e});
            }
            let kind = if req["kind"] == "Group" {
                Kind::Group
            } else {
                Kind::User
            };
            let rt = crate::http::Runtime::new(cfg.clone()).rt(Some(&tenant), kind);
            let filter = match req["filter"].as_str().filter(|f| !f.trim().is_empty()) {
                Some(f) => match crate::scim::filter::parse_for(rt, f) {
                    Ok(f) => Some(f),
                    Err(e) => return json!({"ok": false, "error": e.detail}),
                },
                None => None,
            };
            let limit = req["limit"].as_u64().unwrap_or(1000).min(LIST_MAX);
            // Page by page, each resource kept only as its line: a limit of 10,000 holds
            // that many short lines (a few MB), never that many resources.
            let mut items = Vec::new();
            let mut total = 0;
            let mut after = 0u128;
            // One snapshot for every page: one count, and a scan's bookmarks serve them all.
            let snapshot = match store.snapshot() {
                Ok(s) => s,
                Err(e) => return json!({"ok": false, "error": e.to_string()}),
            };
            while (items.len() as u64) < limit {
                let q = crate::store::ListQuery {
                    filter: filter.clone(),
                    count: (limit - items.len() as u64).min(1000),
                    start_index: 1,
                    after: Some(after),
                    ..Default::default()
                };
                let page = match store
                    .list_in(Some(snapshot.clone()), tenant.clone(), rt, q)
                    .await
                {
                    Ok(page) => page,
                    Err(e) => return json!({"ok": false, "error": e.to_string()}),
                };
                total = page.total;
                items.extend(page.items.iter().map(|r| {
                    let name = r.body.get(if kind == Kind::User {
                        "userName"
                    } else {
                        "displayName"
                    });
                    match kind {
                        Kind::User => json!({"id": r.id, "name": name,
                            "active": r.body.get("active").cloned().unwrap_or(Value::Bool(true))}),
                        Kind::Group => json!({"id": r.id, "name": name}),
                    }
                }));
                match page.next {
                    Some(id) => after = id,
                    None => break,
                }
            }
            json!({"ok": true, "list": items, "total": total})
        }
        Some("purge") => {
            let tenant = req["tenant"].as_str().unwrap_or_default().to_string();
            if !crate::config::valid_tenant_name(&tenant) {
                return json!({"ok": false, "error": format!("\"{tenant}\" is not a tenant name")});
            }
            // Only data nothing serves: a configured tenant's IdP would find its users gone.
            if cfg.tenants.contains_key(&tenant) {
                return json!({"ok": false, "error": format!(
                    "tenant {tenant} is configured in the server's configuration: delete its \
                     [tenants.{tenant}] table (and the tables under it) and reload first"
                )});
            }
            match store.purge_tenant(tenant.clone()).await {
                // A mistyped name must not read as a purge done.
                Ok(0) => json!({"ok": false, "error": format!(
                    "nothing is stored under tenant {tenant}: nothing was purged (`scimd \
                     status` lists the tenants the database holds)"
                )}),
                Ok(n) => {
                    tracing::info!(%tenant, entries = n, "tenant purged from the database (scimd tenant purge)");
                    json!({"ok": true, "purged": tenant, "entries": n})
                }
                Err(e) => json!({"ok": false, "error": format!(
                    "purge failed: {e}; what is left of the tenant is not served, and running \
                     the purge again finishes it"
                )}),
            }
        }
        _ => {
            json!({"ok": false, "error": "unknown command; use status, plan, list, backup, verify or purge"})
        }
    }
}

/// Serve the admin socket until the returned task is aborted.
pub fn listen(
    app: Arc<App>,
    path: &Path,
    bound: std::net::SocketAddr,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    // Tenants an import is writing into: a second import beside one would find the first
    // one's lines half-written, and refuse them as names taken by other ids.
    let importing = Importing::default();
    Ok(tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: retried after a pause, not in a spin
                    // that takes a core from the requests.
                    tracing::warn!(error = %e, "the admin socket cannot accept a connection; retrying in a second");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            let app = app.clone();
            let importing = importing.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let req: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                    let cfg = app.runtime().config.clone();
                    let tenant = req["tenant"].as_str().unwrap_or_default().to_string();
                    let mut out = String::new();
                    match req["cmd"].as_str() {
                        Some("export") => {
                            // Written as read (the console prints it as it comes): an
                            // export of a million users is never held in the daemon.
                            let mut sink = tokio::io::BufWriter::with_capacity(256 << 10, &mut w);
                            let res = export(&app.store, &cfg, &tenant, &mut sink).await;
                            let flushed = tokio::time::timeout(EXPORT_STALL, sink.flush()).await;
                            if !matches!(flushed, Ok(Ok(()))) {
                                break;
                            }
                            let end = match res {
                                Ok(n) => json!({"ok": true, "exported": n}),
                                // The console went away or stopped reading: closed.
                                Err(ExportFailed::Output(_)) => break,
                                Err(ExportFailed::Read(e)) => {
                                    // On a line of its own: a group's line may have been
                                    // cut part-way.
                                    out.push('\n');
                                    json!({"ok": false, "error": e})
                                }
                            };
                            out.push_str(&end.to_string());
                        }
                        Some("import") => {
                            // One import into a tenant at a time: a second is refused before
                            // its lines are kept anywhere (read on to their end, unkept).
                            let writing = ImportGuard::take(&importing, &tenant);
                            // The lines go to a file in the state directory as they come (the
                            // import reads them more than once), not into memory; on the
                            // first failure (no room left beside the database) the file is
                            // removed at once and the rest is read unkept.
                            let mut spool = match &writing {
                                Some(_) => Some(Spool::create(&cfg.storage.dir).await),
                                None => None,
                            };
                            let mut ended = false;
                            let mut failed = None;
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == END {
                                    ended = true;
                                    break;
                                }
                                if let Some(Ok(s)) = spool.as_mut()
                                    && let Err(e) = s.push(&l).await
                                {
                                    failed = Some(e.to_string());
                                    spool = None;
                                }
                            }
                            // A console killed while it sent its file: nothing to run.
                            if !ended {
                                break;
                            }
                            let refuse = |e: String| json!({"ok": false, "error": e}).to_string();
                            let keep = |e: String| {
                                refuse(format!("cannot keep the lines for the import: {e}"))
                            };
                            let spool = match (writing.is_some(), spool, failed) {
                                (false, ..) => Err(refuse(format!(
                                    "an import into tenant {tenant} is already running; wait \
                                     until it ends (its console shows how far it is), then run \
                                     this one again: lines already in the tenant are skipped"
                                ))),
                                (true, _, Some(e)) => Err(keep(e)),
                                (true, Some(Err(e)), None) => Err(keep(e.to_string())),
                                (true, Some(Ok(mut s)), None) => match s.finish().await {
                                    Ok(()) => Ok(s),
                                    Err(e) => Err(keep(e.to_string())),
                                },
                                (true, None, None) => Err(keep("no file was kept".into())),
                            };
                            let spool = match spool {
                                Ok(s) => s,
                                Err(said) => {
                                    out.push_str(&said);
                                    out.push('\n');
                                    let _ = w.write_all(out.as_bytes()).await;
                                    break;
                                }
                            };
                            let _writing = writing;
                            // Progress lines go out while the import runs, so the console
                            // can draw its bar.
                            let (ptx, mut prx) = tokio::sync::mpsc::unbounded_channel();
                            let store = app.store.clone();
                            let who = tenant.clone();
                            let work = async move {
                                let mut progress = move |done: u64, total: u64| {
                                    let _ = ptx.send(json!({"progress": [done, total]}));
                                };
                                import(&store, &cfg, &tenant, spool.path(), &mut progress).await
                            };
                            let forward = async {
                                while let Some(p) = prx.recv().await {
                                    let _ = w.write_all(format!("{p}\n").as_bytes()).await;
                                }
                            };
                            // The console sends nothing after the lines: its end closing means
                            // it was killed or interrupted. The import stops at its next
                            // write (what it wrote stays, and running it again finishes the
                            // job), rather than go on unseen while the admin runs it again.
                            let gone = async { while let Ok(Some(_)) = lines.next_line().await {} };
                            let res = tokio::select! {
                                (res, ()) = async { tokio::join!(work, forward) } => res,
                                () = gone => {
                                    tracing::warn!(tenant = %who, "import stopped: its console went away (killed or interrupted); running it again finishes the job");
                                    break;
                                }
                            };
                            // The journal says an import happened; the reason for a stop may
                            // name values, so it goes to the console only.
                            let end = match res {
                                Ok(n) => {
                                    tracing::info!(tenant = %who, written = n.written, skipped = n.skipped, "import finished");
                                    json!({"ok": true, "imported": n.written, "skipped": n.skipped})
                                }
                                Err(e) => {
                                    tracing::warn!(tenant = %who, "import stopped; the console command was told why");
                                    json!({"ok": false, "error": e})
                                }
                            };
                            out.push_str(&end.to_string());
                        }
                        _ => {
                            let mut a = answer(&app.store, &cfg, &req).await;
                            // Where it really listens: a changed server.listen waits for a
                            // restart.
                            if a.get("listen").is_some() {
                                a["listen"] = bound.to_string().into();
                            }
                            out.push_str(&a.to_string());
                        }
                    }
                    out.push('\n');
                    if w.write_all(out.as_bytes()).await.is_err() {
                        // The command that asked for a backup is gone (killed while the copy
                        // was made): nobody will move the copy away.
                        if req["cmd"] == "backup" {
                            let staged: Value =
                                serde_json::from_str(out.trim()).unwrap_or_default();
                            if let Some(p) = staged["backup"].as_str() {
                                let _ = std::fs::remove_file(p);
                                tracing::warn!(path = %p, "backup copy removed: the command that asked for it went away");
                            }
                        }
                        break;
                    }
                }
            });
        }
    }))
}

/// The tenants an import is writing into.
type Importing = Arc<std::sync::Mutex<HashSet<String>>>;

/// A tenant's mark as being imported into, taken off when the import ends however it ends.
struct ImportGuard {
    set: Importing,
    tenant: String,
}

impl ImportGuard {
    /// `None` when an import into `tenant` is already running.
    fn take(set: &Importing, tenant: &str) -> Option<ImportGuard> {
        let fresh = set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_string());
        fresh.then(|| ImportGuard {
            set: set.clone(),
            tenant: tenant.to_string(),
        })
    }
}

impl Drop for ImportGuard {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.tenant);
    }
}

/// Marks the end of an import stream.
const END: &str = "{\"end\":true}";

/// The lines of an import's file, kept in a file of the state directory (owner-only;
/// removed when dropped, and by the next start if the process died first): the import reads
/// them four times, and the file given may be a pipe, or change meanwhile.
pub struct Spool {
    path: PathBuf,
    dir: PathBuf,
    file: tokio::io::BufWriter<tokio::fs::File>,
    /// Bytes written, and when room was last looked at.
    written: u64,
    checked: u64,
}

/// The room a spool leaves on the disk of the database: the IdPs' writes go on meanwhile.
const SPOOL_RESERVE: u64 = 64 << 20;

impl Spool {
    pub async fn create(dir: &Path) -> std::io::Result<Spool> {
        let path = dir.join(format!(
            "import-{}.spool",
            crate::store::format_id(uuid::Uuid::now_v7().as_u128())
        ));
        let mut o = tokio::fs::OpenOptions::new();
        o.write(true).create_new(true).mode(0o600);
        let file = o.open(&path).await?;
        let spool = Spool {
            path,
            dir: dir.to_path_buf(),
            file: tokio::io::BufWriter::with_capacity(256 << 10, file),
            written: 0,
            checked: 0,
        };
        spool.room()?;
        Ok(spool)
    }

    /// The lines of `from`, as they are read.
    pub async fn fill_from<R>(&mut self, from: R) -> std::io::Result<()>
    where
        R: tokio::io::AsyncRead + Unpin,
    {
        let mut lines = BufReader::with_capacity(256 << 10, from).lines();
        while let Some(l) = lines.next_line().await? {
            self.push(&l).await?;
        }
        self.finish().await
    }

    async fn push(&mut self, line: &str) -> std::io::Result<()> {
        self.file.write_all(line.as_bytes()).await?;
        self.file.write_all(b"\n").await?;
        self.written += line.len() as u64 + 1;
        if self.written - self.checked >= 4 << 20 {
            self.checked = self.written;
            self.room()?;
        }
        Ok(())
    }

    /// Refuses to go on once less than `SPOOL_RESERVE` is free.
    fn room(&self) -> std::io::Result<()> {
        let st = rustix::fs::statvfs(&self.dir)?;
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        if free < SPOOL_RESERVE {
            return Err(std::io::Error::other(format!(
                "{} MB are free in {}, and an import keeps a copy of its file there while \
                 leaving {} MB for the database; free some space",
                free >> 20,
                self.dir.display(),
                SPOOL_RESERVE >> 20
            )));
        }
        Ok(())
    }

    pub async fn finish(&mut self) -> std::io::Result<()> {
        self.file.flush().await
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Run `req` on the daemon, sending the lines of `body` after it (an import's file, a line
/// at a time as it is read, opened once: it may be a pipe); returns its final status line
/// (nothing when it stopped before it). The resource lines before it go to `each` in pieces
/// as they come (an export's; with whether the piece ends its line), progress lines to
/// `progress`. `None` when no daemon listens.
pub async fn converse(
    path: &Path,
    req: &Value,
    body: &mut Option<tokio::fs::File>,
    progress: &mut dyn FnMut(u64, u64),
    each: &mut dyn FnMut(&[u8], bool),
) -> Option<Vec<String>> {
    let stream = UnixStream::connect(path).await.ok()?;
    // Taken only once a daemon listens: else the caller imports from it itself.
    let body = body.take();
    let (r, w) = stream.into_split();
    let mut w = tokio::io::BufWriter::with_capacity(256 << 10, w);
    // Past the connection, a failed write is no reason to think no daemon listens: what it
    // answers is read (it may have refused the import), or that it answered nothing.
    // A write that fails: the daemon closed (said below, from what it answered).
    let gone = |_: std::io::Error| String::new();
    let sent = async {
        w.write_all(format!("{req}\n").as_bytes())
            .await
            .map_err(gone)?;
        if let Some(file) = body {
            let mut lines = BufReader::with_capacity(256 << 10, file).lines();
            let mut n = 0usize;
            while let Some(l) = lines
                .next_line()
                .await
                .map_err(|e| format!("line {}: {e}", n + 1))?
            {
                n += 1;
                // The daemon would take it for the end of the file.
                if l == END {
                    return Err(format!(
                        "line {n} is the end mark of scimd's admin channel, not a resource"
                    ));
                }
                w.write_all(l.as_bytes()).await.map_err(gone)?;
                w.write_all(b"\n").await.map_err(gone)?;
            }
            w.write_all(format!("{END}\n").as_bytes())
                .await
                .map_err(gone)?;
        }
        w.flush().await.map_err(gone)?;
        Ok::<(), String>(())
    }
    .await;
    if let Err(said) = sent {
        // Closed before the end mark: the daemon runs nothing.
        if !said.is_empty() {
            return Some(vec![json!({"ok": false, "error": said}).to_string()]);
        }
    }
    // Held open until the answer is read: its end closing tells the daemon the console went
    // away (an import then stops).
    let _open = w;
    let mut from = BufReader::with_capacity(256 << 10, r);
    let mut got = Vec::new();
    // A resource (an export's line) is passed on unparsed and in pieces as it comes: a
    // group of a million members is a line of 60 MB. Other lines are short and read whole.
    const RESOURCE: &[u8] = b"{\"schemas\"";
    let mut head: Vec<u8> = Vec::new();
    let mut in_resource = false;
    while let Ok(buf) = from.fill_buf().await {
        if buf.is_empty() {
            break;
        }
        let (part, ends) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], true),
            None => (buf, false),
        };
        let used = part.len() + usize::from(ends);
        if in_resource {
            each(part, ends);
            from.consume(used);
            in_resource = !ends;
            continue;
        }
        head.extend_from_slice(part);
        from.consume(used);
        if head.starts_with(RESOURCE) {
            each(&head, ends);
            head.clear();
            in_resource = !ends;
            continue;
        }
        if !ends {
            continue; // a line not yet whole (or a resource's start not yet seen whole)
        }
        let l = String::from_utf8_lossy(&head).into_owned();
        head.clear();
        if l.is_empty() {
            continue;
        }
        let v = serde_json::from_str::<Value>(&l).unwrap_or_default();
        if let [Some(done), Some(total)] = v["progress"]
            .as_array()
            .map(|p| {
                [
                    p.first().and_then(Value::as_u64),
                    p.get(1).and_then(Value::as_u64),
                ]
            })
            .unwrap_or_default()
        {
            progress(done, total);
            continue;
        }
        let last = v.get("ok").is_some();
        got.push(l);
        if last {
            break;
        }
    }
    Some(got)
}

/// Ask the running daemon; `None` when no daemon listens on the socket.
pub async fn ask(path: &Path, req: &Value) -> Option<Value> {
    let stream = UnixStream::connect(path).await.ok()?;
    let (r, mut w) = stream.into_split();
    w.write_all(format!("{req}\n").as_bytes()).await.ok()?;
    let mut lines = BufReader::new(r).lines();
    let line = lines.next_line().await.ok()??;
    serde_json::from_str(&line).ok()
}

/// One resource per line, written to `out` as it is read: all users, then all groups with
/// their members, all read in one snapshot (a user created meanwhile and added to a group
/// would otherwise be a member the file does not hold). A group's members are read in
/// batches and written into its line as they come: a group of a million is never held
/// whole. A failed write (the reader gone) stops the export. Returns how many resources.
pub async fn export<W>(
    store: &Store,
    cfg: &Config,
    tenant: &str,
    out: &mut W,
) -> Result<u64, ExportFailed>
where
    W: tokio::io::AsyncWrite + Unpin + Send,
{
    readable(store, cfg, tenant)
        .await
        .map_err(ExportFailed::Read)?;
    let rt = crate::http::Runtime::new(cfg.clone());
    let read = |e: crate::store::Error| ExportFailed::Read(e.to_string());
    let snapshot = store.snapshot().map_err(read)?;
    let mut n = 0;
    for kind in [Kind::User, Kind::Group] {
        let mut after = 0u128;
        loop {
            let q = crate::store::ListQuery {
                count: 1000,
                start_index: 1,
                after: Some(after),
                ..Default::default()
            };
            let page = store
                .list_in(
                    Some(snapshot.clone()),
                    tenant.to_string(),
                    rt.rt(Some(tenant), kind),
                    q,
                )
                .await
                .map_err(read)?;
            for r in &page.items {
                // Read without its references: a user's groups are not exported (its
                // groups' members say them), a group's members are streamed below.
                let mut v = r.to_json("");
                // The version goes along: an import keeps it, so that an ETag never comes
                // to mean another state.
                let mut meta = v.shift_remove("meta").unwrap_or_default();
                if let Value::Object(m) = &mut meta {
                    m.shift_remove("location");
                }
                match kind {
                    Kind::User => {
                        v.insert("meta".into(), meta);
                        let line = Value::Object(v).to_string() + "\n";
                        put(out, line.as_bytes()).await?;
                    }
                    Kind::Group => {
                        let members = store.member_batches(
                            tenant.to_string(),
                            crate::store::parse_id(&r.id).unwrap_or_default(),
                            EXPORT_STALL,
                            Some(snapshot.clone()),
                        );
                        let head = Value::Object(v).to_string();
                        write_group(&head, members, &meta, out).await?;
                    }
                }
                n += 1;
            }
            match page.next {
                Some(id) => after = id,
                None => break,
            }
        }
    }
    Ok(n)
}

/// Why an export stopped: the output could not be written (its reader gone, a full disk),
/// or the tenant could not be read.
#[derive(Debug)]
pub enum ExportFailed {
    Output(std::io::Error),
    Read(String),
}

impl From<std::io::Error> for ExportFailed {
    fn from(e: std::io::Error) -> Self {
        ExportFailed::Output(e)
    }
}

/// How long an export waits for its reader (the console) to take more: past it, the export
/// stops rather than hold its snapshot (which keeps redb from reusing the pages later
/// writes free) for as long as a paused console likes.
const EXPORT_STALL: std::time::Duration = std::time::Duration::from_secs(60);

/// Write `bytes` to the export's reader, waiting at most `EXPORT_STALL` for it.
async fn put<W>(out: &mut W, bytes: &[u8]) -> Result<(), ExportFailed>
where
    W: tokio::io::AsyncWrite + Unpin + Send,
{
    match tokio::time::timeout(EXPORT_STALL, out.write_all(bytes)).await {
        Ok(written) => Ok(written?),
        Err(_) => Err(ExportFailed::Output(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the export's reader took nothing for a minute",
        ))),
    }
}

/// A group's line: `head` (the group without members or meta, as a JSON object), its
/// members as they are read, then `meta`; written in pieces of about 64 KiB. The same text
/// as the group read whole gives (members before meta, each `value`, `display`, `type`).
async fn write_group<W>(
    head: &str,
    mut members: tokio::sync::mpsc::Receiver<crate::store::MemberBatch>,
    meta: &Value,
    out: &mut W,
) -> Result<(), ExportFailed>
where
    W: tokio::io::AsyncWrite + Unpin + Send,
{
    use crate::store::MemberBatch;
    let Some(head) = head.strip_suffix('}') else {
        return Err(ExportFailed::Read("a group could not be written".into()));
    };
    let mut text = format!("{head},\"members\":[");
    let mut first = true;
    let written = async {
        loop {
            match members.recv().await {
                Some(MemberBatch::Members(batch)) => {
                    for (id, kind, display) in batch {
                        if !first {
                            text.push(',');
                        }
                        first = false;
                        let id = crate::store::format_id(id);
                        let m = match display {
                            Some(d) => json!({"value": id, "display": d, "type": kind.as_str()}),
                            None => json!({"value": id, "type": kind.as_str()}),
                        };
                        text.push_str(&m.to_string());
                    }
                    if text.len() > 64 << 10 {
                        put(out, text.as_bytes()).await?;
                        text.clear();
                    }
                }
                Some(MemberBatch::End) => break,
                Some(MemberBatch::Head(_)) => {}
                None => {
                    let e = "a group's members could not be read; see the daemon's log";
                    return Err(ExportFailed::Read(e.into()));
                }
            }
        }
        text.push_str(&format!("],\"meta\":{meta}}}\n"));
        put(out, text.as_bytes()).await
    }
    .await;
    // However it ended, until the reader has let go of the snapshot (closed, its next send
    // fails, and it ends): a console command closes the database right after, and waits
    // for every holder of it, on the one thread that would poll the reader. (A closed
    // channel reads as ended once empty, before its sender is gone: hence the count.)
    members.close();
    while members.recv().await.is_some() {}
    while members.sender_strong_count() > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    written
}

/// Load exported lines into `tenant`, keeping ids: resources first, then group members, so
/// members may refer to any imported resource.
///
/// Every line is checked before anything is written: its JSON, its attributes, ids and names
/// repeated in the file, names taken in the tenant by another id, and members that point
/// nowhere. What can still stop an import part-way (a full disk, a kill, a seat limit) leaves
/// the resources written so far, and running the same import again finishes it: a line
/// whose id the tenant already holds, as the same kind of resource, is skipped.
///
/// The file is read four times (checked alone, checked against the tenant, resources
/// written, members added), a line at a time: what is held between the passes is each
/// line's id and name digest, so a file of a million users costs tens of MB, not the file
/// several times over.
pub async fn import(
    store: &Store,
    cfg: &Config,
    tenant: &str,
    from: &Path,
    progress: &mut (dyn FnMut(u64, u64) + Send),
) -> Result<Imported, String> {
    if !cfg.tenants.contains_key(tenant) {
        return Err(no_tenant(cfg, tenant));
    }
    let rt = crate::http::Runtime::new(cfg.clone());
    // The tenant's own change-feed retention, plan and create-only rules, as a request has.
    // Unlike a POST, an extension's required attributes are not demanded: the records come
    // as another host stored them, as a PUT keeps a resource stored before the requirement.
    let actor = rt.actor(tenant, "import");
    // Pass 1: each line alone, and ids and names repeated within the file (id -> line, and
    // a digest of the folded userName / group displayName -> line).
    let mut ids: HashMap<u128, usize> = HashMap::new();
    let mut names: HashMap<(Kind, [u8; 16]), usize> = HashMap::new();
    let mut lines = ImportLines::open(from).await?;
    let mut found = Problems::default();
    while let Some((n, line)) = lines.next().await? {
        let line = match parse_line(&rt, tenant, n, &line) {
            Ok(line) => line,
            Err(e) => {
                found.add(e);
                continue;
            }
        };
        let id = line.given.id;
        if let Some(first) = ids.insert(id, n) {
            found.add(format!(
                "line {n}: id {} is also on line {first}",
                crate::store::format_id(id)
            ));
        }
        if let Some(name) = unique_name(line.kind, &line.input.body)
            && let Some(first) = names.insert((line.kind, name_digest(name)), n)
        {
            found.add(format!(
                "line {n}: {} \"{name}\" is also on line {first}",
                name_attr(line.kind)
            ));
        }
    }
    found.refuse()?;
    drop(names);
    // Pass 2: against the tenant: which lines are there already, which would clash, and
    // members that are neither in the file nor in the tenant.
    let mut skip: HashSet<u128> = HashSet::new();
    drop(lines); // one open reader at a time
    let mut lines = ImportLines::open(from).await?;
    while let Some((n, line)) = lines.next().await? {
        let ParsedLine { kind, given, input } = parse_line(&rt, tenant, n, &line)?;
        let id = given.id;
        match held_as(store, tenant, id).await? {
            Some(k) if k == kind => {
                skip.insert(id);
            }
            Some(k) => {
                found.add(format!(
                    "line {n}: id {} is a {} in tenant {tenant}, not a {}",
                    crate::store::format_id(id),
                    k.as_str(),
                    kind.as_str()
                ));
            }
            None => {
                if let Some(name) = unique_name(kind, &input.body)
                    && let Some(other) = holder_of(store, &rt, tenant, kind, name).await?
                {
                    found.add(format!(
                        "line {n}: {} \"{name}\" is taken in tenant {tenant} by {other}",
                        name_attr(kind)
                    ));
                }
            }
        }
        for m in input.members.iter().flatten() {
            let Some(mid) = m.get("value").and_then(Value::as_str) else {
                continue;
            };
            let known = match crate::store::parse_id(mid) {
                Some(x) => ids.contains_key(&x) || held_as(store, tenant, x).await?.is_some(),
                None => false,
            };
            if !known {
                found.add(format!(
                    "line {n}: member {mid} is neither in the file nor in tenant {tenant}"
                ));
            }
        }
    }
    found.refuse()?;
    // Pass 3: the resources, 256 at a time so the writer commits them in shared batches.
    let total = (ids.len() - skip.len()) as u64;
    drop(ids);
    let skipped = skip.len() as u64;
    let mut n = 0;
    drop(lines); // one open reader at a time
    let mut lines = ImportLines::open(from).await?;
    let mut more = true;
    while more {
        let mut window = Vec::new();
        while window.len() < 256 {
            let Some((at, line)) = lines.next().await? else {
                more = false;
                break;
            };
            let ParsedLine {
                kind,
                given,
                mut input,
            } = parse_line(&rt, tenant, at, &line)?;
            if skip.contains(&given.id) {
                continue;
            }
            input.members = None;
            let (store, actor, rt) = (store.clone(), actor.clone(), rt.rt(Some(tenant), kind));
            window.push((
                at,
                tokio::spawn(async move { store.create_as(actor, rt, input, Some(given)).await }),
            ));
        }
        // Every create of the window is waited for, so the count said below is what was
        // written, the creates after a failed one included.
        let (mut failed, mut refused) = (None, 0);
        for (line, task) in window {
            let why = match task.await {
                Ok(Ok(_)) => {
                    n += 1;
                    continue;
                }
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            refused += 1;
            failed.get_or_insert((line, why));
        }
        if let Some((line, why)) = failed {
            // One line: the console prints control characters escaped.
            let more = match refused {
                1 => String::new(),
                r => format!(" (and {} more lines refused)", r - 1),
            };
            return Err(format!(
                "line {line}: {why}{more}; the import stopped there, after writing {n} \
                 resources (and finding {skipped} there already); once the cause is fixed, the \
                 same import finishes the job: lines already in the tenant are skipped"
            ));
        }
        progress(n, total);
    }
    drop(skip);
    // Pass 4: the groups' members (of skipped lines too), a chunk at a time: a group of a
    // million is a thousand writes that other tenants' writes go between, not one.
    drop(lines); // one open reader at a time
    let mut lines = ImportLines::open(from).await?;
    while let Some((at, line)) = lines.next().await? {
        let ParsedLine { given, input, .. } = parse_line(&rt, tenant, at, &line)?;
        let Some(members) = input.members.filter(|m| !m.is_empty()) else {
            continue;
        };
        for chunk in members.chunks(IMPORT_MEMBERS_AT_ONCE) {
            let op = crate::scim::patch::Operation {
                op: crate::scim::patch::OpKind::Add,
                path: Some("members".into()),
                value: Some(Value::Array(chunk.to_vec())),
            };
            store
                .patch(
                    actor.clone(),
                    rt.rt(Some(tenant), Kind::Group),
                    crate::store::format_id(given.id),
                    vec![op],
                    crate::store::Conditions::default(),
                )
                .await
                .map_err(|e| {
                    format!(
                        "members of group {}: {}\nthe resources are written; once the cause \
                         is fixed, the same import adds the members",
                        crate::store::format_id(given.id),
                        e
                    )
                })?;
        }
    }
    Ok(Imported {
        written: n,
        skipped,
    })
}

/// What an import's checking passes found wrong: the whole file's problems in one run, as
/// `check-config` gives a file's, not one a run. The first `SHOWN` are said.
#[derive(Default)]
struct Problems {
    shown: Vec<String>,
    more: usize,
}

impl Problems {
    const SHOWN: usize = 20;

    fn add(&mut self, problem: String) {
        match self.shown.len() < Self::SHOWN {
            true => self.shown.push(problem),
            false => self.more += 1,
        }
    }

    /// Nothing written: the problems, if any, refuse the import.
    fn refuse(&mut self) -> Result<(), String> {
        if self.shown.is_empty() {
            return Ok(());
        }
        let mut all = std::mem::take(&mut self.shown).join("\n");
        if self.more > 0 {
            all.push_str(&format!("\n... and {} more", self.more));
        }
        Err(all)
    }
}

/// How many members of a group one write of an import adds.
const IMPORT_MEMBERS_AT_ONCE: usize = 1000;

/// An import's file, a line at a time, with its line numbers (blank lines skipped).
struct ImportLines {
    lines: tokio::io::Lines<BufReader<tokio::fs::File>>,
    n: usize,
    path: PathBuf,
}

impl ImportLines {
    async fn open(path: &Path) -> Result<ImportLines, String> {
        let f = tokio::fs::File::open(path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(ImportLines {
            lines: BufReader::with_capacity(256 << 10, f).lines(),
            n: 0,
            path: path.to_path_buf(),
        })
    }

    async fn next(&mut self) -> Result<Option<(usize, String)>, String> {
        loop {
            self.n += 1;
            match self.lines.next_line().await {
                Ok(Some(l)) if l.trim().is_empty() => {}
                Ok(Some(l)) => return Ok(Some((self.n, l))),
                Ok(None) => return Ok(None),
                Err(e) => {
                    return Err(format!(
                        "line {}: cannot read {}: {e}",
                        self.n,
                        self.path.display()
                    ));
                }
            }
        }
    }
}

/// One line of an import, checked alone.
struct ParsedLine {
    kind: Kind,
    given: crate::store::Given,
    input: crate::scim::resource::Input,
}

fn parse_line(
    rt: &crate::http::Runtime,
    tenant: &str,
    n: usize,
    line: &str,
) -> Result<ParsedLine, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("line {n}: not JSON: {e}"))?;
    let is_group = v["schemas"]
        .as_array()
        .is_some_and(|s| s.iter().any(|x| x == crate::scim::schema::GROUP_SCHEMA));
    let kind = if is_group { Kind::Group } else { Kind::User };
    let id = v["id"]
        .as_str()
        .and_then(crate::store::parse_id)
        .ok_or_else(|| {
            format!(
                "line {n}: no \"id\" as scimd gives them (import reads the files `scimd export` \
                 writes, where every resource has its id)"
            )
        })?;
    let input = crate::scim::resource::normalize(rt.rt(Some(tenant), kind), &v)
        .map_err(|e| format!("line {n}: {}", e.detail))?;
    let meta = |k: &str| v["meta"][k].as_str().map(str::to_string);
    let given = crate::store::Given {
        id,
        created: meta("created"),
        modified: meta("lastModified"),
        // `W/"8"`, as scimd writes it, or `W/"8.1f2e3d4c"` for a user in groups (the
        // digest of its groups is not stored: `etag_of`).
        version: meta("version").and_then(|s| {
            let tag = s.trim_start_matches("W/").trim_matches('"');
            tag.split('.').next()?.parse::<u64>().ok()
        }),
    };
    Ok(ParsedLine { kind, given, input })
}

/// A digest of a unique name as the tenant compares it (folded): what the first pass keeps
/// of each, instead of the name.
fn name_digest(name: &str) -> [u8; 16] {
    let d = crate::auth::digest(&crate::scim::fold::fold(name));
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// What an import did: resources written, and lines skipped as already in the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub written: u64,
    pub skipped: u64,
}

/// The attribute unique per tenant for `kind`, as an import checks it.
fn name_attr(kind: Kind) -> &'static str {
    match kind {
        Kind::User => "userName",
        Kind::Group => "displayName",
    }
}

fn unique_name(kind: Kind, body: &crate::scim::resource::Body) -> Option<&str> {
    body.get(name_attr(kind)).and_then(Value::as_str)
}

/// The kind of resource `id` is in `tenant`, if it is there.
async fn held_as(store: &Store, tenant: &str, id: u128) -> Result<Option<Kind>, String> {
    for kind in [Kind::User, Kind::Group] {
        match store
            .get(tenant.to_string(), kind, crate::store::format_id(id), false)
            .await
        {
            Ok(_) => return Ok(Some(kind)),
            Err(crate::store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(None)
}

/// The id of the resource of `kind` whose unique name is `name` (case-insensitively).
async fn holder_of(
    store: &Store,
    rt: &crate::http::Runtime,
    tenant: &str,
    kind: Kind,
    name: &str,
) -> Result<Option<String>, String> {
    let text = format!("{} eq {}", name_attr(kind), Value::String(name.to_string()));
    let filter =
        crate::scim::filter::parse_for(rt.rt(Some(tenant), kind), &text).map_err(|e| e.detail)?;
    let q = crate::store::ListQuery {
        filter: Some(filter),
        count: 1,
        ..Default::default()
    };
    let page = list(store, rt, tenant, kind, q).await?;
    Ok(page.items.first().map(|r| r.id.clone()))
}

/// One page of `tenant`'s resources of `kind`, from the first (`start_index` 1).
async fn list(
    store: &Store,
    rt: &crate::http::Runtime,
    tenant: &str,
    kind: Kind,
    q: crate::store::ListQuery,
) -> Result<crate::store::ListPage, String> {
    let q = crate::store::ListQuery {
        start_index: 1,
        ..q
    };
    store
        .list(tenant.to_string(), rt.rt(Some(tenant), kind), q)
        .await
        .map_err(|e| e.to_string())
}
