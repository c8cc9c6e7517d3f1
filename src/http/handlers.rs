//! The resource endpoints: which handler answers a route, and the create, get, replace,
//! patch and delete of one resource (lists and `.search` are in `lists`, the change feed and
//! the plan list in `app_side`).

use http::{Method, header};
use serde_json::{Map, Value};

use super::app_side::{events, plan_members, plan_summary};
use super::lists::{list, params_from_query, params_from_search, send_members};
use super::response::{self, Resp};
use super::router::Endpoint;
use super::{App, Ctx, method_not_allowed};
use crate::scim::error::{ScimError, ScimResult};
use crate::scim::patch;
use crate::scim::projection::Projection;
use crate::scim::render::Resource;
use crate::scim::resource::{self, Ignored};
use crate::scim::schema::Kind;

pub async fn endpoint(
    app: &App,
    ctx: &Ctx,
    method: &Method,
    ep: &Endpoint,
    body: Option<Value>,
) -> ScimResult<Resp> {
    let body = body.unwrap_or(Value::Null);
    // The larger handlers' futures are boxed: inline, the largest one sets the size of every
    // request's future, copied whole at each await up the chain, GET by id's included.
    match (ep, method) {
        (Endpoint::Collection(k), &Method::GET) => {
            Box::pin(list(app, ctx, &[*k], params_from_query(ctx))).await
        }
        (Endpoint::Root, &Method::GET) => {
            Box::pin(list(
                app,
                ctx,
                &[Kind::User, Kind::Group],
                params_from_query(ctx),
            ))
            .await
        }
        (Endpoint::Collection(k), &Method::POST) => Box::pin(create(app, ctx, *k, body)).await,
        (Endpoint::Collection(_), m) => Err(method_not_allowed(m, "GET, HEAD, POST")),
        (Endpoint::Search(k), &Method::POST) => {
            let kinds: &[Kind] = match k {
                Some(Kind::User) => &[Kind::User],
                Some(Kind::Group) => &[Kind::Group],
                None => &[Kind::User, Kind::Group],
            };
            Box::pin(list(app, ctx, kinds, params_from_search(&body))).await
        }
        (Endpoint::Search(_), m) => Err(method_not_allowed(m, "POST")),
        (Endpoint::Resource(k, id), &Method::GET) => get(app, ctx, *k, id).await,
        (Endpoint::Resource(k, id), &Method::PUT) => {
            Box::pin(replace(app, ctx, *k, id, body)).await
        }
        (Endpoint::Resource(k, id), &Method::PATCH) => {
            Box::pin(patch(app, ctx, *k, id, body)).await
        }
        (Endpoint::Resource(k, id), &Method::DELETE) => {
            app.store
                .delete(ctx.actor(), ctx.rt(*k), id.clone(), ctx.conditions())
                .await?;
            Ok(response::empty(204))
        }
        (Endpoint::Resource(..), m) => Err(method_not_allowed(m, "GET, HEAD, PUT, PATCH, DELETE")),
        (Endpoint::Events, &Method::GET) => events(app, ctx).await,
        (Endpoint::Plan, &Method::GET) => plan_summary(app, ctx).await,
        (Endpoint::PlanMembers, &Method::GET) => plan_members(app, ctx).await,
        (Endpoint::Events | Endpoint::Plan | Endpoint::PlanMembers, m) => {
            Err(method_not_allowed(m, "GET, HEAD"))
        }
        (Endpoint::Me, _) => Err(ScimError::new(
            501,
            None,
            "/Me is not supported: tokens belong to provisioning clients, not to users",
        )),
        (Endpoint::Bulk, _) => Err(ScimError::new(
            501,
            None,
            "bulk operations are not supported (see /ServiceProviderConfig)",
        )),
        _ => Err(ScimError::not_found(
            "no such SCIM endpoint; see /ResourceTypes for what this server offers",
        )),
    }
}

/// Render one resource with the request's projection.
pub(super) fn render(ctx: &Ctx, r: Resource, proj: &Projection) -> Map<String, Value> {
    let kind = r.kind;
    let mut m = r.into_json(&ctx.base);
    proj.apply(ctx.rt(kind), &mut m);
    m
}

/// The request's projection, read before any write: a write whose answer could not be
/// projected must not happen.
fn projection(ctx: &Ctx, kind: Kind) -> ScimResult<Projection> {
    Projection::parse_checked(
        ctx.rt(kind),
        ctx.query.get("attributes"),
        ctx.query.get("excludedAttributes"),
    )
}

fn resource_response(status: u16, ctx: &Ctx, r: Resource, proj: &Projection) -> Resp {
    let (etag, location) = (r.etag(), r.location(&ctx.base));
    let resp = response::json(status, &Value::Object(render(ctx, r, proj)));
    let resp = response::with_header(resp, header::ETAG, &etag);
    if status == 201 {
        response::with_header(resp, header::LOCATION, &location)
    } else {
        resp
    }
}

