//! Paid-plan membership: testing and enforced modes, existing members, seats.

use reqwest::Method;
use scimd::config::{PlanConfig, SeatLimitPolicy};
use serde_json::{Value, json};

use crate::harness::{ACME, Srv, assert_error, total};

async fn plan_srv(threshold: u64, seats: Option<u64>, policy: SeatLimitPolicy) -> Srv {
    plan_srv_of(
        threshold,
        seats,
        policy,
        &["Veteran@Example.com", "founder"],
    )
    .await
}

/// A user PATCH replacing all of its emails with `values`.
fn emails(values: &[&str]) -> Value {
    let values: Vec<Value> = values.iter().map(|v| json!({"value": v})).collect();
    json!([{"op": "replace", "path": "emails", "value": values}])
}

/// A server whose tenant acme has the plan "Business" with these settings.
async fn plan_srv_of(
    threshold: u64,
    seats: Option<u64>,
    policy: SeatLimitPolicy,
    existing_members: &[&str],
) -> Srv {
    let existing_members: Vec<String> = existing_members.iter().map(|m| m.to_string()).collect();
    Srv::start_with(move |c| {
        c.tenants.get_mut("acme").unwrap().plan = Some(PlanConfig {
            name: "Business".into(),
            test_threshold: threshold,
            seats,
            on_seat_limit: policy,
            existing_members,
        });
    })
    .await
}

