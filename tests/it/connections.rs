//! How connections end: a stop answers open requests without waiting for idle connections,
//! and idle or stalled connections are closed.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{ACME, GLOBEX, Srv, test_config, total, wire};

/// A request open at shutdown gets its answer; an idle HTTP/2 connection whose client never
/// reads (so never acknowledges the closing PING) does not keep the server for the grace
/// period once nothing is open.
#[tokio::test]
async fn a_stop_answers_open_requests_and_does_not_wait_for_idle_connections() {
    let s = Srv::start_with(|c| c.server.shutdown_grace_secs = 300).await;

    // An HTTP/2 connection that says hello and then never reads again.
    let mut idle = wire::connect_h2(&s).await;
    idle.write_all(H2_HELLO).await.unwrap();
    let mut first = [0u8; 9];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(first[3], 4, "the server's first frame is its SETTINGS");

    // A create whose body has not arrived yet: `100 Continue` shows the handler is waiting.
    let body = br#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"late@acme.example"}"#;
    let mut open = wire::connect(&s).await;
    open.write_all(
        format!(
            "POST /scim/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ACME}\r\n\
             Content-Type: application/scim+json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\
             Connection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut cont = [0u8; 25];
    open.read_exact(&mut cont).await.unwrap();
    assert!(
        cont.starts_with(b"HTTP/1.1 100 Continue"),
        "{:?}",
        String::from_utf8_lossy(&cont)
    );

    let stopping = tokio::spawn(s.stop());
    // Longer than the quiet spell shutdown waits for: the open request still holds it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !stopping.is_finished(),
        "the stop did not wait for the open request"
    );
    open.write_all(body).await.unwrap();
    let answer = wire::parse(&wire::read_all(&mut open, Duration::from_secs(20)).await);
    assert_eq!(answer.status, 201, "{}", answer.head);
    assert_eq!(answer.body["userName"], "late@acme.example");

    // Far less than the 300 s grace, and than the 50 s after which an unanswered keep-alive
    // PING ends the idle HTTP/2 connection.
    let kept = tokio::time::timeout(Duration::from_secs(20), stopping)
        .await
        .expect("the stop waited for an idle connection")
        .unwrap();
    drop(idle);

    // The acknowledged create is in the database the stop closed.
    let cfg = test_config(kept.path());
    let again = Srv::start_config(kept, cfg).await;
    let found = again
        .get("/Users?filter=userName%20eq%20%22late@acme.example%22")
        .await;
    assert_eq!(total(&found), 1);
    again.stop().await;
}

/// An HTTP/2 client's preface and its (empty) SETTINGS frame.
const H2_HELLO: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// Sends `request` and returns the first read of the answer, lower-cased: its head, for
/// an answer that fits one read.
async fn first_read<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    conn: &mut S,
    request: &str,
) -> String {
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase()
}

