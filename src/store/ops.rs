//! Resource operations over the tables: create, replace, patch, delete, get, list, with
//! index maintenance and membership in both directions.

use std::collections::BTreeSet;

use redb::{
    MultimapTable, ReadTransaction, ReadableMultimapTable, ReadableTable, Table, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::events::{self, Actor, Event, NewEvent};
use super::plan::{self, Mode, Seat};
use super::ranks;
use super::scans::{Scan, ScanMemo};
use super::select;
use super::skim::{Skimmed, skim};
use super::tables::*;
use super::{Store, format_id, new_id, parse_id};
use crate::scim::error::{ScimError, ScimResult};
use crate::scim::filter::{self, CompValue, CompareOp, Filter};
use crate::scim::patch::{self, MemberOp, Operation};
use crate::scim::render::{Resource, Stored};
use crate::scim::resource::{self, Body, Ignored, Input};
use crate::scim::schema::{Kind, Rt};
pub use crate::scim::sort::{SortKey, SortSpec};

type R<T> = Result<ScimResult<T>, redb::Error>;

/// Members read at a time from a group's member list, when it is streamed or searched.
const MEMBER_BATCH: usize = 1024;

#[derive(Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) body: Body,
    created: String,
    pub(super) modified: String,
    version: u64,
}

impl Record {
    fn into_resource(self, kind: Kind, id: u128) -> Resource {
        Resource {
            kind,
            id: format_id(id),
            body: self.body,
            created: self.created,
            modified: self.modified,
            version: self.version,
            refs: None,
        }
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A time as the lastModified index holds it: Unix nanoseconds.
pub(super) fn stamp_nanos(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

/// The lastModified index key of a stored record.
pub(super) fn stored_stamp(bytes: &[u8]) -> Option<i64> {
    skim(bytes, &["meta"]).and_then(|s| stamp_nanos(&s.modified))
}

/// Whether the lastModified index holds this kind (see `MODIFIED_ID`).
pub(super) fn stamps_indexed(kind: Kind) -> bool {
    kind == Kind::User
}

/// Fill the lastModified index from the resource table (the layout 2 → 3 migration).
fn index_modified(
    res: &impl ReadableTable<(&'static str, u8, u128), &'static [u8]>,
    modified: &mut Table<'_, (&'static str, u8, i64, u128), ()>,
) -> Result<u64, redb::Error> {
    let mut n = 0;
    for e in res.iter()? {
        let (k, v) = e?;
        let (t, code, id) = k.value();
        if code != Kind::User.code() {
            continue;
        }
        if let Some(stamp) = stored_stamp(v.value()) {
            modified.insert((t, code, stamp, id), ())?;
            n += 1;
        }
    }
    Ok(n)
}

fn encode(r: &Record) -> Vec<u8> {
    serde_json::to_vec(r).unwrap_or_default()
}

pub(super) fn decode(bytes: &[u8]) -> Option<Record> {
    serde_json::from_slice(bytes).ok()
}

/// Create tables on first open and record the layout version; returns the version found.
pub(super) fn init_schema(db: &redb::Database) -> Result<u64, redb::Error> {
    let txn = db.begin_write()?;
    let found = {
        let mut meta = txn.open_table(META)?;
        let found = meta.get("schema_version")?.map(|v| v.value());
        if found.is_none() {
            meta.insert("schema_version", SCHEMA_VERSION)?;
        }
        txn.open_table(RESOURCES)?;
        txn.open_table(COUNTS)?;
        txn.open_table(USERNAME_USERID)?;
        txn.open_multimap_table(EXTERNALID_ID)?;
        txn.open_multimap_table(EMAIL_USERID)?;
        txn.open_multimap_table(DISPLAYNAME_ID)?;
        txn.open_table(GROUPID_MEMBERID)?;
        txn.open_table(MEMBERID_GROUPID)?;
        txn.open_table(EVENTS)?;
        txn.open_table(EVENT_SEQ)?;
        txn.open_table(OVERFLOW_USERID)?;
        txn.open_table(UNIQUE_ID)?;
        let mut ranks_table = txn.open_table(RANKS)?;
        let mut modified = txn.open_table(MODIFIED_ID)?;
        if let Some(v) = found
            && v < SCHEMA_VERSION
        {
            // Migrations run here, in this one transaction, one version step at a time:
            // a crash part-way leaves the old layout intact.
            tracing::info!(
                from = v,
                to = SCHEMA_VERSION,
                "migrating the database layout"
            );
            if v < 2 {
                let n = ranks::rebuild(&txn.open_table(RESOURCES)?, &mut ranks_table)?;
                tracing::info!(
                    counts = n,
                    "layout 2: counted resources for startIndex paging"
                );
            }
            if v < 3 {
                let n = index_modified(&txn.open_table(RESOURCES)?, &mut modified)?;
                tracing::info!(entries = n, "layout 3: indexed meta.lastModified");
            }
            meta.insert("schema_version", SCHEMA_VERSION)?;
        }
        found.unwrap_or(SCHEMA_VERSION)
    };
    txn.commit()?;
    Ok(found)
}

/// The index entries a resource body produces.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Keys {
    pub(super) username: Option<String>,
    pub(super) external_id: Option<String>,
    pub(super) emails: BTreeSet<String>,
    pub(super) display: Option<String>,
    /// ("urn:...:attr", value) of declared extension attributes with `uniqueness: server`.
    pub(super) unique: BTreeSet<(String, String)>,
}

pub(super) fn keys(rt: impl Into<Rt>, body: &Body) -> Keys {
    let rt: Rt = rt.into();
    let kind = rt.kind;
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let mut k = Keys {
        external_id: s("externalId"),
        display: s("displayName").map(|d| d.to_lowercase()),
        ..Keys::default()
    };
    for ext in rt.extensions() {
        let Some(inner) = body.get(ext.id).and_then(Value::as_object) else {
            continue;
        };
        for def in ext
            .attributes
            .iter()
            .filter(|d| d.uniqueness == crate::scim::schema::Uniqueness::Server)
        {
            let v = match inner.get(def.name) {
                Some(Value::String(s)) if def.case_exact => s.clone(),
                Some(Value::String(s)) => s.to_lowercase(),
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::Bool(b)) => b.to_string(),
                _ => continue,
            };
            k.unique.insert((format!("{}:{}", ext.id, def.name), v));
        }
    }
    if kind == Kind::User {
        k.username = s("userName").map(|u| u.to_lowercase());
        k.emails
            .extend(resource::email_values(body).map(str::to_lowercase));
    }
    k
}

/// The tables of one write transaction, opened once for its whole batch of jobs (opening
/// them all costs about what committing a small change does).
pub(super) struct W<'t> {
    res: Table<'t, (&'static str, u8, u128), &'static [u8]>,
    counts: Table<'t, (&'static str, u8), u64>,
    usernames: Table<'t, (&'static str, &'static str), u128>,
    ext_ids: MultimapTable<'t, (&'static str, u8, &'static str), u128>,
    emails: MultimapTable<'t, (&'static str, &'static str), u128>,
    names: MultimapTable<'t, (&'static str, u8, &'static str), u128>,
    members: Table<'t, (&'static str, u128, u128), u8>,
    member_of: Table<'t, (&'static str, u128, u128), ()>,
    events: events::EventTable<'t>,
    seqs: events::SeqTable<'t>,
    overflow: Table<'t, (&'static str, u128), ()>,
    unique: Table<'t, (&'static str, u8, &'static str, &'static str), u128>,
    ranks: Table<'t, ranks::RankKey, u64>,
    modified: Table<'t, (&'static str, u8, i64, u128), ()>,
    /// For tables only tests use.
    #[cfg(test)]
    pub(super) txn: &'t WriteTransaction,
}

