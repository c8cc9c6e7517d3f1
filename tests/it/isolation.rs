//! Tenant isolation: tenant acme's token against every endpoint and method, aimed at tenant
//! globex's resources and URLs. The answer is always an error (or acme's own, empty, data),
//! never anything of globex, and globex's directory is untouched.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{ACME, GLOBEX, Res, Srv};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

fn body_for(method: &str, ub: &str) -> Option<Value> {
    match method {
        // No `schemas`, so that one body suits a User, a Group and a search alike.
        "POST" | "PUT" => Some(json!({
            "userName": "intruder@x", "displayName": "Intruder", "members": [{"value": ub}],
            "filter": "userName eq \"secret@globex\""})),
        "PATCH" => Some(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "title", "value": "owned"},
                {"op": "add", "path": "members", "value": [{"value": ub}]}]}),
        ),
        _ => None,
    }
}

async fn globex_state(s: &Srv) -> Value {
    let get = |p: &'static str| s.call(Method::GET, p, Some(GLOBEX), None);
    json!({"users": get("/Users").await.body["Resources"], "groups": get("/Groups").await.body["Resources"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_never_sees_or_touches_globex() {
    let s = Srv::start_with(|c| {
        // globex has a plan, so its plan endpoints exist.
        let t = c.tenants.get_mut("globex").unwrap();
        t.plan = Some(scimd::config::PlanConfig {
            name: "Pro".into(),
            test_threshold: 0,
            seats: None,
            on_seat_limit: Default::default(),
            existing_members: vec![],
        });
    })
    .await;
    let srv = &s;
    let call = |m: &str, path: String, token: &'static str, body: Option<Value>| {
        let m = Method::from_bytes(m.as_bytes()).unwrap();
        async move { srv.call(m, &path, Some(token), body).await }
    };
    let ub = call(
        "POST",
        "/Users".into(),
        GLOBEX,
        Some(json!({"userName": "secret@globex", "emails": [{"value": "secret@globex"}], "externalId": "gx-1"})),
    )
    .await
    .id();
    let gb = call(
        "POST",
        "/Groups".into(),
        GLOBEX,
        Some(json!({"displayName": "GlobexOnly", "members": [{"value": ub}]})),
    )
    .await
    .id();
    // acme has its own user and group, so "acme's own data" is not trivially empty.
    let ua = s.user("mine@acme").await;
    let ga = s.group("AcmeGroup", &[&ua]).await;
    let before = globex_state(&s).await;
    let secrets = [
        ub.as_str(),
        gb.as_str(),
        "secret@globex",
        "GlobexOnly",
        "gx-1",
    ];

    let mut paths: Vec<String> = Vec::new();
    for prefix in [
        "/scim/v2",
        "/tenants/globex/scim/v2",
        "/tenants/acme/scim/v2",
    ] {
        for p in [
            format!("/Users/{ub}"),
            format!("/Groups/{gb}"),
            format!("/Groups/{ga}"),
            format!("/Users/{ua}"),
            "/Users".into(),
            "/Groups".into(),
            "/Users/.search".into(),
            "/Groups/.search".into(),
            "/.search".into(),
            "/Users?filter=userName%20eq%20%22secret@globex%22".into(),
            format!("/Users?filter=id%20eq%20%22{ub}%22"),
            "/Users?filter=externalId%20eq%20%22gx-1%22".into(),
            "/Users?filter=emails.value%20eq%20%22secret@globex%22".into(),
            "/Groups?filter=displayName%20eq%20%22GlobexOnly%22".into(),
            // Paths served by index walks and position counts, not by filtering.
            "/Users?sortBy=userName".into(),
            format!("/Users?filter=groups.value%20eq%20%22{gb}%22"),
            "/Users?sortBy=userName&sortOrder=descending".into(),
            "/Users?startIndex=2&count=5".into(),
            "/Groups?count=5&startIndex=2".into(),
            format!("/Groups?filter=members%5Bvalue%20eq%20%22{ub}%22%5D"),
            "/ServiceProviderConfig".into(),
            "/Schemas".into(),
            "/ResourceTypes".into(),
            "/Me".into(),
            "/Bulk".into(),
        ] {
            paths.push(format!("{prefix}{p}"));
        }
    }
    for p in [
        "/tenants/globex/events",
        "/tenants/globex/plan",
        "/tenants/globex/plan/members",
    ] {
        paths.push(p.into());
    }
    let mut checked = 0;
    let mut wrong = Vec::new();
    for path in &paths {
        for m in METHODS {
            let body = body_for(m, &ub);
            let r: Res = call(m, path.clone(), ACME, body.clone()).await;
            checked += 1;
            // Echoing what the client itself sent (an id in a 404) tells it nothing.
            let sent = format!("{path} {}", body.map(|b| b.to_string()).unwrap_or_default());
            let text = r.body.to_string();
            if let Some(secret) = secrets
                .iter()
                .find(|x| text.contains(*x) && !sent.contains(*x))
            {
                wrong.push(format!("{m} {path}: {} shows {secret}: {text}", r.status));
            }
            // 429: the per-address throttle on failed authentication has kicked in.
            let foreign = path.starts_with("/tenants/globex");
            if foreign && ![401, 404, 429].contains(&r.status) {
                wrong.push(format!("{m} {path}: {} for another tenant's URL", r.status));
            }
            let names_globex = path.ends_with(&ub) || path.ends_with(&gb);
            if names_globex && !foreign && ![404, 405].contains(&r.status) {
                wrong.push(format!("{m} {path}: {} for another tenant's id", r.status));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(checked >= 300, "{checked} requests");
    assert_eq!(globex_state(&s).await, before, "globex's directory changed");
    // And globex still sees exactly its own.
    let r = call("GET", format!("/Groups/{gb}"), GLOBEX, None).await;
    assert_eq!(r.body["members"][0]["value"], ub.as_str());
}
