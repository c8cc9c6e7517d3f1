//! Paid-plan membership. The IdP's active users are the allow-list: while a tenant has at
//! most `test_threshold` active users it is in testing mode (existing paid members keep their
//! seats); past it, exactly the active seated users are paid. The mode counts every active
//! user, seated or not: users put on the free plan by the seat limit are still a roll-out
//! past testing. Counters live in the same transaction as the user writes, so the mode
//! switches on the write that crosses the threshold.

use std::collections::BTreeSet;

use redb::{ReadableMultimapTable, ReadableTable, Table};
use serde::Serialize;
use serde_json::Value;

use super::Error;
use crate::scim::resource::Body;
use crate::scim::schema::Kind;

/// Counter keys in `COUNTS` beside the resource kinds' codes.
pub const ACTIVE: u8 = 101;
pub const OVERFLOW: u8 = 102;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SeatPolicy {
    Reject,
    Free,
}

#[derive(Debug, Clone)]
pub struct PlanRules {
    pub name: String,
    pub test_threshold: u64,
    pub seats: Option<u64>,
    pub on_seat_limit: SeatPolicy,
    /// Folded userNames or emails of people paid before provisioning started.
    pub existing_members: Vec<String>,
    /// Each folded entry as the configuration spells it (its first spelling), for showing.
    pub existing_shown: std::collections::HashMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Testing,
    Enforced,
}

impl Mode {
    /// The mode's name in the change feed and the plan summary.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Testing => "testing",
            Mode::Enforced => "enforced",
        }
    }
}

impl PlanRules {
    pub fn mode(&self, active: u64) -> Mode {
        mode_at(self.test_threshold, active)
    }
}

fn mode_at(test_threshold: u64, active: u64) -> Mode {
    if active > test_threshold {
        Mode::Enforced
    } else {
        Mode::Testing
    }
}

/// A tenant's plan settings as last applied, kept in `META` so that settings changed while
/// scimd was stopped are applied at the next start as a reload applies them (events, mode,
/// seats), not found silently in force. Text settings are kept as digests: what matters is
/// whether they changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// `None`: no plan table.
    rules: Option<[u64; 5]>,
}

/// The settings `Applied` keeps, in its order; the names the change feed gives them.
const SETTINGS: [&str; 5] = [
    "name",
    "test_threshold",
    "seats",
    "on_seat_limit",
    "existing_members",
];

impl Applied {
    pub fn of(rules: Option<&PlanRules>) -> Applied {
        let digest = |parts: &[&str]| {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            for p in parts {
                h.update(p.as_bytes());
                h.update([0]);
            }
            let d = h.finalize();
            u64::from_le_bytes(d[..8].try_into().unwrap_or_default())
        };
        Applied {
            rules: rules.map(|r| {
                let members: BTreeSet<&str> =
                    r.existing_members.iter().map(String::as_str).collect();
                [
                    digest(&[&r.name]),
                    r.test_threshold,
                    r.seats.unwrap_or(u64::MAX),
                    r.on_seat_limit as u64,
                    digest(&members.into_iter().collect::<Vec<_>>()),
                ]
            }),
        }
    }

    fn key(tenant: &str, setting: &str) -> String {
        format!("plan/{tenant}/{setting}")
    }

    /// What was last applied for `tenant`; `None` when nothing was recorded yet (a database
    /// from before this record).
    pub fn read(
        meta: &impl ReadableTable<&'static str, u64>,
        tenant: &str,
    ) -> Result<Option<Applied>, redb::Error> {
        let Some(present) = meta.get(Applied::key(tenant, "present").as_str())? else {
            return Ok(None);
        };
        if present.value() == 0 {
            return Ok(Some(Applied { rules: None }));
        }
        let mut rules = [0; 5];
        for (slot, name) in rules.iter_mut().zip(SETTINGS) {
            *slot = meta
                .get(Applied::key(tenant, name).as_str())?
                .map(|g| g.value())
                .unwrap_or_default();
        }
        Ok(Some(Applied { rules: Some(rules) }))
    }

    pub fn write(
        &self,
        meta: &mut Table<&'static str, u64>,
        tenant: &str,
    ) -> Result<(), redb::Error> {
        meta.insert(
            Applied::key(tenant, "present").as_str(),
            u64::from(self.rules.is_some()),
        )?;
        for (i, name) in SETTINGS.iter().enumerate() {
            let key = Applied::key(tenant, name);
            match self.rules {
                Some(r) => meta.insert(key.as_str(), r[i])?,
                None => meta.remove(key.as_str())?,
            };
        }
        Ok(())
    }