/// Whether the server closes `conn` within `secs` (reading and discarding what it sends).
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(conn: &mut S, secs: u64) -> bool {
    tokio::time::timeout(Duration::from_secs(secs), async {
        let mut buf = [0u8; 4096];
        while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await
    .is_ok()
}

/// A request head begun and never finished is cut once the header timeout has passed (hyper's
/// timeout, checked on the connection's one-second tick), not only later by the idle rule and
/// the wind-down after it.
#[tokio::test]
async fn a_head_never_finished_is_cut_at_the_header_timeout() {
    let s = Srv::start_with(|c| c.server.header_timeout_secs = 2).await;
    // The timeout, and at most one tick after it; the idle rule alone takes two seconds
    // more. Up to three tries, as a loaded machine can be late once; never early.
    let mut took = Vec::new();
    while took.len() < 3 && !took.iter().any(|t| *t < Duration::from_millis(3800)) {
        let mut conn = wire::connect(&s).await;
        let started = std::time::Instant::now();
        conn.write_all(b"GET /scim/v2/Users HTTP/1.1\r\nHost: localhost\r\nAccept: ")
            .await
            .unwrap();
        conn.flush().await.unwrap();
        assert!(
            closed_within(&mut conn, 20).await,
            "the connection stayed open"
        );
        took.push(started.elapsed());
        assert!(
            took.iter().all(|t| *t >= Duration::from_secs(2)),
            "{took:?}"
        );
    }
    assert!(
        took.iter().any(|t| *t < Duration::from_millis(3800)),
        "closed after {took:?}"
    );
}

/// A connection that finishes the TLS handshake and sends nothing, or an HTTP/2 connection
/// that opens no stream, is closed after the header timeout: idle connections must not hold
/// the connection slots.
#[tokio::test]
async fn connections_that_send_no_request_are_closed() {
    let s = Srv::start_with(|c| c.server.header_timeout_secs = 1).await;
    let mut silent = wire::connect(&s).await;
    assert!(
        closed_within(&mut silent, 20).await,
        "an idle TLS connection stayed open"
    );

    let mut idle = wire::connect_h2(&s).await;
    idle.write_all(H2_HELLO).await.unwrap();
    assert!(
        closed_within(&mut idle, 20).await,
        "an idle HTTP/2 connection stayed open"
    );

    // Nor does a stream of PINGs keep it: their acknowledgements are no answer.
    let idle = wire::connect_h2(&s).await;
    let (mut rx, mut tx) = tokio::io::split(idle);
    tx.write_all(H2_HELLO).await.unwrap();
    let pinging = tokio::spawn(async move {
        let ping = b"\0\0\x08\x06\0\0\0\0\0pingping";
        // 1,000 a second: 17 KB of acknowledgements a second.
        while tx.write_all(&ping.repeat(20)).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    assert!(
        closed_within(&mut rx, 20).await,
        "an HTTP/2 connection kept open by PINGs"
    );
    pinging.abort();

    // A connection in use is not closed for it: in use for longer than the limit, with
    // pauses well short of it (a loaded machine stretches them).
    let mut live = wire::connect(&s).await;
    for _ in 0..8 {
        live.write_all(
            format!(
                "GET /scim/v2/Users?count=1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ACME}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut buf = [0u8; 4096];
        let n = live.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// An authenticated request on a kept-alive connection, answered 200.
async fn vouch(conn: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) {
    vouch_at(conn, "/scim/v2/Users?count=1").await
}

async fn vouch_at(conn: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>, path: &str) {
    vouch_as(conn, path, ACME).await
}

async fn vouch_as(
    conn: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    path: &str,
    token: &str,
) {
    let whole = ask_as(conn, path, token).await;
    assert!(
        whole.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&whole)
    );
}

/// The whole answer to a GET of `path` with `token` on a kept-alive connection.
async fn ask_as(
    conn: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    path: &str,
    token: &str,
) -> Vec<u8> {
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    // The whole answer, so that the next request's starts clean.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("a Content-Length");
        if got.len() >= end + 4 + length {
            break got;
        }
    }
}

/// With every connection slot taken, a newcomer gets the slot of the oldest connection that
/// never showed a valid token (no token is needed to hold one), and connections that have
/// shown one are never closed for it: strangers cannot keep an IdP out. (One tenant alone:
/// with several, one tenant's tokens protect at most half the slots, below.)
#[tokio::test]
async fn strangers_make_room_when_every_slot_is_taken() {
    let s = Srv::start_with(|c| {
        c.tenants.retain(|name, _| name == "acme");
        c.server.max_connections = 3;
        // Longer than the test: no connection is closed for idleness.
        c.server.header_timeout_secs = 300;
    })
    .await;
    // The oldest stranger has not even begun its TLS handshake, and has had the second a
    // stranger is safe for.
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", wire::port(&s)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut ours = wire::connect(&s).await;
    vouch(&mut ours).await;
    let mut older = wire::connect(&s).await;

    // Each newcomer is answered at once, in the oldest stranger's slot.
    let request = format!(
        "GET /scim/v2/Users?count=1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ACME}\r\nConnection: close\r\n\r\n"
    );
    let newcomer = || async {
        let answer =
            tokio::time::timeout(Duration::from_secs(10), wire::send(&s, request.as_bytes()))
                .await
                .expect("the newcomer waited for a slot");
        assert_eq!(answer.status, 200, "{}", answer.head);
    };
    newcomer().await;
    let mut byte = [0u8; 1];
    let gone = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut byte)).await;
    assert!(
        matches!(gone, Ok(Ok(0)) | Ok(Err(_))),
        "the connection in its handshake stayed"
    );
    let mut newer = wire::connect(&s).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    newcomer().await;
    assert!(
        closed_within(&mut older, 5).await,
        "the oldest stranger stayed"
    );
    vouch(&mut ours).await;

    // Every slot held by a connection that showed a token: a newcomer waits for one to end.
    vouch(&mut newer).await;
    // Discovery needs no token, but one that shows a valid token counts.
    let mut third = wire::connect(&s).await;
    vouch_at(&mut third, "/scim/v2/ServiceProviderConfig").await;
    let early = tokio::time::timeout(Duration::from_millis(1500), wire::connect(&s)).await;
    assert!(
        early.is_err(),
        "a connection with a token was closed for a newcomer"
    );
    for c in [&mut ours, &mut newer, &mut third] {
        vouch(c).await;
    }
    drop(third);
    let answer = tokio::time::timeout(Duration::from_secs(10), wire::send(&s, request.as_bytes()))
        .await
        .expect("the newcomer never got the freed slot");
    assert_eq!(answer.status, 200, "{}", answer.head);
}

/// A connection made safe by a token that a reload then revoked is a stranger again once a
/// request on it is refused: whoever holds a leaked token cannot keep the slots it took with
/// it, and keep the IdP with the new token out, after the admin rotates it.
#[tokio::test]
async fn a_revoked_token_no_longer_keeps_its_connections_safe() {
    let s = Srv::start_with(|c| {
        c.tenants.retain(|name, _| name == "acme");
        c.server.max_connections = 3;
        c.server.header_timeout_secs = 300;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = wire::connect(&s).await;
        vouch(&mut c).await;
        held.push(c);
    }
    let mut cfg = s.config.clone();
    let rotated = "rotated-token-0123456789";
    cfg.tenants.get_mut("acme").unwrap().tokens[0].sha256 =
        scimd::auth::hex(&scimd::auth::digest(rotated));
    s.reloader().apply(cfg).await.unwrap();
    for c in &mut held {
        let answer = ask_as(c, "/scim/v2/Users?count=1", ACME).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 401"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let request = format!(
        "GET /scim/v2/Users?count=1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {rotated}\r\nConnection: close\r\n\r\n"
    );
    let answer = tokio::time::timeout(Duration::from_secs(10), wire::send(&s, request.as_bytes()))
        .await
        .expect("the IdP with the new token was kept out");
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert!(
        closed_within(&mut held[0], 5).await,
        "the oldest of the revoked token's connections stayed"
    );
}

/// With several tenants, one tenant's tokens (its application's read token, say) make at
/// most half the slots safe from closing: its other connections are closed for a newcomer
/// as a stranger's are, so that they cannot keep another tenant's IdP out.
#[tokio::test]
async fn one_tenant_cannot_hold_every_slot_safe() {
    let s = Srv::start_with(|c| {
        c.server.max_connections = 4;
        c.server.header_timeout_secs = 300;
    })
    .await;
    let mut acme = Vec::new();
    for _ in 0..4 {
        let mut c = wire::connect(&s).await;
        vouch(&mut c).await;
        acme.push(c);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // globex's IdP gets a slot: acme's third connection, the oldest beyond its two safe ones.
    let mut globex = tokio::time::timeout(Duration::from_secs(10), wire::connect(&s))
        .await
        .expect("another tenant's IdP was kept out");
    vouch_as(&mut globex, "/scim/v2/Users?count=1", GLOBEX).await;
    assert!(closed_within(&mut acme[2], 5).await, "acme's third stayed");
    // acme's safe two are still served.
    for c in &mut acme[..2] {
        vouch(c).await;
    }
}

/// A stranger that has just connected is most likely a client in its handshake or first
/// request: a newcomer waits until it has had a second to show a token. Closing it at once
/// sent each evicted client to evict another as it reconnected, a storm under a load of
/// more clients than slots.
#[tokio::test]
async fn a_stranger_just_connected_is_not_closed_for_a_newcomer() {
    let s = Srv::start_with(|c| {
        c.server.max_connections = 2;
        c.server.header_timeout_secs = 300;
        c.server.metrics_token_sha256 = Some(scimd::auth::hex(&scimd::auth::digest("m")));
    })
    .await;
    let mut ours = wire::connect(&s).await;
    vouch(&mut ours).await;
    let young_at = std::time::Instant::now();
    let mut young = wire::connect(&s).await;
    let request = format!(
        "GET /scim/v2/Users?count=1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ACME}\r\nConnection: close\r\n\r\n"
    );
    let waiting = wire::send(&s, request.as_bytes());
    tokio::pin!(waiting);
    let answer = match tokio::time::timeout(Duration::from_millis(400), &mut waiting).await {
        // Only if the stranger had come of age meanwhile (slow handshakes on a loaded machine).
        Ok(answer) => {
            assert!(
                young_at.elapsed() >= Duration::from_secs(1),
                "the newcomer was answered in the young stranger's slot at once"
            );
            answer
        }
        Err(_) => tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("the newcomer never got the stranger's slot once it was a second old"),
    };
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert!(closed_within(&mut young, 5).await, "the stranger stayed");
    vouch(&mut ours).await;
    drop(ours);
    let (status, text) = s.metrics("m").await;
    assert_eq!(status, 200);
    assert!(
        text.contains("\nscimd_connections_closed_for_room_total 1\n"),
        "{text}"
    );
}

/// A connection that has said nothing is closed for a newcomer at once, young or not:
/// silent connections coming back as fast as they are closed must not keep an IdP out.
#[tokio::test]
async fn a_silent_connection_is_closed_for_a_newcomer_at_once() {
    let s = Srv::start_with(|c| {
        c.server.max_connections = 2;
        c.server.header_timeout_secs = 300;
    })
    .await;
    let mut ours = wire::connect(&s).await;
    vouch(&mut ours).await;
    let request = format!(
        "GET /scim/v2/Users?count=1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ACME}\r\nConnection: close\r\n\r\n"
    );
    // Well within the second a connection that has spoken would be kept. Up to three
    // tries, each with a silent connection of its own: a loaded machine can be late once.
    let mut tries = 0;
    loop {
        tries += 1;
        let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", wire::port(&s)))
            .await
            .unwrap();
        let answer = tokio::time::timeout(
            Duration::from_millis(800),
            wire::send(&s, request.as_bytes()),
        )
        .await;
        if answer.is_err() && tries < 3 {
            assert!(closed_within(&mut silent, 5).await, "the silent one stayed");
            continue;
        }
        let answer = answer.expect("the newcomer waited for a silent connection to come of age");
        assert_eq!(answer.status, 200, "{}", answer.head);
        assert!(closed_within(&mut silent, 5).await, "the silent one stayed");
        break;
    }
    vouch(&mut ours).await;
}

/// An HTTP/1.1 client is told how long an idle connection is kept, a second short of it,
/// so that it drops a pooled connection before the server closes it under a request.
#[tokio::test]
async fn http11_answers_say_how_long_an_idle_connection_is_kept() {
    let s = Srv::start_with(|c| c.server.header_timeout_secs = 20).await;
    let mut conn = wire::connect(&s).await;
    let request = format!(
        "GET /scim/v2/Users?count=1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ACME}\r\n\r\n"
    );
    let head = first_read(&mut conn, &request).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("\r\nkeep-alive: timeout=19\r\n"), "{head}");
    // Not to a client that closes the connection itself.
    let mut conn = wire::connect(&s).await;
    let closing = request.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    let head = first_read(&mut conn, &closing).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("keep-alive"), "{head}");
}

/// `OPTIONS *` (a proxy's ping) is told the methods the server takes; a path spelled with
/// percent-escapes names the same endpoint.
#[tokio::test]
async fn options_star_and_escaped_paths() {
    let s = Srv::start().await;
    let a = wire::send(
        &s,
        b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(a.status, 204, "{}", a.head);
    assert!(
        a.head
            .to_ascii_lowercase()
            .contains("\r\nallow: get, head, post, put, patch, delete\r\n"),
        "{}",
        a.head
    );
    let id = s.user("escaped@x").await;
    let request = format!(
        "GET /scim/v2/%55sers/{id} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ACME}\r\nConnection: close\r\n\r\n"
    );
    let a = wire::send(&s, request.as_bytes()).await;
    assert_eq!(a.status, 200, "{}", a.head);
    assert_eq!(a.body["userName"], "escaped@x");
}

/// HTTP/1.0 has no chunked encoding: a streamed answer (a group with its members) ends when
/// the connection does, so a client asking to keep it alive (`ab -k`) is told it closes,
/// and it does. An answer of known length keeps the connection.
#[tokio::test]
async fn an_http10_keep_alive_client_gets_a_streamed_answer_whole() {
    let s = Srv::start().await;
    let u = s.user("old@x").await;
    let g = s.group("Old timers", &[&u]).await;
    let ask = |path: String| {
        format!(
            "GET {path} HTTP/1.0\r\nHost: localhost\r\nConnection: keep-alive\r\nAuthorization: Bearer {ACME}\r\n\r\n"
        )
    };
    let mut conn = wire::connect(&s).await;
    conn.write_all(ask(format!("/scim/v2/Groups/{g}")).as_bytes())
        .await
        .unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut raw))
        .await
        .expect("the streamed answer never ended")
        .ok();
    let answer = wire::parse(&raw);
    assert_eq!(answer.status, 200, "{}", answer.head);
    // `close` alone: with `keep-alive` beside it, ab -k waits for the next answer.
    let head = answer.head.to_ascii_lowercase();
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    assert!(!head.contains("keep-alive"), "{head}");
    assert_eq!(answer.body["members"][0]["value"], u.as_str());

    let mut conn = wire::connect(&s).await;
    let head = first_read(&mut conn, &ask(format!("/scim/v2/Users/{u}"))).await;
    assert!(head.contains("content-length"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
}

/// An HTTP/2 client that gives the server no flow-control window never takes its answer;
/// the connection, and the answer it holds in memory, go once the request timeout passes.
#[tokio::test]
async fn an_http2_client_that_stops_reading_is_cut_off() {
    let s = Srv::start_with(|c| c.server.request_timeout_secs = 2).await;
    for i in 0..5 {
        s.user(&format!("w{i}@x")).await;
    }
    let tls = wire::connect_h2(&s).await;
    let (mut client, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, bytes::Bytes>(tls)
        .await
        .unwrap();
    let ended = tokio::spawn(conn);
    let req = http::Request::get(format!(
        "https://localhost:{}/scim/v2/Users",
        wire::port(&s)
    ))
    .header("authorization", format!("Bearer {ACME}"))
    .body(())
    .unwrap();
    let (answer, _) = client.send_request(req, true).unwrap();
    let head = answer.await.unwrap();
    assert_eq!(head.status(), 200);
    // No window is ever given, so no byte of the body can come: the server must give up.
    tokio::time::timeout(Duration::from_secs(20), ended)
        .await
        .expect("the stalled connection was kept open")
        .unwrap()
        .ok();
}

/// HTTP/2 rapid reset (CVE-2023-44487): a client that opens streams and resets each before
/// the server takes it up, which would have the server start work for every one, is sent
/// GOAWAY with ENHANCE_YOUR_CALM; other clients are served meanwhile. Raw frames, written
/// at once as an attack sends them (an h2 client goes on writing, and could fail on a
/// broken pipe before it reads the GOAWAY).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_resetting_every_stream_at_once_is_sent_away() {
    let s = Srv::start_with(|c| {
        c.server.metrics_token_sha256 = Some(scimd::auth::hex(&scimd::auth::digest("m")));
    })
    .await;
    let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend([kind, flags]);
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        f
    };
    // HPACK: `:method GET` and `:scheme https` from the static table, the others as
    // literals without indexing under a static-table name (none is 127 bytes or longer).
    let literal = |name: &[u8], value: &str| {
        let mut f = name.to_vec();
        f.push(value.len() as u8);
        f.extend(value.as_bytes());
        f
    };
    let mut head = vec![0x82, 0x87];
    head.extend(literal(&[0x04], "/scim/v2/Users"));
    head.extend(literal(&[0x01], "localhost"));
    head.extend(literal(&[0x0f, 0x08], &format!("Bearer {ACME}")));
    let mut attack = H2_HELLO.to_vec();
    for i in 0..60u32 {
        let stream = 2 * i + 1;
        attack.extend(frame(1, 0x5, stream, &head)); // HEADERS, END_STREAM | END_HEADERS
        attack.extend(frame(3, 0, stream, &8u32.to_be_bytes())); // RST_STREAM, CANCEL
    }
    let mut conn = wire::connect_h2(&s).await;
    conn.write_all(&attack).await.unwrap();
    let said = wire::read_all(&mut conn, Duration::from_secs(20)).await;
    let goaway = frames_in(&said)
        .into_iter()
        .filter(|(kind, _, _)| *kind == 7)
        .map(|(_, _, payload)| u32::from_be_bytes(payload[4..8].try_into().unwrap()))
        .next_back();
    assert_eq!(goaway, Some(0xb), "GOAWAY ENHANCE_YOUR_CALM expected");
    assert_eq!(s.get("/Users").await.status, 200);
    let (_, text) = s.metrics("m").await;
    assert!(
        text.contains("\nscimd_connections_closed_for_chatter_total 1\n"),
        "{text}"
    );
}

/// The frames `said` holds, as (type, flags, payload).
fn frames_in(said: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut rest = said;
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        let Some(payload) = rest.get(9..9 + len) else {
            break;
        };
        frames.push((rest[3], rest[4], payload.to_vec()));
        rest = &rest[9 + len..];
    }
    frames
}

/// Sends `n` PINGs on a new HTTP/2 connection at once, reading the answers: what the server
/// said, if it closed the connection (or reset it) within 10 s.
async fn pings_then_close(s: &Srv, n: usize) -> Option<Vec<u8>> {
    let ping = b"\0\0\x08\x06\0\0\0\0\0pingpong";
    let mut conn = wire::connect_h2(s).await;
    conn.write_all(H2_HELLO).await.unwrap();
    let (mut reader, mut writer) = tokio::io::split(conn);
    // The socket's buffers take the whole flood; a reset may cut the writing short.
    tokio::spawn(async move { writer.write_all(&ping.repeat(n)).await });
    let (said, closed) = wire::read_to_close(&mut reader, Duration::from_secs(10)).await;
    closed.then_some(said)
}

/// A client flooding PINGs (or SETTINGS, WINDOW_UPDATEs...) with no request, reading the
/// acknowledgements, costs the server a frame's work each and needs no token. A little past
/// its budget, it is sent GOAWAY and the connection closes; far past it, the connection is
/// cut; both well before the (30 s) idle timeout would end them. Other clients are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_flooding_control_frames_is_sent_away_and_cut() {
    let s = Srv::start_with(|c| {
        c.server.header_timeout_secs = 30;
        c.server.metrics_token_sha256 = Some(scimd::auth::hex(&scimd::auth::digest("m")));
    })
    .await;
    let acks = |said: &[u8]| {
        frames_in(said)
            .iter()
            .filter(|(t, f, _)| *t == 6 && *f == 1)
            .count()
    };
    let said = pings_then_close(&s, 1_200)
        .await
        .expect("closed within 10 s of going past its budget");
    assert_eq!(acks(&said), 1_200, "every PING sent is answered");
    assert!(
        frames_in(&said).iter().any(|(t, _, _)| *t == 7),
        "told to close with GOAWAY"
    );
    let said = pings_then_close(&s, 20_000)
        .await
        .expect("cut within 10 s of a flood");
    let answered = acks(&said);
    assert!(
        (1_000..10_000).contains(&answered),
        "the PINGs within the budget are answered, and the flood is not: {answered}"
    );
    assert_eq!(s.get("/Users").await.status, 200);
    let (_, text) = s.metrics("m").await;
    assert!(
        text.contains("\nscimd_connections_closed_for_chatter_total 2\n"),
        "{text}"
    );
}

/// A client that makes many requests on one connection, pinging after each and giving
/// flow-control window for every DATA frame, is not taken for a flood: its frames are
/// accounted for by its requests and the server's answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_http2_client_pinging_after_every_request_is_not_sent_away() {
    let s = Srv::start().await;
    big_users(&s, 20).await;
    let tls = wire::connect_h2(&s).await;
    let (client, mut conn) = h2::client::handshake(tls).await.unwrap();
    let mut pings = conn.ping_pong().unwrap();
    let driven = tokio::spawn(conn);
    for i in 0..1_500 {
        let mut c = client.clone().ready().await.unwrap();
        let req = http::Request::get(format!(
            "https://localhost:{}/scim/v2/Users?count=5&startIndex={}",
            wire::port(&s),
            i % 20 + 1
        ))
        .header("authorization", format!("Bearer {ACME}"))
        .body(())
        .unwrap();
        let (answer, _) = c.send_request(req, true).unwrap();
        let head = answer.await.unwrap();
        assert_eq!(head.status(), 200, "request {i}");
        let mut body = head.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        pings.ping(h2::Ping::opaque()).await.unwrap();
    }
    assert!(!driven.is_finished(), "the connection is still open");
}

/// An HTTP/1.1 connection with a 16 KiB receive buffer that has asked for a page of up to
/// 1000 users and read nothing yet.
async fn list_on_a_narrow_socket(
    s: &Srv,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(16 * 1024).unwrap();
    let tcp = sock
        .connect(([127, 0, 0, 1], wire::port(s)).into())
        .await
        .unwrap();
    let cfg = wire::client_config(s, &[&rustls::version::TLS13]);
    let mut conn = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    conn.write_all(
        format!(
            "GET /scim/v2/Users?count=1000 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ACME}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    conn
}

/// An answer larger than the socket buffers, read slowly and with a pause longer than the
/// idle limit, is still going out after hyper has taken the whole body: neither the idle
/// rule nor a stop may cut it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_the_whole_answer_even_through_a_stop() {
    // The pause below is longer than both the idle limit and the stall limit (twice the
    // request timeout).
    let s = Srv::start_with(|c| {
        c.server.header_timeout_secs = 1;
        c.server.request_timeout_secs = 1;
        c.server.max_results = 1000;
    })
    .await;
    // About 7 MB of users: more than the kernel buffers between the two ends.
    big_users(&s, 700).await;
    let mut conn = list_on_a_narrow_socket(&s).await;
    // 128 KiB every 50 ms: a few seconds for the whole, with gaps longer than nothing.
    let mut got = Vec::new();
    let mut paused = false;
    let mut stopping = None;
    let mut s = Some(s);
    let started = std::time::Instant::now();
    loop {
        let mut chunk = vec![0u8; 128 * 1024];
        let n = match tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk)).await {
            Ok(Ok(n)) => n,
            _ => break,
        };
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
        if got.ends_with(b"]}") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // A reader that looks away for three times the idle limit, the answer half sent.
        if !paused && started.elapsed() > Duration::from_secs(1) {
            tokio::time::sleep(Duration::from_secs(3)).await;
            paused = true;
        }
        // Stop the server while the answer is on its way.
        if stopping.is_none() && started.elapsed() > Duration::from_secs(5) {
            stopping = Some(tokio::spawn(s.take().unwrap().stop()));
        }
    }
    let answer = wire::parse(&got);
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(
        answer.body["Resources"].as_array().map(Vec::len),
        Some(700),
        "the answer was cut after {} bytes",
        got.len()
    );
    assert!(stopping.is_some(), "the answer came before the stop");
    tokio::time::timeout(Duration::from_secs(20), stopping.unwrap())
        .await
        .expect("the stop finished once the answer was out")
        .unwrap();
}

