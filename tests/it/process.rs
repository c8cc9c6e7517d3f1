//! The real binary as a process: reload on SIGHUP, health, request logs, and SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scimd::auth::{digest, hex};

struct Proc {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
    client: reqwest::Client,
}

fn config_text(dir: &std::path::Path, tokens: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[tls]\nself_signed = true\n[storage]\ndir = \"{}\"\n[log]\nlevel = \"info\"\n[tenants.acme]\ntokens = [{tokens}]\n",
        dir.join("state").display()
    )
}

fn token_line(name: &str, token: &str) -> String {
    format!(
        "{{ name = \"{name}\", sha256 = \"{}\" }}",
        hex(&digest(token))
    )
}

fn kill(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

impl Proc {
    fn start(config: &std::path::Path) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_scimd"))
            .args(["serve", "--config"])
            .arg(config)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line
                    .strip_prefix("scimd ")
                    .and_then(|l| l.split(" listening on ").nth(1))
                {
                    let _ = tx.send(addr.trim().to_string());
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("scimd reports its address");
        let port = addr.rsplit(':').next().unwrap().parse().unwrap();
        let pem = std::fs::read(config.parent().unwrap().join("state/tls/cert.pem")).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .no_proxy()
            .build()
            .unwrap();
        Proc {
            child,
            port,
            log,
            client,
        }
    }

    async fn status(&self, path: &str, token: &str) -> u16 {
        self.client
            .get(format!("https://localhost:{}{path}", self.port))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Wait (bounded) until `path` answers `want` for `token`.
    async fn until(&self, path: &str, token: &str, want: u16) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.status(path, token).await == want {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_tokens_keeps_connections_and_refuses_broken_configs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("scimd.toml");
    std::fs::write(
        &cfg,
        config_text(dir.path(), &token_line("old", "old-token")),
    )
    .unwrap();
    let mut p = Proc::start(&cfg);
    assert_eq!(p.status("/scim/v2/Users", "old-token").await, 200);
    let health = p
        .client
        .get(format!("https://localhost:{}/healthz", p.port))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let h: serde_json::Value = health.json().await.unwrap();
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));

    // New token list: the new token works, the old one is refused, on the same connection pool.
    std::fs::write(
        &cfg,
        config_text(dir.path(), &token_line("new", "new-token")),
    )
    .unwrap();
    kill(p.child.id(), "-HUP");
    assert!(
        p.until("/scim/v2/Users", "new-token", 200).await,
        "new token accepted after SIGHUP"
    );
    assert_eq!(p.status("/scim/v2/Users", "old-token").await, 401);

    // A broken file is refused and the previous configuration stays.
    std::fs::write(&cfg, "[server\nlisten = ").unwrap();
    kill(p.child.id(), "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.log().contains("reload refused") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(p.log().contains("reload refused"), "{}", p.log());
    assert_eq!(p.status("/scim/v2/Users", "new-token").await, 200);

    // One log line per request, with the token's name and never the token.
    let log = p.log();
    assert!(
        log.contains("path=\"/Users\"") || log.contains("path=/Users"),
        "{log}"
    );
    assert!(log.contains("token=\"new\""), "{log}");
    // Every request, before and after both reloads, went over the one keep-alive connection.
    let peers: std::collections::HashSet<&str> = log
        .lines()
        .filter(|l| l.contains("scimd::request"))
        .filter_map(|l| l.split("peer=").nth(1)?.split(' ').next())
        .collect();
    assert_eq!(peers.len(), 1, "{peers:?}");
    for secret in ["new-token", "old-token"] {
        assert!(!log.contains(secret), "the log holds a token");
    }

    // SIGTERM: exit 0.
    kill(p.child.id(), "-TERM");
    let status = p.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_status_at_the_console_while_running_and_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("scimd.toml");
    let text = config_text(dir.path(), &token_line("okta", "tok"))
        + "[tenants.acme.plan]\nname = \"Business\"\ntest_threshold = 1\nexisting_members = [\"old@x\"]\n";
    std::fs::write(&cfg, text).unwrap();
    let mut p = Proc::start(&cfg);
    for u in ["a@x", "b@x"] {
        let r = p
            .client
            .post(format!("https://localhost:{}/scim/v2/Users", p.port))
            .bearer_auth("tok")
            .header("Content-Type", "application/scim+json")
            .body(format!("{{\"userName\":\"{u}\"}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_scimd"))
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let plan = run(&["plan", "acme"]);
    assert!(
        plan.contains("mode:        enforced")
            && plan.contains("paid:        2")
            && plan.contains("free:        1"),
        "{plan}"
    );
    let status = run(&["status"]);
    assert!(
        status.contains("tenant acme: 2 users, 0 groups"),
        "{status}"
    );
    kill(p.child.id(), "-TERM");
    assert!(p.child.wait().unwrap().success());
    // With the daemon stopped, the same command reads the database itself.
    let plan = run(&["plan", "acme"]);
    assert!(plan.contains("paid:        2"), "{plan}");
}

fn scimd_cmd(cfg: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_scimd"))
        .args(args)
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_during_writes_restore_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("scimd.toml");
    std::fs::write(&cfg, config_text(dir.path(), &token_line("okta", "tok"))).unwrap();
    let mut p = Proc::start(&cfg);
    let url = format!("https://localhost:{}/scim/v2/Users", p.port);
    let create = |client: reqwest::Client, url: String, name: String| async move {
        let r = client
            .post(url)
            .bearer_auth("tok")
            .header("Content-Type", "application/scim+json")
            .body(format!("{{\"userName\":\"{name}\"}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: serde_json::Value = r.json().await.unwrap();
        v["id"].as_str().unwrap().to_string()
    };
    let mut before = Vec::new();
    for i in 0..50 {
        before.push(create(p.client.clone(), url.clone(), format!("pre{i}@x")).await);
    }
    let g = p
        .client
        .post(format!("https://localhost:{}/scim/v2/Groups", p.port))
        .bearer_auth("tok")
        .header("Content-Type", "application/scim+json")
        .body(
            serde_json::json!({"displayName": "G", "members": [{"value": before[0]}]}).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(g.status(), 201);
    // Writes keep going while the backup is taken.
    let writer = {
        let (client, url) = (p.client.clone(), url.clone());
        tokio::spawn(async move {
            for i in 0..100 {
                create(client.clone(), url.clone(), format!("during{i}@x")).await;
            }
        })
    };
    let backup = dir.path().join("backup.redb");
    let out = scimd_cmd(&cfg, &["backup", "--to", backup.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    writer.await.unwrap();
    let out = scimd_cmd(&cfg, &["verify"]);
    assert!(
        out.status.success(),
        "live verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Restore refuses while the daemon runs.
    let out = scimd_cmd(&cfg, &["restore", "--from", backup.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop it first"));
    kill(p.child.id(), "-TERM");
    assert!(p.child.wait().unwrap().success());
    let out = scimd_cmd(&cfg, &["restore", "--from", backup.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = scimd_cmd(&cfg, &["verify"]);
    assert!(
        out.status.success(),
        "verify after restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = Proc::start(&cfg);
    for id in &before {
        assert_eq!(
            p.status(&format!("/scim/v2/Users/{id}"), "tok").await,
            200,
            "acknowledged before the backup"
        );
    }
    let g: serde_json::Value = p
        .client
        .get(format!(
            "https://localhost:{}/scim/v2/Groups?filter=displayName%20eq%20%22G%22",
            p.port
        ))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(g["Resources"][0]["members"][0]["value"], before[0].as_str());
    drop(p);
}

#[test]
fn verify_reports_a_broken_index() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("scimd.toml");
    std::fs::write(&cfg, config_text(dir.path(), &token_line("okta", "tok"))).unwrap();
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    // A database with one userName index entry pointing at no user.
    {
        let store =
            scimd::store::Store::open(&dir.path().join("state/scimd.redb"), 1 << 20).unwrap();
        drop(store);
    }
    // The writer thread lets go of the file once its queue closes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let db = loop {
        match redb::Database::create(dir.path().join("state/scimd.redb")) {
            Ok(db) => break db,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::yield_now();
            }
            Err(e) => panic!("database not released: {e}"),
        }
    };
    let w = db.begin_write().unwrap();
    {
        let def: redb::TableDefinition<(&str, &str), u128> =
            redb::TableDefinition::new("tenant_username_userid");
        w.open_table(def)
            .unwrap()
            .insert(("acme", "ghost@x"), 42u128)
            .unwrap();
    }
    w.commit().unwrap();
    drop(db);
    let out = scimd_cmd(&cfg, &["verify"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("userName index: stale") && err.contains("ghost@x"),
        "{err}"
    );
}
