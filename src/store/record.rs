//! A stored resource record: its JSON encoding, its times, and the index keys its body
//! produces.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::format_id;
use super::skim::skim;
use crate::scim::fold::fold;
use crate::scim::render::Resource;
use crate::scim::resource::{self, Body};
use crate::scim::schema::{Kind, Rt};

#[derive(Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) body: Body,
    pub(super) created: String,
    pub(super) modified: String,
    pub(super) version: u64,
}

impl Record {
    pub(super) fn into_resource(self, kind: Kind, id: u128) -> Resource {
        Resource {
            kind,
            id: format_id(id),
            body: self.body,
            created: self.created,
            modified: self.modified,
            version: self.version,
            refs: None,
        }
    }
}

pub(super) fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A time as the lastModified index holds it: Unix nanoseconds.
pub(super) fn stamp_nanos(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

/// The lastModified index key of a stored record.
pub(super) fn stored_stamp(bytes: &[u8]) -> Option<i64> {
    skim(bytes, &["meta"]).and_then(|s| stamp_nanos(&s.modified))
}

/// Whether the lastModified index holds this kind (see `MODIFIED_ID`).
pub(super) fn stamps_indexed(kind: Kind) -> bool {
    kind == Kind::User
}

pub(super) fn encode(r: &Record) -> Vec<u8> {
    serde_json::to_vec(r).unwrap_or_default()
}

pub(super) fn decode(bytes: &[u8]) -> Option<Record> {
    serde_json::from_slice(bytes).ok()
}

/// The index entries a resource body produces.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Keys {
    pub(super) username: Option<String>,
    pub(super) external_id: Option<String>,
    pub(super) emails: BTreeSet<String>,
    pub(super) display: Option<String>,
    /// ("urn:...:attr", value) of declared extension attributes with `uniqueness: server`.
    pub(super) unique: BTreeSet<(String, String)>,
}

pub(super) fn keys(rt: impl Into<Rt>, body: &Body) -> Keys {
    keys_folded(rt, body, fold)
}

/// The index entries a body produces with names folded by `fold` (an earlier layout's fold,
/// for its migration).
pub(super) fn keys_folded(rt: impl Into<Rt>, body: &Body, fold: fn(&str) -> String) -> Keys {
    let rt: Rt = rt.into();
    let kind = rt.kind;
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let mut k = Keys {
        external_id: s("externalId"),
        display: s("displayName").map(|d| fold(&d)),
        ..Keys::default()
    };
    for ext in rt.extensions() {
        let Some(inner) = body.get(ext.id).and_then(Value::as_object) else {
            continue;
        };
        for def in ext
            .attributes
            .iter()
            .filter(|d| d.uniqueness == crate::scim::schema::Uniqueness::Server)
        {
            let v = match inner.get(def.name) {
                Some(Value::String(s)) if def.case_exact => s.clone(),
                // Lowercased, not folded: the name migrations cannot tell which stored
                // values came from attributes that are not caseExact.
                Some(Value::String(s)) => s.to_lowercase(),
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::Bool(b)) => b.to_string(),
                _ => continue,
            };
            k.unique.insert((format!("{}:{}", ext.id, def.name), v));
        }
    }
    if kind == Kind::User {
        k.username = s("userName").map(|u| fold(&u));
        k.emails.extend(resource::email_values(body).map(fold));
    }
    k
}
