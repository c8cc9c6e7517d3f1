//! The console commands that read or change a deployment: lists, backups, export and import,
//! restores and tokens, each asking the running daemon over its admin socket or, when none
//! runs, working on the database directly.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use scimd::admin::Asked;
use scimd::config::{Config, Scope};

use crate::ListArgs;

pub(crate) fn list_cmd(kind: &str, filter: Option<String>, list: ListArgs) -> ExitCode {
    let ListArgs {
        tenant,
        limit,
        config,
    } = list;
    admin(
        &config,
        serde_json::json!({"cmd": "list", "kind": kind, "tenant": tenant, "filter": filter, "limit": limit}),
    )
}

/// The URL an IdP should use to reach a server listening on `addr` (without the trailing
/// `/scim/v2`), and a note for the admin when that is only a guess: an unspecified listen
/// host (0.0.0.0) is no address a client can use, and a loopback one serves this machine only.
pub(crate) fn base_url(
    server: &scimd::config::ServerConfig,
    addr: &str,
) -> (String, Option<String>) {
    if let Some(u) = server.public_base() {
        return (u.to_string(), None);
    }
    let scheme = if server.plain_http { "http" } else { "https" };
    let Ok(sock) = addr.parse::<std::net::SocketAddr>() else {
        return (format!("{scheme}://{addr}"), None);
    };
    let advice = "set server.public_url in the config file to the https address your IdP \
                  reaches (e.g. https://scim.corp.example:8443)";
    if sock.ip().is_unspecified() {
        // By uname(2), not /proc/sys/kernel/hostname, which the packaged unit's
        // `ProcSubset=pid` hides.
        let host = rustix::system::uname()
            .nodename()
            .to_str()
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        let note = format!(
            "Note: server.listen is {addr}, so this Base URL uses the machine's host name {host}; \
             if your IdP reaches scimd by another name, {advice}."
        );
        (format!("{scheme}://{host}:{}", sock.port()), Some(note))
    } else if sock.ip().is_loopback() {
        let note = format!(
            "Note: {} is reachable only from this machine; {advice}.",
            sock.ip()
        );
        (format!("{scheme}://{sock}"), Some(note))
    } else {
        (format!("{scheme}://{sock}"), None)
    }
}

