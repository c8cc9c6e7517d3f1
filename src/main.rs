//! The `scimd` command line: its arguments, and which command runs (`cli/` holds them).

/// `println!` for what a command prints to a person or a pipe: a reader that went away
/// (`scimd users list | head`) ends the command quietly, and a failed write (`> /dev/full`)
/// ends it with a message, instead of a panic and a claim of success.
macro_rules! say {
    () => { $crate::say_line(format_args!("")) };
    ($($t:tt)*) => { $crate::say_line(format_args!($($t)*)) };
}

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cli::console::{
    admin, backup, base_url, export, import, list_cmd, purge, refuse_leftover, restore, token,
};
use cli::daemon::serve;
use scimd::config::{Config, Scope};

// glibc's malloc serialises on an arena lock whenever one worker frees what another
// allocated (redb's cached pages, request buffers); mimalloc frees across threads without a
// lock. Measured with wrk on 2 cores: creates +55%, GET by id +8%. Built without
// transparent huge pages: with them, resident memory grows in 2 MiB steps (a million-member
// group streamed to 8 clients at once: 90 MiB resident with them, 49 MiB without).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// With the database layout this build reads: what an admin compares before going back to an
/// older package (a file converted to a newer layout is refused by an older scimd).
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (commit {}, database layout {})",
        env!("CARGO_PKG_VERSION"),
        env!("SCIMD_COMMIT"),
        scimd::store::tables::SCHEMA_VERSION
    )
});

#[derive(Parser)]
#[command(
    name = "scimd",
    version = VERSION.as_str(),
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
    /// Validate a configuration file and exit: 0 when it loads, 2 when it has problems
    /// (listed), as the unit's reload runs it.
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
        /// Instead of making a token, read one from standard input and print its hash (to
        /// put in the file by hand; at least 16 characters).
        #[arg(long, conflicts_with = "tenant")]
        hash_stdin: bool,
    },
    /// Print a tenant's paid-plan summary (works while the daemon runs).
    Plan {
        /// Tenant whose [tenants.NAME.plan] to summarise.
        #[arg(required_unless_present = "tenant_flag", value_name = "TENANT")]
        tenant: Option<String>,
        /// The same, as `export`, `import` and `users list` take it.
        #[arg(
            long = "tenant",
            id = "tenant_flag",
            conflicts_with = "tenant",
            value_name = "TENANT"
        )]
        tenant_flag: Option<String>,
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/scimd/scimd.toml")]
        config: PathBuf,
    },
    /// Print the version and commit, whether the daemon runs (and where it listens), the
    /// database, and every tenant with its user and group counts and its tokens' names and
    /// scopes, including tenants left in the database but no longer in the config file.
    /// Works while the daemon runs. Exits 0 when the daemon runs, 3 when it does not, 4
    /// when it cannot tell (as an init script's status does); writes refused for a full
    /// disk or a damaged file are printed, and `/healthz` answers 503 for them.
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
    /// Write a tenant's users and groups as SCIM JSON Lines, to standard output or (--out)
    /// to a file.
    Export {
        /// Tenant to export.
        #[arg(long)]
        tenant: String,
        /// Write to this file (owner-only, and there only once complete) instead of standard
        /// output.
        #[arg(long)]
        out: Option<PathBuf>,
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

/// The most lines `users list` and `groups list` print: the daemon holds them until it answers.
const LIST_LIMIT_MAX: u64 = scimd::admin::LIST_MAX;

/// What `users list` and `groups list` share.
#[derive(clap::Args)]
struct ListArgs {
    /// Tenant to list.
    #[arg(long)]
    tenant: String,
    /// Most lines printed (at most 10,000: the whole of a large tenant is `scimd export`'s).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=LIST_LIMIT_MAX))]
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
        /// Name shown for the tenant in `scimd status` (e.g. "Acme Corp").
        #[arg(long)]
        display_name: Option<String>,
        /// Serve the users and groups the database kept under this name from an earlier
        /// tenant (the same customer back); without it, such data refuses the name.
        #[arg(long)]
        keep_data: bool,
    },
    /// Take a tenant out of the config file (its tables included; comments stay). Its data
    /// stays in the database, served again if the tenant is added back with --keep-data,
    /// until `scimd tenant purge` removes it.
    Remove {
        /// Tenant name.
        name: String,
        /// Configuration file (TOML) to take the tenant out of.
        #[arg(long, short, default_value = "/etc/scimd/scimd.toml")]
        config: PathBuf,
    },
    /// Take a tenant no longer in the config file out of the database for good: its users,
    /// groups, memberships and change feed (works while the daemon runs).
    Purge {
        /// Tenant name, as `scimd status` lists it ("not in the config file").
        name: String,
        /// Configuration file (TOML).
        #[arg(long, short, default_value = "/etc/scimd/scimd.toml")]
        config: PathBuf,
        /// Do it (without, only say what it would do).
        #[arg(long)]
        yes: bool,
    },
}

