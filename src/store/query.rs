//! How a list is answered: the query and its page, which index (if any) serves a filter and
//! whether exactly, the order of a sort, and the window of matches a page keeps.

use std::collections::BTreeSet;
use std::ops::Bound;

use super::parse_id;
use super::record::{stamp_nanos, stamps_indexed};
use crate::scim::filter::{self, CompValue, CompareOp, Filter};
use crate::scim::fold::fold;
use crate::scim::render::{Resource, Stored};
use crate::scim::schema::{Kind, Rt};
pub use crate::scim::sort::{SortKey, SortSpec};

/// The request data of a list or search.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filter: Option<Filter>,
    pub sort: Option<SortSpec>,
    /// 1-based.
    pub start_index: u64,
    pub count: u64,
    /// Read each result's members/groups.
    pub with_refs: bool,
    /// Cursor paging (RFC 9865): results after this id, in id order; `Some(0)` from the start.
    pub after: Option<u128>,
    /// Cursor paging of a sorted list: results after this one in the sort order.
    pub resume: Option<SortMark>,
    /// How long a read that visits every record (a scan or a sort) may read, counted from
    /// when it starts reading (not while it waits for a turn): past it the request is
    /// answered `ScanCut` (`Budget`). `None`: no limit.
    pub scan_limit: Option<std::time::Duration>,
}

/// A place in a sorted list: the sort key of a resource (`None` when it has no value, which
/// sorts after every value) and its id, which orders equal keys. A walk resumes after it, so resources
/// created or deleted between pages move nothing else.
#[derive(Debug, Clone, PartialEq)]
pub struct SortMark {
    pub key: Option<SortKey>,
    pub id: u128,
}

pub struct ListPage {
    pub total: u64,
    pub start_index: u64,
    /// With cursor paging, the id to continue after when there are more results.
    pub next: Option<u128>,
    /// A sorted list: where to continue when there are more results.
    pub next_mark: Option<SortMark>,
    pub items: Vec<Resource>,
    /// The snapshot the page was read in: a group's members, streamed after, are read in
    /// it too, so that they are the members of the version listed.
    pub snapshot: Option<super::Snapshot>,
    /// With refs asked for users, the first item whose groups were not read: the page had
    /// read `PAGE_REFS` of them by then. The rest are read as the page is written
    /// (`Store::groups_of_users`, in `snapshot`), so that a page of users in hundreds of
    /// groups each is never held whole.
    pub refs_from: Option<usize>,
}

/// Most group references (a user's groups) a page of users reads before it is written, and
/// then at a time: a few MB held as JSON values.
pub const PAGE_REFS: usize = 5_000;

/// Most group references a long page read as stored text keeps before it gives way to the
/// decoded route: twice `PAGE_REFS`, as the decoded page's own value trees take more memory
/// than these references as text.
pub const STORED_PAGE_REFS: usize = 2 * PAGE_REFS;

/// A page of resources as stored text (see `Stored`).
pub struct StoredPage {
    pub total: u64,
    pub next: Option<u128>,
    pub items: Vec<Stored>,
}

/// Most ids a plan holds (from a lastModified range, a userName prefix, a group's members);
/// past that, a scan, or a walk of the group's members (`and_group_of_users`): memory stays
/// bounded. A lone such condition never gets here unsorted: `index_range` and
/// `group_of_users` page it.
/// (Small in unit tests, so that they reach both sides of it.)
const PLANNED_MAX: usize = if cfg!(test) { 64 } else { 100_000 };

/// Index entries a plan's ranged reads (prefixes, time ranges, a group's members) may read
/// in all: a filter `and`ing hundreds of broad prefixes would otherwise read `PLANNED_MAX`
/// entries for each before the scan it comes to anyway, unbounded by the scan's time limit.
const PLAN_READS: usize = 2 * (PLANNED_MAX + 1);

/// Ids an index can produce for a filter, or `None` when only a scan can answer.
pub(super) fn plan<RT>(
    rt: &RT,
    t: &str,
    kind: Kind,
    f: &Filter,
) -> Result<Option<BTreeSet<u128>>, redb::Error>
where
    RT: IndexReader,
{
    let mut left = PLAN_READS;
    planned(rt, t, kind, f, &mut left)
}

