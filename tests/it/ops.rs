//! Health, metrics and what a reload applies.

use reqwest::Method;
use scimd::auth::{digest, hex};

use crate::harness::{Srv, wire};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_needs_no_token_and_metrics_need_theirs() {
    let s =
        Srv::start_with(|c| c.server.metrics_token_sha256 = Some(hex(&digest("metrics-token"))))
            .await;
    let r = s
        .client
        .get(format!("{}/healthz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (body["status"].as_str(), body["version"].as_str()),
        (Some("ok"), Some(env!("CARGO_PKG_VERSION")))
    );
    // The commit tells two builds of one version apart.
    let commit = body["commit"].as_str().unwrap_or_default();
    assert!(commit == "unknown" || commit.len() == 12, "{body}");
    s.user("m@x").await;
    // A refusal of a known token counts under its tenant.
    assert_eq!(s.get("/Users/nobody").await.status, 404);
    assert_eq!(
        s.call(Method::GET, "/Users", Some("wrong"), None)
            .await
            .status,
        401
    );
    assert_eq!(s.metrics("nope").await.0, 401);
    // GET and HEAD only, as /healthz.
    let r = s
        .client
        .post(format!("{}/metrics", s.url))
        .bearer_auth("metrics-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    // The login redirect is counted too (404 here: none is configured), under a configured
    // tenant's name only.
    for tenant in ["acme", "nosuch"] {
        let url = format!("{}/tenants/{tenant}/sso/login_redirect", s.url);
        assert_eq!(s.client.get(url).send().await.unwrap().status(), 404);
    }
    assert_eq!(
        s.post("/Users/.search", serde_json::json!({})).await.status,
        200
    );
    let (status, text) = s.metrics("metrics-token").await;
    assert_eq!(status, 200);
    for needle in [
        "scimd_requests_total{endpoint=\"/Users\",method=\"POST\",status=\"201\",tenant=\"acme\"} 1",
        "scimd_requests_total{endpoint=\"/Users\",method=\"GET\",status=\"401\",tenant=\"-\"} 1",
        "scimd_requests_total{endpoint=\"/Users/{id}\",method=\"GET\",status=\"404\",tenant=\"acme\"} 1",
        // Each search endpoint on its own.
        "scimd_requests_total{endpoint=\"/Users/.search\",method=\"POST\",status=\"200\",tenant=\"acme\"} 1",
        "scimd_request_duration_seconds_bucket{endpoint=\"/Users\",le=\"+Inf\"} 2",
        // The wrong SCIM token and the wrong metrics token.
        "scimd_auth_failures_total 2",
        "scimd_write_batch_size_count",
        "scimd_commit_duration_seconds_count",
        "scimd_resources{tenant=\"acme\",kind=\"User\"} 1",
        "scimd_resources{tenant=\"globex\",kind=\"User\"} 0",
        "scimd_database_bytes ",
        "scimd_writes_refused{reason=\"damaged\"} 0\n",
        "scimd_writes_refused{reason=\"disk_full\"} 0\n",
        "scimd_requests_total{endpoint=\"/sso/login_redirect\",method=\"GET\",status=\"404\",tenant=\"acme\"} 1",
        "scimd_requests_total{endpoint=\"/sso/login_redirect\",method=\"GET\",status=\"404\",tenant=\"-\"} 1",
    ] {
        assert!(text.contains(needle), "{needle} not in:\n{text}");
    }
    assert!(!text.contains("acme-okta-token"));
    // The room on the database's disk, for a monitor to see it fill before writes are refused.
    let free: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("scimd_database_disk_free_bytes "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no free bytes in:\n{text}"));
    assert!(free > 0, "{text}");
    // When the served certificate ends: the test's self-signed one, a year from now.
    let ends: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("scimd_tls_certificate_expiry_timestamp_seconds "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no certificate end in:\n{text}"));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (300..=400).contains(&((ends - now) / 86_400)),
        "{ends} {now}"
    );
    // A disk with no room left (the fault switch plays one) shows as 0.
    s.faults.set(Some(scimd::store::Fault::DiskFull));
    let (_, full) = s.metrics("metrics-token").await;
    s.faults.set(None);
    assert!(
        full.contains("scimd_database_disk_free_bytes 0\n"),
        "{full}"
    );
    // Every metric says what it is (Prometheus shows HELP beside the graph).
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).unwrap();
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}:\n{text}"
        );
    }
    // A tenant taken out of the configuration keeps its line while its data is kept.
    let r = s
        .call(
            Method::POST,
            "/Users",
            Some(crate::harness::GLOBEX),
            Some(serde_json::json!({"userName": "g@x"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let mut cfg = s.config.clone();
    cfg.tenants.remove("globex");
    s.reloader().apply(cfg).await.unwrap();
    let (_, text) = s.metrics("metrics-token").await;
    assert!(
        text.contains("scimd_resources{tenant=\"globex\",kind=\"User\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_off_without_a_token() {
    let s = Srv::start().await;
    let r = s
        .client
        .get(format!("{}/metrics", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// A tenant renamed in the file does not take its data along: its IdP goes on with the same
/// token into an empty tenant. The reload warns of it by name, and of a tenant removed with
/// data left; one removed empty is only a note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_warns_of_a_renamed_tenant_and_of_data_left_behind() {
    let s = Srv::start().await;
    s.user("kept@x").await;
    let mut cfg = s.config.clone();
    let acme = cfg.tenants.remove("acme").unwrap();
    cfg.tenants.insert("acme-corp".into(), acme);
    let r = s.reloader().apply(cfg.clone()).await.unwrap();
    let said = r.warnings.join("\n");
    assert!(
        said.contains("tenant acme removed, and tenant acme-corp added with its token")
            && said.contains("the 1 user and 0 groups stay under acme")
            && said.contains("name the table acme again"),
        "{r:?}"
    );
    // Named back, it serves its data again; then taken out without a rename: the data left
    // is named, and how to serve or delete it.
    s.reloader().apply(s.config.clone()).await.unwrap();
    assert_eq!(crate::harness::total(&s.get("/Users").await), 1);
    let mut keep = s.config.clone();
    keep.tenants.remove("acme");
    let r = s.reloader().apply(keep).await.unwrap();
    let said = r.warnings.join("\n");
    assert!(
        said.contains("tenant acme removed: its 1 user and 0 groups stay in the database")
            && said.contains("scimd tenant purge acme --yes"),
        "{r:?}"
    );
    // globex holds nothing: a note, not a warning.
    let mut none = s.config.clone();
    none.tenants.remove("acme");
    none.tenants.remove("globex");
    let r = s.reloader().apply(none).await.unwrap();
    assert!(
        r.notes.contains(&"tenant globex removed".to_string()),
        "{r:?}"
    );
    assert!(!r.warnings.iter().any(|w| w.contains("globex")), "{r:?}");
}

/// What a reload cannot apply stays as it runs until a restart, for everything that reads
/// it: a new `storage.dir` must not make and serve a new self-signed certificate, which
/// every IdP that trusts the served one would refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_running_storage_and_its_certificate() {
    let s = Srv::start().await;
    let moved = s.dir.path().join("moved");
    let mut cfg = s.config.clone();
    cfg.storage.dir = moved.clone();
    let notes = s.reloader().apply(cfg).await.unwrap().warnings.join("\n");
    assert!(
        notes.contains("storage changed: takes effect after a restart"),
        "{notes}"
    );
    assert!(!moved.exists(), "{notes}");
    // A new connection, trusting only the certificate served before the reload.
    let r = s
        .http1_client()
        .get(format!("{}/scim/v2/Users", s.url))
        .bearer_auth(crate::harness::ACME)
        .send()
        .await
        .expect("the served certificate is the one trusted");
    assert_eq!(r.status(), 200);
}

/// A create whose body stops after its first bytes: the request stays open.
async fn half_sent_post(s: &Srv) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut conn = wire::connect(s).await;
    let head = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/scim+json\r\nContent-Length: 1000\r\n\r\n{{\"userName\":\"half",
        crate::harness::ACME
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.flush().await.unwrap();
    conn
}

/// A reload's `request_timeout_secs` holds for connections opened after it, in full: the
/// connection's own limits (twice and ten times it) used to stay those of the start, and
/// cut a slow body off with no answer before the new timeout's 408.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_request_timeout_holds_for_new_connections() {
    let s = Srv::start_with(|c| c.server.request_timeout_secs = 1).await;
    let mut cfg = s.config.clone();
    cfg.server.request_timeout_secs = 4;
    s.reloader().apply(cfg).await.unwrap();
    // Before the head is sent: the server's clock may start before this task runs again.
    let started = std::time::Instant::now();
    let mut conn = half_sent_post(&s).await;
    let a = wire::parse(&wire::read_all(&mut conn, std::time::Duration::from_secs(10)).await);
    assert_eq!(a.status, 408, "{}", a.head);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(4),
        "408 after {:?}, for a 4 s timeout",
        started.elapsed()
    );
}

/// A reload's `shutdown_grace_secs` is the one a stop waits: it was read at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_shutdown_grace_is_the_one_a_stop_waits() {
    let s = Srv::start_with(|c| {
        c.server.shutdown_grace_secs = 60;
        c.server.request_timeout_secs = 60;
    })
    .await;
    let mut cfg = s.config.clone();
    cfg.server.shutdown_grace_secs = 1;
    s.reloader().apply(cfg).await.unwrap();
    // A request that stays open: its body never arrives.
    let conn = half_sent_post(&s).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    s.stop().await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the stop waited {:?}, for a grace of 1 s",
        started.elapsed()
    );
    drop(conn);
}