/// `n` users of about 10 KB each in a list page.
async fn big_users(s: &Srv, n: usize) {
    let roles: Vec<serde_json::Value> = (0..90)
        .map(|i| serde_json::json!({"value": format!("{i:03}-{}", "r".repeat(100))}))
        .collect();
    for i in 0..n {
        let r = s
            .post(
                "/Users",
                serde_json::json!({"userName": format!("big{i}@x"), "roles": roles}),
            )
            .await;
        assert_eq!(r.status, 201);
    }
}

/// A server whose connections may leave 1 MiB unread, with pages of about 1.5 MB.
async fn paged_past_a_mib(request_timeout_secs: u64) -> Srv {
    let s = Srv::start_with(|c| {
        c.server.max_unread_mb = 1;
        c.server.request_timeout_secs = request_timeout_secs;
    })
    .await;
    big_users(&s, 150).await;
    s
}

fn list_request(s: &Srv) -> http::Request<()> {
    http::Request::get(format!(
        "https://localhost:{}/scim/v2/Users?count=1000",
        wire::port(s)
    ))
    .header("authorization", format!("Bearer {ACME}"))
    .body(())
    .unwrap()
}

/// An HTTP/2 connection whose client gives no flow-control window: it reads nothing.
async fn unreading_h2(s: &Srv) -> h2::client::SendRequest<bytes::Bytes> {
    let tls = wire::connect_h2(s).await;
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, bytes::Bytes>(tls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// An HTTP/2 connection that gives no flow-control window, and the head of its first
/// page's answer (200), whose body cannot come.
async fn first_page_unread(
    s: &Srv,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    http::Response<h2::RecvStream>,
) {
    let mut client = unreading_h2(s).await.ready().await.unwrap();
    let (first, _) = client.send_request(list_request(s), true).unwrap();
    let head = first.await.unwrap();
    assert_eq!(head.status(), 200);
    (client, head)
}

/// An HTTP/2 answer's whole body, read as it comes (its window given back as read).
async fn read_body(mut body: h2::RecvStream) -> Vec<u8> {
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    got
}

/// A group of `n` new users (`m0`, `m1`, ...); its id.
async fn group_of(s: &Srv, n: usize) -> String {
    let mut members = Vec::new();
    for i in 0..n {
        let r = s
            .post("/Users", serde_json::json!({"userName": format!("m{i}")}))
            .await;
        members.push(serde_json::json!({ "value": r.id() }));
    }
    s.post(
        "/Groups",
        serde_json::json!({"displayName": "g", "members": members}),
    )
    .await
    .id()
}

/// An HTTP/2 client that opens many list streams and reads none holds one page, not one per
/// stream: the connection's next page waits for the client to read, and gets 503 when it
/// never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_reads_nothing_holds_one_page_not_one_per_stream() {
    let s = paged_past_a_mib(3).await;
    // Kept, not read: dropping it would cancel the stream.
    let (client, first) = first_page_unread(&s).await;
    more_pages_are_refused(&s, client).await;
    drop(first);
}

/// Three more pages asked on a connection whose first is unread: each 503 after the
/// request timeout, none built.
async fn more_pages_are_refused(
    s: &Srv,
    mut client: h2::client::SendRequest<bytes::Bytes>,
) -> h2::client::SendRequest<bytes::Bytes> {
    let mut rest = Vec::new();
    for _ in 0..3 {
        client = client.ready().await.unwrap();
        rest.push(client.send_request(list_request(s), true).unwrap().0);
    }
    for answer in rest {
        let head = tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .expect("an answer within the request timeout")
            .unwrap();
        assert_eq!(
            head.status(),
            503,
            "a second page was built for a client reading none"
        );
    }
    client
}

/// Streamed groups count against the same bound as pages: what a stream reads ahead of a
/// client that reads nothing is held for it, so a connection opening many such streams
/// waits for room, and gets 503, instead of holding a megabyte or two for each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_groups_a_client_does_not_read_wait_for_room() {
    let s = Srv::start_with(|c| {
        c.server.max_unread_mb = 1;
        c.server.request_timeout_secs = 6;
    })
    .await;
    // More than fit in what a stream hands on at once (hyper takes the head, two batches of
    // 1,024 wait for it), so that the stream waits on its client rather than ending.
    let gid = group_of(&s, 1100).await;
    let mut client = unreading_h2(&s).await;
    let mut answers = Vec::new();
    for _ in 0..4 {
        client = client.ready().await.unwrap();
        let req = http::Request::get(format!(
            "https://localhost:{}/scim/v2/Groups/{gid}",
            wire::port(&s)
        ))
        .header("authorization", format!("Bearer {ACME}"))
        .body(())
        .unwrap();
        answers.push(client.send_request(req, true).unwrap().0);
    }
    // Each stream holds a megabyte of room: the connection's 1 MiB takes one, or two when
    // the second starts before hyper has taken any of the first, and the rest wait. (A
    // stream its client does not read ends after the request timeout, giving its room to a
    // waiting one, which races with that one's 503: so what is looked at is who is
    // answered well before then: the first, and any answered within half a second of it.)
    let answers: Vec<_> = answers.into_iter().map(tokio::spawn).collect();
    // Well within the 6 s request timeout, after which the waiting ones change.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while !answers.iter().any(|a| a.is_finished()) {
        assert!(tokio::time::Instant::now() < deadline, "no stream answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (done, waiting): (Vec<_>, Vec<_>) = answers.into_iter().partition(|a| a.is_finished());
    assert!(
        (1..=2).contains(&done.len()) && waiting.len() >= 2,
        "{} answered at once, {} waiting",
        done.len(),
        waiting.len()
    );
    for answer in done {
        let head = answer.await.unwrap().unwrap();
        assert_eq!(head.status(), 200);
    }
    // Unread, not dropped: dropping would cancel the streams.
    for answer in waiting {
        let head = tokio::time::timeout(Duration::from_secs(20), answer)
            .await
            .expect("an answer within the request timeout")
            .unwrap()
            .unwrap();
        assert!([200, 503].contains(&head.status().as_u16()));
    }
}

/// A client that reads gets every page it asked for on one connection, however many streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_client_gets_every_page_on_one_connection() {
    let s = paged_past_a_mib(5).await;
    let tls = wire::connect_h2(&s).await;
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    let mut streams = Vec::new();
    for _ in 0..6 {
        let mut c = client.clone().ready().await.unwrap();
        let (answer, _) = c.send_request(list_request(&s), true).unwrap();
        streams.push(tokio::spawn(async move {
            let head = answer.await.unwrap();
            (head.status(), read_body(head.into_body()).await)
        }));
    }
    for st in streams {
        let (status, got) = st.await.unwrap();
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_slice(&got).unwrap();
        assert_eq!(v["Resources"].as_array().map(Vec::len), Some(150));
    }
}

