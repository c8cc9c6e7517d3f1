//! Lists and searches: `GET /Users`, `GET /Groups`, `.search` on either and at the root,
//! with filters, sorting, projection, and `startIndex` or cursor paging.

use http::header;
use serde_json::{Map, Value};

use super::backlog::Turn;
use super::cursor::{CursorScope, Mark};
use super::handlers::render;
use super::response::{self, Resp};
use super::{App, Ctx};
use crate::scim::error::{ScimError, ScimResult};
use crate::scim::filter::{self, ForType};
use crate::scim::projection::Projection;
use crate::scim::render::Resource;
use crate::scim::schema::{Kind, LIST_RESPONSE, SEARCH_REQUEST};
use crate::scim::sort::SortSpec;
use crate::store::{ListQuery, MemberBatch, PAGE_REFS, Snapshot, SortMark};

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

pub(super) fn int_param(name: &str, v: Option<&str>) -> ScimResult<Option<i64>> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s.parse::<i64>().map(Some).or_else(|_| {
            // A whole number too large to hold is capped like any other large one (RFC 7644
            // §3.4.2.4: a count above the maximum gets the maximum).
            let digits = s.strip_prefix('-').unwrap_or(s);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                return Ok(Some(if s.starts_with('-') {
                    i64::MIN
                } else {
                    i64::MAX
                }));
            }
            Err(ScimError::invalid_value(format!(
                "{name} must be an integer, got \"{}\"",
                s.chars().take(40).collect::<String>()
            )))
        }),
    }
}

/// A 1-based `startIndex` as a page starts from and echoes it: below 1 read as 1, and kept
/// within 2^53 (I-JSON, RFC 7493 §2.2), which a client holding numbers as doubles reads
/// exactly; any index that far is past the last page.
pub(super) fn start_index(asked: Option<i64>) -> u64 {
    asked.unwrap_or(1).clamp(1, 1 << 53) as u64
}

