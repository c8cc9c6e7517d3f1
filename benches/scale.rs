//! End-to-end benchmark: starts the release `scimd` binary on 127.0.0.1 with a fresh data
//! directory and a self-signed certificate, loads N users and a group of M members over
//! HTTPS, then runs each scenario for a bounded time with concurrent clients and prints
//! req/s, p50/p99 latency, the server's RSS and its CPU time per request (user and system,
//! from /proc: steadier than req/s when the VM's speed varies). Never a pass/fail on timing.
//!
//!     cargo bench --bench scale -- --users 10000 --members 1000 --seconds 5 --clients 64
//!
//! The measured requests go through a deliberately lean client (`Target`): one kept-alive TLS
//! connection per client and prepared request bytes, so that, like `wrk`, it costs little
//! beside the server on the same cores. Setting up (reading ids back, filling the group) uses
//! reqwest.
//!
//! `--cache-mb N` sets the server's `storage.cache_mb` (default: the config default). The same
//! binary, run with `--hello-server`, is the baseline: hyper on the same TLS configuration,
//! answering every request with a fixed body, in its own process like scimd.
//!
//! `--data DIR` keeps the data directory in DIR instead of a temporary one; run again with the
//! same DIR and N, the load is skipped (the users and the group are already there), which
//! makes repeated runs at a million users take minutes less.
//!
//! Loopback only; every loop is bounded by a deadline.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TOKEN: &str = "bench-token";

struct Args {
    users: usize,
    members: usize,
    seconds: u64,
    clients: usize,
    cache_mb: Option<usize>,
    data: Option<std::path::PathBuf>,
}

