//! The daemon's side of the admin socket: one JSON request per line, one JSON answer per
//! line; an export streams its lines, an import takes its file's lines after the request.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};

use super::export::{EXPORT_STALL, ExportFailed, export};
use super::{END, Spool, answer, import};
use crate::config::Config;
use crate::http::App;

/// Serve the admin socket until the returned task is aborted.
pub fn listen(
    app: Arc<App>,
    path: &Path,
    bound: SocketAddr,
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
        // Failures said once a minute, with how many there were: out of descriptors they
        // come every second while it lasts.
        let (mut said, mut failed): (Option<std::time::Instant>, u64) = (None, 0);
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: retried after a pause, not in a spin
                    // that takes a core from the requests.
                    failed += 1;
                    if said.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(60)) {
                        tracing::warn!(error = %e, failures = failed, "the admin socket cannot accept a connection (console commands wait meanwhile); retrying every second (said once a minute)");
                        (said, failed) = (Some(std::time::Instant::now()), 0);
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            tokio::spawn(connection(app.clone(), stream, importing.clone(), bound));
        }
    }))
}

type Lines = tokio::io::Lines<BufReader<OwnedReadHalf>>;

/// One console's requests, answered in turn until it closes.
async fn connection(app: Arc<App>, stream: UnixStream, importing: Importing, bound: SocketAddr) {
    let (r, mut w) = stream.into_split();
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let req: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        let cfg = app.runtime().config.clone();
        let tenant = req["tenant"].as_str().unwrap_or_default().to_string();
        // `None`: the console went away (or was told why it cannot go on): closed.
        let last = match req["cmd"].as_str() {
            Some("export") => exported(&app, &cfg, &tenant, &mut w).await,
            Some("import") => imported(&app, cfg, tenant, &importing, &mut lines, &mut w).await,
            _ => {
                let mut a = answer(&app.store, &cfg, &req).await;
                // Where it really listens: a changed server.listen waits for a restart.
                if a.get("listen").is_some() {
                    a["listen"] = bound.to_string().into();
                }
                Some(a.to_string())
            }
        };
        let Some(mut out) = last else { break };
        out.push('\n');
        if w.write_all(out.as_bytes()).await.is_err() {
            // The command that asked for a backup is gone (killed while the copy was
            // made): nobody will move the copy away.
            if req["cmd"] == "backup" {
                let staged: Value = serde_json::from_str(out.trim()).unwrap_or_default();
                if let Some(p) = staged["backup"].as_str() {
                    let _ = std::fs::remove_file(p);
                    tracing::warn!(path = %p, "backup copy removed: the command that asked for it went away");
                }
            }
            break;
        }
    }
}

/// An export, written as read (the console prints it as it comes): an export of a million
/// users is never held in the daemon. Returns the status line.
async fn exported(app: &App, cfg: &Config, tenant: &str, w: &mut OwnedWriteHalf) -> Option<String> {
    let mut sink = tokio::io::BufWriter::with_capacity(256 << 10, w);
    let res = export(&app.store, cfg, tenant, &mut sink).await;
    let flushed = tokio::time::timeout(EXPORT_STALL, sink.flush()).await;
    if !matches!(flushed, Ok(Ok(()))) {
        return None;
    }
    match res {
        Ok(n) => Some(json!({"ok": true, "exported": n}).to_string()),
        // The console went away or stopped reading.
        Err(ExportFailed::Output(_)) => None,
        // On a line of its own: a group's line may have been cut part-way.
        Err(ExportFailed::Read(e)) => Some(format!("\n{}", json!({"ok": false, "error": e}))),
    }
}

/// An import: the file's lines follow the request, up to `END`. Progress lines go out while
/// it runs, so the console can draw its bar. Returns the status line.
async fn imported(
    app: &App,
    cfg: Config,
    tenant: String,
    importing: &Importing,
    lines: &mut Lines,
    w: &mut OwnedWriteHalf,
) -> Option<String> {
    // One import into a tenant at a time: a second is refused before its lines are kept
    // anywhere (read on to their end, unkept).
    let writing = ImportGuard::take(importing, &tenant);
    // The lines go to a file in the state directory as they come (the import reads them
    // more than once), not into memory; on the first failure (no room left beside the
    // database) the file is removed at once and the rest is read unkept.
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
        return None;
    }
    let refuse = |e: String| json!({"ok": false, "error": e}).to_string();
    let keep = |e: String| refuse(format!("cannot keep the lines for the import: {e}"));
    let spool = match (writing.is_some(), spool, failed) {
        (false, ..) => Err(refuse(format!(
            "an import into tenant {tenant} is already running; wait until it ends (its \
             console shows how far it is), then run this one again: lines already in the \
             tenant are skipped"
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
            let _ = w.write_all(format!("{said}\n").as_bytes()).await;
            return None;
        }
    };
    let _writing = writing;
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
    // The console sends nothing after the lines: its end closing means it was killed or
    // interrupted. The import stops at its next write (what it wrote stays, and running it
    // again finishes the job), rather than go on unseen while the admin runs it again.
    let gone = async { while let Ok(Some(_)) = lines.next_line().await {} };
    let res = tokio::select! {
        (res, ()) = async { tokio::join!(work, forward) } => res,
        () = gone => {
            tracing::warn!(tenant = %who, "import stopped: its console went away (killed or interrupted); running it again finishes the job");
            return None;
        }
    };
    // The journal says an import happened; the reason for a stop may name values, so it
    // goes to the console only.
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
    Some(end.to_string())
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
