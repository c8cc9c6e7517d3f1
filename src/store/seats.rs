//! The paid plan's seats inside a write: which seat a user becoming active gets, the
//! counters a user's change moves, and the users the seat limit put on the free plan
//! moved back to paid, earliest first, as seats come free.

use redb::ReadableTable;

use super::events::{self, Actor, NewEvent};
use super::plan::{self, Mode, Seat};
use super::write::W;
use super::{R, format_id};
use crate::scim::resource::Body;
use crate::scim::schema::Kind;

/// The other accounts of the existing-members entries a user write touches, with their plan
/// status before it (`W::entry_mates`).
pub(super) struct Mates {
    before: Vec<(u128, plan::Status)>,
}

impl W<'_> {
    /// Check phase for a user write: the seat a user becoming active gets, or the refusal.
    /// `existing` is the user being reactivated; a refused create has no id to name.
    pub(super) fn seat_check(
        &mut self,
        actor: &Actor,
        existing: Option<u128>,
        body: &Body,
        (was_active, now_active): (bool, bool),
    ) -> R<Option<Seat>> {
        if was_active || !now_active {
            return Ok(Ok(None));
        }
        let rules = self.rules(actor);
        match plan::seat_for_new_active(rules.as_deref(), &self.counts, &actor.tenant)? {
            Ok(Seat::Paid) => Ok(Ok(Some(Seat::Paid))),
            // A trial takes nothing from people paid before it: an existing member's own
            // account is seated on top of the limit (as seats lowered by a reload are), not
            // refused or put on free while its person is paid anyway.
            _ if self.holds_existing_seat(actor, existing, body)? => Ok(Ok(Some(Seat::Paid))),
            // In testing mode the seats existing members' accounts hold are on top of the
            // limit whichever came first, so the order users arrive in changes no one's plan.
            _ if self.open_beside_existing(actor, 1)? > 0 => Ok(Ok(Some(Seat::Paid))),
            Ok(seat) => Ok(Ok(Some(seat))),
            Err(e) => {
                // Refused writes change no resource, but the feed says a seat was refused.
                self.emit_plan(actor, "plan.seat_rejected", existing, None)?;
                Ok(Err(e))
            }
        }
    }

    /// Whether a user becoming active, in testing mode once it is counted, is the account
    /// of an existing member that no other active account already holds the seat for.
    fn holds_existing_seat(
        &self,
        actor: &Actor,
        id: Option<u128>,
        body: &Body,
    ) -> Result<bool, redb::Error> {
        let rules = self.rules(actor);
        let Some(rules) = rules.as_deref() else {
            return Ok(false);
        };
        let t = actor.tenant.as_str();
        if rules.mode(plan::active(&self.counts, t)? + 1) != Mode::Testing {
            return Ok(false);
        }
        for entry in plan::entries_matching(rules, body) {
            let mut held = false;
            for other in plan::matches_of(&self.usernames, &self.emails, t, entry)? {
                if Some(other) != id
                    && let Some(rec) = self.load(t, Kind::User, other)?
                    && plan::is_active(&rec.body)
                {
                    held = true;
                    break;
                }
            }
            if !held {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Seats open beyond those existing members' accounts hold, in testing mode once
    /// `joining` more users are counted active; 0 in enforced mode or without a limit (whose
    /// seats the counters alone answer).
    fn open_beside_existing(&self, actor: &Actor, joining: u64) -> Result<u64, redb::Error> {
        let rules = self.rules(actor);
        let Some(rules) = rules.as_deref() else {
            return Ok(0);
        };
        let t = actor.tenant.as_str();
        let Some(seats) = rules.seats else {
            return Ok(0);
        };
        if rules.existing_members.is_empty()
            || rules.mode(plan::active(&self.counts, t)? + joining) != Mode::Testing
        {
            return Ok(0);
        }
        let seated = plan::seated(&self.counts, t)?;
        let (_, holders) = self.entries_held(t, rules)?;
        Ok(seats.saturating_sub(seated.saturating_sub(holders)))
    }

    /// The existing members' entries a seated account holds, and those accounts: an account
    /// matching two entries is one person's, and holds one seat.
    fn entries_held(&self, t: &str, rules: &plan::PlanRules) -> Result<(u64, u64), redb::Error> {
        let (mut held, mut holders) = (0, std::collections::BTreeSet::new());
        for entry in &rules.existing_members {
            if let (Some(id), _) = self.holders(t, entry)? {
                held += 1;
                holders.insert(id);
            }
        }
        Ok((held, holders.len() as u64))
    }

    /// Whether seated user `id` holds an existing member's seat (on top of the limit in
    /// testing mode).
    /// Only the entries `body` (the user's, as indexed now) matches are looked up: a user
    /// PATCH matching none reads nothing more.
    pub(super) fn holds_entry_seat(
        &self,
        actor: &Actor,
        id: u128,
        body: &Body,
    ) -> Result<bool, redb::Error> {
        let rules = self.rules(actor);
        let Some(rules) = rules.as_deref().filter(|r| r.seats.is_some()) else {
            return Ok(false);
        };
        for entry in plan::entries_matching(rules, body) {
            if self.holders(&actor.tenant, entry)?.0 == Some(id) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// In testing mode, how far the paid are past the limits, as `back_in_line` compares
    /// them before and after an entry's account changes: the people paid (the seated users,
    /// and each entry no seated account holds) past the entries and `seats` together; and
    /// the ordinary seated users (those holding no entry) past `seats`. Reloads that lower
    /// `seats` may leave some of either.
    pub(super) fn paid_past_limits(&self, actor: &Actor) -> Result<(u64, u64), redb::Error> {
        let t = actor.tenant.as_str();
        let rules = self.rules(actor);
        let Some((rules, seats)) = rules.as_deref().and_then(|r| Some((r, r.seats?))) else {
            return Ok((0, 0));
        };
        if rules.mode(plan::active(&self.counts, t)?) != Mode::Testing {
            return Ok((0, 0));
        }
        let (held, holders) = self.entries_held(t, rules)?;
        let seated = plan::seated(&self.counts, t)?;
        Ok((
            seated.saturating_sub(held).saturating_sub(seats),
            seated.saturating_sub(holders).saturating_sub(seats),
        ))
    }

    /// After a change of an existing member's account (its userName or emails), `past` being
    /// `paid_past_limits` before it: in testing mode its seat was on top of the limit, and
    /// the seat it may have held before went to the next user waiting. It goes back to the
    /// free plan, in line by creation as any user there, when the change leaves more people
    /// paid past the entries and seats together (it moved to an entry another account held,
    /// took that over by being the older, and that account needs an ordinary seat now), or,
    /// holding no entry any more, more ordinary seated users past `seats`: instead of keeping
    /// a seat past the limit ahead of users who were waiting. `body`: the user's, as the
    /// change left it.
    pub(super) fn back_in_line(
        &mut self,
        actor: &Actor,
        id: u128,
        body: &Body,
        past: (u64, u64),
    ) -> Result<(), redb::Error> {
        let t = actor.tenant.as_str();
        if self.overflow.get((t, id))?.is_some() {
            return Ok(());
        }
        let now = self.paid_past_limits(actor)?;
        if now.0 <= past.0 && (now.1 <= past.1 || self.holds_entry_seat(actor, id, body)?) {
            return Ok(());
        }
        self.overflow.insert((t, id), ())?;
        plan::add(&mut self.counts, t, plan::OVERFLOW, 1)?;
        self.emit_plan(actor, "plan.placed_on_free", Some(id), None)
    }

    /// The accounts matching existing-members `entry` that may hold its seat: the oldest
    /// active one holding a seat, and the oldest active one the limit put on free.
    fn holders(&self, t: &str, entry: &str) -> Result<(Option<u128>, Option<u128>), redb::Error> {
        let mut waiting = None;
        for id in plan::matches_of(&self.usernames, &self.emails, t, entry)? {
            if !self
                .load(t, Kind::User, id)?
                .is_some_and(|rec| plan::is_active(&rec.body))
            {
                continue;
            }
            if self.overflow.get((t, id))?.is_none() {
                return Ok((Some(id), waiting));
            }
            waiting = waiting.or(Some(id));
        }
        Ok((None, waiting))
    }

    /// Before a user write (the user `me`, its bodies before and after): in testing mode,
    /// the plan status of every other account matching an existing-members entry either body
    /// matches. The entry's one seat passes between its accounts (the active one holds it,
    /// else the oldest), so `me`'s change can move theirs; `tell_mates` names them after.
    pub(super) fn entry_mates(
        &mut self,
        actor: &Actor,
        me: u128,
        bodies: &[&Body],
    ) -> Result<Option<Mates>, redb::Error> {
        self.plan_told = None;
        let rules = self.rules(actor);
        let Some(rules) = rules.as_deref() else {
            return Ok(None);
        };
        let t = actor.tenant.as_str();
        let mut entries: Vec<&str> = bodies
            .iter()
            .flat_map(|b| plan::entries_matching(rules, b))
            .collect();
        if entries.is_empty() || rules.mode(plan::active(&self.counts, t)?) != Mode::Testing {
            return Ok(None);
        }
        entries.sort_unstable();
        entries.dedup();
        let mut ids = std::collections::BTreeSet::new();
        for entry in entries {
            ids.extend(plan::matches_of(&self.usernames, &self.emails, t, entry)?);
        }
        ids.remove(&me);
        let mut before = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(status) = self.testing_status(actor, id)? {
                before.push((id, status));
            }
        }
        self.plan_told = Some(Vec::new());
        Ok(Some(Mates { before }))
    }

    /// After the write `entry_mates` looked before: an event for each of those accounts
    /// whose status the write moved and no other event of it named. (A mode switch is
    /// `plan.changed`, after which the application reads the list again.)
    pub(super) fn tell_mates(&mut self, actor: &Actor, mates: Mates) -> Result<(), redb::Error> {
        let told = self.plan_told.take().unwrap_or_default();
        let rules = self.rules(actor);
        let Some(rules) = rules.as_deref() else {
            return Ok(());
        };
        if rules.mode(plan::active(&self.counts, &actor.tenant)?) != Mode::Testing {
            return Ok(());
        }
        for (id, was) in mates.before {
            if told.contains(&id) {
                continue;
            }
            if let Some(now) = self.testing_status(actor, id)?
                && now != was
            {
                let from_to = (was.name().to_string(), now.name().to_string());
                self.emit_plan(actor, "plan.status_changed", Some(id), Some(from_to))?;
            }
        }
        Ok(())
    }

    /// User `id`'s status on the plan list in testing mode, as the write stands now.
    fn testing_status(&self, actor: &Actor, id: u128) -> Result<Option<plan::Status>, redb::Error> {
        let t = actor.tenant.as_str();
        let rules = self.rules(actor);
        let (Some(rules), Some(rec)) = (rules.as_deref(), self.load(t, Kind::User, id)?) else {
            return Ok(None);
        };
        let mut kept = false;
        for entry in plan::entries_matching(rules, &rec.body) {
            let ids = plan::matches_of(&self.usernames, &self.emails, t, entry)?;
            kept |= plan::keeper(&self.res, &self.overflow, t, ids)?.is_some_and(|k| k.0 == id);
        }
        let overflow = self.overflow.get((t, id))?.is_some();
        Ok(Some(plan::user_status(
            Mode::Testing,
            plan::is_active(&rec.body),
            overflow,
            kept,
        )))
    }

    fn emit_plan(
        &mut self,
        actor: &Actor,
        kind: &'static str,
        id: Option<u128>,
        from_to: Option<(String, String)>,
    ) -> Result<(), redb::Error> {
        if let (Some(told), Some(id)) = (self.plan_told.as_mut(), id) {
            told.push(id);
        }
        let new = NewEvent {
            kind,
            resource_id: id.map(format_id).unwrap_or_default(),
            member_id: None,
            member_type: None,
            attributes: Vec::new(),
            from_to,
        };
        events::append(&mut self.events, &mut self.seqs, actor, new)
    }

    /// Write phase: move the plan counters for a user going from `was` to `now` active
    /// (`None`: the user does not exist on that side), and record a mode switch. `fill`:
    /// give seats that came free to the users waiting.
    pub(super) fn plan_transition(
        &mut self,
        actor: &Actor,
        id: u128,
        was: Option<bool>,
        now: Option<bool>,
        seat: Option<Seat>,
        fill: bool,
    ) -> Result<(), redb::Error> {
        let t = actor.tenant.as_str();
        let before = plan::active(&self.counts, t)?;
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
        let Some(rules) = self.rules(actor) else {
            return Ok(());
        };
        let modes = (
            rules.mode(before),
            rules.mode(plan::active(&self.counts, t)?),
        );
        // A seat comes free when a seated user leaves, and without anyone leaving too: back
        // in testing mode, or with a user now an existing member's account, existing
        // members' seats are on top of the limit.
        if fill {
            self.fill_free_seats(actor, modes.0 != modes.1)?;
        }
        self.mode_change(actor, modes.0, modes.1)
    }

    /// A seat that comes free (a seated user leaves, a reload raises `seats`) goes to a user
    /// the seat limit put on the free plan, earliest created first, so that nobody who came
    /// later takes it ahead of them.
    /// `quiet`: a mode switch or a settings change, whose own event covers existing members'
    /// accounts it moves to paid, brought it about.
    pub(super) fn fill_free_seats(
        &mut self,
        actor: &Actor,
        quiet: bool,
    ) -> Result<(), redb::Error> {
        let t = actor.tenant.as_str();
        let Some(rules) = self.rules(actor) else {
            return Ok(());
        };
        if self.first_waiting(t)?.is_none() {
            return Ok(());
        }
        self.seat_existing_members(actor, &rules, quiet)?;
        let open = match rules.seats {
            Some(seats) => seats.saturating_sub(plan::seated(&self.counts, t)?),
            None => u64::MAX,
        };
        // Seats existing members' accounts hold are on top in testing mode.
        let mut open = open.max(self.open_beside_existing(actor, 0)?);
        while open > 0 {
            let Some(id) = self.first_waiting(t)? else {
                break;
            };
            self.overflow.remove((t, id))?;
            plan::add(&mut self.counts, t, plan::OVERFLOW, -1)?;
            self.emit_plan(actor, "plan.placed_on_paid", Some(id), None)?;
            open -= 1;
        }
        Ok(())
    }

    /// The earliest created user the seat limit put on the free plan.
    fn first_waiting(&self, t: &str) -> Result<Option<u128>, redb::Error> {
        Ok(self
            .overflow
            .range((t, 0u128)..=(t, u128::MAX))?
            .next()
            .transpose()?
            .map(|(k, _)| k.value().1))
    }

    /// In testing mode an existing member's account is paid on top of the seats and never
    /// waits for one: the account that holds each entry's seat (an active seated one, else
    /// the oldest active one on free, as the plan list picks it) leaves the free plan
    /// without taking a seat from the users waiting there. Else the seat a user leaving
    /// frees would go to it, already listed paid, instead of the user next in line, and the
    /// account would be back on free when the plan is enforced again.
    fn seat_existing_members(
        &mut self,
        actor: &Actor,
        rules: &plan::PlanRules,
        quiet: bool,
    ) -> Result<(), redb::Error> {
        let t = actor.tenant.as_str();
        if rules.existing_members.is_empty()
            || rules.mode(plan::active(&self.counts, t)?) != Mode::Testing
        {
            return Ok(());
        }
        for entry in &rules.existing_members {
            // After a mode switch or a settings change, the plan list shows the account
            // paid already and that change is the event; after a write that made it an
            // existing member's account (or left it the one holding the entry's seat), it
            // is told as any move to paid.
            if let (None, Some(id)) = self.holders(t, entry)? {
                self.overflow.remove((t, id))?;
                plan::add(&mut self.counts, t, plan::OVERFLOW, -1)?;
                if !quiet {
                    self.emit_plan(actor, "plan.placed_on_paid", Some(id), None)?;
                }
            }
        }
        Ok(())
    }

    pub(super) fn mode_change(
        &mut self,
        actor: &Actor,
        m0: Mode,
        m1: Mode,
    ) -> Result<(), redb::Error> {
        if m0 == m1 {
            return Ok(());
        }
        let names = (m0.name().to_string(), m1.name().to_string());
        self.emit_plan(actor, "plan.changed", None, Some(names))
    }
}