fn args() -> Args {
    let v: Vec<String> = std::env::args().collect();
    // `cargo test --all-targets` runs this binary without `--bench`: a tiny smoke run then.
    let mut a = if v.iter().any(|x| x == "--bench") {
        Args {
            users: 10_000,
            members: 1_000,
            seconds: 5,
            clients: 64,
            cache_mb: None,
            data: None,
        }
    } else {
        Args {
            users: 200,
            members: 50,
            seconds: 1,
            clients: 8,
            cache_mb: None,
            data: None,
        }
    };
    let mut i = 1;
    while i < v.len() {
        let next = || v.get(i + 1).and_then(|x| x.parse().ok());
        match v[i].as_str() {
            "--users" => a.users = next().unwrap_or(a.users),
            "--members" => a.members = next().unwrap_or(a.members),
            "--seconds" => a.seconds = next().map(|x: usize| x as u64).unwrap_or(a.seconds),
            "--clients" => a.clients = next().unwrap_or(a.clients),
            "--cache-mb" => a.cache_mb = next(),
            "--data" => a.data = v.get(i + 1).map(std::path::PathBuf::from),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

struct Server {
    child: Child,
    port: u16,
    _dir: Option<tempfile::TempDir>,
    /// For setting up (loading ids, creating the group): convenience over speed.
    client: reqwest::Client,
    /// For the measured scenarios.
    target: Target,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM, as systemd stops it: a kept data directory then reopens without repair.
        let stopped = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        while stopped && Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the measured scenarios send their requests. The load generator is deliberately
/// lean (one kept-alive TLS connection per client, requests written as prepared bytes,
/// responses read by their framing alone) so that the figures measure the server rather
/// than the client; it costs about what `wrk` does per request.
#[derive(Clone)]
struct Target {
    port: u16,
    prefix: String,
    tls: tokio_rustls::TlsConnector,
    /// The server process, whose CPU time each scenario reports per request.
    pid: u32,
}

impl Target {
    fn new(port: u16, prefix: &str, cert: &std::path::Path, pid: u32) -> Target {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pki_types::CertificateDer::pem_file_iter(cert).expect("certificate") {
            roots.add(c.expect("pem")).expect("trusted root");
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Target {
            port,
            prefix: prefix.to_string(),
            tls: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
            pid,
        }
    }

    async fn connect(&self) -> std::io::Result<Conn> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        tcp.set_nodelay(true)?;
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        Ok(Conn {
            tls: self.tls.connect(name, tcp).await?,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    fn request(&self, req: Req) -> Vec<u8> {
        let (method, path, body) = match req {
            Req::Get(p) => ("GET", p, None),
            Req::Post(p, b) => ("POST", p, Some(b.to_string())),
            Req::Patch(p, b) => ("PATCH", p, Some(b.to_string())),
            Req::Put(p, b) => ("PUT", p, Some(b.to_string())),
            Req::Delete(p) => ("DELETE", p, None),
        };
        let mut out = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n",
            self.prefix
        );
        match body {
            Some(b) => {
                out.push_str(&format!(
                    "Content-Type: application/scim+json\r\nContent-Length: {}\r\n\r\n",
                    b.len()
                ));
                out.push_str(&b);
            }
            None => out.push_str("\r\n"),
        }
        out.into_bytes()
    }
}

struct Conn {
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    /// Send one request and read its whole response (fixed length or chunked, never kept
    /// whole in memory); returns the status and the `Location` header's last segment (a
    /// created resource's id).
    async fn exchange(&mut self, req: &[u8]) -> std::io::Result<(u16, Option<String>)> {
        use tokio::io::AsyncWriteExt;
        self.tls.write_all(req).await?;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let raw = String::from_utf8_lossy(&self.buf[..head_end]);
        // Ids are case-sensitive: the header's name is matched in lowercase, its value kept.
        let created = raw.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("location").then(|| {
                value
                    .trim()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
        });
        let head = raw.to_ascii_lowercase();
        let status: u16 = head.get(9..12).and_then(|x| x.parse().ok()).unwrap_or(0);
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        self.buf.drain(..head_end);
        match length {
            Some(n) => self.skip(n).await?,
            None if head.contains("transfer-encoding: chunked") => loop {
                let line_end = loop {
                    if let Some(i) = find(&self.buf, b"\r\n") {
                        break i;
                    }
                    self.fill().await?;
                };
                let size = std::str::from_utf8(&self.buf[..line_end])
                    .ok()
                    .and_then(|l| usize::from_str_radix(l.split(';').next()?.trim(), 16).ok())
                    .ok_or_else(|| std::io::Error::other("bad chunk size"))?;
                self.buf.drain(..line_end + 2);
                // The chunk and its CRLF; the last chunk is followed by an empty trailer line.
                self.skip(size + 2).await?;
                if size == 0 {
                    break;
                }
            },
            None => {}
        }
        Ok((status, created))
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncReadExt;
        if self.buf.capacity() - self.buf.len() < 8192 {
            self.buf.reserve(16 * 1024);
        }
        if self.tls.read_buf(&mut self.buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// Consume `n` bytes of body without keeping them.
    async fn skip(&mut self, mut n: usize) -> std::io::Result<()> {
        loop {
            let have = self.buf.len().min(n);
            self.buf.drain(..have);
            n -= have;
            if n == 0 {
                return Ok(());
            }
            self.fill().await?;
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Write the config into `data` (kept) or a fresh temporary directory (removed at the end).
fn prepare(
    cache_mb: Option<usize>,
    data: Option<&std::path::Path>,
) -> (
    Option<tempfile::TempDir>,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let (tmp, root) = match data {
        Some(d) => {
            std::fs::create_dir_all(d).expect("data directory");
            (None, d.to_path_buf())
        }
        None => {
            let t = tempfile::tempdir().expect("temp dir");
            let root = t.path().to_path_buf();
            (Some(t), root)
        }
    };
    let hash = scimd::auth::hex(&scimd::auth::digest(TOKEN));
    let cfg = root.join("scimd.toml");
    let cache = cache_mb
        .map(|c| format!("cache_mb = {c}\n"))
        .unwrap_or_default();
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nmax_results = 1000\n[tls]\nself_signed = true\n[storage]\ndir = \"{}\"\n{cache}[log]\nlevel = \"warn\"\n[tenants.bench]\ntokens = [{{ name = \"bench\", sha256 = \"{hash}\" }}]\n",
            root.join("state").display()
        ),
    )
    .expect("config");
    (tmp, root, cfg)
}

/// Start `program args` and wait for its "listening on ADDR" line; returns the child, the
/// port and how long it took to be ready.
fn spawn_listening(program: &std::path::Path, args: &[&std::ffi::OsStr]) -> (Child, u16, Duration) {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("server starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split(" listening on ").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("server listening");
    let ready = started.elapsed();
    let port = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    (child, port, ready)
}

fn client_for(cert: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(cert).expect("cert");
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("pem")])
        .http1_only()
        .no_proxy()
        .pool_max_idle_per_host(1024)
        .build()
        .expect("client")
}

fn start_server(
    dir: Option<tempfile::TempDir>,
    root: &std::path::Path,
    cfg: &std::path::Path,
) -> (Server, Duration) {
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_scimd"));
    let (child, port, ready) = spawn_listening(
        &bin,
        &["serve".as_ref(), "--config".as_ref(), cfg.as_os_str()],
    );
    let cert = root.join("state/tls/cert.pem");
    let client = client_for(&cert);
    let pid = child.id();
    (
        Server {
            child,
            port,
            _dir: dir,
            client,
            target: Target::new(port, "/scim/v2", &cert, pid),
        },
        ready,
    )
}

/// The baseline server: hyper over the same rustls configuration scimd builds, one fixed
/// answer for every request. Runs until killed.
fn hello_server(dir: &std::path::Path) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (cert, key) = scimd::tls::ensure_self_signed(dir, None).expect("certificate");
        let loaded = scimd::tls::load_pem(&cert, &key).expect("load");
        let resolver = Arc::new(scimd::tls::CertResolver::new(loaded.key));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(
            scimd::tls::server_config(resolver).expect("tls config"),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        eprintln!(
            "hello listening on {}",
            listener.local_addr().expect("addr")
        );
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"{\"hello\":\"world\"}"),
                    )))
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
}

/// Start the baseline in its own process (this binary with `--hello-server DIR`).
fn start_hello(dir: &std::path::Path) -> (Child, Target) {
    let me = std::env::current_exe().expect("own path");
    let (child, port, _) = spawn_listening(&me, &["--hello-server".as_ref(), dir.as_os_str()]);
    let pid = child.id();
    (child, Target::new(port, "", &dir.join("tls/cert.pem"), pid))
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.to_string())
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// CPU time (user and system) process `pid` has used, in seconds. The VM's speed varies from
/// run to run; CPU time per request varies less than requests a second, and it is the
/// server's own, not shared with the load generator.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces: utime and
    // stime are the 12th and 13th, in ticks of 1/100 s (USER_HZ on Linux).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    match (f.get(11), f.get(12)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => 0.0,
    }
}

#[derive(Clone)]
enum Req {
    Get(String),
    Post(String, Value),
    Patch(String, Value),
    Put(String, Value),
    Delete(String),
}

struct Outcome {
    count: usize,
    errors: usize,
    secs: f64,
    lat_us: Vec<u32>,
    /// The server's CPU time while the scenario ran.
    cpu_secs: f64,
    /// The ids of the resources the scenario created (from each 201's `Location`).
    created: Vec<String>,
}

/// Run `make(i)` requests from `clients` tasks until `secs` pass (or `limit` requests).
async fn run<F>(
    target: &Target,
    clients: usize,
    secs: u64,
    limit: Option<usize>,
    make: F,
) -> Outcome
where
    F: Fn(usize) -> Req + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let counter = Arc::new(AtomicUsize::new(0));
    let cpu_before = cpu_secs(target.pid);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (make, counter, target) = (make.clone(), counter.clone(), target.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut created = Vec::new();
            let mut conn = None;
            while Instant::now() < deadline {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                if limit.is_some_and(|l| i >= l) {
                    break;
                }
                let req = target.request(make(i));
                let t0 = Instant::now();
                if conn.is_none() {
                    conn = target.connect().await.ok();
                }
                let status = match conn.as_mut() {
                    Some(c) => c.exchange(&req).await.ok(),
                    None => None,
                };
                match status {
                    Some((201, Some(id))) => created.push(id),
                    Some((s, _)) if (200..300).contains(&s) => {}
                    Some(_) => errors += 1,
                    None => {
                        errors += 1;
                        conn = None; // reconnect for the next request
                    }
                }
                lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            (lat, errors, created)
        }));
    }
    let mut lat_us = Vec::new();
    let mut errors = 0;
    let mut created = Vec::new();
    for t in tasks {
        if let Ok((l, e, c)) = t.await {
            lat_us.extend(l);
            errors += e;
            created.extend(c);
        }
    }
    lat_us.sort_unstable();
    Outcome {
        count: lat_us.len(),
        errors,
        secs: start.elapsed().as_secs_f64(),
        lat_us,
        cpu_secs: cpu_secs(target.pid) - cpu_before,
        created,
    }
}

