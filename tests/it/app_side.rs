//! What the application side uses: read-scoped tokens and the login redirect.

use reqwest::Method;
use scimd::auth::{digest, hex};
use scimd::config::{Scope, TokenConfig};
use serde_json::json;

use crate::harness::{Srv, assert_error, total};

const READER: &str = "acme-app-read-token";

async fn with_reader() -> Srv {
    Srv::start_with(|c| {
        let acme = c.tenants.get_mut("acme").unwrap();
        acme.tokens.push(TokenConfig {
            name: "app".into(),
            sha256: hex(&digest(READER)),
            scope: Scope::Read,
        });
        acme.login_redirect_url = Some("https://app.acme.test/login?from=idp".into());
        c.server.login_redirect_url = Some("https://app.example.test/login".into());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_scope_reads_and_is_refused_every_write() {
    let s = with_reader().await;
    let uid = s.user("r@x").await;
    let gid = s.group("G", &[&uid]).await;
    for path in [
        "/Users",
        "/Groups",
        &format!("/Users/{uid}"),
        &format!("/Groups/{gid}"),
        "/Users?filter=userName eq \"r@x\"",
    ] {
        assert_eq!(
            s.call(Method::GET, path, Some(READER), None).await.status,
            200,
            "{path}"
        );
    }
    let search = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]});
    for path in ["/.search", "/Users/.search", "/Groups/.search"] {
        assert_eq!(
            s.call(Method::POST, path, Some(READER), Some(search.clone()))
                .await
                .status,
            200,
            "{path}"
        );
    }
    let user = json!({"userName": "new@x"});
    let patch = json!({"Operations": [{"op": "replace", "path": "displayName", "value": "X"}]});
    let writes = [
        (Method::POST, "/Users".to_string(), Some(user.clone())),
        (
            Method::POST,
            "/Groups".to_string(),
            Some(json!({"displayName": "H"})),
        ),
        (Method::PUT, format!("/Users/{uid}"), Some(user.clone())),
        (
            Method::PUT,
            format!("/Groups/{gid}"),
            Some(json!({"displayName": "H"})),
        ),
        (Method::PATCH, format!("/Users/{uid}"), Some(patch.clone())),
        (Method::PATCH, format!("/Groups/{gid}"), Some(patch)),
        (Method::DELETE, format!("/Users/{uid}"), None),
        (Method::DELETE, format!("/Groups/{gid}"), None),
    ];
    for (m, path, body) in writes {
        let r = s.call(m.clone(), &path, Some(READER), body).await;
        assert_error(&r, 403, None);
        assert!(
            r.body["detail"].as_str().unwrap().contains("scope read"),
            "{m} {path}"
        );
        // RFC 6750 §3.1: a valid token that may not do this, so a client does not retry
        // with the same one as if it had been refused.
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"scimd\", error=\"insufficient_scope\""),
            "{m} {path}"
        );
    }
    assert_eq!(total(&s.get("/Users").await), 1);
    assert_eq!(
        s.get(&format!("/Groups/{gid}")).await.body["displayName"],
        "G"
    );
    // The application's read token also reads the change feed.
    let feed = s
        .call(Method::GET, "/tenants/acme/events", Some(READER), None)
        .await;
    assert_eq!(feed.status, 200);
    assert!(!feed.body["events"].as_array().unwrap().is_empty());
    // A write where none is served is 405 with what is allowed, whatever the scope.
    for token in [READER, crate::harness::ACME] {
        for path in ["/tenants/acme/events", "/tenants/acme/plan"] {
            let r = s
                .call(Method::POST, path, Some(token), Some(json!({})))
                .await;
            assert_eq!(r.status, 405, "{path}: {}", r.body);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_redirect_goes_only_where_configured() {
    let s = with_reader().await;
    let no_follow = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(
            &std::fs::read(s.dir.path().join("state/tls/cert.pem")).unwrap(),
        )
        .unwrap()])
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let r = no_follow.get(format!("{}/tenants/acme/sso/login_redirect?RelayState=https://evil.test/&target=https://evil.test", s.url)).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "https://app.acme.test/login?from=idp"
    );
    let r = no_follow
        .post(format!("{}/tenants/acme/sso/login_redirect", s.url))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("SAMLResponse=PHNhbWxwOlJlc3BvbnNlPg%3D%3D&RelayState=https%3A%2F%2Fevil.test%2F")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "https://app.acme.test/login?from=idp"
    );
    // Matched as every other path is: decoded, the names in any case, the tenant lowercased
    // (an ACS URL typed with capitals reaches its tenant's page, not the default).
    for path in [
        "/tenants/ACME/sso/login_redirect",
        "/tenants/%61cme/sso/login_redirect",
        "/tenants/acme/sso/login%5Fredirect",
    ] {
        let r = no_follow
            .get(format!("{}{path}", s.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(
            r.headers()["location"],
            "https://app.acme.test/login?from=idp",
            "{path}"
        );
    }
    // The server-wide form uses the server default; a tenant without its own uses it too.
    let r = no_follow
        .get(format!("{}/sso/login_redirect", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "https://app.example.test/login");
    let r = no_follow
        .get(format!("{}/tenants/globex/sso/login_redirect", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "https://app.example.test/login");
    // A tenant name that does not exist gets the same answer as one without its own
    // target, so the endpoint tells nobody which tenant names exist.
    let r = no_follow
        .get(format!("{}/tenants/nosuch/sso/login_redirect", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "https://app.example.test/login");
    // Oversized form: refused.
    let r = no_follow
        .post(format!("{}/sso/login_redirect", s.url))
        .body(vec![b'a'; 300 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconfigured_login_redirect_is_404() {
    let s = Srv::start().await;
    let r = s
        .client
        .get(format!("{}/sso/login_redirect", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("no login redirect is configured")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_only_attributes_are_set_once_then_ignored_and_reported() {
    let s = Srv::start_with(|c| {
        c.tenants.get_mut("acme").unwrap().create_only =
            vec!["timezone".into(), "name.givenName".into()]
    })
    .await;
    let r = s.post("/Users", json!({"userName": "tz@x", "timezone": "Europe/Paris", "name": {"givenName": "Ann", "familyName": "Lee"}})).await;
    assert_eq!(r.status, 201);
    let id = r.id();
    let r = s.patch(&format!("/Users/{id}"), json!([{"op": "replace", "path": "timezone", "value": "UTC"},
        {"op": "replace", "path": "name.givenName", "value": "Bea"}, {"op": "replace", "path": "title", "value": "Dev"}])).await;
    assert_eq!(r.status, 200, "ignored, not rejected");
    assert_eq!(
        (
            r.body["timezone"].as_str(),
            r.body["name"]["givenName"].as_str(),
            r.body["title"].as_str()
        ),
        (Some("Europe/Paris"), Some("Ann"), Some("Dev"))
    );
    let r = s
        .put(
            &format!("/Users/{id}"),
            json!({"userName": "tz@x", "name": {"familyName": "Lee"}}),
        )
        .await;
    assert_eq!(
        (
            r.body["timezone"].as_str(),
            r.body["name"]["givenName"].as_str()
        ),
        (Some("Europe/Paris"), Some("Ann"))
    );
    let feed = s
        .call(
            Method::GET,
            "/tenants/acme/events",
            Some(crate::harness::ACME),
            None,
        )
        .await;
    let ignored: Vec<&serde_json::Value> = feed.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "user.create_only_ignored")
        .collect();
    assert_eq!(ignored.len(), 2);
    assert_eq!(
        ignored[0]["attributes"],
        json!(["timezone", "name.givenName"])
    );
    assert!(
        !feed.body.to_string().contains("UTC"),
        "no values in events"
    );
}

/// Erasure: deactivate → anonymize → delete leaves nothing retrievable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_person_for_real_leaves_nothing_retrievable() {
    let s = Srv::start().await;
    let id = s.user("erase.me@private.example").await;
    let g = s.group("Team", &[&id]).await;
    let p = format!("/Users/{id}");
    assert_eq!(
        s.patch(
            &p,
            json!([{"op": "replace", "path": "active", "value": false}])
        )
        .await
        .status,
        200
    );
    let r = s
        .put(
            &p,
            json!({"userName": format!("anonymized-{id}"), "active": false}),
        )
        .await;
    assert_eq!(r.status, 200, "an inactive user can be updated: {}", r.body);
    assert_eq!(
        s.patch(
            &p,
            json!([{"op": "replace", "path": "displayName", "value": "x"}])
        )
        .await
        .status,
        200
    );
    assert_eq!(s.delete(&p).await.status, 204);
    assert_error(&s.get(&p).await, 404, None);
    for f in [
        "userName eq \"erase.me@private.example\"",
        "emails.value eq \"erase.me@private.example\"",
        &format!("id eq \"{id}\""),
    ] {
        assert_eq!(total(&s.get(&format!("/Users?filter={f}")).await), 0, "{f}");
    }
    assert_eq!(
        total(
            &s.get(&format!("/Groups?filter=members.value eq \"{id}\""))
                .await
        ),
        0
    );
    assert_eq!(
        s.get(&format!("/Groups/{g}")).await.body["members"],
        json!([])
    );
    let all = s.post("/.search", json!({})).await;
    assert!(!all.body.to_string().contains("erase.me"));
    let feed = s
        .call(
            Method::GET,
            "/tenants/acme/events?limit=1000",
            Some(crate::harness::ACME),
            None,
        )
        .await;
    assert!(
        !feed.body.to_string().contains("erase.me"),
        "the feed holds no personal data"
    );
}
