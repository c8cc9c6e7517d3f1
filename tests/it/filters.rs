//! Filters over HTTP, as IdPs encode them.

use serde_json::json;

use crate::harness::{Srv, assert_error, display_names, strings, total, urlencode};

async fn ids(s: &Srv, query: &str) -> Vec<String> {
    let r = s.get(&format!("/Users?{query}")).await;
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    crate::harness::sorted(&r.body["Resources"], "userName")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rfc_operators_and_idp_encodings() {
    let s = Srv::start().await;
    let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    s.post("/Users", json!({"userName": "alice@example.com", "externalId": "Ext-1", "title": "Engineer",
        "name": {"familyName": "Smith"}, "emails": [{"value": "alice@example.com", "type": "work"}, {"value": "a@home.org", "type": "home"}],
        ent: {"employeeNumber": "100"}})).await;
    s.post(
        "/Users",
        json!({"userName": "bob@example.org", "externalId": "ext-2", "active": false,
        "name": {"familyName": "Jones"}, "emails": [{"value": "bob@example.org", "type": "work"}]}),
    )
    .await;
    s.post("/Users", json!({"userName": "carol&co (and) @example.com", "emails": [{"value": "c@x.io", "type": "other"}]})).await;
    // Another tenant's names share the prefixes: an index range must stop at the tenant.
    for name in ["bob@globex.example", "zed@globex.example"] {
        let r = s
            .call(
                reqwest::Method::POST,
                "/Users",
                Some(crate::harness::GLOBEX),
                Some(json!({"userName": name})),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let all = [
        "alice@example.com",
        "bob@example.org",
        "carol&co (and) @example.com",
    ];
    let ent_filter = format!("filter={ent}:employeeNumber eq \"100\"");
    let ent_schemas = format!("filter=schemas eq \"{ent}\"");
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("filter=userName+eq+%22ALICE%40example.com%22", vec![all[0]]),
        (
            "filter=userName%20eq%20%22alice@example.com%22&startIndex=1&count=100",
            vec![all[0]],
        ),
        (
            "filter=userName eq \"carol%26co (and) @example.com\"&",
            vec![all[2]],
        ),
        ("filter=externalId eq \"ext-1\"", vec![]),
        ("filter=externalId eq \"Ext-1\"", vec![all[0]]),
        ("filter=emails.value eq \"BOB@example.org\"", vec![all[1]]),
        (
            "filter=emails[type eq \"work\" and value co \"@example.com\"]",
            vec![all[0]],
        ),
        (
            "filter=emails[type eq \"work\"].value eq \"alice@example.com\"",
            vec![all[0]],
        ),
        (
            "filter=userName ne \"alice@example.com\"",
            vec![all[1], all[2]],
        ),
        ("filter=userName co \"example\"", all.to_vec()),
        ("filter=userName sw \"Bo\"", vec![all[1]]),
        ("filter=userName sw \"BOB@EXAMPLE.\"", vec![all[1]]),
        ("filter=userName sw \"\"", all.to_vec()),
        ("filter=userName sw \"z\"", vec![]),
        ("filter=userName sw \"alice\" and active eq false", vec![]),
        // A range term and a point term: the point lookup is planned first, the range term
        // still filters.
        (
            "filter=userName sw \"a\" and externalId eq \"Ext-1\"",
            vec![all[0]],
        ),
        (
            "filter=userName sw \"b\" and externalId eq \"Ext-1\"",
            vec![],
        ),
        (
            "filter=userName sw \"\" and emails[value eq \"c@x.io\"]",
            vec![all[2]],
        ),
        ("filter=userName ew \".org\"", vec![all[1]]),
        ("filter=title pr", vec![all[0]]),
        ("filter=name.familyName gt \"K\"", vec![all[0]]),
        ("filter=name.familyName le \"Jones\"", vec![all[1]]),
        ("filter=active eq false", vec![all[1]]),
        (
            "filter=not (active eq false) and name.familyName pr",
            vec![all[0]],
        ),
        (
            "filter=(userName sw \"a\" or userName sw \"c\") and not (title pr)",
            vec![all[2]],
        ),
        (&ent_filter, vec![all[0]]),
        (
            "filter=urn:ietf:params:scim:schemas:core:2.0:User:userName eq \"bob@example.org\"",
            vec![all[1]],
        ),
        (
            "filter=meta.lastModified gt \"2015-10-10T14:38:21.8617979-07:00\"",
            all.to_vec(),
        ),
        ("filter=meta.created lt \"2015-10-10T14:38:21Z\"", vec![]),
        ("filter=USERNAME EQ \"bob@example.org\"", vec![all[1]]),
        ("filter=id pr and not (title pr)", vec![all[1], all[2]]),
        // RFC 7644 §3.4.2.2, Figure 2: by schema, as the answers show `schemas`.
        (&ent_schemas, vec![all[0]]),
        (
            "filter=schemas eq \"urn:ietf:params:scim:schemas:core:2.0:User\"",
            all.to_vec(),
        ),
        // Surrogate pairs, as JSON encoders escaping all non-ASCII write them.
        ("filter=title eq \"\\ud83d\\ude00\"", vec![]),
    ];
    for (q, want) in cases {
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(ids(&s, q).await, want, "{q}");
    }
    // Scans read only what the filter and the sort name; the page still comes back whole.
    let r = s
        .get("/Users?filter=userName co \"example\"&sortBy=meta.created&sortOrder=descending")
        .await;
    let names: Vec<&str> = r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userName"].as_str().unwrap())
        .collect();
    assert_eq!(names, [all[2], all[1], all[0]]);
    let alice = &r.body["Resources"][2];
    assert_eq!(alice["emails"][1]["value"], "a@home.org");
    assert_eq!(alice[ent]["employeeNumber"], "100");
    assert_eq!(alice["meta"]["version"], "W/\"1\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_lookup_is_an_empty_list_not_404() {
    let s = Srv::start().await;
    let r = s
        .get("/Users?filter=userName+eq+%22d0a0c1bd-5e0a-4d0e-9d2e-4b3c7a2f1e55%22")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": 0, "itemsPerPage": 0, "startIndex": 1, "Resources": []})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_filters_by_name_and_member() {
    let s = Srv::start().await;
    let u = s.user("m@x").await;
    let g = s.group("Sales & Marketing", &[&u]).await;
    s.group("Other", &[]).await;
    let r = s
        .get("/Groups?filter=displayName+eq+%22sales+%26+marketing%22&excludedAttributes=members")
        .await;
    assert_eq!(total(&r), 1);
    assert_eq!(r.body["Resources"][0]["id"], g.as_str());
    assert!(r.body["Resources"][0].get("members").is_none());
    let r = s
        .get(&format!("/Groups?filter=members.value eq \"{u}\""))
        .await;
    assert_eq!(total(&r), 1);
    let r = s
        .get(&format!("/Groups?filter=members[value eq \"{u}\"]"))
        .await;
    assert_eq!(total(&r), 1);
}

/// A search at the root covers Users and Groups with one filter. A condition on an attribute
/// one type lacks is, for that type, a condition on an absent attribute: the other side of
/// an `or` still finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_search_applies_the_filter_to_each_type() {
    let s = Srv::start().await;
    let bob = s.user("bob@x").await;
    s.user("alice@x").await;
    s.group("Eng", &[&bob]).await;
    s.group("Empty", &[]).await;
    let names = |r: &crate::harness::Res| {
        let mut v: Vec<String> = r.body["Resources"]
            .as_array()
            .unwrap_or_else(|| panic!("{}", r.body))
            .iter()
            .map(|x| {
                x.get("userName")
                    .or_else(|| x.get("displayName"))
                    .and_then(|n| n.as_str())
                    .unwrap()
                    .to_string()
            })
            .collect();
        v.sort();
        v
    };
    for (filter, want) in [
        (
            "displayName eq \"Eng\" or userName eq \"bob@x\"",
            vec!["Eng", "bob@x"],
        ),
        (
            "userName eq \"bob@x\" or displayName eq \"Eng\"",
            vec!["Eng", "bob@x"],
        ),
        ("userName eq \"alice@x\"", vec!["alice@x"]),
        (
            "userName ne \"alice@x\" and not (members pr)",
            vec!["Empty", "bob@x"],
        ),
        (
            "members pr or userName sw \"alice\"",
            vec!["Eng", "alice@x"],
        ),
        // Groups have no emails, so none of theirs differs.
        ("emails.type ne \"home\"", vec!["alice@x", "bob@x"]),
        (
            "schemas eq \"urn:ietf:params:scim:schemas:core:2.0:Group\"",
            vec!["Empty", "Eng"],
        ),
        (
            "emails[type eq \"work\"] and userName eq \"bob@x\" or displayName sw \"E\"",
            vec!["Empty", "Eng", "bob@x"],
        ),
    ] {
        let r = s
            .post(
                "/.search",
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                       "filter": filter}),
            )
            .await;
        assert_eq!(r.status, 200, "{filter}: {}", r.body);
        assert_eq!(names(&r), want, "{filter}");
        assert_eq!(total(&r), want.len() as u64, "{filter}");
    }
    // By cursor, two at a time: every user, then every group, each once.
    let all = s.post("/.search", json!({"count": 100})).await;
    let mut walked = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = s
            .post("/.search", json!({"cursor": cursor, "count": 2}))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(total(&r), 4);
        walked.extend(r.body["Resources"].as_array().unwrap().iter().cloned());
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
        assert!(walked.len() <= 4, "the walk must end");
    }
    assert_eq!(&walked, all.body["Resources"].as_array().unwrap());
    // The same when the filter leaves one type out (here an index lookup, which /Users
    // answers from stored documents): still a position walk, one at a time.
    let carol = s
        .post(
            "/Users",
            json!({"userName": "carol@x", "emails": [{"value": "bob@x"}]}),
        )
        .await;
    assert_eq!(carol.status, 201);
    let mut names = Vec::new();
    let mut cursor = String::new();
    loop {
        let r = s
            .post(
                "/.search",
                json!({"filter": "emails.value eq \"bob@x\"", "cursor": cursor, "count": 1}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        names.extend(
            r.body["Resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["userName"].clone()),
        );
        match r.body["nextCursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
        assert!(names.len() <= 2, "the walk must end");
    }
    assert_eq!(names, vec![json!("bob@x"), json!("carol@x")]);
    // Conditions no type can meet (each lacks one of the attributes) match nothing.
    let r = s
        .post("/.search", json!({"filter": "userName pr and members pr"}))
        .await;
    assert_eq!((r.status, total(&r)), (200, 0), "{}", r.body);
    // An attribute no type has is a mistake, not an absent value.
    let r = s
        .post(
            "/.search",
            json!({"filter": "usrName ne \"x\" or displayName eq \"Eng\""}),
        )
        .await;
    assert_error(&r, 400, Some("invalidFilter"));
}

/// Membership questions (is x a member, are there any) are answered by point reads of the
/// member index; their answers must be what the whole member list gives, under `not`, `or`
/// and `and`, for members, non-members, empty groups and ids in upper case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_filters_give_the_answers_of_the_whole_member_list() {
    let s = Srv::start().await;
    let (a, b, c) = (
        s.user("a@x").await,
        s.user("b@x").await,
        s.user("c@x").await,
    );
    let ab = s.group("AB", &[&a, &b]).await;
    let only_c = s.group("C", &[&c]).await;
    let empty = s.group("Empty", &[]).await;
    let outer = s.group("Outer", &[&ab]).await;
    let cases: Vec<(String, Vec<&str>)> = vec![
        (format!("members.value eq \"{a}\""), vec!["AB"]),
        (format!("members[value eq \"{c}\"]"), vec!["C"]),
        (format!("members.value eq \"{ab}\""), vec!["Outer"]),
        // members.value is caseExact false (RFC 7643 §8.7.1).
        (
            format!("members.value eq \"{}\"", a.to_uppercase()),
            vec!["AB"],
        ),
        ("members pr".into(), vec!["AB", "C", "Outer"]),
        ("not (members pr)".into(), vec!["Empty"]),
        (
            format!("members.value eq \"{a}\" or members.value eq \"{c}\""),
            vec!["AB", "C"],
        ),
        (
            format!("not (members.value eq \"{a}\")"),
            vec!["C", "Empty", "Outer"],
        ),
        (
            format!("members pr and not (members[value eq \"{c}\"])"),
            vec!["AB", "Outer"],
        ),
        (
            format!("displayName sw \"A\" and members[value eq \"{b}\"]"),
            vec!["AB"],
        ),
        // Not a membership question, so the member list is read. On a multi-valued
        // attribute `ne` holds when some value differs (RFC 7644 §3.4.2.2).
        (
            format!("members.value ne \"{a}\""),
            vec!["AB", "C", "Outer"],
        ),
    ];
    for (f, want) in cases {
        let r = s
            .get(&format!(
                "/Groups?excludedAttributes=members&filter={}",
                urlencode(&f)
            ))
            .await;
        assert_eq!(r.status, 200, "{f}: {}", r.body);
        assert_eq!(display_names(&r), want, "{f}");
    }
    let _ = (only_c, empty, outer);
}

/// `fast` (a filter a special path answers) and `evaluated` (the same filter, evaluated on
/// each candidate) give the same /Users documents for every page query in `pages`.
async fn same_answers(s: &Srv, fast: &str, evaluated: &str, pages: &[&str]) {
    for page in pages {
        let a = s
            .get(&format!("/Users?filter={}{page}", urlencode(fast)))
            .await;
        let b = s
            .get(&format!("/Users?filter={}{page}", urlencode(evaluated)))
            .await;
        assert_eq!(a.status, 200, "{fast}{page}: {}", a.body);
        // A cursor names its filter, so only whether there is a next page can agree.
        let (mut a, mut b) = (a.body, b.body);
        for body in [&mut a, &mut b] {
            if let Some(c) = body.get_mut("nextCursor") {
                *c = json!("next");
            }
        }
        assert_eq!(a, b, "{fast}{page}");
    }
}

/// The users of a group are read off the group's member index; the answer must be what
/// evaluating `groups` on every user gives: direct members only, users only, any id case,
/// every page and cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_of_a_group_come_from_its_member_index_as_evaluation_would_give() {
    let s = Srv::start().await;
    let mut users = Vec::new();
    for i in 0..7 {
        users.push(s.user(&format!("g{i}@x")).await);
    }
    let inner = s.group("Inner", &[&users[5]]).await;
    let refs: Vec<&str> = users[..5].iter().map(String::as_str).collect();
    let mut with_inner = refs.clone();
    with_inner.push(&inner);
    let g = s.group("G", &with_inner).await;
    for (fast, evaluated) in [
        (
            format!("groups.value eq \"{g}\""),
            format!("groups.value eq \"{g}\" and id pr"),
        ),
        (
            format!("groups[value eq \"{g}\"]"),
            format!("groups[value eq \"{g}\"] and id pr"),
        ),
        (
            format!("groups.value eq \"{}\"", g.to_uppercase()),
            format!("groups.value eq \"{}\" and id pr", g.to_uppercase()),
        ),
        (
            format!("groups.value eq \"{inner}\""),
            format!("groups.value eq \"{inner}\" and id pr"),
        ),
        (
            "groups.value eq \"nope\"".to_string(),
            "groups.value eq \"nope\" and id pr".to_string(),
        ),
        // Another spelling of the same id is another string, whichever path serves it.
        (
            format!("groups.value eq \"{}\"", g.replace('-', "")),
            format!("groups.value eq \"{}\" and id pr", g.replace('-', "")),
        ),
        (
            format!("groups[value eq \"urn:uuid:{g}\"]"),
            format!("groups[value eq \"urn:uuid:{g}\"] and id pr"),
        ),
        // By the group's name, through the displayName index, against a scan (the `or`
        // side no index answers).
        (
            "groups.display eq \"g\"".to_string(),
            "groups.display eq \"g\" or title eq \"none\"".to_string(),
        ),
        (
            "groups[display eq \"INNER\"]".to_string(),
            "groups[display eq \"INNER\"] or title eq \"none\"".to_string(),
        ),
        (
            "groups.display eq \"nope\"".to_string(),
            "groups.display eq \"nope\" or title eq \"none\"".to_string(),
        ),
    ] {
        let pages = [
            "",
            "&count=0",
            "&startIndex=3&count=2",
            "&cursor=&count=2",
            "&startIndex=9",
        ];
        same_answers(&s, &fast, &evaluated, &pages).await;
    }
    // Direct members only: the nested group's user is not in G's list.
    let r = s
        .get(&format!(
            "/Users?filter={}",
            urlencode(&format!("groups.value eq \"{g}\""))
        ))
        .await;
    assert_eq!(total(&r), 5);
    let r = s
        .get(&format!(
            "/Users?filter={}",
            urlencode("groups.display eq \"G\"")
        ))
        .await;
    assert_eq!(total(&r), 5);
    // A cursor walk, two at a time, sees each member once.
    let q = urlencode(&format!("groups.value eq \"{g}\""));
    let seen: Vec<String> = s
        .walk(&format!("/Users?filter={q}&count=2"))
        .await
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, users[..5].to_vec());
}

