//! The plan list the application reads: who is paid, free or deactivated, counted from the
//! counters and paged by index.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::plan::{self, Mode, SeatState};
use super::read::ReadSide;
use super::record::decode;
use super::{Error, Store, format_id};
use crate::scim::schema::Kind;

/// A tenant's plan as counted now.
#[derive(Debug, serde::Serialize)]
pub struct PlanSummary {
    pub mode: Mode,
    pub paid: u64,
    pub free: u64,
    pub deactivated: u64,
    pub active_provisioned: u64,
}

/// One person on the plan list.
#[derive(Debug, serde::Serialize)]
pub struct PlanEntry {
    pub id: Option<String>,
    #[serde(rename = "userName")]
    pub user_name: String,
    pub emails: Vec<String>,
    pub status: plan::Status,
    pub existing_member: bool,
    /// The account's `active`, `None` for an existing member no account matches. An existing
    /// member keeps a paid seat in testing mode even when deactivated: an application that
    /// lets in paid people must also check this.
    pub active: Option<bool>,
}

/// Where a page of the plan list starts: a 1-based position, or after a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanFrom {
    Index(u64),
    After(PlanCursor),
}

/// A place in the plan list (users in id order, then the unmatched existing members).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanCursor {
    Start,
    /// After this user.
    User(u128),
    /// From this existing-members entry on, in their (sorted) order, among those no user
    /// matches. Named by the entry, not by a place among the unmatched or in the
    /// configuration: a user who comes to match an entry, or a reload that adds or drops
    /// entries, between pages must not shift the walk.
    Tail(String),
}

pub struct PlanPage {
    pub total: u64,
    pub entries: Vec<PlanEntry>,
    /// By cursor: where the next page starts, while the list may go on.
    pub next: Option<PlanCursor>,
}

/// What the plan list of one read is worked out from.
struct PlanCtx {
    mode: Mode,
    /// Users that match an existing-members entry.
    matched: BTreeSet<u128>,
    /// In testing mode, the one user per matched entry that holds its seat (`keeper`), with
    /// its state as read then.
    kept: BTreeMap<u128, SeatState>,
    /// Entries no user matches, in their sorted order.
    unmatched: Vec<String>,
}

/// Most users one cursor page of the plan list reads (a few milliseconds of work), so that a
/// status few users have costs short pages rather than a scan of the tenant. (Tiny in unit
/// tests, to show the short pages.)
const PLAN_SCAN: usize = if cfg!(test) { 4 } else { 5_000 };

impl ReadSide {
    /// Paid, free and deactivated counts from the counters; only the existing members are
    /// looked at one by one (testing mode keeps them paid).
    fn plan_counts(&self, t: &str, c: &PlanCtx) -> Result<PlanSummary, redb::Error> {
        let (mode, unmatched) = (c.mode, c.unmatched.len());
        let total = plan::count(self.counts()?, t, Kind::User.code())?;
        let active = plan::count(self.counts()?, t, plan::ACTIVE)?;
        let overflow = plan::count(self.counts()?, t, plan::OVERFLOW)?;
        let mut s = PlanSummary {
            mode,
            paid: active - overflow.min(active),
            free: overflow,
            deactivated: total.saturating_sub(active),
            active_provisioned: active,
        };
        if mode == Mode::Testing {
            for state in c.kept.values() {
                match state {
                    (false, _) => {
                        s.deactivated = s.deactivated.saturating_sub(1);
                        s.paid += 1;
                    }
                    (true, true) => {
                        s.free = s.free.saturating_sub(1);
                        s.paid += 1;
                    }
                    (true, false) => {}
                }
            }
        }
        match mode {
            Mode::Testing => s.paid += unmatched as u64,
            Mode::Enforced => s.free += unmatched as u64,
        }
        Ok(s)
    }