/// A client that stops reading altogether (its socket stays full) is dropped after ten
/// times the request timeout, with what it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_its_answer_is_dropped() {
    let s = Srv::start_with(|c| c.server.request_timeout_secs = 1).await;
    // About 6 MB: more than the kernel's buffers (4 MiB for sending at most) can take.
    big_users(&s, 600).await;
    let mut conn = list_on_a_narrow_socket(&s).await;
    // Read nothing for longer than the limit (10 s, looked at each second) from when the
    // answer fills the socket (building the page takes a while in a test build on a loaded
    // machine; the handshake's session tickets are far less), then everything there is.
    let t0 = std::time::Instant::now();
    let mut pending = vec![0u8; 64 * 1024];
    while conn.get_ref().0.peek(&mut pending).await.unwrap() < 8 * 1024 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no answer began");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    let got = wire::read_all(&mut conn, Duration::from_secs(10)).await;
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert!(
        !got.ends_with(b"]}"),
        "the whole answer ({} bytes) was still there for a client that read nothing",
        got.len()
    );
}

/// Request bodies on one connection take room for eight of the largest at most: a ninth,
/// though whole, waits unread until one of the eight is finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_receives_at_most_eight_largest_bodies_at_once() {
    let s = Srv::start_with(|c| c.server.max_body_bytes = 64 * 1024).await;
    let tls = wire::connect_h2(&s).await;
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    let search = |length: Option<usize>| {
        let mut req = http::Request::post(format!(
            "https://localhost:{}/scim/v2/Users/.search",
            wire::port(&s)
        ))
        .header("authorization", format!("Bearer {ACME}"))
        .header("content-type", "application/scim+json");
        if let Some(n) = length {
            req = req.header("content-length", n.to_string());
        }
        req.body(()).unwrap()
    };
    // Eight bodies of unknown length, begun: each holds room for the largest.
    let mut begun = Vec::new();
    for _ in 0..8 {
        let mut c = client.clone().ready().await.unwrap();
        let (answer, mut body) = c.send_request(search(None), false).unwrap();
        body.send_data(bytes::Bytes::from_static(b"{\"filter\": \"userName"), false)
            .unwrap();
        begun.push((answer, body));
    }
    // Room taken by all eight by now (nothing shows it; seconds for a loaded machine).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let whole = br#"{"filter": "userName pr"}"#;
    let mut c = client.clone().ready().await.unwrap();
    let (ninth, mut body) = c.send_request(search(Some(whole.len())), false).unwrap();
    body.send_data(bytes::Bytes::from_static(whole), true)
        .unwrap();
    let mut ninth = Box::pin(ninth);
    assert!(
        tokio::time::timeout(Duration::from_millis(700), &mut ninth)
            .await
            .is_err(),
        "a ninth body was read while eight largest ones were being received"
    );
    for (answer, mut body) in begun {
        body.send_data(bytes::Bytes::from_static(b" pr\"}"), true)
            .unwrap();
        assert_eq!(answer.await.unwrap().status(), 200);
    }
    let head = tokio::time::timeout(Duration::from_secs(5), ninth)
        .await
        .expect("the ninth is read once room is free")
        .unwrap();
    assert_eq!(head.status(), 200);
}

