//! The change feed: every committed change in order, ids and attribute names only.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{ACME, GLOBEX, Srv, assert_error};

async fn feed(s: &Srv, token: &str, tenant: &str, query: &str) -> Value {
    let r = s
        .call(
            Method::GET,
            &format!("/tenants/{tenant}/events{query}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// The sequence numbers of a feed page.
fn seqs_of(body: &Value) -> Vec<u64> {
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

/// A member event says whether the member is a user or a group, whichever way it joined or
/// left: added, removed, replaced, or deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_events_say_whether_the_member_is_a_user_or_a_group() {
    let s = Srv::start().await;
    let u = s.user("m@x").await;
    let w = s.user("w@x").await;
    let inner = s.group("Inner", &[]).await;
    let outer = s.group("Outer", &[&u, &inner]).await;
    s.patch(
        &format!("/Groups/{outer}"),
        json!([{"op": "remove", "path": format!("members[value eq \"{inner}\"]")}]),
    )
    .await;
    s.patch(
        &format!("/Groups/{outer}"),
        json!([{"op": "replace", "path": "members", "value": [{"value": inner}, {"value": w}]}]),
    )
    .await;
    s.delete(&format!("/Groups/{inner}")).await;
    let body = feed(&s, ACME, "acme", "").await;
    let got: Vec<(String, String, String)> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["member_id"].is_string())
        .map(|e| {
            let m = e["member_id"].as_str().unwrap();
            let who = [(&u, "u"), (&w, "w"), (&inner, "inner")]
                .iter()
                .find(|(id, _)| id.as_str() == m)
                .map_or("?", |(_, n)| *n);
            (
                e["type"].as_str().unwrap().to_string(),
                who.to_string(),
                e["member_type"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    let want = [
        ("group.member_added", "u", "User"),
        ("group.member_added", "inner", "Group"),
        ("group.member_removed", "inner", "Group"),
        ("group.member_removed", "u", "User"),
        // A replace adds in id order.
        ("group.member_added", "w", "User"),
        ("group.member_added", "inner", "Group"),
        ("group.member_removed", "inner", "Group"),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_sequence_is_recorded_in_order_without_personal_data() {
    let s = Srv::start().await;
    let u = s.user("private.person@secret.example").await;
    let v = s.user("other.person@secret.example").await;
    s.patch(
        &format!("/Users/{u}"),
        json!([{"op": "replace", "path": "title", "value": "Boss"}]),
    )
    .await;
    s.patch(
        &format!("/Users/{u}"),
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    s.patch(
        &format!("/Users/{u}"),
        json!([{"op": "replace", "path": "active", "value": true}]),
    )
    .await;
    let g = s.group("Secret Club", &[&u]).await;
    s.patch(
        &format!("/Groups/{g}"),
        json!([{"op": "add", "path": "members", "value": [{"value": v}, {"value": u}]}]),
    )
    .await;
    s.patch(
        &format!("/Groups/{g}"),
        json!([{"op": "remove", "path": format!("members[value eq \"{u}\"]")}]),
    )
    .await;
    // A rejected write and a no-op write leave no event.
    assert_eq!(
        s.post(
            "/Users",
            json!({"userName": "PRIVATE.person@secret.example"})
        )
        .await
        .status,
        409
    );
    s.patch(
        &format!("/Groups/{g}"),
        json!([{"op": "replace", "path": "displayName", "value": "Secret Club"}]),
    )
    .await;
    s.delete(&format!("/Users/{v}")).await;
    s.delete(&format!("/Groups/{g}")).await;
    let body = feed(&s, ACME, "acme", "").await;
    let events = body["events"].as_array().unwrap();
    let got: Vec<(String, String, Option<String>)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["resource_id"].as_str().unwrap().to_string(),
                e["member_id"].as_str().map(str::to_string),
            )
        })
        .collect();
    let want = vec![
        ("user.created", &u, None),
        ("user.created", &v, None),
        ("user.updated", &u, None),
        ("user.deactivated", &u, None),
        ("user.reactivated", &u, None),
        ("group.created", &g, None),
        ("group.member_added", &g, Some(&u)),
        ("group.member_added", &g, Some(&v)),
        ("group.member_removed", &g, Some(&u)),
        ("group.member_removed", &g, Some(&v)),
        ("user.deleted", &v, None),
        ("group.deleted", &g, None),
    ];
    let want: Vec<(String, String, Option<String>)> = want
        .into_iter()
        .map(|(t, id, m)| (t.to_string(), id.clone(), m.cloned()))
        .collect();
    assert_eq!(got, want);
    for e in events {
        let want = if e["member_id"].is_string() {
            json!("User")
        } else {
            Value::Null
        };
        assert_eq!(e["member_type"], want, "{e}");
    }
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
    assert_eq!(body["last_seq"], *seqs.last().unwrap());
    assert_eq!(events[2]["attributes"], json!(["title"]));
    assert_eq!(events[3]["attributes"], json!(["active"]));
    assert!(events.iter().all(|e| e["token"] == "okta"));
    assert!(
        events
            .iter()
            .all(|e| e["time"].as_str().unwrap().contains('T'))
    );
    let text = body.to_string();
    for secret in ["private.person", "secret.example", "Secret Club", "Boss"] {
        assert!(!text.contains(secret), "events leak {secret}");
    }
    // Paging.
    let page = feed(&s, ACME, "acme", &format!("?after={}&limit=2", seqs[3])).await;
    assert_eq!(seqs_of(&page), seqs[4..6].to_vec());
    assert_eq!(page["next_after"], seqs[5]);
    // Other tenants see only their own feed, and only with their own token.
    assert_eq!(feed(&s, GLOBEX, "globex", "").await["events"], json!([]));
    let r = s
        .call(Method::GET, "/tenants/acme/events", Some(GLOBEX), None)
        .await;
    assert_eq!(r.status, 401);
}

/// A user created without `active` is active: an IdP that later sends `active: true` beside
/// a real change (Entra's multi-operation PATCH, Okta's PUT) changed only the rest.
#[tokio::test]
async fn active_sent_as_true_for_a_user_created_without_it_is_not_named_as_changed() {
    let s = Srv::start().await;
    let u = s
        .post("/Users", json!({"userName": "quiet@acme.example"}))
        .await
        .id();
    s.patch(
        &format!("/Users/{u}"),
        json!([{"op": "replace", "value": {"active": true, "title": "A"}}]),
    )
    .await;
    let put = json!({"userName": "quiet@acme.example", "title": "B", "active": true});
    assert_eq!(s.put(&format!("/Users/{u}"), put).await.status, 200);
    s.patch(
        &format!("/Users/{u}"),
        json!([{"op": "replace", "path": "active", "value": false}]),
    )
    .await;
    let events = feed(&s, ACME, "acme", "").await["events"].clone();
    let got: Vec<(&str, &Value)> = events
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|e| (e["type"].as_str().unwrap(), &e["attributes"]))
        .collect();
    assert_eq!(
        got,
        [
            ("user.updated", &json!(["title"])),
            ("user.updated", &json!(["title"])),
            ("user.deactivated", &json!(["active"])),
        ]
    );
}

/// A reload that keeps fewer events takes effect on the next read, before any write has
/// trimmed the feed: a quiet tenant's feed follows its retention too.
#[tokio::test]
async fn lowered_retention_holds_before_the_next_write() {
    let s = Srv::start().await;
    for i in 0..8 {
        s.user(&format!("q{i}@x")).await;
    }
    let mut cfg = s.config.clone();
    cfg.tenants.get_mut("acme").unwrap().events_max_count = Some(2);
    s.reloader().apply(cfg).await.unwrap();
    let body = feed(&s, ACME, "acme", "").await;
    let seqs = seqs_of(&body);
    assert_eq!(seqs, vec![7, 8]);
    assert_eq!(body["oldest_seq"], 7);
    let r = s
        .call(
            Method::GET,
            "/tenants/acme/events?after=3",
            Some(ACME),
            None,
        )
        .await;
    assert_error(&r, 410, None);
    // Raised again by the next reload: what readers were told is gone stays gone.
    let mut raised = s.config.clone();
    raised.tenants.get_mut("acme").unwrap().events_max_count = Some(100);
    s.reloader().apply(raised).await.unwrap();
    let body = feed(&s, ACME, "acme", "").await;
    assert_eq!(seqs_of(&body), vec![7, 8]);
    assert_eq!(body["oldest_seq"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_events() {
    let s =
        Srv::start_with(|c| c.tenants.get_mut("acme").unwrap().events_max_count = Some(3)).await;
    for i in 0..6 {
        s.user(&format!("r{i}@x")).await;
    }
    let body = feed(&s, ACME, "acme", "").await;
    let seqs = seqs_of(&body);
    assert_eq!(seqs, vec![4, 5, 6]);
    assert_eq!(body["oldest_seq"], 4);
    // A reader that had seen event 3 has missed nothing; one at 2 has missed event 3, and
    // is told so instead of being handed 4, 5, 6 as if they followed.
    assert_eq!(
        feed(&s, ACME, "acme", "?after=3").await["events"][0]["seq"],
        4
    );
    let gone = |after: u64| {
        let s = &s;
        async move {
            let r = s
                .call(
                    Method::GET,
                    &format!("/tenants/acme/events?after={after}"),
                    Some(ACME),
                    None,
                )
                .await;
            assert_error(&r, 410, None);
            r.body["detail"].as_str().unwrap().to_string()
        }
    };
    let detail = gone(2).await;
    assert!(
        detail.contains("events 3 to 3") && detail.contains("after=6"),
        "{detail}"
    );
    // So is one that has seen nothing (an empty feed once gave it `next_after: 0`); without
    // `after` a reader asks only for what is kept.
    assert!(gone(0).await.contains("events 1 to 3"));
    // Asking for no events from where the kept ones start says where that is.
    let none = feed(&s, ACME, "acme", "?limit=0").await;
    assert_eq!(none["events"], json!([]));
    assert_eq!(none["next_after"], 3, "{none}");
    let r = s
        .call(
            Method::GET,
            "/tenants/acme/events?after=-1",
            Some(ACME),
            None,
        )
        .await;
    assert_error(&r, 400, Some("invalidValue"));
    // A reader past the newest event (the feed was reset by a restore) is told too.
    assert!(gone(1000).await.contains("reset"));
    // Quoted as sent, not as the largest number it was read as.
    let r = s
        .call(
            Method::GET,
            "/tenants/acme/events?after=99999999999999999999999",
            Some(ACME),
            None,
        )
        .await;
    assert_error(&r, 410, None);
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("after=99999999999999999999999 is past"),
        "{detail}"
    );
    // One commit that writes more events than are kept: a reader from before it learns
    // that it lost some.
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(s.user(&format!("bulk{i}@x")).await);
    }
    let before = feed(&s, ACME, "acme", "").await["last_seq"]
        .as_u64()
        .unwrap();
    let members: Vec<&str> = ids.iter().map(String::as_str).collect();
    s.group("Bulk", &members).await;
    gone(before).await;
}
