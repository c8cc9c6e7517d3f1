//! HTTP: routing, authentication, body limits, request parsing, and rendering of responses
//! and errors. Knows the SCIM core and the store's API, never redb's tables.

/// A log line at info when `loud` (the first of a flood, say), else at debug: tracing takes
/// a level only as a constant.
macro_rules! info_or_debug {
    ($loud:expr, $($event:tt)+) => {
        if $loud {
            tracing::info!($($event)+)
        } else {
            tracing::debug!($($event)+)
        }
    };
}

mod app_side;
mod auth;
pub mod backlog;
mod body;
mod cursor;
mod discovery;
mod handlers;
pub(crate) mod limit;
mod lists;
mod malformed;
mod ops;
pub mod query;
pub mod request_id;
pub mod response;
pub mod router;
mod runtime;
mod sso;
pub mod unread;
pub mod vouch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, header};
use hyper::body::Body;
use serde_json::Value;

use crate::auth::Principal;
use crate::config::Config;
use crate::scim::error::{ScimError, ScimResult};
use crate::scim::redact;
use crate::scim::schema::{Kind, Rt};
use crate::store::Store;
use auth::why_refused;
use response::Resp;
use router::{Endpoint, Route};
pub use runtime::{Runtime, plan_rules};

pub struct App {
    pub store: Store,
    auth_failures: limit::Limiter,
    pub metrics: crate::metrics::HttpMetrics,
    limiter: limit::Limiter,
    /// Lines said once a minute per address or tenant (429s, 401s to requests without a
    /// token): a flood of requests would write a flood of them.
    said_each_minute: limit::Limiter,
    /// Lines said at most so often (`within_this_hour`): ignored attributes, once an hour for
    /// each tenant, resource type and set of names (an IdP's mapping sends the same ones
    /// with every user of a full sync), and the listener's failed TLS handshakes.
    said_ignored: limit::Limiter,
    runtime: RwLock<Arc<Runtime>>,
    scheme: &'static str,
    /// Room for request bodies being received, all connections together (see `backlog`).
    bodies: backlog::Room,
    /// And each tenant's connections together, and its read tokens' (`true`), each made at
    /// its first body.
    tenant_bodies: Mutex<HashMap<(String, bool), backlog::Room>>,
    /// A task is trying again to record plan settings the change feed could not take (a
    /// full disk): one at a time, however many reloads failed to.
    pub plans_pending: std::sync::atomic::AtomicBool,
}

/// Everything a handler needs about one request.
pub struct Ctx {
    pub principal: Arc<Principal>,
    /// SCIM base URL as the client knows it, e.g. `https://host:8443/scim/v2`.
    pub base: String,
    pub rt: Arc<Runtime>,
    pub query: query::Query,
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    /// The connection's unread answers; absent when a request does not come through the
    /// server (tests calling `App::handle`).
    pub backlog: Option<backlog::Backlog>,
}

impl Ctx {
    pub fn rt(&self, kind: Kind) -> Rt {
        self.rt.rt(Some(&self.principal.tenant), kind)
    }

    /// The request's preconditions, for a write (checked in the write transaction).
    pub fn conditions(&self) -> crate::store::Conditions {
        crate::store::Conditions {
            if_match: self.if_match.clone(),
            if_none_match: self.if_none_match.clone(),
        }
    }

    /// Who is writing, for the change feed.
    pub fn actor(&self) -> crate::store::Actor {
        self.rt
            .actor(&self.principal.tenant, &self.principal.token_name)
    }
}

impl App {
    pub fn new(store: Store, config: Config) -> App {
        let scheme = if config.server.plain_http {
            "http"
        } else {
            "https"
        };
        App {
            store,
            auth_failures: limit::Limiter::default(),
            metrics: crate::metrics::HttpMetrics::default(),
            limiter: limit::Limiter::default(),
            said_each_minute: limit::Limiter::default(),
            said_ignored: limit::Limiter::default(),
            bodies: backlog::body_room(backlog::BODIES_EVERYWHERE, config.server.max_body_bytes),
            plans_pending: std::sync::atomic::AtomicBool::new(false),
            tenant_bodies: Mutex::new(HashMap::new()),
            runtime: RwLock::new(Arc::new(Runtime::new(config))),
            scheme,
        }
    }

