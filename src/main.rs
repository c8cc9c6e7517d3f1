//! The `scimd` command line: serve, check-config, token. Only argument handling lives here.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use scimd::config::{Config, Scope};
use scimd::server::Server;

// glibc's malloc serialises on an arena lock whenever one worker frees what another
// allocated (redb's cached pages, request buffers); mimalloc frees across threads without a
// lock. Measured with wrk on 2 cores: creates +55%, GET by id +8%. Built without
// transparent huge pages: with them, resident memory grows in 2 MiB steps (a million-member
// group streamed to 8 clients at once: 90 MiB resident with them, 49 MiB without).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "scimd",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("SCIMD_COMMIT"), ")"),
    about = "SCIM 2.0 provisioning endpoint for Okta, Entra ID, OneLogin and JumpCloud"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the SCIM server.
    Serve {
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/scimd/scimd.toml")]
        config: PathBuf,
    },
    /// Validate a configuration file and exit (non-zero when it has problems).
    CheckConfig {
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/scimd/scimd.toml")]
        config: PathBuf,
    },
    /// Make a new bearer token (`scimd token remove` takes one out of a tenant).
    ///
    /// With --tenant, the token is added to that tenant in the config file; without, it is
    /// printed with the config lines that would hold its hash.
    #[command(args_conflicts_with_subcommands = true)]
    Token {
        #[command(subcommand)]
        action: Option<TokenAction>,
        /// Name shown in logs for requests made with this token.
        #[arg(long, default_value = "idp")]
        name: String,
        /// Add the token to this tenant in the config file (keeps comments and layout).
        #[arg(long)]
        tenant: Option<String>,
        /// `provision` (full SCIM) or `read` (GET and search only).
        #[arg(long, default_value = "provision")]
        scope: String,
        /// Configuration file (TOML) that --tenant edits.
        #[arg(long, short, default_value = "/etc/scimd/scimd.toml")]
        config: PathBuf,
        /// Instead of making a token, read one from standard input and print its hash.
        #[arg(long)]
        hash_stdin: bool,
    },
    /// Print a tenant's paid-plan summary (works while the daemon runs).
    Plan {
        /// Tenant whose [tenants.NAME.plan] to summarise.
        tenant: String,
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/scimd/scimd.toml")]
        config: PathBuf,
    },
    /// Print the version and commit, whether the daemon runs (and where it listens), and
    /// every tenant with its user and group counts, including tenants left in the database
    /// but no longer in the config file. Works while the daemon runs.
    Status {
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/scimd/scimd.toml")]
        config: PathBuf,
    },
    /// Write a consistent copy of the database to FILE (while the daemon keeps serving).
    Backup {
        /// File to write the copy to.
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/scimd/scimd.toml")]
        config: PathBuf,
    },
    /// Replace the database with a backup. Refuses while the daemon runs.
    Restore {
        /// Backup file written by `scimd backup`.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/scimd/scimd.toml")]
        config: PathBuf,
    },
    /// Check every index against the resources, membership both ways, counters and events.
    Verify {
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/scimd/scimd.toml")]
        config: PathBuf,
    },
    /// Write a tenant's users and groups as SCIM JSON Lines to standard output.
    Export {
        /// Tenant to export.
        #[arg(long)]
        tenant: String,
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/scimd/scimd.toml")]
        config: PathBuf,
    },
    /// Load SCIM JSON Lines written by `scimd export` into a tenant, keeping ids.
    Import {
        /// Tenant to load into.
        #[arg(long)]
        tenant: String,
        /// JSON Lines file written by `scimd export`.
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/scimd/scimd.toml")]
        config: PathBuf,
    },
    /// List a tenant's users (works while the daemon runs).
    Users {
        #[command(subcommand)]
        action: UsersAction,
    },
    /// List a tenant's groups (works while the daemon runs).
    Groups {
        #[command(subcommand)]
        action: GroupsAction,
    },
    /// Print the manual page (roff) generated from these definitions.
    Man {
        /// Instead, write scimd.1 and a page for every subcommand (scimd-serve.1, ...) here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print shell completions for bash, zsh, fish, elvish or powershell.
    Completions {
        /// Shell to print completions for.
        shell: clap_complete::Shell,
    },
    /// Manage tenants in the config file.
    Tenant {
        #[command(subcommand)]
        action: TenantAction,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Remove a token from a tenant in the config file; the server refuses it after a reload.
    Remove {
        /// Tenant that holds the token.
        #[arg(long)]
        tenant: String,
        /// Name of the token, as in the tenant's tokens list.
        #[arg(long)]
        name: String,
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/scimd/scimd.toml")]
        config: PathBuf,
    },
}

/// What `users list` and `groups list` share.
#[derive(clap::Args)]
struct ListArgs {
    /// Tenant to list.
    #[arg(long)]
    tenant: String,
    /// Most lines printed.
    #[arg(long, default_value_t = 1000)]
    limit: u64,
    /// Configuration file (TOML).
    #[arg(long, short, default_value = "/etc/scimd/scimd.toml")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum UsersAction {
    /// Print each user's id, userName and active or inactive, one per line.
    List {
        #[command(flatten)]
        list: ListArgs,
        /// A SCIM filter, e.g. 'userName sw "a"' or 'active eq false'.
        #[arg(long)]
        filter: Option<String>,
    },
}

#[derive(Subcommand)]
enum GroupsAction {
    /// Print each group's id and displayName, one per line.
    List {
        #[command(flatten)]
        list: ListArgs,
        /// A SCIM filter, e.g. 'displayName sw "Eng"' or 'displayName eq "Sales"'.
        #[arg(long)]
        filter: Option<String>,
    },
}

#[derive(Subcommand)]
enum TenantAction {
    /// Add a tenant with a fresh provisioning token, and print its Base URL and token.
    Add {
        /// Tenant name (a-z, 0-9, '-', '_'); it is part of the tenant's Base URL.
        name: String,
        /// Configuration file (TOML) to add the tenant to.
        #[arg(long, short, default_value = "/etc/scimd/scimd.toml")]
        config: PathBuf,
        /// Name of the first token (shown in logs).
        #[arg(long, default_value = "idp")]
        token_name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(cfg) => {
                println!(
                    "{}: OK ({} tenant{}, listening on {})",
                    config.display(),
                    cfg.tenants.len(),
                    if cfg.tenants.len() == 1 { "" } else { "s" },
                    cfg.server.listen
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Token {
            action:
                Some(TokenAction::Remove {
                    tenant,
                    name,
                    config,
                }),
            ..
        } => match scimd::config_edit::remove_token(&config, &tenant, &name) {
            Ok(()) => {
                println!(
                    "Removed token \"{name}\" from tenant {tenant} in {}.",
                    config.display()
                );
                println!(
                    "scimd accepts it until it reloads: run `systemctl reload scimd` (or send SIGHUP)."
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
        Command::Token {
            action: None,
            name,
            tenant,
            scope,
            config,
            hash_stdin,
        } => {
            let parsed = match scope.as_str() {
                "provision" => Scope::Provision,
                "read" => Scope::Read,
                other => {
                    eprintln!("--scope must be provision or read, not {other}");
                    return ExitCode::from(2);
                }
            };
            match tenant {
                Some(t) => match scimd::config_edit::add_token(&config, &t, &name, parsed) {
                    Ok(tok) => {
                        println!(
                            "Added token \"{name}\" (scope {scope}) to tenant {t} in {}.",
                            config.display()
                        );
                        println!("Token (shown only now; scimd keeps only its hash):");
                        println!("  {tok}");
                        println!("Load it with `systemctl reload scimd` (or SIGHUP).");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("{e}");
                        ExitCode::from(2)
                    }
                },
                None => token(&name, parsed, hash_stdin),
            }
        }
        Command::Plan { tenant, config } => admin(
            &config,
            serde_json::json!({"cmd": "plan", "tenant": tenant}),
        ),
        Command::Status { config } => admin(&config, serde_json::json!({"cmd": "status"})),
        Command::Backup { to, config } => backup(&config, &to),
        Command::Export { tenant, config } => export(&config, &tenant),
        Command::Import {
            tenant,
            from,
            config,
        } => import(&config, &tenant, &from),
        Command::Users {
            action: UsersAction::List { filter, list },
        } => list_cmd("User", filter, list),
        Command::Groups {
            action: GroupsAction::List { filter, list },
        } => list_cmd("Group", filter, list),
        Command::Man { dir } => {
            let cmd = <Cli as clap::CommandFactory>::command();
            // The top page refers to scimd-serve(1) and the others: the package ships them.
            let done = match dir {
                Some(d) => clap_mangen::generate_to(cmd, d),
                None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()),
            };
            match done {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cannot write the manual pages: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "scimd", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Verify { config } => admin(&config, serde_json::json!({"cmd": "verify"})),
        Command::Restore { from, config } => restore(&config, &from),
        Command::Tenant {
            action:
                TenantAction::Add {
                    name,
                    config,
                    token_name,
                },
        } => match scimd::config_edit::add_tenant(&config, &name, &token_name) {
            Ok(tok) => {
                // The file may still lack a certificate; the URL is known regardless. What
                // else check-config would refuse is listed, so the admin fixes it before a
                // reload refuses the file.
                let loaded = Config::load(&config);
                let problems = loaded
                    .as_ref()
                    .err()
                    .map(|e| e.problems.clone())
                    .unwrap_or_default();
                let (base, note) = loaded
                    .map_or_else(|e| e.parsed.map(|c| *c), Some)
                    .map(|c| base_url(&c.server, &c.server.listen))
                    .unwrap_or_default();
                println!(
                    "Added tenant {name} to {}. Load it with `systemctl reload scimd` (or SIGHUP).",
                    config.display()
                );
                println!();
                println!("Paste these two values into your identity provider:");
                println!("  Base URL:     {base}/tenants/{name}/scim/v2");
                println!("  Bearer token: {tok}");
                println!();
                if let Some(n) = note {
                    println!("{n}");
                }
                println!("The token is shown only now; scimd keeps only its SHA-256.");
                if !problems.is_empty() {
                    println!();
                    println!(
                        "Before scimd can load this file, fix what `scimd check-config` reports:"
                    );
                    for p in problems {
                        println!("  - {p}");
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
    }
}

fn list_cmd(kind: &str, filter: Option<String>, list: ListArgs) -> ExitCode {
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
fn base_url(server: &scimd::config::ServerConfig, addr: &str) -> (String, Option<String>) {
    if let Some(u) = &server.public_url {
        return (u.trim_end_matches('/').to_string(), None);
    }
    let scheme = if server.plain_http { "http" } else { "https" };
    let Ok(sock) = addr.parse::<std::net::SocketAddr>() else {
        return (format!("{scheme}://{addr}"), None);
    };
    let advice = "set server.public_url in the config file to the https address your IdP \
                  reaches (e.g. https://scim.corp.example:8443)";
    if sock.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
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

/// Ask the running daemon over its admin socket, or read the database directly when no
/// daemon runs.
fn admin(config: &std::path::Path, req: serde_json::Value) -> ExitCode {
    let (cfg, rt) = match load_or_exit(config) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let answer = rt.block_on(async {
        if let Some(mut a) = scimd::admin::ask(&scimd::admin::socket_path(&cfg), &req).await {
            a["daemon"] = true.into();
            return Ok(a);
        }
        let store = scimd::store::Store::open(&cfg.storage.db_path(), 16 << 20)
            .map_err(|e| e.to_string())?;
        let mut a = scimd::admin::answer(&store, &cfg, &req).await;
        a["daemon"] = false.into();
        Ok::<_, String>(a)
    });
    match answer {
        Ok(a) if a["ok"] == true => {
            print_answer(&a);
            ExitCode::SUCCESS
        }
        Ok(a) => {
            for p in a["problems"].as_array().into_iter().flatten() {
                eprintln!("  - {}", p.as_str().unwrap_or_default());
            }
            eprintln!("{}", a["error"].as_str().unwrap_or("failed"));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn load_or_exit(config: &std::path::Path) -> Result<(Config, tokio::runtime::Runtime), ExitCode> {
    let cfg = Config::load(config).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(2)
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|_| ExitCode::FAILURE)?;
    Ok((cfg, rt))
}

/// The daemon's answer lines, or the same work done on the database directly.
fn run_admin(
    cfg: &Config,
    rt: &tokio::runtime::Runtime,
    req: serde_json::Value,
    body: Vec<String>,
) -> Result<Vec<String>, String> {
    rt.block_on(async {
        if let Some(lines) = scimd::admin::converse(
            &scimd::admin::socket_path(cfg),
            &req,
            &body,
            &mut show_progress,
        )
        .await
        {
            return Ok(lines);
        }
        std::fs::create_dir_all(&cfg.storage.dir)
            .map_err(|e| format!("cannot create {}: {e}", cfg.storage.dir.display()))?;
        let store = scimd::store::Store::open(&cfg.storage.db_path(), 16 << 20)
            .map_err(|e| e.to_string())?;
        let tenant = req["tenant"].as_str().unwrap_or_default().to_string();
        let mut out = Vec::new();
        let end = match req["cmd"].as_str() {
            Some("export") => {
                match scimd::admin::export(&store, cfg, &tenant, |l| out.push(l)).await {
                    Ok(n) => serde_json::json!({"ok": true, "exported": n}),
                    Err(e) => serde_json::json!({"ok": false, "error": e}),
                }
            }
            Some("import") => {
                match scimd::admin::import(&store, cfg, &tenant, body, &mut show_progress).await {
                    Ok(n) => serde_json::json!({"ok": true, "imported": n}),
                    Err(e) => serde_json::json!({"ok": false, "error": e}),
                }
            }
            _ => scimd::admin::answer(&store, cfg, &req).await,
        };
        out.push(end.to_string());
        Ok(out)
    })
}

/// `done/total` on one terminal line, rewritten in place; nothing when not on a terminal.
fn show_progress(done: u64, total: u64) {
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

fn finish_admin(
    result: Result<Vec<String>, String>,
    mut each: impl FnMut(&str),
) -> Result<serde_json::Value, ExitCode> {
    let lines = result.map_err(|e| {
        eprintln!("{e}");
        ExitCode::FAILURE
    })?;
    let (last, rest) = lines.split_last().ok_or(ExitCode::FAILURE)?;
    rest.iter().for_each(|l| each(l));
    let end: serde_json::Value = serde_json::from_str(last).unwrap_or_default();
    if end["ok"] != true {
        eprintln!("{}", end["error"].as_str().unwrap_or("failed"));
        return Err(ExitCode::FAILURE);
    }
    Ok(end)
}

fn backup(config: &std::path::Path, to: &std::path::Path) -> ExitCode {
    let (cfg, rt) = match load_or_exit(config) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let end = match finish_admin(
        run_admin(&cfg, &rt, serde_json::json!({"cmd": "backup"}), Vec::new()),
        |_| {},
    ) {
        Ok(e) => e,
        Err(c) => return c,
    };
    let made = std::path::PathBuf::from(end["backup"].as_str().unwrap_or_default());
    // Owner-only like the database itself, whatever the umask: it holds the whole directory.
    let owner_only = |p: &std::path::Path| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
        }
        #[cfg(not(unix))]
        {
            let _ = p;
            Ok(())
        }
    };
    if let Err(e) = std::fs::copy(&made, to)
        .and_then(|_| owner_only(to))
        .and_then(|_| std::fs::File::open(to)?.sync_all())
    {
        eprintln!(
            "the backup is at {} but cannot be copied to {}: {e}",
            made.display(),
            to.display()
        );
        return ExitCode::FAILURE;
    }
    let _ = std::fs::remove_file(&made);
    println!("backup written to {} ({} rows)", to.display(), end["rows"]);
    ExitCode::SUCCESS
}

fn export(config: &std::path::Path, tenant: &str) -> ExitCode {
    let (cfg, rt) = match load_or_exit(config) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let req = serde_json::json!({"cmd": "export", "tenant": tenant});
    let mut n = 0u64;
    let each = |l: &str| {
        println!("{l}");
        n += 1;
        if n.is_multiple_of(1000) && std::io::stderr().is_terminal() {
            eprint!("\rexported {n}");
        }
    };
    match finish_admin(run_admin(&cfg, &rt, req, Vec::new()), each) {
        Ok(end) => {
            eprintln!("exported {} resources of tenant {tenant}", end["exported"]);
            ExitCode::SUCCESS
        }
        Err(c) => c,
    }
}

fn import(config: &std::path::Path, tenant: &str, from: &std::path::Path) -> ExitCode {
    let (cfg, rt) = match load_or_exit(config) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let body: Vec<String> = match std::fs::read_to_string(from) {
        Ok(t) => t
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        Err(e) => {
            eprintln!("cannot read {}: {e}", from.display());
            return ExitCode::FAILURE;
        }
    };
    let req = serde_json::json!({"cmd": "import", "tenant": tenant});
    match finish_admin(run_admin(&cfg, &rt, req, body), |_| {}) {
        Ok(end) => {
            println!(
                "imported {} resources into tenant {tenant}",
                end["imported"]
            );
            ExitCode::SUCCESS
        }
        Err(c) => c,
    }
}

fn restore(config: &std::path::Path, from: &std::path::Path) -> ExitCode {
    let (cfg, rt) = match load_or_exit(config) {
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
        eprintln!("scimd is running on this database; stop it first (systemctl stop scimd)");
        return ExitCode::FAILURE;
    }
    match scimd::store::restore(from, &cfg.storage.db_path()) {
        Ok(kept) => {
            println!(
                "restored {} from {}",
                cfg.storage.db_path().display(),
                from.display()
            );
            if let Some(k) = kept {
                println!("the previous database was kept as {}", k.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn print_answer(a: &serde_json::Value) {
    if let Some(items) = a["list"].as_array() {
        for it in items {
            let (id, name) = (
                it["id"].as_str().unwrap_or_default(),
                it["name"].as_str().unwrap_or_default(),
            );
            match it["active"].as_bool() {
                Some(a) => println!("{id}  {name}  {}", if a { "active" } else { "inactive" }),
                None => println!("{id}  {name}"),
            }
        }
        eprintln!("{} of {} shown", items.len(), a["total"]);
        return;
    }
    if a["verify"] == true {
        println!("verify: no mismatches");
        return;
    }
    if let Some(plan) = a["plan"].as_str() {
        println!("tenant:      {}", a["tenant"].as_str().unwrap_or_default());
        println!("plan:        {plan}");
        println!(
            "mode:        {} (test threshold {})",
            a["mode"].as_str().unwrap_or_default(),
            a["test_threshold"]
        );
        let seats = if a["seats"].is_null() {
            "unlimited".to_string()
        } else {
            a["seats"].to_string()
        };
        println!("seats:       {seats}");
        println!("paid:        {}", a["paid"]);
        println!("free:        {}", a["free"]);
        println!("deactivated: {}", a["deactivated"]);
        return;
    }
    let running = if a["daemon"] == true {
        format!(
            "running, listening on {}",
            a["listen"].as_str().unwrap_or_default()
        )
    } else {
        "not running (read from the database file)".to_string()
    };
    println!(
        "scimd {} (commit {}): {running}",
        a["version"].as_str().unwrap_or_default(),
        a["commit"].as_str().unwrap_or_default(),
    );
    for (name, t) in a["tenants"].as_object().into_iter().flatten() {
        let label = match t["display_name"].as_str() {
            Some(d) => format!("{name} ({d})"),
            None => name.clone(),
        };
        println!(
            "  tenant {label}: {} users, {} groups",
            t["users"], t["groups"]
        );
    }
    for (name, t) in a["unconfigured"].as_object().into_iter().flatten() {
        println!(
            "  tenant {name} (not in the config file; its data stays and returns if [tenants.{name}] is added back): {} users, {} groups",
            t["users"], t["groups"]
        );
    }
}

fn token(name: &str, scope: Scope, hash_stdin: bool) -> ExitCode {
    if hash_stdin {
        let mut s = String::new();
        if std::io::stdin().read_to_string(&mut s).is_err() {
            eprintln!("cannot read the token from standard input");
            return ExitCode::FAILURE;
        }
        println!("{}", scimd::auth::hex(&scimd::auth::digest(s.trim())));
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
    println!("Token (shown only now and stored nowhere):");
    println!("  {tok}");
    println!();
    println!("For an IdP or application, add this line to the tenant's tokens list:");
    println!("  {{ name = \"{name}\", sha256 = \"{hash}\"{scope} }},");
    println!("For /metrics, put this line under [server] instead:");
    println!("  metrics_token_sha256 = \"{hash}\"");
    ExitCode::SUCCESS
}

fn init_logging(level: &str, format: &str) {
    // rustls warns on every connection whose client sends an IP address as SNI (what a Base
    // URL like https://10.0.0.5:8443/... makes clients do): the client's quirk, not the admin's
    // problem, and one line per connection.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("rustls::msgs::handshake=error,{level}"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        // journald adds its own timestamps and shows escape codes as text: plain lines there.
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Until the returned sender is dropped, call `extend` every `every`. Start-up opens the
/// database, and a file left by a crash or power loss is first checked page by page (seconds
/// per GiB): for a large directory that can outlast systemd's start timeout, which would
/// kill the check and restart it from the beginning, again and again.
fn keep_extending(
    every: std::time::Duration,
    extend: impl Fn() + Send + 'static,
) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
            extend();
        }
    });
    tx
}

fn serve(path: PathBuf) -> ExitCode {
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&cfg.log.level, &cfg.log.format);
    // Long reads run on the blocking pool. They are CPU work on pages the OS has cached, so
    // a few threads per core keep the cores busy; each thread more holds its own allocator
    // heap, and 64 of them under a burst of scans tripled the resident memory.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let starting = keep_extending(std::time::Duration::from_secs(10), || {
            notify(&[
                sd_notify::NotifyState::ExtendTimeoutUsec(30_000_000),
                sd_notify::NotifyState::Status("opening the database"),
            ])
        });
        let bound = Server::bind(cfg.clone()).await;
        drop(starting);
        let server = match bound {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                eprintln!("scimd: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        // Signal handlers go in before anyone is told we listen, so an early SIGHUP or
        // SIGTERM is handled rather than killing the process.
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(hup), Ok(term), Ok(int)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            eprintln!("scimd: cannot install signal handlers");
            return ExitCode::FAILURE;
        };
        let addr = server.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let (base, note) = base_url(&cfg.server, &addr);
        tracing::info!(%addr, tenants = cfg.tenants.len(), commit = env!("SCIMD_COMMIT"), "scimd {} listening", env!("CARGO_PKG_VERSION"));
        eprintln!("scimd {} (commit {}) listening on {addr}", env!("CARGO_PKG_VERSION"), env!("SCIMD_COMMIT"));
        eprintln!("  SCIM Base URL: {base}/scim/v2  (or {base}/tenants/NAME/scim/v2)");
        if let Some(n) = note {
            eprintln!("  {n}");
        }
        if let Some(fp) = &server.fingerprint {
            eprintln!("  TLS certificate SHA-256 fingerprint: {fp}");
        }
        let reloader = server.reloader();
        // Ready only now: the database is open and the listener bound.
        notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("serving")]);
        tokio::spawn(watch_signals_and_certs(path, reloader, hup));
        server.serve(shutdown_signal(term, int)).await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// SIGHUP re-reads the configuration and certificate; certificate files renewed on disk are
/// picked up within 30 s. A broken new configuration or certificate is refused and the old
/// one stays in force.
async fn watch_signals_and_certs(
    path: PathBuf,
    reloader: scimd::server::Reloader,
    mut hup: tokio::signal::unix::Signal,
) {
    let mut stamp = reloader.cert_stamp();
    let every = reloader.watch_secs();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(every.max(1)));
    loop {
        tokio::select! {
            _ = hup.recv() => {
                notify(&[sd_notify::NotifyState::Reloading, sd_notify::NotifyState::monotonic_usec_now().unwrap_or(sd_notify::NotifyState::Status("reloading"))]);
                match Config::load(&path).map_err(|e| e.to_string()).and_then(|c| reloader.apply(c)) {
                    Ok(notes) => {
                        for n in notes {
                            tracing::info!("reload: {n}");
                        }
                        tracing::info!("configuration reloaded");
                        notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("serving")]);
                    }
                    Err(e) => {
                        tracing::error!("reload refused, the previous configuration stays in force: {e}");
                        notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("reload failed; previous configuration in force")]);
                    }
                }
                stamp = reloader.cert_stamp();
            }
            _ = tick.tick(), if every > 0 => {
                let now = reloader.cert_stamp();
                if now.is_some() && now != stamp {
                    match reloader.reload_cert() {
                        Ok(fp) => tracing::info!(fingerprint = %fp, "certificate files changed: new certificate in use"),
                        Err(e) => tracing::error!("certificate files changed but cannot be used; keeping the old certificate: {e}"),
                    }
                    stamp = now;
                }
            }
        }
    }
}

async fn shutdown_signal(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
) {
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    notify(&[sd_notify::NotifyState::Stopping]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn start_up_keeps_asking_for_time_until_it_is_done() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let starting = keep_extending(Duration::from_millis(5), move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while calls.load(Ordering::SeqCst) < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "no extension asked for"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(starting);
        std::thread::sleep(Duration::from_millis(20)); // a call in flight may still land
        let after = calls.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            after,
            "asked for time after start-up"
        );
    }
}
