//! A failing disk under the real server: every write answers 503 with a SCIM error (never a
//! hang, never a panic), `/healthz` says so, the process stays up, and once the disk is back
//! the database is reopened with every acknowledged write and none of the failed ones.

use std::time::Duration;

use reqwest::Method;
use scimd::auth::{digest, hex};
use scimd::store::Fault;
use serde_json::json;

use crate::harness::{ACME, Res, Srv, assert_error, total};

/// Any request must be answered within this long, fault or not.
const ANSWER_WITHIN: Duration = Duration::from_secs(15);

async fn within<F: std::future::Future<Output = Res>>(what: &str, f: F) -> Res {
    tokio::time::timeout(ANSWER_WITHIN, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {ANSWER_WITHIN:?}"))
}

async fn health(s: &Srv) -> Res {
    let url = format!("{}/healthz", s.url);
    within("healthz", s.call(Method::GET, &url, None, None)).await
}

fn new_user(name: &str) -> serde_json::Value {
    json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "active": true})
}

async fn survives(fault: Fault) {
    let s = Srv::start().await;
    let mut kept = Vec::new();
    for i in 0..5 {
        kept.push((
            format!("kept{i}@x.example"),
            s.user(&format!("kept{i}@x.example")).await,
        ));
    }
    let group = s.group("staff", &[&kept[0].1]).await;

    s.faults.set(Some(fault));
    let r = within("create", s.post("/Users", new_user("lost@x.example"))).await;
    assert_error(&r, 503, None);
    let r = within(
        "patch",
        s.patch(
            &format!("/Groups/{group}"),
            json!([{"op": "add", "path": "members", "value": [{"value": kept[1].1}]}]),
        ),
    )
    .await;
    assert_error(&r, 503, None);
    let r = within("delete", s.delete(&format!("/Users/{}", kept[2].1))).await;
    assert_error(&r, 503, None);
    let h = health(&s).await;
    assert_eq!(h.status, 503, "{fault:?}: {}", h.body);
    // A full disk refuses writes before they reach the database, which may be open again
    // for reads already (when it needed no repair); the other faults leave it unreadable.
    let database = h.body["database"].as_str().unwrap_or_default();
    let reopened = fault == Fault::DiskFull && database.starts_with("disk full");
    assert!(
        reopened || database == "cannot be read",
        "{fault:?}: {database}"
    );
    // Reads are refused too while the file waits for repair, with a SCIM error, not a hang.
    let r = within("get", s.get(&format!("/Users/{}", kept[0].1))).await;
    if !reopened {
        assert_error(&r, 503, None);
    }
    // Still down a while later: recovery needs the disk back, not just time.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(health(&s).await.status, 503, "{fault:?}");

    s.faults.set(None);
    let mut healthy = false;
    for _ in 0..50 {
        if health(&s).await.status == 200 {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        healthy,
        "{fault:?}: /healthz never came back after the fault cleared"
    );

    for (name, id) in &kept {
        let r = s.get(&format!("/Users/{id}")).await;
        assert_eq!(
            r.status, 200,
            "{fault:?}: acknowledged {name} lost: {}",
            r.body
        );
        assert_eq!(r.body["userName"], name.as_str());
    }
    let r = s
        .get("/Users?filter=userName%20eq%20%22lost@x.example%22")
        .await;
    assert_eq!(total(&r), 0, "{fault:?}: a create answered 503 was kept");
    let r = s.get(&format!("/Groups/{group}")).await;
    assert_eq!(
        r.body["members"].as_array().map(Vec::len),
        Some(1),
        "{fault:?}: {}",
        r.body
    );
    assert_eq!(s.get("/Users").await.body["totalResults"], 5);

    // Writes work again.
    let r = s.post("/Users", new_user("after@x.example")).await;
    assert_eq!(r.status, 201, "{fault:?}: {}", r.body);
    let r = s
        .call(
            Method::GET,
            "/Users?filter=userName%20eq%20%22after@x.example%22",
            Some(ACME),
            None,
        )
        .await;
    assert_eq!(total(&r), 1);
    s.stop().await;
}

#[tokio::test]
async fn failed_writes_answer_503_and_recover() {
    survives(Fault::WriteFails).await;
}

#[tokio::test]
async fn failed_fsync_answers_503_and_recovers() {
    survives(Fault::SyncFails).await;
}

#[tokio::test]
async fn full_disk_answers_503_and_recovers() {
    survives(Fault::DiskFull).await;
}

/// A panic (here injected where a bug would be: the store's read and write entry points) costs
/// its own request a 500 with an error id and no internals, and nothing else: the process
/// and the writer go on, nothing of the panicking write is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_costs_its_request_a_500_and_nothing_else() {
    let s = Srv::start().await;
    let alice = s.user("alice@x.example").await;
    let group = s.group("staff", &[&alice]).await;
    s.faults.set(Some(Fault::Panics));
    let bob_body = new_user("bob@x.example");
    let answers = [
        within("get", s.get(&format!("/Users/{alice}"))).await,
        // A scan: read on the blocking pool rather than in the request's task.
        within("scan", s.get("/Users?filter=title%20pr")).await,
        // A group with its members: streamed from the blocking pool.
        within("group", s.get(&format!("/Groups/{group}"))).await,
        within("create", s.post("/Users", bob_body)).await,
        within(
            "patch",
            s.patch(
                &format!("/Groups/{group}"),
                json!([{"op": "remove", "path": "members"}]),
            ),
        )
        .await,
    ];
    let mut ids = std::collections::HashSet::new();
    for r in &answers {
        assert_error(r, 500, None);
        let detail = r.body["detail"].as_str().unwrap_or_default();
        let id = detail
            .strip_prefix("internal error (id ")
            .and_then(|d| d.strip_suffix(" in the server log)"))
            .unwrap_or_else(|| panic!("no error id in {detail:?}"));
        assert_eq!(id.len(), 32, "{detail}");
        assert!(ids.insert(id.to_string()), "each panic has its own id");
        // The answer still leads to its log line.
        let request_id = r.headers.get("x-request-id").map(|v| v.len());
        assert_eq!(request_id, Some(16), "{:?}", r.headers);
        assert!(
            !r.body.to_string().contains("injected"),
            "internals leaked: {}",
            r.body
        );
    }
    s.faults.set(None);
    // Still up, nothing of the panicking writes kept, and writes work.
    let r = s.get(&format!("/Groups/{group}")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["members"][0]["value"], alice.as_str(), "{}", r.body);
    let r = s
        .call(
            Method::GET,
            "/Users?filter=userName%20eq%20%22bob@x.example%22",
            Some(ACME),
            None,
        )
        .await;
    assert_eq!(total(&r), 0, "a create that panicked was kept");
    let r = s.post("/Users", new_user("bob@x.example")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    s.stop().await;
}

/// A disk that fills up under writes: the write that finds no room is refused and kept out,
/// and later writes are refused before they reach the database, which stays open, so reads
/// go on answering (before, each refused write closed it to reads until it was reopened).
/// Once space is freed, writes go through again without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_keeps_serving_reads() {
    let s = Srv::start().await;
    let kept = s.user("kept@x.example").await;
    s.faults.set(Some(Fault::NoRoomToGrow));
    let filler = "x".repeat(16 * 1024);
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..4000 {
        let mut u = new_user(&format!("fill{i}@x.example"));
        u["title"] = filler.clone().into();
        let r = within("create", s.post("/Users", u)).await;
        match r.status {
            201 => acknowledged.push(r.body["id"].as_str().unwrap().to_string()),
            _ => {
                refused = Some(r);
                break;
            }
        }
    }
    let refused = refused.expect("the file never needed to grow");
    assert_error(&refused, 503, None);
    // The write that found no room is told why, as are those after it.
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("the disk holding the database is full"),
        "{}",
        refused.body
    );
    // Opened again for reads without waiting for a request: after a quiet spell the first
    // read, and a monitor's first probe, find it open (both found it closed, however late
    // they came, when only a request reopened it). Half a second after the failure, and
    // a repair: a few seconds leave room for a loaded machine.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let h = health(&s).await;
    // Both say how much room the writes wait for, and that is more than is free.
    let database = h.body["database"].as_str().unwrap_or_default();
    let mib = |text: &str, before: &str| -> f64 {
        let head = &text[..text.find(before).expect(before)];
        head.rsplit(' ')
            .next()
            .unwrap()
            .trim_start_matches('(')
            .parse()
            .unwrap()
    };
    assert!(database.starts_with("disk full"), "{}", h.body);
    let (free, needed) = (
        mib(database, " MiB free"),
        mib(database, " MiB are free; reads served"),
    );
    assert!(needed >= free + 3.9, "{database}");
    let detail = refused.body["detail"].as_str().unwrap();
    assert!(detail.contains("MiB are free on it"), "{detail}");
    assert_eq!(s.get(&format!("/Users/{kept}")).await.status, 200);
    // The next writes are refused for the full disk, saying so, and the database is open:
    // reads answer between them.
    let mut read_ok = false;
    for i in 0..20 {
        let r = within(
            "create",
            s.post("/Users", new_user(&format!("more{i}@x.example"))),
        )
        .await;
        assert_error(&r, 503, None);
        let r = within("get", s.get(&format!("/Users/{kept}"))).await;
        if r.status == 200 {
            let w = s.post("/Users", new_user("late@x.example")).await;
            assert_error(&w, 503, None);
            assert!(
                w.body["detail"]
                    .as_str()
                    .unwrap()
                    .contains("the disk holding the database is full"),
                "{}",
                w.body
            );
            // The refused write is told before the writer closes the database for its
            // reopening: a read in between may still have found it open. Reads count as
            // back once one answers after a write refused at the gate.
            if s.get(&format!("/Users/{kept}")).await.status == 200 {
                read_ok = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(read_ok, "reads never came back while the disk was full");
    // Idle, the gate stays closed and reads keep answering: the writer's idle checkpoint,
    // a commit that fits in the file's free pages, proves nothing about the disk (it used
    // to reopen the gate, and the next write's failure closed the database to reads).
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for i in 0..5 {
        let w = s
            .post("/Users", new_user(&format!("idle{i}@x.example")))
            .await;
        assert_error(&w, 503, None);
        assert_eq!(s.get(&format!("/Users/{kept}")).await.status, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let h = health(&s).await;
    assert_eq!(h.status, 503, "{}", h.body);
    assert!(
        h.body["database"]
            .as_str()
            .unwrap()
            .starts_with("disk full"),
        "{}",
        h.body
    );
    // Space freed: writes go through again, and every acknowledged write is there.
    s.faults.set(None);
    let r = s.post("/Users", new_user("after@x.example")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(health(&s).await.status, 200);
    for id in &acknowledged {
        assert_eq!(
            s.get(&format!("/Users/{id}")).await.status,
            200,
            "{id} lost"
        );
    }
    assert_eq!(
        total(&s.get("/Users?count=0").await),
        acknowledged.len() as u64 + 2
    );
    s.stop().await;
}

/// `n` users named `{prefix}{i}@x.example`, created one after the other, each with a title
/// of 2,000 characters: the file outgrows a 1 MiB cache however the writes were batched.
async fn users(s: &Srv, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let mut body = new_user(&format!("{prefix}{i}@x.example"));
        body["title"] = json!("t".repeat(2000));
        let r = s.post("/Users", body).await;
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(r.id());
    }
    ids
}

/// Damage found while the server runs (here every page read from the disk comes back
/// changed while `scimd verify` scrubs the file through the admin socket): the daemon says
/// what it found, refuses every write from then on with a SCIM error, and `/healthz` turns
/// 503 naming it, while reads go on. A restart on a sound file takes writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_found_while_serving_refuses_writes_and_keeps_reads() {
    // A cache smaller than the file, so that the scrub reads from the disk.
    let s = Srv::start_with(|c| {
        c.storage.cache_mb = 1;
        c.server.metrics_token_sha256 = Some(hex(&digest("metrics-token")));
    })
    .await;
    let (a, b, c, d) = tokio::join!(
        users(&s, "a", 300),
        users(&s, "b", 300),
        users(&s, "c", 300),
        users(&s, "d", 300)
    );
    let group = s.group("staff", &[&a[0], &b[0]]).await;
    let file = s.config.storage.db_path();
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(size > 2 << 20, "{size} bytes");
    // Past the writer's idle checkpoint (200 ms idle, then an fsync'd commit: seconds on a
    // loaded disk): nothing else reads the disk meanwhile.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // What is read below once the damage is found is read now, so that it comes from the
    // cache then: a page read while the fault is on is cached as it came, changed, and the
    // scrub stops at the first one.
    for id in [&a[299], &d[0]] {
        assert_eq!(s.get(&format!("/Users/{id}")).await.status, 200);
    }
    assert_eq!(s.get(&format!("/Groups/{group}")).await.status, 200);
    assert_eq!(total(&s.get("/Users?count=0").await), 1200);
    assert_eq!(health(&s).await.status, 200);
    let socket = scimd::admin::socket_path(&s.config);
    s.faults.set(Some(Fault::Garbled));
    let answer = scimd::admin::ask(&socket, &json!({"cmd": "verify"}))
        .await
        .expect("the daemon answers");
    s.faults.set(None);
    assert_eq!(answer["ok"], false, "{answer}");
    let said = answer["error"].as_str().unwrap_or_default();
    assert!(
        said.contains("the database file is damaged (found reading table")
            && said.contains("scimd restore --from FILE"),
        "{said}"
    );

    // So do the metrics.
    let (_, text) = s.metrics("metrics-token").await;
    assert!(
        text.contains("scimd_writes_refused{reason=\"damaged\"} 1\n"),
        "{text}"
    );
    // `scimd status` leads with it.
    let status = scimd::admin::ask(&socket, &json!({"cmd": "status"}))
        .await
        .expect("the daemon answers");
    let refused = status["writes_refused"].as_str().unwrap_or_default();
    assert!(
        refused.starts_with("the database file is damaged"),
        "{status}"
    );
    let h = health(&s).await;
    assert_eq!(h.status, 503, "{}", h.body);
    let database = h.body["database"].as_str().unwrap_or_default();
    assert!(
        database.starts_with("damaged: writes refused"),
        "{database}"
    );
    let r = within("create", s.post("/Users", new_user("late@x.example"))).await;
    assert_error(&r, 503, None);
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("the database file is damaged"), "{detail}");
    let r = within(
        "patch",
        s.patch(
            &format!("/Groups/{group}"),
            json!([{"op": "add", "path": "members", "value": [{"value": c[0]}]}]),
        ),
    )
    .await;
    assert_error(&r, 503, None);
    // Reads go on: the IdP's and the application's.
    for id in [&a[299], &d[0]] {
        let r = within("get", s.get(&format!("/Users/{id}"))).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = within("get", s.get(&format!("/Groups/{group}"))).await;
    assert_eq!(
        r.body["members"].as_array().map(Vec::len),
        Some(2),
        "{}",
        r.body
    );
    assert_eq!(total(&s.get("/Users?count=0").await), 1200);

    // The file was sound all along (only its reads were changed): a restart, as after a
    // restore, finds nothing and takes writes again.
    let cfg = s.config.clone();
    let dir = s.stop().await;
    let s = Srv::start_config(dir, cfg).await;
    assert_eq!(health(&s).await.status, 200);
    let status = scimd::admin::ask(&socket, &json!({"cmd": "status"})).await;
    assert_eq!(
        status.map(|a| a["writes_refused"].clone()),
        Some(json!(null))
    );
    let r = s.post("/Users", new_user("late@x.example")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    s.stop().await;
}

/// Another database copied over the open file in place (`cp` keeps the inode, so the name
/// still leads to the file scimd opened): the header is not the one scimd last wrote, so
/// writes are refused before any commit mixes the two files, and stay refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_put_over_the_open_database_file_refuses_writes() {
    let s = Srv::start().await;
    s.user("first@x.example").await;
    let db = s.config.storage.db_path();
    let earlier = std::fs::read(&db).unwrap();
    s.user("second@x.example").await;
    let inode = |p: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).unwrap().ino()
    };
    let before = inode(&db);
    std::fs::write(&db, &earlier).unwrap();
    assert_eq!(inode(&db), before, "written in place, as cp does");
    for name in ["lost@x.example", "lost2@x.example"] {
        let r = within("create", s.post("/Users", new_user(name))).await;
        assert_error(&r, 503, None);
        let detail = r.body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("was removed or replaced while scimd ran"),
            "{detail}"
        );
    }
    let h = health(&s).await;
    assert_eq!(h.status, 503, "{}", h.body);
    assert!(
        h.body["database"]
            .as_str()
            .unwrap_or_default()
            .starts_with("file removed or replaced"),
        "{}",
        h.body
    );
    s.stop().await;
}