/// A ranged read of at most `PLANNED_MAX` ids within what is `left` of a plan's reads
/// (`PLAN_READS`), which it spends: `None` once nothing is left.
fn ranged(
    left: &mut usize,
    read: impl FnOnce(usize) -> Result<Option<BTreeSet<u128>>, redb::Error>,
) -> Result<Option<BTreeSet<u128>>, redb::Error> {
    let max = (*left).min(PLANNED_MAX);
    if max == 0 {
        return Ok(None);
    }
    let ids = read(max)?;
    *left = left.saturating_sub(ids.as_ref().map_or(max + 1, BTreeSet::len));
    Ok(ids)
}

fn planned<RT>(
    rt: &RT,
    t: &str,
    kind: Kind,
    f: &Filter,
    left: &mut usize,
) -> Result<Option<BTreeSet<u128>>, redb::Error>
where
    RT: IndexReader,
{
    if let Some((lo, hi)) = modified_range(kind, f) {
        return ranged(left, |max| rt.modified_in(t, kind, (lo, hi), max));
    }
    if let Some(prefix) = user_name_prefix(kind, f) {
        return ranged(left, |max| rt.prefixed(t, Prefixed::UserName, &prefix, max));
    }
    Ok(match f {
        Filter::And(a, b) => {
            // The side a point lookup answers goes first: it yields the fewest ids.
            let (x, y) = if !is_point(kind, a) && is_point(kind, b) {
                (b, a)
            } else {
                (a, b)
            };
            match planned(rt, t, kind, x, left)? {
                Some(ids) => Some(ids),
                None => planned(rt, t, kind, y, left)?,
            }
        }
        // Each side within the bound, and their union too.
        Filter::Or(a, b) => match planned(rt, t, kind, a, left)? {
            Some(mut x) => match planned(rt, t, kind, b, left)? {
                Some(y) if x.len() + y.len() <= PLANNED_MAX => {
                    x.extend(y);
                    Some(x)
                }
                _ => None,
            },
            None => None,
        },
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::Str(v),
        } if path.urn.is_none() => match (kind, path.name.as_str(), path.sub.as_deref()) {
            (_, "id", None) => Some(parse_id(v).into_iter().collect()),
            (Kind::User, "userName", None) => Some(rt.username(t, &fold(v))?.into_iter().collect()),
            (_, "externalId", None) => Some(rt.external_id(t, kind, v)?),
            (_, "displayName", None) => Some(rt.display(t, kind, &fold(v))?),
            (Kind::User, "emails", Some("value") | None) => Some(rt.email(t, &fold(v))?),
            (Kind::Group, "members", Some("value") | None) => Some(rt.groups_of(t, v)?),
            (Kind::User, "groups", Some("value") | None) => {
                ranged(left, |max| rt.users_in(t, v, max))?
            }
            (Kind::User, "groups", Some("display")) => users_in_named(rt, t, v, left)?,
            _ => None,
        },
        // The indexes are ordered by value: a prefix is a range of them. (`userName sw` is
        // above.) The email index holds each address folded as the filter's evaluation folds
        // both sides, so the range is the matches; the evaluation of each checks them.
        Filter::Compare {
            path,
            op: CompareOp::Sw,
            value: CompValue::Str(v),
        } if path.urn.is_none() => match (kind, path.name.as_str(), path.sub.as_deref()) {
            (_, "externalId", None) => ranged(left, |max| {
                rt.prefixed(t, Prefixed::ExternalId(kind), v, max)
            })?,
            (Kind::User, "emails", Some("value") | None) => {
                ranged(left, |max| rt.prefixed(t, Prefixed::Email, &fold(v), max))?
            }
            _ => None,
        },
        Filter::ValuePath { path, filter } if path.urn.is_none() => {
            match (kind, path.name.as_str(), element_value_eq(filter)) {
                (Kind::User, "emails", Some(v)) => Some(rt.email(t, &fold(v))?),
                (Kind::Group, "members", Some(v)) => Some(rt.groups_of(t, v)?),
                (Kind::User, "groups", Some(v)) => ranged(left, |max| rt.users_in(t, v, max))?,
                (Kind::User, "emails", None) => match element_cmp(filter, "value", CompareOp::Sw) {
                    Some(p) => ranged(left, |max| rt.prefixed(t, Prefixed::Email, &fold(p), max))?,
                    None => None,
                },
                (Kind::User, "groups", None) => match element_eq(filter, "display") {
                    Some(name) => users_in_named(rt, t, name, left)?,
                    None => None,
                },
                _ => None,
            }
        }
        _ => None,
    })
}

