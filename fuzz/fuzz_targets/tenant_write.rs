#![no_main]
//! POST/PUT bodies and PATCH requests under a tenant schema with declared extensions (every
//! attribute type, immutable, writeOnly, readOnly, never/request/always), for Users and Groups.
//! Input: a mode byte (bit 0: Group, bit 1: PATCH), then JSON.
//!
//! Oracles:
//! - a body that normalises (or a PATCH that applies) is canonical: normalising it again
//!   under the same tenant changes nothing;
//! - a stored body never holds what is kept apart or not stored: `id`, `meta`, `schemas`,
//!   `groups`, `password`, a Group's `members`, writeOnly and readOnly extension values;
//! - a PATCH that applies keeps every immutable value the resource had;
//! - member operations carry string ids;
//! - the fast stored-text rendering (`Stored::default_json`) is the same document as the
//!   tree rendering with the default projection, also after the tenant narrowed its
//!   declaration;
//! - every declared attribute gives a sort key without panicking.

#[path = "common/tenant.rs"]
mod tenant;

use libfuzzer_sys::fuzz_target;
use scimd::scim::patch::{self, MemberOp};
use scimd::scim::projection::Projection;
use scimd::scim::render::{Resource, Stored};
use scimd::scim::resource::{self, Body};
use scimd::scim::schema::{Kind, Rt};
use serde_json::{Value, json};

const ID: &str = "2f1e0c9a-0000-7000-8000-000000000001";

fn canonical(rt: Rt, body: &Body, what: &str) {
    let again = resource::normalize(rt, &Value::Object(body.clone()))
        .unwrap_or_else(|e| panic!("{what}: canonical body refused: {e:?}: {body:?}"));
    assert_eq!(&again.body, body, "{what}: normalising a canonical body changed it");
}

fn stored_clean(rt: Rt, body: &Body, what: &str) {
    for k in ["id", "meta", "schemas", "groups", "password"] {
        assert!(!body.contains_key(k), "{what}: stored body holds {k:?}: {body:?}");
    }
    if rt.kind == Kind::Group {
        assert!(!body.contains_key("members"), "{what}: group body holds members: {body:?}");
    }
    for ext in rt.extensions() {
        if let Some(obj) = body.get(ext.id).and_then(Value::as_object) {
            assert!(!obj.is_empty(), "{what}: empty extension object {}", ext.id);
            for def in ext.attributes {
                use scimd::scim::schema::Mutability::*;
                if matches!(def.mutability, WriteOnly | ReadOnly) {
                    assert!(!obj.contains_key(def.name), "{what}: stored {:?} {}: {body:?}", def.mutability, def.name);
                }
            }
        }
    }
}

/// The two renderings of a stored body agree.
fn renderings_agree(stored_under: Rt, shown_under: Rt, body: &Body) {
    if shown_under.hides_attributes() {
        return; // The server renders these through the projection only.
    }
    let record = serde_json::to_vec(&json!({"body": body, "created": "2024-01-01T00:00:00Z",
        "modified": "2024-01-02T00:00:00.5+01:00", "version": 7}))
    .expect("record");
    let kind = stored_under.kind;
    let refs = match kind {
        Kind::Group => vec![json!({"value": "u1", "type": "User"})],
        Kind::User => vec![json!({"value": "g1", "display": "G"})],
    };
    let fast = Stored { kind, id: ID.into(), record, refs: Some(refs.clone()) }
        .default_json("https://h/scim/v2", shown_under)
        .expect("default_json");
    let fast: Value = serde_json::from_slice(&fast.0).expect("default_json writes JSON");
    let mut tree = Resource {
        kind,
        id: ID.into(),
        body: body.clone(),
        created: "2024-01-01T00:00:00Z".into(),
        modified: "2024-01-02T00:00:00.5+01:00".into(),
        version: 7,
        refs: Some(refs),
    }
    .into_json("https://h/scim/v2");
    Projection::parse(shown_under, None, None).apply(shown_under, &mut tree);
    // `schemas` order is not meaningful; compare it as a set.
    let norm = |mut v: Value| {
        if let Some(Value::Array(s)) = v.get_mut("schemas") {
            s.sort_by(|a, b| a.to_string().cmp(&b.to_string()));
        }
        v
    };
    assert_eq!(norm(fast), norm(Value::Object(tree)), "default_json and into_json+projection differ for {body:?}");
}

