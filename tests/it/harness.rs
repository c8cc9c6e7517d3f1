//! One helper that starts the real server in-process on 127.0.0.1:0 over TLS, with a temp
//! state directory and a certificate made for the test, and a real HTTPS client trusting it.

use std::path::PathBuf;

use reqwest::header::HeaderMap;
use reqwest::{Certificate, Method};
use scimd::auth::{digest, hex};
use scimd::config::{Config, Scope, TenantConfig, TokenConfig};
use scimd::server::{Server, StartError};
use scimd::store::StoreError;
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;

/// Binds a server to `cfg`, waiting while a stopped one in this process still holds the
/// database (a fixed pause was too short on a loaded machine).
async fn bind_when_free(cfg: &Config) -> Server {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match Server::bind(cfg.clone()).await {
            Ok(server) => return server,
            Err(StartError::Store(StoreError::InUse { .. }))
                if std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("server starts: {e}"),
        }
    }
}

/// Tenant `acme`'s token (the IdP).
pub const ACME: &str = "acme-okta-token";
/// Tenant `globex`'s token.
pub const GLOBEX: &str = "globex-entra-token";

pub struct Srv {
    /// `https://127.0.0.1:PORT`
    pub url: String,
    pub client: reqwest::Client,
    pub dir: TempDir,
    /// Flip to make the database's disk fail.
    pub faults: scimd::store::Faults,
    /// What SIGHUP does in the daemon (it holds the store open until `stop`).
    reloader: Option<scimd::server::Reloader>,
    pub config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub struct Res {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Res {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// `id` of the returned resource.
    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .expect("response has an id")
            .to_string()
    }
}

pub fn test_config(dir: &std::path::Path) -> Config {
    let mut cfg = Config::default();
    cfg.server.listen = "127.0.0.1:0".into();
    cfg.tls.self_signed = true;
    cfg.storage.dir = dir.join("state");
    cfg.storage.cache_mb = 16;
    for (tenant, name, tok) in [("acme", "okta", ACME), ("globex", "entra", GLOBEX)] {
        cfg.tenants.insert(
            tenant.into(),
            TenantConfig {
                tokens: vec![TokenConfig {
                    name: name.into(),
                    sha256: hex(&digest(tok)),
                    scope: Scope::Provision,
                }],
                ..TenantConfig::default()
            },
        );
    }
    cfg
}

impl Srv {
    pub async fn start() -> Srv {
        Srv::start_with(|_| {}).await
    }

    pub async fn start_with(change: impl FnOnce(&mut Config)) -> Srv {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cfg = test_config(dir.path());
        change(&mut cfg);
        Srv::start_config(dir, cfg).await
    }