/// An exact index lookup is answered from the stored text; a filter that needs evaluating is
/// answered by decoding. Both must give the same document, cursor and membership included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_lookups_answer_what_evaluated_filters_answer() {
    let s = Srv::start().await;
    let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let u = s
        .post("/Users", json!({"userName": "Dana@x.io", "externalId": "e-\"1\"",
            "name": {"givenName": "Dana \u{e9}"}, "emails": [{"value": "dana@x.io", "primary": true}],
            ent: {"employeeNumber": "7"}}))
        .await;
    let id = u.body["id"].as_str().unwrap().to_string();
    s.group("Ops", &[&id]).await;
    s.user("other@x.io").await;
    for name in [
        "Dan\u{e9}@x.io",
        "dANIEL@x.io",
        "danny@x.io",
        "Zed@x.io",
        "\u{c9}mile@x.io",
    ] {
        s.user(name).await;
    }
    // A `userName sw` with more matches than a page read inline (200) goes the ordinary way.
    for i in 0..201 {
        s.user(&format!("bulk-{i}@x.io")).await;
    }
    for (exact, evaluated) in [
        ("userName sw \"bulk\"", "userName sw \"bulk\" and id pr"),
        ("userName sw \"bulk-1\"", "userName sw \"bulk-1\" and id pr"),
        ("userName sw \"DAN\"", "userName sw \"DAN\" and userName pr"),
        ("userName sw \"\u{e9}\"", "userName sw \"\u{e9}\" and id pr"),
        ("userName sw \"q\"", "userName sw \"q\" and id pr"),
        (
            "userName eq \"dana@X.io\"",
            "userName eq \"dana@X.io\" and userName pr",
        ),
        (
            "emails[value eq \"DANA@x.io\"]",
            "emails[value eq \"DANA@x.io\" and value pr]",
        ),
        (
            "externalId eq \"e-\\\"1\\\"\"",
            "externalId eq \"e-\\\"1\\\"\" and id pr",
        ),
        ("userName eq \"nobody\"", "userName eq \"nobody\" and id pr"),
    ] {
        let pages = [
            "",
            "&count=0",
            "&startIndex=2",
            "&startIndex=2&count=2",
            "&cursor=",
            "&count=0&cursor=",
            "&count=2&cursor=",
            "&startIndex=100&count=150",
        ];
        same_answers(&s, exact, evaluated, &pages).await;
    }
    let r = s
        .get(&format!(
            "/Users?filter={}",
            urlencode("userName eq \"dana@x.io\"")
        ))
        .await;
    assert_eq!(total(&r), 1);
    let d = &r.body["Resources"][0];
    assert_eq!(d["groups"][0]["display"], "Ops");
    assert_eq!(d["schemas"][1], ent);
    assert_eq!(d["name"]["givenName"], "Dana \u{e9}");
    assert_eq!(s.get(&format!("/Users/{id}")).await.body, *d);
}