/// The database file moved away while the server runs (an admin's slip, a clean-up script):
/// writes answer 503 saying so and nothing of them is written, `/healthz` says why, reads go
/// on from the open file, and the file put back lets writes through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_file_moved_away_refuses_writes_until_it_is_back() {
    let s = Srv::start().await;
    let kept = s.user("kept@x.example").await;
    let db = s.config.storage.db_path();
    let aside = s.dir.path().join("aside.redb");
    std::fs::rename(&db, &aside).unwrap();
    let r = within("create", s.post("/Users", new_user("lost@x.example"))).await;
    assert_error(&r, 503, None);
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("was removed or replaced while scimd ran")
            && detail.contains("retry the request then"),
        "{detail}"
    );
    let h = health(&s).await;
    assert_eq!(h.status, 503, "{}", h.body);
    let said = h.body["database"].as_str().unwrap_or_default();
    assert!(said.starts_with("file removed or replaced"), "{}", h.body);
    assert_eq!(s.get(&format!("/Users/{kept}")).await.status, 200);
    assert!(!db.exists(), "nothing made at the name");
    std::fs::rename(&aside, &db).unwrap();
    assert_eq!(health(&s).await.status, 200);
    let r = within("create", s.post("/Users", new_user("back@x.example"))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s
        .get("/Users?filter=userName%20eq%20%22lost@x.example%22")
        .await;
    assert_eq!(total(&r), 0, "the refused create was not written");
    s.stop().await;
}