/// How long `status` waits for a daemon that took its request to answer.
const STATUS_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Ask the running daemon over its admin socket, or read the database directly when no
/// daemon runs.
pub(crate) fn admin(config: &std::path::Path, req: serde_json::Value) -> ExitCode {
    let (cfg, rt) = match load_or_exit(config, true) {
        Ok(x) => x,
        // Without the file nothing says where the daemon's socket or database is.
        Err(_) if req["cmd"] == "status" => {
            eprintln!(
                "cannot tell whether scimd runs (exit 4, status unknown): the configuration \
                 cannot be read"
            );
            return ExitCode::from(4);
        }
        Err(c) => return c,
    };
    let sock = scimd::admin::socket_path(&cfg);
    // `status` is what monitors and init scripts run: it answers in bounded time.
    let asked = rt.block_on(async {
        match req["cmd"] == "status" {
            true => scimd::admin::ask_within(&sock, &req, STATUS_WAIT).await,
            false => match scimd::admin::ask(&sock, &req).await {
                Some(a) => Asked::Answered(a),
                None => Asked::NoDaemon,
            },
        }
    });
    let answered = match asked {
        Asked::Answered(a) => Some(a),
        Asked::NoDaemon => None,
        Asked::Silent => {
            eprintln!(
                "cannot tell whether scimd runs (exit 4, status unknown): a daemon took the \
                 request on its admin socket ({}) but did not answer within {} s: stopped \
                 (SIGSTOP, a debugger) or out of file descriptors (its journal says so)",
                sock.display(),
                STATUS_WAIT.as_secs()
            );
            return ExitCode::from(4);
        }
    };
    // Read on this thread (point reads): a page redb cannot parse panics, which becomes an
    // error naming the damage instead of a crash.
    let answer = scimd::store::unless_damaged(|| {
        rt.block_on(async {
            if let Some(mut a) = answered {
                defang(&mut a);
                a["daemon"] = true.into();
                return Ok(a);
            }
            let path = cfg.storage.db_path();
            // redb's check of every page first: the file is not in use, and scimd's checks
            // read values and trust the pages under them.
            if req["cmd"] == "verify" && path.exists() && scimd::store::check_file(&path)? {
                // As a start would have said it: after this, none will.
                eprintln!(
                    "warning: the database was not closed cleanly (a crash, a power loss or a \
                     storage failure mid-write): every page was checked and its free-space \
                     map rebuilt"
                );
            }
            let (store, _) = open_store(&cfg, false)?;
            let mut a = scimd::admin::answer(&store, &cfg, &req).await;
            // Closed before anything is printed: printing may end the process (a closed pipe).
            store.close();
            a["daemon"] = false.into();
            Ok::<_, String>(a)
        })
    })
    .and_then(|a| a);
    match answer {
        Ok(mut a) if a["ok"] == true => {
            if req["cmd"] == "status" && !cfg.server.plain_http {
                let ((cert, key), own) = match (&cfg.tls.cert, &cfg.tls.key) {
                    (Some(c), Some(k)) => ((c.clone(), k.clone()), true),
                    _ => (scimd::tls::self_signed_paths(&cfg.storage.dir), false),
                };
                let now = time::OffsetDateTime::now_utc();
                a["certificate"] = scimd::tls::files_status(&cert, &key, own, now).into();
            }
            print_answer(&a);
            // A token or tenant added to the file works only after a reload: an admin whose
            // new token is refused learns it here.
            let daemons = a["config_path"].as_str().filter(|p| !p.is_empty());
            if req["cmd"] == "status"
                && a["daemon"] == true
                && let Some(theirs) = daemons.filter(|p| std::path::Path::new(p) != cfg.file_path)
            {
                say!(
                    "  note: the daemon reads {theirs}, not {}: a reload applies that file",
                    config.display()
                );
            } else if req["cmd"] == "status"
                && a["daemon"] == true
                && a["config_digest"].is_string()
                && a["config_digest"].as_str() != Some(cfg.file_digest.as_str())
                && Config::load(config).is_err()
            {
                say!(
                    "  note: {} has changed since the daemon read it, and does not load (the \
                     warning above): a reload would be refused, and the daemon keeps what it \
                     runs; fix the file first",
                    config.display()
                );
            } else if req["cmd"] == "status"
                && a["daemon"] == true
                && a["config_digest"].is_string()
                && a["config_digest"].as_str() != Some(cfg.file_digest.as_str())
            {
                say!(
                    "  note: {} has changed since the daemon read it (at its start or last \
                     reload): `systemctl reload scimd` (or `kill -HUP {}`) applies it; \
                     server.listen, storage, connection limits and log settings need a restart",
                    config.display(),
                    a["pid"]
                );
            }
            // A reload keeps the address the daemon listens on; a new one waits for a restart,
            // which the reload's log says, and this says again. A port 0 (any) or a host
            // name in the file cannot be compared, and is not; nor a file that does not load
            // (read leniently here, its listen may be the default, and a restart would fail).
            if req["cmd"] == "status"
                && a["daemon"] == true
                && Config::load(config).is_ok()
                && let Some(bound) = a["listen"]
                    .as_str()
                    .and_then(|b| b.parse::<std::net::SocketAddr>().ok())
                && let Ok(wanted) = cfg.server.listen.parse::<std::net::SocketAddr>()
                && (wanted.ip() != bound.ip()
                    || (wanted.port() != 0 && wanted.port() != bound.port()))
            {
                // The value may come from this command's environment, not the file.
                let from = match std::env::var_os("SCIMD_SERVER__LISTEN") {
                    Some(_) => "SCIMD_SERVER__LISTEN in this command's environment".to_string(),
                    None => config.display().to_string(),
                };
                say!(
                    "  note: server.listen is {wanted} in {from}, but the daemon listens on \
                     {bound}: a restart applies it (`systemctl restart scimd`), unless \
                     SCIMD_SERVER__LISTEN in the daemon's environment sets the address"
                );
            }
            // As init scripts' `status` does (LSB): 3 when the daemon is not running.
            if req["cmd"] == "status" && a["daemon"] == false {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            }
        }
        Ok(a) => {
            for p in a["problems"].as_array().into_iter().flatten() {
                eprintln!("  - {}", p.as_str().unwrap_or_default());
            }
            eprintln!("{}", a["error"].as_str().unwrap_or("failed"));
            // The daemon answers from the configuration it loaded; a tenant or plan it does
            // not know but the file has was added since, and is there only after a reload.
            let tenant = req["tenant"].as_str().and_then(|t| cfg.tenants.get(t));
            let in_file = match req["cmd"].as_str() {
                Some("plan") => tenant.is_some_and(|t| t.plan.is_some()),
                _ => tenant.is_some(),
            };
            if a["daemon"] == true && a["not_configured"] == true && in_file {
                eprintln!(
                    "({} has it, but the running daemon loaded the file before it was added: \
                     `systemctl reload scimd`, or `kill -HUP` with the pid `scimd status` prints, \
                     applies it)",
                    config.display()
                );
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            if req["cmd"] == "status" {
                // No daemon answered and none has made a database: not running, which is 3
                // for monitoring, not a failure of the check. When the database cannot be
                // read, or the file's errors may hide the real storage.dir, nothing says the
                // daemon is down: LSB's 4, "status unknown", so that a monitor does not
                // restart a running service.
                let absent = matches!(std::fs::metadata(cfg.storage.db_path()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound);
                if absent && Config::load(config).is_ok() {
                    // Unless something answers at server.listen: a daemon started before
                    // storage.dir was changed keeps the directory it started with.
                    if let Some(addr) = listened_at(&cfg.server.listen) {
                        eprintln!(
                            "cannot tell whether scimd runs (exit 4, status unknown): \
                             something accepts connections on {addr} (server.listen), perhaps \
                             a scimd started before storage.dir was changed, which keeps the \
                             directory it started with until it is restarted"
                        );
                        return ExitCode::from(4);
                    }
                    return ExitCode::from(3);
                }
                // A file of another layout was opened to tell: no daemon holds it (one
                // running would have converted it, or refused to start).
                use scimd::store::StoreError::{TooNew, TooOld};
                let path = cfg.storage.db_path();
                if let Err(TooOld { .. } | TooNew { .. }) =
                    scimd::store::Store::open_unconverted(&path, 1 << 20)
                {
                    eprintln!("scimd is not running (exit 3)");
                    return ExitCode::from(3);
                }
                eprintln!(
                    "cannot tell whether scimd runs (exit 4, status unknown): {}",
                    if absent {
                        "the file's errors (above) may hide the storage.dir it runs with"
                    } else {
                        "no daemon answered on the admin socket, and the database could not be \
                         read (above)"
                    }
                );
                return ExitCode::from(4);
            }
            ExitCode::FAILURE
        }
    }
}

/// The address `listen` names, when something accepts a TCP connection there (a wildcard
/// address is tried on loopback). Port 0 names no address to try.
fn listened_at(listen: &str) -> Option<std::net::SocketAddr> {
    let mut addr: std::net::SocketAddr = listen.parse().ok()?;
    if addr.port() == 0 {
        return None;
    }
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500))
        .ok()
        .map(|_| addr)
}

/// `scimd tenant purge`: a tenant taken out of the file keeps its data (to be served again
/// if it is put back); this removes it for good, through the daemon when it runs.
pub(crate) fn purge(config: &std::path::Path, tenant: &str, yes: bool) -> ExitCode {
    // Strict: a file read around its broken lines could lack the very tenant named.
    let (cfg, _rt) = match load_or_exit(config, false) {
        Ok(x) => x,
        Err(c) => return c,
    };
    if cfg.tenants.contains_key(tenant) {
        eprintln!(
            "tenant {tenant} is in {}: take it out (`scimd tenant remove {tenant}`), reload, \
             then purge it",
            config.display()
        );
        return ExitCode::from(2);
    }
    let stored = stored_under(config, tenant);
    // The file no longer has it, but the running daemon has not been told: the purge is
    // refused, with or without --yes.
    if let Ok((_, _, true)) = stored {
        eprintln!(
            "the running scimd still serves tenant {tenant}: reload it first \
             (`systemctl reload scimd`), then purge"
        );
        return ExitCode::from(2);
    }
    if !yes {
        let held = match stored {
            // Perhaps only its change feed: --yes says whether anything was there.
            Ok((0, 0, _)) => " (no users or groups; perhaps its change feed)".to_string(),
            Ok((u, g, _)) => format!(
                " ({} and {})",
                scimd::counted(u, "user"),
                scimd::counted(g, "group")
            ),
            Err(_) => String::new(),
        };
        eprintln!(
            "this takes every user, group, membership and change-feed event of tenant \
             {tenant}{held} out of the database, for good (`scimd backup --to FILE` first \
             keeps a copy); run it again with --yes"
        );
        return ExitCode::from(2);
    }
    admin(
        config,
        serde_json::json!({"cmd": "purge", "tenant": tenant}),
    )
}

