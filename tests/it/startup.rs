//! Start-up: TLS from PEM files or self-signed (reused across restarts), ALPN, persistence.

use reqwest::{Certificate, Method};
use scimd::server::Server;

use crate::harness::{ACME, Srv, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_signed_certificate_is_made_once_and_reused_with_the_data() {
    let s = Srv::start().await;
    let id = s.user("persist@example.com").await;
    let cert_before = std::fs::read(s.dir.path().join("state/tls/cert.pem")).unwrap();
    let dir = s.stop().await;
    let cfg = test_config(dir.path());
    let s = Srv::start_config(dir, cfg).await;
    let cert_after = std::fs::read(s.dir.path().join("state/tls/cert.pem")).unwrap();
    assert_eq!(
        cert_before, cert_after,
        "the self-signed certificate must be reused"
    );
    let r = s.get(&format!("/Users/{id}")).await;
    assert_eq!(r.status, 200, "data must survive a restart: {}", r.body);
    assert_eq!(r.body["userName"], "persist@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_pem_certificate_and_key_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.path().join("fullchain.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    scimd::tls::write_private(&key, ck.signing_key.serialize_pem().as_bytes()).unwrap();
    let mut cfg = test_config(dir.path());
    cfg.tls.self_signed = false;
    cfg.tls.cert = Some(cert.clone());
    cfg.tls.key = Some(key);
    let s = Srv::start_config(dir, cfg).await;
    assert_eq!(s.get("/Users").await.status, 200);
    // The state directory holds no generated certificate in this mode.
    assert!(!s.dir.path().join("state/tls/cert.pem").exists());
}

/// Renewed files holding an expired certificate do not replace one that can be served, on
/// a reload either; the rest of the reload (a token taken out) still applies, and the
/// reload warns of the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_a_servable_certificate_over_an_expired_one_and_applies_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let pair = crate::process::dated_pem;
    let (cert, key) = (dir.path().join("fullchain.pem"), dir.path().join("key.pem"));
    let (good, good_key) = pair(-1, 90);
    std::fs::write(&cert, &good).unwrap();
    scimd::tls::write_private(&key, good_key.as_bytes()).unwrap();
    let mut cfg = test_config(dir.path());
    cfg.tls.self_signed = false;
    cfg.tls.cert = Some(cert.clone());
    cfg.tls.key = Some(key.clone());
    let s = Srv::start_config(dir, cfg).await;
    let (expired, expired_key) = pair(-100, -1);
    std::fs::write(&cert, &expired).unwrap();
    scimd::tls::write_private(&key, expired_key.as_bytes()).unwrap();
    let mut without_globex = s.config.clone();
    without_globex.tenants.remove("globex");
    let r = s.reloader().apply(without_globex).await.unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|w| w.starts_with("tls: the new certificate expired on")),
        "{r:?}"
    );
    assert!(
        r.notes.contains(&"tenant globex removed".to_string()),
        "{r:?}"
    );
    assert!(!r.cert_not_yet_valid, "an expired one never will be");
    // Still served: a client trusting only the good certificate connects.
    let client = trusting(good.as_bytes(), reqwest::Client::builder());
    assert_eq!(users(&s, &client).await.status(), 200);
    assert_eq!(
        s.call(Method::GET, "/Users", Some(crate::harness::GLOBEX), None)
            .await
            .status,
        401
    );
    // One not valid yet: kept out too, and the watcher is told to go on looking at it.
    let (early, early_key) = pair(2, 90);
    std::fs::write(&cert, &early).unwrap();
    scimd::tls::write_private(&key, early_key.as_bytes()).unwrap();
    let r = s.reloader().apply(s.config.clone()).await.unwrap();
    assert!(r.cert_not_yet_valid, "{r:?}");
    assert!(
        r.warnings
            .iter()
            .any(|w| w.starts_with("tls: the new certificate is not valid before")),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiates_h2_and_accepts_tls12_and_http1() {
    let s = Srv::start().await;
    let r = s
        .client
        .get(format!("{}/Users", s.base()))
        .bearer_auth(ACME)
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN should pick h2");
    let pem = std::fs::read(s.dir.path().join("state/tls/cert.pem")).unwrap();
    let c12 = trusting(
        &pem,
        reqwest::Client::builder()
            .max_tls_version(reqwest::tls::Version::TLS_1_2)
            .http1_only(),
    );
    let r = users(&s, &c12).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_client_gets_no_answer_from_the_tls_port() {
    let s = Srv::start().await;
    let plain = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = s.base().replace("https://", "http://");
    let r = plain
        .get(format!("{url}/Users"))
        .bearer_auth(ACME)
        .send()
        .await;
    assert!(
        r.is_err() || r.is_ok_and(|r| r.status() != 200),
        "plain HTTP must not be served on the TLS port"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_loopback_when_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.server.plain_http = true;
    cfg.tls.self_signed = false;
    let server = Server::bind(cfg).await.unwrap();
    let port = server.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async move {
        let _ = rx.await;
    }));
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .request(
            Method::GET,
            format!("http://127.0.0.1:{port}/scim/v2/Users"),
        )
        .bearer_auth(ACME)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["totalResults"], 0);
    let _ = tx.send(());
    task.await.unwrap();
}

