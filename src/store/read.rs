//! Reads: one snapshot's tables, opened on first use; gets, lists and member batches; and a
//! resource's references (a group's members, a user's groups).

use std::collections::BTreeSet;

use redb::{ReadTransaction, ReadableTable};
use serde_json::{Map, Value};

use super::alike;
use super::events::{Event, Retention};
use super::plan;
use super::query::*;
use super::record::*;
use super::scans::ScanMemo;
use super::skim::Skimmed;
use super::tables::*;
use super::{Error, Store, format_id, parse_id};
use crate::scim::filter::{self, Filter};
use crate::scim::render::{Resource, Stored, etag_of};
use crate::scim::schema::Kind;

/// Members read at a time from a group's member list, when it is streamed or searched. A
/// stream holds a few read ahead (about 60 bytes a member); the HTTP layer writes them in
/// smaller parts. Batches of 256 held less but made whole reads of a million-member group
/// by 4 to 16 clients at once take 12-30% longer (a turn and a thread's wakeup a batch).
pub(super) const MEMBER_BATCH: usize = if cfg!(test) { 4 } else { 1024 };

pub(super) fn member_json(id: u128, code: u8, display: Option<String>) -> Value {
    let ty = Kind::of_member_code(code).as_str();
    match display {
        Some(d) => serde_json::json!({"value": format_id(id), "display": d, "type": ty}),
        None => serde_json::json!({"value": format_id(id), "type": ty}),
    }
}

/// A group's member displays read alongside its member list: both are in member id order,
/// so a member's display is the next row or none, and a million members cost one walk of
/// each table rather than a lookup each.
pub(super) struct Displays<'a> {
    rows: redb::Range<'a, (&'static str, u128, u128), &'static str>,
    next: Option<(u128, String)>,
}

