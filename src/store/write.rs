//! Writes: create, replace, patch and delete, each in one transaction that keeps the indexes,
//! the membership tables, the counters and the change feed in step.

use std::collections::BTreeMap;

use redb::{MultimapTable, ReadableMultimapTable, ReadableTable, Table, WriteTransaction};
use serde_json::Value;

use super::alike;
use super::events::{self, Actor, NewEvent};
use super::plan::{self, Mode, Seat};
use super::ranks;
use super::read::{
    Conditions, MEMBER_BATCH, member_json, named_group, not_found, precondition, read_refs,
};
use super::record::*;
use super::tables::*;
use super::{Error, R, Store, format_id, new_id, parse_id};
use crate::scim::error::{ScimError, ScimType};
use crate::scim::filter;
use crate::scim::patch::{self, MemberOp, Operation};
use crate::scim::render::{Resource, etag_of};
use crate::scim::resource::{self, Body, Ignored, Input};
use crate::scim::schema::{Kind, Rt};

/// What `plan_applied` found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PlanApplied {
    /// The settings that changed since last applied, by the change feed's names.
    pub changed: Vec<String>,
    /// The modes before and after, when the new settings switched it.
    pub modes: Option<(Mode, Mode)>,
}

/// The tables of one write transaction, opened once for its whole batch of jobs (opening
/// them all costs about what committing a small change does).
pub(super) struct W<'t> {
    pub(super) res: Table<'t, (&'static str, u8, u128), &'static [u8]>,
    pub(super) counts: Table<'t, (&'static str, u8), u64>,
    pub(super) usernames: Table<'t, (&'static str, &'static str), u128>,
    pub(super) ext_ids: MultimapTable<'t, (&'static str, u8, &'static str), u128>,
    pub(super) emails: MultimapTable<'t, (&'static str, &'static str), u128>,
    pub(super) names: MultimapTable<'t, (&'static str, u8, &'static str), u128>,
    pub(super) members: Table<'t, (&'static str, u128, u128), u8>,
    pub(super) member_of: Table<'t, (&'static str, u128, u128), ()>,
    pub(super) displays: Table<'t, (&'static str, u128, u128), &'static str>,
    pub(super) events: events::EventTable<'t>,
    pub(super) seqs: events::SeqTable<'t>,
    pub(super) overflow: Table<'t, (&'static str, u128), ()>,
    pub(super) unique: Table<'t, (&'static str, u8, &'static str, &'static str), u128>,
    pub(super) ranks: Table<'t, ranks::RankKey, u64>,
    pub(super) modified: Table<'t, (&'static str, u8, i64, u128), ()>,
    /// For tables few writes use (the plan settings last applied, in `META`).
    pub(super) txn: &'t WriteTransaction,
    /// The file's version floor (`layout::VERSION_FLOOR`).
    version_floor: u64,
    /// While a user write watches the other accounts of its existing-members entries
    /// (`seats::Mates`): the users its plan events named.
    pub(super) plan_told: Option<Vec<u128>>,
    /// A write of the batch met a record that does not decode (`existing`, `load`): the
    /// writer has the file checked once the batch is done.
    pub(super) met_damage: std::cell::Cell<bool>,
    /// The plan rules writes follow (`plan::InForce`), and those this batch applied.
    in_force: &'t plan::InForce,
    pub(super) plans_applied: plan::Changes,
}

