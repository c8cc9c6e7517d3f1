//! Okta's traffic, replayed request by request from idp-notes §2 (the SCIM 2.0 reference,
//! the older "SCIM Protocol" page, and the Runscope SPEC test that OIN requires).

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Srv, assert_error, total};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// §2.1: "Test API Credentials" sends exactly these two requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_connection_test() {
    let s = Srv::start().await;
    for path in [
        "/Users?startIndex=1&count=2",
        "/Groups?startIndex=1&count=100",
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        for k in ["totalResults", "startIndex", "itemsPerPage"] {
            assert!(r.body[k].is_u64(), "{k} must be a JSON integer: {}", r.body);
        }
        assert_eq!(
            r.body["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:ListResponse"
        );
    }
}

/// §2.2: the Runscope "Okta SCIM 2.0 SPEC Test", step by step with its assertions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_spec_test() {
    let s = Srv::start().await;
    // "create at least one user" first, as the test's documentation says.
    s.user("seed.user@atko.com").await;
    let r = s.get("/Users?count=1&startIndex=1").await;
    assert_eq!(r.status, 200);
    let first = &r.body["Resources"][0];
    for k in ["id", "userName"] {
        assert!(first[k].as_str().is_some_and(|v| !v.is_empty()), "{k}");
    }
    assert!(first["name"]["familyName"].is_string() && first["name"]["givenName"].is_string());
    assert!(first["active"].is_boolean());
    assert!(first["emails"][0]["value"].is_string());
    let id = first["id"].as_str().unwrap().to_string();
    let r = s.get(&format!("/Users/{id}")).await;
    assert_eq!((r.status, r.body["id"].as_str()), (200, Some(id.as_str())));
    let r = s
        .get("/Users?filter=userName eq \"abcdefgh@atko.com\"")
        .await;
    assert_eq!((r.status, total(&r)), (200, 0));
    let r = s.get("/Users/010101001010101011001010101011").await;
    assert_error(&r, 404, None);
    let random = "Runscope300Hfluaklab151@atko.com";
    assert_eq!(
        total(
            &s.get(&format!("/Users?filter=userName eq \"{random}\""))
                .await
        ),
        0
    );
    let body = json!({"schemas": [USER], "userName": random,
        "name": {"givenName": "Runscope300", "familyName": "Hfluaklab151"},
        "emails": [{"primary": true, "value": random, "type": "work"}],
        "displayName": "Runscope300 Hfluaklab151", "active": true});
    // The create step sends Content-Type: application/json.
    let create = || async {
        let resp = s
            .client
            .post(format!("{}/Users", s.base()))
            .bearer_auth(crate::harness::ACME)
            .header("Content-Type", "application/json")
            .header("Accept", "application/scim+json; charset=utf-8")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap())
    };
    let (status, created) = create().await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["active"], true);
    assert_eq!(created["name"]["givenName"], "Runscope300");
    assert_eq!(created["name"]["familyName"], "Hfluaklab151");
    assert!(
        created["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!(USER))
    );
    assert_eq!(created["userName"], random);
    let new_id = created["id"].as_str().unwrap();
    let r = s.get(&format!("/Users/{new_id}")).await;
    assert_eq!(
        (
            r.body["userName"].as_str(),
            r.body["name"]["givenName"].as_str()
        ),
        (Some(random), Some("Runscope300"))
    );
    let (status, dup) = create().await;
    assert_eq!(status, 409, "{dup}");
    // Upper-cased userName: 200, and it finds the same user (caseExact false).
    let r = s
        .get(&format!(
            "/Users?filter=userName eq \"{}\"",
            random.to_uppercase()
        ))
        .await;
    assert_eq!((r.status, total(&r)), (200, 1));
    let r = s.get("/Groups").await;
    assert_eq!(r.status, 200);
    let r = s
        .call_with(
            Method::GET,
            &format!("/Users?filter=userName eq \"{random}\""),
            None,
            None,
            &[("Authorization", "non-token")],
        )
        .await;
    assert_error(&r, 401, None);
    assert_error(&s.get("/Users/00919288221112222").await, 404, None);
}

