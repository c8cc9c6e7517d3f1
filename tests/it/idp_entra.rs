//! Microsoft Entra ID's traffic from idp-notes §3 (the SCIM tutorial, the compliance page,
//! the reference code's Postman collection), with and without `aadOptscim062020`.

use reqwest::Method;
use serde_json::json;

use crate::harness::{GLOBEX, Res, Srv, assert_error, total};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENT: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

async fn entra(s: &Srv, method: Method, path: &str, body: Option<serde_json::Value>) -> Res {
    s.call(method, path, Some(GLOBEX), body).await
}

async fn entra_patch(s: &Srv, path: &str, ops: serde_json::Value) -> Res {
    entra(
        s,
        Method::PATCH,
        path,
        Some(json!({"schemas": [PATCH_OP], "Operations": ops})),
    )
    .await
}

/// §3.1: Test Connection looks up a random GUID and needs an empty ListResponse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_connection() {
    let s = Srv::start().await;
    // The flag rides on the Tenant URL as an empty query parameter.
    for q in ["", "aadOptscim062020&"] {
        let r = entra(
            &s,
            Method::GET,
            &format!("/Users?{q}filter=userName+eq+%22f3b5a2d1-6c0e-4b8a-9d7e-1a2b3c4d5e6f%22"),
            None,
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/scim+json"));
        assert_eq!((total(&r), r.body["Resources"].clone()), (0, json!([])));
    }
    assert_eq!(
        entra(&s, Method::GET, "/Groups?count=1", None).await.status,
        200
    );
}

