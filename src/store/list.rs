//! Lists: a page of a type's resources, filtered and sorted, found by the cheapest route the
//! query allows (counters, an index walk or range, planned ids, or a scan), with every match
//! counted for totalResults.

use super::budget::Budget;
use super::query::*;
use super::read::{ReadSide, Snapshot};
use super::record::*;
use super::scans::Scan;
use super::select;
use super::skim::{Skimmed, skimmed};
use super::tables::*;
use super::{Error, R, Store, format_id, parse_id, plan, ranks};
use crate::scim::filter::Filter;
use crate::scim::render::Stored;
use crate::scim::schema::{Kind, Rt};
use std::sync::Arc;

/// A page's total, its items with their ids, and with a cursor the id to continue after.
type Found<T> = (u64, Vec<(u128, T)>, Option<u128>);

impl ReadSide {
    /// A page of a filter's matches in id order, where `matches` must evaluate the filter
    /// on each candidate (it visits them in id order from the given id, until told to stop).
    /// The first page of a query in a snapshot visits them all, as it must count them; the
    /// next pages of the same query in the same snapshot start at a bookmark and stop once
    /// full.
    fn evaluated_page(
        &self,
        (t, kind, key): (&str, Kind, String),
        matches: &Matches,
        (skip, count, after): (usize, usize, Option<u128>),
        start: u64,
    ) -> Result<ListPage, redb::Error> {
        let Some(scan) = self.scans.get(&key) else {
            let mut w = Window::new(skip, count, after);
            let mut scan = Scan::default();
            let whole = matches(0, &mut |id| {
                w.offer(id, ());
                scan.count(id);
                true
            })?;
            // A scan cut short counted only part of the matches.
            if whole {
                self.scans.put(key, scan);
            }
            return self.read_window(t, kind, w, start);
        };
        // The total is known: read from where the page starts until it is full.
        let from = match after {
            Some(a) => a
                .checked_add(1)
                .map(|from| (from, Window::new(0, count, after))),
            None => scan
                .seek(skip as u64)
                .map(|(from, rest)| (from, Window::new(rest, count, None))),
        };
        // By startIndex the page holds what is left of the matches, up to `count`: the
        // last page stops at the last match, not at the end of the tenant.
        let left = usize::try_from(scan.total.saturating_sub(skip as u64)).unwrap_or(usize::MAX);
        let need = count.min(left);
        let mut w = match (from, count > 0) {
            (Some((from, mut w)), true) => {
                matches(from, &mut |id| {
                    w.offer(id, ());
                    !w.more && (after.is_some() || w.items.len() < need)
                })?;
                w
            }
            _ => Window::new(0, 0, None),
        };
        w.total = scan.total;
        self.read_window(t, kind, w, start)
    }

    /// The page a window holds, read whole.
    fn read_window(
        &self,
        t: &str,
        kind: Kind,
        w: Window<()>,
        start: u64,
    ) -> Result<ListPage, redb::Error> {
        let ids: Vec<u128> = w.items.iter().map(|(id, _)| *id).collect();
        self.read_page(t, kind, &ids, w.more, w.total, start)
    }

    /// An unfiltered, unsorted page of `kind`: its total from the count table, its resources
    /// (with their ids) from one ordered range read, from the cursor or from the position
    /// the counts find, so the last page costs about what the first does; and with a cursor,
    /// the id to continue after when more follow. `take` makes a page item of a stored
    /// record (its error, for one that does not decode, is the page's).
    pub(super) fn plain_page<T>(
        &self,
        t: &str,
        kind: Kind,
        q: &ListQuery,
        mut take: impl FnMut(u128, &[u8]) -> Result<T, redb::Error>,
    ) -> Result<Found<T>, redb::Error> {
        let total = self
            .counts()?
            .get((t, kind.code()))?
            .map(|g| g.value())
            .unwrap_or(0);
        let skip = q.start_index.max(1) - 1;
        let count = usize::try_from(q.count).unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut next = None;
        if let Some(after) = q.after {
            if after < u128::MAX {
                let from = (t, kind.code(), after + 1)..=(t, kind.code(), u128::MAX);
                for e in self.res()?.range(from)?.take(count.saturating_add(1)) {
                    let (k, v) = e?;
                    if items.len() == count {
                        next = items.last().map(|(id, _)| *id);
                        break;
                    }
                    let id = k.value().2;
                    items.push((id, take(id, v.value())?));
                }
            }
        } else if count > 0 {
            let (from, rest) = self
                .position(t, kind, skip)?
                .unwrap_or((u128::MAX, u64::MAX));
            let range = (t, kind.code(), from)..=(t, kind.code(), u128::MAX);
            let rest = usize::try_from(rest).unwrap_or(usize::MAX);
            for e in self.res()?.range(range)?.skip(rest).take(count) {
                let (k, v) = e?;
                let id = k.value().2;
                items.push((id, take(id, v.value())?));
            }
        }
        Ok((total, items, next))
    }