/// §2.3–2.5: lookup, create with Okta's body, full-object PUT, deactivate and reactivate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_user_lifecycle() {
    let s = Srv::start().await;
    let r = s
        .get("/Users?filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100")
        .await;
    assert_eq!(
        r.body,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 0, "itemsPerPage": 0, "startIndex": 1, "Resources": []})
    );
    let r = s
        .post(
            "/Users",
            json!({"schemas": [USER], "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User"},
        "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
        "displayName": "Test User", "locale": "en-US", "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [], "password": "1mz050nq", "active": true}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(r.body.get("password").is_none());
    let id = r.id();
    // The older page's `+` form finds it; so does Okta's alternative externalId lookup.
    let r = s
        .get("/Users?filter=userName+eq+%22test.user%40okta.local%22&startIndex=1&count=100")
        .await;
    assert_eq!(r.body["Resources"][0]["id"], id.as_str());
    assert_eq!(
        total(
            &s.get("/Users?filter=externalId eq \"00ujl29u0le5T6Aj10h7\"")
                .await
        ),
        1
    );
    // PUT with the whole object, Okta's own meta with non-ISO dates, password and groups.
    let r = s.put(&format!("/Users/{id}"), json!({"id": id, "externalId": "00ujl29u0le5T6Aj10h7",
        "meta": {"resourceType": "User", "created": "04-12-2018 00:00:00", "lastModified": "04-12-2018 00:00:00", "version": "v1.0"},
        "schemas": [USER], "userName": "test.user@okta.local", "displayName": "Test Renamed", "locale": "en_US", "active": true,
        "password": "TkdFNVdIVkxhM2c9", "emails": [{"value": "test.user@okta.local", "type": "work", "primary": true}],
        "name": {"familyName": "User", "givenName": "Renamed"}, "groups": []})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"]["givenName"], "Renamed");
    assert_ne!(r.body["meta"]["created"], "04-12-2018 00:00:00");
    assert!(r.body.get("password").is_none());
    assert_eq!(
        s.get(&format!("/Users/{id}")).await.body["displayName"],
        "Test Renamed"
    );
    // A group membership survives deactivation, and the user stays readable and findable.
    let g = s.group("Okta Group", &[&id]).await;
    let deactivate = |active: bool| json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": active}}]});
    let r = s
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(crate::harness::ACME),
            Some(deactivate(false)),
        )
        .await;
    assert_eq!((r.status, r.body["active"].as_bool()), (200, Some(false)));
    assert_eq!(s.get(&format!("/Users/{id}")).await.body["active"], false);
    let r = s
        .get("/Users?filter=userName eq \"test.user@okta.local\"")
        .await;
    assert_eq!(r.body["Resources"][0]["active"], false);
    assert_eq!(
        s.get(&format!("/Groups/{g}")).await.body["members"][0]["value"],
        id.as_str()
    );
    let r = s
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(crate::harness::ACME),
            Some(deactivate(true)),
        )
        .await;
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["groups"][0]["value"], g.as_str());
    // A password push is accepted and never echoed. Inferred shape: the sources do not print
    // Okta's password PATCH body (idp-notes §2.5); the catalog's suite sends this one.
    let r = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "value": {"password": "n3wP4ss"}}]),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.get("password").is_none());
}