/// Users and groups the database holds under `tenant` (a departed tenant's, kept until
/// `tenant purge`, or one the running daemon still serves), and whether it is configured
/// where the answer came from (the running daemon, else the file): (0, 0, false) when there
/// is no database yet. Asked through the daemon when it runs, else of the file.
pub(crate) fn stored_under(
    config: &std::path::Path,
    tenant: &str,
) -> Result<(u64, u64, bool), String> {
    let cfg = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            let said = e.to_string();
            match e.parsed.or(e.salvaged) {
                Some(c) => *c,
                None => return Err(said),
            }
        }
    };
    if !cfg.storage.db_path().exists() {
        return Ok((0, 0, false));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let req = serde_json::json!({"cmd": "status"});
    let lines = run_admin(&cfg, &rt, req, None, &mut |_, _| {})?;
    let a: serde_json::Value = lines
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_default();
    if a["ok"] != true {
        return Err(a["error"].as_str().unwrap_or("no answer").to_string());
    }
    let held = ["unconfigured", "tenants"]
        .iter()
        .map(|k| &a[k][tenant])
        .find(|c| c.is_object())
        .cloned()
        .unwrap_or_default();
    Ok((
        held["users"].as_u64().unwrap_or(0),
        held["groups"].as_u64().unwrap_or(0),
        a["tenants"][tenant].is_object(),
    ))
}

/// `tenant add` of a name the database still holds data under: a new customer given a
/// departed one's name would be served its users. Refused unless `keep` (the same customer
/// back); a database that cannot be asked is said, not taken as empty.
pub(crate) fn refuse_leftover(
    config: &std::path::Path,
    tenant: &str,
    keep: bool,
) -> Result<(), String> {
    // A file that is not there is the edit's to say (it names the file), not a database
    // to ask about.
    if !config.exists() {
        return Ok(());
    }
    // Without sudo, --keep-data would not help: the edit cannot read the file either.
    if let Some(hint) = unreadable_config_hint(config) {
        return Err(format!("cannot read {} {hint}", config.display()));
    }
    // A tenant still in the file: its data is its own, and the edit refuses the name with
    // the way to give it another token.
    let configured = Config::load(config)
        .ok()
        .is_some_and(|c| c.tenants.contains_key(tenant));
    if keep || configured {
        return Ok(());
    }
    match stored_under(config, tenant) {
        Ok((0, 0, _)) => Ok(()),
        Ok((users, groups, _)) => Err(format!(
            "the database still holds {} and {} under the name \
             {tenant}, from an earlier tenant; a tenant added under this name would be served \
             them. For a new customer, choose another name, or take them out first: \
             `scimd export --tenant {tenant}{c} --out {tenant}.jsonl` if they are wanted, then \
             `scimd tenant purge {tenant} --yes{c}`. For the same customer back, run this again \
             with --keep-data.",
            scimd::counted(users, "user"),
            scimd::counted(groups, "group"),
            c = crate::config_arg(config),
        )),
        Err(e) => Err(format!(
            "cannot tell whether the database holds data under the name {tenant} ({e}); run \
             this again with --keep-data to add it all the same"
        )),
    }
}

/// The database, read directly while the daemon is stopped. Only a command that writes
/// (`create`: import) makes it when it is missing; one that reads says so instead, since a
/// wrong `storage.dir` would otherwise give an empty database and a clean bill of health.
/// Also the outermost directory it made for the database, if any (`make_state_dir`).
fn open_store(
    cfg: &Config,
    create: bool,
) -> Result<(scimd::store::Store, Option<std::path::PathBuf>), String> {
    let path = cfg.storage.db_path();
    // `exists()` is false when the directory cannot be entered, too: say which.
    if let Err(e) = std::fs::metadata(&path)
        && e.kind() == std::io::ErrorKind::PermissionDenied
    {
        // The admin socket is in the same directory: this user reached neither.
        let who = match owner_name(&cfg.storage.dir).as_deref() {
            Some("root") | None => "as root (`sudo scimd ...`)".to_string(),
            Some(name) => format!("as root or as {name}, who owns it (`sudo -u {name} scimd ...`)"),
        };
        return Err(format!(
            "permission denied on {} (storage.dir), where the database and the running \
             daemon's admin socket are: run this {who}",
            cfg.storage.dir.display()
        ));
    }
    if !create && !path.exists() {
        return Err(format!(
            "no database at {} (storage.dir): scimd has not run with this configuration yet, \
             or storage.dir names the wrong directory (a running daemon keeps the one it \
             started with until it is restarted)",
            path.display()
        ));
    }
    let made = make_state_dir(cfg)?;
    if made.is_some() {
        tell_if_roots(cfg);
    }
    // A database the daemon left by crashing is repaired by whichever opens it first; when
    // that is this command, the daemon's next start has nothing to say, so say it here.
    let stderr = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .without_time()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .finish();
    tracing::subscriber::with_default(stderr, || {
        scimd::store::Store::open_unconverted(&path, 16 << 20)
    })
    .map(|store| (store, made))
    .map_err(|e| e.to_string())
}

/// Take away what `make_state_dir` made, from the state directory out to `outermost`, each
/// only if empty: a command that did nothing leaves no directory it made for it behind.
fn unmake_state_dir(cfg: &Config, outermost: &std::path::Path) {
    for d in cfg.storage.dir.ancestors() {
        if std::fs::remove_dir(d).is_err() || d == outermost {
            break;
        }
    }
}

/// The name of the user owning `path` (its uid when /etc/passwd does not list it).
fn owner_name(path: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(path).ok()?.uid();
    Some(super::access::name_of(uid).unwrap_or_else(|| uid.to_string()))
}

