//! JumpCloud's custom SCIM integration from idp-notes §5: the connection test creates a test
//! user and a test group with a member and deletes both; member removal uses an Entra-style
//! value list. The update method is unpublished (§5.2): the RFC PATCH form stands in.

use serde_json::json;

use crate::harness::{Srv, assert_error, total};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jumpcloud_connection_and_groups() {
    let s = Srv::start().await;
    // §5.1: test user, test group with that member, delete both, 404 afterwards.
    let u = s.user("jc-test@jumpcloud.test").await;
    let g = s.group("JumpCloud Test Group", &[&u]).await;
    assert_eq!(s.delete(&format!("/Groups/{g}")).await.status, 204);
    assert_eq!(s.delete(&format!("/Users/{u}")).await.status, 204);
    assert_error(&s.get(&format!("/Users/{u}")).await, 404, None);
    assert_error(&s.get(&format!("/Groups/{g}")).await, 404, None);
    // §5.2: taking over an existing group by name, then changing its members.
    let a = s.user("a@jumpcloud.test").await;
    let b = s.user("b@jumpcloud.test").await;
    let existing = s.group("Engineering", &[&a]).await;
    let r = s.get("/Groups?filter=displayName eq \"Engineering\"").await;
    assert_eq!(r.body["Resources"][0]["id"], existing.as_str());
    let p = format!("/Groups/{existing}");
    assert_eq!(
        s.patch(
            &p,
            json!([{"op": "add", "path": "members", "value": [{"value": b}]}])
        )
        .await
        .status,
        204
    );
    let r = s
        .patch(
            &p,
            json!([{"op": "remove", "path": "members", "value": [{"value": a}]}]),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = s.get(&p).await;
    assert_eq!(r.body["members"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["members"][0]["value"], b.as_str());
    // Renaming is supported; deactivation keeps the user findable.
    assert_eq!(
        s.patch(
            &p,
            json!([{"op": "replace", "path": "displayName", "value": "Engineering EU"}])
        )
        .await
        .status,
        204
    );
    let r = s
        .patch(
            &format!("/Users/{b}"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    assert_eq!(r.body["active"], false);
    assert_eq!(total(&s.get("/Users?filter=active eq false").await), 1);
    // Managed groups deleted in JumpCloud are deleted here.
    assert_eq!(s.delete(&p).await.status, 204);
    assert_eq!(
        s.get(&format!("/Users/{b}")).await.body["groups"],
        json!([])
    );
}