/// A page of all users is answered from the stored text (a long one read on the pool), and
/// with a projection from the stored text decoded one resource at a time; a filter every
/// user matches is answered by decoding the page. Every page, projection, cursor and
/// membership must agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_pages_answer_what_decoded_pages_answer() {
    let s = Srv::start().await;
    let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let mut users = Vec::new();
    for i in 0..6 {
        users.push(
            s.post(
                "/Users",
                json!({"userName": format!("P{i}@x.io"), "externalId": format!("e\"{i}"),
                "name": {"givenName": format!("P\u{e9} {i}")},
                "emails": [{"value": format!("p{i}@x.io"), "primary": true}],
                ent: {"employeeNumber": i.to_string()}}),
            )
            .await
            .body["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    s.group("Ops", &[&users[1], &users[4]]).await;
    s.group("Dev", &[&users[4]]).await;
    // Past the 200 a page reads on the runtime thread, with one of them in a group.
    for i in 0..200 {
        let id = s.user(&format!("bulk-{i}@x.io")).await;
        if i == 150 {
            s.group("Late", &[&id]).await;
        }
    }
    let second = &users[1];
    let pages = [
        String::new(),
        "count=0".into(),
        "count=2".into(),
        "startIndex=5".into(),
        "startIndex=3&count=2".into(),
        "startIndex=99".into(),
        "startIndex=3&count=300".into(),
        "cursor=".into(),
        "count=0&cursor=".into(),
        "count=4&cursor=".into(),
        "count=201&cursor=".into(),
    ];
    // A cursor names its filter, so only whether there is a next page can agree.
    let same = |mut a: serde_json::Value, mut b: serde_json::Value, what: &str| {
        for body in [&mut a, &mut b] {
            if let Some(c) = body.get_mut("nextCursor") {
                *c = json!("next");
            }
        }
        assert_eq!(a, b, "{what}");
    };
    let projections = [
        "excludedAttributes=password",
        "attributes=userName",
        "excludedAttributes=groups",
        "attributes=groups.display,meta.version,name.givenName",
        "excludedAttributes=name,emails,meta",
        &format!("attributes={ent}:employeeNumber"),
    ];
    for page in &pages {
        let plain = s.get(&format!("/Users?{page}")).await;
        assert_eq!(plain.status, 200, "{page}: {}", plain.body);
        let decoded = format!("/Users?filter=id%20pr&{page}");
        same(plain.body.clone(), s.get(&decoded).await.body, &decoded);
        for proj in projections {
            let stored = s.get(&format!("/Users?{proj}&{page}")).await;
            assert_eq!(stored.status, 200, "{proj}&{page}: {}", stored.body);
            let decoded = format!("/Users?filter=id%20pr&{proj}&{page}");
            same(stored.body, s.get(&decoded).await.body, &decoded);
        }
    }
    // What the projections keep, checked once against the decoded route's own answer.
    let r = s.get("/Users?attributes=userName&count=2").await;
    assert_eq!(
        r.body["Resources"][1],
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": second, "userName": "P1@x.io"})
    );
    let r = s.get("/Users?excludedAttributes=groups&count=2").await;
    let d = &r.body["Resources"][1];
    assert!(d.get("groups").is_none(), "{d}");
    assert_eq!(d[ent]["employeeNumber"], "1");
    assert!(d["meta"]["version"].is_string(), "{d}");
    // Groups without their members, listed and looked up by name, as Entra asks.
    let ops = "displayName%20eq%20%22Ops%22";
    for (q, decoded) in [
        ("", "filter=id%20pr"),
        ("count=1&cursor=", "filter=id%20pr&count=1&cursor="),
        (
            &format!("filter={ops}"),
            &format!("filter={ops}%20and%20id%20pr"),
        ),
    ] {
        let stored = s
            .get(&format!("/Groups?excludedAttributes=members&{q}"))
            .await;
        assert_eq!(stored.status, 200, "{q}: {}", stored.body);
        let first = &stored.body["Resources"][0];
        assert_eq!(first["displayName"], "Ops", "{q}");
        assert!(first.get("members").is_none(), "{q}");
        let decoded = format!("/Groups?excludedAttributes=members&{decoded}");
        same(stored.body, s.get(&decoded).await.body, &decoded);
    }
    // The second page by cursor continues after the first, as a decoded one does.
    let first = s.get("/Users?count=1&cursor=").await;
    assert_eq!(first.body["Resources"][0]["id"], json!(users[0]));
    let next = first.body["nextCursor"].as_str().unwrap();
    let r = s.get(&format!("/Users?count=1&cursor={next}")).await;
    let d = &r.body["Resources"][0];
    assert_eq!(d["id"], json!(second));
    assert_eq!(d["groups"][0]["display"], "Ops");
    assert_eq!(d["name"]["givenName"], "P\u{e9} 1");
    assert_eq!(s.get(&format!("/Users/{second}")).await.body, *d);
    assert_eq!(total(&s.get("/Users?count=1").await), 206);
    let all = s.get("/Users").await;
    assert_eq!(all.body["itemsPerPage"], 206);
    assert_eq!(all.body["Resources"][156]["groups"][0]["display"], "Late");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_filters_are_400_invalid_filter() {
    let s = Srv::start().await;
    for f in [
        "userName eq",
        "userName xx \"a\"",
        "(userName eq \"a\"",
        "userName eq \"a",
        "shoeSize eq \"9\"",
        "name.shoe eq \"x\"",
        "userName eq \"a\" garbage",
        "emails[type eq \"work\"",
        // A typo would otherwise find no one: "no user is deactivated".
        "active eq flase",
        // No filter at all: a client would take every user for what matched.
        "",
        "  ",
    ] {
        let r = s.get(&format!("/Users?filter={}", urlencode(f))).await;
        assert_error(&r, 400, Some("invalidFilter"));
    }
    let r = s.post("/Users/.search", json!({"filter": ""})).await;
    assert_error(&r, 400, Some("invalidFilter"));
    // Without the parameter, every user is listed.
    assert_eq!(s.get("/Users").await.status, 200);
    // As deep as the configuration allows is answered, one level more is refused.
    let s = Srv::start_with(|c| c.server.max_filter_depth = 256).await;
    for (nots, status) in [(256, 200), (257, 400)] {
        let f = format!("{}userName pr{}", "not (".repeat(nots), ")".repeat(nots));
        let r = s.post("/Users/.search", json!({"filter": f})).await;
        assert_eq!(r.status, status, "{nots}: {}", r.body);
    }
    let deep = "(".repeat(10_000);
    let r = s.post("/Users/.search", json!({"filter": deep})).await;
    assert_error(&r, 400, Some("invalidFilter"));
}

/// An application looks up a batch of ids in one filter: hundreds of terms are a long chain,
/// not a deep one (as a left-leaning tree they overflowed the stack and took the server down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_of_hundreds_of_terms_is_answered() {
    let s = Srv::start().await;
    let mut real = Vec::new();
    for name in ["a@x", "b@x", "c@x"] {
        real.push(s.user(name).await);
    }
    assert_eq!(
        s.patch(
            &format!("/Users/{}", real[1]),
            json!([{"op": "replace", "path": "active", "value": false}])
        )
        .await
        .status,
        200
    );
    let mut terms: Vec<String> = (0..420).map(|i| format!("id eq \"f{i}\"")).collect();
    terms.insert(100, format!("id eq \"{}\"", real[0]));
    terms.push(format!("id eq \"{}\"", real[2]));
    let or = terms.join(" or ");
    let and = format!("userName pr{}", " and active eq true".repeat(400));
    for (filter, want) in [(or, vec!["a@x", "c@x"]), (and, vec!["a@x", "c@x"])] {
        assert!(filter.len() < 8192, "{}", filter.len());
        for path in ["/Users/.search", "/.search"] {
            let r = s.post(path, json!({"filter": filter})).await;
            assert_eq!(r.status, 200, "{path}: {}", r.body);
            assert_eq!(
                crate::harness::sorted(&r.body["Resources"], "userName"),
                want
            );
        }
        let r = s
            .get(&format!("/Users?filter={}", urlencode(&filter)))
            .await;
        assert_eq!(total(&r), 2, "{}", r.body);
    }
}

/// `userName sw` sorted by userName (a search box) walks the userName index's prefix range
/// instead of sorting every match: each page, either order, by startIndex or by cursor, is
/// what the general sort gives (`and id pr` takes that path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_name_prefix_sorted_by_user_name_walks_the_index() {
    let s = Srv::start().await;
    for name in [
        "bo@x",
        "Bob@x",
        "bob.2@x",
        "BOBBY@x",
        "bobz@x",
        "bob\u{e9}@x",
        "bo\u{f8}@x",
        "ann@x",
        "bp@x",
        "b@x",
        "Zed@x",
    ] {
        s.user(name).await;
    }
    for prefix in ["bo", "BOB", "b", "bob.", "zz", ""] {
        let fast = format!("userName sw \"{prefix}\"");
        let general = format!("userName sw \"{prefix}\" and id pr");
        for order in ["ascending", "descending"] {
            let sort = format!("&sortBy=userName&sortOrder={order}");
            let pages: Vec<String> = ["", "&count=2", "&startIndex=3&count=2", "&startIndex=9"]
                .iter()
                .map(|p| format!("{sort}{p}"))
                .collect();
            let pages: Vec<&str> = pages.iter().map(String::as_str).collect();
            same_answers(&s, &fast, &general, &pages).await;
            // By cursor, two at a time: the same names in the same order.
            let names = |list: Vec<serde_json::Value>| strings(&list.into(), "userName");
            let a = s
                .walk(&format!("/Users?filter={}{sort}&count=2", urlencode(&fast)))
                .await;
            let b = s
                .walk(&format!(
                    "/Users?filter={}{sort}&count=2",
                    urlencode(&general)
                ))
                .await;
            assert_eq!(names(a), names(b), "{fast} {order}");
        }
    }
    let r = s
        .get(&format!(
            "/Users?filter={}&sortBy=userName",
            urlencode("userName sw \"BOB\"")
        ))
        .await;
    assert_eq!(
        strings(&r.body["Resources"], "userName"),
        ["bob.2@x", "Bob@x", "BOBBY@x", "bobz@x", "bob\u{e9}@x"]
    );
}
