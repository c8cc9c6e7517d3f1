//! The resource endpoints: `/Users`, `/Groups`, their ids, and `.search`.

use http::{Method, header};
use serde_json::{Map, Value, json};

use super::response::{self, Resp};
use super::router::Endpoint;
use super::{App, Ctx, method_not_allowed};
use crate::scim::error::{ScimError, ScimResult};
use crate::scim::filter::{self, ForType};
use crate::scim::patch;
use crate::scim::projection::Projection;
use crate::scim::render::Resource;
use crate::scim::resource::{self, Ignored};
use crate::scim::schema::{Kind, LIST_RESPONSE, SEARCH_REQUEST};
use crate::scim::sort::{SortKey, SortSpec};
use crate::store::{ListQuery, PlanCursor, PlanFrom, SortMark};

pub async fn endpoint(
    app: &App,
    ctx: &Ctx,
    method: &Method,
    ep: &Endpoint,
    body: Option<Value>,
) -> ScimResult<Resp> {
    let body = body.unwrap_or(Value::Null);
    match (ep, method) {
        (Endpoint::Collection(k), &Method::GET) => {
            list(app, ctx, &[*k], params_from_query(ctx)).await
        }
        (Endpoint::Collection(k), &Method::POST) => create(app, ctx, *k, &body).await,
        (Endpoint::Collection(_), m) => Err(method_not_allowed(m, "GET, POST")),
        (Endpoint::Search(k), &Method::POST) => {
            let kinds: &[Kind] = match k {
                Some(Kind::User) => &[Kind::User],
                Some(Kind::Group) => &[Kind::Group],
                None => &[Kind::User, Kind::Group],
            };
            list(app, ctx, kinds, params_from_search(&body)).await
        }
        (Endpoint::Search(_), m) => Err(method_not_allowed(m, "POST")),
        (Endpoint::Resource(k, id), &Method::GET) => get(app, ctx, *k, id).await,
        (Endpoint::Resource(k, id), &Method::PUT) => replace(app, ctx, *k, id, &body).await,
        (Endpoint::Resource(k, id), &Method::PATCH) => patch(app, ctx, *k, id, &body).await,
        (Endpoint::Resource(k, id), &Method::DELETE) => {
            app.store
                .delete(ctx.actor(), ctx.rt(*k), id.clone(), ctx.if_match.clone())
                .await?;
            Ok(response::empty(204))
        }
        (Endpoint::Resource(..), m) => Err(method_not_allowed(m, "GET, PUT, PATCH, DELETE")),
        (Endpoint::Events, &Method::GET) => events(app, ctx).await,
        (Endpoint::Plan, &Method::GET) => plan_summary(app, ctx).await,
        (Endpoint::PlanMembers, &Method::GET) => plan_members(app, ctx).await,
        (Endpoint::Events | Endpoint::Plan | Endpoint::PlanMembers, m) => {
            Err(method_not_allowed(m, "GET"))
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
fn render(ctx: &Ctx, r: Resource, proj: &Projection) -> Map<String, Value> {
    let kind = r.kind;
    let mut m = r.into_json(&ctx.base);
    proj.apply(ctx.rt(kind), &mut m);
    m
}

fn projection(ctx: &Ctx, kind: Kind) -> Projection {
    Projection::parse(
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

fn log_ignored(ctx: &Ctx, kind: Kind, ignored: &Ignored) {
    if !ignored.is_empty() {
        // Names only, never values: an admin fixes the IdP mapping from this line.
        tracing::warn!(
            tenant = %ctx.principal.tenant,
            token = %ctx.principal.token_name,
            resource = kind.as_str(),
            attributes = ?ignored.attributes,
            schemas = ?ignored.schemas,
            "ignored unknown attributes or schemas; check the IdP's attribute mapping"
        );
    }
}

async fn create(app: &App, ctx: &Ctx, kind: Kind, body: &Value) -> ScimResult<Resp> {
    let input = resource::normalize(ctx.rt(kind), body)?;
    log_ignored(ctx, kind, &input.ignored);
    let r = app.store.create(ctx.actor(), ctx.rt(kind), input).await?;
    Ok(resource_response(201, ctx, r, &projection(ctx, kind)))
}

async fn get(app: &App, ctx: &Ctx, kind: Kind, id: &str) -> ScimResult<Resp> {
    let projected = ctx.query.has_any(&["attributes", "excludedAttributes"]);
    if kind == Kind::Group && !projected {
        return get_group_streamed(app, ctx, id).await;
    }
    if !projected
        && ctx.if_none_match.is_none()
        && ctx.if_match.is_none()
        && !ctx.rt(kind).hides_attributes()
    {
        let s = app
            .store
            .get_stored(ctx.principal.tenant.clone(), kind, id.to_string(), true)
            .await?;
        if let Some((body, etag)) = s.default_json(&ctx.base) {
            let resp = response::json_bytes(200, body);
            return Ok(response::with_header(resp, header::ETAG, &etag));
        }
    }
    let proj = projection(ctx, kind);
    let refs = proj.wants(if kind == Kind::Group {
        "members"
    } else {
        "groups"
    });
    let r = app
        .store
        .get(ctx.principal.tenant.clone(), kind, id.to_string(), refs)
        .await?;
    if let Some(resp) = read_conditions(ctx, &r.etag())? {
        return Ok(resp);
    }
    Ok(resource_response(200, ctx, r, &proj))
}

/// `If-Match` and `If-None-Match` on a read (RFC 9110 §13.1, compared weakly): a stale
/// If-Match is 412, an If-None-Match naming the current version is 304.
fn read_conditions(ctx: &Ctx, etag: &str) -> ScimResult<Option<Resp>> {
    let names = |list: &str| {
        list.split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.trim_start_matches("W/") == etag.trim_start_matches("W/"))
    };
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

/// A group with all its members, streamed: the member list is read in batches and written
/// as it is read, so a group of a million costs no more memory than a group of ten.
async fn get_group_streamed(app: &App, ctx: &Ctx, id: &str) -> ScimResult<Resp> {
    let r = app
        .store
        .get(
            ctx.principal.tenant.clone(),
            Kind::Group,
            id.to_string(),
            false,
        )
        .await?;
    let etag = r.etag();
    if let Some(resp) = read_conditions(ctx, &etag)? {
        return Ok(resp);
    }
    let gid = crate::store::parse_id(&r.id).unwrap_or_default();
    let head = render(ctx, r, &Projection::default());
    let mut head = serde_json::to_string(&Value::Object(head)).unwrap_or_default();
    head.pop(); // the closing brace: members follow
    head.push_str(",\"members\":[");
    let mut batches = app.store.member_batches(ctx.principal.tenant.clone(), gid);
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    let base = ctx.base.clone();
    tokio::spawn(async move {
        if tx.send(head.into()).await.is_err()
            || !send_members(&tx, &mut batches, &base, None).await
        {
            return;
        }
        let _ = tx.send(bytes::Bytes::from_static(b"]}")).await;
    });
    let mut resp = http::Response::new(response::Body::Stream(rx));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(response::SCIM_JSON),
    );
    Ok(response::with_header(resp, header::ETAG, &etag))
}

async fn replace(app: &App, ctx: &Ctx, kind: Kind, id: &str, body: &Value) -> ScimResult<Resp> {
    let input = resource::normalize(ctx.rt(kind), body)?;
    log_ignored(ctx, kind, &input.ignored);
    let r = app
        .store
        .replace(
            ctx.actor(),
            ctx.rt(kind),
            id.to_string(),
            input,
            ctx.if_match.clone(),
        )
        .await?;
    Ok(resource_response(200, ctx, r, &projection(ctx, kind)))
}

/// PATCH answers 200 with the user. A group answers 204 (what Entra expects, and RFC 7644
/// §3.5.2 allows) unless the client asked for attributes, because its member list can be
/// large and rendering it would make a one-member change cost as much as the whole group.
async fn patch(app: &App, ctx: &Ctx, kind: Kind, id: &str, body: &Value) -> ScimResult<Resp> {
    let ops = patch::parse_request_with(body, ctx.rt.config.server.max_patch_operations)?;
    let t = ctx.principal.tenant.clone();
    let (r, ignored) = app
        .store
        .patch(
            ctx.actor(),
            ctx.rt(kind),
            id.to_string(),
            ops,
            ctx.if_match.clone(),
        )
        .await?;
    log_ignored(ctx, kind, &ignored);
    if kind == Kind::Group {
        if !ctx.query.has_any(&["attributes", "excludedAttributes"]) {
            return Ok(response::with_header(
                response::empty(204),
                header::ETAG,
                &r.etag(),
            ));
        }
        let proj = projection(ctx, kind);
        let r = app
            .store
            .get(t, kind, id.to_string(), proj.wants("members"))
            .await?;
        return Ok(resource_response(200, ctx, r, &proj));
    }
    Ok(resource_response(200, ctx, r, &projection(ctx, kind)))
}

/// List parameters, from a query string or a SearchRequest body.
#[derive(Debug, Default)]
pub struct ListParams {
    filter: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    start_index: Option<i64>,
    count: Option<i64>,
    attributes: Option<String>,
    excluded: Option<String>,
    /// RFC 9865 cursor; `Some("")` asks for the first page in cursor mode.
    cursor: Option<String>,
}

fn int_param(name: &str, v: Option<&str>) -> ScimResult<Option<i64>> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s.parse::<i64>().map(Some).map_err(|_| {
            ScimError::invalid_value(format!("{name} must be an integer, got \"{s}\""))
        }),
    }
}

fn params_from_query(ctx: &Ctx) -> ScimResult<ListParams> {
    let q = &ctx.query;
    Ok(ListParams {
        filter: q.get("filter").map(str::to_string),
        sort_by: q.get("sortBy").map(str::to_string),
        sort_order: q.get("sortOrder").map(str::to_string),
        start_index: int_param("startIndex", q.get("startIndex"))?,
        count: int_param("count", q.get("count"))?,
        attributes: q.get("attributes").map(str::to_string),
        excluded: q.get("excludedAttributes").map(str::to_string),
        cursor: q.get("cursor").map(str::to_string),
    })
}

fn params_from_search(body: &Value) -> ScimResult<ListParams> {
    let Value::Object(o) = body else {
        return Err(ScimError::invalid_syntax(
            "a search body must be a JSON object (a SearchRequest)",
        ));
    };
    let field = |n: &str| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v)
    };
    if let Some(s) = field("schemas")
        && !s.as_array().is_some_and(|a| {
            a.iter().any(|x| {
                x.as_str()
                    .is_some_and(|x| x.eq_ignore_ascii_case(SEARCH_REQUEST))
            })
        })
    {
        return Err(ScimError::invalid_value(format!(
            "a search body's \"schemas\" must contain \"{SEARCH_REQUEST}\""
        )));
    }
    let text = |n: &str| -> ScimResult<Option<String>> {
        match field(n) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Array(a)) => Ok(Some(
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            )),
            Some(_) => Err(ScimError::invalid_value(format!(
                "\"{n}\" must be a string"
            ))),
        }
    };
    let int = |n: &str| -> ScimResult<Option<i64>> {
        match field(n) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(x)) => x
                .as_i64()
                .map(Some)
                .ok_or_else(|| ScimError::invalid_value(format!("\"{n}\" must be an integer"))),
            Some(Value::String(s)) => int_param(n, Some(s)),
            Some(_) => Err(ScimError::invalid_value(format!(
                "\"{n}\" must be an integer"
            ))),
        }
    };
    Ok(ListParams {
        filter: text("filter")?,
        sort_by: text("sortBy")?,
        sort_order: text("sortOrder")?,
        start_index: int("startIndex")?,
        count: int("count")?,
        attributes: text("attributes")?,
        excluded: text("excludedAttributes")?,
        cursor: text("cursor")?,
    })
}

