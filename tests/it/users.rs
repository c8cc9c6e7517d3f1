//! The User life cycle: create, read, replace, delete; schema rules on the way.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{Srv, assert_error};

const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn full_user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENT],
        "externalId": "00ujl29u0le5T6Aj10h7",
        "userName": "test.user@okta.local",
        "name": {"givenName": "Test", "familyName": "User", "formatted": "Test User"},
        "displayName": "Test User", "nickName": "T", "title": "Engineer", "userType": "Employee",
        "preferredLanguage": "en-US", "locale": "en-US", "timezone": "Europe/Paris",
        "profileUrl": "https://example.com/u/test",
        "emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"},
                   {"value": "home@example.com", "type": "home"}],
        "phoneNumbers": [{"value": "55555555555", "type": "work"}],
        "ims": [{"value": "tu", "type": "xmpp"}],
        "photos": [{"value": "https://example.com/p.jpg", "type": "photo"}],
        "addresses": [{"streetAddress": "1 Main St", "locality": "Paris", "country": "FR", "type": "work", "primary": true}],
        "entitlements": [{"value": "e1"}], "roles": [{"value": "admin"}],
        "x509Certificates": [{"value": "MIIB"}],
        "groups": [], "password": "1mz050nq", "active": true,
        ENT: {"employeeNumber": "701984", "costCenter": "4130", "organization": "Universal Studios",
              "division": "Theme Park", "department": "Tour Operations",
              "manager": {"value": "26118915-6090-4610-87e4-49d8ca9f808d", "displayName": "John Smith"}},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_returns_201_location_etag_and_every_attribute_but_password() {
    let s = Srv::start().await;
    let r = s.post("/Users", full_user()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let b = &r.body;
    let id = r.id();
    assert_eq!(r.header("location"), b["meta"]["location"].as_str());
    assert!(
        b["meta"]["location"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/scim/v2/Users/{id}"))
    );
    assert_eq!(r.header("etag"), b["meta"]["version"].as_str());
    assert!(r.header("etag").unwrap().starts_with("W/\""));
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/scim+json")
    );
    assert_eq!(b["meta"]["resourceType"], "User");
    // RFC 3339 in UTC to the microsecond, six digits always: what every client's parser
    // reads (.NET at most seven digits, Python before 3.11 three or six).
    let created = b["meta"]["created"].as_str().unwrap().to_string();
    let shape: String = created
        .chars()
        .map(|c| if c.is_ascii_digit() { '9' } else { c })
        .collect();
    assert_eq!(shape, "9999-99-99T99:99:99.999999Z", "{created}");
    assert_eq!(b["meta"]["lastModified"], created.as_str());
    assert!(
        b.get("password").is_none(),
        "password must never be returned"
    );
    assert_eq!(
        b["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENT])
    );
    let mut expected = full_user();
    for k in ["schemas", "password", "groups"] {
        expected.as_object_mut().unwrap().remove(k);
    }
    for (k, v) in expected.as_object().unwrap() {
        assert_eq!(&b[k], v, "attribute {k}");
    }
    assert_eq!(b["groups"], json!([]));
    let g = s.get(&format!("/Users/{id}")).await;
    assert_eq!(g.status, 200);
    assert_eq!(g.body, r.body, "GET returns what POST returned");
    assert!(g.body.get("password").is_none());
    // A change at once after the create is still later.
    let r = s
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "nickName", "value": "B"}]),
        )
        .await;
    assert!(r.body["meta"]["lastModified"].as_str().unwrap() > created.as_str());
    assert_eq!(r.body["meta"]["created"], created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_attributes_from_the_client_are_ignored() {
    let s = Srv::start().await;
    let r = s
        .post(
            "/Users",
            json!({"userName": "ro", "id": "client-chosen",
        "meta": {"created": "04-12-2018 00:00:00", "version": "v1.0"}, "groups": [{"value": "x"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_ne!(r.id(), "client-chosen");
    assert_ne!(r.body["meta"]["created"], "04-12-2018 00:00:00");
    assert_eq!(r.body["groups"], json!([]));
    assert_eq!(r.body["active"], true, "active defaults to true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribute_names_are_case_insensitive_and_stored_canonically() {
    let s = Srv::start().await;
    let r = s
        .post(
            "/Users",
            json!({"USERNAME": "ci", "Emails": [{"Value": "ci@x", "Primary": true}],
        ENT: {"Department": "Ops"}, "NAME": {"GIVENNAME": "G"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["userName"], "ci");
    assert_eq!(
        r.body["emails"],
        json!([{"value": "ci@x", "primary": true}])
    );
    assert_eq!(r.body[ENT]["department"], "Ops");
    assert_eq!(r.body["name"]["givenName"], "G");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_is_unique_case_insensitively_and_conflict_names_the_holder() {
    let s = Srv::start().await;
    let id = s.user("Dup@Example.com").await;
    for name in ["Dup@Example.com", "DUP@EXAMPLE.COM", "dup@example.com"] {
        let r = s.post("/Users", json!({"userName": name})).await;
        assert_error(&r, 409, Some("uniqueness"));
        assert!(
            r.body["detail"].as_str().unwrap().contains(&id),
            "detail names the existing id: {}",
            r.body
        );
    }
    // A rename onto a taken name is a conflict too; onto its own name (other case) is fine.
    let other = s.user("other@example.com").await;
    let r = s
        .put(
            &format!("/Users/{other}"),
            json!({"userName": "DUP@example.com"}),
        )
        .await;
    assert_error(&r, 409, Some("uniqueness"));
    let r = s
        .put(
            &format!("/Users/{id}"),
            json!({"userName": "dup@example.com"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Case is set aside beyond ASCII too: every sigma, the capital sharp s, composed against
/// decomposed letters (RFC 7643 §4.1.1: caseExact false); but names that only a mapping of
/// one letter to two, or Turkic folding, would join are different people's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_ignores_case_and_unicode_form_beyond_ascii() {
    let s = Srv::start().await;
    let enc = |f: &str| {
        percent_encoding::utf8_percent_encode(f, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    for (first, other) in [
        ("j.großmann@atko.com", "J.GROSSMANN@atko.com"),
        ("ﬁle@atko.com", "FILE@atko.com"),
        ("ılker@atko.com", "ILKER@atko.com"),
    ] {
        s.user(first).await;
        let r = s.post("/Users", json!({"userName": other})).await;
        assert_eq!(r.status, 201, "{other}: {}", r.body);
        let f = enc(&format!("userName eq \"{other}\""));
        let r = s.get(&format!("/Users?filter={f}")).await;
        assert_eq!(r.body["totalResults"], 1, "{other}: {}", r.body);
        assert_eq!(r.body["Resources"][0]["userName"], other);
    }
    for (first, same) in [
        ("straße@atko.com", "STRAẞE@ATKO.COM"),
        ("σας.x@atko.com", "ΣΑΣ.X@atko.com"),
        ("José@atko.com", "jose\u{301}@atko.com"),
    ] {
        let id = s.user(first).await;
        let r = s.post("/Users", json!({"userName": same})).await;
        assert_error(&r, 409, Some("uniqueness"));
        for filter in [
            format!("userName eq \"{same}\""),
            format!("emails co \"none\" or userName eq \"{same}\""),
        ] {
            let r = s.get(&format!("/Users?filter={}", enc(&filter))).await;
            assert_eq!(r.body["totalResults"], 1, "{filter}: {}", r.body);
            assert_eq!(r.body["Resources"][0]["id"], id.as_str(), "{filter}");
        }
    }
}

/// A name an IdP looks up before it writes is at most 1,024 characters: the longest, in
/// three-byte characters, is still found by a filter in the URL (9 KB encoded) and in a
/// `.search` body; a longer one is refused on every write and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_lookup_name_is_found_and_a_longer_one_is_refused() {
    let s = Srv::start().await;
    let enc = |f: &str| {
        percent_encoding::utf8_percent_encode(f, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let longest = format!("{}@x", "漢".repeat(1022));
    let r = s
        .post(
            "/Users",
            json!({"userName": longest, "externalId": longest}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    for attr in ["userName", "externalId"] {
        let f = format!("{attr} eq \"{longest}\"");
        let r = s.get(&format!("/Users?filter={}", enc(&f))).await;
        assert_eq!(r.body["totalResults"], 1, "{attr}: {}", r.body);
        assert_eq!(r.body["Resources"][0]["id"], id.as_str());
        let r = s.post("/Users/.search", json!({"filter": f})).await;
        assert_eq!(r.body["totalResults"], 1, "{attr}: {}", r.body);
    }
    let group = "é".repeat(1024);
    assert_eq!(
        s.post("/Groups", json!({"displayName": group}))
            .await
            .status,
        201
    );
    let f = format!("displayName eq \"{group}\"");
    let r = s.get(&format!("/Groups?filter={}", enc(&f))).await;
    assert_eq!(r.body["totalResults"], 1, "{}", r.body);

    let over = "a".repeat(1025);
    assert_error(
        &s.post("/Users", json!({"userName": over})).await,
        400,
        Some("invalidValue"),
    );
    assert_error(
        &s.post("/Groups", json!({"displayName": over})).await,
        400,
        Some("invalidValue"),
    );
    let path = format!("/Users/{id}");
    for r in [
        s.patch(
            &path,
            json!([{"op": "replace", "path": "userName", "value": over}]),
        )
        .await,
        s.patch(
            &path,
            json!([{"op": "replace", "value": {"externalId": over}}]),
        )
        .await,
        s.patch(
            &path,
            json!([{"op": "add", "path": "emails", "value": [{"value": over}]}]),
        )
        .await,
        s.put(&path, json!({"userName": over})).await,
    ] {
        assert_error(&r, 400, Some("invalidValue"));
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap()
                .contains("1025 characters"),
            "{}",
            r.body
        );
    }
    let r = s.get(&path).await;
    assert_eq!(r.body["userName"], longest.as_str());
    assert_eq!(r.body["externalId"], longest.as_str());
    assert!(r.body.get("emails").is_none(), "{}", r.body);
    // A user untouched by the refusals: the same version as created.
    assert_eq!(r.body["meta"]["created"], r.body["meta"]["lastModified"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_replaces_clears_omitted_attributes_and_ignores_okta_extras() {
    let s = Srv::start().await;
    let created = s.post("/Users", full_user()).await;
    let id = created.id();
    // Okta's PUT: the whole object back with id, password, groups and its own meta.
    let r = s.put(&format!("/Users/{id}"), json!({
        "id": id, "externalId": "00uq2kqg7YTkFo3cY0g3",
        "meta": {"resourceType": "User", "created": "04-12-2018 00:00:00", "lastModified": "04-12-2018 00:00:00", "version": "v1.0"},
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "jane.doe@example.com", "displayName": "Jane Doe", "locale": "en_US", "active": true,
        "password": "TkdFNVdIVkxhM2c9",
        "emails": [{"value": "jane.doe@example.com", "type": "work", "primary": true}],
        "name": {"familyName": "Doe", "givenName": "Jane"}, "groups": []})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["userName"], "jane.doe@example.com");
    assert!(
        r.body.get("title").is_none(),
        "omitted attributes are cleared"
    );
    assert!(r.body.get(ENT).is_none());
    assert!(r.body.get("password").is_none());
    assert_eq!(r.body["meta"]["created"], created.body["meta"]["created"]);
    assert_ne!(r.body["meta"]["version"], created.body["meta"]["version"]);
    assert_eq!(s.get(&format!("/Users/{id}")).await.body, r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unset_active_is_true_everywhere_and_a_put_without_it_changes_nothing() {
    let s = Srv::start().await;
    let unset = s.post("/Users", json!({"userName": "unset@x"})).await.id();
    let off = s
        .post("/Users", json!({"userName": "off@x", "active": false}))
        .await
        .id();
    let ids = |r: crate::harness::Res| crate::harness::sorted(&r.body["Resources"], "id");
    // Filters and sorting see the `true` that every response shows.
    assert_eq!(s.get(&format!("/Users/{unset}")).await.body["active"], true);
    for (f, want) in [
        ("active eq true", vec![unset.clone()]),
        ("active pr", {
            let mut v = vec![unset.clone(), off.clone()];
            v.sort();
            v
        }),
        ("active eq false", vec![off.clone()]),
    ] {
        let r = s
            .get(&format!("/Users?filter={}", f.replace(' ', "%20")))
            .await;
        assert_eq!(ids(r), want, "{f}");
    }
    let r = s.get("/Users?sortBy=active&sortOrder=descending").await;
    assert_eq!(r.body["Resources"][0]["id"], unset.as_str());
    // A PUT that leaves `active` out (or null) keeps a deactivated user deactivated; one that
    // states it changes it.
    for body in [
        json!({"userName": "off@x", "title": "t"}),
        json!({"userName": "off@x", "active": null}),
    ] {
        let r = s.put(&format!("/Users/{off}"), body.clone()).await;
        assert_eq!(
            (r.status, &r.body["active"]),
            (200, &json!(false)),
            "{body}"
        );
    }
    let r = s
        .put(
            &format!("/Users/{off}"),
            json!({"userName": "off@x", "active": true}),
        )
        .await;
    assert_eq!(r.body["active"], true);
    let r = s
        .put(&format!("/Users/{unset}"), json!({"userName": "unset@x"}))
        .await;
    assert_eq!(r.body["active"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_rules_unknown_id_missing_username_and_other_id() {
    let s = Srv::start().await;
    let id = s.user("p@x").await;
    assert_error(
        &s.put(
            "/Users/010101001010101011001010101011",
            json!({"userName": "a"}),
        )
        .await,
        404,
        None,
    );
    assert_error(
        &s.put(
            "/Users/01a203fb-9d8a-77b6-beb8-99c9f8d5ccc9",
            json!({"userName": "a"}),
        )
        .await,
        404,
        None,
    );
    assert_error(
        &s.put(
            &format!("/Users/{id}"),
            json!({"displayName": "no userName"}),
        )
        .await,
        400,
        Some("invalidValue"),
    );
    let r = s
        .put(
            &format!("/Users/{id}"),
            json!({"id": "01a203fb-9d8a-77b6-beb8-99c9f8d5ccc9", "userName": "p@x"}),
        )
        .await;
    assert_error(&r, 400, Some("mutability"));
    // The resource's own id, spelled in capitals in the URL or in the body, is no change;
    // an empty id is absent, as null is.
    let upper = id.to_uppercase();
    for (url, body_id) in [(&upper, json!(id)), (&id, json!(upper)), (&id, json!(""))] {
        let r = s
            .put(
                &format!("/Users/{url}"),
                json!({"id": body_id, "userName": "p@x"}),
            )
            .await;
        assert_eq!(r.status, 200, "{url} {body_id}: {}", r.body);
        assert_eq!(r.body["id"], id.as_str());
    }
    // An unknown attribute is ignored (Microsoft's reference: "adreses" → 200).
    let r = s
        .put(
            &format!("/Users/{id}"),
            json!({"userName": "p@x", "adreses": [{"x": 1}]}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.get("adreses").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_is_204_then_gone_everywhere() {
    let s = Srv::start().await;
    let id = s.user("gone@example.com").await;
    let r = s.delete(&format!("/Users/{id}")).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.body, Value::Null);
    assert_error(&s.get(&format!("/Users/{id}")).await, 404, None);
    assert_error(&s.delete(&format!("/Users/{id}")).await, 404, None);
    let r = s
        .get("/Users?filter=userName%20eq%20%22gone@example.com%22")
        .await;
    assert_eq!(r.body["totalResults"], 0);
    // The userName is free again.
    assert_ne!(s.user("gone@example.com").await, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_of_any_shape_are_404_with_scim_body() {
    let s = Srv::start().await;
    for id in [
        "010101001010101011001010101011",
        "00919288221112222",
        "not-a-uuid",
        "01a203fb-9d8a-77b6-beb8-99c9f8d5ccc9",
    ] {
        for m in [Method::GET, Method::DELETE] {
            let r = s
                .call(
                    m.clone(),
                    &format!("/Users/{id}"),
                    Some(crate::harness::ACME),
                    None,
                )
                .await;
            assert_error(&r, 404, None);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_ascii_round_trips_and_values_are_stored_as_sent() {
    let s = Srv::start().await;
    let r = s
        .post(
            "/Users",
            json!({"userName": "zoë@exämple.com", "name": {"familyName": "Ñúñez 山田"},
        "phoneNumbers": [{"value": "55555555555"}]}),
        )
        .await;
    assert_eq!(r.status, 201);
    let g = s.get(&format!("/Users/{}", r.id())).await;
    assert_eq!(g.body["userName"], "zoë@exämple.com");
    assert_eq!(g.body["name"]["familyName"], "Ñúñez 山田");
    assert_eq!(g.body["phoneNumbers"][0]["value"], "55555555555");
}
