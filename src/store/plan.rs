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
        if active > self.test_threshold {
            Mode::Enforced
        } else {
            Mode::Testing
        }
    }
}

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

/// Status of an existing member that no provisioned user matches.
pub fn unmatched_status(mode: Mode) -> Status {
    match mode {
        Mode::Testing => Status::Paid,
        Mode::Enforced => Status::Free,
    }
}

/// Ids of provisioned users matching an existing-member entry.
pub fn matches_of(
    usernames: &impl ReadableTable<(&'static str, &'static str), u128>,
    emails: &impl ReadableMultimapTable<(&'static str, &'static str), u128>,
    t: &str,
    member: &str,
) -> Result<BTreeSet<u128>, redb::Error> {
    let mut out = BTreeSet::new();
    if let Some(g) = usernames.get((t, member))? {
        out.insert(g.value());
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
}
