//! The change feed: every committed change appends events in the same transaction, with a
//! per-tenant sequence number. Events carry ids and attribute names, never personal values.

use redb::{ReadableTable, Table};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::scim::resource::Body;
use crate::scim::schema::Kind;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    pub seq: u64,
    pub time: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub resource_id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub member_id: Option<String>,
    /// `User` or `Group`, beside `member_id`: which endpoint reads the member.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub member_type: Option<String>,
    pub token: String,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub attributes: Vec<String>,
    /// `plan.changed`: the mode before and after.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub to: Option<String>,
}

/// Who wrote, and how long their tenant keeps events.
#[derive(Debug, Clone)]
pub struct Actor {
    pub tenant: String,
    pub token: String,
    pub retention: Retention,
    pub plan: Option<std::sync::Arc<super::plan::PlanRules>>,
    /// Attribute paths whose changes after creation are ignored.
    pub create_only: std::sync::Arc<Vec<String>>,
}

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Most events kept per tenant.
    pub max_count: u64,
    /// Oldest event kept, in seconds; `None` keeps events of any age.
    pub max_age_secs: Option<u64>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_count: 100_000,
            max_age_secs: None,
        }
    }
}

/// Names of the attributes that differ between two bodies; extension attributes as
/// `urn:...:name`.
pub fn changed_attributes(old: &Body, new: &Body) -> Vec<String> {
    let mut out = Vec::new();
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for k in keys {
        let (a, b) = (old.get(k), new.get(k));
        if a == b {
            continue;
        }
        match (a, b) {
            (Some(Value::Object(x)), Some(Value::Object(y))) if k.starts_with("urn:") => {
                let sub: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                out.extend(
                    sub.into_iter()
                        .filter(|s| x.get(*s) != y.get(*s))
                        .map(|s| format!("{k}:{s}")),
                );
            }
            (Some(Value::Object(x)), None) | (None, Some(Value::Object(x)))
                if k.starts_with("urn:") =>
            {
                out.extend(x.keys().map(|s| format!("{k}:{s}")));
            }
            _ => out.push(k.clone()),
        }
    }
    out
}

/// As `changed_attributes`, for an update of a `kind`: an attribute that reads as a value
/// while unset (a user's `active`) has not changed when an IdP sends that value for it.
pub fn updated_attributes(kind: Kind, old: &Body, new: &Body) -> Vec<String> {
    let mut attrs = changed_attributes(old, new);
    for (name, unset) in kind.schema().unset_values() {
        let reads = |b: &Body| b.get(name).cloned().unwrap_or(Value::Bool(unset));
        if reads(old) == reads(new) {
            attrs.retain(|a| a != name);
        }
    }
    attrs
}

/// The event type of an update: deactivation and reactivation are told apart for users.
pub fn update_kind(kind: Kind, old: &Body, new: &Body) -> &'static str {
    if kind == Kind::Group {
        return "group.updated";
    }
    let active = |b: &Body| b.get("active") != Some(&Value::Bool(false));
    match (active(old), active(new)) {
        (true, false) => "user.deactivated",
        (false, true) => "user.reactivated",
        _ => "user.updated",
    }
}