/// List or search one or both resource types. Pages are 1-based; `startIndex < 1` reads as 1,
/// a negative `count` as 0, and a `count` above `maxResults` is capped (RFC 7644 §3.4.2.4).
async fn list(
    app: &App,
    ctx: &Ctx,
    kinds: &[Kind],
    params: ScimResult<ListParams>,
) -> ScimResult<Resp> {
    let p = params?;
    let max = ctx.rt.config.server.max_results;
    let count = p.count.map(|c| c.max(0) as u64).unwrap_or(max).min(max);
    let sort_by = p.sort_by.as_deref().filter(|s| !s.trim().is_empty());
    // A sorted list, or one over both types, is not in the id order an id cursor resumes
    // from: its cursors carry a mark (type, sort key and id) instead.
    let by_mark = sort_by.is_some() || kinds.len() > 1;
    // Worked out only when a cursor is in play: it hashes the filter.
    let scope = p
        .cursor
        .as_ref()
        .map(|_| CursorScope::new(kinds, p.filter.as_deref(), sort_by, p.sort_order.as_deref()));
    let mut start = p.start_index.unwrap_or(1).max(1) as u64;
    let (after, mark) = match (&p.cursor, &scope) {
        (Some(c), Some(s)) if by_mark => {
            start = 1;
            (None, Some(s.decode_mark(c, kinds)?))
        }
        (Some(c), Some(s)) => (Some(s.decode(c)?), None),
        _ => (None, None),
    };
    let text = p.filter.as_deref().filter(|t| !t.trim().is_empty());
    // At the root the filter is parsed once and resolved for each type: a condition on an
    // attribute only the other type has is one on an absent attribute, so
    // `displayName eq "x" or userName eq "y"` finds the group and the user.
    let across = match text {
        Some(t) if kinds.len() > 1 => {
            let parsed = filter::parse_with(t, filter_limits(ctx))?;
            let rts: Vec<_> = kinds.iter().map(|k| ctx.rt(*k)).collect();
            filter::check_known_somewhere(&rts, &parsed)?;
            Some(parsed)
        }
        _ => None,
    };
    let mut plans = Vec::new();
    for &kind in kinds {
        let f = match (&across, text) {
            (Some(parsed), _) => match filter::resolve_for_type(ctx.rt(kind), parsed)? {
                ForType::All => None,
                ForType::Some(f) => Some(f),
                ForType::Nothing => continue,
            },
            (None, Some(t)) => Some(filter::parse_for_with(ctx.rt(kind), t, filter_limits(ctx))?),
            (None, None) => None,
        };
        let sort = match &p.sort_by {
            Some(s) if !s.trim().is_empty() => {
                Some(SortSpec::parse(ctx.rt(kind), s, p.sort_order.as_deref())?)
            }
            _ => None,
        };
        let proj = Projection::parse(ctx.rt(kind), p.attributes.as_deref(), p.excluded.as_deref());
        plans.push((kind, f, sort, proj));
    }
    // One type's list with a filter and no projection: its stored documents go out as they
    // are. (Not at the root, even when only one type can match: its cursors are marks.)
    if let ([_], [(kind, Some(f), None, _)]) = (kinds, plans.as_slice())
        && p.attributes.is_none()
        && p.excluded.is_none()
        && !ctx.rt(*kind).hides_attributes()
    {
        let q = ListQuery {
            filter: Some(f.clone()),
            sort: None,
            start_index: start,
            count,
            with_refs: true,
            after,
            resume: None,
        };
        if let Some(page) = app.store.list_stored(&ctx.principal.tenant, *kind, &q) {
            return Ok(stored_list(ctx, page?, start, scope));
        }
    }
    let mut total = 0u64;
    let mut resources = Vec::new();
    // Groups whose members go out: (place in `resources`, id, projection if it narrows them).
    let mut groups = Vec::new();
    // Across types the order is all Users, then all Groups: compute each type's share of
    // the requested window.
    let mut next = None;
    let mut next_mark = None;
    let mut offset = start - 1;
    let mut remaining = count;
    let rank = |k: Kind| kinds.iter().position(|x| *x == k);
    for (kind, f, sort, proj) in plans {
        let with_refs = proj.wants(if kind == Kind::Group {
            "members"
        } else {
            "groups"
        });
        // A walk by mark: types before the mark's are only counted, the mark's resumes after
        // it, and later ones start at their first.
        let place = mark.as_ref().map(|m| rank(kind).cmp(&rank(m.kind)));
        let at = mark
            .as_ref()
            .filter(|m| m.kind == kind)
            .and_then(|m| m.after.clone());
        let (after, resume, room) = match place {
            None => (after, None, remaining),
            Some(std::cmp::Ordering::Less) => (None, None, 0),
            Some(_) if sort.is_some() => (None, at, remaining),
            Some(_) => (Some(at.map_or(0, |m| m.id)), None, remaining),
        };
        let q = ListQuery {
            filter: f,
            sort,
            start_index: offset + 1,
            count: room,
            // A group's members are streamed below, never read into one list.
            with_refs: with_refs && kind == Kind::User,
            after,
            resume,
        };
        let page = app
            .store
            .list(ctx.principal.tenant.clone(), ctx.rt(kind), q)
            .await?;
        total += page.total;
        next = next.or(page.next);
        if place.is_some_and(|o| o.is_ge()) && next_mark.is_none() && count > 0 {
            let more = page
                .next
                .map(|id| SortMark { key: None, id })
                .or(page.next_mark);
            next_mark = match more {
                Some(m) => Some(Mark {
                    kind,
                    after: Some(m),
                }),
                // The page filled before this type: its matches all come next.
                None if room == 0 && page.total > 0 => Some(Mark { kind, after: None }),
                None => None,
            };
        }
        offset = offset.saturating_sub(page.total);
        remaining -= page.items.len() as u64;
        for r in page.items {
            if with_refs && kind == Kind::Group {
                let narrowed = proj.narrows("members").then(|| proj.clone());
                groups.push((resources.len(), crate::store::parse_id(&r.id), narrowed));
            }
            resources.push(Value::Object(render(ctx, r, &proj)));
        }
    }
    let cursor_mode = scope.is_some();
    let next = match (scope, by_mark) {
        (None, _) => None,
        (Some(s), false) => next.map(|n| s.encode(n)),
        (Some(s), true) => next_mark.map(|m| s.encode_mark(&m)),
    };
    if !groups.is_empty() {
        return Ok(streamed_list(
            app,
            ctx,
            total,
            start,
            cursor_mode,
            next,
            resources,
            groups,
        ));
    }
    let mut body = json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "itemsPerPage": resources.len(),
        "startIndex": start,
        "Resources": resources,
    });
    if cursor_mode {
        let o = body.as_object_mut().expect("object literal");
        o.remove("startIndex");
        if let Some(n) = next {
            o.insert("nextCursor".into(), Value::String(n));
        }
    }
    Ok(response::json(200, &body))
}