    /// Take `tenant`'s record out (a purge: a tenant added again under the name starts
    /// without one).
    pub fn forget(meta: &mut Table<&'static str, u64>, tenant: &str) -> Result<(), redb::Error> {
        for name in std::iter::once("present").chain(SETTINGS) {
            meta.remove(Applied::key(tenant, name).as_str())?;
        }
        Ok(())
    }

    /// The settings that differ from `was`, by the names the change feed uses (`plan` when
    /// the table itself came or went).
    pub fn changed_since(&self, was: &Applied) -> Vec<String> {
        match (was.rules, self.rules) {
            (None, None) => Vec::new(),
            (Some(a), Some(b)) => SETTINGS
                .iter()
                .zip(a.iter().zip(b.iter()))
                .filter(|(_, (x, y))| x != y)
                .map(|(name, _)| name.to_string())
                .collect(),
            _ => vec!["plan".into()],
        }
    }

    /// What applying these settings over `was` (as recorded) changes, at `active` users.
    /// No record: a database from before it, or a tenant not configured since. What was
    /// applied is unknown, so a plan there now is treated as new (the feed tells readers to
    /// read it again, and seats open go to users waiting on the free plan, as an older
    /// version may have left them); a tenant with no active user has nothing to re-read.
    /// Returns the record to compare with, and the settings changed.
    pub fn over(&self, was: Option<Applied>, active: u64) -> (Applied, Vec<String>) {
        let was = match was {
            Some(was) => was,
            None if active == 0 => self.clone(),
            None => Applied::of(None),
        };
        let changed = self.changed_since(&was);
        (was, changed)
    }

    /// The mode these settings gave at `active` users; `None` without a plan.
    pub fn mode(&self, active: u64) -> Option<Mode> {
        self.rules.map(|r| mode_at(r[1], active))
    }
}

/// The plan rules each tenant's writes follow: those its last committed `plan_applied`
/// recorded, not those the request behind a write started with. A write begun before a
/// reload and committed after it would otherwise judge the mode by the old threshold once
/// the feed had said the new one was in force (a switch the feed never undid, or one told
/// twice). A tenant with none recorded since the start follows the request's.
#[derive(Debug, Default)]
pub(super) struct InForce(std::sync::Mutex<std::collections::HashMap<String, Rules>>);

/// A tenant's plan rules: `None` without a plan table.
pub(super) type Rules = Option<std::sync::Arc<PlanRules>>;

impl InForce {
    fn map(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Rules>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn get(&self, tenant: &str) -> Option<Rules> {
        self.map().get(tenant).cloned()
    }

    /// `rules`, found equal to those recorded, for a tenant with none yet: a committed
    /// change, which may have come since they were compared, is not overwritten.
    pub(super) fn first(&self, tenant: &str, rules: Rules) {
        self.map().entry(tenant.to_string()).or_insert(rules);
    }

    /// What a committed batch applied (`Changes`): `None` forgets the tenant (a purge).
    pub(super) fn commit(&self, changes: Changes) {
        let mut map = self.map();
        for (t, rules) in changes {
            match rules {
                Some(r) => map.insert(t, r),
                None => map.remove(&t),
            };
        }
    }
}

/// The rules a batch's jobs applied, in force for its later jobs and, once it commits, for
/// every later write (`InForce::commit`).
pub(super) type Changes = std::collections::HashMap<String, Option<Rules>>;

pub fn is_active(body: &Body) -> bool {
    body.get("active") != Some(&Value::Bool(false))
}

/// What a user becoming active gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seat {
    Paid,
    /// Over the seat limit with `on_seat_limit = "free"`.
    Overflow,
}