    /// The rooms `who`'s request bodies share below the server's (see `backlog`), sized as
    /// the server's was, innermost first: its tenant's read tokens' when it is one, then its
    /// tenant's unless that is the only tenant, which has no other to leave room for.
    fn tenant_bodies(&self, rt: &Runtime, who: &Principal) -> Vec<backlog::Room> {
        let reader = who.scope == crate::config::Scope::Read;
        let several = rt.config.tenants.len() >= 2;
        // The IdP of the only tenant: no lock on its every write.
        if !reader && !several {
            return Vec::new();
        }
        let wanted = [
            (true, backlog::BODIES_PER_READER),
            (false, backlog::BODIES_PER_TENANT),
        ]
        .into_iter()
        .filter(|&(readers, _)| if readers { reader } else { several });
        let mut rooms = match self.tenant_bodies.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        wanted
            .map(|(readers, n)| {
                rooms
                    .entry((who.tenant.clone(), readers))
                    .or_insert_with(|| backlog::body_room(n, self.bodies.largest()))
                    .clone()
            })
            .collect()
    }

    /// Swap in a new configuration; requests already running keep the one they started with.
    pub fn set_runtime(&self, config: Config) {
        let rt = Arc::new(Runtime::new(config));
        match self.runtime.write() {
            Ok(mut g) => *g = rt,
            Err(p) => *p.into_inner() = rt,
        }
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        match self.runtime.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Serve one request. Never fails: every problem becomes a SCIM error response.
    pub async fn handle<B>(
        self: Arc<Self>,
        mut req: Request<B>,
        peer: SocketAddr,
        id: &request_id::RequestId,
    ) -> Resp
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let accept = req.headers().get(http::header::ACCEPT).cloned();
        req.extensions_mut().insert(id.clone());
        // A search only reads: run in this future, as a GET is, so that a client that hangs
        // up stops it (its scan watches for the future being dropped).
        // (Read as the router reads a path: `/Users/%2Esearch/` is a search too.)
        let reads = req.method() == Method::GET
            || (req.method() == Method::POST
                && router::segments(req.uri().path())
                    .last()
                    .is_some_and(|s| s == ".search"));
        let resp = if reads {
            let method = req.method().clone();
            let resp = self.answer(req, peer, method, &id.0).await;
            response::negotiated(resp, accept.as_ref())
        } else if req.method() != Method::HEAD {
            // Anything that may write runs to its end, whether or not its answer can still be
            // sent: a client that hangs up as soon as its request is out (an IdP's timeout
            // during a slow commit) must not leave a committed change out of the log.
            let method = req.method().clone();
            let id = id.0.clone();
            let app = self.clone();
            let run = tokio::spawn(async move { app.answer(req, peer, method, &id).await });
            let resp = match run.await {
                Ok(resp) => resp,
                // Caught and answered 500 by the connection's own panic guard.
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => response::error(&ScimError::new(503, None, "the server is stopping")),
            };
            response::negotiated(resp, accept.as_ref())
        } else {
            // RFC 9110 §9.3.2: HEAD is GET without the content (monitors and proxies use it).
            let (mut parts, body) = req.into_parts();
            parts.method = Method::GET;
            let resp = self
                .answer(Request::from_parts(parts, body), peer, Method::HEAD, &id.0)
                .await;
            response::without_content(response::negotiated(resp, accept.as_ref()))
        };
        let mut resp = response::with_header(resp, request_id::HEADER, &id.0);
        // Answers hold people's names and addresses: no proxy or client cache keeps them.
        resp.headers_mut()
            .entry(http::header::CACHE_CONTROL)
            .or_insert(http::HeaderValue::from_static("no-store"));
        resp
    }