pub(super) fn params_from_query(ctx: &Ctx) -> ScimResult<ListParams> {
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

pub(super) fn params_from_search(body: &Value) -> ScimResult<ListParams> {
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
        return Err(ScimError::invalid_syntax(format!(
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
            Some(Value::Number(x)) => match (x.as_i64(), x.as_f64()) {
                (Some(i), _) => Ok(Some(i)),
                // A whole number written as a float (`2.0`: JSON libraries that hold every
                // number as a double write them so) is that number; beyond i64, capped as in
                // a query string (a whole 1e30 is a float in JSON): `as` saturates.
                (None, Some(f)) if f.fract() == 0.0 => Ok(Some(f as i64)),
                _ => Err(ScimError::invalid_value(format!(
                    "\"{n}\" must be an integer"
                ))),
            },
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

/// List or search one or both resource types, one page at a time per connection (see
/// `backlog`): the turn rides in the answer until the server has counted its bytes.
pub(super) async fn list(
    app: &App,
    ctx: &Ctx,
    kinds: &[Kind],
    params: ScimResult<ListParams>,
) -> ScimResult<Resp> {
    let p = params?;
    let mut turn = match &ctx.backlog {
        Some(b) => {
            let server = &ctx.rt.config.server;
            let wait = std::time::Duration::from_secs(server.request_timeout_secs);
            Some(b.turn(server.max_unread_mb << 20, wait).await?)
        }
        None => None,
    };
    // Boxed once the turn is had: a request waiting for it holds this function's state only,
    // not the page's (5 KiB more).
    let mut resp = Box::pin(page(app, ctx, kinds, p, &mut turn)).await?;
    if let Some(t) = turn {
        resp.extensions_mut().insert(t);
    }
    Ok(resp)
}

/// A cursor says where its page starts, so a `startIndex` beside it could only be ignored or
/// read as a second offset, and a client cannot tell which it got.
pub(super) fn both_cursor_and_start_index() -> ScimError {
    ScimError::invalid_value(
        "startIndex and cursor cannot be combined: send cursor (empty for the first page) to page by cursor, or startIndex to page by index",
    )
}

/// One page of a list or search. Pages are 1-based; `startIndex < 1` reads as 1, a negative
/// `count` as 0, and a `count` above `maxResults` is capped (RFC 7644 §3.4.2.4).
/// `turn`: the connection's turn to build a page, which a page of users written as their
/// groups are read takes along until it is written.
async fn page(
    app: &App,
    ctx: &Ctx,
    kinds: &[Kind],
    p: ListParams,
    turn: &mut Option<Turn>,
) -> ScimResult<Resp> {
    // A scan or sort of every record gives up once it has read for as long as a request
    // may take (400 tooMany), instead of holding its tenant's scan turn for minutes.
    let scan_limit = std::time::Duration::from_secs(ctx.rt.config.server.request_timeout_secs);
    if p.cursor.is_some() && p.start_index.is_some() {
        return Err(both_cursor_and_start_index());
    }
    // Not a filter (RFC 7644 §3.4.2.2), and a client that built it from an empty template
    // would take the whole directory for what matched.
    if p.filter.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(ScimError::invalid_filter(
            "the filter is empty; leave the filter parameter out to list every resource",
        ));
    }
    let max = ctx.rt.config.server.max_results;
    let count = p.count.map(|c| c.max(0) as u64).unwrap_or(max).min(max);
    let sort_by = p.sort_by.as_deref().filter(|s| !s.trim().is_empty());
    // A sorted list, or one over both types, is not in the id order an id cursor resumes
    // from: its cursors carry a mark (type, sort key and id) instead.
    let by_mark = sort_by.is_some() || kinds.len() > 1;
    // Worked out only when a cursor is in play: it hashes the filter.
    let scope = p.cursor.as_ref().map(|_| {
        CursorScope::new(
            &ctx.principal.tenant,
            kinds,
            p.filter.as_deref(),
            sort_by,
            p.sort_order.as_deref(),
        )
    });
    let mut start = start_index(p.start_index);
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
            Some((parsed, rts))
        }
        _ => None,
    };
    // At the root a sort attribute one type lacks leaves that type in creation order, after
    // the other in either order (the root lists Users, then Groups); one no type has is
    // refused.
    let sorts = match p.sort_by.as_deref().filter(|s| !s.trim().is_empty()) {
        None => {
            crate::scim::sort::descending(p.sort_order.as_deref())?;
            vec![None; kinds.len()]
        }
        Some(s) => {
            let mut refused = None;
            let sorts: Vec<_> = kinds
                .iter()
                .map(
                    |&k| match SortSpec::parse(ctx.rt(k), s, p.sort_order.as_deref()) {
                        Ok(sort) => Some(sort),
                        Err(e) => {
                            refused.get_or_insert(e);
                            None
                        }
                    },
                )
                .collect();
            if let Some(e) = refused.filter(|_| sorts.iter().all(Option::is_none)) {
                return Err(e);
            }
            sorts
        }
    };
    let mut plans = Vec::new();
    for (&kind, sort) in kinds.iter().zip(sorts) {
        let f = match (&across, text) {
            (Some((parsed, rts)), _) => {
                match filter::resolve_for_type(ctx.rt(kind), rts, parsed)? {
                    ForType::All => None,
                    ForType::Some(f) => Some(f),
                    ForType::Nothing => continue,
                }
            }
            (None, Some(t)) => Some(filter::parse_for_with(ctx.rt(kind), t, filter_limits(ctx))?),
            (None, None) => None,
        };
        let proj = Projection::parse_checked(
            ctx.rt(kind),
            p.attributes.as_deref(),
            p.excluded.as_deref(),
        )?;
        plans.push((kind, f, sort, proj));
    }
    // One type's unsorted list: its stored documents go out as they are when the store can
    // read them so (`list_stored`), or each decoded in turn for a projection, so that a
    // page is never held decoded whole. (Not at the root, even when only one type can
    // match: its cursors are marks.)
    if let ([_], [(kind, f, None, proj)]) = (kinds, plans.as_slice()) {
        // `excludedAttributes=members` too: a group is then its stored text, no members read.
        let plain = p.attributes.is_none()
            && (p.excluded.is_none() || (*kind == Kind::Group && proj.only_leaves_out("members")))
            && !ctx.rt(*kind).hides_attributes();
        let q = ListQuery {
            filter: f.clone(),
            sort: None,
            start_index: start,
            count,
            with_refs: wants_refs(*kind, proj),
            after,
            resume: None,
            scan_limit: Some(scan_limit),
        };
        let stored = match app.store.list_stored(&ctx.principal.tenant, *kind, &q) {
            Some(page) => Some(page),
            None => {
                app.store
                    .list_stored_pooled(&ctx.principal.tenant, *kind, &q)
                    .await
            }
        };
        if let Some(page) = stored
            && let Some(resp) = stored_list(ctx, page?, start, scope, (!plain).then_some(proj))
        {
            return Ok(resp);
        }
        // Else a record on the page could not be read so: the ordinary way decodes it,
        // and answers why not.
    }
    let mut total = 0u64;
    let mut resources = Vec::new();
    // What is written as the page is sent: groups' members, and users' groups past the
    // page's budget.
    let mut later = Vec::new();
    let mut users_later = None;
    // Across types the order is all Users, then all Groups: compute each type's share of
    // the requested window.
    let mut next = None;
    let mut next_mark = None;
    let mut offset = start - 1;
    let mut remaining = count;
    let rank = |k: Kind| kinds.iter().position(|x| *x == k);
    for (kind, f, sort, proj) in plans {
        let with_refs = wants_refs(kind, &proj);
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
            scan_limit: Some(scan_limit),
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
        for (i, r) in page.items.into_iter().enumerate() {
            if with_refs && kind == Kind::Group {
                let narrowed = proj.narrows("members").then(|| proj.clone());
                let id = crate::store::parse_id(&r.id);
                later.push(Later::Members(
                    resources.len(),
                    id,
                    narrowed,
                    page.snapshot.clone(),
                ));
            }
            if let (Some(from), Some(snapshot)) = (page.refs_from, &page.snapshot)
                && i >= from
            {
                // One page of users at most: its projection and snapshot, once.
                users_later.get_or_insert_with(|| (proj.clone(), snapshot.clone()));
                later.push(Later::Groups(resources.len(), Box::new(r)));
                resources.push(String::new()); // written when its groups are read
                continue;
            }
            // Held as text, smaller than the values, until the page is written.
            resources.push(serde_json::to_string(&render(ctx, r, &proj)).unwrap_or_default());
        }
    }
    let cursor_mode = scope.is_some();
    let next = match (scope, by_mark) {
        (None, _) => None,
        (Some(s), false) => next.map(|n| s.encode(n)),
        (Some(s), true) => next_mark.map(|m| s.encode_mark(&m)),
    };
    if !later.is_empty() {
        // Such a page is never counted among the connection's unread answers (its length
        // is not known ahead), so it keeps the connection's turn until it is written: one
        // at a time on a connection, as whole pages are one at a time until counted.
        let turn = users_later.as_ref().and_then(|_| turn.take());
        return Ok(streamed_list(
            app,
            ctx,
            (total, start, cursor_mode, next),
            resources,
            (later, users_later),
            turn,
        ));
    }
    let room = resources.iter().map(|r| r.len() + 1).sum::<usize>();
    let mut out = Vec::with_capacity(room + 200);
    list_head(
        &mut out,
        total,
        resources.len(),
        (!cursor_mode).then_some(start),
    );
    for (i, item) in resources.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item.as_bytes());
    }
    list_tail(&mut out, next.as_deref());
    Ok(response::json_bytes(200, out))
}

