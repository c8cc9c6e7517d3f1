//! Bad input gets the RFC 7644 error body with the right status and scimType, and changes
//! nothing.

use reqwest::Method;
use serde_json::json;

use crate::harness::{ACME, Srv, assert_error, total};

async fn raw(
    s: &Srv,
    method: Method,
    path: &str,
    body: &str,
    content_type: &str,
) -> crate::harness::Res {
    let resp = s
        .client
        .request(method, format!("{}{path}", s.base()))
        .bearer_auth(ACME)
        .header("Content-Type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    crate::harness::Res {
        status,
        headers,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_invalid_syntax() {
    let s = Srv::start().await;
    for body in [
        "{\"userName\": ",
        "{\"acve\": tre}",
        "",
        "   ",
        "[1,2]",
        "\"just a string\"",
        "{\"a\":\u{0}}",
    ] {
        let r = raw(&s, Method::POST, "/Users", body, "application/scim+json").await;
        assert_error(&r, 400, Some("invalidSyntax"));
    }
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    assert_error(
        &raw(&s, Method::POST, "/Users", &deep, "application/json").await,
        400,
        Some("invalidSyntax"),
    );
    // UTF-16 (little-endian, as PowerShell writes it) is named as such.
    let utf16: String = "{\"userName\":\"u\"}"
        .chars()
        .flat_map(|c| [c, '\u{0}'])
        .collect();
    let r = raw(&s, Method::POST, "/Users", &utf16, "application/scim+json").await;
    assert_error(&r, 400, Some("invalidSyntax"));
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("UTF-16"), "{detail}");
    // And UTF-32 as UTF-32.
    let utf32: String = "{\"userName\":\"u\"}"
        .chars()
        .flat_map(|c| [c, '\u{0}', '\u{0}', '\u{0}'])
        .collect();
    let r = raw(&s, Method::POST, "/Users", &utf32, "application/scim+json").await;
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("is UTF-32;"), "{detail}");
    assert_eq!(total(&s.get("/Users").await), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_types_and_missing_required_are_invalid_value() {
    let s = Srv::start().await;
    for body in [
        json!({"name": {"givenName": "no userName"}}),
        json!({"userName": 5.5e300, "active": "yes"}),
        json!({"userName": "a", "active": "yes"}),
        json!({"userName": ["a"]}),
        json!({"userName": "a", "name": "flat"}),
        json!({"userName": "a", "emails": [{"value": {"nested": 1}}]}),
        json!({"userName": "a", "emails": [{"primary": "sometimes"}]}),
        json!({"userName": "a", "meta": {}, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": "flat"}),
    ] {
        let r = s.post("/Users", body.clone()).await;
        assert_error(&r, 400, Some("invalidValue"));
    }
    assert_eq!(total(&s.get("/Users").await), 0, "nothing half-written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_json_is_accepted_and_responses_are_scim_json() {
    let s = Srv::start().await;
    let r = raw(
        &s,
        Method::POST,
        "/Users",
        "{\"userName\":\"json@x\"}",
        "application/json",
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("content-type"), Some("application/scim+json"));
    let r = raw(
        &s,
        Method::POST,
        "/Users",
        "{\"userName\":\"json2@x\"}",
        "application/scim+json; charset=utf-8",
    )
    .await;
    assert_eq!(r.status, 201);
    // An empty Content-Type is named as such, not left as a detail ending in "not ".
    let r = raw(&s, Method::POST, "/Users", "{\"userName\":\"e@x\"}", "").await;
    assert_error(&r, 415, None);
    assert_eq!(
        r.body["detail"],
        "the body must be JSON (Content-Type: application/scim+json), not an empty Content-Type"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_asking_for_application_json_gets_it_labelled_so() {
    let s = Srv::start().await;
    let asked = [("Accept", "application/json")];
    let body = Some(json!({"userName": "accept@x"}));
    let r = s
        .call_with(Method::POST, "/Users", Some(ACME), body, &asked)
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = s
        .call_with(Method::GET, "/Users/nope", Some(ACME), None, &asked)
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body["status"], "404");
    // Both named, or none: the SCIM type, as RFC 7644 §3.8 makes it the default.
    let both = [("Accept", "application/json, application/scim+json")];
    let r = s
        .call_with(Method::GET, "/Users?count=1", Some(ACME), None, &both)
        .await;
    assert_eq!(r.header("content-type"), Some("application/scim+json"));
    let r = s.get("/ServiceProviderConfig").await;
    assert_eq!(r.header("content-type"), Some("application/scim+json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_413() {
    let s = Srv::start_with(|c| c.server.max_body_bytes = 4096).await;
    let big = json!({"userName": "big", "displayName": "x".repeat(10_000)});
    let r = s.post("/Users", big).await;
    assert_error(&r, 413, None);
    // It names the setting to raise.
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("limit of 4096 bytes (server.max_body_bytes"),
        "{}",
        r.body
    );
    // Without Content-Length (chunked), the limit holds too.
    let stream = chunks(
        &("{\"userName\":\"big2\",\"displayName\":\"".to_string() + &"y".repeat(10_000) + "\"}"),
        usize::MAX,
    );
    let resp = s
        .client
        .post(format!("{}/Users", s.base()))
        .bearer_auth(ACME)
        .header("Content-Type", "application/scim+json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(total(&s.get("/Users").await), 0);
    // A body declared too long to read past is left unread, so the connection closes after
    // the answer: it says so, and promises no keep-alive (RFC 9112 §9.6).
    let head = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ACME}\r\n\
         Content-Type: application/scim+json\r\nContent-Length: 100000000\r\n\r\n"
    );
    let a = crate::harness::wire::send(&s, head.as_bytes()).await;
    assert_eq!(a.status, 413);
    let h = a.head.to_ascii_lowercase();
    assert!(
        h.contains("connection: close") && !h.contains("keep-alive"),
        "{h}"
    );
}

/// An answer given before the client has finished sending (bad token, wrong Content-Type,
/// over the limit) reaches it whole, over HTTP/2 and HTTP/1.1: the server reads the rest of
/// the body first. Dropped unread, HTTP/2 resets the stream and the client sees no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answers_reach_a_client_still_sending() {
    let s = Srv::start_with(|c| c.server.max_body_bytes = 64 * 1024).await;
    let h1 = s.http1_client();
    let big = format!("{{\"userName\":\"{}\"}}", "b".repeat(3 << 20));
    for (client, version) in [
        (&s.client, reqwest::Version::HTTP_2),
        (&h1, reqwest::Version::HTTP_11),
    ] {
        for (token, ct, status) in [
            ("wrong", "application/scim+json", 401),
            (ACME, "text/plain", 415),
            (ACME, "application/scim+json", 413),
        ] {
            // In many chunks, the client is still sending when the answer is ready.
            for body in [
                reqwest::Body::from(big.clone()),
                reqwest::Body::wrap_stream(chunks(&big, 16 * 1024)),
            ] {
                let r = client
                    .post(format!("{}/Users", s.base()))
                    .bearer_auth(token)
                    .header("Content-Type", ct)
                    .body(body)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{version:?} {status}: no answer: {e:?}"));
                assert_eq!(r.version(), version);
                assert_eq!(r.status(), status, "{version:?}");
                let b: serde_json::Value = r.json().await.unwrap();
                assert_eq!(b["status"], status.to_string(), "{b}");
            }
        }
    }
    assert_eq!(total(&s.get("/Users").await), 0);
}

/// `text` as a request body without Content-Length, in chunks of at most `size` bytes.
fn chunks(text: &str, size: usize) -> Chunks {
    Chunks(
        text.as_bytes()
            .chunks(size)
            .map(|c| Ok(c.to_vec()))
            .collect::<Vec<_>>()
            .into_iter(),
    )
}

struct Chunks(std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>);

impl futures_core::Stream for Chunks {
    type Item = Result<Vec<u8>, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.next())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_unknown_endpoint_and_me() {
    let s = Srv::start().await;
    let r = s.call(Method::DELETE, "/Users", Some(ACME), None).await;
    assert_error(&r, 405, None);
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST"));
    let id = s.user("m@x").await;
    let r = s
        .call(
            Method::POST,
            &format!("/Users/{id}"),
            Some(ACME),
            Some(json!({})),
        )
        .await;
    assert_error(&r, 405, None);
    assert_eq!(r.header("allow"), Some("GET, HEAD, PUT, PATCH, DELETE"));
    // A method HTTP does not define is not implemented anywhere (RFC 9110 §15.6.2).
    let foo = Method::from_bytes(b"FOO").unwrap();
    assert_error(&s.call(foo, "/Users", Some(ACME), None).await, 501, None);
    assert_error(
        &s.call(
            Method::POST,
            "/ServiceProviderConfig",
            Some(ACME),
            Some(json!({})),
        )
        .await,
        405,
        None,
    );
    assert_error(&s.get("/Widgets").await, 404, None);
    assert_error(&s.get("/Users/a/b").await, 404, None);
    // A path that names nothing is 404 whatever body comes with it: not 400 for a body
    // that is not JSON, which would send an admin with a wrong Base URL the wrong way.
    for (path, body) in [("/Widgets", "xx"), ("/Users/a/b", "{")] {
        let r = raw(&s, Method::POST, path, body, "application/scim+json").await;
        assert_error(&r, 404, None);
    }
    // A Base URL ending in /Users: the IdP's lookups ask for /Users/Users?filter=….
    let r = s
        .get("/Users/Users?filter=userName%20eq%20%22m%40x%22")
        .await;
    assert_error(&r, 404, None);
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("it must end at /scim/v2"), "{detail}");
    let r = s.post("/Users/Users", json!({"userName": "x"})).await;
    assert_error(&r, 405, None);
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("it must end at /scim/v2"), "{detail}");
    let r = s.get("/Users/nobody").await;
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(!detail.contains("Base URL"), "{detail}");
    assert_error(
        &s.call(Method::GET, "/nothing/here", Some(ACME), None).await,
        404,
        None,
    );
    // The base path typed in another case into the IdP still finds the users, as does a
    // tenant's name (names are lower case); the URLs written back keep the documented
    // spelling.
    let id = s.user("cased@x.example").await;
    for (path, written) in [
        ("/SCIM/V2", "/scim/v2"),
        ("/Tenants/ACME/scim/v2", "/tenants/acme/scim/v2"),
    ] {
        let r = s
            .call(
                Method::GET,
                &format!("{}{path}/Users/{id}", s.url),
                Some(ACME),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(
            r.body["meta"]["location"]
                .as_str()
                .unwrap()
                .ends_with(&format!("{written}/Users/{id}")),
            "{}",
            r.body
        );
    }
    // The application's endpoints take GET only, whatever body comes with another method.
    for path in ["events", "plan", "plan/members"] {
        let r = s
            .client
            .post(format!("{}/tenants/acme/{path}", s.url))
            .bearer_auth(ACME)
            .header("Content-Type", "text/xml")
            .body("<x/>")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{path}");
        assert_eq!(r.headers()["allow"], "GET, HEAD", "{path}");
    }
    assert_error(&s.get("/Me").await, 501, None);
    assert_error(&s.post("/Bulk", json!({})).await, 501, None);
    // Unsupported whatever the body: an empty or malformed one is not judged first.
    for (method, path) in [("POST", "/Bulk"), ("PUT", "/Me"), ("PATCH", "/Me")] {
        for body in ["", "{not json"] {
            let r = s
                .client
                .request(method.parse().unwrap(), format!("{}{path}", s.base()))
                .bearer_auth(ACME)
                .header("Content-Type", "application/scim+json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 501, "{method} {path} {body:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_as_get_without_content_over_both_protocols() {
    let s = Srv::start().await;
    let id = s.user("head@x").await;
    let h1 = s.http1_client();
    for (client, version) in [
        (&s.client, reqwest::Version::HTTP_2),
        (&h1, reqwest::Version::HTTP_11),
    ] {
        for (path, token, status) in [
            (format!("{}/Users/{id}", s.base()), Some(ACME), 200),
            (
                format!("{}/Users?filter=userName%20eq%20%22head@x%22", s.base()),
                Some(ACME),
                200,
            ),
            (format!("{}/ServiceProviderConfig", s.base()), None, 200),
            (format!("{}/healthz", s.url), None, 200),
            (format!("{}/Users/{id}", s.base()), None, 401),
            (format!("{}/Users/nope", s.base()), Some(ACME), 404),
        ] {
            let send = |m: reqwest::Method| {
                let mut rb = client.request(m, &path);
                if let Some(t) = token {
                    rb = rb.bearer_auth(t);
                }
                rb.send()
            };
            let get = send(reqwest::Method::GET).await.unwrap();
            let head = send(reqwest::Method::HEAD).await.unwrap();
            assert_eq!(head.version(), version);
            assert_eq!(head.status().as_u16(), status, "HEAD {path}");
            for h in ["content-type", "etag", "www-authenticate"] {
                assert_eq!(
                    head.headers().get(h),
                    get.headers().get(h),
                    "{h} of HEAD {path}"
                );
            }
            let get_len = get.bytes().await.unwrap().len();
            assert!(get_len > 0);
            assert_eq!(
                head.headers()
                    .get("content-length")
                    .and_then(|v| v.to_str().ok()),
                Some(get_len.to_string().as_str()),
                "HEAD {path}"
            );
            assert!(
                head.bytes().await.unwrap().is_empty(),
                "HEAD {path} sent content"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lenient_where_the_rfcs_allow_it_and_short_where_input_is_long() {
    let s = Srv::start().await;
    // RFC 8259 §8.1: a byte order mark may be ignored.
    let mut bom = "\u{feff}".to_string();
    bom.push_str(&json!({"userName": "bom@x"}).to_string());
    let r = raw(&s, Method::POST, "/Users", &bom, "application/scim+json").await;
    assert_eq!(r.status, 201, "{}", r.body);
    // US-ASCII is UTF-8's subset; `text/json` is JSON as older stacks label it.
    for (i, ct) in ["application/scim+json; charset=us-ascii", "text/json"]
        .iter()
        .enumerate()
    {
        let body = json!({"userName": format!("ct{i}@x")}).to_string();
        let r = raw(&s, Method::POST, "/Users", &body, ct).await;
        assert_eq!(r.status, 201, "{ct}: {}", r.body);
    }
    // A count too large for any integer is capped, not refused (RFC 7644 §3.4.2.4).
    let r = s.get("/Users?count=99999999999999999999").await;
    assert_eq!((r.status, total(&r)), (200, 3));
    let r = s
        .post(
            "/Users/.search",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "count": 1e30}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Whole numbers written as floats (JSON libraries that hold doubles) are those numbers.
    for i in 0..3 {
        s.post("/Users", json!({"userName": format!("f{i}@x")}))
            .await;
    }
    let r = s
        .post(
            "/Users/.search",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                   "startIndex": 2.0, "count": 2.0}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (&r.body["startIndex"], &r.body["itemsPerPage"], total(&r)),
        (&json!(2), &json!(2), 6),
        "{}",
        r.body
    );
    // A 60 KB id is not echoed back whole.
    let r = s.get(&format!("/Users/{}", "x".repeat(60_000))).await;
    assert_error(&r, 404, None);
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.len() < 1100 && detail.ends_with("bytes in all)"),
        "{}",
        detail.len()
    );
    // /healthz answers GET and HEAD only.
    let r = s
        .client
        .delete(format!("{}/healthz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
}

/// RFC 9113 §8.3.1: over HTTP/2 a Host header naming another host than :authority makes the
/// request malformed (scimd builds `meta.location` from it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_host_and_authority_must_agree() {
    use crate::harness::wire;
    let s = Srv::start().await;
    let tls = wire::connect_h2(&s).await;
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    for (host, want) in [("evil.example", 400), ("localhost", 200)] {
        let authority = format!("localhost:{}", wire::port(&s));
        let host = if host == "localhost" {
            authority.clone()
        } else {
            host.to_string()
        };
        let req = http::Request::get(format!("https://{authority}/scim/v2/Users"))
            .header("host", host)
            .header("authorization", format!("Bearer {ACME}"))
            .body(())
            .unwrap();
        let (answer, _) = client.send_request(req, true).unwrap();
        assert_eq!(answer.await.unwrap().status(), want);
    }
}

/// An answer given before an `Expect: 100-continue` body was asked for leaves the body
/// unsent; the client is told the connection closes (RFC 9112 §9.6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_to_an_expecting_client_says_the_connection_closes() {
    let s = Srv::start().await;
    let a = crate::harness::wire::send(
        &s,
        b"POST /scim/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer wrong\r\n\
          Content-Type: application/scim+json\r\nContent-Length: 20\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    assert_eq!(a.status, 401);
    assert!(
        a.head
            .to_ascii_lowercase()
            .contains("\r\nconnection: close"),
        "{}",
        a.head
    );
}

/// Every answer names its request (`X-Request-Id`), whatever its status, so that an answer a
/// client kept leads to its log line; a client's own short id is answered back, anything
/// else replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_a_request_id_and_no_store() {
    let s = Srv::start().await;
    let id = s.user("rid@x").await;
    let mut seen = std::collections::HashSet::new();
    for (method, path, token, want) in [
        (Method::GET, format!("/Users/{id}"), Some(ACME), 200),
        (Method::HEAD, format!("/Users/{id}"), Some(ACME), 200),
        (Method::GET, "/Users/nope".to_string(), Some(ACME), 404),
        (Method::GET, "/Users".to_string(), None, 401),
        (
            Method::DELETE,
            "/ServiceProviderConfig".to_string(),
            Some(ACME),
            405,
        ),
    ] {
        let r = s.call(method.clone(), &path, token, None).await;
        assert_eq!(r.status, want, "{method} {path}");
        let rid = r.header("x-request-id").unwrap_or_default().to_string();
        assert_eq!(rid.len(), 16, "{method} {path}: {rid:?}");
        assert!(seen.insert(rid), "each request its own id");
        // Personal data, and refusals of it: kept by no cache.
        assert_eq!(
            r.header("cache-control"),
            Some("no-store"),
            "{method} {path}"
        );
    }
    let with = |v: &'static str| {
        let s = &s;
        async move {
            s.call_with(
                Method::GET,
                "/Users",
                Some(ACME),
                None,
                &[("X-Request-Id", v)],
            )
            .await
        }
    };
    let kept = "0190b7a4-7c4e-7000-8000-00000000002a";
    assert_eq!(with(kept).await.header("x-request-id"), Some(kept));
    let r = with("two words\"").await;
    let given = r.header("x-request-id").unwrap();
    assert_ne!(given, "two words\"");
    assert_eq!(given.len(), 16);
    let r = s
        .client
        .get(format!("{}/healthz", s.url))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("x-request-id"), "{r:?}");
}

/// A projection of thousands of names, or of many value filters, is refused before any
/// resource is read: each one was tested on every value of every answer on the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_too_long_to_apply_is_invalid_value() {
    let s = Srv::start().await;
    s.user("someone@x").await;
    let many: Vec<String> = (0..3000)
        .map(|i| format!("emails[value co \"{i}\"].value"))
        .collect();
    let search = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "attributes": many,
    });
    let r = s.post("/Users/.search", search).await;
    assert_error(&r, 400, Some("invalidValue"));
    assert!(
        r.body["detail"].as_str().unwrap().contains("3000 names"),
        "{}",
        r.body
    );
    let eleven = ["emails[type%20eq%20%22work%22].value"; 11].join(",");
    let r = s.get(&format!("/Users?attributes={eleven}")).await;
    assert_error(&r, 400, Some("invalidValue"));
    let ten = ["emails[type%20eq%20%22work%22].value"; 10].join(",");
    assert_eq!(s.get(&format!("/Users?attributes={ten}")).await.status, 200);
}

/// An HTTP/2 request whose client resets its stream before the body is whole (RST_STREAM,
/// even NO_ERROR, which hyper ends the body on as if whole) was given up on: a body short
/// of its `content-length` is not carried out (RFC 9113 §8.1.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_body_reset_before_its_length_is_not_carried_out() {
    use crate::harness::wire;
    let s = Srv::start().await;
    for reason in [h2::Reason::NO_ERROR, h2::Reason::CANCEL] {
        let tls = wire::connect_h2(&s).await;
        let (client, conn) = h2::client::handshake(tls).await.unwrap();
        tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        let name = format!("reset-{reason:?}@x");
        let body = serde_json::to_vec(&serde_json::json!({"userName": name})).unwrap();
        let req = http::Request::post(format!(
            "https://localhost:{}/scim/v2/Users",
            wire::port(&s)
        ))
        .header("authorization", format!("Bearer {ACME}"))
        .header("content-type", "application/scim+json")
        .header("content-length", body.len() + 5)
        .body(())
        .unwrap();
        let (_answer, mut stream) = client.send_request(req, false).unwrap();
        stream.send_data(body.into(), false).unwrap();
        stream.send_reset(reason);
        // Absence, so looked for a while: the write, were it carried out, is quick.
        for _ in 0..15 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let found = s
                .get(&format!("/Users?filter=userName%20eq%20%22{name}%22"))
                .await;
            assert_eq!(found.body["totalResults"], 0, "{reason:?}: {}", found.body);
        }
    }
}