    /// Serve one request; `method` is the one the client sent and `id` its `X-Request-Id`, for
    /// logs and metrics.
    async fn answer<B>(
        self: Arc<Self>,
        req: Request<B>,
        peer: SocketAddr,
        method: Method,
        id: &str,
    ) -> Resp
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        // A health probe needs no Host: it is answered before the check.
        if req.uri().path() == "/healthz" {
            if !matches!(*req.method(), Method::GET | Method::HEAD) {
                return refusal(
                    &method_not_allowed(req.method(), "GET, HEAD"),
                    Some("GET, HEAD"),
                );
            }
            return self.health().await;
        }
        // `OPTIONS *` asks about the server as a whole (RFC 9110 §9.3.7); some proxies and
        // load balancers send it as a ping.
        if req.uri().path() == "*" && req.method() == Method::OPTIONS {
            let resp = response::empty(204);
            return response::with_header(resp, http::header::ALLOW, ALLOWED_ANYWHERE);
        }
        if let Some(e) = malformed::why(&req) {
            // Refused before any token is looked at: once a minute per address at info, as
            // other refusals of requests without a token (anyone could fill the journal).
            let loud = self.first_from_this_minute("malformed", peer.ip());
            info_or_debug!(loud, target: "scimd::request", %peer, method = %method, status = 400,
                detail = e.detail, request_id = id, "request refused");
            return response::error(&e);
        }
        if req.uri().path() == "/metrics" {
            if !matches!(*req.method(), Method::GET | Method::HEAD) {
                return refusal(
                    &method_not_allowed(req.method(), "GET, HEAD"),
                    Some("GET, HEAD"),
                );
            }
            let resp = self
                .metrics_page((req.headers(), req.extensions()), peer)
                .await;
            let status = resp.status().as_u16();
            if let Some(r) = resp.extensions().get::<auth::Refusal>() {
                r.log(peer, (&method, "/metrics", status), "-", (started, id));
            } else if status >= 400 {
                // Without a token, or with metrics off: once a minute per address, as other
                // refusals of requests without a token.
                let loud = self.first_from_this_minute("metrics refusal", peer.ip());
                info_or_debug!(loud, target: "scimd::request", %peer, method = %method,
                    path = "/metrics", status, request_id = id, "request");
            }
            return resp;
        }
        if let Some(tenant) = sso::match_path(req.uri().path()) {
            // From the URL: at most 64 characters of it in the log, and in the metrics only
            // a configured tenant's name (a client must not grow the series count).
            let rt = self.runtime();
            let named: String = rt
                .tokens
                .withhold_in_path(tenant.as_deref().unwrap_or("-"))
                .chars()
                .take(64)
                .collect();
            let label = self.configured_tenant(tenant.as_deref());
            let resp = sso::handle(req, tenant, &rt).await;
            let status = resp.status().as_u16();
            self.metrics.record(
                "/sso/login_redirect",
                method_label(&method),
                status,
                &label,
                started.elapsed().as_secs_f64(),
            );
            // Anyone may ask (end users' browsers, without a token): a redirect is a read,
            // logged at debug, and a refusal is said once a minute per address. The name is
            // recorded as text, escaped: a line break in the URL must not forge a line.
            let loud = status >= 400 && self.first_from_this_minute("sso refusal", peer.ip());
            info_or_debug!(loud, target: "scimd::request", %peer, method = %method,
                path = "/sso/login_redirect", status,
                latency_ms = started.elapsed().as_micros() as f64 / 1000.0,
                tenant = named.as_str(), request_id = id, "request");
            return resp;
        }
        let route = router::route(req.uri().path());
        let template = route
            .as_ref()
            .map(|r| template(&r.endpoint))
            .unwrap_or("other");
        let allow = route.as_ref().map(|r| allowed(&r.endpoint));
        // A path no endpoint has is logged as sent (escaped, cut at 100 characters, a token
        // pasted into it withheld): the admin needs it to find a wrong Base URL.
        let unknown_path = matches!(template, "unknown" | "other").then(|| {
            let path = self.runtime().tokens.withhold_in_path(req.uri().path());
            response::clip(&path, 100).escape_debug().to_string()
        });
        let bare = !req.headers().contains_key(http::header::AUTHORIZATION);
        let read = matches!(method, Method::GET | Method::HEAD) || template.ends_with(".search");
        // A write's line names the resource it changed (who deactivated whom): its id from
        // the URL, cut (client text, recorded as text and so escaped as every such field is;
        // a token pasted there withheld).
        let mut changed = match (read, route.as_ref().map(|r| &r.endpoint)) {
            (false, Some(Endpoint::Resource(_, id))) => {
                let id = self.runtime().tokens.withhold_in_path(id);
                Some(response::clip(&id, 64).into_owned())
            }
            _ => None,
        };
        // An error's detail may quote the path or an id from it: a token pasted there
        // stays out of the log as it does in `unknown_path`. (A clone of the parsed URI
        // shares its bytes: no copy on every request for the few that fail.)
        let uri = req.uri().clone();
        let (resp, who) = match self.dispatch(req, route, peer).await {
            Ok((r, who)) => (r, who),
            Err(e) => (refusal(&e, allow), None),
        };
        let status = resp.status().as_u16();
        // A create names what it made.
        if status == 201 && changed.is_none() {
            let location = resp.headers().get(http::header::LOCATION);
            let made = location.and_then(|l| l.to_str().ok()?.rsplit('/').next());
            changed = made.map(str::to_string);
        }
        // Refused before a token named it, a request is the tenant's its URL names.
        let tenant: std::borrow::Cow<str> = match &who {
            Some(p) => p.tenant.as_str().into(),
            None => {
                let named = router::route(uri.path()).and_then(|r| r.tenant);
                self.configured_tenant(named.as_deref())
            }
        };
        self.metrics.record(
            template,
            method_label(&method),
            status,
            &tenant,
            started.elapsed().as_secs_f64(),
        );
        // Every change and every refusal at info; reads that succeed at debug. An IdP's sync
        // cycle is mostly lookups, thousands a second: at info they would cost ~15% of the
        // read rate and run into journald's rate limit, which then drops the lines that
        // matter (writes, errors) along with them. A 429 is said once a minute instead.
        // A refusal of a request without a token (a scanner trying paths, a probe, a client
        // before its first challenge; 501 is a method HTTP does not define) is said once a
        // minute per address and tenant, since IdPs provision from shared cloud addresses
        // and one tenant's missing token must not hide another's; ten a minute at most
        // from an address, as any client could fill the journal. (The keys are formatted
        // only for such a refusal, never on the usual path.)
        let bare_refused = ((400..500).contains(&status) || status == 501)
            && bare
            && !(self.first_from_this_minute(&format!("bare refusal for {tenant}"), peer.ip())
                && self.few_this_minute(&format!(
                    "bare refusals from {}",
                    auth::throttle_key(peer.ip())
                )));
        // A refused token's line says why, in place of the request line.
        if let Some(r) = resp.extensions().get::<auth::Refusal>() {
            let path = unknown_path.as_deref().unwrap_or(template);
            r.log(peer, (&method, path, status), &tenant, (started, id));
        } else {
            let loud = !((read && status < 400) || status == 429 || bare_refused);
            info_or_debug!(
                loud,
                target: "scimd::request",
                %peer,
                method = %method,
                path = template,
                unknown_path = unknown_path.as_deref(),
                resource_id = changed.as_deref(),
                status,
                scim_type = resp
                    .extensions()
                    .get::<crate::scim::error::ScimType>()
                    .map(|t| t.as_str()),
                detail = resp
                    .extensions()
                    .get::<response::Detail>()
                    .and_then(|d| d.for_log(|text| {
                        self.runtime().tokens.withhold_path_tokens(text, uri.path()).into_owned()
                    }))
                    .as_deref(),
                latency_ms = started.elapsed().as_micros() as f64 / 1000.0,
                tenant = &*tenant,
                token_name = who.as_ref().map(|p| p.token_name.as_str()).unwrap_or("-"),
                request_id = id,
                "request"
            );
        }
        resp
    }

    async fn dispatch<B>(
        &self,
        req: Request<B>,
        route: Option<Route>,
        peer: SocketAddr,
    ) -> ScimResult<(Resp, Option<Arc<Principal>>)>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some(route) = route else {
            return Err(ScimError::not_found(format!(
                "no such endpoint: {}; the SCIM base URL is /scim/v2 (or /tenants/NAME/scim/v2)",
                req.uri().path()
            )));
        };
        let rt = self.runtime();
        let base = self.base_url(&req, &rt, &route);
        let method = req.method().clone();
        // Discovery describes the server, not a tenant's data: no token needed.
        if matches!(
            route.endpoint,
            Endpoint::ServiceProviderConfig
                | Endpoint::ResourceTypes
                | Endpoint::ResourceType(_)
                | Endpoint::Schemas
                | Endpoint::Schema(_)
        ) {
            let limits = discovery::Limits {
                max_results: rt.config.server.max_results,
                max_body_bytes: rt.config.server.max_body_bytes,
            };
            // Discovery needs no token, but a tenant's own extensions are its business: they
            // show only to that tenant's token, and another tenant's token is refused.
            let auth = auth::authorization(req.headers());
            let auth = auth.as_deref();
            let principal = match (&route.tenant, auth) {
                (Some(t), Some(_)) => match rt.tokens.authenticate(auth, Some(t)) {
                    Some(p) => Some(p),
                    None => {
                        let why = || why_refused(&rt, auth, Some(t));
                        return Ok((
                            self.refused(peer, (req.headers(), req.extensions()), Some(t), why),
                            None,
                        ));
                    }
                },
                (Some(_), None) => None,
                // No token: the standard schemas. A wrong one is refused (and counted), or
                // discovery would tell a guesser which tokens are valid; so are other
                // credentials (Basic), as under a tenant's URL: an IdP set up with them
                // must not pass its connection test here and fail at its first user.
                (None, _) => match rt.tokens.authenticate(auth, None) {
                    Some(p) => Some(p),
                    None if auth.is_some() => {
                        let why = || why_refused(&rt, auth, None);
                        return Ok((
                            self.refused(peer, (req.headers(), req.extensions()), None, why),
                            None,
                        ));
                    }
                    None => None,
                },
            };
            if let Some(p) = &principal {
                vouch::vouch_for(&req, p);
            }
            let tenant = principal.map(|p| p.tenant.clone());
            // Parsed once the token has been judged: a refused one is told so first.
            let query = query::Query::parse(req.uri().query())?;
            if method != Method::GET {
                return Err(method_not_allowed(&method, "GET, HEAD"));
            }
            // RFC 7644 §4: a filter on discovery gets 403, so that a client never takes an
            // unfiltered answer for a filtered one.
            if query.get("filter").is_some_and(|f| !f.trim().is_empty()) {
                return Err(ScimError::new(
                    403,
                    None,
                    "discovery endpoints do not support filter; request them without one",
                ));
            }
            let types = [
                rt.rt(tenant.as_deref(), Kind::User),
                rt.rt(tenant.as_deref(), Kind::Group),
            ];
            let v = match &route.endpoint {
                Endpoint::ServiceProviderConfig => {
                    discovery::service_provider_config(&base, &limits)
                }
                Endpoint::ResourceTypes => discovery::resource_types(&base, types),
                Endpoint::ResourceType(id) => discovery::resource_type_by_id(&base, types, id)?,
                Endpoint::Schemas => discovery::schemas(&base, types),
                Endpoint::Schema(id) => discovery::schema_by_id(&base, types, id)?,
                _ => Value::Null,
            };
            return Ok((response::json(200, &v), None));
        }
        let auth = auth::authorization(req.headers());
        let auth = auth.as_deref();
        let Some(principal) = rt.tokens.authenticate(auth, route.tenant.as_deref()) else {
            let why = || why_refused(&rt, auth, route.tenant.as_deref());
            return Ok((
                self.refused(
                    peer,
                    (req.headers(), req.extensions()),
                    route.tenant.as_deref(),
                    why,
                ),
                None,
            ));
        };
        vouch::vouch_for(&req, &principal);
        // From here on a refusal is logged and counted under the tenant and token it came with.
        let served = async {
            let query = query::Query::parse(req.uri().query())?;
            // Boxed, as `handlers::endpoint` boxes its larger handlers: see there.
            Box::pin(self.serve(req, &route, rt, base, query, &method, &principal)).await
        }
        .await;
        let resp = served.unwrap_or_else(|e| {
            refusal(
                &endpoint_as_id(e, &route.endpoint),
                Some(allowed(&route.endpoint)),
            )
        });
        Ok((resp, Some(principal)))
    }

    /// An authenticated request: scope, the tenant's rate limit, then the endpoint.
    #[allow(clippy::too_many_arguments)]
    async fn serve<B>(
        &self,
        req: Request<B>,
        route: &Route,
        rt: Arc<Runtime>,
        base: String,
        query: query::Query,
        method: &Method,
        principal: &Arc<Principal>,
    ) -> ScimResult<Resp>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Only where a write could be served: elsewhere (the feed, the plan, discovery) a
        // write is 405 with what is allowed, whatever the token's scope.
        let writable = matches!(
            route.endpoint,
            Endpoint::Collection(_) | Endpoint::Resource(..) | Endpoint::Bulk | Endpoint::Me
        );
        if principal.scope == crate::config::Scope::Read
            && writable
            && matches!(
                *method,
                Method::POST | Method::PUT | Method::PATCH | Method::DELETE
            )
        {
            let e = ScimError::new(
                403,
                None,
                format!(
                    "the token \"{}\" has scope read; writes need a token with scope provision",
                    principal.token_name
                ),
            );
            // RFC 6750 §3.1: the token is valid, but not for this.
            return Ok(response::with_header(
                response::error(&e),
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"scimd\", error=\"insufficient_scope\"",
            ));
        }
        let tenant = rt.config.tenants.get(&principal.tenant);
        if let Some(t) = tenant
            && let Some(rate) = t.rate_limit
        {
            let burst = t.rate_burst.map(f64::from).unwrap_or(rate.ceil()).max(1.0);
            // A bucket for each token: the application polling its feed with its read token
            // must not use up the IdP's pace, nor a long IdP sync lock the application out.
            let key = format!("{}\0{}", principal.tenant, principal.token_name);
            if let Err(wait) = self.limiter.check(&key, rate, burst, Instant::now()) {
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                if self.first_this_minute(&format!("tenant {key}")) {
                    tracing::warn!(
                        tenant = principal.tenant.as_str(),
                        token_name = principal.token_name.as_str(),
                        rate_limit = rate,
                        rate_burst = burst,
                        "over its rate_limit; answering 429 (said once a minute)"
                    );
                }
                let e = ScimError::new(
                    429,
                    None,
                    format!(
                        "tenant {}'s token \"{}\" is over its rate limit of {rate} requests per \
                         second; retry after {secs} s",
                        principal.tenant, principal.token_name
                    ),
                );
                let resp = response::with_header(
                    response::error(&e),
                    header::RETRY_AFTER,
                    &secs.to_string(),
                );
                return Ok(resp);
            }
        }
        let headers = req.headers();
        // Every field line, joined as RFC 9110 §5.3 allows, and bytes outside ASCII kept
        // (replaced) rather than the header dropped: a precondition that cannot be read is
        // one that names no version, never one that was not sent.
        // A line that is `*` alone (a client or proxy that sent the field twice) keeps
        // its meaning, "any version", rather than become a list naming none.
        let header_str = |n: header::HeaderName| {
            let lines = headers.get_all(&n);
            let star = |v: &http::HeaderValue| v.as_bytes().trim_ascii() == b"*";
            if lines.iter().any(star) {
                return Some("*".to_string());
            }
            let mut lines = lines.iter();
            let first = String::from_utf8_lossy(lines.next()?.as_bytes()).into_owned();
            Some(lines.fold(first, |all, v| {
                all + ", " + &String::from_utf8_lossy(v.as_bytes())
            }))
        };
        let if_match = header_str(header::IF_MATCH);
        let if_none_match = header_str(header::IF_NONE_MATCH);
        let backlog = req.extensions().get::<backlog::Backlog>().cloned();
        // Taken before anything below can refuse the request: a body refused as not JSON,
        // or sent with the wrong type, is what an admin watching a new IdP needs to see.
        let captured = tenant.is_some_and(|t| t.log_bodies).then(|| {
            let tenant = Some(principal.tenant.as_str());
            let hidden =
                redact::hidden_names(&[rt.rt(tenant, Kind::User), rt.rt(tenant, Kind::Group)]);
            Captured::of(&req, hidden)
        });
        // Only a body read as JSON is logged: anything else could not be redacted.
        let mut logged_body = None;
        let answer = async {
            // A method the endpoint never takes is told so before its body is judged: no
            // body could make it work.
            if matches!(
                route.endpoint,
                Endpoint::Root
                    | Endpoint::Collection(_)
                    | Endpoint::Resource(..)
                    | Endpoint::Search(_)
                    | Endpoint::Events
                    | Endpoint::Plan
                    | Endpoint::PlanMembers
            ) && !allowed(&route.endpoint)
                .split(", ")
                .any(|m| m == method.as_str())
            {
                return Err(method_not_allowed(method, allowed(&route.endpoint)));
            }
            // /Bulk and /Me answer 501 whatever is sent, and a path that names nothing 404:
            // no body is judged first.
            // The body's room is held until the request is answered (see `BodyRoom`).
            let (body, _room) = if matches!(*method, Method::POST | Method::PUT | Method::PATCH)
                && !matches!(
                    route.endpoint,
                    Endpoint::Bulk | Endpoint::Me | Endpoint::Unknown
                ) {
                // As the token was read at first, for the check after the body (only
                // requests with a body: reads, the most, need no copy).
                let authorization = auth::authorization(req.headers()).map(|a| a.into_owned());
                let (body, room) = self
                    .read_body(req, &rt, backlog.as_ref(), principal)
                    .await?;
                // A reload while the body came in may have revoked the token (one that
                // leaked): a write begun before must not be carried out after.
                let now = self.runtime();
                if !Arc::ptr_eq(&now, &rt)
                    && now
                        .tokens
                        .authenticate(authorization.as_deref(), route.tenant.as_deref())
                        .is_none_or(|p| *p != **principal)
                {
                    return Err(ScimError::new(
                        401,
                        None,
                        "the bearer token is not valid: a reload revoked or changed it while \
                         the request body was arriving",
                    ));
                }
                (Some(body), Some(room))
            } else {
                (None, None)
            };
            if captured.is_some() {
                logged_body = (body.as_ref().zip(captured.as_ref()))
                    .map(|(b, c)| redact::for_log(b, 64 * 1024, &c.hidden));
            }
            let ctx = Ctx {
                principal: principal.clone(),
                base,
                rt,
                query,
                if_match,
                if_none_match,
                backlog,
            };
            handlers::endpoint(self, &ctx, method, &route.endpoint, body).await
        }
        .await;
        if let Some(c) = captured {
            let status = answer
                .as_ref()
                .map_or_else(|e| e.status, |r| r.status().as_u16());
            tracing::info!(target: "scimd::capture", tenant = %principal.tenant,
                token_name = %principal.token_name, method = %method, uri = c.uri,
                user_agent = c.user_agent, content_type = c.content_type, status,
                body = logged_body.as_deref(), request_id = c.request_id.as_deref(),
                "request with its body (log_bodies)");
        }
        answer
    }

    /// After a reload or a new certificate the admin is testing a fix: what was said once an
    /// hour may be said again.
    pub(crate) fn forget_said(&self) {
        self.said_ignored.clear();
    }

    /// `Limiter::within_hour` on the lines this server says about its clients.
    pub(crate) fn within_this_hour(&self, budgets: &[(&str, u32)]) -> bool {
        self.said_ignored.within_hour(budgets, Instant::now())
    }

    /// True the first time in a minute `whom` (an address or tenant, with what it is about)
    /// asks: a line said once a minute.
    pub(crate) fn first_this_minute(&self, whom: &str) -> bool {
        self.said_each_minute
            .check(whom, 1.0 / 60.0, 1.0, Instant::now())
            .is_ok()
    }

    /// `first_this_minute` for `what` from `ip`'s address, as the token throttle counts it
    /// (an IPv6 /64 is one): a client must not step past a once-a-minute line by changing
    /// its address within its network.
    pub(crate) fn first_from_this_minute(&self, what: &str, ip: std::net::IpAddr) -> bool {
        self.first_this_minute(&format!("{what} from {}", auth::throttle_key(ip)))
    }

    /// Whether `whom` has been said fewer than ten times in the last minute (a burst of ten,
    /// refilled at ten a minute): for what a flood from one address repeats.
    pub(crate) fn few_this_minute(&self, whom: &str) -> bool {
        self.said_each_minute
            .check(whom, 10.0 / 60.0, 10.0, Instant::now())
            .is_ok()
    }

    fn base_url<B>(&self, req: &Request<B>, rt: &Runtime, route: &Route) -> String {
        if let Some(p) = rt.config.server.public_base() {
            return format!("{p}{}", route.prefix);
        }
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .unwrap_or(&rt.config.server.listen);
        // Built in one allocation: every request makes one.
        let mut url =
            String::with_capacity(self.scheme.len() + 3 + host.len() + route.prefix.len());
        for part in [self.scheme, "://", host, &route.prefix] {
            url.push_str(part);
        }
        url
    }
}