impl<'t> W<'t> {
    pub(super) fn open(
        txn: &'t WriteTransaction,
        version_floor: u64,
        in_force: &'t plan::InForce,
    ) -> Result<W<'t>, redb::Error> {
        Ok(W {
            res: txn.open_table(RESOURCES)?,
            counts: txn.open_table(COUNTS)?,
            usernames: txn.open_table(USERNAME_USERID)?,
            ext_ids: txn.open_multimap_table(EXTERNALID_ID)?,
            emails: txn.open_multimap_table(EMAIL_USERID)?,
            names: txn.open_multimap_table(DISPLAYNAME_ID)?,
            members: txn.open_table(GROUPID_MEMBERID)?,
            member_of: txn.open_table(MEMBERID_GROUPID)?,
            displays: txn.open_table(MEMBER_DISPLAY)?,
            events: txn.open_table(EVENTS)?,
            seqs: txn.open_table(EVENT_SEQ)?,
            overflow: txn.open_table(OVERFLOW_USERID)?,
            unique: txn.open_table(UNIQUE_ID)?,
            ranks: txn.open_table(RANKS)?,
            modified: txn.open_table(MODIFIED_ID)?,
            txn,
            version_floor,
            plan_told: None,
            met_damage: std::cell::Cell::new(false),
            in_force,
            plans_applied: plan::Changes::new(),
        })
    }

    /// The plan rules a write of `actor`'s tenant follows: those last applied (by this
    /// batch, else by a committed one), else the request's own.
    pub(super) fn rules(&self, actor: &Actor) -> plan::Rules {
        match self.plans_applied.get(&actor.tenant) {
            Some(Some(rules)) => rules.clone(),
            Some(None) => actor.plan.clone(),
            None => self
                .in_force
                .get(&actor.tenant)
                .unwrap_or_else(|| actor.plan.clone()),
        }
    }

    /// The version a resource at `version` takes when it changes: one more, and above the
    /// floor a restore set.
    fn next_version(&self, version: u64) -> u64 {
        version.max(self.version_floor) + 1
    }

    pub(super) fn emit(
        &mut self,
        actor: &Actor,
        kind: &'static str,
        id: u128,
        member: Option<(u128, Kind)>,
        attributes: Vec<String>,
    ) -> Result<(), redb::Error> {
        let new = NewEvent {
            kind,
            resource_id: format_id(id),
            member_id: member.map(|(m, _)| format_id(m)),
            member_type: member.map(|(_, k)| k),
            attributes,
            from_to: None,
        };
        events::append(&mut self.events, &mut self.seqs, actor, new)
    }

    /// Write an updated body (if anything changed) and its events; returns the record now
    /// stored, given the old body's index keys and the new one's.
    fn update(
        &mut self,
        actor: &Actor,
        rt: Rt,
        id: u128,
        (old, body): (Record, Body),
        (old_keys, new_keys): (Keys, Keys),
        members: MembersDone,
    ) -> Result<Record, redb::Error> {
        let kind = rt.kind;
        if resource::reads_the_same(kind, &old.body, &body) && !members.changed {
            // Nothing changed (Okta re-sends the same rename with every membership push):
            // the version stays.
            return Ok(old);
        }
        let t = actor.tenant.as_str();
        let mut attrs = events::updated_attributes(kind, &old.body, &body);
        // One event for the request: a member's new display is named beside the rest.
        if members.relabeled {
            attrs.push("members.display".to_string());
        }
        if !attrs.is_empty() {
            let ev = events::update_kind(kind, &old.body, &body);
            self.emit(actor, ev, id, None, attrs)?;
        }
        let rec = Record {
            body,
            modified: after(&old.modified),
            created: old.created,
            version: self.next_version(old.version),
        };
        self.put(t, kind, id, &rec, Some(&old.modified))?;
        self.index(t, rt, id, &old_keys, &new_keys)?;
        self.unindex_unique(t, kind, id, &old.body, Some(&rec.body))?;
        Ok(rec)
    }

    /// The rest of a PUT or PATCH once the new body is known: check uniqueness, the member
    /// changes and the plan's seats (reads only), then write members, body, indexes, events
    /// and plan counters.
    fn commit_change(
        &mut self,
        actor: &Actor,
        rt: Rt,
        id: u128,
        old: Record,
        mut body: Body,
        member_ops: &[MemberOp],
    ) -> R<Record> {
        let t = actor.tenant.as_str();
        let is_user = rt.kind == Kind::User;
        // Create-only values are put back before anything is judged on the new body: a
        // value sent for one is ignored, so it must not be refused as another's (which
        // would refuse the rest of the change with it), and the plan must count what is
        // stored.
        let undone = if is_user {
            resource::keep_from_old(rt, &old.body, &mut body, &actor.create_only)
        } else {
            Vec::new()
        };
        let index_keys = (keys(rt, &old.body), keys(rt, &body));
        if let Err(e) = self.check_unique(t, rt, &index_keys.1, Some((id, &index_keys.0)))? {
            return Ok(Err(e));
        }
        let changes = match plan_members(self, t, id, member_ops)? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let activity = (plan::is_active(&old.body), plan::is_active(&body));
        let held =
            is_user && activity == (true, true) && self.holds_entry_seat(actor, id, &old.body)?;
        let past = match held {
            true => self.paid_past_limits(actor)?,
            false => (0, 0),
        };
        let mates = match is_user {
            true => self.entry_mates(actor, id, &[&old.body, &body])?,
            false => None,
        };
        let seat =
            match self.seat_check(actor, Some(id), &body, (activity.0, activity.1 && is_user))? {
                Ok(s) => s,
                Err(e) => return Ok(Err(e)),
            };
        let members = apply_members(self, actor, id, &changes)?;
        if !undone.is_empty() {
            self.emit(actor, "user.create_only_ignored", id, None, undone)?;
        }
        let rec = self.update(actor, rt, id, (old, body), index_keys, members)?;
        if is_user {
            self.plan_transition(actor, id, Some(activity.0), Some(activity.1), seat, true)?;
            if held {
                self.back_in_line(actor, id, &rec.body, past)?;
            }
            if let Some(mates) = mates {
                self.tell_mates(actor, mates)?;
            }
        }
        Ok(Ok(rec))
    }

    /// The resource a write targets: it must exist and pass `If-Match`.
    pub(super) fn existing(
        &self,
        t: &str,
        kind: Kind,
        id: &str,
        cond: &Conditions,
    ) -> R<(u128, Record)> {
        let Some(nid) = parse_id(id) else {
            return Ok(Err(not_found(kind, id)));
        };
        let old = match self.stored(t, kind, nid)? {
            None => return Ok(Err(not_found(kind, id))),
            Some(Ok(rec)) => rec,
            // Damage, not a resource gone: this write's 500 (as a read's), while the
            // batch's other writes go on; answering 404 would have the IdP create it anew.
            Some(Err(e)) => {
                let what = format!("a write of {} {id} met damage: {e}", kind.as_str());
                return Ok(Err(super::internal(&what)));
            }
        };
        if cond.if_match.is_some() || cond.if_none_match.is_some() {
            // A user's ETag covers its groups (`etag_of`): read them only when compared.
            let refs = match kind {
                Kind::User => Some(self.refs(t, kind, nid)?),
                Kind::Group => None,
            };
            if let Err(e) = precondition(cond, &etag_of(kind, old.version, refs.as_deref())) {
                return Ok(Err(e));
            }
        }
        Ok(Ok((nid, old)))
    }

    /// The record of `id`: none, or what it decodes to. One that does not decode has the
    /// file checked after the batch (`met_damage`).
    fn stored(
        &self,
        t: &str,
        kind: Kind,
        id: u128,
    ) -> Result<Option<Result<Record, redb::Error>>, redb::Error> {
        let Some(g) = self.res.get((t, kind.code(), id))? else {
            return Ok(None);
        };
        let rec = decoded(g.value());
        if rec.is_err() {
            self.met_damage.set(true);
        }
        Ok(Some(rec))
    }

    /// The record of `id`, or none; one that does not decode is none here too (a member or
    /// a seat holder it names is passed over as gone). The resource a write targets is read
    /// by `existing`, which refuses the write instead.
    pub(super) fn load(
        &self,
        t: &str,
        kind: Kind,
        id: u128,
    ) -> Result<Option<Record>, redb::Error> {
        Ok(self.stored(t, kind, id)?.and_then(Result::ok))
    }

    /// 409 when another resource holds this userName or group displayName. The detail names
    /// the holder's id so an IdP retrying a timed-out create can link to it. `me` is the
    /// resource written and its keys before: a name it already had is never refused, so that
    /// two users whose names a newer fold made one (layout 5) can both still be written, and
    /// is not looked up (at a million users, a page read a PUT or PATCH saves).
    fn check_unique(&self, t: &str, rt: Rt, k: &Keys, me: Option<(u128, &Keys)>) -> R<()> {
        let kind = rt.kind;
        let (me, before) = (me.map(|m| m.0), me.map(|m| m.1));
        // Likewise a unique value it already held beside another resource (both given it
        // while the attribute was not unique): its other changes are not refused for it.
        let had_value = |pair: &(String, String)| {
            before.is_some_and(|b| b.unique.contains(pair) || b.other_spellings.contains(pair))
        };
        if let Some(u) = &k.username
            && before.is_none_or(|b| b.username.as_ref() != Some(u))
            && let Some(other) = alike::holder(&self.usernames, t, u)?
            && Some(other) != me
        {
            return Ok(Err(Error::UserNameTaken { holder: other }));
        }
        for pair in k.unique.iter().chain(&k.other_spellings) {
            let (attr, v) = pair;
            if !had_value(pair)
                && let Some(other) = self
                    .unique
                    .get((t, kind.code(), attr.as_str(), v.as_str()))?
                    .map(|g| g.value())
                && Some(other) != me
                && self.still_holds(t, rt, other, attr, v)?
            {
                return Ok(Err(Error::ValueTaken {
                    attribute: attr.clone(),
                    kind,
                    holder: other,
                }));
            }
        }
        if kind == Kind::Group
            && let Some(d) = &k.display
            && before.is_none_or(|b| b.display.as_ref() != Some(d))
        {
            for other in self.names.get((t, kind.code(), d.as_str()))? {
                let other = other?.value();
                if Some(other) != me {
                    return Ok(Err(Error::GroupNameTaken { holder: other }));
                }
            }
        }
        Ok(Ok(()))
    }

    /// Whether resource `id` still holds the unique value `(attr, v)` its index entry names,
    /// as declared now (`case_exact` included). Earlier builds left entries behind when a
    /// value went while its extension was out of the configuration (`unindex_unique`),
    /// and an entry made before `case_exact` changed names a value written another way:
    /// such an entry refuses nothing, and the write it would have refused takes it over.
    fn still_holds(
        &self,
        t: &str,
        rt: Rt,
        id: u128,
        attr: &str,
        v: &str,
    ) -> Result<bool, redb::Error> {
        Ok(match self.stored(t, rt.kind, id)? {
            None => false,
            Some(Ok(rec)) => holds_unique(Some(rec), rt, attr, v),
            // A holder whose record does not decode keeps its value: given to another, the
            // entry would be taken from it for damage the scrub is about to report.
            Some(Err(_)) => true,
        })
    }

    pub(super) fn index(
        &mut self,
        t: &str,
        rt: Rt,
        id: u128,
        old: &Keys,
        new: &Keys,
    ) -> Result<(), redb::Error> {
        let kind = rt.kind;
        let c = kind.code();
        // Unique values it no longer holds are taken out by `unindex_unique`, which sees
        // every value the body has, declared or not.
        for (a, v) in new.unique.difference(&old.unique) {
            self.unique.insert((t, c, a.as_str(), v.as_str()), id)?;
        }
        // A value kept from before gets its entry if it has none (written while its
        // attribute was not unique), or one whose holder no longer holds the value.
        for (a, v) in new.unique.intersection(&old.unique) {
            let key = (t, c, a.as_str(), v.as_str());
            let holder = self.unique.get(key)?.map(|g| g.value());
            let free = match holder {
                None => true,
                Some(h) => h != id && !self.still_holds(t, rt, h, a, v)?,
            };
            if free {
                self.unique.insert(key, id)?;
            }
        }
        if old.username != new.username {
            if let Some(u) = &old.username {
                alike::release(&mut self.usernames, t, u, id)?;
            }
            if let Some(u) = &new.username {
                self.usernames.insert((t, u.as_str()), id)?;
            }
        }
        if old.external_id != new.external_id {
            if let Some(x) = &old.external_id {
                self.ext_ids.remove((t, c, x.as_str()), id)?;
            }
            if let Some(x) = &new.external_id {
                self.ext_ids.insert((t, c, x.as_str()), id)?;
            }
        }
        if old.display != new.display {
            if let Some(x) = &old.display {
                self.names.remove((t, c, x.as_str()), id)?;
            }
            if let Some(x) = &new.display {
                self.names.insert((t, c, x.as_str()), id)?;
            }
        }
        for e in old.emails.difference(&new.emails) {
            self.emails.remove((t, e.as_str()), id)?;
        }
        for e in new.emails.difference(&old.emails) {
            self.emails.insert((t, e.as_str()), id)?;
        }
        Ok(())
    }

    /// Take out the unique-index entries naming `id` for values its body before (`old`)
    /// held and its body after (`new`, `None` once deleted) holds no more, whatever is
    /// declared now (`unique_candidates`): an extension taken out of the configuration, or
    /// an attribute no longer unique, leaves the entries made while it was. Only entries
    /// naming `id` go: a copy of a value another resource holds (both given it while the
    /// attribute was not unique) leaves that one's entry. Values still held keep theirs.
    fn unindex_unique(
        &mut self,
        t: &str,
        kind: Kind,
        id: u128,
        old: &Body,
        new: Option<&Body>,
    ) -> Result<(), redb::Error> {
        let c = kind.code();
        let before = unique_candidates(kind, old);
        if before.is_empty() {
            return Ok(());
        }
        let after = new.map(|b| unique_candidates(kind, b)).unwrap_or_default();
        for (a, v) in before.difference(&after) {
            let key = (t, c, a.as_str(), v.as_str());
            let holder = self.unique.get(key)?.map(|g| g.value());
            if holder == Some(id) {
                self.unique.remove(key)?;
            }
        }
        Ok(())
    }

    /// Count a resource in or out: its kind's total and its position counts.
    fn bump_count(&mut self, t: &str, kind: Kind, id: u128, up: bool) -> Result<(), redb::Error> {
        ranks::bump(&mut self.ranks, t, kind.code(), id, up)?;
        let n = self
            .counts
            .get((t, kind.code()))?
            .map(|g| g.value())
            .unwrap_or(0);
        let n = if up { n + 1 } else { n.saturating_sub(1) };
        self.counts.insert((t, kind.code()), n)?;
        Ok(())
    }

    /// Store a record whose stored version (if any) was last modified at `was`, and move its
    /// lastModified index entry with it.
    fn put(
        &mut self,
        t: &str,
        kind: Kind,
        id: u128,
        rec: &Record,
        was: Option<&str>,
    ) -> Result<(), redb::Error> {
        self.res
            .insert((t, kind.code(), id), encode(rec).as_slice())?;
        self.restamp(t, kind, id, was, Some(&rec.modified))
    }

    /// Remove a record last modified at `was`, and its lastModified index entry.
    fn remove_record(
        &mut self,
        t: &str,
        kind: Kind,
        id: u128,
        was: &str,
    ) -> Result<(), redb::Error> {
        self.res.remove((t, kind.code(), id))?;
        self.restamp(t, kind, id, Some(was), None)
    }

    /// Move a resource's lastModified index entry from `was` to `now` (either absent).
    fn restamp(
        &mut self,
        t: &str,
        kind: Kind,
        id: u128,
        was: Option<&str>,
        now: Option<&str>,
    ) -> Result<(), redb::Error> {
        if !stamps_indexed(kind) {
            return Ok(());
        }
        if let Some(stamp) = was.and_then(stamp_nanos) {
            self.modified.remove((t, kind.code(), stamp, id))?;
        }
        if let Some(stamp) = now.and_then(stamp_nanos) {
            self.modified.insert((t, kind.code(), stamp, id), ())?;
        }
        Ok(())
    }

    /// Kind of an existing resource in this tenant, if any.
    pub(super) fn kind_of(&self, t: &str, id: u128) -> Result<Option<Kind>, redb::Error> {
        for k in [Kind::User, Kind::Group] {
            if self.res.get((t, k.code(), id))?.is_some() {
                return Ok(Some(k));
            }
        }
        Ok(None)
    }

    /// A batch of a group's members from id `from` on, with their kind codes: a
    /// million-member group is walked a batch of memory at a time.
    fn member_batch(&self, t: &str, g: u128, from: u128) -> Result<Vec<(u128, u8)>, redb::Error> {
        let mut out = Vec::with_capacity(MEMBER_BATCH);
        for e in self
            .members
            .range((t, g, from)..=(t, g, u128::MAX))?
            .take(MEMBER_BATCH)
        {
            let (k, v) = e?;
            out.push((k.value().2, v.value()));
        }
        Ok(out)
    }

    /// Each member of a group in id order, a batch at a time; `visit` may change the
    /// membership of those it has been given.
    fn each_member(
        &mut self,
        t: &str,
        g: u128,
        mut visit: impl FnMut(&mut Self, u128) -> Result<(), redb::Error>,
    ) -> Result<(), redb::Error> {
        let mut from = 0u128;
        loop {
            let batch = self.member_batch(t, g, from)?;
            let Some(&(last, _)) = batch.last() else {
                return Ok(());
            };
            for (m, _) in batch {
                visit(self, m)?;
            }
            match last.checked_add(1) {
                Some(next) => from = next,
                None => return Ok(()),
            }
        }
    }

    /// Take member `m` out of group `g`; the kind it was there as, if it was.
    fn unlink(&mut self, t: &str, g: u128, m: u128) -> Result<Option<Kind>, redb::Error> {
        let had = self
            .members
            .remove((t, g, m))?
            .map(|c| Kind::of_member_code(c.value()));
        self.member_of.remove((t, m, g))?;
        self.displays.remove((t, g, m))?;
        Ok(had)
    }

    /// Remove every membership row that mentions `id`, as group or as member.
    fn unlink_all(&mut self, actor: &Actor, id: u128) -> Result<(), redb::Error> {
        let t = actor.tenant.as_str();
        self.each_member(t, id, |w, m| w.unlink(t, id, m).map(|_| ()))?;
        let mut groups = Vec::new();
        for e in self.member_of.range((t, id, 0u128)..=(t, id, u128::MAX))? {
            groups.push(e?.0.value().2);
        }
        for g in groups {
            let kind = self.unlink(t, g, id)?.unwrap_or(Kind::User);
            self.touch(t, Kind::Group, g)?;
            self.emit(
                actor,
                "group.member_removed",
                g,
                Some((id, kind)),
                Vec::new(),
            )?;
        }
        Ok(())
    }

    /// The resource's members or groups as this transaction sees them.
    fn refs(&self, t: &str, kind: Kind, id: u128) -> Result<Vec<Value>, redb::Error> {
        read_refs(
            &self.members,
            &self.member_of,
            &self.displays,
            t,
            kind,
            id,
            |g| {
                named_group(&self.res, t, g, |_| {
                    self.met_damage.set(true);
                    Ok(())
                })
            },
        )
    }

    /// A record just written, as the resource a write answers with, references included.
    fn with_refs(
        &self,
        t: &str,
        kind: Kind,
        id: u128,
        rec: Record,
    ) -> Result<Resource, redb::Error> {
        let refs = self.refs(t, kind, id)?;
        let mut r = rec.into_resource(kind, id);
        r.refs = Some(refs);
        Ok(r)
    }

    /// A membership change is a change of the group: bump its version and lastModified.
    fn touch(&mut self, t: &str, kind: Kind, id: u128) -> Result<(), redb::Error> {
        if let Some(mut rec) = self.load(t, kind, id)? {
            rec.version = self.next_version(rec.version);
            let stamp = after(&rec.modified);
            let was = std::mem::replace(&mut rec.modified, stamp);
            self.put(t, kind, id, &rec, Some(&was))?;
        }
        Ok(())
    }
}

