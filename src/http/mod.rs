//! HTTP: routing, authentication, body limits, request parsing, and rendering of responses
//! and errors. Knows the SCIM core and the store's API, never redb's tables.

mod app_side;
pub mod backlog;
mod cursor;
mod discovery;
mod handlers;
pub(crate) mod limit;
mod lists;
pub mod query;
pub mod response;
pub mod router;
mod sso;
pub mod unread;
pub mod vouch;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use serde_json::Value;

use crate::auth::{Principal, Tokens};
use crate::config::Config;
use crate::scim::error::{ScimError, ScimResult};
use crate::scim::schema::{Kind, Rt};
use crate::store::Store;
use crate::store::plan::{PlanRules, SeatPolicy};
use response::Resp;
use router::{Endpoint, Route};

/// What a reload may replace: tenants, tokens and limits.
pub struct Runtime {
    pub config: Config,
    pub tokens: Tokens,
    pub plans: std::collections::HashMap<String, Arc<PlanRules>>,
    /// Each tenant's User and Group types with its schema extensions.
    pub types: std::collections::HashMap<String, (Rt, Rt)>,
    pub create_only: std::collections::HashMap<String, Arc<Vec<String>>>,
}

impl Runtime {
    pub fn new(config: Config) -> Runtime {
        let plans = config
            .tenants
            .iter()
            .filter_map(|(name, t)| {
                t.plan
                    .as_ref()
                    .map(|p| (name.clone(), Arc::new(plan_rules(p))))
            })
            .collect();
        let create_only = config
            .tenants
            .iter()
            .map(|(name, t)| (name.clone(), Arc::new(t.create_only.clone())))
            .collect();
        let types = config
            .tenants
            .iter()
            .map(|(name, t)| {
                let user = crate::extensions::resource_type(Kind::User, t);
                let group = crate::extensions::resource_type(Kind::Group, t);
                (name.clone(), (user, group))
            })
            .collect();
        Runtime {
            types,
            tokens: Tokens::from_config(&config),
            config,
            plans,
            create_only,
        }
    }

    /// A writer in `tenant` under these settings, named `token` in the change feed.
    pub fn actor(&self, tenant: &str, token: &str) -> crate::store::Actor {
        crate::store::Actor {
            tenant: tenant.to_string(),
            token: token.to_string(),
            retention: self.retention(tenant),
            plan: self.plans.get(tenant).cloned(),
            create_only: self.create_only.get(tenant).cloned().unwrap_or_default(),
        }
    }

    /// How many events, and how old, `tenant`'s change feed keeps.
    pub fn retention(&self, tenant: &str) -> crate::store::Retention {
        let t = self.config.tenants.get(tenant);
        let mut retention = crate::store::Retention::default();
        if let Some(n) = t.and_then(|t| t.events_max_count) {
            retention.max_count = n;
        }
        retention.max_age_secs = t.and_then(|t| t.events_max_age_days).map(|d| d * 86_400);
        retention
    }
}

pub fn plan_rules(p: &crate::config::PlanConfig) -> PlanRules {
    PlanRules {
        name: p.name.clone(),
        test_threshold: p.test_threshold,
        seats: p.seats,
        on_seat_limit: match p.on_seat_limit {
            crate::config::SeatLimitPolicy::Reject => SeatPolicy::Reject,
            crate::config::SeatLimitPolicy::Free => SeatPolicy::Free,
        },
        // Matching ignores case, so entries differing only in case are one person (one
        // seat); check-config warns about them. Sorted: the plan list walks them in order.
        existing_members: p
            .existing_members
            .iter()
            .map(|m| m.trim().to_lowercase())
            .filter(|m| !m.is_empty())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
    }
}

/// Wrong bearer tokens allowed per source address: a burst, then one a second. Generous:
/// tokens are too long to guess, so this only stops a misconfigured client from flooding
/// the log, and must never trip an IdP's or an admin's few tries.
const AUTH_FAIL_BURST: f64 = 100.0;
const AUTH_FAIL_RATE: f64 = 1.0;

pub struct App {
    pub store: Store,
    auth_failures: limit::Limiter,
    pub metrics: crate::metrics::HttpMetrics,
    limiter: limit::Limiter,
    /// Warnings about 429s: once a minute per address or tenant, or a flood of requests
    /// would write a flood of them.
    said_429: limit::Limiter,
    /// Lines said at most so often (`within_this_hour`): ignored attributes, once an hour for
    /// each tenant, resource type and set of names (an IdP's mapping sends the same ones
    /// with every user of a full sync), and the listener's failed TLS handshakes.
    said_ignored: limit::Limiter,
    runtime: RwLock<Arc<Runtime>>,
    scheme: &'static str,
    /// Room for request bodies being received, all connections together (see `backlog`).
    bodies: backlog::Room,
}