/// A tenant's read tokens receive at most half its bodies at once: an application sending
/// `.search` bodies slowly leaves room for its own IdP's writes (which waited for the read
/// token's bodies to time out when both shared only the tenant's room).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_token_sending_bodies_slowly_leaves_room_for_its_own_idp() {
    const READER: &str = "acme-app-read-token";
    let s = Srv::start_with(|c| {
        c.server.max_body_bytes = 64 * 1024;
        c.tenants
            .get_mut("acme")
            .unwrap()
            .tokens
            .push(scimd::config::TokenConfig {
                name: "app".into(),
                sha256: scimd::auth::hex(&scimd::auth::digest(READER)),
                scope: scimd::config::Scope::Read,
            });
    })
    .await;
    let search = || {
        http::Request::post(format!(
            "https://localhost:{}/scim/v2/Users/.search",
            wire::port(&s)
        ))
        .header("authorization", format!("Bearer {READER}"))
        .header("content-type", "application/scim+json")
        .body(())
        .unwrap()
    };
    // As many bodies as the tenant's whole room, each of unknown length (room for the
    // largest), eight a connection: begun and left unfinished.
    let mut begun = Vec::new();
    for _ in 0..4 {
        let tls = wire::connect_h2(&s).await;
        let (client, conn) = h2::client::handshake(tls).await.unwrap();
        tokio::spawn(conn);
        for _ in 0..8 {
            let mut c = client.clone().ready().await.unwrap();
            let (answer, mut body) = c.send_request(search(), false).unwrap();
            body.send_data(bytes::Bytes::from_static(b"{\"filter\": \"userName"), false)
                .unwrap();
            begun.push((answer, body));
        }
    }
    // Room taken by those that found it (nothing shows it; seconds for a loaded machine).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idp = s.call(
        reqwest::Method::POST,
        "/scim/v2/Users",
        Some(ACME),
        Some(serde_json::json!({"userName": "while-the-app-searches"})),
    );
    // Well before the read token's bodies time out (30 s).
    let created = tokio::time::timeout(Duration::from_secs(15), idp)
        .await
        .expect("the IdP's write waited for the read token's bodies");
    assert_eq!(created.status, 201, "{}", created.body);
    // Every body is finished before any answer is awaited: which of them found room is the
    // server's order, not this list's, and one still waiting is answered only once those
    // holding room are done.
    let mut answers = Vec::new();
    for (answer, mut body) in begun {
        body.send_data(bytes::Bytes::from_static(b" pr\"}"), true)
            .unwrap();
        answers.push(tokio::spawn(answer));
    }
    for answer in answers {
        let head = tokio::time::timeout(Duration::from_secs(15), answer)
            .await
            .expect("a finished search body was answered")
            .unwrap()
            .unwrap();
        assert_eq!(head.status(), 200);
    }
}