    /// Where the resource of `kind` at 0-based position `skip` (in id order) is found: see
    /// `ranks::locate`. A skip of 0 needs no counts.
    pub(super) fn position(
        &self,
        t: &str,
        kind: Kind,
        skip: u64,
    ) -> Result<Option<(u128, u64)>, redb::Error> {
        if skip == 0 {
            return Ok(Some((0, 0)));
        }
        let ranks = self.txn.open_table(RANKS)?;
        Ok(ranks::locate(&ranks, t, kind.code(), skip)?)
    }

    /// The users directly in group `g`, in id order (a user's `groups` lists its direct
    /// memberships).
    pub(super) fn direct_users(
        &self,
        t: &str,
        g: u128,
        mut visit: impl FnMut(u128),
    ) -> Result<(), redb::Error> {
        for e in self.members()?.range((t, g, 0u128)..=(t, g, u128::MAX))? {
            let (k, v) = e?;
            if v.value() == Kind::User.code() {
                visit(k.value().2);
            }
        }
        Ok(())
    }

    /// A list page of the resources `ids` (in id order), with the cursor to continue after
    /// the last when `more`.
    fn read_page(
        &self,
        t: &str,
        kind: Kind,
        ids: &[u128],
        more: bool,
        total: u64,
        start: u64,
    ) -> Result<ListPage, redb::Error> {
        let mut items = Vec::with_capacity(ids.len());
        for &id in ids {
            if let Some(rec) = self
                .res()?
                .get((t, kind.code(), id))?
                .map(|g| decoded(g.value()))
                .transpose()?
            {
                items.push(rec.into_resource(kind, id));
            }
        }
        Ok(ListPage {
            total,
            start_index: start,
            next: more.then(|| ids.last().copied()).flatten(),
            next_mark: None,
            items,
            snapshot: None,
            refs_from: None,
        })
    }
}

impl Store {
    pub async fn list(&self, tenant: String, rt: Rt, q: ListQuery) -> Result<ListPage, Error> {
        self.list_in(None, tenant, rt, q).await
    }

    /// The latest snapshot, to read several lists in (`list_in`): an export's pages of users
    /// and groups, and the groups' members, all of one moment.
    pub fn snapshot(&self) -> Result<Snapshot, Error> {
        self.read_now_in(|r| Ok(Ok(Snapshot(r.clone()))))
    }

    /// `list`, read in `snapshot` when given (on the pool, in the tenant's share).
    pub async fn list_in(
        &self,
        snapshot: Option<Snapshot>,
        tenant: String,
        rt: Rt,
        q: ListQuery,
    ) -> Result<ListPage, Error> {
        // Kept for a second try only where one can be needed: a filter an index range
        // serves, read without a scan turn (not a point lookup, the common case).
        let again = (!may_scan(rt.kind, &q)
            && q.filter.as_ref().is_some_and(|f| !is_point(rt.kind, f)))
        .then(|| (snapshot.clone(), tenant.clone(), q.clone()));
        match self.list_taking(snapshot, tenant, rt, q, false).await {
            // Too many to plan: it scans (or walks a group's members), under a scan turn as
            // scans do, without planning again.
            Err(Error::ScanTurnNeeded) => match again {
                Some((snapshot, tenant, q)) => {
                    self.list_taking(snapshot, tenant, rt, q, true).await
                }
                None => Err(Error::ScanTurnNeeded),
            },
            answered => answered,
        }
    }

