//! The wire form of a stored resource: `schemas`, `id`, attributes and `meta`, with the
//! computed `members` / `groups` lists when they were read.

use serde_json::{Map, Value, json};

use super::resource::Body;
use super::schema::Kind;

/// One group member as JSON text (for streamed member lists).
pub fn member_fragment(base: &str, id: &str, kind: Kind) -> String {
    let ep = kind.endpoint();
    let r = serde_json::to_string(&format!("{base}/{ep}/{id}")).unwrap_or_default();
    format!(
        "{{\"value\":\"{id}\",\"type\":\"{}\",\"$ref\":{r}}}",
        kind.as_str()
    )
}

/// A resource as read from the store.
#[derive(Debug, Clone)]
pub struct Resource {
    pub kind: Kind,
    pub id: String,
    pub body: Body,
    pub created: String,
    pub modified: String,
    pub version: u64,
    /// Group members (`{"value","type"}`) or a user's groups (`{"value","display"}`), when read.
    pub refs: Option<Vec<Value>>,
}

impl Resource {
    /// Weak ETag; also `meta.version`.
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }

    pub fn location(&self, base: &str) -> String {
        format!("{base}/{}/{}", self.kind.endpoint(), self.id)
    }

    /// `base` is the SCIM base URL the client used (…/scim/v2), for `meta.location` and `$ref`.
    pub fn to_json(&self, base: &str) -> Map<String, Value> {
        self.clone().into_json(base)
    }

    /// As `to_json`, moving the attributes instead of copying them (list pages render
    /// thousands of resources a second).
    pub fn into_json(self, base: &str) -> Map<String, Value> {
        let kind = self.kind;
        let (etag, location) = (self.etag(), self.location(base));
        // Extension objects are the body's URN keys (normalisation keeps only known ones).
        let mut schemas = vec![Value::String(kind.schema().id.to_string())];
        for (k, v) in &self.body {
            if k.starts_with("urn:") && v.is_object() {
                schemas.push(Value::String(k.clone()));
            }
        }
        let mut out = Map::with_capacity(self.body.len() + 4);
        out.insert("schemas".into(), Value::Array(schemas));
        out.insert("id".into(), Value::String(self.id));
        out.extend(self.body);
        if kind == Kind::User && !out.contains_key("active") {
            // Okta's SPEC test reads `active` from every user; absent means active.
            out.insert("active".into(), Value::Bool(true));
        }
        if let Some(refs) = self.refs {
            let name = if kind == Kind::Group {
                "members"
            } else {
                "groups"
            };
            let list = refs
                .into_iter()
                .map(|mut r| {
                    if let (Some(id), Some(m)) =
                        (r["value"].as_str().map(str::to_string), r.as_object_mut())
                    {
                        let ep = match m.get("type").and_then(Value::as_str) {
                            Some("Group") => "Groups",
                            Some("User") => "Users",
                            _ if kind == Kind::User => "Groups",
                            _ => "Users",
                        };
                        m.insert("$ref".into(), Value::String(format!("{base}/{ep}/{id}")));
                    }
                    r
                })
                .collect();
            out.insert(name.into(), Value::Array(list));
        }
        out.insert(
            "meta".into(),
            json!({
                "resourceType": kind.as_str(),
                "created": self.created,
                "lastModified": self.modified,
                "location": location,
                "version": etag,
            }),
        );
        out
    }
}
