//! The writer: concurrent requests are batched into shared commits, each answered with its
//! own result, and every acknowledged write survives a restart.

use std::collections::HashSet;

use serde_json::json;

use crate::harness::{Srv, test_config, total};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_each_get_their_own_answer_and_survive_restart() {
    let s = Srv::start().await;
    let mut tasks = Vec::new();
    // 40 distinct users, and 10 requests that collide pairwise on a userName.
    for i in 0..60 {
        let name = if i < 40 {
            format!("c{i}@x")
        } else {
            format!("dup{}@x", i % 10)
        };
        let client = s.client.clone();
        let url = format!("{}/Users", s.base());
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(crate::harness::ACME)
                .header("Content-Type", "application/scim+json")
                .body(json!({"userName": name}).to_string())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap();
            (name, status, body)
        }));
    }
    let mut created = HashSet::new();
    let mut conflicts = 0;
    for t in tasks {
        let (name, status, body) = t.await.unwrap();
        match status {
            201 => {
                assert_eq!(body["userName"], name.as_str());
                assert!(created.insert(body["id"].as_str().unwrap().to_string()));
            }
            409 => {
                assert!(name.starts_with("dup"), "{name}");
                assert_eq!(body["scimType"], "uniqueness");
                conflicts += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(
        created.len(),
        50,
        "40 distinct + one winner per duplicated name"
    );
    assert_eq!(conflicts, 10);
    let dir = s.stop().await;
    let cfg = test_config(dir.path());
    let s = Srv::start_config(dir, cfg).await;
    assert_eq!(total(&s.get("/Users").await), 50);
    for id in &created {
        assert_eq!(s.get(&format!("/Users/{id}")).await.status, 200);
    }
}