/// Candidates for `groups.display eq "x"`: the members of the groups the displayName index
/// names (folded, so a superset of the matches, which the filter then picks), or `None`
/// past `PLANNED_MAX`.
fn users_in_named<RT: IndexReader + ?Sized>(
    rt: &RT,
    t: &str,
    name: &str,
    left: &mut usize,
) -> Result<Option<BTreeSet<u128>>, redb::Error> {
    let mut users = BTreeSet::new();
    for g in rt.display(t, Kind::Group, &fold(name))? {
        let room = PLANNED_MAX.saturating_sub(users.len());
        let members = ranged(left, |max| {
            rt.users_in(t, &super::format_id(g), max.min(room))
        })?;
        match members {
            Some(more) if users.len() + more.len() <= PLANNED_MAX => users.extend(more),
            _ => return Ok(None),
        }
    }
    Ok(Some(users))
}

/// A match's place in a sorted list. A missing value sorts after every value, so it comes
/// last ascending and first descending (RFC 7644 §3.4.2.3); ties keep creation order (ids
/// are time-ordered).
#[derive(Clone)]
pub(super) struct Ranked {
    pub(super) key: Option<SortKey>,
    pub(super) id: u128,
    pub(super) descending: bool,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let ord = match (&self.key, &other.key) {
            (Some(x), Some(y)) => x.partial_cmp(y).unwrap_or(Ordering::Equal),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        let ord = if self.descending { ord.reverse() } else { ord };
        ord.then(self.id.cmp(&other.id))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Ranked {}

/// The longest page read without leaving the runtime thread (about a millisecond of work).
pub(super) const INLINE_PAGE: u64 = 200;

/// A filter an index answers with a handful of ids (an `eq` on a unique or near-unique
/// attribute, or a conjunction holding one): cheap enough to read without leaving the
/// runtime thread. `sw` and membership can match millions and are not point reads.
pub(super) fn is_point(kind: Kind, f: &Filter) -> bool {
    match f {
        Filter::And(a, b) => is_point(kind, a) || is_point(kind, b),
        _ => indexed_eq(kind, f).is_some(),
    }
}

/// A filter whose index lookup yields exactly its matches, so the records it names need no
/// second evaluation.
pub(super) fn index_exact(kind: Kind, f: &Filter) -> bool {
    match f {
        f if user_name_prefix(kind, f).is_some() => true,
        f if modified_range(kind, f).is_some() => true,
        _ => indexed_eq(kind, f) == Some(true),
    }
}

/// The folded prefix of a `userName sw "x"` filter. The userName index holds folded names,
/// the same folding `sw` compares with, so the index's keys with that prefix are exactly
/// its matches, in userName order.
pub(super) fn user_name_prefix(kind: Kind, f: &Filter) -> Option<String> {
    match f {
        Filter::Compare {
            path,
            op: CompareOp::Sw,
            value: CompValue::Str(v),
        } if kind == Kind::User
            && path.urn.is_none()
            && path.name == "userName"
            && path.sub.is_none() =>
        {
            Some(fold(v))
        }
        _ => None,
    }
}

/// An `eq` that an attribute's own index answers: `Some(exact)`, exact when the index folds
/// case as the filter compares. (`id` is not exact: an upper-case id parses, but `id` is
/// caseExact.) A value path is exact only when `value eq` is its one condition.
fn indexed_eq(kind: Kind, f: &Filter) -> Option<bool> {
    match f {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::Str(_),
        } if path.urn.is_none() => match (kind, path.name.as_str(), path.sub.as_deref()) {
            (_, "id", None) => Some(false),
            (_, "externalId" | "displayName", None)
            | (Kind::User, "userName", None)
            | (Kind::User, "emails", Some("value") | None) => Some(true),
            _ => None,
        },
        Filter::ValuePath { path, filter }
            if kind == Kind::User && path.urn.is_none() && path.name == "emails" =>
        {
            element_value_eq(filter)?;
            Some(matches!(&**filter, Filter::Compare { path: p, .. }
                if p.sub.is_none() && p.urn.is_none()))
        }
        _ => None,
    }
}

/// `value eq "x"` somewhere in a conjunction inside a value path.
fn element_value_eq(f: &Filter) -> Option<&str> {
    element_eq(f, "value")
}

/// `NAME eq "x"` somewhere in a conjunction inside a value path.
fn element_eq<'f>(f: &'f Filter, name: &str) -> Option<&'f str> {
    element_cmp(f, name, CompareOp::Eq)
}

/// The text an element filter (inside `[...]`) compares `name` with by `op`, alone or in an
/// `and`: every match has it.
fn element_cmp<'f>(f: &'f Filter, name: &str, op: CompareOp) -> Option<&'f str> {
    match f {
        Filter::Compare {
            path,
            op: o,
            value: CompValue::Str(v),
        } if path.name == name && *o == op => Some(v),
        Filter::And(a, b) => element_cmp(a, name, op).or_else(|| element_cmp(b, name, op)),
        _ => None,
    }
}