/// Write a group's members, batch by batch, as the elements of a JSON array (the caller
/// writes the brackets), projected member by member when a projection narrows them. False
/// when the client has gone.
async fn send_members(
    tx: &tokio::sync::mpsc::Sender<bytes::Bytes>,
    batches: &mut tokio::sync::mpsc::Receiver<Vec<(u128, Kind)>>,
    base: &str,
    narrowed: Option<(&Projection, crate::scim::schema::Rt)>,
) -> bool {
    let mut first = true;
    while let Some(batch) = batches.recv().await {
        let mut chunk = String::with_capacity(batch.len() * 120);
        let mut push = |fragment: &str| {
            if !first {
                chunk.push(',');
            }
            first = false;
            chunk.push_str(fragment);
        };
        let fragments = batch.into_iter().map(|(m, kind)| {
            crate::scim::render::member_fragment(base, &crate::store::format_id(m), kind)
        });
        match narrowed {
            None => fragments.for_each(|f| push(&f)),
            Some((proj, rt)) => {
                let members: Vec<Value> = fragments
                    .filter_map(|f| serde_json::from_str(&f).ok())
                    .collect();
                let mut m = Map::new();
                m.insert("members".into(), Value::Array(members));
                proj.apply(rt, &mut m);
                if let Some(Value::Array(a)) = m.remove("members") {
                    a.iter()
                        .for_each(|v| push(&serde_json::to_string(v).unwrap_or_default()));
                }
            }
        }
        if tx.send(chunk.into()).await.is_err() {
            return false;
        }
    }
    true
}