/// A membership change resolved to concrete ids during the check phase.
enum Change {
    /// A member with its kind and the `display` the client gave it, if any.
    Add(u128, Kind, Option<String>),
    Remove(u128),
    Clear,
}

/// Most members one request's member filters other than `value eq` (`members[display co
/// "x"]`) may read. Each reads every member of the group, on the writer that every tenant's
/// writes wait for: without a bound, one PATCH of such filters on a large group held them
/// all for minutes. IdPs remove members by value, which reads no other member.
const MEMBER_FILTER_READS: usize = 100_000;

/// Check phase for member operations: every added member must exist in the tenant, and a
/// group cannot contain itself. Reads only.
///
/// Operations apply in order (RFC 7644 §3.5.2), so a member filter sees the membership the
/// earlier ones left: `seen` holds each member they touched (present with its kind code and
/// display, or gone), and `cleared` says the stored members are all gone. Kept only when a
/// filter comes later; removals by value need no view of the others.
fn plan_members(w: &W, t: &str, g: u128, ops: &[MemberOp]) -> R<Vec<Change>> {
    let mut out = Vec::new();
    let mut reads = 0usize;
    let last_filter = ops
        .iter()
        .rposition(|o| matches!(o, MemberOp::RemoveWhere(_)));
    let mut seen: BTreeMap<u128, Option<(u8, Option<String>)>> = BTreeMap::new();
    let mut cleared = false;
    for (k, op) in ops.iter().enumerate() {
        let before = out.len();
        match op {
            MemberOp::Clear => {
                out.push(Change::Clear);
                seen.clear();
                cleared = true;
            }
            MemberOp::Add(list) => {
                for m in list {
                    let raw = m["value"].as_str().unwrap_or_default();
                    let Some(id) = parse_id(raw) else {
                        return Ok(Err(no_member(raw)));
                    };
                    if id == g {
                        return Ok(Err(Error::OwnMember));
                    }
                    let Some(kind) = w.kind_of(t, id)? else {
                        return Ok(Err(no_member(raw)));
                    };
                    if let Some(ty) = m.get("type").and_then(Value::as_str)
                        && ty != kind.as_str()
                    {
                        return Ok(Err(Error::MemberKind {
                            value: raw.to_string(),
                            kind,
                            said: ty.to_string(),
                        }));
                    }
                    let display = m.get("display").and_then(Value::as_str);
                    out.push(Change::Add(id, kind, display.map(str::to_string)));
                }
            }
            // Removing an unknown or absent member is a no-op: IdPs re-send removals.
            MemberOp::Remove(ids) => {
                out.extend(ids.iter().filter_map(|s| parse_id(s)).map(Change::Remove))
            }
            MemberOp::RemoveWhere(f) => {
                let def = Kind::Group.schema().attr("members");
                let matched = |m: u128, code: u8, display: Option<String>| {
                    let el = member_json(m, code, display);
                    def.is_some_and(|d| filter::matches_element(f, d, &el))
                };
                // Members this request added or changed, as it left them: read as stored
                // members are, within the same bound.
                reads += seen.len();
                if reads > MEMBER_FILTER_READS {
                    return Ok(Err(too_many_member_reads()));
                }
                for (&m, now) in &seen {
                    if let Some((code, display)) = now
                        && matched(m, *code, display.clone())
                    {
                        out.push(Change::Remove(m));
                    }
                }
                let mut from = 0u128;
                loop {
                    if cleared {
                        break;
                    }
                    let batch = w.member_batch(t, g, from)?;
                    let Some(&(last, _)) = batch.last() else {
                        break;
                    };
                    reads += batch.len();
                    if reads > MEMBER_FILTER_READS {
                        return Ok(Err(too_many_member_reads()));
                    }
                    for (m, code) in batch {
                        if seen.contains_key(&m) {
                            continue;
                        }
                        let display = w.displays.get((t, g, m))?.map(|d| d.value().to_string());
                        if matched(m, code, display) {
                            out.push(Change::Remove(m));
                        }
                    }
                    match last.checked_add(1) {
                        Some(next) => from = next,
                        None => break,
                    }
                }
            }
        }
        if last_filter.is_some_and(|last| k < last) {
            for c in &out[before..] {
                match c {
                    Change::Clear => {}
                    Change::Remove(m) => {
                        seen.insert(*m, None);
                    }
                    // Added without a display, a member keeps the one it shows now.
                    Change::Add(m, kind, display) => {
                        let display = match (display, seen.get(m)) {
                            (Some(d), _) => Some(d.clone()),
                            (None, Some(now)) => now.as_ref().and_then(|n| n.1.clone()),
                            (None, None) if cleared => None,
                            (None, None) => {
                                w.displays.get((t, g, *m))?.map(|d| d.value().to_string())
                            }
                        };
                        seen.insert(*m, Some((kind.code(), display)));
                    }
                }
            }
        }
    }
    Ok(Ok(out))
}