    /// `list_in`; `unplanned`: the plan is known to hold too many, so the read scans, and
    /// takes a scan turn whatever the query.
    async fn list_taking(
        &self,
        snapshot: Option<Snapshot>,
        tenant: String,
        rt: Rt,
        q: ListQuery,
        unplanned: bool,
    ) -> Result<ListPage, Error> {
        let kind = rt.kind;
        // Point lookups and short unfiltered pages (by cursor, or by startIndex at any depth:
        // the position counts find it) stay on the runtime thread; scans and sorts go to the
        // pool. Groups with members always go to the pool (a group can have a million).
        let short_page = q.filter.is_none() && q.count <= INLINE_PAGE;
        let inline = q.sort.is_none()
            && (short_page || q.filter.as_ref().is_some_and(|f| is_point(kind, f)))
            && !(q.with_refs && kind == Kind::Group);
        // The tenant's name for its share of the pool, only for a read that goes there.
        let inline = inline && snapshot.is_none();
        // Asked only of a read that goes to the pool: a point lookup stays off it.
        let scan = !inline && (unplanned || may_scan(kind, &q));
        // Waiting for a turn is bounded as reading is: a request behind its tenant's scans
        // is answered 503 once it has waited as long as one may read.
        let wait = q.scan_limit;
        let share = if inline {
            String::new()
        } else {
            tenant.clone()
        };
        let read = move |r: &ReadSide| {
            let t = tenant.as_str();
            let start = q.start_index.max(1);
            let skip = usize::try_from(start - 1).unwrap_or(usize::MAX);
            let count = usize::try_from(q.count).unwrap_or(usize::MAX);
            // Fast path: no filter, no sort → the count table and one ordered range read.
            if q.filter.is_none() && q.sort.is_none() {
                let (total, items, next) = r.plain_page(t, kind, &q, |id, v| {
                    decoded(v).map(|rec| rec.into_resource(kind, id))
                })?;
                let items = items.into_iter().map(|(_, x)| x).collect();
                return finish(
                    r,
                    t,
                    kind,
                    ListPage {
                        total,
                        start_index: start,
                        next,
                        next_mark: None,
                        items,
                        snapshot: None,
                        refs_from: None,
                    },
                    q.with_refs,
                );
            }
            // All users by userName, or those whose userName starts with a prefix (a search
            // box): the userName index holds them in that order (folded, as sort keys of a
            // caseExact=false attribute are; userName is unique and always there), so a page
            // is a walk of the index, not a sort of every match.
            let prefix = match &q.filter {
                None => Some(String::new()),
                Some(f) => user_name_prefix(kind, f),
            };
            if let (Some(prefix), Some(s), Kind::User) = (&prefix, &q.sort, kind)
                && s.is_core("userName")
            {
                use std::ops::Bound::{Excluded, Included};
                let past = format!("{t}\0");
                let end = next_prefix(prefix);
                let hi_all = match &end {
                    Some(e) => Excluded((t, e.as_str())),
                    None => Excluded((past.as_str(), "")),
                };
                let lo_all = Included((t, prefix.as_str()));
                let total = match prefix.is_empty() {
                    true => plan::count(r.counts()?, t, kind.code())?,
                    false => r.usernames()?.range((lo_all, hi_all))?.count() as u64,
                };
                // A resumed walk starts just past the name it stopped at (names are unique).
                let after = q.resume.as_ref().map(|m| match &m.key {
                    Some(SortKey::Text(n)) => n.as_str(),
                    _ => "",
                });
                let (lo, hi) = match (after, s.descending) {
                    (Some(n), false) if n >= prefix.as_str() => (Excluded((t, n)), hi_all),
                    (Some(_), false) => (lo_all, hi_all),
                    (Some(n), true) => (lo_all, Excluded((t, n))),
                    (None, _) => (lo_all, hi_all),
                };
                let names = r.usernames()?.range((lo, hi))?;
                let skip = if after.is_some() { 0 } else { skip };
                let (ids, next) = index_walk(
                    names,
                    s.descending,
                    skip,
                    count,
                    |(_, v)| v.value(),
                    |(k, v)| SortMark {
                        key: Some(SortKey::Text(k.value().1.to_string())),
                        id: v.value(),
                    },
                )?;
                let mut page = r.read_page(t, kind, &ids, false, total, start)?;
                page.next_mark = next;
                return finish(r, t, kind, page, q.with_refs);
            }
            // All users by lastModified: its index holds them in that order, equal times by id
            // (in the index's order both ways; a sort of every user puts them by id ascending).
            if let (None, Some(s)) = (&q.filter, &q.sort)
                && s.is_last_modified()
                && stamps_indexed(kind)
            {
                use std::ops::Bound::{Excluded, Included};
                let total = plan::count(r.counts()?, t, kind.code())?;
                let c = kind.code();
                // A resumed walk starts just past the (time, id) it stopped at.
                let at = q.resume.as_ref().map(|m| {
                    let n = match &m.key {
                        Some(SortKey::Text(x)) => stamp_nanos(x),
                        _ => None,
                    };
                    (n.unwrap_or(i64::MIN), m.id)
                });
                let (first, last) = ((t, c, i64::MIN, 0u128), (t, c, i64::MAX, u128::MAX));
                let (lo, hi) = match (at, s.descending) {
                    (Some((n, id)), false) => (Excluded((t, c, n, id)), Included(last)),
                    (Some((n, id)), true) => (Included(first), Excluded((t, c, n, id))),
                    (None, _) => (Included(first), Included(last)),
                };
                let entries = r.modified()?.range((lo, hi))?;
                let skip = if at.is_some() { 0 } else { skip };
                let (ids, next) = index_walk(
                    entries,
                    s.descending,
                    skip,
                    count,
                    |(k, _)| k.value().3,
                    |(k, _)| {
                        let (_, _, n, id) = k.value();
                        SortMark {
                            key: crate::scim::sort::time_order_nanos(n).map(SortKey::Text),
                            id,
                        }
                    },
                )?;
                let mut page = r.read_page(t, kind, &ids, false, total, start)?;
                page.next_mark = next;
                return finish(r, t, kind, page, q.with_refs);
            }
            // Users in a group (`groups.value eq "g"`, `groups[value eq "g"]`): the group's
            // member index holds them in id order, so the page is read straight off it while
            // the rest are counted, however large the group.
            if let (Some(g), None) = (group_of_users(kind, q.filter.as_ref()), &q.sort) {
                let mut w = Window::new(skip, count, q.after);
                if let Some(g) = parse_id(g) {
                    r.direct_users(t, g, |id| w.offer(id, ()))?;
                }
                return finish(r, t, kind, r.read_window(t, kind, w, start)?, q.with_refs);
            }
            // A filter one index range answers exactly (`userName sw`, a comparison of
            // `meta.lastModified`): count the range and keep only the page's ids (the
            // smallest, as lists are in id order), however many match.
            if let (Some(range), None) = (index_range(kind, q.filter.as_ref()), &q.sort) {
                let keep = match q.after {
                    Some(_) => count.saturating_add(1),
                    None => skip.saturating_add(count),
                };
                let mut best = std::collections::BinaryHeap::new();
                let mut total = 0u64;
                r.each_in(t, kind, &range, &mut |id| {
                    total += 1;
                    if keep == 0 || q.after.is_some_and(|a| id <= a) {
                        return;
                    }
                    best.push(id);
                    if best.len() > keep {
                        best.pop();
                    }
                })?;
                let ids = best.into_sorted_vec();
                let (page, more): (Vec<u128>, bool) = match q.after {
                    Some(_) => (ids.iter().take(count).copied().collect(), ids.len() > count),
                    None => (ids.iter().skip(skip).take(count).copied().collect(), false),
                };
                let page = r.read_page(t, kind, &page, more, total, start)?;
                return finish(r, t, kind, page, q.with_refs);
            }
            let planned = match &q.filter {
                Some(f) if !unplanned => plan(r, t, kind, f)?,
                _ => None,
            };
            // A filter an index serves whose plan held too many would scan here (or walk a
            // group's members) without a scan turn, holding the tenant's turns its other
            // index-served reads need: taken again, with one.
            if planned.is_none() && q.filter.is_some() && !scan {
                return Ok(Err(Error::ScanTurnNeeded));
            }
            // Exact only when the index was read: past `PLANNED_MAX` the plan is a scan,
            // which must evaluate the filter.
            let exact =
                planned.is_some() && q.filter.as_ref().is_some_and(|f| index_exact(kind, f));
            // Too many ids to plan, but within one group's members: walk them.
            let members_of = match (&planned, &q.filter) {
                (None, Some(f)) => and_group_of_users(kind, f).and_then(parse_id),
                _ => None,
            };
            // Each record is read for the attributes the filter and the sort look at only;
            // the page's records are read whole after.
            let mut wanted = Vec::new();
            if let Some(f) = &q.filter {
                filter_keys(rt, f, &mut wanted);
            }
            if let Some(s) = &q.sort {
                wanted.push(s.top_key());
            }
            let evaluation = q
                .filter
                .as_ref()
                .filter(|_| !exact)
                .map(|f| Evaluation::new(rt, f));
            let keep = |id: u128, rec: &Skimmed| -> Result<bool, redb::Error> {
                match &evaluation {
                    Some(e) => r.satisfies(t, id, rec, e),
                    None => Ok(true),
                }
            };
            if let (Some(ids), true, None) = (&planned, exact, &q.sort) {
                // Exactly the matches, in id order: count them and read only the page.
                let mut w = Window::new(skip, count, q.after);
                ids.iter().for_each(|&id| w.offer(id, ()));
                return finish(r, t, kind, r.read_window(t, kind, w, start)?, q.with_refs);
            }
            // A candidate id's record, offered to `visit` if it passes; false once `visit`
            // says stop.
            let candidate = |id: u128,
                             visit: &mut dyn FnMut(u128, Skimmed) -> bool|
             -> Result<bool, redb::Error> {
                let Some(g) = r.res()?.get((t, kind.code(), id))? else {
                    return Ok(true);
                };
                let rec = skimmed(g.value(), &wanted)?;
                Ok(!keep(id, &rec)? || visit(id, rec))
            };
            // Each record read below asks it first: these reads may visit every record.
            let budget = Budget::new(q.scan_limit.map(|l| std::time::Instant::now() + l));
            // The matches in id order from `from`, until `visit` says stop: the planned
            // candidates that pass, a group's members that do, or a scan. False when the
            // budget cut it short.
            let each = |from: u128,
                        visit: &mut dyn FnMut(u128, Skimmed) -> bool|
             -> Result<bool, redb::Error> {
                match (&planned, members_of) {
                    (None, Some(g)) => {
                        for e in r.members()?.range((t, g, from)..=(t, g, u128::MAX))? {
                            let (k, v) = e?;
                            if v.value() != Kind::User.code() {
                                continue;
                            }
                            if !budget.go_on() || !candidate(k.value().2, visit)? {
                                break;
                            }
                        }
                    }
                    (Some(ids), _) => {
                        for &id in ids.range(from..) {
                            if !budget.go_on() || !candidate(id, visit)? {
                                break;
                            }
                        }
                    }
                    (None, None) => {
                        let from = (t, kind.code(), from)..=(t, kind.code(), u128::MAX);
                        for e in r.res()?.range(from)? {
                            if !budget.go_on() {
                                break;
                            }
                            let (k, v) = e?;
                            let id = k.value().2;
                            let rec = skimmed(v.value(), &wanted)?;
                            if keep(id, &rec)? && !visit(id, rec) {
                                break;
                            }
                        }
                    }
                }
                Ok(!budget.cut())
            };
            let cut = || Ok(Err(Error::ScanCut { kind }));
            let Some(s) = &q.sort else {
                // Only the requested page is kept while every match is counted; the count
                // and bookmarks serve the next pages of the same filter in this snapshot.
                let key = format!(
                    "{t}\0{}\0{:p}\0{:?}",
                    kind.code(),
                    rt.ext.as_ptr(),
                    q.filter
                );
                let matches = |from: u128, visit: &mut dyn FnMut(u128) -> bool| {
                    each(from, &mut |id, _| visit(id))
                };
                let page =
                    r.evaluated_page((t, kind, key), &matches, (skip, count, q.after), start)?;
                if budget.cut() {
                    return cut();
                }
                return finish(r, t, kind, page, q.with_refs);
            };
            // Sorted: only sort keys are held, and only about a page's worth (`select`);
            // the page is read again after. A cursor walk offers only what sorts after its
            // mark, while every match is counted.
            let mark = q.resume.as_ref().map(|m| Ranked {
                key: m.key.clone(),
                id: m.id,
                descending: s.descending,
            });
            let skip = if mark.is_some() { 0 } else { skip };
            let mut total = 0u64;
            let picked = select::page(skip, count, |sink: &mut dyn FnMut(Ranked)| {
                total = 0;
                each(0, &mut |id, rec| {
                    total += 1;
                    let ranked = Ranked {
                        key: s.key(&format_id(id), &rec.created, &rec.modified, &rec.body),
                        id,
                        descending: s.descending,
                    };
                    if mark.as_ref().is_none_or(|m| ranked > *m) {
                        sink(ranked);
                    }
                    true
                })
                .map(|_| ())
            })?;
            if budget.cut() {
                return cut();
            }
            let ids: Vec<u128> = picked.page.iter().map(|x| x.id).collect();
            let mut page = r.read_page(t, kind, &ids, false, total, start)?;
            let more = picked.total > (skip + picked.page.len()) as u64;
            page.next_mark = picked.page.last().filter(|_| more).map(|x| SortMark {
                key: x.key.clone(),
                id: x.id,
            });
            finish(r, t, kind, page, q.with_refs)
        };
        // Groups keep their snapshot for their members, and users for the groups left to
        // read (`ListPage::snapshot`).
        let read = move |r: &Arc<ReadSide>| {
            let mut page = match read(r)? {
                Ok(page) => page,
                Err(e) => return Ok(Err(e)),
            };
            if kind == Kind::Group || page.refs_from.is_some() {
                page.snapshot = Some(Snapshot(r.clone()));
            }
            Ok(Ok(page))
        };
        let turns = super::Turns { scan, wait };
        match snapshot {
            Some(s) => self.pooled_as(&share, turns, move |_| read(&s.0)).await,
            None if inline => self.read_now_in(read),
            None => self.read_in_as(&share, turns, read).await,
        }
    }
}