/// Whether a page reads its resources' members or groups: when they are shown, and a
/// user's for its `meta.version` too (`etag_of`).
fn wants_refs(kind: Kind, proj: &Projection) -> bool {
    match kind {
        Kind::Group => proj.wants("members"),
        Kind::User => proj.wants("groups") || proj.wants("meta"),
    }
}

/// A list response's opening, up to its first resource; `start` is left out with a cursor.
fn list_head(out: &mut Vec<u8>, total: u64, shown: usize, start: Option<u64>) {
    // Numbers by itoa, not core::fmt: an `eq` lookup is mostly a page of one.
    let mut n = itoa::Buffer::new();
    for part in [
        "{\"schemas\":[\"",
        LIST_RESPONSE,
        "\"],\"totalResults\":",
        n.format(total),
    ] {
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(b",\"itemsPerPage\":");
    out.extend_from_slice(n.format(shown).as_bytes());
    if let Some(start) = start {
        out.extend_from_slice(b",\"startIndex\":");
        out.extend_from_slice(n.format(start).as_bytes());
    }
    out.extend_from_slice(b",\"Resources\":[");
}

/// A list response's closing, after its last resource.
fn list_tail(out: &mut Vec<u8>, next_cursor: Option<&str>) {
    out.push(b']');
    if let Some(n) = next_cursor {
        out.extend_from_slice(b",\"nextCursor\":");
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, n);
    }
    out.push(b'}');
}

