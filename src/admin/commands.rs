//! The admin channel's one-line commands (status, plan, list, backup, verify, purge),
//! answered from the store and the running configuration: by the daemon on its socket, or by
//! the console itself when no daemon runs.

use std::sync::Arc;

use serde_json::{Value, json};

use super::LIST_MAX;
use crate::config::Config;
use crate::http::plan_rules;
use crate::scim::schema::Kind;
use crate::store::Store;

/// A tenant name that is not configured: a typo, or a tenant taken out of the file.
pub(super) fn no_tenant(cfg: &Config, tenant: &str) -> String {
    let names: Vec<&str> = cfg.tenants.keys().map(String::as_str).collect();
    format!(
        "no tenant {tenant} in the configuration (configured: {}); one just added to the file \
         is there once the daemon reloads it (`systemctl reload scimd`), and one taken out of \
         the file keeps its data, read again once its [tenants.{tenant}] table is back",
        crate::config_edit::a_few(&names)
    )
}

/// Refuses a tenant that neither the file nor the database has. One only in the database
/// (taken out of the file, its data kept until `tenant purge`) can still be listed and
/// exported: an export is how its data leaves before the purge.
pub(super) async fn readable(store: &Store, cfg: &Config, tenant: &str) -> Result<(), String> {
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
        Some("status") => status(store, cfg).await,
        Some("plan") => plan(store, cfg, req).await,
        Some("backup") => backup(store, cfg).await,
        Some("verify") => verify(store, cfg).await,
        Some("list") => list(store, cfg, req).await,
        Some("purge") => purge(store, cfg, req).await,
        _ => {
            json!({"ok": false, "error": "unknown command; use status, plan, list, backup, verify or purge"})
        }
    }
}

/// The daemon, its tenants and their counts, and the tenants only the database holds.
async fn status(store: &Store, cfg: &Config) -> Value {
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
        crate::store::Refused::Damaged(what) | crate::store::Refused::FileGone(what) => what,
        crate::store::Refused::DiskFull { free, needed } => {
            let (free, needed) = crate::store::disk_full_mib(free, needed);
            format!(
                "the disk holding the database is full ({free:.1} MiB free): writes are \
                 refused until {needed:.1} MiB are free on it"
            )
        }
    });
    json!({"ok": true, "version": env!("CARGO_PKG_VERSION"), "commit": env!("SCIMD_COMMIT"),
        "writes_refused": refusing,
        "listen": cfg.server.listen, "pid": std::process::id(), "tenants": tenants,
        "database": cfg.storage.db_path(),
        "database_bytes": std::fs::metadata(cfg.storage.db_path()).map(|m| m.len()).ok(),
        "disk_free": store.disk_free(), "low_on_room": store.low_on_room().is_some(),
        "unconfigured": unconfigured, "config_digest": cfg.file_digest,
        "config_path": cfg.file_path})
}

/// A tenant's plan: its settings and who sits where.
async fn plan(store: &Store, cfg: &Config, req: &Value) -> Value {
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

/// A consistent copy of the database, made in the state directory.
async fn backup(store: &Store, cfg: &Config) -> Value {
    // Written inside the state directory, the one place a sandboxed service may write;
    // the command line moves it where the admin asked.
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    let to = cfg.storage.dir.join(format!("backup-{stamp}.redb"));
    match store.backup(to.clone()).await {
        Ok(rows) => {
            // For the audit trail: who copied the directory out, and when, is asked later.
            tracing::info!(
                rows,
                "backup made for `scimd backup` at the console (a copy of the whole database, which the command moves to the path it was given)"
            );
            json!({"ok": true, "backup": to, "rows": rows})
        }
        Err(e) => {
            let e = e.to_string();
            tracing::warn!(error = %e, "backup for `scimd backup` at the console failed");
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

/// Every index and count checked against the records.
async fn verify(store: &Store, cfg: &Config) -> Value {
    let types = crate::http::Runtime::new(cfg.clone()).types;
    // First, as the checks read values and trust the pages under them.
    let unchecked = match store.check_pages().await {
        Ok(unchecked) => unchecked,
        Err(e) => return json!({"ok": false, "error": format!("verify failed: {e}")}),
    };
    match store.verify(types).await {
        Ok(problems) => {
            json!({"ok": problems.is_empty(), "verify": true, "problems": problems,
            "pages_unchecked": unchecked,
            "error": "the database has problems (listed above)"})
        }
        Err(e) => {
            tracing::error!(error = %e, "verify failed");
            json!({"ok": false, "error": format!("verify failed: {e}")})
        }
    }
}

/// A tenant's users or groups, one short line each, up to `LIST_MAX`.
async fn list(store: &Store, cfg: &Config, req: &Value) -> Value {
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

/// The data of a tenant taken out of the configuration, removed from the database.
async fn purge(store: &Store, cfg: &Config, req: &Value) -> Value {
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
