//! Discovery documents (RFC 7644 §4, RFC 7643 §5-7): what this server does, exactly.

use serde_json::{Value, json};

use crate::scim::error::ScimError;
use crate::scim::schema::{GROUP, Kind, LIST_RESPONSE, Rt, SchemaDef, USER};

pub struct Limits {
    pub max_results: u64,
    pub max_body_bytes: usize,
}

pub fn service_provider_config(base: &str, l: &Limits) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": l.max_body_bytes},
        "filter": {"supported": true, "maxResults": l.max_results},
        "changePassword": {"supported": false},
        "sort": {"supported": true},
        "pagination": {
            "cursor": true,
            "index": true,
            "defaultPaginationMethod": "index",
            "defaultPageSize": l.max_results,
            "maxPageSize": l.max_results,
            "cursorTimeout": 86400,
        },
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "A bearer token issued by the scimd administrator (`scimd token`).",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
    })
}

fn resource_type(kind: Rt, base: &str) -> Value {
    let ext: Vec<Value> = kind
        .extensions()
        .iter()
        // RFC 7643 §6: required when a resource must carry it, as one with a required
        // attribute must (on create).
        .map(|s| json!({"schema": s.id, "required": s.attributes.iter().any(|a| a.required)}))
        .collect();
    let mut v = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": kind.as_str(),
        "name": kind.as_str(),
        "endpoint": format!("/{}", kind.endpoint()),
        "description": if kind == Kind::User { "User Account" } else { "Group" },
        "schema": kind.schema().id,
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{}", kind.as_str())},
    });
    if !ext.is_empty() {
        v["schemaExtensions"] = Value::Array(ext);
    }
    v
}

fn list(items: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": items.len(),
        "itemsPerPage": items.len(),
        "startIndex": 1,
        "Resources": items,
    })
}

pub fn resource_types(base: &str, types: [Rt; 2]) -> Value {
    list(types.iter().map(|k| resource_type(*k, base)).collect())
}

pub fn resource_type_by_id(base: &str, types: [Rt; 2], id: &str) -> Result<Value, ScimError> {
    types
        .into_iter()
        .find(|k| k.as_str().eq_ignore_ascii_case(id))
        .map(|k| resource_type(k, base))
        .ok_or_else(|| {
            ScimError::not_found(format!(
                "no resource type \"{id}\"; there are User and Group"
            ))
        })
}

/// Every schema a tenant's resources use: the core ones and all extensions.
fn all_schemas(types: [Rt; 2]) -> Vec<&'static SchemaDef> {
    let mut v: Vec<&'static SchemaDef> = vec![&USER];
    v.extend(types[0].extensions().iter().copied());
    v.push(&GROUP);
    v.extend(types[1].extensions().iter().copied());
    v
}

pub fn schemas(base: &str, types: [Rt; 2]) -> Value {
    list(all_schemas(types).iter().map(|s| s.to_json(base)).collect())
}

pub fn schema_by_id(base: &str, types: [Rt; 2], id: &str) -> Result<Value, ScimError> {
    all_schemas(types)
        .iter()
        .find(|s| s.id.eq_ignore_ascii_case(id))
        .map(|s| s.to_json(base))
        .ok_or_else(|| ScimError::not_found(format!("no schema \"{id}\"")))
}