/// Everything a handler needs about one request.
pub struct Ctx {
    pub principal: Principal,
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

impl Runtime {
    /// `kind` as `tenant` sees it (its schema extensions included).
    pub fn rt(&self, tenant: Option<&str>, kind: Kind) -> Rt {
        match tenant.and_then(|t| self.types.get(t)) {
            Some((u, _)) if kind == Kind::User => *u,
            Some((_, g)) => *g,
            None => kind.into(),
        }
    }
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
            said_429: limit::Limiter::default(),
            said_ignored: limit::Limiter::default(),
            bodies: backlog::body_room(backlog::BODIES_EVERYWHERE, config.server.max_body_bytes),
            runtime: RwLock::new(Arc::new(Runtime::new(config))),
            scheme,
        }
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
    pub async fn handle<B>(self: Arc<Self>, req: Request<B>, peer: SocketAddr) -> Resp
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if req.method() != Method::HEAD {
            let method = req.method().clone();
            return self.answer(req, peer, method).await;
        }
        // RFC 9110 §9.3.2: HEAD is GET without the content (monitors and proxies use it).
        let (mut parts, body) = req.into_parts();
        parts.method = Method::GET;
        let resp = self
            .answer(Request::from_parts(parts, body), peer, Method::HEAD)
            .await;
        response::without_content(resp)
    }

    /// Serve one request; `method` is the one the client sent, for logs and metrics.
    async fn answer<B>(self: Arc<Self>, req: Request<B>, peer: SocketAddr, method: Method) -> Resp
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
        if let Some(e) = malformed(&req) {
            tracing::info!(target: "scimd::request", %peer, method = %method, status = 400,
                detail = e.detail, "request refused");
            return response::error(&e);
        }
        if req.uri().path() == "/metrics" {
            return self.metrics_page(&req, peer).await;
        }
        if let Some(tenant) = sso::match_path(req.uri().path()) {
            // From the URL: at most 64 characters of it in the log.
            let named: String = tenant.as_deref().unwrap_or("-").chars().take(64).collect();
            let resp = sso::handle(req, tenant, &self.runtime()).await;
            tracing::info!(target: "scimd::request", %peer, method = %method, path = "/sso/login_redirect",
                status = resp.status().as_u16(), latency_ms = started.elapsed().as_micros() as f64 / 1000.0,
                tenant = %named, "request");
            return resp;
        }
        let route = router::route(req.uri().path());
        let template = route
            .as_ref()
            .map(|r| template(&r.endpoint))
            .unwrap_or("other");
        let allow = route.as_ref().map(|r| allowed(&r.endpoint));
        // A path no endpoint has is logged as sent (escaped, cut at 100 characters): the
        // admin needs it to find a wrong Base URL.
        let unknown_path = matches!(template, "unknown" | "other").then(|| {
            let p = req.uri().path();
            let cut = p.char_indices().nth(100).map_or(p.len(), |(i, _)| i);
            p[..cut].escape_debug().to_string()
        });
        let (resp, who) = match self.dispatch(req, route, peer).await {
            Ok((r, who)) => (r, who),
            Err(e) => (refusal(&e, allow), None),
        };
        let status = resp.status().as_u16();
        let tenant = who.as_ref().map(|p| p.tenant.as_str()).unwrap_or("-");
        // Only standard methods become labels, so clients cannot grow the series count.
        let method_label = match method {
            Method::GET
            | Method::POST
            | Method::PUT
            | Method::PATCH
            | Method::DELETE
            | Method::HEAD => method.as_str(),
            _ => "OTHER",
        };
        self.metrics.record(
            template,
            method_label,
            status,
            tenant,
            started.elapsed().as_secs_f64(),
        );
        // Every change and every refusal at info; reads that succeed at debug. An IdP's sync
        // cycle is mostly lookups, thousands a second: at info they would cost ~15% of the
        // read rate and run into journald's rate limit, which then drops the lines that
        // matter (writes, errors) along with them. A 429 is said once a minute instead.
        let read = matches!(method, Method::GET | Method::HEAD) || template.ends_with(".search");
        macro_rules! request_line {
            ($level:expr) => {
                tracing::event!(
                    target: "scimd::request",
                    $level,
                    %peer,
                    method = %method,
                    path = template,
                    unknown_path = unknown_path.as_deref(),
                    status,
                    scim_type = resp
                        .extensions()
                        .get::<crate::scim::error::ScimType>()
                        .map(|t| t.as_str()),
                    detail = resp
                        .extensions()
                        .get::<response::Detail>()
                        .map(|d| d.0.as_str()),
                    latency_ms = started.elapsed().as_micros() as f64 / 1000.0,
                    tenant = who.as_ref().map(|p: &Principal| p.tenant.as_str()).unwrap_or("-"),
                    token_name = who.as_ref().map(|p| p.token_name.as_str()).unwrap_or("-"),
                    "request"
                )
            };
        }
        if (read && status < 400) || status == 429 {
            request_line!(tracing::Level::DEBUG);
        } else {
            request_line!(tracing::Level::INFO);
        }
        resp
    }

    async fn dispatch<B>(
        &self,
        req: Request<B>,
        route: Option<Route>,
        peer: SocketAddr,
    ) -> ScimResult<(Resp, Option<Principal>)>
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
            let auth = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let tenant = match (&route.tenant, auth) {
                (Some(t), Some(_)) => match rt.tokens.authenticate(auth, Some(t)) {
                    Some(p) => Some(p.tenant),
                    None => {
                        let why = || why_refused(&rt, auth, Some(t));
                        return Ok((self.refused(peer, auth, true, why), None));
                    }
                },
                (Some(_), None) => None,
                // No token: the standard schemas. A wrong one is refused (and counted), or
                // discovery would tell a guesser which tokens are valid.
                (None, _) => match rt.tokens.authenticate(auth, None) {
                    Some(p) => Some(p.tenant),
                    None if auth.and_then(crate::auth::bearer).is_some() => {
                        let why = || why_refused(&rt, auth, None);
                        return Ok((self.refused(peer, auth, false, why), None));
                    }
                    None => None,
                },
            };
            if tenant.is_some() {
                vouch::vouch_for(&req);
            }
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
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let Some(principal) = rt.tokens.authenticate(auth, route.tenant.as_deref()) else {
            let why = || why_refused(&rt, auth, route.tenant.as_deref());
            return Ok((self.refused(peer, auth, route.tenant.is_some(), why), None));
        };
        vouch::vouch_for(&req);
        // From here on a refusal is logged and counted under the tenant and token it came with.
        let served = async {
            let query = query::Query::parse(req.uri().query())?;
            self.serve(req, &route, rt, base, query, &method, &principal)
                .await
        }
        .await;
        let resp = served.unwrap_or_else(|e| refusal(&e, Some(allowed(&route.endpoint))));
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
        principal: &Principal,
    ) -> ScimResult<Resp>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let search = matches!(route.endpoint, Endpoint::Search(_));
        if principal.scope == crate::config::Scope::Read
            && (matches!(*method, Method::PUT | Method::PATCH | Method::DELETE)
                || (method == Method::POST && !search))
        {
            return Err(ScimError::new(
                403,
                None,
                format!(
                    "the token \"{}\" has scope read; writes need a token with scope provision",
                    principal.token_name
                ),
            ));
        }
        if let Some(t) = rt.config.tenants.get(&principal.tenant)
            && let Some(rate) = t.rate_limit
        {
            let burst = t.rate_burst.map(f64::from).unwrap_or(rate.ceil()).max(1.0);
            if let Err(wait) = self
                .limiter
                .check(&principal.tenant, rate, burst, Instant::now())
            {
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                if self.first_429_this_minute(&format!("tenant {}", principal.tenant)) {
                    tracing::warn!(tenant = %principal.tenant, "over its rate_limit; answering 429 (said once a minute)");
                }
                let e = ScimError::new(
                    429,
                    None,
                    format!(
                        "tenant {} is over its rate limit of {rate} requests per second; retry after {secs} s",
                        principal.tenant
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
        let header_str = |n: header::HeaderName| {
            req.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let if_match = header_str(header::IF_MATCH);
        let if_none_match = header_str(header::IF_NONE_MATCH);
        let backlog = req.extensions().get::<backlog::Backlog>().cloned();
        // A method the endpoint never takes is told so before its body is judged: no body
        // could make it work.
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
        let body = if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
            Some(self.read_body(req, &rt, backlog.as_ref()).await?)
        } else {
            None
        };
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

    /// The answer to a request whose token was missing or refused: 401 with the reason, or
    /// 429 once this address has sent too many refused Authorization headers. Only those are
    /// charged, per source address, wherever they are sent (SCIM, discovery, metrics): a
    /// valid token is never slowed down, even from an address shared with a misconfigured
    /// neighbour, and a request without the header guesses nothing (and gets no reason
    /// logged, so it cannot double the log either).
    /// `why` says, for the log only, why a token that was sent was refused; it is worked out
    /// only when logged, never for a throttled request. The client learns no more than the
    /// detail below.
    fn refused(
        &self,
        peer: SocketAddr,
        auth: Option<&str>,
        tenant_named: bool,
        why: impl FnOnce() -> String,
    ) -> Resp {
        // Counted here, throttled or not: a brute force must show in the count.
        self.metrics
            .auth_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = auth.and_then(crate::auth::bearer);
        let sent = token.is_some();
        let detail = match auth {
            None => "missing Authorization header; send \"Authorization: Bearer <token>\"",
            // The IdP adds "Bearer " itself to what its token field holds.
            Some(_) if token.is_some_and(said_bearer_twice) => {
                "the Authorization header says Bearer twice; give the IdP the token alone, without \"Bearer\""
            }
            Some(_) if sent && tenant_named => {
                "the bearer token is not valid for this tenant; check both the token and the tenant name in the Base URL (/tenants/NAME/scim/v2)"
            }
            Some(_) if sent => "the bearer token is not valid",
            Some(a) if a.trim().to_ascii_lowercase().starts_with("bearer") => {
                "the Authorization header holds no token; send \"Authorization: Bearer <token>\""
            }
            Some(_) => "only bearer tokens are accepted; send \"Authorization: Bearer <token>\"",
        };
        if auth.is_some()
            && let Err(wait) = self.auth_failures.check(
                &peer.ip().to_string(),
                AUTH_FAIL_RATE,
                AUTH_FAIL_BURST,
                Instant::now(),
            )
        {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            if self.first_429_this_minute(&format!("address {}", peer.ip())) {
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
        // Past the throttle only, and only when something was sent: a flood of wrong tokens,
        // or of bare requests (never throttled), must not double the log.
        if auth.is_some() {
            let why = if sent { why() } else { detail.to_string() };
            tracing::info!(target: "scimd::request", %peer, "authentication refused: {why}");
        }
        let resp = response::error(&ScimError::new(401, None, detail));
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

    pub(crate) fn first_this_hour(&self, what: &str) -> bool {
        self.within_this_hour(what, 1)
    }

    /// After a reload or a new certificate the admin is testing a fix: what was said once an
    /// hour may be said again.
    pub(crate) fn forget_said(&self) {
        self.said_ignored.clear();
    }

    /// Whether `what` has been said fewer than `times` times in the last hour (a token
    /// bucket: the budget comes back over the hour); counts this time if so.
    pub(crate) fn within_this_hour(&self, what: &str, times: u32) -> bool {
        let times = f64::from(times);
        self.said_ignored
            .check(what, times / 3600.0, times, Instant::now())
            .is_ok()
    }

    fn first_429_this_minute(&self, whom: &str) -> bool {
        self.said_429
            .check(whom, 1.0 / 60.0, 1.0, Instant::now())
            .is_ok()
    }

    /// `GET /metrics`: Prometheus text, for the holder of `server.metrics_token_sha256`.
    async fn metrics_page<B>(&self, req: &Request<B>, peer: SocketAddr) -> Resp {
        let rt = self.runtime();
        let Some(want) = rt.config.server.metrics_token_sha256.clone() else {
            return response::error(&ScimError::not_found(
                "metrics are off: set server.metrics_token_sha256",
            ));
        };
        let auth = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let ok = crate::auth::unhex(&want.to_ascii_lowercase()).is_some_and(|want| {
            auth.and_then(crate::auth::bearer)
                .is_some_and(|t| crate::auth::is_token(t, &want))
        });
        if !ok {
            let why = || "not the metrics token (server.metrics_token_sha256)".to_string();
            return self.refused(peer, auth, false, why);
        }
        let mut out = String::new();
        self.metrics.render(&mut out);
        self.store.metrics.render(&mut out);
        out.push_str("# HELP scimd_database_bytes Size of the database file.\n# TYPE scimd_database_bytes gauge\n");
        out.push_str(&format!(
            "scimd_database_bytes {}\n",
            self.store.file_size()
        ));
        out.push_str(
            "# HELP scimd_resources Users and groups per tenant.\n# TYPE scimd_resources gauge\n",
        );
        // A tenant taken out of the configuration still holds its data on disk.
        let mut tenants: Vec<String> = rt.config.tenants.keys().cloned().collect();
        tenants.extend(self.store.stored_tenants().await.unwrap_or_default());
        tenants.sort();
        tenants.dedup();
        for tenant in &tenants {
            for kind in [Kind::User, Kind::Group] {
                // A count the database cannot give is left out, never shown as zero.
                let Ok(n) = self.store.count(tenant.clone(), kind).await else {
                    continue;
                };
                out.push_str(&format!(
                    "scimd_resources{{tenant=\"{tenant}\",kind=\"{}\"}} {n}\n",
                    kind.as_str()
                ));
            }
        }
        let mut r = http::Response::new(response::Body::full(out));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        r
    }

    /// `GET /healthz`: no token; 200 when the database answers a read, else 503.
    async fn health(&self) -> Resp {
        let ok = self.store.check().await.is_ok();
        let body = serde_json::json!({
            "status": if ok { "ok" } else { "unavailable" },
            "version": env!("CARGO_PKG_VERSION"),
            "commit": env!("SCIMD_COMMIT"),
            "database": if ok { "ok" } else { "cannot be read" },
        });
        let mut r = response::json(if ok { 200 } else { 503 }, &body);
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        r
    }

    fn base_url<B>(&self, req: &Request<B>, rt: &Runtime, route: &Route) -> String {
        if let Some(p) = rt.config.server.public_base() {
            return format!("{p}{}", route.prefix);
        }
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| rt.config.server.listen.clone());
        format!("{}://{host}{}", self.scheme, route.prefix)
    }

    async fn read_body<B>(
        &self,
        req: Request<B>,
        rt: &Runtime,
        conn: Option<&backlog::Backlog>,
    ) -> ScimResult<Value>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            if !is_json(ct.as_bytes()) {
                return Err(ScimError::new(
                    415,
                    None,
                    format!(
                        "the body must be JSON (Content-Type: application/scim+json), not {}",
                        String::from_utf8_lossy(ct.as_bytes())
                    ),
                ));
            }
            if let Some(cs) = foreign_charset(ct.as_bytes()) {
                return Err(ScimError::new(
                    415,
                    None,
                    format!("the body must be UTF-8 JSON, not charset {cs}"),
                ));
            }
        }
        // A compressed body read as JSON would only be refused as garbage, and one merely
        // labelled compressed would be stored as if it had been decoded.
        if let Some(ce) = req
            .headers()
            .get_all(header::CONTENT_ENCODING)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("?").split(','))
            .map(str::trim)
            .find(|e| !e.eq_ignore_ascii_case("identity"))
        {
            return Err(ScimError::new(
                415,
                None,
                format!("the body must not be encoded (Content-Encoding: {ce}); send plain JSON"),
            ));
        }
        let max = rt.config.server.max_body_bytes;
        let too_large = || {
            ScimError::new(
                413,
                None,
                format!("the request body is larger than the server's limit of {max} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > max as u64) {
            return Err(too_large());
        }
        let timeout = Duration::from_secs(rt.config.server.request_timeout_secs);
        let deadline = tokio::time::Instant::now() + timeout;
        // Room for the body before any of it is read; without a length, for the largest.
        let reserve = declared.map_or(max, |len| len as usize);
        let Ok(_room) = tokio::time::timeout_at(
            deadline,
            backlog::Backlog::body_room(conn, &self.bodies, reserve),
        )
        .await
        else {
            return Err(ScimError::new(
                503,
                None,
                "the server is receiving too many request bodies at once; retry later",
            ));
        };
        let collected =
            tokio::time::timeout_at(deadline, Limited::new(req.into_body(), max).collect()).await;
        let bytes = match collected {
            Err(_) => {
                return Err(ScimError::new(
                    408,
                    None,
                    "the request body did not arrive in time",
                ));
            }
            Ok(Err(e)) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    return Err(too_large());
                }
                return Err(ScimError::invalid_syntax(
                    "the request body could not be read",
                ));
            }
            Ok(Ok(c)) => c.to_bytes(),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ScimError::invalid_syntax(
                "the request body is empty; a JSON object was expected",
            ));
        }
        // RFC 8259 §8.1: a byte order mark may be ignored; some Windows tools write one.
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        crate::scim::json::parse(bytes).map_err(|e| {
            ScimError::invalid_syntax(format!("the request body is not valid JSON: {e}"))
        })
    }
}

/// What makes a request unanswerable whatever it asks (RFC 9112 §3.2, RFC 6750 §3.1): a
/// Host header that is not a host and port (it becomes `meta.location` and `Location`
/// when `public_url` is unset, so `evil.example/phish?` would be echoed to clients), an
/// HTTP/1.1 request without one, or several Authorization headers (which one is meant?).
fn malformed<B>(req: &Request<B>) -> Option<ScimError> {
    // An absolute-form target's authority is used before Host (RFC 9112 §3.2.2).
    if req
        .uri()
        .authority()
        .is_some_and(|a| a.as_str().contains('@'))
    {
        return Some(ScimError::new(400, None, "the request target names a user"));
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Some(ScimError::new(
            400,
            None,
            "the request carries more than one Host header",
        ));
    }
    // HTTP/2: a Host beside :authority must name the same (RFC 9113 §8.3.1).
    if let (Some(a), Some(h)) = (req.uri().authority(), host)
        && req.version() == http::Version::HTTP_2
        && !h.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes())
    {
        return Some(ScimError::new(
            400,
            None,
            "the Host header and :authority name different hosts",
        ));
    }
    if let Some(h) = host {
        let ok = h
            .to_str()
            .ok()
            .and_then(|h| h.parse::<http::uri::Authority>().ok())
            .is_some_and(|a| !a.as_str().contains('@') && !a.host().is_empty());
        if !ok {
            return Some(ScimError::new(
                400,
                None,
                "the Host header is not a host[:port]",
            ));
        }
    } else if req.version() == http::Version::HTTP_11 {
        return Some(ScimError::new(
            400,
            None,
            "an HTTP/1.1 request must carry a Host header",
        ));
    }
    if req
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return Some(ScimError::new(
            400,
            None,
            "the request carries more than one Authorization header; send one",
        ));
    }
    None
}