/// A method as a metrics label: only standard methods become labels, so clients cannot
/// grow the series count.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        _ => "OTHER",
    }
}

/// What a `log_bodies` line shows of a request besides its body.
struct Captured {
    uri: String,
    user_agent: Option<String>,
    content_type: Option<String>,
    request_id: Option<String>,
    /// The tenant's attributes never shown, withheld from the line as passwords are.
    hidden: Vec<&'static str>,
}

impl Captured {
    fn of<B>(req: &Request<B>, hidden: Vec<&'static str>) -> Captured {
        let header = |n: header::HeaderName| {
            req.headers()
                .get(n)
                .map(|v| response::clip(&String::from_utf8_lossy(v.as_bytes()), 200).into_owned())
        };
        // A query naming a secret (a filter on the password) may quote it.
        let uri = req.uri().to_string();
        let decoded = percent_encoding::percent_decode_str(&uri.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        let uri = if redact::names_hidden(&uri, &hidden) || redact::names_hidden(&decoded, &hidden)
        {
            format!("{} (query withheld)", req.uri().path())
        } else {
            response::clip(&uri, 2000).into_owned()
        };
        Captured {
            uri,
            user_agent: header(header::USER_AGENT),
            content_type: header(header::CONTENT_TYPE),
            request_id: req
                .extensions()
                .get::<request_id::RequestId>()
                .map(|i| i.0.clone()),
            hidden,
        }
    }
}

/// A Base URL given to the IdP with an endpoint on its end makes every request name the
/// endpoint twice (`/Users/Users?filter=…`): a 404 or 405 for such an id says so.
fn endpoint_as_id(mut e: ScimError, endpoint: &Endpoint) -> ScimError {
    const ENDPOINTS: [&str; 5] = [
        "Users",
        "Groups",
        "Schemas",
        "ResourceTypes",
        "ServiceProviderConfig",
    ];
    if let Endpoint::Resource(_, id) = endpoint
        && matches!(e.status, 404 | 405)
        && ENDPOINTS.iter().any(|n| n.eq_ignore_ascii_case(id))
    {
        e.detail.push_str(
            "; that is an endpoint's name, so the IdP's Base URL may end in one (such as \
             /Users): it must end at /scim/v2",
        );
    }
    e
}

/// A refusal as a response; a 405 names the methods the endpoint allows.
fn refusal(e: &ScimError, allow: Option<&str>) -> Resp {
    let r = response::error(e);
    if e.status == 405 {
        return response::with_header(r, header::ALLOW, allow.unwrap_or("GET"));
    }
    r
}

/// 405 for a method HTTP defines that this endpoint does not take; 501 for one no
/// endpoint could take (RFC 9110 §15.6.2: the server does not recognise it).
pub fn method_not_allowed(method: &Method, allowed: &str) -> ScimError {
    let known = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::TRACE,
        Method::CONNECT,
    ];
    if !known.contains(method) {
        return ScimError::new(
            501,
            None,
            format!("{method} is not an HTTP method scimd serves; it takes {ALLOWED_ANYWHERE}"),
        );
    }
    ScimError::new(
        405,
        None,
        format!("{method} is not supported here; allowed: {allowed}"),
    )
}