impl Store {
    /// A page as stored text, or `None` when the query needs more than reading it (the
    /// caller lists the ordinary way, or with `list_stored_pooled`): an exact point
    /// filter's matches, the lookup IdPs make before every create, or a short unfiltered
    /// page, the pages of an import. It skips decoding records only to print them again.
    pub fn list_stored(
        &self,
        tenant: &str,
        kind: Kind,
        q: &ListQuery,
    ) -> Option<Result<StoredPage, Error>> {
        // It runs on the runtime thread: point lookups, short pages, and a `userName sw`
        // with few matches (one can match millions: past INLINE_PAGE it goes the ordinary
        // way); a group's members are streamed instead.
        let point = |f: &Filter| index_exact(kind, f) && is_point(kind, f);
        let prefix = q.filter.as_ref().and_then(|f| user_name_prefix(kind, f));
        if q.sort.is_some()
            || (q.with_refs && kind == Kind::Group)
            || !(prefix.is_some() || q.filter.as_ref().map_or(q.count <= INLINE_PAGE, point))
        {
            return None;
        }
        self.read_now(|r| stored_page(r, tenant, kind, q, prefix.as_deref(), PAGE_REFS))
            .transpose()
    }

    /// `list_stored` for an unfiltered page too long for the runtime thread (a client
    /// asking for `maxResults` at a time), read on the pool. Decoded, each resource of a
    /// page of a thousand would be held as a tree of values, ten times its text.
    pub async fn list_stored_pooled(
        &self,
        tenant: &str,
        kind: Kind,
        q: &ListQuery,
    ) -> Option<Result<StoredPage, Error>> {
        // A short page is `list_stored`'s: one it gave up on (too many references, a record
        // it cannot print) is not read a second time here.
        if q.count <= INLINE_PAGE
            || q.filter.is_some()
            || q.sort.is_some()
            || (q.with_refs && kind == Kind::Group)
        {
            return None;
        }
        let (t, q) = (tenant.to_string(), q.clone());
        let turns = super::Turns {
            scan: false,
            wait: q.scan_limit,
        };
        self.read_in_as(tenant, turns, move |r| {
            stored_page(r, &t, kind, &q, None, STORED_PAGE_REFS)
        })
        .await
        .transpose()
    }
}