/// Make a missing state directory, owner-only, as the daemon would on its first start;
/// the outermost directory made for it, if any.
fn make_state_dir(cfg: &Config) -> Result<Option<std::path::PathBuf>, String> {
    let dir = &cfg.storage.dir;
    if dir.is_dir() {
        return Ok(None);
    }
    let outermost = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .last()
        .map(std::path::Path::to_path_buf);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(outermost)
}

/// A state directory just made by root belongs to root, which the service user cannot
/// write: say so.
fn tell_if_roots(cfg: &Config) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let dir = &cfg.storage.dir;
        if std::fs::metadata(dir).is_ok_and(|m| m.uid() == 0) {
            // -R: the database file made inside it is root's too.
            eprintln!(
                "made {} (storage.dir), owned by root: give it and what is in it to the \
                 user that runs scimd (the package's is scimd: `chown -R scimd:scimd {}`) \
                 before starting scimd",
                dir.display(),
                dir.display()
            );
        }
    }
}

/// The configuration, or exit 2 with its problems. `lenient`, for a command that only reads
/// (status, lists, verify, backup, export): a file with problems is read as far as it can be
/// and the problems are printed as a warning, so that a half-edited file or a certificate not
/// yet in place stops neither monitoring nor backups.
pub(crate) fn load_or_exit(
    config: &std::path::Path,
    lenient: bool,
) -> Result<(Config, tokio::runtime::Runtime), ExitCode> {
    let cfg = match Config::load(config) {
        Ok(c) => c,
        Err(e) if lenient && (e.parsed.is_some() || e.salvaged.is_some()) => {
            eprintln!("warning: {e}");
            eprintln!(
                "(read what could be read to find the database; a running scimd keeps the \
                 configuration it last loaded: fix the file, then reload it)"
            );
            *e.parsed.or(e.salvaged).expect("one of the two")
        }
        Err(e) => {
            eprintln!("{e}");
            if file_unreadable(&e) {
                if let Some(hint) = unreadable_config_hint(config) {
                    eprintln!("{hint}");
                }
            } else {
                // The moment a reload was refused is when an admin asks: the daemon is not down.
                eprintln!(
                    "(a running scimd keeps the configuration it last loaded; fix the file, then reload it)"
                );
            }
            return Err(ExitCode::from(2));
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|_| ExitCode::FAILURE)?;
    Ok((cfg, rt))
}

/// The daemon's final answer line (none when it stopped before it), the resource lines
/// before it given to `each` in pieces as they come (an export's, with whether the piece
/// ends its line); or the same work done on the database directly.
pub(crate) fn run_admin(
    cfg: &Config,
    rt: &tokio::runtime::Runtime,
    req: serde_json::Value,
    body: Option<std::fs::File>,
    each: &mut dyn FnMut(&[u8], bool),
) -> Result<Vec<String>, String> {
    // As in `admin`: a damaged page is an error, not a crash.
    scimd::store::unless_damaged(std::panic::AssertUnwindSafe(|| {
        run_admin_on(cfg, rt, req, body, each)
    }))
    .and_then(|r| r)
}

fn run_admin_on(
    cfg: &Config,
    rt: &tokio::runtime::Runtime,
    req: serde_json::Value,
    body: Option<std::fs::File>,
    each: &mut dyn FnMut(&[u8], bool),
) -> Result<Vec<String>, String> {
    rt.block_on(async {
        let mut body = body.map(tokio::fs::File::from_std);
        if let Some(lines) = scimd::admin::converse(
            &scimd::admin::socket_path(cfg),
            &req,
            &mut body,
            &mut show_progress,
            each,
        )
        .await
        {
            return Ok(lines);
        }
        // What an import would make, to be taken away again if it is refused: the next
        // start's "new, empty database" warning guards against a wrong storage.dir.
        let new_db = req["cmd"] == "import" && !cfg.storage.db_path().exists();
        let (store, made_dir) = open_store(cfg, req["cmd"] == "import")?;
        let tenant = req["tenant"].as_str().unwrap_or_default().to_string();
        let mut out = Vec::new();
        let end = match req["cmd"].as_str() {
            Some("export") => {
                use scimd::admin::ExportFailed;
                use tokio::io::AsyncWriteExt;
                let mut to = tokio::io::BufWriter::with_capacity(256 << 10, tokio::io::stdout());
                let res = match scimd::admin::export(&store, cfg, &tenant, &mut to).await {
                    Ok(n) => to.flush().await.map(|()| n).map_err(ExportFailed::Output),
                    failed => failed,
                };
                match res {
                    Ok(n) => serde_json::json!({"ok": true, "exported": n}),
                    Err(ExportFailed::Read(e)) => serde_json::json!({"ok": false, "error": e}),
                    Err(ExportFailed::Output(e)) => {
                        // Closed first: the next start then needs no repair.
                        store.close();
                        crate::output_failed(&e);
                    }
                }
            }
            Some("import") => {
                // Read once into a copy in the state directory, as the daemon does: the file
                // may be a pipe, or change while the import reads it four times.
                let spooled = match body {
                    Some(file) => match scimd::admin::Spool::create(&cfg.storage.dir).await {
                        Ok(mut s) => s.fill_from(file).await.map(|()| s),
                        Err(e) => Err(e),
                    },
                    None => Err(std::io::Error::other("no file")),
                };
                let imported = match spooled {
                    Ok(s) => {
                        scimd::admin::import(&store, cfg, &tenant, s.path(), &mut show_progress)
                            .await
                    }
                    Err(e) => Err(format!("cannot keep the lines for the import: {e}")),
                };
                match imported {
                    Ok(n) => {
                        serde_json::json!({"ok": true, "imported": n.written, "skipped": n.skipped})
                    }
                    Err(e) => serde_json::json!({"ok": false, "error": e}),
                }
            }
            _ => scimd::admin::answer(&store, cfg, &req).await,
        };
        // Closed before anything is printed: printing may end the process (a closed pipe).
        store.close();
        if new_db && end["ok"] == false {
            let _ = std::fs::remove_file(cfg.storage.db_path());
            if let Some(outermost) = made_dir {
                unmake_state_dir(cfg, &outermost);
            }
        }
        out.push(end.to_string());
        Ok(out)
    })
}

/// `done/total` on one terminal line, rewritten in place; nothing when not on a terminal.
pub(crate) fn show_progress(done: u64, total: u64) {
    if std::io::stderr().is_terminal() {
        const WIDTH: u64 = 30;
        let filled = (done * WIDTH)
            .checked_div(total)
            .unwrap_or(WIDTH)
            .min(WIDTH);
        eprint!(
            "\r[{}{}] {done}/{total}",
            "#".repeat(filled as usize),
            " ".repeat((WIDTH - filled) as usize)
        );
        if done == total {
            eprintln!();
        }
    }
}

/// The final answer line of `run_admin`, when it says the command succeeded; else the exit
/// code, with what failed said.
pub(crate) fn finish_admin(
    result: Result<Vec<String>, String>,
) -> Result<serde_json::Value, ExitCode> {
    let lines = result.map_err(|e| {
        eprintln!("{e}");
        ExitCode::FAILURE
    })?;
    let end = lines
        .last()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|end| end.get("ok").is_some());
    let Some(mut end) = end else {
        // The connection ended before the daemon's final status line.
        eprintln!(
            "scimd stopped before it finished the command (see its log: journalctl -u scimd)"
        );
        return Err(ExitCode::FAILURE);
    };
    if end["ok"] != true {
        // Line by line: a list of problems (an import's) keeps its line breaks, and no line
        // can move an admin's terminal.
        for line in end["error"].as_str().unwrap_or("failed").lines() {
            eprintln!("{}", super::escape_controls(line));
        }
        return Err(ExitCode::FAILURE);
    }
    defang(&mut end);
    Ok(end)
}