pub type EventTable<'t> = Table<'t, (&'static str, u64), &'static [u8]>;
pub type SeqTable<'t> = Table<'t, &'static str, u64>;

/// An event before it has a sequence number and time.
pub struct NewEvent {
    pub kind: &'static str,
    pub resource_id: String,
    pub member_id: Option<String>,
    pub member_type: Option<Kind>,
    pub attributes: Vec<String>,
    pub from_to: Option<(String, String)>,
}

/// Append one event and trim what retention no longer keeps.
pub fn append(
    events: &mut EventTable,
    seqs: &mut SeqTable,
    actor: &Actor,
    new: NewEvent,
) -> Result<(), redb::Error> {
    let now_unix = now_unix();
    let t = actor.tenant.as_str();
    let seq = seqs.get(t)?.map(|g| g.value()).unwrap_or(0) + 1;
    seqs.insert(t, seq)?;
    let ev = Event {
        seq,
        // From the clock lastModified comes from: later than every time before it.
        time: super::record::now(),
        kind: new.kind.to_string(),
        resource_id: new.resource_id,
        member_id: new.member_id,
        member_type: new.member_type.map(|k| k.as_str().to_string()),
        token: actor.token.clone(),
        attributes: new.attributes,
        from: new.from_to.as_ref().map(|f| f.0.clone()),
        to: new.from_to.map(|f| f.1),
    };
    let bytes = serde_json::to_vec(&ev).unwrap_or_default();
    events.insert((t, seq), bytes.as_slice())?;
    // Trim from the oldest end; each append removes at most a bounded number of entries.
    trim_tenant(events, actor, seq, now_unix)
}

/// Pass one sequence number without an event. The feed's reader treats every event before
/// its oldest kept one as gone, so a reader whose `after` is below the skipped number gets
/// 410 and reads the directory again: what purges and restores do when the events a reader
/// may have seen no longer describe the data.
pub fn skip_one(seqs: &mut SeqTable, tenant: &str) -> Result<u64, redb::Error> {
    let next = seqs.get(tenant)?.map(|g| g.value()).unwrap_or(0) + 1;
    seqs.insert(tenant, next)?;
    Ok(next)
}

fn trim_tenant(
    events: &mut EventTable,
    actor: &Actor,
    seq: u64,
    now_unix: u64,
) -> Result<(), redb::Error> {
    let t = actor.tenant.as_str();
    let Some((first, keep)) = kept(events, t, seq, actor.retention, now_unix)? else {
        return Ok(());
    };
    // Reads hold retention, so the oldest events may wait: removed `TRIM_BATCH` at a time,
    // they cost one append in `TRIM_BATCH` a write at the feed's far end instead of every
    // append (a path of B-tree pages each commit must write). At most that many per append.
    if keep.saturating_sub(first) >= TRIM_BATCH {
        for s in first..first + TRIM_BATCH {
            events.remove((t, s))?;
        }
    }
    Ok(())
}

/// Take out of tenant `t`'s feed, whose newest event is `last`, every event `retention`
/// no longer keeps; how many.
pub fn trim_all(
    events: &mut EventTable,
    t: &str,
    last: u64,
    retention: Retention,
) -> Result<u64, redb::Error> {
    let Some((first, keep)) = kept(events, t, last, retention, now_unix())? else {
        return Ok(0);
    };
    let mut gone = 0;
    for s in first..keep {
        gone += u64::from(events.remove((t, s))?.is_some());
    }
    Ok(gone)
}

/// Of tenant `t`'s feed, whose newest event is `last`: its oldest stored event and the
/// first `retention` keeps, or `None` when it stores none. What appends trim to, reads serve
/// from, and a reload trims to.
pub fn kept(
    events: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    t: &str,
    last: u64,
    retention: Retention,
    now_unix: u64,
) -> Result<Option<(u64, u64)>, redb::Error> {
    let first = match events.range((t, 0u64)..=(t, u64::MAX))?.next() {
        Some(e) => e?.0.value().1,
        None => return Ok(None),
    };
    let keep = first_kept(
        |s| Ok(events.get((t, s))?.map(|v| v.value().to_vec())),
        first,
        last,
        retention,
        now_unix,
    )?;
    Ok(Some((first, keep)))
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

/// How many events a trim removes at once (and how many past retention may wait for it).
const TRIM_BATCH: u64 = 64;

/// The first event `retention` keeps of a feed whose oldest stored event is `first` and
/// newest `last` (`last + 1` if none): within the newest `max_count`, and young enough.
/// Sequence numbers follow time, so a binary search finds the first young enough in a few
/// reads however many events have aged out.
fn first_kept(
    read: impl Fn(u64) -> Result<Option<Vec<u8>>, redb::Error>,
    first: u64,
    last: u64,
    retention: Retention,
    now_unix: u64,
) -> Result<u64, redb::Error> {
    let from = first.max(last.saturating_sub(retention.max_count) + 1);
    let Some(age) = retention.max_age_secs else {
        return Ok(from);
    };
    let too_old = |seq| -> Result<bool, redb::Error> {
        Ok(read(seq)?
            .and_then(|v| serde_json::from_slice::<Event>(&v).ok())
            .and_then(|e| parse_unix(&e.time))
            .is_none_or(|t0| now_unix.saturating_sub(t0) > age))
    };
    // Mostly the first is young enough already: one read, as on every append.
    if from > last || !too_old(from)? {
        return Ok(from);
    }
    let (mut lo, mut hi) = (from + 1, last.saturating_add(1));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if too_old(mid)? {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

fn parse_unix(s: &str) -> Option<u64> {
    crate::scim::datetime::parse(s).and_then(|t| u64::try_from(t.unix_timestamp()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_sent_as_true_for_a_user_without_it_is_no_change() {
        let body = |v: Value| v.as_object().unwrap().clone();
        let unset = body(serde_json::json!({"userName": "a", "title": "x"}));
        let on = body(serde_json::json!({"userName": "a", "title": "y", "active": true}));
        let off = body(serde_json::json!({"userName": "a", "title": "x", "active": false}));
        assert_eq!(updated_attributes(Kind::User, &unset, &on), ["title"]);
        assert_eq!(updated_attributes(Kind::User, &on, &unset), ["title"]);
        assert_eq!(updated_attributes(Kind::User, &unset, &off), ["active"]);
        assert_eq!(
            updated_attributes(Kind::User, &on, &off),
            ["active", "title"]
        );
        // Creates list what was sent.
        assert_eq!(
            changed_attributes(&Body::new(), &on),
            ["active", "title", "userName"]
        );
    }

    fn at(seq: u64, unix: u64) -> Vec<u8> {
        let time = time::OffsetDateTime::from_unix_timestamp(unix as i64)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        serde_json::to_vec(
            &serde_json::json!({"seq": seq, "time": time, "type": "user.created",
            "resource_id": "x", "token": "t"}),
        )
        .unwrap()
    }

    #[test]
    fn the_first_kept_event_is_among_the_newest_and_young_enough() {
        // Events 5..=20, one a day apart, read "now" = day 20; kept: at most 3 days old.
        let day = 86_400;
        let read = |seq: u64| Ok((5..=20).contains(&seq).then(|| at(seq, seq * day)));
        let keep = |age_days: Option<u64>| Retention {
            max_count: 100,
            max_age_secs: age_days.map(|d| d * day),
        };
        assert_eq!(
            first_kept(read, 5, 20, keep(Some(3)), 20 * day).unwrap(),
            17
        );
        assert_eq!(first_kept(read, 5, 20, keep(None), 20 * day).unwrap(), 5);
        // All aged out: none kept.
        assert_eq!(
            first_kept(read, 5, 20, keep(Some(3)), 40 * day).unwrap(),
            21
        );
        // None aged out.
        assert_eq!(
            first_kept(read, 5, 20, keep(Some(30)), 20 * day).unwrap(),
            5
        );
        // The newest `max_count` only, whatever their age.
        let newest_three = Retention {
            max_count: 3,
            max_age_secs: None,
        };
        assert_eq!(first_kept(read, 5, 20, newest_three, 20 * day).unwrap(), 18);
        // An empty feed.
        assert_eq!(
            first_kept(read, 21, 20, keep(Some(3)), 20 * day).unwrap(),
            21
        );
    }
}