/// After an edit that succeeded: what the file still has that a reload would refuse (an
/// edit is refused only for problems it brings, so one made on the way to fixing others, a
/// token to replace the demo one, leaves them).
fn say_still_refused(config: &std::path::Path) {
    if let Err(e) = Config::load(config) {
        say_problems(&e.problems);
    }
}

/// What keeps an edited file from loading, after the edit's own output.
fn say_problems(problems: &[String]) {
    if problems.is_empty() {
        return;
    }
    say!();
    say!("Before scimd can load this file, fix what `scimd check-config` reports:");
    for p in problems {
        say!("  - {p}");
    }
}

/// A change to the configuration file that could not be made, with what to do when the file
/// could not be read (no `--config`, or no sudo).
fn edit_message(e: &scimd::config_edit::EditError, config: &std::path::Path) -> String {
    match cli::console::unreadable_config_hint(config) {
        Some(hint) if matches!(e, scimd::config_edit::EditError::Read(..)) => {
            format!("{e}\n{hint}")
        }
        _ => e.to_string(),
    }
}

fn edit_failed(e: &scimd::config_edit::EditError, config: &std::path::Path) {
    eprintln!("{}", edit_message(e, config));
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => serve(config),
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(cfg) => {
                // What `serve` would refuse at start (a key that is not the certificate's, a
                // file that is no PEM) is refused here too: the unit runs this before a reload.
                let mut warnings = cfg.warnings();
                if let (false, Some(cert), Some(key)) =
                    (cfg.server.plain_http, &cfg.tls.cert, &cfg.tls.key)
                {
                    match scimd::tls::load_pem(cert, key) {
                        Err(e) => {
                            eprintln!("invalid configuration {}:\n  - {e}", config.display());
                            return ExitCode::from(2);
                        }
                        // Expired is a warning, not a refusal: refusing would also stop the
                        // service for the application and for `/healthz`.
                        Ok(l) => warnings.extend(
                            l.warnings(cfg.server.public_url.as_deref(), true)
                                .into_iter()
                                .map(|w| format!("tls.cert {}: {w}", cert.display())),
                        ),
                    }
                }
                // The service would fail to start on these, so a script that runs this as
                // root before a restart must not be told OK.
                let (user, blocked) = service_user_problems(&cfg, &config);
                if !blocked.is_empty() {
                    eprintln!(
                        "invalid configuration {} for the service user {user}:",
                        config.display(),
                    );
                    for p in blocked {
                        eprintln!("  - {p}");
                    }
                    return ExitCode::from(2);
                }
                // Port 0 is any free port, a new one at each start: fine for a test, not for
                // a Base URL an IdP keeps.
                let any_port = cfg
                    .server
                    .listen
                    .parse::<std::net::SocketAddr>()
                    .is_ok_and(|a| a.port() == 0);
                say!(
                    "{}: OK ({} tenant{}, listening on {}{}, database {})",
                    config.display(),
                    cfg.tenants.len(),
                    if cfg.tenants.len() == 1 { "" } else { "s" },
                    cfg.server.listen,
                    if any_port {
                        ": port 0, any free port, another at each start"
                    } else {
                        ""
                    },
                    cfg.storage.db_path().display()
                );
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                if let Some(hint) = cli::console::unreadable(&e, &config) {
                    eprintln!("{hint}");
                }
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
                say!(
                    "Removed token \"{name}\" from tenant {tenant} in {}.",
                    config.display()
                );
                say!(
                    "scimd accepts it until it reloads: run `systemctl reload scimd` (or send SIGHUP)."
                );
                say_still_refused(&config);
                ExitCode::SUCCESS
            }
            Err(e) => {
                edit_failed(&e, &config);
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
                        say!(
                            "Added token \"{name}\" (scope {scope}) to tenant {t} in {}.",
                            config.display()
                        );
                        say!("Token (shown only now; scimd keeps only its hash):");
                        say!("  {tok}");
                        say!(
                            "Load it with `systemctl reload scimd` (or SIGHUP); a scimd not yet started reads it when it starts."
                        );
                        say_still_refused(&config);
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        edit_failed(&e, &config);
                        ExitCode::from(2)
                    }
                },
                None => token(&name, parsed, hash_stdin),
            }
        }
        Command::Plan {
            tenant,
            tenant_flag,
            config,
        } => admin(
            &config,
            serde_json::json!({"cmd": "plan", "tenant": tenant.or(tenant_flag)}),
        ),
        Command::Status { config } => admin(&config, serde_json::json!({"cmd": "status"})),
        Command::Backup { to, config } => backup(&config, &to),
        Command::Export {
            tenant,
            out,
            config,
        } => export(&config, &tenant, out.as_deref()),
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
            let done = match dir {
                Some(d) => cli::man::write_pages(cmd, &d),
                None => cli::man::top_page(cmd)
                    .map(|page| say_with(|out| std::io::Write::write_all(out, &page))),
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
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "scimd", &mut script);
            say_with(|out| std::io::Write::write_all(out, &script));
            ExitCode::SUCCESS
        }
        Command::Verify { config } => admin(&config, serde_json::json!({"cmd": "verify"})),
        Command::Restore { from, config } => restore(&config, &from),
        Command::Tenant {
            action: TenantAction::Purge { name, config, yes },
        } => purge(&config, &name, yes),
        Command::Tenant {
            action: TenantAction::Remove { name, config },
        } => match scimd::config_edit::remove_tenant(&config, &name) {
            Ok(()) => {
                say!(
                    "Removed tenant {name} from {}. `systemctl reload scimd` (or SIGHUP) stops \
                     serving it: its tokens are refused from then on.",
                    config.display()
                );
                let c = config_arg(&config);
                // Said only where there is something to keep or purge: a file never run, or a
                // tenant that never got a user, leaves nothing behind.
                match cli::console::stored_under(&config, &name) {
                    Ok((0, 0, _)) => say!("The database holds no users or groups under {name}."),
                    _ => say!(
                        "Its users and groups stay in the database: `scimd tenant add {name} \
                         --keep-data{c}` serves them again; after the reload, `scimd tenant \
                         purge {name} --yes{c}` removes them for good (`scimd export --tenant \
                         {name}{c} --out {name}.jsonl` first keeps a copy)."
                    ),
                }
                say_still_refused(&config);
                ExitCode::SUCCESS
            }
            Err(e) => {
                edit_failed(&e, &config);
                ExitCode::from(2)
            }
        },
        Command::Tenant {
            action:
                TenantAction::Add {
                    name,
                    config,
                    token_name,
                    display_name,
                    keep_data,
                },
        } => match refuse_leftover(&config, &name, keep_data).and_then(|()| {
            scimd::config_edit::add_tenant(&config, &name, &token_name, display_name.as_deref())
                .map_err(|e| edit_message(&e, &config))
        }) {
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
                // A file with problems elsewhere is read around them for the address.
                let (base, note) = loaded
                    .map_or_else(|e| e.parsed.or(e.salvaged).map(|c| *c), Some)
                    .map(|c| base_url(&c.server, &c.server.listen))
                    .unwrap_or_default();
                say!(
                    "Added tenant {name} to {}. Load it with `systemctl reload scimd` (or SIGHUP); a scimd not yet started reads it when it starts.",
                    config.display()
                );
                say!();
                say!("Paste these two values into your identity provider:");
                // A Base URL built from a public_url check-config refuses is not one to paste.
                if problems.iter().any(|p| p.starts_with("server.public_url")) {
                    say!(
                        "  Base URL:     (none yet: fix server.public_url, listed below; it is then \
                         that URL followed by /tenants/{name}/scim/v2)"
                    );
                } else if base.is_empty() {
                    say!(
                        "  Base URL:     (none yet: fix the file's problems, listed below; it is then \
                         server.public_url followed by /tenants/{name}/scim/v2)"
                    );
                } else {
                    say!("  Base URL:     {base}/tenants/{name}/scim/v2");
                }
                say!("  Bearer token: {tok}");
                say!();
                // Okta refuses a Base URL with an underscore anywhere.
                if base.contains('_') {
                    say!(
                        "Okta refuses a Base URL with an underscore, as server.public_url has: \
                         change it (a host name with hyphens) if Okta will provision."
                    );
                } else if name.contains('_') {
                    say!(
                        "Okta refuses a Base URL with an underscore: give Okta {base}/scim/v2 \
                         instead (the token selects the tenant)."
                    );
                }
                if let Some(n) = note {
                    say!("{n}");
                }
                say!("The token is shown only now; scimd keeps only its SHA-256.");
                say_problems(&problems);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(2)
            }
        },
    }
}