/// A generated file left broken by a failed first start (full disk, I/O error), then a
/// restart: the server makes a new pair and serves TLS with it, and the data is still there.
async fn restart_after_damaging(file: &str, damage: impl FnOnce(&[u8]) -> Vec<u8>) {
    let s = Srv::start().await;
    let id = s.user("kept@example.com").await;
    let tls = s.dir.path().join("state/tls");
    let cert_before = std::fs::read(tls.join("cert.pem")).unwrap();
    let dir = s.stop().await;
    let original = std::fs::read(tls_path(&dir, file)).unwrap();
    std::fs::write(tls_path(&dir, file), damage(&original)).unwrap();
    let cfg = test_config(dir.path());
    let s = Srv::start_config(dir, cfg).await;
    assert_ne!(
        std::fs::read(tls.join("cert.pem")).unwrap(),
        cert_before,
        "a new certificate"
    );
    // The harness client trusts only the certificate now on disk.
    let r = s.get(&format!("/Users/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

fn tls_path(dir: &tempfile::TempDir, file: &str) -> std::path::PathBuf {
    dir.path().join("state/tls").join(file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_generated_certificate_is_made_again_at_start() {
    restart_after_damaging("cert.pem", |_| Vec::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_generated_key_is_made_again_at_start() {
    restart_after_damaging("key.pem", |k| k[..k.len() / 2].to_vec()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_configured_certificate_is_an_error_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.path().join("fullchain.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, "").unwrap();
    scimd::tls::write_private(&key, ck.signing_key.serialize_pem().as_bytes()).unwrap();
    let mut cfg = test_config(dir.path());
    cfg.tls.self_signed = false;
    cfg.tls.cert = Some(cert.clone());
    cfg.tls.key = Some(key);
    let Err(e) = Server::bind(cfg).await else {
        panic!("a server started with an empty tls.cert");
    };
    let e = e.to_string();
    assert!(
        e.starts_with("tls.cert: ")
            && e.contains(&cert.display().to_string())
            && e.contains("no CERTIFICATE block found"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(&cert).unwrap(),
        b"",
        "the admin's file is left alone"
    );
    assert!(!dir.path().join("state/tls").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_self_signed_certificate_names_the_public_url_host() {
    let s = Srv::start_with(|c| {
        c.server.public_url = Some("https://scim.corp.example:8443".into());
    })
    .await;
    let port = crate::harness::wire::port(&s);
    let pem = std::fs::read(s.dir.path().join("state/tls/cert.pem")).unwrap();
    // What `curl --cacert cert.pem https://scim.corp.example:8443/...` checks.
    let healthz = |name: &'static str| {
        let pem = pem.clone();
        async move {
            reqwest::Client::builder()
                .tls_certs_only([Certificate::from_pem(&pem).unwrap()])
                .resolve(name, ([127, 0, 0, 1], port).into())
                .no_proxy()
                .build()
                .unwrap()
                .get(format!("https://{name}:{port}/healthz"))
                .send()
                .await
        }
    };
    assert_eq!(healthz("scim.corp.example").await.unwrap().status(), 200);
    assert!(
        healthz("other.corp.example").await.is_err(),
        "a name not in the certificate is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_url_ip_address_is_an_ip_name_in_the_certificate() {
    use std::sync::Arc;

    let s =
        Srv::start_with(|c| c.server.public_url = Some("https://192.0.2.10:8443/".into())).await;
    let cfg = crate::harness::wire::client_config(
        &s,
        &[&rustls::version::TLS13, &rustls::version::TLS12],
    );
    let connect = |ip: &'static str| {
        let cfg = Arc::new(cfg.clone());
        let port = crate::harness::wire::port(&s);
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            tokio_rustls::TlsConnector::from(cfg)
                .connect(rustls::pki_types::ServerName::try_from(ip).unwrap(), tcp)
                .await
        }
    };
    assert!(connect("192.0.2.10").await.is_ok());
    assert!(connect("192.0.2.11").await.is_err());
}

/// A port another process holds is the commonest start failure: the message says what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_named_with_what_to_do() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.server.listen = holder.local_addr().unwrap().to_string();
    let Err(e) = Server::bind(cfg).await else {
        panic!("bound a port another socket holds");
    };
    let e = e.to_string();
    assert!(
        e.starts_with("server.listen: cannot listen on 127.0.0.1:")
            && e.contains("another process holds the port")
            && e.contains("server.listen)"),
        "{e}"
    );
    // Refused before anything was made: no database or certificate is left behind.
    assert!(!dir.path().join("state").exists());
}

/// `builder`'s client, trusting only the certificate `pem`.
fn trusting(pem: &[u8], builder: reqwest::ClientBuilder) -> reqwest::Client {
    builder
        .tls_certs_only([Certificate::from_pem(pem).unwrap()])
        .no_proxy()
        .build()
        .unwrap()
}

/// `GET /Users` with acme's token through `client`.
async fn users(s: &Srv, client: &reqwest::Client) -> reqwest::Response {
    client
        .get(format!("{}/Users", s.base()))
        .bearer_auth(ACME)
        .send()
        .await
        .unwrap()
}