/// Every attribute and sub-attribute the tenant declares can be sorted by, whatever value
/// a write left in it (`sortBy=urn:...:hired`).
fn sort_keys(rt: Rt, body: &Body) {
    use scimd::scim::sort::SortSpec;
    for ext in rt.extensions() {
        for def in ext.attributes {
            let mut paths = vec![format!("{}:{}", ext.id, def.name)];
            paths.extend(def.sub_attributes.iter().map(|s| format!("{}:{}.{}", ext.id, def.name, s.name)));
            for p in paths {
                if let Ok(spec) = SortSpec::parse(rt, &p, Some("descending")) {
                    let _ = spec.key("id", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z", body);
                }
            }
        }
    }
}

fn immutables_kept(rt: Rt, before: &Body, after: &Body) {
    use scimd::scim::schema::Mutability::Immutable;
    for ext in rt.extensions() {
        let (Some(b), a) = (before.get(ext.id).and_then(Value::as_object), after.get(ext.id).and_then(Value::as_object)) else {
            continue;
        };
        for def in ext.attributes {
            if def.mutability == Immutable
                && let Some(was) = b.get(def.name)
            {
                assert_eq!(a.and_then(|a| a.get(def.name)), Some(was), "immutable {} changed", def.name);
            }
            if !def.multi_valued {
                for sub in def.sub_attributes.iter().filter(|s| s.mutability == Immutable) {
                    if let Some(was) = b.get(def.name).and_then(|v| v.get(sub.name)) {
                        assert_eq!(
                            a.and_then(|a| a.get(def.name)).and_then(|v| v.get(sub.name)),
                            Some(was),
                            "immutable {}.{} changed", def.name, sub.name
                        );
                    }
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if rest.len() > 64 * 1024 {
        return;
    }
    let kind = if mode & 1 == 0 { Kind::User } else { Kind::Group };
    let Ok(raw) = serde_json::from_slice::<Value>(rest) else { return };
    let rt = tenant::full(kind);
    if mode & 2 == 0 {
        match resource::normalize(rt, &raw) {
            Ok(input) => {
                canonical(rt, &input.body, "POST");
                sort_keys(rt, &input.body);
                stored_clean(rt, &input.body, "POST");
                let _ = resource::check_required_extensions(rt, &input.body, None);
                renderings_agree(rt, tenant::reduced(kind), &input.body);
                if let Some(m) = &input.members {
                    assert!(m.iter().all(|m| m["value"].is_string()), "members {m:?}");
                }
            }
            Err(e) => assert!((400..500).contains(&e.status), "{raw}: {e:?}"),
        }
        // The same body under the plain (built-in) type, rendered both ways.
        if let Ok(input) = resource::normalize(kind, &raw) {
            renderings_agree(kind.into(), kind.into(), &input.body);
        }
        return;
    }
    let base = resource::normalize(rt, &tenant::base_raw(kind)).expect("base body").body;
    let ops = match patch::parse_request(&raw) {
        Ok(ops) => ops,
        Err(e) => {
            assert!((400..500).contains(&e.status), "{raw}: {e:?}");
            return;
        }
    };
    match patch::apply(rt, ID, &base, &ops) {
        Ok(out) => {
            canonical(rt, &out.body, "PATCH");
            sort_keys(rt, &out.body);
            stored_clean(rt, &out.body, "PATCH");
            immutables_kept(rt, &base, &out.body);
            renderings_agree(rt, tenant::reduced(kind), &out.body);
            for op in &out.member_ops {
                match op {
                    MemberOp::Add(list) => {
                        assert!(list.iter().all(|m| m["value"].is_string()), "member add {list:?}")
                    }
                    MemberOp::Remove(_) | MemberOp::RemoveWhere(_) | MemberOp::Clear => {}
                }
            }
            assert!(kind == Kind::Group || out.member_ops.is_empty(), "member ops on a user");
        }
        Err(e) => assert!((400..500).contains(&e.status), "{raw}: {e:?}"),
    }
});