pub(crate) fn backup(config: &std::path::Path, to: &std::path::Path) -> ExitCode {
    let (cfg, rt) = match load_or_exit(config, true) {
        Ok(x) => x,
        Err(c) => return c,
    };
    // The database itself as the destination would be replaced under the running server,
    // whose later writes would go to the file set aside.
    let same = |a: &std::path::Path, b: &std::path::Path| {
        let canon = |p: &std::path::Path| {
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
            let dir = dir
                .unwrap_or(std::path::Path::new("."))
                .canonicalize()
                .ok()?;
            Some(dir.join(p.file_name()?))
        };
        canon(a).is_some_and(|x| Some(x) == canon(b))
    };
    if same(to, &cfg.storage.db_path()) {
        eprintln!(
            "{} is the database itself; name another file for the backup",
            to.display()
        );
        return ExitCode::FAILURE;
    }
    // A server starting in the state directory removes what looks like a copy it was making.
    if let Some(name) = to.file_name().and_then(|n| n.to_str())
        && scimd::store::is_staged_backup(name)
        && same(to, &cfg.storage.dir.join(name))
    {
        eprintln!(
            "{} is named like the copies scimd makes in storage.dir, which it removes as \
             leftovers when it starts; choose another name (or another directory)",
            to.display()
        );
        return ExitCode::FAILURE;
    }
    // Tried before the daemon makes its copy, so a destination that cannot be written fails
    // now; dropped at once, so nothing sits there while that copy is made.
    if let Err(e) = scimd::store::AtomicFile::create(to) {
        eprintln!("cannot write the backup to {}: {e}", to.display());
        return ExitCode::FAILURE;
    }
    let asked = rt.block_on(scimd::admin::converse(
        &scimd::admin::socket_path(&cfg),
        &serde_json::json!({"cmd": "backup"}),
        &mut None,
        &mut show_progress,
        &mut |_, _| {},
    ));
    let Some(lines) = asked else {
        return backup_stopped(&cfg, &rt, to);
    };
    let end = match finish_admin(Ok(lines)) {
        Ok(e) => e,
        Err(c) => return c,
    };
    // The daemon writes its copy in the state directory, the one place a sandboxed service
    // may write; this command moves it where the admin asked, and takes it away in any case:
    // it holds everything, and fills the data disk.
    let from =
        match scimd::store::open_staged(&cfg.storage.dir, end["backup"].as_str().unwrap_or("")) {
            // Unlinked at once and read through the open handle: a command killed while it
            // copies (a cron job's timeout) leaves no copy of everything filling the data
            // disk until the server's next start.
            Ok((path, file)) => {
                let _ = std::fs::remove_file(&path);
                file
            }
            Err(e) => {
                eprintln!("backup failed: {e}");
                return ExitCode::FAILURE;
            }
        };
    let out = match scimd::store::AtomicFile::create(to) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cannot write the backup to {}: {e}", to.display());
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(copy_unless_stopped(from, out)) {
        Ok(replaced) => {
            say_written(to, &end["rows"].to_string(), replaced);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot write the backup to {}: {e}", to.display());
            ExitCode::FAILURE
        }
    }
}

/// An earlier backup under this name is replaced, as `cp` would; said, so that a rotation
/// script's mistake shows.
fn say_written(to: &std::path::Path, rows: &str, replaced: bool) {
    let replaced = if replaced {
        "; it replaced the file that was there"
    } else {
        ""
    };
    say!("backup written to {} ({rows} rows){replaced}", to.display());
}

/// `scimd backup` with no server running: this command opens the database and writes the
/// copy itself, beside the destination and renamed over it once checked. (Through the state
/// directory, as a server's copy goes, a copy made by root would be refused there as not the
/// service user's.)
fn backup_stopped(cfg: &Config, rt: &tokio::runtime::Runtime, to: &std::path::Path) -> ExitCode {
    let store = match open_store(cfg, false) {
        Ok((s, _)) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let name = to
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = to.with_file_name(format!(".{name}.{}.redb", std::process::id()));
    let made = rt.block_on(store.backup(staging.clone()));
    store.close();
    let placed = made.and_then(|rows| {
        not_compacted(scimd::store::compact_copy(&staging)?);
        let replaced = scimd::store::rename_over(&staging, to).map_err(|e| e.to_string())?;
        // Said written only once its name is on disk too.
        let dir = match to.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("written, but its directory cannot be synced: {e}"))?;
        Ok((rows, replaced))
    });
    match placed {
        Ok((rows, replaced)) => {
            say_written(to, &rows.to_string(), replaced);
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            eprintln!("cannot write the backup to {}: {e}", to.display());
            ExitCode::FAILURE
        }
    }
}

/// Say why a backup was kept as written, uncompacted: complete and checked, only larger.
fn not_compacted(why: Option<String>) {
    if let Some(why) = why {
        eprintln!(
            "note: the backup was not compacted ({why}); it is complete and checked, only larger than it could be"
        );
    }
}