fn pct(v: &[u32], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * p) as usize] as f64 / 1000.0
}

/// Requests of every scenario that did not get the answer they expect: a run with any
/// fails, so a change that breaks a scenario is not read as a fast one (CI's smoke run too).
static ERRORS: AtomicUsize = AtomicUsize::new(0);

fn report(name: &str, o: &Outcome, rss: f64) {
    ERRORS.fetch_add(o.errors, Ordering::Relaxed);
    println!(
        "| {name:<44} | {:>9.0} | {:>8.2} | {:>8.2} | {:>6} | {:>7.1} | {:>7.1} |",
        o.count as f64 / o.secs,
        pct(&o.lat_us, 0.5),
        pct(&o.lat_us, 0.99),
        o.errors,
        rss,
        o.cpu_secs * 1e6 / o.count.max(1) as f64
    );
}

fn user(i: usize) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("user{i}@bench.example"),
        "externalId": format!("ext-{i}"), "name": {"givenName": "Bench", "familyName": format!("User{i}")},
        "emails": [{"value": format!("user{i}@bench.example"), "type": "work", "primary": true}], "active": true})
}

/// Create "Big Group" and add `members` in PATCH batches of 1000; returns its id.
async fn create_group(s: &Server, base: &str, members: &[String]) -> String {
    let g: Value = s
        .client
        .post(format!("{base}/Groups"))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/scim+json")
        .body(json!({"displayName": "Big Group"}).to_string())
        .send()
        .await
        .expect("group")
        .json()
        .await
        .expect("json");
    let gid = g["id"].as_str().expect("group id").to_string();
    for chunk in members.chunks(1000) {
        let members: Vec<Value> = chunk.iter().map(|id| json!({"value": id})).collect();
        let r = s
            .client
            .patch(format!("{base}/Groups/{gid}"))
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/scim+json")
            .body(
                json!({"Operations": [{"op": "add", "path": "members", "value": members}]})
                    .to_string(),
            )
            .send()
            .await
            .expect("patch");
        assert!(
            r.status().is_success(),
            "member load failed: {}",
            r.status()
        );
    }
    gid
}

