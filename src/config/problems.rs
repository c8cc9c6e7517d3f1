//! The semantic checks: what is refused, each problem named by its key.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use super::extension::check_attribute;
use super::{Config, bad_log_level};

/// The least value a whole-number key takes when it is more than 0: what the checks below
/// refuse a value under (`below_least`), and what the message on a value of the wrong type
/// or sign (`seats = -1`) names, which would otherwise say "0 or more".
pub(super) fn least_of(key: &str) -> Option<u64> {
    let tenant_key = key
        .strip_prefix("tenants.")
        .and_then(|k| k.split_once('.'))
        .map(|(_, k)| k);
    match (key, tenant_key) {
        ("server.max_body_bytes", _) => Some(1024),
        ("server.max_filter_length", _) => Some(64),
        (
            "server.max_results"
            | "server.max_unread_mb"
            | "server.header_timeout_secs"
            | "server.request_timeout_secs"
            | "server.max_connections"
            | "server.max_patch_operations"
            | "storage.cache_mb",
            _,
        )
        | (_, Some("events_max_count" | "events_max_age_days" | "plan.seats")) => Some(1),
        _ => None,
    }
}

/// `key: must be at least N` and `note` when `value` is under its least (`least_of`).
fn below_least(key: &str, value: impl TryInto<u64>, note: &str) -> Option<String> {
    let least = least_of(key)?;
    let value = value.try_into().unwrap_or(u64::MAX);
    (value < least).then(|| format!("{key}: must be at least {least}{note}"))
}

impl Config {
    /// Why `tls.cert` or `tls.key` cannot be read, and whether one is missing (not there at
    /// all, as while a renewal replaces it) rather than unreadable.
    fn tls_file_problems(&self) -> (Vec<String>, bool) {
        let (mut p, mut missing) = (Vec::new(), false);
        let files = [("tls.cert", &self.tls.cert), ("tls.key", &self.tls.key)];
        for (key, path) in files {
            if let Some(path) = path
                && let Err(e) = std::fs::File::open(path)
            {
                missing |= e.kind() == std::io::ErrorKind::NotFound;
                p.push(format!("{key}: cannot read {}: {e}", path.display()));
            }
        }
        (p, missing)
    }

    /// Whether the only problems are certificate or key files not there (yet): a renewal
    /// may be half-way through replacing them, or they may come a moment after boot, so a
    /// start refused for them is one to try again.
    pub fn only_cert_files_missing(&self) -> bool {
        let serving_files = !self.server.plain_http
            && !self.tls.self_signed
            && self.tls.cert.is_some()
            && self.tls.key.is_some();
        let (files, missing) = self.tls_file_problems();
        serving_files && missing && self.problems() == files
    }