impl<'a> Displays<'a> {
    pub(super) fn new<T>(table: &'a T, t: &str, g: u128) -> Result<Self, redb::Error>
    where
        T: ReadableTable<(&'static str, u128, u128), &'static str>,
    {
        Ok(Displays {
            rows: table.range((t, g, 0u128)..=(t, g, u128::MAX))?,
            next: None,
        })
    }

    /// The display of member `m`, asked for in increasing order of `m`.
    pub(super) fn of(&mut self, m: u128) -> Result<Option<String>, redb::Error> {
        loop {
            match self.next.take() {
                Some((at, d)) if at == m => return Ok(Some(d)),
                Some((at, d)) if at > m => {
                    self.next = Some((at, d));
                    return Ok(None);
                }
                // A row before `m` belongs to no member asked for: passed over.
                Some(_) => {}
                None => match self.rows.next() {
                    None => return Ok(None),
                    Some(row) => {
                        let (k, v) = row?;
                        self.next = Some((k.value().2, v.value().to_string()));
                    }
                },
            }
        }
    }
}

/// The computed reference list: a group's members, or a user's groups, each group named by
/// `group_name` (`named_group`, perhaps remembered).
pub(super) fn read_refs<M, O, D>(
    members: &M,
    member_of: &O,
    displays: &D,
    t: &str,
    kind: Kind,
    id: u128,
    mut group_name: impl FnMut(u128) -> Result<Option<Value>, redb::Error>,
) -> Result<Vec<Value>, redb::Error>
where
    M: ReadableTable<(&'static str, u128, u128), u8>,
    O: ReadableTable<(&'static str, u128, u128), ()>,
    D: ReadableTable<(&'static str, u128, u128), &'static str>,
{
    let mut out = Vec::new();
    match kind {
        Kind::Group => {
            let mut shown = Displays::new(displays, t, id)?;
            for e in members.range((t, id, 0u128)..=(t, id, u128::MAX))? {
                let (k, v) = e?;
                let m = k.value().2;
                out.push(member_json(m, v.value(), shown.of(m)?));
            }
        }
        Kind::User => {
            for e in member_of.range((t, id, 0u128)..=(t, id, u128::MAX))? {
                let g = e?.0.value().2;
                let mut entry = Map::new();
                entry.insert("value".into(), Value::String(format_id(g)));
                if let Some(d) = group_name(g)? {
                    entry.insert("display".into(), d);
                }
                entry.insert("type".into(), Value::String("direct".into()));
                out.push(Value::Object(entry));
            }
        }
    }
    Ok(out)
}

/// Group `g`'s `displayName`, for a member's `groups`. A group whose record does not parse
/// is handed to `damaged`: a read's error, or, for a write, noted and listed without its
/// name (an error there would fail the other writes of its batch).
pub(super) fn named_group<N>(
    res: &N,
    t: &str,
    g: u128,
    damaged: impl FnOnce(redb::Error) -> Result<(), redb::Error>,
) -> Result<Option<Value>, redb::Error>
where
    N: ReadableTable<(&'static str, u8, u128), &'static [u8]>,
{
    let Some(r) = res.get((t, Kind::Group.code(), g))? else {
        return Ok(None);
    };
    // Only the name is wanted: skimming steps over the rest of the group's record instead
    // of building it.
    match super::skim::skimmed(r.value(), &["displayName"]) {
        Ok(mut rec) => Ok(rec.body.remove("displayName")),
        Err(e) => damaged(e).map(|()| None),
    }
}

pub(super) fn not_found(kind: Kind, id: &str) -> Error {
    Error::NotFound {
        kind,
        id: id.to_string(),
    }
}

/// A page of a tenant's change feed.
#[derive(Debug)]
pub struct Feed {
    pub events: Vec<Event>,
    /// The newest sequence number given out (0: none yet).
    pub last: u64,
    /// The oldest one still kept (`last + 1` when retention kept none).
    pub oldest: u64,
}

/// A write's `If-Match` and `If-None-Match` (RFC 9110 §13.1, compared weakly).
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
}

/// `If-Match` passes when it is `*` or lists the current ETag (`etag_of`); `If-None-Match`
/// on a write fails when it does (`*`: "only if it does not exist", and it does).
pub(super) fn precondition(cond: &Conditions, etag: &str) -> Result<(), Error> {
    let names = |h: &str| crate::scim::render::names_etag(h, etag);
    if let Some(h) = &cond.if_match
        && !names(h)
    {
        return Err(Error::IfMatchFailed { etag: etag.into() });
    }
    if let Some(h) = &cond.if_none_match
        && names(h)
    {
        return Err(Error::IfNoneMatchFailed { etag: etag.into() });
    }
    Ok(())
}

type ResTable = redb::ReadOnlyTable<(&'static str, u8, u128), &'static [u8]>;

/// The read side of one snapshot. Tables open on first use: a GET by id needs one or two of
/// them, and opening all nine costs more than the lookup itself. The store shares one
/// snapshot among all reads until the next commit, so each table opens once per commit
/// rather than once per request.
pub(super) struct ReadSide {
    pub(super) txn: ReadTransaction,
    pub(super) res: std::sync::OnceLock<ResTable>,
    pub(super) counts: std::sync::OnceLock<redb::ReadOnlyTable<(&'static str, u8), u64>>,
    pub(super) usernames:
        std::sync::OnceLock<redb::ReadOnlyTable<(&'static str, &'static str), u128>>,
    ext_ids:
        std::sync::OnceLock<redb::ReadOnlyMultimapTable<(&'static str, u8, &'static str), u128>>,
    pub(super) emails:
        std::sync::OnceLock<redb::ReadOnlyMultimapTable<(&'static str, &'static str), u128>>,
    pub(super) names:
        std::sync::OnceLock<redb::ReadOnlyMultimapTable<(&'static str, u8, &'static str), u128>>,
    pub(super) members: std::sync::OnceLock<redb::ReadOnlyTable<(&'static str, u128, u128), u8>>,
    pub(super) member_of: std::sync::OnceLock<redb::ReadOnlyTable<(&'static str, u128, u128), ()>>,
    pub(super) displays:
        std::sync::OnceLock<redb::ReadOnlyTable<(&'static str, u128, u128), &'static str>>,
    pub(super) overflow: std::sync::OnceLock<redb::ReadOnlyTable<(&'static str, u128), ()>>,
    pub(super) modified: std::sync::OnceLock<ModifiedTable>,
    pub(super) scans: ScanMemo,
    group_names: GroupNames,
}

/// Group names read under one snapshot, for users' `groups`: the members of a group would
/// otherwise each read and parse its record again (a twentieth of a user's read). Bounded:
/// past `GroupNames::MOST` groups, names are read as before.
#[derive(Default)]
struct GroupNames(std::sync::Mutex<Vec<GroupName>>);

/// A tenant, a group id and its name.
type GroupName = (Box<str>, u128, Option<Value>);

impl GroupNames {
    const MOST: usize = 256;

    fn get_or_read(
        &self,
        t: &str,
        g: u128,
        read: impl FnOnce() -> Result<Option<Value>, redb::Error>,
    ) -> Result<Option<Value>, redb::Error> {
        let known = |names: &[GroupName]| {
            names
                .iter()
                .find(|(nt, ng, _)| *ng == g && **nt == *t)
                .map(|(_, _, name)| name.clone())
        };
        if let Some(name) = known(&self.0.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(name);
        }
        // Read without the lock held; an error (a damaged record) is not remembered.
        let name = read()?;
        let mut names = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if names.len() < Self::MOST && known(&names).is_none() {
            names.push((t.into(), g, name.clone()));
        }
        Ok(name)
    }
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
        alike::holder(self.usernames()?, t, u)
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
    fn prefixed(
        &self,
        t: &str,
        index: Prefixed,
        prefix: &str,
        max: usize,
    ) -> Result<Option<BTreeSet<u128>>, redb::Error> {
        let mut out = BTreeSet::new();
        // False once past `max`.
        let mut add = |id: u128| {
            out.insert(id);
            out.len() <= max
        };
        let mut add_all = |ids: redb::MultimapValue<'static, u128>| {
            for id in ids {
                if !add(id?.value()) {
                    return Ok(false);
                }
            }
            Ok::<_, redb::Error>(true)
        };
        match index {
            Prefixed::UserName => {
                for e in self.usernames()?.range((t, prefix)..)? {
                    let (k, v) = e?;
                    let (kt, name) = k.value();
                    if kt != t || !name.starts_with(prefix) || !add(v.value()) {
                        break;
                    }
                }
            }
            Prefixed::Email => {
                for e in self.emails()?.range((t, prefix)..)? {
                    let (k, ids) = e?;
                    let (kt, x) = k.value();
                    if kt != t || !x.starts_with(prefix) || !add_all(ids)? {
                        break;
                    }
                }
            }
            Prefixed::ExternalId(kind) => {
                let c = kind.code();
                for e in self.ext_ids()?.range((t, c, prefix)..)? {
                    let (k, ids) = e?;
                    let (kt, kc, x) = k.value();
                    if kt != t || kc != c || !x.starts_with(prefix) || !add_all(ids)? {
                        break;
                    }
                }
            }
        }
        Ok((out.len() <= max).then_some(out))
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

    fn users_in(
        &self,
        t: &str,
        group: &str,
        max: usize,
    ) -> Result<Option<BTreeSet<u128>>, redb::Error> {
        let mut out = BTreeSet::new();
        let Some(g) = parse_id(group) else {
            return Ok(Some(out));
        };
        for e in self.members()?.range((t, g, 0u128)..=(t, g, u128::MAX))? {
            let (k, v) = e?;
            if v.value() == Kind::User.code() {
                if out.len() == max {
                    return Ok(None);
                }
                out.insert(k.value().2);
            }
        }
        Ok(Some(out))
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
            displays: std::sync::OnceLock::new(),
            overflow: std::sync::OnceLock::new(),
            modified: std::sync::OnceLock::new(),
            scans: ScanMemo::default(),
            group_names: GroupNames::default(),
        }
    }

    pub(super) fn modified(&self) -> Result<&ModifiedTable, redb::Error> {
        if let Some(t) = self.modified.get() {
            return Ok(t);
        }
        let t = self.txn.open_table(MODIFIED_ID)?;
        Ok(self.modified.get_or_init(|| t))
    }

    /// Each id in an index range, in index order.
    pub(super) fn each_in(
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
            IndexRange::Names(lo, hi) => {
                use std::ops::Bound;
                // The tenant's stretch of the index, narrowed by the bounds.
                let from = match lo {
                    Bound::Included(v) => Bound::Included((t, v.as_str())),
                    Bound::Excluded(v) => Bound::Excluded((t, v.as_str())),
                    Bound::Unbounded => Bound::Included((t, "")),
                };
                for e in self
                    .usernames()?
                    .range::<(&str, &str)>((from, Bound::Unbounded))?
                {
                    let (k, v) = e?;
                    let (kt, key) = k.value();
                    // A user keyed beside another's name (`alike`) is compared by that name.
                    let name = alike::name_of(key);
                    let past = match hi {
                        Bound::Included(h) => name > h.as_str(),
                        Bound::Excluded(h) => name >= h.as_str(),
                        Bound::Unbounded => false,
                    };
                    if kt != t || past {
                        break;
                    }
                    if !matches!(lo, Bound::Excluded(l) if l == name) {
                        visit(v.value());
                    }
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

    pub(super) fn res(&self) -> Result<&ResTable, redb::Error> {
        if let Some(t) = self.res.get() {
            return Ok(t);
        }
        let t = self.txn.open_table(RESOURCES)?;
        Ok(self.res.get_or_init(|| t))
    }

    pub(super) fn counts(
        &self,
    ) -> Result<&redb::ReadOnlyTable<(&'static str, u8), u64>, redb::Error> {
        if let Some(t) = self.counts.get() {
            return Ok(t);
        }
        let t = self.txn.open_table(COUNTS)?;
        Ok(self.counts.get_or_init(|| t))
    }

    pub(super) fn usernames(
        &self,
    ) -> Result<&redb::ReadOnlyTable<(&'static str, &'static str), u128>, redb::Error> {
        if let Some(t) = self.usernames.get() {
            return Ok(t);
        }
        let t = self.txn.open_table(USERNAME_USERID)?;
        Ok(self.usernames.get_or_init(|| t))
    }

    pub(super) fn ext_ids(
        &self,
    ) -> Result<&redb::ReadOnlyMultimapTable<(&'static str, u8, &'static str), u128>, redb::Error>
    {
        if let Some(t) = self.ext_ids.get() {
            return Ok(t);
        }
        let t = self.txn.open_multimap_table(EXTERNALID_ID)?;
        Ok(self.ext_ids.get_or_init(|| t))
    }

    pub(super) fn emails(
        &self,
    ) -> Result<&redb::ReadOnlyMultimapTable<(&'static str, &'static str), u128>, redb::Error> {
        if let Some(t) = self.emails.get() {
            return Ok(t);
        }
        let t = self.txn.open_multimap_table(EMAIL_USERID)?;
        Ok(self.emails.get_or_init(|| t))
    }

    pub(super) fn names(
        &self,
    ) -> Result<&redb::ReadOnlyMultimapTable<(&'static str, u8, &'static str), u128>, redb::Error>
    {
        if let Some(t) = self.names.get() {
            return Ok(t);
        }
        let t = self.txn.open_multimap_table(DISPLAYNAME_ID)?;
        Ok(self.names.get_or_init(|| t))
    }

    pub(super) fn members(
        &self,
    ) -> Result<&redb::ReadOnlyTable<(&'static str, u128, u128), u8>, redb::Error> {
        if let Some(t) = self.members.get() {
            return Ok(t);
        }
        let t = self.txn.open_table(GROUPID_MEMBERID)?;
        Ok(self.members.get_or_init(|| t))
    }

    pub(super) fn member_of(
        &self,
    ) -> Result<&redb::ReadOnlyTable<(&'static str, u128, u128), ()>, redb::Error> {
        if let Some(t) = self.member_of.get() {
            return Ok(t);
        }
        let t = self.txn.open_table(MEMBERID_GROUPID)?;
        Ok(self.member_of.get_or_init(|| t))
    }

    pub(super) fn displays(
        &self,
    ) -> Result<&redb::ReadOnlyTable<(&'static str, u128, u128), &'static str>, redb::Error> {
        if let Some(t) = self.displays.get() {
            return Ok(t);
        }
        let t = self.txn.open_table(MEMBER_DISPLAY)?;
        Ok(self.displays.get_or_init(|| t))
    }

    pub(super) fn overflow(
        &self,
    ) -> Result<&redb::ReadOnlyTable<(&'static str, u128), ()>, redb::Error> {
        if let Some(t) = self.overflow.get() {
            return Ok(t);
        }
        let t = self.txn.open_table(OVERFLOW_USERID)?;
        Ok(self.overflow.get_or_init(|| t))
    }

    pub(super) fn refs(&self, t: &str, kind: Kind, id: u128) -> Result<Vec<Value>, redb::Error> {
        let res = self.res()?;
        read_refs(
            self.members()?,
            self.member_of()?,
            self.displays()?,
            t,
            kind,
            id,
            |g| {
                self.group_names
                    .get_or_read(t, g, || named_group(res, t, g, Err))
            },
        )
    }

    /// Whether resource `id`, whose record `rec` holds (at least) the attributes
    /// `filter_keys` names, matches the filter: evaluated on the stored body plus what the
    /// filter asks for.
    pub(super) fn satisfies(
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
        // Read once, for `groups` and for the version they are part of.
        let groups = match e.groups {
            true => Some(self.refs(t, kind, id)?),
            false => None,
        };
        if e.meta {
            let version = etag_of(kind, rec.version, groups.as_deref());
            m.insert(
                "meta".into(),
                serde_json::json!({"resourceType": kind.as_str(), "created": rec.created,
                    "lastModified": rec.modified, "version": version}),
            );
        }
        let mut decided = Vec::new();
        if let Some((ids, any)) = &e.probes {
            // Asking whether given users are members, or whether there are any, takes point
            // reads.
            let mut found = Vec::new();
            let display = |m: u128| -> Result<Option<String>, redb::Error> {
                Ok(self
                    .displays()?
                    .get((t, id, m))?
                    .map(|d| d.value().to_string()))
            };
            for &m in ids {
                if let Some(k) = self.members()?.get((t, id, m))? {
                    found.push(member_json(m, k.value(), display(m)?));
                }
            }
            if *any && found.is_empty() {
                let range = (t, id, 0u128)..=(t, id, u128::MAX);
                if let Some(e) = self.members()?.range(range)?.next() {
                    let (k, v) = e?;
                    let m = k.value().2;
                    found.push(member_json(m, v.value(), display(m)?));
                }
            }
            m.insert("members".into(), Value::Array(found));
        } else if !e.member_conditions.is_empty() {
            decided = self.member_conditions(t, id, e)?;
        }
        if let Some(groups) = groups {
            m.insert("groups".into(), Value::Array(groups));
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
    pub(super) fn member_conditions<'f>(
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
        let mut shown = Displays::new(self.displays()?, t, id)?;
        for entry in self.members()?.range((t, id, 0u128)..=(t, id, u128::MAX))? {
            let (k, v) = entry?;
            let m = k.value().2;
            batch.push(member_json(m, v.value(), shown.of(m)?));
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
    /// Number of resources of a kind in a tenant.
    pub async fn count(&self, tenant: String, kind: Kind) -> Result<u64, Error> {
        self.read_now(move |r: &ReadSide| {
            let c = r.txn().open_table(COUNTS)?;
            Ok(Ok(plan::count(&c, &tenant, kind.code())?))
        })
    }

    /// Every tenant with users or groups in the database, configured or not.
    pub async fn stored_tenants(&self) -> Result<Vec<String>, Error> {
        // For the console and metrics, whose share is the empty tenant name's.
        self.read("", move |r: &ReadSide| {
            Ok(Ok(tenants_with_data(&r.txn().open_table(COUNTS)?)?))
        })
        .await
    }

    /// A tenant's events after `after`, oldest first, as many as `limit`, of those
    /// `retention` keeps now: a write trims the feed, but a quiet tenant's events must still
    /// age out, and a reload that lowers the count must take effect at once.
    pub async fn events(
        &self,
        tenant: String,
        after: u64,
        limit: usize,
        retention: Retention,
    ) -> Result<Feed, Error> {
        self.read(&tenant.clone(), move |r: &ReadSide| {
            let table = r.txn().open_table(EVENTS)?;
            let seqs = r.txn().open_table(EVENT_SEQ)?;
            let t = tenant.as_str();
            let last = seqs.get(t)?.map(|g| g.value()).unwrap_or(0);
            let now = super::events::now_unix();
            let oldest = super::events::kept(&table, t, last, retention, now)?
                .map_or(last + 1, |(_, keep)| keep);
            let mut out = Vec::new();
            if limit > 0 && after < u64::MAX {
                for e in table
                    .range((t, (after + 1).max(oldest))..=(t, u64::MAX))?
                    .take(limit)
                {
                    let (_, v) = e?;
                    if let Ok(ev) = serde_json::from_slice::<Event>(v.value()) {
                        out.push(ev);
                    }
                }
            }
            Ok(Ok(Feed {
                events: out,
                last,
                oldest,
            }))
        })
        .await
    }

    pub async fn get(
        &self,
        tenant: String,
        kind: Kind,
        id: String,
        with_refs: bool,
    ) -> Result<Resource, Error> {
        self.get_as(tenant, kind, id, with_refs, move |bytes, nid, refs| {
            let mut res = decoded(bytes)?.into_resource(kind, nid);
            res.refs = refs;
            Ok(res)
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
    ) -> Result<Stored, Error> {
        self.get_as(tenant, kind, id, with_refs, move |bytes, nid, refs| {
            Ok(Stored {
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
    ) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&[u8], u128, Option<Vec<Value>>) -> Result<T, redb::Error> + Send + 'static,
    {
        // A group's members can be millions: that read goes to the pool, within the
        // tenant's share (named only then: this is every GET by id).
        let pooled = with_refs && kind == Kind::Group;
        let share = if pooled {
            tenant.clone()
        } else {
            String::new()
        };
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
            Ok(Ok(make(rec.value(), nid, refs)?))
        };
        if pooled {
            self.read(&share, read).await
        } else {
            self.read_now(read)
        }
    }
}

impl Store {
    /// Which of `body`'s unique custom values (`unique_values`, as compared) another
    /// resource in `tenant` holds now, and who: what an import looks up before it writes, as a write would refuse
    /// them (an index entry whose resource no longer holds the value refuses nothing).
    pub fn unique_holders(
        &self,
        tenant: &str,
        rt: crate::scim::schema::Rt,
        body: &crate::scim::resource::Body,
    ) -> Result<Vec<(String, String, u128)>, Error> {
        let wanted = unique_values(rt, body);
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        self.read_now(move |r| {
            let (t, c) = (tenant, rt.kind.code());
            let unique = r.txn().open_table(UNIQUE_ID)?;
            let mut out = Vec::new();
            for (attr, v, spellings) in wanted {
                // The entry keeps its holder's spelling: looked up under each.
                for sp in spellings {
                    let Some(holder) = unique.get((t, c, attr.as_str(), sp.as_str()))? else {
                        continue;
                    };
                    let holder = holder.value();
                    let rec = r
                        .res()?
                        .get((t, c, holder))?
                        .and_then(|g| decode(g.value()));
                    if holds_unique(rec, rt, &attr, &sp) {
                        out.push((attr, v, holder));
                        break;
                    }
                }
            }
            Ok(Ok(out))
        })
    }

    /// The groups of the first of `users` to fit in `budget` references (at least one
    /// user), read in `snapshot`, the one their list page was read in (`ListPage::refs_from`).
    pub async fn groups_of_users(
        &self,
        tenant: String,
        users: Vec<u128>,
        budget: usize,
        snapshot: Snapshot,
    ) -> Result<Vec<Vec<Value>>, Error> {
        let t = tenant.clone();
        self.pooled(&tenant, move |_| {
            let mut out = Vec::new();
            let mut read = 0;
            for id in users {
                if read >= budget && !out.is_empty() {
                    break;
                }
                let refs = snapshot.0.refs(&t, Kind::User, id)?;
                read += refs.len();
                out.push(refs);
            }
            Ok(Ok(out))
        })
        .await
    }

    /// Which of `users` the seat limit has put on the free plan, read in `snapshot` (an
    /// export's, so that the file says where each user stood).
    pub async fn on_free(
        &self,
        tenant: String,
        users: Vec<u128>,
        snapshot: Snapshot,
    ) -> Result<Vec<u128>, Error> {
        let t = tenant.clone();
        self.pooled(&tenant, move |_| {
            let table = snapshot.0.overflow()?;
            let mut out = Vec::new();
            for id in users {
                if table.get((t.as_str(), id))?.is_some() {
                    out.push(id);
                }
            }
            Ok(Ok(out))
        })
        .await
    }

    /// A group's members in id order, in batches, from one read snapshot on the blocking
    /// pool (within the tenant's share of it), then `MemberBatch::End`. The producer waits
    /// while the consumer is behind, so memory stays bounded, but at most `stall` for each
    /// batch: a client that stops reading does not hold a read thread for ever. A stream
    /// without `End` was cut short, and its answer must not be completed.
    /// Read in `snapshot` when given (the one a list page of groups was read in), else in the
    /// latest.
    pub fn member_batches(
        &self,
        tenant: String,
        group: u128,
        stall: std::time::Duration,
        snapshot: Option<Snapshot>,
    ) -> tokio::sync::mpsc::Receiver<MemberBatch> {
        self.member_stream(tenant, group, stall, false, snapshot)
    }

    /// A group (without its members) and then its members, as `member_batches` sends them,
    /// all read in one snapshot: the version (ETag) answered is the one whose members follow,
    /// even while writes go on.
    pub async fn group_with_member_batches(
        &self,
        tenant: String,
        id: &str,
        stall: std::time::Duration,
    ) -> Result<(Resource, tokio::sync::mpsc::Receiver<MemberBatch>), Error> {
        let Some(gid) = parse_id(id) else {
            return Err(not_found(Kind::Group, id));
        };
        let mut rx = self.member_stream(tenant, gid, stall, true, None);
        match rx.recv().await {
            Some(MemberBatch::Head(Some(r))) => Ok((*r, rx)),
            Some(MemberBatch::Head(None)) => Err(not_found(Kind::Group, id)),
            Some(MemberBatch::Failed(e)) => Err(e),
            // The producer logged why.
            _ => Err(Error::Unavailable),
        }
    }

    fn member_stream(
        &self,
        tenant: String,
        group: u128,
        stall: std::time::Duration,
        head: bool,
        snapshot: Option<Snapshot>,
    ) -> tokio::sync::mpsc::Receiver<MemberBatch> {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let db = self.db();
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let Ok(db) = db else {
                return; // the receiver sees no End
            };
            // Every batch is read in one snapshot: the one given, or the latest.
            let snap = match snapshot {
                Some(s) => s.0,
                None => match shared.snapshot(&db) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "reading group members failed");
                        return;
                    }
                },
            };
            drop(db);
            let send = async |m: MemberBatch| {
                tokio::time::timeout(stall, tx.send(m))
                    .await
                    .is_ok_and(|sent| sent.is_ok())
            };
            // A batch at a time, each with a turn of the tenant's share of the read threads,
            // given back while the batch waits for its reader: a client reading a group of
            // a million slowly (or not at all) holds no thread and no turn meanwhile.
            let mut from = 0u128;
            let mut with_head = head;
            let done = loop {
                let turn = shared.read_turn(&tenant, false).await;
                let (s, t) = (snap.clone(), tenant.clone());
                let faults = shared.faults.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let _turn = turn;
                    super::verify::caught(|| {
                        faults.panic_if_set("a read");
                        member_batch(&s, &t, group, from, with_head)
                    })
                })
                .await;
                // The group's record does not decode, or redb found a page corrupted or
                // panicked on one: the file is checked at once, and a request not yet
                // answered gets the 500 any read meeting damage gets.
                let damage = match read {
                    Ok(Ok(Ok(read))) => Ok(read),
                    Ok(Ok(Err(redb::Error::Corrupted(what)))) => {
                        Err(format!("a read met damage: {what}"))
                    }
                    Ok(Ok(Err(e))) => {
                        tracing::error!(error = %e, "reading group members failed");
                        break false;
                    }
                    Ok(Err(said)) => Err(format!("a read panicked: {said}")),
                    Err(_) => break false, // not run: the runtime is shutting down
                };
                let (found, batch, last) = match damage {
                    Ok(read) => read,
                    Err(what) => {
                        super::scrub::suspect(&shared);
                        let failed = super::internal(&what);
                        if with_head {
                            send(MemberBatch::Failed(failed)).await;
                        }
                        break false;
                    }
                };
                if with_head {
                    with_head = false;
                    let missing = found.is_none();
                    if !send(MemberBatch::Head(found)).await || missing {
                        break false;
                    }
                }
                from = match batch.last() {
                    Some((m, _, _)) => m.saturating_add(1),
                    None => from,
                };
                if !batch.is_empty() && !send(MemberBatch::Members(batch)).await {
                    break false; // the client went away or stopped reading
                }
                if last {
                    break true;
                }
            };
            // Let go of the store before the end is told: a console command closing the
            // database right after waits for every holder of it, and this task's last poll
            // may wait on the thread it blocks.
            drop((snap, shared));
            if done {
                send(MemberBatch::End).await;
            }
        });
        rx
    }
}

/// The group `g` (when `head`), and up to `MEMBER_BATCH` of its members from id `from` on,
/// with their kinds and displays; and whether they are the last.
#[allow(clippy::type_complexity)]
fn member_batch(
    s: &ReadSide,
    t: &str,
    g: u128,
    from: u128,
    head: bool,
) -> Result<
    (
        Option<Box<Resource>>,
        Vec<(u128, Kind, Option<String>)>,
        bool,
    ),
    redb::Error,
> {
    let found = match head {
        true => s
            .res()?
            .get((t, Kind::Group.code(), g))?
            .map(|rec| decoded(rec.value()))
            .transpose()?
            .map(|rec| Box::new(rec.into_resource(Kind::Group, g))),
        false => None,
    };
    let mut shown = Displays {
        rows: s.displays()?.range((t, g, from)..=(t, g, u128::MAX))?,
        next: None,
    };
    let mut batch = Vec::with_capacity(MEMBER_BATCH);
    let mut rows = s.members()?.range((t, g, from)..=(t, g, u128::MAX))?;
    while batch.len() < MEMBER_BATCH {
        let Some(e) = rows.next() else {
            return Ok((found, batch, true));
        };
        let (k, v) = e?;
        let m = k.value().2;
        batch.push((m, Kind::of_member_code(v.value()), shown.of(m)?));
    }
    let last = rows.next().is_none();
    Ok((found, batch, last))
}

/// A read snapshot kept for reading on after an answer's first part (see
/// `ListPage::snapshot`).
#[derive(Clone)]
pub struct Snapshot(pub(super) std::sync::Arc<ReadSide>);

/// One message of a group's member stream (`Store::member_batches`).
#[derive(Debug)]
pub enum MemberBatch {
    /// The group itself, first, when asked for (`None`: there is no such group).
    Head(Option<Box<Resource>>),
    /// Members with their kinds and displays.
    Members(Vec<(u128, Kind, Option<String>)>),
    /// Every member was sent.
    End,
    /// The group could not be read (its record does not parse): its request's error, sent
    /// in place of `Head`.
    Failed(Error),
}

/// Every tenant with users or groups, in name order, from the per-kind counts.
pub(super) fn tenants_with_data(
    counts: &impl ReadableTable<(&'static str, u8), u64>,
) -> Result<Vec<String>, redb::Error> {
    let mut names: Vec<String> = Vec::new();
    for e in counts.iter()? {
        let (k, v) = e?;
        let t = k.value().0;
        if v.value() > 0 && names.last().is_none_or(|l| l != t) {
            names.push(t.to_string());
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let stored = || Stored {
                kind: Kind::User,
                id: format_id(42),
                record: bytes.clone(),
                refs: refs.clone(),
            };
            let (text, etag) = stored().default_json(base, Kind::User.into()).unwrap();
            let mut res = decode(&bytes).unwrap().into_resource(Kind::User, 42);
            res.refs = refs.clone();
            assert_eq!(etag, res.etag());
            // Decoded for a projection, it is the resource the store decodes.
            let own = stored().into_resource(|_| true).unwrap();
            assert_eq!(own.etag(), etag);
            assert_eq!(own.to_json(base), res.to_json(base));
            // Decoded in part, it holds only what was asked for, and the same times.
            let part = stored().into_resource(|k| k == "userName").unwrap();
            assert_eq!(part.body.keys().collect::<Vec<_>>(), ["userName"]);
            assert_eq!(part.body["userName"], res.body["userName"]);
            assert_eq!(
                (&part.created, &part.modified, part.version, part.etag()),
                (&res.created, &res.modified, res.version, etag.clone())
            );
            let mut want = res.into_json(base);
            crate::scim::projection::Projection::default().apply(Kind::User, &mut want);
            assert_eq!(
                String::from_utf8(text).unwrap(),
                serde_json::to_string(&Value::Object(want)).unwrap()
            );
        }
        // A record whose text is not UTF-8 (a byte changed on disk) is not rendered.
        let rec = Record {
            body: serde_json::from_value(serde_json::json!({"userName": "b", "title": "é"}))
                .unwrap(),
            created: "2026-11-30T10:00:00Z".into(),
            modified: "2026-11-30T10:00:00Z".into(),
            version: 1,
        };
        let mut bytes = encode(&rec);
        let at = bytes.iter().position(|&b| b == 0xc3).unwrap();
        bytes[at] = 0xff;
        let stored = || Stored {
            kind: Kind::User,
            id: format_id(42),
            record: bytes.clone(),
            refs: None,
        };
        assert!(
            stored()
                .default_json("https://x", Kind::User.into())
                .is_none()
        );
        assert!(stored().into_resource(|_| true).is_none());
    }
}