/// Check phase: may one more user become active? Reads only.
pub fn seat_for_new_active(
    rules: Option<&PlanRules>,
    counts: &impl ReadableTable<(&'static str, u8), u64>,
    t: &str,
) -> Result<Result<Seat, Error>, redb::Error> {
    let Some(r) = rules else {
        return Ok(Ok(Seat::Paid));
    };
    let Some(seats) = r.seats else {
        return Ok(Ok(Seat::Paid));
    };
    let seated = seated(counts, t)?;
    if seated < seats {
        return Ok(Ok(Seat::Paid));
    }
    Ok(match r.on_seat_limit {
        SeatPolicy::Free => Ok(Seat::Overflow),
        SeatPolicy::Reject => Err(Error::SeatsTaken {
            plan: r.name.clone(),
            seats,
        }),
    })
}

pub fn count(
    counts: &impl ReadableTable<(&'static str, u8), u64>,
    t: &str,
    key: u8,
) -> Result<u64, redb::Error> {
    Ok(counts.get((t, key))?.map(|g| g.value()).unwrap_or(0))
}

/// Active provisioned users, seated or on the free plan: what the mode follows.
pub fn active(
    counts: &impl ReadableTable<(&'static str, u8), u64>,
    t: &str,
) -> Result<u64, redb::Error> {
    count(counts, t, ACTIVE)
}

pub fn seated(
    counts: &impl ReadableTable<(&'static str, u8), u64>,
    t: &str,
) -> Result<u64, redb::Error> {
    Ok(count(counts, t, ACTIVE)?.saturating_sub(count(counts, t, OVERFLOW)?))
}

pub fn add(
    counts: &mut Table<(&'static str, u8), u64>,
    t: &str,
    key: u8,
    delta: i64,
) -> Result<(), redb::Error> {
    let n = count(counts, t, key)?;
    let n = if delta >= 0 {
        n + delta as u64
    } else {
        n.saturating_sub(delta.unsigned_abs())
    };
    counts.insert((t, key), n)?;
    Ok(())
}

/// A person's plan status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Paid,
    Free,
    Deactivated,
}

/// Status of a provisioned user; `keeps_seat`: it holds an existing member's seat (one user
/// per existing member).
pub fn user_status(mode: Mode, active: bool, overflow: bool, keeps_seat: bool) -> Status {
    match (active, overflow) {
        // Testing mode takes nothing away from people who were paid before.
        _ if mode == Mode::Testing && keeps_seat => Status::Paid,
        (false, _) => Status::Deactivated,
        (true, true) => Status::Free,
        (true, false) => Status::Paid,
    }
}

impl Status {
    /// The status's name in the change feed and the plan list.
    pub fn name(self) -> &'static str {
        match self {
            Status::Paid => "paid",
            Status::Free => "free",
            Status::Deactivated => "deactivated",
        }
    }
}

/// A stored user's (active, placed on free by the seat limit).
pub type SeatState = (bool, bool);

/// Which of `ids`, the users matching one existing member, holds that person's one seat in
/// testing mode, with its state: an active seated user (paid anyway), else an active one
/// the seat limit put on free, else a deactivated one; the oldest of equals. The others
/// have the status they would have without the entry: a person re-created in the IdP, the
/// old account deactivated beside the new, is one seat, not two. (The plan list and the
/// writes that move a seat between accounts both read it here.)
pub fn keeper(
    res: &impl ReadableTable<(&'static str, u8, u128), &'static [u8]>,
    overflow: &impl ReadableTable<(&'static str, u128), ()>,
    t: &str,
    ids: impl IntoIterator<Item = u128>,
) -> Result<Option<(u128, SeatState)>, redb::Error> {
    let rank = |state: SeatState| match state {
        (true, false) => 0u8,
        (true, true) => 1,
        (false, _) => 2,
    };
    let mut best: Option<(u128, SeatState)> = None;
    for id in ids {
        if let Some(state) = seat_state(res, overflow, t, id)?
            && best.is_none_or(|(b, s)| (rank(state), id) < (rank(s), b))
        {
            best = Some((id, state));
        }
    }
    Ok(best)
}

/// A stored user's state; `None` when it is gone or does not decode.
pub fn seat_state(
    res: &impl ReadableTable<(&'static str, u8, u128), &'static [u8]>,
    overflow: &impl ReadableTable<(&'static str, u128), ()>,
    t: &str,
    id: u128,
) -> Result<Option<SeatState>, redb::Error> {
    let Some(rec) = res
        .get((t, Kind::User.code(), id))?
        .and_then(|g| super::record::decode(g.value()))
    else {
        return Ok(None);
    };
    Ok(Some((
        is_active(&rec.body),
        overflow.get((t, id))?.is_some(),
    )))
}

/// Status of an existing member that no provisioned user matches.
pub fn unmatched_status(mode: Mode) -> Status {
    match mode {
        Mode::Testing => Status::Paid,
        Mode::Enforced => Status::Free,
    }
}

/// The existing-member entries a user's body matches (by its userName or any email,
/// folded as the entries are).
pub fn entries_matching<'r>(rules: &'r PlanRules, body: &Body) -> Vec<&'r str> {
    let fold = crate::scim::fold::fold;
    let mut names: BTreeSet<String> = crate::scim::resource::email_values(body)
        .map(fold)
        .collect();
    if let Some(u) = body.get("userName").and_then(Value::as_str) {
        names.insert(fold(u));
    }
    rules
        .existing_members
        .iter()
        .filter(|m| names.contains(m.as_str()))
        .map(String::as_str)
        .collect()
}

/// Ids of provisioned users matching an existing-member entry.
pub fn matches_of(
    usernames: &impl ReadableTable<(&'static str, &'static str), u128>,
    emails: &impl ReadableMultimapTable<(&'static str, &'static str), u128>,
    t: &str,
    member: &str,
) -> Result<BTreeSet<u128>, redb::Error> {
    let mut out = BTreeSet::new();
    if let Some(id) = super::alike::holder(usernames, t, member)? {
        out.insert(id);
    }
    for v in emails.get((t, member))? {
        out.insert(v?.value());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_mode() {
        use Mode::*;
        assert_eq!(user_status(Testing, true, false, false), Status::Paid);
        assert_eq!(user_status(Testing, false, false, true), Status::Paid);
        assert_eq!(
            user_status(Enforced, false, false, true),
            Status::Deactivated
        );
        assert_eq!(user_status(Enforced, true, true, false), Status::Free);
        assert_eq!(unmatched_status(Testing), Status::Paid);
        assert_eq!(unmatched_status(Enforced), Status::Free);
        let r = PlanRules {
            name: "B".into(),
            test_threshold: 2,
            seats: None,
            on_seat_limit: SeatPolicy::Reject,
            existing_members: vec![],
            existing_shown: Default::default(),
        };
        assert_eq!((r.mode(2), r.mode(3)), (Testing, Enforced));
    }

    #[test]
    fn applied_settings_name_what_changed() {
        let r = PlanRules {
            name: "B".into(),
            test_threshold: 2,
            seats: Some(5),
            on_seat_limit: SeatPolicy::Reject,
            existing_members: vec!["a".into(), "b".into()],
            existing_shown: Default::default(),
        };
        let was = Applied::of(Some(&r));
        // The same members in another order are the same settings.
        let mut same = r.clone();
        same.existing_members.reverse();
        assert_eq!(Applied::of(Some(&same)), was);
        let mut other = r.clone();
        other.seats = None;
        other.on_seat_limit = SeatPolicy::Free;
        other.existing_members.push("c".into());
        assert_eq!(
            Applied::of(Some(&other)).changed_since(&was),
            ["seats", "on_seat_limit", "existing_members"]
        );
        assert_eq!(Applied::of(None).changed_since(&was), ["plan"]);
        assert_eq!(was.changed_since(&Applied::of(None)), ["plan"]);
        assert!(
            Applied::of(None)
                .changed_since(&Applied::of(None))
                .is_empty()
        );
        assert_eq!(was.mode(3), Some(Mode::Enforced));
        assert_eq!(Applied::of(None).mode(3), None);
        // No record: new to a tenant with active users, nothing to one without.
        assert!(was.over(None, 0).1.is_empty());
        assert_eq!(was.over(None, 1).1, ["plan"]);
        assert_eq!(
            Applied::of(Some(&other)).over(Some(was.clone()), 1).1.len(),
            3
        );
    }

    #[test]
    fn a_body_matches_entries_by_user_name_or_any_email_ignoring_case() {
        let r = PlanRules {
            name: "B".into(),
            test_threshold: 2,
            seats: Some(1),
            on_seat_limit: SeatPolicy::Free,
            existing_members: vec!["ceo@x".into(), "ops@x".into(), "cfo@x".into()],
            existing_shown: Default::default(),
        };
        let body = |v: Value| v.as_object().cloned().unwrap_or_default();
        let b = body(serde_json::json!({
            "userName": "CEO@x",
            "emails": [{"value": "Ops@X"}, {"value": "someone@x"}]
        }));
        assert_eq!(entries_matching(&r, &b), ["ceo@x", "ops@x"]);
        let b = body(serde_json::json!({"userName": "ceo@y", "emails": [{"value": "x@x"}]}));
        assert!(entries_matching(&r, &b).is_empty());
    }
}