/// Names only, never values: an admin fixes the IdP mapping from this line. At WARN once an
/// hour for the same names (a full sync sends them with every user), at DEBUG between. A URN
/// in `schemas` with nothing under it drops nothing and has no mapping to fix (Entra sends
/// its ADSCIM URN with every group): DEBUG only.
fn log_ignored(app: &App, ctx: &Ctx, kind: Kind, ignored: &Ignored) {
    if ignored.is_empty() {
        return;
    }
    let drops_values = !ignored.attributes.is_empty();
    // The names are the client's: escaped (a line break or an escape sequence would forge
    // log lines), each cut short in its middle (an extension's URN alone is 59 characters:
    // the attribute's name is at the end), and the list too.
    let shown = |names: &mut dyn Iterator<Item = &String>| {
        let list = names
            .map(|n| response::clip_middle(n, 160).escape_debug().to_string())
            .collect::<Vec<_>>()
            .join(",");
        response::clip(&list, 1024).into_owned()
    };
    // An undeclared extension's URN, both in `schemas` and as the key of its object, is
    // named once, as a schema.
    let attributes = shown(
        &mut ignored
            .attributes
            .iter()
            .filter(|a| !ignored.schemas.iter().any(|s| s.eq_ignore_ascii_case(a))),
    );
    let schemas = shown(&mut ignored.schemas.iter());
    // Remembered by a hash of the names: a client sending new names with every request
    // costs the memo a few bytes each, not the names themselves.
    let what = {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        (&attributes, &schemas).hash(&mut h);
        format!(
            "{}\0{}\0{:x}",
            ctx.principal.tenant,
            kind.as_str(),
            h.finish()
        )
    };
    macro_rules! say {
        ($level:ident, $note:literal) => {
            tracing::$level!(
                tenant = ctx.principal.tenant.as_str(),
                token_name = ctx.principal.token_name.as_str(),
                resource = kind.as_str(),
                %attributes,
                %schemas,
                concat!("ignored unknown attributes or schemas; check the IdP's attribute mapping", $note)
            )
        };
    }
    // Once an hour for each set of names, and at most twenty sets a tenant in an hour: a
    // client inventing new names with every request does not fill the journal.
    let tenant_budget = format!("{}\0ignored names", ctx.principal.tenant);
    if drops_values && app.within_this_hour(&[(&what, 1), (&tenant_budget, 20)]) {
        say!(warn, " (said once an hour for the same names)");
    } else {
        say!(debug, "");
    }
}

// The writes take their body and let it go once read: it waits for the writer as its
// parsed copy only (64 clients' PATCHes of 1,000 members held both).
async fn create(app: &App, ctx: &Ctx, kind: Kind, body: Value) -> ScimResult<Resp> {
    let proj = projection(ctx, kind)?.answering(ctx.rt(kind), &body);
    let input = resource::normalize(ctx.rt(kind), &body)?;
    drop(body);
    resource::check_required_extensions(ctx.rt(kind), &input.body, None)?;
    log_ignored(app, ctx, kind, &input.ignored);
    let r = app.store.create(ctx.actor(), ctx.rt(kind), input).await?;
    Ok(resource_response(201, ctx, r, &proj))
}

async fn get(app: &App, ctx: &Ctx, kind: Kind, id: &str) -> ScimResult<Resp> {
    let tenant = ctx.principal.tenant.clone();
    let proj = projection(ctx, kind)?;
    if kind == Kind::Group && proj.wants("members") {
        return get_group_streamed(app, ctx, id, &proj, true).await;
    }
    // Its stored text as it is, when the answer is the resource's default form: a user's
    // with its groups, a group's without its members (how IdPs read a group).
    let as_stored = !ctx.rt(kind).hides_attributes()
        && match kind {
            Kind::User => !ctx.query.has_any(&["attributes", "excludedAttributes"]),
            Kind::Group => proj.only_leaves_out("members"),
        };
    let with_refs = kind == Kind::User;
    if as_stored {
        let s = app
            .store
            .get_stored(tenant.clone(), kind, id.to_string(), with_refs)
            .await?;
        if let Some((body, etag)) = s.default_json(&ctx.base, ctx.rt(kind)) {
            if let Some(resp) = read_conditions(ctx, &etag)? {
                return Ok(resp);
            }
            let resp = response::json_bytes(200, body);
            return Ok(response::with_header(resp, header::ETAG, &etag));
        }
    }
    // A user's groups are read whether or not they are shown: the ETag header covers them
    // (`etag_of`), and one user has one ETag whatever the projection.
    let r = app
        .store
        .get(tenant, kind, id.to_string(), with_refs)
        .await?;
    if let Some(resp) = read_conditions(ctx, &r.etag())? {
        return Ok(resp);
    }
    Ok(resource_response(200, ctx, r, &proj))
}