/// A list page holding groups with their members: written as it is read, each group's members
/// in batches (as `get_group_streamed` does), so a page with a group of a million costs no
/// more memory than one with a group of ten.
#[allow(clippy::too_many_arguments)]
fn streamed_list(
    app: &App,
    ctx: &Ctx,
    total: u64,
    start: u64,
    cursor_mode: bool,
    next: Option<String>,
    resources: Vec<Value>,
    groups: Vec<(usize, Option<u128>, Option<Projection>)>,
) -> Resp {
    let mut head = format!(
        "{{\"schemas\":[\"{LIST_RESPONSE}\"],\"totalResults\":{total},\"itemsPerPage\":{}",
        resources.len()
    );
    if !cursor_mode {
        head.push_str(&format!(",\"startIndex\":{start}"));
    }
    head.push_str(",\"Resources\":[");
    let mut tail = String::from("]");
    if let Some(n) = next {
        tail.push_str(&format!(",\"nextCursor\":\"{n}\""));
    }
    tail.push('}');
    let (store, tenant, base) = (
        app.store.clone(),
        ctx.principal.tenant.clone(),
        ctx.base.clone(),
    );
    let group_rt = ctx.rt(Kind::Group);
    let mut groups = groups.into_iter().peekable();
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    tokio::spawn(async move {
        if tx.send(head.into()).await.is_err() {
            return;
        }
        for (i, item) in resources.into_iter().enumerate() {
            let mut text = if i > 0 {
                String::from(",")
            } else {
                String::new()
            };
            text.push_str(&serde_json::to_string(&item).unwrap_or_default());
            let Some((_, gid, narrowed)) = groups.next_if(|g| g.0 == i) else {
                if tx.send(text.into()).await.is_err() {
                    return;
                }
                continue;
            };
            text.pop(); // the closing brace: members follow
            text.push_str(",\"members\":[");
            if tx.send(text.into()).await.is_err() {
                return;
            }
            let mut batches = store.member_batches(tenant.clone(), gid.unwrap_or_default());
            let narrowed = narrowed.as_ref().map(|p| (p, group_rt));
            if !send_members(&tx, &mut batches, &base, narrowed).await
                || tx.send(bytes::Bytes::from_static(b"]}")).await.is_err()
            {
                return;
            }
        }
        let _ = tx.send(tail.into()).await;
    });
    let mut resp = http::Response::new(response::Body::Stream(rx));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(response::SCIM_JSON),
    );
    resp
}