/// Every method some endpoint takes: the answer to `OPTIONS *`.
const ALLOWED_ANYWHERE: &str = "GET, HEAD, POST, PUT, PATCH, DELETE";

fn allowed(e: &Endpoint) -> &'static str {
    match e {
        Endpoint::Collection(_) => "GET, HEAD, POST",
        Endpoint::Resource(..) => "GET, HEAD, PUT, PATCH, DELETE",
        Endpoint::Search(_) => "POST",
        _ => "GET, HEAD",
    }
}

/// The endpoint as a template for logs: never an id or a tenant's data.
fn template(e: &Endpoint) -> &'static str {
    match e {
        Endpoint::Collection(k) => match k {
            crate::scim::schema::Kind::User => "/Users",
            crate::scim::schema::Kind::Group => "/Groups",
        },
        Endpoint::Resource(k, _) => match k {
            crate::scim::schema::Kind::User => "/Users/{id}",
            crate::scim::schema::Kind::Group => "/Groups/{id}",
        },
        Endpoint::Search(None) => "/.search",
        Endpoint::Search(Some(crate::scim::schema::Kind::User)) => "/Users/.search",
        Endpoint::Search(Some(crate::scim::schema::Kind::Group)) => "/Groups/.search",
        Endpoint::Root => "/",
        Endpoint::ServiceProviderConfig => "/ServiceProviderConfig",
        Endpoint::ResourceTypes | Endpoint::ResourceType(_) => "/ResourceTypes",
        Endpoint::Schemas | Endpoint::Schema(_) => "/Schemas",
        Endpoint::Me => "/Me",
        Endpoint::Bulk => "/Bulk",
        Endpoint::Events => "/tenants/{tenant}/events",
        Endpoint::Plan => "/tenants/{tenant}/plan",
        Endpoint::PlanMembers => "/tenants/{tenant}/plan/members",
        Endpoint::Unknown => "unknown",
    }
}