fn too_many_member_reads() -> Error {
    Error::Protocol(ScimError::new(
        400,
        Some(ScimType::TooMany),
        format!(
            "member filters other than `value eq` read every member of the group, and this \
             request's would read more than {MEMBER_FILTER_READS}; remove members by value \
             (members[value eq \"ID\"]) instead"
        ),
    ))
}

fn no_member(raw: &str) -> Error {
    Error::NoSuchMember {
        value: raw.to_string(),
    }
}

/// What a request's member changes did: whether anything changed, and whether a member
/// that stayed shows another `display` (named `members.display` in the group's update
/// event).
#[derive(Debug, Default, Clone, Copy)]
struct MembersDone {
    changed: bool,
    relabeled: bool,
}

/// Write phase for member changes, with one event per member that really joined or left.
fn apply_members(
    w: &mut W,
    actor: &Actor,
    g: u128,
    changes: &[Change],
) -> Result<MembersDone, redb::Error> {
    if let Some(k) = changes.iter().rposition(|c| matches!(c, Change::Clear)) {
        return replace_members(w, actor, g, &changes[k + 1..]);
    }
    let t = actor.tenant.as_str();
    // Per member: in (and as what) at the end, and the display it shows then; and whether it
    // was in before with the display it had (`None`: it was not). Removing and re-adding a
    // member is no change for it, unless its display changed.
    let mut net: BTreeMap<u128, (bool, Kind, Option<String>)> = BTreeMap::new();
    let mut was: BTreeMap<u128, Option<Option<String>>> = BTreeMap::new();
    for c in changes {
        match c {
            Change::Clear => unreachable!("handled by replace_members"),
            Change::Add(m, kind, display) => {
                let existed = w.members.insert((t, g, *m), kind.code())?.is_some();
                if !existed {
                    w.member_of.insert((t, *m, g), ())?;
                }
                let shown = match (was.get(m), net.get(m)) {
                    // Seen earlier in the request: as it left it.
                    (Some(_), Some(n)) => n.2.clone(),
                    _ => {
                        let shown = match existed {
                            true => w.displays.get((t, g, *m))?.map(|d| d.value().to_string()),
                            false => None,
                        };
                        was.insert(*m, existed.then(|| shown.clone()));
                        shown
                    }
                };
                // A member added with a display (the user renamed at the IdP) takes it;
                // added without one, it keeps what it had.
                let shown = match display {
                    Some(d) => {
                        w.displays.insert((t, g, *m), d.as_str())?;
                        Some(d.clone())
                    }
                    None => shown,
                };
                net.insert(*m, (true, *kind, shown));
            }
            Change::Remove(m) => {
                let before = match was.contains_key(m) {
                    true => None,
                    false => w.displays.get((t, g, *m))?.map(|d| d.value().to_string()),
                };
                let had = w.unlink(t, g, *m)?;
                was.entry(*m).or_insert(had.map(|_| before));
                // Not a member, it leaves nothing to say (its kind is never read).
                let kind = had.or(net.get(m).map(|n| n.1)).unwrap_or(Kind::User);
                net.insert(*m, (false, kind, None));
            }
        }
    }
    let mut done = MembersDone::default();
    for (m, (now_in, kind, shown)) in net {
        match (was.remove(&m).flatten(), now_in) {
            (Some(before), true) => done.relabeled |= shown != before,
            (Some(_), false) | (None, true) => {
                done.changed = true;
                let ev = if now_in {
                    "group.member_added"
                } else {
                    "group.member_removed"
                };
                w.emit(actor, ev, g, Some((m, kind)), Vec::new())?;
            }
            (None, false) => {}
        }
    }
    done.changed |= done.relabeled;
    Ok(done)
}

