//! What the application reads besides the resources: the change feed and the plan list.

use serde_json::json;

use super::cursor::CursorScope;
use super::lists::{both_cursor_and_start_index, int_param, start_index};
use super::response::{self, Resp};
use super::{App, Ctx};
use crate::scim::error::{ScimError, ScimResult};
use crate::store::PlanFrom;

/// `GET /tenants/{tenant}/events?after=SEQ&limit=N`: the change feed, oldest first.
pub(super) async fn events(app: &App, ctx: &Ctx) -> ScimResult<Resp> {
    // Without `after` a reader asks for what is kept; with one (0 included: "I have seen
    // nothing") it says where it is, and is told when events after that are gone.
    let asked = int_param("after", ctx.query.get("after"))?;
    if asked.is_some_and(|a| a < 0) {
        return Err(ScimError::invalid_value(
            "after must be 0 or the seq of an event already read",
        ));
    }
    let after = asked.unwrap_or(0) as u64;
    let limit = int_param("limit", ctx.query.get("limit"))?.unwrap_or(100);
    // A reader that loops until a page comes back empty would stop at once on a negative
    // limit; 0 is meant (the feed's ends without events).
    if limit < 0 {
        return Err(ScimError::invalid_value(
            "limit must be 0 or more (0 answers only last_seq and oldest_seq; more than 1000 is \
             read as 1000)",
        ));
    }
    let limit = limit.min(1000) as usize;
    let feed = app
        .store
        .events(
            ctx.principal.tenant.clone(),
            after,
            limit,
            ctx.rt.retention(&ctx.principal.tenant),
        )
        .await?;
    // A reader that fell behind retention (or one commit wrote more events than it keeps)
    // would otherwise go on as if nothing were missing.
    // Past the newest event: the feed was reset (a restore, a new database) since the
    // reader's last call, and what it would be given next is not what follows its `after`.
    if after > feed.last {
        // As sent: a number past the largest one is read as the largest.
        let said: String = (ctx.query.get("after").map(str::trim))
            .map_or_else(|| after.to_string(), |s| s.chars().take(40).collect());
        return Ok(gone(
            format!(
                "after={said} is past the newest event ({}): the change feed was reset (a \
                 database from elsewhere?); read the users, groups and plan list again, then \
                 continue from after={}",
                feed.last, feed.last
            ),
            &feed,
        ));
    }
    if asked.is_some() && after + 1 < feed.oldest {
        return Ok(gone(
            format!(
                "events {} to {} are not kept (retention: events_max_count, \
                 events_max_age_days; or the database was restored from a backup, the tenant \
                 imported from another host, or purged); read the users, groups and plan list again, then continue \
                 from after={}",
                after + 1,
                feed.oldest - 1,
                feed.last
            ),
            &feed,
        ));
    }
    // Without `after`, the reader starts at the oldest kept event: with none returned
    // (`limit=0`), it continues from just before that one, not from 0, which is gone.
    let from = match asked {
        Some(_) => after,
        None => after.max(feed.oldest.saturating_sub(1)),
    };
    let next = feed.events.last().map(|e| e.seq).unwrap_or(from);
    Ok(response::json(
        200,
        &json!({"tenant": ctx.principal.tenant, "events": feed.events, "next_after": next,
            "last_seq": feed.last, "oldest_seq": feed.oldest}),
    ))
}

/// 410 for a reader whose `after` no longer continues the feed: the error body, with where
/// to continue after reading the directory again (`next_after`) and the feed's ends, as
/// fields an application need not read out of the detail.
fn gone(detail: String, feed: &crate::store::Feed) -> Resp {
    response::error_with(
        &ScimError::new(410, None, detail),
        &[
            ("next_after", feed.last.into()),
            ("last_seq", feed.last.into()),
            ("oldest_seq", feed.oldest.into()),
        ],
    )
}

fn plan_rules(ctx: &Ctx) -> ScimResult<std::sync::Arc<crate::store::plan::PlanRules>> {
    ctx.rt
        .plans
        .get(&ctx.principal.tenant)
        .cloned()
        .ok_or_else(|| {
            ScimError::not_found(format!(
                "tenant {} has no plan; add a [tenants.{}.plan] table to the configuration",
                ctx.principal.tenant, ctx.principal.tenant
            ))
        })
}

/// `GET /tenants/{tenant}/plan`: the plan's settings, mode and counts.
pub(super) async fn plan_summary(app: &App, ctx: &Ctx) -> ScimResult<Resp> {
    let rules = plan_rules(ctx)?;
    let s = app
        .store
        .plan_summary(ctx.principal.tenant.clone(), rules.clone())
        .await?;
    Ok(response::json(
        200,
        &json!({
            "tenant": ctx.principal.tenant,
            "plan": rules.name,
            "mode": s.mode,
            "test_threshold": rules.test_threshold,
            "seats": rules.seats,
            "on_seat_limit": rules.on_seat_limit,
            "active_provisioned": s.active_provisioned,
            "counts": {"paid": s.paid, "free": s.free, "deactivated": s.deactivated},
        }),
    ))
}

/// `GET /tenants/{tenant}/plan/members?status=paid|free|deactivated&startIndex=&count=`, or
/// `&cursor=` (empty for the first page) and then each answer's `nextCursor`.
pub(super) async fn plan_members(app: &App, ctx: &Ctx) -> ScimResult<Resp> {
    use crate::store::plan::Status;
    let rules = plan_rules(ctx)?;
    let asked = ctx
        .query
        .get("status")
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let status = match asked.as_str() {
        "" => None,
        "paid" => Some(Status::Paid),
        "free" => Some(Status::Free),
        "deactivated" => Some(Status::Deactivated),
        other => {
            return Err(ScimError::invalid_value(format!(
                "status must be paid, free or deactivated, got \"{other}\""
            )));
        }
    };
    if ctx.query.get("cursor").is_some() && ctx.query.get("startIndex").is_some() {
        return Err(both_cursor_and_start_index());
    }
    let max = ctx.rt.config.server.max_results;
    let start = start_index(int_param("startIndex", ctx.query.get("startIndex"))?);
    let count = int_param("count", ctx.query.get("count"))?
        .map(|c| c.max(0) as u64)
        .unwrap_or(max)
        .min(max);
    // A cursor resumes the list it came from: this tenant's, of this status.
    let scope = CursorScope::plan(&ctx.principal.tenant, &asked);
    let from = match ctx.query.get("cursor") {
        Some(c) => PlanFrom::After(scope.decode_plan(c)?),
        None => PlanFrom::Index(start),
    };
    let page = app
        .store
        .plan_members(
            ctx.principal.tenant.clone(),
            rules,
            status,
            from.clone(),
            count,
        )
        .await?;
    let mut body = json!({"totalResults": page.total, "itemsPerPage": page.entries.len(), "members": page.entries});
    match (from, page.next) {
        (PlanFrom::Index(start), _) => body["startIndex"] = json!(start),
        (PlanFrom::After(_), Some(next)) => body["nextCursor"] = json!(scope.encode_plan(&next)),
        (PlanFrom::After(_), None) => {}
    }
    Ok(response::json(200, &body))
}
