//! The `[server]`, `[tls]`, `[storage]` and `[log]` sections.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
    /// Seconds a request may take to send its body and its client to take each part of an
    /// answer; also how long a scan or sort of every record may read (400 `tooMany` past it,
    /// counted from when it starts reading).
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// State directory: holds `scimd.redb` and, with `tls.self_signed`, `tls/`.
    pub dir: PathBuf,
    /// redb page cache, in MiB.
    pub cache_mb: usize,
    /// Read the database file once at start, in the background, so that the kernel's page
    /// cache holds it (skipped when it would take more than half the available memory).
    pub warm_page_cache: bool,
    /// Read every entry of the database back in the background at start and then every this
    /// many hours, to find a page damaged from outside while it is served (0: never).
    pub scrub_hours: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            dir: PathBuf::from("/var/lib/scimd"),
            cache_mb: 16,
            warm_page_cache: true,
            scrub_hours: 24,
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

/// `log.level` as log filter directives: a bare `debug` or `trace` is scimd's own, and the
/// libraries under it stay at `info`: theirs log every HTTP/2 frame and TLS record, which
/// any client without a token could turn into millions of lines. `h2=debug` still asks.
pub fn log_directives(level: &str) -> String {
    level
        .split(',')
        .map(str::trim)
        .map(|part| {
            let verbose = ["debug", "trace"]
                .iter()
                .any(|l| l.eq_ignore_ascii_case(part));
            if verbose {
                format!("info,scimd={}", part.to_ascii_lowercase())
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

/// The SCIM part of a URL's path (`/scim/v2…` or `/tenants/NAME/scim/v2…`), if it has one.
pub(super) fn scim_base_in(url: &str) -> Option<&str> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::tests::{GOOD, toml_cfg};

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

    #[test]
    fn a_verbose_level_is_scimds_own() {
        assert_eq!(log_directives("info"), "info");
        assert_eq!(log_directives("DEBUG"), "info,scimd=debug");
        assert_eq!(
            log_directives("trace, h2=debug"),
            "info,scimd=trace,h2=debug"
        );
        assert_eq!(
            log_directives("warn,scimd::request=debug"),
            "warn,scimd::request=debug"
        );
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
            let (got, warned) = read(url);
            assert_eq!(got, base, "{url}");
            // A path left is some proxy's prefix: scimd itself does not serve under it.
            let proxied = base.matches('/').count() > 2;
            assert_eq!(
                warned.is_some_and(|w| w.contains("works only through a reverse proxy")),
                proxied,
                "{url}"
            );
        }
    }
}
