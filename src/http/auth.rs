//! Refusing a request for its token: the answer the client gets, the per-address throttle
//! on refused tokens, and the reason the log gets (never the token).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Instant;

use http::header;

use super::response::{self, Resp};
use super::{App, Runtime};
use crate::scim::error::ScimError;

/// Wrong bearer tokens allowed per source address: a burst, then one a second. Generous:
/// tokens are too long to guess, so this only stops a misconfigured client from flooding
/// the log, and must never trip an IdP's or an admin's few tries.
const AUTH_FAIL_BURST: f64 = 100.0;
const AUTH_FAIL_RATE: f64 = 1.0;

/// Whether a bearer token is itself "Bearer …": a token field filled with the header's value.
fn said_bearer_twice(token: &str) -> bool {
    token.eq_ignore_ascii_case("bearer")
        || token
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("bearer "))
}

/// Why a bearer token was refused, for the admin reading the log (never the token itself):
/// an IdP's "401" alone does not tell a mistyped tenant URL from a missing reload.
pub(super) fn why_refused(rt: &Runtime, auth: Option<&str>, url_tenant: Option<&str>) -> String {
    // At most 64 characters of a name from the URL: a client must not write long log lines;
    // and not a token pasted where the tenant's name belongs.
    let shown =
        url_tenant.map(|t| super::response::clip(&rt.tokens.withhold_in_path(t), 64).into_owned());
    let url_tenant = url_tenant.zip(shown.as_deref());
    let owner = rt.tokens.authenticate(auth, None).map(|p| p.tenant.clone());
    match (url_tenant, owner) {
        (Some((name, t)), _) if !rt.config.tenants.contains_key(name) => {
            // Debug-quoted: the name comes from the URL, and a line break in it would forge
            // a log line.
            format!(
                "the URL names tenant {t:?}, which is not in the running configuration (a \
                 tenant just added to the file takes effect at a reload: systemctl reload scimd)"
            )
        }
        (Some((_, t)), Some(o)) => {
            format!("the token belongs to tenant {o}, but the URL names tenant {t:?}")
        }
        _ if auth
            .and_then(crate::auth::bearer)
            .is_some_and(said_bearer_twice) =>
        {
            "the header says \"Bearer Bearer …\": the IdP's token field holds \"Bearer\" before \
             the token"
                .into()
        }
        _ if auth.and_then(crate::auth::bearer).is_some_and(is_jwt) => {
            "the token is a JWT the IdP made itself, not a scimd token: its token field is \
             probably empty (Entra sends its own JWT when Secret Token is left blank); paste \
             the scimd token there"
                .into()
        }
        _ => "the token matches no configured token (a new one not yet reloaded, or a \
              removed or mistyped one)"
            .into(),
    }
}

/// The Authorization header as text. Bytes outside ASCII (which no token holds) are kept as
/// replacement characters rather than making the header read as missing: such a header is
/// a refused credential, counted by the throttle like any other.
pub(super) fn authorization(h: &http::HeaderMap) -> Option<std::borrow::Cow<'_, str>> {
    h.get(http::header::AUTHORIZATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
}

/// Whose refused tokens are counted together: an IPv4 address, or an IPv6 address's /64
/// network, as one host usually holds a whole /64 and could otherwise step past the
/// throttle by changing its address.
pub(super) fn throttle_key(ip: std::net::IpAddr) -> String {
    let std::net::IpAddr::V6(v6) = ip else {
        return ip.to_string();
    };
    // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d.
    if let Some(v4) = v6.to_ipv4_mapped() {
        return v4.to_string();
    }
    let s = v6.segments();
    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
}

/// A JSON Web Token: three base64url parts, the first a JSON object (`eyJ` is `{"`).
fn is_jwt(token: &str) -> bool {
    token.starts_with("eyJ")
        && token.split('.').count() == 3
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.=".contains(&b))
}

