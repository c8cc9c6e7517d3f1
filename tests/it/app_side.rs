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
    }
    assert_eq!(total(&s.get("/Users").await), 1);
    assert_eq!(
        s.get(&format!("/Groups/{gid}")).await.body["displayName"],
        "G"
    );
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
    // Unknown tenant: a clear 404, no redirect.
    let r = no_follow
        .get(format!("{}/tenants/nosuch/sso/login_redirect", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.unwrap().contains("login_redirect_url"));
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