/// The member ids a group filter asks about, when all it asks is whether given ids are
/// members (`members.value eq "x"`, `members[value eq "x"]`) or whether there are any
/// (`members pr`): `(ids, any)`. `None` when it looks at members in another way. A view
/// holding just those members (and one, for `pr`) gives every such filter the answer the
/// whole member list gives.
fn member_probes(f: &Filter) -> Option<(Vec<&str>, bool)> {
    fn walk<'f>(f: &'f Filter, ids: &mut Vec<&'f str>, any: &mut bool) -> bool {
        let members = |p: &filter::AttrPath| p.urn.is_none() && p.name == "members";
        match f {
            Filter::And(a, b) | Filter::Or(a, b) => walk(a, ids, any) && walk(b, ids, any),
            Filter::Not(a) => walk(a, ids, any),
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value: CompValue::Str(v),
            } if members(path) && path.sub.as_deref() == Some("value") => {
                ids.push(v);
                true
            }
            Filter::Present(path) if members(path) && path.sub.is_none() => {
                *any = true;
                true
            }
            Filter::ValuePath { path, filter } if members(path) => match &**filter {
                Filter::Compare {
                    path: p,
                    op: CompareOp::Eq,
                    value: CompValue::Str(v),
                } if p.urn.is_none() && p.name == "value" && p.sub.is_none() => {
                    ids.push(v);
                    true
                }
                _ => false,
            },
            Filter::Compare { path, .. } | Filter::Present(path) => !members(path),
            Filter::ValuePath { .. } => true,
        }
    }
    let (mut ids, mut any) = (Vec::new(), false);
    walk(f, &mut ids, &mut any).then_some((ids, any))
}

/// What evaluating one filter on each resource needs beyond its stored attributes, worked
/// out once per query rather than once per resource.
pub(super) struct Evaluation<'f> {
    pub(super) f: &'f Filter,
    pub(super) rt: Rt,
    pub(super) id: bool,
    pub(super) meta: bool,
    /// Groups: the ids asked about (and whether "any member" is asked), when the filter's
    /// questions about members are only those (`member_probes`).
    pub(super) probes: Option<(Vec<u128>, bool)>,
    /// Groups: otherwise, the filter's conditions on members, decided batch by batch.
    pub(super) member_conditions: Vec<&'f Filter>,
    /// Users: the user's groups are read (for `groups`, or for `meta.version`: `etag_of`).
    pub(super) groups: bool,
}

impl<'f> Evaluation<'f> {
    pub(super) fn new(rt: Rt, f: &'f Filter) -> Evaluation<'f> {
        let group = rt.kind == Kind::Group;
        let mut e = Evaluation {
            f,
            rt,
            id: mentions(f, "id"),
            meta: mentions(f, "meta"),
            probes: None,
            member_conditions: Vec::new(),
            groups: rt.kind == Kind::User && (mentions(f, "groups") || mentions_version(f)),
        };
        if group && mentions(f, "members") {
            match member_probes(f) {
                Some((ids, any)) => {
                    e.probes = Some((ids.into_iter().filter_map(parse_id).collect(), any))
                }
                None => e.member_conditions = filter::conditions_on(f, "members"),
            }
        }
        e
    }
}

/// The top-level attributes (core names, or extension URNs) a resolved filter reads.
pub(super) fn filter_keys<'f>(rt: Rt, f: &'f Filter, out: &mut Vec<&'f str>) {
    for (_, path) in filter::conditions(f) {
        // `schemas` is judged by which extensions hold values.
        if path.urn.is_none() && path.name == "schemas" {
            out.extend(rt.ext.iter().map(|e| e.id));
        }
        out.push(path.urn.as_deref().unwrap_or(&path.name));
    }
}

/// Whether a resolved filter has a condition on the core attribute `name`.
pub(super) fn mentions(f: &Filter, name: &str) -> bool {
    !filter::conditions_on(f, name).is_empty()
}

/// Whether the filter asks about `meta.version`, dotted or as `meta[version ...]` (not only
/// `meta.lastModified`, which Okta's incremental import asks of every user and which needs
/// no groups).
fn mentions_version(f: &Filter) -> bool {
    filter::conditions_on(f, "meta")
        .into_iter()
        .any(|c| match c {
            // Inside the brackets a path's name is the sub-attribute's.
            Filter::ValuePath { filter: inner, .. } => filter::conditions(inner)
                .iter()
                .any(|(_, p)| p.name == "version"),
            _ => filter::conditions(c)
                .iter()
                .any(|(_, p)| p.sub.as_deref() == Some("version")),
        })
}