/// Why a token was refused, for the request's log line (never for the client).
#[derive(Clone)]
pub(super) struct Refusal {
    pub(super) why: String,
    pub(super) user_agent: Option<String>,
    /// Logged at info (else at debug): a flood of wrong tokens must not fill the journal.
    pub(super) loud: bool,
}

impl Refusal {
    /// The request's one line: why, and where (the tenant the URL names, when it is one:
    /// IdPs provision from shared cloud addresses, so the peer alone cannot tell whose IdP
    /// holds an old token).
    pub(super) fn log(
        &self,
        peer: SocketAddr,
        (method, path, status): (&http::Method, &str, u16),
        tenant: &str,
        (started, id): (Instant, &str),
    ) {
        let latency_ms = started.elapsed().as_micros() as f64 / 1000.0;
        let user_agent = self.user_agent.as_deref();
        info_or_debug!(self.loud, target: "scimd::request", %peer, method = %method,
            path, status, latency_ms, tenant, user_agent, request_id = id,
            "authentication refused: {}", self.why);
    }
}

impl App {
    /// `name` if the running configuration has such a tenant, else "-": what a log line
    /// or a metric's label may take from a URL (a client must not grow the series count).
    pub(super) fn configured_tenant(&self, name: Option<&str>) -> Cow<'static, str> {
        match name.filter(|t| self.runtime().config.tenants.contains_key(*t)) {
            Some(t) => t.to_string().into(),
            None => "-".into(),
        }
    }

    /// The answer to a request whose token was missing or refused: 401 with the reason, or
    /// 429 once this address has sent too many refused Authorization headers. Only those are
    /// charged, per source address, wherever they are sent (SCIM, discovery, metrics): a
    /// valid token is never slowed down, even from an address shared with a misconfigured
    /// neighbour, and a request without the header guesses nothing (and gets no reason
    /// logged, so it cannot double the log either).
    /// `why` says, for the log only, why a token that was sent was refused; it is worked out
    /// only when logged, never for a throttled request. The client learns no more than the
    /// detail below.
    /// Its connection is a stranger again (`vouch::disown`): a token it showed before may
    /// have been revoked since.
    pub(super) fn refused(
        &self,
        peer: SocketAddr,
        (headers, extensions): (&http::HeaderMap, &http::Extensions),
        url_tenant: Option<&str>,
        why: impl FnOnce() -> String,
    ) -> Resp {
        super::vouch::disown(extensions);
        let auth = authorization(headers);
        let auth = auth.as_deref();
        // Counted here, throttled or not: a brute force must show in the count.
        self.metrics
            .auth_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tenant_named = url_tenant.is_some();
        let token = auth.and_then(crate::auth::bearer);
        let sent = token.is_some();
        let detail = match auth {
            None => "missing Authorization header; send \"Authorization: Bearer <token>\"",
            // The IdP adds "Bearer " itself to what its token field holds.
            Some(_) if token.is_some_and(said_bearer_twice) => {
                "the Authorization header says Bearer twice; give the IdP the token alone, without \"Bearer\""
            }
            // What an admin sees in the IdP's connection test: the cause, not the tenant.
            Some(_) if token.is_some_and(is_jwt) => {
                "the bearer token is a JWT the IdP made itself, not a scimd token: paste the token `scimd tenant add` or `scimd token` printed into the IdP's token field (Entra: Secret Token)"
            }
            Some(_) if sent && tenant_named => {
                "the bearer token is not valid for this tenant; check both the token and the tenant name in the URL (the NAME in /tenants/NAME/)"
            }
            Some(_) if sent => "the bearer token is not valid",
            Some(a) if a.trim().to_ascii_lowercase().starts_with("bearer") => {
                "the Authorization header holds no token; send \"Authorization: Bearer <token>\""
            }
            Some(_) => "only bearer tokens are accepted; send \"Authorization: Bearer <token>\"",
        };
        let source = throttle_key(peer.ip());
        if auth.is_some()
            && let Err(wait) =
                self.auth_failures
                    .check(&source, AUTH_FAIL_RATE, AUTH_FAIL_BURST, Instant::now())
        {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            if self.first_this_minute(&format!("address {source}")) {
                tracing::warn!(%peer, "repeated authentication failures; answering 429 to this address (said once a minute)");
            }
            let e = ScimError::new(
                429,
                None,
                format!("too many failed authentications from this address; retry after {secs} s"),
            );
            return response::with_header(
                response::error(&e),
                header::RETRY_AFTER,
                &secs.to_string(),
            );
        }
        let mut resp = response::error(&ScimError::new(401, None, detail));
        // Past the throttle only, and only when something was sent: the request's line says
        // why (a request without the header has its detail). The first ten a minute from an
        // address at info, the rest at debug: the throttle lets one a second through.
        if auth.is_some() {
            let why = if sent { why() } else { detail.to_string() };
            // And the client's own name (Okta, Entra and OneLogin each send theirs).
            let user_agent = (headers.get(http::header::USER_AGENT))
                .map(|v| response::clip(&String::from_utf8_lossy(v.as_bytes()), 100).to_string());
            let loud = self.few_this_minute(&format!("refusals from {source}"));
            resp.extensions_mut().insert(Refusal {
                why,
                user_agent,
                loud,
            });
        }
        // RFC 6750 §3.1: a token that was sent and refused is `invalid_token`; a request
        // without one keeps the plain challenge every 401 carries.
        if !sent {
            return resp;
        }
        response::with_header(
            resp,
            header::WWW_AUTHENTICATE,
            "Bearer realm=\"scimd\", error=\"invalid_token\"",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Scope, TenantConfig, TokenConfig};

    #[test]
    fn refused_tokens_are_counted_per_ipv4_address_and_per_ipv6_network() {
        let key = |a: &str| throttle_key(a.parse().unwrap());
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), key("2001:db8:1:2:aaaa::1"));
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }

    #[test]
    fn a_refusal_is_explained_to_the_log_without_the_token() {
        let mut cfg = Config::default();
        cfg.tenants.insert(
            "acme".into(),
            TenantConfig {
                tokens: vec![TokenConfig {
                    name: "okta".into(),
                    sha256: crate::auth::hex(&crate::auth::digest("s3cret")),
                    scope: Scope::Provision,
                }],
                ..TenantConfig::default()
            },
        );
        cfg.tenants.insert("globex".into(), TenantConfig::default());
        let rt = Runtime::new(cfg);
        let why = |auth: Option<&str>, t: Option<&str>| why_refused(&rt, auth, t);
        let typo = why(Some("Bearer s3cret"), Some("acmee"));
        assert!(
            typo.contains("\"acmee\", which is not in the running configuration")
                && typo.contains("systemctl reload scimd"),
            "{typo}"
        );
        let forged = why(Some("Bearer s3cret"), Some("x\nINFO forged"));
        assert!(!forged.contains('\n') && forged.contains("\\n"), "{forged}");
        let long = why(Some("Bearer s3cret"), Some(&"a".repeat(5000)));
        assert!(long.len() < 260 && long.contains("a…\""), "{long}");
        let other = why(Some("Bearer s3cret"), Some("globex"));
        assert!(other.contains("belongs to tenant acme"), "{other}");
        let unknown = why(Some("Bearer n0pe"), None);
        assert!(unknown.contains("matches no configured token"), "{unknown}");
        let jwt = why(
            Some("Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"),
            None,
        );
        assert!(jwt.contains("Secret Token is left blank"), "{jwt}");
        let bare = why(Some("Bearer Bearer"), None);
        assert!(bare.contains("\"Bearer Bearer …\""), "{bare}");
        let twice = why(Some("Bearer bearer s3cret"), None);
        assert!(
            twice.contains("\"Bearer Bearer …\"") && !twice.contains("s3cret"),
            "{twice}"
        );
        for w in [typo, other, unknown] {
            assert!(!w.contains("s3cret") && !w.contains("n0pe"), "{w}");
        }
    }
}