/// A list response written from stored text; the same document `list` builds. A record that
/// cannot be read is left out, as the decoding path leaves it out.
fn stored_list(
    ctx: &Ctx,
    page: crate::store::StoredPage,
    start: u64,
    cursor: Option<CursorScope>,
) -> Resp {
    let items: Vec<Vec<u8>> = page
        .items
        .into_iter()
        .filter_map(|s| s.default_json(&ctx.base).map(|(body, _)| body))
        .collect();
    let mut out = Vec::with_capacity(items.iter().map(Vec::len).sum::<usize>() + 200);
    out.extend_from_slice(
        format!(
            "{{\"schemas\":[\"{LIST_RESPONSE}\"],\"totalResults\":{},\"itemsPerPage\":{}",
            page.total,
            items.len()
        )
        .as_bytes(),
    );
    if cursor.is_none() {
        out.extend_from_slice(format!(",\"startIndex\":{start}").as_bytes());
    }
    out.extend_from_slice(b",\"Resources\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.push(b']');
    if let (Some(scope), Some(n)) = (cursor, page.next) {
        out.extend_from_slice(format!(",\"nextCursor\":\"{}\"", scope.encode(n)).as_bytes());
    }
    out.push(b'}');
    response::json_bytes(200, out)
}

/// `GET /tenants/{tenant}/events?after=SEQ&limit=N`: the change feed, oldest first.
async fn events(app: &App, ctx: &Ctx) -> ScimResult<Resp> {
    let after = int_param("after", ctx.query.get("after"))?
        .unwrap_or(0)
        .max(0) as u64;
    let limit = int_param("limit", ctx.query.get("limit"))?
        .unwrap_or(100)
        .clamp(0, 1000) as usize;
    let (events, last) = app
        .store
        .events(ctx.principal.tenant.clone(), after, limit)
        .await?;
    let next = events.last().map(|e| e.seq).unwrap_or(after);
    Ok(response::json(
        200,
        &json!({"tenant": ctx.principal.tenant, "events": events, "next_after": next, "last_seq": last}),
    ))
}

fn plan_rules(ctx: &Ctx) -> ScimResult<std::sync::Arc<crate::store::plan::PlanRules>> {
    ctx.rt
        .plans
        .get(&ctx.principal.tenant)
        .cloned()
        .ok_or_else(|| {
            ScimError::not_found(format!(
                "tenant {} has no plan; add a [tenants.{}.plan] table to the configuration",
                ctx.principal.tenant, ctx.principal.tenant
            ))
        })
}

/// `GET /tenants/{tenant}/plan`: the plan's settings, mode and counts.
async fn plan_summary(app: &App, ctx: &Ctx) -> ScimResult<Resp> {
    let rules = plan_rules(ctx)?;
    let s = app
        .store
        .plan_summary(ctx.principal.tenant.clone(), rules.clone())
        .await?;
    Ok(response::json(
        200,
        &json!({
            "tenant": ctx.principal.tenant,
            "plan": rules.name,
            "mode": s.mode,
            "test_threshold": rules.test_threshold,
            "seats": rules.seats,
            "on_seat_limit": rules.on_seat_limit,
            "active_provisioned": s.active_provisioned,
            "counts": {"paid": s.paid, "free": s.free, "deactivated": s.deactivated},
        }),
    ))
}

/// `GET /tenants/{tenant}/plan/members?status=paid|free|deactivated&startIndex=&count=`, or
/// `&cursor=` (empty for the first page) and then each answer's `nextCursor`.
async fn plan_members(app: &App, ctx: &Ctx) -> ScimResult<Resp> {
    use crate::store::plan::Status;
    let rules = plan_rules(ctx)?;
    let status = match ctx
        .query
        .get("status")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("") => None,
        Some("paid") => Some(Status::Paid),
        Some("free") => Some(Status::Free),
        Some("deactivated") => Some(Status::Deactivated),
        Some(other) => {
            return Err(ScimError::invalid_value(format!(
                "status must be paid, free or deactivated, got \"{other}\""
            )));
        }
    };
    let max = ctx.rt.config.server.max_results;
    let start = int_param("startIndex", ctx.query.get("startIndex"))?
        .unwrap_or(1)
        .max(1) as u64;
    let count = int_param("count", ctx.query.get("count"))?
        .map(|c| c.max(0) as u64)
        .unwrap_or(max)
        .min(max);
    let from = match ctx.query.get("cursor") {
        Some(c) => PlanFrom::After(decode_plan_cursor(c)?),
        None => PlanFrom::Index(start),
    };
    let page = app
        .store
        .plan_members(ctx.principal.tenant.clone(), rules, status, from, count)
        .await?;
    let mut body = json!({"totalResults": page.total, "itemsPerPage": page.entries.len(), "members": page.entries});
    match (from, page.next) {
        (PlanFrom::Index(start), _) => body["startIndex"] = json!(start),
        (PlanFrom::After(_), Some(next)) => body["nextCursor"] = json!(encode_plan_cursor(next)),
        (PlanFrom::After(_), None) => {}
    }
    Ok(response::json(200, &body))
}

