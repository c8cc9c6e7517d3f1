//! Discovery documents describe what the server really does.

use serde_json::json;

use crate::harness::{Srv, assert_error};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_provider_config_states_the_truth() {
    let s = Srv::start().await;
    let r = s.get("/ServiceProviderConfig").await;
    assert_eq!(r.status, 200);
    let b = &r.body;
    assert_eq!(
        b["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"])
    );
    assert_eq!(b["patch"]["supported"], true);
    assert_eq!(b["bulk"]["supported"], false);
    assert_eq!(b["filter"]["supported"], true);
    assert_eq!(b["filter"]["maxResults"], 1000);
    assert_eq!(b["sort"]["supported"], true);
    assert_eq!(b["etag"]["supported"], true);
    assert_eq!(b["changePassword"]["supported"], false);
    assert_eq!(b["authenticationSchemes"][0]["type"], "oauthbearertoken");
    assert_eq!(b["bulk"]["maxPayloadSize"], 1024 * 1024);
    // No token needed to discover.
    assert_eq!(
        s.call(reqwest::Method::GET, "/ServiceProviderConfig", None, None)
            .await
            .status,
        200
    );
    // A filter would be ignored, so it is refused (RFC 7644 §4).
    for path in [
        "/ServiceProviderConfig?filter=patch.supported eq true",
        "/Schemas?filter=id eq \"x\"",
        "/ResourceTypes?filter=name eq \"User\"",
    ] {
        assert_error(&s.get(path).await, 403, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_types_and_schemas_list_and_by_id() {
    let s = Srv::start().await;
    let r = s.get("/ResourceTypes").await;
    assert_eq!(r.body["totalResults"], 2);
    let user = &r.body["Resources"][0];
    assert_eq!(
        (user["id"].as_str(), user["endpoint"].as_str()),
        (Some("User"), Some("/Users"))
    );
    assert_eq!(
        user["schemaExtensions"][0]["schema"],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    );
    assert_eq!(
        s.get("/ResourceTypes/Group").await.body["endpoint"],
        "/Groups"
    );
    assert_error(&s.get("/ResourceTypes/Widget").await, 404, None);
    let r = s.get("/Schemas").await;
    assert_eq!(
        r.body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );
    let ids: Vec<&str> = r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "urn:ietf:params:scim:schemas:core:2.0:User",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
            "urn:ietf:params:scim:schemas:core:2.0:Group"
        ]
    );
    let u = s
        .get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User")
        .await;
    let un = u.body["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "userName")
        .unwrap()
        .clone();
    assert_eq!(
        (
            un["required"].as_bool(),
            un["caseExact"].as_bool(),
            un["uniqueness"].as_str()
        ),
        (Some(true), Some(false), Some("server"))
    );
    let pw = u.body["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "password")
        .unwrap()
        .clone();
    assert_eq!(
        (pw["mutability"].as_str(), pw["returned"].as_str()),
        (Some("writeOnly"), Some("never"))
    );
    assert_error(&s.get("/Schemas/urn:nope").await, 404, None);
    // No nulls anywhere (Entra: "if a value isn't present, don't send null values").
    assert!(!s.get("/Schemas").await.body.to_string().contains("null"));
}