fn say_line(args: std::fmt::Arguments) {
    use std::io::Write;
    say_with(|out| out.write_fmt(args).and_then(|()| out.write_all(b"\n")));
}

/// Write to standard output as `say!` does: a closed pipe ends the command quietly (141), a
/// failed write with a message (1).
fn say_with(write: impl FnOnce(&mut std::io::StdoutLock) -> std::io::Result<()>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = write(&mut out).and_then(|()| out.flush()) {
        output_failed(&e);
    }
}

/// A file standard output is written to under a temporary name (`export --out`), removed
/// when a write fails: the exit below runs no destructor.
static PARTIAL_OUTPUT: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// End the command for a failed write to standard output: quietly (141) for a closed pipe,
/// else with a message (1).
fn output_failed(e: &std::io::Error) -> ! {
    if let Some(p) = PARTIAL_OUTPUT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    {
        let _ = std::fs::remove_file(p);
    }
    if e.kind() != std::io::ErrorKind::BrokenPipe {
        eprintln!("scimd: cannot write the output: {e}");
    }
    // 141 is how a shell reports a command ended by a closed pipe (128 + SIGPIPE).
    let code = if e.kind() == std::io::ErrorKind::BrokenPipe {
        141
    } else {
        1
    };
    std::process::exit(code);
}