/// Copy the server's (already unlinked) copy `from` into `out` and put it in place; true when
/// it replaced a file. Interrupted (Ctrl-C, SIGTERM, SIGHUP), the copy stops and `out`'s
/// temporary file is removed before the command exits.
async fn copy_unless_stopped(
    mut from: std::fs::File,
    mut out: scimd::store::AtomicFile,
) -> Result<bool, String> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::signal::unix::{SignalKind, signal};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let mut copy = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            if stopped.load(Ordering::Relaxed) {
                return Err("interrupted; nothing was written".to_string());
            }
            let n = from.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            std::io::Write::write_all(out.file(), &buf[..n]).map_err(|e| e.to_string())?;
        }
        not_compacted(scimd::store::compact_copy(out.partial_path())?);
        out.finish()
    });
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return copy.await.map_err(|e| e.to_string())?;
    };
    tokio::select! {
        r = &mut copy => return r.map_err(|e| e.to_string())?,
        _ = int.recv() => {}
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
    stop.store(true, Ordering::Relaxed);
    copy.await.map_err(|e| e.to_string())?
}

pub(crate) fn export(
    config: &std::path::Path,
    tenant: &str,
    to: Option<&std::path::Path>,
) -> ExitCode {
    let (cfg, rt) = match load_or_exit(config, true) {
        Ok(x) => x,
        Err(c) => return c,
    };
    // With `--out`, standard output becomes a file of our own, owner-only from its first
    // byte (it holds every stored value) and under its name only once the export is whole:
    // an export that fails part-way leaves nothing to be imported by mistake.
    let mut file = match to.map(scimd::store::AtomicFile::create).transpose() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot write the export: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(f) = file.as_mut() {
        if let Err(e) = rustix::stdio::dup2_stdout(&*f.file()) {
            eprintln!("cannot write the export: {e}");
            return ExitCode::FAILURE;
        }
        *crate::PARTIAL_OUTPUT
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(f.partial_path().to_path_buf());
    }
    let req = serde_json::json!({"cmd": "export", "tenant": tenant});
    // Printed as the daemon sends it (a million users are never held here); a failure
    // part-way is said, and the exit status is not 0.
    use std::io::Write;
    let mut out = std::io::BufWriter::with_capacity(256 << 10, std::io::stdout());
    let mut n = 0u64;
    let mut each = |piece: &[u8], ends: bool| {
        let written = out.write_all(piece).and_then(|()| match ends {
            true => out.write_all(b"\n"),
            false => Ok(()),
        });
        if let Err(e) = written {
            crate::output_failed(&e);
        }
        if !ends {
            return;
        }
        n += 1;
        if n.is_multiple_of(1000) && std::io::stderr().is_terminal() {
            eprint!("\rexported {n}");
        }
    };
    let result = run_admin(&cfg, &rt, req, None, &mut each);
    if let Err(e) = out.flush() {
        crate::output_failed(&e);
    }
    match finish_admin(result) {
        Ok(end) => {
            if let (Some(f), Some(to)) = (file, to)
                && let Err(e) = f.finish()
            {
                eprintln!("cannot write the export to {}: {e}", to.display());
                return ExitCode::FAILURE;
            }
            eprintln!(
                "exported {} of tenant {tenant}",
                scimd::counted(end["exported"].as_u64().unwrap_or(0), "resource")
            );
            ExitCode::SUCCESS
        }
        Err(c) => {
            match to {
                Some(to) => eprintln!("nothing was written to {}", to.display()),
                None if n > 0 => eprintln!(
                    "the export stopped part-way: the {n} lines written are not all of tenant \
                     {tenant}"
                ),
                None => {}
            }
            c
        }
    }
}

pub(crate) fn import(config: &std::path::Path, tenant: &str, from: &std::path::Path) -> ExitCode {
    let (cfg, rt) = match load_or_exit(config, false) {
        Ok(x) => x,
        Err(c) => return c,
    };
    // Opened once (it may be a pipe) and read a line at a time as it is sent, or copied
    // here: never held whole.
    let file = match std::fs::File::open(from) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot read {}: {e}", from.display());
            return ExitCode::FAILURE;
        }
    };
    let req = serde_json::json!({"cmd": "import", "tenant": tenant});
    match finish_admin(run_admin(&cfg, &rt, req, Some(file), &mut |_, _| {})) {
        Ok(end) => {
            let imported = scimd::counted(end["imported"].as_u64().unwrap_or(0), "resource");
            match end["skipped"].as_u64().unwrap_or(0) {
                0 => say!("imported {imported} into tenant {tenant}"),
                skipped => say!(
                    "imported {imported} into tenant {tenant}; {skipped} were there already \
                     (same ids) and were left as they are, but for the file's group members, \
                     added to those groups where missing"
                ),
            }
            ExitCode::SUCCESS
        }
        Err(c) => c,
    }
}