/// The page `list_stored` reads: `None` when a record of it needs the ordinary way, or its
/// resources hold more than `max_refs` references in all.
fn stored_page(
    r: &ReadSide,
    t: &str,
    kind: Kind,
    q: &ListQuery,
    prefix: Option<&str>,
    max_refs: usize,
) -> R<Option<StoredPage>> {
    let (total, found, next) = match &q.filter {
        None => r.plain_page(t, kind, q, |_, v| Ok(v.to_vec()))?,
        Some(f) => {
            let skip = usize::try_from(q.start_index.max(1) - 1).unwrap_or(usize::MAX);
            let count = usize::try_from(q.count).unwrap_or(usize::MAX);
            let mut w = Window::new(skip, count, q.after);
            let ids = match prefix {
                Some(p) => r.prefixed(t, Prefixed::UserName, p, INLINE_PAGE as usize)?,
                None => plan(r, t, kind, f)?,
            };
            let Some(ids) = ids else {
                return Ok(Ok(None));
            };
            for id in ids {
                if let Some(g) = r.res()?.get((t, kind.code(), id))? {
                    w.offer(id, g.value().to_vec());
                }
            }
            let next = match w.more {
                true => w.items.last().map(|(id, _)| *id),
                false => None,
            };
            (w.total, w.items, next)
        }
    };
    let mut items = Vec::with_capacity(found.len());
    let mut read = 0;
    for (id, record) in found {
        let refs = match q.with_refs {
            true => Some(r.refs(t, kind, id)?),
            false => None,
        };
        read += refs.as_ref().map_or(0, Vec::len);
        // Users in hundreds of groups each: the ordinary way writes them a part at a time.
        if read > max_refs {
            return Ok(Ok(None));
        }
        items.push(Stored {
            kind,
            id: format_id(id),
            record,
            refs,
        });
    }
    Ok(Ok(Some(StoredPage { total, next, items })))
}