async fn summary(s: &Srv) -> Value {
    let r = s
        .call(Method::GET, "/tenants/acme/plan", Some(ACME), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

fn counts(v: &Value) -> (String, u64, u64, u64) {
    (
        v["mode"].as_str().unwrap().to_string(),
        v["counts"]["paid"].as_u64().unwrap(),
        v["counts"]["free"].as_u64().unwrap(),
        v["counts"]["deactivated"].as_u64().unwrap(),
    )
}

async fn members(s: &Srv, query: &str) -> Value {
    let r = s
        .call(
            Method::GET,
            &format!("/tenants/acme/plan/members{query}"),
            Some(ACME),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// The tenant's change feed, its first thousand events, as answered.
async fn feed(s: &Srv) -> crate::harness::Res {
    s.call(
        Method::GET,
        "/tenants/acme/events?limit=1000",
        Some(ACME),
        None,
    )
    .await
}

async fn all_events(s: &Srv) -> Vec<Value> {
    feed(s).await.body["events"].as_array().unwrap().clone()
}

async fn plan_events(s: &Srv) -> Vec<Value> {
    all_events(s)
        .await
        .into_iter()
        .filter(|e| e["type"].as_str().unwrap().starts_with("plan."))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_boundary_both_ways_and_existing_members() {
    let s = plan_srv(3, None, SeatLimitPolicy::Reject).await;
    let v = summary(&s).await;
    assert_eq!(
        (v["plan"].as_str(), v["test_threshold"].as_u64()),
        (Some("Business"), Some(3))
    );
    assert_eq!(
        counts(&v),
        ("testing".into(), 2, 0, 0),
        "existing members keep their seats"
    );
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(s.user(&format!("u{i}@example.com")).await);
    }
    assert_eq!(
        counts(&summary(&s).await),
        ("testing".into(), 5, 0, 0),
        "exactly the threshold is still testing"
    );
    ids.push(s.user("u3@example.com").await);
    assert_eq!(
        counts(&summary(&s).await),
        ("enforced".into(), 4, 2, 0),
        "one more enforces: existing members move to free"
    );
    let free = members(&s, "?status=free").await;
    let names: Vec<&str> = free["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["userName"].as_str().unwrap())
        .collect();
    // Existing members no user matches follow the users, in order, as the file spells them.
    assert_eq!(names, ["founder", "Veteran@Example.com"]);
    assert!(free["members"][0]["id"].is_null() && free["members"][0]["active"].is_null());
    // Deactivating one goes back to testing; the deactivated user is counted as such.
    s.patch(
        &format!("/Users/{}", ids[3]),
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    assert_eq!(counts(&summary(&s).await), ("testing".into(), 5, 0, 1));
    let ev = plan_events(&s).await;
    let changes: Vec<(String, String)> = ev
        .iter()
        .filter(|e| e["type"] == "plan.changed")
        .map(|e| {
            (
                e["from"].as_str().unwrap().into(),
                e["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("testing".to_string(), "enforced".to_string()),
            ("enforced".into(), "testing".into())
        ]
    );
    // A provisioned existing member is a paid user like any other once enforced.
    s.patch(
        &format!("/Users/{}", ids[3]),
        json!([{"op": "replace", "path": "active", "value": true}]),
    )
    .await;
    let vet = s.user("VETERAN@example.com").await;
    assert_eq!(counts(&summary(&s).await), ("enforced".into(), 5, 1, 0));
    let paid = members(&s, "?status=paid").await;
    assert_eq!(total_of(&paid), 5);
    assert!(
        paid["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == vet.as_str()
                && m["existing_member"] == true
                && m["active"] == true)
    );
    // Deleting users changes the counts too.
    s.delete(&format!("/Users/{vet}")).await;
    s.delete(&format!("/Users/{}", ids[0])).await;
    assert_eq!(counts(&summary(&s).await), ("testing".into(), 5, 0, 0));
    // The feed gives the cause before its effect: the deletion, then the mode change.
    let events = all_events(&s).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types[types.len() - 2..], ["user.deleted", "plan.changed"]);
    // Paging never returns more than asked.
    let page = members(&s, "?startIndex=2&count=2").await;
    assert_eq!(
        (total_of(&page), page["members"].as_array().unwrap().len()),
        (5, 2)
    );
    // An index past 2^53 is echoed as 2^53, as on SCIM lists: an empty page.
    let page = members(&s, "?startIndex=99999999999999999999").await;
    assert_eq!(page["startIndex"], json!(9007199254740992u64));
    assert_eq!(page["members"], json!([]));
}

/// An existing member is one person and one seat in testing mode, however many accounts
/// match the entry: Okta deactivates rather than deletes, so a person re-created in the IdP
/// leaves the old account, with the same email, beside the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_member_matched_by_two_accounts_holds_one_seat() {
    let s = plan_srv(5, None, SeatLimitPolicy::Reject).await;
    let account = |name: &'static str, email: &'static str| {
        let s = &s;
        async move {
            let body = json!({"userName": name, "emails": [{"value": email}]});
            let r = s.post("/Users", body).await;
            assert_eq!(r.status, 201, "{}", r.body);
            r.id()
        }
    };
    let old = account("vet-old", "veteran@example.com").await;
    let new = account("vet-new", "VETERAN@example.com").await;
    let deactivate = |id: String| {
        let s = &s;
        async move {
            let op = json!([{"op": "replace", "path": "active", "value": false}]);
            assert_eq!(s.patch(&format!("/Users/{id}"), op).await.status, 200);
        }
    };
    let paid_ids = |v: Value| -> Vec<Value> {
        v["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].clone())
            .collect()
    };
    // Both active: both paid as active users; the unmatched `founder` is the third seat.
    assert_eq!(counts(&summary(&s).await), ("testing".into(), 3, 0, 0));
    // The new one deactivated: the old, active, holds the seat; the new is deactivated.
    deactivate(new.clone()).await;
    assert_eq!(counts(&summary(&s).await), ("testing".into(), 2, 0, 1));
    // Both deactivated: the oldest keeps the person's one seat.
    deactivate(old.clone()).await;
    assert_eq!(counts(&summary(&s).await), ("testing".into(), 2, 0, 1));
    let paid = members(&s, "?status=paid").await;
    assert_eq!(total_of(&paid), 2);
    // The entry says the seat's account is not active, for an application letting in paid
    // people; the unmatched entry has no account.
    assert_eq!(paid["members"][0]["active"], false, "{paid}");
    assert!(paid["members"][1]["active"].is_null(), "{paid}");
    assert_eq!(paid_ids(paid), [json!(old), Value::Null]);
    let gone = members(&s, "?status=deactivated").await;
    assert_eq!(paid_ids(gone), [json!(new)]);
}

/// In testing mode an existing member's own account is seated on top of a full plan: not
/// refused, not put on free (it is paid anyway), and a seat freed later goes to whoever
/// the limit really put on free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_plan_in_testing_seats_an_existing_members_account_on_top() {
    for policy in [SeatLimitPolicy::Reject, SeatLimitPolicy::Free] {
        let s = plan_srv(5, Some(1), policy).await;
        let first = s.user("first@x").await;
        let vet = s
            .post(
                "/Users",
                json!({"userName": "vet", "emails": [{"value": "veteran@EXAMPLE.com"}]}),
            )
            .await;
        assert_eq!(vet.status, 201, "{policy:?}: {}", vet.body);
        let kinds = |evs: Vec<Value>| -> Vec<String> {
            evs.iter()
                .map(|e| e["type"].as_str().unwrap().to_string())
                .collect()
        };
        assert!(
            kinds(plan_events(&s).await).is_empty(),
            "{policy:?}: {:?}",
            plan_events(&s).await
        );
        // Reactivated on a full plan: the same.
        let deactivate = json!([{"op": "replace", "path": "active", "value": false}]);
        let url = format!("/Users/{}", vet.id());
        assert_eq!(s.patch(&url, deactivate).await.status, 200);
        let reactivate = json!([{"op": "replace", "path": "active", "value": true}]);
        let r = s.patch(&url, reactivate).await;
        assert_eq!(r.status, 200, "{policy:?}: {}", r.body);
        // A second account of the same person is not: the seat is held.
        let twin = json!({"userName": "vet2", "emails": [{"value": "veteran@example.com"}]});
        let twin = s.post("/Users", twin).await;
        if policy == SeatLimitPolicy::Reject {
            assert_error(&twin, 403, None);
            assert_eq!(kinds(plan_events(&s).await), ["plan.seat_rejected"]);
            continue;
        }
        assert_eq!(twin.status, 201, "{}", twin.body);
        let other = s.user("other@x").await;
        assert_eq!(
            kinds(plan_events(&s).await),
            ["plan.placed_on_free", "plan.placed_on_free"]
        );
        // first leaves: its seat goes to the twin, the earliest the limit put on free (the
        // veteran's is on top).
        assert_eq!(s.delete(&format!("/Users/{first}")).await.status, 204);
        let evs = plan_events(&s).await;
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[2]["type"], "plan.placed_on_paid");
        assert_eq!(evs[2]["resource_id"], twin.id().as_str());
        let free = members(&s, "?status=free").await;
        assert_eq!(free["members"][0]["id"], other.as_str(), "{free}");
        assert_eq!(total_of(&free), 1, "{free}");
        // The veteran's account leaves: the twin is the person's account now, on top, and
        // the seat it held goes to the next waiting.
        assert_eq!(s.delete(&url).await.status, 204);
        let evs = plan_events(&s).await;
        assert_eq!(evs.len(), 4);
        assert_eq!(evs[3]["type"], "plan.placed_on_paid");
        assert_eq!(evs[3]["resource_id"], other.as_str());
        assert_eq!(total_of(&members(&s, "?status=free").await), 0);
    }
}

/// In testing mode the order users arrive in changes no one's plan: an existing member's
/// account that came first, while a seat was open, holds it on top of the limit too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_members_account_first_leaves_the_seats_to_the_others() {
    for policy in [SeatLimitPolicy::Reject, SeatLimitPolicy::Free] {
        let s = plan_srv(5, Some(1), policy).await;
        let vet = json!({"userName": "vet", "emails": [{"value": "veteran@example.com"}]});
        assert_eq!(s.post("/Users", vet).await.status, 201);
        let r = s.post("/Users", json!({"userName": "first@x"})).await;
        assert_eq!(r.status, 201, "{policy:?}: {}", r.body);
        assert!(plan_events(&s).await.is_empty(), "{policy:?}");
        let paid = members(&s, "?status=paid").await;
        // The two accounts, and the unmatched `founder` entry.
        assert_eq!(total_of(&paid), 3, "{policy:?}: {paid}");
        // The seat is taken now: the next one is not paid.
        let r = s.post("/Users", json!({"userName": "second@x"})).await;
        match policy {
            SeatLimitPolicy::Reject => assert_error(&r, 403, None),
            SeatLimitPolicy::Free => {
                assert_eq!(r.status, 201);
                assert_eq!(plan_events(&s).await[0]["type"], "plan.placed_on_free");
            }
        }
    }
}

fn total_of(v: &Value) -> u64 {
    v["totalResults"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_reject_creates_and_reactivations_beyond_the_limit() {
    let s = plan_srv(10, Some(2), SeatLimitPolicy::Reject).await;
    let a = s.user("a@x").await;
    s.user("b@x").await;
    let r = s.post("/Users", json!({"userName": "c@x"})).await;
    assert_error(&r, 403, None);
    let d = r.body["detail"].as_str().unwrap();
    assert!(d.contains("Business") && d.contains('2'), "{d}");
    assert_eq!(
        total(&s.get("/Users").await),
        2,
        "the refused user is not stored"
    );
    // An inactive user takes no seat; reactivating beyond the limit is refused.
    let c = s
        .post("/Users", json!({"userName": "c@x", "active": false}))
        .await;
    assert_eq!(c.status, 201);
    let r = s
        .patch(
            &format!("/Users/{}", c.id()),
            json!([{"op": "replace", "path": "active", "value": true}]),
        )
        .await;
    assert_error(&r, 403, None);
    assert_eq!(
        s.get(&format!("/Users/{}", c.id())).await.body["active"],
        false
    );
    s.patch(
        &format!("/Users/{a}"),
        json!([{"op": "replace", "path": "active", "value": "False"}]),
    )
    .await;
    let r = s
        .patch(
            &format!("/Users/{}", c.id()),
            json!([{"op": "replace", "path": "active", "value": true}]),
        )
        .await;
    assert_eq!(r.status, 200, "a freed seat can be taken: {}", r.body);
    // The refused create names no resource (none was stored); the refused reactivation
    // names the user.
    let rejected: Vec<Value> = plan_events(&s)
        .await
        .into_iter()
        .filter(|e| e["type"] == "plan.seat_rejected")
        .map(|e| e["resource_id"].clone())
        .collect();
    assert_eq!(rejected, vec![json!(""), json!(c.id())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seats_free_policy_stores_the_user_on_free() {
    let s = plan_srv(10, Some(1), SeatLimitPolicy::Free).await;
    s.user("a@x").await;
    let b = s.user("b@x").await;
    assert_eq!(counts(&summary(&s).await), ("testing".into(), 3, 1, 0));
    let free = members(&s, "?status=free").await;
    assert_eq!(free["members"][0]["id"], b.as_str());
    let ev = plan_events(&s).await;
    assert_eq!(
        ev.iter()
            .filter(|e| e["type"] == "plan.placed_on_free" && e["resource_id"] == b.as_str())
            .count(),
        1
    );
    // Deactivated, the overflow user is simply deactivated.
    s.patch(
        &format!("/Users/{b}"),
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    assert_eq!(counts(&summary(&s).await), ("testing".into(), 3, 0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mode_counts_active_users_on_the_free_plan_too() {
    let s = plan_srv(2, Some(3), SeatLimitPolicy::Free).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(s.user(&format!("u{i}@x")).await);
    }
    // Four active users, three seated and one over the limit: past the threshold of two.
    // The two existing members no user matches are free.
    assert_eq!(counts(&summary(&s).await), ("enforced".into(), 3, 3, 0));
    let deactivate = |id: String| {
        let s = &s;
        async move {
            let r = s
                .patch(
                    &format!("/Users/{id}"),
                    json!([{"op": "replace", "path": "active", "value": false}]),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
        }
    };
    // Three active users: still past the threshold. The seat u0 left goes to u3.
    deactivate(ids[0].clone()).await;
    assert_eq!(counts(&summary(&s).await), ("enforced".into(), 3, 2, 1));
    // Two: testing again, and the existing members are paid.
    deactivate(ids[1].clone()).await;
    assert_eq!(counts(&summary(&s).await), ("testing".into(), 4, 0, 2));
    let changes: Vec<(Value, Value)> = plan_events(&s)
        .await
        .into_iter()
        .filter(|e| e["type"] == "plan.changed")
        .map(|e| (e["from"].clone(), e["to"].clone()))
        .collect();
    assert_eq!(
        changes,
        vec![
            (json!("testing"), json!("enforced")),
            (json!("enforced"), json!("testing"))
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plan_is_404_and_bad_status_is_400() {
    let s = Srv::start().await;
    let r = s
        .call(Method::GET, "/tenants/acme/plan", Some(ACME), None)
        .await;
    assert_error(&r, 404, None);
    let s = plan_srv(3, None, SeatLimitPolicy::Reject).await;
    let r = s
        .call(
            Method::GET,
            "/tenants/acme/plan/members?status=gold",
            Some(ACME),
            None,
        )
        .await;
    assert_error(&r, 400, Some("invalidValue"));
    let r = s
        .call(
            Method::GET,
            "/tenants/acme/plan",
            Some(crate::harness::GLOBEX),
            None,
        )
        .await;
    assert_error(&r, 401, None);
}

/// Every way of paging the plan list gives the same entries: one big page, `startIndex`
/// pages, and cursor pages; totals match the summary; in testing and enforced mode, with
/// paid, free (over the seat limit), deactivated and unmatched existing members.
/// `startIndex` pages of one status skip what the counters rule out: when every user has
/// the status they start where the position counts point, and past the last user with it
/// they read no user at all. The pages must still be the slices of the whole list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_status_pages_by_index_are_slices_of_the_whole_list() {
    let s = plan_srv(100, None, SeatLimitPolicy::Free).await;
    for i in 0..7 {
        s.user(&format!("u{i}@x")).await;
    }
    // Testing mode: all 7 users are paid, and so are the two existing members no user
    // matches, at the end; nobody is deactivated yet.
    for (status, len) in [("paid", 9), ("deactivated", 0), ("free", 0)] {
        let all = members(&s, &format!("?status={status}&count=1000")).await;
        let want = all["members"].as_array().unwrap().clone();
        assert_eq!(want.len(), len, "{status}: {all}");
        for start in 1..=len + 2 {
            let p = members(&s, &format!("?status={status}&startIndex={start}&count=2")).await;
            let page = p["members"].as_array().unwrap();
            let slice: Vec<Value> = want.iter().skip(start - 1).take(2).cloned().collect();
            assert_eq!(page, &slice, "{status} startIndex {start}");
            assert_eq!(total_of(&p), len as u64);
        }
    }
    let paid = members(&s, "?status=paid&count=1000").await;
    assert_eq!(paid["members"][6]["userName"], "u6@x");
    assert_eq!(paid["members"][7]["userName"], "founder");
    assert_eq!(paid["members"][8]["userName"], "Veteran@Example.com");
    assert_eq!(paid["members"][8]["existing_member"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_list_pages_by_index_and_cursor_agree_with_the_summary() {
    for (threshold, seats) in [(100, None), (1, Some(3))] {
        let s = plan_srv(threshold, seats, SeatLimitPolicy::Free).await;
        s.user("veteran@example.com").await;
        let mut ids = Vec::new();
        for i in 0..7 {
            ids.push(s.user(&format!("u{i}@x")).await);
        }
        for i in 0..3 {
            let r = s
                .post(
                    "/Users",
                    json!({"userName": format!("off{i}@x"), "active": false}),
                )
                .await;
            assert_eq!(r.status, 201);
        }
        s.patch(
            &format!("/Users/{}", ids[1]),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
        let sum = summary(&s).await;
        let mode = sum["mode"].as_str().unwrap().to_string();
        // Testing: 7 active users and the unmatched "founder" paid, 4 deactivated. With 3
        // seats: 5 creates went over the limit (free); deactivating u1 gives its seat to the
        // first of them; past the threshold of 1, so enforced: "founder" is free too.
        let want_counts = match seats {
            None => ("testing".to_string(), 8, 0, 4),
            Some(_) => ("enforced".to_string(), 3, 5, 4),
        };
        assert_eq!(counts(&sum), want_counts, "{sum}");
        let everyone = members(&s, "?count=1000").await["members"].clone();
        for status in ["", "paid", "free", "deactivated"] {
            let q = if status.is_empty() {
                String::new()
            } else {
                format!("status={status}&")
            };
            let all = members(&s, &format!("?{q}count=1000")).await;
            let want: Vec<Value> = all["members"].as_array().unwrap().clone();
            let expected_total = match status {
                "" => ["paid", "free", "deactivated"]
                    .iter()
                    .map(|k| sum["counts"][k].as_u64().unwrap())
                    .sum(),
                k => sum["counts"][k].as_u64().unwrap(),
            };
            assert_eq!(total_of(&all), expected_total, "{mode} {status}");
            assert_eq!(want.len() as u64, expected_total, "{mode} {status}: {all}");
            // A status's list is the whole list's entries with that status, in order.
            let filtered: Vec<Value> = everyone
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| status.is_empty() || m["status"] == status)
                .cloned()
                .collect();
            assert_eq!(want, filtered, "{mode} {status}");
            let mut by_index = Vec::new();
            let mut start = 1;
            while start <= want.len() + 1 {
                let p = members(&s, &format!("?{q}startIndex={start}&count=3")).await;
                assert_eq!(p["startIndex"], start);
                by_index.extend(p["members"].as_array().unwrap().iter().cloned());
                start += 3;
            }
            assert_eq!(by_index, want, "{mode} {status} by startIndex");
            let mut by_cursor = Vec::new();
            let mut cursor = String::new();
            for _ in 0..50 {
                let p = members(&s, &format!("?{q}count=3&cursor={cursor}")).await;
                let page = p["members"].as_array().unwrap();
                assert!(page.len() <= 3);
                assert!(p.get("startIndex").is_none(), "{p}");
                assert_eq!(total_of(&p), expected_total);
                by_cursor.extend(page.iter().cloned());
                match p["nextCursor"].as_str() {
                    Some(c) => cursor = c.to_string(),
                    None => break,
                }
            }
            assert_eq!(by_cursor, want, "{mode} {status} by cursor");
            let r = s
                .call(
                    Method::GET,
                    &format!("/tenants/acme/plan/members?{q}cursor=&startIndex=2"),
                    Some(ACME),
                    None,
                )
                .await;
            assert_error(&r, 400, Some("invalidValue"));
            // A user's cursor from this list does not resume another status's list.
            let first = members(&s, &format!("?{q}count=1&cursor=")).await;
            if let Some(c) = first["nextCursor"].as_str() {
                let elsewhere = if status == "paid" { "free" } else { "paid" };
                let r = s
                    .call(
                        Method::GET,
                        &format!("/tenants/acme/plan/members?status={elsewhere}&cursor={c}"),
                        Some(ACME),
                        None,
                    )
                    .await;
                assert_error(&r, 400, Some("invalidCursor"));
            }
        }
        let r = s
            .call(
                Method::GET,
                "/tenants/acme/plan/members?cursor=not-ours",
                Some(ACME),
                None,
            )
            .await;
        assert_error(&r, 400, Some("invalidCursor"));
    }
}

/// The existing members no user matches are walked in order of the entries themselves, so a
/// user who comes to match one, or stops matching, or a reload that changes the list, between
/// pages moves no other entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_walk_over_existing_members_survives_matches_between_pages() {
    let s = plan_srv_of(
        0,
        None,
        SeatLimitPolicy::Reject,
        &["em1@x", "em2@x", "em3@x", "em4@x"],
    )
    .await;
    // Past the threshold of 0: existing members no user matches are free.
    s.user("other@x").await;
    let page = |cursor: String| {
        let s = &s;
        async move {
            let p = members(s, &format!("?status=free&count=1&cursor={cursor}")).await;
            let names: Vec<String> = p["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["userName"].as_str().unwrap().to_string())
                .collect();
            (names, p["nextCursor"].as_str().map(str::to_string))
        }
    };
    let (first, next) = page(String::new()).await;
    assert_eq!(first, ["em1@x"]);
    // The cursor resumes this status's list only.
    for other in ["status=paid&", "status=deactivated&", ""] {
        let r = s
            .call(
                Method::GET,
                &format!(
                    "/tenants/acme/plan/members?{other}count=1&cursor={}",
                    next.as_deref().unwrap()
                ),
                Some(ACME),
                None,
            )
            .await;
        assert_error(&r, 400, Some("invalidCursor"));
    }
    // em1 is provisioned (it leaves the unmatched tail): em2 still comes next.
    let em1 = s.user("em1@x").await;
    let (second, next) = page(next.unwrap()).await;
    assert_eq!(second, ["em2@x"]);
    // em1's user goes again (em1 rejoins the tail behind the walk): em3 comes next, once.
    assert_eq!(s.delete(&format!("/Users/{em1}")).await.status, 204);
    // A reload that adds an entry before the walk's place and drops one behind it moves
    // nothing either.
    let mut cfg = s.config.clone();
    let plan = cfg.tenants.get_mut("acme").unwrap().plan.as_mut().unwrap();
    plan.existing_members = ["em0@x", "em2@x", "em3@x", "em4@x"]
        .map(Into::into)
        .to_vec();
    s.reloader().apply(cfg).await.unwrap();
    let mut rest = Vec::new();
    let mut next = next;
    while let Some(c) = next {
        let (names, n) = page(c).await;
        rest.extend(names);
        next = n;
    }
    assert_eq!(rest, ["em3@x", "em4@x"]);
}

/// A reload that moves `test_threshold` across the number of active users switches the mode
/// with no write to do it; the feed says so, as it does for a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_switches_the_mode_is_in_the_feed() {
    let s = plan_srv(3, None, SeatLimitPolicy::Reject).await;
    for i in 0..3 {
        s.user(&format!("r{i}@x")).await;
    }
    assert_eq!(counts(&summary(&s).await).0, "testing");
    let with_threshold = |n: u64| {
        let mut c = s.config.clone();
        c.tenants
            .get_mut("acme")
            .unwrap()
            .plan
            .as_mut()
            .unwrap()
            .test_threshold = n;
        c
    };
    let notes = s.reloader().apply(with_threshold(2)).await.unwrap().notes;
    // The cause before its effect: the settings, then the mode they switched.
    let first: Vec<Value> = plan_events(&s).await;
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(first[0]["type"], "plan.settings_changed");
    assert_eq!(
        first[0]["attributes"],
        serde_json::json!(["test_threshold"])
    );
    assert_eq!(first[1]["type"], "plan.changed");
    assert!(
        notes.contains(&"tenant acme: plan mode testing -> enforced (new test_threshold)".into()),
        "{notes:?}"
    );
    assert_eq!(counts(&summary(&s).await).0, "enforced");
    // A threshold that keeps the mode writes nothing; one that switches back does.
    s.reloader().apply(with_threshold(1)).await.unwrap();
    s.reloader().apply(with_threshold(5)).await.unwrap();
    let changes: Vec<(String, String, String)> = plan_events(&s)
        .await
        .iter()
        .filter(|e| e["type"] == "plan.changed")
        .map(|e| {
            (
                e["from"].as_str().unwrap().into(),
                e["to"].as_str().unwrap().into(),
                e["token"].as_str().unwrap().into(),
            )
        })
        .collect();
    let reload = "(configuration reload)".to_string();
    assert_eq!(
        changes,
        [
            ("testing".into(), "enforced".into(), reload.clone()),
            ("enforced".into(), "testing".into(), reload)
        ]
    );
}

/// A reload that changes who is an existing member, or takes the plan table out or puts it
/// back, moves people between paid and free with no write: the feed names the settings, so
/// that an application reads the plan list again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_changes_plan_settings_is_in_the_feed() {
    let s = plan_srv(3, None, SeatLimitPolicy::Reject).await;
    let mut more = s.config.clone();
    let plan = more.tenants.get_mut("acme").unwrap().plan.as_mut().unwrap();
    plan.existing_members.push("ceo@x".into());
    plan.name = "Business Plus".into();
    let notes = s.reloader().apply(more.clone()).await.unwrap().notes;
    assert!(
        notes.contains(&"tenant acme: plan settings changed: name, existing_members".into()),
        "{notes:?}"
    );
    // The same settings again, or only in another order, change nothing.
    let mut reordered = more.clone();
    let p = reordered
        .tenants
        .get_mut("acme")
        .unwrap()
        .plan
        .as_mut()
        .unwrap();
    p.existing_members.reverse();
    s.reloader().apply(reordered).await.unwrap();
    let mut without = more.clone();
    without.tenants.get_mut("acme").unwrap().plan = None;
    s.reloader().apply(without).await.unwrap();
    s.reloader().apply(more).await.unwrap();
    let said: Vec<(String, Value, String)> = plan_events(&s)
        .await
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["attributes"].clone(),
                e["token"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let reload = "(configuration reload)".to_string();
    let changed = |keys: Value| ("plan.settings_changed".to_string(), keys, reload.clone());
    assert_eq!(
        said,
        [
            changed(json!(["name", "existing_members"])),
            changed(json!(["plan"])),
            changed(json!(["plan"])),
        ]
    );
}

/// Settings a reload put in force while the disk was full, when the feed could not be
/// written, are recorded once it can be, without another reload: an application following
/// the feed must hear of them. The reload says they were not recorded yet, as a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_settings_a_full_disk_kept_out_of_the_feed_are_recorded_once_it_has_room() {
    let s = plan_srv(3, None, SeatLimitPolicy::Reject).await;
    s.user("before@x").await;
    let mut more = s.config.clone();
    more.tenants
        .get_mut("acme")
        .unwrap()
        .plan
        .as_mut()
        .unwrap()
        .name = "Business Plus".into();
    s.faults.set(Some(scimd::store::Fault::DiskFull));
    let r = s.reloader().apply(more).await.unwrap();
    assert!(
        r.warnings.iter().any(|w| w.starts_with(
            "tenant acme: the plan's new settings are in force but could not be recorded"
        )),
        "{r:?}"
    );
    s.faults.set(None);
    let named = |events: &[Value]| {
        events
            .iter()
            .filter(|e| e["type"] == "plan.settings_changed" && e["attributes"] == json!(["name"]))
            .count()
    };
    // The database reopens after the failed write: the feed may answer 503 meanwhile.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = feed(&s).await;
        if r.status == 200 && named(r.body["events"].as_array().unwrap()) > 0 {
            break;
        }
        if std::time::Instant::now() >= deadline {
            // What the server says of its database, to tell why (it failed once in CI).
            let url = format!("{}/healthz", s.url);
            let health = s.call(Method::GET, &url, None, None).await;
            panic!("never recorded: {}; /healthz: {}", r.body, health.body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Once, however many tries it took.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    assert_eq!(named(&plan_events(&s).await), 1);
    assert_eq!(summary(&s).await["plan"], "Business Plus");
}

/// A seat that comes free goes to the user the limit put on the free plan first, not to the
/// next user created; so do seats a reload adds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freed_and_added_seats_go_to_users_waiting_on_free() {
    let s = plan_srv(10, Some(2), SeatLimitPolicy::Free).await;
    let i1 = s.user("i1@x").await;
    s.user("i2@x").await;
    let i3 = s.user("i3@x").await;
    let i4 = s.user("i4@x").await;
    assert_eq!(free_ids(&s).await, [i3.clone(), i4.clone()]);
    assert_eq!(s.delete(&format!("/Users/{i1}")).await.status, 204);
    assert_eq!(free_ids(&s).await, std::slice::from_ref(&i4));
    // Testing mode: the two existing members are paid besides the two seated users.
    assert_eq!(counts(&summary(&s).await), ("testing".into(), 4, 1, 0));
    // A new user finds no seat: i4 is still first in line.
    let i5 = s.user("i5@x").await;
    assert_eq!(free_ids(&s).await, [i4.clone(), i5.clone()]);
    let mut more = s.config.clone();
    more.tenants
        .get_mut("acme")
        .unwrap()
        .plan
        .as_mut()
        .unwrap()
        .seats = Some(3);
    s.reloader().apply(more).await.unwrap();
    assert_eq!(free_ids(&s).await, [i5]);
    let placed: Vec<String> = plan_events(&s)
        .await
        .iter()
        .filter(|e| e["type"] == "plan.placed_on_paid")
        .map(|e| e["resource_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(placed, [i3, i4]);
}

async fn free_ids(s: &Srv) -> Vec<String> {
    members(s, "?status=free").await["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect()
}

/// The (type, resource_id or attributes, token) of each plan event after the first `skip`.
async fn plan_said(s: &Srv, skip: usize) -> Vec<(String, Value, String)> {
    plan_events(s)
        .await
        .iter()
        .skip(skip)
        .map(|e| {
            let what = match e["type"].as_str().unwrap() {
                "plan.settings_changed" => e["attributes"].clone(),
                "plan.changed" => json!([e["from"], e["to"]]),
                _ => e["resource_id"].clone(),
            };
            (
                e["type"].as_str().unwrap().to_string(),
                what,
                e["token"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A server whose plan (threshold 10, 3 seats, overflow to free) has `n` users, those past
/// the third waiting on the free plan; their ids, and how many plan events there are.
async fn waiting_on_free(n: usize) -> (Srv, Vec<String>, usize) {
    let s = plan_srv(10, Some(3), SeatLimitPolicy::Free).await;
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(s.user(&format!("w{i}@x")).await);
    }
    assert_eq!(free_ids(&s).await, ids[3..]);
    let before = plan_events(&s).await.len();
    (s, ids, before)
}

/// `cfg` with acme's plan changed by `change`.
fn plan_edited(
    cfg: &scimd::config::Config,
    change: impl FnOnce(&mut PlanConfig),
) -> scimd::config::Config {
    let mut cfg = cfg.clone();
    change(cfg.tenants.get_mut("acme").unwrap().plan.as_mut().unwrap());
    cfg
}

/// A plan table taken out and put back with more seats gives them to the users the limit
/// had put on the free plan, as raising `seats` in one reload does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_table_put_back_with_more_seats_seats_the_users_waiting() {
    let (s, ids, before) = waiting_on_free(6).await;
    let mut without = s.config.clone();
    without.tenants.get_mut("acme").unwrap().plan = None;
    s.reloader().apply(without).await.unwrap();
    let more = plan_edited(&s.config, |p| p.seats = Some(10));
    s.reloader().apply(more).await.unwrap();
    assert_eq!(free_ids(&s).await, Vec::<String>::new());
    let reload = "(configuration reload)".to_string();
    let placed = |id: &String| ("plan.placed_on_paid".to_string(), json!(id), reload.clone());
    assert_eq!(
        plan_said(&s, before).await,
        [
            (
                "plan.settings_changed".into(),
                json!(["plan"]),
                reload.clone()
            ),
            (
                "plan.settings_changed".into(),
                json!(["plan"]),
                reload.clone()
            ),
            placed(&ids[3]),
            placed(&ids[4]),
            placed(&ids[5]),
        ]
    );
}

/// Plan settings edited while scimd was stopped take effect at the next start as a reload's
/// edit would: the feed names them, the mode they switch, and the users seats they open go
/// to; an unchanged start says nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_settings_edited_while_stopped_apply_at_the_next_start() {
    let (s, ids, before) = waiting_on_free(6).await;
    assert_eq!(counts(&summary(&s).await).0, "testing");
    let edited = plan_edited(&s.config, |p| {
        p.seats = Some(10);
        p.test_threshold = 2;
    });
    let dir = s.stop().await;
    let s = Srv::start_config(dir, edited.clone()).await;
    assert_eq!(free_ids(&s).await, Vec::<String>::new());
    assert_eq!(counts(&summary(&s).await).0, "enforced");
    let start = "(configuration at start)".to_string();
    let placed = |id: &String| ("plan.placed_on_paid".to_string(), json!(id), start.clone());
    assert_eq!(
        plan_said(&s, before).await,
        [
            (
                "plan.settings_changed".into(),
                json!(["test_threshold", "seats"]),
                start.clone()
            ),
            (
                "plan.changed".into(),
                json!(["testing", "enforced"]),
                start.clone()
            ),
            placed(&ids[3]),
            placed(&ids[4]),
            placed(&ids[5]),
        ]
    );
    let after = plan_events(&s).await.len();
    let dir = s.stop().await;
    let s = Srv::start_config(dir, edited).await;
    assert_eq!(
        plan_events(&s).await.len(),
        after,
        "an unchanged start said something"
    );
}

/// A database from before the record of applied plan settings (here: the record taken out)
/// whose users wait on the free plan with seats open, as an older version could leave them:
/// the first start applies the plan as one just added, seating them and telling readers to
/// read the plan again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_without_the_plan_record_is_brought_in_line_at_its_first_start() {
    let (s, ids, before) = waiting_on_free(5).await;
    let edited = plan_edited(&s.config, |p| p.seats = Some(10));
    let dir = s.stop().await;
    // The writer lets go of the file once its last sender is dropped.
    let path = dir.path().join("state/scimd.redb");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let db = loop {
        match redb::Database::create(&path) {
            Ok(db) => break db,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    let meta: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta");
    let w = db.begin_write().unwrap();
    {
        let mut t = w.open_table(meta).unwrap();
        let keys: Vec<String> = redb::ReadableTable::iter(&t)
            .unwrap()
            .map(|e| e.unwrap().0.value().to_string())
            .filter(|k| k.starts_with("plan/"))
            .collect();
        assert!(!keys.is_empty(), "no plan record to take out");
        for k in keys {
            t.remove(k.as_str()).unwrap();
        }
    }
    w.commit().unwrap();
    drop(db);
    let s = Srv::start_config(dir, edited).await;
    assert_eq!(free_ids(&s).await, Vec::<String>::new());
    let start = "(configuration at start)".to_string();
    let placed = |id: &String| ("plan.placed_on_paid".to_string(), json!(id), start.clone());
    assert_eq!(
        plan_said(&s, before).await,
        [
            (
                "plan.settings_changed".into(),
                json!(["plan"]),
                start.clone()
            ),
            placed(&ids[3]),
            placed(&ids[4]),
        ]
    );
}

/// In testing mode an existing member's account never waits for a seat, however it came to
/// be one: made an existing member by a reload while on free, its seat comes back on top and
/// the seat a leaver frees goes to the user next in line, not to it (already paid) nor to a
/// newcomer; it stays paid when the plan is enforced again; and a seated user becoming an
/// existing member's account leaves its seat to the next in line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_members_accounts_never_wait_for_a_seat_in_testing_mode() {
    // Enforced from the first user, one seat: h and w wait on free.
    let s = plan_srv_of(1, Some(1), SeatLimitPolicy::Free, &[]).await;
    let a = s.user("a@x").await;
    let h = s.user("hr@x").await;
    let w = s.user("w@x").await;
    assert_eq!(free_ids(&s).await, [h.clone(), w.clone()]);
    // The reload makes h an existing member's account, in testing mode: paid on top.
    let edited = plan_edited(&s.config, |p| {
        p.test_threshold = 8;
        p.existing_members = vec!["hr@x".into()];
    });
    s.reloader().apply(edited).await.unwrap();
    assert_eq!(free_ids(&s).await, std::slice::from_ref(&w));
    // a leaves: its seat goes to w, and the next newcomer waits.
    let off = json!([{"op": "replace", "path": "active", "value": false}]);
    assert_eq!(s.patch(&format!("/Users/{a}"), off).await.status, 200);
    assert_eq!(free_ids(&s).await, Vec::<String>::new());
    let c = s.user("c@x").await;
    assert_eq!(free_ids(&s).await, std::slice::from_ref(&c));
    let said = plan_said(&s, 0).await;
    let placed: Vec<&Value> = said
        .iter()
        .filter(|e| e.0 == "plan.placed_on_paid")
        .map(|e| &e.1)
        .collect();
    // h was listed paid from the reload on: only w's move is an event.
    assert_eq!(placed, [&json!(w)]);
    // Enforced again (three active, over a threshold of 2): h stays paid, over the seat.
    let enforced = plan_edited(&s.config, |p| {
        p.test_threshold = 2;
        p.existing_members = vec!["hr@x".into()];
    });
    s.reloader().apply(enforced).await.unwrap();
    assert_eq!(counts(&summary(&s).await).0, "enforced");
    assert_eq!(free_ids(&s).await, std::slice::from_ref(&c));
    // Testing again, with a second entry w is about to match.
    let testing = plan_edited(&s.config, |p| {
        p.test_threshold = 8;
        p.existing_members = vec!["hr@x".into(), "w2@x".into()];
    });
    s.reloader().apply(testing).await.unwrap();
    let renamed = json!([{"op": "replace", "path": "userName", "value": "w2@x"}]);
    assert_eq!(s.patch(&format!("/Users/{w}"), renamed).await.status, 200);
    // w now holds an existing member's seat on top: its seat goes to c.
    assert_eq!(free_ids(&s).await, Vec::<String>::new());
}

/// An account that stops being an existing member's (its emails or userName changed) held
/// its seat on top of the limit, and the seat it had before went to the next user waiting:
/// with no seat open it goes back to the free plan, in line by creation, never keeping a
/// seat past the limit ahead of users who were waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_no_longer_an_existing_members_goes_back_in_line() {
    let s = plan_srv_of(10, Some(1), SeatLimitPolicy::Free, &["boss@x"]).await;
    let seated = s.user("seated@x").await;
    let w1 = s.user("w1@x").await;
    let w2 = s.user("w2@x").await;
    let w3 = s.user("w3@x").await;
    assert_eq!(free_ids(&s).await, [w1.clone(), w2.clone(), w3.clone()]);
    // w3 takes the boss's address: paid on top of the seat.
    let boss = json!([{"op": "add", "path": "emails", "value": [{"value": "Boss@x"}]}]);
    assert_eq!(s.patch(&format!("/Users/{w3}"), boss).await.status, 200);
    assert_eq!(free_ids(&s).await, [w1.clone(), w2.clone()]);
    // ... and drops it: back in line, behind w1 and w2.
    let dropped = json!([{"op": "remove", "path": "emails"}]);
    assert_eq!(s.patch(&format!("/Users/{w3}"), dropped).await.status, 200);
    assert_eq!(free_ids(&s).await, [w1.clone(), w2.clone(), w3.clone()]);
    // The seated user becomes the boss's account: its seat goes to w1. Renamed back, it has
    // no seat to return to, and waits first in line (it was created first).
    let rename = |name: &str| json!([{"op": "replace", "path": "userName", "value": name}]);
    let at = format!("/Users/{seated}");
    assert_eq!(s.patch(&at, rename("boss@x")).await.status, 200);
    assert_eq!(free_ids(&s).await, [w2.clone(), w3.clone()]);
    assert_eq!(s.patch(&at, rename("seated@x")).await.status, 200);
    assert_eq!(free_ids(&s).await, [seated.clone(), w2.clone(), w3.clone()]);
    // One seat, and the boss's entry (no account matches it now) paid in testing mode.
    assert_eq!(counts(&summary(&s).await), ("testing".into(), 2, 3, 0));
    let moves: Vec<(String, Value)> = plan_said(&s, 0)
        .await
        .into_iter()
        .map(|e| (e.0, e.1))
        .collect();
    let m = |kind: &str, id: &str| (kind.to_string(), json!(id));
    assert_eq!(
        moves,
        [
            m("plan.placed_on_free", &w1),
            m("plan.placed_on_free", &w2),
            m("plan.placed_on_free", &w3),
            m("plan.placed_on_paid", &w3),
            m("plan.placed_on_free", &w3),
            m("plan.placed_on_paid", &w1),
            m("plan.placed_on_free", &seated),
        ]
    );
    // A seat that comes free goes to the first in line.
    let off = json!([{"op": "replace", "path": "active", "value": false}]);
    assert_eq!(s.patch(&format!("/Users/{w1}"), off).await.status, 200);
    assert_eq!(free_ids(&s).await, [w2, w3]);
}

/// An entry's account that moves to another entry, whose seat an account already holds,
/// goes back in line rather than take it over (by being the older) and push that account
/// into an ordinary seat: paid 4 with 1 seat, 2 entries and 3 active users. So it does
/// when it matched both entries on the way (and held both by being the older); while it
/// matches its own, nobody moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entrys_account_moving_to_an_entry_already_held_goes_back_in_line() {
    for on_the_way in [
        &[][..],
        &[&["m1@x", "m2@x"][..], &["m1@x"], &["m1@x", "m2@x"]],
    ] {
        let s = plan_srv_of(4, Some(1), SeatLimitPolicy::Free, &["m1@x", "m2@x"]).await;
        let a = s
            .post(
                "/Users",
                json!({"userName": "a@x", "emails": [{"value": "m1@x"}]}),
            )
            .await
            .id();
        let m2 = s.user("m2@x").await;
        let u3 = s.user("u3@x").await;
        assert!(free_ids(&s).await.is_empty());
        let skip = plan_events(&s).await.len();
        for step in on_the_way {
            let at = format!("/Users/{a}");
            assert_eq!(s.patch(&at, emails(step)).await.status, 200);
            assert!(free_ids(&s).await.is_empty(), "{step:?}");
            assert_eq!(counts(&summary(&s).await), ("testing".into(), 3, 0, 0));
        }
        let moved = emails(&["m2@x"]);
        assert_eq!(s.patch(&format!("/Users/{a}"), moved).await.status, 200);
        assert_eq!(
            free_ids(&s).await,
            std::slice::from_ref(&a),
            "{on_the_way:?}"
        );
        // m1's entry (no account now), m2's account and the one seat.
        assert_eq!(counts(&summary(&s).await), ("testing".into(), 3, 1, 0));
        let said: Vec<(String, Value)> = plan_said(&s, skip)
            .await
            .into_iter()
            .map(|e| (e.0, e.1))
            .collect();
        assert_eq!(said, [("plan.placed_on_free".to_string(), json!(a))]);
        // The seat stays u3's, and m2's account stays paid.
        let paid = members(&s, "?status=paid").await;
        let ids: Vec<&str> = paid["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["id"].as_str())
            .collect();
        assert_eq!(ids, [m2.as_str(), u3.as_str()]);
    }
}

/// An entry's account that moves to an entry an older account already holds (beside one of
/// its own) holds no entry any more: with the one seat taken, it goes back in line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entrys_account_moving_to_an_entry_an_older_account_holds_goes_back_in_line() {
    let s = plan_srv_of(5, Some(1), SeatLimitPolicy::Free, &["m1@x", "m2@x", "m3@x"]).await;
    let older = json!({"userName": "m2@x", "emails": [{"value": "m3@x"}]});
    s.post("/Users", older).await.id();
    let a = json!({"userName": "a@x", "emails": [{"value": "m1@x"}]});
    let a = s.post("/Users", a).await.id();
    s.user("u3@x").await;
    assert!(free_ids(&s).await.is_empty());
    let moved = emails(&["m3@x"]);
    assert_eq!(s.patch(&format!("/Users/{a}"), moved).await.status, 200);
    assert_eq!(free_ids(&s).await, std::slice::from_ref(&a));
    // m1's entry (no account now), the older account (m2 and m3) and the one seat.
    assert_eq!(counts(&summary(&s).await), ("testing".into(), 3, 1, 0));
}

/// Seats lowered by a reload leave people paid past the limit, and an account's own change
/// that adds none to them moves nobody: a seated user that matched an entry for a while
/// (holding it by being the older) and then no longer does keeps its seat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_leaving_an_entry_it_held_by_age_keeps_a_seat_lowered_seats_left_it() {
    let s = plan_srv_of(10, Some(1), SeatLimitPolicy::Free, &["m3@x"]).await;
    let a = s.user("a@x").await;
    s.user("m3@x").await;
    let b = s.user("b@x").await;
    assert_eq!(free_ids(&s).await, std::slice::from_ref(&b));
    let seats = |n: u64| plan_edited(&s.config, |p| p.seats = Some(n));
    s.reloader().apply(seats(2)).await.unwrap();
    let c = s.user("c@x").await;
    s.reloader().apply(seats(1)).await.unwrap();
    assert_eq!(free_ids(&s).await, std::slice::from_ref(&c));
    let skip = plan_events(&s).await.len();
    for step in [&["m3@x"][..], &[]] {
        assert_eq!(
            s.patch(&format!("/Users/{a}"), emails(step)).await.status,
            200
        );
        assert_eq!(free_ids(&s).await, std::slice::from_ref(&c), "{step:?}");
    }
    assert!(plan_said(&s, skip).await.is_empty());
}

/// The entry's one seat passes between the accounts matching it (the active one holds it,
/// else the oldest): one account's change moves another's status, and the feed names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seat_passing_between_an_entrys_accounts_is_in_the_feed() {
    let s = plan_srv(5, None, SeatLimitPolicy::Reject).await;
    let status = |id: String| {
        let s = &s;
        async move {
            let all = members(s, "").await;
            let me = all["members"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["id"] == id);
            me.unwrap()["status"].as_str().unwrap().to_string()
        }
    };
    let email = |value: &str| emails(&[value]);
    let vet = json!({"userName": "vet-old", "emails": [{"value": "veteran@example.com"}]});
    let old = s.post("/Users", vet).await.id();
    let off = json!([{"op": "replace", "path": "active", "value": false}]);
    assert_eq!(s.patch(&format!("/Users/{old}"), off).await.status, 200);
    assert_eq!(status(old.clone()).await, "paid", "a trial keeps the seat");
    let skip = plan_events(&s).await.len();

    // A new active account takes the person's seat: the old one is deactivated.
    let vet = json!({"userName": "vet-new", "emails": [{"value": "Veteran@example.com"}]});
    let new = s.post("/Users", vet).await.id();
    assert_eq!(status(old.clone()).await, "deactivated");
    // The new one stops matching: the seat is the old one's again; and back.
    let at = format!("/Users/{new}");
    assert_eq!(s.patch(&at, email("new@example.com")).await.status, 200);
    assert_eq!(status(old.clone()).await, "paid");
    assert_eq!(s.patch(&at, email("veteran@example.com")).await.status, 200);
    assert_eq!(status(old.clone()).await, "deactivated");
    // Deleted: the seat goes back to the old one.
    assert_eq!(s.delete(&at).await.status, 204);
    assert_eq!(status(old.clone()).await, "paid");

    let said: Vec<Value> = plan_events(&s).await.into_iter().skip(skip).collect();
    let moves: Vec<(&str, &str, &str, &str)> = said
        .iter()
        .map(|e| {
            let f = |k: &str| e[k].as_str().unwrap_or("-");
            (f("type"), f("resource_id"), f("from"), f("to"))
        })
        .collect();
    let moved = |from, to| ("plan.status_changed", old.as_str(), from, to);
    assert_eq!(
        moves,
        [
            moved("paid", "deactivated"),
            moved("deactivated", "paid"),
            moved("paid", "deactivated"),
            moved("deactivated", "paid"),
        ]
    );
    // Each after the event of the change that caused it.
    let all = all_events(&s).await;
    let at_seq = |e: &Value| all.iter().position(|x| x["seq"] == e["seq"]).unwrap();
    let cause = &all[at_seq(&said[0]) - 1];
    assert_eq!(
        (cause["type"].as_str(), cause["resource_id"].as_str()),
        (Some("user.created"), Some(new.as_str()))
    );
}