/// Member changes whose last `Clear` leaves the group holding exactly what `rest` adds (and
/// does not remove again): a replace of the member list. The current members are walked a
/// batch at a time and only the request's members are held, so replacing or emptying a
/// million-member group costs no more memory than a small one.
fn replace_members(
    w: &mut W,
    actor: &Actor,
    g: u128,
    rest: &[Change],
) -> Result<MembersDone, redb::Error> {
    let t = actor.tenant.as_str();
    let mut after: BTreeMap<u128, (Kind, Option<&str>)> = BTreeMap::new();
    for c in rest {
        match c {
            // Added again without a display, a member keeps the one given earlier in
            // the request, as it would keep a stored one.
            Change::Add(m, kind, display) => {
                let e = after.entry(*m).or_insert((*kind, None));
                e.0 = *kind;
                if display.is_some() {
                    e.1 = display.as_deref();
                }
            }
            Change::Remove(m) => {
                after.remove(m);
            }
            Change::Clear => after.clear(),
        }
    }
    let mut stay = std::collections::BTreeSet::new();
    let mut changed = false;
    let mut relabeled = false;
    w.each_member(t, g, |w, m| {
        if let Some((_, display)) = after.get(&m) {
            stay.insert(m);
            // A replace gives the list as it is to be, displays included.
            let old = match display {
                Some(d) => w.displays.insert((t, g, m), *d)?,
                None => w.displays.remove((t, g, m))?,
            };
            relabeled |= old.map(|o| o.value().to_string()).as_deref() != *display;
            return Ok(());
        }
        let kind = w.unlink(t, g, m)?.unwrap_or(Kind::User);
        changed = true;
        w.emit(
            actor,
            "group.member_removed",
            g,
            Some((m, kind)),
            Vec::new(),
        )
    })?;
    for (m, (kind, display)) in after.into_iter().filter(|(m, _)| !stay.contains(m)) {
        w.members.insert((t, g, m), kind.code())?;
        if let Some(d) = display {
            w.displays.insert((t, g, m), d)?;
        }
        w.member_of.insert((t, m, g), ())?;
        changed = true;
        w.emit(actor, "group.member_added", g, Some((m, kind)), Vec::new())?;
    }
    Ok(MembersDone {
        changed: changed || relabeled,
        relabeled,
    })
}