/// Read each listed resource's members or groups when they will be returned.
pub(super) fn finish(
    r: &ReadSide,
    t: &str,
    kind: Kind,
    mut page: ListPage,
    with_refs: bool,
) -> R<ListPage> {
    if with_refs {
        let mut read = 0;
        for (i, it) in page.items.iter_mut().enumerate() {
            // A group's members are streamed by the caller; a user's groups only past the
            // budget.
            if kind == Kind::User && read >= PAGE_REFS {
                page.refs_from = Some(i);
                break;
            }
            if let Some(id) = parse_id(&it.id) {
                let refs = r.refs(t, kind, id)?;
                read += refs.len();
                it.refs = Some(refs);
            }
        }
    }
    Ok(Ok(page))
}

/// A page of a list read off an index that holds the list in its order (reversed when
/// descending): its ids, and where to resume when more follow. `entries` run from where the
/// page may start, `skip` of them are passed over, `id` gives an entry's resource and `mark`
/// its place, made for the page's last entry only (a time key is formatted to make it).
fn index_walk<E>(
    entries: impl DoubleEndedIterator<Item = Result<E, redb::StorageError>>,
    descending: bool,
    skip: usize,
    count: usize,
    id: impl Fn(&E) -> u128,
    mark: impl FnOnce(E) -> SortMark,
) -> Result<(Vec<u128>, Option<SortMark>), redb::StorageError> {
    fn first<E>(
        entries: impl Iterator<Item = Result<E, redb::StorageError>>,
        skip: usize,
        n: usize,
    ) -> Result<Vec<E>, redb::StorageError> {
        entries.skip(skip).take(n).collect()
    }
    // One past the page tells whether more follow.
    let n = count.saturating_add(1);
    let mut page = match descending {
        false => first(entries, skip, n)?,
        true => first(entries.rev(), skip, n)?,
    };
    let more = page.len() > count;
    page.truncate(count);
    let ids = page.iter().map(&id).collect();
    Ok((ids, page.pop().filter(|_| more).map(mark)))
}

/// The least string past every string that starts with `prefix` (`None`: there is none, as
/// for the empty prefix).
fn next_prefix(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        let next = match c {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(u32::from(c) + 1),
        };
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}
