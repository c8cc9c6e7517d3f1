#![no_main]
//! `attributes=` / `excludedAttributes=` (RFC 7644 §3.4.2.5) parsed and applied to a rendered
//! resource of a tenant whose extension has never, request and always attributes.
//! Input: a kind byte, then `attributes`, a newline, `excludedAttributes` (a missing line is
//! an absent parameter; a line "-" too).
//!
//! Oracles: `id` and `schemas` always come back; no `returned: never` value ever does; a
//! `returned: request` one only when `attributes` names it; an `always` one always;
//! `schemas` lists exactly the extensions the answer holds; nothing is added; `wants(name)`
//! false means the name is absent; applying the projection twice changes nothing more.

#[path = "common/tenant.rs"]
mod tenant;

use libfuzzer_sys::fuzz_target;
use scimd::scim::projection::Projection;
use scimd::scim::render::Resource;
use scimd::scim::resource;
use scimd::scim::schema::{Kind, Returned};
use serde_json::{Map, Value, json};

fn rendered(kind: Kind) -> Map<String, Value> {
    let rt = tenant::full(kind);
    let mut body = resource::normalize(rt, &tenant::base_raw(kind)).expect("base").body;
    // What the store may hold although no write keeps it now (values of a `never`
    // sub-attribute and an extension taken out of the declaration).
    body.insert("urn:example:gone:2.0:User".into(), json!({"x": "y"}));
    let refs = match kind {
        Kind::Group => vec![json!({"value": "u1", "type": "User"}), json!({"value": "g2", "type": "Group"})],
        Kind::User => vec![json!({"value": "g1", "display": "G"})],
    };
    Resource {
        kind,
        id: "2f1e0c9a".into(),
        body,
        created: "2024-01-01T00:00:00Z".into(),
        modified: "2024-01-02T00:00:00Z".into(),
        version: 3,
        refs: Some(refs),
    }
    .into_json("https://h/scim/v2")
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let Ok(s) = std::str::from_utf8(rest) else { return };
    if s.len() > 16 * 1024 {
        return;
    }
    let kind = if first & 1 == 0 { Kind::User } else { Kind::Group };
    let rt = tenant::full(kind);
    let mut lines = s.splitn(2, '\n');
    let attrs = lines.next().filter(|a| *a != "-");
    let excl = lines.next().filter(|a| *a != "-");
    let p = Projection::parse(rt, attrs, excl);
    let input = rendered(kind);
    let mut out = input.clone();
    p.apply(rt, &mut out);
    let ctx = || format!("attributes={attrs:?} excludedAttributes={excl:?}: {out:?}");

    assert_eq!(out.get("id"), input.get("id"), "id lost: {}", ctx());
    assert!(
        out.get("schemas").and_then(Value::as_array).is_some_and(|a| a.contains(&json!(rt.schema().id))),
        "schemas lost: {}", ctx()
    );
    for k in out.keys() {
        assert!(input.contains_key(k), "projection added {k}: {}", ctx());
    }
    // `schemas` names exactly the extension objects the answer holds.
    let listed: Vec<&str> = out["schemas"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    for k in out.keys().filter(|k| k.starts_with("urn:")) {
        assert!(listed.iter().any(|l| l.eq_ignore_ascii_case(k)), "{k} held but not in schemas: {}", ctx());
        assert!(rt.extension(k).is_some(), "undeclared extension {k} shown: {}", ctx());
    }
    for l in listed.iter().filter(|l| !l.eq_ignore_ascii_case(rt.schema().id)) {
        assert!(out.contains_key(*l), "schemas lists {l}, which the answer does not hold: {}", ctx());
    }
    let named = |name: &str| attrs.is_some_and(|a| a.to_ascii_lowercase().contains(&name.to_ascii_lowercase()));
    for ext in rt.extensions() {
        let obj = out.get(ext.id).and_then(Value::as_object);
        let had = input.get(ext.id).and_then(Value::as_object);
        for def in ext.attributes {
            let v = obj.and_then(|o| o.get(def.name));
            match def.returned {
                Returned::Never => assert!(v.is_none(), "never-returned {} shown: {}", def.name, ctx()),
                Returned::Request if v.is_some() => assert!(
                    named(def.name) || named(ext.id),
                    "request-only {} shown unasked: {}", def.name, ctx()
                ),
                Returned::Always => assert_eq!(
                    v, had.and_then(|h| h.get(def.name)),
                    "always-returned {} not returned: {}", def.name, ctx()
                ),
                _ => {}
            }
            for sub in def.sub_attributes.iter().filter(|s| s.returned == Returned::Never) {
                let leaked = match v {
                    Some(Value::Object(m)) => m.contains_key(sub.name),
                    Some(Value::Array(a)) => a.iter().any(|e| e.get(sub.name).is_some()),
                    _ => false,
                };
                assert!(!leaked, "never-returned {}.{} shown: {}", def.name, sub.name, ctx());
            }
        }
    }
    for def in rt.schema().attributes.iter().chain(scimd::scim::schema::COMMON_ATTRS) {
        if def.returned == Returned::Never {
            assert!(!out.contains_key(def.name), "never-returned {} shown: {}", def.name, ctx());
        }
        if !p.wants(def.name) && def.returned != Returned::Always {
            assert!(!out.contains_key(def.name), "wants({}) is false but it is shown: {}", def.name, ctx());
        }
    }
    let mut twice = out.clone();
    p.apply(rt, &mut twice);
    assert_eq!(twice, out, "projection is not idempotent: {}", ctx());
});