/// Index look-ups shared by the read path.
/// The indexes ordered by a text value, whose prefixes are ranges of them.
#[derive(Clone, Copy)]
pub(super) enum Prefixed {
    /// Folded userNames, one user each.
    UserName,
    /// Folded email addresses; a user has several.
    Email,
    /// The kind's externalIds as given (caseExact).
    ExternalId(Kind),
}

pub(super) trait IndexReader {
    fn username(&self, t: &str, u: &str) -> Result<Option<u128>, redb::Error>;
    fn external_id(&self, t: &str, kind: Kind, x: &str) -> Result<BTreeSet<u128>, redb::Error>;
    fn display(&self, t: &str, kind: Kind, d: &str) -> Result<BTreeSet<u128>, redb::Error>;
    fn email(&self, t: &str, e: &str) -> Result<BTreeSet<u128>, redb::Error>;
    /// Ids whose value in `index` starts with `prefix` (folded for the folded indexes),
    /// each once however many of its values do, or `None` when there are more than `max`.
    fn prefixed(
        &self,
        t: &str,
        index: Prefixed,
        prefix: &str,
        max: usize,
    ) -> Result<Option<BTreeSet<u128>>, redb::Error>;
    fn groups_of(&self, t: &str, member: &str) -> Result<BTreeSet<u128>, redb::Error>;
    /// The group's direct user members, or `None` when there are more than `max`.
    fn users_in(
        &self,
        t: &str,
        group: &str,
        max: usize,
    ) -> Result<Option<BTreeSet<u128>>, redb::Error>;
    /// Ids whose lastModified is in the range, or `None` when there are more than `max`.
    fn modified_in(
        &self,
        t: &str,
        kind: Kind,
        range: (i64, i64),
        max: usize,
    ) -> Result<Option<BTreeSet<u128>>, redb::Error>;
}

/// The group of a `groups.value eq "g"` or `groups[value eq "g"]` filter on users, whose
/// matches are exactly the group's direct user members (`groups.value` is caseExact false,
/// and an id in any case parses to the same member). Only an id written as scimd writes
/// them: another spelling `parse_id` takes (no dashes, braces, `urn:uuid:`) is another
/// string, which the filter, evaluated, matches nowhere.
pub(super) fn group_of_users(kind: Kind, f: Option<&Filter>) -> Option<&str> {
    if kind != Kind::User {
        return None;
    }
    let as_written =
        |v: &str| parse_id(v).is_some_and(|id| super::format_id(id).eq_ignore_ascii_case(v));
    let v = match f? {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::Str(v),
        } if path.urn.is_none()
            && path.name == "groups"
            && path.sub.as_deref() == Some("value") =>
        {
            Some(v)
        }
        Filter::ValuePath { path, filter } if path.urn.is_none() && path.name == "groups" => {
            match &**filter {
                Filter::Compare {
                    path: p,
                    op: CompareOp::Eq,
                    value: CompValue::Str(v),
                } if p.urn.is_none() && p.name == "value" && p.sub.is_none() => Some(v),
                _ => None,
            }
        }
        _ => None,
    }?;
    as_written(v).then_some(v.as_str())
}

/// Whether a list may read every record of its kind, or of a group of a million: a sort,
/// or a filter no index answers exactly (nor a point read within it; a group's users alone
/// are read a page at a time). Such reads take
/// turns of their own (`TENANT_SCANS`) besides the tenant's.
pub(super) fn may_scan(kind: Kind, q: &ListQuery) -> bool {
    q.sort.is_some() || q.filter.as_ref().is_some_and(|f| !index_served(kind, f))
}

/// Whether an index names a filter's candidates: a condition one serves, an `and` with such
/// a side, an `or` of such sides. Past what a plan holds it scans after all, and is read
/// again under a scan's turn (`Store::list_in`).
fn index_served(kind: Kind, f: &Filter) -> bool {
    match f {
        Filter::And(a, b) => index_served(kind, a) || index_served(kind, b),
        Filter::Or(a, b) => index_served(kind, a) && index_served(kind, b),
        f => {
            index_exact(kind, f)
                || is_point(kind, f)
                || index_range(kind, Some(f)).is_some()
                || index_prefix(kind, f)
                || group_of_users(kind, Some(f)).is_some()
        }
    }
}

