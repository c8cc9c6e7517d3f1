//! OneLogin's "SCIM Provisioner with SAML" from idp-notes §4: template-made bodies with
//! string booleans, empty strings, odd schema URNs, `id: null`, PUT updates, and a Groups
//! PATCH for membership. The connection-test request is unpublished (§4.4); the lookup in
//! the authentik wire log (§4.2) stands in for it.

use reqwest::Method;
use serde_json::json;

use crate::harness::{Srv, assert_error, total};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onelogin_user_and_groups() {
    let s = Srv::start().await;
    // §4.2: the lookup with `+` and a trailing `&`.
    let r = s
        .get("/Users?filter=userName+eq+%22onelogin-test-user01%22&")
        .await;
    assert_eq!((r.status, total(&r)), (200, 0));
    // §4.1: a substituted template, with unset parameters left as empty strings.
    let r = s
        .post(
            "/Users",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
        "userName": "onelogin-test-user01", "id": null, "active": "true",
        "name": {"familyName": " User 01", "givenName": "AAA Test"},
        "title": "", "userType": "", "timezone": "",
        "emails": {"value": "user01@onelogin.test", "type": "work", "primary": true},
        "addresses": [{"locality": "", "region": "", "country": ""}],
        ENT: {"organization": "", "division": "", "department": "Sales",
              "manager": {"value": "", "displayName": " "}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.id();
    assert_eq!(r.body["active"], true);
    assert_eq!(
        r.body["name"]["familyName"], " User 01",
        "values are kept as sent"
    );
    assert_eq!(
        r.body["emails"],
        json!([{"value": "user01@onelogin.test", "type": "work", "primary": true}])
    );
    assert!(r.body.get("title").is_none() && r.body.get("addresses").is_none());
    assert_eq!(
        r.body[ENT],
        json!({"department": "Sales"}),
        "an empty manager means no manager"
    );
    // §4.2: updates are PUTs of the whole template, with an empty `?` and admin-typed URNs.
    let r = s.put(&format!("/Users/{id}?"), json!({"schemas": ["urn:scim:schemas:core:2.0", "urn:scim:schemas:extension:enterprise:2.0"],
        "userName": "onelogin-test-user01", "active": "true", "name": {"familyName": " User 01", "givenName": "BBB Test"},
        "emails": [{"value": "user01@onelogin.test", "type": "work", "primary": true}], "title": "Rep"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            r.body["name"]["givenName"].as_str(),
            r.body["title"].as_str()
        ),
        (Some("BBB Test"), Some("Rep"))
    );
    // Suspend as a PUT with the string "false"; any other string is refused.
    let r = s
        .put(
            &format!("/Users/{id}"),
            json!({"userName": "onelogin-test-user01", "active": "false"}),
        )
        .await;
    assert_eq!(r.body["active"], false);
    assert_error(
        &s.put(
            &format!("/Users/{id}"),
            json!({"userName": "onelogin-test-user01", "active": "{$user.active}"}),
        )
        .await,
        400,
        Some("invalidValue"),
    );
    // An unset `"active": ""` says nothing: the suspended user stays suspended (absent would
    // read as true), through PUT and PATCH alike, while the rest of the PUT applies.
    let r = s
        .put(
            &format!("/Users/{id}"),
            json!({"userName": "onelogin-test-user01", "active": "", "title": "Lead",
                "emails": [{"value": "", "type": "work", "primary": ""}]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.body["active"].clone(), r.body["title"].clone()),
        (json!(false), json!("Lead"))
    );
    assert!(r.body.get("emails").is_none(), "{}", r.body);
    let r = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "active", "value": ""}]),
        )
        .await;
    assert_eq!(r.body["active"], false);
    assert_eq!(s.get(&format!("/Users/{id}")).await.body["active"], false);
    // §4.3: Refresh Entitlements lists groups; rules change membership with PATCHes.
    let g = s.group("OneLogin Role", &[]).await;
    let r = s.get("/Groups?startIndex=1&count=100").await;
    assert_eq!(r.body["Resources"][0]["displayName"], "OneLogin Role");
    assert_eq!(
        s.patch(
            &format!("/Groups/{g}"),
            json!([{"op": "add", "path": "members", "value": [{"value": id}]}])
        )
        .await
        .status,
        204
    );
    assert_eq!(
        s.get(&format!("/Users/{id}")).await.body["groups"][0]["value"],
        g.as_str()
    );
    assert_eq!(
        s.patch(
            &format!("/Groups/{g}"),
            json!([{"op": "remove", "path": format!("members[value eq \"{id}\"]")}])
        )
        .await
        .status,
        204
    );
    assert_eq!(
        s.get(&format!("/Groups/{g}")).await.body["members"],
        json!([])
    );
    // Deprovisioning as Delete.
    assert_eq!(
        s.call(
            Method::DELETE,
            &format!("/Users/{id}"),
            Some(crate::harness::ACME),
            None
        )
        .await
        .status,
        204
    );
}
