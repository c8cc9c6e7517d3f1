//! PATCH over the wire: the dialects of Okta and Entra, atomicity, and error types.

use serde_json::json;

use crate::harness::{Srv, assert_error};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_patch_returns_200_with_the_change() {
    let s = Srv::start().await;
    let id = s.user("bj@x").await;
    let before = s.get(&format!("/Users/{id}")).await;
    let r = s.patch(&format!("/Users/{id}"), json!([
        {"op": "Replace", "path": "active", "value": "False"},
        {"op": "Add", "path": "nickName", "value": "Babs"},
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "new@x"},
        {"op": "add", "path": format!("{ENT}:manager"), "value": "2c2f6fb8-254f-492e-b7fe-c09c5a61c8a2"},
        {"op": "replace", "value": {"name.givenName": "Kkom", (format!("{ENT}:employeeNumber")): "Aklq"}}])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["active"], false);
    assert_eq!(r.body["nickName"], "Babs");
    assert_eq!(
        r.body["emails"],
        json!([{"value": "new@x", "type": "work", "primary": true}])
    );
    assert_eq!(
        r.body[ENT]["manager"],
        json!({"value": "2c2f6fb8-254f-492e-b7fe-c09c5a61c8a2"})
    );
    assert_eq!(r.body[ENT]["employeeNumber"], "Aklq");
    assert_eq!(r.body["name"]["givenName"], "Kkom");
    assert_eq!(r.body["name"]["familyName"], "Family");
    assert_ne!(r.body["meta"]["version"], before.body["meta"]["version"]);
    assert_ne!(
        r.body["meta"]["lastModified"],
        before.body["meta"]["lastModified"]
    );
    assert_eq!(s.get(&format!("/Users/{id}")).await.body, r.body);
    // The new email is what lookups find now.
    let f = s.get("/Users?filter=emails.value%20eq%20%22new@x%22").await;
    assert_eq!(f.body["totalResults"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_add_to_a_multi_valued_attribute_appends_beside_an_entry_of_its_type() {
    // RFC 7644 §3.5.2.1 (idp-notes §6.7): a second work email is added, not put in the
    // first one's place, and the first stays primary; both are found by a lookup.
    let s = Srv::start().await;
    let id = s.user("bj@x").await;
    let r = s
        .patch(
            &format!("/Users/{id}"),
            json!([
        {"op": "add", "path": "emails", "value": [{"value": "second@x", "type": "work"}]},
        {"op": "add", "value": {"phoneNumbers": [{"value": "111", "type": "work"}]}},
        {"op": "add", "value": {"phoneNumbers": [{"value": "222", "type": "work"}]}}]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let emails = r.body["emails"].as_array().unwrap();
    assert_eq!(emails.len(), 2, "{}", r.body);
    assert_eq!(emails[0]["primary"], true);
    assert_eq!(emails[1], json!({"value": "second@x", "type": "work"}));
    assert_eq!(
        r.body["phoneNumbers"],
        json!([{"value": "111", "type": "work"}, {"value": "222", "type": "work"}])
    );
    assert_eq!(s.get(&format!("/Users/{id}")).await.body, r.body);
    for email in [emails[0]["value"].as_str().unwrap(), "second@x"] {
        let f = s
            .get(&format!("/Users?filter=emails.value%20eq%20%22{email}%22"))
            .await;
        assert_eq!(f.body["totalResults"], 1, "{email}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_operation_leaves_the_resource_untouched() {
    let s = Srv::start().await;
    let id = s.user("atomic@x").await;
    let before = s.get(&format!("/Users/{id}")).await;
    let r = s
        .patch(
            &format!("/Users/{id}"),
            json!([
        {"op": "replace", "path": "displayName", "value": "Changed"},
        {"op": "replace", "path": "active", "value": "maybe"}]),
        )
        .await;
    assert_error(&r, 400, Some("invalidValue"));
    assert_eq!(s.get(&format!("/Users/{id}")).await.body, before.body);
    // A later op that collides on userName rolls back the earlier ones too.
    s.user("taken@x").await;
    let r = s
        .patch(
            &format!("/Users/{id}"),
            json!([
        {"op": "replace", "path": "displayName", "value": "Changed"},
        {"op": "replace", "path": "userName", "value": "TAKEN@x"}]),
        )
        .await;
    assert_error(&r, 409, Some("uniqueness"));
    assert_eq!(s.get(&format!("/Users/{id}")).await.body, before.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_errors_have_the_rfc_scim_types() {
    let s = Srv::start().await;
    let id = s.user("err@x").await;
    let p = format!("/Users/{id}");
    let before = s.get(&p).await;
    assert_error(
        &s.patch(&p, json!([{"op": "remove"}])).await,
        400,
        Some("noTarget"),
    );
    assert_error(
        &s.patch(
            &p,
            json!([{"op": "replace", "path": "emails[type eq \"work\"", "value": "x"}]),
        )
        .await,
        400,
        Some("invalidPath"),
    );
    assert_error(
        &s.patch(
            &p,
            json!([{"op": "replace", "path": "emails[type co \"zz\"].value", "value": "x@y"}]),
        )
        .await,
        400,
        Some("noTarget"),
    );
    assert_error(
        &s.patch(
            &p,
            json!([{"op": "move", "path": "userName", "value": "x"}]),
        )
        .await,
        400,
        Some("invalidSyntax"),
    );
    assert_error(
        &s.patch(
            &p,
            json!([{"op": "replace", "path": "id", "value": "other"}]),
        )
        .await,
        400,
        Some("mutability"),
    );
    assert_error(
        &s.patch(&p, json!([{"op": "remove", "path": "userName"}]))
            .await,
        400,
        Some("mutability"),
    );
    assert_error(
        &s.patch(&p, json!([{"op": "add", "path": "nickName"}]))
            .await,
        400,
        Some("invalidValue"),
    );
    let r = s
        .call(
            reqwest::Method::PATCH,
            &p,
            Some(crate::harness::ACME),
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]})),
        )
        .await;
    assert_error(&r, 400, Some("invalidSyntax"));
    assert_error(
        &s.patch(
            "/Users/01a203fb-9d8a-77b6-beb8-99c9f8d5ccc9",
            json!([{"op": "remove", "path": "nickName"}]),
        )
        .await,
        404,
        None,
    );
    assert_eq!(
        s.get(&p).await.body,
        before.body,
        "no failed PATCH changed anything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_membership_patches_touch_only_the_named_members() {
    let s = Srv::start().await;
    let users: Vec<String> = create_users(&s, 5).await;
    let g = s.group("Team", &[&users[0], &users[1], &users[2]]).await;
    let p = format!("/Groups/{g}");
    let members = |r: &crate::harness::Res| crate::harness::sorted(&r.body["members"], "value");
    // Entra without the flag: remove by value list, only those.
    let r = s
        .patch(
            &p,
            json!([{"op": "Remove", "path": "members", "value": [{"value": users[0]}]}]),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let mut want = vec![users[1].clone(), users[2].clone()];
    want.sort();
    assert_eq!(members(&s.get(&p).await), want);
    // Okta: filter removes and an add in one request; re-adding and removing a non-member are no-ops.
    let r = s.patch(&p, json!([
        {"op": "remove", "path": format!("members[value eq \"{}\"]", users[1])},
        {"op": "remove", "path": format!("members[value eq \"{}\"]", users[0])},
        {"op": "add", "path": "members", "value": [{"value": users[3], "display": "u3"}, {"value": users[2]}]}])).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let mut want = vec![users[2].clone(), users[3].clone()];
    want.sort();
    assert_eq!(members(&s.get(&p).await), want);
    // With attributes asked for, PATCH answers 200 with the group.
    let r = s.call(reqwest::Method::PATCH, &format!("{p}?attributes=members"), Some(crate::harness::ACME),
        Some(json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": users[4]}]}]}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["members"].as_array().unwrap().len(), 3);
    // Without members, the answer is the group this change wrote: a rename answers with
    // its own name and version, as the next read gives them.
    let r = s.call(reqwest::Method::PATCH, &format!("{p}?excludedAttributes=members"), Some(crate::harness::ACME),
        Some(json!({"Operations": [{"op": "replace", "path": "displayName", "value": "Renamed"}]}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["displayName"], "Renamed");
    assert!(r.body.get("members").is_none(), "{}", r.body);
    let read = s.get(&format!("{p}?excludedAttributes=members")).await;
    assert_eq!(r.body, read.body);
    assert_eq!(r.header("etag"), read.body["meta"]["version"].as_str());
    // Replace all, then remove all.
    let r = s
        .patch(
            &p,
            json!([{"op": "replace", "path": "members", "value": [{"value": users[0]}]}]),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(members(&s.get(&p).await), vec![users[0].clone()]);
    assert_eq!(
        s.patch(&p, json!([{"op": "remove", "path": "members"}]))
            .await
            .status,
        204
    );
    assert_eq!(s.get(&p).await.body["members"], json!([]));
}

async fn create_users(s: &Srv, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(s.user(&format!("member{i}@x")).await);
    }
    out
}