/// What an import keeps of a resource from another host: its id, and its `meta` (created,
/// lastModified, version) when the export has them, so that creation dates survive a move
/// and an ETag never comes to mean another state.
#[derive(Debug, Clone, Default)]
pub struct Given {
    pub id: u128,
    pub created: Option<String>,
    pub modified: Option<String>,
    pub version: Option<u64>,
    /// A user the seat limit had put on the free plan there.
    pub on_free: bool,
}

impl Store {
    pub async fn create(&self, actor: Actor, rt: Rt, input: Input) -> Result<Resource, Error> {
        self.create_as(actor, rt, input, None).await
    }

    /// Create with a given id and meta (import from another host); 409 when the id is taken.
    pub async fn create_as(
        &self,
        actor: Actor,
        rt: Rt,
        input: Input,
        given: Option<Given>,
    ) -> Result<Resource, Error> {
        self.write(actor.tenant.clone(), move |w| {
            let kind = rt.kind;
            let t = actor.tenant.as_str();
            let k = keys(rt, &input.body);
            if let Err(e) = w.check_unique(t, rt, &k, None)? {
                return Ok(Err(e));
            }
            let id = match &given {
                Some(g) if w.kind_of(t, g.id)?.is_some() => {
                    return Ok(Err(Error::IdTaken { id: g.id }));
                }
                Some(g) => g.id,
                None => new_id(),
            };
            let changes = match &input.members {
                Some(list) => match plan_members(w, t, id, &[MemberOp::Add(list.clone())])? {
                    Ok(c) => c,
                    Err(e) => return Ok(Err(e)),
                },
                None => Vec::new(),
            };
            let active = kind == Kind::User && plan::is_active(&input.body);
            let mates = match kind {
                Kind::User => w.entry_mates(&actor, id, &[&input.body])?,
                _ => None,
            };
            let seat = match &given {
                // As the host the file came from placed it: an import takes no one off paid
                // and seats no one that host had waiting (a seat check in the file's order
                // would decide them all again by creation, not as seats came free there).
                Some(g) if active => Some(if g.on_free {
                    Seat::Overflow
                } else {
                    Seat::Paid
                }),
                Some(_) => None,
                None => match w.seat_check(&actor, None, &input.body, (false, active))? {
                    Ok(s) => s,
                    Err(e) => return Ok(Err(e)),
                },
            };
            let attrs = events::changed_attributes(&Body::new(), &input.body);
            let g = given.as_ref();
            let (created, modified) = imported_times(
                g.and_then(|g| g.created.as_deref()),
                g.and_then(|g| g.modified.as_deref()),
            );
            let rec = Record {
                body: input.body,
                created,
                modified,
                // As the file has it, not above a restore's floor: an import writes only
                // ids the tenant does not hold, and the version names the state the file
                // has, here as on the host it came from.
                version: g.and_then(|g| g.version).filter(|v| *v > 0).unwrap_or(1),
            };
            w.put(t, kind, id, &rec, None)?;
            w.index(t, rt, id, &Keys::default(), &k)?;
            w.bump_count(t, kind, id, true)?;
            let ev = if kind == Kind::User {
                "user.created"
            } else {
                "group.created"
            };
            w.emit(&actor, ev, id, None, attrs)?;
            if kind == Kind::User {
                // An import's seats are filled once it is done (`Store::fill_seats`), not
                // after each line, which would seat the users the file has waiting.
                let fill = given.is_none();
                w.plan_transition(&actor, id, None, Some(active), seat, fill)?;
            }
            apply_members(w, &actor, id, &changes)?;
            if let Some(mates) = mates {
                w.tell_mates(&actor, mates)?;
            }
            Ok(Ok(w.with_refs(t, kind, id, rec)?))
        })
        .await
    }