impl<'t> W<'t> {
    pub(super) fn open(txn: &'t WriteTransaction) -> Result<W<'t>, redb::Error> {
        Ok(W {
            res: txn.open_table(RESOURCES)?,
            counts: txn.open_table(COUNTS)?,
            usernames: txn.open_table(USERNAME_USERID)?,
            ext_ids: txn.open_multimap_table(EXTERNALID_ID)?,
            emails: txn.open_multimap_table(EMAIL_USERID)?,
            names: txn.open_multimap_table(DISPLAYNAME_ID)?,
            members: txn.open_table(GROUPID_MEMBERID)?,
            member_of: txn.open_table(MEMBERID_GROUPID)?,
            events: txn.open_table(EVENTS)?,
            seqs: txn.open_table(EVENT_SEQ)?,
            overflow: txn.open_table(OVERFLOW_USERID)?,
            unique: txn.open_table(UNIQUE_ID)?,
            ranks: txn.open_table(RANKS)?,
            modified: txn.open_table(MODIFIED_ID)?,
            #[cfg(test)]
            txn,
        })
    }

    /// Check phase for a user write: the seat a user becoming active gets, or the refusal.
    fn seat_check(&mut self, actor: &Actor, was_active: bool, now_active: bool) -> R<Option<Seat>> {
        if was_active || !now_active {
            return Ok(Ok(None));
        }
        match plan::seat_for_new_active(actor.plan.as_deref(), &self.counts, &actor.tenant)? {
            Ok(seat) => Ok(Ok(Some(seat))),
            Err(e) => {
                // Refused writes change no resource, but the feed says a seat was refused.
                self.emit_plan(actor, "plan.seat_rejected", None, None)?;
                Ok(Err(e))
            }
        }
    }

    fn emit_plan(
        &mut self,
        actor: &Actor,
        kind: &'static str,
        id: Option<u128>,
        from_to: Option<(String, String)>,
    ) -> Result<(), redb::Error> {
        let new = NewEvent {
            kind,
            resource_id: id.map(format_id).unwrap_or_default(),
            member_id: None,
            attributes: Vec::new(),
            from_to,
        };
        events::append(&mut self.events, &mut self.seqs, actor, new)
    }

    /// Write phase: move the plan counters for a user going from `was` to `now` active
    /// (`None`: the user does not exist on that side), and record a mode switch.
    fn plan_transition(
        &mut self,
        actor: &Actor,
        id: u128,
        was: Option<bool>,
        now: Option<bool>,
        seat: Option<Seat>,
    ) -> Result<(), redb::Error> {
        let t = actor.tenant.as_str();
        let before = plan::seated(&self.counts, t)?;
        let was_active = was.unwrap_or(false);
        let now_active = now.unwrap_or(false);
        if was_active && !now_active {
            plan::add(&mut self.counts, t, plan::ACTIVE, -1)?;
            if self.overflow.remove((t, id))?.is_some() {
                plan::add(&mut self.counts, t, plan::OVERFLOW, -1)?;
            }
        }
        if !was_active && now_active {
            plan::add(&mut self.counts, t, plan::ACTIVE, 1)?;
            if seat == Some(Seat::Overflow) {
                self.overflow.insert((t, id), ())?;
                plan::add(&mut self.counts, t, plan::OVERFLOW, 1)?;
                self.emit_plan(actor, "plan.placed_on_free", Some(id), None)?;
            }
        }
        if let Some(rules) = actor.plan.clone() {
            let after = plan::seated(&self.counts, t)?;
            let (m0, m1) = (rules.mode(before), rules.mode(after));
            if m0 != m1 {
                let name = |m: Mode| format!("{m:?}").to_lowercase();
                self.emit_plan(actor, "plan.changed", None, Some((name(m0), name(m1))))?;
            }
        }
        Ok(())
    }

    fn emit(
        &mut self,
        actor: &Actor,
        kind: &'static str,
        id: u128,
        member: Option<u128>,
        attributes: Vec<String>,
    ) -> Result<(), redb::Error> {
        let new = NewEvent {
            kind,
            resource_id: format_id(id),
            member_id: member.map(format_id),
            attributes,
            from_to: None,
        };
        events::append(&mut self.events, &mut self.seqs, actor, new)
    }

    /// Write an updated body (if anything changed) and its events; returns the record now
    /// stored.
    fn update(
        &mut self,
        actor: &Actor,
        rt: Rt,
        id: u128,
        old: Record,
        mut body: Body,
        members_changed: bool,
    ) -> Result<Record, redb::Error> {
        let kind = rt.kind;
        let undone = match kind {
            Kind::User => resource::keep_from_old(rt, &old.body, &mut body, &actor.create_only),
            Kind::Group => Vec::new(),
        };
        if !undone.is_empty() {
            self.emit(actor, "user.create_only_ignored", id, None, undone)?;
        }
        if old.body == body && !members_changed {
            // Nothing changed (Okta re-sends the same rename with every membership push):
            // the version stays.
            return Ok(old);
        }
        let t = actor.tenant.as_str();
        let attrs = events::changed_attributes(&old.body, &body);
        if !attrs.is_empty() {
            let ev = events::update_kind(kind, &old.body, &body);
            self.emit(actor, ev, id, None, attrs)?;
        }
        let (old_keys, new_keys) = (keys(rt, &old.body), keys(rt, &body));
        let rec = Record {
            body,
            created: old.created,
            modified: now(),
            version: old.version + 1,
        };
        self.put(t, kind, id, &rec)?;
        self.index(t, kind, id, &old_keys, &new_keys)?;
        Ok(rec)
    }

    /// The rest of a PUT or PATCH once the new body is known: check the member changes and
    /// the plan's seats (reads only), then write members, body, indexes, events and plan
    /// counters.
    fn commit_change(
        &mut self,
        actor: &Actor,
        rt: Rt,
        id: u128,
        old: Record,
        body: Body,
        member_ops: &[MemberOp],
    ) -> R<Record> {
        let t = actor.tenant.as_str();
        let changes = match plan_members(self, t, id, member_ops)? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let activity = (plan::is_active(&old.body), plan::is_active(&body));
        let is_user = rt.kind == Kind::User;
        let seat = match self.seat_check(actor, activity.0, activity.1 && is_user)? {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let members_changed = apply_members(self, actor, id, &changes)?;
        let rec = self.update(actor, rt, id, old, body, members_changed)?;
        if is_user {
            self.plan_transition(actor, id, Some(activity.0), Some(activity.1), seat)?;
        }
        Ok(Ok(rec))
    }

    /// The resource a write targets: it must exist and pass `If-Match`.
    fn existing(&self, t: &str, kind: Kind, id: &str, if_match: Option<&str>) -> R<(u128, Record)> {
        let Some(nid) = parse_id(id) else {
            return Ok(Err(not_found(kind, id)));
        };
        let Some(old) = self.load(t, kind, nid)? else {
            return Ok(Err(not_found(kind, id)));
        };
        if let Err(e) = precondition(if_match, old.version) {
            return Ok(Err(e));
        }
        Ok(Ok((nid, old)))
    }

    fn load(&self, t: &str, kind: Kind, id: u128) -> Result<Option<Record>, redb::Error> {
        Ok(self
            .res
            .get((t, kind.code(), id))?
            .and_then(|g| decode(g.value())))
    }

    /// 409 when another resource holds this userName or group displayName. The detail names
    /// the holder's id so an IdP retrying a timed-out create can link to it.
    fn check_unique(&self, t: &str, kind: Kind, k: &Keys, me: Option<u128>) -> R<()> {
        if let Some(u) = &k.username
            && let Some(other) = self.usernames.get((t, u.as_str()))?.map(|g| g.value())
            && Some(other) != me
        {
            return Ok(Err(ScimError::uniqueness(format!(
                "userName is already taken (case-insensitively) by the user with id {}",
                format_id(other)
            ))));
        }
        for (attr, v) in &k.unique {
            if let Some(other) = self
                .unique
                .get((t, kind.code(), attr.as_str(), v.as_str()))?
                .map(|g| g.value())
                && Some(other) != me
            {
                return Ok(Err(ScimError::uniqueness(format!(
                    "{attr} is already taken by the {} with id {}",
                    kind.as_str(),
                    format_id(other)
                ))));
            }
        }
        if kind == Kind::Group
            && let Some(d) = &k.display
        {
            for other in self.names.get((t, kind.code(), d.as_str()))? {
                let other = other?.value();
                if Some(other) != me {
                    return Ok(Err(ScimError::uniqueness(format!(
                        "displayName is already taken (case-insensitively) by the group with id {}",
                        format_id(other)
                    ))));
                }
            }
        }
        Ok(Ok(()))
    }

    fn index(
        &mut self,
        t: &str,
        kind: Kind,
        id: u128,
        old: &Keys,
        new: &Keys,
    ) -> Result<(), redb::Error> {
        let c = kind.code();
        for (a, v) in old.unique.difference(&new.unique) {
            self.unique.remove((t, c, a.as_str(), v.as_str()))?;
        }
        for (a, v) in new.unique.difference(&old.unique) {
            self.unique.insert((t, c, a.as_str(), v.as_str()), id)?;
        }
        if old.username != new.username {
            if let Some(u) = &old.username {
                self.usernames.remove((t, u.as_str()))?;
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

    /// Store a record and keep its lastModified index entry in step.
    fn put(&mut self, t: &str, kind: Kind, id: u128, rec: &Record) -> Result<(), redb::Error> {
        let old = self
            .res
            .insert((t, kind.code(), id), encode(rec).as_slice())?
            .filter(|_| stamps_indexed(kind))
            .and_then(|g| stored_stamp(g.value()));
        if let Some(stamp) = old {
            self.modified.remove((t, kind.code(), stamp, id))?;
        }
        if let Some(stamp) = stamp_nanos(&rec.modified).filter(|_| stamps_indexed(kind)) {
            self.modified.insert((t, kind.code(), stamp, id), ())?;
        }
        Ok(())
    }

    fn remove_record(&mut self, t: &str, kind: Kind, id: u128) -> Result<(), redb::Error> {
        let old = self
            .res
            .remove((t, kind.code(), id))?
            .filter(|_| stamps_indexed(kind))
            .and_then(|g| stored_stamp(g.value()));
        if let Some(stamp) = old {
            self.modified.remove((t, kind.code(), stamp, id))?;
        }
        Ok(())
    }

    /// Kind of an existing resource in this tenant, if any.
    fn kind_of(&self, t: &str, id: u128) -> Result<Option<Kind>, redb::Error> {
        for k in [Kind::User, Kind::Group] {
            if self.res.get((t, k.code(), id))?.is_some() {
                return Ok(Some(k));
            }
        }
        Ok(None)
    }

    fn member_ids(&self, t: &str, g: u128) -> Result<Vec<(u128, u8)>, redb::Error> {
        let mut out = Vec::new();
        for e in self.members.range((t, g, 0u128)..=(t, g, u128::MAX))? {
            let (k, v) = e?;
            out.push((k.value().2, v.value()));
        }
        Ok(out)
    }

    fn unlink(&mut self, t: &str, g: u128, m: u128) -> Result<bool, redb::Error> {
        let had = self.members.remove((t, g, m))?.is_some();
        self.member_of.remove((t, m, g))?;
        Ok(had)
    }

    /// Remove every membership row that mentions `id`, as group or as member.
    fn unlink_all(&mut self, actor: &Actor, id: u128) -> Result<(), redb::Error> {
        let t = actor.tenant.as_str();
        for (m, _) in self.member_ids(t, id)? {
            self.unlink(t, id, m)?;
        }
        let mut groups = Vec::new();
        for e in self.member_of.range((t, id, 0u128)..=(t, id, u128::MAX))? {
            groups.push(e?.0.value().2);
        }
        for g in groups {
            self.unlink(t, g, id)?;
            self.touch(t, Kind::Group, g)?;
            self.emit(actor, "group.member_removed", g, Some(id), Vec::new())?;
        }
        Ok(())
    }

    /// A membership change is a change of the group: bump its version and lastModified.
    fn touch(&mut self, t: &str, kind: Kind, id: u128) -> Result<(), redb::Error> {
        if let Some(mut rec) = self.load(t, kind, id)? {
            rec.version += 1;
            rec.modified = now();
            self.put(t, kind, id, &rec)?;
        }
        Ok(())
    }
}

/// A membership change resolved to concrete ids during the check phase.
enum Change {
    Add(u128, Kind),
    Remove(u128),
    Clear,
}

/// Check phase for member operations: every added member must exist in the tenant, and a
/// group cannot contain itself. Reads only.
fn plan_members(w: &W, t: &str, g: u128, ops: &[MemberOp]) -> R<Vec<Change>> {
    let mut out = Vec::new();
    for op in ops {
        match op {
            MemberOp::Clear => out.push(Change::Clear),
            MemberOp::Add(list) => {
                for m in list {
                    let raw = m["value"].as_str().unwrap_or_default();
                    let Some(id) = parse_id(raw) else {
                        return Ok(Err(no_member(raw)));
                    };
                    if id == g {
                        return Ok(Err(ScimError::invalid_value(
                            "a group cannot be a member of itself",
                        )));
                    }
                    let Some(kind) = w.kind_of(t, id)? else {
                        return Ok(Err(no_member(raw)));
                    };
                    if let Some(ty) = m.get("type").and_then(Value::as_str)
                        && ty != kind.as_str()
                    {
                        return Ok(Err(ScimError::invalid_value(format!(
                            "member {raw} is a {}, not a {ty}",
                            kind.as_str()
                        ))));
                    }
                    out.push(Change::Add(id, kind));
                }
            }
            // Removing an unknown or absent member is a no-op: IdPs re-send removals.
            MemberOp::Remove(ids) => {
                out.extend(ids.iter().filter_map(|s| parse_id(s)).map(Change::Remove))
            }
            MemberOp::RemoveWhere(f) => {
                let def = Kind::Group.schema().attr("members");
                for (m, code) in w.member_ids(t, g)? {
                    let el = member_json(m, code);
                    if def.is_some_and(|d| filter::matches_element(f, d, &el)) {
                        out.push(Change::Remove(m));
                    }
                }
            }
        }
    }
    Ok(Ok(out))
}

fn no_member(raw: &str) -> ScimError {
    ScimError::invalid_value(format!(
        "member \"{raw}\" is not a User or Group of this tenant; provision it first"
    ))
}

fn member_json(id: u128, code: u8) -> Value {
    let ty = if code == Kind::Group.code() {
        "Group"
    } else {
        "User"
    };
    serde_json::json!({"value": format_id(id), "type": ty})
}

/// Write phase for member changes, with one event per member that really joined or left;
/// returns whether anything changed.
fn apply_members(
    w: &mut W,
    actor: &Actor,
    g: u128,
    changes: &[Change],
) -> Result<bool, redb::Error> {
    let t = actor.tenant.as_str();
    // Net effect per member: a Clear followed by re-adding a member is no change for it.
    let mut net: std::collections::BTreeMap<u128, bool> = std::collections::BTreeMap::new();
    let mut was: std::collections::BTreeMap<u128, bool> = std::collections::BTreeMap::new();
    for c in changes {
        match c {
            Change::Clear => {
                for (m, _) in w.member_ids(t, g)? {
                    was.entry(m).or_insert(true);
                    w.unlink(t, g, m)?;
                    net.insert(m, false);
                }
            }
            Change::Add(m, kind) => {
                let existed = w.members.insert((t, g, *m), kind.code())?.is_some();
                was.entry(*m).or_insert(existed);
                if !existed {
                    w.member_of.insert((t, *m, g), ())?;
                }
                net.insert(*m, true);
            }
            Change::Remove(m) => {
                let existed = w.unlink(t, g, *m)?;
                was.entry(*m).or_insert(existed);
                net.insert(*m, false);
            }
        }
    }
    let mut changed = false;
    for (m, now_in) in net {
        if was.get(&m).copied().unwrap_or(false) != now_in {
            changed = true;
            let ev = if now_in {
                "group.member_added"
            } else {
                "group.member_removed"
            };
            w.emit(actor, ev, g, Some(m), Vec::new())?;
        }
    }
    Ok(changed)
}

/// The computed reference list: a group's members, or a user's groups.
fn read_refs<M, O, N>(
    res: &N,
    members: &M,
    member_of: &O,
    t: &str,
    kind: Kind,
    id: u128,
) -> Result<Vec<Value>, redb::Error>
where
    M: ReadableTable<(&'static str, u128, u128), u8>,
    O: ReadableTable<(&'static str, u128, u128), ()>,
    N: ReadableTable<(&'static str, u8, u128), &'static [u8]>,
{
    let mut out = Vec::new();
    match kind {
        Kind::Group => {
            for e in members.range((t, id, 0u128)..=(t, id, u128::MAX))? {
                let (k, v) = e?;
                out.push(member_json(k.value().2, v.value()));
            }
        }
        Kind::User => {
            for e in member_of.range((t, id, 0u128)..=(t, id, u128::MAX))? {
                let g = e?.0.value().2;
                let mut entry = Map::new();
                entry.insert("value".into(), Value::String(format_id(g)));
                if let Some(rec) = res
                    .get((t, Kind::Group.code(), g))?
                    .and_then(|r| decode(r.value()))
                    && let Some(d) = rec.body.get("displayName")
                {
                    entry.insert("display".into(), d.clone());
                }
                entry.insert("type".into(), Value::String("direct".into()));
                out.push(Value::Object(entry));
            }
        }
    }
    Ok(out)
}

fn not_found(kind: Kind, id: &str) -> ScimError {
    ScimError::not_found(format!(
        "no {} with id \"{id}\" in this tenant",
        kind.as_str()
    ))
}

/// `If-Match`: `*` or any listed ETag equal to the current one passes.
fn precondition(if_match: Option<&str>, version: u64) -> ScimResult<()> {
    let Some(h) = if_match else { return Ok(()) };
    let current = format!("\"{version}\"");
    let ok = h
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == current);
    if ok {
        Ok(())
    } else {
        Err(ScimError::new(
            412,
            None,
            format!("the resource has changed: its current version is W/{current}"),
        ))
    }
}

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
}

/// A place in a sorted list: the sort key of a resource (`None` when it has no value, which
/// sorts last) and its id, which orders equal keys. A walk resumes after it, so resources
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
}

/// A page of resources as stored text (see `Stored`).
pub struct StoredPage {
    pub total: u64,
    pub next: Option<u128>,
    pub items: Vec<Stored>,
}

/// Most ids a lastModified range gives a plan; past that, a scan (memory stays bounded; a
/// lone comparison never gets here, `index_range` pages it).
const PLANNED_RANGE_MAX: usize = 100_000;

/// Ids an index can produce for a filter, or `None` when only a scan can answer.
fn plan<RT>(rt: &RT, t: &str, kind: Kind, f: &Filter) -> Result<Option<BTreeSet<u128>>, redb::Error>
where
    RT: IndexReader,
{
    if let Some((lo, hi)) = modified_range(kind, f) {
        return rt.modified_in(t, kind, (lo, hi), PLANNED_RANGE_MAX);
    }
    Ok(match f {
        Filter::And(a, b) => {
            // The side a point lookup answers goes first: it yields the fewest ids.
            let (x, y) = if !is_point(kind, a) && is_point(kind, b) {
                (b, a)
            } else {
                (a, b)
            };
            match plan(rt, t, kind, x)? {
                Some(ids) => Some(ids),
                None => plan(rt, t, kind, y)?,
            }
        }
        Filter::Or(a, b) => match (plan(rt, t, kind, a)?, plan(rt, t, kind, b)?) {
            (Some(mut x), Some(y)) => {
                x.extend(y);
                Some(x)
            }
            _ => None,
        },
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::Str(v),
        } if path.urn.is_none() => match (kind, path.name.as_str(), path.sub.as_deref()) {
            (_, "id", None) => Some(parse_id(v).into_iter().collect()),
            (Kind::User, "userName", None) => {
                Some(rt.username(t, &v.to_lowercase())?.into_iter().collect())
            }
            (_, "externalId", None) => Some(rt.external_id(t, kind, v)?),
            (_, "displayName", None) => Some(rt.display(t, kind, &v.to_lowercase())?),
            (Kind::User, "emails", Some("value") | None) => Some(rt.email(t, &v.to_lowercase())?),
            (Kind::Group, "members", Some("value") | None) => Some(rt.groups_of(t, v)?),
            (Kind::User, "groups", Some("value") | None) => Some(rt.users_in(t, v)?),
            _ => None,
        },
        // The index holds lower-cased userNames, the same folding `sw` compares with, so the
        // keys that start with the lower-cased prefix are exactly the matches.
        Filter::Compare {
            path,
            op: CompareOp::Sw,
            value: CompValue::Str(v),
        } if path.urn.is_none()
            && kind == Kind::User
            && path.name == "userName"
            && path.sub.is_none() =>
        {
            Some(rt.username_prefix(t, &v.to_lowercase())?)
        }
        Filter::ValuePath { path, filter } if path.urn.is_none() => {
            match (kind, path.name.as_str(), element_value_eq(filter)) {
                (Kind::User, "emails", Some(v)) => Some(rt.email(t, &v.to_lowercase())?),
                (Kind::Group, "members", Some(v)) => Some(rt.groups_of(t, v)?),
                (Kind::User, "groups", Some(v)) => Some(rt.users_in(t, v)?),
                _ => None,
            }
        }
        _ => None,
    })
}

/// A match's place in a sorted list. Missing values sort last in either order; ties keep
/// creation order (ids are time-ordered).
#[derive(Clone)]
struct Ranked {
    key: Option<SortKey>,
    id: u128,
    descending: bool,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        let ord = match (&self.key, &other.key) {
            (Some(x), Some(y)) => {
                let o = x.partial_cmp(y).unwrap_or(Ordering::Equal);
                if self.descending { o.reverse() } else { o }
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
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
const INLINE_PAGE: u64 = 200;

/// A filter an index answers with a handful of ids (an `eq` on a unique or near-unique
/// attribute, or a conjunction holding one): cheap enough to read without leaving the
/// runtime thread. `sw` and membership can match millions and are not point reads.
fn is_point(kind: Kind, f: &Filter) -> bool {
    match f {
        Filter::And(a, b) => is_point(kind, a) || is_point(kind, b),
        _ => indexed_eq(kind, f).is_some(),
    }
}

/// A filter whose index lookup yields exactly its matches, so the records it names need no
/// second evaluation.
fn index_exact(kind: Kind, f: &Filter) -> bool {
    match f {
        // The userName index holds lower-cased names, and `sw` on a caseExact=false attribute
        // compares lower-cased values: the prefix range is exactly the matches.
        Filter::Compare {
            path,
            op: CompareOp::Sw,
            value: CompValue::Str(_),
        } => {
            kind == Kind::User
                && path.urn.is_none()
                && path.name == "userName"
                && path.sub.is_none()
        }
        f if modified_range(kind, f).is_some() => true,
        _ => indexed_eq(kind, f) == Some(true),
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
    match f {
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::Str(v),
        } if path.name == "value" => Some(v),
        Filter::And(a, b) => element_value_eq(a).or_else(|| element_value_eq(b)),
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
struct Evaluation<'f> {
    f: &'f Filter,
    rt: Rt,
    id: bool,
    meta: bool,
    /// Groups: the ids asked about (and whether "any member" is asked), when the filter's
    /// questions about members are only those (`member_probes`).
    probes: Option<(Vec<u128>, bool)>,
    /// Groups: otherwise, the filter's conditions on members, decided batch by batch.
    member_conditions: Vec<&'f Filter>,
    /// Users: the user's groups are read.
    groups: bool,
}

impl<'f> Evaluation<'f> {
    fn new(rt: Rt, f: &'f Filter) -> Evaluation<'f> {
        let group = rt.kind == Kind::Group;
        let mut e = Evaluation {
            f,
            rt,
            id: mentions(f, "id"),
            meta: mentions(f, "meta"),
            probes: None,
            member_conditions: Vec::new(),
            groups: rt.kind == Kind::User && mentions(f, "groups"),
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
fn filter_keys<'f>(f: &'f Filter, out: &mut Vec<&'f str>) {
    for (_, path) in filter::conditions(f) {
        out.push(path.urn.as_deref().unwrap_or(&path.name));
    }
}

/// Whether a resolved filter has a condition on the core attribute `name`.
fn mentions(f: &Filter, name: &str) -> bool {
    !filter::conditions_on(f, name).is_empty()
}

/// Index look-ups shared by the read path.
trait IndexReader {
    fn username(&self, t: &str, u: &str) -> Result<Option<u128>, redb::Error>;
    fn username_prefix(&self, t: &str, prefix: &str) -> Result<BTreeSet<u128>, redb::Error>;
    fn external_id(&self, t: &str, kind: Kind, x: &str) -> Result<BTreeSet<u128>, redb::Error>;
    fn display(&self, t: &str, kind: Kind, d: &str) -> Result<BTreeSet<u128>, redb::Error>;
    fn email(&self, t: &str, e: &str) -> Result<BTreeSet<u128>, redb::Error>;
    fn groups_of(&self, t: &str, member: &str) -> Result<BTreeSet<u128>, redb::Error>;
    fn users_in(&self, t: &str, group: &str) -> Result<BTreeSet<u128>, redb::Error>;
    /// Ids whose lastModified is in the range, or `None` when there are more than `max`.
    fn modified_in(
        &self,
        t: &str,
        kind: Kind,
        range: (i64, i64),
        max: usize,
    ) -> Result<Option<BTreeSet<u128>>, redb::Error>;
}

type ResTable = redb::ReadOnlyTable<(&'static str, u8, u128), &'static [u8]>;

/// The read side of one snapshot. Tables open on first use: a GET by id needs one or two of
/// them, and opening all nine costs more than the lookup itself. The store shares one
/// snapshot among all reads until the next commit, so each table opens once per commit
/// rather than once per request.
pub(super) struct ReadSide {
    txn: ReadTransaction,
    res: std::sync::OnceLock<ResTable>,
    counts: std::sync::OnceLock<redb::ReadOnlyTable<(&'static str, u8), u64>>,
    usernames: std::sync::OnceLock<redb::ReadOnlyTable<(&'static str, &'static str), u128>>,
    ext_ids:
        std::sync::OnceLock<redb::ReadOnlyMultimapTable<(&'static str, u8, &'static str), u128>>,
    emails: std::sync::OnceLock<redb::ReadOnlyMultimapTable<(&'static str, &'static str), u128>>,
    names: std::sync::OnceLock<redb::ReadOnlyMultimapTable<(&'static str, u8, &'static str), u128>>,
    members: std::sync::OnceLock<redb::ReadOnlyTable<(&'static str, u128, u128), u8>>,
    member_of: std::sync::OnceLock<redb::ReadOnlyTable<(&'static str, u128, u128), ()>>,
    overflow: std::sync::OnceLock<redb::ReadOnlyTable<(&'static str, u128), ()>>,
    modified: std::sync::OnceLock<ModifiedTable>,
    scans: ScanMemo,
}

type ModifiedTable = redb::ReadOnlyTable<(&'static str, u8, i64, u128), ()>;

fn collect_multi<I>(it: I) -> Result<BTreeSet<u128>, redb::Error>
where
    I: Iterator<Item = Result<redb::AccessGuard<'static, u128>, redb::StorageError>>,
{
    let mut out = BTreeSet::new();
    for v in it {
        out.insert(v?.value());
    }
    Ok(out)
}

impl IndexReader for ReadSide {
    fn modified_in(
        &self,
        t: &str,
        kind: Kind,
        (lo, hi): (i64, i64),
        max: usize,
    ) -> Result<Option<BTreeSet<u128>>, redb::Error> {
        let mut out = BTreeSet::new();
        let range = (t, kind.code(), lo, 0u128)..=(t, kind.code(), hi, u128::MAX);
        for e in self.modified()?.range(range)? {
            if out.len() == max {
                return Ok(None);
            }
            out.insert(e?.0.value().3);
        }
        Ok(Some(out))
    }
    fn username(&self, t: &str, u: &str) -> Result<Option<u128>, redb::Error> {
        Ok(self.usernames()?.get((t, u))?.map(|g| g.value()))
    }
    fn username_prefix(&self, t: &str, prefix: &str) -> Result<BTreeSet<u128>, redb::Error> {
        let mut out = BTreeSet::new();
        for e in self.usernames()?.range((t, prefix)..)? {
            let (k, v) = e?;
            let (kt, name) = k.value();
            if kt != t || !name.starts_with(prefix) {
                break;
            }
            out.insert(v.value());
        }
        Ok(out)
    }
    fn external_id(&self, t: &str, kind: Kind, x: &str) -> Result<BTreeSet<u128>, redb::Error> {
        collect_multi(self.ext_ids()?.get((t, kind.code(), x))?)
    }
    fn display(&self, t: &str, kind: Kind, d: &str) -> Result<BTreeSet<u128>, redb::Error> {
        collect_multi(self.names()?.get((t, kind.code(), d))?)
    }
    fn email(&self, t: &str, e: &str) -> Result<BTreeSet<u128>, redb::Error> {
        collect_multi(self.emails()?.get((t, e))?)
    }
    fn groups_of(&self, t: &str, member: &str) -> Result<BTreeSet<u128>, redb::Error> {
        let Some(m) = parse_id(member) else {
            return Ok(BTreeSet::new());
        };
        let mut out = BTreeSet::new();
        for e in self.member_of()?.range((t, m, 0u128)..=(t, m, u128::MAX))? {
            out.insert(e?.0.value().2);
        }
        Ok(out)
    }

    fn users_in(&self, t: &str, group: &str) -> Result<BTreeSet<u128>, redb::Error> {
        let mut out = BTreeSet::new();
        if let Some(g) = parse_id(group) {
            self.direct_users(t, g, |id| {
                out.insert(id);
            })?;
        }
        Ok(out)
    }
}

impl ReadSide {
    pub(super) fn new(txn: ReadTransaction) -> ReadSide {
        ReadSide {
            txn,
            res: std::sync::OnceLock::new(),
            counts: std::sync::OnceLock::new(),
            usernames: std::sync::OnceLock::new(),
            ext_ids: std::sync::OnceLock::new(),
            emails: std::sync::OnceLock::new(),
            names: std::sync::OnceLock::new(),
            members: std::sync::OnceLock::new(),
            member_of: std::sync::OnceLock::new(),
            overflow: std::sync::OnceLock::new(),
            modified: std::sync::OnceLock::new(),
            scans: ScanMemo::default(),
        }
    }

    fn modified(&self) -> Result<&ModifiedTable, redb::Error> {
        if let Some(t) = self.modified.get() {
            return Ok(t);
        }
        let t = self.txn.open_table(MODIFIED_ID)?;
        Ok(self.modified.get_or_init(|| t))
    }

    /// Each id in an index range, in index order.
    fn each_in(
        &self,
        t: &str,
        kind: Kind,
        range: &IndexRange,
        visit: &mut dyn FnMut(u128),
    ) -> Result<(), redb::Error> {
        match range {
            IndexRange::NamePrefix(prefix) => {
                for e in self.usernames()?.range((t, prefix.as_str())..)? {
                    let (k, v) = e?;
                    let (kt, name) = k.value();
                    if kt != t || !name.starts_with(prefix.as_str()) {
                        break;
                    }
                    visit(v.value());
                }
            }
            IndexRange::Modified(lo, hi) => {
                let range = (t, kind.code(), *lo, 0u128)..=(t, kind.code(), *hi, u128::MAX);
                for e in self.modified()?.range(range)? {
                    visit(e?.0.value().3);
                }
            }
        }
        Ok(())
    }

    pub(super) fn txn(&self) -> &ReadTransaction {
        &self.txn
    }

    fn res(&self) -> Result<&ResTable, redb::Error> {
        if let Some(t) = self.res.get() {
            return Ok(t);
        }
        let t = self.txn.open_table(RESOURCES)?;
        Ok(self.res.get_or_init(|| t))
    }

    fn counts(&self) -> Result<&redb::ReadOnlyTable<(&'static str, u8), u64>, redb::Error> {
        if let Some(t) = self.counts.get() {
            return Ok(t);
        }
        let t = self.txn.open_table(COUNTS)?;
        Ok(self.counts.get_or_init(|| t))
    }

    fn usernames(
        &self,
    ) -> Result<&redb::ReadOnlyTable<(&'static str, &'static str), u128>, redb::Error> {
        if let Some(t) = self.usernames.get() {
            return Ok(t);
        }
        let t = self.txn.open_table(USERNAME_USERID)?;
        Ok(self.usernames.get_or_init(|| t))
    }

    fn ext_ids(
        &self,
    ) -> Result<&redb::ReadOnlyMultimapTable<(&'static str, u8, &'static str), u128>, redb::Error>
    {
        if let Some(t) = self.ext_ids.get() {
            return Ok(t);
        }
        let t = self.txn.open_multimap_table(EXTERNALID_ID)?;
        Ok(self.ext_ids.get_or_init(|| t))
    }

    fn emails(
        &self,
    ) -> Result<&redb::ReadOnlyMultimapTable<(&'static str, &'static str), u128>, redb::Error> {
        if let Some(t) = self.emails.get() {
            return Ok(t);
        }
        let t = self.txn.open_multimap_table(EMAIL_USERID)?;
        Ok(self.emails.get_or_init(|| t))
    }

    fn names(
        &self,
    ) -> Result<&redb::ReadOnlyMultimapTable<(&'static str, u8, &'static str), u128>, redb::Error>
    {
        if let Some(t) = self.names.get() {
            return Ok(t);
        }
        let t = self.txn.open_multimap_table(DISPLAYNAME_ID)?;
        Ok(self.names.get_or_init(|| t))
    }

    fn members(&self) -> Result<&redb::ReadOnlyTable<(&'static str, u128, u128), u8>, redb::Error> {
        if let Some(t) = self.members.get() {
            return Ok(t);
        }
        let t = self.txn.open_table(GROUPID_MEMBERID)?;
        Ok(self.members.get_or_init(|| t))
    }

    fn member_of(
        &self,
    ) -> Result<&redb::ReadOnlyTable<(&'static str, u128, u128), ()>, redb::Error> {
        if let Some(t) = self.member_of.get() {
            return Ok(t);
        }
        let t = self.txn.open_table(MEMBERID_GROUPID)?;
        Ok(self.member_of.get_or_init(|| t))
    }

    fn overflow(&self) -> Result<&redb::ReadOnlyTable<(&'static str, u128), ()>, redb::Error> {
        if let Some(t) = self.overflow.get() {
            return Ok(t);
        }
        let t = self.txn.open_table(OVERFLOW_USERID)?;
        Ok(self.overflow.get_or_init(|| t))
    }

    fn refs(&self, t: &str, kind: Kind, id: u128) -> Result<Vec<Value>, redb::Error> {
        read_refs(self.res()?, self.members()?, self.member_of()?, t, kind, id)
    }

    /// Whether resource `id`, whose record `rec` holds (at least) the attributes
    /// `filter_keys` names, matches the filter: evaluated on the stored body plus what the
    /// filter asks for.
    fn satisfies(
        &self,
        t: &str,
        id: u128,
        rec: &Skimmed,
        e: &Evaluation,
    ) -> Result<bool, redb::Error> {
        let kind = e.rt.kind;
        let mut m = rec.body.clone();
        if e.id {
            m.insert("id".into(), Value::String(format_id(id)));
        }
        if e.meta {
            m.insert(
                "meta".into(),
                serde_json::json!({"resourceType": kind.as_str(), "created": rec.created,
                    "lastModified": rec.modified, "version": format!("W/\"{}\"", rec.version)}),
            );
        }
        let mut decided = Vec::new();
        if let Some((ids, any)) = &e.probes {
            // Asking whether given users are members, or whether there are any, takes point
            // reads.
            let mut found = Vec::new();
            for &m in ids {
                if let Some(k) = self.members()?.get((t, id, m))? {
                    found.push(member_json(m, k.value()));
                }
            }
            if *any && found.is_empty() {
                let range = (t, id, 0u128)..=(t, id, u128::MAX);
                if let Some(e) = self.members()?.range(range)?.next() {
                    let (k, v) = e?;
                    found.push(member_json(k.value().2, v.value()));
                }
            }
            m.insert("members".into(), Value::Array(found));
        } else if !e.member_conditions.is_empty() {
            decided = self.member_conditions(t, id, e)?;
        }
        if e.groups {
            m.insert("groups".into(), Value::Array(self.refs(t, kind, id)?));
        }
        Ok(filter::matches_deciding(
            e.f,
            e.rt,
            &Value::Object(m),
            &decided,
        ))
    }

    /// The answers of the filter's conditions on group `id`'s members, from its member list
    /// read a batch at a time, so that a million members are never held at once; the read
    /// stops once every answer is settled.
    fn member_conditions<'f>(
        &self,
        t: &str,
        id: u128,
        e: &Evaluation<'f>,
    ) -> Result<Vec<(&'f Filter, bool)>, redb::Error> {
        let mut decided: Vec<(&Filter, bool)> = e
            .member_conditions
            .iter()
            .map(|c| (*c, filter::every_part(c)))
            .collect();
        let decide = |batch: Vec<Value>, decided: &mut Vec<(&Filter, bool)>| {
            let part = serde_json::json!({ "members": batch });
            for (c, answer) in decided.iter_mut() {
                let here = filter::matches(c, e.rt, &part);
                match filter::every_part(c) {
                    true => *answer &= here,
                    false => *answer |= here,
                }
            }
            // Settled: a condition on some part already holds, one on every part failed.
            decided.iter().all(|(c, a)| *a != filter::every_part(c))
        };
        let mut batch = Vec::with_capacity(MEMBER_BATCH);
        let mut read = 0usize;
        for entry in self.members()?.range((t, id, 0u128)..=(t, id, u128::MAX))? {
            let (k, v) = entry?;
            batch.push(member_json(k.value().2, v.value()));
            read += 1;
            if batch.len() == MEMBER_BATCH && decide(std::mem::take(&mut batch), &mut decided) {
                return Ok(decided);
            }
        }
        if !batch.is_empty() || read == 0 {
            decide(batch, &mut decided);
        }
        Ok(decided)
    }
}

impl Store {
    pub async fn create(&self, actor: Actor, rt: Rt, input: Input) -> ScimResult<Resource> {
        self.create_as(actor, rt, input, None).await
    }

    /// Create with a given id (import from another host); 409 when the id is taken.
    pub async fn create_as(
        &self,
        actor: Actor,
        rt: Rt,
        input: Input,
        given: Option<u128>,
    ) -> ScimResult<Resource> {
        self.write(move |w| {
            let kind = rt.kind;
            let t = actor.tenant.as_str();
            let k = keys(rt, &input.body);
            if let Err(e) = w.check_unique(t, kind, &k, None)? {
                return Ok(Err(e));
            }
            let id = match given {
                Some(id) if w.kind_of(t, id)?.is_some() => {
                    return Ok(Err(ScimError::uniqueness(format!(
                        "id {} already exists",
                        format_id(id)
                    ))));
                }
                Some(id) => id,
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
            let seat = match w.seat_check(&actor, false, active)? {
                Ok(s) => s,
                Err(e) => return Ok(Err(e)),
            };
            let stamp = now();
            let attrs = events::changed_attributes(&Body::new(), &input.body);
            let rec = Record {
                body: input.body,
                created: stamp.clone(),
                modified: stamp,
                version: 1,
            };
            w.put(t, kind, id, &rec)?;
            w.index(t, kind, id, &Keys::default(), &k)?;
            w.bump_count(t, kind, id, true)?;
            let ev = if kind == Kind::User {
                "user.created"
            } else {
                "group.created"
            };
            w.emit(&actor, ev, id, None, attrs)?;
            if kind == Kind::User {
                w.plan_transition(&actor, id, None, Some(active), seat)?;
            }
            apply_members(w, &actor, id, &changes)?;
            let refs = read_refs(&w.res, &w.members, &w.member_of, t, kind, id)?;
            let mut r = rec.into_resource(kind, id);
            r.refs = Some(refs);
            Ok(Ok(r))
        })
        .await
    }

    pub async fn replace(
        &self,
        actor: Actor,
        rt: Rt,
        id: String,
        input: Input,
        if_match: Option<String>,
    ) -> ScimResult<Resource> {
        self.write(move |w| {
            let kind = rt.kind;
            let t = actor.tenant.as_str();
            let (nid, old) = match w.existing(t, kind, &id, if_match.as_deref())? {
                Ok(x) => x,
                Err(e) => return Ok(Err(e)),
            };
            if input.id.as_deref().is_some_and(|given| given != id) {
                return Ok(Err(ScimError::mutability(format!(
                    "the body's id \"{}\" differs from the id in the URL",
                    input.id.as_deref().unwrap_or_default()
                ))));
            }
            if let Err(e) = w.check_unique(t, kind, &keys(rt, &input.body), Some(nid))? {
                return Ok(Err(e));
            }
            let ops = match &input.members {
                Some(list) => vec![MemberOp::Clear, MemberOp::Add(list.clone())],
                // A PUT of a group without `members` empties it (PUT replaces the resource).
                None if kind == Kind::Group => vec![MemberOp::Clear],
                None => Vec::new(),
            };
            let mut body = input.body;
            resource::keep_from_old(rt, &old.body, &mut body, &input.keep);
            let rec = match w.commit_change(&actor, rt, nid, old, body, &ops)? {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            let refs = read_refs(&w.res, &w.members, &w.member_of, t, kind, nid)?;
            let mut r = rec.into_resource(kind, nid);
            r.refs = Some(refs);
            Ok(Ok(r))
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
        if_match: Option<String>,
    ) -> ScimResult<(Resource, Ignored)> {
        self.write(move |w| {
            let kind = rt.kind;
            let t = actor.tenant.as_str();
            let (nid, old) = match w.existing(t, kind, &id, if_match.as_deref())? {
                Ok(x) => x,
                Err(e) => return Ok(Err(e)),
            };
            let out = match patch::apply(rt, &id, &old.body, &ops) {
                Ok(o) => o,
                Err(e) => return Ok(Err(e)),
            };
            if let Err(e) = w.check_unique(t, kind, &keys(rt, &out.body), Some(nid))? {
                return Ok(Err(e));
            }
            let rec = match w.commit_change(&actor, rt, nid, old, out.body, &out.member_ops)? {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            let mut r = rec.into_resource(kind, nid);
            if kind == Kind::User {
                r.refs = Some(read_refs(&w.res, &w.members, &w.member_of, t, kind, nid)?);
            }
            Ok(Ok((r, out.ignored)))
        })
        .await
    }

    pub async fn delete(
        &self,
        actor: Actor,
        rt: Rt,
        id: String,
        if_match: Option<String>,
    ) -> ScimResult<()> {
        self.write(move |w| {
            let kind = rt.kind;
            let t = actor.tenant.as_str();
            let (nid, old) = match w.existing(t, kind, &id, if_match.as_deref())? {
                Ok(x) => x,
                Err(e) => return Ok(Err(e)),
            };
            w.remove_record(t, kind, nid)?;
            w.index(t, kind, nid, &keys(rt, &old.body), &Keys::default())?;
            w.bump_count(t, kind, nid, false)?;
            w.unlink_all(&actor, nid)?;
            if kind == Kind::User {
                w.plan_transition(&actor, nid, Some(plan::is_active(&old.body)), None, None)?;
            }
            let ev = if kind == Kind::User {
                "user.deleted"
            } else {
                "group.deleted"
            };
            w.emit(&actor, ev, nid, None, Vec::new())?;
            Ok(Ok(()))
        })
        .await
    }

    /// Number of resources of a kind in a tenant.
    pub async fn count(&self, tenant: String, kind: Kind) -> ScimResult<u64> {
        self.read(move |r: &ReadSide| {
            let c = r.txn().open_table(COUNTS)?;
            Ok(Ok(plan::count(&c, &tenant, kind.code())?))
        })
        .await
    }

    /// Every tenant with users or groups in the database, configured or not.
    pub async fn stored_tenants(&self) -> ScimResult<Vec<String>> {
        self.read(move |r: &ReadSide| {
            let c = r.txn().open_table(COUNTS)?;
            let mut names: Vec<String> = Vec::new();
            for e in c.iter()? {
                let (k, v) = e?;
                let t = k.value().0;
                if v.value() > 0 && names.last().is_none_or(|l| l != t) {
                    names.push(t.to_string());
                }
            }
            Ok(Ok(names))
        })
        .await
    }

    /// Events of a tenant after `after`, oldest first, at most `limit`.
    pub async fn events(
        &self,
        tenant: String,
        after: u64,
        limit: usize,
    ) -> ScimResult<(Vec<Event>, u64)> {
        self.read(move |r: &ReadSide| {
            let table = r.txn().open_table(EVENTS)?;
            let seqs = r.txn().open_table(EVENT_SEQ)?;
            let t = tenant.as_str();
            let last = seqs.get(t)?.map(|g| g.value()).unwrap_or(0);
            let mut out = Vec::new();
            if limit > 0 && after < u64::MAX {
                for e in table.range((t, after + 1)..=(t, u64::MAX))?.take(limit) {
                    let (_, v) = e?;
                    if let Ok(ev) = serde_json::from_slice::<Event>(v.value()) {
                        out.push(ev);
                    }
                }
            }
            Ok(Ok((out, last)))
        })
        .await
    }

    pub async fn get(
        &self,
        tenant: String,
        kind: Kind,
        id: String,
        with_refs: bool,
    ) -> ScimResult<Resource> {
        self.get_as(tenant, kind, id, with_refs, move |bytes, nid, refs| {
            let mut res = decode(bytes)?.into_resource(kind, nid);
            res.refs = refs;
            Some(res)
        })
        .await
    }

    /// A resource as its stored text, for rendering without a projection.
    pub async fn get_stored(
        &self,
        tenant: String,
        kind: Kind,
        id: String,
        with_refs: bool,
    ) -> ScimResult<Stored> {
        self.get_as(tenant, kind, id, with_refs, move |bytes, nid, refs| {
            Some(Stored {
                kind,
                id: format_id(nid),
                record: bytes.to_vec(),
                refs,
            })
        })
        .await
    }

    async fn get_as<T, F>(
        &self,
        tenant: String,
        kind: Kind,
        id: String,
        with_refs: bool,
        make: F,
    ) -> ScimResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&[u8], u128, Option<Vec<Value>>) -> Option<T> + Send + 'static,
    {
        let read = move |r: &ReadSide| {
            let t = tenant.as_str();
            let Some(nid) = parse_id(&id) else {
                return Ok(Err(not_found(kind, &id)));
            };
            let Some(rec) = r.res()?.get((t, kind.code(), nid))? else {
                return Ok(Err(not_found(kind, &id)));
            };
            let refs = match with_refs {
                true => Some(r.refs(t, kind, nid)?),
                false => None,
            };
            match make(rec.value(), nid, refs) {
                Some(res) => Ok(Ok(res)),
                None => Ok(Err(not_found(kind, &id))),
            }
        };
        // A group's members can be millions: that read goes to the pool.
        if with_refs && kind == Kind::Group {
            self.read(read).await
        } else {
            self.read_now(read)
        }
    }

    pub async fn list(&self, tenant: String, rt: Rt, q: ListQuery) -> ScimResult<ListPage> {
        let kind = rt.kind;
        // Point lookups and short unfiltered pages (by cursor, or by startIndex at any depth:
        // the position counts find it) stay on the runtime thread; scans and sorts go to the
        // pool. Groups with members always go to the pool (a group can have a million).
        let short_page = q.filter.is_none() && q.count <= INLINE_PAGE;
        let inline = q.sort.is_none()
            && (short_page || q.filter.as_ref().is_some_and(|f| is_point(kind, f)))
            && !(q.with_refs && kind == Kind::Group);
        let read = move |r: &ReadSide| {
            let t = tenant.as_str();
            let start = q.start_index.max(1);
            let skip = usize::try_from(start - 1).unwrap_or(usize::MAX);
            let count = usize::try_from(q.count).unwrap_or(usize::MAX);
            // Fast path: no filter, no sort → the count table and one ordered range read.
            if q.filter.is_none() && q.sort.is_none() {
                let total = r
                    .counts()?
                    .get((t, kind.code()))?
                    .map(|g| g.value())
                    .unwrap_or(0);
                let mut items = Vec::new();
                let mut next = None;
                if let Some(after) = q.after {
                    // One ordered range read from the cursor: as cheap on the last page as
                    // on the first.
                    if after < u128::MAX {
                        let from = (t, kind.code(), after + 1)..=(t, kind.code(), u128::MAX);
                        for e in r.res()?.range(from)?.take(count.saturating_add(1)) {
                            let (k, v) = e?;
                            if items.len() == count {
                                next = items.last().and_then(|x: &Resource| parse_id(&x.id));
                                break;
                            }
                            if let Some(rec) = decode(v.value()) {
                                items.push(rec.into_resource(kind, k.value().2));
                            }
                        }
                    }
                } else if count > 0 {
                    // A deep offset starts at the prefix the position counts point to, so
                    // the last page costs about what the first does.
                    let (from, rest) = r
                        .position(t, kind, skip as u64)?
                        .unwrap_or((u128::MAX, u64::MAX));
                    let range = (t, kind.code(), from)..=(t, kind.code(), u128::MAX);
                    let rest = usize::try_from(rest).unwrap_or(usize::MAX);
                    for e in r.res()?.range(range)?.skip(rest).take(count) {
                        let (k, v) = e?;
                        if let Some(rec) = decode(v.value()) {
                            items.push(rec.into_resource(kind, k.value().2));
                        }
                    }
                }
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
                    },
                    q.with_refs,
                );
            }
            // All users by userName: the userName index holds them in that order (lower-cased,
            // as sort keys of a caseExact=false attribute are; userName is unique and always
            // there), so a page is a walk of the index, not a sort of every user.
            if let (None, Some(s), Kind::User) = (&q.filter, &q.sort, kind)
                && s.is_core("userName")
            {
                use std::ops::Bound::{Excluded, Included};
                let total = plan::count(r.counts()?, t, kind.code())?;
                let past = format!("{t}\0");
                // A resumed walk starts just past the name it stopped at (names are unique).
                let after = q.resume.as_ref().map(|m| match &m.key {
                    Some(SortKey::Text(n)) => n.as_str(),
                    _ => "",
                });
                let (lo, hi) = match (after, s.descending) {
                    (Some(n), false) => (Excluded((t, n)), Excluded((past.as_str(), ""))),
                    (Some(n), true) => (Included((t, "")), Excluded((t, n))),
                    (None, _) => (Included((t, "")), Excluded((past.as_str(), ""))),
                };
                let names = r.usernames()?.range((lo, hi))?;
                let names: Box<dyn Iterator<Item = _>> = match s.descending {
                    false => Box::new(names),
                    true => Box::new(names.rev()),
                };
                let mut named = names
                    .skip(if after.is_some() { 0 } else { skip })
                    .take(count.saturating_add(1))
                    .map(|e| e.map(|(k, v)| (k.value().1.to_string(), v.value())))
                    .collect::<Result<Vec<(String, u128)>, _>>()?;
                let more = named.len() > count;
                named.truncate(count);
                let ids: Vec<u128> = named.iter().map(|(_, id)| *id).collect();
                let mut page = r.read_page(t, kind, &ids, false, total, start)?;
                page.next_mark = named.pop().filter(|_| more).map(|(n, id)| SortMark {
                    key: Some(SortKey::Text(n)),
                    id,
                });
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
                Some(f) => plan(r, t, kind, f)?,
                None => None,
            };
            let exact = q.filter.as_ref().is_some_and(|f| index_exact(kind, f));
            // Each record is read for the attributes the filter and the sort look at only;
            // the page's records are read whole after.
            let mut wanted = Vec::new();
            if let Some(f) = &q.filter {
                filter_keys(f, &mut wanted);
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
            // The matches in id order from `from`, until `visit` says stop: the planned
            // candidates that pass, or a scan.
            let each = |from: u128,
                        visit: &mut dyn FnMut(u128, Skimmed) -> bool|
             -> Result<(), redb::Error> {
                match &planned {
                    Some(ids) => {
                        for &id in ids.range(from..) {
                            if let Some(rec) = r
                                .res()?
                                .get((t, kind.code(), id))?
                                .and_then(|g| skim(g.value(), &wanted))
                                && keep(id, &rec)?
                                && !visit(id, rec)
                            {
                                break;
                            }
                        }
                    }
                    None => {
                        let from = (t, kind.code(), from)..=(t, kind.code(), u128::MAX);
                        for e in r.res()?.range(from)? {
                            let (k, v) = e?;
                            let id = k.value().2;
                            if let Some(rec) = skim(v.value(), &wanted)
                                && keep(id, &rec)?
                                && !visit(id, rec)
                            {
                                break;
                            }
                        }
                    }
                }
                Ok(())
            };
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
            })?;
            let ids: Vec<u128> = picked.page.iter().map(|x| x.id).collect();
            let mut page = r.read_page(t, kind, &ids, false, total, start)?;
            let more = picked.total > (skip + picked.page.len()) as u64;
            page.next_mark = picked.page.last().filter(|_| more).map(|x| SortMark {
                key: x.key.clone(),
                id: x.id,
            });
            finish(r, t, kind, page, q.with_refs)
        };
        if inline {
            self.read_now(read)
        } else {
            self.read(read).await
        }
    }
}

/// The group of a `groups.value eq "g"` or `groups[value eq "g"]` filter on users, whose
/// matches are exactly the group's direct user members (`groups.value` is caseExact false,
/// and an id in any case parses to the same member).
fn group_of_users(kind: Kind, f: Option<&Filter>) -> Option<&str> {
    if kind != Kind::User {
        return None;
    }
    match f? {
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
    }
}

/// The lower-cased prefix of a `userName sw "..."` filter on users.
/// A stretch of one index that holds exactly a filter's matches.
enum IndexRange {
    /// `userName sw`: the lower-cased prefix.
    NamePrefix(String),
    /// A comparison of `meta.lastModified`: the Unix nanoseconds from and to (inclusive).
    Modified(i64, i64),
}

fn index_range(kind: Kind, f: Option<&Filter>) -> Option<IndexRange> {
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
            Some(IndexRange::NamePrefix(v.to_lowercase()))
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
type Matches<'a> = dyn Fn(u128, &mut dyn FnMut(u128) -> bool) -> Result<(), redb::Error> + 'a;

/// One page of matches, offered in id order, and the count of all of them: a filter that
/// matches a million resources costs a page of memory, not a million records.
struct Window<T> {
    skip: usize,
    count: usize,
    after: Option<u128>,
    total: u64,
    items: Vec<(u128, T)>,
    /// A match after the page exists (for the cursor to continue).
    more: bool,
}

impl<T> Window<T> {
    fn new(skip: usize, count: usize, after: Option<u128>) -> Window<T> {
        Window {
            skip,
            count,
            after,
            total: 0,
            items: Vec::new(),
            more: false,
        }
    }

    fn offer(&mut self, id: u128, rec: T) {
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

impl Store {
    /// A page of an exact point filter's matches as stored text, or `None` when the query is
    /// not one (the caller lists the ordinary way). This is the lookup IdPs make before
    /// every create, so it skips decoding records only to print them again.
    pub fn list_stored(
        &self,
        tenant: &str,
        kind: Kind,
        q: &ListQuery,
    ) -> Option<ScimResult<StoredPage>> {
        let f = q.filter.as_ref()?;
        // It runs on the runtime thread: point lookups only (an exact `sw` can match millions).
        if q.sort.is_some()
            || !index_exact(kind, f)
            || !is_point(kind, f)
            || (q.with_refs && kind == Kind::Group)
        {
            return None;
        }
        Some(self.read_now(|r| {
            let t = tenant;
            let skip = usize::try_from(q.start_index.max(1) - 1).unwrap_or(usize::MAX);
            let count = usize::try_from(q.count).unwrap_or(usize::MAX);
            let mut w = Window::new(skip, count, q.after);
            for id in plan(r, t, kind, f)?.unwrap_or_default() {
                if let Some(g) = r.res()?.get((t, kind.code(), id))? {
                    w.offer(id, g.value().to_vec());
                }
            }
            let next = match w.more {
                true => w.items.last().map(|(id, _)| *id),
                false => None,
            };
            let mut items = Vec::with_capacity(w.items.len());
            for (id, record) in w.items {
                let refs = match q.with_refs {
                    true => Some(r.refs(t, kind, id)?),
                    false => None,
                };
                items.push(Stored {
                    kind,
                    id: format_id(id),
                    record,
                    refs,
                });
            }
            Ok(Ok(StoredPage {
                total: w.total,
                next,
                items,
            }))
        }))
    }
}

/// Read each listed resource's members or groups when they will be returned.
fn finish(r: &ReadSide, t: &str, kind: Kind, mut page: ListPage, with_refs: bool) -> R<ListPage> {
    if with_refs {
        for it in page.items.iter_mut() {
            if let Some(id) = parse_id(&it.id) {
                it.refs = Some(r.refs(t, kind, id)?);
            }
        }
    }
    Ok(Ok(page))
}

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
}

/// Where a page of the plan list starts: a 1-based position, or after a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanFrom {
    Index(u64),
    After(PlanCursor),
}

/// A place in the plan list (users in id order, then the unmatched existing members).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanCursor {
    Start,
    /// After this user.
    User(u128),
    /// At this entry of the existing members no user matches.
    Tail(usize),
}

pub struct PlanPage {
    pub total: u64,
    pub entries: Vec<PlanEntry>,
    /// By cursor: where the next page starts, while the list may go on.
    pub next: Option<PlanCursor>,
}

/// Most users one cursor page of the plan list reads (a few milliseconds of work), so that a
/// status few users have costs short pages rather than a scan of the tenant. (Tiny in unit
/// tests, to show the short pages.)
const PLAN_SCAN: usize = if cfg!(test) { 4 } else { 5_000 };

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
            matches(0, &mut |id| {
                w.offer(id, ());
                scan.count(id);
                true
            })?;
            self.scans.put(key, scan);
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
        let mut w = match (from, count > 0) {
            (Some((from, mut w)), true) => {
                matches(from, &mut |id| {
                    w.offer(id, ());
                    !w.more && (after.is_some() || w.items.len() < count)
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

    /// Paid, free and deactivated counts from the counters; only the existing members are
    /// looked at one by one (testing mode keeps them paid).
    fn plan_counts(
        &self,
        t: &str,
        mode: Mode,
        matched: &BTreeSet<u128>,
        unmatched: usize,
    ) -> Result<PlanSummary, redb::Error> {
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
            for &id in matched {
                let Some(rec) = self
                    .res()?
                    .get((t, Kind::User.code(), id))?
                    .and_then(|g| decode(g.value()))
                else {
                    continue;
                };
                if !plan::is_active(&rec.body) {
                    s.deactivated = s.deactivated.saturating_sub(1);
                    s.paid += 1;
                } else if self.overflowed(t, id)? {
                    s.free = s.free.saturating_sub(1);
                    s.paid += 1;
                }
            }
        }
        match mode {
            Mode::Testing => s.paid += unmatched as u64,
            Mode::Enforced => s.free += unmatched as u64,
        }
        Ok(s)
    }

    /// Where the resource of `kind` at 0-based position `skip` (in id order) is found: see
    /// `ranks::locate`. A skip of 0 needs no counts.
    fn position(&self, t: &str, kind: Kind, skip: u64) -> Result<Option<(u128, u64)>, redb::Error> {
        if skip == 0 {
            return Ok(Some((0, 0)));
        }
        let ranks = self.txn.open_table(RANKS)?;
        Ok(ranks::locate(&ranks, t, kind.code(), skip)?)
    }

    /// The users directly in group `g`, in id order (a user's `groups` lists its direct
    /// memberships).
    fn direct_users(
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
                .and_then(|g| decode(g.value()))
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
        })
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
        mode: Mode,
        matched: &BTreeSet<u128>,
        id: u128,
        bytes: &[u8],
    ) -> Result<Option<PlanEntry>, redb::Error> {
        let Some(rec) = decode(bytes) else {
            return Ok(None);
        };
        let existing = matched.contains(&id);
        let status = plan::user_status(
            mode,
            plan::is_active(&rec.body),
            self.overflowed(t, id)?,
            existing,
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
        }))
    }

    fn plan_ctx(
        &self,
        t: &str,
        rules: &plan::PlanRules,
    ) -> Result<(Mode, BTreeSet<u128>, Vec<String>), redb::Error> {
        let mode = rules.mode(plan::seated(self.counts()?, t)?);
        let mut matched = BTreeSet::new();
        let mut unmatched = Vec::new();
        for m in &rules.existing_members {
            let ids = plan::matches_of(self.usernames()?, self.emails()?, t, m)?;
            if ids.is_empty() {
                unmatched.push(m.clone());
            }
            matched.extend(ids);
        }
        Ok((mode, matched, unmatched))
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
    ) -> ScimResult<PlanSummary> {
        self.read(move |r: &ReadSide| {
            let t = tenant.as_str();
            let (mode, matched, unmatched) = r.plan_ctx(t, &rules)?;
            Ok(Ok(r.plan_counts(t, mode, &matched, unmatched.len())?))
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
    ) -> ScimResult<PlanPage> {
        self.read(move |r: &ReadSide| {
            let t = tenant.as_str();
            let user = Kind::User.code();
            let (mode, matched, unmatched) = r.plan_ctx(t, &rules)?;
            let s = r.plan_counts(t, mode, &matched, unmatched.len())?;
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
                user_name: m.clone(),
                emails: Vec::new(),
                status: plan::unmatched_status(mode),
                existing_member: true,
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
                            if let Some(entry) = r.plan_entry(t, mode, &matched, id, bytes)?
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
                    for m in &unmatched {
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
                        PlanCursor::Start => (Some(0), 0),
                        PlanCursor::User(id) => (id.checked_add(1), 0),
                        PlanCursor::Tail(i) => (None, i),
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
                            if let Some(entry) = r.plan_entry(t, mode, &matched, id, bytes)?
                                && wanted(&entry)
                            {
                                entries.push(entry);
                            }
                            Ok(true)
                        })?;
                    }
                    if next.is_none() {
                        for (i, m) in unmatched.iter().enumerate().skip(tail_from) {
                            let e = tail(m);
                            if !wanted(&e) {
                                continue;
                            }
                            if entries.len() == count {
                                next = Some(PlanCursor::Tail(i));
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

impl Store {
    /// A group's members in id order, in batches, from one read snapshot on the blocking
    /// pool; the producer waits while the consumer is behind, so memory stays bounded.
    pub fn member_batches(
        &self,
        tenant: String,
        group: u128,
    ) -> tokio::sync::mpsc::Receiver<Vec<(u128, Kind)>> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let db = self.db();
        tokio::task::spawn_blocking(move || {
            let db = match db {
                Ok(db) => db,
                Err(_) => return, // the receiver sees the stream end early
            };
            let run = || -> Result<(), redb::Error> {
                let txn = redb::ReadableDatabase::begin_read(&*db)?;
                let members = txn.open_table(GROUPID_MEMBERID)?;
                let t = tenant.as_str();
                let mut batch = Vec::with_capacity(MEMBER_BATCH);
                for e in members.range((t, group, 0u128)..=(t, group, u128::MAX))? {
                    let (k, v) = e?;
                    let kind = if v.value() == Kind::Group.code() {
                        Kind::Group
                    } else {
                        Kind::User
                    };
                    batch.push((k.value().2, kind));
                    if batch.len() == MEMBER_BATCH
                        && tx.blocking_send(std::mem::take(&mut batch)).is_err()
                    {
                        return Ok(()); // the client went away
                    }
                }
                if !batch.is_empty() {
                    let _ = tx.blocking_send(batch);
                }
                Ok(())
            };
            if let Err(e) = run() {
                tracing::error!(error = %e, "reading group members failed");
            }
        });
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(kind: Kind, f: &str) -> bool {
        index_exact(kind, &filter::parse_for(kind, f).unwrap())
    }

    #[test]
    fn stored_text_renders_byte_for_byte_as_the_decoded_resource() {
        let base = "https://scim.example/scim/v2";
        let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
        let bodies = [
            serde_json::json!({"userName": "a\"q\"\n名前", "active": false,
                "name": {"givenName": "Ann", "familyName": "Lee"}, "score": 1.5,
                "emails": [{"value": "a@x", "primary": true}], ent: {"employeeNumber": "7"},
                "odd \"name\"": 1}),
            // No `active` (rendered true) and an emptied extension object (left out, but
            // still named in `schemas`).
            serde_json::json!({"userName": "b", ent: {}}),
        ];
        for (i, body) in bodies.into_iter().enumerate() {
            let rec = Record {
                body: serde_json::from_value(body).unwrap(),
                created: "2026-11-30T10:00:00Z".into(),
                modified: "2026-11-30T11:00:00.5Z".into(),
                version: 7,
            };
            let bytes = encode(&rec);
            let refs = (i == 0).then(|| {
                vec![serde_json::json!({"value": format_id(9), "display": "Ops \"1\"", "type": "direct"})]
            });
            let stored = Stored {
                kind: Kind::User,
                id: format_id(42),
                record: bytes.clone(),
                refs: refs.clone(),
            };
            let (text, etag) = stored.default_json(base).unwrap();
            let mut res = decode(&bytes).unwrap().into_resource(Kind::User, 42);
            res.refs = refs;
            assert_eq!(etag, res.etag());
            let mut want = res.into_json(base);
            crate::scim::projection::Projection::default().apply(Kind::User, &mut want);
            assert_eq!(
                String::from_utf8(text).unwrap(),
                serde_json::to_string(&Value::Object(want)).unwrap()
            );
        }
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