/// `If-Match` and `If-None-Match` on a read (RFC 9110 §13.1, compared weakly): a stale
/// If-Match is 412, an If-None-Match naming the current version is 304.
fn read_conditions(ctx: &Ctx, etag: &str) -> ScimResult<Option<Resp>> {
    let names = |list: &str| crate::scim::render::names_etag(list, etag);
    if let Some(im) = &ctx.if_match
        && !names(im)
    {
        return Err(ScimError::new(
            412,
            None,
            format!("the resource has changed: its current version is {etag}"),
        ));
    }
    if let Some(inm) = &ctx.if_none_match
        && names(inm)
    {
        let resp = response::with_header(response::empty(304), header::ETAG, etag);
        return Ok(Some(resp));
    }
    Ok(None)
}

/// A group with its members, streamed: the member list is read in batches and written as
/// it is read, so a group of a million costs no more memory than a group of ten, whatever
/// the projection. The group and its members come from one snapshot. `read`: the request
/// is a read, whose `If-Match`/`If-None-Match` are judged here (a write's were judged
/// against the version it changed).
async fn get_group_streamed(
    app: &App,
    ctx: &Ctx,
    id: &str,
    proj: &Projection,
    read: bool,
) -> ScimResult<Resp> {
    let server = &ctx.rt.config.server;
    let stall = std::time::Duration::from_secs(server.request_timeout_secs);
    // Room for what the stream reads ahead of its client, before it reads anything.
    let room = match &ctx.backlog {
        Some(b) => Some(b.stream_room(server.max_unread_mb << 20, stall).await?),
        None => None,
    };
    let (r, mut batches) = app
        .store
        .group_with_member_batches(ctx.principal.tenant.clone(), id, stall)
        .await?;
    let etag = r.etag();
    if read && let Some(resp) = read_conditions(ctx, &etag)? {
        return Ok(resp);
    }
    let head = render(ctx, r, proj);
    let mut head = serde_json::to_string(&Value::Object(head)).unwrap_or_default();
    head.pop(); // the closing brace: members follow
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(2);
    let base = ctx.base.clone();
    let narrowed = proj.narrows("members").then(|| proj.clone());
    let rt = ctx.rt(Kind::Group);
    tokio::spawn(async move {
        let _room = room; // until the stream ends
        let narrowed = narrowed.as_ref().map(|p| (p, rt));
        send_members(&tx, &mut batches, &base, narrowed, head).await;
    });
    let mut resp = http::Response::new(response::Body::stream(rx));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(response::SCIM_JSON),
    );
    Ok(response::with_header(resp, header::ETAG, &etag))
}

async fn replace(app: &App, ctx: &Ctx, kind: Kind, id: &str, body: Value) -> ScimResult<Resp> {
    let proj = projection(ctx, kind)?.answering(ctx.rt(kind), &body);
    let input = resource::normalize(ctx.rt(kind), &body)?;
    drop(body);
    log_ignored(app, ctx, kind, &input.ignored);
    let r = app
        .store
        .replace(
            ctx.actor(),
            ctx.rt(kind),
            id.to_string(),
            input,
            ctx.conditions(),
        )
        .await?;
    Ok(resource_response(200, ctx, r, &proj))
}

/// PATCH answers 200 with the user. A group answers 204 (what Entra expects, and RFC 7644
/// §3.5.2 allows) unless the client asked for attributes, because its member list can be
/// large and rendering it would make a one-member change cost as much as the whole group.
async fn patch(app: &App, ctx: &Ctx, kind: Kind, id: &str, body: Value) -> ScimResult<Resp> {
    let ops = patch::parse_request_with(&body, ctx.rt.config.server.max_patch_operations)?;
    let proj = projection(ctx, kind)?.answering(ctx.rt(kind), &body);
    drop(body);
    let (r, ignored) = app
        .store
        .patch(
            ctx.actor(),
            ctx.rt(kind),
            id.to_string(),
            ops,
            ctx.conditions(),
        )
        .await?;
    log_ignored(app, ctx, kind, &ignored);
    if kind == Kind::Group {
        let done = || response::with_header(response::empty(204), header::ETAG, &r.etag());
        if !ctx.query.has_any(&["attributes", "excludedAttributes"]) {
            return Ok(done());
        }
        if proj.wants("members") {
            // Read back after the commit, so another write may have come between. A group
            // deleted since still had this change committed: 204 says so (RFC 7644 §3.5.2
            // allows it), where a 404 would tell the IdP its change failed.
            return match get_group_streamed(app, ctx, id, &proj, false).await {
                Err(e) if e.status == 404 => Ok(done()),
                answer => answer,
            };
        }
    }
    // Without members the record this change wrote is the answer, not a later one.
    Ok(resource_response(200, ctx, r, &proj))
}