    pub async fn replace(
        &self,
        actor: Actor,
        rt: Rt,
        id: String,
        input: Input,
        cond: Conditions,
    ) -> Result<Resource, Error> {
        self.write(actor.tenant.clone(), move |w| {
            let kind = rt.kind;
            let t = actor.tenant.as_str();
            let (nid, old) = match w.existing(t, kind, &id, &cond)? {
                Ok(x) => x,
                Err(e) => return Ok(Err(e)),
            };
            // The resource the URL named, however its id was spelled in either place.
            if input
                .id
                .as_deref()
                .is_some_and(|given| parse_id(given) != Some(nid))
            {
                return Ok(Err(Error::IdChanged {
                    given: input.id.clone().unwrap_or_default(),
                }));
            }
            let ops = match &input.members {
                Some(list) => vec![MemberOp::Clear, MemberOp::Add(list.clone())],
                // A PUT of a group without `members` empties it (PUT replaces the resource).
                None if kind == Kind::Group => vec![MemberOp::Clear],
                None => Vec::new(),
            };
            let mut body = input.body;
            resource::keep_from_old(rt, &old.body, &mut body, &input.keep);
            if let Err(e) = resource::check_immutable(rt, &old.body, &mut body, true)
                .and_then(|()| resource::check_required_extensions(rt, &body, Some(&old.body)))
            {
                return Ok(Err(Error::Protocol(e)));
            }
            let rec = match w.commit_change(&actor, rt, nid, old, body, &ops)? {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            Ok(Ok(w.with_refs(t, kind, nid, rec)?))
        })
        .await
    }

    /// Apply PATCH operations. The returned resource carries refs only for users (a group's
    /// member list may be huge; callers read it separately when asked for).
    pub async fn patch(
        &self,
        actor: Actor,
        rt: Rt,
        id: String,
        ops: Vec<Operation>,
        cond: Conditions,
    ) -> Result<(Resource, Ignored), Error> {
        self.write(actor.tenant.clone(), move |w| {
            let kind = rt.kind;
            let t = actor.tenant.as_str();
            let (nid, old) = match w.existing(t, kind, &id, &cond)? {
                Ok(x) => x,
                Err(e) => return Ok(Err(e)),
            };
            let out = match patch::apply(rt, &id, &old.body, &ops) {
                Ok(o) => o,
                Err(e) => return Ok(Err(Error::Protocol(e))),
            };
            let rec = match w.commit_change(&actor, rt, nid, old, out.body, &out.member_ops)? {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            let mut r = rec.into_resource(kind, nid);
            if kind == Kind::User {
                r.refs = Some(w.refs(t, kind, nid)?);
            }
            Ok(Ok((r, out.ignored)))
        })
        .await
    }

    /// Take out of `tenant`'s feed every event `retention` no longer keeps; how many. Writes
    /// trim a few at a time and reads hide the rest, but a reload that raises the retention
    /// would serve again what readers were told (410) is gone: a reload that changes it
    /// trims to the old one first.
    pub async fn trim_events(
        &self,
        tenant: String,
        retention: events::Retention,
    ) -> Result<u64, Error> {
        self.write(tenant.clone(), move |w| {
            let t = tenant.as_str();
            let last = w.seqs.get(t)?.map(|g| g.value()).unwrap_or(0);
            Ok(Ok(events::trim_all(&mut w.events, t, last, retention)?))
        })
        .await
    }

    /// Restart a tenant's change feed past every number any database can have given it,
    /// with no event kept before: what an import does, as the events a reader holds (from
    /// the host the file came from, or of this tenant before the import) do not lead to what
    /// the tenant holds after it. Every reader gets 410 once and reads the directory again.
    /// The clock in microseconds is past any feed's numbers (no feed gives out a million
    /// a second), those another restart gave out from the clock included. Returns the new
    /// last number.
    pub async fn restart_feed(&self, tenant: String) -> Result<u64, Error> {
        self.write(tenant.clone(), move |w| {
            let t = tenant.as_str();
            let last = w.seqs.get(t)?.map(|g| g.value()).unwrap_or(0);
            let clock = u64::try_from(clock_micros()).unwrap_or(0);
            w.seqs.insert(t, last.max(clock))?;
            let next = events::skip_one(&mut w.seqs, t)?;
            w.events
                .retain_in((t, 0u64)..=(t, u64::MAX), |_, _| false)?;
            Ok(Ok(next))
        })
        .await
    }

    /// Give the seats open in a tenant to the users waiting on the free plan, earliest
    /// first, as a seat coming free does: after an import, which places each user as the
    /// file says, on a host whose plan may have more seats.
    pub async fn fill_seats(&self, actor: Actor) -> Result<(), Error> {
        self.write(actor.tenant.clone(), move |w| {
            w.fill_free_seats(&actor, false)?;
            Ok(Ok(()))
        })
        .await
    }

    /// Bring a tenant's plan in line with the settings it has now (the actor's), against
    /// those last applied, which the database keeps: at every start and reload, so that a
    /// file edited while scimd was stopped takes effect as a reload's edit does. The feed
    /// gets which settings changed (`plan` when the table came or went), the mode change
    /// they make by themselves (a new `test_threshold`), and seats they opened given to
    /// users waiting on the free plan (a plan table put back with more seats too). Without
    /// a record (a database made before it, a tenant not configured since), the plan is
    /// applied as one just added. Returns the settings changed and the modes before and
    /// after, when they differ.
    pub async fn plan_applied(&self, actor: Actor) -> Result<PlanApplied, Error> {
        // Read first: settings as last applied (every start, most reloads) need no commit.
        let now = plan::Applied::of(actor.plan.as_deref());
        let same = self.read_now(|r| {
            let meta = r.txn().open_table(META)?;
            Ok(Ok(
                plan::Applied::read(&meta, &actor.tenant)?.as_ref() == Some(&now)
            ))
        })?;
        if same {
            self.shared
                .plans_in_force
                .first(&actor.tenant, actor.plan.clone());
            return Ok(PlanApplied::default());
        }
        self.write(actor.tenant.clone(), move |w| {
            let t = actor.tenant.as_str();
            // From here on this batch's writes, and once it commits every write, follow
            // these rules, whatever rules their requests started with.
            w.plans_applied
                .insert(t.to_string(), Some(actor.plan.clone()));
            let was = {
                let mut meta = w.txn.open_table(META)?;
                let was = plan::Applied::read(&meta, t)?;
                if was.as_ref() != Some(&now) {
                    now.write(&mut meta, t)?;
                }
                was
            };
            let active = plan::active(&w.counts, t)?;
            let (was, changed) = now.over(was, active);
            if changed.is_empty() {
                return Ok(Ok(PlanApplied::default()));
            }
            let new = NewEvent {
                kind: "plan.settings_changed",
                resource_id: String::new(),
                member_id: None,
                member_type: None,
                attributes: changed.clone(),
                from_to: None,
            };
            events::append(&mut w.events, &mut w.seqs, &actor, new)?;
            let modes = match (was.mode(active), now.mode(active)) {
                (Some(m0), Some(m1)) if m0 != m1 => {
                    w.mode_change(&actor, m0, m1)?;
                    Some((m0, m1))
                }
                _ => None,
            };
            w.fill_free_seats(&actor, true)?;
            Ok(Ok(PlanApplied { changed, modes }))
        })
        .await
    }

    /// The plan settings `rules` would change if applied now (`plan_applied` without the
    /// write): what a start would apply of a file edited while scimd is stopped.
    pub fn plan_pending(
        &self,
        tenant: &str,
        rules: Option<&plan::PlanRules>,
    ) -> Result<Vec<String>, Error> {
        let now = plan::Applied::of(rules);
        self.read_now(|r| {
            let was = plan::Applied::read(&r.txn().open_table(META)?, tenant)?;
            let active = plan::active(&r.txn().open_table(COUNTS)?, tenant)?;
            Ok(Ok(now.over(was, active).1))
        })
    }

    pub async fn delete(
        &self,
        actor: Actor,
        rt: Rt,
        id: String,
        cond: Conditions,
    ) -> Result<(), Error> {
        self.write(actor.tenant.clone(), move |w| {
            let kind = rt.kind;
            let t = actor.tenant.as_str();
            let (nid, old) = match w.existing(t, kind, &id, &cond)? {
                Ok(x) => x,
                Err(e) => return Ok(Err(e)),
            };
            let mates = match kind {
                Kind::User => w.entry_mates(&actor, nid, &[&old.body])?,
                _ => None,
            };
            w.remove_record(t, kind, nid, &old.modified)?;
            w.index(t, rt, nid, &keys(rt, &old.body), &Keys::default())?;
            w.unindex_unique(t, kind, nid, &old.body, None)?;
            w.bump_count(t, kind, nid, false)?;
            w.unlink_all(&actor, nid)?;
            let ev = if kind == Kind::User {
                "user.deleted"
            } else {
                "group.deleted"
            };
            w.emit(&actor, ev, nid, None, Vec::new())?;
            // After the deletion's own event, as a create's or update's plan change follows
            // theirs: the feed tells the cause first.
            if kind == Kind::User {
                let was = Some(plan::is_active(&old.body));
                w.plan_transition(&actor, nid, was, None, None, true)?;
            }
            if let Some(mates) = mates {
                w.tell_mates(&actor, mates)?;
            }
            Ok(Ok(()))
        })
        .await
    }
}