/// §3.3–3.6: create (with the tutorial's explicit nulls), the PATCH dialects, manager,
/// disable, re-enable, delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_user_lifecycle_both_dialects() {
    let s = Srv::start().await;
    let r = entra(&s, Method::POST, "/Users", Some(json!({"schemas": [USER, ENT],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef", "userName": "Test_User_00aa00aa@testuser.com", "active": true,
        "emails": [{"primary": true, "type": "work", "value": "Test_User_11bb11bb@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [], "addresses": null, "phoneNumbers": null, "preferredLanguage": null, "title": null,
        ENT: {"department": null, "manager": null}}))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.id();
    assert!(
        r.body.get("title").is_none() && r.body.get("roles").is_none(),
        "nulls mean absent: {}",
        r.body
    );
    let p = format!("/Users/{id}");
    // Matching by externalId, userName and the work email (§3.2).
    for f in [
        "externalId+eq+%220a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef%22",
        "userName eq \"test_user_00aa00aa@testuser.com\"",
        "emails[type eq \"work\"].value eq \"Test_User_11bb11bb@testuser.com\"",
    ] {
        assert_eq!(
            total(&entra(&s, Method::GET, &format!("/Users?filter={f}"), None).await),
            1,
            "{f}"
        );
    }
    // Without the flag: capitalised ops, one op per attribute, a string boolean.
    let r = entra_patch(&s, &p, json!([
        {"op": "Replace", "path": "displayName", "value": "Bjfe"},
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
        {"op": "Replace", "path": "name.givenName", "value": "Kkom"},
        {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
        {"op": "Replace", "path": "externalId", "value": "ext-2"},
        {"op": "Replace", "path": format!("{ENT}:employeeNumber"), "value": "Aklq"},
        {"op": "Add", "path": "nickName", "value": "Babs"}])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["emails"],
        json!([{"primary": true, "type": "work", "value": "updatedEmail@microsoft.com"}])
    );
    assert_eq!(
        (
            r.body["name"]["givenName"].as_str(),
            r.body["name"]["familyName"].as_str()
        ),
        (Some("Kkom"), Some("updatedFamilyName"))
    );
    assert_eq!(
        r.body["name"]["formatted"], "givenName familyName",
        "unspecified sub-attributes unchanged"
    );
    assert_eq!(
        (
            r.body["externalId"].as_str(),
            r.body[ENT]["employeeNumber"].as_str()
        ),
        (Some("ext-2"), Some("Aklq"))
    );
    // With the flag: one no-path replace with dotted and URN keys.
    let r = entra_patch(&s, &p, json!([
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "flag@microsoft.com"},
        {"op": "replace", "value": {"displayName": "Flagged", "name.givenName": "G2", "name.familyName": "F2", (format!("{ENT}:employeeNumber")): "E2"}}])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            r.body["displayName"].as_str(),
            r.body["name"]["givenName"].as_str(),
            r.body[ENT]["employeeNumber"].as_str()
        ),
        (Some("Flagged"), Some("G2"), Some("E2"))
    );
    assert_eq!(
        r.body["emails"].as_array().unwrap().len(),
        1,
        "never a second work email"
    );
    // Add on the work email replaces its value (a field report, §3.4).
    let r = entra_patch(
        &s,
        &p,
        json!([{"op": "Replace", "path": "title", "value": "tester"},
        {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "added@microsoft.com"}]),
    )
    .await;
    assert_eq!(
        r.body["emails"],
        json!([{"primary": true, "type": "work", "value": "added@microsoft.com"}])
    );
    assert_eq!(r.body["title"], "tester");
    // The manager as a bare string, returned as an object (§3.6).
    let manager = entra(
        &s,
        Method::POST,
        "/Users",
        Some(json!({"userName": "boss@testuser.com"})),
    )
    .await
    .id();
    let r = entra_patch(
        &s,
        &p,
        json!([{"op": "add", "path": format!("{ENT}:manager"), "value": manager}]),
    )
    .await;
    assert_eq!(r.body[ENT]["manager"], json!({"value": manager}));
    assert_eq!(
        entra(&s, Method::GET, &p, None).await.body[ENT]["manager"]["value"],
        manager.as_str()
    );
    // Userame replace (Postman collection) and disable with "False", then with false.
    let r = entra_patch(
        &s,
        &p,
        json!([{"op": "Replace", "path": "userName", "value": "5b50642d@testuser.com"}]),
    )
    .await;
    assert_eq!(r.body["userName"], "5b50642d@testuser.com");
    for (value, expect) in [
        (json!("False"), false),
        (json!("True"), true),
        (json!(false), false),
        (json!("false"), false),
        (json!("TRUE"), true),
    ] {
        let r = entra_patch(
            &s,
            &p,
            json!([{"op": "Replace", "path": "active", "value": value}]),
        )
        .await;
        assert_eq!(r.body["active"], expect, "{value}");
    }
    let r = entra_patch(
        &s,
        &p,
        json!([{"op": "Replace", "path": "active", "value": "Nope"}]),
    )
    .await;
    assert_error(&r, 400, Some("invalidValue"));
    // Disabled users stay readable and findable; hard delete after 30 days is a DELETE.
    entra_patch(
        &s,
        &p,
        json!([{"op": "Replace", "path": "active", "value": "False"}]),
    )
    .await;
    assert_eq!(
        total(
            &entra(
                &s,
                Method::GET,
                "/Users?filter=userName eq \"5b50642d@testuser.com\"",
                None
            )
            .await
        ),
        1
    );
    assert_eq!(entra(&s, Method::DELETE, &p, None).await.status, 204);
    assert_error(&entra(&s, Method::GET, &p, None).await, 404, None);
}

/// §3.7: the tutorial's group operations, with the ADSCIM schema URI and excludedAttributes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_groups() {
    let s = Srv::start().await;
    let users: Vec<String> = {
        let mut v = Vec::new();
        for n in ["g1@contoso.com", "g2@contoso.com", "g3@contoso.com"] {
            v.push(
                entra(&s, Method::POST, "/Users", Some(json!({"userName": n})))
                    .await
                    .id(),
            );
        }
        v
    };
    let r = entra(&s, Method::POST, "/Groups", Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group",
        "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159", "displayName": "displayName", "meta": {"resourceType": "Group"}}))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["members"], json!([]));
    let g = r.id();
    let p = format!("/Groups/{g}");
    let r = entra(
        &s,
        Method::GET,
        &format!("{p}?excludedAttributes=members"),
        None,
    )
    .await;
    assert!(r.body.get("members").is_none());
    let r = entra(
        &s,
        Method::GET,
        "/Groups?excludedAttributes=members&filter=displayName eq \"displayName\"",
        None,
    )
    .await;
    assert_eq!(total(&r), 1);
    assert!(r.body["Resources"][0].get("members").is_none());
    assert_eq!(entra_patch(&s, &p, json!([{"op": "Replace", "path": "displayName", "value": "1879db59-3bdf-4490-ad68-ab880a269474updatedDisplayName"}])).await.status, 204);
    // Several memberships in one PATCH, `$ref: null` as Entra sends it.
    let adds: Vec<_> = users
        .iter()
        .map(|u| json!({"$ref": null, "value": u}))
        .collect();
    assert_eq!(
        entra_patch(
            &s,
            &p,
            json!([{"op": "Add", "path": "members", "value": adds}])
        )
        .await
        .status,
        204
    );
    // Without the flag: remove by value list, only the listed member.
    let r = entra_patch(
        &s,
        &p,
        json!([{"op": "Remove", "path": "members", "value": [{"$ref": null, "value": users[0]}]}]),
    )
    .await;
    assert_eq!(r.status, 204);
    let r = entra(&s, Method::GET, &p, None).await;
    assert_eq!(
        r.body["members"].as_array().unwrap().len(),
        2,
        "only the listed member goes: {}",
        r.body
    );
    // With the flag: a value filter.
    assert_eq!(
        entra_patch(
            &s,
            &p,
            json!([{"op": "remove", "path": format!("members[value eq \"{}\"]", users[1])}])
        )
        .await
        .status,
        204
    );
    let r = entra(&s, Method::GET, &p, None).await;
    assert_eq!(
        r.body["members"],
        json!([{"value": users[2], "type": "User", "$ref": format!("{}/Users/{}", s.base(), users[2])}])
    );
    // A deactivated member stays a member (§3.5).
    entra_patch(
        &s,
        &format!("/Users/{}", users[2]),
        json!([{"op": "Replace", "path": "active", "value": "False"}]),
    )
    .await;
    assert_eq!(
        entra(&s, Method::GET, &p, None).await.body["members"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // displayName is unique; a second group of that name is a conflict.
    let r = entra(
        &s,
        Method::POST,
        "/Groups",
        Some(json!({"displayName": "1879DB59-3bdf-4490-ad68-ab880a269474updatedDisplayName"})),
    )
    .await;
    assert_error(&r, 409, Some("uniqueness"));
    assert_eq!(entra(&s, Method::DELETE, &p, None).await.status, 204);
}

/// §3.10: cases from Microsoft's reference-code Postman collection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_reference_collection() {
    let s = Srv::start().await;
    let r = entra(&s, Method::POST, "/Users", Some(json!({"schemas": [USER, ENT], "userName": "UserName123", "active": "True", "externalId": "0042",
        "emails": [{"Primary": true, "type": "work", "value": "testing@bob.com"}], "displayName": "BobIsAmazing",
        "name": {"familyName": "Employee", "givenName": "Bob"}, ENT: {"Department": "bob", "employeeNumber": "1"}}))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["emails"][0]["primary"], true);
    assert_eq!(r.body[ENT]["department"], "bob");
    assert_error(
        &entra(
            &s,
            Method::POST,
            "/Users",
            Some(json!({"displayName": "no userName"})),
        )
        .await,
        400,
        Some("invalidValue"),
    );
    let resp = s
        .client
        .post(format!("{}/Users", s.base()))
        .bearer_auth(GLOBEX)
        .header("Content-Type", "application/scim+json")
        .body("{\"userName\": \"x\", \"acve\": tre}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let r = entra(
        &s,
        Method::POST,
        "/Users",
        Some(json!({"userName": "UserName123"})),
    )
    .await;
    assert_error(&r, 409, Some("uniqueness"));
    let id = r.body["detail"]
        .as_str()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    for f in [
        "DisplayName+eq+%22BobIsAmazing%22",
        "userName sw O",
        "name.FamilyName eq Employee and (emails.Value co bob.com or emails.Value co example.org)",
        "meta.Created gt 2015-10-10T14:38:21.8617979-07:00",
        // Unquoted numbers compared with text are their text as written (index-served, and
        // an extension attribute evaluated in memory).
        "externalId eq 0042",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq 1",
    ] {
        let r = entra(&s, Method::GET, &format!("/Users?filter={f}"), None).await;
        assert_eq!(r.status, 200, "{f}: {}", r.body);
        let want = u64::from(!f.starts_with("userName sw O"));
        assert_eq!(total(&r), want, "{f}");
    }
    let r = entra(
        &s,
        Method::GET,
        "/Users?attributes=emails%5Btype+eq+%22work%22%5D",
        None,
    )
    .await;
    assert_eq!(
        r.body["Resources"][0]["emails"][0]["value"],
        "testing@bob.com"
    );
    let r = entra(
        &s,
        Method::PUT,
        &format!("/Users/{id}"),
        Some(json!({"userName": "UserName123", "adreses": [{"x": 1}]})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_error(
        &entra(
            &s,
            Method::PUT,
            &format!("/Users/{id}"),
            Some(json!({"displayName": "x"})),
        )
        .await,
        400,
        Some("invalidValue"),
    );
    // "Post emp1": two work emails, both kept, each found by a filter.
    let r = entra(
        &s,
        Method::POST,
        "/Users",
        Some(
            json!({"schemas": [USER, ENT], "userName": "emp1", "active": "True",
        "emails": [{"type": "work", "primary": true, "value": "anna33@gmail.com"},
                   {"type": "work", "primary": false, "value": "anna33@example.com"}]}),
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["emails"][1]["value"], "anna33@example.com");
    for v in ["anna33@gmail.com", "anna33@example.com"] {
        let f = format!("/Users?filter=emails.value+eq+%22{v}%22");
        assert_eq!(total(&entra(&s, Method::GET, &f, None).await), 1, "{v}");
    }
    let r = entra(&s, Method::GET, "/Users?startIndex=1&count=2", None).await;
    assert_eq!(total(&r), 2);
    assert_eq!(r.body["itemsPerPage"], 2);
}

/// Microsoft's SCIM Validator sends a PATCH with no operations and expects success (public
/// reports: scimmyjs/scimmy#59, #90; AzureAD/SCIMReferenceCode#112). RFC 7644 §3.5.2 asks
/// for one or more, but an empty list can only mean "change nothing": the resource is
/// answered as it is, its version unmoved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_without_operations_changes_nothing() {
    let s = Srv::start().await;
    let u = entra(
        &s,
        Method::POST,
        "/Users",
        Some(json!({"schemas": [USER], "userName": "empty-ops@x", "active": true})),
    )
    .await;
    assert_eq!(u.status, 201, "{}", u.body);
    let id = u.body["id"].as_str().unwrap().to_string();
    let r = entra_patch(&s, &format!("/Users/{id}"), json!([])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["meta"]["version"], u.body["meta"]["version"]);
    assert_eq!(r.body["userName"], "empty-ops@x");
    let g = entra(
        &s,
        Method::POST,
        "/Groups",
        Some(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Empty ops", "members": [{"value": id}]}),
        ),
    )
    .await;
    assert_eq!(g.status, 201, "{}", g.body);
    let gid = g.body["id"].as_str().unwrap();
    let r = entra_patch(&s, &format!("/Groups/{gid}"), json!([])).await;
    assert!(
        r.status == 204 || r.status == 200,
        "{}: {}",
        r.status,
        r.body
    );
    let after = entra(&s, Method::GET, &format!("/Groups/{gid}"), None).await;
    assert_eq!(after.body["meta"]["version"], g.body["meta"]["version"]);
    assert_eq!(after.body["members"].as_array().map(Vec::len), Some(1));
}

/// App roles (`AppRoleAssignmentsComplex`) all have the type WindowsAzureActiveDirectoryRole:
/// a role added beside one is a second role, several may come in one add, and a role's
/// removal leaves the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_app_roles_of_one_type_add_up() {
    let s = Srv::start().await;
    let role = |v: &str| json!({"primary": false, "type": "WindowsAzureActiveDirectoryRole", "display": v, "value": v});
    let r = entra(
        &s,
        Method::POST,
        "/Users",
        Some(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "roles@x.example", "roles": [role("Admin")]}),
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let r = entra_patch(
        &s,
        &format!("/Users/{id}"),
        json!([{"op": "Add", "path": "roles", "value": [role("Reader"), role("Writer")]}]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got = entra(&s, Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(
        got.body["roles"],
        json!([role("Admin"), role("Reader"), role("Writer")])
    );
    let r = entra_patch(
        &s,
        &format!("/Users/{id}"),
        json!([{"op": "Remove", "path": "roles[value eq \"Reader\"]"}]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got = entra(&s, Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(got.body["roles"], json!([role("Admin"), role("Writer")]));
    s.stop().await;
}

/// Before 2018 Entra wrote extension paths with a dot after the URN (idp-notes §3.4):
/// `…:2.0:User.department`. Read as a URN it does not know, the write would be answered 200
/// and dropped, and Entra would send it again every cycle; it is the colon form's write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_dot_form_of_an_extension_path_is_its_colon_form() {
    let s = Srv::start().await;
    let u = entra(
        &s,
        Method::POST,
        "/Users",
        Some(json!({"schemas": [USER], "userName": "dotted@x"})),
    )
    .await;
    assert_eq!(u.status, 201, "{}", u.body);
    let id = u.body["id"].as_str().unwrap().to_string();
    let r = entra_patch(
        &s,
        &format!("/Users/{id}"),
        json!([
            {"op": "Replace", "path": format!("{ENT}.department"), "value": "Sales"},
            {"op": "Add", "path": format!("{USER}.title"), "value": "Lead"},
            {"op": "Replace", "value": {format!("{ENT}.costCenter"): "CC-7"}}
        ]),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let got = entra(&s, Method::GET, &format!("/Users/{id}"), None)
        .await
        .body;
    assert_eq!(got[ENT]["department"], "Sales", "{got}");
    assert_eq!(got[ENT]["costCenter"], "CC-7", "{got}");
    assert_eq!(got["title"], "Lead", "{got}");
    let found = entra(
        &s,
        Method::GET,
        &format!(
            "/Users?filter={}",
            crate::harness::urlencode(&format!("{ENT}.department eq \"Sales\""))
        ),
        None,
    )
    .await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(total(&found), 1, "{}", found.body);
}
