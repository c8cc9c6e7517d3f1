//! Groups and membership in both directions.

use serde_json::json;

use crate::harness::{Srv, assert_error, total};

fn member_ids(body: &serde_json::Value) -> Vec<String> {
    crate::harness::sorted(&body["members"], "value")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_with_user_and_group_members_and_computed_user_groups() {
    let s = Srv::start().await;
    let u1 = s.user("u1@x").await;
    let u2 = s.user("u2@x").await;
    let inner = s.group("Inner", &[&u2]).await;
    let r = s.post("/Groups", json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Outer",
        "externalId": "ext-1", "members": [{"value": u1, "type": "User"}, {"value": inner}]})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let outer = r.id();
    let mut want = vec![u1.clone(), inner.clone()];
    want.sort();
    assert_eq!(member_ids(&r.body), want);
    let m = r.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["value"] == inner.as_str())
        .unwrap()
        .clone();
    assert_eq!(m["type"], "Group");
    assert!(
        m["$ref"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/Groups/{inner}"))
    );
    assert_eq!(r.body["externalId"], "ext-1");
    let u = s.get(&format!("/Users/{u1}")).await;
    assert_eq!(
        u.body["groups"],
        json!([{"value": outer, "display": "Outer", "type": "direct",
        "$ref": format!("{}/Groups/{outer}", s.base())}])
    );
    let g = s.get(&format!("/Groups/{outer}")).await;
    assert_eq!(member_ids(&g.body), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_must_exist_and_a_group_cannot_hold_itself() {
    let s = Srv::start().await;
    let r = s.post("/Groups", json!({"displayName": "G", "members": [{"value": "01a203fb-9d8a-77b6-beb8-99c9f8d5ccc9"}]})).await;
    assert_error(&r, 400, Some("invalidValue"));
    assert_eq!(
        total(&s.get("/Groups").await),
        0,
        "a rejected create stores nothing"
    );
    let u = s.user("typed@x").await;
    let r = s
        .post(
            "/Groups",
            json!({"displayName": "G", "members": [{"value": u, "type": "Group"}]}),
        )
        .await;
    assert_error(&r, 400, Some("invalidValue"));
    let g = s.group("Self", &[]).await;
    let r = s
        .patch(
            &format!("/Groups/{g}"),
            json!([{"op": "add", "path": "members", "value": [{"value": g}]}]),
        )
        .await;
    assert_error(&r, 400, Some("invalidValue"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn display_name_is_unique_case_insensitively() {
    let s = Srv::start().await;
    let g = s.group("Engineering", &[]).await;
    let r = s
        .post("/Groups", json!({"displayName": "ENGINEERING"}))
        .await;
    assert_error(&r, 409, Some("uniqueness"));
    assert!(r.body["detail"].as_str().unwrap().contains(&g));
    let other = s.group("Sales", &[]).await;
    let r = s
        .patch(
            &format!("/Groups/{other}"),
            json!([{"op": "replace", "path": "displayName", "value": "engineering"}]),
        )
        .await;
    assert_error(&r, 409, Some("uniqueness"));
    // Okta re-sends the unchanged name with its own id on every push: not a conflict.
    let r = s
        .patch(
            &format!("/Groups/{g}"),
            json!([{"op": "replace", "value": {"id": g, "displayName": "Engineering"}}]),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_error(
        &s.post("/Groups", json!({"members": []})).await,
        400,
        Some("invalidValue"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_removes_it_from_every_group() {
    let s = Srv::start().await;
    let a = s.user("a@x").await;
    let b = s.user("b@x").await;
    let g1 = s.group("G1", &[&a, &b]).await;
    let g2 = s.group("G2", &[&a]).await;
    let before = s.get(&format!("/Groups/{g1}")).await;
    assert_eq!(s.delete(&format!("/Users/{a}")).await.status, 204);
    let after = s.get(&format!("/Groups/{g1}")).await;
    assert_eq!(member_ids(&after.body), vec![b.clone()]);
    assert_ne!(
        after.body["meta"]["version"], before.body["meta"]["version"],
        "the group changed"
    );
    assert_eq!(
        s.get(&format!("/Groups/{g2}")).await.body["members"],
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_group_removes_its_membership_rows() {
    let s = Srv::start().await;
    let a = s.user("a@x").await;
    let inner = s.group("Inner", &[&a]).await;
    let outer = s.group("Outer", &[&inner]).await;
    assert_eq!(s.delete(&format!("/Groups/{inner}")).await.status, 204);
    assert_eq!(
        s.get(&format!("/Users/{a}")).await.body["groups"],
        json!([])
    );
    assert_eq!(
        s.get(&format!("/Groups/{outer}")).await.body["members"],
        json!([])
    );
    assert_error(&s.get(&format!("/Groups/{inner}")).await, 404, None);
    // A group of the same name can be made again.
    s.group("Inner", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_members_and_put_replacing_the_member_list() {
    let s = Srv::start().await;
    let a = s.user("a@x").await;
    let b = s.user("b@x").await;
    let g = s.group("G", &[&a]).await;
    let r = s
        .get(&format!("/Groups/{g}?excludedAttributes=members"))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.get("members").is_none(), "{}", r.body);
    assert_eq!(r.body["displayName"], "G");
    let r = s.get("/Groups?excludedAttributes=members").await;
    assert!(r.body["Resources"][0].get("members").is_none());
    let r = s
        .put(
            &format!("/Groups/{g}"),
            json!({"displayName": "G2", "members": [{"value": b}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(member_ids(&r.body), vec![b.clone()]);
    assert_eq!(
        s.get(&format!("/Users/{a}")).await.body["groups"],
        json!([])
    );
    let r = s
        .put(&format!("/Groups/{g}"), json!({"displayName": "G2"}))
        .await;
    assert_eq!(
        r.body["members"],
        json!([]),
        "PUT without members empties the group"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_group_is_streamed_whole_and_valid() {
    let s = Srv::start().await;
    // More members than one streamed batch (1024), created concurrently (group commit).
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (client, url) = (s.client.clone(), format!("{}/Users", s.base()));
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..80 {
                let r = client
                    .post(&url)
                    .bearer_auth(crate::harness::ACME)
                    .header("Content-Type", "application/scim+json")
                    .body(json!({"userName": format!("big{w}-{i}@x")}).to_string())
                    .send()
                    .await
                    .unwrap();
                let v: serde_json::Value = r.json().await.unwrap();
                mine.push(v["id"].as_str().unwrap().to_string());
            }
            mine
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    let g = s.group("Everyone", &[]).await;
    for chunk in ids.chunks(1000) {
        let members: Vec<serde_json::Value> = chunk.iter().map(|id| json!({"value": id})).collect();
        let r = s
            .patch(
                &format!("/Groups/{g}"),
                json!([{"op": "add", "path": "members", "value": members}]),
            )
            .await;
        assert_eq!(r.status, 204);
    }
    let r = s.get(&format!("/Groups/{g}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["displayName"], "Everyone");
    let mut got = member_ids(&r.body);
    let mut want = ids.clone();
    want.sort();
    got.dedup();
    assert_eq!(
        got, want,
        "every member exactly once, in a parseable document"
    );
    assert_eq!(r.body["members"][0]["type"], "User");
    let etag = r.header("etag").unwrap().to_string();
    assert_eq!(r.body["meta"]["version"], etag.as_str());
    let r = s
        .call_with(
            reqwest::Method::GET,
            &format!("/Groups/{g}"),
            Some(crate::harness::ACME),
            None,
            &[("If-None-Match", &etag)],
        )
        .await;
    assert_eq!(r.status, 304);
}

/// A list page holding groups carries each group's members as `GET /Groups/{id}` does (they
/// are streamed, not read into one list): several groups, an empty one, a nested group, a
/// member projection, cursor paging, and a search across both types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_lists_carry_every_member_as_a_single_get_does() {
    let s = Srv::start().await;
    let mut users = Vec::new();
    for i in 0..1200 {
        users.push(s.user(&format!("m{i}@x")).await);
    }
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    let big = s.group("Big", &refs).await;
    let empty = s.group("Empty", &[]).await;
    let nested = s.group("Nested", &[&big, refs[0]]).await;
    let single = |id: String| {
        let s = &s;
        async move { s.get(&format!("/Groups/{id}")).await.body }
    };
    let want = [
        single(big.clone()).await,
        single(empty.clone()).await,
        single(nested.clone()).await,
    ];
    assert_eq!(member_ids(&want[0]).len(), 1200);
    let list = s.get("/Groups?count=10").await;
    assert_eq!(list.status, 200);
    assert_eq!(total(&list), 3);
    assert_eq!(list.body["Resources"].as_array().unwrap().as_slice(), &want);
    // By cursor, one group a page.
    assert_eq!(s.walk("/Groups?count=1").await, want);
    // Only the members' values: projected member by member.
    let r = s
        .get("/Groups?attributes=members.value&filter=displayName eq \"Nested\"")
        .await;
    let ms = r.body["Resources"][0]["members"]
        .as_array()
        .unwrap()
        .clone();
    let mut vals: Vec<serde_json::Value> = vec![json!({"value": big}), json!({"value": refs[0]})];
    vals.sort_by_key(|v| v["value"].as_str().unwrap().to_string());
    let mut ms_sorted = ms.clone();
    ms_sorted.sort_by_key(|v| v["value"].as_str().unwrap().to_string());
    assert_eq!(ms_sorted, vals);
    // A single GET with a projection streams the members as the plain GET does.
    let r = s
        .get(&format!("/Groups/{big}?excludedAttributes=externalId"))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, want[0]);
    let r = s
        .get(&format!("/Groups/{nested}?attributes=members.value"))
        .await;
    let mut ms = r.body["members"].as_array().unwrap().clone();
    ms.sort_by_key(|v| v["value"].as_str().unwrap().to_string());
    assert_eq!(ms, vals);
    assert!(
        r.body.get("displayName").is_none() && r.body["id"] == nested.as_str(),
        "{}",
        r.body
    );
    // A value filter in `attributes` (Microsoft's reference tests) keeps the members it
    // matches, streamed the same way; in `excludedAttributes` it leaves out those.
    let r = s
        .get(&format!(
            "/Groups/{nested}?attributes=members[type eq \"Group\"].value"
        ))
        .await;
    assert_eq!(r.body["members"], json!([{"value": big}]), "{}", r.body);
    let r = s
        .get("/Groups?excludedAttributes=members[type eq \"Group\"]&filter=displayName eq \"Nested\"")
        .await;
    let ms = &r.body["Resources"][0]["members"];
    assert_eq!(ms.as_array().map(Vec::len), Some(1), "{}", r.body);
    assert_eq!(ms[0]["value"], *refs[0]);
    assert_eq!(ms[0]["type"], "User");
    let r = s
        .get(&format!("/Groups/{big}?attributes=displayName"))
        .await;
    assert!(
        r.body.get("members").is_none() && r.body["displayName"] == "Big",
        "{}",
        r.body
    );
    // A projection that keeps nothing of any member leaves `members` out, as a user's
    // narrowed `emails` is, in a GET and on a list page; a group without members still
    // lists none by default.
    assert_eq!(want[1]["members"], json!([]), "{}", want[1]);
    let r = s
        .get(&format!("/Groups/{big}?attributes=members.display"))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.get("members").is_none(), "{}", r.body);
    assert_eq!(r.body["id"], big.as_str());
    let r = s
        .get("/Groups?attributes=members.display&filter=displayName eq \"Big\"")
        .await;
    let found = &r.body["Resources"][0];
    assert!(
        found.get("members").is_none() && found["id"] == big.as_str(),
        "{}",
        r.body
    );
    let r = s
        .patch(
            &format!("/Groups/{nested}"),
            json!([{"op": "add", "path": "members", "value": [{"value": refs[1], "display": "One"}]}]),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    for path in [
        format!("/Groups/{nested}?attributes=members.display"),
        "/Groups?attributes=members.display&filter=displayName eq \"Nested\"".to_string(),
    ] {
        let r = s.get(&path).await;
        let g = r.body.get("Resources").map_or(&r.body, |l| &l[0]);
        assert_eq!(
            g["members"],
            json!([{"display": "One"}]),
            "{path}: {}",
            r.body
        );
    }
    let r = s
        .get("/Groups/01890000-0000-7000-8000-000000000000?attributes=members")
        .await;
    assert_eq!(r.status, 404);
    // A search over both types: users first, then groups with their members.
    let r = s
        .post(
            "/.search",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                   "startIndex": 1199, "count": 4}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(total(&r), 1203);
    let page = r.body["Resources"].as_array().unwrap();
    assert_eq!(page.len(), 4);
    assert_eq!(page[1]["userName"], "m1199@x");
    assert_eq!(&page[2], &want[0]);
    assert_eq!(&page[3], &want[1]);
    // Questions about members other than "is x one" read the member list a batch of 1,024
    // at a time; the last user is only in Big's second batch.
    let last = refs[1199];
    let cases = [
        ("members.type eq \"Group\"".to_string(), vec!["Nested"]),
        // `ne`: some member differs (RFC 7644 §3.4.2.2); `not (... eq ...)`: none equals.
        (
            "members.type ne \"Group\"".to_string(),
            vec!["Big", "Nested"],
        ),
        (
            "not (members.type eq \"Group\")".to_string(),
            vec!["Big", "Empty"],
        ),
        (format!("members.value ew \"{last}\""), vec!["Big"]),
        (
            format!("members.value ne \"{last}\""),
            vec!["Big", "Nested"],
        ),
        (
            format!("not (members.value eq \"{last}\")"),
            vec!["Empty", "Nested"],
        ),
        (
            format!(
                "members[type eq \"User\" and value co \"{last}\"] or displayName eq \"Empty\""
            ),
            vec!["Big", "Empty"],
        ),
        (
            "members.type eq \"User\" and members.type eq \"Group\"".to_string(),
            vec!["Nested"],
        ),
    ];
    for (f, want) in cases {
        let r = s
            .get(&format!("/Groups?excludedAttributes=members&filter={f}"))
            .await;
        assert_eq!(r.status, 200, "{f}: {}", r.body);
        assert_eq!(crate::harness::display_names(&r), want, "{f}");
    }
}

/// A listed group's members are those of the version listed beside them, while another
/// client adds and removes a member (they were read in a later snapshot than the group,
/// one listed version in twenty disagreeing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_groups_members_match_its_listed_version_under_writes() {
    let s = Srv::start().await;
    let (stays, moves) = (s.user("stays@x").await, s.user("moves@x").await);
    let g = s.group("Toggled", &[&stays]).await;
    let url = format!("/Groups/{g}");
    let toggles = async {
        for i in 0..150 {
            let op = if i % 2 == 0 { "add" } else { "remove" };
            let ops = json!([{"op": op, "path": "members", "value": [{"value": moves}]}]);
            let r = s.patch(&url, ops).await;
            assert!(r.status == 204 || r.status == 200, "{}", r.body);
        }
    };
    let reads = async {
        let mut seen = std::collections::HashSet::new();
        for i in 0..150 {
            let path = match i % 3 {
                0 => "/Groups?filter=displayName%20eq%20%22Toggled%22&attributes=members,meta",
                1 => "/Groups?attributes=members,meta",
                _ => "/Groups?count=10&cursor=&attributes=members,meta",
            };
            let r = s.get(path).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let listed = &r.body["Resources"][0];
            let version: u64 = listed["meta"]["version"]
                .as_str()
                .and_then(|v| v.trim_start_matches("W/").trim_matches('"').parse().ok())
                .unwrap_or_else(|| panic!("{listed}"));
            // Version 1 has `stays` only; each add makes it even, each remove odd.
            let has = member_ids(listed).contains(&moves);
            assert_eq!(has, version.is_multiple_of(2), "{listed}");
            seen.insert(version);
        }
        seen.len()
    };
    let ((), versions) = tokio::join!(toggles, reads);
    assert!(versions > 1, "the reads saw no write");
}