/// An answer the client cancels before taking it no longer counts as unread: the
/// connection's next page is built at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_answer_no_longer_counts_as_unread() {
    // Were it still counted, the next page would wait the whole request timeout (30 s)
    // for room, then get 503; 20 s is "at once" for a loaded machine.
    let s = paged_past_a_mib(30).await;
    let (mut client, head) = first_page_unread(&s).await;
    // Dropping the unread answer resets the stream.
    drop(head);
    tokio::time::sleep(Duration::from_millis(300)).await;
    client = client.ready().await.unwrap();
    let (second, _) = client.send_request(list_request(&s), true).unwrap();
    let head = tokio::time::timeout(Duration::from_secs(20), second)
        .await
        .expect("the next page was built at once")
        .unwrap();
    assert_eq!(head.status(), 200);
}

/// A page of users in many groups is written as their groups are read, its length unknown
/// ahead, so it is never counted as unread: it keeps its connection's turn until written,
/// and a client reading none of it holds that one page, not one per stream (64 such
/// streams took 290 MB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_page_of_users_holds_its_connections_turn_until_written() {
    let s = Srv::start_with(|c| c.server.request_timeout_secs = 2).await;
    let mut users = Vec::new();
    for i in 0..60 {
        users.push(s.user(&format!("u{i}@x")).await);
    }
    let ids: Vec<&str> = users.iter().map(String::as_str).collect();
    // Past what a page read as stored text keeps by the 50th user, the page goes the
    // decoded way, whose budget runs out at the 26th.
    for g in 0..scimd::store::STORED_PAGE_REFS / 50 + 1 {
        s.group(&format!("g{g}"), &ids).await;
    }
    let (client, first) = first_page_unread(&s).await;
    assert_eq!(
        first.headers().get("content-length"),
        None,
        "a streamed page"
    );
    let client = more_pages_are_refused(&s, client).await;
    drop(first);
    // Once the first is gone, the connection's pages are built again.
    let mut c = client.ready().await.unwrap();
    let (answer, _) = c.send_request(list_request(&s), true).unwrap();
    let head = tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .expect("an answer")
        .unwrap();
    assert_eq!(head.status(), 200);
}

