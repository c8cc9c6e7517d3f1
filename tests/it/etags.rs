//! ETags: weak versions on every single-resource answer, If-None-Match and If-Match.

use reqwest::Method;
use serde_json::json;

use crate::harness::{ACME, Srv, assert_error};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_gives_304_and_if_match_guards_writes() {
    let s = Srv::start().await;
    let id = s.user("etag@x").await;
    let p = format!("/Users/{id}");
    let r = s.get(&p).await;
    let v1 = r.header("etag").unwrap().to_string();
    assert_eq!(r.body["meta"]["version"], v1.as_str());
    let r = s
        .call_with(Method::GET, &p, Some(ACME), None, &[("If-None-Match", &v1)])
        .await;
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some(v1.as_str()));
    // Over HTTP/2 as over HTTP/1.1, no `content-length: 0`: not the 200's length.
    let h2 = s
        .client
        .get(format!("{}{p}", s.base()))
        .bearer_auth(ACME)
        .header("If-None-Match", &v1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (h2.version(), h2.status().as_u16()),
        (reqwest::Version::HTTP_2, 304)
    );
    assert_eq!(h2.headers().get("content-length"), None);
    // HEAD too, with no Content-Length: a 304's may only give the length of the 200's
    // content (RFC 9110 §8.6), which HEAD does not build here.
    let r = s
        .call_with(
            Method::HEAD,
            &p,
            Some(ACME),
            None,
            &[("If-None-Match", &v1)],
        )
        .await;
    assert_eq!(r.status, 304);
    assert_eq!(r.header("content-length"), None);
    // A write with the current version works and changes the version.
    let r = s
        .call_with(
            Method::PATCH,
            &p,
            Some(ACME),
            Some(json!({"Operations": [{"op": "replace", "path": "nickName", "value": "n"}]})),
            &[("If-Match", &v1)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v2 = r.header("etag").unwrap().to_string();
    assert_ne!(v1, v2);
    let r = s
        .call_with(Method::GET, &p, Some(ACME), None, &[("If-None-Match", &v1)])
        .await;
    assert_eq!(r.status, 200, "a stale If-None-Match gets the resource");
    // On a read too, If-Match must name the current version (RFC 9110 §13.1.1).
    let g = s.group("etag-g", &[&id]).await;
    for path in [p.clone(), format!("/Groups/{g}")] {
        let now = s.get(&path).await.header("etag").unwrap().to_string();
        let r = s
            .call_with(
                Method::GET,
                &path,
                Some(ACME),
                None,
                &[("If-Match", "W/\"999\"")],
            )
            .await;
        assert_error(&r, 412, None);
        for ok in [now.as_str(), "*"] {
            let r = s
                .call_with(Method::GET, &path, Some(ACME), None, &[("If-Match", ok)])
                .await;
            assert_eq!(r.status, 200, "{path} {ok}");
        }
    }
    // Stale If-Match: 412 on PUT, PATCH and DELETE, and nothing changes.
    let put = json!({"userName": "etag@x", "nickName": "other"});
    assert_error(
        &s.call_with(
            Method::PUT,
            &p,
            Some(ACME),
            Some(put.clone()),
            &[("If-Match", &v1)],
        )
        .await,
        412,
        None,
    );
    assert_error(
        &s.call_with(
            Method::PATCH,
            &p,
            Some(ACME),
            Some(json!({"Operations": [{"op": "remove", "path": "nickName"}]})),
            &[("If-Match", &v1)],
        )
        .await,
        412,
        None,
    );
    assert_error(
        &s.call_with(Method::DELETE, &p, Some(ACME), None, &[("If-Match", &v1)])
            .await,
        412,
        None,
    );
    assert_eq!(s.get(&p).await.body["nickName"], "n");
    // If-None-Match on a write (RFC 9110 §13.1.2): `*` or the current version means "only
    // if it is not there / not this one", so the write is refused; a stale one passes. (The
    // current version is no longer v2: the user has joined a group since.)
    let current = s.get(&p).await.header("etag").unwrap().to_string();
    assert_ne!(current, v2);
    for (tag, status) in [("*", 412), (current.as_str(), 412)] {
        for m in [Method::PUT, Method::DELETE] {
            let r = s
                .call_with(
                    m.clone(),
                    &p,
                    Some(ACME),
                    (m == Method::PUT).then(|| put.clone()),
                    &[("If-None-Match", tag)],
                )
                .await;
            assert_error(&r, status, None);
        }
    }
    assert_eq!(s.get(&p).await.body["nickName"], "n");
    let r = s
        .call_with(
            Method::PATCH,
            &p,
            Some(ACME),
            Some(json!({"Operations": [{"op": "replace", "path": "title", "value": "t"}]})),
            &[("If-None-Match", &v1)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s
        .call_with(Method::PUT, &p, Some(ACME), Some(put), &[("If-Match", "*")])
        .await;
    assert_eq!(r.status, 200);
    let v3 = r.header("etag").unwrap().to_string();
    assert_eq!(
        s.call_with(Method::DELETE, &p, Some(ACME), None, &[("If-Match", &v3)])
            .await
            .status,
        204
    );
}

/// A user's `groups` are not stored with it, yet they are part of what a GET returns: joining,
/// leaving and a group's rename must give the user a new ETag (or a client caching by ETag
/// gets 304 for stale groups), and every way of reading the user must show the same one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_etag_moves_with_its_groups() {
    let s = Srv::start().await;
    let id = s.user("member@x").await;
    let p = format!("/Users/{id}");
    let alone = s.get(&p).await.header("etag").unwrap().to_string();
    assert_eq!(alone, "W/\"1\"");
    let g = s.group("Sales", &[&id]).await;
    let r = s.get(&p).await;
    let joined = r.header("etag").unwrap().to_string();
    assert_ne!(
        joined, alone,
        "joining a group is a change of the user's groups"
    );
    assert!(
        joined.starts_with("W/\"1."),
        "{joined}: the stored version stays 1"
    );
    assert_eq!(r.body["meta"]["version"], joined.as_str());
    assert_eq!(r.body["groups"][0]["value"], g.as_str());
    let inm = |tag: String| {
        let p = p.clone();
        let s = &s;
        async move {
            s.call_with(
                Method::GET,
                &p,
                Some(ACME),
                None,
                &[("If-None-Match", &tag)],
            )
            .await
        }
    };
    assert_eq!(
        inm(alone.clone()).await.status,
        200,
        "stale: the groups moved"
    );
    assert_eq!(inm(joined.clone()).await.status, 304);
    // The same version whichever way the user is read: with or without its groups shown,
    // in a list, and by a filter on the version itself.
    let r = s.get(&format!("{p}?excludedAttributes=groups")).await;
    assert_eq!(r.body["meta"]["version"], joined.as_str());
    assert_eq!(r.header("etag"), Some(joined.as_str()));
    assert!(r.body.get("groups").is_none(), "{}", r.body);
    let r = s.get(&format!("{p}?attributes=meta.version")).await;
    assert_eq!(r.body["meta"]["version"], joined.as_str());
    // Neither groups nor meta shown: the header still carries the whole tag.
    for q in ["attributes=userName", "excludedAttributes=groups,meta"] {
        let r = s.get(&format!("{p}?{q}")).await;
        assert_eq!(r.header("etag"), Some(joined.as_str()), "{q}");
    }
    for list in [
        "/Users?filter=userName%20eq%20%22member@x%22".to_string(),
        "/Users?filter=userName%20eq%20%22member@x%22&excludedAttributes=groups".to_string(),
        format!(
            "/Users?filter=meta.version%20eq%20%22{}%22",
            joined.replace('"', "%5C%22")
        ),
        format!(
            "/Users?filter=meta%5Bversion%20eq%20%22{}%22%5D",
            joined.replace('"', "%5C%22")
        ),
    ] {
        let r = s.get(&list).await;
        assert_eq!(r.body["totalResults"], 1, "{list}: {}", r.body);
        assert_eq!(
            r.body["Resources"][0]["meta"]["version"],
            joined.as_str(),
            "{list}"
        );
    }
    // A group's rename changes the user's `groups[].display`, so its version.
    let gp = format!("/Groups/{g}");
    let r = s
        .patch(
            &gp,
            json!([{"op": "replace", "path": "displayName", "value": "Sales EMEA"}]),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let renamed = s.get(&p).await.header("etag").unwrap().to_string();
    assert_ne!(renamed, joined);
    // A write's If-Match is judged against the same version.
    let nick = json!({"Operations": [{"op": "replace", "path": "nickName", "value": "n"}]});
    let r = s
        .call_with(
            Method::PATCH,
            &p,
            Some(ACME),
            Some(nick.clone()),
            &[("If-Match", &joined)],
        )
        .await;
    assert_error(&r, 412, None);
    assert!(
        r.body["detail"].as_str().unwrap().contains(&renamed),
        "{}",
        r.body
    );
    let r = s
        .call_with(
            Method::PATCH,
            &p,
            Some(ACME),
            Some(nick),
            &[("If-Match", &renamed)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let written = r.header("etag").unwrap().to_string();
    assert!(written.starts_with("W/\"2."), "{written}");
    assert_eq!(r.body["meta"]["version"], written.as_str());
    // Leaving the last group: the stored version alone again.
    let r = s
        .patch(
            &gp,
            json!([{"op": "remove", "path": format!("members[value eq \"{id}\"]")}]),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(s.get(&p).await.header("etag"), Some("W/\"2\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_writes_keep_the_version() {
    let s = Srv::start().await;
    let g = s.group("Stable", &[]).await;
    let p = format!("/Groups/{g}");
    let v1 = s.get(&p).await.body["meta"]["version"].clone();
    let r = s
        .patch(
            &p,
            json!([{"op": "replace", "value": {"id": g, "displayName": "Stable"}}]),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(s.get(&p).await.body["meta"]["version"], v1);
}

/// A user created without `active` reads as active: setting it to true changes nothing a
/// client can see, so neither the version nor lastModified moves (Okta's incremental import
/// would fetch the user again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setting_active_to_the_true_it_reads_as_is_no_change() {
    let s = Srv::start().await;
    let r = s.post("/Users", json!({"userName": "quiet@x"})).await;
    assert_eq!(r.status, 201);
    let (id, meta) = (r.id(), r.body["meta"].clone());
    let p = format!("/Users/{id}");
    for ops in [
        json!([{"op": "replace", "path": "active", "value": true}]),
        json!([{"op": "replace", "value": {"active": "True"}}]),
    ] {
        let r = s.patch(&p, ops).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["active"], true);
        assert_eq!(r.body["meta"]["version"], meta["version"]);
        assert_eq!(r.body["meta"]["lastModified"], meta["lastModified"]);
    }
    // A real change still moves it.
    let r = s
        .patch(
            &p,
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    assert_ne!(r.body["meta"]["version"], meta["version"]);
}

/// A group PATCH that asks for its members back under a current If-Match answers 200 with
/// the new version: the condition was the write's, judged before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_patch_asking_for_members_is_judged_once() {
    let s = Srv::start().await;
    let u = s.user("e@x").await;
    let g = s.group("Eng", &[&u]).await;
    let p = format!("/Groups/{g}?attributes=members.value");
    let v1 = s
        .get(&format!("/Groups/{g}"))
        .await
        .header("etag")
        .unwrap()
        .to_string();
    let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "Eng2"}]});
    let r = s
        .call_with(
            Method::PATCH,
            &p,
            Some(ACME),
            Some(body.clone()),
            &[("If-Match", &v1)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["members"], json!([{"value": u}]));
    assert_ne!(r.header("etag"), Some(v1.as_str()));
    // The same If-Match again is stale now: refused, and nothing more changes.
    let r = s
        .call_with(
            Method::PATCH,
            &p,
            Some(ACME),
            Some(body),
            &[("If-Match", &v1)],
        )
        .await;
    assert_eq!(r.status, 412, "{}", r.body);
}

/// A precondition that cannot be read names no version: it must refuse the write, never
/// vanish as if it had not been sent (a lost update). Every `If-Match` line counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_if_match_outside_ascii_refuses_and_every_line_counts() {
    let s = Srv::start().await;
    let id = s.user("odd-etag@x").await;
    let p = format!("/Users/{id}");
    let now = s.get(&p).await.header("etag").unwrap().to_string();
    let patch = json!({"Operations": [{"op": "replace", "path": "title", "value": "lost"}]});
    // Bytes outside ASCII, and the current tag with a no-break space beside it.
    let odd = ["W/\"é\"".to_string(), format!("{now}\u{a0}")];
    for tag in &odd {
        for m in [Method::PATCH, Method::PUT, Method::DELETE] {
            let body = match m {
                Method::PATCH => Some(patch.clone()),
                Method::PUT => Some(json!({"userName": "odd-etag@x", "title": "lost"})),
                _ => None,
            };
            let r = s
                .call_with(m.clone(), &p, Some(ACME), body, &[("If-Match", tag)])
                .await;
            assert_error(&r, 412, None);
        }
    }
    let r = s.get(&p).await;
    assert_eq!((r.status, &r.body["title"]), (200, &json!(null)));
    assert_eq!(r.header("etag"), Some(now.as_str()));
    // Two field lines are one list (RFC 9110 §5.3): the second naming the version passes.
    let r = s
        .call_with(
            Method::PATCH,
            &p,
            Some(ACME),
            Some(patch),
            &[("If-Match", "W/\"999\""), ("If-Match", &now)],
        )
        .await;
    assert_eq!((r.status, &r.body["title"]), (200, &json!("lost")));
    // `*` sent twice is still `*`: any version for If-Match, none for If-None-Match.
    let twice = [("If-Match", "*"), ("If-Match", "*")];
    let r = s.call_with(Method::GET, &p, Some(ACME), None, &twice).await;
    assert_eq!(r.status, 200);
    let twice = [("If-None-Match", "*"), ("If-None-Match", "*")];
    let body = json!({"userName": "odd-etag@x"});
    let r = s
        .call_with(Method::PUT, &p, Some(ACME), Some(body), &twice)
        .await;
    assert_error(&r, 412, None);
}

/// A group read as IdPs read it (`excludedAttributes=members`) is written from its stored
/// text: the same document, ETag and conditions as the decoded answer of a projection that
/// leaves out more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_without_its_members_answers_as_the_decoded_one() {
    let s = Srv::start().await;
    let (a, b) = (s.user("a@x").await, s.user("b@x").await);
    let r = s
        .post(
            "/Groups",
            json!({"displayName": "Ops \"1\" é", "externalId": "ext-1",
                "members": [{"value": a}, {"value": b}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let p = format!("/Groups/{}", r.id());
    let stored = s.get(&format!("{p}?excludedAttributes=members")).await;
    let decoded = s.get(&format!("{p}?excludedAttributes=members,id")).await;
    assert_eq!(stored.status, 200, "{}", stored.body);
    assert_eq!(stored.body, decoded.body);
    assert!(stored.body.get("members").is_none());
    assert_eq!(stored.body["displayName"], "Ops \"1\" é");
    let tag = stored.header("etag").unwrap().to_string();
    assert_eq!(decoded.header("etag"), Some(tag.as_str()));
    assert_eq!(stored.body["meta"]["version"], tag.as_str());
    for q in [
        "excludedAttributes=members",
        "excludedAttributes=members,id",
    ] {
        let path = format!("{p}?{q}");
        let get = |h: &'static str, v: String| {
            let (s, path) = (&s, &path);
            async move {
                s.call_with(Method::GET, path, Some(ACME), None, &[(h, &v)])
                    .await
            }
        };
        let r = get("If-None-Match", tag.clone()).await;
        assert_eq!(
            (r.status, r.header("etag")),
            (304, Some(tag.as_str())),
            "{q}"
        );
        assert_eq!(
            get("If-None-Match", "W/\"99\"".into()).await.status,
            200,
            "{q}"
        );
        let r = get("If-Match", "W/\"99\"".into()).await;
        assert_error(&r, 412, None);
    }
    let gone = s
        .get("/Groups/00000000-0000-0000-0000-000000000001?excludedAttributes=members")
        .await;
    assert_error(&gone, 404, None);
}