/// §2.6: Group Push — link by name, create, rename re-sent with every membership change,
/// two removes and an add in one request, full replace, unlink by delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_group_push() {
    let s = Srv::start().await;
    let u: Vec<String> = create_users(
        &s,
        &[
            "a@okta.local",
            "b@okta.local",
            "c@okta.local",
            "d@okta.local",
        ],
    )
    .await;
    let r = s.get("/Groups?filter=displayName eq \"Test SCIMv2\"").await;
    assert_eq!(total(&r), 0);
    let r = s.post("/Groups", json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Test SCIMv2", "members": []})).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["members"], json!([]));
    let g = r.id();
    assert_eq!(
        s.get("/Groups?filter=displayName eq \"Test SCIMv2\"")
            .await
            .body["Resources"][0]["id"],
        g.as_str()
    );
    let path = format!("/Groups/{g}");
    let rename = json!({"op": "replace", "value": {"id": g, "displayName": "Test SCIMv2"}});
    let r = s.patch(&path, json!([rename, {"op": "add", "path": "members", "value": [
        {"value": u[0], "display": "a@okta.local"}, {"value": u[1], "display": "b@okta.local"}, {"value": u[2], "display": "c@okta.local"}]}])).await;
    assert!(r.status == 200 || r.status == 204, "{}", r.status);
    let r = s.patch(&path, json!([rename,
        {"op": "remove", "path": format!("members[value eq \"{}\"]", u[0])},
        {"op": "remove", "path": format!("members[value eq \"{}\"]", u[1])},
        {"op": "add", "path": "members", "value": [{"value": u[3], "display": "d@okta.local"}, {"value": u[2], "display": "c@okta.local"}]}])).await;
    assert!(r.status == 200 || r.status == 204);
    assert_eq!(members(&s, &g).await, sorted(&[&u[2], &u[3]]));
    // Each member's `display` comes back as Okta sent it, in a read of the group, a list
    // (streamed) and a projection.
    let shown = |r: &crate::harness::Res| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = (r.body["members"].as_array().unwrap().iter())
            .map(|m| {
                let d = m["display"].as_str().unwrap_or("none");
                (m["value"].as_str().unwrap().to_string(), d.to_string())
            })
            .collect();
        v.sort();
        v
    };
    let want = {
        let mut w = vec![
            (u[2].clone(), "c@okta.local".to_string()),
            (u[3].clone(), "d@okta.local".to_string()),
        ];
        w.sort();
        w
    };
    assert_eq!(shown(&s.get(&path).await), want);
    let listed = s.get("/Groups?filter=displayName eq \"Test SCIMv2\"").await;
    assert_eq!(
        listed.body["Resources"][0]["members"],
        s.get(&path).await.body["members"]
    );
    let narrowed = s.get(&format!("{path}?attributes=members.display")).await;
    assert_eq!(narrowed.body["members"].as_array().map(Vec::len), Some(2));
    assert!(narrowed.body["members"][0].get("value").is_none());
    let f = "/Groups?filter=members.display eq \"d@okta.local\"&attributes=id";
    assert_eq!(total(&s.get(f).await), 1);
    // Retries: removing a non-member and re-adding a member are no-op successes. Inferred
    // (idp-notes §2.6): pushes are re-sent, so both must succeed without duplicates.
    let r = s
        .patch(
            &path,
            json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", u[0])},
        {"op": "add", "path": "members", "value": [{"value": u[3]}]}]),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(members(&s, &g).await, sorted(&[&u[2], &u[3]]));
    // Re-added without a display, a member keeps its own; with a new one, it takes it.
    assert_eq!(shown(&s.get(&path).await), want);
    let v1 = s.get(&path).await.body["meta"]["version"].clone();
    let r = s.patch(&path, json!([{"op": "add", "path": "members", "value": [{"value": u[3], "display": "dee@okta.local"}]}])).await;
    assert_eq!(r.status, 204);
    let after = s.get(&path).await;
    assert!(shown(&after).contains(&(u[3].clone(), "dee@okta.local".to_string())));
    assert_ne!(after.body["meta"]["version"], v1);
    // A rename with a changed name.
    let r = s
        .patch(
            &path,
            json!([{"op": "replace", "value": {"id": g, "displayName": "Renamed SCIMv2"}}]),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(s.get(&path).await.body["displayName"], "Renamed SCIMv2");
    // A full push replaces every member; AIW apps PUT the group with members.
    let r = s.patch(&path, json!([{"op": "replace", "path": "members", "value": [{"value": u[0]}, {"value": u[1]}]}])).await;
    assert_eq!(r.status, 204);
    assert_eq!(members(&s, &g).await, sorted(&[&u[0], &u[1]]));
    assert!(shown(&s.get(&path).await).iter().all(|(_, d)| d == "none"));
    let r = s.put(&path, json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "id": g, "displayName": "Renamed SCIMv2", "members": [{"value": u[3]}]})).await;
    assert_eq!(r.status, 200);
    assert_eq!(members(&s, &g).await, vec![u[3].clone()]);
    // Unlink with "Delete the group in the target app".
    assert_eq!(s.delete(&path).await.status, 204);
    assert_error(&s.get(&path).await, 404, None);
    assert_eq!(
        s.get(&format!("/Users/{}", u[3])).await.body["groups"],
        json!([])
    );
}

async fn create_users(s: &Srv, names: &[&str]) -> Vec<String> {
    let mut v = Vec::new();
    for n in names {
        v.push(s.user(n).await);
    }
    v
}