/// `externalId sw` or `emails.value sw`: a range of an ordered index names the candidates
/// (`plan`; a scan only past `PLANNED_MAX` of them).
fn index_prefix(kind: Kind, f: &Filter) -> bool {
    match f {
        Filter::ValuePath { path, filter } if path.urn.is_none() => {
            kind == Kind::User
                && path.name == "emails"
                && element_cmp(filter, "value", CompareOp::Sw).is_some()
        }
        Filter::Compare {
            path,
            op: CompareOp::Sw,
            value: CompValue::Str(_),
        } if path.urn.is_none() => matches!(
            (kind, path.name.as_str(), path.sub.as_deref()),
            (_, "externalId", None) | (Kind::User, "emails", Some("value") | None)
        ),
        _ => false,
    }
}

/// The group of a `groups.value eq "g"` condition that a conjunction (`and`, at any depth of
/// `and`s) requires: its matches are among the group's members, which the member index
/// holds in id order, so a list walks them instead of every user.
pub(super) fn and_group_of_users(kind: Kind, f: &Filter) -> Option<&str> {
    match f {
        Filter::And(a, b) => and_group_of_users(kind, a).or_else(|| and_group_of_users(kind, b)),
        f => group_of_users(kind, Some(f)),
    }
}

/// A stretch of one index that holds exactly a filter's matches.
pub(super) enum IndexRange {
    /// `userName sw`: the lower-cased prefix.
    NamePrefix(String),
    /// `userName gt`, `ge`, `lt` or `le`: the folded names from and to. The index holds
    /// folded names in byte order, the order such a comparison uses (`userName` is not
    /// caseExact), so the stretch is exactly the matches.
    Names(Bound<String>, Bound<String>),
    /// A comparison of `meta.lastModified`: the Unix nanoseconds from and to (inclusive).
    Modified(i64, i64),
}

pub(super) fn index_range(kind: Kind, f: Option<&Filter>) -> Option<IndexRange> {
    match f? {
        Filter::Compare {
            path,
            op: CompareOp::Sw,
            value: CompValue::Str(v),
        } if kind == Kind::User
            && path.urn.is_none()
            && path.name == "userName"
            && path.sub.is_none() =>
        {
            Some(IndexRange::NamePrefix(fold(v)))
        }
        Filter::Compare {
            path,
            op,
            value: CompValue::Str(v),
        } if kind == Kind::User
            && path.urn.is_none()
            && path.name == "userName"
            && path.sub.is_none()
            && matches!(
                op,
                CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
            ) =>
        {
            let v = fold(v);
            Some(match op {
                CompareOp::Gt => IndexRange::Names(Bound::Excluded(v), Bound::Unbounded),
                CompareOp::Ge => IndexRange::Names(Bound::Included(v), Bound::Unbounded),
                CompareOp::Lt => IndexRange::Names(Bound::Unbounded, Bound::Excluded(v)),
                _ => IndexRange::Names(Bound::Unbounded, Bound::Included(v)),
            })
        }
        f => modified_range(kind, f).map(|(lo, hi)| IndexRange::Modified(lo, hi)),
    }
}

/// The lastModified times (inclusive, Unix nanoseconds) a comparison of `meta.lastModified`
/// asks for, when the index holds the kind. `eval` compares the parsed times, as the index
/// keys are, so the range is exact.
fn modified_range(kind: Kind, f: &Filter) -> Option<(i64, i64)> {
    if !stamps_indexed(kind) {
        return None;
    }
    let Filter::Compare {
        path,
        op,
        value: CompValue::Str(v),
    } = f
    else {
        return None;
    };
    if path.urn.is_some() || path.name != "meta" || path.sub.as_deref() != Some("lastModified") {
        return None;
    }
    let n = stamp_nanos(v)?;
    match op {
        CompareOp::Eq => Some((n, n)),
        CompareOp::Gt => Some((n.checked_add(1)?, i64::MAX)),
        CompareOp::Ge => Some((n, i64::MAX)),
        CompareOp::Lt => Some((i64::MIN, n.checked_sub(1)?)),
        CompareOp::Le => Some((i64::MIN, n)),
        _ => None,
    }
}

/// Visits a filter's matches in id order from an id, until the visitor says stop.
/// False when its budget cut it short (`Budget`): what it offered is not every match.
pub(super) type Matches<'a> =
    dyn Fn(u128, &mut dyn FnMut(u128) -> bool) -> Result<bool, redb::Error> + 'a;