    pub async fn start_config(dir: TempDir, cfg: Config) -> Srv {
        assert!(
            cfg.problems().is_empty(),
            "test config invalid: {:?}",
            cfg.problems()
        );
        let server = bind_when_free(&cfg).await;
        let addr = server.local_addr().expect("bound");
        let faults = server.storage_faults();
        let reloader = server.reloader();
        let cert_path: PathBuf = cfg
            .tls
            .cert
            .clone()
            .unwrap_or_else(|| cfg.storage.dir.join("tls/cert.pem"));
        let pem = std::fs::read(&cert_path).expect("certificate written");
        let client = reqwest::Client::builder()
            .tls_certs_only([Certificate::from_pem(&pem).expect("pem")])
            .no_proxy()
            .build()
            .expect("client");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = rx.await;
        }));
        Srv {
            // `localhost` matches the self-signed certificate's names.
            url: format!("https://localhost:{}", addr.port()),
            client,
            dir,
            faults,
            reloader: Some(reloader),
            config: cfg,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn reloader(&self) -> &scimd::server::Reloader {
        self.reloader.as_ref().expect("running")
    }

    /// Stops the server and hands back its directory. The database may stay open a moment
    /// longer: a connection the stop does not wait for still holds the store, and the writer
    /// thread lets go of the file once its last sender is dropped; `start_config` waits.
    pub async fn stop(mut self) -> TempDir {
        self.reloader = None;
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.dir, dir)
    }

    /// `https://localhost:PORT/scim/v2`
    pub fn base(&self) -> String {
        format!("{}/scim/v2", self.url)
    }

    /// A client that trusts this server's certificate and speaks HTTP/1.1 only (`client`
    /// negotiates HTTP/2).
    pub fn http1_client(&self) -> reqwest::Client {
        let pem = std::fs::read(self.dir.path().join("state/tls/cert.pem")).unwrap();
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .http1_only()
            .no_proxy()
            .build()
            .unwrap()
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Res {
        self.call_with(method, path, token, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Res {
        let url = if path.starts_with("http") {
            path.to_string()
        } else if path.starts_with("/tenants") || path.starts_with("/scim") {
            format!("{}{path}", self.url)
        } else {
            format!("{}{path}", self.base())
        };
        let mut rb = self.client.request(method, url);
        if let Some(t) = token {
            rb = rb.header("Authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb
                .header("Content-Type", "application/scim+json")
                .body(b.to_string());
        }
        let resp = rb.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Res {
            status,
            headers,
            body,
        }
    }

    /// `GET /metrics` with this token: its status and text.
    pub async fn metrics(&self, token: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}/metrics", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Calls as tenant `acme`.
    pub async fn get(&self, path: &str) -> Res {
        self.call(Method::GET, path, Some(ACME), None).await
    }

    /// Every resource of a list, by following `nextCursor` from the first page; `path`
    /// already has a query (it gets `&cursor=`). Each page must answer 200.
    pub async fn walk(&self, path: &str) -> Vec<Value> {
        let (mut all, mut cursor) = (Vec::new(), String::new());
        loop {
            let r = self.get(&format!("{path}&cursor={cursor}")).await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
            all.extend(r.body["Resources"].as_array().unwrap().iter().cloned());
            match r.body["nextCursor"].as_str() {
                Some(c) => cursor = c.to_string(),
                None => return all,
            }
        }
    }
    pub async fn post(&self, path: &str, body: Value) -> Res {
        self.call(Method::POST, path, Some(ACME), Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Res {
        self.call(Method::PUT, path, Some(ACME), Some(body)).await
    }
    pub async fn patch(&self, path: &str, ops: Value) -> Res {
        let body = serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
        self.call(Method::PATCH, path, Some(ACME), Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Res {
        self.call(Method::DELETE, path, Some(ACME), None).await
    }

    /// Create a user with the given userName (and a work email equal to it).
    pub async fn user(&self, user_name: &str) -> String {
        let r = self
            .post(
                "/Users",
                serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name,
                    "name": {"givenName": "Given", "familyName": "Family"},
                    "emails": [{"value": user_name, "type": "work", "primary": true}],
                    "active": true,
                }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.id()
    }

    pub async fn group(&self, name: &str, members: &[&str]) -> String {
        let members: Vec<Value> = members
            .iter()
            .map(|m| serde_json::json!({"value": m}))
            .collect();
        let r = self
            .post(
                "/Groups",
                serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "displayName": name, "members": members,
                }),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.id()
    }
}

/// `s` with every byte but letters and digits percent-escaped, for a query string.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Assert an RFC 7644 error body with this status and scimType.
pub fn assert_error(r: &Res, status: u16, scim_type: Option<&str>) {
    assert_eq!(r.status, status, "body: {}", r.body);
    assert_eq!(
        r.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
        "{}",
        r.body
    );
    assert_eq!(r.body["status"], status.to_string(), "{}", r.body);
    assert!(
        r.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{}",
        r.body
    );
    match scim_type {
        Some(t) => assert_eq!(r.body["scimType"], t, "{}", r.body),
        None => assert!(r.body.get("scimType").is_none(), "{}", r.body),
    }
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/scim+json"))
    );
}

/// The `displayName`s of a list's resources, sorted.
pub fn display_names(r: &Res) -> Vec<String> {
    sorted(&r.body["Resources"], "displayName")
}

/// The string `key` of each element of the array `list` (a list's `Resources`, a group's
/// `members`), sorted.
pub fn sorted(list: &Value, key: &str) -> Vec<String> {
    let mut v = strings(list, key);
    v.sort();
    v
}

/// The string `key` of each element of the array `list`, in its order.
pub fn strings(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("an array: {list}"))
        .iter()
        .map(|e| e[key].as_str().unwrap().to_string())
        .collect()
}

pub fn total(r: &Res) -> u64 {
    r.body["totalResults"]
        .as_u64()
        .expect("totalResults is an integer")
}

/// A request written byte for byte over TLS, for what an HTTP client library would refuse
/// to send or would tidy up (raw paths, odd headers, bodies that never finish).
pub mod wire {
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream;

    pub struct Answer {
        pub status: u16,
        pub head: String,
        pub body: serde_json::Value,
    }

    /// The client configuration trusting this server's certificate, with these versions.
    pub fn client_config(
        s: &super::Srv,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> rustls::ClientConfig {
        trusting(&s.dir.path().join("state/tls/cert.pem"), versions)
    }

    /// The client configuration trusting the certificate in `cert`, with these versions.
    pub fn trusting(
        cert: &std::path::Path,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> rustls::ClientConfig {
        let pem = std::fs::read(cert).expect("cert");
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&pem) {
            roots.add(c.expect("pem")).expect("root");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth()
    }

    pub fn port(s: &super::Srv) -> u16 {
        s.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub async fn connect(s: &super::Srv) -> TlsStream<TcpStream> {
        connect_to(port(s), &s.dir.path().join("state/tls/cert.pem")).await
    }

    /// A TLS connection to the server on `port` whose certificate is in `cert`.
    pub async fn connect_to(port: u16, cert: &std::path::Path) -> TlsStream<TcpStream> {
        let cfg = trusting(cert, &[&rustls::version::TLS13, &rustls::version::TLS12]);
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("TLS handshake")
    }

    /// A TLS connection that offers only `h2` (ALPN), for speaking HTTP/2 by hand.
    pub async fn connect_h2(s: &super::Srv) -> TlsStream<TcpStream> {
        let mut cfg = client_config(s, &[&rustls::version::TLS13]);
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = TcpStream::connect(("127.0.0.1", port(s))).await.unwrap();
        let tls = TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("TLS handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        tls
    }

    /// Everything the server sends until it closes, or until `wait` passes.
    pub async fn read_all(conn: &mut TlsStream<TcpStream>, wait: Duration) -> Vec<u8> {
        read_to_close(conn, wait).await.0
    }

    /// Everything the server sends until it closes (or resets), or until `wait` passes; and
    /// whether it closed.
    pub async fn read_to_close<R: tokio::io::AsyncRead + Unpin>(
        conn: &mut R,
        wait: Duration,
    ) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let closed = tokio::time::timeout(wait, async {
            let mut buf = [0u8; 8192];
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await
        .is_ok();
        (out, closed)
    }

    pub fn parse(raw: &[u8]) -> Answer {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(raw)));
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line: {head}"));
        let mut body = raw[split + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            let mut plain = Vec::new();
            let mut rest = &body[..];
            while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
                let size =
                    usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                        .unwrap();
                if size == 0 {
                    break;
                }
                plain.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
                rest = &rest[eol + 4 + size..];
            }
            body = plain;
        }
        let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        Answer { status, head, body }
    }

    /// Send `request` (a whole HTTP/1.1 request, bytes as given) and read the answer.
    pub async fn send(s: &super::Srv, request: &[u8]) -> Answer {
        send_on(connect(s).await, request).await
    }

    /// Send `request` on `conn` and read the answer.
    pub async fn send_on(mut conn: TlsStream<TcpStream>, request: &[u8]) -> Answer {
        // The server may answer (413, 431) and close before the whole request is written.
        if conn.write_all(request).await.is_ok() {
            let _ = conn.flush().await;
        }
        let raw = read_all(&mut conn, Duration::from_secs(20)).await;
        parse(&raw)
    }
}
