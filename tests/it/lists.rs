//! Listing: pagination, sorting, projection, and `.search`.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::harness::{Srv, assert_error, total};

fn names(r: &crate::harness::Res) -> Vec<String> {
    r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userName"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn seed(s: &Srv, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(s.user(&format!("user{i:02}@x")).await);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_one_based_stable_and_disjoint() {
    let s = Srv::start().await;
    seed(&s, 7).await;
    let r = s.get("/Users?startIndex=1&count=2").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );
    assert_eq!(
        (
            total(&r),
            r.body["itemsPerPage"].as_u64(),
            r.body["startIndex"].as_u64()
        ),
        (7, Some(2), Some(1))
    );
    let mut all = Vec::new();
    for start in [1, 3, 5, 7] {
        let r = s.get(&format!("/Users?startIndex={start}&count=2")).await;
        all.extend(names(&r));
    }
    let expected: Vec<String> = (0..7).map(|i| format!("user{i:02}@x")).collect();
    assert_eq!(all, expected, "creation order, no overlap, nothing missing");
    let r = s.get("/Users?startIndex=0&count=-5").await;
    assert_eq!(
        (
            r.body["startIndex"].as_u64(),
            r.body["itemsPerPage"].as_u64(),
            total(&r)
        ),
        (Some(1), Some(0), 7)
    );
    let r = s.get("/Users?count=0").await;
    assert_eq!(r.body["Resources"], json!([]));
    assert_eq!(total(&r), 7);
    let r = s.get("/Users?startIndex=100").await;
    assert_eq!((total(&r), r.body["itemsPerPage"].as_u64()), (7, Some(0)));
    // An index past what a double holds exactly is echoed as 2^53, which every JSON client
    // reads as written; the page is empty either way.
    for big in ["9007199254740993", "99999999999999999999"] {
        let r = s.get(&format!("/Users?startIndex={big}")).await;
        assert_eq!(r.status, 200, "{big}");
        assert_eq!(r.body["startIndex"], json!(9007199254740992u64), "{big}");
        assert_eq!(r.body["Resources"], json!([]), "{big}");
        assert_eq!(total(&r), 7);
    }
    assert_error(&s.get("/Users?count=ten").await, 400, Some("invalidValue"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_is_capped_at_max_results() {
    let s = Srv::start_with(|c| c.server.max_results = 3).await;
    seed(&s, 5).await;
    let r = s.get("/Users?count=100").await;
    assert_eq!(r.body["itemsPerPage"], 3);
    assert_eq!(total(&r), 5);
    let r = s.get("/Users").await;
    assert_eq!(r.body["itemsPerPage"], 3, "the default page is maxResults");
    let spc = s.get("/ServiceProviderConfig").await;
    assert_eq!(spc.body["filter"]["maxResults"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorts_by_attribute_both_ways() {
    let s = Srv::start().await;
    for (u, family) in [("b@x", "Zed"), ("a@x", "Mid"), ("c@x", "alpha")] {
        let r = s
            .post(
                "/Users",
                json!({"userName": u, "name": {"familyName": family}}),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    s.post("/Users", json!({"userName": "d@x"})).await;
    let r = s.get("/Users?sortBy=userName").await;
    assert_eq!(names(&r), ["a@x", "b@x", "c@x", "d@x"]);
    let r = s.get("/Users?sortBy=userName&sortOrder=descending").await;
    assert_eq!(names(&r), ["d@x", "c@x", "b@x", "a@x"]);
    let r = s
        .get("/Users?sortBy=name.familyName&count=2&startIndex=2")
        .await;
    assert_eq!(
        names(&r),
        ["a@x", "b@x"],
        "alpha < Mid < Zed case-insensitively, missing last"
    );
    assert_eq!(total(&r), 4);
    // Ties keep creation order; missing values go last ascending and first descending
    // (RFC 7644 §3.4.2.3); every page is its slice of the whole sorted list (only the best
    // startIndex-1+count are kept).
    for (u, family) in [("e@x", "Mid"), ("f@x", "mid"), ("g@x", "Zed")] {
        s.post(
            "/Users",
            json!({"userName": u, "name": {"familyName": family}}),
        )
        .await;
    }
    s.post("/Users", json!({"userName": "h@x"})).await;
    for (order, want) in [
        (
            "ascending",
            ["c@x", "a@x", "e@x", "f@x", "b@x", "g@x", "d@x", "h@x"],
        ),
        (
            "descending",
            ["d@x", "h@x", "b@x", "g@x", "a@x", "e@x", "f@x", "c@x"],
        ),
    ] {
        let q = format!("/Users?sortBy=name.familyName&sortOrder={order}");
        assert_eq!(names(&s.get(&q).await), want, "{order}");
        // Sorting all users by userName walks the userName index; with a filter it sorts
        // the matches. Both give the same pages.
        for start in 1..=9 {
            let walk =
                format!("/Users?sortBy=userName&sortOrder={order}&startIndex={start}&count=2");
            let sorted = format!("{walk}&filter=userName%20pr");
            let (a, b) = (s.get(&walk).await, s.get(&sorted).await);
            assert_eq!(names(&a), names(&b), "{walk}");
            assert_eq!(total(&a), total(&b));
        }
        for count in 1..=3 {
            for start in 1..=9 {
                let r = s
                    .get(&format!("{q}&startIndex={start}&count={count}"))
                    .await;
                let page: Vec<&str> = want.iter().skip(start - 1).take(count).copied().collect();
                assert_eq!(names(&r), page, "{order} startIndex={start} count={count}");
                assert_eq!(total(&r), 8);
            }
        }
    }
    assert_error(
        &s.get("/Users?sortBy=shoeSize").await,
        400,
        Some("invalidValue"),
    );
    // At the root, an attribute only Users have sorts the Users; Groups follow unsorted.
    let g = s.group("Sorted group", &[]).await;
    let r = s
        .post(
            "/.search",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "sortBy": "userName", "sortOrder": "descending", "count": 3}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(names(&r), ["h@x", "g@x", "f@x"]);
    assert_eq!(total(&r), 9);
    let r = s
        .post(
            "/.search",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "sortBy": "userName", "startIndex": 9}),
        )
        .await;
    assert_eq!(r.body["Resources"][0]["id"], g.as_str());
    assert_error(
        &s.post(
            "/.search",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "sortBy": "shoeSize"}),
        )
        .await,
        400,
        Some("invalidValue"),
    );
    // With or without sortBy: a typo is told, not ignored.
    for q in [
        "/Users?sortBy=userName&sortOrder=sideways",
        "/Users?sortOrder=up",
    ] {
        assert_error(&s.get(q).await, 400, Some("invalidValue"));
    }
    let r = s.post("/Users/.search", json!({"sortOrder": "up"})).await;
    assert_error(&r, 400, Some("invalidValue"));
    assert_eq!(s.get("/Users?sortOrder=Descending").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attributes_and_excluded_attributes_in_lists_and_gets() {
    let s = Srv::start().await;
    let id = s.user("proj@x").await;
    let r = s.get("/Users?attributes=userName,emails.value").await;
    let u = &r.body["Resources"][0];
    assert_eq!(u["id"], id.as_str());
    assert_eq!(u["userName"], "proj@x");
    assert_eq!(u["emails"], json!([{"value": "proj@x"}]));
    assert!(
        u.get("name").is_none() && u.get("meta").is_none() && u.get("groups").is_none(),
        "{u}"
    );
    let r = s
        .get(&format!(
            "/Users/{id}?excludedAttributes=emails,name.givenName,id"
        ))
        .await;
    assert!(r.body.get("emails").is_none());
    assert_eq!(r.body["name"], json!({"familyName": "Family"}));
    assert_eq!(r.body["id"], id.as_str(), "id is always returned");
    let r = s.get(&format!("/Users/{id}?attributes=password")).await;
    assert!(r.body.get("password").is_none());
    // A value filter that cannot be read is 400, on a read, a list, and a write, which
    // then does not happen.
    let bad = "emails%5Btype%20eq%20%22home%22";
    for path in [
        format!("/Users/{id}?excludedAttributes={bad}"),
        format!("/Users?attributes={bad}"),
        "/Users?attributes=%5B".to_string(),
    ] {
        assert_error(&s.get(&path).await, 400, Some("invalidFilter"));
    }
    let r = s
        .post(
            &format!("/Users?attributes={bad}"),
            json!({"userName": "never@x"}),
        )
        .await;
    assert_error(&r, 400, Some("invalidFilter"));
    assert_eq!(
        total(&s.get("/Users?filter=userName eq \"never@x\"").await),
        0
    );
    // A readable one narrows as before.
    let r = s
        .get(&format!(
            "/Users/{id}?attributes=emails%5Bvalue%20eq%20%22proj@x%22%5D"
        ))
        .await;
    assert_eq!(r.body["emails"][0]["value"], "proj@x");
    assert!(r.body.get("name").is_none(), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_search_on_collections_and_root() {
    let s = Srv::start().await;
    seed(&s, 3).await;
    let g = s.group("Searchers", &[]).await;
    let req = |f: Value| {
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": f,
        "attributes": ["userName", "displayName"], "startIndex": 1, "count": 10})
    };
    let r = s
        .post("/Users/.search", req(json!("userName sw \"user0\"")))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(total(&r), 3);
    assert!(r.body["Resources"][0].get("emails").is_none());
    let r = s
        .post(
            "/Groups/.search",
            req(json!("displayName eq \"Searchers\"")),
        )
        .await;
    assert_eq!(r.body["Resources"][0]["id"], g.as_str());
    // At the root both types are searched.
    let r = s
        .post(
            "/.search",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"]}),
        )
        .await;
    assert_eq!(total(&r), 4);
    let r = s.post("/.search", json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "startIndex": 3, "count": 2})).await;
    assert_eq!(r.body["Resources"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["Resources"][1]["id"], g.as_str());
    let r = s.post("/.search", json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "displayName eq \"Searchers\""})).await;
    assert_eq!(total(&r), 1);
    let r = s
        .post("/Users/.search", json!({"schemas": ["urn:wrong"]}))
        .await;
    assert_error(&r, 400, Some("invalidSyntax"));
    assert_error(&s.get("/Users/.search").await, 405, None);
}

/// A query on the base URL itself searches every type (RFC 7644 §3.4.2): Okta links a
/// pushed group by name at `BASE?filter=displayName eq "…"`, and a miss is an empty list,
/// never a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_on_the_base_url_queries_every_type() {
    let s = Srv::start().await;
    seed(&s, 2).await;
    let g = s.group("Engineering", &[]).await;
    for base in ["", "/", "/tenants/acme/scim/v2"] {
        let r = s
            .get(&format!("{base}?filter=displayName+eq+%22Engineering%22"))
            .await;
        assert_eq!(r.status, 200, "{base}: {}", r.body);
        assert_eq!(total(&r), 1, "{base}");
        assert_eq!(r.body["Resources"][0]["id"], g.as_str());
        assert_eq!(r.body["Resources"][0]["meta"]["resourceType"], "Group");
    }
    let r = s.get("?filter=displayName+eq+%22Nobody%22").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(total(&r), 0);
    assert_eq!(
        r.body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:ListResponse"
    );
    assert_eq!(total(&s.get("").await), 3);
    assert_error(&s.post("", json!({})).await, 405, None);
    let r = s.call(reqwest::Method::GET, "", None, None).await;
    assert_error(&r, 401, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_paging_returns_each_resource_once_while_writes_happen() {
    let s = Srv::start().await;
    let initial = seed(&s, 25).await;
    let mut seen: Vec<String> = Vec::new();
    let mut cursor = String::new();
    let mut added = Vec::new();
    for round in 0.. {
        let r = s.get(&format!("/Users?count=10&cursor={cursor}")).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.get("startIndex").is_none());
        seen.extend(
            r.body["Resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["id"].as_str().unwrap().to_string()),
        );
        // Writes between pages: a new user, and a deletion of one already seen.
        added.push(s.user(&format!("late{round}@x")).await);
        if round == 0 {
            assert_eq!(
                s.delete(&format!("/Users/{}", initial[0])).await.status,
                204
            );
        }
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
        assert!(round < 20, "paging must end");
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no resource twice");
    for id in &initial {
        assert!(seen.contains(id), "{id} missing");
    }
    // Users created while paging come after the cursor and are returned too.
    assert!(added[..added.len() - 1].iter().all(|id| seen.contains(id)));
    let r = s.get("/Users?cursor=not-a-cursor").await;
    assert_error(&r, 400, Some("invalidCursor"));
    // A cursor says where its page starts: a startIndex beside it is refused, not ignored,
    // in a query and in a search.
    for r in [
        s.get("/Users?cursor=&startIndex=3").await,
        s.post("/Users/.search", json!({"cursor": "", "startIndex": 1}))
            .await,
    ] {
        assert_error(&r, 400, Some("invalidValue"));
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap()
                .contains("startIndex and cursor")
        );
    }
    // Sorted, cursors carry a mark: the walk is the sorted list, page by page.
    let sorted = s.get("/Users?sortBy=userName&sortOrder=descending").await;
    let walked = s
        .walk("/Users?sortBy=userName&sortOrder=descending&count=5")
        .await;
    assert_eq!(walked, sorted.body["Resources"].as_array().unwrap().clone());
    assert_eq!(walked.len() as u64, total(&sorted));
    let first = s.get("/Users?sortBy=userName&count=5&cursor=").await;
    let c = first.body["nextCursor"].as_str().unwrap();
    assert!(first.body.get("startIndex").is_none());
    for other in [
        format!("/Users?count=5&cursor={c}"),
        format!("/Users?sortBy=userName&sortOrder=descending&count=5&cursor={c}"),
    ] {
        assert_error(&s.get(&other).await, 400, Some("invalidCursor"));
    }
    let spc = s.get("/ServiceProviderConfig").await;
    assert_eq!(spc.body["pagination"]["cursor"], true);
    // Filtered cursor paging.
    let r = s
        .get("/Users?filter=userName%20sw%20%22user%22&count=20&cursor=")
        .await;
    assert_eq!(r.body["Resources"].as_array().unwrap().len(), 20);
    let next = r.body["nextCursor"].as_str().unwrap().to_string();
    let r = s
        .get(&format!(
            "/Users?filter=userName%20sw%20%22user%22&count=20&cursor={next}"
        ))
        .await;
    assert_eq!(
        r.body["Resources"].as_array().unwrap().len(),
        4,
        "24 users remain after one deletion"
    );
    assert!(r.body.get("nextCursor").is_none());
    // A cursor belongs to its list: on another type or with another filter it is refused,
    // not read as the end of a list.
    for other in [
        format!("/Groups?count=20&cursor={next}"),
        format!("/Users?count=20&cursor={next}"),
        format!("/Users?filter=userName%20sw%20%22use%22&count=20&cursor={next}"),
    ] {
        let r = s.get(&other).await;
        assert_error(&r, 400, Some("invalidCursor"));
        assert!(
            r.body["detail"].as_str().unwrap().contains("another list"),
            "{other}"
        );
    }
    // The same list of another tenant is another list too.
    let same = format!("/Users?filter=userName%20sw%20%22user%22&count=20&cursor={next}");
    let r = s
        .call(
            reqwest::Method::GET,
            &same,
            Some(crate::harness::GLOBEX),
            None,
        )
        .await;
    assert_error(&r, 400, Some("invalidCursor"));
    assert_eq!(s.get(&same).await.status, 200);
}

/// Walk `list` three at a time; after each page, `between` writes (told which page it was).
/// Returns the userNames in the order the walk met them.
async fn walk_with_writes(
    s: &Srv,
    list: &str,
    mut between: impl AsyncFnMut(&Srv, usize),
) -> Vec<String> {
    let (mut seen, mut cursor) = (Vec::new(), String::new());
    for round in 0.. {
        let r = s.get(&format!("{list}&count=3&cursor={cursor}")).await;
        assert_eq!(r.status, 200, "{list}: {}", r.body);
        seen.extend(names(&r));
        between(s, round).await;
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
        assert!(seen.len() < 100, "{list}: the walk must end");
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_and_root_cursor_walks_return_each_resource_once_while_writes_happen() {
    let s = Srv::start().await;
    seed(&s, 12).await;
    // After the first page, a user that sorts before the walk's mark (never returned, and
    // with a position cursor it would push a seen one into the next page) and one that sorts
    // after it (returned); after the second, a deletion of one already seen (with a position
    // cursor the next page would skip one).
    for (list, before, after) in [
        // Down the userName index.
        ("/Users?sortBy=userName", "user000@x", "user5@x"),
        // A filtered sort (every match is ranked), descending.
        (
            "/Users?filter=userName%20sw%20%22user%22&sortBy=userName&sortOrder=descending",
            "user99@x",
            "user000000@x",
        ),
        // Every familyName is the same: ties go by id, and new users sort last.
        ("/Users?sortBy=name.familyName", "", "late@x"),
    ] {
        let full = s.get(&format!("{list}&count=1000")).await;
        let mut want = names(&full);
        let seen = walk_with_writes(&s, list, async |s: &Srv, round| match round {
            0 => {
                if !before.is_empty() {
                    s.user(before).await;
                }
                s.user(after).await;
            }
            1 => {
                // The second in the order now: one the first page returned.
                let first = s.get(&format!("{list}&count=2")).await;
                let id = first.body["Resources"][1]["id"].as_str().unwrap();
                assert_eq!(s.delete(&format!("/Users/{id}")).await.status, 204);
            }
            _ => {}
        })
        .await;
        want.push(after.to_string());
        let descending = list.contains("descending");
        if !list.contains("familyName") {
            want.sort();
            if descending {
                want.reverse();
            }
        }
        assert_eq!(seen, want, "{list}");
    }
    // Across both types (Users, then Groups, each by id): a user deleted after it was seen,
    // and one created while the walk is still in Users, then a group created while it is in
    // Groups and a user created then (which comes too late).
    let s = Srv::start().await;
    let users = seed(&s, 4).await;
    for g in ["G0", "G1", "G2"] {
        s.group(g, &[]).await;
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for round in 0.. {
        let r = s
            .post("/.search", json!({"cursor": cursor, "count": 2}))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let page = r.body["Resources"].as_array().unwrap().clone();
        seen.extend(page.iter().map(|x| {
            x.get("userName")
                .or(x.get("displayName"))
                .and_then(Value::as_str)
                .unwrap()
                .to_string()
        }));
        if round == 0 {
            assert_eq!(s.delete(&format!("/Users/{}", users[0])).await.status, 204);
            s.user("user04@x").await;
        }
        if page.iter().any(|x| x.get("displayName").is_some()) && !seen.contains(&"late@x".into()) {
            s.group("G3", &[]).await;
            s.user("late@x").await;
            seen.push("late@x".into());
        }
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
        assert!(round < 10, "the walk must end");
    }
    let want = [
        "user00@x", "user01@x", "user02@x", "user03@x", "user04@x", "G0", "late@x", "G1", "G2",
        "G3",
    ];
    assert_eq!(seen, want);
    // Sorted across both types: each type in that order, by mark.
    let sorted = json!({"sortBy": "displayName", "sortOrder": "descending"});
    let all = s.post("/.search", sorted.clone()).await;
    let (mut walked, mut cursor) = (Vec::new(), String::new());
    loop {
        let mut req = sorted.clone();
        req["cursor"] = json!(cursor);
        req["count"] = json!(3);
        let r = s.post("/.search", req).await;
        assert_eq!(total(&r), 9);
        walked.extend(r.body["Resources"].as_array().unwrap().iter().cloned());
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
        assert!(walked.len() < 20, "the walk must end");
    }
    assert_eq!(&walked, all.body["Resources"].as_array().unwrap());
    assert_eq!(
        walked[5]["displayName"], "G3",
        "groups after users, descending"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_a_scanned_filter_are_the_right_slice_of_all_matches() {
    let s = Srv::start().await;
    let ids = seed(&s, 12).await;
    // Every third user gets a title: a filter no index serves.
    let titled: Vec<&String> = ids.iter().step_by(3).collect();
    for id in &titled {
        let r = s
            .patch(
                &format!("/Users/{id}"),
                json!([{"op": "replace", "path": "title", "value": "Chief"}]),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let q = "/Users?filter=title%20eq%20%22Chief%22";
    let r = s.get(&format!("{q}&startIndex=2&count=2")).await;
    assert_eq!(total(&r), 4);
    assert_eq!(r.body["itemsPerPage"], 2);
    assert_eq!(r.body["startIndex"], 2);
    let got: Vec<&str> = r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![titled[1].as_str(), titled[2].as_str()]);
    assert_eq!(
        total(&s.get(&format!("{q}&startIndex=4&count=10")).await),
        4
    );
    assert_eq!(
        s.get(&format!("{q}&startIndex=5&count=10")).await.body["Resources"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    // The same by cursor, three at a time.
    let r = s.get(&format!("{q}&count=3&cursor=")).await;
    assert_eq!(total(&r), 4);
    let next = r.body["nextCursor"].as_str().expect("more").to_string();
    let r = s.get(&format!("{q}&count=3&cursor={next}")).await;
    assert_eq!(r.body["Resources"][0]["id"], titled[3].as_str());
    assert!(r.body.get("nextCursor").is_none());
}

/// Past `PAGE_REFS` group references a page of users reads the rest of its users' groups as
/// it is written, a few users at a time (a page of users in hundreds of groups each took the
/// server to 700 MB): every listed user is still the one a GET gives, groups and version
/// included, however the page is asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_in_many_groups_are_listed_whole() {
    let s = Srv::start().await;
    let users = seed(&s, 120).await;
    // 120 users in 401 groups each: the budget runs out at the 50th user, and the rest take
    // two more reads.
    let per = scimd::store::PAGE_REFS / 50 + 1;
    let ids: Vec<&str> = users.iter().map(String::as_str).collect();
    for g in 0..per {
        s.group(&format!("g{g:03}"), &ids).await;
    }
    let mut one = std::collections::HashMap::new();
    for id in &users {
        let r = s.get(&format!("/Users/{id}")).await;
        assert_eq!(r.body["groups"].as_array().map(Vec::len), Some(per));
        one.insert(id.clone(), r.body);
    }
    let same = |listed: &[Value], narrowed: bool| {
        for u in listed {
            let got = &one[u["id"].as_str().unwrap()];
            if narrowed {
                assert!(u.get("groups").is_none(), "{u}");
                assert_eq!(u["meta"]["version"], got["meta"]["version"]);
            } else {
                assert_eq!(u, got);
            }
        }
    };
    for path in [
        "/Users?count=200",
        "/Users?count=120&filter=active%20eq%20true",
        "/Users?count=150&sortBy=userName",
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        // Written as read (no length known ahead), where a short page is sent whole.
        assert_eq!(r.header("content-length"), None, "{path}");
        assert_eq!(r.body["Resources"].as_array().map(Vec::len), Some(120));
        same(r.body["Resources"].as_array().unwrap(), false);
    }
    let r = s.get("/Users?count=40&filter=active%20eq%20true").await;
    assert!(r.header("content-length").is_some());
    assert_eq!(r.body["Resources"].as_array().map(Vec::len), Some(40));
    same(r.body["Resources"].as_array().unwrap(), false);
    let walked = s.walk("/Users?count=120").await;
    assert_eq!(walked.len(), 120);
    same(&walked, false);
    let r = s.get("/Users?count=200&excludedAttributes=groups").await;
    assert_eq!(r.body["Resources"].as_array().map(Vec::len), Some(120));
    same(r.body["Resources"].as_array().unwrap(), true);
    let r = s
        .post(
            "/.search",
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "filter": "userName sw \"user\"", "count": 130}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["Resources"].as_array().map(Vec::len), Some(120));
    same(r.body["Resources"].as_array().unwrap(), false);
}
