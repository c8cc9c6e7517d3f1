//! The local admin channel: a Unix socket in the state directory, readable only by the
//! service's user (and root), so console commands work while the daemon holds the database.
//! One JSON request per line, one JSON answer per line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::config::Config;
use crate::http::{App, plan_rules};
use crate::scim::schema::Kind;
use crate::store::Store;

pub fn socket_path(cfg: &Config) -> PathBuf {
    cfg.storage.dir.join("admin.sock")
}

/// Answer one admin request from the store and the running configuration.
pub async fn answer(store: &Store, cfg: &Config, req: &Value) -> Value {
    match req["cmd"].as_str() {
        Some("status") => {
            let mut tenants = serde_json::Map::new();
            for name in cfg.tenants.keys() {
                let users = store.count(name.clone(), Kind::User).await.unwrap_or(0);
                let groups = store.count(name.clone(), Kind::Group).await.unwrap_or(0);
                tenants.insert(name.clone(), json!({"users": users, "groups": groups}));
            }
            json!({"ok": true, "version": env!("CARGO_PKG_VERSION"), "listen": cfg.server.listen, "tenants": tenants})
        }
        Some("plan") => {
            let tenant = req["tenant"].as_str().unwrap_or_default().to_string();
            let Some(plan) = cfg.tenants.get(&tenant).and_then(|t| t.plan.as_ref()) else {
                return json!({"ok": false, "error": format!("tenant {tenant} has no [tenants.{tenant}.plan] in the configuration")});
            };
            let rules = Arc::new(plan_rules(plan));
            match store.plan_summary(tenant.clone(), rules.clone()).await {
                Ok(s) => json!({"ok": true, "tenant": tenant, "plan": rules.name, "mode": s.mode,
                    "test_threshold": rules.test_threshold, "seats": rules.seats,
                    "paid": s.paid, "free": s.free, "deactivated": s.deactivated}),
                Err(e) => json!({"ok": false, "error": e.detail}),
            }
        }
        Some("backup") => {
            let Some(to) = req["to"].as_str() else {
                return json!({"ok": false, "error": "backup needs a destination file"});
            };
            match store.backup(PathBuf::from(to)).await {
                Ok(rows) => json!({"ok": true, "backup": to, "rows": rows}),
                Err(e) => json!({"ok": false, "error": format!("backup failed: {e}")}),
            }
        }
        Some("verify") => {
            let types = crate::http::Runtime::new(cfg.clone()).types;
            match store.verify(types).await {
                Ok(problems) => {
                    json!({"ok": problems.is_empty(), "verify": true, "problems": problems,
                    "error": "the database has inconsistencies (listed above)"})
                }
                Err(e) => json!({"ok": false, "error": format!("verify failed: {e}")}),
            }
        }
        _ => json!({"ok": false, "error": "unknown command; use status, plan, backup or verify"}),
    }
}

/// Serve the admin socket until the returned task is aborted.
pub fn listen(app: Arc<App>, path: &Path) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let app = app.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut lines = BufReader::new(r).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let req: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                    let cfg = app.runtime().config.clone();
                    let mut out = answer(&app.store, &cfg, &req).await.to_string();
                    out.push('\n');
                    if w.write_all(out.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    }))
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