    /// The users a plan list page may hold, in id order from `first`, until `visit` says
    /// stop: for `free`, only those the seat limit placed there (their own index); else all.
    fn plan_users(
        &self,
        t: &str,
        status: Option<plan::Status>,
        first: u128,
        mut visit: impl FnMut(u128, &[u8]) -> Result<bool, redb::Error>,
    ) -> Result<(), redb::Error> {
        let user = Kind::User.code();
        if status == Some(plan::Status::Free) {
            for e in self.overflow()?.range((t, first)..=(t, u128::MAX))? {
                let id = e?.0.value().1;
                if let Some(g) = self.res()?.get((t, user, id))?
                    && !visit(id, g.value())?
                {
                    break;
                }
            }
        } else {
            for e in self.res()?.range((t, user, first)..=(t, user, u128::MAX))? {
                let (k, v) = e?;
                if !visit(k.value().2, v.value())? {
                    break;
                }
            }
        }
        Ok(())
    }

    /// A stored user as an entry of the plan list (`None` when the record does not decode).
    fn plan_entry(
        &self,
        t: &str,
        c: &PlanCtx,
        id: u128,
        bytes: &[u8],
    ) -> Result<Option<PlanEntry>, redb::Error> {
        let Some(rec) = decode(bytes) else {
            return Ok(None);
        };
        let existing = c.matched.contains(&id);
        let active = plan::is_active(&rec.body);
        let status = plan::user_status(
            c.mode,
            active,
            self.overflowed(t, id)?,
            c.kept.contains_key(&id),
        );
        let emails = rec
            .body
            .get("emails")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("value").and_then(Value::as_str).map(str::to_string))
            .collect();
        let user_name = rec
            .body
            .get("userName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(Some(PlanEntry {
            id: Some(format_id(id)),
            user_name,
            emails,
            status,
            existing_member: existing,
            active: Some(active),
        }))
    }

    fn plan_ctx(&self, t: &str, rules: &plan::PlanRules) -> Result<PlanCtx, redb::Error> {
        let mode = rules.mode(plan::active(self.counts()?, t)?);
        let mut c = PlanCtx {
            mode,
            matched: BTreeSet::new(),
            kept: BTreeMap::new(),
            unmatched: Vec::new(),
        };
        for m in &rules.existing_members {
            let ids = plan::matches_of(self.usernames()?, self.emails()?, t, m)?;
            if ids.is_empty() {
                c.unmatched.push(m.clone());
            }
            if mode == Mode::Testing
                && let Some((keeper, state)) =
                    plan::keeper(self.res()?, self.overflow()?, t, ids.iter().copied())?
            {
                c.kept.insert(keeper, state);
            }
            c.matched.extend(ids);
        }
        Ok(c)
    }

    fn overflowed(&self, t: &str, id: u128) -> Result<bool, redb::Error> {
        Ok(self.overflow()?.get((t, id))?.is_some())
    }
}

impl Store {
    pub async fn plan_summary(
        &self,
        tenant: String,
        rules: std::sync::Arc<plan::PlanRules>,
    ) -> Result<PlanSummary, Error> {
        self.read(&tenant.clone(), move |r: &ReadSide| {
            let t = tenant.as_str();
            let c = r.plan_ctx(t, &rules)?;
            Ok(Ok(r.plan_counts(t, &c)?))
        })
        .await
    }