/// Run as root, check-config reads what the service user may not: say what that user cannot
/// reach, as the service would fail on it at start. The service user is whoever owns
/// storage.dir (a source install may name it otherwise than the package's `scimd`); for a
/// storage.dir not made yet, the package's user if there is one and the file is the
/// package's (in that user's group, as the package installs it: another file is a setup of
/// the admin's own, a test's say). A storage.dir root owns is a setup run as root: nobody
/// else's concern. Returns the user's name and the problems.
fn service_user_problems(cfg: &Config, file: &std::path::Path) -> (String, Vec<String>) {
    use cli::access::{Account, SERVICE_USER, name_of, running_as_root};
    use std::os::unix::fs::MetadataExt;
    let user = match std::fs::metadata(&cfg.storage.dir) {
        _ if !running_as_root() => None,
        Ok(m) if m.uid() == 0 => None,
        Ok(m) => name_of(m.uid()).and_then(|n| Account::local(&n)),
        Err(_) => Account::local(SERVICE_USER).filter(|a| {
            std::fs::metadata(file).is_ok_and(|m| m.gid() != 0 && a.gids.contains(&m.gid()))
        }),
    };
    let Some(user) = user else {
        return (String::new(), Vec::new());
    };
    let mut paths: Vec<(&str, &std::path::Path, u32)> = vec![("the configuration file", file, 4)];
    if !cfg.server.plain_http {
        paths.extend(cfg.tls.cert.as_deref().map(|p| ("tls.cert", p, 4)));
        paths.extend(cfg.tls.key.as_deref().map(|p| ("tls.key", p, 4)));
    }
    // The directory, and what an earlier run as root may have left in it; one not made
    // yet is made by the service in the nearest directory there is.
    let dir = cfg.storage.dir.as_path();
    let db = cfg.storage.db_path();
    let tls = dir.join("tls");
    let key = tls.join("key.pem");
    let mut missing = None;
    match dir.ancestors().find(|d| d.exists()) {
        Some(d) if d == dir => {
            paths.push(("storage.dir", dir, 7));
            paths.extend(db.exists().then_some(("storage.dir", db.as_path(), 6)));
            paths.extend(tls.exists().then_some(("storage.dir", tls.as_path(), 7)));
            paths.extend(key.exists().then_some(("storage.dir", key.as_path(), 4)));
        }
        Some(d) => missing = Some(d),
        None => {}
    }
    // Every obstacle at once, each said once: a directory above several of the files is
    // named for the first of them only.
    let mut said: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (what, path, want) in paths {
        for why in user.cannot(path, want) {
            if !said.contains(&why) {
                out.push(format!("{what}: {why}"));
                said.push(why);
            }
        }
    }
    if let Some(d) = missing {
        let blocked = user.cannot(d, 3);
        // Its own mode is what `install -d` below answers.
        let above = blocked
            .iter()
            .filter(|w| w.contains("cannot enter the directory"));
        for why in above.filter(|w| !said.contains(w)) {
            out.push(format!("storage.dir: {why}"));
        }
        if !blocked.is_empty() {
            out.push(format!(
                "storage.dir: {} does not exist yet, and the user {} cannot make it in {}: \
                 `install -d -o {1} -g {1} -m 0700 {0}`",
                dir.display(),
                user.name,
                d.display()
            ));
        }
    }
    (user.name, out)
}

/// ` --config FILE` for a command suggested to the admin, when `config` is not the default
/// file: pasted as printed, the command then reads the same file.
fn config_arg(config: &std::path::Path) -> String {
    let path = config.display().to_string();
    if config == std::path::Path::new("/etc/scimd/scimd.toml") {
        String::new()
    } else if path.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
        // Quoted for the shell, a quote inside as '\''.
        format!(" --config '{}'", path.replace('\'', "'\\''"))
    } else {
        format!(" --config {path}")
    }
}

#[cfg(test)]
mod tests {
    use super::config_arg;
    use std::path::Path;

    #[test]
    fn a_suggested_config_path_pastes_as_printed() {
        assert_eq!(config_arg(Path::new("/etc/scimd/scimd.toml")), "");
        assert_eq!(config_arg(Path::new("./s.toml")), " --config ./s.toml");
        assert_eq!(
            config_arg(Path::new("/srv/my scimd/it's.toml")),
            " --config '/srv/my scimd/it'\\''s.toml'"
        );
    }
}
