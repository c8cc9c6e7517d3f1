//! Configuration: a TOML file read through figment, with `SCIMD_`-prefixed environment
//! variables overriding server, TLS, storage and log keys (tenants come from the file only,
//! so there is one place an admin audits). Every problem is reported with its key path.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub storage: StorageConfig,
    pub log: LogConfig,
    pub tenants: BTreeMap<String, TenantConfig>,
    /// SHA-256 of the file's bytes as read, to tell whether the file on disk still says
    /// what a running daemon loaded (never shown). Not a key of the file.
    #[serde(skip)]
    pub file_digest: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub listen: String,
    /// The URL IdPs use (scheme, host, port), for `meta.location`; from the Host header if unset.
    pub public_url: Option<String>,
    /// Serve plain HTTP instead of TLS. Refused unless `listen` is a loopback address.
    pub plain_http: bool,
    /// Where `/sso/login_redirect` sends people when their tenant sets no `login_redirect_url`.
    pub login_redirect_url: Option<String>,
    /// SHA-256 hex of the bearer token that may read `/metrics`; without it `/metrics` is off.
    pub metrics_token_sha256: Option<String>,
    /// Largest request body accepted, in bytes (413 above it).
    pub max_body_bytes: usize,
    /// Largest page a list or search returns (`filter.maxResults`).
    pub max_results: u64,
    /// Longest filter accepted, in bytes (400 `invalidFilter` above it).
    pub max_filter_length: usize,
    /// Deepest nesting of parentheses, `not` and brackets in a filter.
    pub max_filter_depth: usize,
    /// Most operations in one PATCH request (400 `tooMany` above it).
    pub max_patch_operations: usize,
    /// Most simultaneous connections; further ones wait in the kernel backlog.
    pub max_connections: usize,
    /// MiB of answers a connection's client may leave unread before that connection's next
    /// list or search waits for it to read (503 after `request_timeout_secs`).
    pub max_unread_mb: u64,
    /// Seconds a client may take to send request headers (and to finish a TLS handshake).
    pub header_timeout_secs: u64,
    /// Seconds a whole request may take, body included.
    pub request_timeout_secs: u64,
    /// On SIGTERM, seconds open requests get to finish before connections are closed.
    pub shutdown_grace_secs: u64,
}

impl ServerConfig {
    /// `public_url` without a trailing `/`, and without a SCIM path (`/scim/v2`,
    /// `/tenants/NAME/scim/v2`) pasted into it by mistake; a reverse proxy's prefix stays.
    pub fn public_base(&self) -> Option<&str> {
        let u = self.public_url.as_deref()?;
        let u = match scim_base_in(u) {
            Some(base) => &u[..u.len() - base.len()],
            None => u,
        };
        Some(u.trim_end_matches('/'))
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8443".into(),
            public_url: None,
            plain_http: false,
            login_redirect_url: None,
            metrics_token_sha256: None,
            max_body_bytes: 1024 * 1024,
            max_results: 1000,
            max_filter_length: crate::scim::filter::MAX_FILTER_LEN,
            max_filter_depth: crate::scim::filter::MAX_DEPTH,
            max_patch_operations: crate::scim::patch::MAX_OPERATIONS,
            max_connections: 1024,
            max_unread_mb: 16,
            header_timeout_secs: 15,
            request_timeout_secs: 60,
            shutdown_grace_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first).
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// Generate a self-signed certificate in the state directory on first start (evaluation).
    pub self_signed: bool,
    /// Seconds between checks for renewed certificate files (0: only on SIGHUP).
    #[serde(default = "default_watch")]
    pub watch_secs: u64,
}

fn default_watch() -> u64 {
    30
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// State directory: holds `scimd.redb` and, with `tls.self_signed`, `tls/`.
    pub dir: PathBuf,
    /// redb page cache, in MiB.
    pub cache_mb: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            dir: PathBuf::from("/var/lib/scimd"),
            cache_mb: 16,
        }
    }
}