    /// A page of the people with `status` (all when `None`): users in id order, then the
    /// existing members no user matches. Totals come from the counters, never a scan. By
    /// cursor, a page reads at most `PLAN_SCAN` users, so a status few users have may give
    /// short (even empty) pages with a `next` cursor; `next` is `None` at the end.
    pub async fn plan_members(
        &self,
        tenant: String,
        rules: std::sync::Arc<plan::PlanRules>,
        status: Option<plan::Status>,
        from: PlanFrom,
        count: u64,
    ) -> Result<PlanPage, Error> {
        self.read(&tenant.clone(), move |r: &ReadSide| {
            let t = tenant.as_str();
            let user = Kind::User.code();
            let ctx = r.plan_ctx(t, &rules)?;
            let s = r.plan_counts(t, &ctx)?;
            let (mode, unmatched) = (ctx.mode, &ctx.unmatched);
            let total = match status {
                None => s.paid + s.free + s.deactivated,
                Some(plan::Status::Paid) => s.paid,
                Some(plan::Status::Free) => s.free,
                Some(plan::Status::Deactivated) => s.deactivated,
            };
            let count = usize::try_from(count).unwrap_or(usize::MAX);
            let wanted = |e: &PlanEntry| status.is_none_or(|s| s == e.status);
            let tail = |m: &String| PlanEntry {
                id: None,
                user_name: rules.existing_shown.get(m).unwrap_or(m).clone(),
                emails: Vec::new(),
                status: plan::unmatched_status(mode),
                existing_member: true,
                active: None,
            };
            let mut entries = Vec::new();
            let mut next = None;
            match from {
                PlanFrom::Index(start) => {
                    let mut skip = start.max(1) - 1;
                    let mut first = Some(0u128);
                    // How many users have the status, from the counters (the rest of the
                    // total is existing members no user matches).
                    let users = plan::count(r.counts()?, t, user)?;
                    let tail_wanted = unmatched.iter().filter(|m| wanted(&tail(m))).count();
                    let mut users_left = match status {
                        None => users,
                        Some(_) => total.saturating_sub(tail_wanted as u64),
                    };
                    if users_left == users && skip > 0 {
                        // Every user is listed: the position counts find the start.
                        match r.position(t, Kind::User, skip)? {
                            Some((f, rest)) => (first, skip) = (Some(f), rest),
                            None => (first, skip) = (None, skip.saturating_sub(users)),
                        }
                    } else if skip >= users_left {
                        // The page starts past every user with the status.
                        (first, skip) = (None, skip - users_left);
                    }
                    if let Some(first) = first.filter(|_| count > 0) {
                        r.plan_users(t, status, first, |id, bytes| {
                            // Past the last user with the status, nothing more is listed.
                            if entries.len() == count || users_left == 0 {
                                return Ok(false);
                            }
                            if let Some(entry) = r.plan_entry(t, &ctx, id, bytes)?
                                && wanted(&entry)
                            {
                                users_left -= 1;
                                match skip {
                                    0 => entries.push(entry),
                                    _ => skip -= 1,
                                }
                            }
                            Ok(true)
                        })?;
                    }
                    for m in unmatched {
                        let e = tail(m);
                        if entries.len() == count || !wanted(&e) {
                            continue;
                        }
                        match skip {
                            0 => entries.push(e),
                            _ => skip -= 1,
                        }
                    }
                }
                PlanFrom::After(c) if count > 0 => {
                    let (first, tail_from) = match c {
                        PlanCursor::Start => (Some(0), String::new()),
                        PlanCursor::User(id) => (id.checked_add(1), String::new()),
                        PlanCursor::Tail(m) => (None, m),
                    };
                    if let Some(first) = first.filter(|_| total > 0) {
                        let mut last = None;
                        let mut scanned = 0;
                        r.plan_users(t, status, first, |id, bytes| {
                            if entries.len() == count || scanned == PLAN_SCAN {
                                next = last.map(PlanCursor::User);
                                return Ok(false);
                            }
                            scanned += 1;
                            last = Some(id);
                            if let Some(entry) = r.plan_entry(t, &ctx, id, bytes)?
                                && wanted(&entry)
                            {
                                entries.push(entry);
                            }
                            Ok(true)
                        })?;
                    }
                    if next.is_none() {
                        // Sorted (`plan_rules`), so "from this entry on" is a comparison.
                        for m in unmatched.iter().filter(|m| **m >= tail_from) {
                            let e = tail(m);
                            if !wanted(&e) {
                                continue;
                            }
                            if entries.len() == count {
                                next = Some(PlanCursor::Tail(m.clone()));
                                break;
                            }
                            entries.push(e);
                        }
                    }
                }
                PlanFrom::After(_) => {}
            }
            Ok(Ok(PlanPage {
                total,
                entries,
                next,
            }))
        })
        .await
    }
}