    /// Semantic checks; every problem names its key.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        match self.server.listen.parse::<SocketAddr>() {
            Err(_) => p.push(format!(
                "server.listen: \"{}\" is not an address:port such as 0.0.0.0:8443 (a host \
                 name is not taken: 127.0.0.1 for this machine only, 0.0.0.0 for all)",
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
        if let Some(bad) = self
            .server
            .metrics_token_sha256
            .as_deref()
            .and_then(bad_hash)
        {
            p.push(format!(
                "server.metrics_token_sha256: {bad}; `scimd token --name metrics` prints a \
                 token and its hash"
            ));
        }
        let server = &self.server;
        p.extend(below_least("server.max_results", server.max_results, ""));
        p.extend(below_least(
            "server.max_unread_mb",
            server.max_unread_mb,
            " (MiB)",
        ));
        for (key, secs) in [
            ("server.header_timeout_secs", server.header_timeout_secs),
            ("server.request_timeout_secs", server.request_timeout_secs),
        ] {
            p.extend(below_least(key, secs, " (seconds)"));
        }
        p.extend(below_least(
            "server.max_filter_length",
            server.max_filter_length,
            "",
        ));
        if !(1..=256).contains(&self.server.max_filter_depth) {
            p.push("server.max_filter_depth: must be between 1 and 256".into());
        }
        // No connection would ever be taken: a server that starts and answers nothing.
        p.extend(below_least(
            "server.max_connections",
            server.max_connections,
            "",
        ));
        if self.storage.dir.as_os_str().is_empty() {
            p.push(
                "storage.dir: empty; name the directory that holds the database, such as \
                 /var/lib/scimd"
                    .into(),
            );
        }
        // A file where the directory belongs: the start would fail making it, and exit as
        // for a passing fault.
        if std::fs::metadata(&self.storage.dir).is_ok_and(|m| !m.is_dir()) {
            p.push(format!(
                "storage.dir: {} is a file, not a directory; name the directory that holds \
                 the database (scimd makes it if it is not there), such as /var/lib/scimd",
                self.storage.dir.display()
            ));
        }
        // `~` is the shell's: a file read by scimd keeps it as a directory's name, made
        // under the config file's directory.
        for (key, path) in [
            ("storage.dir", Some(&self.storage.dir)),
            ("tls.cert", self.tls.cert.as_ref()),
            ("tls.key", self.tls.key.as_ref()),
        ] {
            let tilde = path.is_some_and(|f| {
                f.components()
                    .any(|c| c.as_os_str().to_string_lossy().starts_with('~'))
            });
            if tilde {
                p.push(format!(
                    "{key}: {} holds a `~`, which scimd does not expand (a shell does); write \
                     the whole path, such as /var/lib/scimd",
                    path.map(|f| f.display().to_string()).unwrap_or_default()
                ));
            }
        }
        p.extend(below_least(
            "storage.cache_mb",
            self.storage.cache_mb,
            " (MiB; 16 unless set)",
        ));
        p.extend(below_least(
            "server.max_patch_operations",
            server.max_patch_operations,
            "",
        ));
        p.extend(below_least(
            "server.max_body_bytes",
            server.max_body_bytes,
            "",
        ));
        if !self.server.plain_http {
            match (&self.tls.cert, &self.tls.key, self.tls.self_signed) {
                (Some(_), Some(_), true) => p.push(
                    "tls.self_signed: set either tls.cert and tls.key, or tls.self_signed = true, not both"
                        .into(),
                ),
                (Some(_), Some(_), false) => p.extend(self.tls_file_problems().0),
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
        // Each hash and the token it was first seen as, to name both of a pair.
        let mut hashes: HashMap<String, String> = HashMap::new();
        // Reachable by others: not only a loopback listener, an address for IdPs given, or
        // plain HTTP (what a proxy on this host forwards to a loopback listener).
        let exposed = self.server.public_url.is_some()
            || self.server.plain_http
            || self
                .server
                .listen
                .parse::<SocketAddr>()
                .is_ok_and(|a| !a.ip().is_loopback());
        for (name, t) in &self.tenants {
            if !valid_tenant_name(name) {
                p.push(format!(
                    "tenants.{name}: tenant names may hold only a-z, 0-9, '-' and '_' (1 to 64 characters)"
                ));
            }
            if t.tokens.is_empty() {
                // A table under the tenant's, left behind when its own was deleted, is enough
                // to make the tenant exist.
                let left = match (&t.plan, t.extensions.is_empty()) {
                    (Some(_), _) => Some(format!("[tenants.{name}.plan]")),
                    (None, false) => Some(format!("[[tenants.{name}.extensions]]")),
                    (None, true) => None,
                };
                p.push(match left {
                    Some(table) if t.display_name.is_none() => format!(
                        "tenants.{name}.tokens: the tenant has no token; to stop serving it, \
                         delete {table} too (it keeps the tenant in the file), or add a token \
                         with `scimd token --tenant {name} --name NAME`"
                    ),
                    _ => format!(
                        "tenants.{name}.tokens: the tenant has no token; add one with \
                         `scimd token --tenant {name} --name NAME`"
                    ),
                });
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
                if let Some(v) = v {
                    let key = format!("tenants.{name}.{k}");
                    p.extend(below_least(&key, v, " (remove it for the default)"));
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
                if let Some(seats) = plan.seats {
                    let key = format!("tenants.{name}.plan.seats");
                    p.extend(below_least(&key, seats, " (remove it for unlimited seats)"));
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
                } else if tok.name.chars().any(char::is_control) {
                    // The name goes into log lines as it is: a line break would forge one.
                    p.push(format!(
                        "{key}.name: must not hold control characters such as a line break \
                         (use letters, digits, '-', '_' and '.')"
                    ));
                } else if !names.insert(tok.name.as_str()) {
                    p.push(format!(
                        "{key}.name: \"{}\" is used twice in this tenant",
                        tok.name
                    ));
                }
                let h = &tok.sha256;
                // Where a valid hash was first seen: `None` the first time.
                let bad = bad_hash(h);
                let first = match (&bad, hashes.entry(h.to_ascii_lowercase())) {
                    (Some(_), _) => None,
                    (None, Entry::Occupied(e)) => Some(e.get().clone()),
                    (None, Entry::Vacant(e)) => {
                        e.insert(key.clone());
                        None
                    }
                };
                if let Some(bad) = bad {
                    p.push(format!(
                        "{key}.sha256: {bad}; generate a token and its hash with `scimd token`"
                    ));
                } else if let Some(first) = &first {
                    p.push(format!(
                        "{key}.sha256: the same token as {first}; each token must belong to one \
                         tenant (give one of them a new token with `scimd token`)"
                    ));
                } else if exposed && h.eq_ignore_ascii_case(EXAMPLE_TOKEN_SHA256) {
                    p.push(format!(
                        "{key}.sha256: this is the demo token of config.example.toml, which \
                         anyone can read, so it is accepted only while server.listen is a \
                         loopback address, server.public_url is unset and server.plain_http is \
                         off; delete [tenants.{name}] and add your own tenant \
                         (`scimd tenant add NAME`), or give this one a token of its own with \
                         `scimd token --tenant {name} --name NAME`, then `scimd token remove \
                         --tenant {name} --name {}`",
                        tok.name
                    ));
                }
            }
        }
        // The metrics token is handed to monitoring, which must not be able to provision.
        if let Some(h) = &self.server.metrics_token_sha256
            && let Some(first) = hashes.get(&h.to_ascii_lowercase())
        {
            p.push(format!(
                "server.metrics_token_sha256: the same token as {first}, a tenant's token, \
                 which monitoring would then hold; give metrics a token of its own \
                 (`scimd token --name metrics`)"
            ));
        }
        p
    }
}

/// SHA-256 of the demo token config.example.toml publishes.
pub const EXAMPLE_TOKEN_SHA256: &str =
    "b5d56f2eacf505c2639b22468f3a8b1bcaf7d619cadbab47dc6ce515fc4c3612";

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

/// What is wrong with a token's hash as the file gives it, said without echoing it (it may
/// be a secret pasted in the wrong place), or None when it is 64 hex characters.
fn bad_hash(h: &str) -> Option<String> {
    let hex = |t: &str| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit());
    if hex(h) {
        return None;
    }
    let pasted = if h.starts_with("scimd_") {
        " (this looks like a token: the file takes its SHA-256; `scimd token --hash-stdin` \
         prints it for a token you have)"
    } else if h
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("sha256:"))
        && hex(&h[7..])
    {
        " (drop the \"sha256:\" in front)"
    } else if h.trim() != h && hex(h.trim()) {
        " (drop the spaces around it)"
    } else if h.len() == 44 && h.ends_with('=') {
        " (this looks like base64: the file takes the hash as hex, which `scimd token` and \
         `sha256sum` print)"
    } else {
        ""
    };
    let got = match h.len() {
        64 => "64, not all of them hex: 0-9 and a-f".to_string(),
        n => n.to_string(),
    };
    Some(format!("expected 64 hex characters (got {got}){pasted}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{GOOD, toml_cfg};
    use crate::config::{PlanConfig, SeatLimitPolicy, TenantConfig};

    /// A token name with a line break would forge log lines; the metrics token must not
    /// be a tenant's, which would let monitoring provision.
    #[test]
    fn token_names_hold_no_control_characters_and_metrics_has_its_own_token() {
        let mut c = toml_cfg(GOOD);
        let tenant = c.tenants.get_mut("acme").unwrap();
        tenant.tokens[0].name = "app\n2026-01-01T00:00:00Z  INFO forged".into();
        let digest = tenant.tokens[0].sha256.to_ascii_uppercase();
        c.server.metrics_token_sha256 = Some(digest);
        let all = c.problems().join("\n");
        for needle in [
            "tenants.acme.tokens[0].name: must not hold control characters",
            "server.metrics_token_sha256: the same token as tenants.acme.tokens[0], a tenant's",
        ] {
            assert!(all.contains(needle), "{needle} not in:\n{all}");
        }
        let mut c = toml_cfg(GOOD);
        c.tenants.get_mut("acme").unwrap().tokens[0].name = "Okta prod (2026)".into();
        c.server.metrics_token_sha256 = Some("ab".repeat(32));
        assert_eq!(c.problems(), Vec::<String>::new());
    }

    /// A token given to two tenants is refused where it is seen again, naming where it was
    /// first: among hundreds of tenants the admin need not search for the other.
    #[test]
    fn a_token_configured_twice_names_both_places() {
        let mut c = toml_cfg(GOOD);
        let mut other = c.tenants["acme"].clone();
        other.tokens[0].name = "copied".into();
        other.tokens[0].sha256 = other.tokens[0].sha256.to_ascii_uppercase();
        c.tenants.insert("zeta".into(), other.clone());
        c.tenants.insert("zz".into(), other);
        let all = c.problems().join("\n");
        // A third copy names the first too.
        for copy in ["zeta", "zz"] {
            let said = format!(
                "tenants.{copy}.tokens[0].sha256: the same token as tenants.acme.tokens[0]; \
                 each token must belong to one tenant"
            );
            assert!(all.contains(&said), "{all}");
        }
    }

    /// A hash of the wrong length says how long it is; one of the right length with a
    /// character that is not hex says that instead of "got 64"; neither is echoed.
    #[test]
    fn a_bad_token_hash_says_what_is_wrong_with_it() {
        let said = |h: &str| {
            let mut c = toml_cfg(GOOD);
            c.tenants.get_mut("acme").unwrap().tokens[0].sha256 = h.into();
            c.problems().join("\n")
        };
        let short = said("abc");
        assert!(
            short.contains("expected 64 hex characters (got 3)"),
            "{short}"
        );
        let odd = said(&format!("{}g", "a".repeat(63)));
        assert!(
            odd.contains("expected 64 hex characters (got 64, not all of them hex: 0-9 and a-f)"),
            "{odd}"
        );
        assert!(!odd.contains("aaaaaaaa"), "{odd}");
        assert_eq!(said(&"AB".repeat(32)), "");
        // The hash as base64 (`openssl dgst -binary | base64`) is named as such.
        let b64 = said("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        assert!(b64.contains("(got 44) (this looks like base64"), "{b64}");
        assert!(!b64.contains("47DEQ"), "{b64}");
        // A pasted token is pointed at the command that hashes one already held.
        assert!(said("scimd_abc").contains("`scimd token --hash-stdin`"));
        // The metrics token's hash is told of the same way.
        let mut c = toml_cfg(GOOD);
        c.server.metrics_token_sha256 = Some("sha256:".to_string() + &"ab".repeat(32));
        let all = c.problems().join("\n");
        assert!(
            all.contains(
                "server.metrics_token_sha256: expected 64 hex characters (got 71) (drop the \
                 \"sha256:\" in front)"
            ),
            "{all}"
        );
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
        t.plan = Some(crate::config::PlanConfig {
            name: "P".into(),
            test_threshold: 10,
            seats: Some(0),
            on_seat_limit: Default::default(),
            existing_members: Vec::new(),
        });
        t.login_redirect_url = Some("https://app.example/anmeldung-für-alle".into());
        c.server.login_redirect_url = Some("http://intranet.example/login".into());
        let p = c.problems().join("\n");
        for needle in [
            "tenants.acme.events_max_count: must be at least 1",
            "tenants.acme.events_max_age_days: must be at least 1",
            "tenants.acme.plan.seats: must be at least 1 (remove it for unlimited seats)",
            "tenants.acme.login_redirect_url: \"https://app.example/anmeldung-für-alle\" has characters outside ASCII",
        ] {
            assert!(p.contains(needle), "{needle} not in {p}");
        }
        assert!(!p.contains("server.login_redirect_url"), "{p}");
    }

    #[test]
    fn a_file_named_as_storage_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("afile");
        std::fs::write(&file, "").unwrap();
        let mut c: Config = toml_cfg(GOOD);
        c.storage.dir = file;
        let p = c.problems().join("\n");
        assert!(
            p.contains("storage.dir: ") && p.contains("afile is a file, not a directory"),
            "{p}"
        );
        // A directory, or none yet (made at the start), is fine.
        for ok in [dir.path().to_path_buf(), dir.path().join("later")] {
            c.storage.dir = ok;
            assert!(
                !c.problems().join("\n").contains("storage.dir"),
                "{:?}",
                c.problems()
            );
        }
    }

    #[test]
    fn limits_of_zero_are_refused() {
        let mut c: Config = toml_cfg(GOOD);
        c.server.max_results = 0;
        c.server.max_unread_mb = 0;
        c.server.request_timeout_secs = 0;
        c.server.max_connections = 0;
        c.storage.cache_mb = 0;
        c.server.header_timeout_secs = 0;
        c.server.max_patch_operations = 0;
        // Those whose least is more than 1, just under it.
        c.server.max_body_bytes = 1023;
        c.server.max_filter_length = 63;
        let p = c.problems().join("\n");
        for needle in [
            "server.max_connections: must be at least 1",
            "storage.cache_mb: must be at least 1",
            "server.max_results: must be at least 1",
            "server.max_unread_mb: must be at least 1 (MiB)",
            "server.request_timeout_secs: must be at least 1",
            "server.header_timeout_secs: must be at least 1 (seconds)",
            "server.max_patch_operations: must be at least 1",
            "server.max_body_bytes: must be at least 1024",
            "server.max_filter_length: must be at least 64",
        ] {
            assert!(p.contains(needle), "{needle} not in {p}");
        }
        // At its least, each passes.
        c.server.max_body_bytes = 1024;
        c.server.max_filter_length = 64;
        let p = c.problems().join("\n");
        assert!(
            !p.contains("max_body_bytes") && !p.contains("max_filter_length"),
            "{p}"
        );
    }

    /// A `~` is the shell's, and an empty directory names none: both are refused, where
    /// they made a directory named `~` or put the database beside the config file.
    #[test]
    fn a_tilde_or_an_empty_path_is_refused() {
        let mut c: Config = toml_cfg(GOOD);
        c.storage.dir = "/etc/scimd/~/scimd-data".into();
        c.tls.self_signed = false;
        c.tls.cert = Some("~admin/cert.pem".into());
        c.tls.key = Some("/etc/scimd/key.pem".into());
        let p = c.problems().join("\n");
        for needle in [
            "storage.dir: /etc/scimd/~/scimd-data holds a `~`, which scimd does not expand",
            "tls.cert: ~admin/cert.pem holds a `~`",
        ] {
            assert!(p.contains(needle), "{needle} not in {p}");
        }
        assert!(!p.contains("tls.key: /etc"), "{p}");
        c.storage.dir = "".into();
        let p = c.problems().join("\n");
        assert!(p.contains("storage.dir: empty; name the directory"), "{p}");
        assert!(!toml_cfg(GOOD).problems().join("\n").contains("~"));
    }

    #[test]
    fn a_plan_left_behind_by_a_deleted_tenant_is_named() {
        let c = toml_cfg(&format!("{GOOD}\n[tenants.gone.plan]\nname = \"Team\"\n"));
        let p = c.problems().join("\n");
        assert!(
            p.contains("tenants.gone.tokens: the tenant has no token; to stop serving it, delete [tenants.gone.plan] too"),
            "{p}"
        );
        let c = toml_cfg(&format!("{GOOD}\n[tenants.new]\ndisplay_name = \"New\"\n"));
        let p = c.problems().join("\n");
        assert!(
            p.contains("tenants.new.tokens: the tenant has no token; add one with `scimd token --tenant new"),
            "{p}"
        );
    }

    #[test]
    fn the_examples_demo_token_is_refused_where_others_can_reach_it() {
        let mut c: Config = toml_cfg(GOOD);
        c.tenants.get_mut("acme").unwrap().tokens[0].sha256 = crate::auth::hex(
            &<sha2::Sha256 as sha2::Digest>::digest(b"demo-token-change-me"),
        );
        c.server.listen = "127.0.0.1:8443".into();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let demo = |c: &Config| {
            c.problems()
                .iter()
                .any(|p| p.starts_with("tenants.acme.tokens[0].sha256: this is the demo token"))
        };
        c.server.listen = "0.0.0.0:8443".into();
        assert!(demo(&c));
        c.server.listen = "127.0.0.1:8443".into();
        c.server.public_url = Some("https://scim.corp.example:8443".into());
        assert!(demo(&c));
        // A proxy on this host forwards to a plain HTTP listener on loopback.
        c.server.public_url = None;
        c.server.plain_http = true;
        assert!(demo(&c));
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
}