/// One page of matches, offered in id order, and the count of all of them: a filter that
/// matches a million resources costs a page of memory, not a million records.
pub(super) struct Window<T> {
    pub(super) skip: usize,
    pub(super) count: usize,
    pub(super) after: Option<u128>,
    pub(super) total: u64,
    pub(super) items: Vec<(u128, T)>,
    /// A match after the page exists (for the cursor to continue).
    pub(super) more: bool,
}

impl<T> Window<T> {
    pub(super) fn new(skip: usize, count: usize, after: Option<u128>) -> Window<T> {
        Window {
            skip,
            count,
            after,
            total: 0,
            items: Vec::new(),
            more: false,
        }
    }

    pub(super) fn offer(&mut self, id: u128, rec: T) {
        self.total += 1;
        match self.after {
            Some(after) if id <= after => {}
            Some(_) if self.items.len() == self.count => self.more = true,
            Some(_) => self.items.push((id, rec)),
            None if self.total as usize > self.skip && self.items.len() < self.count => {
                self.items.push((id, rec))
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every index broad: each ranged read reads `max + 1` entries and gives up.
    #[derive(Default)]
    struct Broad {
        read: std::cell::Cell<usize>,
    }

    impl IndexReader for Broad {
        fn username(&self, _: &str, _: &str) -> Result<Option<u128>, redb::Error> {
            Ok(None)
        }
        fn external_id(&self, _: &str, _: Kind, _: &str) -> Result<BTreeSet<u128>, redb::Error> {
            Ok(BTreeSet::new())
        }
        fn display(&self, _: &str, _: Kind, _: &str) -> Result<BTreeSet<u128>, redb::Error> {
            Ok(BTreeSet::new())
        }
        fn email(&self, _: &str, _: &str) -> Result<BTreeSet<u128>, redb::Error> {
            Ok(BTreeSet::new())
        }
        fn prefixed(
            &self,
            _: &str,
            _: Prefixed,
            _: &str,
            max: usize,
        ) -> Result<Option<BTreeSet<u128>>, redb::Error> {
            self.read.set(self.read.get() + max + 1);
            Ok(None)
        }
        fn groups_of(&self, _: &str, _: &str) -> Result<BTreeSet<u128>, redb::Error> {
            Ok(BTreeSet::new())
        }
        fn users_in(
            &self,
            _: &str,
            _: &str,
            max: usize,
        ) -> Result<Option<BTreeSet<u128>>, redb::Error> {
            self.read.set(self.read.get() + max + 1);
            Ok(None)
        }
        fn modified_in(
            &self,
            _: &str,
            _: Kind,
            _: (i64, i64),
            max: usize,
        ) -> Result<Option<BTreeSet<u128>>, redb::Error> {
            self.read.set(self.read.get() + max + 1);
            Ok(None)
        }
    }

    /// However many broad ranged terms a conjunction has, its plan reads `PLAN_READS`
    /// entries at most before it settles for a scan.
    #[test]
    fn a_plan_reads_a_bounded_number_of_index_entries_in_all() {
        for term in [
            "externalId sw \"x\"",
            "emails.value sw \"a\"",
            "emails[value sw \"a\"]",
            "userName sw \"u\"",
            "meta.lastModified gt \"2000-01-01T00:00:00Z\"",
            "groups.value eq \"01a24203-c2c8-7729-a039-0067083f04f6\"",
        ] {
            let f = vec![term; 50].join(" and ");
            let f = filter::parse_for(Kind::User, &f).unwrap();
            let rt = Broad::default();
            assert_eq!(plan(&rt, "t", Kind::User, &f).unwrap(), None, "{term}");
            assert!(
                (PLANNED_MAX..=PLAN_READS).contains(&rt.read.get()),
                "{term}: {} entries read",
                rt.read.get()
            );
        }
    }

    fn exact(kind: Kind, f: &str) -> bool {
        index_exact(kind, &filter::parse_for(kind, f).unwrap())
    }

    #[test]
    fn reads_that_may_scan_are_told_from_index_served_ones() {
        let scans = |f: &str| {
            let q = ListQuery {
                filter: Some(filter::parse_for(Kind::User, f).unwrap()),
                ..ListQuery::default()
            };
            may_scan(Kind::User, &q)
        };
        for f in [
            "userName eq \"a\"",
            "userName sw \"a\"",
            "meta.lastModified gt \"2026-01-01T00:00:00Z\"",
            "emails[value eq \"a@x\"]",
            "externalId eq \"x\" and title co \"y\"",
            "groups.value eq \"01a24203-c2c8-7729-a039-0067083f04f6\"",
            "userName gt \"a\"",
            "emails.value sw \"a\"",
            "emails[value sw \"a\" and type eq \"work\"]",
            "externalId sw \"x\"",
            "userName eq \"a\" or userName eq \"b\"",
            "externalId sw \"x\" and emails.value sw \"a\"",
            // A group past the plan's bound walks its members: read again under a scan
            // turn then (`Store::list_in`).
            "groups.value eq \"01a24203-c2c8-7729-a039-0067083f04f6\" and active eq false",
        ] {
            assert!(!scans(f), "{f}");
        }
        for f in [
            "title co \"y\"",
            "active eq false or userName eq \"a\"",
            "not (userName eq \"a\")",
        ] {
            assert!(scans(f), "{f}");
        }
        let sorted = ListQuery {
            sort: Some(SortSpec::parse(Kind::User, "title", None).unwrap()),
            ..ListQuery::default()
        };
        assert!(may_scan(Kind::User, &sorted));
        assert!(!may_scan(Kind::User, &ListQuery::default()));
    }

    #[test]
    fn only_filters_an_index_answers_exactly_skip_evaluation() {
        assert!(exact(Kind::User, r#"userName eq "A@x""#));
        assert!(exact(Kind::User, r#"emails[value eq "a@x"]"#));
        assert!(exact(Kind::User, r#"emails.value eq "a@x""#));
        assert!(exact(Kind::User, r#"externalId eq "e1""#));
        assert!(exact(Kind::Group, r#"displayName eq "Ops""#));
        // The userName index's prefix range is exactly what `sw` matches (both lower-cased),
        // though it is no point lookup.
        assert!(exact(Kind::User, r#"userName sw "A""#));
        assert!(!is_point(
            Kind::User,
            &filter::parse_for(Kind::User, r#"userName sw "a""#).unwrap()
        ));
        // id is caseExact but parses in upper case; a conjunction or a second condition in
        // the value path needs the evaluation; other `sw` filters are evaluated.
        assert!(!exact(Kind::User, r#"id eq "x""#));
        assert!(!exact(Kind::User, r#"userName eq "a" and active eq true"#));
        assert!(!exact(
            Kind::User,
            r#"emails[type eq "work" and value eq "a@x"]"#
        ));
        assert!(!exact(Kind::User, r#"emails.value sw "a""#));
        assert!(!exact(Kind::Group, r#"displayName sw "a""#));
        assert!(!exact(Kind::Group, r#"members[value eq "x"]"#));
        // A comparison of a user's lastModified is a range of its index, exactly; groups
        // have no such index.
        for op in ["gt", "ge", "lt", "le", "eq"] {
            let f = format!(r#"meta.lastModified {op} "2026-01-01T00:00:00Z""#);
            assert!(exact(Kind::User, &f), "{f}");
            assert!(!exact(Kind::Group, &f), "{f}");
        }
        assert!(!exact(
            Kind::User,
            r#"meta.lastModified ne "2026-01-01T00:00:00Z""#
        ));
        assert!(!exact(
            Kind::User,
            r#"meta.created gt "2026-01-01T00:00:00Z""#
        ));
    }

    #[test]
    fn a_last_modified_comparison_is_the_range_of_times_it_names() {
        let range =
            |f: &str| modified_range(Kind::User, &filter::parse_for(Kind::User, f).unwrap());
        let n = 1_767_225_600_000_000_000i64; // 2026-01-01T00:00:00Z
        assert_eq!(
            range(r#"meta.lastModified gt "2026-01-01T00:00:00Z""#),
            Some((n + 1, i64::MAX))
        );
        // Another offset is the same instant; fractions are nanoseconds.
        assert_eq!(
            range(r#"meta.lastModified ge "2026-01-01T02:00:00.5+02:00""#),
            Some((n + 500_000_000, i64::MAX))
        );
        assert_eq!(
            range(r#"meta.lastModified lt "2026-01-01T00:00:00Z""#),
            Some((i64::MIN, n - 1))
        );
        assert_eq!(
            range(r#"meta.lastModified le "2026-01-01T00:00:00Z""#),
            Some((i64::MIN, n))
        );
        assert_eq!(
            range(r#"meta.lastModified eq "2026-01-01T00:00:00Z""#),
            Some((n, n))
        );
        // Past what the index's nanoseconds hold: evaluated instead.
        assert_eq!(
            range(r#"meta.lastModified gt "9999-01-01T00:00:00Z""#),
            None
        );
    }
}