async fn members(s: &Srv, g: &str) -> Vec<String> {
    let r = s.get(&format!("/Groups/{g}")).await;
    crate::harness::sorted(&r.body["members"], "value")
}

fn sorted(ids: &[&String]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// §2.7: import pages through with count=100 in a stable order, also after deletes (the
/// store finds deep offsets by counts it keeps per id prefix, so deletes must count out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_import_pages() {
    let s = Srv::start_with(|c| c.server.max_results = 100).await;
    let mut created = Vec::new();
    for i in 0..230 {
        let r = s
            .post("/Users", json!({"userName": format!("imp{i}@okta.local")}))
            .await;
        created.push(r.id());
    }
    for id in created.iter().skip(3).step_by(9) {
        assert_eq!(s.delete(&format!("/Users/{id}")).await.status, 204);
    }
    let created: Vec<String> = created
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < 3 || (i - 3) % 9 != 0)
        .map(|(_, id)| id.clone())
        .collect();
    let n = created.len();
    let mut seen = Vec::new();
    let mut start = 1;
    loop {
        let r = s.get(&format!("/Users?startIndex={start}&count=100")).await;
        assert_eq!(total(&r), n as u64);
        let page = r.body["Resources"].as_array().unwrap();
        seen.extend(page.iter().map(|u| u["id"].as_str().unwrap().to_string()));
        if start + 100 > n {
            break;
        }
        start += 100;
    }
    assert_eq!(seen, created);
    // A page that starts anywhere holds what the walk saw from there.
    for start in [2, 57, n - 1, n] {
        let r = s.get(&format!("/Users?startIndex={start}&count=3")).await;
        let ids: Vec<&str> = r.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = created
            .iter()
            .skip(start - 1)
            .take(3)
            .map(String::as_str)
            .collect();
        assert_eq!(ids, want, "startIndex={start}");
    }
}

/// §2.3: incremental import asks for `meta.lastModified gt` the last import's time, and gets
/// exactly the users created or changed since (read off the lastModified index, in id
/// order, by page or cursor).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_incremental_import_by_last_modified() {
    let s = Srv::start().await;
    let ids = create_users(&s, &["a@x", "b@x", "c@x"]).await;
    let since = s.get(&format!("/Users/{}", ids[1])).await.body["meta"]["lastModified"]
        .as_str()
        .unwrap()
        .to_string();
    let d = s.user("d@x").await;
    let r = s
        .patch(
            &format!("/Users/{}", ids[0]),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.delete(&format!("/Users/{}", ids[2])).await.status, 204);
    let found = |r: &crate::harness::Res| -> Vec<String> {
        r.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap().to_string())
            .collect()
    };
    for (op, want) in [
        ("gt", vec![&ids[0], &d]),
        ("ge", vec![&ids[0], &ids[1], &d]),
        ("lt", vec![]),
        ("le", vec![&ids[1]]),
        ("eq", vec![&ids[1]]),
    ] {
        // Okta's encoding: `+` for spaces.
        let r = s
            .get(&format!(
                "/Users?filter=meta.lastModified+{op}+%22{since}%22"
            ))
            .await;
        assert_eq!(r.status, 200, "{op}: {}", r.body);
        assert_eq!(found(&r), sorted(&want), "{op}");
        assert_eq!(total(&r), want.len() as u64, "{op}");
    }
    let walked = s
        .walk(&format!(
            "/Users?filter=meta.lastModified%20gt%20%22{since}%22&count=1"
        ))
        .await;
    let walked: Vec<&str> = walked.iter().map(|u| u["id"].as_str().unwrap()).collect();
    assert_eq!(walked, sorted(&[&ids[0], &d]));
    // Membership changes are changes of the group.
    let g = s.group("Eng", &[]).await;
    let before = s.get(&format!("/Groups/{g}")).await.body["meta"]["lastModified"]
        .as_str()
        .unwrap()
        .to_string();
    let gt = format!("/Groups?filter=meta.lastModified%20gt%20%22{before}%22");
    assert_eq!(total(&s.get(&gt).await), 0);
    let r = s
        .patch(
            &format!("/Groups/{g}"),
            json!([{"op": "add", "path": "members", "value": [{"value": d}]}]),
        )
        .await;
    assert!(r.status == 200 || r.status == 204, "{}", r.body);
    assert_eq!(found(&s.get(&gt).await), vec![g]);
}
