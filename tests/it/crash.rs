//! Crash safety: SIGKILL a real scimd at arbitrary moments while it takes concurrent creates,
//! PATCHes and deletes; after each restart every acknowledged write is there, every
//! acknowledged delete is gone, and `scimd verify` finds the indexes consistent.
//! `CRASH_KILLS` sets the number of kills (default 8, kept short for CI).

use std::collections::HashSet;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use scimd::auth::{digest, hex};
use serde_json::{Value, json};

/// Kills the server when dropped, so a failed assertion does not leave it running.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(cfg: &std::path::Path, state: &std::path::Path) -> (Killed, u16, reqwest::Client) {
    use std::io::{BufRead, BufReader};
    let mut child = crate::process::scimd_bin()
        .args(["serve", "--config"])
        .arg(cfg)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split(" listening on ").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("scimd starts");
    let port = addr.rsplit(':').next().unwrap().parse().unwrap();
    let pem = std::fs::read(state.join("tls/cert.pem")).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    (Killed(child), port, client)
}

#[derive(Default)]
struct Acked {
    created: HashSet<String>,
    deleted: HashSet<String>,
    /// Deletes sent whether or not their answer arrived: a kill may come after the commit
    /// and before the answer, so such a user may be present or not.
    delete_sent: HashSet<String>,
    /// id → the title its last acknowledged PATCH set.
    titled: std::collections::HashMap<String, String>,
    /// Users that got a PATCH answered 400: its valid first operation must not be kept.
    refused: HashSet<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_no_acknowledged_write() {
    let kills: usize = std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cfg = dir.path().join("scimd.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[tls]\nself_signed = true\n[storage]\ndir = \"{}\"\n[log]\nlevel = \"warn\"\n[tenants.acme]\ntokens = [{{ name = \"okta\", sha256 = \"{}\" }}]\n",
            state.display(),
            hex(&digest("tok"))
        ),
    )
    .unwrap();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..kills {
        let created_before = acked.lock().unwrap().created.len();
        let (mut child, port, client) = start(&cfg, &state);
        let base = format!("https://localhost:{port}/scim/v2");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..6 {
            let (client, base, acked, stop) =
                (client.clone(), base.clone(), acked.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let name = format!("r{round}w{w}i{i}@x");
                    let Ok(r) = client.post(format!("{base}/Users")).bearer_auth("tok").header("Content-Type", "application/scim+json")
                        .body(json!({"userName": name}).to_string()).send().await else { break };
                    if r.status() != 201 {
                        break;
                    }
                    let Ok(v) = r.json::<Value>().await else { break };
                    let id = v["id"].as_str().unwrap().to_string();
                    acked.lock().unwrap().created.insert(id.clone());
                    if i % 3 == 0 {
                        let title = format!("t{round}-{i}");
                        let Ok(r) = client.patch(format!("{base}/Users/{id}")).bearer_auth("tok").header("Content-Type", "application/scim+json")
                            .body(json!({"Operations": [{"op": "replace", "path": "title", "value": title}]}).to_string()).send().await else { break };
                        if r.status() == 200 {
                            acked.lock().unwrap().titled.insert(id.clone(), title);
                        }
                    }
                    if i % 7 == 1 {
                        // One good operation, then one with a value of the wrong type: the whole PATCH
                        // is refused, and its first half must never become durable.
                        let Ok(r) = client.patch(format!("{base}/Users/{id}")).bearer_auth("tok").header("Content-Type", "application/scim+json")
                            .body(json!({"Operations": [{"op": "replace", "path": "title", "value": "refused"},
                                {"op": "replace", "path": "active", "value": "maybe"}]}).to_string()).send().await else { break };
                        if r.status() == 400 {
                            acked.lock().unwrap().refused.insert(id.clone());
                        }
                    }
                    if i % 5 == 0 {
                        acked.lock().unwrap().delete_sent.insert(id.clone());
                        let Ok(r) = client.delete(format!("{base}/Users/{id}")).bearer_auth("tok").send().await else { break };
                        if r.status() == 204 {
                            acked.lock().unwrap().deleted.insert(id);
                        }
                    }
                }
            }));
        }
        // Killed a random while after this round's first acknowledged create: on a loaded
        // machine the first requests can take longer than the random while alone.
        let waited = std::time::Instant::now();
        while acked.lock().unwrap().created.len() <= created_before {
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "no create in round {round}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(40 + rand() % 300)).await;
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        let out = crate::process::scimd_bin()
            .args(["verify", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "verify after kill {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Then every acknowledged effect must be there.
    let (child, port, client) = start(&cfg, &state);
    let base = format!("https://localhost:{port}/scim/v2");
    let mut present: std::collections::HashMap<String, Value> = std::collections::HashMap::new();
    let mut cursor = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = client
            .get(format!("{base}/Users?count=1000&cursor={cursor}"))
            .bearer_auth("tok")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for u in v["Resources"].as_array().unwrap() {
            present.insert(u["id"].as_str().unwrap().to_string(), u.clone());
        }
        match v["nextCursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
        assert!(Instant::now() < deadline);
    }
    let acked = acked.lock().unwrap();
    assert!(
        acked.created.len() > kills,
        "the writers made progress ({} creates)",
        acked.created.len()
    );
    for id in &acked.created {
        if acked.deleted.contains(id) {
            assert!(
                !present.contains_key(id),
                "acknowledged delete of {id} undone"
            );
        } else if !acked.delete_sent.contains(id) {
            assert!(present.contains_key(id), "acknowledged create of {id} lost");
        }
    }
    for (id, title) in &acked.titled {
        if let Some(u) = present.get(id) {
            assert_eq!(
                u["title"].as_str(),
                Some(title.as_str()),
                "acknowledged PATCH of {id} lost"
            );
        }
    }
    for id in &acked.refused {
        if let Some(u) = present.get(id) {
            assert_ne!(u["title"], "refused", "refused PATCH of {id} was kept");
        }
    }
    assert!(!acked.refused.is_empty(), "the refused PATCH was exercised");
    eprintln!(
        "{kills} kills: {} creates, {} patches, {} deletes acknowledged, {} PATCHes refused; \
         all acknowledged effects present, no refused one",
        acked.created.len(),
        acked.titled.len(),
        acked.deleted.len(),
        acked.refused.len()
    );
    drop(child);
}