/// HTTP/2: a Host header beside `:authority` must name the same host (RFC 9113 §8.3.1),
/// which it does in another letter case, or with the scheme's default port spelled out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_host_header_naming_the_authority_with_its_default_port_is_the_same_host() {
    let s = Srv::start().await;
    let tls = wire::connect_h2(&s).await;
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    let port = wire::port(&s);
    for (authority, host, status) in [
        (
            format!("localhost:{port}"),
            format!("LocalHost:{port}"),
            200,
        ),
        ("localhost".to_string(), "localhost:443".to_string(), 200),
        ("localhost:443".to_string(), "localhost".to_string(), 200),
        (format!("localhost:{port}"), "localhost".to_string(), 400),
        (
            format!("localhost:{port}"),
            format!("example.com:{port}"),
            400,
        ),
    ] {
        let req = http::Request::get(format!("https://{authority}/scim/v2/ServiceProviderConfig"))
            .header("host", host.as_str())
            .body(())
            .unwrap();
        let mut c = client.clone().ready().await.unwrap();
        let (answer, _) = c.send_request(req, true).unwrap();
        let head = answer.await.unwrap();
        assert_eq!(head.status(), status, "{authority} / {host}");
    }
}

/// A client that hangs up (HTTP/1.1) or gives up on its stream (HTTP/2) while its filter
/// reads every user stops that read: the pool thread and the tenant's scan turn are not
/// held for no one until the request time limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_stops_when_its_client_goes_away() {
    let s = Srv::start_with(|c| {
        c.server.request_timeout_secs = 600;
        c.server.metrics_token_sha256 = Some(scimd::auth::hex(&scimd::auth::digest("m")));
    })
    .await;
    let mut loading = tokio::task::JoinSet::new();
    for part in 0..16 {
        let (client, url) = (s.client.clone(), format!("{}/Users", s.base()));
        loading.spawn(async move {
            for i in 0..250 {
                let body = serde_json::json!({"userName": format!("u{part}-{i}@x"), "title": "t"});
                let r = client
                    .post(&url)
                    .bearer_auth(ACME)
                    .header("content-type", "application/scim+json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
            }
        });
    }
    while let Some(done) = loading.join_next().await {
        done.unwrap();
    }
    // No index serves it, and each user costs 250 comparisons; a new filter each time (a
    // scan's count is kept for the next page of the same filter).
    let filter = |salt: &str| {
        (0..250)
            .map(|i| format!("title eq \"{salt}-{i}\""))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let scan = |client: &reqwest::Client, salt: &str| {
        client
            .get(format!(
                "{}/Users?count=1&filter={}",
                s.base(),
                crate::harness::urlencode(&filter(salt))
            ))
            .bearer_auth(ACME)
    };
    let mut whole = Duration::MAX;
    for salt in ["a", "b"] {
        let started = std::time::Instant::now();
        let r = scan(&s.client, salt).send().await.unwrap();
        assert_eq!(r.status(), 200);
        whole = whole.min(started.elapsed());
    }
    let stopped = async |reason: &str| {
        let (status, text) = s.metrics("m").await;
        assert_eq!(status, 200);
        let line = format!("scimd_scans_stopped_total{{reason=\"{reason}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .and_then(|n| n.parse::<u64>().ok())
            .expect("the counter is shown")
    };
    assert_eq!(stopped("client_gone").await, 0);
    // The same filter as a search (POST, which a client may not leave running either).
    // As the router reads a path: `%2Esearch/` is `.search`.
    let search = |client: &reqwest::Client, salt: &str, path: &str| {
        client
            .post(format!("{}/Users/{path}", s.base()))
            .bearer_auth(ACME)
            .header("content-type", "application/scim+json")
            .body(
                serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                    "filter": filter(salt),
                    "count": 1
                })
                .to_string(),
            )
    };
    // Halfway through a scan, as last timed: shortened whenever a scan is answered in it
    // (the machine sped up since, say as a neighbour's load went).
    let mut limit = whole / 2;
    let clients = [
        (s.http1_client(), false, ""),
        (s.client.clone(), false, ""),
        (s.http1_client(), true, ".search"),
        (s.client.clone(), true, ".search"),
        (s.http1_client(), true, "%2Esearch/"),
    ];
    for (n, (client, post, path)) in clients.iter().enumerate() {
        // Connected first: the time limit below is the scan's, not a handshake's.
        let warm = client.get(format!("{}/Users?count=0", s.base()));
        assert_eq!(warm.bearer_auth(ACME).send().await.unwrap().status(), 200);
        // Given up halfway through; tried again (a new filter) should the machine have sped
        // up enough for the whole scan to be answered in that time, or to finish it just as
        // the client gave up (three times at most: a scan never stopped fails each).
        let mut counted = 0;
        let mut tries = 0;
        for _attempt in 0..3 {
            loop {
                tries += 1;
                let salt = format!("gone{n}-{tries}");
                let request = match post {
                    false => scan(client, &salt),
                    true => search(client, &salt, path),
                };
                let started = std::time::Instant::now();
                match request.timeout(limit).send().await {
                    Err(e) if e.is_timeout() => break,
                    answered => {
                        limit = limit.min(started.elapsed()) / 2;
                        assert!(tries < 20, "answered in time: {answered:?}");
                    }
                }
            }
            // The read that went on, had it not been stopped, ends with no scan counted as
            // stopped; the wait is a bound only.
            for _ in 0..600 {
                counted = stopped("client_gone").await;
                if counted == n as u64 + 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if counted == n as u64 + 1 {
                break;
            }
        }
        assert_eq!(
            counted,
            n as u64 + 1,
            "the scan for no one was not stopped (a search: {post} {path})"
        );
    }
    assert_eq!(stopped("deadline").await, 0);
}

/// An HTTP/2 client that cancels a streamed group part-way, again and again on one
/// connection, does not leave what hyper had taken for the cancelled streams counted as
/// unread: its next answers are not kept waiting for room it never used. Once no stream is
/// open the count drops to what answers hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_group_streams_leave_nothing_counted_as_unread() {
    cancel_group_streams(false).await;
}