/// GET `url` with the bench token and parse the answer.
async fn get_json(s: &Server, url: &str) -> Value {
    s.client
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

fn main() {
    let v: Vec<String> = std::env::args().collect();
    if let Some(i) = v.iter().position(|x| x == "--hello-server") {
        hello_server(std::path::Path::new(
            v.get(i + 1).expect("--hello-server DIR"),
        ));
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(bench(args()));
    let errors = ERRORS.load(Ordering::Relaxed);
    if errors > 0 {
        eprintln!("scimd-bench: {errors} requests failed (the errors column); see above");
        std::process::exit(1);
    }
}

async fn bench(a: Args) {
    let (dir, root, cfg) = prepare(a.cache_mb, a.data.as_deref());
    let (mut s, _) = start_server(dir, &root, &cfg);
    let pid = s.child.id();
    let base = format!("https://localhost:{}/scim/v2", s.port);
    println!(
        "scimd-bench: users={} members={} seconds={} clients={}",
        a.users, a.members, a.seconds, a.clients
    );
    println!(
        "| {:<44} | {:>9} | {:>8} | {:>8} | {:>6} | {:>7} | {:>7} |",
        "scenario", "req/s", "p50 ms", "p99 ms", "errors", "RSS MiB", "CPU µs"
    );
    println!(
        "|{:-<46}|{:-<11}|{:-<10}|{:-<10}|{:-<8}|{:-<9}|{:-<9}|",
        "", "", "", "", "", "", ""
    );

    // Load: creates with concurrent clients, durable before each 201 (skipped when a kept
    // data directory already holds them).
    let have = get_json(&s, &format!("{base}/Users?count=0")).await["totalResults"]
        .as_u64()
        .unwrap_or(0) as usize;
    if have >= a.users {
        println!(
            "| {:<44} | {:>9} |",
            format!("(load skipped: {have} users kept)"),
            ""
        );
    } else {
        let load = run(&s.target, a.clients, 24 * 3600, Some(a.users), |i| {
            Req::Post("/Users".into(), user(i))
        })
        .await;
        report(
            &format!("POST /Users (load {} users)", a.users),
            &load,
            rss_mib(pid),
        );
    }
    // Ids in creation order, read back by paging; each page's cursor is kept with the number
    // of ids before it, to reach any later point from the nearest one.
    let mut ids: Vec<String> = Vec::with_capacity(a.users);
    // Each id's number in its userName (`user{number}@bench.example`), for replacing it whole.
    let mut numbers: Vec<usize> = Vec::with_capacity(a.users);
    let mut starts: Vec<(usize, String)> = Vec::new();
    let mut cursor = String::new();
    loop {
        starts.push((ids.len(), cursor.clone()));
        let r: Value = s
            .client
            .get(format!(
                "{base}/Users?cursor={cursor}&count=1000&attributes=userName"
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        let page = r["Resources"].as_array().cloned().unwrap_or_default();
        for u in &page {
            let number = u["userName"]
                .as_str()
                .and_then(|n| n.strip_prefix("user")?.split_once('@')?.0.parse().ok());
            if let (Some(id), Some(number)) = (u["id"].as_str(), number) {
                ids.push(id.to_string());
                numbers.push(number);
            }
        }
        match r["nextCursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let ids = Arc::new(ids);
    let n = ids.len().max(1);
    // Name-based lookups pick among the N loaded users (a kept directory also holds the
    // users created by earlier runs' last scenario).
    let named = a.users.min(n).max(1);

    // A group of M members, filled in PATCH batches of 1000 (kept from an earlier run when
    // the data directory is reused).
    let m = a.members.min(n.saturating_sub(100));
    let found = get_json(
        &s,
        &format!(
            "{base}/Groups?filter=displayName%20eq%20%22Big%20Group%22&excludedAttributes=members"
        ),
    )
    .await;
    let gid = match found["Resources"][0]["id"].as_str() {
        Some(id) => id.to_string(),
        None => create_group(&s, &base, &ids[..m]).await,
    };
    let secs = a.seconds;
    let c = a.clients;
    // Numbers no earlier run used (from the clock's seconds, a million apart), for the users
    // the POST scenario creates: a run stopped before it deleted them leaves no name taken.
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as usize);
    let fresh = 10_000_000_000 + (clock % 1_000_000) * 1_000_000;
    // GET by id and the baseline take turns, three rounds: the VM's speed drifts by 10% from
    // one scenario to the next, and a single pair run back to back puts that drift into the
    // share. The rows show the round whose share is the median.
    let hello_dir = tempfile::tempdir().expect("temp dir");
    let (mut hello, hello_target) = start_hello(hello_dir.path());
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let i2 = ids.clone();
        let get = run(&s.target, c, secs, None, move |i| {
            Req::Get(format!("/Users/{}", i2[(i * 7919) % n]))
        })
        .await;
        let (get_rss, hello_o) = (
            rss_mib(pid),
            run(&hello_target, c, secs, None, |_| Req::Get("/hello".into())).await,
        );
        let share = get.count as f64 / get.secs / (hello_o.count as f64 / hello_o.secs);
        rounds.push((share, get, get_rss, hello_o, rss_mib(hello.id())));
    }
    let _ = hello.kill();
    let _ = hello.wait();
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let shares: Vec<String> = rounds
        .iter()
        .map(|r| format!("{:.0}%", 100.0 * r.0))
        .collect();
    let (share, get, get_rss, hello_o, hello_rss) = rounds.swap_remove(1);
    report("GET /Users/{id}", &get, get_rss);
    report("baseline: hyper hello, same TLS", &hello_o, hello_rss);
    println!(
        "|   GET by id = {:.0}% of the baseline's rate (median of 3 alternated rounds: {}) {:>width$}|",
        100.0 * share,
        shares.join(", "),
        "",
        width = 42usize.saturating_sub(shares.join(", ").len())
    );
    for (_, get, _, hello_o, _) in &rounds {
        // The other rounds' failures count too.
        ERRORS.fetch_add(get.errors + hello_o.errors, Ordering::Relaxed);
    }
    let o = run(&s.target, c, secs, None, move |i| {
        Req::Get(format!(
            "/Users?filter=userName%20eq%20%22user{}%40bench.example%22",
            (i * 7919) % named
        ))
    })
    .await;
    report("filter userName eq", &o, rss_mib(pid));
    // Prefixes with one digit fewer than the largest number: each matches 11 users at most
    // (user1234 matches user1234 and user12340..user12349), whatever N is.
    let (lo, hi) = (named / 100, (named / 10).max(named / 100 + 1));
    let o = run(&s.target, c, secs, None, move |i| {
        Req::Get(format!(
            "/Users?filter=userName%20sw%20%22user{}%22",
            lo + (i * 7919) % (hi - lo)
        ))
    })
    .await;
    report("filter userName sw (at most 11 hits)", &o, rss_mib(pid));
    let o = run(&s.target, c, secs, None, move |i| {
        Req::Get(format!(
            "/Users?filter=emails%5Bvalue%20eq%20%22user{}%40bench.example%22%5D",
            (i * 7919) % named
        ))
    })
    .await;
    report("filter emails[value eq]", &o, rss_mib(pid));
    let o = run(&s.target, c, secs, None, move |i| {
        Req::Get(format!(
            "/Users?filter=externalId%20eq%20%22ext-{}%22",
            (i * 7919) % named
        ))
    })
    .await;
    report("filter externalId eq", &o, rss_mib(pid));
    let o = run(&s.target, c, secs, None, |_| {
        Req::Get(
            "/Groups?filter=displayName%20eq%20%22Big%20Group%22&excludedAttributes=members".into(),
        )
    })
    .await;
    report("filter displayName eq (excl. members)", &o, rss_mib(pid));
    let last = n.saturating_sub(99).max(1);
    let o = run(&s.target, c, secs, None, move |_| {
        Req::Get(format!("/Users?startIndex={last}&count=100"))
    })
    .await;
    report("last page of 100 (startIndex)", &o, rss_mib(pid));
    // The cursor that fetches the last 100 users, as a client walking the list gets it: the
    // `nextCursor` of a page that ends just before them, read from the nearest kept cursor.
    let cursor = match n.checked_sub(101) {
        None => String::new(),
        Some(t) => {
            let (offset, from) = starts
                .iter()
                .rev()
                .find(|(o, _)| *o <= t)
                .expect("first page");
            let r = get_json(
                &s,
                &format!(
                    "{base}/Users?cursor={from}&count={}&attributes=id",
                    t + 1 - offset
                ),
            )
            .await;
            r["nextCursor"]
                .as_str()
                .expect("more pages follow")
                .to_string()
        }
    };
    let o = run(&s.target, c, secs, None, move |_| {
        Req::Get(format!("/Users?count=100&cursor={cursor}"))
    })
    .await;
    report("last page of 100 (cursor)", &o, rss_mib(pid));
    // Membership changes: add then remove users outside the group, one member per PATCH.
    let outside: Vec<String> = ids[m..].to_vec();
    let gp = format!("/Groups/{gid}");
    let o = run(&s.target, c, secs, None, move |i| {
        let id = &outside[(i / 2) % outside.len()];
        if i % 2 == 0 {
            Req::Patch(gp.clone(), json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]}))
        } else {
            Req::Patch(gp.clone(), json!({"Operations": [{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]}))
        }
    })
    .await;
    report(
        &format!("PATCH add/remove 1 member (group of {m})"),
        &o,
        rss_mib(pid),
    );
    // The same one at a time: the latency of one durable change with nothing to share its
    // commit with.
    let outside: Vec<String> = ids[m..].to_vec();
    let gp = format!("/Groups/{gid}");
    let o = run(&s.target, 1, secs, None, move |i| {
        let id = &outside[(i / 2) % outside.len()];
        if i % 2 == 0 {
            Req::Patch(gp.clone(), json!({"Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}]}))
        } else {
            Req::Patch(gp.clone(), json!({"Operations": [{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]}))
        }
    })
    .await;
    report("  the same, 1 client", &o, rss_mib(pid));
    let gp = format!("/Groups/{gid}?excludedAttributes=members");
    let o = run(&s.target, c, secs, None, move |_| Req::Get(gp.clone())).await;
    report("GET group excludedAttributes=members", &o, rss_mib(pid));
    // The PATCH scenarios' adds and removes of one id run on different clients, so a few
    // adds can outlive their removes: count what the group holds now.
    let held = get_json(&s, &format!("{base}/Groups/{gid}")).await["members"]
        .as_array()
        .map_or(0, Vec::len);
    let gp = format!("/Groups/{gid}");
    let o = run(&s.target, c.min(8), secs, None, move |_| {
        Req::Get(gp.clone())
    })
    .await;
    report(&format!("GET group with {held} members"), &o, rss_mib(pid));
    // What an IdP sends besides lookups and creates: its import's first page, a profile
    // replaced whole (the same userName), a deactivation and reactivation, a delete.
    let o = run(&s.target, c, secs, None, |_| {
        Req::Get("/Users?startIndex=1&count=100".into())
    })
    .await;
    report("GET /Users first page of 100", &o, rss_mib(pid));
    let (i2, numbers) = (ids.clone(), Arc::new(numbers));
    let o = run(&s.target, c, secs, None, move |i| {
        let k = (i * 7919) % n;
        let mut body = user(numbers[k]);
        body["title"] = json!(format!("Title {i}"));
        Req::Put(format!("/Users/{}", i2[k]), body)
    })
    .await;
    report("PUT /Users/{id} (same userName)", &o, rss_mib(pid));
    let active = |i2: Arc<Vec<String>>, on: fn(usize) -> bool| {
        move |i: usize| {
            let id = &i2[((i / 2) * 7919) % n];
            Req::Patch(
                format!("/Users/{id}"),
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": "replace", "value": {"active": on(i)}}]}),
            )
        }
    };
    // Each user is deactivated, then made active again by the next request for it.
    let o = run(
        &s.target,
        c,
        secs,
        None,
        active(ids.clone(), |i| i % 2 == 1),
    )
    .await;
    report(
        "PATCH /Users/{id} active false, then true",
        &o,
        rss_mib(pid),
    );
    // The two requests for a user run on different clients, either first: each user the
    // scenario touched is made active again, unmeasured, so that a kept directory stays as
    // it was loaded.
    let again = run(
        &s.target,
        c,
        3600,
        Some(o.count),
        active(ids.clone(), |_| true),
    )
    .await;
    ERRORS.fetch_add(again.errors, Ordering::Relaxed);
    let o = run(&s.target, c, secs, None, move |i| {
        Req::Post("/Users".into(), user(fresh + i))
    })
    .await;
    report(
        &format!("POST /Users ({} clients, at {} users)", c, n),
        &o,
        rss_mib(pid),
    );
    // Every 201 names its resource in `Location` (RFC 7644 §3.1).
    let unnamed = o.count - o.errors - o.created.len();
    if unnamed > 0 {
        eprintln!("scimd-bench: {unnamed} creates answered without a Location");
        ERRORS.fetch_add(unnamed, Ordering::Relaxed);
    }
    // The users just created are deleted again: a kept directory keeps its size run to run.
    let made = Arc::new(o.created);
    let count = made.len();
    let o = run(&s.target, c, 24 * 3600, Some(count), move |i| {
        Req::Delete(format!("/Users/{}", made[i]))
    })
    .await;
    report(
        &format!("DELETE /Users/{{id}} ({count} just created)"),
        &o,
        rss_mib(pid),
    );
    // Cold start: stop (SIGTERM), start again on the same data, time to READY and to the
    // first answered request.
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = s.child.wait();
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_scimd"));
    let (child, port, ready) = spawn_listening(
        &bin,
        &["serve".as_ref(), "--config".as_ref(), cfg.as_os_str()],
    );
    let t0 = Instant::now();
    let first = loop {
        let r = s
            .client
            .get(format!(
                "https://localhost:{port}/scim/v2/Users/{}",
                ids[n / 2]
            ))
            .bearer_auth(TOKEN)
            .send()
            .await;
        if r.is_ok_and(|r| r.status().is_success()) {
            break ready + t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no answer after restart"
        );
    };
    s.child = child;
    println!(
        "| {:<44} | {:>9} | {:>8.1} | {:>8} | {:>6} | {:>7.1} | {:>7} |",
        format!("cold start at {n} users: ms to READY"),
        "",
        ready.as_secs_f64() * 1000.0,
        "",
        "",
        rss_mib(s.child.id()),
        ""
    );
    println!(
        "| {:<44} | {:>9} | {:>8.1} | {:>8} | {:>6} | {:>7} | {:>7} |",
        "  ms to the first GET answered",
        "",
        first.as_secs_f64() * 1000.0,
        "",
        "",
        "",
        ""
    );
}