pub(crate) fn restore(config: &std::path::Path, from: &std::path::Path) -> ExitCode {
    let (cfg, rt) = match load_or_exit(config, false) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let sock = scimd::admin::socket_path(&cfg);
    if rt
        .block_on(scimd::admin::ask(
            &sock,
            &serde_json::json!({"cmd": "status"}),
        ))
        .is_some()
    {
        eprintln!(
            "scimd is running on this database; stop it first (`systemctl stop scimd`, or \
             `kill -TERM` with the pid `scimd status` prints)"
        );
        // A refusal, as the purge's: nothing was tried.
        return ExitCode::from(2);
    }
    let made = match make_state_dir(&cfg) {
        Ok(made) => made,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let types = scimd::http::Runtime::new(cfg.clone()).types;
    let restored = scimd::store::restore(from, &cfg.storage.db_path(), &types);
    if let Some(outermost) = made {
        match restored {
            Ok(_) => tell_if_roots(&cfg),
            Err(_) => unmake_state_dir(&cfg, &outermost),
        }
    }
    match restored {
        Ok(done) => {
            say!(
                "restored {} from {}",
                cfg.storage.db_path().display(),
                from.display()
            );
            if let Some(k) = done.kept {
                say!("the previous database was kept as {}", k.display());
            }
            if let Some(v) = done.converted_from {
                say!(
                    "the backup had layout version {v}, converted to {}: an older scimd \
                     cannot read the restored database (keep the backup file to go back)",
                    scimd::store::tables::SCHEMA_VERSION
                );
            }
            if !done.feeds.last.is_empty() {
                let ends: Vec<String> = done
                    .feeds
                    .last
                    .iter()
                    .map(|(t, n)| format!("{t} {n}"))
                    .collect();
                say!(
                    "the change feeds go on past every number given out ({}): an application \
                     reading /tenants/NAME/events gets 410 once, reads the users, groups and \
                     plan list again, and continues from the next_after the 410 gives",
                    ends.join(", ")
                );
                if !done.feeds.known {
                    say!(
                        "the database replaced could not be read (or there was none), so the \
                         numbers given out since the backup are unknown: each feed moved on by \
                         {}",
                        scimd::store::UNKNOWN_GAP
                    );
                }
            }
            if !done.warnings.is_empty() {
                eprintln!(
                    "warning: under the current configuration, scimd verify finds {} \
                     problems in the restored data (names an upgrade made one, or a setting \
                     changed since the backup):",
                    done.warnings.len()
                );
                for w in done.warnings.iter().take(10) {
                    eprintln!("  - {w}");
                }
            }
            ExitCode::SUCCESS
        }
        // A refusal, as a running server's: nothing was tried.
        Err(e @ scimd::store::NotRestored::InUse(_)) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Control characters in the daemon's strings, shown escaped. The answer comes over a
/// socket in a directory the service user owns, and reaches an admin's terminal: escape
/// sequences there could retitle it, clear it or fake output.
fn defang(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.chars().any(char::is_control) => {
            *s = super::escape_controls(s);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(defang),
        serde_json::Value::Object(m) => m.values_mut().for_each(defang),
        _ => {}
    }
}

pub(crate) fn print_answer(a: &serde_json::Value) {
    if let Some(t) = a["purged"].as_str() {
        say!(
            "purged tenant {t}: {} entries taken out of the database",
            a["entries"]
        );
        return;
    }
    if let Some(items) = a["list"].as_array() {
        for it in items {
            let (id, name) = (
                it["id"].as_str().unwrap_or_default(),
                it["name"].as_str().unwrap_or_default(),
            );
            match it["active"].as_bool() {
                Some(a) => say!("{id}  {name}  {}", if a { "active" } else { "inactive" }),
                None => say!("{id}  {name}"),
            }
        }
        eprintln!("{} of {} shown", items.len(), a["total"]);
        return;
    }
    if a["verify"] == true {
        say!("verify: no mismatches");
        // The running daemon checks the pages' checksums only when no write overtakes it.
        if a["daemon"] == true {
            match a["pages_unchecked"].as_str() {
                None => eprintln!(
                    "(checked by the running daemon, the checksum of every page of the file \
                     on disk included)"
                ),
                Some(why) => eprintln!(
                    "(checked by the running daemon, but not the checksums of the file's pages: \
                     {why}; run it again when the IdPs are quiet, or with scimd stopped)"
                ),
            }
        }
        return;
    }
    if let Some(plan) = a["plan"].as_str() {
        say!("tenant:      {}", a["tenant"].as_str().unwrap_or_default());
        say!("plan:        {plan}");
        say!(
            "mode:        {} (test threshold {})",
            a["mode"].as_str().unwrap_or_default(),
            a["test_threshold"]
        );
        let seats = if a["seats"].is_null() {
            "unlimited".to_string()
        } else {
            format!(
                "{} (past them, on_seat_limit = {})",
                a["seats"],
                a["on_seat_limit"].as_str().unwrap_or_default()
            )
        };
        say!("seats:       {seats}");
        say!("active provisioned users: {}", a["active_provisioned"]);
        say!("paid:        {}", a["paid"]);
        say!("free:        {}", a["free"]);
        say!("deactivated: {}", a["deactivated"]);
        let pending: Vec<&str> = a["pending"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .collect();
        if a["daemon"] == false && !pending.is_empty() {
            say!(
                "  note: scimd is not running, and the file's plan settings differ from those \
                 it last applied ({}): the mode above follows the file, but seats, and the \
                 users waiting on free for them, are as last applied; the next start applies \
                 the file (the change feed records it)",
                pending.join(", ")
            );
        }
        return;
    }
    let running = if a["daemon"] == true {
        // The pid is what a reload without systemd needs (`kill -HUP PID`).
        // An older daemon may not report these.
        let pid = match a["pid"].as_u64() {
            Some(p) => format!(" (pid {p})"),
            None => String::new(),
        };
        format!(
            "running, listening on {}{pid}",
            a["listen"].as_str().unwrap_or("(not reported)"),
        )
    } else {
        "not running (read from the database file)".to_string()
    };
    say!(
        "scimd {} (commit {}): {running}",
        a["version"].as_str().unwrap_or_default(),
        a["commit"].as_str().unwrap_or("not reported"),
    );
    // Between a package upgrade and the restart, the old daemon answers the new command,
    // and tells less than this version prints.
    if a["daemon"] == true && a["commit"].as_str() != Some(env!("SCIMD_COMMIT")) {
        say!(
            "  note: this command is scimd {} (commit {}), another build than the daemon's: a \
             restart runs it (`systemctl restart scimd`); until then what the daemon does not \
             report is shown as not reported",
            env!("CARGO_PKG_VERSION"),
            env!("SCIMD_COMMIT")
        );
    }
    if let Some(path) = a["database"].as_str() {
        let free = a["disk_free"]
            .as_u64()
            .map(|f| format!("; {} free on its disk", mib(f)))
            .unwrap_or_default();
        match a["database_bytes"].as_u64() {
            Some(b) => say!("  database: {path} ({}{free})", mib(b)),
            None => say!("  database: {path}"),
        }
    }
    if let Some(line) = a["certificate"].as_str() {
        say!("  {line}");
    }
    if let Some(why) = a["writes_refused"].as_str() {
        say!("  WRITES REFUSED (503 to every IdP): {why}");
    } else if a["low_on_room"] == true {
        say!(
            "  LOW ON DISK SPACE: writes will be refused (503) once the disk holding the \
             database fills; free space there"
        );
    }
    for (name, t) in a["tenants"].as_object().into_iter().flatten() {
        let label = match t["display_name"].as_str() {
            Some(d) => format!("{name} ({d})"),
            None => name.clone(),
        };
        // Bodies in the journal are people's details: it is not to be left on unnoticed.
        let logged = if t["log_bodies"] == true {
            "; each request is logged with its body (log_bodies)"
        } else {
            ""
        };
        let n = |k: &str, noun| scimd::counted(t[k].as_u64().unwrap_or(0), noun);
        let tokens: Vec<String> = t["tokens"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| {
                format!(
                    "{} ({})",
                    k["name"].as_str().unwrap_or_default(),
                    k["scope"].as_str().unwrap_or_default()
                )
            })
            .collect();
        let tokens = match t["tokens"].is_array() {
            true => tokens.join(", "),
            false => "(not reported)".to_string(),
        };
        say!(
            "  tenant {label}: {}, {}; tokens: {tokens}{logged}",
            n("users", "user"),
            n("groups", "group"),
        );
    }
    for (name, t) in a["unconfigured"].as_object().into_iter().flatten() {
        let n = |k: &str, noun| scimd::counted(t[k].as_u64().unwrap_or(0), noun);
        say!(
            "  tenant {name} (not in the config file; its data stays and returns if [tenants.{name}] is added back): {}, {}",
            n("users", "user"),
            n("groups", "group")
        );
    }
}

/// The shortest token of the admin's own that `--hash-stdin` hashes.
const MIN_OWN_TOKEN_CHARS: usize = 16;

pub(crate) fn token(name: &str, scope: Scope, hash_stdin: bool) -> ExitCode {
    if hash_stdin {
        let mut s = String::new();
        if std::io::stdin().read_to_string(&mut s).is_err() {
            eprintln!("cannot read the token from standard input");
            return ExitCode::FAILURE;
        }
        // An empty line would hash to a token no request can carry.
        if s.trim().is_empty() {
            eprintln!(
                "no token on standard input (pipe one in: echo \"$TOKEN\" | scimd token --hash-stdin)"
            );
            return ExitCode::from(2);
        }
        // Bearer tokens are tried from anywhere the port is reachable; the throttle slows a
        // guesser down, it does not stop one from finding "abc".
        if s.trim().chars().count() < MIN_OWN_TOKEN_CHARS {
            eprintln!(
                "that token is shorter than {MIN_OWN_TOKEN_CHARS} characters, short enough to \
                 guess; use a longer one, or let `scimd token` make one (43 random characters)"
            );
            return ExitCode::from(2);
        }
        // A bearer token is visible ASCII (RFC 6750 §2.1's b64token is narrower still): one
        // with other characters could never arrive intact, and would hash to a token that
        // matches nothing.
        if !s.trim().bytes().all(|b| b.is_ascii_graphic()) {
            eprintln!(
                "that token holds spaces, control characters or characters outside ASCII, \
                 which an Authorization header does not carry; use letters, digits and \
                 -._~+/= only, or let `scimd token` make one"
            );
            return ExitCode::from(2);
        }
        // One character repeated, or two: long, and still the first thing a guesser tries.
        let distinct: std::collections::BTreeSet<char> = s.trim().chars().collect();
        if distinct.len() < 6 {
            eprintln!(
                "that token uses only {}, easy to guess; use a random one, or let `scimd \
                 token` make one",
                scimd::counted(distinct.len() as u64, "different character")
            );
            return ExitCode::from(2);
        }
        let hash = scimd::auth::hex(&scimd::auth::digest(s.trim()));
        // Published in config.example.toml: anyone who has read it holds this token.
        if hash == scimd::config::EXAMPLE_TOKEN_SHA256 {
            eprintln!(
                "that is the demo token config.example.toml publishes, which anyone who has \
                 read it can send; use your own, or let `scimd token` make one"
            );
            return ExitCode::from(2);
        }
        say!("{hash}");
        return ExitCode::SUCCESS;
    }
    let tok = match scimd::auth::generate_token() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read random bytes from the operating system: {e}");
            return ExitCode::FAILURE;
        }
    };
    let hash = scimd::auth::hex(&scimd::auth::digest(&tok));
    let scope = if scope == Scope::Read {
        ", scope = \"read\""
    } else {
        ""
    };
    say!("Token (shown only now and stored nowhere):");
    say!("  {tok}");
    say!();
    say!("For an IdP or application, add this line to the tenant's tokens list:");
    say!("  {{ name = \"{name}\", sha256 = \"{hash}\"{scope} }},");
    say!("For /metrics, put this line under [server] instead:");
    say!("  metrics_token_sha256 = \"{hash}\"");
    ExitCode::SUCCESS
}

/// Bytes as the console shows a size: MiB with one decimal.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

/// Whether the configuration failed to load because its file could not be read (as
/// `Config::load` says it).
fn file_unreadable(e: &scimd::config::ConfigError) -> bool {
    e.problems
        .iter()
        .any(|p| p.starts_with("cannot read the file"))
}

/// For a configuration that could not be loaded because its file could not be read, what
/// to do about it (`unreadable_config_hint`).
pub(crate) fn unreadable(
    e: &scimd::config::ConfigError,
    config: &std::path::Path,
) -> Option<&'static str> {
    file_unreadable(e)
        .then(|| unreadable_config_hint(config))
        .flatten()
}

/// Why the configuration file at `config` cannot be read, said as what to do about it: a
/// console command run without `--config`, or without sudo, is the usual cause.
pub(crate) fn unreadable_config_hint(config: &std::path::Path) -> Option<&'static str> {
    match std::fs::File::open(config).map_err(|e| e.kind()) {
        Err(std::io::ErrorKind::PermissionDenied) => Some(
            "(this user may not read it: run the command as root, with sudo, as the packaged \
             file is readable by root and the scimd group only)",
        ),
        Err(std::io::ErrorKind::NotFound) => Some(
            "(no file there: give the configuration file with --config FILE; without it, \
             /etc/scimd/scimd.toml is read)",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_daemons_control_characters_are_shown_escaped() {
        let mut v = serde_json::json!({"version": "0.1\u{1b}]0;owned\u{7}",
            "list": [{"name": "Zoë\u{1b}[2J"}], "plain": "ann@x"});
        super::defang(&mut v);
        assert_eq!(v["version"], "0.1\\u{1b}]0;owned\\u{7}");
        assert_eq!(v["list"][0]["name"], "Zoë\\u{1b}[2J");
        assert_eq!(v["plain"], "ann@x");
    }
}