impl StorageConfig {
    pub fn db_path(&self) -> PathBuf {
        self.dir.join("scimd.redb")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace` (RUST_LOG overrides).
    pub level: String,
    /// `text` (one plain line per event; no colours unless on a terminal) or `json`.
    pub format: String,
}

/// The first part of a `log.level` that names no level. A bare word is read by the log
/// filter as a module name, so a typo such as "verbose" would silently turn off every line.
pub fn bad_log_level(level: &str) -> Option<&str> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let is_level = |w: &str| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(w.trim()));
    level
        .split(',')
        .map(str::trim)
        .find(|part| match part.split_once('=') {
            Some((target, lvl)) => target.trim().is_empty() || !is_level(lvl),
            None => !is_level(part),
        })
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Requests per second this tenant may make; over it, 429 with Retry-After. Off when unset.
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// Requests allowed in a burst above the rate (default: one second's worth, at least 1).
    #[serde(default)]
    pub rate_burst: Option<u32>,
    /// Where `/tenants/NAME/sso/login_redirect` sends people (the application's login page).
    #[serde(default)]
    pub login_redirect_url: Option<String>,
    /// Schema extensions this tenant's Users or Groups carry (`[[tenants.NAME.extensions]]`).
    #[serde(default)]
    pub extensions: Vec<ExtensionConfig>,
    /// Paid-plan settings; without them the plan endpoints answer 404.
    #[serde(default)]
    pub plan: Option<PlanConfig>,
    /// Attribute paths the IdP sets at creation only; its later changes to them are ignored
    /// (the application owns them afterwards), and the change feed says so.
    #[serde(default)]
    pub create_only: Vec<String>,
    /// Change-feed events kept for this tenant (oldest trimmed first). Default 100000.
    #[serde(default)]
    pub events_max_count: Option<u64>,
    /// Change-feed events older than this many days are trimmed. Default: no age limit.
    #[serde(default)]
    pub events_max_age_days: Option<u64>,
    /// Log each request of this tenant with its body, secrets withheld: to see what a new
    /// IdP sends (idp-notes §4.4). Off by default, as bodies carry people's details.
    #[serde(default)]
    pub log_bodies: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Shown in logs instead of the token.
    pub name: String,
    /// Lower-case hex SHA-256 of the token (`scimd token` prints it).
    pub sha256: String,
    /// `provision` (default): full SCIM access. `read`: GET, `.search`; every write is 403.
    #[serde(default)]
    pub scope: Scope,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    #[default]
    Provision,
    Read,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// The plan's name, shown in answers and errors.
    pub name: String,
    /// Up to this many active provisioned users the tenant is in testing mode.
    #[serde(default = "default_threshold")]
    pub test_threshold: u64,
    /// Paid seats; unset means unlimited.
    #[serde(default)]
    pub seats: Option<u64>,
    /// What a create or reactivation beyond `seats` does: `reject` (403) or `free`.
    #[serde(default)]
    pub on_seat_limit: SeatLimitPolicy,
    /// userNames or emails of people on the paid plan before provisioning was switched on.
    #[serde(default)]
    pub existing_members: Vec<String>,
}

fn default_threshold() -> u64 {
    10
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SeatLimitPolicy {
    #[default]
    Reject,
    Free,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: None,
            key: None,
            self_signed: false,
            watch_secs: default_watch(),
        }
    }
}

/// A schema extension declared in the configuration (RFC 7643 §7 characteristics).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct ExtensionConfig {
    /// The schema URN, e.g. `urn:ietf:params:scim:schemas:extension:acme:2.0:User`.
    pub urn: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// `User` (default) or `Group`.
    #[serde(default = "default_resource")]
    pub resource: String,
    pub attributes: Vec<AttributeConfig>,
}

fn default_resource() -> String {
    "User".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct AttributeConfig {
    pub name: String,
    /// string, boolean, integer, decimal, dateTime, reference, binary or complex.
    #[serde(rename = "type", default = "default_type")]
    pub ty: String,
    #[serde(default)]
    pub multi_valued: bool,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub case_exact: bool,
    /// readWrite (default), readOnly, immutable or writeOnly.
    #[serde(default = "default_mutability")]
    pub mutability: String,
    /// default (default), always, request or never.
    #[serde(default = "default_returned")]
    pub returned: String,
    /// none (default) or server.
    #[serde(default = "default_uniqueness")]
    pub uniqueness: String,
    #[serde(default)]
    pub canonical_values: Vec<String>,
    #[serde(default)]
    pub reference_types: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// For `complex`: its sub-attributes (which cannot be complex themselves).
    #[serde(default)]
    pub sub_attributes: Vec<AttributeConfig>,
}

fn default_type() -> String {
    "string".into()
}
fn default_mutability() -> String {
    "readWrite".into()
}
fn default_returned() -> String {
    "default".into()
}
fn default_uniqueness() -> String {
    "none".into()
}

fn check_attribute(key: &str, a: &AttributeConfig, nested: bool, p: &mut Vec<String>) {
    let valid = a.name.starts_with(|c: char| c.is_ascii_alphabetic())
        && a.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        p.push(format!(
            "{key}.name: \"{}\" is not a SCIM attribute name (letters, digits, '-' and '_')",
            a.name
        ));
    }
    let types = [
        "string",
        "boolean",
        "integer",
        "decimal",
        "dateTime",
        "reference",
        "binary",
        "complex",
    ];
    if !types.contains(&a.ty.as_str()) {
        p.push(format!(
            "{key}.type: \"{}\" is not one of {}",
            a.ty,
            types.join(", ")
        ));
    }
    if a.ty == "complex" && nested {
        p.push(format!(
            "{key}.type: a sub-attribute cannot be complex (RFC 7643 §2.3.8)"
        ));
    }
    if a.ty == "complex" && a.sub_attributes.is_empty() {
        p.push(format!(
            "{key}.sub_attributes: a complex attribute needs sub-attributes"
        ));
    }
    if a.ty != "complex" && !a.sub_attributes.is_empty() {
        p.push(format!(
            "{key}.sub_attributes: only a complex attribute has sub-attributes"
        ));
    }
    for (field, v, allowed) in [
        (
            "mutability",
            &a.mutability,
            &["readWrite", "readOnly", "immutable", "writeOnly"][..],
        ),
        (
            "returned",
            &a.returned,
            &["default", "always", "request", "never"][..],
        ),
        ("uniqueness", &a.uniqueness, &["none", "server"][..]),
    ] {
        if !allowed.contains(&v.as_str()) {
            p.push(format!(
                "{key}.{field}: \"{v}\" is not one of {}",
                allowed.join(", ")
            ));
        }
    }
    // scimd stores neither: a readOnly value only the server could set, and a writeOnly
    // one is taken and dropped, so every write would be refused as missing it.
    if a.required && matches!(a.mutability.as_str(), "readOnly" | "writeOnly") {
        p.push(format!(
            "{key}.required: a {} attribute cannot be required: {}",
            a.mutability,
            if a.mutability == "readOnly" {
                "no client may set it, and scimd sets no extension values itself"
            } else {
                "scimd never stores writeOnly values"
            }
        ));
    }
    if a.uniqueness == "server" && (a.ty == "complex" || a.multi_valued || nested) {
        p.push(format!(
            "{key}.uniqueness: only single-valued top-level attributes can be unique"
        ));
    }
    // A 409 on a value no one may read back would tell any writer that someone holds it;
    // and a writeOnly value is never stored, so there is nothing to be unique against.
    if a.uniqueness == "server" && (a.returned == "never" || a.mutability == "writeOnly") {
        p.push(format!(
            "{key}.uniqueness: a value that is never returned cannot be unique (a conflict \
             would tell whoever writes it that someone holds it)"
        ));
    }
    for (i, sub) in a.sub_attributes.iter().enumerate() {
        check_attribute(&format!("{key}.sub_attributes[{i}]"), sub, true, p);
    }
}

/// Everything wrong with a configuration, one line per problem.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration {}:\n{}", file.display(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<String>,
    /// The configuration as read, when only the semantic checks failed.
    pub parsed: Option<Box<Config>>,
}

impl Config {
    /// Read `path`, apply `SCIMD_` environment overrides, and validate.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let fail = |problems: Vec<String>| ConfigError {
            file: path.to_path_buf(),
            problems,
            parsed: None,
        };
        // figment's file provider quietly yields nothing for a missing file; check first.
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => return Err(fail(vec![format!("cannot read the file: {e}")])),
        };
        // Whoever can write the file decides who may provision: refuse a file anyone can edit.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(m) = std::fs::metadata(path)
                && m.permissions().mode() & 0o002 != 0
            {
                return Err(fail(vec![format!(
                    "the file is writable by every user, so anyone could add a token; run `chmod o-w {}`",
                    path.display()
                )]));
            }
        }
        let with_env = |fig: Figment| {
            fig.merge(
                // Only the sections that may be overridden: tenants stay file-only, and
                // unrelated SCIMD_* variables in the environment are not config keys.
                Env::prefixed("SCIMD_").split("__").filter(|k| {
                    let section = k.as_str().split(['.', '_']).next().unwrap_or("");
                    matches!(
                        section.to_ascii_lowercase().as_str(),
                        "server" | "tls" | "storage" | "log"
                    )
                }),
            )
        };
        let defaults = || Figment::from(Serialized::defaults(Config::default()));
        // Relative paths in the file are relative to the file, so the same config works
        // whatever directory scimd is started from.
        let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
        let settle = |mut cfg: Config| {
            cfg.storage.dir = absolutize(&base, &cfg.storage.dir);
            cfg.tls.cert = cfg.tls.cert.as_deref().map(|p| absolutize(&base, p));
            cfg.tls.key = cfg.tls.key.as_deref().map(|p| absolutize(&base, p));
            cfg
        };
        let mut cfg: Config = match with_env(defaults().merge(Toml::file_exact(path))).extract() {
            Ok(c) => settle(c),
            Err(e) => {
                // Deserializing stops at the first unknown key. A key typed wrong is the
                // common mistake, and there may be several: each is taken out of a copy of
                // the file and the copy read again, so that one run names them all.
                let mut problems = figment_problems(e.clone(), false);
                let mut doc = std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|t| t.parse::<toml_edit::DocumentMut>().ok());
                let mut last = e;
                for _ in 0..32 {
                    let Some(d) = doc.as_mut() else {
                        break;
                    };
                    if !drop_unknown_keys(d, &last) {
                        break;
                    }
                    match with_env(defaults().merge(Toml::string(&d.to_string())))
                        .extract::<Config>()
                    {
                        Ok(c) => {
                            problems.extend(settle(c).problems());
                            break;
                        }
                        Err(e) => {
                            problems.extend(figment_problems(e.clone(), true));
                            last = e;
                        }
                    }
                }
                problems.dedup();
                return Err(fail(problems));
            }
        };
        cfg.file_digest = crate::auth::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        let problems = cfg.problems();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError {
                problems,
                parsed: Some(Box::new(cfg)),
                ..fail(Vec::new())
            })
        }
    }

    /// What is allowed but unwise, for `check-config` and the log at start and reload.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        // A private key every user can read lets anyone on the host impersonate the server.
        // Only a warning: container secrets are mounted 0644 or 0444 in directories only
        // the service can enter.
        #[cfg(unix)]
        if let (Some(k), false) = (&self.tls.key, self.server.plain_http) {
            use std::os::unix::fs::PermissionsExt;
            if std::fs::metadata(k).is_ok_and(|m| m.permissions().mode() & 0o004 != 0) {
                w.push(format!(
                    "tls.key: {} is readable by every user; unless its directory keeps them \
                     out, run `chmod o-r {0}` (group scimd, mode 0640, is what the service needs)",
                    k.display()
                ));
            }
        }
        // idp-notes §9: Okta refuses a Base URL whose host name has an underscore.
        if let Some(host) = self
            .server
            .public_url
            .as_deref()
            .and_then(|u| u.split_once("://"))
            .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or(""))
            && host.contains('_')
        {
            w.push(format!(
                "server.public_url: the host name \"{host}\" has an underscore, which Okta \
                 refuses in a Base URL; use a name with hyphens if Okta will provision"
            ));
        }
        // A Base URL pasted here would be doubled in every Location and in the Base URLs
        // scimd prints (`…/scim/v2/scim/v2`): its SCIM part is left out (`public_base`).
        // Refusing it would stop a running service at its next start over a mistake it
        // can read past.
        if let Some(u) = &self.server.public_url
            && let Some(base) = scim_base_in(u)
        {
            w.push(format!(
                "server.public_url: {u:?} ends in the SCIM path {base}, which scimd adds \
                 itself; it uses {:?}. Give the address only (such as \
                 https://scim.corp.example:8443)",
                self.server.public_base().unwrap_or_default()
            ));
        }
        for (name, plan) in self
            .tenants
            .iter()
            .filter_map(|(n, t)| t.plan.as_ref().map(|p| (n, p)))
        {
            let mut seen = HashMap::new();
            for (i, m) in plan.existing_members.iter().enumerate() {
                let first = *seen.entry(m.trim().to_lowercase()).or_insert(i);
                if first != i {
                    w.push(format!(
                        "tenants.{name}.plan.existing_members[{i}]: \"{m}\" repeats entry \
                         [{first}] (matching ignores case); it counts once"
                    ));
                }
            }
        }
        for name in self
            .tenants
            .iter()
            .filter(|(_, t)| t.log_bodies)
            .map(|(n, _)| n)
        {
            w.push(format!(
                "tenants.{name}.log_bodies: every request of this tenant is logged with its \
                 body (passwords withheld, but names and email addresses in full); set it \
                 back to false and reload once you have seen what the IdP sends"
            ));
        }
        if self.server.plain_http && (self.tls.cert.is_some() || self.tls.key.is_some()) {
            w.push(
                "tls.cert, tls.key: not used, as server.plain_http serves without TLS".to_string(),
            );
        }
        for (name, _) in self
            .tenants
            .iter()
            .filter(|(_, t)| t.rate_burst.is_some() && t.rate_limit.is_none())
        {
            w.push(format!(
                "tenants.{name}.rate_burst: has no effect without rate_limit (the tenant is \
                 not rate limited)"
            ));
        }
        for name in self.tenants.keys().filter(|n| n.contains('_')) {
            w.push(format!(
                "tenants.{name}: the name has an underscore, which Okta refuses in a Base URL \
                 (…/tenants/{name}/scim/v2); give Okta …/scim/v2, where the token selects \
                 the tenant, or use a name with hyphens"
            ));
        }
        w
    }

    /// Semantic checks; every problem names its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        match self.server.listen.parse::<SocketAddr>() {
            Err(_) => p.push(format!(
                "server.listen: \"{}\" is not an address:port such as 0.0.0.0:8443",
                self.server.listen
            )),
            Ok(a) if self.server.plain_http && !a.ip().is_loopback() => p.push(format!(
                "server.plain_http: plain HTTP is only allowed on a loopback address, and \
                 server.listen is {a}; use TLS or listen on 127.0.0.1"
            )),
            Ok(_) => {}
        }
        // http:// only names a plain_http server (a local test); IdPs are given https://.
        let scheme = |u: &str, s: &str| u.get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s));
        if let Some(u) = &self.server.public_url
            && !(scheme(u, "https://") || (self.server.plain_http && scheme(u, "http://")))
        {
            p.push(format!(
                "server.public_url: {u:?} must start with https:// (e.g. https://scim.corp.example:8443){}",
                if scheme(u, "http://") {
                    "; http:// is only for a server.plain_http test server"
                } else {
                    ""
                }
            ));
        }
        // Every Location and Base URL is built on it: a query or fragment would end up in
        // the middle of them, user:password@ would be sent to every client, and a space or
        // line break would break the header (and the log line that names it).
        if let Some(u) = &self.server.public_url
            && let Some(why) = not_a_base(u)
        {
            p.push(format!("server.public_url: {u:?} {why}"));
        }
        check_redirect(
            "server.login_redirect_url",
            self.server.login_redirect_url.as_deref(),
            &mut p,
        );
        if let Some(bad) = bad_log_level(&self.log.level) {
            p.push(format!(
                "log.level: \"{bad}\" is not a level; use error, warn, info, debug or trace \
                 (or target=level parts, such as info,scimd::request=debug)"
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            p.push(format!(
                "log.format: must be \"text\" or \"json\", got \"{}\"",
                self.log.format
            ));
        }
        if let Some(h) = &self.server.metrics_token_sha256
            && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            p.push("server.metrics_token_sha256: expected 64 hex characters (`scimd token --name metrics` prints one)".into());
        }
        if self.server.max_results == 0 {
            p.push("server.max_results: must be at least 1".into());
        }
        if self.server.max_unread_mb == 0 {
            p.push("server.max_unread_mb: must be at least 1 (MiB)".into());
        }
        for (key, secs) in [
            (
                "server.header_timeout_secs",
                self.server.header_timeout_secs,
            ),
            (
                "server.request_timeout_secs",
                self.server.request_timeout_secs,
            ),
        ] {
            if secs == 0 {
                p.push(format!("{key}: must be at least 1 (seconds)"));
            }
        }
        if self.server.max_filter_length < 64 {
            p.push("server.max_filter_length: must be at least 64".into());
        }
        if !(1..=256).contains(&self.server.max_filter_depth) {
            p.push("server.max_filter_depth: must be between 1 and 256".into());
        }
        if self.server.max_patch_operations == 0 {
            p.push("server.max_patch_operations: must be at least 1".into());
        }
        if self.server.max_body_bytes < 1024 {
            p.push("server.max_body_bytes: must be at least 1024".into());
        }
        if !self.server.plain_http {
            match (&self.tls.cert, &self.tls.key, self.tls.self_signed) {
                (Some(_), Some(_), true) => p.push(
                    "tls.self_signed: set either tls.cert and tls.key, or tls.self_signed = true, not both"
                        .into(),
                ),
                (Some(c), Some(k), false) => {
                    for (key, path) in [("tls.cert", c), ("tls.key", k)] {
                        if let Err(e) = std::fs::File::open(path) {
                            p.push(format!("{key}: cannot read {}: {e}", path.display()));
                        }
                    }
                }
                (None, None, true) => {}
                (None, None, false) => p.push(
                    "tls: no certificate configured; set tls.cert and tls.key to PEM files, or \
                     tls.self_signed = true for evaluation"
                        .into(),
                ),
                (Some(_), None, _) => p.push("tls.key: missing (tls.cert is set)".into()),
                (None, Some(_), _) => p.push("tls.cert: missing (tls.key is set)".into()),
            }
        }
        if self.tenants.is_empty() {
            p.push(
                "tenants: no tenant configured; add one with `scimd tenant add NAME` \
                 (to stop serving the last tenant, stop the service instead)"
                    .into(),
            );
        }
        let mut hashes = HashSet::new();
        for (name, t) in &self.tenants {
            if !valid_tenant_name(name) {
                p.push(format!(
                    "tenants.{name}: tenant names may hold only a-z, 0-9, '-' and '_' (1 to 64 characters)"
                ));
            }
            if t.tokens.is_empty() {
                p.push(format!(
                    "tenants.{name}.tokens: the tenant has no token; add one with `scimd token`"
                ));
            }
            check_redirect(
                &format!("tenants.{name}.login_redirect_url"),
                t.login_redirect_url.as_deref(),
                &mut p,
            );
            if let Some(r) = t.rate_limit
                && !(r.is_finite() && r > 0.0)
            {
                p.push(format!(
                    "tenants.{name}.rate_limit: must be a positive number of requests per second (remove it for no limit)"
                ));
            }
            for (k, v) in [
                ("events_max_count", t.events_max_count),
                ("events_max_age_days", t.events_max_age_days),
            ] {
                if v == Some(0) {
                    p.push(format!(
                        "tenants.{name}.{k}: must be at least 1 (remove it for the default)"
                    ));
                }
            }
            // The tenant's own extensions are paths too.
            let users = crate::extensions::resource_type(crate::scim::schema::Kind::User, t);
            for (i, path) in t.create_only.iter().enumerate() {
                let attr = match crate::scim::path::parse(users, path) {
                    Ok(crate::scim::path::Parsed::Known(k)) if k.filter.is_none() => k.attr,
                    _ => {
                        p.push(format!(
                            "tenants.{name}.create_only[{i}]: \"{path}\" is not a User attribute path (e.g. timezone or name.givenName)"
                        ));
                        continue;
                    }
                };
                // What IdPs match and deprovision by, and what the server keeps itself.
                if attr.ext.is_none()
                    && matches!(
                        attr.def.name,
                        "id" | "externalId" | "userName" | "active" | "groups" | "meta" | "schemas"
                    )
                {
                    p.push(format!(
                        "tenants.{name}.create_only[{i}]: \"{path}\" cannot be create-only: the IdP must be able to change it (it renames, matches and deactivates users by it), or the server sets it"
                    ));
                }
            }
            let mut urns = HashSet::new();
            for (i, e) in t.extensions.iter().enumerate() {
                let key = format!("tenants.{name}.extensions[{i}]");
                let builtin = [
                    crate::scim::schema::USER_SCHEMA,
                    crate::scim::schema::GROUP_SCHEMA,
                    crate::scim::schema::ENTERPRISE_SCHEMA,
                ];
                if !e.urn.starts_with("urn:") || e.urn.contains(char::is_whitespace) {
                    p.push(format!("{key}.urn: \"{}\" must be a URN such as urn:ietf:params:scim:schemas:extension:acme:2.0:User", e.urn));
                } else if builtin.iter().any(|b| b.eq_ignore_ascii_case(&e.urn)) {
                    p.push(format!("{key}.urn: \"{}\" is a built-in schema", e.urn));
                } else if !urns.insert(e.urn.to_ascii_lowercase()) {
                    p.push(format!("{key}.urn: \"{}\" is declared twice", e.urn));
                }
                if e.resource != "User" && e.resource != "Group" {
                    p.push(format!(
                        "{key}.resource: must be \"User\" or \"Group\", got \"{}\"",
                        e.resource
                    ));
                }
                if e.attributes.is_empty() {
                    p.push(format!(
                        "{key}.attributes: an extension needs at least one attribute"
                    ));
                }
                let mut names = HashSet::new();
                for (j, a) in e.attributes.iter().enumerate() {
                    check_attribute(&format!("{key}.attributes[{j}]"), a, false, &mut p);
                    if !names.insert(a.name.to_ascii_lowercase()) {
                        p.push(format!(
                            "{key}.attributes[{j}].name: \"{}\" is declared twice",
                            a.name
                        ));
                    }
                }
            }
            if let Some(plan) = &t.plan {
                if plan.name.trim().is_empty() {
                    p.push(format!("tenants.{name}.plan.name: must not be empty"));
                }
                if plan.seats == Some(0) {
                    p.push(format!("tenants.{name}.plan.seats: must be at least 1 (remove it for unlimited seats)"));
                }
                for (i, m) in plan.existing_members.iter().enumerate() {
                    if m.trim().is_empty() {
                        p.push(format!(
                            "tenants.{name}.plan.existing_members[{i}]: must not be empty \
                             (a userName or an email)"
                        ));
                    }
                }
            }
            let mut names = HashSet::new();
            for (i, tok) in t.tokens.iter().enumerate() {
                let key = format!("tenants.{name}.tokens[{i}]");
                if tok.name.trim().is_empty() {
                    p.push(format!("{key}.name: must not be empty"));
                } else if !names.insert(tok.name.as_str()) {
                    p.push(format!(
                        "{key}.name: \"{}\" is used twice in this tenant",
                        tok.name
                    ));
                }
                let h = &tok.sha256;
                if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    // The token itself pasted in place of its hash (never echoed).
                    let hex = |t: &str| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit());
                    let pasted = if h.starts_with("scimd_") {
                        " (this looks like a token: the file takes its SHA-256, which \
                         `scimd token` prints beside it)"
                    } else if h
                        .get(..7)
                        .is_some_and(|p| p.eq_ignore_ascii_case("sha256:"))
                        && hex(&h[7..])
                    {
                        " (drop the \"sha256:\" in front)"
                    } else if h.trim() != h && hex(h.trim()) {
                        " (drop the spaces around it)"
                    } else {
                        ""
                    };
                    p.push(format!(
                        "{key}.sha256: expected 64 hex characters (got {}){pasted}; generate a token and its hash with `scimd token`",
                        h.len()
                    ));
                } else if !hashes.insert(h.to_ascii_lowercase()) {
                    p.push(format!(
                        "{key}.sha256: the same token is configured more than once; each token must belong to one tenant"
                    ));
                }
            }
        }
        p
    }
}

/// What keeps `url` from being the start of every URL scimd gives out, if anything.
fn not_a_base(url: &str) -> Option<&'static str> {
    let uri = match url.parse::<http::Uri>() {
        Ok(u) => u,
        Err(_) => return Some("is not a URL (no spaces or control characters)"),
    };
    let authority = uri.authority()?;
    if url.contains(['?', '#']) || authority.as_str().contains('@') {
        return Some("may hold only a scheme, a host, a port and a path (no user@, ? or #)");
    }
    if uri.host().is_none_or(str::is_empty) {
        return Some("has no host");
    }
    if authority
        .as_str()
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.ends_with(']'))
        && authority.port_u16().is_none()
    {
        return Some("has a port that is not a number from 1 to 65535");
    }
    None
}

/// The SCIM part of a URL's path (`/scim/v2…` or `/tenants/NAME/scim/v2…`), if it has one.
fn scim_base_in(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = &rest[rest.find('/')?..];
    // Whole segments only: `/scim/v2x` or `/tenantsx` is some proxy's prefix.
    let segments: Vec<(usize, String)> = path
        .match_indices('/')
        .map(|(i, _)| {
            let seg = path[i + 1..].split('/').next().unwrap_or("");
            (i, seg.to_ascii_lowercase())
        })
        .collect();
    let at = segments.iter().enumerate().find_map(|(n, (i, seg))| {
        let next = segments.get(n + 1).map(|(_, s)| s.as_str());
        match seg.as_str() {
            "scim" if next == Some("v2") => Some(*i),
            // `/tenants/NAME`, with or without the `/scim/v2` after it.
            "tenants" if next.is_some_and(|s| !s.is_empty()) => {
                let after = segments.get(n + 2).map(|(_, s)| s.as_str());
                matches!(after, None | Some("") | Some("scim")).then_some(*i)
            }
            _ => None,
        }
    })?;
    Some(&path[at..])
}

/// A redirect target must be an absolute http(s) URL with a host and nothing that could
/// break out of the Location header.
fn check_redirect(key: &str, url: Option<&str>, p: &mut Vec<String>) {
    let Some(u) = url else { return };
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"));
    let host_ok = rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'));
    if !host_ok || u.chars().any(|c| c.is_control() || c.is_whitespace()) {
        p.push(format!(
            "{key}: \"{u}\" must be an absolute https:// (or http://) URL such as https://app.example.com/login"
        ));
    } else if !u.is_ascii() {
        // It goes out as a Location header, which is ASCII (RFC 9110 §5.5).
        p.push(format!(
            "{key}: \"{u}\" has characters outside ASCII; percent-encode them (and write the host in its xn-- form)"
        ));
    }
}

pub fn valid_tenant_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn absolutize(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Take every key `err` reports as unknown out of `doc`; whether any was.
fn drop_unknown_keys(doc: &mut toml_edit::DocumentMut, err: &figment::Error) -> bool {
    let mut dropped = false;
    for e in err.clone() {
        let figment::error::Kind::UnknownField(found, _) = &e.kind else {
            continue;
        };
        // The path ends in the unknown key itself; what comes before leads to its table.
        let parents: Vec<&String> = e.path.iter().filter(|s| s.as_str() != "default").collect();
        let Some((_, parents)) = parents.split_last() else {
            continue;
        };
        dropped |= table_at(doc.as_item_mut(), parents).is_some_and(|t| t.remove(found).is_some());
    }
    dropped
}

/// The table (or inline table) at `path`: keys, and indexes into arrays.
fn table_at<'a>(
    item: &'a mut toml_edit::Item,
    path: &[&String],
) -> Option<&'a mut dyn toml_edit::TableLike> {
    match path.split_first() {
        None => item.as_table_like_mut(),
        Some((p, rest)) => {
            let next = match p.parse::<usize>() {
                Ok(i) if item.is_array() || item.is_array_of_tables() => item.get_mut(i),
                _ => item.get_mut(p.as_str()),
            }?;
            table_at(next, rest)
        }
    }
}

/// `err`'s problems, one line each. `reread`: the file was read again from a copy with
/// unknown keys taken out, so what is not from the environment is from the file.
fn figment_problems(err: figment::Error, reread: bool) -> Vec<String> {
    err.into_iter()
        .map(|e| {
            let key = e
                .path
                .iter()
                .filter(|s| s.as_str() != "default")
                .cloned()
                .collect::<Vec<_>>()
                .join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(figment::Source::File(_)) => " (in the file)".to_string(),
                    _ if m.name.contains("environment") => {
                        " (from an SCIMD_ environment variable)".to_string()
                    }
                    _ if reread => " (in the file)".to_string(),
                    _ => String::new(),
                })
                .unwrap_or_default();
            // These messages also go to the journal on a reload, and a token pasted where its
            // hash belongs must not. A value of the wrong type is named by its type only...
            let from_env = e
                .metadata
                .as_ref()
                .is_some_and(|m| m.name.contains("environment"));
            let kind = match &e.kind {
                figment::error::Kind::InvalidType(figment::error::Actual::Str(_), expected) => {
                    format!("invalid type: found a string, expected {expected}")
                }
                // figment's own text nests backticks (`one of `a`, `b``).
                figment::error::Kind::UnknownField(found, expected) => {
                    // SCIMD_LOG_LEVEL for SCIMD_LOG__LEVEL: the one underscore is the level.
                    let hint = if from_env && found.contains('_') && !found.contains("__") {
                        format!(
                            "; nested keys take a double underscore, as in SCIMD_{}",
                            found.to_ascii_uppercase().replacen('_', "__", 1)
                        )
                    } else {
                        String::new()
                    };
                    format!(
                        "unknown key \"{found}\"; expected one of {}{hint}",
                        expected.join(", ")
                    )
                }
                figment::error::Kind::UnknownVariant(found, expected) => format!(
                    "unknown value \"{found}\"; expected one of {}",
                    expected.join(", ")
                ),
                k => k.to_string(),
            };
            // ...and a TOML syntax error keeps its position and reason, not the quoted line.
            let kind = kind
                .lines()
                .filter(|l| {
                    !l.trim_start()
                        .trim_start_matches(|c: char| c.is_ascii_digit())
                        .trim_start()
                        .starts_with('|')
                })
                .collect::<Vec<_>>()
                .join(" ");
            if key.is_empty() {
                format!("{kind}{source}")
            } else {
                format!("{key}: {kind}{source}")
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;
    use figment::Jail;

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:0"
[tls]
self_signed = true
[storage]
dir = "data"
[tenants.acme]
tokens = [{ name = "okta", sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" }]
"#;

    #[test]
    fn loads_and_env_overrides_server_keys() {
        Jail::expect_with(|jail| {
            jail.create_file("scimd.toml", GOOD)?;
            jail.set_env("SCIMD_SERVER__MAX_RESULTS", "50");
            jail.set_env("SCIMD_UNRELATED", "x");
            jail.set_env("SCIMD_TENANTS__EVIL__TOKENS", "[]");
            let cfg = Config::load(Path::new("scimd.toml")).map_err(|e| e.to_string())?;
            assert_eq!(cfg.server.max_results, 50);
            assert!(cfg.storage.dir.ends_with("data"));
            assert_eq!(cfg.tenants["acme"].tokens[0].name, "okta");
            assert_eq!(cfg.tenants.len(), 1, "tenants come from the file only");
            Ok(())
        });
    }

    #[test]
    fn existing_members_must_name_someone_and_repeats_are_warned_of() {
        let mut c = Config::default();
        c.tenants.insert(
            "acme".into(),
            TenantConfig {
                plan: Some(PlanConfig {
                    name: "Business".into(),
                    test_threshold: 10,
                    seats: None,
                    on_seat_limit: SeatLimitPolicy::Reject,
                    existing_members: ["a@x", " ", "A@X ", "b@x"].map(Into::into).to_vec(),
                }),
                ..TenantConfig::default()
            },
        );
        assert!(
            c.problems()
                .contains(&"tenants.acme.plan.existing_members[1]: must not be empty (a userName or an email)".to_string()),
            "{:?}",
            c.problems()
        );
        assert_eq!(
            c.warnings(),
            [
                "tenants.acme.plan.existing_members[2]: \"A@X \" repeats entry [0] (matching \
              ignores case); it counts once"
            ]
        );
        let rules = crate::http::plan_rules(c.tenants["acme"].plan.as_ref().unwrap());
        assert_eq!(rules.existing_members, ["a@x", "b@x"]);
    }

    #[test]
    fn an_underscore_in_the_public_host_is_a_warning() {
        let mut c = Config::default();
        c.server.public_url = Some("https://scim_corp.example:8443/".into());
        assert!(c.warnings().iter().any(|w| w.contains("underscore")));
        c.server.public_url = Some("https://scim-corp.example:8443/x_y".into());
        assert!(!c.warnings().iter().any(|w| w.contains("underscore")));
        // A tenant's own Base URL carries its name.
        c.tenants
            .insert("acme_corp".into(), TenantConfig::default());
        c.tenants
            .insert("beta-corp".into(), TenantConfig::default());
        let w = c.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("tenants.acme_corp:"), "{w:?}");
    }

    #[test]
    fn a_burst_without_a_rate_is_a_warning() {
        let mut c = Config::default();
        let t = TenantConfig {
            rate_burst: Some(100),
            ..TenantConfig::default()
        };
        c.tenants.insert("acme".into(), t);
        let w = c.warnings();
        assert!(
            w.len() == 1 && w[0].starts_with("tenants.acme.rate_burst: has no effect"),
            "{w:?}"
        );
        c.tenants.get_mut("acme").unwrap().rate_limit = Some(50.0);
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn certificate_files_with_plain_http_are_a_warning() {
        let mut c = Config::default();
        c.tls.cert = Some("/etc/scimd/tls/fullchain.pem".into());
        assert!(c.warnings().is_empty());
        c.server.plain_http = true;
        let w = c.warnings();
        assert!(w.len() == 1 && w[0].contains("not used"), "{w:?}");
    }

    #[test]
    fn log_levels_and_directives_pass() {
        for ok in [
            "info",
            "DEBUG",
            "warn,scimd::request=debug",
            " error , hyper=off ",
        ] {
            assert_eq!(bad_log_level(ok), None, "{ok}");
        }
        assert_eq!(bad_log_level("verbose"), Some("verbose"));
        assert_eq!(bad_log_level("info,=debug"), Some("=debug"));
    }

    /// Keys typed wrong are all named in one run, with what else is wrong beside them.
    #[test]
    fn every_unknown_key_and_the_problems_past_them_are_named_at_once() {
        Jail::expect_with(|jail| {
            let text = GOOD
                .replace("[tls]", "[tls]\nself_sgned = 1")
                .replace(
                    "listen = \"127.0.0.1:0\"",
                    "listen = \"127.0.0.1:0\"\nlistn = 1",
                )
                .replace(
                    "tokens = [{ name = \"okta\",",
                    "displayname = \"A\"\ntokens = [{ nme = \"x\", name = \"okta\",",
                )
                .replace("9f86", "sha256:9f86")
                + "[tenants.beta]\ntoken = []\n";
            jail.create_file("bad.toml", &text)?;
            let err = Config::load(Path::new("bad.toml")).expect_err("five problems");
            let all = err.problems.join("\n");
            for needle in [
                "tls.self_sgned: unknown key",
                "server.listn: unknown key",
                "tenants.acme.displayname: unknown key",
                "tenants.acme.tokens.0.nme: unknown key",
                "tenants.beta.token: unknown key",
                "(drop the \"sha256:\" in front)",
            ] {
                assert!(all.contains(needle), "{needle} not in:\n{all}");
            }
            assert!(
                err.problems
                    .iter()
                    .all(|p| !p.contains("unknown key") || p.ends_with("(in the file)")),
                "{all}"
            );
            // Read again, relative paths still mean next to the file, not where scimd runs.
            jail.create_dir("sub")?;
            jail.create_file("sub/c.pem", "x")?;
            jail.create_file("sub/k.pem", "x")?;
            let text = GOOD.replace(
                "self_signed = true",
                "cert = \"c.pem\"\nkey = \"k.pem\"\ncolour = 1",
            );
            jail.create_file("sub/typo.toml", &text)?;
            let err = Config::load(Path::new("sub/typo.toml")).expect_err("a typo");
            assert_eq!(err.problems.len(), 1, "{:?}", err.problems);
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key() {
        Jail::expect_with(|jail| {
            let cases = [
                (
                    GOOD.replace("self_signed = true", "self_signed = true\ncolour = 1"),
                    "colour",
                ),
                (
                    GOOD.replace("listen = \"127.0.0.1:0\"", "listen = 5"),
                    "server.listen",
                ),
                (
                    GOOD.replace("tokens = [", "tokens = [] #"),
                    "tenants.acme.tokens",
                ),
                (GOOD.replace("9f86", "zz"), "tenants.acme.tokens[0].sha256"),
                (
                    GOOD.replace(
                        "self_signed = true",
                        "cert = \"nope.pem\"\nkey = \"nope.key\"",
                    ),
                    "tls.cert: cannot read",
                ),
                (GOOD.replace("[tls]", "[server2]"), "server2"),
                (
                    GOOD.replace("[tls]", "[log]\nlevel = \"verbose\"\n[tls]"),
                    "log.level: \"verbose\" is not a level",
                ),
                (
                    GOOD.replace("[tls]", "[log]\nlevel = \"info,scimd=loud\"\n[tls]"),
                    "log.level: \"scimd=loud\"",
                ),
                (GOOD.replace("tenants.acme", "tenants.Acme"), "tenants.Acme"),
            ];
            for (text, needle) in cases {
                jail.create_file("bad.toml", &text)?;
                let err = Config::load(Path::new("bad.toml"))
                    .expect_err(needle)
                    .to_string();
                assert!(err.contains(needle), "{needle} not in: {err}");
            }
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                jail.create_file("open.toml", GOOD)?;
                std::fs::set_permissions("open.toml", std::fs::Permissions::from_mode(0o666))
                    .map_err(|e| e.to_string())?;
                let err = Config::load(Path::new("open.toml"))
                    .expect_err("world-writable")
                    .to_string();
                assert!(
                    err.contains("writable by every user") && err.contains("chmod o-w"),
                    "{err}"
                );
            }
            let err = Config::load(Path::new("missing.toml"))
                .expect_err("missing")
                .to_string();
            assert!(err.contains("cannot read the file"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn extension_declarations_are_checked() {
        let text = format!(
            "{GOOD}\n[[tenants.acme.extensions]]\nurn = \"not-a-urn\"\nname = \"X\"\nresource = \"Widget\"\n\
             [[tenants.acme.extensions.attributes]]\nname = \"a\"\ntype = \"float\"\n\
             [[tenants.acme.extensions.attributes]]\nname = \"c\"\ntype = \"complex\"\n\
             [[tenants.acme.extensions.attributes.sub_attributes]]\nname = \"d\"\ntype = \"complex\"\nuniqueness = \"global\"\n\
             [[tenants.acme.extensions.attributes]]\nname = \"e\"\nuniqueness = \"server\"\nreturned = \"never\"\n\
             [[tenants.acme.extensions.attributes]]\nname = \"f\"\nuniqueness = \"server\"\nmutability = \"writeOnly\"\n\
             [[tenants.acme.extensions.attributes]]\nname = \"g\"\nuniqueness = \"server\"\nreturned = \"request\"\n"
        );
        let c = toml_cfg(&text);
        let p = c.problems().join("\n");
        for needle in [
            "tenants.acme.extensions[0].urn",
            "tenants.acme.extensions[0].resource",
            "tenants.acme.extensions[0].attributes[0].type: \"float\"",
            "attributes[1].sub_attributes[0].type: a sub-attribute cannot be complex",
            "attributes[1].sub_attributes[0].uniqueness",
            "attributes[2].uniqueness: a value that is never returned",
            "attributes[3].uniqueness: a value that is never returned",
        ] {
            assert!(p.contains(needle), "{needle} not in {p}");
        }
        assert!(!p.contains("attributes[4]"), "{p}");
    }

    #[test]
    fn create_only_takes_extension_paths_but_not_what_idps_match_or_deactivate_by() {
        let mut c: Config = toml_cfg(&format!(
            "{GOOD}\n[[tenants.acme.extensions]]\nurn = \"urn:ietf:params:scim:schemas:extension:acme:2.0:User\"\n\
             name = \"AcmeUser\"\n[[tenants.acme.extensions.attributes]]\nname = \"level\"\ntype = \"integer\"\n"
        ));
        let t = c.tenants.get_mut("acme").unwrap();
        t.create_only = vec![
            "timezone".into(),
            "urn:ietf:params:scim:schemas:extension:acme:2.0:User:level".into(),
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department".into(),
        ];
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let t = c.tenants.get_mut("acme").unwrap();
        t.create_only = [
            "active",
            "userName",
            "externalId",
            "id",
            "nickname[x]",
            "nope",
        ]
        .map(String::from)
        .to_vec();
        let p = c.problems().join("\n");
        for i in 0..4 {
            assert!(
                p.contains(&format!("create_only[{i}]: \"")) && p.contains("cannot be create-only"),
                "{i}: {p}"
            );
        }
        assert!(
            p.contains("create_only[4]: \"nickname[x]\" is not a User attribute path"),
            "{p}"
        );
        assert!(p.contains("create_only[5]: \"nope\" is not"), "{p}");
    }

    #[test]
    fn retention_of_zero_and_redirects_outside_ascii_are_refused() {
        let mut c: Config = toml_cfg(GOOD);
        let t = c.tenants.get_mut("acme").unwrap();
        t.events_max_count = Some(0);
        t.events_max_age_days = Some(0);
        t.login_redirect_url = Some("https://app.example/anmeldung-für-alle".into());
        c.server.login_redirect_url = Some("http://intranet.example/login".into());
        let p = c.problems().join("\n");
        for needle in [
            "tenants.acme.events_max_count: must be at least 1",
            "tenants.acme.events_max_age_days: must be at least 1",
            "tenants.acme.login_redirect_url: \"https://app.example/anmeldung-für-alle\" has characters outside ASCII",
        ] {
            assert!(p.contains(needle), "{needle} not in {p}");
        }
        assert!(!p.contains("server.login_redirect_url"), "{p}");
    }

    #[test]
    fn limits_of_zero_are_refused() {
        let mut c: Config = toml_cfg(GOOD);
        c.server.max_results = 0;
        c.server.max_unread_mb = 0;
        c.server.request_timeout_secs = 0;
        let p = c.problems().join("\n");
        for needle in [
            "server.max_results: must be at least 1",
            "server.max_unread_mb: must be at least 1 (MiB)",
            "server.request_timeout_secs: must be at least 1",
        ] {
            assert!(p.contains(needle), "{needle} not in {p}");
        }
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let mut c: Config = toml_cfg(GOOD);
        c.server.plain_http = true;
        c.server.listen = "0.0.0.0:8080".into();
        assert!(
            c.problems()
                .iter()
                .any(|p| p.starts_with("server.plain_http"))
        );
        c.server.listen = "127.0.0.1:8080".into();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
    }

    #[cfg(unix)]
    #[test]
    fn a_private_key_every_user_can_read_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, "c").unwrap();
        std::fs::write(&key, "k").unwrap();
        let mut c: Config = toml_cfg(GOOD);
        c.tls.self_signed = false;
        c.tls.cert = Some(cert);
        c.tls.key = Some(key.clone());
        let warned = |mode: u32| {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
            assert!(c.problems().is_empty(), "{:?}", c.problems());
            c.warnings()
                .iter()
                .any(|w| w.starts_with("tls.key") && w.contains("chmod o-r"))
        };
        assert!(warned(0o644));
        assert!(!warned(0o640));
    }

    #[test]
    fn a_syntax_error_names_its_place_but_not_the_text() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "bad.toml",
                "[tenants.acme]\ntokens = [{ name = \"okta\", sha256 = scimd_SECRET123 }]\n",
            )?;
            let err = Config::load(Path::new("bad.toml")).unwrap_err().to_string();
            assert!(err.contains("line 2"), "{err}");
            assert!(!err.contains("SECRET"), "{err}");
            jail.create_file(
                "typed.toml",
                "[tenants.acme]\ntokens = [\"scimd_SECRET456\"]\n",
            )?;
            let err = Config::load(Path::new("typed.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("found a string") && !err.contains("SECRET"),
                "{err}"
            );
            // A token where its hash belongs: said so, and not echoed.
            jail.create_file(
                "pasted.toml",
                "[tenants.acme]\ntokens = [{ name = \"okta\", sha256 = \"scimd_SECRET789\" }]\n",
            )?;
            let err = Config::load(Path::new("pasted.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("looks like a token") && !err.contains("SECRET"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn an_unknown_key_lists_the_known_ones_and_the_env_spelling() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", GOOD)?;
            jail.set_env("SCIMD_SERVER_LISTEN", "1");
            let err = Config::load(Path::new("c.toml")).unwrap_err().to_string();
            assert!(
                err.contains("unknown key \"server_listen\"; expected one of server, tls")
                    && err.contains("SCIMD_SERVER__LISTEN"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn a_base_url_given_as_public_url_is_cut_to_its_address_with_a_warning() {
        let read = |url: &str| {
            let mut c: Config = toml_cfg(GOOD);
            c.server.public_url = Some(url.into());
            assert!(c.problems().is_empty(), "{url}: {:?}", c.problems());
            let warned = c
                .warnings()
                .into_iter()
                .find(|w| w.starts_with("server.public_url"));
            (c.server.public_base().unwrap().to_string(), warned)
        };
        for (url, base) in [
            (
                "https://scim.example:8443/scim/v2",
                "https://scim.example:8443",
            ),
            (
                "https://scim.example:8443/scim/v2/",
                "https://scim.example:8443",
            ),
            ("https://scim.example/SCIM/V2", "https://scim.example"),
            (
                "https://scim.example:8443/tenants/acme/scim/v2",
                "https://scim.example:8443",
            ),
            (
                "https://gw.example/app/scim/v2/Users",
                "https://gw.example/app",
            ),
            ("https://h.example/tenants/acme", "https://h.example"),
            ("https://h.example/tenants/acme/", "https://h.example"),
        ] {
            let (got, warned) = read(url);
            assert_eq!(got, base, "{url}");
            let w = warned.unwrap_or_else(|| panic!("{url} is not warned of"));
            assert!(
                w.contains("Give the address only") && w.contains(base),
                "{w}"
            );
        }
        for (url, base) in [
            ("https://scim.example:8443", "https://scim.example:8443"),
            ("https://scim.example:8443/", "https://scim.example:8443"),
            ("https://gw.example/scim-app", "https://gw.example/scim-app"),
            ("https://gw.example/v2", "https://gw.example/v2"),
            ("https://h.example/scim/v2x", "https://h.example/scim/v2x"),
            (
                "https://h.example/a/scim/v20",
                "https://h.example/a/scim/v20",
            ),
            (
                "https://h.example/tenantsx/acme",
                "https://h.example/tenantsx/acme",
            ),
            ("https://h.example/scim", "https://h.example/scim"),
        ] {
            assert_eq!(read(url), (base.to_string(), None), "{url}");
        }
    }

    #[test]
    fn public_url_is_https_unless_the_server_is_plain_http() {
        let public_url_refused = |url: &str, plain: bool| {
            let mut c: Config = toml_cfg(GOOD);
            c.server.public_url = Some(url.into());
            c.server.plain_http = plain;
            c.server.listen = "127.0.0.1:8080".into();
            c.problems()
                .iter()
                .any(|p| p.starts_with("server.public_url"))
        };
        assert!(!public_url_refused("https://scim.example:8443", false));
        assert!(public_url_refused("http://scim.example", false));
        assert!(public_url_refused("ftp://scim.example", false));
        assert!(!public_url_refused("http://127.0.0.1:8080", true));
        assert!(public_url_refused("ftp://scim.example", true));
        assert!(!public_url_refused("HTTPS://scim.example", false));
        for url in [
            "https://scim.example?x=1",
            "https://scim.example/#frag",
            "https://user:pw@scim.example/",
            "https://scim.example ",
            "https://scim .example",
            "https://scim.example/a b",
            "https://scim.example/\nERROR forged",
            "https://",
            "https:///x",
            "https://scim.example:99999",
            "https://scim.example:abc",
        ] {
            assert!(public_url_refused(url, false), "{url}");
        }
        assert!(!public_url_refused("https://[2001:db8::5]:8443", false));
        assert!(!public_url_refused("https://[2001:db8::5]", false));
    }

    fn toml_cfg(s: &str) -> Config {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(s))
            .extract()
            .expect("valid")
    }

    #[test]
    fn example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let cfg = Config::load(&path).expect("config.example.toml must load");
        assert!(cfg.tls.self_signed);
        assert!(cfg.tenants.contains_key("demo"));
    }
}