/// The same with another stream open throughout (a request whose body never ends), so
/// that the count never drops whole: what each cancelled stream leaves counted is about a
/// part at most, and 80 cancels fit in a megabyte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_group_streams_beside_an_open_one_leave_little_counted() {
    cancel_group_streams(true).await;
}

/// 80 cancels of a 1,100-member group after 20 KB on one HTTP/2 connection at
/// `max_unread_mb = 1` (each left tens of KB counted before: 1 MiB ran out within 40), then
/// the whole group.
async fn cancel_group_streams(beside_an_open_one: bool) {
    // Long enough for the open request's body to stay awaited throughout.
    let s = Srv::start_with(|c| {
        c.server.max_unread_mb = 1;
        c.server.request_timeout_secs = 60;
    })
    .await;
    let gid = group_of(&s, 1100).await;
    let tls = wire::connect_h2(&s).await;
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    let url = |path: &str| format!("https://localhost:{}/scim/v2{path}", wire::port(&s));
    // Kept to the end: dropping it would end the stream.
    let open = if beside_an_open_one {
        let mut c = client.clone().ready().await.unwrap();
        let req = http::Request::post(url("/Users"))
            .header("authorization", format!("Bearer {ACME}"))
            .header("content-type", "application/scim+json")
            .header("content-length", "100")
            .body(())
            .unwrap();
        let (answer, mut body) = c.send_request(req, false).unwrap();
        body.send_data(bytes::Bytes::from_static(b"{\"userName\""), false)
            .unwrap();
        Some((answer, body))
    } else {
        None
    };
    let group = || {
        http::Request::get(url(&format!("/Groups/{gid}")))
            .header("authorization", format!("Bearer {ACME}"))
            .body(())
            .unwrap()
    };
    for i in 0..80 {
        let mut c = client.clone().ready().await.unwrap();
        let (answer, _) = c.send_request(group(), true).unwrap();
        let head = tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .unwrap_or_else(|_| panic!("no answer to group {i} within 10 s"))
            .unwrap();
        assert_eq!(head.status(), 200, "group {i}");
        let mut body = head.into_body();
        let mut got = 0;
        while got < 20_000 {
            let chunk = body.data().await.expect("more of the group").unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            got += chunk.len();
        }
        // Dropping the body resets the stream (CANCEL).
        drop(body);
    }
    let mut c = client.clone().ready().await.unwrap();
    let (answer, _) = c.send_request(group(), true).unwrap();
    let head = tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(head.status(), 200);
    let got = read_body(head.into_body()).await;
    let v: serde_json::Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(v["members"].as_array().map(Vec::len), Some(1100));
    if let Some((answer, _body)) = open {
        let still = tokio::time::timeout(Duration::from_millis(100), answer).await;
        assert!(still.is_err(), "the open request was answered: {still:?}");
    }
}
