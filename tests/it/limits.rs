//! Limits: per-token rate limits (429 with Retry-After, other tokens and tenants unaffected),
//! and the configurable filter and PATCH limits.

use reqwest::Method;
use serde_json::json;

use crate::harness::{GLOBEX, Srv, assert_error};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_rate_gets_429_with_retry_after() {
    let s = Srv::start_with(|c| {
        let acme = c.tenants.get_mut("acme").unwrap();
        acme.rate_limit = Some(0.2);
        acme.rate_burst = Some(2);
        acme.tokens.push(scimd::config::TokenConfig {
            name: "app".into(),
            sha256: scimd::auth::hex(&scimd::auth::digest("acme-app-read-token")),
            scope: scimd::config::Scope::Read,
        });
    })
    .await;
    assert_eq!(s.get("/Users").await.status, 200);
    assert_eq!(s.get("/Users").await.status, 200);
    let r = s.get("/Users").await;
    assert_error(&r, 429, None);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=5).contains(&wait), "Retry-After {wait}");
    assert!(
        r.body["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("tenant acme's token \"okta\" is over its rate limit")),
        "{}",
        r.body
    );
    // Each token has its own pace: the application's read token is not held up by the
    // IdP's, nor the IdP's by the application's.
    const READER: &str = "acme-app-read-token";
    let reader = || s.call(Method::GET, "/Users", Some(READER), None);
    assert_eq!(reader().await.status, 200);
    assert_eq!(reader().await.status, 200);
    assert_error(&reader().await, 429, None);
    // globex has no limit.
    for _ in 0..5 {
        assert_eq!(
            s.call(Method::GET, "/Users", Some(GLOBEX), None)
                .await
                .status,
            200
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_and_patch_limits_follow_the_config() {
    let s = Srv::start_with(|c| {
        c.server.max_filter_length = 64;
        c.server.max_filter_depth = 3;
        c.server.max_patch_operations = 2;
    })
    .await;
    let id = s.user("lim@x").await;
    let long = format!("userName eq \"{}\"", "a".repeat(60));
    let r = s
        .get(&format!(
            "/Users?filter={}",
            long.replace(' ', "%20").replace('"', "%22")
        ))
        .await;
    crate::harness::assert_error(&r, 400, Some("invalidFilter"));
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("the limit is 64")
    );
    let deep = "((((userName%20eq%20%22a%22))))";
    crate::harness::assert_error(
        &s.get(&format!("/Users?filter={deep}")).await,
        400,
        Some("invalidFilter"),
    );
    let shallow = "(((userName%20eq%20%22lim@x%22)))";
    assert_eq!(
        crate::harness::total(&s.get(&format!("/Users?filter={shallow}")).await),
        1
    );
    let op = json!({"op": "replace", "path": "title", "value": "t"});
    let r = s.patch(&format!("/Users/{id}"), json!([op, op, op])).await;
    crate::harness::assert_error(&r, 400, Some("tooMany"));
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("at most 2 operations")
    );
    assert_eq!(
        s.patch(&format!("/Users/{id}"), json!([op, op]))
            .await
            .status,
        200
    );
    // RFC 7643 §5 has no attribute for it, and strict clients (scim2-models) refuse a
    // ServiceProviderConfig with one they do not know: the limit is told in the 400 only.
    let spc = s.get("/ServiceProviderConfig").await.body;
    assert!(spc.get("maxPatchOperations").is_none(), "{spc}");
}