/// `application/scim+json`, `application/json`, any other `+json` type, with any
/// parameters. A missing Content-Type is let through: some clients omit it, and the body is
/// checked as JSON anyway.
fn is_json(ct: &[u8]) -> bool {
    let ct = String::from_utf8_lossy(ct).to_ascii_lowercase();
    let essence = ct.split(';').next().unwrap_or("").trim();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A `charset` parameter other than UTF-8 (JSON is UTF-8, RFC 8259 §8.1): the body would be
/// read as something it is not.
fn foreign_charset(ct: &[u8]) -> Option<String> {
    let ct = String::from_utf8_lossy(ct);
    ct.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        let v = v.trim().trim_matches('"');
        (k.trim().eq_ignore_ascii_case("charset")
            && !v.eq_ignore_ascii_case("utf-8")
            && !v.eq_ignore_ascii_case("utf8"))
        .then(|| v.to_string())
    })
}

/// A refusal as a response; a 405 names the methods the endpoint allows.
fn refusal(e: &ScimError, allow: Option<&str>) -> Resp {
    let r = response::error(e);
    if e.status == 405 {
        return response::with_header(r, header::ALLOW, allow.unwrap_or("GET"));
    }
    r
}

pub fn method_not_allowed(method: &Method, allowed: &str) -> ScimError {
    ScimError::new(
        405,
        None,
        format!("{method} is not supported here; allowed: {allowed}"),
    )
}

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

/// Whether a bearer token is itself "Bearer …": a token field filled with the header's value.
fn said_bearer_twice(token: &str) -> bool {
    token
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("bearer "))
}

/// Why a bearer token was refused, for the admin reading the log (never the token itself):
/// an IdP's "401" alone does not tell a mistyped tenant URL from a missing reload.
fn why_refused(rt: &Runtime, auth: Option<&str>, url_tenant: Option<&str>) -> String {
    // At most 64 characters of a name from the URL: a client must not write long log lines.
    let shown: Option<String> = url_tenant.map(|t| match t.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &t[..cut]),
        None => t.to_string(),
    });
    let url_tenant = url_tenant.zip(shown.as_deref());
    let owner = rt.tokens.authenticate(auth, None).map(|p| p.tenant);
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
        _ => "the token matches no configured token (a new one not yet reloaded, or a \
              removed or mistyped one)"
            .into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Scope, TenantConfig, TokenConfig};

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