/// Plan-list cursors: a user's id (16 bytes) or a place among the unmatched existing
/// members (4 bytes), base64url.
fn encode_plan_cursor(c: PlanCursor) -> String {
    use base64::Engine;
    match c {
        PlanCursor::Start => String::new(),
        PlanCursor::User(id) => encode_cursor(id),
        PlanCursor::Tail(i) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(u32::try_from(i).unwrap_or(u32::MAX).to_be_bytes()),
    }
}

fn decode_plan_cursor(c: &str) -> ScimResult<PlanCursor> {
    if c.trim().is_empty() {
        return Ok(PlanCursor::Start);
    }
    let bytes = cursor_bytes(c);
    if let Ok(b) = <[u8; 16]>::try_from(bytes.as_slice()) {
        return Ok(PlanCursor::User(u128::from_be_bytes(b)));
    }
    if let Ok(b) = <[u8; 4]>::try_from(bytes.as_slice()) {
        return Ok(PlanCursor::Tail(u32::from_be_bytes(b) as usize));
    }
    Err(not_a_cursor(c))
}

/// Cursors are the last returned id, base64url: opaque to clients, valid until that
/// resource's successors change, and never a scan to resume.
fn encode_cursor(id: u128) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.to_be_bytes())
}

/// What a list cursor belongs to: the resource type (0 for both), the filter and the sort
/// it pages through. A cursor carries it after its resume point, so one used on another
/// list is `invalidCursor` rather than a silently empty or wrong page.
#[derive(Clone, Copy)]
struct CursorScope([u8; 5]);

