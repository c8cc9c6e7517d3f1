//! Bearer tokens, the two URL forms, and tenant isolation.

use reqwest::Method;
use serde_json::json;

use crate::harness::{ACME, GLOBEX, Srv, assert_error, total};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_token_is_401_with_challenge_and_scim_body() {
    let s = Srv::start().await;
    // A query the endpoint would refuse is judged only after the token.
    for path in [
        "/Users",
        "/Users?count=1&count=2",
        "/Schemas?count=1&count=2",
    ] {
        let token = if path.starts_with("/Schemas") {
            Some("wrong")
        } else {
            None
        };
        assert_error(&s.call(Method::GET, path, token, None).await, 401, None);
    }
    assert_error(
        &s.call(Method::GET, "/Users?count=1&count=2", Some(ACME), None)
            .await,
        400,
        Some("invalidValue"),
    );
    for token in [None, Some("wrong"), Some("")] {
        let r = s.call(Method::GET, "/Users", token, None).await;
        assert_error(&r, 401, None);
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer realm="), "{challenge}");
        // RFC 6750 §3.1: a refused token is named invalid_token; no token, no error code.
        assert_eq!(
            challenge.contains("error=\"invalid_token\""),
            token == Some("wrong"),
            "{token:?}: {challenge}"
        );
    }
    // Basic credentials are not a bearer token, on discovery either (under either URL).
    let r = with_authorization(&s, "Basic YWNtZTpva3Rh").await;
    assert_error(&r, 401, None);
    for path in [
        "/scim/v2/ServiceProviderConfig",
        "/tenants/acme/scim/v2/ServiceProviderConfig",
    ] {
        let r = s
            .call_with(
                Method::GET,
                path,
                None,
                None,
                &[("Authorization", "Basic YWNtZTpva3Rh")],
            )
            .await;
        assert_error(&r, 401, None);
        assert!(
            r.body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("only bearer tokens are accepted")),
            "{path}: {}",
            r.body
        );
    }
    // The scheme name is case-insensitive (RFC 7235).
    let r = with_authorization(&s, &format!("bearer {ACME}")).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_write_creates_nothing() {
    let s = Srv::start().await;
    let body = json!({"userName": "intruder"});
    let r = s
        .call(Method::POST, "/Users", Some("nope"), Some(body))
        .await;
    assert_error(&r, 401, None);
    assert_eq!(total(&s.get("/Users").await), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_url_needs_that_tenants_token() {
    let s = Srv::start().await;
    let id = s.user("a@acme.test").await;
    let r = s
        .call(
            Method::GET,
            &format!("/tenants/acme/scim/v2/Users/{id}"),
            Some(ACME),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body["meta"]["location"]
            .as_str()
            .unwrap()
            .contains("/tenants/acme/scim/v2/Users/")
    );
    let r = s
        .call(
            Method::GET,
            &format!("/tenants/acme/scim/v2/Users/{id}"),
            Some(GLOBEX),
            None,
        )
        .await;
    assert_error(&r, 401, None);
    let r = s
        .call(
            Method::GET,
            "/tenants/nosuch/scim/v2/Users",
            Some(ACME),
            None,
        )
        .await;
    assert_error(&r, 401, None);
    // The IdP's admin reads only this: it points at the tenant name as well as the token.
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("tenant name in the URL"), "{detail}");
}

/// "Bearer " typed into an IdP's token field, which adds its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_sent_as_bearer_bearer_is_named_so() {
    let s = Srv::start().await;
    let r = with_authorization(&s, &format!("Bearer Bearer {ACME}")).await;
    assert_error(&r, 401, None);
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("says Bearer twice"), "{detail}");
    assert!(!detail.contains(ACME), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_each_others_data() {
    let s = Srv::start().await;
    let uid = s.user("shared@example.com").await;
    let gid = s.group("Shared", &[&uid]).await;
    for path in [
        "/Users",
        "/Groups",
        "/Users?filter=userName%20eq%20%22shared@example.com%22",
    ] {
        let r = s.call(Method::GET, path, Some(GLOBEX), None).await;
        assert_eq!(total(&r), 0, "{path}: {}", r.body);
    }
    for (kind, id) in [("Users", &uid), ("Groups", &gid)] {
        let path = format!("/{kind}/{id}");
        assert_error(
            &s.call(Method::GET, &path, Some(GLOBEX), None).await,
            404,
            None,
        );
        assert_error(
            &s.call(Method::DELETE, &path, Some(GLOBEX), None).await,
            404,
            None,
        );
        let r = s
            .call(
                Method::PATCH,
                &path,
                Some(GLOBEX),
                Some(
                    json!({"Operations": [{"op": "replace", "path": "displayName", "value": "x"}]}),
                ),
            )
            .await;
        assert_error(&r, 404, None);
    }
    // The same userName may exist in both tenants.
    let r = s
        .call(
            Method::POST,
            "/Users",
            Some(GLOBEX),
            Some(json!({"userName": "shared@example.com"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // And globex cannot add acme's user to its group.
    let r = s
        .call(
            Method::POST,
            "/Groups",
            Some(GLOBEX),
            Some(json!({"displayName": "G", "members": [{"value": uid}]})),
        )
        .await;
    assert_error(&r, 400, Some("invalidValue"));
    assert_eq!(s.get(&format!("/Users/{uid}")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_are_throttled_without_locking_out_a_valid_token() {
    let s = Srv::start().await;
    // Asking without a token guesses nothing: never throttled.
    for _ in 0..120 {
        assert_eq!(s.call(Method::GET, "/Users", None, None).await.status, 401);
    }
    let mut statuses = Vec::new();
    for i in 0..110 {
        let r = s
            .call(Method::GET, "/Users", Some(&format!("guess-{i}")), None)
            .await;
        statuses.push(r.status);
        if r.status == 429 {
            assert_error(&r, 429, None);
            let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
            assert!(wait >= 1);
        }
    }
    // A burst of 100, then one a second: the last ten come faster than that.
    assert!(statuses[..100].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(
        statuses[100..].iter().filter(|s| **s == 429).count() >= 5,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429));
    // The valid token from the same address is never slowed down.
    for _ in 0..5 {
        assert_eq!(s.get("/Users").await.status, 200);
    }
    // Any refused Authorization header counts, Basic credentials included: each one would
    // otherwise cost a logged reason without limit.
    let r = with_authorization(&s, "Basic YWNtZTpva3Rh").await;
    assert_error(&r, 429, None);
}

/// A header with bytes outside ASCII is a credential sent, and refused: said so, and counted
/// by the throttle (it used to read as no header at all, uncounted and logged every time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_ascii_authorization_header_is_a_refused_token() {
    use crate::harness::wire;
    use tokio::io::AsyncWriteExt;
    let s = Srv::start().await;
    let one = |last: bool| {
        let mut r = b"GET /scim/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t\xc3\xb6ken\r\n".to_vec();
        if last {
            r.extend_from_slice(b"Connection: close\r\n");
        }
        r.extend_from_slice(b"\r\n");
        r
    };
    // The right token with a no-break space or an ideographic space beside it is not the
    // token; spaces and tabs are only the header's own whitespace.
    for odd in [
        format!("Bearer {ACME}\u{a0}"),
        format!("Bearer \u{3000}{ACME}"),
        format!("\u{a0}Bearer {ACME}"),
    ] {
        assert_eq!(with_authorization(&s, &odd).await.status, 401, "{odd:?}");
    }
    let spaced = format!(" Bearer  {ACME}\t");
    assert_eq!(with_authorization(&s, &spaced).await.status, 200);
    let first = wire::send(&s, &one(true)).await;
    assert_eq!(first.status, 401, "{}", first.head);
    assert_eq!(first.body["detail"], "the bearer token is not valid");
    assert!(
        first.head.contains("error=\"invalid_token\""),
        "{}",
        first.head
    );
    // Pipelined on one connection, past the burst of 100.
    let mut many = Vec::new();
    for i in 0..110 {
        many.extend(one(i == 109));
    }
    let mut conn = wire::connect(&s).await;
    conn.write_all(&many).await.unwrap();
    let raw = wire::read_all(&mut conn, std::time::Duration::from_secs(20)).await;
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.matches("HTTP/1.1 429 ").count() >= 5, "{raw}");
}

/// Wrong tokens count wherever they are tried: discovery under a tenant's URL and /metrics
/// would otherwise answer 401 or 200 to unlimited guesses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_are_throttled_on_every_endpoint_that_checks_one() {
    use scimd::auth::{digest, hex};
    let s =
        Srv::start_with(|c| c.server.metrics_token_sha256 = Some(hex(&digest("m-token")))).await;
    let mut last = 0;
    for i in 0..120 {
        let path = match i % 3 {
            0 => "/tenants/acme/scim/v2/ServiceProviderConfig".to_string(),
            1 => "/scim/v2/Schemas".to_string(),
            _ => format!("{}/metrics", s.url),
        };
        last = s
            .call(Method::GET, &path, Some(&format!("guess-{i}")), None)
            .await
            .status;
        assert!(i >= 100 || last == 401, "guess {i}: {last}");
    }
    assert_eq!(last, 429);
    // The metrics token works, in any case of the scheme, from the same address.
    let r = s
        .call_with(
            Method::GET,
            &format!("{}/metrics", s.url),
            None,
            None,
            &[("Authorization", "BEARER m-token")],
        )
        .await;
    assert_eq!(r.status, 200);
    // Every guess counts, on /metrics and once throttled too: a brute force shows in full.
    let (_, text) = s.metrics("m-token").await;
    assert!(text.contains("\nscimd_auth_failures_total 120\n"), "{text}");
}

/// RFC 9112 §3.2 and RFC 6750: a request with a Host that is not a host, an HTTP/1.1 request
/// without one, or with two Authorization headers is 400, never served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_host_and_two_authorization_headers_are_400() {
    use crate::harness::wire;
    let s = Srv::start().await;
    let ask = |target: &str, head: String| {
        let request = format!("GET {target} HTTP/1.1\r\n{head}Connection: close\r\n\r\n");
        let s = &s;
        async move {
            let a = wire::send(s, request.as_bytes()).await;
            (a.status, a.head)
        }
    };
    let users = "/scim/v2/Users";
    let token = format!("Authorization: Bearer {ACME}\r\n");
    assert_eq!(
        ask(users, format!("Host: localhost\r\n{token}")).await.0,
        200
    );
    for (target, head) in [
        (users, format!("Host: evil.example:443/phish?\r\n{token}")),
        (users, format!("Host: user@evil.example\r\n{token}")),
        (users, format!("Host: localhost:99999\r\n{token}")),
        (users, token.clone()),
        (
            users,
            format!("Host: localhost\r\n{token}Authorization: Bearer {GLOBEX}\r\n"),
        ),
        // An absolute-form target's authority would be used before Host.
        (
            "https://evil.example@localhost/scim/v2/Users",
            format!("Host: localhost\r\n{token}"),
        ),
        // And is held to a port that is one, as Host is.
        (
            "https://localhost:99999999/scim/v2/Users",
            format!("Host: localhost\r\n{token}"),
        ),
    ] {
        let (status, answer) = ask(target, head.clone()).await;
        assert_eq!(status, 400, "{target} {head:?}: {answer}");
        assert!(!answer.contains("evil"), "{answer}");
    }
    // A health probe needs no Host.
    assert_eq!(ask("/healthz", String::new()).await.0, 200);
}

/// `GET /Users` with this Authorization header.
async fn with_authorization(s: &Srv, value: &str) -> crate::harness::Res {
    s.call_with(
        Method::GET,
        "/Users",
        None,
        None,
        &[("Authorization", value)],
    )
    .await
}

/// A reload that turns `/metrics` on, replaces its token or turns it off says so, as it says
/// a tenant's token was added or removed; one that changes only the hash's case says nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_says_what_it_did_to_metrics() {
    use scimd::auth::{digest, hex};
    let s = Srv::start().await;
    let with = |token: Option<&str>| {
        let mut cfg = s.config.clone();
        cfg.server.metrics_token_sha256 = token.map(|t| hex(&digest(t)));
        cfg
    };
    let said = |notes: Vec<String>| -> Vec<String> {
        notes
            .into_iter()
            .filter(|n| n.contains("/metrics"))
            .collect()
    };
    let on = s.reloader().apply(with(Some("m-1"))).await.unwrap().notes;
    assert_eq!(
        said(on),
        ["/metrics turned on (server.metrics_token_sha256)"]
    );
    assert_eq!(s.metrics("m-1").await.0, 200);
    let mut upper = with(Some("m-1"));
    upper.server.metrics_token_sha256 = upper.server.metrics_token_sha256.map(|h| h.to_uppercase());
    assert!(said(s.reloader().apply(upper).await.unwrap().notes).is_empty());
    let replaced = s.reloader().apply(with(Some("m-2"))).await.unwrap().notes;
    assert_eq!(
        said(replaced),
        ["/metrics token replaced (the old one is refused)"]
    );
    assert_eq!(s.metrics("m-1").await.0, 401);
    let off = s.reloader().apply(with(None)).await.unwrap().notes;
    assert_eq!(said(off), ["/metrics turned off"]);
}

/// A token's hash pasted in capitals is the same secret: it still authenticates, and a
/// reload that changes only its case does not say the token was replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_in_capitals_is_the_same_token() {
    let s = Srv::start().await;
    let mut cfg = s.config.clone();
    let tok = &mut cfg.tenants.get_mut("acme").unwrap().tokens[0];
    tok.sha256 = tok.sha256.to_ascii_uppercase();
    let notes = s.reloader().apply(cfg.clone()).await.unwrap().notes;
    assert!(!notes.iter().any(|n| n.contains("token okta")), "{notes:?}");
    assert_eq!(s.get("/Users").await.status, 200);
    // Nor does a change of case hide a change of scope, either way.
    let mut lower = cfg.clone();
    let tok = &mut lower.tenants.get_mut("acme").unwrap().tokens[0];
    tok.sha256 = tok.sha256.to_ascii_lowercase();
    tok.scope = scimd::config::Scope::Read;
    let notes = s.reloader().apply(lower).await.unwrap().notes;
    assert_eq!(
        notes
            .iter()
            .filter(|n| n.contains("token okta"))
            .collect::<Vec<_>>(),
        ["tenant acme: token okta now has scope read"]
    );
    assert_eq!(
        s.post("/Users", json!({"userName": "r@x"})).await.status,
        403
    );
    let notes = s.reloader().apply(cfg).await.unwrap().notes;
    assert!(
        notes.contains(&"tenant acme: token okta now has scope provision".to_string()),
        "{notes:?}"
    );
}

/// A write begun with a token that a reload then revokes (one that leaked) is refused once
/// its body is whole, not carried out after the reload said the token was gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_while_its_body_arrives_writes_nothing() {
    use crate::harness::wire;
    use tokio::io::AsyncWriteExt;
    let s = Srv::start().await;
    let body = br#"{"userName":"late@x"}"#;
    // `Expect: 100-continue`: the interim answer comes once the handler, past the token's
    // check, asks for the body.
    let head = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ACME}\r\n\
         Content-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\
         Expect: 100-continue\r\n\r\n",
        body.len()
    );
    let mut conn = wire::connect(&s).await;
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.flush().await.unwrap();
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            tokio::io::AsyncReadExt::read_exact(&mut conn, &mut byte),
        );
        read.await.expect("an interim answer").unwrap();
        interim.push(byte[0]);
    }
    assert!(interim.starts_with(b"HTTP/1.1 100"), "{interim:?}");
    conn.write_all(&body[..5]).await.unwrap();
    conn.flush().await.unwrap();
    let mut cfg = s.config.clone();
    let rotated = "rotated-token-0123456789";
    cfg.tenants.get_mut("acme").unwrap().tokens[0].sha256 =
        scimd::auth::hex(&scimd::auth::digest(rotated));
    s.reloader().apply(cfg).await.unwrap();
    let a = wire::send_on(conn, &body[5..]).await;
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(
        a.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("a reload revoked or changed it")),
        "{}",
        a.body
    );
    let r = s
        .call(
            Method::GET,
            "/Users?filter=userName%20eq%20%22late@x%22",
            Some(rotated),
            None,
        )
        .await;
    assert_eq!(total(&r), 0, "{}", r.body);
    // A body that arrives whole after a reload that kept the token is served.
    let a = wire::send(
        &s,
        format!(
            "POST /scim/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {rotated}\r\n\
             Content-Type: application/scim+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            body.len(),
            std::str::from_utf8(body).unwrap()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
}

/// Entra's own JWT (its Secret Token left blank): the 401 says so, with a tenant in the URL
/// or without, since the answer is what the admin sees in Entra's connection test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idps_own_jwt_is_named_in_the_answer() {
    let s = Srv::start().await;
    let jwt = "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiI4YWRmOGUifQ.c2lnbmF0dXJl";
    for path in ["/scim/v2/Users", "/tenants/acme/scim/v2/Users"] {
        let r = s
            .call_with(Method::GET, path, None, None, &[("Authorization", jwt)])
            .await;
        assert_eq!(r.status, 401, "{path}");
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains("a JWT the IdP made itself"), "{detail}");
    }
}
