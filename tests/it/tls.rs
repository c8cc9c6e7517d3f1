//! Only TLS 1.2 and 1.3 with modern suites: an old client and a plain-HTTP client are
//! refused before any HTTP is spoken.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::harness::{Srv, wire};

/// A ClientHello as a TLS 1.0 or 1.1 client sends it: no `supported_versions` extension, and
/// the suites of that era.
fn legacy_client_hello(minor: u8) -> Vec<u8> {
    let mut body = vec![3, minor];
    body.extend_from_slice(&[0x5a; 32]); // random
    body.push(0); // no session id
    // The old CBC suites, and one GCM suite the server has, so the version is what fails.
    let suites: [u16; 5] = [0xc02f, 0xc014, 0xc00a, 0x0035, 0x002f];
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // null compression
    let mut ext = Vec::new();
    ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x17, 0x00, 0x18]); // groups
    ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]); // point formats
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![0x16, 3, 1];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

async fn exchange(s: &Srv, bytes: &[u8]) -> Vec<u8> {
    exchange_on(wire::port(s), bytes).await
}

/// Sends `bytes` to the port and reads until the server closes (or 5 s).
pub(crate) async fn exchange_on(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_0_and_1_1_clients_get_a_fatal_alert() {
    let s = Srv::start().await;
    for minor in [1u8, 2] {
        let answer = exchange(&s, &legacy_client_hello(minor)).await;
        assert!(answer.len() >= 7, "TLS 1.{}: {answer:?}", minor - 1);
        assert_eq!(
            answer[0],
            0x15,
            "TLS 1.{}: an alert record, not a ServerHello: {answer:?}",
            minor - 1
        );
        // A fatal alert: rustls says handshake_failure (40); protocol_version (70) would do.
        assert_eq!(answer[5], 2, "fatal: {answer:?}");
        assert!(
            matches!(answer[6], 40 | 70),
            "TLS 1.{}: {answer:?}",
            minor - 1
        );
        assert!(!answer.contains(&0x16), "no handshake record follows");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_refused() {
    let s = Srv::start().await;
    let answer = exchange(&s, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    let text = String::from_utf8_lossy(&answer);
    assert!(!text.contains("HTTP/"), "plain HTTP was answered: {text}");
    assert!(
        !text.contains("version"),
        "nothing of the server leaks: {text}"
    );
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "an alert or nothing: {answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_and_1_3_work_with_forward_secret_aead_suites() {
    let s = Srv::start().await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let cfg = wire::client_config(&s, &[version]);
        let tcp = TcpStream::connect(("127.0.0.1", wire::port(&s)))
            .await
            .unwrap();
        let mut conn = TlsConnector::from(Arc::new(cfg))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("handshake");
        let (_, session) = conn.get_ref();
        assert_eq!(session.protocol_version(), Some(version.version));
        // AES-128-GCM, though the client lists AES-256 first: the server's order decides,
        // and its SHA-256 key schedule is the cheaper handshake.
        let suite = format!("{:?}", session.negotiated_cipher_suite().unwrap().suite());
        assert!(suite.contains("AES_128_GCM_SHA256"), "{suite}");
        if version.version == rustls::ProtocolVersion::TLSv1_2 {
            assert!(suite.starts_with("TLS_ECDHE_"), "forward secrecy: {suite}");
        }
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let a = wire::parse(&wire::read_all(&mut conn, Duration::from_secs(5)).await);
        assert_eq!(a.status, 200);
        assert_eq!(a.body["status"], "ok");
    }
}

/// A client configuration that trusts no certificate.
fn trusting_no_one() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

/// A TLS handshake by a client that trusts no certificate, as an IdP does a self-signed one:
/// the error it met.
pub(crate) async fn distrusting_handshake(port: u16) -> std::io::Error {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    TlsConnector::from(Arc::new(trusting_no_one()))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect_err("no root trusts the server's certificate")
}

/// A client that, like Java's HttpClient refusing a certificate, closes the connection once
/// it has the server's first flight, sending no alert.
pub(crate) async fn silently_refusing_handshake(port: u16) {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(trusting_no_one()), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(&hello).await.unwrap();
    let mut flight = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut flight))
        .await
        .unwrap()
        .unwrap();
    assert!(n > 0 && flight[0] == 22, "a handshake record came back");
}

/// An admin's "why does my IdP not connect": the failed handshakes are counted by reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_handshakes_are_counted_by_reason() {
    let token = "metrics-token";
    let s = Srv::start_with(|c| {
        c.server.metrics_token_sha256 = Some(scimd::auth::hex(&scimd::auth::digest(token)))
    })
    .await;
    let port = wire::port(&s);
    for _ in 0..2 {
        let e = distrusting_handshake(port).await;
        assert!(e.to_string().contains("UnknownIssuer"), "{e}");
    }
    exchange_on(port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    exchange_on(port, &legacy_client_hello(1)).await;
    silently_refusing_handshake(port).await;
    // A probe that only connects is not a refusal.
    drop(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    // Counted once the server sees each close, after the client has gone on.
    let lines: Vec<String> = [
        ("certificate_refused", 2),
        ("closed_after_certificate", 1),
        ("not_tls", 1),
        ("incompatible", 1),
        ("timeout", 0),
    ]
    .iter()
    .map(|(reason, n)| format!("scimd_tls_handshake_failures_total{{reason=\"{reason}\"}} {n}\n"))
    .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let (_, text) = s.metrics(token).await;
        if lines.iter().all(|l| text.contains(l)) || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for line in &lines {
        assert!(text.contains(line), "{line} in:\n{text}");
    }
}

/// A client offering only `http/1.0` in ALPN (`curl --http1.0`) is served, not refused in
/// the handshake with no application protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_offering_only_http10_is_served() {
    let s = Srv::start().await;
    let mut cfg = wire::client_config(&s, &[&rustls::version::TLS13]);
    cfg.alpn_protocols = vec![b"http/1.0".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", wire::port(&s)))
        .await
        .unwrap();
    let mut tls = TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.0"[..]));
    tls.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let raw = wire::read_all(&mut tls, Duration::from_secs(5)).await;
    assert!(
        raw.starts_with(b"HTTP/1.0 200"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
}