impl CursorScope {
    fn new(
        kinds: &[Kind],
        filter: Option<&str>,
        sort_by: Option<&str>,
        sort_order: Option<&str>,
    ) -> CursorScope {
        let kind = match kinds {
            [k] => k.code(),
            _ => 0,
        };
        let list = [filter, sort_by, sort_order].map(|s| s.unwrap_or_default().trim());
        let h = crate::auth::digest(&list.join("\0"));
        CursorScope([kind, h[0], h[1], h[2], h[3]])
    }

    fn wrap(&self, point: &[u8]) -> String {
        use base64::Engine;
        let mut b = point.to_vec();
        b.extend_from_slice(&self.0);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    /// Resume after this id (creation-ordered lists).
    fn encode(&self, id: u128) -> String {
        self.wrap(&id.to_be_bytes())
    }

    /// Resume at a mark (sorted lists, and lists over both types): the type's code, then 0
    /// for its first, or 1, the id, and the key (0 for none, 1 and an f64, 2 and UTF-8).
    fn encode_mark(&self, m: &Mark) -> String {
        let mut b = vec![m.kind.code()];
        match &m.after {
            None => b.push(0),
            Some(SortMark { key, id }) => {
                b.push(1);
                b.extend_from_slice(&id.to_be_bytes());
                match key {
                    None => b.push(0),
                    Some(SortKey::Num(n)) => {
                        b.push(1);
                        b.extend_from_slice(&n.to_bits().to_be_bytes());
                    }
                    Some(SortKey::Text(t)) => {
                        b.push(2);
                        b.extend_from_slice(t.as_bytes());
                    }
                }
            }
        }
        self.wrap(&b)
    }

    /// The resume point of a cursor of this list; `None` for an empty cursor (the first
    /// page).
    fn point(&self, c: &str) -> ScimResult<Option<Vec<u8>>> {
        if c.trim().is_empty() {
            return Ok(None);
        }
        let mut b = cursor_bytes(c);
        let Some(at) = b.len().checked_sub(self.0.len()).filter(|&n| n > 0) else {
            return Err(not_a_cursor(c));
        };
        if b[at..] != self.0 {
            return Err(ScimError::bad(
                crate::scim::error::ScimType::InvalidCursor,
                "this cursor belongs to another list (another resource type, filter or sort); \
                 start again with an empty cursor",
            ));
        }
        b.truncate(at);
        Ok(Some(b))
    }

    /// The id after which the page starts (0: the first page).
    fn decode(&self, c: &str) -> ScimResult<u128> {
        // 16 bytes alone: an id cursor from before cursors carried their list.
        let legacy = cursor_bytes(c);
        let point = match legacy.len() {
            16 => Some(legacy),
            _ => self.point(c)?,
        };
        match point {
            None => Ok(0),
            Some(p) => p
                .try_into()
                .map(u128::from_be_bytes)
                .map_err(|_| not_a_cursor(c)),
        }
    }

    /// Where a walk by mark resumes (the first of `kinds`' first type for an empty cursor).
    fn decode_mark(&self, c: &str, kinds: &[Kind]) -> ScimResult<Mark> {
        let Some(p) = self.point(c)? else {
            return Ok(Mark {
                kind: kinds[0],
                after: None,
            });
        };
        let bad = || not_a_cursor(c);
        let kind = kinds
            .iter()
            .copied()
            .find(|k| p.first() == Some(&k.code()))
            .ok_or_else(bad)?;
        let after = match &p[1..] {
            [0] => None,
            [1, rest @ ..] if rest.len() > 16 => {
                let (id, key) = rest.split_at(16);
                let id = u128::from_be_bytes(id.try_into().map_err(|_| bad())?);
                let key = match key {
                    [0] => None,
                    [1, n @ ..] => Some(SortKey::Num(f64::from_bits(u64::from_be_bytes(
                        n.try_into().map_err(|_| bad())?,
                    )))),
                    [2, t @ ..] => Some(SortKey::Text(
                        String::from_utf8(t.to_vec()).map_err(|_| bad())?,
                    )),
                    _ => return Err(bad()),
                };
                Some(SortMark { key, id })
            }
            _ => return Err(bad()),
        };
        Ok(Mark { kind, after })
    }
}

/// Where a walk of a sorted list, or of both types, resumes: in this type, after this
/// resource (`None`: at the type's first).
struct Mark {
    kind: Kind,
    after: Option<SortMark>,
}

/// A cursor's bytes (empty when it is not base64url).
fn cursor_bytes(c: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c.trim())
        .unwrap_or_default()
}

fn not_a_cursor(c: &str) -> ScimError {
    ScimError::bad(
        crate::scim::error::ScimType::InvalidCursor,
        format!("\"{c}\" is not a cursor this server issued"),
    )
}

fn filter_limits(ctx: &Ctx) -> filter::Limits {
    filter::Limits {
        max_len: ctx.rt.config.server.max_filter_length,
        max_depth: ctx.rt.config.server.max_filter_depth,
    }
}