/// Members written into one part of a streamed member list (about 170 bytes each).
const SEND_PART: usize = if cfg!(test) { 3 } else { 256 };

/// Write a group: `head` (its JSON without the closing brace), then its members, batch by
/// batch, as `"members"`, projected member by member when a projection narrows them, then
/// the closing brace. Narrowed, the list is written only once a member keeps something (as
/// a user's narrowed `emails` are left out when no entry has the sub-attribute); else it is
/// written from the start, `[]` for a group without members. False when the client has gone
/// or the stream was cut short: the answer is then left unfinished (invalid JSON), so that
/// no client takes part of a list for all of it.
pub(super) async fn send_members(
    tx: &tokio::sync::mpsc::Sender<bytes::Bytes>,
    batches: &mut tokio::sync::mpsc::Receiver<MemberBatch>,
    base: &str,
    narrowed: Option<(&Projection, crate::scim::schema::Rt)>,
    head: String,
) -> bool {
    const OPEN: &str = ",\"members\":[";
    // The head, until the list is opened.
    let mut held = Some(head);
    if narrowed.is_none() {
        let mut text = held.take().unwrap_or_default();
        text.push_str(OPEN);
        if tx.send(text.into()).await.is_err() {
            return false;
        }
    }
    let mut first = true;
    loop {
        let batch = match batches.recv().await {
            Some(MemberBatch::Members(b)) => b,
            Some(MemberBatch::End) => break,
            // Only ever first, and taken by whoever asked for it.
            Some(MemberBatch::Head(_)) => continue,
            Some(MemberBatch::Failed(_)) | None => return false,
        };
        // Sent a part at a time: what waits for the connection is a few parts, not a few
        // of the store's batches (memory a stream holds), while the store still reads
        // large batches (each costs a turn and a thread's wakeup).
        let mut batch = batch.into_iter().peekable();
        while batch.peek().is_some() {
            let part = batch.by_ref().take(SEND_PART);
            let mut chunk = String::with_capacity(SEND_PART * 170);
            let mut push = |fragment: &str| {
                if let Some(head) = held.take() {
                    chunk.push_str(&head);
                    chunk.push_str(OPEN);
                }
                if !first {
                    chunk.push(',');
                }
                first = false;
                chunk.push_str(fragment);
            };
            let fragments = part.into_iter().map(|(m, kind, display)| {
                let id = crate::store::format_id(m);
                crate::scim::render::member_fragment(base, &id, kind, display.as_deref())
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
            if !chunk.is_empty() && tx.send(chunk.into()).await.is_err() {
                return false;
            }
        }
    }
    let close = match held {
        // No member kept anything: the group without `members`.
        Some(mut head) => {
            head.push('}');
            bytes::Bytes::from(head)
        }
        None => bytes::Bytes::from_static(b"]}"),
    };
    tx.send(close).await.is_ok()
}

/// A resource on a list page whose references are read as the page is written, each with
/// its place among the resources.
enum Later {
    /// A group: its id, the projection of its members when one narrows them, and the
    /// snapshot it was read in (its members are read there).
    Members(usize, Option<u128>, Option<Projection>, Option<Snapshot>),
    /// A user past the page's budget of groups (`ListPage::refs_from`), its groups read in
    /// the users' page's snapshot (`UsersLater`).
    Groups(usize, Box<Resource>),
}

/// The projection of the users written as their groups are read, and the snapshot those
/// are read in.
type UsersLater = (Projection, Snapshot);

impl Later {
    fn at(&self) -> usize {
        match self {
            Later::Members(at, ..) | Later::Groups(at, ..) => *at,
        }
    }
}

/// A list page holding groups with their members, or users in many groups: written as it is
/// read, each group's members in batches (as `get_group_streamed` does) and users' groups a
/// few users at a time, so a page with a group of a million costs no more memory than one
/// with a group of ten.
fn streamed_list(
    app: &App,
    ctx: &Ctx,
    (total, start, cursor_mode, next): (u64, u64, bool, Option<String>),
    resources: Vec<String>,
    (later, users_later): (Vec<Later>, Option<UsersLater>),
    turn: Option<Turn>,
) -> Resp {
    let mut head = Vec::new();
    list_head(
        &mut head,
        total,
        resources.len(),
        (!cursor_mode).then_some(start),
    );
    let mut tail = Vec::new();
    list_tail(&mut tail, next.as_deref());
    let stall = std::time::Duration::from_secs(ctx.rt.config.server.request_timeout_secs);
    let (store, tenant, base) = (
        app.store.clone(),
        ctx.principal.tenant.clone(),
        ctx.base.clone(),
    );
    let (group_rt, user_rt) = (ctx.rt(Kind::Group), ctx.rt(Kind::User));
    // The users whose groups are still to read, in page order.
    let mut unread: std::collections::VecDeque<u128> = later
        .iter()
        .filter_map(|l| match l {
            Later::Groups(_, r) => Some(crate::store::parse_id(&r.id).unwrap_or_default()),
            Later::Members(..) => None,
        })
        .collect();
    let mut read = std::collections::VecDeque::new();
    let mut later = later.into_iter().peekable();
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    tokio::spawn(async move {
        let _turn = turn;
        if tx.send(head.into()).await.is_err() {
            return;
        }
        for (i, mut item) in resources.into_iter().enumerate() {
            let mut text = if i > 0 {
                String::from(",")
            } else {
                String::new()
            };
            let members = match later.next_if(|l| l.at() == i) {
                Some(Later::Groups(_, mut user)) => {
                    let Some((proj, snapshot)) = &users_later else {
                        return; // never: the user's page gave both
                    };
                    if read.is_empty() {
                        let ids = unread.iter().copied().collect();
                        let (t, s) = (tenant.clone(), snapshot.clone());
                        match store.groups_of_users(t, ids, PAGE_REFS, s).await {
                            Ok(got) => {
                                unread.drain(..got.len());
                                read.extend(got);
                            }
                            // Left unfinished: no client takes part of a page for all of it.
                            Err(_) => return,
                        }
                    }
                    user.refs = read.pop_front();
                    let mut m = user.into_json(&base);
                    proj.apply(user_rt, &mut m);
                    item = serde_json::to_string(&m).unwrap_or_default();
                    None
                }
                Some(Later::Members(_, gid, narrowed, snapshot)) => Some((gid, narrowed, snapshot)),
                None => None,
            };
            text.push_str(&item);
            let Some((gid, narrowed, snapshot)) = members else {
                if tx.send(text.into()).await.is_err() {
                    return;
                }
                continue;
            };
            text.pop(); // the closing brace: members follow
            let gid = gid.unwrap_or_default();
            let mut batches = store.member_batches(tenant.clone(), gid, stall, snapshot);
            let narrowed = narrowed.as_ref().map(|p| (p, group_rt));
            if !send_members(&tx, &mut batches, &base, narrowed, text).await {
                return;
            }
        }
        let _ = tx.send(tail.into()).await;
    });
    let mut resp = http::Response::new(response::Body::stream(rx));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(response::SCIM_JSON),
    );
    resp
}

/// A list response written from stored text; the same document `list` builds. `None` when a
/// record cannot be read so.
fn stored_list(
    ctx: &Ctx,
    page: crate::store::StoredPage,
    start: u64,
    cursor: Option<CursorScope>,
    projection: Option<&Projection>,
) -> Option<Resp> {
    // Each item is written straight into the answer, and its record dropped once written:
    // a page of a thousand is held once, not as records, items and answer at the same time.
    let room = page
        .items
        .iter()
        .map(|s| s.record.len() + 400)
        .sum::<usize>()
        + 200;
    let mut out = Vec::with_capacity(room);
    list_head(
        &mut out,
        page.total,
        page.items.len(),
        cursor.is_none().then_some(start),
    );
    for (i, item) in page.items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match projection {
            None => {
                let rt = ctx.rt(item.kind);
                item.write_default_json(&mut out, &ctx.base, rt)?;
            }
            // One resource decoded at a time, not the page.
            Some(proj) => {
                let m = render(ctx, item.into_resource(|k| proj.may_keep(k))?, proj);
                serde_json::to_writer(&mut out, &m).ok()?;
            }
        }
    }
    let next = cursor.zip(page.next).map(|(scope, n)| scope.encode(n));
    list_tail(&mut out, next.as_deref());
    Some(response::json_bytes(200, out))
}

fn filter_limits(ctx: &Ctx) -> filter::Limits {
    filter::Limits {
        max_len: ctx.rt.config.server.max_filter_length,
        max_depth: ctx.rt.config.server.max_filter_depth,
    }
}
